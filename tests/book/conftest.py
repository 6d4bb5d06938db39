"""Shared pieces of the book tests: a small solution notebook, and the smoke book built once per session."""
import os
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
TEST_BUILD = ROOT / "_build" / "test-book"   # the tests' own build; `make book` keeps _build/html


def tiny_notebook():
    """A notebook with the kit's skeleton: title, parameters, bootstrap, imports, a panel, an exercise."""
    from kdlab.book import bootstrap

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('PROFILE = "class"\nSEED = 0')
    params.metadata["tags"] = ["parameters"]
    solution = nbformat.v4.new_code_cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x  # the answer line\n"
                                         "    ### END SOLUTION")
    solution.metadata["nbgrader"] = {"solution": True, "grade": False, "grade_id": "ex1-solution", "locked": False}
    check = nbformat.v4.new_code_cell("assert double(2) == 4\n### BEGIN HIDDEN TESTS\nassert double(-3) == -6  # hidden check\n"
                                      "### END HIDDEN TESTS")
    check.metadata["nbgrader"] = {"solution": False, "grade": True, "grade_id": "ex1-check", "locked": True, "points": 1}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# 99 · A tiny lesson\n\nThe story."),
        params,
        bootstrap.new_cell(),
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt"),
        nbformat.v4.new_markdown_cell("## 1. A panel\nSome $x^2$ math."),
        nbformat.v4.new_code_cell("panel = make_panel()\npanel.show()"),
        nbformat.v4.new_code_cell("plt.plot([1, 2])\nplt.show()"),
        nbformat.v4.new_markdown_cell("## Exercises"),
        solution,
        check,
    ]
    return nb


@pytest.fixture(scope="session")
def smoke_book(smoke_executed_dir):
    """The book built in `smoke` into _build/test-book/html (executed copies cached in _build/executed), reusing
    the notebooks that tests/notebooks/test_execute.py executed in this session where their code is the same."""
    from kdlab.book.build import BUILD_DIR, build

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    before = os.environ.get("KDLAB_BOOK_REUSE")
    os.environ["KDLAB_BOOK_REUSE"] = os.pathsep.join(filter(None, [str(smoke_executed_dir), before]))
    try:
        report = build("smoke", build_dir=TEST_BUILD, cache_dir=BUILD_DIR / "executed", log=print)
    finally:
        if before is None:
            os.environ.pop("KDLAB_BOOK_REUSE")
        else:
            os.environ["KDLAB_BOOK_REUSE"] = before
    print(report.summary())
    return report
