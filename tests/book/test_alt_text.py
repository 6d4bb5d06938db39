"""Alt text: a figure described from what it draws, and the kernel hook that records it while the book
executes a notebook (a real kernel, a real figure, a real panel)."""
import os

import matplotlib.pyplot as plt
import nbformat
import pytest

from kdlab.book.alt_text import MAX_CHARS, describe
from kdlab.book.execution import KERNEL_STARTUP


def test_a_figure_is_described_by_its_titles_labels_artists_and_legend():
    fig, (left, right) = plt.subplots(1, 2)
    left.plot([0, 1], [1, 2], label="CE")
    left.plot([0, 1], [2, 3], label="KD")
    left.legend()
    left.set_title("digits, $T = 4$")
    left.set_xlabel("seed")
    right.bar([1, 2, 3], [3, 2, 1])
    right.set_ylabel("probability")
    fig.suptitle("Soft targets")
    text = describe(fig)
    plt.close(fig)
    assert text == ("Figure 'Soft targets', 2 panels: (1) 'digits, T = 4', 2 lines, x: seed, legend: CE, KD; "
                    "(2) 3 bars, y: probability.")


def test_a_long_description_is_cut():
    fig, axes = plt.subplots(4, 4)
    for ax in axes.flat:
        ax.set_title("a rather long title for one of sixteen panels")
    text = describe(fig)
    plt.close(fig)
    assert len(text) <= MAX_CHARS and text.endswith("...")


@pytest.mark.timeout(120)
def test_the_kernel_hook_records_alt_text_and_panel_controls(monkeypatch):
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nfrom kdlab.widgets import Panel, slider"),
        nbformat.v4.new_code_cell("fig, ax = plt.subplots()\nax.plot([1, 2, 3])\nax.set_title('loss')\nplt.show()"),
        nbformat.v4.new_code_cell(
            "panel = Panel(lambda ALPHA: [ALPHA, 1 - ALPHA], lambda d, fig: fig.add_subplot().bar([0, 1], d),\n"
            "              {'ALPHA': slider(0.5, 0.0, 1.0, 0.1)}, title='mix')\npanel.show()"),
    ]
    monkeypatch.setenv("PYTHONSTARTUP", str(KERNEL_STARTUP))
    monkeypatch.setenv("KDLAB_HEADLESS", "1")
    NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    figure = [o for o in nb.cells[1].outputs if "image/png" in o.get("data", {})]
    assert figure and figure[0].metadata["image/png"]["alt"] == "Figure: 'loss', 1 line."
    panel = [o for o in nb.cells[2].outputs if "image/png" in o.get("data", {})]
    assert panel, nb.cells[2].outputs
    meta = panel[0].metadata["image/png"]
    assert meta["alt"].startswith("Interactive panel at its default settings 'mix'") and "2 bars" in meta["alt"]
    assert meta["kdlab_panel"] == {"ALPHA": "0.5"}
    assert os.environ["PYTHONSTARTUP"].endswith("kernel_startup.py")
