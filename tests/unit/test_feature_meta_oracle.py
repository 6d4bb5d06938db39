"""kdlab.methods.feature_meta against an oracle written from the paper, and the bugs it catches.

The oracle is Eqs. (1)-(4) in plain torch for a tiny conv student with its adapter: its own forward pass
(F.conv2d, an einsum for the 1x1 adapter), its own cross-entropy, MSE and cosine, its own inner step
(torch.autograd.grad with create_graph) and its own SGD with momentum and weight decay. No kit loss
function, no kdlab.meta, no higher. Checked against it: the method's meta-gradient (both engines), whole
training steps through `fit` (ordinary step, then the adaptation phase), and the meta-gradient against
kdlab.gradcheck's finite differences of the oracle's query loss, in float64. Each planted bug below makes
one of these checks fail by an assertion.
"""
import contextlib
import functools
import itertools
from unittest.mock import patch

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from kdlab import gradcheck
from kdlab.data import DataSplits
from kdlab.meta.higher_backend import import_higher
from kdlab.methods import feature_meta as fm
from kdlab.methods.feature_meta import FeatureMeta
from kdlab.methods.frozen_teacher import FrozenLogits
from kdlab.models.adapter import attach_adapter
from kdlab.train import fit
from tests.mutation import assert_caught

ALPHA, INNER_LR, INNER_STEPS, LR, META_LR, MOMENTUM, WEIGHT_DECAY = 0.7, 0.5, 2, 0.2, 0.3, 0.9, 5e-4


class Tiny(nn.Module):
    """x (B, 1, 4, 4) -> tanh(conv 3x3) = the feature map -> spatial mean -> linear: 3 classes."""

    def __init__(self, channels):
        super().__init__()
        self.conv = nn.Conv2d(1, channels, 3, padding=1)
        self.head = nn.Linear(channels, 3)

    def forward(self, x, return_features=False):
        feature = torch.tanh(self.conv(x))
        logits = self.head(feature.mean((2, 3)))
        return (logits, [feature]) if return_features else logits


def tiny_data(n=16):
    g = torch.Generator().manual_seed(11)
    x = torch.randn(n, 1, 4, 4, generator=g, dtype=torch.float64)
    y = torch.arange(n) % 3
    return DataSplits("tiny", x, y, x[:4], y[:4], 3, (1, 4, 4))


def tiny_method(engine="higher", **kwargs):
    torch.manual_seed(0)
    student, teacher = Tiny(2).double(), Tiny(3).double().eval()
    settings = dict(alpha=ALPHA, inner_steps=INNER_STEPS, inner_lr=INNER_LR, meta_lr=META_LR, student_layer=0,
                    teacher_layer=0, engine=engine, amp=False)
    return FeatureMeta(student, teacher, **{**settings, **kwargs})


# ------------------------------------------------------------------------- the oracle, from the paper

def oracle_forward(w, x):
    """Student logits and A(f_S): gain per channel, then the 1x1 conv as an einsum."""
    f_s = torch.tanh(F.conv2d(x, w["student.conv.weight"], w["student.conv.bias"], padding=1))
    logits = f_s.mean((2, 3)) @ w["student.head.weight"].T + w["student.head.bias"]
    gained = f_s * w["adapter.gain"][None, :, None, None]
    adapted = torch.einsum("oc,bchw->bohw", w["adapter.conv.weight"][:, :, 0, 0], gained)
    return logits, adapted + w["adapter.conv.bias"][None, :, None, None]


def oracle_teacher(teacher, x):
    return torch.tanh(F.conv2d(x, teacher.conv.weight, teacher.conv.bias, padding=1)).detach()


def oracle_loss(w, x, y, f_t, alpha=ALPHA):
    """Eq. (2) with Eq. (1) inside, read literally: (1 - a) CE + a (a MSE + 1 - cos)."""
    logits, a = oracle_forward(w, x)
    ce = -logits.log_softmax(1)[torch.arange(len(y)), y].mean()
    mse = ((a - f_t) ** 2).mean()
    s, t = a.flatten(1), f_t.flatten(1)
    cos = ((s * t).sum(1) / (s.norm(dim=1) * t.norm(dim=1))).mean()
    return (1 - alpha) * ce + alpha * (alpha * mse + 1 - cos)


def oracle_query_loss(w, x, y, f_t, steps=INNER_STEPS, inner_lr=INNER_LR):
    """Eq. (3) `steps` times on the first half of the batch, then L on the second half at theta'."""
    half = len(x) // 2
    fast = dict(w)
    for _ in range(steps):
        loss = oracle_loss(fast, x[:half], y[:half], f_t[:half])
        grads = torch.autograd.grad(loss, list(fast.values()), create_graph=True)
        fast = {name: p - inner_lr * g for (name, p), g in zip(fast.items(), grads)}
    return oracle_loss(fast, x[half:], y[half:], f_t[half:])


def oracle_training(w, teacher, batches):
    """Per batch: the ordinary step on Eq. (2) (SGD, momentum, weight decay), then Eq. (4) by plain SGD."""
    w = {name: p.detach().clone().requires_grad_() for name, p in w.items()}
    velocity = {}
    for x, y in batches:
        f_t = oracle_teacher(teacher, x)
        grads = torch.autograd.grad(oracle_loss(w, x, y, f_t), list(w.values()))
        for (name, p), g in zip(list(w.items()), grads):
            d = g + WEIGHT_DECAY * p.detach()
            velocity[name] = d if name not in velocity else MOMENTUM * velocity[name] + d
            w[name] = (p.detach() - LR * velocity[name]).requires_grad_()
        grads = torch.autograd.grad(oracle_query_loss(w, x, y, f_t), list(w.values()))
        w = {name: (p.detach() - META_LR * g).requires_grad_() for (name, p), g in zip(w.items(), grads)}
    return w


# ------------------------------------------------------------------------- the checks

def method_meta_gradient(engine):
    method, data = tiny_method(engine), tiny_data()
    model = attach_adapter(method.student, method.teacher, data.x_train[:2], student_layer=0, teacher_layer=0)
    x, y = data.x_train[:8], data.y_train[:8]
    f_t = fm.teacher_features(method.teacher, x, 0)
    support, query = fm.split_support_query(x, y, f_t)
    out = fm.adaptation_loss(model, support, query, fm.objective(ALPHA), inner_steps=INNER_STEPS,
                             inner_lr=INNER_LR, engine=engine)
    params = list(model.parameters())
    grads = torch.autograd.grad(out["loss"], params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    return model, method.teacher, (x, y), grads


def check_meta_gradient_matches_oracle(engine):
    model, teacher, (x, y), grads = method_meta_gradient(engine)
    w = dict(model.named_parameters())
    expected = torch.autograd.grad(oracle_query_loss(w, x, y, oracle_teacher(teacher, x)), list(w.values()))
    assert gradcheck.relative_error(grads, expected) < 1e-10


def check_meta_gradient_matches_finite_differences(engine):
    model, teacher, (x, y), grads = method_meta_gradient(engine)
    w = dict(model.named_parameters())
    f_t = oracle_teacher(teacher, x)

    def objective():
        with torch.enable_grad():  # the inner step of the oracle needs a gradient; differences do not
            return oracle_query_loss(w, x, y, f_t).detach()

    assert gradcheck.relative_error(grads, gradcheck.finite_differences(objective, list(w.values()))) < 1e-6


def check_training_matches_oracle(engine):
    """Two steps of `fit` (batch 8 of 16), each an ordinary step and an adaptation phase, against the oracle."""
    method, data, seen, initial = tiny_method(engine), tiny_data(), [], {}
    original_step = method.step

    def step(batch, run):  # record the batches and the weights before the first step
        initial.update(initial or {name: p.detach().clone() for name, p in method.model.named_parameters()})
        seen.append((batch.x, batch.y))
        return original_step(batch, run)

    method.step = step
    fit(method, data, epochs=1, lr=LR, batch_size=8, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY,
        schedule="constant", progress=False)
    expected = oracle_training(initial, method.teacher, seen)
    assert len(seen) == 2 and method.passes == 2 * (1 + (INNER_STEPS + 1) / 2)
    assert gradcheck.relative_error(list(method.model.parameters()), list(expected.values())) < 1e-10


def check_teacher_stays_frozen():
    # the ordinary step alone, then with the phase; the maps looked up in the table, then asked for per batch
    for adaptation, augment in itertools.product((False, True), (None, lambda x, generator: x)):
        method, data = tiny_method(adaptation=adaptation), tiny_data()
        before = [p.detach().clone() for p in method.teacher.parameters()]
        fit(method, data, epochs=1, lr=LR, batch_size=8, progress=False, augment=augment)
        assert all(p.grad is None for p in method.teacher.parameters()), "the teacher's features must be detached"
        assert all(torch.equal(a, b) for a, b in zip(before, method.teacher.parameters()))
        assert not method.teacher.training


def check_training_follows_the_alpha_schedule():
    method, data = tiny_method(alpha=0.9, alpha_schedule="linear", alpha_end=0.1, adaptation=False), tiny_data()
    history = fit(method, data, epochs=3, lr=LR, batch_size=8, progress=False)
    assert history.series("alpha") == pytest.approx([0.9, 0.5, 0.1])
    for record, alpha in zip(history.records, (0.9, 0.5, 0.1)):  # the loss used that alpha, too
        assert record["loss"] == pytest.approx((1 - alpha) * record["ce"] + alpha * record["feat"], rel=1e-12)
        assert record["feat"] == pytest.approx(alpha * record["mse"] + record["cos"], rel=1e-12)
    assert history.series("passes") == [2, 4, 6]


@pytest.mark.parametrize("engine", ["higher", "func"])
def test_meta_gradient_matches_the_oracle(engine):
    check_meta_gradient_matches_oracle(engine)


@pytest.mark.parametrize("engine", ["higher", "func"])
def test_meta_gradient_matches_finite_differences_of_the_oracle(engine):
    check_meta_gradient_matches_finite_differences(engine)


@pytest.mark.parametrize("engine", ["higher", "func"])
def test_training_steps_match_the_oracle(engine):
    check_training_matches_oracle(engine)


def test_the_teacher_stays_frozen():
    check_teacher_stays_frozen()


def test_training_follows_the_alpha_schedule():
    check_training_follows_the_alpha_schedule()


def test_the_second_order_term_is_not_negligible_here():
    """First order must differ from second order in this setting, or the oracle could not tell them apart."""
    model, teacher, (x, y), second = method_meta_gradient("func")
    out = fm.adaptation_loss(model, *fm.split_support_query(x, y, fm.teacher_features(teacher, x, 0)),
                             fm.objective(ALPHA), inner_steps=INNER_STEPS, inner_lr=INNER_LR, first_order=True,
                             engine="func")
    first = torch.autograd.grad(out["loss"], list(model.parameters()))
    assert gradcheck.relative_error(first, second) > 1e-3


# ------------------------------------------------------------------------- planted bugs

def _first_order(engine):
    original = fm.adapt

    def adapt(*args, **kwargs):
        return original(*args, **{**kwargs, "first_order": kwargs["first_order"] or kwargs["engine"] == engine})

    return patch.object(fm, "adapt", adapt)


def _ascending_inner_step():
    original = fm.adapt
    return patch.object(fm, "adapt", lambda model, support, step_loss, **k: original(
        model, support, lambda *a: -step_loss(*a), **k))


def _copy_initial_weights():
    higher = import_higher()
    original = higher.innerloop_ctx
    return patch.object(higher, "innerloop_ctx", lambda *a, **k: original(*a, **{**k, "copy_initial_weights": True}))


def _attached_teacher(teacher, x, layer):
    teacher.eval()
    return teacher(x, return_features=True)[1][layer]


@contextlib.contextmanager
def _attached_teacher_everywhere():
    """The teacher's maps with their graph: from `teacher_features` and from the table's per-batch path."""
    with patch.object(fm, "teacher_features", _attached_teacher), \
            patch.object(FrozenLogits, "__call__", FrozenLogits.__call__.__wrapped__):
        yield


def _query_on_support(*tensors):
    half = len(tensors[0]) // 2
    support = tuple(t[:half] for t in tensors)
    return support, support


def _alpha_on_ce(logits, labels, student_feat, teacher_feat, alpha, *, alpha_squared=True):
    out = fm.hybrid_feature_loss(student_feat, teacher_feat, alpha if alpha_squared else 1.0)
    ce = F.cross_entropy(logits, labels)
    return {"loss": alpha * ce + (1 - alpha) * out["loss"], "ce": ce, "feat": out["loss"], "mse": out["mse"],
            "cos": out["cos"]}


def _meta_step_without_update(self, x, y, f_t, run):
    support, query = fm.split_support_query(x, y, f_t)
    out = fm.adaptation_loss(self.model, support, query, self.loss_fn, **self.inner)
    return {name: value.detach() for name, value in out.items()}  # ... and no descend(out, meta_optimizer)


def _meta_step_through_student_optimizer(self, x, y, f_t, run):
    support, query = fm.split_support_query(x, y, f_t)
    out = fm.adaptation_loss(self.model, support, query, self.loss_fn, **self.inner)
    return self.descend(out, self.optimizer, run)


def _reversed_schedule(epochs, **kwargs):
    return list(reversed(_alpha_schedule(epochs, **kwargs)))


MUTANTS = {
    "inner step first order (engine higher)": (lambda: _first_order("higher"),
                                               functools.partial(check_meta_gradient_matches_oracle, "higher")),
    "inner step first order (engine func)": (lambda: _first_order("func"),
                                             functools.partial(check_meta_gradient_matches_oracle, "func")),
    "inner step ascends (sign of Eq. 3 flipped)": (_ascending_inner_step,
                                                   functools.partial(check_meta_gradient_matches_oracle, "func")),
    "higher's copy_initial_weights=True (issue #69)": (_copy_initial_weights,
                                                       functools.partial(check_training_matches_oracle, "higher")),
    "cosine term dropped from Eq. 1": (lambda: patch.object(fm, "cosine_term", lambda s, t: s.sum() * 0),
                                       functools.partial(check_training_matches_oracle, "func")),
    "MSE term dropped from Eq. 1": (lambda: patch.object(fm, "mse_term", lambda s, t: s.sum() * 0),
                                    functools.partial(check_training_matches_oracle, "func")),
    "cosine sign flipped (1 + cos)": (lambda: patch.object(fm, "cosine_term", lambda s, t: 2 - _cos_term(s, t)),
                                      functools.partial(check_training_matches_oracle, "func")),
    "ALPHA on the CE term (Eq. 2 swapped)": (lambda: patch.object(fm, "feature_distillation_loss", _alpha_on_ce),
                                             functools.partial(check_training_matches_oracle, "func")),
    "teacher features not detached": (_attached_teacher_everywhere, check_teacher_stays_frozen),
    "query loss on the support half": (lambda: patch.object(fm, "split_support_query", _query_on_support),
                                       functools.partial(check_training_matches_oracle, "higher")),
    "meta optimizer step (Eq. 4) skipped": (lambda: patch.object(FeatureMeta, "meta_step", _meta_step_without_update),
                                            functools.partial(check_training_matches_oracle, "higher")),
    "meta step through the student's optimizer (its momentum state)": (
        lambda: patch.object(FeatureMeta, "meta_step", _meta_step_through_student_optimizer),
        functools.partial(check_training_matches_oracle, "higher")),
    "alpha schedule reversed": (lambda: patch.object(fm, "alpha_schedule", _reversed_schedule),
                                check_training_follows_the_alpha_schedule),
}
_cos_term, _alpha_schedule = fm.cosine_term, fm.alpha_schedule


@pytest.mark.parametrize("name", MUTANTS)
def test_planted_bug_is_caught(name):
    mutant, check = MUTANTS[name]
    assert_caught(check, mutant)
