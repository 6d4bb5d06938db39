"""What each slider of each notebook changes in its plot: run the notebooks with a slider audit at the end.

    python benchmarks/slider_effects.py                          # every notebook, class profile
    python benchmarks/slider_effects.py --profile smoke notebooks/01_knowledge_distillation.ipynb

Each notebook runs headless (papermill, `kdlab.runner`) with one extra cell at the end that calls
`kdlab.widgets.audit_sliders()`: every control of every panel the notebook showed is moved once (a few
steps below its default, a log slider by a factor of 10, a choice to another option), the panel is
recomputed and redrawn, and the plotted data are compared with the default's: which series changed, by
how much in data units (max |change| of the plotted values), and by how many pixels on screen. A change
under a pixel is the same picture with other tick values: not a visible change.

Executed notebooks go to runs/slider_effects/<profile>/; the table to stdout and to
benchmarks/results/slider_effects.md, one section per profile (a rerun replaces the blocks of the notebooks
it ran and keeps the others). The runs' key numbers and run times (the audit cell's time left out) go to
runs/slider_effects/<profile>/results.json, the format of `make run`'s (`--summary` moves it), so one class
run also gives the README its numbers (benchmarks/readme_numbers.py).
The kernels compute panels' settings ahead as a student's live kernel does (KDLAB_PANEL_AHEAD=1, `--no-ahead`
turns it off): the audit then also times each move as the student gets it, from the setting computed ahead
while the notebook ran, and checks it plots what the kernel computes afresh (`audit_sliders(ahead=True)`).
Exits 1 when a notebook failed, a slider changed nothing visible, or a setting computed ahead plotted
something else.
"""
import argparse
import datetime
import os
import platform
import re
import statistics
import sys
from pathlib import Path

from kdlab import runner
from kdlab.paths import REPO_ROOT, runs_dir
from kdlab.profiling import cpu_model
from kdlab.widgets import read_audit, with_audit_cell

RESULTS = Path(__file__).resolve().parent / "results" / "slider_effects.md"
HEADER = """# Slider effects

What moving each slider of each notebook changes in the panel's plot (`benchmarks/slider_effects.py`,
`kdlab.widgets.audit_sliders`). Each control is moved once from its default (two steps down, or up where
there is no room; a log slider by a factor of 10; a choice to another option) and the redrawn figure is
compared with the default's. "max |change|" is in the plotted series' own units; "px" is the largest
movement of a plotted point on screen (at the figure's size and 100 dpi); colours count by their share of
the colour scale. Under a pixel is the same picture with other tick values, so it does not count.
"""


def audit_notebook(path, out_dir, profile, timeout, ahead=False):
    """Run one notebook with the audit cell; (NotebookRun, audit rows or None)."""
    source_dir, executed_dir = out_dir / "with_audit", out_dir / "executed"
    source_dir.mkdir(parents=True, exist_ok=True)
    audit_json = out_dir / f"{path.stem}.audit.json"
    audit_json.unlink(missing_ok=True)
    copy = with_audit_cell(path, source_dir / path.name, audit_json, ahead=ahead)
    run = runner.execute_notebook(copy, executed_dir / path.name, profile=profile, outer_timeout=timeout)
    run.notebook = path
    run.seconds -= audit_cell_seconds(executed_dir / path.name)
    return run, (read_audit(audit_json) if audit_json.exists() else None)


def audit_cell_seconds(executed):
    """The seconds papermill recorded for the appended audit cell (the last cell), 0 if it did not run."""
    import nbformat

    if not executed.exists():
        return 0.0
    cells = nbformat.read(str(executed), as_version=4).cells
    return float(cells[-1].metadata.get("papermill", {}).get("duration") or 0.0) if cells else 0.0


def verdict(row):
    if row["error"]:
        return f"error: {row['error']}"
    if row["ok"]:
        return "visible"
    return "too small to see" if row["changed"] else "**no change**"


def describe(change):
    if change["max_abs"] is None:
        return change["note"]
    parts = [f"max \\|change\\| {change['max_abs']:.3g}"]
    if change["pixels"] is not None:
        parts.append(f"{change['pixels']:.0f} px")
    if change["relative"] is not None:
        parts.append(f"{100 * change['relative']:.0f}% of the colour scale")
    return ", ".join(parts)


def cell(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def notebook_block(path, run, rows):
    """The Markdown of one notebook: a summary line, then one row per slider."""
    count = f"{sum(r['ok'] for r in rows)} of {len(rows)} sliders change the plot visibly" if rows else "no audit"
    lines = [f"<!-- notebook: {path.stem} -->",
             f"### {path.stem}: {run.status} in {run.seconds:.0f} s, {count}", ""]
    if run.error:
        lines += [f"Error: `{run.error.strip().splitlines()[-1][:200]}`", ""]
    if rows:
        lines += ["| panel | slider | from -> to | effect | series that changed (size of the change) | seconds: "
                  "computed | seconds: computed ahead |", "|---|---|---|---|---|---|---|"]
        for row in rows:
            changed = "<br>".join(f"{cell(name)}: {describe(change)}" for name, change in row["changes"].items())
            lines.append(f"| {cell(row['panel'])} | {row['control']} | {row['old']!r} -> {row['new']!r} | "
                         f"{verdict(row)} | {changed or '-'} | {row['seconds']:.1f} | {ahead_cell(row)} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def ahead_cell(row):
    """The move as a student gets it when its setting was computed ahead: seconds, and whether it plotted the
    same as computed afresh; '-' where it was not computed ahead."""
    if row.get("ahead_seconds") is None:
        return "-"
    same = "same plot" if row["ahead_same"] else "**a different plot**"
    return f"{row['ahead_seconds']:.1f} ({same}; ready {row['ahead_ready']:.0f} s into the audit)"


def medians_line(section):
    """The medians over every move of a profile's section (its table rows): computed, and as a student gets it."""
    computed, response = [], []
    for match in re.finditer(r"^\| .* \| ([0-9.]+) \| (-|[0-9.]+)(?: \(.*\))? \|$", section, re.M):
        computed.append(float(match.group(1)))
        response.append(computed[-1] if match.group(2) == "-" else float(match.group(2)))
    if not computed:
        return ""
    return (f"Median slider move over the {len(computed)} moves: {statistics.median(computed):.2f} s computed in the "
            f"kernel, {statistics.median(response):.2f} s as a student gets it (computed ahead where it was, "
            "`kdlab.panel_ahead`).")


def write_results(profile, blocks, path=RESULTS, probes=()):
    """Put this run's notebook blocks into the profile's section of the results file, keeping the blocks of
    notebooks not rerun; returns the section's text. `probes`: the speed probe's seconds before and after."""
    old = path.read_text() if path.exists() else HEADER
    section = re.compile(rf"<!-- profile: {profile} -->.*?<!-- end profile: {profile} -->", re.S)
    found = section.search(old)
    merged = {}
    if found:
        block = re.compile(r"<!-- notebook: (\S+) -->.*?(?=<!-- notebook: |<!-- end profile)", re.S)
        for match in block.finditer(found.group(0)):
            merged[match.group(1)] = match.group(0).strip() + "\n"
    merged.update({stem: text.strip() + "\n" for stem, text in blocks.items()})
    blocks_text = [merged[stem] for stem in sorted(merged)]
    medians = medians_line("\n".join(blocks_text))
    text = "\n".join([f"<!-- profile: {profile} -->", f"## Profile `{profile}`", "",
                      f"Last run {datetime.date.today().isoformat()} on {platform.node() or 'this machine'} "
                      f"({os.cpu_count()} CPU cores, {cpu_model()}), python {platform.python_version()}"
                      + (f"; speed probe (`speed_probe.py`) {' s, then '.join(f'{p:.2f}' for p in probes)} s"
                         if probes else "") + ".", ""]
                     + ([medians, ""] if medians else []) + blocks_text + [f"<!-- end profile: {profile} -->"])
    new = section.sub(lambda _: text, old) if found else old.rstrip() + "\n\n" + text + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)
    return text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks (default: every notebooks/NN_*.ipynb)")
    parser.add_argument("--profile", choices=("smoke", "class", "full"), default="class")
    parser.add_argument("--timeout", type=float, help="seconds allowed per notebook (default: the runner's)")
    parser.add_argument("--out", type=Path,
                        help="folder for the executed notebooks (default: runs/slider_effects/PROFILE)")
    parser.add_argument("--results", type=Path, default=RESULTS, help=f"Markdown file (default: {RESULTS})")
    parser.add_argument("--summary", type=Path, help="results.json of the runs (default: in the --out folder)")
    parser.add_argument("--no-ahead", dest="ahead", action="store_false",
                        help="no settings computed ahead (as in a headless run; by default the kernels compute "
                             "them as a student's live kernel does, KDLAB_PANEL_AHEAD=1)")
    args = parser.parse_args(argv)
    os.environ["KDLAB_PANEL_AHEAD"] = "1" if args.ahead else "0"
    paths = args.notebooks or runner.find_notebooks(REPO_ROOT / "notebooks")
    out_dir = (args.out or runs_dir() / "slider_effects" / args.profile).resolve()
    timeout = args.timeout or runner.DEFAULT_TIMEOUTS[args.profile][1]
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from speed_probe import probe_seconds

    probes = [probe_seconds()]   # the machine's speed before and after (benchmarks/speed_probe.py)
    print(f"speed probe: {probes[0]:.2f} s", flush=True)
    results = []
    for path in paths:
        print(f"{path.name} ({args.profile}) ...", end=" ", flush=True)
        run, rows = audit_notebook(Path(path).resolve(), out_dir, args.profile, timeout, args.ahead)
        print(f"{run.status} in {run.seconds:.0f} s", flush=True)
        results.append((Path(path), run, rows or []))
    blocks = {path.stem: notebook_block(path, run, rows) for path, run, rows in results}
    print("\n".join(blocks.values()))
    probes.append(probe_seconds())
    print(f"speed probe: {probes[1]:.2f} s", flush=True)
    write_results(args.profile, blocks, args.results, probes)
    summary = runner.write_summary([run for _, run, _ in results], args.summary or out_dir / "results.json",
                                   profile=args.profile, machine={"speed_probe_seconds": probes})
    print(f"written: {args.results}, {summary}")
    failed = any(not run.ok or not rows or not all(r["ok"] and r.get("ahead_same") is not False for r in rows)
                 for _, run, rows in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
