"""Headless widget driver: moving a slider changes the plotted data (not pixels)."""
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from kdlab.data import load
from kdlab.errors import ParameterError
from kdlab.lessons import kd as lesson
from kdlab.models import MLP
from kdlab.train import fit
from kdlab import widgets
from kdlab.widgets import Panel, audit_sliders, choice, log_slider, moved_value, plotted_digest, plotted_series, slider


@pytest.fixture(scope="module")
def tiny_digits():
    data = load("digits", train_size=100, seed=0)
    torch.manual_seed(0)
    teacher = MLP(64, hidden=(32,), num_classes=10)
    fit(teacher, data, epochs=5, lr=0.05, batch_size=50, progress=False)
    return data, teacher


def test_panel_recomputes_on_set_and_validates_ranges():
    panel = Panel(lambda K, MODE: {"y": [K * 2], "mode": MODE}, lambda d, fig: fig.subplots().plot(d["y"]),
                  {"K": slider(1, 0, 5, 1), "MODE": choice("a", ["a", "b"])})
    assert panel.set()["y"] == [2]
    assert panel.set(K=3)["y"] == [6] and panel.values["MODE"] == "a"
    with pytest.raises(ParameterError, match=r"K=9 .*\[0, 5\]"):
        panel.set(K=9)
    with pytest.raises(ParameterError, match="MODE='c'"):
        panel.set(MODE="c")
    with pytest.raises(ParameterError, match="control"):
        panel.set(NOPE=1)
    assert panel.calls == 2


def test_temperature_slider_changes_the_soft_targets_and_entropy():
    logits = torch.tensor([6.0, 2.0, 1.0, -1.0, 0.0])
    panel = lesson.temperature_panel(logits, true_class=0)
    low = panel.set(TEMPERATURE=1.0)
    high = panel.set(TEMPERATURE=10.0)
    assert np.argmax(low["probs"]) == 0
    assert low["probs"][0] > high["probs"][0]
    assert high["entropy"] > low["entropy"]
    expected = torch.softmax(logits / 10.0, 0).tolist()
    assert np.allclose(high["probs"], expected)
    panel.figure()  # draws without error


def test_alpha_and_temperature_sliders_retrain_the_student(tiny_digits):
    data, teacher = tiny_digits
    panel = lesson.retrain_panel(data, teacher, hidden=(8,), recipe={"epochs": 3, "lr": 0.05, "batch_size": 50,
                                                                      "progress": False})
    base = panel.set(ALPHA=0.9, TEMPERATURE=4.0)
    moved_alpha = panel.set(ALPHA=0.2)
    moved_temperature = panel.set(TEMPERATURE=1.0)
    assert base["train_loss"] != moved_alpha["train_loss"]
    assert moved_alpha["train_loss"] != moved_temperature["train_loss"]
    assert base["ce_test_acc"] == moved_temperature["ce_test_acc"], "the CE reference stays fixed"
    again = panel.set(ALPHA=0.9, TEMPERATURE=4.0)
    assert again["train_loss"] == base["train_loss"], "same settings and seed give the same curves"
    assert "student test accuracy" in panel.readout_text()


def test_alpha_zero_is_the_cross_entropy_student(tiny_digits):
    data, teacher = tiny_digits
    recipe = {"epochs": 2, "lr": 0.05, "batch_size": 50, "progress": False}
    panel = lesson.retrain_panel(data, teacher, recipe=recipe)
    zero = panel.set(ALPHA=0.0)
    assert zero["test_acc"] == zero["ce_test_acc"]


def test_show_renders_once_when_headless(monkeypatch, capsys):
    monkeypatch.setenv("KDLAB_HEADLESS", "1")
    calls = []
    panel = Panel(lambda K: calls.append(K) or {"k": K}, lambda d, fig: fig.subplots(),
                  {"K": slider(2, 0, 5, 1)}, readout=lambda d: f"k is {d['k']}")
    assert panel.show() is None
    assert calls == [2] and "k is 2" in capsys.readouterr().out


def test_interactive_panel_builds_sliders_that_recompute(monkeypatch):
    monkeypatch.delenv("KDLAB_HEADLESS", raising=False)
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: shown.extend(a))
    panel = Panel(lambda K: {"k": K}, lambda d, fig: fig.subplots(), {"K": slider(2, 0, 5, 1)},
                  readout=lambda d: f"k={d['k']}")
    assert panel.show(interactive=True) is None, "a returned box would be displayed a second time"
    assert shown.count(panel.box) == 1
    slider_widget = panel.widgets["K"]
    assert slider_widget.continuous_update is False
    slider_widget.value = 4  # what a browser does on release
    assert panel.data == {"k": 4} and "k=4" in panel._readout_widget.value
    assert f"data-plotted='{panel.plotted}'" in panel._readout_widget.value


# -- plotted data, the registry and the slider audit -------------------------------------------------------
def wave_panel(**controls):
    """A panel whose plot depends on K and MODE only; other controls are ignored by its compute."""

    def compute(K, MODE="a", **ignored):
        x = np.linspace(0, 1, 30)
        return {"x": x, "y": np.sin(K * x) * (2 if MODE == "b" else 1), "K": K, **ignored}

    def draw(d, fig):
        ax = fig.subplots()
        ax.plot(d["x"], d["y"], label=f"sin(K x) at K = {d['K']}")  # the label quotes the slider
        ax.set_title(f"K = {d['K']}")
        ax.set_xlabel("x")
        ax.set_ylim(-2.5, 2.5)

    return Panel(compute, draw, {"K": slider(3, 1, 10, 1), **controls}, title="wave")


def draw_everything(y, fig):
    ax_lines, ax_image = fig.subplots(1, 2)
    ax_lines.plot(y, label="line")
    ax_lines.fill_between(range(len(y)), y - 0.1, y + 0.1)
    ax_lines.scatter([0, 1], y[:2], c=y[:2])
    ax_lines.bar([0, 1, 2], y[:3], label="bars")
    fig.colorbar(ax_image.imshow(np.outer(y, y)), ax=ax_image)
    ax_image.set_title("outer product")


def test_plotted_series_reads_lines_bands_points_bars_and_images_but_not_colour_bars():
    fig = plt.figure()
    draw_everything(np.array([0.5, 1.0, 2.0, 1.5]), fig)
    series = plotted_series(fig)
    plt.close(fig)
    kinds = {s.name: s.kind for s in series}
    assert kinds == {"axes 1: line": "line", "axes 1: band 1": "band", "axes 1: points 1": "points",
                     "axes 1: colours of points 1": "colours", "axes 1: bars": "bars",
                     "outer product: image 1": "image"}
    line = next(s for s in series if s.kind == "line")
    assert line.y.tolist() == [0.5, 1.0, 2.0, 1.5] and line.points.shape == (4, 2)
    assert next(s for s in series if s.kind == "bars").y.tolist() == [0.5, 1.0, 2.0]


def test_plotted_digest_follows_the_data_not_the_text():
    def digest(y, title):
        fig = plt.figure()
        draw_everything(np.asarray(y, dtype=float), fig)
        fig.suptitle(title)
        fig.axes[0].set_title(title)
        try:
            return plotted_digest(fig)
        finally:
            plt.close(fig)

    assert digest([1, 2, 3, 4], "a") == digest([1, 2, 3, 4], "b")
    assert digest([1, 2, 3, 4], "a") != digest([1, 2, 3, 4.001], "a")


def test_every_panel_is_registered_and_headless_show_records_what_it_plotted(monkeypatch, capsys):
    monkeypatch.setenv("KDLAB_HEADLESS", "1")
    panel = wave_panel()
    assert widgets.registered_panels()[-1] is panel
    panel.show()
    first = panel.plotted
    assert first and widgets.registered_panels().count(panel) == 1
    panel.set(K=5)
    fig = panel.figure()
    assert plotted_digest(fig) != first
    plt.close(fig)


def test_moved_value_goes_a_few_steps_where_there_is_room():
    assert moved_value(slider(0.9, 0.0, 1.0, 0.05)) == 0.8
    assert moved_value(slider(1, 0, 10, 1)) == 3, "no room below: up"
    assert moved_value(slider(0, 0, 1, 1)) == 1, "not two steps either way: the other end"
    assert moved_value(log_slider(1e-4, 1e-5, 1e-1)) == pytest.approx(1e-5)
    assert moved_value(log_slider(1e-5, 1e-5, 1e-1)) == pytest.approx(1e-4)
    assert moved_value(choice("a", ["a", "b", "c"])) == "c"
    assert moved_value(choice("b", ["a", "b", "c"])) == "a"


def test_audit_finds_the_control_that_changes_nothing_and_restores_the_panel():
    panel = wave_panel(IGNORED=slider(0.5, 0.0, 1.0, 0.1), MODE=choice("a", ["a", "b"]))
    panel.set()
    data, calls = panel.data, panel.calls
    rows = {row.control: row for row in audit_sliders([panel])}
    assert rows["K"].ok and rows["K"].new == 1 and rows["K"].series == ["K = 3: sin(K x) at K = 3"]
    assert rows["MODE"].ok and rows["MODE"].new == "b"
    ignored = rows["IGNORED"]
    assert (ignored.old, ignored.new) == (0.5, 0.3)
    assert not ignored.changed and not ignored.ok and ignored.series == []
    assert panel.values == {"K": 3, "IGNORED": 0.5, "MODE": "a"} and panel.data is data and panel.calls == calls
    assert "wave / IGNORED: 0.5 -> 0.3: NO CHANGE" in widgets.format_audit(list(rows.values()))


def test_audit_tells_a_change_too_small_to_see_from_a_visible_one():
    def compute(EPS):
        return {"y": np.array([0.0, 1.0, 2.0]) + EPS}

    panel = Panel(compute, lambda d, fig: fig.subplots().plot(d["y"]), {"EPS": slider(0.0, 0.0, 1e-6, 1e-7)})
    (row,) = audit_sliders([panel])
    assert row.changed and not row.visible and not row.ok
    assert row.changes["axes 1: line 1"]["pixels"] < 1


def test_audit_calls_a_curve_that_only_rescales_its_axes_no_visible_change():
    """The same picture with other tick values (an autoscaled curve multiplied by 2) is not a visible change."""
    panel = Panel(lambda SCALE: {"y": SCALE * np.array([0.0, 1.0, 3.0, 2.0])},
                  lambda d, fig: fig.subplots().plot(d["y"]), {"SCALE": slider(1.0, 0.5, 2.0, 0.25)})
    (row,) = audit_sliders([panel])
    assert row.changed and not row.visible
    assert "under a pixel" in widgets.format_audit([row])


def test_audit_reports_a_control_whose_compute_fails():
    def compute(K):
        if K != 3:
            raise RuntimeError("diverged")
        return {"y": [K]}

    panel = Panel(compute, lambda d, fig: fig.subplots().plot(d["y"]), {"K": slider(3, 1, 10, 1)})
    (row,) = audit_sliders([panel])
    assert not row.ok and row.error == "RuntimeError: diverged" and panel.values == {"K": 3}


def test_audit_cell_copy_and_json_round_trip(tmp_path):
    import nbformat

    source = tmp_path / "01_x.ipynb"
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(notebook, str(source))
    copy = widgets.with_audit_cell(source, tmp_path / "copy.ipynb", tmp_path / "audit.json")
    cells = nbformat.read(str(copy), as_version=4).cells
    assert len(cells) == 2 and widgets.AUDIT_TAG in cells[-1].metadata["tags"] and "audit.json" in cells[-1].source
    assert len(nbformat.read(str(source), as_version=4).cells) == 1, "the source is not touched"
    panel = wave_panel(IGNORED=slider(0.5, 0.0, 1.0, 0.1))
    widgets.save_audit(audit_sliders([panel]), tmp_path / "audit.json")
    rows = widgets.read_audit(tmp_path / "audit.json")
    assert [(r["control"], r["ok"]) for r in rows] == [("K", True), ("IGNORED", False)]
    assert rows[0]["max_abs"] > 0.5 and rows[0]["panel"] == "wave"


def test_kdlab_record_returns_nothing_so_a_final_record_cell_shows_no_out(capsys):
    import kdlab
    from kdlab import results

    assert kdlab.record("h4_check", 1.5) is None
    assert results.all_results()["h4_check"] == 1.5
    results.clear()


def test_a_wall_clock_axes_is_not_plotted_data():
    """A timing bar differs between two runs of one setting: it must not make a slider look effective."""
    import matplotlib.pyplot as plt

    from kdlab.widgets import mark_wall_clock, plotted_digest

    def figure(accuracy, milliseconds, marked=True):
        fig, (ax_acc, ax_time) = plt.subplots(1, 2)
        ax_acc.plot([1, 2], [50.0, accuracy])
        ax_time.bar(["KD"], [milliseconds])
        if marked:
            mark_wall_clock(ax_time)
        digest = plotted_digest(fig)
        plt.close(fig)
        return digest

    assert figure(60.0, 1.0) == figure(60.0, 2.0)
    assert figure(60.0, 1.0) != figure(61.0, 1.0)
    assert figure(60.0, 1.0, marked=False) != figure(60.0, 2.0, marked=False)
