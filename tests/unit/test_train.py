import math

import pytest
import torch

from kdlab.data import load
from kdlab.errors import TrainingDivergedError
from kdlab.models import MLP
from kdlab.train import History, accuracy, cross_entropy, distill_from, fit


@pytest.fixture(scope="module")
def digits():
    return load("digits", train_size=120, seed=0)


def _model(seed=0, hidden=(16,)):
    torch.manual_seed(seed)
    return MLP(64, hidden=hidden, num_classes=10)


def test_fit_learns_and_records_named_losses(digits):
    history = fit(_model(), digits, epochs=15, lr=0.1, batch_size=30, progress=False)
    assert len(history) == 15 and history.series("epoch") == list(range(1, 16))
    assert history.series("loss")[-1] < history.series("loss")[0]
    assert history.last["test_acc"] > 50
    assert math.isclose(history.records[0]["lr"], 0.1) and history.last["lr"] < 0.1  # cosine schedule


def test_same_seed_gives_identical_runs(digits):
    a = fit(_model(3), digits, epochs=3, lr=0.1, seed=3, progress=False)
    b = fit(_model(3), digits, epochs=3, lr=0.1, seed=3, progress=False)
    c = fit(_model(3), digits, epochs=3, lr=0.1, seed=4, progress=False)
    assert a.series("loss") == b.series("loss")
    assert a.series("loss") != c.series("loss")


def test_distillation_objective_reports_its_terms_and_freezes_the_teacher(digits):
    teacher = _model(1, hidden=(32,))
    before = [p.clone() for p in teacher.parameters()]
    history = fit(_model(), digits, distill_from(teacher, alpha=0.5, temperature=2.0), epochs=2, progress=False)
    assert {"loss", "ce", "kd"} <= set(history.last)
    assert math.isclose(history.last["loss"], 0.5 * history.last["ce"] + 0.5 * history.last["kd"], rel_tol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))


def test_nan_loss_stops_with_a_message_that_suggests_a_fix(digits):
    def poisoned(model, x, y):
        out = cross_entropy(model, x, y)
        return {"loss": out["loss"] * float("nan")}

    with pytest.raises(TrainingDivergedError, match="smaller learning rate"):
        fit(_model(), digits, poisoned, epochs=2, progress=False)


def test_interrupt_keeps_history_and_model_usable_and_training_resumes(digits):
    model = _model()

    def interrupt_at_epoch_2(history, model):
        if history.epochs_done == 2:
            raise KeyboardInterrupt

    history = fit(model, digits, epochs=5, lr=0.1, callbacks=[interrupt_at_epoch_2], progress=False)
    assert history.interrupted and history.epochs_done == 2
    assert 0 <= accuracy(model, digits.x_test, digits.y_test) <= 100
    history = fit(model, digits, epochs=2, lr=0.1, history=history, progress=False)
    assert history.epochs_done == 4 and history.series("epoch") == [1, 2, 3, 4]
    assert not history.interrupted, "the resumed run finished"



def test_callback_can_stop_early(digits):
    history = fit(_model(), digits, epochs=10, progress=False, callbacks=[lambda h, m: h.epochs_done == 3])
    assert history.epochs_done == 3


def test_bad_recipe_values_are_rejected(digits):
    from kdlab.errors import ParameterError

    with pytest.raises(ParameterError, match="LR=-1"):
        fit(_model(), digits, lr=-1, progress=False)
    with pytest.raises(ParameterError, match="EPOCHS=0"):
        fit(_model(), digits, epochs=0, progress=False)
    with pytest.raises(ParameterError, match="optimizer='rmsprop'"):
        fit(_model(), digits, optimizer="rmsprop", progress=False)


def test_accuracy_restores_training_mode(digits):
    model = _model()
    model.train()
    accuracy(model, digits.x_test, digits.y_test)
    assert model.training
    assert isinstance(History().last, dict)
