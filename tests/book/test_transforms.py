"""Each notebook-to-page transform on a tiny notebook: solutions folded, hidden tests gone, panel notes,
launch line, bootstrap cell left out, widget views dropped, alt texts collected."""
import base64
import hashlib

import nbformat

from kdlab.book import launch, page, panels, solutions

from .conftest import tiny_notebook

PNG = base64.b64encode(b"\x89PNG fake image bytes").decode()


def _with_outputs(nb, alt=None, panel=None):
    figure = nb.cells[6]
    metadata = {"image/png": {"alt": alt}} if alt else {}
    figure.outputs = [nbformat.v4.new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"},
                                             metadata=metadata)]
    panel_cell = nb.cells[5]
    panel_cell.outputs = [nbformat.v4.new_output(
        "display_data", data={"image/png": base64.b64encode(b"panel").decode()},
        metadata={"image/png": {"alt": "Interactive panel", "kdlab_panel": panel or {}}}),
        nbformat.v4.new_output("display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "x"},
                                                     "text/plain": "VBox()"})]
    return nb


def test_hidden_tests_are_removed_and_the_visible_check_stays():
    nb = solutions.remove_hidden_tests(tiny_notebook())
    check = nb.cells[9].source
    assert "double(-3)" not in check and "HIDDEN TESTS" not in check
    assert "assert double(2) == 4" in check


def test_solutions_are_folded_behind_a_show_solution_toggle_without_markers():
    nb = solutions.fold_solutions(tiny_notebook())
    cell = nb.cells[8]
    assert "hide-input" in cell.metadata["tags"] and solutions.SOLUTION_TAG in cell.metadata["tags"]
    assert cell.metadata["mystnb"]["code_prompt_show"] == "Show solution"
    assert "return 2 * x" in cell.source and "SOLUTION" not in cell.source
    assert "hide-input" not in nb.cells[9].metadata.get("tags", [])  # the check cell stays open


def test_a_note_follows_each_panel_and_names_its_controls():
    nb = panels.add_panel_notes(_with_outputs(tiny_notebook(), panel={"ALPHA": "0.5", "TEMPERATURE": "4.0"}))
    notes = [i for i, c in enumerate(nb.cells) if panels.NOTE_TAG in c.metadata.get("tags", [])]
    assert notes == [6], "one note, right after the panel cell (not after plt.show())"
    assert "`ALPHA` (here 0.5)" in nb.cells[6].source and "make lab" in nb.cells[6].source


def test_plt_show_is_not_a_panel():
    assert not panels.is_panel_cell(nbformat.v4.new_code_cell("plt.show()"))
    assert panels.is_panel_cell(nbformat.v4.new_code_cell("retrain.show()"))


def test_the_page_has_launch_links_no_bootstrap_no_widget_views_and_alt_texts():
    nb = _with_outputs(tiny_notebook(), alt="Figure: 1 line.")
    result, alts = page.to_page(nb, "99_tiny.ipynb", profile="smoke", url="https://github.com/o/r")
    first = result.cells[0].source
    assert first.startswith("# 99 · A tiny lesson\n\n**Run this notebook:**")
    assert launch.colab_url("99_tiny.ipynb", "https://github.com/o/r") in first
    assert launch.binder_url("99_tiny.ipynb", "https://github.com/o/r") in first
    assert not any("kdlab-bootstrap" in c.metadata.get("tags", []) for c in result.cells)
    assert all(page.WIDGET_VIEW not in o.get("data", {}) for c in result.cells for o in c.get("outputs", []))
    figure_key = hashlib.sha256(base64.b64decode(PNG)).hexdigest()
    assert alts[figure_key] == "Figure: 1 line."
    assert len(alts) == 2 and all(alts.values())


def test_an_image_without_a_recorded_alt_gets_its_section_as_alt_text():
    nb = _with_outputs(tiny_notebook())
    _, alts = page.to_page(nb, "99_tiny.ipynb", profile="smoke", url="https://github.com/o/r")
    key = hashlib.sha256(base64.b64decode(PNG)).hexdigest()
    assert alts[key] == "Figure 2 of section '1. A panel' in '99 · A tiny lesson' (computed by the code cell above it)."
