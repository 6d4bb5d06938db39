"""Runs inside the kernel while the book executes a notebook (PYTHONSTARTUP): every matplotlib figure's PNG
output carries an alt text in its output metadata (`metadata["image/png"]["alt"]`), and a figure drawn by
an interactive panel carries the panel's controls and their values (`"kdlab_panel"`).

Nothing else changes: the notebook's outputs are the same PNGs. matplotlib-inline shows every figure
with the metadata of its `_fetch_figure_metadata`; the hook wraps that function once pyplot has been
imported (checked around every cell).
"""


def _panel_state():
    """The controls of the panel that is drawing right now, or None."""
    import sys

    widgets = sys.modules.get("kdlab.widgets")
    panel = getattr(widgets, "_book_current_panel", None) if widgets else None
    if panel is None:
        return None
    return {name: repr(panel.values.get(name)) for name in panel.controls}


def _patch_inline_backend():
    """matplotlib-inline displays every figure with `metadata=_fetch_figure_metadata(fig)`: add the alt text."""
    import sys

    if "matplotlib.pyplot" not in sys.modules:
        return
    import matplotlib

    if "inline" not in matplotlib.get_backend():  # resolves the backend, as the first figure would
        return
    import matplotlib_inline.backend_inline as backend

    if getattr(backend._fetch_figure_metadata, "_kdlab_alt", False):
        return
    original = backend._fetch_figure_metadata

    def figure_metadata(fig):
        metadata = dict(original(fig) or {})
        try:
            from kdlab.book.alt_text import describe

            panel = _panel_state()
            png = {"alt": describe(fig, "Interactive panel at its default settings" if panel else "Figure")}
            if panel:
                png["kdlab_panel"] = panel
            metadata["image/png"] = png
        except Exception as error:  # noqa: BLE001 (an alt text must never break a lesson)
            metadata["kdlab_alt_error"] = repr(error)
        return metadata

    figure_metadata._kdlab_alt = True
    backend._fetch_figure_metadata = figure_metadata


def _wrap_panel_show():
    """Remember which panel is drawing, so its figure can say it is a panel (and name its controls)."""
    import sys

    if "kdlab" not in sys.modules:
        return
    import kdlab.widgets as widgets  # before the cell that first imports it shows a panel

    if getattr(widgets.Panel.show, "_kdlab_book", False):
        return
    original = widgets.Panel.show

    def show(self, *args, **kwargs):
        widgets._book_current_panel = self
        try:
            return original(self, *args, **kwargs)
        finally:
            widgets._book_current_panel = None

    show._kdlab_book = True
    widgets.Panel.show = show


def install():
    try:
        ip = get_ipython()  # noqa: F821 (defined inside IPython)
    except NameError:
        return

    def before_cell(*_):
        try:
            _patch_inline_backend()
            _wrap_panel_show()
        except Exception:  # noqa: BLE001 (never break a lesson)
            pass

    ip.events.register("pre_run_cell", before_cell)
    ip.events.register("post_run_cell", before_cell)


install()
