"""Atomic file writes (temporary file in the same folder, then rename): no torch, so it stays cheap.

An interrupted write never leaves a half file under the real name.
"""
import os
import tempfile
from pathlib import Path


def write_bytes(path, payload: bytes, mode=0o644):
    """Write `payload` to `path` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)  # mkstemp makes it private; these are plain data files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path
