"""kdlab.methods.feature_meta: the hybrid feature loss against hand-computed values, the alpha-squared
switch, the alpha schedules (kdlab.alpha_schedule), spatial matching and the adapter (kdlab.models.adapter),
the adaptation phase run by `higher` (copy_initial_weights=False, a gradient reaches the initial weights,
equal to its torch.func twin), the baseline equivalence, mixed precision (kdlab.precision), and one test
per bad input. The independent oracle, finite differences and the planted bugs: test_feature_meta_oracle.py."""
import math
import re
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from kdlab.alpha_schedule import alpha_schedule
from kdlab.data import DataSplits
from kdlab.errors import ParameterError
from kdlab.methods import feature_meta as fm
from kdlab.methods.feature_meta import FeatureMeta
from kdlab.models import SmallCNN
from kdlab.models.adapter import attach_adapter, feature_shape, match_spatial, spatial_plan
from kdlab.precision import Precision
from kdlab.train import cross_entropy, fit

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import higher


# ----------------------------------------------------------------------------------------- helpers

def pair(dtype=torch.float64, seed=0, student_width=2, teacher_width=4):
    """A tiny SmallCNN teacher and a FeatureStudent (stage-2 maps, 4x4, 4 -> 8 channels)."""
    torch.manual_seed(seed)
    teacher = SmallCNN(width=teacher_width).to(dtype).eval()
    student = SmallCNN(width=student_width).to(dtype)
    x = torch.randn(2, 1, 8, 8, dtype=dtype)
    model = attach_adapter(student, teacher, x, student_layer=2, teacher_layer=2)
    return teacher, model.train()


def batch(teacher, n=8, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g, dtype=dtype)
    y = torch.arange(n) % 10
    return x, y, fm.teacher_features(teacher, x, 2)


def tiny_digits(n_train=64, n_test=32):
    """Random 8x8 'digits' with a learnable rule (the class is the brightest of 10 fixed regions)."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n_train + n_test, 1, 8, 8, generator=g)
    y = x.flatten(1)[:, :60].reshape(-1, 10, 6).sum(-1).argmax(-1)
    return DataSplits("toy", x[:n_train], y[:n_train], x[n_train:], y[n_train:], 10, (1, 8, 8))


class Probe(nn.Module):
    """A model with the kit's feature contract whose single feature has a chosen shape."""

    def __init__(self, shape):
        super().__init__()
        self.shape = shape
        self.linear = nn.Linear(64, 10)

    def forward(self, x, return_features=False):
        logits = self.linear(x.flatten(1))
        feature = torch.zeros(len(x), *self.shape)
        return (logits, [feature]) if return_features else logits


# ------------------------------------------------------------------------------ the hybrid loss (1)

def test_identical_features_give_zero_loss():
    f = torch.randn(5, 8, 4, 4, dtype=torch.float64)
    out = fm.hybrid_feature_loss(f, f.clone())
    assert float(out["mse"]) == 0.0
    assert abs(float(out["cos"])) < 1e-12
    assert abs(float(out["loss"])) < 1e-12


def test_orthogonal_features_give_a_cosine_term_of_exactly_one():
    s = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 0.0, 0.0]], dtype=torch.float64)
    t = torch.tensor([[0.0, 3.0, 0.0, 0.0], [0.0, 0.0, 0.0, 5.0]], dtype=torch.float64)
    out = fm.hybrid_feature_loss(s, t, mse_weight=0.5)
    assert float(out["cos"]) == 1.0
    assert float(out["mse"]) == (1 + 9 + 4 + 25) / 8
    assert float(out["loss"]) == 0.5 * (1 + 9 + 4 + 25) / 8 + 1.0


def test_hybrid_loss_by_hand():
    s = torch.tensor([[3.0, 4.0]], dtype=torch.float64)
    t = torch.tensor([[4.0, 3.0]], dtype=torch.float64)
    out = fm.hybrid_feature_loss(s, t, mse_weight=0.7)
    assert math.isclose(float(out["cos"]), 1 - 24 / 25, abs_tol=1e-15)  # cos = (12 + 12) / (5 * 5)
    assert math.isclose(float(out["mse"]), 1.0, abs_tol=1e-15)
    assert math.isclose(float(out["loss"]), 0.7 * 1.0 + 0.04, abs_tol=1e-15)


def test_cosine_is_per_sample_on_flattened_maps_then_averaged():
    s = torch.tensor([[[[1.0]], [[0.0]]], [[[1.0]], [[1.0]]]], dtype=torch.float64)  # (2, 2, 1, 1)
    t = torch.tensor([[[[1.0]], [[0.0]]], [[[1.0]], [[-1.0]]]], dtype=torch.float64)
    assert math.isclose(float(fm.cosine_term(s, t)), 1 - (1.0 + 0.0) / 2, abs_tol=1e-15)


@pytest.mark.parametrize("alpha_squared, mse_weight", [(True, 0.7), (False, 1.0)])
def test_total_loss_and_the_alpha_squared_switch(alpha_squared, mse_weight):
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(4, 10, generator=g, dtype=torch.float64), torch.tensor([1, 2, 3, 4])
    s = torch.randn(4, 3, 2, 2, generator=g, dtype=torch.float64)
    t = torch.randn(4, 3, 2, 2, generator=g, dtype=torch.float64)
    out = fm.feature_distillation_loss(logits, labels, s, t, 0.7, alpha_squared=alpha_squared)
    ce = F.cross_entropy(logits, labels)
    mse = ((s - t) ** 2).mean()
    cos = 1 - F.cosine_similarity(s.flatten(1), t.flatten(1)).mean()
    expected = 0.3 * ce + 0.7 * (mse_weight * mse + cos)
    assert torch.allclose(out["loss"], expected, atol=1e-14, rtol=0)
    assert torch.allclose(out["ce"], ce) and torch.allclose(out["mse"], mse) and torch.allclose(out["cos"], cos)


def test_alpha_zero_is_plain_cross_entropy():
    teacher, model = pair()
    x, y, _ = batch(teacher)
    out = fm.objective(0.0)(model(x, return_features=True), y, None)
    assert set(out) == {"loss"}
    assert torch.equal(out["loss"], F.cross_entropy(model.student(x), y))


def test_the_objective_reads_detached_teacher_features_and_trains_the_adapter():
    teacher, model = pair()
    x, y, _ = batch(teacher)
    f_t = fm.teacher_features(teacher, x, 2)
    assert not f_t.requires_grad
    out = fm.objective(0.7)(model(x, return_features=True), y, f_t)
    out["loss"].backward()
    assert all(p.grad is None for p in teacher.parameters())
    assert model.adapter.conv.weight.grad.abs().sum() > 0 and model.adapter.gain.grad.abs().sum() > 0
    assert set(out) == {"loss", "ce", "feat", "mse", "cos"}


# ------------------------------------------------------------------------------ alpha schedules

def test_schedule_values():
    assert alpha_schedule(4, alpha=0.7) == [0.7] * 4
    assert alpha_schedule(5, alpha=0.9, schedule="linear", alpha_end=0.1) == pytest.approx([0.9, 0.7, 0.5, 0.3, 0.1])
    cosine = alpha_schedule(5, alpha=0.9, schedule="cosine", alpha_end=0.1)
    assert cosine[0] == pytest.approx(0.9) and cosine[2] == pytest.approx(0.5) and cosine[-1] == pytest.approx(0.1)
    assert cosine[1] == pytest.approx(0.1 + 0.8 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert alpha_schedule(5, alpha=0.9, schedule="step", alpha_end=0.2) == [0.9, 0.9, 0.9, 0.2, 0.2]
    assert alpha_schedule(4, alpha=0.9, schedule="step", alpha_end=0.2) == [0.9, 0.9, 0.2, 0.2]
    assert alpha_schedule(1, alpha=0.6, schedule="linear", alpha_end=0.0) == [0.6]
    assert alpha_schedule(3, alpha=0.5, schedule=lambda e, n: 0.1 * e) == pytest.approx([0.0, 0.1, 0.2])


# ------------------------------------------------------------------------------ spatial sizes

def test_spatial_matching_pools_upsamples_or_keeps():
    s = torch.arange(16.0).reshape(1, 1, 4, 4)
    pooled = match_spatial(s, (1, 2, 2))
    assert torch.equal(pooled, F.avg_pool2d(s, 2))
    up = match_spatial(s, (1, 8, 8))
    assert up.shape == (1, 1, 8, 8) and torch.equal(up[:, :, ::2, ::2], s)
    assert match_spatial(s, (7, 4, 4)) is s
    assert spatial_plan((8,), (64,)) == "same"


def test_adapter_maps_student_channels_to_teacher_channels():
    teacher, model = pair()
    x, y, f_t = batch(teacher)
    logits, adapted = model(x, return_features=True)
    assert adapted.shape == f_t.shape == (8, 8, 4, 4) and logits.shape == (8, 10)
    assert torch.equal(model(x), model.student(x))


# ------------------------------------------------------------------------------ the adaptation phase

def test_adaptation_phase_uses_higher_with_copy_initial_weights_false(monkeypatch):
    seen = []
    original = higher.innerloop_ctx

    def spy(*args, **kwargs):
        seen.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(higher, "innerloop_ctx", spy)
    teacher, model = pair()
    x, y, f_t = batch(teacher)
    support, query = fm.split_support_query(x, y, f_t)
    fm.adaptation_loss(model, support, query, fm.objective(0.7), inner_steps=1, inner_lr=0.1)
    assert len(seen) == 1 and seen[0]["copy_initial_weights"] is False


def test_a_gradient_reaches_the_initial_weights_and_the_phase_changes_them():
    teacher, model = pair()
    x, y, f_t = batch(teacher)
    support, query = fm.split_support_query(x, y, f_t)
    out = fm.adaptation_loss(model, support, query, fm.objective(0.7), inner_steps=2, inner_lr=0.1)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    opt.zero_grad()
    out["loss"].backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is not None for g in grads.values())
    assert grads["student.stem.0.weight"].abs().sum() > 0 and grads["adapter.conv.weight"].abs().sum() > 0
    opt.step()
    for name, p in model.named_parameters():
        assert torch.allclose(p.detach(), before[name] - 0.5 * grads[name])
    assert not torch.equal(model.student.stem[0].weight.detach(), before["student.stem.0.weight"])


def test_the_trap_copy_initial_weights_true_gives_no_gradient():
    """What the kit avoids: higher's default copies the initial weights off the tape."""
    teacher, model = pair()
    x, y, f_t = batch(teacher)
    with higher.innerloop_ctx(model, torch.optim.SGD(model.parameters(), lr=0.1)) as (fmodel, diffopt):
        diffopt.step(fm.objective(0.7)(fmodel(x[:4], return_features=True), y[:4], f_t[:4])["loss"])
        fm.objective(0.7)(fmodel(x[4:], return_features=True), y[4:], f_t[4:])["loss"].backward()
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("first_order", [False, True])
def test_higher_and_torch_func_agree(first_order):
    teacher, model = pair()
    x, y, f_t = batch(teacher)
    support, query = fm.split_support_query(x, y, f_t)
    results = {}
    for engine in ("higher", "func"):
        out = fm.adaptation_loss(model, support, query, fm.objective(0.7), inner_steps=2, inner_lr=0.1,
                                 first_order=first_order, engine=engine)
        grads = torch.autograd.grad(out["loss"], list(model.parameters()))
        results[engine] = (out["loss"].detach(), out["support_loss"], grads)
    (lh, sh, gh), (lf, sf, gf) = results["higher"], results["func"]
    assert abs(float(lh - lf)) < 1e-12 and abs(float(sh - sf)) < 1e-12
    for a, b in zip(gh, gf):
        assert float((a - b).abs().max()) < 1e-10


def test_the_phase_leaves_running_statistics_alone():
    teacher, model = pair()
    x, y, f_t = batch(teacher)
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    support, query = fm.split_support_query(x, y, f_t)
    for engine in ("higher", "func"):
        fm.adaptation_loss(model, support, query, fm.objective(0.7), engine=engine)["loss"].backward()
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())


def test_adaptation_changes_training_and_zero_alpha_baseline_equals_fit():
    data = tiny_digits()
    torch.manual_seed(0)
    teacher = SmallCNN(width=4)
    recipe = dict(epochs=2, lr=0.05, batch_size=16, seed=3)
    torch.manual_seed(7)
    reference = SmallCNN(width=2)
    fit(reference, data, cross_entropy, progress=False, **recipe)
    runs = {}
    for adaptation in (False, True):
        torch.manual_seed(7)
        method = FeatureMeta(SmallCNN(width=2), teacher, alpha=0.0, adaptation=adaptation)
        history = fit(method, data, progress=False, **recipe)
        runs[adaptation] = (method.student, history)
        assert history.adapter is method.model.adapter and method.model.student is method.student
    base = runs[False][0].state_dict()
    assert all(torch.equal(v, reference.state_dict()[k]) for k, v in base.items())
    adapted = runs[True][0].state_dict()
    assert not torch.equal(adapted["stem.0.weight"], base["stem.0.weight"])
    assert "meta_loss" in runs[True][1].last and runs[True][1].last["passes"] > runs[False][1].last["passes"]


# ------------------------------------------------------------------------------ the paper's pair

def test_torchvision_wrappers_expose_layer3_and_the_stride_16_map():
    from torchvision import models

    from kdlab.models.torchvision_features import MobileNetV2Features, ResNetFeatures

    teacher = ResNetFeatures(models.resnet18(weights=None, num_classes=10))  # ResNet-101's layout, smaller
    student = MobileNetV2Features(models.mobilenet_v2(weights=None, num_classes=10))
    x = torch.randn(2, 3, 84, 84)
    assert feature_shape(teacher, x, 2) == (256, 6, 6)  # ResNet-101: (1024, 6, 6)
    assert feature_shape(student, x, 2) == (96, 6, 6)
    model = attach_adapter(student, teacher, x, student_layer=2, teacher_layer=2)
    assert model.adapter.conv.in_channels == 96 and model.adapter.conv.out_channels == 256
    with pytest.raises(ParameterError, match="student_layer"):  # 11x11 against 6x6
        attach_adapter(student, teacher, x, student_layer=1, teacher_layer=2)


# ------------------------------------------------------------------------------ mixed precision

def test_mixed_precision_is_a_no_op_on_the_cpu():
    precision = Precision("cpu", amp=True)
    assert precision.enabled is False and precision.scaler is None
    with precision.autocast():
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")
def test_mixed_precision_on_cuda_trains():
    data = tiny_digits().to("cuda")
    torch.manual_seed(0)
    teacher = SmallCNN(width=4).cuda()
    assert Precision("cuda").enabled
    history = fit(FeatureMeta(SmallCNN(width=2).cuda(), teacher), data, epochs=1, batch_size=16, progress=False)
    assert math.isfinite(history.last["loss"]) and math.isfinite(history.last["meta_loss"])


# ------------------------------------------------------------------------------ bad inputs

@pytest.mark.parametrize("alpha", [-0.1, 1.5, float("nan"), True, "0.5"])
def test_alpha_outside_zero_one_is_refused(alpha):
    s = torch.zeros(2, 3)
    with pytest.raises(ParameterError, match=r"ALPHA=.* is not allowed: ALPHA must be a number in \[0, 1\]"):
        fm.feature_distillation_loss(torch.zeros(2, 10), torch.zeros(2, dtype=torch.long), s, s, alpha)
    with pytest.raises(ParameterError, match="ALPHA"):
        alpha_schedule(3, alpha=alpha)


def test_alpha_outside_zero_one_is_refused_by_training_before_it_starts():
    data = tiny_digits()
    student = SmallCNN(width=2)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    with pytest.raises(ParameterError, match="ALPHA=1.2"):
        fit(FeatureMeta(student, SmallCNN(width=4), alpha=1.2), data, epochs=1)
    assert all(torch.equal(v, before[k]) for k, v in student.state_dict().items())


def test_alpha_end_outside_zero_one_is_refused():
    with pytest.raises(ParameterError, match=r"ALPHA_END=-0.5 is not allowed: ALPHA_END must be a number in \[0, 1\]"):
        alpha_schedule(3, alpha=0.7, schedule="linear", alpha_end=-0.5)


def test_a_schedule_that_leaves_zero_one_is_refused():
    with pytest.raises(ParameterError, match=r"SCHEDULE=.*1\.2.* at epoch 3.*stay in \[0, 1\]"):
        alpha_schedule(4, alpha=0.7, schedule=lambda e, n: 0.6 * e)


def test_an_unknown_schedule_or_a_missing_alpha_end_is_refused():
    with pytest.raises(ParameterError, match="SCHEDULE='exponential'"):
        alpha_schedule(3, alpha=0.7, schedule="exponential", alpha_end=0.1)
    with pytest.raises(ParameterError, match="ALPHA_END=None"):
        alpha_schedule(3, alpha=0.7, schedule="cosine")


@pytest.mark.parametrize("student_shape, teacher_shape", [((8, 6, 6), (16, 4, 4)), ((8, 2, 2), (16, 3, 3)),
                                                          ((8, 4, 8), (16, 8, 4)), ((8,), (16, 4, 4))])
def test_feature_maps_that_cannot_be_matched_are_refused(student_shape, teacher_shape):
    with pytest.raises(ParameterError, match="feature"):
        spatial_plan(student_shape, teacher_shape)


def test_training_refuses_unmatchable_layers_before_it_starts():
    data = tiny_digits()
    with pytest.raises(ParameterError, match=r"student_layer=.*\(1, 3, 3\).*\(1, 2, 2\)"):
        fit(FeatureMeta(Probe((1, 3, 3)), Probe((1, 2, 2)), student_layer=0, teacher_layer=0), data, epochs=1)
    with pytest.raises(ParameterError, match="student_layer"):
        fit(FeatureMeta(SmallCNN(width=2), SmallCNN(width=4), student_layer=-1, teacher_layer=2), data, epochs=1)
    with pytest.raises(ParameterError, match=r"teacher_layer=7 is not allowed: teacher_layer must be an index into"):
        fit(FeatureMeta(SmallCNN(width=2), SmallCNN(width=4), teacher_layer=7), data, epochs=1)


@pytest.mark.parametrize("kwargs, message", [
    (dict(engine="jax"), "engine='jax'"), (dict(alpha_squared=1), "ALPHA_SQUARED=1"),
    (dict(meta_every=0), "META_EVERY=0"), (dict(inner_steps=1.5), "INNER_STEPS=1.5"),
    (dict(inner_lr=0.0), "INNER_LR=0.0"), (dict(meta_lr=-1.0), "META_LR=-1.0"),
    (dict(alpha_schedule="exponential", alpha_end=0.1), "SCHEDULE='exponential'"),
    (dict(alpha_schedule="linear"), "ALPHA_END=None"), (dict(alpha_end=2.0, alpha_schedule="step"), "ALPHA_END=2.0")])
def test_the_method_refuses_bad_settings_when_it_is_built(kwargs, message):
    with pytest.raises(ParameterError, match=re.escape(message)):
        FeatureMeta(SmallCNN(width=2), SmallCNN(width=4), **kwargs)


def test_bad_engine_and_inner_steps_are_refused():
    teacher, model = pair()
    x, y, f_t = batch(teacher)
    support, query = fm.split_support_query(x, y, f_t)
    with pytest.raises(ParameterError, match="engine='jax'"):
        fm.adaptation_loss(model, support, query, fm.objective(0.7), engine="jax")
    with pytest.raises(ParameterError, match="INNER_STEPS=-1"):
        fm.adaptation_loss(model, support, query, fm.objective(0.7), inner_steps=-1)


def test_epochs_to_reach_and_its_censoring():
    import numpy as np

    from kdlab.lessons.feature_meta import epochs_to_reach, first_epoch_reaching

    assert first_epoch_reaching([50.0, 89.9, 90.0, 95.0], 90.0) == 3
    assert math.isnan(first_epoch_reaching([50.0, 60.0], 90.0))
    values, censored = epochs_to_reach(np.array([[50.0, 91.0, 92.0], [10.0, 20.0, 30.0]]), 90.0)
    assert values == [2, 4] and censored == 1
