"""The shared teacher (`kdlab.teachers.trained_teacher`): trained once, then read from the run cache with the
same weights and curves that training in place gives, and trained afresh when anything that decides it changes."""
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
    monkeypatch.setenv("KDLAB_RUN_CACHE", "1")
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
