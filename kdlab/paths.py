"""Where kdlab keeps data, caches and executed notebooks."""
import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def data_root(explicit=None) -> Path:
    """The data root: `explicit`, else `KDLAB_DATA`, else the repository's `data/` folder.

    Bundled split files live in `data/splits/` (committed); downloads go to `<root>/downloads/` and
    generated datasets and cached teachers to `<root>/cache/` (both git-ignored).
    """
    root = explicit or os.environ.get("KDLAB_DATA") or (REPO_ROOT / "data")
    root = Path(root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_dir(explicit=None) -> Path:
    path = data_root(explicit) / "cache"
    path.mkdir(parents=True, exist_ok=True)
    return path


def downloads_dir(explicit=None) -> Path:
    path = data_root(explicit) / "downloads"
    path.mkdir(parents=True, exist_ok=True)
    return path


def splits_dir() -> Path:
    """Committed split files (CIFAR-FS, FC100, mini-ImageNet class lists)."""
    return REPO_ROOT / "data" / "splits"


def runs_dir() -> Path:
    """Executed notebooks and their results (git-ignored)."""
    path = Path(os.environ.get("KDLAB_RUNS", REPO_ROOT / "runs"))
    path.mkdir(parents=True, exist_ok=True)
    return path
