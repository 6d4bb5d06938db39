"""Run a sweep: check the whole grid first, reuse the points already done, run the rest, tabulate, plot."""
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import config
from ..errors import ParameterError
from . import grid as grids
from .executors import make_executor
from .plot import choose_plot, draw
from .points import PointTask, is_finished, make_record, notebook_digest, read_record, run_point, write_record
from .table import make_rows, write_csv


@dataclass
class SweepResult:
    """What a sweep left in `out`: the rows of results.csv, the plot, and which points ran now."""

    out: Path
    rows: list
    table: Path
    plot: "Path | None" = None
    plot_note: "str | None" = None  # why there is no plot
    metric: "str | None" = None
    ran: list = field(default_factory=list)
    reused: list = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self):
        return all(row["status"] == "ok" for row in self.rows)


def default_out(notebook):
    """runs/sweeps/<notebook name>"""
    from ..paths import runs_dir

    return runs_dir() / "sweeps" / Path(notebook).stem


def plan_tasks(notebook, grid, *, profile, out, execution_timeout=None, outer_timeout=None, retries=1):
    """One PointTask per point of `grid`, after checking the notebook, the options and every point."""
    notebook = Path(notebook).resolve()
    if notebook.suffix != ".ipynb" or not notebook.is_file():
        raise ParameterError("notebook", str(notebook), "an existing .ipynb file")
    config.check("PROFILE", profile)
    for name, value, minimum in (("--execution-timeout", execution_timeout, 1), ("--timeout", outer_timeout, 1),
                                 ("--retries", retries, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not value >= minimum):
            raise ParameterError(name, value, f"a number >= {minimum}")
    grids.check_names(grid, notebook)
    grid.validate()
    digest, points_dir = notebook_digest(notebook), Path(out).resolve() / "points"
    return [PointTask(point.id, str(notebook), digest, str(points_dir / f"{point.id}.ipynb"), profile,
                      point.parameters, execution_timeout, outer_timeout, retries) for point in grid.points()]


def run_sweep(notebook, grid, *, profile="class", out=None, workers=1, executor="local", scheduler=None,
              execution_timeout=None, outer_timeout=None, retries=1, metric=None, progress=True):
    """Run every point of `grid` over `notebook` that has not finished ok yet; write results.csv and sweep.png.

    Bad options or a bad value anywhere in the grid raise ParameterError before any point runs; a point
    that fails while running is recorded as failed and the others go on.
    """
    started = time.perf_counter()
    out = Path(out or default_out(notebook))
    tasks = plan_tasks(notebook, grid, profile=profile, out=out, execution_timeout=execution_timeout,
                       outer_timeout=outer_timeout, retries=retries)
    records = {task.point_id: read_record(task.record_path) for task in tasks}
    reused = [task.point_id for task in tasks if is_finished(records[task.point_id], task)]
    pending = [task for task in tasks if task.point_id not in reused]
    say = print if progress else (lambda *args, **kwargs: None)
    say(f"sweep of {Path(notebook).name} ({profile}): {len(tasks)} points, {len(reused)} already done, "
        f"{len(pending)} to run with {executor} executor", flush=True)
    if pending:
        runner = make_executor(executor, workers=workers, scheduler=scheduler)
        try:
            for done, (task, outcome) in enumerate(runner.map_unordered(run_point, pending), start=1):
                if isinstance(outcome, BaseException):  # the executor lost the point (e.g. a worker died)
                    outcome = make_record(task, status="failed", seconds=0, error=f"{type(outcome).__name__}: "
                                          f"{outcome}")
                    write_record(task.record_path, outcome)
                records[task.point_id] = outcome
                say(f"[{done}/{len(pending)}] {task.point_id}: {outcome['status']} in {outcome['seconds']:.1f} s",
                    flush=True)
        finally:
            runner.close()
    out.mkdir(parents=True, exist_ok=True)
    rows = make_rows([records[task.point_id] for task in tasks], list(grid.axes))
    result = SweepResult(out, rows, write_csv(rows, out / "results.csv"), ran=[task.point_id for task in pending],
                         reused=reused)
    try:
        choice = choose_plot(rows, grid.axes, metric)
        result.metric = choice.metric
        result.plot = draw(choice, rows, grid.axes, out / "sweep.png", title=f"{Path(notebook).stem} ({profile})")
    except ParameterError as why:
        result.plot_note = str(why)
    result.seconds = time.perf_counter() - started
    return result
