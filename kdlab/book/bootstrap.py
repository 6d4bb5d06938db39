"""The notebooks' Colab/Binder cell: when `kdlab` is not importable, install the kit from its repository.

The cell is the first code cell after the `parameters` cell, tagged `kdlab-bootstrap`. Its text is
generated here from the one repository URL (`kdlab.book.launch.repository_url`), so a test can check that
every notebook carries exactly this text. `KDLAB_INSTALL_FROM` overrides what pip installs (a local
checkout or wheel: that is how the test runs the install path offline in a fresh virtual environment).
In a kit installed with `make`, `import kdlab` succeeds and the cell does nothing. The book leaves it out.
"""
from .launch import install_requirement

TAG = "kdlab-bootstrap"

TEMPLATE = '''\
# On Colab or Binder the kit is not installed yet: install it from its repository (a no-op under `make lab`).
try:
    import kdlab
except ImportError:
    import importlib, os, subprocess, sys
    source = os.environ.get("KDLAB_INSTALL_FROM", "{requirement}")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", source], check=True)
    importlib.invalidate_caches()
    import kdlab'''


def cell_source(url=None):
    """The bootstrap cell's source for repository `url` (default: the project's setting)."""
    return TEMPLATE.format(requirement=install_requirement(url))


def new_cell(url=None):
    import nbformat

    cell = nbformat.v4.new_code_cell(cell_source(url))
    cell.id = TAG  # a stable cell id: the same in every notebook and every rewrite
    cell.metadata["tags"] = [TAG]
    return cell


def is_bootstrap(cell):
    return cell.get("cell_type") == "code" and TAG in cell.get("metadata", {}).get("tags", [])


def find(notebook):
    """The index of the notebook's bootstrap cell, or None."""
    return next((i for i, cell in enumerate(notebook.cells) if is_bootstrap(cell)), None)


def insert(notebook, url=None):
    """Put the bootstrap cell right after the `parameters` cell (replacing an older one); returns the notebook."""
    old = find(notebook)
    if old is not None:
        notebook.cells[old].source = cell_source(url)
        return notebook
    index = next(i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", []))
    notebook.cells.insert(index + 1, new_cell(url))
    return notebook


def write_all(notebooks_dir, url=None):
    """Insert or update the bootstrap cell of every `NN_*.ipynb` in `notebooks_dir`, in the committed form
    (`kdlab.strip`: no outputs, nbformat's layout); returns the names of the files that changed."""
    import nbformat

    from ..runner import find_notebooks
    from ..strip import strip_text

    changed = []
    for path in find_notebooks(notebooks_dir):
        before = path.read_text()
        notebook = insert(nbformat.reads(before, as_version=nbformat.NO_CONVERT), url)
        after = strip_text(nbformat.writes(notebook))
        if after != before:
            path.write_text(after)
            changed.append(path.name)
    return changed
