"""Every notebook with exercises makes a working assignment, checked through the grader in the smoke profile.

The solutions passing their own checks, hidden tests included, is proven by test_execute.py (papermill
stops at a failing assert). Here each student version runs once, and one notebook is graded once more
with a deliberately wrong answer, to keep the CPU cost of CI low.
"""
import json

import nbformat
import pytest

from kdlab.assign import exercises, make_student_version
from kdlab.grade import grade

from .conftest import NOTEBOOKS

# generous: these tests check the assignment mechanics; a loaded CI machine must not turn them into
# cell timeouts. The slowest cell is printed to compare with nbgrader's 30 s default.
CELL_TIMEOUT_S = 120
# notebook -> (check cell, solution line, wrong line, words of the failure): a mistake only a hidden test catches
WRONG_ANSWERS = {
    "01_knowledge_distillation": ("ex2-kd-loss-check", "return temperature**2 * kl", "return kl", "tau^2"),
}


def read(path):
    return nbformat.read(str(path), as_version=4)


WITH_EXERCISES = [pytest.param(p, id=p.stem) for p in NOTEBOOKS if exercises(read(p), p.name)]


def solve(student, solution, replace=None):
    """The student version with every answer filled in from the solution; `replace` = (old line, new line)."""
    answers = {cell.id: cell.source for cell in solution.cells}
    completed = nbformat.from_dict(json.loads(json.dumps(student)))
    for cell in completed.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = answers[cell.id]
            if replace and replace[0] in cell.source:
                cell.source = cell.source.replace(*replace)
    return completed


@pytest.mark.notebook
@pytest.mark.parametrize("path", WITH_EXERCISES)
def test_student_version_fails_only_where_the_student_writes_code(path, tmp_path):
    solution = read(path)
    found = exercises(solution, path.name)
    nbformat.write(make_student_version(solution, path.name), str(tmp_path / path.name))
    executed_path = tmp_path / "executed.ipynb"
    report = grade(tmp_path / path.name, path, timeout=CELL_TIMEOUT_S, executed_path=executed_path)
    executed = read(executed_path)

    errors = {cell.id: output for cell in executed.cells for output in cell.get("outputs", [])
              if output.output_type == "error"}
    exercise_cells = {cell_id for e in found for cell_id in (*e.solution_cells, e.check_cell)}
    outside = {cell_id: f"{out.ename}: {out.evalue}" for cell_id, out in errors.items()
               if cell_id not in exercise_cells}
    assert not outside, f"{path.name}: the student version fails outside its exercises: {outside}"
    for exercise in found:
        first = next(errors[c] for c in (*exercise.solution_cells, exercise.check_cell) if c in errors)
        assert first.ename == "NotImplementedError", f"{exercise.grade_id}: first error {first.ename}: {first.evalue}"
    assert report.points == 0 and {r.status for r in report.exercises} == {"error"}
    print(f"{path.name}: {len(found)} exercises, student version in {report.seconds:.1f} s, slowest cell "
          f"{report.slowest_cell}")


@pytest.mark.notebook
@pytest.mark.parametrize("stem", WRONG_ANSWERS)
def test_a_wrong_answer_loses_exactly_its_points(stem, tmp_path):
    path = next(p for p in NOTEBOOKS if p.stem == stem)
    grade_id, right, wrong, failure = WRONG_ANSWERS[stem]
    solution = read(path)
    assert right in "\n".join(c.source for c in solution.cells), f"{path.name} no longer has the line {right!r}"
    submission = solve(make_student_version(solution, path.name), solution, replace=(right, wrong))
    nbformat.write(submission, str(tmp_path / path.name))

    report = grade(tmp_path / path.name, path, timeout=CELL_TIMEOUT_S)
    results = {r.grade_id: r for r in report.exercises}
    assert results[grade_id].status == "failed" and failure in results[grade_id].message, results[grade_id]
    others = [r for r in report.exercises if r.grade_id != grade_id]
    assert all(r.status == "passed" for r in others), report.table()
    assert report.points == report.max_points - results[grade_id].max_points
    print(f"{path.name} graded in {report.seconds:.1f} s, slowest cell {report.slowest_cell}\n{report.table()}")
