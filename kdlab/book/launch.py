"""The repository URL, set in ONE place (pyproject.toml, `[project.urls] Repository`), and the links built
from it: run a notebook locally (`make lab`), on Colab, on Binder.

    >>> repository_url()
    'https://github.com/kdlab/kdlab'
    >>> colab_url("01_knowledge_distillation.ipynb")
    'https://colab.research.google.com/github/kdlab/kdlab/blob/main/notebooks/01_knowledge_distillation.ipynb'

The notebooks' Colab bootstrap cell (`kdlab.book.bootstrap`) installs the kit from the same URL; a test
checks that every notebook and every launch link of the built book use this setting.
"""
import importlib.metadata
from pathlib import Path

from ..errors import KdlabError
from ..paths import REPO_ROOT

BRANCH = "main"
URL_KEY = "Repository"


def repository_url(pyproject=REPO_ROOT / "pyproject.toml"):
    """`[project.urls] Repository` of the checkout's pyproject.toml, else of the installed package."""
    pyproject = Path(pyproject)
    if pyproject.is_file():
        try:
            import tomllib
        except ImportError:  # Python 3.10: the installed metadata says the same
            tomllib = None
        if tomllib is not None:
            urls = tomllib.loads(pyproject.read_text()).get("project", {}).get("urls", {})
            if URL_KEY in urls:
                return urls[URL_KEY].rstrip("/")
    for entry in importlib.metadata.metadata("kdlab").get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip() == URL_KEY:
            return url.strip().rstrip("/")
    raise KdlabError(f"no repository URL: set [project.urls] {URL_KEY} in pyproject.toml")


def github_path(url=None):
    """'owner/name' of a https://github.com/owner/name URL."""
    url = url or repository_url()
    prefix = "https://github.com/"
    if not url.startswith(prefix) or url[len(prefix):].count("/") != 1:
        raise KdlabError(f"{url!r} is not a https://github.com/OWNER/NAME URL: Colab and Binder need one")
    return url[len(prefix):]


def colab_url(notebook_name, url=None):
    return f"https://colab.research.google.com/github/{github_path(url)}/blob/{BRANCH}/notebooks/{notebook_name}"


def binder_url(notebook_name, url=None):
    return f"https://mybinder.org/v2/gh/{github_path(url)}/{BRANCH}?labpath=notebooks%2F{notebook_name}"


def install_requirement(url=None):
    """What pip installs on Colab/Binder: the kit from its repository."""
    return f"kdlab @ git+{url or repository_url()}"


def launch_markdown(notebook_name, profile, url=None):
    """The line under each notebook page's title: where to run it, and which run the page shows."""
    stem = Path(notebook_name).stem
    return (f"**Run this notebook:** on your machine with `make lab` (your copy is `work/{stem}.ipynb`) · "
            f"[open in Colab]({colab_url(notebook_name, url)}) · "
            f"[launch on Binder]({binder_url(notebook_name, url)}).  \n"
            f"This page shows one run in the `{profile}` profile, every output already computed; "
            "the sliders of its panels move only in a running notebook.")
