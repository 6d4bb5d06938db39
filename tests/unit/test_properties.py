"""Properties of the losses and the small mathematics that must hold for every input, checked with Hypothesis.

Each property draws its own inputs (logits up to +-1e3, temperatures 1e-2 .. 1e12, feature batches, per-seed
values) and shrinks any failure to a smallest counterexample. The example counts are explicit and modest so
the file runs in well under a minute on one core; runs are derandomised, so CI sees the same examples every time.
"""
import fractions
import math

import numpy as np
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from kdlab import losses
from kdlab.losses_relational import rkd_loss
from kdlab.methods.feature_meta import cosine_term
from kdlab.stats import mean_ci, paired_difference
from tests.unit.test_losses import TINY, TOLERANCE, mpmath_kd_loss, relative_error

PROPERTY = settings(deadline=None, database=None, derandomize=True)

temperatures = st.one_of(st.sampled_from([1e-2, 1.0, 4.0, 1e12]), st.floats(-2, 12).map(lambda e: 10.0**e))


@st.composite
def logit_pairs(draw, bound=1e3, dtype=torch.float64):
    """(student, teacher) logits of one shape: independent, or the teacher a nearly shifted student."""
    shape = (draw(st.integers(1, 3)), draw(st.integers(2, 12)))
    values = st.floats(-bound, bound, allow_nan=False, width=64 if dtype == torch.float64 else 32)
    student = torch.from_numpy(draw(arrays(np.float64, shape, elements=values))).to(dtype)
    if draw(st.booleans()):
        teacher = torch.from_numpy(draw(arrays(np.float64, shape, elements=values))).to(dtype)
    else:
        shift, nudge = draw(st.floats(-bound, bound)), draw(st.floats(-1e-3, 1e-3))
        noise = nudge * torch.from_numpy(draw(arrays(np.float64, shape, elements=st.floats(-1, 1))))
        teacher = (student.double() + shift + noise).clamp(-bound, bound).to(dtype)
    return student, teacher


# -- the KD loss: T^2 KL(p_t || p_s) -------------------------------------------------------------------------
@settings(PROPERTY, max_examples=150)
@given(logit_pairs(dtype=torch.float64), temperatures)
def test_kd_value_matches_the_mpmath_reference_in_float64(pair, tau):
    value = losses.kd_loss(*pair, tau)
    assert value >= 0
    assert relative_error(value, mpmath_kd_loss(*pair, tau), torch.float64) <= TOLERANCE[torch.float64]


@settings(PROPERTY, max_examples=100)
@given(logit_pairs(dtype=torch.float32), temperatures)
def test_kd_value_matches_the_mpmath_reference_in_float32(pair, tau):
    value = losses.kd_loss(*pair, tau)
    assert value >= 0
    assert relative_error(value, mpmath_kd_loss(*pair, tau), torch.float32) <= TOLERANCE[torch.float32]


@settings(PROPERTY, max_examples=150)
@given(logit_pairs(bound=10.0), st.floats(0.5, 1e6))
def test_kd_is_zero_exactly_for_equal_distributions_and_positive_otherwise(pair, tau):
    student, teacher = pair
    assert losses.kd_loss(student, student, tau) == 0
    spread = [max(d) - min(d) for d in _exact_differences(teacher, student)]  # 0 iff softmax(s/T) = softmax(t/T)
    if not any(spread):
        assert losses.kd_loss(student, teacher, tau) == 0
    else:
        assume(max(spread) / tau > 1e-6)  # a difference the probabilities (>= e^-40 here) can show
        assert losses.kd_loss(student, teacher, tau) > 0


@settings(PROPERTY, max_examples=150)
@given(logit_pairs(bound=10.0), temperatures, st.integers(-100, 100), st.booleans())
def test_kd_is_invariant_to_a_constant_added_to_a_logit_vector(pair, tau, constant, to_teacher):
    """Logits on a 2^-20 grid (the shifted logits are then exact too); softmax(z + c) = softmax(z). Equal up to the
    value's accuracy: the textbook value is kept where its rounding bound is 1e-8 of it (float64)."""
    student, teacher = (torch.round(z * 2**20) / 2**20 for z in pair)
    shifted = (student, teacher + constant) if to_teacher else (student + constant, teacher)
    assert torch.allclose(losses.kd_loss(*shifted, tau), losses.kd_loss(student, teacher, tau), rtol=2e-8, atol=0)


@settings(PROPERTY, max_examples=100)
@given(logit_pairs(dtype=torch.float64), temperatures)
def test_kd_gradient_is_the_closed_form(pair, tau):
    """d (T^2 KL) / d z_s = T (p_s - p_t) / batch (Hinton sec. 2), whatever the temperature."""
    student, teacher = pair
    student = student.clone().requires_grad_()
    (grad,) = torch.autograd.grad(losses.kd_loss(student, teacher, tau), student)
    closed_form = losses.kd_logit_gradient(student.detach(), teacher, tau) / student.shape[0]
    assert torch.allclose(grad, closed_form, rtol=1e-9, atol=1e-12 * tau)


@settings(PROPERTY, max_examples=150)
@given(logit_pairs(bound=10.0), st.floats(3, 12))
def test_kd_tends_to_logit_matching_at_high_temperature(pair, log_tau):
    """T^2 KL -> (1/2C) sum ((z_s - mean z_s) - (z_t - mean z_t))^2 (Hinton sec. 2.1), the gap O(|z| / T)."""
    student, teacher = pair
    tau = 10.0**log_tau
    exact_target = sum(sum((d - sum(row) / len(row)) ** 2 for d in row) / (2 * len(row))
                       for row in _exact_differences(teacher, student)) / len(student)
    scale = float(student.abs().max() + teacher.abs().max())
    gap = abs(fractions.Fraction(float(losses.kd_loss(student, teacher, tau))) - exact_target)
    assert gap <= (2 * scale / tau + 1e-9) * exact_target + TINY[torch.float64]  # below TINY: may round to 0
    target = losses.logit_matching_loss(student, teacher)  # in floating point: the logits' rounding on top
    rounding = 2e-15 * scale
    assert abs(fractions.Fraction(float(target)) - exact_target) <= (
        1e-14 * exact_target + rounding * math.sqrt(2 * exact_target) + rounding**2 + TINY[torch.float64])


def _exact_differences(teacher, student):
    """The rows of teacher - student in exact rational arithmetic."""
    return [[fractions.Fraction(t) - fractions.Fraction(s) for s, t in zip(srow, trow)]
            for srow, trow in zip(student.tolist(), teacher.tolist())]


# -- relational and feature losses ----------------------------------------------------------------------------
@st.composite
def embedding_pairs(draw):
    """Student and teacher embeddings of one batch (3 to 6 points, widths 2 to 5), no two points closer than 1e-3."""
    n = draw(st.integers(3, 6))
    pair = []
    for _ in range(2):
        shape = (n, draw(st.integers(2, 5)))
        z = torch.from_numpy(draw(arrays(np.float64, shape, elements=st.floats(-10, 10), unique=True)))
        assume(bool((torch.cdist(z, z) + torch.eye(n)).min() >= 1e-3))
        pair.append(z)
    return pair


@settings(PROPERTY, max_examples=100)
@given(embedding_pairs(), st.floats(1e-3, 1e3), st.floats(1e-3, 1e3))
def test_rkd_distance_loss_ignores_the_scale_of_either_embedding(pair, a, b):
    """RKD Eq. 4 divides every distance by the mean distance: scaling an embedding changes nothing."""
    student, teacher = pair
    loss = rkd_loss(student, teacher, distance_weight=1.0, angle_weight=0.0)
    assert torch.allclose(rkd_loss(a * student, b * teacher, 1.0, 0.0), loss, rtol=1e-9, atol=1e-12)


@settings(PROPERTY, max_examples=100)
@given(embedding_pairs(), st.floats(1e-3, 1e3), st.floats(-100, 100))
def test_rkd_angle_loss_ignores_translation_and_scale(pair, scale, offset):
    """RKD Eq. 6 uses unit difference vectors: a translation or a positive scale of an embedding cancels."""
    student, teacher = pair
    loss = rkd_loss(student, teacher, distance_weight=0.0, angle_weight=1.0)
    moved = rkd_loss(scale * student + offset, teacher - offset, distance_weight=0.0, angle_weight=1.0)
    assert torch.allclose(moved, loss, rtol=1e-7, atol=1e-9)


features = arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 8)), elements=st.floats(-10, 10))


@settings(PROPERTY, max_examples=100)
@given(features, st.data())
def test_hybrid_cosine_term_ignores_a_positive_scale_per_sample(student, data):
    """1 - cos(A(f_S), f_T) (Eq. 1 of the hybrid feature loss) sees directions only."""
    student = torch.from_numpy(student)
    teacher = torch.from_numpy(data.draw(arrays(np.float64, student.shape, elements=st.floats(-10, 10))))
    assume(bool((student.norm(dim=1) > 1e-3).all() and (teacher.norm(dim=1) > 1e-3).all()))
    scales = torch.tensor(data.draw(st.lists(st.floats(1e-3, 1e3), min_size=len(student), max_size=len(student))))
    scaled = cosine_term(scales[:, None] * student, teacher)
    assert torch.allclose(scaled, cosine_term(student, teacher), rtol=1e-9, atol=1e-12)


# -- statistics over seeds ---------------------------------------------------------------------------------------
per_seed = st.lists(st.floats(-1e6, 1e6), min_size=2, max_size=12)


@settings(PROPERTY, max_examples=200)
@given(per_seed, st.floats(0.5, 0.999))
def test_a_confidence_interval_contains_its_mean(values, level):
    ci = mean_ci(values, level)
    assert ci.low <= ci.mean <= ci.high
    slack = max(math.ulp(v) for v in values)  # fmean rounds twice: five copies of x may average to x - 1 ulp
    assert min(values) - slack <= ci.mean <= max(values) + slack


@settings(PROPERTY, max_examples=200)
@given(st.integers(1, 12).flatmap(lambda n: st.tuples(*[st.lists(st.floats(-1e6, 1e6), min_size=n, max_size=n)] * 2)))
def test_a_paired_difference_is_antisymmetric(pair):
    a, b = pair
    forward, backward = paired_difference(a, b), paired_difference(b, a)
    assert forward.differences == tuple(-d for d in backward.differences)
    assert forward.mean == -backward.mean
    assert (forward.wins, forward.ties, forward.losses) == (backward.losses, backward.ties, backward.wins)
    if len(a) > 1:
        assert forward.half_width == backward.half_width
        assert (forward.low, forward.high) == (-backward.high, -backward.low)
    else:
        assert math.isnan(forward.half_width) and math.isnan(backward.half_width)
