"""One point of a sweep: the task a worker runs, and the record it leaves next to the executed notebook.

`<out>/points/<point-id>.ipynb` is the executed notebook and `<point-id>.json` its record (status, run
time, attempts, error, recorded results), written atomically by the worker as soon as the point ends,
so an interrupted sweep loses no finished point. A batch system can run one task from a JSON file:

    python -m kdlab.sweep task.json
"""
import hashlib
import json
import os
import socket
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import results
from ..runner import execute_notebook


@dataclass(frozen=True)
class PointTask:
    """Everything a worker needs to run one point; plain values, so it pickles and fits in JSON."""

    point_id: str
    notebook: str
    notebook_sha256: str
    output: str
    profile: str
    parameters: dict
    execution_timeout: "int | None" = None
    outer_timeout: "float | None" = None
    retries: int = 1

    @property
    def record_path(self):
        return Path(self.output).with_suffix(".json")


def notebook_digest(notebook):
    """sha256 of the notebook file: a point is reused only if the notebook has not changed since."""
    return hashlib.sha256(Path(notebook).read_bytes()).hexdigest()


def run_point(task):
    """Execute one point, write its record, return the record. Never raises for a failing notebook."""
    started = time.perf_counter()
    status, attempts, error, order = "failed", 1, None, ()
    try:
        run = execute_notebook(task.notebook, task.output, profile=task.profile, parameters=task.parameters,
                               execution_timeout=task.execution_timeout, outer_timeout=task.outer_timeout,
                               retries=task.retries)
        status, attempts, error, order = run.status, run.attempts, run.error, tuple(run.results)
    except Exception as failure:  # one point's failure must not stop the others: it goes into its record
        error = f"{type(failure).__name__}: {failure}"
    record = make_record(task, status=status, seconds=time.perf_counter() - started, attempts=attempts,
                         error=error, payload=_payload(task.output, order))
    write_record(task.record_path, record)
    return record


def make_record(task, *, status, seconds, attempts=1, error=None, payload=None):
    """The JSON record of a point; results stay encoded as kdlab stores them (NaN as "nan")."""
    payload = payload or {}
    return {"point": task.point_id, "notebook": task.notebook, "notebook_sha256": task.notebook_sha256,
            "profile": task.profile, "parameters": task.parameters, "status": status,
            "seconds": round(seconds, 2), "attempts": attempts, "error": error,
            "results": payload.get("results", {}), "formats": payload.get("formats", {}),
            "not_finite": payload.get("not_finite", []), "host": socket.gethostname(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _payload(output, order=()):
    """What the notebook recorded (also when it failed half way), in recording order; {} if unreadable.

    Notebook metadata comes back with sorted keys; `order` (the runner's results) restores the order in
    which the notebook recorded them, so "the first recorded number" means what it says.
    """
    try:
        payload = results.read_payload(output) if Path(output).exists() else {}
    except Exception:  # a notebook cut off mid-write: the record says what went wrong anyway
        return {}
    stored = payload.get("results", {})
    payload["results"] = {**{name: stored[name] for name in order if name in stored}, **stored}
    return payload


def write_record(path, record):
    """Write a record atomically (temporary file + rename in the same folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle, indent=1, allow_nan=False)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_record(path):
    """A point's record, or None when there is none (or it cannot be read: the point runs again)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def is_finished(record, task):
    """True when `record` is an ok run of exactly this task (same notebook file, profile, parameters)."""
    return (record is not None and record.get("status") == "ok"
            and record.get("notebook_sha256") == task.notebook_sha256
            and record.get("profile") == task.profile and record.get("parameters") == task.parameters
            and Path(task.output).exists())


def results_of(record):
    """The recorded results of a point, decoded (NaN back as float)."""
    return results.decode(record)


def task_json(task):
    """A task as JSON text, for `python -m kdlab.sweep task.json`."""
    return json.dumps(asdict(task), indent=1)
