"""kdlab sweep: grid, point ids, validation, table, resuming, plot choice, and end-to-end runs of a tiny
notebook (no torch in its cells) through the local executor and a loopback Dask cluster."""
import json
from pathlib import Path

import nbformat
import pytest

from kdlab import cli
from kdlab.errors import KdlabError, ParameterError
from kdlab.runner import NotebookRun
from kdlab.sweep import EXECUTORS, build_grid, parse_value, point_id, run_sweep
from kdlab.sweep import points as sweep_points
from kdlab.sweep.grid import Grid, notebook_parameters
from kdlab.sweep.plot import choose_plot, draw
from kdlab.sweep.run import plan_tasks
from kdlab.sweep.table import flatten, make_rows, read_csv, write_csv

TINY_PARAMETERS = 'PROFILE = "class"\nSEED = 0\nALPHA = 0.5\nTEMPERATURE = 1.0'
TINY_BODY = """\
import kdlab
kdlab.record("score", ALPHA * TEMPERATURE)
kdlab.record("seed", SEED)
if ALPHA == 0.7:
    raise ValueError("ALPHA = 0.7 breaks this notebook on purpose")
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A notebook that records ALPHA * TEMPERATURE and fails when ALPHA == 0.7."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell(TINY_PARAMETERS)
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [parameters, nbformat.v4.new_code_cell(TINY_BODY)]
    path = tmp_path_factory.mktemp("notebooks") / "tiny.ipynb"
    nbformat.write(notebook, str(path))
    return path


def sweep(*args):
    """`kdlab sweep ARGS` in this process; its exit code."""
    return cli.main(["sweep", *map(str, args)])


# --------------------------------------------------------------------------- grid and point ids


@pytest.mark.parametrize("text,value", [("0.5", 0.5), ("4", 4), ("1e-5", 1e-5), ("-3", -3), ("mnist1d", "mnist1d"),
                                        ("true", True), ("on", "on"), ("no", "no"), ("[64, 32]", [64, 32])])
def test_values_are_read_as_yaml_scalars(text, value):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_grid_is_the_cartesian_product_in_a_fixed_order():
    grid, _ = build_grid([["TEMPERATURE", "4", "2"], ["ALPHA", "0.1", "0.5", "0.1"]], seeds=["0", "1"])
    assert grid.axes == {"ALPHA": (0.1, 0.5), "TEMPERATURE": (4, 2), "SEED": (0, 1)}  # repeats dropped
    ids = [point.id for point in grid.points()]
    assert len(ids) == 8 and ids[:3] == ["ALPHA=0.1__TEMPERATURE=4__SEED=0", "ALPHA=0.1__TEMPERATURE=4__SEED=1",
                                         "ALPHA=0.1__TEMPERATURE=2__SEED=0"]
    reordered, _ = build_grid([["ALPHA", "0.1", "0.5"], ["SEED", "0", "1"], ["TEMPERATURE", "4", "2"]])
    assert [point.id for point in reordered.points()] == ids  # the same grid gives the same ids


def test_point_ids_are_safe_file_names_and_stay_distinct():
    assert point_id({"DEVICE": "cuda:1", "DATASET": "a/b c"}) == "DEVICE=cuda_1__DATASET=a_b_c"
    assert point_id({"LR": 1e-5, "FLAG": True, "HIDDEN": [64, 32]}) == "LR=1e-05__FLAG=true__HIDDEN=_64_32_"
    long_a, long_b = point_id({"NAME": "x" * 300 + "a"}), point_id({"NAME": "x" * 300 + "b"})
    assert len(long_a) <= 120 and long_a != long_b
    with pytest.raises(ParameterError, match="distinct point ids"):
        Grid.from_axes({"DEVICE": ["cuda:1", "cuda_1"]}).points()


def test_grid_file_is_read_and_the_command_line_overrides_it(tmp_path):
    grid_file = tmp_path / "grid.yaml"
    grid_file.write_text("parameters:\n  ALPHA: [0.1, 0.9]\n  LR: 1e-3\nseeds: [3]\nmetric: score\n")
    grid, metric = build_grid([["ALPHA", "0.5"]], grid_file)
    assert grid.axes == {"ALPHA": (0.5,), "LR": (1e-3,), "SEED": (3,)} and metric == "score"
    example = Path(__file__).resolve().parents[2] / "examples" / "sweep_alpha_temperature.yaml"
    grid, metric = build_grid([], example)
    assert len(grid.points()) == 9 and grid.swept == ["ALPHA", "TEMPERATURE"] and metric == "digits_kd_acc"


@pytest.mark.parametrize("cli_parameters,grid_text,seeds,fragment", [
    ([["ALPHA"]], None, None, "a name and at least one value"),
    ([["PROFILE", "smoke"]], None, None, "use --profile"),
    ([["ALPHA-1", "0.5"]], None, None, "Python identifier"),
    ([["SEED", "0"]], None, ["1"], "given once"),
    ([], None, None, "at least one parameter to sweep"),
    ([], "ALPHA: [0.1]\n", None, "'parameters' (NAME: [values])"),
    ([], "parameters: {ALPHA: [0.1]}\nworkers: 2\n", None, "optionally 'seeds' and 'metric'"),
])
def test_a_malformed_grid_gets_one_clear_message(tmp_path, cli_parameters, grid_text, seeds, fragment):
    grid_file = None
    if grid_text is not None:
        grid_file = tmp_path / "grid.yaml"
        grid_file.write_text(grid_text)
    with pytest.raises(ParameterError) as info:
        build_grid(cli_parameters, grid_file, seeds)
    assert fragment in str(info.value)


def test_notebook_parameters_come_from_the_parameters_cell(tiny):
    assert notebook_parameters(tiny) == ["PROFILE", "SEED", "ALPHA", "TEMPERATURE"]


@pytest.mark.parametrize("arguments,message", [
    (["-p", "ALPHA", "0.5", "1.5"], "ALPHA=1.5 is not allowed: ALPHA must be a number in [0, 1]."),
    (["-p", "TEMPERATURE", "0"], "TEMPERATURE=0 is not allowed: TEMPERATURE must be a number in (0, 1000]"),
    (["-p", "ALHPA", "0.5"], "-p='ALHPA' is not allowed: -p must be a parameter of tiny.ipynb: "
                             "one of PROFILE, SEED, ALPHA, TEMPERATURE."),
    (["--seeds", "0", "-1"], "SEED=-1 is not allowed: SEED must be an integer >= 0."),
    (["-p", "ALPHA", "0.5", "--workers", "0"], "--workers=0 is not allowed: --workers must be an integer >= 1."),
    (["-p", "ALPHA", "0.5", "--executor", "dask"], "--scheduler=None is not allowed"),
])
def test_bad_input_stops_before_any_point_runs(tiny, tmp_path, capsys, monkeypatch, arguments, message):
    monkeypatch.setattr(sweep_points, "execute_notebook", lambda *a, **k: pytest.fail("a point ran"))
    assert sweep(tiny, "--out", tmp_path / "out", *arguments) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"kdlab sweep: {message}") and len(error.splitlines()) == 1, error
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- table


def test_results_are_flattened_into_columns():
    flat = flatten({"acc": 91.5, "ci": [1.0, 2.0], "stats": {"mean": 3, "n": {"seeds": 5}},
                    "curve": list(range(20)), "name": "kd", "nested": [[1], [2]]})
    assert flat == {"acc": 91.5, "ci.0": 1.0, "ci.1": 2.0, "stats.mean": 3, "stats.n.seeds": 5,
                    "curve": json.dumps(list(range(20))), "name": "kd", "nested": "[[1], [2]]"}


def test_table_has_one_row_per_point_and_survives_csv(tmp_path):
    records = [
        {"point": "ALPHA=0.1", "parameters": {"ALPHA": 0.1}, "status": "ok", "seconds": 12.34, "attempts": 1,
         "error": None, "results": {"acc": 90.0, "status": "mine", "loss": "nan"}, "not_finite": ["loss"]},
        {"point": "ALPHA=0.7", "parameters": {"ALPHA": 0.7}, "status": "timeout", "seconds": 60, "attempts": 2,
         "error": "a cell ran longer\nthan 30 s", "results": {}},
    ]
    rows = make_rows(records, ["ALPHA"])
    assert rows[0]["result.status"] == "mine" and rows[0]["loss"] != rows[0]["loss"]  # NaN decoded
    assert rows[1]["error"] == "a cell ran longer | than 30 s"
    read = read_csv(write_csv(rows, tmp_path / "results.csv"))
    assert list(read[0]) == ["point", "ALPHA", "status", "seconds", "attempts", "acc", "result.status", "loss",
                             "error"]
    assert [row["status"] for row in read] == ["ok", "timeout"] and read[1]["acc"] == ""
    assert read[0]["seconds"] == "12.3" and read[1]["attempts"] == "2"


# --------------------------------------------------------------------------- resuming (no kernels)


class FakeNotebooks:
    """Stands in for execute_notebook: writes an executed notebook with results, counts runs."""

    def __init__(self):
        self.ran = []

    def __call__(self, path, out_path, *, profile, parameters, retries, **timeouts):
        self.ran.append(Path(out_path).stem)
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        notebook = nbformat.v4.new_notebook()
        notebook.metadata["kdlab"] = {"results": {"score": parameters["ALPHA"] * 10, "a_label": "x"}}
        nbformat.write(notebook, str(out_path))
        status = {0.7: "failed", 0.9: "timeout"}.get(parameters["ALPHA"], "ok")
        return NotebookRun(Path(path), Path(out_path), status, 0.1, results={"score": 1, "a_label": "x"},
                           error=None if status == "ok" else f"{status} on purpose",
                           attempts=retries + 1 if status == "timeout" else 1)


@pytest.fixture
def fake(monkeypatch):
    fake = FakeNotebooks()
    monkeypatch.setattr(sweep_points, "execute_notebook", fake)
    return fake


def test_rerun_skips_points_that_finished_ok_and_reruns_the_others(tiny, tmp_path, fake):
    grid, _ = build_grid([["ALPHA", "0.5", "0.7", "0.9"]])
    first = run_sweep(tiny, grid, profile="smoke", out=tmp_path, workers=2, progress=False)
    assert sorted(fake.ran) == ["ALPHA=0.5", "ALPHA=0.7", "ALPHA=0.9"]
    assert [(row["status"], row["attempts"]) for row in first.rows] == [("ok", 1), ("failed", 1), ("timeout", 2)]
    assert first.metric == "score"  # the first recorded number, in recording order
    record = json.loads((tmp_path / "points" / "ALPHA=0.5.json").read_text())
    assert record["status"] == "ok" and record["parameters"] == {"ALPHA": 0.5} and record["profile"] == "smoke"
    assert not list((tmp_path / "points").glob(".*"))  # no temporary files left behind

    fake.ran.clear()
    second = run_sweep(tiny, grid, profile="smoke", out=tmp_path, progress=False)
    assert sorted(fake.ran) == ["ALPHA=0.7", "ALPHA=0.9"] and second.reused == ["ALPHA=0.5"]
    assert read_csv(tmp_path / "results.csv")[0]["seconds"] == str(first.rows[0]["seconds"])


@pytest.mark.parametrize("change", ["profile", "notebook", "executed notebook deleted", "record corrupt"])
def test_a_finished_point_runs_again_when_what_it_ran_changed(tiny, tmp_path, fake, change):
    notebook = tmp_path / "copy.ipynb"
    notebook.write_bytes(tiny.read_bytes())
    grid, _ = build_grid([["ALPHA", "0.5"]])
    run_sweep(notebook, grid, profile="smoke", out=tmp_path / "out", progress=False)
    profile = "class" if change == "profile" else "smoke"
    if change == "notebook":
        notebook.write_text(notebook.read_text().replace("0.7", "0.8"))
    elif change == "executed notebook deleted":
        (tmp_path / "out" / "points" / "ALPHA=0.5.ipynb").unlink()
    elif change == "record corrupt":
        (tmp_path / "out" / "points" / "ALPHA=0.5.json").write_text("{")
    result = run_sweep(notebook, grid, profile=profile, out=tmp_path / "out", progress=False)
    assert fake.ran == ["ALPHA=0.5", "ALPHA=0.5"] and result.ran == ["ALPHA=0.5"]


def test_a_task_travels_as_json_for_batch_systems(tiny, tmp_path):
    grid, _ = build_grid([["ALPHA", "0.5"]], seeds=[1])
    task = plan_tasks(tiny, grid, profile="smoke", out=tmp_path, outer_timeout=60)[0]
    assert sweep_points.PointTask(**json.loads(sweep_points.task_json(task))) == task
    assert task.record_path == tmp_path.resolve() / "points" / "ALPHA=0.5__SEED=1.json"


def test_executors_are_pluggable_and_a_lost_point_is_marked_failed(tiny, tmp_path, fake, monkeypatch):
    class LosesTheSecondPoint:
        """A serial executor whose second task never comes back (as if its machine died)."""

        def map_unordered(self, function, tasks):
            for index, task in enumerate(tasks):
                yield task, (RuntimeError("worker lost") if index == 1 else function(task))

        def close(self):
            pass

    monkeypatch.setitem(EXECUTORS, "flaky", lambda workers, scheduler: LosesTheSecondPoint())
    assert sweep(tiny, "-p", "ALPHA", "0.1", "0.2", "--executor", "flaky", "--out", tmp_path) == 1
    rows = read_csv(tmp_path / "results.csv")
    assert [(row["status"], row["error"]) for row in rows] == [("ok", ""), ("failed", "RuntimeError: worker lost")]


# --------------------------------------------------------------------------- plot choice


def rows_for(axes, seeds=(0,), metric=lambda p: p.get("ALPHA", 1) * p.get("TEMPERATURE", 1) + p["SEED"]):
    grid = Grid.from_axes({**axes, "SEED": list(seeds)})
    return grid.axes, [{"point": point.id, **point.parameters, "status": "ok", "seconds": 1.0, "attempts": 1,
                        "label": "x", "flag": True, "score": metric(point.parameters), "error": ""}
                       for point in grid.points()]


@pytest.mark.parametrize("axes,seeds,kind,x,y,others", [
    ({"ALPHA": [0.1, 0.9], "TEMPERATURE": [1, 4]}, (0,), "heatmap", "ALPHA", "TEMPERATURE", ()),
    ({"ALPHA": [0.1, 0.9], "TEMPERATURE": [1, 4], "LR": [0.1, 0.2]}, (0, 1), "heatmap", "ALPHA", "LR",
     ("TEMPERATURE",)),
    ({"ALPHA": [0.1, 0.5, 0.9], "TEMPERATURE": [4]}, (0, 1, 2), "line", "ALPHA", None, ()),
    ({"ALPHA": [0.1, 0.9], "DATASET": ["digits", "mnist1d"]}, (0,), "line", "ALPHA", None, ("DATASET",)),
    ({"DATASET": ["digits", "mnist1d"]}, (0, 1), "points", None, None, ("DATASET",)),
    ({}, (0, 1, 2), "points", None, None, ()),
])
def test_plot_is_a_heat_map_for_two_numeric_parameters_else_a_line(tmp_path, axes, seeds, kind, x, y, others):
    axes, rows = rows_for(axes, seeds)
    choice = choose_plot(rows, axes)
    assert (choice.kind, choice.x, choice.y, choice.others, choice.metric) == (kind, x, y, others, "score")
    rows[0]["status"] = "failed"  # a failed point is left out of the picture
    path = draw(choice, rows, axes, tmp_path / "sweep.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_metric_must_be_a_recorded_number():
    axes, rows = rows_for({"ALPHA": [0.1, 0.9]})
    assert choose_plot(rows, axes, "score").metric == "score"
    for name in ("label", "flag", "ALPHA", "missing"):
        with pytest.raises(ParameterError, match="one of the recorded numbers: score"):
            choose_plot(rows, axes, name)


# --------------------------------------------------------------------------- end to end (real kernels)


def mtimes(folder):
    return {path.name: path.stat().st_mtime_ns for path in Path(folder).iterdir()}


def test_sweep_runs_points_in_parallel_reports_failures_and_resumes(tiny, tmp_path, capsys):
    out = tmp_path / "out"
    arguments = [tiny, "-p", "ALPHA", "0.5", "0.7", "-p", "TEMPERATURE", "2", "--profile", "smoke",
                 "--workers", "2", "--execution-timeout", "120", "--timeout", "240", "--out", out]
    assert sweep(*arguments) == 1  # one point failed
    rows = read_csv(out / "results.csv")
    assert [(row["point"], row["status"], row["score"]) for row in rows] == [
        ("ALPHA=0.5__TEMPERATURE=2", "ok", "1.0"), ("ALPHA=0.7__TEMPERATURE=2", "failed", "1.4")]
    assert "ValueError: ALPHA = 0.7 breaks this notebook on purpose" in rows[1]["error"]
    assert (out / "sweep.png").is_file() and "plot: " in capsys.readouterr().out

    before = mtimes(out / "points")
    assert sweep(*arguments) == 1
    after = mtimes(out / "points")
    ok_files = [name for name in before if name.startswith("ALPHA=0.5")]
    assert ok_files and all(after[name] == before[name] for name in ok_files)  # the ok point did not rerun
    assert after["ALPHA=0.7__TEMPERATURE=2.json"] > before["ALPHA=0.7__TEMPERATURE=2.json"]  # the failed one did
    assert "1 ran, 1 reused" in capsys.readouterr().out


def test_sweep_through_a_dask_cluster_on_loopback(tiny, tmp_path):
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, protocol="tcp",
                                       host="127.0.0.1", dashboard_address=None)
    try:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        code = sweep(tiny, "-p", "ALPHA", "0.5", "0.7", "--seeds", "4", "--profile", "smoke", "--out", tmp_path,
                     "--executor", "dask", "--scheduler", cluster.scheduler_address, "--execution-timeout", "120")
    finally:
        cluster.close()
    assert code == 1
    rows = read_csv(tmp_path / "results.csv")
    assert [(row["point"], row["status"], row["score"], row["seed"]) for row in rows] == [
        ("ALPHA=0.5__SEED=4", "ok", "0.5", "4"), ("ALPHA=0.7__SEED=4", "failed", "0.7", "4")]


def test_unreachable_scheduler_is_one_clear_message():
    pytest.importorskip("distributed")
    from kdlab.sweep.executors import DaskExecutor

    with pytest.raises(KdlabError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        DaskExecutor("tcp://127.0.0.1:9", connect_timeout=1)
