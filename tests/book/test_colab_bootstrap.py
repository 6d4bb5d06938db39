"""The notebooks' first cell on Colab: when `kdlab` is missing it installs the kit, then imports it.

The install path runs for real in a fresh virtual environment (no kdlab in it), offline: pip installs a
wheel built from this checkout (`KDLAB_INSTALL_FROM`, `--no-index`, `--no-deps`; the cell's own command
is otherwise unchanged). Every notebook carries exactly the cell generated from the one repository URL.
"""
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import nbformat
import pytest

from kdlab.book import bootstrap, launch
from kdlab.runner import find_notebooks

ROOT = Path(__file__).resolve().parents[2]


def test_the_cell_installs_from_the_one_repository_url():
    source = bootstrap.cell_source()
    assert f'"kdlab @ git+{launch.repository_url()}"' in source
    assert bootstrap.cell_source("https://github.com/someone/fork").count("git+https://github.com/someone/fork") == 1
    compile(source, "bootstrap", "exec")  # plain Python: no IPython magic, so every tool can parse it


@pytest.mark.parametrize("path", find_notebooks(ROOT / "notebooks"), ids=lambda p: p.stem)
def test_every_notebook_starts_with_the_bootstrap_cell(path):
    nb = nbformat.read(str(path), as_version=4)
    index = bootstrap.find(nb)
    assert index is not None, f"{path.name}: no cell tagged {bootstrap.TAG!r} (kdlab/book/bootstrap.py)"
    parameters = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    assert index == parameters + 1, f"{path.name}: the bootstrap cell must come right after the parameters cell"
    assert nb.cells[index].source == bootstrap.cell_source(), (
        f"{path.name}: the bootstrap cell differs from kdlab.book.bootstrap.cell_source() (repository URL "
        f"{launch.repository_url()})")
    assert not any("import kdlab" in c.source or "from kdlab" in c.source
                   for c in nb.cells[:index] if c.cell_type == "code"), "kdlab is imported before the bootstrap"


def _wheel(tmp_path):
    """A wheel of this checkout, built offline with the project's own setuptools (no build isolation)."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "kdlab", src / "kdlab", ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import sys; from setuptools import build_meta as b; "
            "print(b.build_wheel(sys.argv[1]))")
    out = tmp_path / "dist"
    out.mkdir()
    subprocess.run([sys.executable, "-c", code, str(out)], cwd=src, check=True, capture_output=True)
    return next(out.glob("kdlab-*.whl"))


@pytest.mark.timeout(300)
def test_in_a_fresh_environment_without_kdlab_the_cell_installs_the_kit(tmp_path):
    env_dir = tmp_path / "fresh"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(env_dir)
    python = env_dir / "bin" / "python"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    missing = subprocess.run([str(python), "-c", "import kdlab"], capture_output=True, text=True, env=clean,
                             cwd=tmp_path)  # not the checkout: its kdlab/ would be importable from there
    assert missing.returncode != 0 and "No module named 'kdlab'" in missing.stderr

    env = {**clean, "KDLAB_INSTALL_FROM": str(_wheel(tmp_path)), "PIP_NO_INDEX": "1", "PIP_NO_DEPS": "1",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    cell = bootstrap.cell_source() + "\nprint('kdlab', kdlab.__version__, 'from', kdlab.__file__)"
    ran = subprocess.run([str(python), "-c", cell], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert f"kdlab {__import__('kdlab').__version__} from {env_dir}" in ran.stdout, ran.stdout
    again = subprocess.run([str(python), "-c", cell], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert again.returncode == 0 and "kdlab" in again.stdout  # installed: the cell is now a no-op import
