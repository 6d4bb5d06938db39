"""The one loop: schedules, the Method protocol, resume, the episodic loop, the registry, and Hinton KD
against an oracle written from the paper, with planted bugs that the checks must catch."""
import math
from contextlib import contextmanager
from unittest.mock import patch

import pytest
import torch
import torch.nn.functional as F

from kdlab.data import load
from kdlab.errors import ParameterError, TrainingDivergedError
from kdlab.methods import base, kd, registry
from kdlab.models import MLP
from kdlab.train import History, fit, fit_episodes, loop, schedules
from tests.mutation import assert_caught


@pytest.fixture(scope="module")
def digits():
    return load("digits", train_size=120, seed=0)


def _mlp(seed, hidden=(16,)):
    torch.manual_seed(seed)
    return MLP(64, hidden=hidden, num_classes=10)


# -- schedules ------------------------------------------------------------------------------------
def test_cosine_factor_reproduces_the_closed_form_bit_for_bit():
    for lr in (0.05, 0.1, 0.02, 0.3):
        for total in (1, 7, 60, 150, 240):
            factor = schedules.schedule_factor("cosine", total)
            for epoch in range(total):
                assert lr * factor(epoch) == 0.5 * lr * (1 + math.cos(math.pi * epoch / total))


def test_step_schedule_is_repdistillers_decay_scaled_to_the_budget():
    assert schedules.step_milestones(240) == (150, 180, 210)
    assert schedules.step_milestones(24) == (15, 18, 21)
    factor = schedules.schedule_factor("step", 240)
    assert [factor(e) for e in (0, 149, 150, 179, 180, 210, 239)] == [1, 1, 0.1, 0.1, 0.1 ** 2, 0.1 ** 3, 0.1 ** 3]


def test_every_optimizer_of_a_run_follows_the_schedule(digits):
    history = fit(_mlp(0), digits, epochs=4, lr=0.2, schedule="step", progress=False)
    milestones = schedules.step_milestones(4)
    expected = [0.2 * 0.1 ** sum(e >= m for m in milestones) for e in range(4)]
    assert history.series("lr") == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ParameterError, match="schedule"):
        schedules.schedule_factor("linear", 10)


# -- the Method protocol --------------------------------------------------------------------------
class Recorder(kd.Supervised):
    """Plain CE that logs every hook call."""

    def __init__(self, model):
        super().__init__(model)
        self.calls = []

    def prepare(self, data, run):
        self.calls.append("prepare")
        return data

    def on_epoch_start(self, run):
        self.calls.append(f"start{run.epoch}")

    def on_epoch_end(self, record, run):
        self.calls.append(f"end{run.epoch}")
        record["extra"] = run.global_step


def test_hooks_run_in_order_and_evaluation_follows_eval_every(digits):
    method = Recorder(_mlp(0))
    history = fit(method, digits, epochs=3, batch_size=50, eval_every=2, progress=False)
    assert method.calls == ["prepare", "start0", "end0", "start1", "end1", "start2", "end2"]
    assert [("test_acc" in r) for r in history.records] == [False, True, True]
    assert history.series("extra") == [3, 6, 9]  # 120 samples in batches of 50: 3 steps an epoch


def test_a_method_keeps_its_optimizer_state_when_training_resumes(digits):
    straight = kd.Supervised(_mlp(0))
    fit(straight, digits, epochs=4, lr=0.1, schedule="constant", seed=1, progress=False)
    resumed = kd.Supervised(_mlp(0))
    history = fit(resumed, digits, epochs=2, lr=0.1, schedule="constant", seed=1, progress=False)
    fit(resumed, digits, epochs=2, lr=0.1, schedule="constant", seed=1, progress=False, history=history)
    momentum = resumed.optimizer.state[next(resumed.model.parameters())]["momentum_buffer"]
    assert momentum.abs().sum() > 0
    assert history.series("epoch") == [1, 2, 3, 4]
    assert history.global_steps == 4 * 2, "the global step count continues across fits (120 samples, batches of 64)"


def test_nan_guard_stops_before_any_weight_is_written(digits):
    model = _mlp(0)
    before = [p.detach().clone() for p in model.parameters()]

    def poisoned(m, x, y):
        return {"loss": F.cross_entropy(m(x), y) * float("nan")}

    with pytest.raises(TrainingDivergedError, match="epoch 1, step 1"):
        fit(model, digits, poisoned, epochs=1, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_an_objective_with_a_method_is_refused(digits):
    with pytest.raises(ParameterError, match="objective"):
        fit(kd.Supervised(_mlp(0)), digits, kd.cross_entropy, epochs=1, progress=False)


def test_batches_carry_their_row_indices(digits):
    seen = []

    class Indices(kd.Supervised):
        def step(self, batch, run):
            assert torch.equal(batch.x, digits.x_train[batch.index]) and torch.equal(batch.y, digits.y_train[batch.index])
            seen.append(batch.index)
            return super().step(batch, run)

    fit(Indices(_mlp(0)), digits, epochs=1, batch_size=50, progress=False)
    assert sorted(torch.cat(seen).tolist()) == list(range(digits.num_train))


# -- the episodic loop ----------------------------------------------------------------------------
class Counting:
    """An episodic method whose 'loss' is the iteration number (NaN at `nan_at`)."""

    progress_desc = "test"

    def __init__(self, nan_at=None):
        self.nan_at, self.modes = nan_at, []

    def step(self, tasks, run):
        assert len(tasks) == 3
        it = run.step + 1
        return {"loss": math.nan if it == self.nan_at else float(it), "query_acc": 0.5}

    def train(self):
        self.modes.append("train")

    def eval(self):
        self.modes.append("eval")

    def divergence_hint(self):
        return "Try something else."


def _tasks():
    while True:
        yield (torch.zeros(2), torch.zeros(2))


def test_episodic_loop_logs_window_means_in_percent():
    method = Counting()
    history = fit_episodes(method, _tasks(), iterations=5, meta_batch=3, log_every=2)
    assert history.series("iteration") == [2, 4, 5]
    assert history.series("loss") == [1.5, 3.5, 5.0]
    assert history.series("query_acc") == [50.0, 50.0, 50.0]
    assert method.modes == ["train", "eval"]


def test_episodic_loop_stops_on_nan_with_the_methods_hint():
    with pytest.raises(TrainingDivergedError, match="iteration 3.*Try something else"):
        fit_episodes(Counting(nan_at=3), _tasks(), iterations=5, meta_batch=3)


# -- the registry ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", registry.names())
def test_every_registered_method_resolves_and_has_a_full_card(name):
    cls = registry.get(name)
    assert issubclass(cls, base.Method) or hasattr(cls, "step"), name
    card = registry.card(name)
    missing = [f for f in registry.CARD_FIELDS if not card.get(f)]
    assert not missing, f"{name}'s card lacks {missing}"
    assert card["loop"] in ("epochs", "episodes")


def test_unknown_method_names_what_is_allowed():
    with pytest.raises(ParameterError, match="'kd'"):
        registry.get("distil")


# -- Hinton KD against the paper ------------------------------------------------------------------
def hinton_oracle_step(student, teacher, x, y, alpha, tau, lr):
    """Section 2 of Hinton et al. written out: soft targets at tau, the tau^2 factor, (1 - alpha) on the
    hard-label CE; one plain SGD step. Independent of kdlab.losses."""
    w = [p.detach().clone().requires_grad_() for p in student.parameters()]
    with torch.no_grad():
        q = torch.softmax(teacher(x) / tau, dim=1)
    z = torch.func.functional_call(student, dict(zip([n for n, _ in student.named_parameters()], w)), (x,))
    log_p = torch.log_softmax(z / tau, dim=1)
    soft = (q * (torch.log(q) - log_p)).sum(1).mean() * tau ** 2
    hard = -torch.log_softmax(z, dim=1).gather(1, y[:, None]).mean()
    loss = (1 - alpha) * hard + alpha * soft
    grads = torch.autograd.grad(loss, w)
    return [p - lr * g for p, g in zip(w, grads)]


def check_kd_step_matches_the_paper():
    torch.manual_seed(0)
    student, teacher = MLP(6, (5,), 4).double(), MLP(6, (7,), 4).double()
    x, y = torch.randn(9, 6, dtype=torch.float64), torch.randint(0, 4, (9,))
    expected = hinton_oracle_step(student, teacher, x, y, alpha=0.7, tau=3.0, lr=0.1)
    method = kd.KD(student, teacher, alpha=0.7, temperature=3.0)
    method.configure(base.Recipe(lr=0.1, momentum=0.0, weight_decay=0.0), None)
    run = base.Run(seed=0, epochs=1, batch_size=9, recipe=None, generator=None)
    method.step(base.Batch(x, y, torch.arange(9)), run)
    for got, want in zip(student.parameters(), expected):
        assert torch.allclose(got, want, rtol=0, atol=1e-12), (got - want).abs().max()
    assert all(p.grad is None for p in teacher.parameters()), "the teacher received a gradient"


def test_kd_step_matches_hintons_equation():
    check_kd_step_matches_the_paper()


def _no_tau_squared(student_logits, teacher_logits, labels, alpha=0.9, temperature=4.0):
    from kdlab.losses import distillation_loss

    out = distillation_loss(student_logits, teacher_logits, labels, alpha, temperature)
    out["loss"] = (1 - alpha) * out["ce"] + alpha * out["kd"] / temperature ** 2
    return out


def _alpha_on_ce(student_logits, teacher_logits, labels, alpha=0.9, temperature=4.0):
    from kdlab.losses import distillation_loss

    return distillation_loss(student_logits, teacher_logits, labels, 1 - alpha, temperature)


@contextmanager
def _teacher_attached():
    from kdlab.methods import frozen_teacher

    with patch.object(frozen_teacher.FrozenLogits, "__call__", lambda self, batch: self.teacher(batch.x)):
        yield


KD_MUTANTS = {
    "tau^2 factor dropped": lambda: patch.object(kd, "distillation_loss", _no_tau_squared),
    "alpha weights the CE term": lambda: patch.object(kd, "distillation_loss", _alpha_on_ce),
    "teacher logits not detached": _teacher_attached,
}


@pytest.mark.parametrize("name", KD_MUTANTS)
def test_planted_kd_bug_is_caught(name):
    assert_caught(check_kd_step_matches_the_paper, KD_MUTANTS[name])


def check_loop_reproduces_a_hand_written_epoch(digits):
    """Two epochs of the loop against a hand-written loop: seeded batch order, cosine lr per epoch."""
    model, reference = _mlp(5), _mlp(5)
    fit(model, digits, epochs=2, lr=0.1, batch_size=40, seed=7, progress=False)
    opt = torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(7)
    for epoch in range(2):
        for group in opt.param_groups:
            group["lr"] = 0.5 * 0.1 * (1 + math.cos(math.pi * epoch / 2))
        order = torch.randperm(digits.num_train, generator=generator)
        for start in range(0, digits.num_train, 40):
            idx = order[start:start + 40]
            opt.zero_grad()
            F.cross_entropy(reference(digits.x_train[idx]), digits.y_train[idx]).backward()
            opt.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        assert torch.equal(a, b)


def test_loop_reproduces_a_hand_written_epoch(digits):
    check_loop_reproduces_a_hand_written_epoch(digits)


LOOP_MUTANTS = {
    "schedule never applied": lambda: patch.object(loop, "make_schedulers", lambda opts, *a, **k: []),
    "batch order not drawn from the run's generator": lambda: patch.object(loop, "batches", _unseeded_batches),
}


def _unseeded_batches(x, y, batch_size, *, generator=None, drop_last=False):
    from kdlab.data.batching import batches

    return batches(x, y, batch_size, generator=torch.Generator().manual_seed(12345), drop_last=drop_last)


@pytest.mark.parametrize("name", LOOP_MUTANTS)
def test_planted_loop_bug_is_caught(name, digits):
    assert_caught(lambda: check_loop_reproduces_a_hand_written_epoch(digits), LOOP_MUTANTS[name])
