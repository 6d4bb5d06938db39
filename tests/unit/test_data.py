"""The dataset registry, the offline and online loaders, augmentation and batching.

Oracles are independent of the code under test: scikit-learn's and mnist1d's own outputs, the raw CIFAR
pickle layout written by hand, and counts computed with NumPy.
"""
import os
import pickle
import random
import socket
from collections import Counter

import numpy as np
import pytest
import torch

from kdlab import config
from kdlab.data import DataSplits, available, batches, load, train_quiz_split
from kdlab.data import cifar, registry
from kdlab.data import mnist1d as mnist1d_module
from kdlab.errors import DatasetUnavailableError, ParameterError


def rows_as_multiset(x):
    return Counter(map(bytes, np.ascontiguousarray(x.reshape(len(x), -1).numpy())))


# ---------------------------------------------------------------- registry

def test_available_lists_offline_sets_first_and_filters_online_ones():
    names = available()
    assert {"digits", "mnist1d", "cifar10", "cifar100"} <= set(names)
    offline = available(offline_only=True)
    assert "cifar10" not in offline and "cifar100" not in offline
    assert names[: len(offline)] == offline


@pytest.mark.parametrize("check", [registry.check_name, lambda name: config.check("DATASET", name)])
def test_unknown_dataset_names_the_value_and_every_allowed_name(check):
    with pytest.raises(ParameterError) as info:
        check("cifar-10")
    message = str(info.value)
    assert "DATASET='cifar-10'" in message
    for name in available():
        assert repr(name) in message
    assert "(offline: 'digits', 'mnist1d'" in message


def test_unknown_loader_option_names_the_options_the_loader_takes():
    with pytest.raises(ParameterError) as info:
        load("digits", trainsize=300)
    message = str(info.value)
    assert "trainsize=300" in message and "'train_size'" in message and "'seed'" in message


def test_fewshot_loaders_register_and_load_through_the_same_registry(monkeypatch):
    monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))

    @registry.register("toy-episodes", offline=True, description="a test set", kind="fewshot")
    def load_toy(root=None, device="cpu", **kwargs):
        return ("episodes", root, device, kwargs)

    assert "toy-episodes" in available(kind="fewshot")
    assert "toy-episodes" not in available(kind="classification")
    assert load("toy-episodes", root="/r", ways=5) == ("episodes", "/r", "cpu", {"ways": 5})
    with pytest.raises(ValueError, match="already registered"):
        registry.register("digits", offline=True, description="clash")(load_toy)
    with pytest.raises(ParameterError, match="kind='images'"):
        registry.register("x", offline=True, description="x", kind="images")


def test_registry_works_while_optional_loader_modules_are_missing(monkeypatch):
    monkeypatch.setattr(registry, "_OPTIONAL_MODULES", ("kdlab.data.not_written_yet",))
    assert "digits" in available()


def test_optional_loader_module_with_a_missing_dependency_is_skipped_with_a_warning(monkeypatch):
    real_import = registry.importlib.import_module

    def import_module(name):
        if name == "kdlab.data.glyphs":
            raise ModuleNotFoundError("No module named 'fontlib'", name="fontlib")
        return real_import(name)

    monkeypatch.setattr(registry.importlib, "import_module", import_module)
    with pytest.warns(UserWarning, match="kdlab.data.glyphs.*fontlib"):
        names = available()
    assert "digits" in names


# ---------------------------------------------------------------- DataSplits

def toy_splits(labels):
    y = torch.as_tensor(labels)
    x = torch.arange(len(y), dtype=torch.float32)[:, None]
    return DataSplits("toy", x, y, x[:3], y[:3], num_classes=int(y.max()) + 1, input_shape=(1,))


def test_subset_train_is_stratified_and_repr_states_sizes():
    labels = [0] * 60 + [1] * 30 + [2] * 10
    subset = toy_splits(labels).subset_train(20, torch.Generator().manual_seed(0))
    assert Counter(subset.y_train.tolist()) == {0: 12, 1: 6, 2: 2}
    # each kept input still carries its own label (the input is its original index)
    assert torch.equal(torch.as_tensor(labels)[subset.x_train[:, 0].long()], subset.y_train)
    assert "20 train / 3 test" in repr(subset) and "'toy'" in repr(subset)


@pytest.mark.parametrize("n", [0, 101, 2.5])
def test_subset_train_rejects_sizes_outside_the_training_set(n):
    with pytest.raises(ParameterError, match=r"n=.* must be an integer in \[1, 100\]"):
        toy_splits([0, 1] * 50).subset_train(n)


def test_to_rejects_an_unknown_device():
    with pytest.raises(ParameterError, match="device='gpu'"):
        toy_splits([0, 1]).to("gpu")


# ---------------------------------------------------------------- digits

def test_digits_shapes_dtypes_range_and_default_split():
    from sklearn.datasets import load_digits

    data = load("digits")
    assert (data.num_train, data.num_test) == (1348, 449)
    assert data.x_train.shape == (1348, 1, 8, 8) and data.x_train.dtype == torch.float32
    assert data.y_train.dtype == torch.int64 and data.num_classes == 10
    assert 0.0 <= data.x_train.min() and data.x_train.max() <= 1.0 and data.x_train.max() == 1.0
    # train and test together are exactly scikit-learn's images / 16 with their labels
    bunch = load_digits()
    ours = torch.cat([torch.cat([data.x_train, data.x_test]).flatten(1),
                      torch.cat([data.y_train, data.y_test])[:, None].float()], 1)
    theirs = torch.cat([torch.as_tensor(bunch.data / 16.0, dtype=torch.float32),
                        torch.as_tensor(bunch.target, dtype=torch.float32)[:, None]], 1)
    assert rows_as_multiset(ours) == rows_as_multiset(theirs)


def test_digits_train_size_is_stratified_and_the_rest_is_test():
    from sklearn.datasets import load_digits

    data = load("digits", train_size=300, seed=3)
    assert (data.num_train, data.num_test) == (300, 1497)
    full_counts = np.bincount(load_digits().target)
    expected = full_counts * 300 / full_counts.sum()
    assert np.all(np.abs(np.bincount(data.y_train.numpy()) - expected) < 1)


def test_digits_split_is_fixed_by_the_seed():
    a, b, c = load("digits", seed=1), load("digits", seed=1), load("digits", seed=2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)


def test_digits_test_fraction_with_train_size():
    data = load("digits", test_fraction=0.5, train_size=100)
    assert (data.num_train, data.num_test) == (100, round(1797 * 0.5))


@pytest.mark.parametrize("option, value", [
    ("train_size", 0), ("train_size", 1797), ("train_size", "300"),
    ("test_fraction", 0), ("test_fraction", 1.0), ("seed", -1),
])
def test_digits_bad_options_name_the_option(option, value):
    with pytest.raises(ParameterError, match=f"{option}={value!r} is not allowed"):
        load("digits", **{option: value})


# ---------------------------------------------------------------- MNIST-1D

@pytest.fixture(scope="module")
def mnist1d_root(tmp_path_factory):
    return tmp_path_factory.mktemp("kdlab-data")


@pytest.fixture(scope="module")
def mnist1d_first_load(mnist1d_root):
    numpy_state, python_state = np.random.get_state(), random.getstate()
    data = load("mnist1d", root=mnist1d_root)
    return data, numpy_state, python_state


def test_mnist1d_matches_the_generator_and_keeps_global_randomness(mnist1d_first_load):
    from mnist1d.data import get_dataset_args, make_dataset

    data, numpy_state, python_state = mnist1d_first_load
    assert data.x_train.shape == (4000, 40) and data.x_test.shape == (1000, 40)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    # loading must not have reseeded the caller's NumPy / Python generators (make_dataset does)
    after = np.random.get_state()
    assert np.array_equal(after[1], numpy_state[1]) and after[2] == numpy_state[2]
    assert random.getstate() == python_state

    reference = make_dataset(get_dataset_args())
    assert np.allclose(data.x_train.numpy(), reference["x"], atol=1e-6)
    assert np.array_equal(data.y_test.numpy(), reference["y_test"])
    everything = torch.cat([data.x_train, data.x_test])
    assert abs(everything.mean().item()) < 1e-3 and abs(everything.std().item() - 1) < 1e-3


def test_mnist1d_second_load_reads_the_cache(mnist1d_root, mnist1d_first_load, monkeypatch):
    monkeypatch.setattr(mnist1d_module, "generate", lambda args: pytest.fail("regenerated instead of cached"))
    again = load("mnist1d", root=mnist1d_root, train_size=500, seed=1)
    assert again.num_train == 500 and again.num_test == 1000
    assert np.all(np.bincount(again.y_train.numpy(), minlength=10) >= 45)


def test_mnist1d_corrupt_cache_is_reported_kept_aside_and_rebuilt(mnist1d_root, mnist1d_first_load, monkeypatch):
    original = mnist1d_first_load[0]
    path = mnist1d_module.cache_path(mnist1d_root)
    assert path.exists()
    truncated = path.read_bytes()[: path.stat().st_size // 2]
    path.write_bytes(truncated)  # as after a crash mid-write

    builds = []
    real_generate = mnist1d_module.generate
    monkeypatch.setattr(mnist1d_module, "generate", lambda args: builds.append(args) or real_generate(args))
    reports = []
    rebuilt = load("mnist1d", root=mnist1d_root, log=reports.append)
    assert len(builds) == 1
    assert len(reports) == 1 and "corrupt" in reports[0] and "\n" not in reports[0]
    aside = path.with_name(path.name + ".corrupt")
    assert aside.read_bytes() == truncated
    assert torch.equal(rebuilt.x_train, original.x_train) and torch.equal(rebuilt.y_test, original.y_test)
    # the rebuilt file is whole again: a further load reads it without a report or a build
    assert torch.equal(load("mnist1d", root=mnist1d_root, log=reports.append).x_test, original.x_test)
    assert len(builds) == 1 and len(reports) == 1


# ---------------------------------------------------------------- CIFAR

@pytest.fixture
def network_blocked(monkeypatch):
    """Any attempt to open a connection raises OSError; records the attempts."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network blocked by the test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    return attempts


def test_cifar_without_network_raises_one_clear_error(tmp_path, network_blocked):
    with pytest.raises(DatasetUnavailableError) as info:
        load("cifar100", root=tmp_path)
    assert network_blocked, "the download was never attempted"
    message = str(info.value)
    assert "CIFAR-100 could not be downloaded" in message
    assert str(tmp_path / "downloads") in message
    assert "by hand" in message and "cifar-100-python.tar.gz" in message
    assert "'digits'" in message and "'mnist1d'" in message


CIFAR10_FILES = ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"]


@pytest.fixture
def fake_cifar10(tmp_path, monkeypatch, network_blocked):
    """Tiny CIFAR-10 files in the original pickle layout: one row = 1024 red, 1024 green, 1024 blue."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "downloads" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    raw = {}
    for name in CIFAR10_FILES:
        raw[name] = {"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), "labels": list(range(10)) * 2}
        (folder / name).write_bytes(pickle.dumps(raw[name]))
    classes = [f"class{i}" for i in range(10)]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": classes}))
    # the real files' md5 sums cannot match these; accept any present file
    monkeypatch.setattr("torchvision.datasets.cifar.check_integrity", lambda path, md5=None: os.path.isfile(path))
    return tmp_path, raw, classes


def test_cifar_tensors_follow_the_pickle_layout_and_are_normalised(fake_cifar10):
    root, raw, classes = fake_cifar10
    data = load("cifar10", root=root)
    assert data.x_train.shape == (100, 3, 32, 32) and data.x_test.shape == (20, 3, 32, 32)
    assert data.class_names == classes and data.num_classes == 10
    pixels = np.concatenate([raw[n]["data"] for n in CIFAR10_FILES[:5]]).reshape(100, 3, 32, 32) / 255.0
    mean = np.array([0.4914, 0.4822, 0.4465])[None, :, None, None]
    std = np.array([0.2470, 0.2435, 0.2616])[None, :, None, None]
    assert np.allclose(data.x_train.numpy(), (pixels - mean) / std, atol=1e-5)
    assert data.y_test.tolist() == raw["test_batch"]["labels"]


def test_cifar_train_size_and_resize(fake_cifar10):
    root, _, _ = fake_cifar10
    data = load("cifar10", root=root, train_size=30, resize=84)
    assert data.x_train.shape == (30, 3, 84, 84) and data.x_test.shape == (20, 3, 84, 84)
    assert np.all(np.bincount(data.y_train.numpy()) == 3)
    with pytest.raises(ParameterError, match="resize=4"):
        load("cifar10", root=root, resize=4)


def test_augment_returns_padded_crops_possibly_flipped():
    images = torch.randn(16, 3, 6, 6)
    out = cifar.augment(images, "cifar10", padding=2, generator=torch.Generator().manual_seed(0))
    black = -torch.tensor([0.4914, 0.4822, 0.4465]) / torch.tensor([0.2470, 0.2435, 0.2616])
    padded = black[:, None, None].expand(3, 10, 10).repeat(16, 1, 1, 1)
    padded[:, :, 2:8, 2:8] = images
    seen = set()
    for i in range(16):
        candidates = {
            (top, left, flip): padded[i, :, top:top + 6, left:left + 6].flip(-1) if flip
            else padded[i, :, top:top + 6, left:left + 6]
            for top in range(5) for left in range(5) for flip in (False, True)
        }
        matches = [key for key, crop in candidates.items() if torch.allclose(crop, out[i])]
        assert matches, f"image {i} is not a crop of the padded image"
        seen.update(matches)
    assert {flip for _, _, flip in seen} == {False, True}
    assert len({(top, left) for top, left, _ in seen}) > 4
    again = cifar.augment(images, "cifar10", padding=2, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, again)


def test_augment_rejects_an_unknown_statistics_name():
    with pytest.raises(ParameterError, match="name='imagenet'"):
        cifar.augment(torch.zeros(1, 3, 4, 4), "imagenet")


# ---------------------------------------------------------------- batching

def test_batches_cover_every_sample_once_and_follow_the_generator():
    x = torch.arange(103, dtype=torch.float32)[:, None]
    y = torch.arange(103)
    epoch = list(batches(x, y, 10, generator=torch.Generator().manual_seed(5)))
    assert [len(yb) for _, yb in epoch] == [10] * 10 + [3]
    seen = torch.cat([yb for _, yb in epoch])
    assert sorted(seen.tolist()) == list(range(103)) and seen.tolist() != list(range(103))
    assert all(torch.equal(xb[:, 0].long(), yb) for xb, yb in epoch)
    repeat = torch.cat([yb for _, yb in batches(x, y, 10, generator=torch.Generator().manual_seed(5))])
    assert torch.equal(seen, repeat)
    assert [len(yb) for _, yb in batches(x, y, 10, drop_last=True)] == [10] * 10
    assert torch.cat([yb for _, yb in batches(x, y, 7, shuffle=False)]).tolist() == list(range(103))


@pytest.mark.parametrize("size", [0, -1, 2.0, True])
def test_batches_rejects_bad_batch_size(size):
    with pytest.raises(ParameterError, match=f"batch_size={size!r}"):
        next(batches(torch.zeros(4, 1), torch.zeros(4), size))


def test_train_quiz_split_is_disjoint_complete_and_seeded():
    train, quiz = train_quiz_split(300, 0.1, torch.Generator().manual_seed(0))
    assert (len(train), len(quiz)) == (270, 30)
    assert sorted(torch.cat([train, quiz]).tolist()) == list(range(300))
    train2, quiz2 = train_quiz_split(300, 0.1, torch.Generator().manual_seed(0))
    assert torch.equal(quiz, quiz2) and torch.equal(train, train2)
    labels = torch.arange(300) % 10
    _, quiz = train_quiz_split(300, 0.1, torch.Generator().manual_seed(1), labels=labels)
    assert np.bincount(labels[quiz].numpy()).tolist() == [3] * 10


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, "0.1", float("nan")])
def test_train_quiz_split_rejects_fractions_outside_0_1(fraction):
    with pytest.raises(ParameterError, match="fraction=.* strictly between 0 and 1"):
        train_quiz_split(300, fraction)
