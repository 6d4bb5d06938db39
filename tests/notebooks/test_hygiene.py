"""Committed notebooks are clean sources: no outputs, kernelspec python3, a `parameters` cell that
papermill can override, the shared parameter names, and the skeleton every notebook shares
(docs/design.md)."""
import json
import subprocess

import pytest

from .conftest import NOTEBOOKS, notebook_params

SHARED = ("PROFILE", "SEED", "DEVICE")


def test_the_course_has_its_foundation_notebooks():
    stems = [p.stem for p in NOTEBOOKS]
    assert "00_start_here" in stems and "01_knowledge_distillation" in stems


def committed_text(path):
    """What a commit records for `path`: the staged blob in a git checkout (an author's lab strips outputs
    through the kdlab-notebook filter on `git add`, so a run-and-saved working file is fine), else the file."""
    staged = subprocess.run(["git", "-C", str(path.parent), "show", f":./{path.name}"], capture_output=True,
                            text=True)
    return staged.stdout if staged.returncode == 0 else path.read_text()


@pytest.mark.parametrize("path", notebook_params())
def test_notebook_is_committed_clean(path):
    nb = json.loads(committed_text(path))
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [], f"{path.name}: a cell was committed with outputs"
            assert cell["execution_count"] is None


@pytest.mark.parametrize("path", notebook_params())
def test_notebook_has_one_parameters_cell_with_the_shared_names(path):
    nb = json.loads(path.read_text())
    tagged = [c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1, f"{path.name}: expected exactly one cell tagged 'parameters'"
    source = "".join(tagged[0]["source"])
    for name in SHARED:
        assert f"{name} =" in source, f"{path.name}: the parameters cell lacks {name}"
    assert 'PROFILE = "class"' in source, "students on a laptop get the class profile by default"


@pytest.mark.parametrize("path", notebook_params())
def test_notebook_calls_setup_records_results_and_ends_with_a_summary(path):
    nb = json.loads(path.read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    markdown = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    assert "kdlab.setup(" in code
    assert "record(" in code
    assert "## Summary" in markdown


@pytest.mark.parametrize("path", notebook_params())
def test_exercises_use_nbgrader_markers_with_stable_ids(path):
    nb = json.loads(path.read_text())
    ids = []
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader")
        source = "".join(cell["source"])
        if "### BEGIN SOLUTION" in source:
            assert meta and meta.get("solution") is True, f"{path.name}: solution cell without nbgrader metadata"
            assert "### END SOLUTION" in source
        if meta:
            assert meta.get("grade_id"), f"{path.name}: nbgrader cell without grade_id"
            ids.append(meta["grade_id"])
            if meta.get("grade"):
                assert meta.get("points", 0) > 0
    assert len(ids) == len(set(ids)), f"{path.name}: duplicate grade ids"
    solutions = [i for i in ids if i.endswith("-solution")]
    assert len(solutions) >= 3, f"{path.name}: at least three exercises expected"


@pytest.mark.parametrize("path", notebook_params())
def test_papermill_can_read_every_line_of_the_parameters_cell(path, caplog):
    """papermill skips (with only a log line) a parameter line it cannot parse, e.g. a comment with '=' or
    an apostrophe; such a parameter then vanishes from `papermill --help-notebook` and from sweeps."""
    import nbformat
    from papermill.translators import PythonTranslator

    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    with caplog.at_level("WARNING"):
        found = [p.name for p in PythonTranslator.inspect(cell)]
    assert not [r.message for r in caplog.records if "Unable to parse" in r.message]
    assigned = [line.split("=")[0].strip() for line in cell.source.splitlines() if line and line[0].isupper()]
    assert found == assigned
