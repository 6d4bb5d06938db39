"""A notebook without its run: outputs, execution counts and run metadata removed (a git clean filter).

    python -m kdlab.strip < executed.ipynb > clean.ipynb
    kdlab lab --author      # installs it as the git filter `kdlab-notebook` for notebooks/*.ipynb

The output is byte for byte what the kit commits (nbformat's layout, one trailing newline), so an author
who runs and saves a notebook in place sees no change in `git status` unless the source changed.
"""
import sys

import nbformat

from .assign import clear_run_state

FILTER_NAME = "kdlab-notebook"
# what JupyterLab writes about a view, not about the lesson: folded or scrolled outputs, hidden sources
VIEW_STATE = ("collapsed", "scrolled", "jupyter")


def strip_text(text: str) -> str:
    """The committed form of a notebook given as JSON text."""
    notebook = clear_run_state(nbformat.reads(text, as_version=nbformat.NO_CONVERT))
    if "language_info" in notebook.metadata:  # the saving kernel's Python version is not the lesson's
        notebook.metadata.language_info = {"name": notebook.metadata.language_info.get("name", "python")}
    for cell in notebook.cells:
        for key in VIEW_STATE:
            cell.metadata.pop(key, None)
    return nbformat.writes(notebook) + "\n"


def main() -> int:
    sys.stdout.write(strip_text(sys.stdin.read()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
