"""Grade a filled-in student notebook against its solution notebook, as nbgrader's autograde does.

Each check cell of the submission (matched by grade_id) gets the solution's source back, hidden
tests included, so an edited or deleted assert does not count. The notebook then runs headless in a
child process with `KDLAB_PROFILE` set and `NBGRADER_EXECUTION=autograde`, every cell limited to
CELL_TIMEOUT_S (a cell that runs longer is interrupted, the rest still runs) and the whole run to an
outer timeout. A check cell that raises nothing earns its points.

    >>> report = grade("alice/01_knowledge_distillation.ipynb", "notebooks/01_knowledge_distillation.ipynb")
    >>> report.points, report.max_points
    (3, 4)
    >>> print(report.table())
"""
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path

import nbformat

from . import config
from .assign import clear_run_state, exercises, is_check
from .cli import register
from .errors import KdlabError, ParameterError

CELL_TIMEOUT_S = 30  # nbgrader's default while grading; the smoke profile keeps every cell under it
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
# the child process: execute a notebook with nbclient, saving it after every cell
_EXECUTE = """
import sys, nbformat
from nbclient import NotebookClient
source, target, cell_timeout, cwd = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
notebook = nbformat.read(source, as_version=4)
save = lambda **_: nbformat.write(notebook, target)
NotebookClient(notebook, kernel_name="python3", timeout=cell_timeout, allow_errors=True,
               interrupt_on_timeout=True, on_cell_executed=save, resources={"metadata": {"path": cwd}}).execute()
save()
"""


@dataclass(frozen=True)
class ExerciseResult:
    """How one check cell did: status is passed, failed (an assert), error (anything else) or missing."""

    grade_id: str
    points: float
    max_points: float
    status: str
    message: str = ""


@dataclass
class GradeReport:
    """The per-exercise results of one graded submission."""

    submission: Path
    profile: str
    cell_timeout: float
    exercises: list
    seconds: float
    cell_seconds: dict = field(default_factory=dict)  # cell id -> seconds it ran
    other_errors: list = field(default_factory=list)  # errors outside the check cells, for the grader to read

    @property
    def points(self):
        return sum(result.points for result in self.exercises)

    @property
    def max_points(self):
        return sum(result.max_points for result in self.exercises)

    @property
    def slowest_cell(self):
        """(cell id, seconds) of the cell that ran longest, or None."""
        return max(self.cell_seconds.items(), key=lambda item: item[1], default=None)

    def table(self):
        """A Markdown table of the exercises, then the total."""
        rows = [("exercise", "points", "status", "message")]
        rows += [(r.grade_id, f"{r.points:g} / {r.max_points:g}", r.status, r.message[:100]) for r in self.exercises]
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |" for row in rows]
        lines.insert(1, "|" + "|".join("-" * (width + 2) for width in widths) + "|")
        lines.append(f"total: {self.points:g} / {self.max_points:g}")
        return "\n".join(lines)

    def as_dict(self):
        return {"submission": str(self.submission), "profile": self.profile, "cell_timeout": self.cell_timeout,
                "points": self.points, "max_points": self.max_points, "seconds": round(self.seconds, 1),
                "exercises": [asdict(result) for result in self.exercises],
                "slowest_cell": self.slowest_cell, "other_errors": self.other_errors}


def grade(submission_path, solution_path, *, profile="smoke", timeout=None, notebook_timeout=None,
          executed_path=None):
    """Score `submission_path` with the checks and hidden tests of `solution_path`.

    `timeout` limits each cell (default: CELL_TIMEOUT_S in the smoke profile, else the runner's
    per-cell limit), `notebook_timeout` the whole run (default: the runner's). The executed notebook,
    with the grader's outputs, is kept at `executed_path` if given. Returns a GradeReport.
    """
    from .runner import DEFAULT_TIMEOUTS

    submission_path, solution_path = Path(submission_path), Path(solution_path)
    profile = config.check("PROFILE", profile)
    cell_limit, notebook_limit = DEFAULT_TIMEOUTS[profile]
    if timeout is None:
        timeout = CELL_TIMEOUT_S if profile == "smoke" else cell_limit
    if notebook_timeout is None:
        notebook_timeout = notebook_limit
    for name, value in (("timeout", timeout), ("notebook_timeout", notebook_timeout)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 1:
            raise ParameterError(name, value, "a number of seconds >= 1")
    submission, solution = _read(submission_path, "submission"), _read(solution_path, "solution")
    expected = exercises(solution, solution_path.name)
    gradable, missing = restore_checks(submission, solution)
    if len(missing) == len(expected) > 0:
        raise KdlabError(f"{submission_path.name} has none of the check cells of {solution_path.name} "
                         "(no grade_id matches): is it a submission of that notebook?")

    with tempfile.TemporaryDirectory(prefix="kdlab-grade-") as scratch:
        source, target = Path(scratch) / "gradable.ipynb", Path(scratch) / "executed.ipynb"
        nbformat.write(gradable, str(source))
        started = time.perf_counter()
        stopped = _execute(source, target, profile=profile, cell_timeout=int(timeout),
                           notebook_timeout=notebook_timeout, cwd=submission_path.resolve().parent)
        seconds = time.perf_counter() - started
        executed = nbformat.read(str(target), as_version=4) if target.exists() else gradable
        if executed_path:
            nbformat.write(executed, str(executed_path))

    cells = {cell.metadata.get("nbgrader", {}).get("grade_id"): cell for cell in executed.cells}
    results = [ExerciseResult(e.grade_id, 0, e.points, "missing", "the check cell was deleted")
               if e.grade_id in missing else _score(cells[e.grade_id], e, stopped, timeout) for e in expected]
    checks = {e.grade_id for e in expected}
    other_errors = [f"cell {cell.get('id')} (index {index}): {_error_text(error, timeout)}"
                    for index, cell in enumerate(executed.cells)
                    if (error := _error(cell)) and cell.metadata.get("nbgrader", {}).get("grade_id") not in checks]
    return GradeReport(submission_path, profile, timeout, results, seconds, _cell_seconds(executed), other_errors)


def restore_checks(submission, solution):
    """A copy of `submission`, outputs cleared, whose check cells carry the solution's full source.

    Returns (notebook, grade_ids of check cells missing from the submission).
    """
    originals = {cell.metadata.nbgrader.grade_id: cell for cell in solution.cells if is_check(cell)}
    gradable = clear_run_state(submission)
    present = set()
    for cell in gradable.cells:
        original = originals.get(cell.metadata.get("nbgrader", {}).get("grade_id"))
        if original is not None:
            cell.source, cell.metadata.nbgrader = original.source, original.metadata.nbgrader
            present.add(original.metadata.nbgrader.grade_id)
    return gradable, set(originals) - present


def _read(path, role):
    if not path.is_file() or path.suffix != ".ipynb":
        raise ParameterError(role, str(path), "an existing .ipynb notebook file")
    try:
        return nbformat.read(str(path), as_version=4)
    except Exception as error:  # nbformat raises several types for a damaged file
        raise KdlabError(f"{role} {path} is not a readable notebook: {error}") from None


def _execute(source, target, *, profile, cell_timeout, notebook_timeout, cwd):
    """Run the child that executes `source` into `target`; None, or why it stopped early.

    The child saves the notebook after every cell, so what ran before a stop is still graded.
    """
    from .runner import _run_with_timeout  # kills the kernel with its parent; nbclient can hang (nbclient#312)

    env = {**os.environ, "KDLAB_PROFILE": profile, "NBGRADER_EXECUTION": "autograde"}
    command = [sys.executable, "-c", _EXECUTE, str(source), str(target), str(cell_timeout), str(cwd)]
    log = target.with_suffix(".log")
    returncode = _run_with_timeout(command, env, log, notebook_timeout)
    if returncode == 0:
        return None
    last_line = (log.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
    if not target.exists():
        raise KdlabError(f"the grader could not execute the notebook: {last_line}")
    if returncode is None:
        return f"not run: the notebook was stopped after {notebook_timeout:g} s"
    return f"not run: the execution stopped early ({last_line})"


def _score(cell, exercise, stopped, cell_timeout):
    if cell.execution_count is None and not cell.outputs:
        return ExerciseResult(exercise.grade_id, 0, exercise.points, "error", stopped or "not run")
    error = _error(cell)
    if error is None:
        return ExerciseResult(exercise.grade_id, exercise.points, exercise.points, "passed")
    status = "failed" if error.ename == "AssertionError" else "error"
    return ExerciseResult(exercise.grade_id, 0, exercise.points, status, _error_text(error, cell_timeout))


def _error(cell):
    return next((out for out in cell.get("outputs", []) if out.output_type == "error"), None)


def _error_text(error, cell_timeout):
    """'ename: evalue'; for a bare `assert`, the line that failed."""
    if error.ename == "KeyboardInterrupt":  # nobody presses Ctrl-C here: the child interrupted a slow cell
        return f"timeout: the cell ran longer than {cell_timeout:g} s and was interrupted"
    if error.ename == "AssertionError" and not error.evalue:
        lines = [line for entry in error.traceback for line in ANSI_ESCAPE.sub("", entry).splitlines()]
        arrows = [line.split(maxsplit=2) for line in lines if line.lstrip().startswith("---->")]
        return f"assert failed: {arrows[-1][-1]}" if arrows else "AssertionError"
    return f"{error.ename}: {error.evalue}"


def _cell_seconds(notebook):
    """cell id -> seconds, from the timings nbclient records in each cell's metadata."""
    seconds = {}
    for cell in notebook.cells:
        timing = cell.metadata.get("execution", {})
        start, end = timing.get("iopub.execute_input"), timing.get("shell.execute_reply")
        if start and end:
            seconds[cell.get("id")] = (_timestamp(end) - _timestamp(start)).total_seconds()
    return seconds


def _timestamp(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))  # Python 3.10 does not read the "Z"


# --------------------------------------------------------------------------- command line


def solution_for(submission):
    """The notebook in notebooks/ whose name the submission's file name contains, else whose NN_ it starts with."""
    from .paths import REPO_ROOT
    from .runner import find_notebooks

    name, notebooks = Path(submission).name, find_notebooks(REPO_ROOT / "notebooks")
    found = [p for p in notebooks if p.stem in name] or [p for p in notebooks if p.name[:3] == name[:3]]
    if len(found) != 1:
        raise KdlabError(f"cannot tell which notebook {name} answers: give --solution notebooks/NN_....ipynb")
    return found[0]


def _configure(parser):
    parser.add_argument("submission", type=Path, help="the student's notebook")
    parser.add_argument("--solution", type=Path,
                        help="the solution notebook (default: the notebooks/NN_*.ipynb the file name points to)")
    parser.add_argument("--profile", choices=config.PROFILES, default="smoke", help="run profile (default smoke)")
    parser.add_argument("--timeout", type=int,
                        help=f"seconds allowed per cell (default {CELL_TIMEOUT_S} in the smoke profile, as nbgrader)")
    parser.add_argument("--executed", type=Path, help="keep the executed notebook here, as feedback")
    parser.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")


def _grade_command(args):
    solution = args.solution or solution_for(args.submission)
    report = grade(args.submission, solution, profile=args.profile, timeout=args.timeout,
                   executed_path=args.executed)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
        return 0
    print(f"{args.submission.name} against {solution.name}, profile {report.profile}, {report.seconds:.1f} s")
    print(report.table())
    for line in report.other_errors:
        print(f"note: {line}")
    if report.slowest_cell:
        cell, seconds = report.slowest_cell
        print(f"slowest cell: {cell}, {seconds:.1f} s of the {report.cell_timeout:g} s allowed")
    return 0


register("grade", _grade_command, configure=_configure,
         help="score a student's notebook with the solution's checks and hidden tests")
