"""The Sphinx side of the book (listed in docs/book/conf.py's extensions).

* alt text: every image a notebook output produced gets the alt text staged in `_alt.json` (keyed by the
  SHA-256 of the image, which is also the name myst-nb gives its file);
* MathJax from the build: MathJax 3 from the PyPI package `sphinx-mathjax-offline` is copied into
  `_static/mathjax/`, and `mathjax_path` points there, so equations render from `file://` with no network.
"""
import importlib.metadata
import json
import shutil
from pathlib import Path

from docutils import nodes

ALT_FILE = "_alt.json"
MATHJAX_PATH = "mathjax/tex-chtml.js"  # relative to _static


def mathjax_source():
    """The folder of MathJax 3 inside the installed `sphinx-mathjax-offline` distribution."""
    dist = importlib.metadata.distribution("sphinx-mathjax-offline")
    folder = Path(dist.locate_file("sphinx-mathjax-offline/static/mathjax"))
    if not (folder / "tex-chtml.js").is_file():
        raise FileNotFoundError(f"MathJax not found in {folder}: install the book extra (pip install -e '.[book]')")
    return folder


def _apply_alt_texts(app, doctree):
    alts_file = Path(app.srcdir) / ALT_FILE
    if not alts_file.is_file():
        return
    alts = json.loads(alts_file.read_text())
    for image in doctree.findall(nodes.image):
        key = Path(image.get("uri", "")).stem
        if key in alts and not image.get("alt"):
            image["alt"] = alts[key]


def _copy_mathjax(app, exception):
    if exception is not None or app.builder.format != "html":
        return
    target = Path(app.outdir) / "_static" / "mathjax"
    if not (target / "tex-chtml.js").is_file():
        shutil.copytree(mathjax_source(), target, dirs_exist_ok=True)


def setup(app):
    app.config.mathjax_path = MATHJAX_PATH
    app.connect("doctree-read", _apply_alt_texts)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
