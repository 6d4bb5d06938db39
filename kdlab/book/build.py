"""`make book`: execute (or take from the cache) every notebook, stage the pages, run sphinx-build.

    report = build("smoke")          # _build/html/index.html
    print(report.summary())

Staging writes a file only when its text changed, and sphinx-build keeps its environment in
`_build/doctrees/`, so a rebuild after a prose change re-reads only the changed pages and executes
nothing. The build needs no network: every asset (theme, MathJax) comes from installed packages.
"""
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from ..config import check
from ..errors import KdlabError
from ..paths import REPO_ROOT
from ..runner import find_notebooks
from . import execution, page, pages, reproduced
from .sphinx_ext import ALT_FILE

BUILD_DIR = REPO_ROOT / "_build"
CONF_DIR = REPO_ROOT / "docs" / "book"
REPORT_FILE = ".kdlab-book.json"


@dataclass
class BuildReport:
    profile: str
    html: Path
    seconds: dict = field(default_factory=dict)     # phase: seconds
    notebooks: dict = field(default_factory=dict)   # name: cached / reused / executed in N s
    staged_changed: list = field(default_factory=list)
    warnings: int = 0

    def summary(self):
        lines = [f"book ({self.profile}): {self.html / 'index.html'}"]
        lines += [f"  {name}: {how}" for name, how in self.notebooks.items()]
        lines.append(f"  staged files changed: {len(self.staged_changed)}; sphinx warnings: {self.warnings}")
        lines.append("  " + ", ".join(f"{phase} {s:.1f} s" for phase, s in self.seconds.items()))
        return "\n".join(lines)


def _write_if_changed(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.read_text() == text:
        return False
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return True


def stage(executed, profile, src, *, url=None):
    """Write the book's sources into `src`; returns the relative paths whose text changed."""
    src = Path(src)
    staged, alts, runs = {}, {}, {}
    for source_path, executed_path in executed.items():
        source = nbformat.read(str(source_path), as_version=4)
        run = nbformat.read(str(executed_path), as_version=4)
        notebook, notebook_alts = page.to_page(execution.merge(source, run), source_path.name,
                                               profile=profile, url=url)
        staged[f"notebooks/{source_path.name}"] = nbformat.writes(notebook) + "\n"
        alts.update(notebook_alts)
        meta = run.metadata.get("kdlab", {})
        runs[source_path.stem] = {"status": meta.get("status"), "seconds": meta.get("seconds", 0),
                                  "results": meta.get("results", {})}
    staged.update(pages.text_pages())
    staged["book/reproduced.md"] = reproduced.render(runs, profile)
    staged[ALT_FILE] = json.dumps(alts, indent=1, sort_keys=True) + "\n"
    changed = [name for name, text in staged.items() if _write_if_changed(src / name, text)]
    for path in src.rglob("*"):  # a page that no longer exists must not linger in the book
        if path.is_file() and str(path.relative_to(src)) not in staged:
            path.unlink()
    return changed


def sphinx_build(src, out, doctrees, warnings_file, *, jobs=1):
    command = [sys.executable, "-m", "sphinx", "-b", "html", "-c", str(CONF_DIR), "-d", str(doctrees), "-q",
               "-w", str(warnings_file), "-j", str(jobs), str(src), str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise KdlabError(f"sphinx-build failed ({result.returncode}):\n{result.stderr[-3000:]}")
    text = Path(warnings_file).read_text() if Path(warnings_file).is_file() else ""
    return sum(1 for line in text.splitlines() if "WARNING" in line)


def build(profile="class", *, build_dir=BUILD_DIR, notebooks_dir=REPO_ROOT / "notebooks", workers=2,
          fresh=False, url=None, cache_dir=None, log=print):
    """Build the book of `profile` into `build_dir/html`; returns a BuildReport.

    Executed copies are cached in `cache_dir` (default `build_dir/executed`), keyed by code and profile."""
    profile = check("PROFILE", profile)
    build_dir = Path(build_dir)
    report = BuildReport(profile, build_dir / "html")
    started = time.perf_counter()
    cache_dir = cache_dir or build_dir / "executed"
    paths = find_notebooks(notebooks_dir)
    executed, how = execution.ensure_executed(paths, profile, workers=workers, fresh=fresh, cache_dir=cache_dir,
                                              log=log)
    for _ in range(2):  # a notebook saved while the others ran is executed again (its code changed)
        changed = [p for p in paths if executed[p] != execution.cached_path(p, profile, cache_dir)]
        if not changed:
            break
        log(f"changed during the build, executed again: {', '.join(p.name for p in changed)}")
        again, again_how = execution.ensure_executed(changed, profile, workers=workers, cache_dir=cache_dir, log=log)
        executed.update(again)
        how.update(again_how)
    report.notebooks = {path.name: done for path, done in how.items()}
    report.seconds["execute"] = time.perf_counter() - started

    started = time.perf_counter()
    report.staged_changed = stage(executed, profile, build_dir / "src", url=url)
    report.seconds["stage"] = time.perf_counter() - started

    started = time.perf_counter()
    report.warnings = sphinx_build(build_dir / "src", report.html, build_dir / "doctrees",
                                   build_dir / "sphinx-warnings.log")
    report.seconds["sphinx"] = time.perf_counter() - started
    (report.html / REPORT_FILE).write_text(json.dumps(
        {"profile": profile, "notebooks": report.notebooks, "seconds": report.seconds,
         "warnings": report.warnings}, indent=1) + "\n")
    return report
