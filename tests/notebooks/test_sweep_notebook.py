"""`kdlab sweep` over notebook 01 in the smoke profile: a 2 x 2 ALPHA x TEMPERATURE grid on 2 workers,
a re-run that does no new work, and a point that passes validation but fails inside the notebook."""
import time
from pathlib import Path

import pytest

from kdlab import cli
from kdlab.sweep.table import read_csv

from .conftest import NOTEBOOK_DIR

NOTEBOOK = NOTEBOOK_DIR / "01_knowledge_distillation.ipynb"
TIMEOUTS = ["--execution-timeout", "240", "--timeout", "480"]


def sweep(*args):
    return cli.main(["sweep", str(NOTEBOOK), "--profile", "smoke", "--workers", "2", *TIMEOUTS, *map(str, args)])


def file_times(folder):
    return {path.name: path.stat().st_mtime_ns for path in Path(folder).iterdir()}


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    started = time.perf_counter()
    code = sweep("-p", "ALPHA", "0.5", "0.9", "-p", "TEMPERATURE", "2", "4", "--out", out)
    return out, code, time.perf_counter() - started


@pytest.mark.notebook
def test_two_by_two_grid_gives_four_ok_rows_and_a_heat_map(grid_sweep):
    out, code, seconds = grid_sweep
    rows = read_csv(out / "results.csv")
    assert code == 0, [(row["point"], row["error"]) for row in rows]
    assert [row["point"] for row in rows] == ["ALPHA=0.5__TEMPERATURE=2", "ALPHA=0.5__TEMPERATURE=4",
                                              "ALPHA=0.9__TEMPERATURE=2", "ALPHA=0.9__TEMPERATURE=4"]
    assert all(row["status"] == "ok" and row["attempts"] == "1" for row in rows)
    assert all(0 <= float(row["digits_kd_acc"]) <= 100 for row in rows)
    assert {"digits_kd_minus_ce_ci.0", "digits_kd_minus_ce_ci.1", "run_seconds"} <= set(rows[0])
    assert (out / "sweep.png").stat().st_size > 10_000
    print(f"2 x 2 sweep of notebook 01 (smoke, 2 workers): {seconds:.0f} s; point times "
          f"{[row['seconds'] for row in rows]}")


@pytest.mark.notebook
def test_rerun_does_no_new_work(grid_sweep, capsys):
    out, code, _ = grid_sweep
    before, table_before = file_times(out / "points"), read_csv(out / "results.csv")
    started = time.perf_counter()
    assert sweep("-p", "TEMPERATURE", "2", "4", "-p", "ALPHA", "0.5", "0.9", "--out", out) == code
    seconds = time.perf_counter() - started
    assert file_times(out / "points") == before  # no notebook executed, no record rewritten
    assert read_csv(out / "results.csv") == table_before
    assert "0 ran, 4 reused" in capsys.readouterr().out
    assert seconds < 30, f"a sweep with nothing to do took {seconds:.0f} s"


@pytest.mark.notebook
def test_a_point_failing_inside_the_notebook_is_reported_and_the_other_succeeds(tmp_path):
    # DEVICE='cuda:99' is a valid DEVICE value, so the grid passes validation; no machine has GPU 99
    assert sweep("-p", "DEVICE", "cpu", "cuda:99", "--out", tmp_path) == 1
    rows = {row["point"]: row for row in read_csv(tmp_path / "results.csv")}
    assert rows["DEVICE=cpu"]["status"] == "ok" and rows["DEVICE=cpu"]["digits_kd_acc"]
    assert rows["DEVICE=cuda_99"]["status"] == "failed"
    assert "cuda" in rows["DEVICE=cuda_99"]["error"].lower()  # the notebook's own message says why
