"""Each notebook's `class` run time at two revisions of the kit, measured in one run on the same machine.

    python benchmarks/class_before_after.py --base bf2db86 notebooks/03_metadistil.ipynb
    python benchmarks/class_before_after.py --base bf2db86            # every notebook (about an hour)

The base revision is checked out into a temporary git worktree; its notebooks run with that worktree first
on PYTHONPATH, so they import the base's `kdlab`, and the current notebooks import the current one. The two
runs of a notebook follow each other (base first, then current, then the next notebook), so a load that
drifts over the hour affects both sides about alike; the load average is read before and after each run.
Each run is papermill headless with one torch thread, as `make run` does. The recorded numbers of the two runs
are compared too: a speed-up must not change what a notebook reports (a number that differs is listed).
Both sides read the same data folder (`KDLAB_DATA`, default data/), so generated data sets are cached alike.
The run cache (`kdlab.run_cache`, data/cache/runs/) is used as it is: delete that folder first to measure a
first run of the course, where notebook 08 reads what notebook 06 computed in the same benchmark.

The table goes to stdout and to benchmarks/results/class_before_after.md (a rerun replaces the rows of the
notebooks it ran and keeps the others).
"""
import argparse
import datetime
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from kdlab import runner
from kdlab import paths
from kdlab.paths import REPO_ROOT
from kdlab.profiling import cpu_model

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
           "KDLAB_THREADS": "1", "OMP_NUM_THREADS": "1", "KDLAB_DATA": str(paths.data_root())}  # one data cache
    before = os.getloadavg()[0]
    run = runner.execute_notebook(notebook, out, profile="class", env=env)
    return run, before, os.getloadavg()[0]


TIMING_WORDS = ("seconds", "time", "ms_per", "step_ms", "_ms_")  # recorded names of durations and speed ratios
# ("seconds", not "second": notebook 03 records toward_second_half_pct, a share of decisions, not a duration)


def is_timing(name):
    return any(word in str(name) for word in TIMING_WORDS)


def without_timings(value):
    """`value` without the entries named like timings (TIMING_WORDS), at any depth: those may differ."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if not is_timing(k)}
    if isinstance(value, (list, tuple)):
        return [without_timings(v) for v in value]
    return value


def differing(base, current, tolerance=1e-9):
    """Names of the recorded numbers (timings left out) that differ between two runs or exist in one only."""
    base, current = without_timings(base), without_timings(current)

    def same(a, b):
        if isinstance(a, float) and isinstance(b, float):
            return a == b or (math.isnan(a) and math.isnan(b)) or (
                math.isfinite(a) and math.isfinite(b) and abs(a - b) <= tolerance * max(1.0, abs(a), abs(b)))
        if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        if isinstance(a, dict) and isinstance(b, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        return a == b

    return [name for name in sorted(set(base) | set(current))
            if name not in base or name not in current or not same(base[name], current[name])]


def row(name, base, current):
    (b, b_load, _), (c, _, c_after) = base, current
    if not (b.ok and c.ok):
        return f"| {name} | {b.status} | {c.status} | - | - | {b_load:.1f} -> {c_after:.1f} |"
    changed = differing(b.results, c.results)
    timings = sorted(name for name in c.results if is_timing(name))
    numbers = (f"identical except the timings ({', '.join(timings) or 'none'})" if not changed
               else f"differ: {', '.join(changed)}")
    return (f"| {name} | {b.seconds:.0f} | {c.seconds:.0f} | {b.seconds / c.seconds:.2f}x | {numbers} "
            f"| {b_load:.1f} -> {c_after:.1f} |")


def write_table(rows, base_commit, current_commit, note=None, results=RESULTS):
    """Rows replace those of the same notebooks; the notes under the table (each a "- " line and the indented
    lines that continue it) are kept, `note` added."""
    old, notes = {}, []
    if results.exists():
        for line in results.read_text().splitlines():
            if line.startswith("| ") and not line.startswith(("| notebook", "|---")):
                old[line.split(" | ")[0][2:]] = line
            elif line.startswith("- "):
                notes.append(line)
            elif line.startswith("  ") and notes:
                notes[-1] += "\n" + line
    old.update(rows)
    if note:
        notes.append(f"- {datetime.date.today()}, {', '.join(sorted(rows))}: {note}")
    stamp = (f"Last run {datetime.date.today()} on {platform.node()} ({os.cpu_count()} CPU cores, {cpu_model()}), python "
             f"{platform.python_version()}: base {base_commit}, current {current_commit}.")
    text = ["# Class run times before and after", "", "`python benchmarks/class_before_after.py --base REV`: "
            "each notebook's `class` run at the base revision and at the current one, one after the other on the "
            "same machine, one torch thread.", "", stamp, "", *HEADER, *[old[k] for k in sorted(old)], "", *notes,
            ""]
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text("\n".join(text))


def current_revision():
    """The checked-out commit, with "+ uncommitted changes" when the tree differs from it."""
    commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no", "--",
                            ".", ":!benchmarks/results"], capture_output=True, text=True).stdout.strip()
    return commit + (" + uncommitted changes" if dirty else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--base", required=True, help="the git revision to compare with (a commit, tag or branch)")
    parser.add_argument("--note", help="a sentence kept under the table (e.g. the state of the run cache)")
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="the Markdown table to update (default: results/class_before_after.md; a run of some "
                             "notebooks against another base belongs in a file of its own)")
    parser.add_argument("--keep", type=Path, help="a folder to copy the executed notebooks to (base/ and current/), "
                                                  "to compare what they printed")
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every notebook in notebooks/")
    args = parser.parse_args(argv)
    notebooks = [p.resolve() for p in args.notebooks] or runner.find_notebooks(REPO_ROOT / "notebooks")
    current_commit = current_revision()
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
            if args.keep is not None:
                shutil.copytree(Path(scratch) / "runs", args.keep, dirs_exist_ok=True)
        finally:
            subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(base_root)],
                           capture_output=True)
    write_table(rows, base_commit, current_commit, args.note, args.results)
    print(json.dumps({"results": str(args.results)}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
