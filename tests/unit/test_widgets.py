"""Headless widget driver: moving a slider changes the plotted data (not pixels)."""
import numpy as np
import pytest
import torch

from kdlab.data import load
from kdlab.errors import ParameterError
from kdlab.lessons import kd as lesson
from kdlab.models import MLP
from kdlab.train import fit
from kdlab.widgets import Panel, choice, slider


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
