"""`kdlab sweep NOTEBOOK -p ALPHA 0.1 0.5 -p TEMPERATURE 2 4 --seeds 0 1 --workers 2`"""
import os
from pathlib import Path

from ..cli import register
from .executors import EXECUTORS
from .grid import build_grid
from .run import run_sweep
from .table import format_summary

EXAMPLE = "kdlab sweep notebooks/01_knowledge_distillation.ipynb -p ALPHA 0.1 0.5 0.9 -p TEMPERATURE 1 4 " \
          "--profile smoke --workers 2"


def configure(parser):
    """The options of `kdlab sweep`."""
    from ..config import PROFILES

    parser.epilog = f"example: {EXAMPLE}"
    parser.add_argument("notebook", type=Path, help="the notebook to run at every point of the grid")
    parser.add_argument("-p", "--parameter", dest="parameters", action="append", nargs="+", default=[],
                        metavar=("NAME", "VALUE"), help="a parameter and its values (read as YAML: 0.5, 4, "
                        "mnist1d); repeat for a grid")
    parser.add_argument("--grid", type=Path, help="YAML file: parameters: {NAME: [values]}, seeds: [...], "
                        "metric: NAME (-p overrides a parameter of the file)")
    parser.add_argument("--seeds", nargs="+", metavar="SEED", help="seeds: each point runs once per SEED")
    parser.add_argument("--profile", choices=PROFILES, default=os.environ.get("KDLAB_PROFILE") or "class",
                        help="run profile (default: $KDLAB_PROFILE or class)")
    parser.add_argument("--workers", type=int, default=1, help="points run at once by the local executor "
                        "(default 1)")
    parser.add_argument("--out", type=Path, help="output folder (default: runs/sweeps/<notebook name>)")
    parser.add_argument("--execution-timeout", type=int, help="seconds allowed per cell")
    parser.add_argument("--timeout", type=float, help="seconds allowed per point")
    parser.add_argument("--retries", type=int, default=1, help="reruns of a point that timed out (default 1)")
    parser.add_argument("--executor", choices=sorted(EXECUTORS), default="local",
                        help="local threads (default) or a dask cluster")
    parser.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://127.0.0.1:8786")
    parser.add_argument("--metric", help="recorded result to plot (default: the first recorded number)")


def run(args):
    """Run the sweep, print the summary; exit code 0 when every point is ok, 1 otherwise."""
    grid, file_metric = build_grid(args.parameters, args.grid, args.seeds)
    result = run_sweep(args.notebook, grid, profile=args.profile, out=args.out, workers=args.workers,
                       executor=args.executor, scheduler=args.scheduler, execution_timeout=args.execution_timeout,
                       outer_timeout=args.timeout, retries=args.retries, metric=args.metric or file_metric)
    print(format_summary(result.rows, result.metric, reused=set(result.reused)))
    counts = {status: sum(row["status"] == status for row in result.rows) for status in ("ok", "failed", "timeout")}
    print(f"{len(result.rows)} points: " + ", ".join(f"{n} {status}" for status, n in counts.items() if n)
          + f"; {len(result.ran)} ran, {len(result.reused)} reused; {result.seconds:.1f} s")
    print(f"results: {result.table}")
    print(f"plot: {result.plot}" if result.plot else f"no plot: {result.plot_note}")
    return 0 if result.ok else 1


register("sweep", run, help="run a notebook over a grid of parameters; one results table and plot",
         configure=configure)
