"""One executed notebook turned into one book page, by the transforms of this package, in order.

    page, alts = to_page(merged_notebook, "01_knowledge_distillation.ipynb", profile="class")

`alts` maps the SHA-256 of each PNG to its alt text (what `kdlab.book.sphinx_ext` puts on the image: myst-nb
names an image file after that hash). The alt text the kernel hook recorded is used; an image without
one gets the fallback: its section and notebook.
"""
import base64
import copy
import hashlib

from . import alt_text, bootstrap, launch, panels, solutions

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
RUN_METADATA = ("widgets", "papermill")


def _title(notebook):
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return "notebook"


def add_launch_line(notebook, name, profile, url=None):
    """Put the launch links right under the page's title (in place)."""
    line = launch.launch_markdown(name, profile, url)
    for cell in notebook.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.split("\n")
        for index, text in enumerate(lines):
            if text.startswith("# "):
                lines[index + 1:index + 1] = ["", line, ""]
                cell.source = "\n".join(lines)
                return notebook
    import nbformat

    cell = nbformat.v4.new_markdown_cell(line)
    cell.id = "kdlab-launch"
    notebook.cells.insert(0, cell)
    return notebook


def drop_run_only_cells(notebook):
    """Leave out the Colab bootstrap cell and papermill's injected parameters (in place)."""
    notebook.cells = [cell for cell in notebook.cells if not bootstrap.is_bootstrap(cell)
                      and "injected-parameters" not in cell.metadata.get("tags", [])]
    for key in RUN_METADATA:
        notebook.metadata.pop(key, None)
    return notebook


def drop_widget_views(notebook):
    """A widget view cannot live in a static page (it would need a widget manager from a CDN): keep its text."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data and WIDGET_VIEW in data:
                del data[WIDGET_VIEW]
    return notebook


def collect_alt_texts(notebook):
    """{sha256 of the PNG bytes: alt text} for every image output of the notebook."""
    title, section, alts, number = _title(notebook), "", {}, 0
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("## ") or line.startswith("### "):
                    section = line.lstrip("#").strip()
            continue
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if not png:
                continue
            number += 1
            recorded = output.get("metadata", {}).get("image/png", {}).get("alt", "").strip()
            key = hashlib.sha256(base64.b64decode(png)).hexdigest()
            alts[key] = recorded or alt_text.fallback(title, section, number)
    return alts


def to_page(notebook, name, *, profile, url=None):
    """(the page's notebook, its alt texts) for executed `notebook` called `name`."""
    page = copy.deepcopy(notebook)
    drop_run_only_cells(page)
    solutions.remove_hidden_tests(page)
    solutions.fold_solutions(page)
    panels.add_panel_notes(page)
    drop_widget_views(page)
    add_launch_line(page, name, profile, url)
    return page, collect_alt_texts(page)
