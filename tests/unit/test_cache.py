import pytest
import torch

from kdlab import cache
from kdlab.errors import CorruptCacheError


def test_round_trip_and_checksum(tmp_path):
    path = tmp_path / "t.pt"
    cache.save_tensors({"x": torch.arange(5), "meta": {"n": 5}}, path)
    loaded = cache.load_tensors(path)
    assert torch.equal(loaded["x"], torch.arange(5)) and loaded["meta"] == {"n": 5}
    assert (tmp_path / "t.pt.sha256").read_text().strip() == cache.sha256_of(path)


def test_a_flipped_byte_is_detected(tmp_path):
    path = tmp_path / "t.pt"
    cache.save_tensors({"x": torch.randn(100)}, path)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptCacheError, match="corrupt"):
        cache.load_tensors(path)


def test_a_missing_checksum_means_a_partial_write(tmp_path):
    path = tmp_path / "t.pt"
    torch.save({"x": 1}, path)
    with pytest.raises(CorruptCacheError, match="no checksum"):
        cache.load_tensors(path)


def test_load_or_build_rebuilds_a_corrupt_file_and_keeps_it_aside(tmp_path):
    path = tmp_path / "t.pt"
    builds = []

    def build():
        builds.append(1)
        return {"x": torch.ones(3)}

    cache.load_or_build(path, build, log=lambda m: None)
    cache.load_or_build(path, build, log=lambda m: None)
    assert len(builds) == 1
    path.write_bytes(b"garbage")
    messages = []
    out = cache.load_or_build(path, build, log=messages.append)
    assert len(builds) == 2 and torch.equal(out["x"], torch.ones(3))
    assert (tmp_path / "t.pt.corrupt").read_bytes() == b"garbage"
    assert len(messages) == 1 and "rebuilding" in messages[0]


def test_no_temporary_files_are_left_behind(tmp_path):
    cache.save_tensors({"x": torch.zeros(2)}, tmp_path / "a.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "a.pt.sha256"]


class NotATensor:
    pass


def test_weights_only_loading_refuses_arbitrary_objects(tmp_path):
    path = tmp_path / "evil.pt"
    cache.save_tensors({"obj": NotATensor()}, path)
    with pytest.raises(CorruptCacheError, match="could not be read"):
        cache.load_tensors(path)


def test_config_key_is_stable_and_order_free():
    assert cache.config_key({"a": 1, "b": 2}) == cache.config_key({"b": 2, "a": 1})
    assert cache.config_key({"a": 1}) != cache.config_key({"a": 2})
