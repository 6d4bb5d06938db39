"""The execution cache: keyed by code and profile (prose changes execute nothing), outputs merged into the
current text, executed copies from elsewhere reused only when their code and profile match."""
import nbformat
import pytest

from kdlab.book import execution
from kdlab.errors import KdlabError

from .conftest import tiny_notebook


def _executed(nb, profile="smoke"):
    run = nbformat.reads(nbformat.writes(nb), as_version=4)
    injected = nbformat.v4.new_code_cell('PROFILE = "smoke"')
    injected.metadata["tags"] = ["injected-parameters"]
    run.cells.insert(2, injected)
    for number, cell in enumerate(execution.code_cells(run), start=1):
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"output {number}\n")]
        cell.execution_count = number
    run.metadata["kdlab"] = {"profile": profile, "status": "ok", "results": {"x": 1.0}}
    return run


def test_the_key_ignores_markdown_and_run_only_cells_but_not_code_or_profile():
    nb = tiny_notebook()
    key = execution.code_key(nb, "smoke")
    prose = tiny_notebook()
    prose.cells[4].source += "\nOne more sentence."
    assert execution.code_key(prose, "smoke") == key
    assert execution.code_key(_executed(nb), "smoke") == key  # papermill's injected cell is not code of the lesson
    audited = tiny_notebook()
    audit = nbformat.v4.new_code_cell("save_audit(...)")
    audit.metadata["tags"] = ["kdlab-slider-audit"]
    audited.cells.append(audit)
    assert execution.code_key(audited, "smoke") == key
    assert execution.code_key(nb, "class") != key
    code = tiny_notebook()
    code.cells[3].source += "\nimport numpy"
    assert execution.code_key(code, "smoke") != key


def test_merge_keeps_the_current_prose_and_takes_the_outputs():
    run = _executed(tiny_notebook())
    current = tiny_notebook()
    current.cells[4].source = "## 1. A panel, reworded"
    merged = execution.merge(current, run)
    assert merged.cells[4].source == "## 1. A panel, reworded"
    assert merged.cells[3].outputs[0]["text"] == "output 3\n"  # parameters 1, bootstrap 2, imports 3
    assert merged.metadata["kdlab"]["results"] == {"x": 1.0}
    assert not any("injected-parameters" in c.metadata.get("tags", []) for c in merged.cells)


def test_merge_refuses_a_copy_with_other_code():
    other = tiny_notebook()
    other.cells[3].source = "import numpy"
    with pytest.raises(KdlabError, match="code differs"):
        execution.merge(tiny_notebook(), _executed(other))


def test_a_cached_or_reusable_copy_is_used_and_nothing_is_executed(tmp_path, monkeypatch):
    notebooks, elsewhere, cache = tmp_path / "notebooks", tmp_path / "runs", tmp_path / "cache"
    notebooks.mkdir(), elsewhere.mkdir()
    source = notebooks / "99_tiny.ipynb"
    nbformat.write(tiny_notebook(), str(source))
    nbformat.write(_executed(tiny_notebook(), profile="class"), str(elsewhere / source.name))  # wrong profile
    monkeypatch.setenv("KDLAB_BOOK_REUSE", str(elsewhere))

    def no_execution(*args, **kwargs):
        raise AssertionError("nothing may be executed")

    monkeypatch.setattr("kdlab.runner.execute_notebook", no_execution)
    with pytest.raises(AssertionError, match="nothing may be executed"):
        execution.ensure_executed([source], "smoke", cache_dir=cache, log=lambda *_: None)
    nbformat.write(_executed(tiny_notebook(), profile="smoke"), str(elsewhere / source.name))
    executed, how = execution.ensure_executed([source], "smoke", cache_dir=cache, log=lambda *_: None)
    assert how[source].startswith("reused") and executed[source].parent == cache / "smoke"
    prose = tiny_notebook()
    prose.cells[0].source += "\nA new sentence."
    nbformat.write(prose, str(source))
    monkeypatch.delenv("KDLAB_BOOK_REUSE")
    executed, how = execution.ensure_executed([source], "smoke", cache_dir=cache, log=lambda *_: None)
    assert how[source] == "cached"
