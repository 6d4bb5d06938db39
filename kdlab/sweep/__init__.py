"""Parameter sweeps: run a notebook with papermill over a grid, into one results table and one plot.

    kdlab sweep notebooks/01_knowledge_distillation.ipynb -p ALPHA 0.1 0.5 0.9 -p TEMPERATURE 1 4 \\
        --seeds 0 1 --profile smoke --workers 2

or from Python:

    grid, _ = build_grid([["ALPHA", "0.1", "0.9"]], seeds=[0, 1])
    result = run_sweep("notebooks/01_knowledge_distillation.ipynb", grid, profile="smoke", workers=2)
    result.rows, result.table, result.plot   # runs/sweeps/01_knowledge_distillation/{results.csv,sweep.png}

grid.py expands and checks the grid, points.py runs one point and keeps its record, executors.py runs
points in parallel (local threads or Dask), table.py writes results.csv, plot.py draws sweep.png,
run.py ties them together, command.py is the `kdlab sweep` command, and `python -m kdlab.sweep task.json`
runs one point inside a batch job. See docs/sweeps.md.
"""
from . import command  # noqa: F401  (registers `kdlab sweep`)
from .executors import EXECUTORS, DaskExecutor, Executor, LocalExecutor, make_executor
from .grid import Grid, Point, build_grid, parse_value, point_id
from .run import SweepResult, run_sweep

__all__ = ["run_sweep", "SweepResult", "build_grid", "Grid", "Point", "parse_value", "point_id", "Executor",
           "LocalExecutor", "DaskExecutor", "EXECUTORS", "make_executor"]
