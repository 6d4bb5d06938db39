"""benchmarks/slider_effects.py: its table rows and the medians it reads back from them."""
import types
from pathlib import Path

import pytest

from .benchmark_scripts import load_script



@pytest.fixture(scope="module")
def bench():
    return load_script("slider_effects")


def _row(seconds, ahead_seconds=None, same=True):
    return {"panel": "p", "control": "A", "old": 1.0, "new": 0.5, "ok": True, "changed": True, "error": None,
            "changes": {"axes: line": {"max_abs": 1.0, "pixels": 3.0, "relative": None, "note": ""}},
            "seconds": seconds, "ahead_seconds": ahead_seconds, "ahead_same": same if ahead_seconds else None,
            "ahead_ready": 4.0 if ahead_seconds else None}


def test_the_medians_count_a_move_computed_ahead_at_its_redraw_and_the_others_as_computed(bench):
    run = types.SimpleNamespace(status="ok", seconds=60.0, error=None)
    block = bench.notebook_block(Path("03_x.ipynb"), run, [_row(1.3, 0.2), _row(2.5, 0.4), _row(0.7), _row(0.9)])
    assert "0.2 (same plot; ready 4 s into the audit)" in block and "| 0.7 | - |" in block
    line = bench.medians_line(block)
    assert "4 moves: 1.10 s computed" in line and "0.55 s as a student gets it" in line  # (0.4 + 0.7) / 2


def test_a_move_computed_ahead_that_plots_something_else_is_flagged(bench):
    run = types.SimpleNamespace(status="ok", seconds=60.0, error=None)
    block = bench.notebook_block(Path("03_x.ipynb"), run, [_row(1.3, 0.2, same=False)])
    assert "**a different plot**" in block


def test_a_section_names_the_processor_and_the_speed_probes(bench, tmp_path):
    from kdlab.profiling import cpu_model

    run = types.SimpleNamespace(status="ok", seconds=60.0, error=None)
    blocks = {"03_x": bench.notebook_block(Path("03_x.ipynb"), run, [_row(1.3)])}
    text = bench.write_results("class", blocks, tmp_path / "results.md", probes=(0.96, 0.75))
    assert f"CPU cores, {cpu_model()}), python" in text and "speed probe (`speed_probe.py`) 0.96 s, then 0.75 s." in text


def test_the_speed_probe_times_real_steps_and_leaves_the_threads_alone():
    import torch

    probe = load_script("speed_probe")
    threads = torch.get_num_threads()
    short, longer = probe.probe_seconds(steps=5, repeats=1), probe.probe_seconds(steps=60, repeats=1)
    assert 0 < short < longer, "more steps must take longer: the probe times the steps it runs"
    assert torch.get_num_threads() == threads
