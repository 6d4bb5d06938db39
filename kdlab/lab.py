"""`make lab` and `make author`: JupyterLab configured for a student, or for an author or instructor.

A student's lab (`kdlab lab`) serves `work/`, a git-ignored folder filled once with the student versions
of the notebooks (solutions and hidden tests removed) and, read-only, `work/solutions/` for self-learners.
A student's file is never overwritten: a notebook the kit changed is updated only while it is still
byte for byte what was handed out. The lab saves widget state with the notebook (no "model not found"
after a reload), fetches no news, and shows none of nbgrader's menus.

An author's lab (`kdlab lab --author`) serves the sources in `notebooks/` with nbgrader, after installing
the git filter of `kdlab.strip`, so that running and saving a notebook never dirties a commit.
"""
import hashlib
import json
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import nbformat

from .atomic import write_bytes
from .cli import register
from .paths import REPO_ROOT

WORK_DIR = REPO_ROOT / "work"
SETTINGS_DIR = REPO_ROOT / ".lab"  # generated JupyterLab settings per kind of lab (git-ignored)
HANDOUT_RECORD = ".kdlab-handout.json"  # sha256 of each notebook as it was handed out
NBGRADER = "@jupyter/nbgrader"
NBGRADER_SERVER = ("formgrader", "validate_assignment", "assignment_list", "course_list")

# JupyterLab settings, as overrides of the defaults (a user's own changes in the lab still win)
SHARED_OVERRIDES = {
    "@jupyter-widgets/jupyterlab-manager:plugin": {"saveState": True},
    "@jupyterlab/apputils-extension:notification": {"fetchNews": "false", "checkForUpdates": False},
}


def fill_work_dir(work_dir=WORK_DIR, notebooks_dir=REPO_ROOT / "notebooks"):
    """Hand out the student versions into `work_dir` without losing a student's work.

    Returns {notebook name: what happened}: "handed out" (new), "updated" (the kit changed it and the
    student had not), "kept" (the student's copy, edited or run, stays), "unchanged".
    """
    from .assign import make_student_version
    from .runner import find_notebooks

    work_dir, solutions_dir = Path(work_dir), Path(work_dir) / "solutions"
    work_dir.mkdir(parents=True, exist_ok=True)
    record_path = work_dir / HANDOUT_RECORD
    handed_out = json.loads(record_path.read_text()) if record_path.exists() else {}
    actions = {}
    for path in find_notebooks(notebooks_dir):
        solution = nbformat.read(str(path), as_version=4)
        text = nbformat.writes(make_student_version(solution, path.name)) + "\n"
        target, digest = work_dir / path.name, _sha256(text)
        if not target.exists():
            actions[path.name] = "handed out"
        elif _sha256(target.read_text()) == digest:
            actions[path.name] = "unchanged"
        elif _sha256(target.read_text()) == handed_out.get(path.name):
            actions[path.name] = "updated"
        else:
            actions[path.name] = "kept"
        if actions[path.name] in ("handed out", "updated"):
            _write_atomically(target, text)
        if actions[path.name] != "kept":
            handed_out[path.name] = digest
        _write_read_only(solutions_dir / path.name, nbformat.writes(worked_solution(solution, path.name)) + "\n")
    _write_atomically(record_path, json.dumps(handed_out, indent=1, sort_keys=True) + "\n")
    return actions


def worked_solution(notebook, name="notebook"):
    """The solution notebook for a self-learner: answers kept (their marker lines dropped), the grader's
    hidden tests removed, no run state."""
    from .assign import HIDDEN_TEST_MARKERS, SOLUTION_MARKERS, _cut_regions, clear_run_state

    worked = clear_run_state(notebook)
    for index, cell in enumerate(worked.cells):
        cell.source, _ = _cut_regions(cell.source, HIDDEN_TEST_MARKERS, (), f"{name}, cell {index}")
        cell.source = "\n".join(line for line in cell.source.split("\n")
                                if not any(marker in line for marker in SOLUTION_MARKERS))
    return worked


def write_settings(kind):
    """The JupyterLab settings directory of a `student` or `author` lab; returns its path."""
    folder = SETTINGS_DIR / kind
    folder.mkdir(parents=True, exist_ok=True)
    _write_atomically(folder / "overrides.json", json.dumps(SHARED_OVERRIDES, indent=1) + "\n")
    page_config = {"disabledExtensions": [NBGRADER] if kind == "student" else []}
    _write_atomically(folder / "page_config.json", json.dumps(page_config, indent=1) + "\n")
    return folder


def jupyter_command(kind, root, *, port, token):
    """The `jupyter lab` command line of a kit lab: localhost only, a token, the kit's settings."""
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip", "127.0.0.1", f"--port={port}",
               "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
               f"--LabApp.app_settings_dir={write_settings(kind)}", "--LabApp.news_url=None"]
    if kind == "student":  # nbgrader's server part would otherwise log "No nbgrader_config.py" at every start
        command += [f"--ServerApp.jpserver_extensions=nbgrader.server_extensions.{part}=False"
                    for part in NBGRADER_SERVER]
    if hasattr(os, "getuid") and os.getuid() == 0:
        command.append("--allow-root")
    return command


def install_strip_filter(repo=REPO_ROOT):
    """Make git store notebooks/*.ipynb without outputs (`.gitattributes` names the filter; this clone gets
    its command). Returns False outside a git checkout."""
    if not (Path(repo) / ".git").exists():
        return False
    clean = f"{Path(sys.executable).as_posix()} -m kdlab.strip"
    for key, value in (("clean", clean), ("smudge", "cat"), ("required", "true")):
        subprocess.run(["git", "-C", str(repo), "config", f"filter.kdlab-notebook.{key}", value], check=True)
    return True


def _sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def _write_atomically(path, text):
    write_bytes(path, text.encode())


def _write_read_only(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        if path.read_text() == text:
            return
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    _write_atomically(path, text)
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)


# --------------------------------------------------------------------------- command line
def _configure(parser):
    parser.add_argument("--author", action="store_true",
                        help="serve the sources in notebooks/ with nbgrader (authors, instructors) and install "
                             "the git filter that strips outputs")
    parser.add_argument("--port", type=int, default=int(os.environ.get("KDLAB_PORT", 8888)))
    parser.add_argument("--prepare-only", action="store_true", help="fill work/ (or install the filter) and exit")


def _lab_command(args):
    if args.author:
        kind, root = "author", REPO_ROOT / "notebooks"
        if install_strip_filter():
            print("kdlab: git stores notebooks/*.ipynb without outputs in this clone (filter kdlab-notebook)")
    else:
        kind, root = "student", WORK_DIR
        for name, action in fill_work_dir().items():
            if action != "unchanged":
                print(f"kdlab: {name}: {action}")
        print(f"kdlab: your notebooks are in {WORK_DIR} (yours to edit; git ignores them); "
              f"worked solutions in {WORK_DIR / 'solutions'}")
    if args.prepare_only:
        return 0
    token = os.environ.get("KDLAB_TOKEN") or secrets.token_hex(16)
    print(f"kdlab: JupyterLab at http://127.0.0.1:{args.port}/lab?token={token} (localhost only; Ctrl-C stops it)")
    try:
        return subprocess.call(jupyter_command(kind, root, port=args.port, token=token))
    except KeyboardInterrupt:
        return 0


register("lab", _lab_command, configure=_configure,
         help="JupyterLab for a student (your copies in work/) or, with --author, on the sources")
