"""Student versions and grading, on tiny synthetic notebooks without torch (a grading run takes seconds)."""
import json

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from kdlab import cli
from kdlab.assign import exercises, make_student_version, write_release
from kdlab.errors import KdlabError, ParameterError
from kdlab.grade import grade, solution_for

SOLUTION_LINES = ("return 2 * x", "return sum(values)", "ANSWER = 42", "Dark knowledge is",
                  "assert double(-3) == -6", "assert Counter().total([]) == 0")


def solution_cell(source, grade_id, cell_type="code"):
    meta = {"nbgrader": {"solution": True, "grade": False, "grade_id": grade_id, "locked": False,
                         "schema_version": 3, "task": False}}
    if cell_type == "markdown":
        return new_markdown_cell(source, metadata=meta)
    return new_code_cell(source, metadata=meta)


def check_cell(source, grade_id, points):
    return new_code_cell(source, metadata={"nbgrader": {"solution": False, "grade": True, "grade_id": grade_id,
                                                        "locked": True, "points": points, "schema_version": 3,
                                                        "task": False}})


def toy_solution():
    """Three exercises (top level, in a function, in a method) and a written answer."""
    notebook = new_notebook(metadata={"kernelspec": {"name": "python3", "language": "python",
                                                     "display_name": "Python 3"}})
    notebook.cells = [
        new_markdown_cell("# Toy course notebook"),
        new_code_cell("import os\nprint(os.environ.get('NBGRADER_EXECUTION'), os.environ.get('KDLAB_PROFILE'))"),
        solution_cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION", "ex1-solution"),
        check_cell("assert double(2) == 4\n### BEGIN HIDDEN TESTS\nassert double(-3) == -6\n"
                   "### END HIDDEN TESTS\nprint('exercise 1 passed')", "ex1-check", 1),
        solution_cell("class Counter:\n    def total(self, values):\n        ### BEGIN SOLUTION\n"
                      "        return sum(values)\n        ### END SOLUTION", "ex2-solution"),
        check_cell("assert Counter().total([1, 2]) == 3\n### BEGIN HIDDEN TESTS\n"
                   "assert Counter().total([]) == 0\n### END HIDDEN TESTS", "ex2-check", 2),
        solution_cell("### BEGIN SOLUTION\nANSWER = 42\n### END SOLUTION", "ex3-solution"),
        check_cell('assert ANSWER == 42, "the answer is 42"', "ex3-check", 1),
        solution_cell("Dark knowledge is the teacher's mass on wrong classes.", "ex4-written", "markdown"),
    ]
    for index, cell in enumerate(notebook.cells):
        cell.id = f"cell{index}"
    # as if executed: outputs that show the solution, run metadata from papermill
    notebook.cells[6].outputs = [new_output("execute_result", {"text/plain": "ANSWER = 42"}, execution_count=7)]
    notebook.cells[6].execution_count = 7
    notebook.cells[6].metadata["papermill"] = {"duration": 0.1}
    notebook.metadata["papermill"] = {"parameters": {"PROFILE": "smoke"}}
    return notebook


def source_of(notebook, cell_id):
    return next(cell.source for cell in notebook.cells if cell.id == cell_id)


def test_solution_regions_become_the_stub_at_their_indentation():
    solution = toy_solution()
    student = make_student_version(solution, "01_toy.ipynb")
    ids = [cell.id for cell in solution.cells]
    assert source_of(student, ids[2]) == "def double(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    assert source_of(student, ids[4]) == ("class Counter:\n    def total(self, values):\n"
                                          "        # YOUR CODE HERE\n        raise NotImplementedError()")
    assert source_of(student, ids[6]) == "# YOUR CODE HERE\nraise NotImplementedError()"
    assert source_of(student, ids[8]) == "YOUR ANSWER HERE"


def test_hidden_tests_are_removed_and_visible_asserts_kept():
    student = make_student_version(toy_solution(), "01_toy.ipynb")
    check = source_of(student, toy_solution().cells[3].id)
    assert check == "assert double(2) == 4\nprint('exercise 1 passed')"


def test_outputs_counts_and_run_metadata_are_cleared():
    student = make_student_version(toy_solution(), "01_toy.ipynb")
    for cell in student.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
        assert "papermill" not in cell.metadata
    assert "papermill" not in student.metadata


def test_ids_and_grading_metadata_are_kept():
    solution = toy_solution()
    student = make_student_version(solution, "01_toy.ipynb")
    assert [c.id for c in student.cells] == [c.id for c in solution.cells]
    assert [c.metadata.get("nbgrader") for c in student.cells] == [c.metadata.get("nbgrader") for c in solution.cells]
    assert toy_solution().cells[6].outputs, "the solution itself is left untouched"


def test_student_versions_match_nbgrader_itself():
    """nbgrader's own preprocessors are the oracle for the stub, its indentation and the hidden tests."""
    pytest.importorskip("nbgrader")
    from nbgrader.preprocessors import ClearHiddenTests, ClearOutput, ClearSolutions

    theirs, resources = toy_solution(), {}
    for preprocessor in (ClearSolutions(), ClearHiddenTests(), ClearOutput()):
        theirs, resources = preprocessor.preprocess(theirs, resources)
    ours = make_student_version(toy_solution(), "01_toy.ipynb")
    assert [c.source for c in ours.cells] == [c.source for c in theirs.cells]


def test_no_solution_text_anywhere_in_the_student_file(tmp_path):
    nbformat.write(toy_solution(), str(tmp_path / "01_toy.ipynb"))
    write_release(tmp_path, tmp_path / "release")
    text = (tmp_path / "release" / "student" / "01_toy.ipynb").read_text()
    leaked = [line for line in SOLUTION_LINES if line in text]
    assert not leaked, f"solution text in the student version: {leaked}"
    assert "raise NotImplementedError()" in text


def test_release_with_instructor_bundle_and_manifest(tmp_path):
    nbformat.write(toy_solution(), str(tmp_path / "01_toy.ipynb"))
    manifest = write_release(tmp_path, tmp_path / "release", instructor_bundle=True)
    instructor = tmp_path / "release" / "instructor"
    assert json.loads((instructor / "manifest.json").read_text()) == manifest
    entry = manifest["notebooks"]["01_toy.ipynb"]
    assert entry["points"] == 4 and manifest["total_points"] == 4
    assert [e["grade_id"] for e in entry["exercises"]] == ["ex1-check", "ex2-check", "ex3-check"]
    assert entry["exercises"][0]["solution_cells"] == [toy_solution().cells[2].id]
    text = (instructor / "01_toy.ipynb").read_text()
    assert all(line in text for line in SOLUTION_LINES), "the instructor copy keeps solutions and hidden tests"
    assert '"outputs": []' in text and "papermill" not in text


def test_student_command_writes_the_release(tmp_path, capsys):
    nbformat.write(toy_solution(), str(tmp_path / "01_toy.ipynb"))
    assert cli.main(["student", "--notebooks", str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    assert "01_toy.ipynb: 3 exercises, 4 points" in capsys.readouterr().out
    assert (tmp_path / "out" / "student" / "01_toy.ipynb").is_file()
    assert not (tmp_path / "out" / "instructor").exists()


BROKEN_MARKERS = {
    "no END": ("def f():\n    ### BEGIN SOLUTION\n    return 1", "has no matching 'END SOLUTION'"),
    "END first": ("def f():\n    ### END SOLUTION\n    return 1", "has no 'BEGIN SOLUTION' before it"),
    "nested": ("### BEGIN SOLUTION\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION", "is nested inside"),
    "one line": ("x = 1  # BEGIN SOLUTION / END SOLUTION", "holds both"),
}


@pytest.mark.parametrize("case", BROKEN_MARKERS)
def test_broken_markers_name_the_notebook_and_cell(case):
    source, complaint = BROKEN_MARKERS[case]
    notebook = toy_solution()
    notebook.cells[2].source = source
    with pytest.raises(KdlabError, match=complaint) as raised:
        make_student_version(notebook, "01_toy.ipynb")
    assert f"01_toy.ipynb, cell {notebook.cells[2].id} (index 2)" in str(raised.value)


def test_markers_outside_exercise_cells_are_rejected_like_nbgrader_does():
    notebook = toy_solution()
    notebook.cells[0].source = "Answers go between\n### BEGIN SOLUTION\nand\n### END SOLUTION"
    with pytest.raises(KdlabError, match="is not a solution cell"):
        make_student_version(notebook, "01_toy.ipynb")
    notebook = toy_solution()
    notebook.cells[1].source += "\n### BEGIN HIDDEN TESTS\nassert True\n### END HIDDEN TESTS"
    with pytest.raises(KdlabError, match="is not a check cell"):
        make_student_version(notebook, "01_toy.ipynb")


def test_grading_metadata_must_be_usable():
    notebook = toy_solution()
    notebook.cells[5].metadata.nbgrader.grade_id = "ex1-check"
    with pytest.raises(KdlabError, match="'ex1-check' is used twice"):
        exercises(notebook, "01_toy.ipynb")
    notebook = toy_solution()
    del notebook.cells[3].metadata.nbgrader["points"]
    with pytest.raises(KdlabError, match="needs nbgrader metadata points"):
        make_student_version(notebook, "01_toy.ipynb")


def test_release_of_a_bad_notebook_writes_nothing(tmp_path):
    good, bad = toy_solution(), toy_solution()
    bad.cells[2].source = "### BEGIN SOLUTION\nx = 1"
    nbformat.write(good, str(tmp_path / "01_good.ipynb"))
    nbformat.write(bad, str(tmp_path / "02_bad.ipynb"))
    with pytest.raises(KdlabError, match="02_bad.ipynb"):
        write_release(tmp_path, tmp_path / "release")
    assert not (tmp_path / "release").exists()
    with pytest.raises(ParameterError, match="NN_"):
        write_release(tmp_path / "release", tmp_path / "elsewhere")


# --------------------------------------------------------------------------- grading


def fill_in(student, solution, answers):
    """A student's submission: solution cells given by id -> source, the others solved correctly."""
    submission = nbformat.from_dict(json.loads(json.dumps(student)))
    solutions = {cell.id: cell.source for cell in solution.cells}
    for cell in submission.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = answers.get(cell.id, solutions[cell.id])
    return submission


def test_a_correct_submission_earns_full_marks(tmp_path, capsys):
    solution = toy_solution()
    nbformat.write(solution, str(tmp_path / "01_toy.ipynb"))
    submission = fill_in(make_student_version(solution), solution, {})
    nbformat.write(submission, str(tmp_path / "alice.ipynb"))
    executed = tmp_path / "alice.graded.ipynb"
    code = cli.main(["grade", str(tmp_path / "alice.ipynb"), "--solution", str(tmp_path / "01_toy.ipynb"),
                     "--json", "--executed", str(executed)])
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    assert (report["points"], report["max_points"]) == (4, 4)
    assert [e["status"] for e in report["exercises"]] == ["passed"] * 3
    assert report["cell_timeout"] == 30 and report["slowest_cell"][0] in {cell.id for cell in solution.cells}
    environment = nbformat.read(str(executed), as_version=4).cells[1].outputs[0].text
    assert environment == "autograde smoke\n", "the kernel sees the grader's flags and profile"


def test_a_wrong_submission_loses_exactly_the_points_of_its_wrong_answers(tmp_path):
    solution = toy_solution()
    ids = [cell.id for cell in solution.cells]
    student = make_student_version(solution)
    submission = fill_in(student, solution, {
        ids[2]: "def double(x):\n    return 2 * abs(x)",  # passes the visible assert, not the hidden one
        ids[4]: "class Counter:\n    def total(self, values):\n        return values.total",
        ids[6]: "import time\ntime.sleep(60)\nANSWER = 42",  # runs past the cell timeout
    })
    next(c for c in submission.cells if c.id == ids[3]).source = "assert True"  # an edited check is restored
    nbformat.write(solution, str(tmp_path / "solution.ipynb"))
    nbformat.write(submission, str(tmp_path / "bob.ipynb"))

    report = grade(tmp_path / "bob.ipynb", tmp_path / "solution.ipynb", timeout=3)
    by_id = {result.grade_id: result for result in report.exercises}
    assert (report.points, report.max_points) == (0, 4)
    assert by_id["ex1-check"].status == "failed"
    assert by_id["ex1-check"].message == "assert failed: assert double(-3) == -6"
    assert by_id["ex2-check"].status == "error"
    assert by_id["ex2-check"].message == "AttributeError: 'list' object has no attribute 'total'"
    assert by_id["ex3-check"].status == "error" and "NameError" in by_id["ex3-check"].message
    assert any(ids[6] in line and "timeout: the cell ran longer than 3 s" in line for line in report.other_errors)
    assert "total: 0 / 4" in report.table()


def test_a_run_past_the_notebook_timeout_grades_what_ran(tmp_path):
    solution = toy_solution()
    ids = [cell.id for cell in solution.cells]
    submission = fill_in(make_student_version(solution), solution, {ids[6]: "import time\ntime.sleep(600)"})
    submission.cells = [cell for cell in submission.cells if cell.id != ids[5]]  # ex2's check deleted
    nbformat.write(solution, str(tmp_path / "solution.ipynb"))
    nbformat.write(submission, str(tmp_path / "carol.ipynb"))
    report = grade(tmp_path / "carol.ipynb", tmp_path / "solution.ipynb", notebook_timeout=20)
    assert [r.status for r in report.exercises] == ["passed", "missing", "error"]
    assert report.exercises[2].message == "not run: the notebook was stopped after 20 s"


def test_grading_an_unrelated_notebook_is_refused(tmp_path):
    nbformat.write(toy_solution(), str(tmp_path / "solution.ipynb"))
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1")]), str(tmp_path / "other.ipynb"))
    with pytest.raises(KdlabError, match="has none of the check cells"):
        grade(tmp_path / "other.ipynb", tmp_path / "solution.ipynb")
    with pytest.raises(ParameterError, match="submission"):
        grade(tmp_path / "missing.ipynb", tmp_path / "solution.ipynb")


def test_the_solution_is_found_from_the_submission_name(tmp_path):
    assert solution_for(tmp_path / "bob_01_knowledge_distillation.ipynb").name == "01_knowledge_distillation.ipynb"
    assert solution_for(tmp_path / "01_knowledge_distillation (1).ipynb").name == "01_knowledge_distillation.ipynb"
    with pytest.raises(KdlabError, match="give --solution"):
        solution_for(tmp_path / "homework.ipynb")
