"""Exercises in the book: each solution behind a "Show solution" toggle, the hidden tests left out.

A solution cell (nbgrader `solution: true`) keeps its code without the `### BEGIN/END SOLUTION` marker
lines and is folded (myst-nb's `hide-input`, with the toggle's words set per cell); a self-learner opens
it after trying. Lines between `### BEGIN HIDDEN TESTS` and `### END HIDDEN TESTS` are what the grader
runs, and stay out of the book entirely.
"""
from ..assign import HIDDEN_TEST_MARKERS, SOLUTION_MARKERS, is_solution

SHOW, HIDE = "Show solution", "Hide solution"
SOLUTION_TAG = "kdlab-solution"


def _without_regions(source, markers):
    begin, end = markers
    kept, inside = [], False
    for line in source.split("\n"):
        if begin in line:
            inside = True
        elif end in line:
            inside = False
        elif not inside:
            kept.append(line)
    return "\n".join(kept)


def _without_marker_lines(source, markers):
    return "\n".join(line for line in source.split("\n") if not any(marker in line for marker in markers))


def remove_hidden_tests(notebook):
    """Drop every hidden-test region (in place); returns the notebook."""
    for cell in notebook.cells:
        if any(marker in cell.source for marker in HIDDEN_TEST_MARKERS):
            cell.source = _without_regions(cell.source, HIDDEN_TEST_MARKERS).rstrip("\n")
    return notebook


def fold_solutions(notebook):
    """Fold every solution cell behind a "Show solution" toggle (in place); returns the notebook."""
    for cell in notebook.cells:
        if not is_solution(cell):
            continue
        cell.source = _without_marker_lines(cell.source, SOLUTION_MARKERS)
        tags = cell.metadata.setdefault("tags", [])
        for tag in ("hide-input", SOLUTION_TAG):
            if tag not in tags:
                tags.append(tag)
        cell.metadata.setdefault("mystnb", {}).update({"code_prompt_show": SHOW, "code_prompt_hide": HIDE})
    return notebook
