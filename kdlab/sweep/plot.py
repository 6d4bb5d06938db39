"""The default picture of a sweep, `sweep.png`, chosen from the shape of the grid.

- two or more numeric swept parameters: a heat map of the metric over the first two
  (mean over seeds and over any other swept parameter);
- one numeric swept parameter: a line with a seed band (mean ± std over seeds; the points if one seed),
  one line per value of the other swept parameters;
- none (e.g. DATASET only, or seeds only): the metric per point, mean ± std over seeds.

Only points that finished ok are drawn; a failed point leaves its heat-map cell empty.
"""
import math
import numbers
import statistics
from dataclasses import dataclass

from ..errors import ParameterError
from .grid import SEED


@dataclass(frozen=True)
class PlotChoice:
    """What to draw: `kind` is 'heatmap', 'line' or 'points'."""

    kind: str
    metric: str
    x: "str | None" = None
    y: "str | None" = None
    others: tuple = ()  # swept parameters (not SEED) besides x and y


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def numeric_columns(rows, skip=()):
    """Columns whose values, over the ok rows, are all numbers (in column order)."""
    ok = [row for row in rows if row["status"] == "ok"]
    names = []
    for row in ok:
        names.extend(name for name in row if name not in names and name not in skip)
    return [name for name in names
            if any(name in row for row in ok) and all(_is_number(row[name]) for row in ok if name in row)]


def choose_plot(rows, axes, metric=None):
    """Pick the plot for a sweep over `axes` ({name: values}); `metric` defaults to the first recorded number."""
    skip = {"point", "seconds", "attempts", *axes}
    recorded = numeric_columns(rows, skip=skip)
    if metric is None:
        if not recorded:
            raise ParameterError("--metric", None, "a recorded number, but no point recorded one")
        metric = recorded[0]
    elif metric not in recorded:
        raise ParameterError("--metric", metric, f"one of the recorded numbers: {', '.join(recorded) or 'none'}")
    swept = [name for name, values in axes.items() if name != SEED and len(values) > 1]
    numeric = [name for name in swept if all(_is_number(value) for value in axes[name])]
    if len(numeric) >= 2:
        x, y = numeric[:2]
        return PlotChoice("heatmap", metric, x, y, tuple(n for n in swept if n not in (x, y)))
    if numeric:
        return PlotChoice("line", metric, numeric[0], None, tuple(n for n in swept if n != numeric[0]))
    return PlotChoice("points", metric, None, None, tuple(swept))


def draw(choice, rows, axes, path, title=""):
    """Draw `choice` from the ok rows into a PNG at `path` (matplotlib, no display needed)."""
    from matplotlib.figure import Figure

    ok = [row for row in rows if row["status"] == "ok" and _is_number(row.get(choice.metric))]
    figure = Figure(figsize=(6.4, 4.8), layout="constrained")
    ax = figure.add_subplot()
    {"heatmap": _heatmap, "line": _lines, "points": _points}[choice.kind](ax, choice, ok, axes, figure)
    seeds = axes.get(SEED, ())
    over = ([f"{len(seeds)} seeds"] if len(seeds) > 1 else []) + list(choice.others if choice.kind == "heatmap" else [])
    subtitle = f"mean over {', '.join(over)}" if over else ""
    ax.set_title("\n".join(part for part in (title, f"{choice.metric}, {subtitle}" if subtitle else choice.metric)
                           if part), fontsize=10)
    figure.savefig(path, dpi=120)
    return path


def _values(rows, metric, where):
    """The metric of the rows whose parameters equal `where` ({name: value})."""
    return [row[metric] for row in rows if all(row.get(name) == value for name, value in where.items())]


def _mean(values):
    return statistics.fmean(values) if values else math.nan


def _heatmap(ax, choice, rows, axes, figure):
    xs, ys = axes[choice.x], axes[choice.y]
    grid = [[_mean(_values(rows, choice.metric, {choice.x: x, choice.y: y})) for x in xs] for y in ys]
    from matplotlib import colormaps

    image = ax.imshow(grid, origin="lower", aspect="auto", cmap=colormaps["viridis"].with_extremes(bad="0.85"))
    for i, line in enumerate(grid):
        for j, value in enumerate(line):  # a cell without an ok point is grey: "no result"
            ax.text(j, i, "no result" if math.isnan(value) else f"{value:.3g}", ha="center", va="center",
                    color="white" if value < _midpoint(grid) else "black", fontsize=9)
    ax.set_xticks(range(len(xs)), [str(x) for x in xs])
    ax.set_yticks(range(len(ys)), [str(y) for y in ys])
    ax.set_xlabel(choice.x)
    ax.set_ylabel(choice.y)
    figure.colorbar(image, ax=ax, label=choice.metric)


def _midpoint(grid):
    finite = [value for line in grid for value in line if not math.isnan(value)]
    return (min(finite) + max(finite)) / 2 if finite else 0


def _groups(rows, others):
    """Rows split by the values of the other swept parameters: {label: rows}."""
    groups = {}
    for row in rows:
        label = ", ".join(f"{name}={row[name]}" for name in others)
        groups.setdefault(label, []).append(row)
    return groups


def _lines(ax, choice, rows, axes, figure):
    xs = sorted(axes[choice.x])
    for label, group in _groups(rows, choice.others).items():
        per_x = [_values(group, choice.metric, {choice.x: x}) for x in xs]
        shown = [(x, values) for x, values in zip(xs, per_x) if values]
        means = [_mean(values) for _, values in shown]
        line, = ax.plot([x for x, _ in shown], means, marker="o", label=label or None)
        if any(len(values) > 1 for _, values in shown):
            spread = [statistics.pstdev(values) for _, values in shown]
            ax.fill_between([x for x, _ in shown], [m - s for m, s in zip(means, spread)],
                            [m + s for m, s in zip(means, spread)], alpha=0.2, color=line.get_color())
            for x, values in shown:
                ax.scatter([x] * len(values), values, s=10, alpha=0.5, color=line.get_color())
    ax.set_xlabel(choice.x)
    ax.set_ylabel(choice.metric)
    if choice.others:
        ax.legend(fontsize=8)


def _points(ax, choice, rows, axes, figure):
    groups = _groups(rows, choice.others) if choice.others else {"all points": rows}
    for position, (label, group) in enumerate(groups.items()):
        values = [row[choice.metric] for row in group]
        spread = statistics.pstdev(values) if len(values) > 1 else 0
        ax.errorbar([position], [_mean(values)], yerr=[spread], fmt="o", capsize=4, color="C0")
        ax.scatter([position] * len(values), values, s=10, alpha=0.5, color="C0")
    ax.set_xticks(range(len(groups)), list(groups), rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(choice.metric)
