"""Run notebooks headless with papermill, safely, and collect their recorded results.

papermill runs in a child process, so a hung run can be killed, kernel included: nbclient can hang
forever after a cell with ipywidgets (jupyter/nbclient#312). Every run has a per-cell timeout
(papermill's `--execution-timeout`) and an outer timeout for the whole notebook; a run that timed
out can be retried.

    >>> run = execute_notebook("notebooks/01_knowledge_distillation.ipynb", "runs/class/01.ipynb",
    ...                        profile="class", parameters={"SEED": 1})
    >>> run.status, run.seconds, run.results
    ('ok', 74.2, {'kd_accuracy': 91.3, ...})
"""
import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from . import config, results
from .errors import ParameterError

# (seconds per cell, seconds per notebook) when the caller gives none
DEFAULT_TIMEOUTS = {"smoke": (300, 900), "class": (1800, 3600), "full": (6 * 3600, 24 * 3600)}
NOTEBOOK_NAME = re.compile(r"^\d\d_.*\.ipynb$")
# A failed run whose kernel executed no cell is rerun this many times, whatever `retries` says: jupyter_client
# picks free ports without a lock, so two kernels starting at once can draw the same port and one dies at start.
KERNEL_START_RETRIES = 2
# papermill's command line, without jsonschema's one-second RFC 3987 grammar (`kdlab.papermill_cli`)
PAPERMILL = [sys.executable, "-m", "kdlab.papermill_cli"]


@dataclass
class NotebookRun:
    """What happened when one notebook ran: status is 'ok', 'failed' or 'timeout'."""

    notebook: Path
    output: Path
    status: str
    seconds: float
    results: dict = field(default_factory=dict)
    formats: dict = field(default_factory=dict)
    error: "str | None" = None
    attempts: int = 1
    log: "Path | None" = None
    kernel_never_ran: bool = False

    @property
    def ok(self):
        return self.status == "ok"


def execute_notebook(path, out_path, *, profile, parameters=None, execution_timeout=None,
                     outer_timeout=None, kernel="python3", env=None, retries=0):
    """Execute notebook `path` into `out_path` with papermill under `profile`; never hangs.

    `PROFILE` is injected as a parameter and `KDLAB_PROFILE` set in the kernel's environment;
    `parameters` adds more (plain values: numbers, strings, lists...). `execution_timeout` limits each cell,
    `outer_timeout` the whole run (defaults depend on the profile, see DEFAULT_TIMEOUTS); after an
    outer timeout papermill, its kernel and the kernel's children are killed. `retries` reruns a
    notebook that timed out; a run whose kernel died before executing a cell is rerun up to
    KERNEL_START_RETRIES times. The values recorded with `kdlab.results.record` are copied into the
    executed notebook's `metadata["kdlab"]` and returned in the result.
    """
    path, out_path = Path(path).resolve(), Path(out_path).resolve()
    profile = config.check("PROFILE", profile)
    if not path.is_file():
        raise ParameterError("path", str(path), "an existing .ipynb file")
    cell_limit, notebook_limit = DEFAULT_TIMEOUTS[profile]
    execution_timeout = int(_at_least("execution_timeout", cell_limit if execution_timeout is None
                                      else execution_timeout, 1))
    outer_timeout = _at_least("outer_timeout", notebook_limit if outer_timeout is None else outer_timeout, 1)
    retries = int(_at_least("retries", retries, 0))
    parameters = config.validate(**{**(parameters or {}), "PROFILE": profile})
    try:  # YAML, not JSON: PyYAML reads JSON's 1e-05 as a string; its own dump writes 1.0e-05
        parameters_yaml = yaml.safe_dump(parameters)
    except yaml.YAMLError:
        allowed = "plain values: numbers, strings, booleans, lists, dicts"
        raise ParameterError("parameters", parameters, allowed) from None
    command = PAPERMILL + [str(path), str(out_path), "-k", kernel, "--cwd", str(path.parent),
                           "--execution-timeout", str(execution_timeout), "--no-progress-bar", "-y", parameters_yaml]
    attempt, start_failures = 0, 0
    while True:
        attempt += 1
        run = _execute_once(path, out_path, command, profile=profile, parameters=parameters, env=env,
                            execution_timeout=execution_timeout, outer_timeout=outer_timeout)
        run.attempts = attempt
        if run.status == "failed" and run.kernel_never_ran and start_failures < KERNEL_START_RETRIES:
            start_failures += 1  # a kernel that died at start (two kernels drew the same free port) is retried
            continue
        if run.status != "timeout" or attempt - start_failures > retries:
            return run


def _at_least(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
        raise ParameterError(name, value, f"a number >= {minimum}")
    return value


def _execute_once(path, out_path, command, *, profile, parameters, env, execution_timeout, outer_timeout):
    """One papermill run; its results file is merged into the executed notebook's metadata."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    results_json = out_path.with_name(out_path.name + ".results.json")
    log_path = out_path.with_name(out_path.name + ".log")
    for stale in (results_json, out_path):
        stale.unlink(missing_ok=True)
    # papermill is headless by definition: panels render once, statically (nbclient can hang on widgets)
    child_env = {**os.environ, "KDLAB_HEADLESS": "1", **(env or {}), "KDLAB_PROFILE": profile,
                 results.RESULTS_JSON_ENV: str(results_json)}
    started = time.perf_counter()
    returncode = _run_with_timeout(command, child_env, log_path, outer_timeout)
    seconds = time.perf_counter() - started

    if returncode is None:
        status, error = "timeout", f"killed after the outer timeout of {outer_timeout:g} s"
    elif returncode == 0:
        status, error = "ok", None
    elif "CellTimeoutError" in (log_text := log_path.read_text(errors="replace")):
        status, error = "timeout", f"a cell ran longer than the execution timeout of {execution_timeout} s"
    else:
        status, error = "failed", _first_error(out_path) or _tail(log_text)

    stored = {"results": {}, "formats": {}, "not_finite": []}
    if results_json.exists():
        stored.update(json.loads(results_json.read_text()))
    if out_path.exists():
        _set_metadata(out_path, {**stored, "profile": profile, "parameters": parameters, "status": status,
                                 "seconds": round(seconds, 1)})
    return NotebookRun(path, out_path, status, seconds, results.decode(stored), stored["formats"], error,
                       log=log_path, kernel_never_ran=status == "failed" and not _any_cell_ran(out_path))


def _run_with_timeout(command, env, log_path, timeout):
    """Run `command` with its output in `log_path`; its exit code, or None if killed at `timeout`."""
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_process_tree(process)
            return None


def _kill_process_tree(process):
    """Kill papermill, its kernel and whatever the kernel started; return once they are dead.

    jupyter_client starts the kernel in a session of its own, so killing papermill's process group
    alone would leave a hung kernel running: its group is found through /proc before papermill dies.
    (Without /proc, ipykernel still exits by itself within a second or so of losing its parent.)
    """
    descendants = _descendants(process.pid)
    groups = {process.pid} | {group for _, group in descendants}
    groups.discard(os.getpgrp())  # never this process's own group
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    process.wait()
    deadline = time.monotonic() + 5  # SIGKILL is asynchronous: wait until the kernel is really gone
    while time.monotonic() < deadline and any(_running(pid) for pid, _ in descendants):
        time.sleep(0.05)


def _process_table():
    """{pid: (state, parent pid, process group)} from Linux's /proc; empty elsewhere."""
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:  # "pid (command) state ppid pgrp ...": the command may contain spaces and parentheses
            state, parent, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
            table[int(stat.parent.name)] = (state, int(parent), int(group))
        except (OSError, ValueError, IndexError):
            continue
    return table


def _descendants(pid):
    """(pid, process group) of every descendant of `pid`."""
    children = {}
    for child, (_, parent, group) in _process_table().items():
        children.setdefault(parent, []).append((child, group))
    found, todo = [], [pid]
    while todo:
        for child, group in children.get(todo.pop(), []):
            found.append((child, group))
            todo.append(child)
    return found


def _running(pid):
    """True while `pid` exists and is not a zombie (dead, waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _set_metadata(out_path, entries):
    """Update `metadata["kdlab"]` of a notebook file, replacing the file atomically."""
    import nbformat

    notebook = nbformat.read(str(out_path), as_version=4)
    notebook.metadata.setdefault("kdlab", {}).update(entries)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    nbformat.write(notebook, str(tmp))
    os.replace(tmp, out_path)


def _any_cell_ran(out_path):
    """True when the executed notebook shows a code cell that the kernel executed (or an error it raised)."""
    if not out_path.exists():
        return False
    import nbformat

    try:
        cells = nbformat.read(str(out_path), as_version=4).cells
    except Exception:  # a notebook cut off mid-write: papermill got far enough to write it
        return True
    return any(cell.cell_type == "code" and (cell.get("execution_count") is not None or cell.get("outputs"))
               for cell in cells)


def _first_error(out_path):
    """'ename: evalue' of the first cell that raised, from the executed notebook."""
    if not out_path.exists():
        return None
    import nbformat

    for cell in nbformat.read(str(out_path), as_version=4).cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return f"{output.get('ename')}: {output.get('evalue')}".rstrip(": ")
    return None


def _tail(text, lines=5):
    return "\n".join(text.strip().splitlines()[-lines:])


# --------------------------------------------------------------------------- many notebooks


def find_notebooks(notebooks_dir):
    """The course notebooks `NN_*.ipynb` in `notebooks_dir`, in order."""
    notebooks_dir = Path(notebooks_dir)
    if not notebooks_dir.is_dir():
        raise ParameterError("notebooks_dir", str(notebooks_dir), "an existing folder of NN_*.ipynb notebooks")
    return sorted(p for p in notebooks_dir.iterdir() if NOTEBOOK_NAME.match(p.name))


def run_notebooks(paths, out_dir, profile, *, progress=True, **execute_options):
    """Execute each notebook into `out_dir` (same file name); returns the list of NotebookRun."""
    paths = [Path(p) for p in paths]
    runs = []
    for index, path in enumerate(paths, start=1):
        if progress:
            print(f"[{index}/{len(paths)}] {path.name} ({profile}) ...", end=" ", flush=True)
        run = execute_notebook(path, Path(out_dir) / path.name, profile=profile, **execute_options)
        if progress:
            print(f"{run.status} in {run.seconds:.1f} s", flush=True)
        runs.append(run)
    return runs


def run_all(notebooks_dir, out_dir, profile, **options):
    """Execute every `NN_*.ipynb` of `notebooks_dir` in order (see `run_notebooks`)."""
    return run_notebooks(find_notebooks(notebooks_dir), out_dir, profile, **options)


def write_summary(runs, path, *, profile, machine=None):
    """Write the runs' status, run time and recorded key numbers as JSON (atomically); returns the path.
    `machine` adds entries to the machine's description (the processor, the platform, the load average).

    This file is what the README's measured numbers are rendered from (`benchmarks/readme_numbers.py`)."""
    from .atomic import write_bytes

    payload = {"profile": profile, "machine": {**_machine(), **(machine or {})},
               "notebooks": {run.notebook.stem: {"status": run.status, "seconds": round(run.seconds, 1),
                                                 "results": run.results, "formats": run.formats}
                             for run in runs}}
    write_bytes(path, (json.dumps(payload, indent=1, sort_keys=True, default=str) + "\n").encode())
    return Path(path)


def _machine():
    import platform

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    from .profiling import cpu_model

    return {"cpus": os.cpu_count(), "cpu": cpu_model(), "platform": platform.platform(), "load_average_1min": load}


def format_table(runs, width=80):
    """The runs as text no wider than `width`: one line per notebook (name, status, run time), then its
    key numbers (or its error) on indented lines of their own, long values wrapped."""
    rows = [(run.notebook.stem, run.status + (f" ({run.attempts} tries)" if run.attempts > 1 else ""),
             _duration(run.seconds)) for run in runs]
    name_width = max([len("notebook")] + [len(name) for name, _, _ in rows])
    status_width = max([len("status")] + [len(status) for _, status, _ in rows])
    name_width = min(name_width, width - status_width - 14)

    def line(name, status, time_):
        return f"{name[:name_width]:<{name_width}}  {status:<{status_width}}  {time_:>10}".rstrip()

    lines = [line("notebook", "status", "time"), "-" * min(width, name_width + status_width + 14)]
    for run, row in zip(runs, rows):
        lines.append(line(*row))
        details = [f"{name} = {results.format_value(value, run.formats.get(name))}"
                   for name, value in run.results.items()]
        if run.error:
            last_line = run.error.strip().splitlines()[-1] if run.error.strip() else ""
            details.append(f"error: {last_line[:300]}")
        for detail in details:
            lines.extend(textwrap.wrap(detail, width, initial_indent="    ", subsequent_indent="        ",
                                       break_on_hyphens=False))
    return "\n".join(lines)


def _duration(seconds):
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"
