"""The kit's one teacher cache (`kdlab.teachers.trained_teacher`): a teacher is trained once, then read back with the
same weights and curves that training in place gives, and trained afresh when anything that decides it changes;
every notebook's teachers go through it."""
import functools

import pytest
import torch

from kdlab.data import load
from kdlab.models import MLP
from kdlab.teachers import trained_teacher
from kdlab.train import fit

OPTIONS = dict(epochs=4, lr=0.01, batch_size=64)


def new_mlp():
    return MLP(64, hidden=(32,), num_classes=10)


@pytest.fixture
def digits(tmp_path, monkeypatch):
    monkeypatch.setenv("KDLAB_DATA", str(tmp_path / "data"))
    return load("digits", train_size=300, seed=0)


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def curves(history):
    """The History's records without their wall times."""
    return [{k: v for k, v in record.items() if k != "seconds"} for record in history.records]


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_cached_teacher_is_the_teacher_trained_in_place(digits):
    torch.manual_seed(3)
    in_place = new_mlp()
    in_place_history = fit(in_place, digits, seed=3, progress=False, **OPTIONS)

    trained, history, reused = trained_teacher(new_mlp, digits, seed=3, log=lambda m: None, **OPTIONS)
    assert not reused and not trained.training
    assert same(weights(trained), weights(in_place)) and curves(history) == curves(in_place_history)

    read, read_history, reused = trained_teacher(new_mlp, digits, seed=3, log=lambda m: None, **OPTIONS)
    assert reused
    assert same(weights(read), weights(in_place)) and curves(read_history) == curves(in_place_history)


def test_callbacks_see_the_training_only_when_it_happens(digits):
    seen = []
    trained_teacher(new_mlp, digits, seed=0, callbacks=[lambda history, model: seen.append(len(history))],
                    log=lambda m: None, **OPTIONS)
    assert seen == [1, 2, 3, 4]
    trained_teacher(new_mlp, digits, seed=0, callbacks=[lambda history, model: seen.append(len(history))],
                    log=lambda m: None, **OPTIONS)
    assert seen == [1, 2, 3, 4]


@pytest.mark.parametrize("change", ["seed", "epochs", "architecture", "data"])
def test_anything_that_decides_the_teacher_trains_it_afresh(digits, change):
    trained_teacher(new_mlp, digits, seed=0, log=lambda m: None, **OPTIONS)
    seed, options, make, data = 0, dict(OPTIONS), new_mlp, digits
    if change == "seed":
        seed = 1
    elif change == "epochs":
        options["epochs"] = 5
    elif change == "architecture":
        make = lambda: MLP(64, hidden=(16,), num_classes=10)  # noqa: E731
    else:
        data = load("digits", train_size=300, seed=1)
    _, _, reused = trained_teacher(make, data, seed=seed, log=lambda m: None, **options)
    assert not reused


def test_every_notebooks_teachers_go_through_the_one_cache(digits, tmp_path):
    """Notebook 08's benchmark teachers, 05's zoo and 07's teacher are `trained_teacher`'s files: the weights
    their old training code gave (the same seeded model, the same `fit`), one file per teacher, read back after."""
    from kdlab import benchmark
    from kdlab.lessons import feature_meta, mmkd
    from kdlab.models import SmallCNN

    root, logs = tmp_path / "root", []
    spec = dict(arch="small_cnn", width=4, epochs=2, lr=0.05, batch_size=50, seed=3)
    made = benchmark.cached_teacher("cnn4", spec, digits, root=root, log=logs.append)
    torch.manual_seed(3)
    by_hand = SmallCNN(10, width=4, in_channels=1)
    fit(by_hand, digits, epochs=2, lr=0.05, batch_size=50, seed=3, progress=False, eval_every=2)
    assert same(weights(made), weights(by_hand))
    again = benchmark.cached_teacher("cnn4", spec, digits, root=root, log=logs.append)
    assert same(weights(again), weights(by_hand)) and "read from the cache" in logs[-1]

    zoo_spec = dict(arch="small_cnn", width=4, epochs=2, lr=0.05, noise=0.0, seed=3)
    zoo = mmkd.teacher_zoo(digits, {"cnn4": zoo_spec}, root=root, log=logs.append)["cnn4"]
    torch.manual_seed(3)
    zoo_by_hand = SmallCNN(10, width=4, in_channels=1)
    fit(zoo_by_hand, digits, epochs=2, lr=0.05, batch_size=64, seed=3, weight_decay=5e-4, progress=False)
    assert same(weights(zoo), weights(zoo_by_hand))

    meta_spec = dict(name="cnn4", width=4, epochs=2, lr=0.05, batch_size=64, seed=3)
    feature_teacher, seconds = feature_meta.cached_teacher(digits, meta_spec, make_model=lambda: SmallCNN(width=4),
                                                           root=root, log=logs.append)
    assert same(weights(feature_teacher), weights(zoo_by_hand)) and seconds >= 0
    files = sorted(p.name.split("-")[0] for p in (root / "cache" / "teachers").glob("*.pt"))
    assert files == ["comparison", "feature", "mmkd"]


def test_the_key_names_a_function_option_by_its_qualified_name_not_its_address():
    from kdlab.data.cifar import augment
    from kdlab.teachers import _described

    assert _described(augment) == "kdlab.data.cifar.augment"
    assert _described(functools.partial(augment, padding=2)) == ["kdlab.data.cifar.augment", [], {"padding": 2}]
    assert "0x" not in repr(_described(lambda x, generator: x)) and _described(0.05) == 0.05
