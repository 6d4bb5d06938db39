import pytest
import torch
import torch.nn.functional as F

from kdlab import losses


def _logits(seed, batch=6, classes=5, scale=2.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(batch, classes, generator=g, dtype=torch.float64)


def test_kd_loss_equals_tau_squared_kl_computed_by_hand():
    zs, zt, tau = _logits(0), _logits(1), 3.0
    p_t = torch.softmax(zt / tau, 1)
    p_s = torch.softmax(zs / tau, 1)
    by_hand = tau**2 * (p_t * (p_t.log() - p_s.log())).sum(1).mean()
    assert torch.allclose(losses.kd_loss(zs, zt, tau), by_hand, rtol=1e-12)


@pytest.mark.filterwarnings("ignore:reduction")
def test_kd_loss_is_not_divided_by_the_number_of_classes():
    zs, zt = _logits(0), _logits(1)
    wrong = F.kl_div(F.log_softmax(zs, 1), F.softmax(zt, 1), reduction="mean")  # the classic bug
    assert torch.allclose(losses.kd_loss(zs, zt, 1.0), wrong * zs.shape[1])


def test_kd_loss_is_zero_iff_distributions_match():
    z = _logits(2)
    assert losses.kd_loss(z, z, 4.0).abs() < 1e-12
    assert losses.kd_loss(z + 5.0, z, 4.0).abs() < 1e-12  # softmax is shift invariant
    assert losses.kd_loss(_logits(3), z, 4.0) > 0


@pytest.mark.parametrize("tau", [1.0, 4.0, 20.0])
def test_closed_form_gradient_matches_autograd(tau):
    zs = _logits(4).requires_grad_()
    zt = _logits(5)
    (grad,) = torch.autograd.grad(losses.kd_loss(zs, zt, tau), zs)
    expected = losses.kd_logit_gradient(zs.detach(), zt, tau) / zs.shape[0]  # batchmean
    assert torch.allclose(grad, expected, atol=1e-12)


def test_kd_gradient_matches_finite_differences():
    zs, zt, tau, eps = _logits(6), _logits(7), 2.0, 1e-6
    analytic = losses.kd_logit_gradient(zs, zt, tau) / zs.shape[0]
    numeric = torch.zeros_like(zs)
    for i in range(zs.shape[0]):
        for j in range(zs.shape[1]):
            bump = torch.zeros_like(zs)
            bump[i, j] = eps
            numeric[i, j] = (losses.kd_loss(zs + bump, zt, tau) - losses.kd_loss(zs - bump, zt, tau)) / (2 * eps)
    assert torch.allclose(analytic, numeric, atol=1e-8)


def test_high_temperature_limit_is_logit_matching():
    zs, zt = _logits(8, scale=1.0), _logits(9, scale=1.0)
    target = losses.logit_matching_loss(zs, zt)
    gaps = [abs(float(losses.kd_loss(zs, zt, tau) - target)) for tau in (5.0, 50.0, 500.0)]
    assert gaps[0] > gaps[1] > gaps[2]
    assert gaps[2] / float(target) < 1e-3


def test_distillation_loss_weights_ce_and_kd():
    zs, zt = _logits(10), _logits(11)
    y = torch.arange(6) % 5
    out = losses.distillation_loss(zs, zt, y, alpha=0.25, temperature=2.0)
    assert torch.allclose(out["loss"], 0.75 * F.cross_entropy(zs, y) + 0.25 * losses.kd_loss(zs, zt, 2.0))
    only_ce = losses.distillation_loss(zs, zt, y, alpha=0.0)
    assert torch.allclose(only_ce["loss"], F.cross_entropy(zs, y))


def test_soft_targets_get_softer_with_temperature():
    z = _logits(12)
    entropies = [losses.entropy(losses.soft_targets(z, t)).mean() for t in (0.5, 1, 4, 20)]
    assert all(a < b for a, b in zip(entropies, entropies[1:]))
    assert entropies[-1] < torch.log(torch.tensor(5.0, dtype=torch.float64))
