"""The book's execution cache: executed copies keyed by a notebook's code and the profile.

The key is the SHA-256 of the profile, the kernel and the source of every code cell, as jupyter-cache
keys (Markdown is not part of it): a prose change in a notebook or a page re-executes nothing, and the
book merges the cached outputs into the current text. Copies live in `_build/executed/<profile>/`.

An executed copy made elsewhere is reused when its code is the same: `make run`'s `runs/<profile>/` and
any folder given in `KDLAB_BOOK_REUSE` (e.g. the smoke test's executed notebooks). Papermill's injected
parameters cell and the slider-audit cell of the tests are not part of the key.

    executed = ensure_executed(find_notebooks("notebooks"), "smoke", workers=2)
    page_notebook = merge(nbformat.read(source), nbformat.read(executed[source]))
"""
import copy
import hashlib
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat

from ..errors import KdlabError
from ..paths import REPO_ROOT

CACHE_DIR = REPO_ROOT / "_build" / "executed"
KERNEL_STARTUP = Path(__file__).with_name("kernel_startup.py")
SKIPPED_TAGS = ("injected-parameters", "kdlab-slider-audit")


def _counted(cell):
    tags = cell.get("metadata", {}).get("tags", [])
    return cell.get("cell_type") == "code" and not any(tag in tags for tag in SKIPPED_TAGS)


def code_cells(notebook):
    return [cell for cell in notebook.cells if _counted(cell)]


def code_key(notebook, profile):
    """SHA-256 of what decides the outputs: the profile, the kernel and every code cell's source."""
    kernel = notebook.metadata.get("kernelspec", {}).get("name", "python3")
    payload = json.dumps([profile, kernel, [cell.source for cell in code_cells(notebook)]])
    return hashlib.sha256(payload.encode()).hexdigest()


def cached_path(path, profile, cache_dir=CACHE_DIR):
    notebook = nbformat.read(str(path), as_version=4)
    return Path(cache_dir) / profile / f"{Path(path).stem}-{code_key(notebook, profile)[:16]}.ipynb"


def _executed_profile(notebook):
    meta = notebook.metadata.get("kdlab", {})
    return meta.get("profile"), meta.get("status")


def find_reusable(path, profile, folders):
    """An executed copy of `path` in `folders` with the same code, run in `profile` without error, or None."""
    key = code_key(nbformat.read(str(path), as_version=4), profile)
    for folder in folders:
        candidate = Path(folder) / Path(path).name
        if not candidate.is_file():
            continue
        try:
            executed = nbformat.read(str(candidate), as_version=4)
        except Exception:  # noqa: BLE001 (a half-written copy is simply not reused)
            continue
        if _executed_profile(executed) == (profile, "ok") and code_key(executed, profile) == key:
            return candidate
    return None


def reuse_folders(profile):
    extra = [Path(p) for p in os.environ.get("KDLAB_BOOK_REUSE", "").split(os.pathsep) if p]
    return extra + [REPO_ROOT / "runs" / profile]


def ensure_executed(paths, profile, *, workers=2, fresh=False, cache_dir=CACHE_DIR, log=print):
    """{notebook path: executed copy} for every notebook, executing only those not cached.

    Returns (executed, how) where how[path] is 'cached', 'reused <folder>' or 'executed in N s'.
    A notebook that fails stops the build with its error (the book shows only runs that finished).
    """
    from ..runner import execute_notebook

    paths = [Path(p) for p in paths]
    executed, how, todo = {}, {}, []
    for path in paths:
        target = cached_path(path, profile, cache_dir)
        if target.is_file() and not fresh:
            executed[path], how[path] = target, "cached"
            continue
        source = None if fresh else find_reusable(path, profile, reuse_folders(profile))
        if source is not None:
            _store(source, target)
            executed[path], how[path] = target, f"reused {source.parent}"
            continue
        todo.append((path, target))

    def run(item):
        path, target = item
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.with_name(f".running-{target.name}")
        result = execute_notebook(path, scratch, profile=profile, env={"PYTHONSTARTUP": str(KERNEL_STARTUP)})
        if not result.ok:
            raise KdlabError(f"{path.name} did not run in the {profile} profile ({result.status}: {result.error}); "
                             f"log: {result.log}")
        _store(scratch, target)
        log(f"executed {path.name} ({profile}) in {result.seconds:.1f} s")
        return path, target, f"executed in {result.seconds:.1f} s"

    if todo:
        log(f"executing {len(todo)} notebook(s) in the {profile} profile, {workers} at a time ...")
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for path, target, done in pool.map(run, todo):
                executed[path], how[path] = target, done
    return {p: executed[p] for p in paths}, {p: how[p] for p in paths}


def _store(source, target):
    """Copy `source` to `target` atomically; older copies of the same notebook are removed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    stem = target.name.rsplit("-", 1)[0]
    for old in target.parent.glob(f"{stem}-*.ipynb"):
        if old != target:
            old.unlink()
    tmp = target.with_name(f".tmp-{target.name}")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def merge(source, executed):
    """The current `source` notebook with the outputs of `executed` (whose code cells are the same).

    Markdown comes from `source`, outputs and execution counts from `executed`; the run's metadata
    (`metadata["kdlab"]`: profile, recorded results) is carried over.
    """
    merged = copy.deepcopy(source)
    ours, theirs = code_cells(merged), code_cells(executed)
    if [c.source for c in ours] != [c.source for c in theirs]:
        raise KdlabError("the executed copy's code differs from the notebook's: it cannot be merged")
    for cell, run in zip(ours, theirs):
        cell.outputs = copy.deepcopy(run.get("outputs", []))
        cell.execution_count = run.get("execution_count")
    if "kdlab" in executed.metadata:
        merged.metadata["kdlab"] = copy.deepcopy(executed.metadata["kdlab"])
    return merged
