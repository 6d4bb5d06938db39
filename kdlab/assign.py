"""Student versions of the course notebooks, from the solution notebooks, the way nbgrader makes them.

The notebooks in `notebooks/` are the solutions. An exercise is a solution cell (nbgrader metadata
`solution: true`) whose answer sits between a `### BEGIN SOLUTION` and a `### END SOLUTION` line,
followed by a check cell (`grade: true`, `locked`, `points`, a `grade_id`) of plain asserts; lines
between `### BEGIN HIDDEN TESTS` and `### END HIDDEN TESTS` are run only by the grader.

`make_student_version` applies nbgrader's rules: a solution region becomes `# YOUR CODE HERE` +
`raise NotImplementedError()` at the indentation of its BEGIN line (a solution cell without markers
becomes that stub, a Markdown one "YOUR ANSWER HERE"); hidden tests are removed; outputs, execution
counts and run metadata are cleared. Like nbgrader, a marker is any line that contains the marker
text, in any cell, so what kdlab accepts `nbgrader generate_assignment` accepts too. Cell ids and
nbgrader metadata are kept, so nbgrader's autograde and `kdlab grade` still match cells by grade_id.

    kdlab student --out release --instructor
"""
import copy
import json
from dataclasses import dataclass
from pathlib import Path

import nbformat

from .cli import register
from .errors import KdlabError, ParameterError

SOLUTION_MARKERS = ("BEGIN SOLUTION", "END SOLUTION")
HIDDEN_TEST_MARKERS = ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
CODE_STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")  # nbgrader's stub for Python
TEXT_STUB = ("YOUR ANSWER HERE",)
# what an executed notebook carries that a handed-out one must not: run records, timings, widget state
RUN_METADATA = {"notebook": ("papermill", "kdlab", "widgets", "celltoolbar"),
                "cell": ("papermill", "execution", "ExecuteTime")}


@dataclass(frozen=True)
class Exercise:
    """One graded check cell and the solution cells the student fills in before it."""

    grade_id: str
    points: float
    check_cell: str  # cell id
    solution_cells: tuple  # cell ids


def is_solution(cell):
    return bool(cell.metadata.get("nbgrader", {}).get("solution"))


def is_check(cell):
    """An autograded test cell: graded, not itself an answer (those are graded by hand in nbgrader)."""
    meta = cell.metadata.get("nbgrader", {})
    return bool(meta.get("grade")) and not meta.get("solution")


def exercises(notebook, name="notebook"):
    """The notebook's exercises in order; checks the nbgrader metadata they need."""
    _check_grading_metadata(notebook, name)
    found, pending = [], []
    for cell in notebook.cells:
        if is_solution(cell):
            pending.append(cell.get("id"))
        elif is_check(cell):
            meta = cell.metadata.nbgrader
            found.append(Exercise(meta.grade_id, meta.points, cell.get("id"), tuple(pending)))
            pending = []
    return found


def make_student_version(notebook, name="notebook"):
    """A copy of solution `notebook` to hand out: no solutions, no hidden tests, no outputs.

    `name` (the file name) is used in error messages about misplaced or unmatched markers.
    """
    exercises(notebook, name)  # rejects metadata that the grader could not use
    student = clear_run_state(notebook)
    language = notebook.metadata.get("kernelspec", {}).get("language", "python")
    if language != "python":
        raise ParameterError("kernelspec language", language, "'python': the stub is Python code")
    for index, cell in enumerate(student.cells):
        where = f"{name}, cell {cell.get('id', '?')} (index {index})"
        stub = CODE_STUB if cell.cell_type == "code" else TEXT_STUB
        cell.source, had_solution = _cut_regions(cell.source, SOLUTION_MARKERS, stub, where)
        if had_solution and not is_solution(cell):
            raise KdlabError(f"{where}: has solution markers but is not a solution cell; set its nbgrader "
                             "metadata solution: true, or reword text that mentions the markers")
        if is_solution(cell) and not had_solution:
            cell.source = "\n".join(stub)
        cell.source, had_hidden = _cut_regions(cell.source, HIDDEN_TEST_MARKERS, (), where)
        if had_hidden and not cell.metadata.get("nbgrader", {}).get("grade"):
            raise KdlabError(f"{where}: has hidden-test markers but is not a check cell (nbgrader metadata "
                             "grade: true)")
    return student


def clear_run_state(notebook):
    """A copy without outputs, execution counts, papermill's injected cell and run metadata."""
    clean = copy.deepcopy(notebook)
    clean.cells = [cell for cell in clean.cells if "injected-parameters" not in cell.metadata.get("tags", [])]
    for key in RUN_METADATA["notebook"]:
        clean.metadata.pop(key, None)
    for cell in clean.cells:
        for key in RUN_METADATA["cell"]:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    return clean


def _cut_regions(source, markers, replacement, where):
    """Replace each `markers` region of `source` by `replacement` lines, indented like its BEGIN line.

    Returns (new source, whether a region was found); unmatched or nested markers raise KdlabError.
    """
    begin, end = markers
    kept, opened_at, found = [], None, False
    for number, line in enumerate(source.split("\n"), start=1):
        if begin in line:
            if opened_at is not None:
                raise KdlabError(f"{where}: '{begin}' on line {number} is nested inside the region opened on "
                                 f"line {opened_at}; close each region with '{end}' before the next")
            if end in line:
                raise KdlabError(f"{where}: line {number} holds both '{begin}' and '{end}'; each marker must "
                                 "be a line of its own (to mention the markers in text, reword them)")
            opened_at, found = number, True
            indent = line[:len(line) - len(line.lstrip())]
            kept.extend(indent + stub_line for stub_line in replacement)
        elif end in line:
            if opened_at is None:
                raise KdlabError(f"{where}: '{end}' on line {number} has no '{begin}' before it")
            opened_at = None
        elif opened_at is None:
            kept.append(line)
    if opened_at is not None:
        raise KdlabError(f"{where}: '{begin}' on line {opened_at} has no matching '{end}'")
    return "\n".join(kept), found


def _check_grading_metadata(notebook, name):
    """Every nbgrader cell has a unique grade_id; every check cell has points >= 0."""
    seen = {}
    for index, cell in enumerate(notebook.cells):
        meta = cell.metadata.get("nbgrader")
        if not meta or not (meta.get("solution") or meta.get("grade")):
            continue
        where = f"{name}, cell {cell.get('id', '?')} (index {index})"
        grade_id = meta.get("grade_id")
        if not isinstance(grade_id, str) or not grade_id:
            raise KdlabError(f"{where}: nbgrader cell without a grade_id (e.g. 'ex1-soft-targets-check')")
        if grade_id in seen:
            raise KdlabError(f"{where}: grade_id {grade_id!r} is used twice (also by cell {seen[grade_id]})")
        seen[grade_id] = cell.get("id", index)
        points = meta.get("points")
        if is_check(cell) and (isinstance(points, bool) or not isinstance(points, (int, float)) or points < 0):
            raise KdlabError(f"{where}: check cell {grade_id!r} needs nbgrader metadata points >= 0, "
                             f"got {points!r}")


# --------------------------------------------------------------------------- releases


def write_release(notebooks_dir, release_dir, *, instructor_bundle=False):
    """Write `release_dir/student/NN_*.ipynb` (and `instructor/` with solutions and a manifest).

    Every notebook is converted before anything is written, so one bad marker writes nothing.
    Returns the manifest: points and exercises per notebook.
    """
    from .runner import find_notebooks

    release_dir, paths = Path(release_dir), find_notebooks(notebooks_dir)
    if not paths:
        raise ParameterError("notebooks_dir", str(notebooks_dir), "a folder with NN_*.ipynb solution notebooks")
    versions = []
    for path in paths:
        solution = nbformat.read(str(path), as_version=4)
        versions.append((path.name, solution, make_student_version(solution, path.name)))
    manifest = {"notebooks": {name: _manifest_entry(solution, name) for name, solution, _ in versions}}
    manifest["total_points"] = sum(entry["points"] for entry in manifest["notebooks"].values())

    _write_all(release_dir / "student", [(name, student) for name, _, student in versions])
    if instructor_bundle:
        _write_all(release_dir / "instructor", [(name, clear_run_state(solution)) for name, solution, _ in versions])
        (release_dir / "instructor" / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _manifest_entry(solution, name):
    found = exercises(solution, name)
    return {"points": sum(e.points for e in found),
            "exercises": [{"grade_id": e.grade_id, "points": e.points, "check_cell": e.check_cell,
                           "solution_cells": list(e.solution_cells)} for e in found]}


def _write_all(folder, named_notebooks):
    folder.mkdir(parents=True, exist_ok=True)
    for name, notebook in named_notebooks:
        nbformat.validate(notebook)
        nbformat.write(notebook, str(folder / name))


# --------------------------------------------------------------------------- command line


def _configure(parser):
    from .paths import REPO_ROOT

    parser.add_argument("--out", type=Path, default=REPO_ROOT / "release",
                        help="release folder (default: release/); student versions go to OUT/student/")
    parser.add_argument("--instructor", action="store_true",
                        help="also write OUT/instructor/: the solutions, hidden tests and manifest.json")
    parser.add_argument("--notebooks", type=Path, default=REPO_ROOT / "notebooks",
                        help="folder of the solution notebooks NN_*.ipynb (default: notebooks/)")


def _student_command(args):
    manifest = write_release(args.notebooks, args.out, instructor_bundle=args.instructor)
    for name, entry in manifest["notebooks"].items():
        print(f"{name}: {len(entry['exercises'])} exercises, {entry['points']:g} points")
    print(f"student versions: {args.out / 'student'}")
    if args.instructor:
        print(f"solutions, hidden tests and manifest.json: {args.out / 'instructor'}")
    return 0


register("student", _student_command, configure=_configure,
         help="write student versions of the notebooks (solutions and hidden tests removed)")
