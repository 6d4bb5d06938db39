"""Slider settings computed ahead (kdlab.panel_ahead): which settings, computed where, giving what."""
import functools
import os
import sys

import numpy as np
import pytest

from kdlab import panel_ahead, parallel
from kdlab.panel_ahead import neighbours, setting_key
from kdlab.widgets import Panel, audit_sliders, choice, log_slider, slider

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="panels compute ahead on Linux only")


def test_neighbours_are_one_slider_away_nearest_first_and_inside_the_ranges():
    controls = {"A": slider(0.9, 0.0, 1.0, 0.05), "N": slider(1, 1, 20, 1), "LR": log_slider(1e-3, 1e-5, 1e-1),
                "KIND": choice("x", ["x", "y", "z"])}
    values = {"A": 0.9, "N": 1, "LR": 1e-3, "KIND": "x"}
    found = neighbours(controls, values)
    moved = [(name, s[name]) for s in found for name in s if s[name] != values[name]]
    assert all(sum(s[name] != values[name] for name in s) == 1 for s in found)  # one slider at a time
    lr = lambda quarters: float(f"{1e-3 * 10 ** (0.25 * quarters):.12g}")  # noqa: E731
    assert moved == [("A", 0.85), ("A", 0.95), ("N", 2), ("LR", lr(-1)), ("LR", lr(1)), ("KIND", "y"), ("KIND", "z"),
                     ("A", 0.8), ("A", 1.0), ("N", 3), ("LR", lr(-2)), ("LR", lr(2)), ("LR", 1e-4), ("LR", 1e-2)]
    at_the_top = neighbours(controls, {**values, "A": 1.0, "LR": 1e-1})
    assert all(s["A"] <= 1.0 and s["LR"] <= 1e-1 for s in at_the_top)


def _noisy_compute(A, KIND):
    """A compute that says where it ran (its process) and draws what A and KIND decide."""
    rng = np.random.default_rng(7)
    return {"y": A * rng.normal(size=20) + (KIND == "b"), "pid": os.getpid()}


def _draw(d, fig):
    fig.subplots().plot(d["y"])


def _panel(compute=_noisy_compute):
    panel = Panel(compute, _draw, {"A": slider(1.0, 0.0, 2.0, 0.5), "KIND": choice("a", ["a", "b"])})
    panel.AHEAD_FROM_SECONDS = 0.0  # these computes are fast; the copy starts anyway
    return panel


@linux_only
def test_a_move_next_to_the_setting_gets_the_data_computed_ahead_by_another_process(monkeypatch):
    monkeypatch.setenv("KDLAB_PANEL_AHEAD", "1")
    panel = _panel()
    panel.set()
    assert panel.source == "computed" and panel._ahead is not None
    panel.wait_ahead(60)
    data = panel.set(A=1.5)
    assert panel.source == "ahead" and data["pid"] != os.getpid()
    fresh = _noisy_compute(A=1.5, KIND="a")
    np.testing.assert_array_equal(data["y"], fresh["y"])
    panel.stop_ahead()


@linux_only
def test_the_copy_runs_every_parallel_run_itself(monkeypatch):
    """parallel.start inside a compute runs in the copy: the kernel's worker pool is the kernel's."""
    monkeypatch.setenv("KDLAB_PANEL_AHEAD", "1")

    def compute(A, KIND):
        job = parallel.start(functools.partial(os.getpid), 2)
        return {"y": [A], "pid": os.getpid(), "job_pid": job.result()}

    parallel.warm_up(2)  # a live pool in the kernel, as a notebook has one
    panel = _panel(compute)
    panel.set()
    panel.wait_ahead(60)
    data = panel.set(A=0.5)
    assert panel.source == "ahead" and data["job_pid"] == data["pid"] != os.getpid()
    panel.stop_ahead()


@linux_only
def test_the_copy_goes_on_while_nobody_reads_and_leaves_no_files(monkeypatch):
    """Results of a megabyte each, and the kernel busy elsewhere (it reads nothing until the next move): the
    copy still computes every neighbour; stopping it removes its folder."""
    monkeypatch.setenv("KDLAB_PANEL_AHEAD", "1")
    panel = _panel(lambda A, KIND: {"y": np.full(131_072, A) + (KIND == "b")})
    panel.set()
    ahead = panel._ahead
    ahead._process.join(timeout=60)
    assert not ahead.running()
    panel.stop_ahead()
    assert not ahead.folder.exists() and len(panel.computed) == 1 + len(neighbours(panel.controls, panel.values))
    data = panel.set(A=1.5)
    assert panel.source == "ahead" and data["y"][0] == 1.5
    panel.stop_ahead()


def test_nothing_is_computed_ahead_when_turned_off_or_headless(monkeypatch):
    monkeypatch.setenv("KDLAB_PANEL_AHEAD", "0")
    panel = _panel()
    panel.set()
    assert panel._ahead is None
    monkeypatch.delenv("KDLAB_PANEL_AHEAD")
    monkeypatch.setenv("KDLAB_HEADLESS", "1")
    assert not panel_ahead.wanted()
    panel.set(A=0.5)
    assert panel._ahead is None


def test_a_setting_seen_before_is_kept_and_not_computed_again(monkeypatch):
    monkeypatch.setenv("KDLAB_PANEL_AHEAD", "0")
    calls = []
    panel = _panel(lambda A, KIND: calls.append(A) or {"y": [A]})
    panel.set(A=0.5), panel.set(A=1.0), panel.set(A=0.5)
    assert calls == [0.5, 1.0] and panel.source == "kept" and panel.calls == 3
    panel.KEEP = 1
    panel.set(A=1.5), panel.set(A=0.5)
    assert calls == [0.5, 1.0, 1.5, 0.5]  # only the newest setting is kept


def test_the_audit_computes_each_move_afresh_even_when_kept(monkeypatch):
    monkeypatch.setenv("KDLAB_PANEL_AHEAD", "0")
    calls = []
    panel = _panel(lambda A, KIND: calls.append((A, KIND)) or {"y": [A, 1 + (KIND == "b")]})
    panel.set(A=0.0)
    panel.set(A=1.0)  # the default again: A=0.0, two steps down, is kept
    rows = audit_sliders([panel])
    assert calls.count((0.0, "a")) == 2 and [r.ok for r in rows] == [True, True]


@linux_only
def test_the_audit_times_the_moves_computed_ahead_and_checks_they_plot_the_same(monkeypatch):
    monkeypatch.setenv("KDLAB_PANEL_AHEAD", "1")
    panel = _panel()
    panel.set()
    rows = audit_sliders([panel], ahead=True, ahead_timeout=60)
    assert [(r.control, r.ahead_same) for r in rows] == [("A", True), ("KIND", True)]
    assert all(r.ahead_seconds is not None and r.ahead_ready is not None for r in rows)
    panel.stop_ahead()


@linux_only
def test_the_audit_catches_a_compute_that_is_not_a_function_of_its_values(monkeypatch):
    """A compute that plots its process id gives the copy's ahead and the kernel's afresh: the audit must see
    that the two plots differ."""
    monkeypatch.setenv("KDLAB_PANEL_AHEAD", "1")
    panel = _panel(lambda A, KIND: {"y": [A, os.getpid(), 1 + (KIND == "b")]})
    panel.set()
    rows = audit_sliders([panel], ahead=True, ahead_timeout=60)
    assert [r.ahead_same for r in rows] == [False, False]
    panel.stop_ahead()


def test_setting_keys_ignore_the_order_of_the_values():
    assert setting_key({"A": 1.0, "B": "x"}) == setting_key({"B": "x", "A": 1.0})
    assert setting_key({"A": 1.0}) != setting_key({"A": 1.5})


def test_setting_keys_match_the_values_a_browser_slider_sends():
    """A log slider's widget sends 10 ** exponent and a float slider step multiples computed its own way: the
    neighbours computed ahead must still be found under those values."""
    controls = {"LR": log_slider(1e-4, 1e-5, 1e-1), "A": slider(0.8, 0.0, 1.0, 0.05)}
    ahead = {setting_key(s) for s in neighbours(controls, {"LR": 1e-4, "A": 0.8})}
    assert setting_key({"LR": 10 ** -3.75, "A": 0.8}) in ahead and setting_key({"LR": 10 ** -4.5, "A": 0.8}) in ahead
    assert setting_key({"LR": 1e-4, "A": 0.05 * 17}) in ahead
    assert setting_key({"LR": 1e-4, "A": 0.7000000000000001}) in ahead
