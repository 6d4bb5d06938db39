"""Interactive panels in the book: the static state of a panel's run, and a line that says how to move it.

A book page shows the image an interactive panel drew at its default settings (the kit renders panels
statically when executed headless). Right after each cell that shows a panel (`<name>.show()`), the page
gets a note naming the panel's controls (recorded by `kdlab.book.kernel_hook` when the book executed the
notebook) and how to move them in JupyterLab.
"""
import re

import nbformat

PANEL_CALL = re.compile(r"^\s*(?!plt\b|fig\b|figure\b)([A-Za-z_]\w*)\.show\(\s*\)\s*$", re.MULTILINE)
NOTE_TAG = "kdlab-panel-note"
NOTE_HEAD = "Interactive panel, shown in its final static state"


def is_panel_cell(cell):
    return cell.cell_type == "code" and bool(PANEL_CALL.search(cell.source))


def panel_controls(cell):
    """{control: value} recorded in the cell's image outputs when the book executed it, or {}."""
    for output in cell.get("outputs", []):
        recorded = output.get("metadata", {}).get("image/png", {}).get("kdlab_panel")
        if recorded:
            return dict(recorded)
    return {}


def note_text(controls):
    if controls:
        named = ", ".join(f"`{name}` (here {value})" for name, value in controls.items())
        what = f"its control{'s' if len(controls) > 1 else ''} {named}"
    else:
        what = "its sliders and menus"
    return (f"**{NOTE_HEAD}** (the default settings of this run). "
            f"In JupyterLab (`make lab`, or Colab / Binder from the links at the top) the panel has {what}: "
            "move one and the panel recomputes and redraws.")


def add_panel_notes(notebook):
    """Insert a note cell after every panel cell (in place); returns the notebook."""
    cells = []
    for cell in notebook.cells:
        cells.append(cell)
        if is_panel_cell(cell):
            note = nbformat.v4.new_markdown_cell(note_text(panel_controls(cell)))
            note.id = f"{cell.get('id', 'panel')}-note"[:64]  # stable: a rebuild writes the same page
            note.metadata["tags"] = [NOTE_TAG]
            cells.append(note)
    notebook.cells = cells
    return notebook
