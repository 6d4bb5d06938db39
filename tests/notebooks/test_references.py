"""Whatever the kit's text cites exists in the repository: the README, the docs, the notebooks' prose and
code, and .gitignore name only files and folders a reader of a fresh clone can open."""
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOP = ("docs", "kdlab", "benchmarks", "tests", "data", "examples", "notebooks", ".ci")
# a repository path (docs/notes/kd.md, kdlab/methods/kd.py, benchmarks/results/) or a bare Markdown file name
CITED_PATH = re.compile(r"(?<![\w./-])((?:%s)/[\w./<>*{},-]*[\w/>*}])" % "|".join(re.escape(t) for t in TOP))
CITED_MD = re.compile(r"(?<![\w./-])([A-Za-z][\w-]*\.md)\b")
GENERATED = ("data/cache", "data/downloads", "runs/", "release/", "work/", "artifacts/", "_build/")


def _texts():
    yield "README.md", (ROOT / "README.md").read_text()
    yield ".gitignore", (ROOT / ".gitignore").read_text()
    for page in sorted((ROOT / "docs").rglob("*.md")):
        yield str(page.relative_to(ROOT)), page.read_text()
    for notebook in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        yield notebook.name, "\n".join("".join(cell["source"]) for cell in cells)


def _exists(cited):
    cited = cited.rstrip(".")
    if any(cited.startswith(g) for g in GENERATED) or any(c in cited for c in "*<{"):  # a pattern
        return True
    return (ROOT / cited).exists()


@pytest.mark.parametrize("name,text", list(_texts()), ids=lambda v: v if isinstance(v, str) and len(v) < 60 else "")
def test_every_cited_path_exists(name, text):
    missing = sorted({c for c in CITED_PATH.findall(text) if not _exists(c)})
    md_files = {p.name for p in ROOT.rglob("*.md") if ".venv" not in p.parts}
    missing += sorted({c for c in CITED_MD.findall(text) if c not in md_files})
    assert not missing, f"{name} cites what the repository does not have: {missing}"
