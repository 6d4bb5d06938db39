"""kdlab.methods.ctkd against oracles written from the paper and the official script, not from the kit: the KD loss
and its temperature derivative by hand (checked against finite differences), one min-max step (the student
descends, the temperature ascends by lambda), the direction of each player's update, the curriculum lambda(epoch),
the instance-wise module, the range, and planted bugs that the checks must catch."""
import math
from unittest.mock import patch

import pytest
import torch
import torch.nn.functional as F

from kdlab.data import load
from kdlab.errors import ParameterError
from kdlab.gradcheck import finite_differences, relative_error
from kdlab.losses import kd_loss
from kdlab.methods import base, ctkd
from kdlab.models import MLP
from kdlab.train import fit
from tests.mutation import assert_caught

LO, HI, LR = 1.0, 21.0, 0.1


# ----------------------------------------------------------------------------------------- oracles

def spec_lambda(epoch_from_1, curriculum_epochs):
    """The official script's CosineDecay(max 0, min -1, loops E) at 1-based epoch e, sign reversed."""
    e = min(epoch_from_1, curriculum_epochs)
    return -(((math.cos(e * math.pi / curriculum_epochs) + 1.0) * 0.5) * (0 - (-1)) + (-1))


def hand_kd_rows(s, t, tau):
    """tau_i^2 KL(softmax(t_i / tau_i) || softmax(s_i / tau_i)) per sample; tau a number or one per sample."""
    tau = torch.as_tensor(tau, dtype=s.dtype).reshape(-1, 1)
    log_p_s = s / tau - torch.log(torch.exp(s / tau).sum(1, keepdim=True))
    p_t = torch.exp(t / tau) / torch.exp(t / tau).sum(1, keepdim=True)
    return (p_t * (p_t.log() - log_p_s)).sum(1) * tau[:, 0] ** 2


def hand_loss(s, t, y, alpha, tau):
    ce = -(s - torch.log(torch.exp(s).sum(1, keepdim=True)))[torch.arange(len(y)), y].mean()
    return (1 - alpha) * ce + alpha * hand_kd_rows(s, t, tau).mean()


def d_kd_d_tau(s, t, tau):
    """d/dtau of tau^2 KL(p_t || p_s), per sample, by hand: 2 tau KL - sum p_t (t - E_pt t)(log p_t - log p_s)
    + sum p_t (s - E_ps s); tau a number or one per sample."""
    tau = torch.as_tensor(tau, dtype=s.dtype).reshape(-1, 1)
    p_t, p_s = torch.softmax(t / tau, 1), torch.softmax(s / tau, 1)
    log_ratio = p_t.log() - p_s.log()
    t_dev = t - (p_t * t).sum(1, keepdim=True)
    s_dev = s - (p_s * s).sum(1, keepdim=True)
    return 2 * tau[:, 0] * (p_t * log_ratio).sum(1) - (p_t * t_dev * log_ratio).sum(1) + (p_t * s_dev).sum(1)


def models(seed=0):
    torch.manual_seed(seed)
    student, teacher = MLP(6, (5,), 4).double(), MLP(6, (7,), 4).double()
    x = 2 * torch.randn(9, 6, dtype=torch.float64)
    return student, teacher, x, torch.randint(0, 4, (9,))


def one_step(method, x, y, epoch):
    method.configure(base.Recipe(lr=LR, momentum=0.0, weight_decay=0.0), None)
    run = base.Run(seed=0, epochs=epoch + 1, batch_size=len(y), recipe=None, generator=None, epoch=epoch)
    return method.step(base.Batch(x, y, torch.arange(len(y))), run)


# ----------------------------------------------------------------------------------------- checks

def check_step_is_the_min_max_step(epoch=1, curriculum=4, alpha=0.7):
    """One step (plain SGD): the student descends (1 - a) CE + a tau^2 KL; theta moves UP the same loss by
    lr * lambda(epoch + 1) * dL/dtheta, with dL/dtheta = a mean(d tau^2 KL / d tau) (hi - lo) sigma (1 - sigma)."""
    student, teacher, x, y = models()
    method = ctkd.CTKD(student, teacher, alpha=alpha, temperature_range=(LO, HI), initial_temperature=5.0,
                       curriculum_epochs=curriculum)
    theta = method.temperature_net.theta.item()
    sig = 1 / (1 + math.exp(-theta))
    tau = LO + (HI - LO) * sig
    names = [n for n, _ in student.named_parameters()]
    w = [p.detach().clone().requires_grad_() for p in student.parameters()]
    z = torch.func.functional_call(student, dict(zip(names, w)), (x,))
    with torch.no_grad():
        t = teacher(x)
    expected = [p - LR * g for p, g in zip(w, torch.autograd.grad(hand_loss(z, t, y, alpha, tau), w))]
    dl_dtheta = alpha * float(d_kd_d_tau(z.detach(), t, tau).mean()) * (HI - LO) * sig * (1 - sig)
    expected_theta = theta + LR * spec_lambda(epoch + 1, curriculum) * dl_dtheta
    losses = one_step(method, x, y, epoch)
    assert float(losses["temperature"]) == pytest.approx(tau, rel=1e-12)
    for got, want in zip(student.parameters(), expected):
        assert torch.allclose(got, want, rtol=0, atol=1e-12), "the student's step is not the KD descent"
    assert method.temperature_net.theta.item() == pytest.approx(expected_theta, rel=1e-10, abs=1e-12), \
        f"theta moved to {method.temperature_net.theta.item():.12g}, the min-max step gives {expected_theta:.12g}"


def check_temperature_ascends_and_student_descends():
    """With lambda = 1: the temperature's update increases the KD loss, the student's decreases it."""
    student, teacher, x, y = models(1)
    method = ctkd.CTKD(student, teacher, alpha=1.0, initial_temperature=3.0, curriculum_epochs=1)
    with torch.no_grad():
        s_old, t = student(x), teacher(x)
    tau_old = method.temperature_now()
    before = float(hand_kd_rows(s_old, t, tau_old).mean())
    one_step(method, x, y, epoch=0)
    tau_new = method.temperature_now()
    with torch.no_grad():
        s_new = student(x)
    assert tau_new != tau_old
    assert float(hand_kd_rows(s_old, t, tau_new).mean()) > before, \
        f"the temperature's step ({tau_old:.4f} -> {tau_new:.4f}) did not increase the KD loss"
    assert float(hand_kd_rows(s_new, t, tau_old).mean()) < before, "the student's step did not decrease the KD loss"


def check_curriculum_per_epoch(data, curriculum=3, epochs=5):
    torch.manual_seed(2)
    student, teacher = MLP(64, (8,), 10), MLP(64, (16,), 10)
    method = ctkd.CTKD(student, teacher, curriculum_epochs=curriculum)
    history = fit(method, data, epochs=epochs, batch_size=40, progress=False)
    expected = [spec_lambda(e, curriculum) for e in range(1, epochs + 1)]
    assert history.series("lambda") == pytest.approx(expected, rel=1e-12, abs=1e-15), "lambda(epoch) is not the code's"
    assert 0 < expected[0] < expected[1] < expected[curriculum - 1] == 1.0 == expected[-1]
    return history, method


def check_instance_module(epoch=0, curriculum=3, alpha=0.8):
    """Instance-wise: tau_i = lo + (hi - lo) sigma(MLP([t_i, s_i])) on detached logits; the student descends the
    loss with tau fixed, the MLP's weights ascend it by lambda."""
    student, teacher, x, y = models(3)
    method = ctkd.CTKD(student, teacher, alpha=alpha, temperature_module="instance", curriculum_epochs=curriculum)
    net = method.temperature_net.net
    v = [p.detach().clone().requires_grad_() for p in net.parameters()]
    w = [p.detach().clone().requires_grad_() for p in student.parameters()]
    z = torch.func.functional_call(student, dict(zip([n for n, _ in student.named_parameters()], w)), (x,))
    with torch.no_grad():
        t = teacher(x)
    theta = F.linear(torch.relu(F.linear(torch.cat([t, z.detach()], 1), v[0], v[1])), v[2], v[3]).squeeze(1)
    tau = LO + (HI - LO) * torch.sigmoid(theta)
    loss = hand_loss(z, t, y, alpha, tau)
    g_w, g_v = torch.autograd.grad(loss, w, retain_graph=True), torch.autograd.grad(loss, v)
    lam = spec_lambda(epoch + 1, curriculum)
    one_step(method, x, y, epoch)
    for got, p, g in zip(student.parameters(), w, g_w):
        assert torch.allclose(got, p - LR * g, rtol=0, atol=1e-12), "the student's step is not the KD descent"
    for got, p, g in zip(net.parameters(), v, g_v):
        assert torch.allclose(got, p + LR * lam * g, rtol=0, atol=1e-12), "the module did not ascend by lambda"


# ----------------------------------------------------------------------------------------- tests

def test_the_hand_derivative_in_tau_matches_finite_differences():
    student, teacher, x, y = models()
    with torch.no_grad():
        s, t = 5 * student(x), 5 * teacher(x)  # logits far enough apart for derivatives well above the noise
    taus = torch.linspace(1.5, 9.0, len(s), dtype=torch.float64)  # one per sample: row i depends on tau_i only
    numeric = finite_differences(lambda: hand_kd_rows(s, t, taus).sum(), [taus])
    assert relative_error([d_kd_d_tau(s, t, taus)], numeric) < 1e-7
    assert float(numeric[0].abs().min()) > 1e-3


def test_kd_with_one_temperature_is_the_kits_kd_and_per_sample_is_the_oracle():
    student, teacher, x, _ = models(4)
    s, t = student(x), teacher(x).detach()
    tau = torch.tensor(3.0, dtype=torch.float64)
    (g1,) = torch.autograd.grad(ctkd.kd_loss_with(s, t, tau), [s], retain_graph=True)
    (g2,) = torch.autograd.grad(kd_loss(s, t, 3.0), [s], retain_graph=True)
    assert float(ctkd.kd_loss_with(s, t, tau).detach()) == pytest.approx(float(kd_loss(s, t, 3.0).detach()), rel=1e-12)
    assert torch.allclose(g1, g2, rtol=1e-12, atol=1e-15)
    taus = torch.linspace(1.0, 21.0, len(s), dtype=torch.float64)
    expected = float(hand_kd_rows(s, t, taus).mean().detach())
    assert float(ctkd.kd_loss_with(s, t, taus).detach()) == pytest.approx(expected, rel=1e-12)


def test_kd_value_is_accurate_where_the_float32_textbook_cancels():
    """Nearly equal logits at high per-sample temperatures in float32: the value is the float64 oracle's."""
    g = torch.Generator().manual_seed(7)
    s = 3 * torch.randn(16, 10, generator=g)
    t = s + 1e-3 * torch.randn(16, 10, generator=g)
    taus = torch.linspace(15.0, 21.0, 16, requires_grad=True)
    value = ctkd.kd_loss_with(s, t, taus)
    expected = float(hand_kd_rows(s.double(), t.double(), taus.detach().double()).mean())
    textbook = float(hand_kd_rows(s, t, taus.detach()).mean())
    assert abs(textbook - expected) > 1e-2 * expected, "the float32 textbook value must be off in this check"
    assert float(value.detach()) == pytest.approx(expected, rel=1e-3)
    value.backward()
    assert torch.isfinite(taus.grad).all()


@pytest.mark.parametrize("epoch", [0, 1, 6])
def test_one_step_is_the_min_max_step(epoch):
    check_step_is_the_min_max_step(epoch)


def test_the_temperature_ascends_the_kd_loss_and_the_student_descends_it():
    check_temperature_ascends_and_student_descends()


@pytest.fixture(scope="module")
def digits():
    return load("digits", train_size=120, seed=0)


def test_curriculum_lambda_and_temperature_per_epoch(digits):
    history, method = check_curriculum_per_epoch(digits)
    temperatures = history.series("temperature")
    assert len(temperatures) == 5 and all(LO < tau < HI for tau in temperatures)
    assert len(set(temperatures)) == 5, "the temperature did not move"
    assert temperatures[0] == pytest.approx(1 + 20 / (1 + math.exp(-1)), rel=1e-2)  # the code's theta = 1: 15.6
    assert LO < method.temperature_now() < HI


def test_instance_module_steps_and_trains(digits):
    check_instance_module()
    torch.manual_seed(3)
    method = ctkd.CTKD(MLP(64, (8,), 10), MLP(64, (16,), 10), temperature_module="instance")
    history = fit(method, digits, epochs=2, batch_size=40, progress=False)
    assert all(LO < tau < HI for tau in history.series("temperature")) and method.temperature_now() is None


def test_the_temperature_never_leaves_its_range():
    for dtype in (torch.float32, torch.float64):
        low, high = (torch.tensor(v, dtype=dtype) for v in (0.5, 7.3))  # the ends as the dtype rounds them
        for theta in (-1e4, -50.0, 0.0, 50.0, 1e4):
            tau = ctkd.GlobalTemperature((0.5, 7.3), theta).to(dtype)(None, None, 1.0)
            assert low <= tau <= high and torch.isfinite(tau), (dtype, theta, float(tau))


@pytest.mark.parametrize("kwargs,name", [
    ({"temperature_range": (5.0, 5.0)}, "TEMPERATURE_RANGE"), ({"temperature_range": (20.0, 1.0)}, "TEMPERATURE_RANGE"),
    ({"temperature_range": (0.0, 4.0)}, "TEMPERATURE_RANGE"), ({"temperature_range": 4.0}, "TEMPERATURE_RANGE"),
    ({"curriculum_epochs": 0}, "CURRICULUM_EPOCHS"), ({"temperature_module": "mlp"}, "temperature_module"),
    ({"initial_temperature": 30.0}, "initial_temperature"), ({"initial_temperature": 1.0}, "initial_temperature"),
    ({"lambda_max": -1.0}, "lambda_max"), ({"alpha": 1.5}, "ALPHA")])
def test_bad_parameters_are_refused_by_name(kwargs, name):
    with pytest.raises(ParameterError, match=f"^{name}="):
        ctkd.CTKD(MLP(4, (3,), 3), MLP(4, (3,), 3), **kwargs)


# ----------------------------------------------------------------------------------------- planted bugs

_reverse = ctkd.reverse_gradient


def _instance_inputs_attached(self, teacher_logits, student_logits, lam):
    theta = self.net(torch.cat([teacher_logits, student_logits], 1)).squeeze(1)
    return ctkd.bounded(_reverse(theta, lam), *self.range)


MUTANTS = {
    "gradient reversal's sign flipped (the temperature descends)": (
        lambda: patch.object(ctkd, "reverse_gradient", lambda x, scale: _reverse(x, -scale)),
        check_temperature_ascends_and_student_descends),
    "lambda not applied (reversal by -1 at every epoch)": (
        lambda: patch.object(ctkd, "reverse_gradient", lambda x, scale: _reverse(x, 1.0)),
        check_step_is_the_min_max_step),
    "curriculum off by one (epochs counted from 0)": (
        lambda: patch.object(ctkd, "curriculum_lambda",
                             lambda e, n, m=1.0: m * (1 - math.cos(math.pi * min(e, n) / n)) / 2),
        lambda: check_curriculum_per_epoch(load("digits", train_size=120, seed=0))),
    "temperature left out of the optimiser": (
        lambda: patch.object(ctkd, "make_optimizer", lambda params, *a: base.make_optimizer(params[:4], *a)),
        check_step_is_the_min_max_step),
    "no T^2 factor with the learned temperature": (
        lambda: patch.object(ctkd, "kd_loss_with", lambda s, t, tau: _kd_with(s, t, tau) / tau.mean() ** 2),
        check_step_is_the_min_max_step),
    "instance module's inputs not detached": (
        lambda: patch.object(ctkd.InstanceTemperature, "forward", _instance_inputs_attached), check_instance_module),
}
_kd_with = ctkd.kd_loss_with


@pytest.mark.parametrize("name", MUTANTS)
def test_planted_ctkd_bug_is_caught(name):
    mutant, check = MUTANTS[name]
    assert_caught(check, mutant)
