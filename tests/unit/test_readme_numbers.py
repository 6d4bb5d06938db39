"""The README's measured numbers are the recorded ones: its notebook table is exactly what
benchmarks/readme_numbers.py renders from benchmarks/results/class_run.json (a `make run` in class)."""
import copy
import json
from pathlib import Path

import pytest

from .benchmark_scripts import load_script

ROOT = Path(__file__).resolve().parents[2]


def _renderer():
    return load_script("readme_numbers")


def test_the_readme_table_is_rendered_from_the_recorded_class_run():
    numbers = _renderer()
    recorded = json.loads(numbers.RECORDED.read_text())
    assert recorded["profile"] == "class"
    readme = (ROOT / "README.md").read_text()
    assert numbers.rendered_block(readme) == numbers.render(recorded), \
        "README.md's notebook table differs from the recorded run: python benchmarks/readme_numbers.py --write"


def test_a_retyped_number_is_caught():
    numbers = _renderer()
    recorded = json.loads(numbers.RECORDED.read_text())
    table = numbers.render(recorded)
    changed = copy.deepcopy(recorded)
    first = next(stem for stem, run in changed["notebooks"].items() if run["status"] == "ok" and run["seconds"] > 0)
    changed["notebooks"][first]["seconds"] += 60
    assert numbers.render(changed) != table


@pytest.mark.parametrize("stem", list(_renderer().ROWS))
def test_every_notebook_has_a_row_and_ran_in_the_recorded_run(stem):
    recorded = json.loads(_renderer().RECORDED.read_text())
    assert recorded["notebooks"][stem]["status"] == "ok", f"{stem} did not run to the end in the recorded class run"
