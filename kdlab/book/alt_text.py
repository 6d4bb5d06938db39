"""A matplotlib figure described in words, for the alt text of its image in the book.

    describe(fig) -> "Figure 'Soft targets': one panel: 'T = 4', bars (10), x: class, y: probability."

Read from what the figure draws (titles, axis labels, legend entries, the kind and number of artists), so
the text follows the figure and nobody retypes it. `fallback(...)` is the text for an image that reached
the book without one (an executed copy made outside the book): its section and its cell.
"""
import re

MAX_CHARS = 600


def _text(artist):
    return artist.get_text().strip() if artist is not None else ""


def _clean(text):
    return re.sub(r"\s+", " ", re.sub(r"\$([^$]*)\$", r"\1", text)).strip()


def _kinds(ax):
    """What an axes draws, counted: '3 lines, 10 bars, 1 image'."""
    from matplotlib.collections import PathCollection, PolyCollection, QuadMesh
    from matplotlib.patches import Rectangle

    counts = {}

    def add(kind, n=1):
        if n:
            counts[kind] = counts.get(kind, 0) + n

    add("line", len(ax.get_lines()))
    add("image", len(ax.get_images()))
    bars = [p for p in ax.patches if isinstance(p, Rectangle)]
    add("bar", len(bars))
    for collection in ax.collections:
        if isinstance(collection, PathCollection):
            add("scatter point", len(collection.get_offsets()))
        elif isinstance(collection, QuadMesh):
            add("heat map")
        elif isinstance(collection, PolyCollection):
            add("shaded band")
    return ", ".join(f"{n} {kind}{'s' if n > 1 else ''}" for kind, n in counts.items())


def describe_axes(ax):
    parts = []
    if _text(ax.title):
        parts.append(f"'{_clean(_text(ax.title))}'")
    kinds = _kinds(ax)
    if kinds:
        parts.append(kinds)
    if ax.get_xlabel():
        parts.append(f"x: {_clean(ax.get_xlabel())}")
    if ax.get_ylabel():
        parts.append(f"y: {_clean(ax.get_ylabel())}")
    legend = ax.get_legend()
    if legend is not None:
        labels = [_clean(_text(t)) for t in legend.get_texts() if _text(t)]
        if labels:
            parts.append("legend: " + ", ".join(labels[:8]) + (" ..." if len(labels) > 8 else ""))
    return ", ".join(parts)


def describe(fig, prefix="Figure"):
    """One sentence (at most MAX_CHARS characters) that says what `fig` shows."""
    axes = [ax for ax in fig.get_axes() if ax.get_visible() and ax.get_label() != "<colorbar>"]
    title = _clean(_text(getattr(fig, "_suptitle", None)))
    head = f"{prefix} '{title}'" if title else prefix
    described = [d for d in (describe_axes(ax) for ax in axes) if d]
    if not described:
        text = f"{head}."
    elif len(described) == 1:
        text = f"{head}: {described[0]}."
    else:
        text = f"{head}, {len(described)} panels: " + "; ".join(
            f"({i}) {d}" for i, d in enumerate(described, start=1)) + "."
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS - 3].rstrip() + "..."


def fallback(notebook_title, section, number):
    """Alt text for an image without a description: where it sits in the lesson."""
    where = f"section '{section}'" if section else "the introduction"
    return f"Figure {number} of {where} in '{notebook_title}' (computed by the code cell above it)."
