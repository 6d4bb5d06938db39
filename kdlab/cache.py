"""Atomic, checksummed cache files for generated datasets and trained teachers.

A file is written to a temporary name in the same folder and renamed into place, so an interrupted
write never leaves a half file under the real name. A `<name>.sha256` sidecar holds the checksum;
`load_tensors` verifies it and raises `CorruptCacheError` on a mismatch, so callers can rebuild.
"""
import hashlib
import io
import json
import os
from pathlib import Path

import torch

from .atomic import write_bytes
from .errors import CorruptCacheError


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_bytes(path, payload: bytes):
    """Write `payload` to `path` atomically and record its sha256 beside it."""
    path = write_bytes(path, payload)
    checksum = hashlib.sha256(payload).hexdigest()
    write_bytes(path.with_name(path.name + ".sha256"), (checksum + "\n").encode())
    return checksum


def save_tensors(obj, path):
    """Save a (nested) dict of tensors/plain values with `torch.save`, atomically, with a checksum."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def verify(path):
    """Raise CorruptCacheError unless `path` exists and matches its recorded checksum."""
    path = Path(path)
    sidecar = path.with_name(path.name + ".sha256")
    if not path.exists():
        raise CorruptCacheError(f"cache file {path} is missing")
    if not sidecar.exists():
        raise CorruptCacheError(f"cache file {path} has no checksum file {sidecar.name} (partial write?)")
    expected = sidecar.read_text().strip()
    actual = sha256_of(path)
    if actual != expected:
        raise CorruptCacheError(
            f"cache file {path} is corrupt: sha256 {actual[:12]}... does not match the recorded {expected[:12]}..."
        )


def load_tensors(path, map_location="cpu"):
    """Load a file written by `save_tensors`, verified, with `weights_only=True` (no arbitrary code)."""
    verify(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # unpickling errors of a file that passed the checksum are still corruption
        raise CorruptCacheError(f"cache file {path} could not be read: {error}") from error


def load_or_build(path, build, *, log=print):
    """Return the verified cached object at `path`, or call `build()` and cache its result.

    A corrupt or partial cache file is reported, moved aside (never silently deleted) and rebuilt.
    """
    path = Path(path)
    if path.exists():
        try:
            return load_tensors(path)
        except CorruptCacheError as error:
            aside = path.with_name(path.name + ".corrupt")
            os.replace(path, aside)
            log(f"kdlab: {error}; moved it to {aside.name} and rebuilding.")
    obj = build()
    save_tensors(obj, path)
    return obj


def config_key(config: dict) -> str:
    """A short stable hash of a configuration dict, used to key cached teachers and datasets."""
    text = json.dumps(config, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]
