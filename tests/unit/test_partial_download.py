"""Fault injection: a CIFAR download that breaks halfway is detected, reported, and replaced next time.

torchvision's real download code runs; only `urlopen` is replaced by a fake server that serves a tiny
CIFAR-10 archive (whose md5 sums the test installs) and can drop the connection after half the bytes.
"""
import hashlib
import io
import pickle
import tarfile
import urllib.request

import numpy as np
import pytest

from kdlab.data import load
from kdlab.errors import DatasetUnavailableError

BATCHES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]


def _md5(payload):
    return hashlib.md5(payload).hexdigest()


@pytest.fixture
def tiny_cifar10_archive(monkeypatch):
    """A cifar-10-python.tar.gz with 20 images per batch; torchvision's md5 table points at its files."""
    from torchvision.datasets import CIFAR10

    rng = np.random.default_rng(0)
    files = {name: pickle.dumps({"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8),
                                 "labels": list(range(10)) * 2}) for name in BATCHES}
    files["batches.meta"] = pickle.dumps({"label_names": [f"class{i}" for i in range(10)]})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, payload in files.items():
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            archive.addfile(info, io.BytesIO(payload))
    archive_bytes = buffer.getvalue()
    monkeypatch.setattr(CIFAR10, "tgz_md5", _md5(archive_bytes))
    monkeypatch.setattr(CIFAR10, "train_list", [[n, _md5(files[n])] for n in BATCHES[:5]])
    monkeypatch.setattr(CIFAR10, "test_list", [[BATCHES[5], _md5(files[BATCHES[5]])]])
    monkeypatch.setattr(CIFAR10, "meta", {**CIFAR10.meta, "md5": _md5(files["batches.meta"])})
    return archive_bytes


class FakeResponse:
    """Serves `payload` in chunks; with `drop_after`, the connection resets after that many bytes."""

    def __init__(self, url, payload, drop_after=None):
        self.url, self.payload, self.drop_after, self.sent = url, payload, drop_after, 0
        self.length = len(payload)

    def read(self, size=-1):
        if self.drop_after is not None and self.sent >= self.drop_after:
            raise ConnectionResetError("connection reset by peer (injected by the test)")
        end = len(self.payload) if size < 0 else self.sent + size
        if self.drop_after is not None:
            end = min(end, self.drop_after)
        chunk, self.sent = self.payload[self.sent:end], min(end, len(self.payload))
        return chunk

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def serve(monkeypatch, payload, drop_after=None):
    requests = []

    def urlopen(request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        requests.append(url)
        return FakeResponse(url, payload, drop_after)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return requests


def test_a_download_cut_halfway_is_reported_then_replaced_by_a_complete_one(tmp_path, monkeypatch,
                                                                           tiny_cifar10_archive):
    archive = tmp_path / "downloads" / "cifar-10-python.tar.gz"
    half = len(tiny_cifar10_archive) // 2

    requests = serve(monkeypatch, tiny_cifar10_archive, drop_after=half)
    with pytest.raises(DatasetUnavailableError) as info:
        load("cifar10", root=tmp_path)
    assert requests, "the download was never attempted"
    message = str(info.value)
    assert "CIFAR-10 could not be downloaded" in message and "ConnectionResetError" in message
    assert str(tmp_path / "downloads") in message and "'digits'" in message
    assert archive.stat().st_size == half, "the partial archive is left where the next run finds it"
    assert not (tmp_path / "downloads" / "cifar-10-batches-py").exists(), "nothing extracted from it"

    requests = serve(monkeypatch, tiny_cifar10_archive)
    data = load("cifar10", root=tmp_path)
    assert requests, "the partial archive failed its md5 check, so it was downloaded again"
    assert archive.read_bytes() == tiny_cifar10_archive
    assert data.x_train.shape == (100, 3, 32, 32) and data.x_test.shape == (20, 3, 32, 32)


def test_a_truncated_extracted_batch_is_not_trusted(tmp_path, monkeypatch, tiny_cifar10_archive):
    serve(monkeypatch, tiny_cifar10_archive)
    load("cifar10", root=tmp_path)
    batch = tmp_path / "downloads" / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:100])  # a copy interrupted by a full disk, say

    requests = serve(monkeypatch, tiny_cifar10_archive)
    data = load("cifar10", root=tmp_path)
    assert data.x_train.shape == (100, 3, 32, 32), "the batch was restored from the verified archive"
    assert requests == [], "the verified archive was re-extracted; nothing was downloaded"
