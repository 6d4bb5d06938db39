from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parents[2] / "notebooks"
NOTEBOOKS = sorted(p for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def notebook_params():
    return [pytest.param(p, id=p.stem) for p in NOTEBOOKS]
