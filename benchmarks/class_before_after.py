"""Each notebook's `class` run time at two revisions of the kit, measured in one run on the same machine.

    python benchmarks/class_before_after.py --base bf2db86 notebooks/03_metadistil.ipynb
    python benchmarks/class_before_after.py --base bf2db86            # every notebook (about an hour)

The base revision is checked out into a temporary git worktree; its notebooks run with that worktree first
on PYTHONPATH, so they import the base's `kdlab`, and the current notebooks import the current one. The two
runs of a notebook follow each other (base first, then current, then the next notebook), so a load that
drifts over the hour affects both sides about alike; the load average is read before and after each run.
Each run is papermill headless with one torch thread, as `make run` does. The recorded numbers of the two runs
are compared too: a speed-up must not change what a notebook reports (a number that differs is listed).

The table goes to stdout and to benchmarks/results/class_before_after.md (a rerun replaces the rows of the
notebooks it ran and keeps the others).
"""
import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

from kdlab import runner
from kdlab.paths import REPO_ROOT

RESULTS = Path(__file__).resolve().parent / "results" / "class_before_after.md"
HEADER = ["| notebook | base: seconds | current: seconds | speed-up | recorded numbers | load average before -> after |",
          "|---|---:|---:|---:|---|---|"]


def worktree(revision, folder):
    """Check `revision` out into `folder` (a detached git worktree); returns its commit's short hash."""
    subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(folder), revision],
                   check=True, capture_output=True)
    return subprocess.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], check=True,
                          capture_output=True, text=True).stdout.strip()


def run_class(notebook, out, kdlab_root):
    """One class run of `notebook` importing the kdlab found in `kdlab_root`; (NotebookRun, load before, after)."""
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(kdlab_root), os.environ.get("PYTHONPATH")])),
           "KDLAB_THREADS": "1", "OMP_NUM_THREADS": "1"}
    before = os.getloadavg()[0]
    run = runner.execute_notebook(notebook, out, profile="class", env=env)
    return run, before, os.getloadavg()[0]


def differing(base, current, tolerance=1e-9):
    """Names of the recorded numbers that differ between two runs (or exist in one only)."""
    names = sorted(set(base) | set(current))

    def same(a, b):
        if isinstance(a, float) and isinstance(b, float):
            return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= tolerance * max(1.0, abs(a), abs(b))
        return a == b

    return [name for name in names if name not in base or name not in current or not same(base[name], current[name])]


def row(name, base, current):
    (b, b_load, _), (c, _, c_after) = base, current
    if not (b.ok and c.ok):
        return f"| {name} | {b.status} | {c.status} | - | - | {b_load:.1f} -> {c_after:.1f} |"
    changed = differing(b.results, c.results)
    numbers = f"{len(c.results)} identical" if not changed else f"differ: {', '.join(changed)}"
    return (f"| {name} | {b.seconds:.0f} | {c.seconds:.0f} | {b.seconds / c.seconds:.2f}x | {numbers} "
            f"| {b_load:.1f} -> {c_after:.1f} |")


def write_table(rows, base_commit, current_commit):
    old = {}
    if RESULTS.exists():
        for line in RESULTS.read_text().splitlines():
            if line.startswith("| ") and not line.startswith(("| notebook", "|---")):
                old[line.split(" | ")[0][2:]] = line
    old.update(rows)
    stamp = (f"Last run {datetime.date.today()} on {platform.node()} ({os.cpu_count()} CPU cores), python "
             f"{platform.python_version()}: base {base_commit}, current {current_commit}.")
    text = ["# Class run times before and after", "", "`python benchmarks/class_before_after.py --base REV`: "
            "each notebook's `class` run at the base revision and at the current one, one after the other on the "
            "same machine, one torch thread.", "", stamp, "", *HEADER, *[old[k] for k in sorted(old)], ""]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(text))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the git revision to compare with (a commit, tag or branch)")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook in notebooks/")
    args = parser.parse_args(argv)
    notebooks = [p.resolve() for p in args.notebooks] or runner.find_notebooks(REPO_ROOT / "notebooks")
    current_commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                                    capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="kdlab-base-") as scratch:
        base_root = Path(scratch) / "base"
        base_commit = worktree(args.base, base_root)
        rows, failed = {}, []
        try:
            for notebook in notebooks:
                out = Path(scratch) / "runs"
                base = run_class(base_root / "notebooks" / notebook.name, out / "base" / notebook.name, base_root)
                current = run_class(notebook, out / "current" / notebook.name, REPO_ROOT)
                rows[notebook.stem] = row(notebook.stem, base, current)
                failed += [notebook.stem] if not (base[0].ok and current[0].ok) else []
                print(rows[notebook.stem], flush=True)
        finally:
            subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(base_root)],
                           capture_output=True)
    write_table(rows, base_commit, current_commit)
    print(json.dumps({"results": str(RESULTS.relative_to(REPO_ROOT))}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
