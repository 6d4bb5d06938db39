"""The results of a deterministic run, kept on disk and keyed by everything that decides them.

A run that two notebooks both make (notebook 08's few-shot block repeats three of notebook 06's Table 1 rows,
same seeds and settings) or that a student makes again is computed once. The key is the SHA-256 of

- the run's configuration (plain values: settings, iterations, seeds),
- digests of the tensors it starts from (initial weights, training data, test tasks: `digest`),
- the kit's own source code (every `kdlab/**/*.py`: `code_digest`),

so a change to any of them computes afresh: a cached result is always the one the current code gives. The
result must be plain values and tensors (it is stored with `torch.save` and read with `weights_only=True`).
Files go to `<data root>/cache/runs/` with a checksum (`kdlab.cache`): a corrupt file is reported, moved aside
and recomputed. `KDLAB_RUN_CACHE=0` turns the cache off (every run computes).

    result, reused = cached("tsmd-row", {"row": "oracle", "start": digest(teacher, student), ...}, compute)
"""
import hashlib
import os
from functools import lru_cache
from pathlib import Path

import torch

from . import cache, paths

PACKAGE = Path(__file__).resolve().parent


def _feed(sha, obj):
    if isinstance(obj, torch.nn.Module):
        obj = obj.state_dict()
    if isinstance(obj, torch.Tensor):
        tensor = obj.detach().cpu().contiguous()
        sha.update(f"tensor {tensor.dtype} {tuple(tensor.shape)};".encode())
        sha.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    elif isinstance(obj, dict):
        sha.update(b"{")
        for key in sorted(obj, key=repr):
            sha.update(repr(key).encode() + b":")
            _feed(sha, obj[key])
        sha.update(b"}")
    elif isinstance(obj, (list, tuple)):
        sha.update(b"[")
        for item in obj:
            _feed(sha, item)
        sha.update(b"]")
    elif obj is None or isinstance(obj, (bool, int, float, str)):
        sha.update(f"{type(obj).__name__} {obj!r};".encode())
    else:
        raise TypeError(f"digest: {type(obj).__name__} is not a tensor, module, plain value or container of them")


def digest(*objects):
    """SHA-256 (16 hex digits) of tensors' dtypes, shapes and bytes, modules' state dicts, and plain values,
    in dicts (by key), lists and tuples: equal exactly when the inputs are bit for bit the same."""
    sha = hashlib.sha256()
    _feed(sha, list(objects))
    return sha.hexdigest()[:16]


@lru_cache(maxsize=1)
def code_digest():
    """SHA-256 (16 hex digits) of every Python file of the kdlab package, by relative path."""
    sha = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        sha.update(str(path.relative_to(PACKAGE)).encode() + b"\0" + path.read_bytes() + b"\0")
    return sha.hexdigest()[:16]


def enabled():
    return os.environ.get("KDLAB_RUN_CACHE", "1") != "0"


def cache_path(namespace, config, root=None):
    key = cache.config_key({"config": config, "code": code_digest()})
    return paths.cache_dir(root) / "runs" / f"{namespace}-{key}.pt"


def cached(namespace, config, compute, *, root=None, log=print):
    """`compute()` for this configuration and this code, from the cache when it ran before: (result, reused)."""
    if not enabled():
        return compute(), False
    computed = []

    def build():
        computed.append(True)
        return compute()

    result = cache.load_or_build(cache_path(namespace, config, root), build, log=log)
    return result, not computed
