"""The training progress bar in a real kernel leaves nothing that breaks a saved notebook.

A closed tqdm widget used to stay in the output as a widget view whose model no longer existed; after a
save and a reload JupyterLab printed "Error displaying widget: model not found" in its place. The bar is
now HTML in a display handle, replaced by a line of text when training ends.
"""
import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.notebook

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

TRAIN = """\
import torch
from kdlab.data import load
from kdlab.models import MLP
from kdlab.train import fit
data = load("digits", train_size=120, seed=0)
history = fit(MLP(64, hidden=(16,), num_classes=10), data, epochs=3, lr=0.1, progress=True)
print(len(history.records), "epochs")
"""


def _executed(code, monkeypatch, tmp_path):
    monkeypatch.delenv("KDLAB_HEADLESS", raising=False)  # a live kernel: the bar is drawn
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    NotebookClient(notebook, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                   store_widget_state=True).execute()
    return notebook


def test_a_finished_bar_is_one_line_of_text_and_no_widget(monkeypatch, tmp_path):
    notebook = _executed(TRAIN, monkeypatch, tmp_path)
    outputs = notebook.cells[0].outputs
    assert not [o for o in outputs if WIDGET_VIEW in o.get("data", {})], "a widget view is left in the output"
    shown = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert shown, f"no progress was shown in a live kernel: {outputs}"
    assert "<progress" not in shown[-1], "the bar was not replaced when training ended"
    assert "epochs: 3/3 in" in shown[-1], shown[-1]
    assert any("3 epochs" in o.get("text", "") for o in outputs)
