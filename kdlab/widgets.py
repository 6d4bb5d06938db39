"""Interactive panels that are thin shells over pure functions, plus a headless driver for tests.

A `Panel` has a pure `compute(**values) -> data` (the science), a `draw(data, fig)` (the picture), and
controls (sliders, dropdowns). In JupyterLab `panel.show()` builds ipywidgets that recompute on release
(`continuous_update=False`, so a slider never queues a dozen retrains). Headless (papermill, CI, the
grader) `show()` renders the default setting once, statically. Tests drive a panel with
`panel.set(ALPHA=0.5)` and assert on `panel.data`, the plotted numbers, not on pixels.

What a figure plots can be read back (`plotted_series`, `plotted_digest`): the data of its lines, markers,
bands, images and bars, without titles, tick labels or other text. Every panel created in a kernel is
registered, and `audit_sliders()` moves each control of each panel, redraws, and reports which plotted
series changed: the proof that every slider changes what it claims to change.
"""
import hashlib
import html
import json
import math
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field

import matplotlib.pyplot as plt
import numpy as np

from . import panel_ahead
from .env import headless
from .errors import ParameterError
from .panel_ahead import setting_key, snapped

_PANELS = []  # every Panel created in this process, in order (audit_sliders' default)


@dataclass
class Control:
    kind: str  # "float", "int", "log", "choice", "button"
    value: object
    min: float = None
    max: float = None
    step: float = None
    options: list = field(default_factory=list)
    description: str = ""

    def check(self, name, value):
        if self.kind == "choice":
            if value not in self.options:
                raise ParameterError(name, value, f"one of {self.options}")
        elif self.kind in ("float", "int", "log"):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise ParameterError(name, value, f"a number in [{self.min}, {self.max}]")
            if not self.min <= value <= self.max:
                raise ParameterError(name, value, f"in [{self.min}, {self.max}] on this slider")
            if self.kind == "int" and int(value) != value:
                raise ParameterError(name, value, f"an integer in [{self.min}, {self.max}]")
        return value


def slider(value, min, max, step, description=""):
    kind = "int" if all(isinstance(v, int) for v in (value, min, max, step)) else "float"
    return Control(kind, value, min, max, step, description=description)


def log_slider(value, min, max, description=""):
    """A slider over log10 of the value (learning rates): min and max are the values, not exponents."""
    return Control("log", value, min, max, description=description)


def choice(value, options, description=""):
    return Control("choice", value, options=list(options), description=description)


class Panel:
    def __init__(self, compute, draw, controls: dict, *, readout=None, title=None, figsize=(8, 3)):
        self.compute, self.draw, self.controls = compute, draw, controls
        self.readout, self.title, self.figsize = readout, title, figsize
        self.values = {name: c.value for name, c in controls.items()}
        self.data = None
        self.calls = 0
        self.widgets = {}
        self._output = None
        self._readout_widget = None
        self.box = None  # the ipywidgets box, once shown interactively
        self.plotted = None  # digest of the data in the last figure shown
        self.computed = OrderedDict()  # setting key -> data, newest last (`panel_ahead`'s and this kernel's)
        self.compute_seconds = None  # the last compute's time in this kernel
        self.source = None  # where the last `set` found its data: "computed", "kept" or "ahead"
        self._ahead, self._ahead_keys, self._look_ahead = None, set(), True
        register(self)

    @property
    def name(self):
        """The title, else the function that built the panel (`retrain_panel`), else its compute's name."""
        if self.title:
            return self.title
        qualname = getattr(self.compute, "__qualname__", type(self.compute).__name__)
        return qualname.split(".<locals>")[0] if ".<locals>" in qualname else qualname

    # the headless driver ------------------------------------------------------------------
    def set(self, **values):
        """Set control values (validated against the controls' ranges), recompute, and return the data."""
        for name, value in values.items():
            if name not in self.controls:
                raise ParameterError("control", name, f"one of {sorted(self.controls)}")
            self.values[name] = self.controls[name].check(name, value)
        self.data = self._data_for(self.values)
        self.calls += 1
        if self._look_ahead:
            self.look_ahead()
        return self.data

    # the settings kept and computed ahead (kdlab.panel_ahead) ----------------------------------------
    KEEP = 32  # settings kept per panel, the oldest dropped first
    AHEAD_FROM_SECONDS = 0.3  # a compute faster than this is not worth a copy of the kernel

    def _data_for(self, values):
        """The data of `values`: kept from an earlier `set` or computed ahead when available (compute is a
        pure function of the values), else computed here."""
        key = setting_key(values)
        self._collect()
        if self.computed.get(key) is not None:
            self.source = "ahead" if key in self._ahead_keys else "kept"
            data = self.computed.pop(key)
        else:
            started = time.perf_counter()
            data, self.source = self.compute(**values), "computed"
            self.compute_seconds = time.perf_counter() - started
            self._ahead_keys.discard(key)
        self._keep(key, data)
        return data

    def _keep(self, key, data):
        self.computed[key] = data
        while len(self.computed) > self.KEEP:
            self._ahead_keys.discard(self.computed.popitem(last=False)[0])

    def _collect(self):
        if self._ahead is None:
            return
        for key, data in self._ahead.collect().items():
            if data is not None and key not in self.computed:
                self._keep(key, data)
                self._ahead_keys.add(key)

    def look_ahead(self):
        """Compute the settings one slider away from the current one in a copy of this kernel, at the lowest
        priority (`kdlab.panel_ahead`), stopping the copy that worked around the previous setting. Only where
        `panel_ahead.wanted()` and this panel's compute takes long enough to be worth it."""
        self.stop_ahead()
        if self.compute_seconds is None or self.compute_seconds < self.AHEAD_FROM_SECONDS or not panel_ahead.wanted():
            return
        todo = [s for s in panel_ahead.neighbours(self.controls, self.values) if setting_key(s) not in self.computed]
        if todo:
            self._ahead = panel_ahead.Ahead(self.compute, todo)

    def stop_ahead(self):
        if self._ahead is not None:
            self._collect()  # what the copy finished stays
            self._ahead.stop()
            self._ahead = None

    def wait_ahead(self, timeout=300.0):
        """Wait until the copy computing ahead has finished (or `timeout` seconds); returns the seconds waited."""
        started = time.perf_counter()
        while self._ahead is not None and self._ahead.pending and self._ahead.running():
            if time.perf_counter() - started > timeout:
                break
            self._collect()
            time.sleep(0.05)
        self._collect()  # the last results, written before the copy ended
        return time.perf_counter() - started

    def figure(self):
        """Draw the current data into a new figure (does not display it)."""
        if self.data is None:
            self.set()
        fig = plt.figure(figsize=self.figsize)
        self.draw(self.data, fig)
        if self.title:
            fig.suptitle(self.title)
        return fig

    def readout_text(self):
        return self.readout(self.data) if self.readout and self.data is not None else ""

    # the notebook view --------------------------------------------------------------------
    def show(self, interactive=None):
        """Interactive widgets in JupyterLab; one static rendering of the defaults when headless."""
        interactive = (not headless()) if interactive is None else interactive
        register(self)
        if not interactive:
            self.set()
            fig = self.figure()
            self.plotted = plotted_digest(fig)
            if self.readout:
                print(self.readout_text())
            plt.show()
            plt.close(fig)
            return None
        self._build_widgets()
        return None  # displayed already: returning the box would make Jupyter show a second copy

    def _build_widgets(self):
        import ipywidgets as w
        from IPython.display import display

        for name, c in self.controls.items():
            label = c.description or name
            style = {"description_width": "initial"}
            if c.kind == "int":
                widget = w.IntSlider(value=c.value, min=c.min, max=c.max, step=c.step, description=label,
                                     continuous_update=False, style=style)
            elif c.kind == "float":
                widget = w.FloatSlider(value=c.value, min=c.min, max=c.max, step=c.step, description=label,
                                       continuous_update=False, style=style, readout_format=".3g")
            elif c.kind == "log":
                widget = w.FloatLogSlider(value=c.value, base=10, min=math.log10(c.min), max=math.log10(c.max),
                                          step=0.25, description=label, continuous_update=False, style=style)
            else:
                widget = w.Dropdown(value=c.value, options=c.options, description=label, style=style)
            widget.observe(lambda change, name=name: self._on_change(name, change["new"]), names="value")
            self.widgets[name] = widget
        self._output = w.Output()
        self._readout_widget = w.HTML()
        box = w.VBox([w.HBox(list(self.widgets.values())), self._readout_widget, self._output])
        display(box)
        self.box = box
        self._refresh()

    def _on_change(self, name, value):
        self.values[name] = value
        self._refresh()

    def _refresh(self):
        from IPython.display import display

        self.set()
        with self._output:
            self._output.clear_output(wait=True)
            fig = self.figure()
            self.plotted = plotted_digest(fig)
            display(fig)
            plt.close(fig)
        if self._readout_widget is not None:  # data-plotted: what the figure shows, for browser tests
            self._readout_widget.value = (f"<code class='kdlab-readout' data-plotted='{self.plotted}'>"
                                          f"{html.escape(self.readout_text(), quote=False)}</code>"
                                          + SOURCE_NOTES.get(self.source, ""))


SOURCE_NOTES = {"ahead": " <small>(computed ahead while you read: <code>kdlab.panel_ahead</code>)</small>",
                "kept": " <small>(kept from when you were here before)</small>"}


# -- the registry ---------------------------------------------------------------------------------------
def register(panel):
    """Remember `panel` for `audit_sliders` (Panel does this itself; registering twice is harmless)."""
    if not any(known is panel for known in _PANELS):
        _PANELS.append(panel)
    return panel


def registered_panels():
    """The panels created in this process, oldest first."""
    return list(_PANELS)


def forget_panels():
    """Empty the registry (tests)."""
    _PANELS.clear()


# -- what a figure plots -----------------------------------------------------------------------------------
@dataclass
class Series:
    """One plotted thing: a line, a scatter, a band, an image, a set of bars, in data coordinates.

    `y` holds what moves when the data change (y values, image pixels, bar heights, colour values), `x`
    the positions and anything else the artist draws from data; `points` the (x, y) pairs in display
    pixels, when the artist has positions. `key` (axes number, kind, number within the axes) matches a
    series across redraws; `name` (axes title: label) is for people, and may change with a slider.
    """

    key: tuple
    axes: str
    label: str
    kind: str
    x: np.ndarray
    y: np.ndarray
    points: np.ndarray = None
    shades: np.ndarray = None  # for colours (images, meshes, coloured points): values on the colour scale, 0-1

    @property
    def name(self):
        return f"{self.axes}: {self.label}"


def _floats(values):
    try:
        return np.ma.filled(np.ma.asarray(values, dtype=float), np.nan).ravel()
    except (TypeError, ValueError):  # dates, categories: compare their text
        return np.array([float(int(hashlib.sha1(str(v).encode()).hexdigest()[:12], 16)) for v in np.ravel(values)])


def _pixels(ax, xy):
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    return ax.transData.transform(xy) if len(xy) else xy


def _axes_names(fig):
    names, seen = [], {}
    for index, ax in enumerate(fig.axes, start=1):
        name = ax.get_title() or ax.get_title("left") or ax.get_ylabel() or f"axes {index}"
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    return names


WALL_CLOCK = "kdlab-wall-clock"  # the gid of an axes that shows measured run time


def mark_wall_clock(ax):
    """Mark `ax` as showing measured wall time: it differs between two runs of the same setting, so it is
    left out of the plotted data a slider must change (else any slider would seem to change something)."""
    ax.set_gid(WALL_CLOCK)
    return ax


def plotted_series(fig, pixels=True):
    """The data each artist of `fig` draws (colour bars, wall-clock axes, text, titles and tick labels left out).

    `pixels=False` skips drawing the figure, and with it the on-screen positions (`Series.points`).
    """
    from matplotlib.collections import LineCollection, PathCollection, QuadMesh
    from matplotlib.container import BarContainer

    if pixels:
        fig.canvas.draw()  # the final layout: display coordinates are those on screen
    found = []
    for axes_number, (ax, axes_name) in enumerate(zip(fig.axes, _axes_names(fig)), start=1):
        if getattr(ax, "_colorbar", None) is not None or ax.get_gid() == WALL_CLOCK:
            continue
        numbers = {}

        def screen(ax, xy):
            return _pixels(ax, xy) if pixels else None

        def add(kind, artist, x, y, points=None, default_label=None, **extra):
            numbers[kind] = numbers.get(kind, 0) + 1
            label = artist.get_label() if artist is not None else None
            if not label or label.startswith("_"):
                label = default_label or f"{kind} {numbers[kind]}"
            found.append(Series((axes_number, kind, numbers[kind]), axes_name, label, kind, _floats(x), _floats(y),
                                points, **extra))

        for line in ax.lines:
            x, y = line.get_xdata(), line.get_ydata()
            xy = np.column_stack([_floats(x), _floats(y)]) if np.size(x) == np.size(y) else np.empty((0, 2))
            add("line", line, x, y, screen(ax, xy))
        for collection in ax.collections:
            if isinstance(collection, QuadMesh):
                array = collection.get_array()
                add("mesh", collection, collection.get_coordinates(), array, shades=_shades(collection))
                continue
            if isinstance(collection, LineCollection):
                segments = collection.get_segments()
                xy = np.concatenate(segments) if segments else np.empty((0, 2))
            elif isinstance(collection, PathCollection):
                xy = collection.get_offsets()
            else:  # bands (fill_between) and other polygons
                paths = collection.get_paths()
                xy = np.concatenate([path.vertices for path in paths]) if paths else np.empty((0, 2))
            xy = np.asarray(xy, dtype=float).reshape(-1, 2)
            kind = "points" if isinstance(collection, PathCollection) else "band"
            add(kind, collection, xy[:, 0], xy[:, 1], screen(ax, xy))
            if collection.get_array() is not None:
                add("colours", None, [], collection.get_array(), shades=_shades(collection),
                    default_label=f"colours of {found[-1].label}")
        for image in ax.images:
            add("image", image, image.get_extent(), image.get_array(), shades=_shades(image))
        in_bars = set()
        for container in ax.containers:
            if not isinstance(container, BarContainer):
                continue
            rects = list(container.patches)
            in_bars.update(id(r) for r in rects)
            x = [(r.get_x(), r.get_width(), r.get_y()) for r in rects]
            y = [r.get_height() for r in rects]
            tops = [(r.get_x() + r.get_width() / 2, r.get_y() + r.get_height()) for r in rects]
            add("bars", container, x, y, screen(ax, tops))
        shapes = [p for p in ax.patches if id(p) not in in_bars]
        if shapes:
            xy = np.concatenate([p.get_patch_transform().transform(p.get_path().vertices) for p in shapes])
            add("shapes", None, xy[:, 0], xy[:, 1], screen(ax, xy))
    return found


def _shades(mappable):
    """Where each value falls on the mappable's own colour scale (0 to 1): what the eye compares."""
    array = mappable.get_array()
    if array is None or mappable.norm is None or np.ndim(array) > 2:  # RGB images carry their colours
        return None
    return _floats(mappable.norm(np.ma.asarray(array, dtype=float)))


def plotted_digest(fig_or_series):
    """A short fingerprint of the plotted data: equal for equal data, whatever the titles or the text."""
    series = fig_or_series if isinstance(fig_or_series, list) else plotted_series(fig_or_series, pixels=False)
    digest = hashlib.sha1()
    for s in series:
        digest.update(f"{s.key}|{s.x.size}|{s.y.size}|".encode())
        for values in (s.x, s.y):  # NaN and infinities as distinct finite stand-ins, so they hash too
            finite = np.nan_to_num(values, nan=1.5e308, posinf=1.6e308, neginf=-1.6e308)
            digest.update(np.round(finite, 9).tobytes())
    return digest.hexdigest()[:16]


def compare_series(before, after):
    """{series name: change} for the series that differ, matched by `Series.key` (so a legend label that
    quotes the slider's value is no change). A change has max_abs (data units; None when the number of
    values changed), pixels (the largest movement on screen), relative (for colours: the share of the
    colour scale) and note."""
    old = {s.key: s for s in before}
    new = {s.key: s for s in after}
    changes = {}
    for key in list(old) + [k for k in new if k not in old]:
        a, b = old.get(key), new.get(key)
        name = (a or b).name  # as the default's figure names it
        if name in changes:
            name = f"{name} #{key[2]}"
        change = {"max_abs": None, "pixels": None, "relative": None, "note": ""}
        if a is None or b is None:
            changes[name] = {**change, "note": "appeared" if a is None else "disappeared"}
        elif a.y.shape != b.y.shape:
            changes[name] = {**change, "note": f"{a.y.size} -> {b.y.size} values"}
        elif a.x.shape != b.x.shape:
            changes[name] = {**change, "note": "positions changed"}
        else:
            dy, dx = _max_abs(a.y, b.y), _max_abs(a.x, b.x)
            if dy == 0 and dx == 0:
                continue
            if a.points is not None and b.points is not None and a.points.shape == b.points.shape \
                    and a.points.size:
                change["pixels"] = _max_abs(a.points, b.points)
            if a.shades is not None and b.shades is not None and a.shades.shape == b.shades.shape:
                change["relative"] = _max_abs(a.shades, b.shades)
            changes[name] = {**change, "max_abs": dy if dy else dx, "note": "" if dy else "positions only"}
    return changes


def _max_abs(a, b):
    """max |a - b|, NaN-aware: a NaN on one side only counts as infinitely different."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size == 0:
        return 0.0
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    if (nan_a != nan_b).any():
        return math.inf
    keep = ~nan_a
    diff = np.abs(a[keep] - b[keep])
    diff = diff[~np.isnan(diff)]  # inf - inf
    return float(diff.max()) if diff.size else 0.0


def visible(change, min_pixels=1.0, min_relative=0.01):
    """Would a person see this change: points added or removed, a point moving `min_pixels` on screen,
    or an image's colours moving by `min_relative` of its colour scale."""
    if change["max_abs"] is None:
        return True
    if change["pixels"] is not None:
        return change["pixels"] >= min_pixels
    if change["relative"] is not None:
        return change["relative"] >= min_relative
    return change["max_abs"] > 0


# -- the slider audit --------------------------------------------------------------------------------------
@dataclass
class SliderEffect:
    """What moving one control of one panel did to the panel's figure."""

    panel: str
    control: str
    old: object
    new: object
    changed: bool  # the plotted data differ
    visible: bool  # ... by enough to see (see `visible`)
    series: list  # names of the plotted series that changed
    changes: dict  # series name -> {"max_abs", "pixels", "relative", "note"}
    seconds: float
    error: str = None
    ahead_seconds: float = None  # the same move with the data computed ahead (`audit_sliders(ahead=True)`)
    ahead_same: bool = None  # ... and whether they plot the same as the data computed afresh
    ahead_ready: float = None  # seconds into the audit when all of the panel's settings computed ahead were there

    @property
    def max_abs(self):
        sizes = [c["max_abs"] for c in self.changes.values() if c["max_abs"] is not None]
        return max(sizes) if sizes else None

    @property
    def ok(self):
        return self.changed and self.visible and self.error is None


def moved_value(control, steps=2, log_factor=10.0):
    """Another allowed value: `steps` steps below the default (above it where there is no room below),
    a log slider divided (or multiplied) by `log_factor`, a choice's first option (its last if the first
    is the default). The farther end of the range when neither fits."""
    value = control.value
    if control.kind == "choice":
        return control.options[-1] if value == control.options[0] else control.options[0]
    if control.kind == "log":
        candidates = (value / log_factor, value * log_factor)
    else:
        candidates = (value - steps * control.step, value + steps * control.step)
    for candidate in candidates:
        candidate = snapped(control, candidate)
        if candidate is not None and candidate != value:
            return candidate
    return control.min if value - control.min >= control.max - value else control.max


def audit_sliders(panels=None, *, steps=2, log_factor=10.0, print_table=False, ahead=False, ahead_timeout=300.0):
    """Move each control of each panel (default: every registered panel) to `moved_value`, recompute,
    redraw, and report which plotted series changed; each panel gets its values and data back after.

    Costs one `compute` per control (a retrain for the training panels). `ahead=True` first waits for each
    panel's settings computed ahead (`Panel.look_ahead`, at most `ahead_timeout` s), times the move as a student
    gets it (`ahead_seconds`: the data computed ahead where the move is one of them, and the redraw), then
    computes the moved setting afresh and checks that both gave the same plotted data (`ahead_same`).
    Returns a list of SliderEffect."""
    panels = registered_panels() if panels is None else list(panels)
    names = {}
    rows = []
    audit_start, ready = time.perf_counter(), {}
    for panel in panels if ahead else ():
        panel.wait_ahead(ahead_timeout)  # the copies of all panels compute side by side meanwhile
        ready[id(panel)] = time.perf_counter() - audit_start
    for panel in panels:
        names[panel.name] = names.get(panel.name, 0) + 1
        panel_name = panel.name if names[panel.name] == 1 else f"{panel.name} #{names[panel.name]}"
        if panel.data is None:
            panel.set()
        saved_values, saved_data, saved_calls = dict(panel.values), panel.data, panel.calls
        before = _series_of(panel)
        panel._look_ahead = False  # the audit's moves do not restart the copy computing ahead
        try:
            for control_name, control in panel.controls.items():
                if control.kind == "button":
                    continue
                old = saved_values[control_name]
                new = moved_value(Control(**{**asdict(control), "value": old}), steps, log_factor)
                ahead_move = _ahead_move(panel, control_name, new, saved_values) if ahead else None
                panel.computed.pop(setting_key({**saved_values, control_name: new}), None)  # computed afresh
                row, after = _one_move(panel, panel_name, control_name, old, new, saved_values, before)
                if ahead_move is not None and after is not None:
                    seconds, series = ahead_move
                    row.ahead_seconds, row.ahead_same = seconds, not compare_series(series, after)
                row.ahead_ready = ready.get(id(panel))
                rows.append(row)
        finally:
            panel.values, panel.data, panel.calls = saved_values, saved_data, saved_calls
            panel._look_ahead = True
    if print_table:
        print(format_audit(rows))
    return rows


def _series_of(panel):
    fig = panel.figure()
    try:
        return plotted_series(fig)
    finally:
        plt.close(fig)


def _ahead_move(panel, control_name, new, saved_values):
    """(seconds, plotted series) of a move whose data were computed ahead, or None where they were not."""
    if panel.computed.get(setting_key({**saved_values, control_name: new})) is None:
        return None
    start = time.perf_counter()
    panel.values = dict(saved_values)
    panel.set(**{control_name: new})
    series = _series_of(panel)
    return (time.perf_counter() - start, series) if panel.source == "ahead" else None


def _one_move(panel, panel_name, control_name, old, new, saved_values, before):
    start = time.perf_counter()
    try:
        panel.values = dict(saved_values)
        panel.set(**{control_name: new})
        after = _series_of(panel)
    except Exception as error:  # noqa: BLE001 (a panel that fails at an allowed value is a finding)
        return SliderEffect(panel_name, control_name, old, new, False, False, [], {},
                            time.perf_counter() - start, f"{type(error).__name__}: {error}"), None
    changes = compare_series(before, after)
    return SliderEffect(panel_name, control_name, old, new, bool(changes),
                        any(visible(change) for change in changes.values()), list(changes), changes,
                        time.perf_counter() - start), after


def format_audit(rows, width=100):
    """The audit as text: one line per (panel, control), then the series that changed."""
    lines = []
    for row in rows:
        verdict = ("ERROR " + row.error if row.error else "visible change" if row.ok
                   else "change too small to see" if row.changed else "NO CHANGE in the plotted data")
        lines.append(f"{row.panel} / {row.control}: {row.old!r} -> {row.new!r}: {verdict} ({row.seconds:.1f} s)")
        for name, change in row.changes.items():
            lines.append(f"    {name}: {_describe(change)}"[:width])
    return "\n".join(lines)


def _describe(change):
    if change["max_abs"] is None:
        return change["note"]
    parts = [f"max |change| {change['max_abs']:.3g}"]
    if change["pixels"] is not None:
        parts.append(f"{change['pixels']:.0f} px on screen" if change["pixels"] >= 1
                     else "under a pixel on screen (the same picture with other tick values)")
    if change["relative"] is not None:
        parts.append(f"{100 * change['relative']:.1f}% of the colour scale")
    if change["note"]:
        parts.append(change["note"])
    return ", ".join(parts)


# -- the audit inside an executed notebook -----------------------------------------------------------------
AUDIT_TAG = "kdlab-slider-audit"


def save_audit(rows, path):
    """Write the audit rows to a JSON file (what a notebook run hands back to its caller)."""
    from .atomic import write_bytes

    plain = [{**asdict(row), "ok": row.ok, "max_abs": row.max_abs} for row in rows]
    write_bytes(path, json.dumps(plain, indent=1, default=_json_default).encode())


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    return str(value)


def read_audit(path):
    """The rows `save_audit` wrote, as dicts."""
    with open(path) as file:
        return json.load(file)


def with_audit_cell(notebook_path, copy_path, json_path, ahead=False):
    """Copy a notebook with one more cell at the end that audits every slider into `json_path` (`ahead`: as
    `audit_sliders(ahead=True)`, for a kernel started with KDLAB_PANEL_AHEAD=1)."""
    import nbformat

    notebook = nbformat.read(str(notebook_path), as_version=4)
    options = ", ahead=True" if ahead else ""
    cell = nbformat.v4.new_code_cell("from kdlab.widgets import audit_sliders, save_audit\n"
                                     f"save_audit(audit_sliders(print_table=True{options}), {str(json_path)!r})")
    cell.metadata["tags"] = [AUDIT_TAG]
    notebook.cells.append(cell)
    nbformat.write(notebook, str(copy_path))
    return copy_path
