import mpmath
import pytest
import torch
import torch.nn.functional as F

from kdlab import losses

TEMPERATURES = [1e-2, 0.1, 1.0, 4.0, 20.0, 1e2, 1e3, 1e4, 1e6, 1e9, 1e12]
TOLERANCE = {torch.float64: 1e-6, torch.float32: 1e-3}  # relative error the kit promises for the KD value
TINY = {torch.float64: 1e-300, torch.float32: 1e-37}  # below this a value may round to 0 (the floor of "relative")


def textbook_kd_loss(student_logits, teacher_logits, temperature):
    """The formula as Hinton et al. write it; its gradients are the ones kd_loss must keep, bit for bit."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=-1)
    return temperature**2 * F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True)


def _mp_log_softmax(z):
    """(z_i - max) - log1p(sum over the others of exp(z_j - max)): keeps tails far below the working precision."""
    top = max(range(len(z)), key=lambda i: z[i])
    tail = mpmath.log1p(mpmath.fsum(mpmath.exp(v - z[top]) for i, v in enumerate(z) if i != top))
    return [(v - z[top]) - tail for v in z]


def _mp_row_kd(student_row, teacher_row, temperature, digits):
    with mpmath.workdps(digits):
        tau = mpmath.mpf(temperature)
        log_p_s = _mp_log_softmax([mpmath.mpf(v) / tau for v in student_row])
        log_p_t = _mp_log_softmax([mpmath.mpf(v) / tau for v in teacher_row])
        return tau**2 * mpmath.fsum(mpmath.exp(lt) * (lt - ls) for ls, lt in zip(log_p_s, log_p_t))


def mpmath_kd_loss(student_logits, teacher_logits, temperature, digits=50):
    """T^2 KL(p_t || p_s), batchmean, of the exact float inputs in mpmath, to `digits` significant digits.

    The textbook sum cancels: the working precision starts 340 digits above `digits` (so that probabilities
    down to 1e-340, below every float, still count next to 1) and doubles until two precisions agree."""
    total = mpmath.mpf(0)
    student_rows = student_logits.double().reshape(-1, student_logits.shape[-1]).tolist()
    teacher_rows = teacher_logits.double().reshape(-1, teacher_logits.shape[-1]).tolist()
    for srow, trow in zip(student_rows, teacher_rows):
        with mpmath.workprec(2200):  # any two doubles' difference, exactly
            if len({mpmath.mpf(b) - mpmath.mpf(a) for a, b in zip(srow, trow)}) == 1:
                continue  # the teacher is the student plus a constant: KL = 0
        work, previous = digits + 340, None
        while True:
            value = _mp_row_kd(srow, trow, float(temperature), work)
            if previous is not None and value > 0 and abs(value - previous) <= mpmath.mpf(10) ** -digits * value:
                break
            if work >= 1500 and max(abs(value), abs(previous)) < mpmath.mpf(10) ** -1000:
                value = mpmath.mpf(0)  # far below every float: 0 is the float answer
                break
            previous, work = value, 2 * work
        total += value
    return total / student_logits.shape[0]


def relative_error(value, reference, dtype):
    return float(abs(mpmath.mpf(float(value)) - reference) / max(reference, mpmath.mpf(TINY[dtype])))


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


def _pair(seed, dtype, scale, batch=4, classes=10):
    g = torch.Generator().manual_seed(seed)
    zs, zt = (scale * torch.randn(2, batch, classes, generator=g, dtype=torch.float64)).to(dtype)
    return zs, zt


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("tau", TEMPERATURES)
def test_kd_value_matches_a_50_digit_reference_at_every_temperature(tau, dtype):
    for seed, scale in enumerate([1e-3, 1.0, 30.0, 1e3]):
        zs, zt = _pair(seed, dtype, scale)
        value = losses.kd_loss(zs, zt, tau)
        assert value.dtype == dtype and value >= 0
        assert relative_error(value, mpmath_kd_loss(zs, zt, tau), dtype) <= TOLERANCE[dtype], (tau, scale)


def test_the_textbook_value_was_wrong_where_the_exact_one_is_right():
    """The cases the exact value was written for: at T = 1e9 the textbook sum returned 83 for a true 0.61."""
    zs, zt = _pair(0, torch.float64, 1.0)
    reference = mpmath_kd_loss(zs, zt, 1e9)
    assert relative_error(textbook_kd_loss(zs, zt, 1e9), reference, torch.float64) > 1
    assert relative_error(losses.kd_loss(zs, zt, 1e9), reference, torch.float64) < 1e-12
    zs, zt = _pair(0, torch.float32, 1.0)
    assert relative_error(textbook_kd_loss(zs, zt, 1e4), mpmath_kd_loss(zs, zt, 1e4), torch.float32) > 1e-2


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_kd_value_is_never_negative_and_exactly_zero_for_a_shifted_copy(scale):
    for tau in TEMPERATURES:
        for dtype in (torch.float64, torch.float32):
            zs, zt = _pair(3, dtype, scale)
            near = zs + (1e-6 * scale * torch.randn(zs.shape, dtype=torch.float64)).to(dtype)
            for teacher in (zt, near, zs + 7.0):
                assert losses.kd_loss(zs, teacher, tau) >= 0
            reference = mpmath_kd_loss(zs, near, tau)
            assert relative_error(losses.kd_loss(zs, near, tau), reference, dtype) <= TOLERANCE[dtype]
            assert losses.kd_loss(zs, zs, tau) == 0
            dyadic = torch.round(zs * 2**10) / 2**10  # so that adding 0.5 is exact
            assert losses.kd_divergence_exact(dyadic, dyadic + 0.5, tau).eq(0).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("tau", [0.5, 4.0, 1e9])
def test_kd_gradients_of_first_and_second_order_are_the_textbook_ones_bit_for_bit(tau, dtype):
    """MetaDistil and MMKD differentiate through the KD loss, also twice: the exact value may not move them."""
    results = []
    for loss_fn in (textbook_kd_loss, losses.kd_loss):
        zs, zt = (z.clone().requires_grad_() for z in _pair(5, dtype, 3.0))
        loss = loss_fn(zs, zt, tau)
        grad_s, grad_t = torch.autograd.grad(loss, (zs, zt), create_graph=True)
        weights = torch.linspace(-1, 1, grad_s.numel(), dtype=dtype).view_as(grad_s)
        probe = (grad_s * weights).sum() + grad_t.pow(2).sum()
        results.append((grad_s, grad_t, *torch.autograd.grad(probe, (zs, zt))))
    for old, new in zip(*results):
        assert torch.equal(old, new)


def test_kd_gradient_with_respect_to_a_learned_temperature_is_the_textbook_one():
    results = []
    for loss_fn in (textbook_kd_loss, losses.kd_loss):
        tau = torch.tensor(3.0, dtype=torch.float64, requires_grad=True)
        zs, zt = _pair(6, torch.float64, 2.0)
        results.append(torch.autograd.grad(loss_fn(zs, zt, tau), tau)[0])
    assert torch.equal(*results)


def test_distillation_loss_reports_the_exact_kd_value():
    zs, zt = _pair(7, torch.float64, 1.0)
    y = torch.arange(4) % 10
    out = losses.distillation_loss(zs, zt, y, alpha=0.5, temperature=1e9)
    assert relative_error(out["kd"], mpmath_kd_loss(zs, zt, 1e9), torch.float64) < 1e-12


def test_exact_kd_broadcasts_one_student_against_several_teachers():
    """Per row and broadcast, as MMKD's per-teacher KD needs: (B, 1, C) against (B, K, C) gives (B, K)."""
    g = torch.Generator().manual_seed(8)
    zs = torch.randn(3, 1, 5, generator=g, dtype=torch.float64)
    zt = torch.randn(3, 4, 5, generator=g, dtype=torch.float64)
    rows = losses.kd_divergence_exact(zs, zt, 2.0)
    assert rows.shape == (3, 4)
    assert torch.allclose(rows[1, 2], losses.kd_loss(zs[1], zt[1, 2:3], 2.0), rtol=1e-14)
