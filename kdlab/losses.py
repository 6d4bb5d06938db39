"""Distillation losses as free functions (mdistiller style): logits in, a scalar out.

Hinton, Vinyals, Dean (2015), "Distilling the Knowledge in a Neural Network", section 2:

    q_i = exp(z_i / T) / sum_j exp(z_j / T)                       (soft targets, Eq. 1)
    L_KD = T^2 * KL(p_teacher^T || p_student^T)                   (teacher distribution is the target)

The T^2 factor keeps the soft term's gradient magnitude roughly constant as T changes (Hinton, sec. 2).
The KL is averaged over the batch (`reduction="batchmean"`); `reduction="mean"` would also divide by
the number of classes, a classic silent bug (PyTorch PR #7006).

How the papers in this kit weight the cross-entropy (CE) against the KD term:

| source            | student objective                          | usual defaults         |
|-------------------|--------------------------------------------|------------------------|
| Hinton 2015       | weighted average, small weight on CE       | T in 2..20             |
| RepDistiller      | gamma*CE + alpha*KD (+ beta*other)         | gamma 0.1, alpha 0.9, T 4 |
| MetaDistil        | (1-alpha)*CE + alpha*KD                    | alpha 0.9 (CV), T 4    |
| MetaDistiller     | CE on the final exit; alpha*CE + (1-alpha)*T^2*KL on each shallow exit (Eqs. 3-4) | alpha 0.5, T 1 |
| MMKD              | CE + sum_k w_k*KD_k + beta*L_feat          | T 4, beta 100          |
| 2025 preprint     | (1-alpha)*CE + alpha*L_feat (no logit KD)  | -                      |

This kit's `distillation_loss` uses `(1 - alpha) * CE + alpha * KD` (MetaDistil's and the preprint's form).
"""
import math

import torch
import torch.nn.functional as F


def soft_targets(logits, temperature=1.0):
    """sigma(z / T): Hinton's Eq. 1. Higher T gives a softer distribution over classes."""
    return F.softmax(logits / temperature, dim=-1)


def kl_rows_textbook(student_logits, teacher_logits, temperature):
    """KL(p_teacher^T || p_student^T) of each row (over the last dimension), as the textbook writes it: the term
    whose gradient `kd_loss` takes, without its exact-value branch, so `torch.vmap` can run it (the stacked seeds
    of `kdlab.train.seeds`, the vmapped episodes of `kdlab.methods.tsmd_batched`). Callers multiply by T^2."""
    log_p_s = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=-1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)


def kd_loss(student_logits, teacher_logits, temperature=4.0):
    """T^2 * KL(p_teacher^T || p_student^T), averaged over the batch (Hinton et al. 2015, section 2).

    Gradient with respect to one sample's student logits: T * (p_student^T - p_teacher^T) / batch, Hinton's
    Eq. 2 times the T^2 factor that keeps the soft term's gradient from shrinking as 1/T^2.
    Pass `teacher_logits` detached unless the teacher is being taught (MetaDistil's teaching experiment).

    Value and gradient are computed apart: the textbook formula's value cancels to noise (even below 0) where
    the two distributions nearly agree, as at high T, while its gradients are the ones every method here was
    built and tested with. So the value comes from `kd_divergence_exact` and every gradient, of any order,
    from the textbook formula (`with_value`).
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    textbook = temperature**2 * kl
    return with_exact_value(textbook, log_p_student, log_p_teacher, student_logits, teacher_logits, temperature,
                            reduce=lambda rows: rows.sum() / student_logits.shape[0])  # batchmean, as F.kl_div


def with_exact_value(textbook, log_p_student, log_p_teacher, student_logits, teacher_logits, temperature,
                     reduce=None):
    """`textbook` (T^2 KL from these log-probabilities, per row or reduced by `reduce`) itself where its value is
    already within TEXTBOOK_TOLERANCE (the common case, at no extra cost); else the same gradients with the value
    of `kd_divergence`."""
    if textbook_value_is_accurate(log_p_student, log_p_teacher, student_logits, teacher_logits, temperature):
        return textbook
    value = kd_divergence(student_logits, teacher_logits, temperature)
    return with_value(textbook, value if reduce is None else reduce(value))


# how large the bound below may be, relative to the value, for the textbook value to be kept. The bound
# overestimates the rounding error (8 ulps per magnitude, one per class for the sum: typically ten times and more),
# so 1e-2 in float32 keeps values well inside the 1e-3 that tests/unit/test_losses.py checks against mpmath.
TEXTBOOK_TOLERANCE = {torch.float64: 1e-8, torch.float32: 1e-2, torch.float16: 1e-2, torch.bfloat16: 1e-2}


@torch.no_grad()
def kd_divergence(student_logits, teacher_logits, temperature=4.0):
    """T^2 * KL(p_teacher^T || p_student^T) per row, detached, accurate to 1e-8 relative: the textbook formula in
    float64 where its rounding bound allows (nearly always: it costs a few operations), else
    `kd_divergence_exact` (a high temperature, or distributions that agree to about 1e-7)."""
    if student_logits.device.type != "mps":  # mps has no float64
        s, t = student_logits.detach().double(), teacher_logits.detach().double()
        log_p_s, log_p_t = F.log_softmax(s / temperature, dim=-1), F.log_softmax(t / temperature, dim=-1)
        if textbook_value_is_accurate(log_p_s, log_p_t, s, t, temperature):
            rows = (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)
            return temperature**2 * rows.expand(torch.broadcast_shapes(s.shape, t.shape)[:-1])
    return kd_divergence_exact(student_logits, teacher_logits, temperature)


@torch.no_grad()
def textbook_value_is_accurate(log_p_student, log_p_teacher, student_logits, teacher_logits, temperature):
    """Whether every row's textbook KL, sum_i p_t,i (log p_t,i - log p_s,i), is certainly close to the truth.

    Each log-probability is off by a few ulps of the largest number it was computed from (z / T and the
    log-sum-exp), and the sum adds an ulp per term; where the KL is small next to those numbers (the two
    distributions nearly agree: a high T, or a student that has caught up) that error can exceed the value
    itself. The bound is 8 ulps of the magnitudes involved, weighted by the teacher's probabilities, plus one
    ulp per class of the summed terms."""
    eps = torch.finfo(log_p_student.dtype).eps
    tolerance = TEXTBOOK_TOLERANCE.get(log_p_student.dtype, 1e-2)
    p_teacher = log_p_teacher.exp()
    log_ratio = log_p_teacher - log_p_student
    magnitude = (log_p_teacher.abs() + log_p_student.abs() + (student_logits.detach() / temperature).abs()
                 + (teacher_logits.detach() / temperature).abs())
    terms = p_teacher * log_ratio
    bound = eps * (8 * (p_teacher * magnitude).sum(-1) + log_ratio.shape[-1] * terms.abs().sum(-1))
    return bool((bound <= tolerance * terms.sum(-1)).all())


def with_value(differentiable, value):
    """A tensor whose value is `value` and whose gradients, of every order, are those of `differentiable`.

    value + (differentiable - differentiable.detach()): the bracket is exactly zero, and autograd passes a
    gradient through the addition and the subtraction unchanged, so the gradients are bit for bit the same.
    """
    return value.detach().to(differentiable.dtype) + (differentiable - differentiable.detach())


@torch.no_grad()
def kd_divergence_exact(student_logits, teacher_logits, temperature=4.0):
    """T^2 * KL(p_teacher^T || p_student^T) per row (the last dimension holds the classes), without cancellation.

    Detached, computed in float64 (float32 on Apple's mps, which has no float64). With x = (z_t - z_s) / T
    centred so that E_{p_s}[x] = 0, the log-ratio is y = log(p_t / p_s) = x - L, where
    L = log E_{p_s}[e^x] = log1p(E_{p_s}[g(x)]), g(x) = e^x - 1 - x >= 0, and
        KL = sum_i p_s,i * h(y_i),   h(y) = y e^y - e^y + 1 >= 0,
    a sum of non-negative terms (each is p_t log(p_t/p_s) - p_t + p_s), g and h taken from their Taylor
    series near 0, where their closed forms cancel. The differences z_t - z_s are exact (Knuth's two-sum):
    a teacher equal to the student plus a constant gives exactly 0.
    """
    work = torch.float32 if student_logits.device.type == "mps" else torch.float64
    s, t = torch.broadcast_tensors(student_logits.detach().to(work), teacher_logits.detach().to(work))
    temperature = torch.as_tensor(temperature, dtype=work, device=s.device).detach()
    log_p_s, top = _log_softmax_and_top(s, temperature)  # the student's top class anchors every difference
    log_p_t = _log_softmax_and_top(t, temperature)[0]
    p_s = log_p_s.exp()

    diff = t - s
    diff_low = _two_difference_low(t, s, diff)  # t - s = diff + diff_low exactly
    x = ((diff - diff.gather(-1, top)) + (diff_low - diff_low.gather(-1, top))) / temperature
    x = x - (p_s * x).sum(-1, keepdim=True)
    log_g_above_1 = x + torch.log1p(-(1 + x) * torch.exp(-x))  # log g(x) for x > 1, finite where g(x) overflows
    g = _series_near_zero(x, torch.expm1(x) - x, G_SERIES)
    p_s_g = torch.where(x > 1, (log_p_s + log_g_above_1).exp(), p_s * g)
    mean_g = p_s_g.sum(-1, keepdim=True)
    log_normaliser = torch.where(mean_g.isfinite(), torch.log1p(mean_g), _log_sum_exp(log_p_s + x))
    y = x - log_normaliser
    # each term times T^2 (T * (T * term), or (T y)^2 in the series): T^2 alone, or y^2, may overflow or underflow
    p_s_h = p_s * _series_near_zero(y, (y - 1) * torch.expm1(y) + y, H_SERIES, scale=temperature)
    log_ratio = log_p_t - log_p_s  # y again, accurate where |y| > 1 even if x and L are huge
    p_t_form = log_p_t.exp() * (log_ratio - 1) + p_s  # the same term, for |y| > 1: no overflow, no cancellation
    return torch.where(log_ratio.abs() > 1, temperature * (temperature * p_t_form), p_s_h).sum(-1)


def _log_softmax_and_top(z, temperature):
    """log softmax(z / T) as (z - max) / T - log1p(sum over the other classes), exact near the top class
    whatever the size of z / T; and the index of the top class (one of them, if several tie)."""
    z_top, top = z.max(dim=-1, keepdim=True)
    is_top = torch.zeros_like(z, dtype=torch.bool).scatter_(-1, top, True)
    gap = (z - z_top) / temperature  # <= 0, exactly 0 at the top class
    return gap - torch.log1p(torch.where(is_top, 0.0, gap.exp()).sum(-1, keepdim=True)), top


G_SERIES = tuple(1 / math.factorial(n) for n in range(2, 8))  # g(x) = e^x - 1 - x = sum_{n>=2} x^n / n!
H_SERIES = tuple((n - 1) / math.factorial(n) for n in range(2, 8))  # h(y) = y e^y - e^y + 1 = sum (n-1) y^n / n!


def _two_difference_low(a, b, hi):
    """The rounding error of hi = a - b, so that a - b = hi + low exactly (Knuth's two-sum)."""
    a_part = hi + b
    b_part = hi - a_part
    return (a - a_part) - (b + b_part)


def _series_near_zero(v, closed_form, coefficients, scale=1.0):
    """scale^2 times closed_form, a function that vanishes like v^2, or where |v| is small enough for its rounding
    error 2 eps/|v| to matter, times its Taylor series (scale v)^2 (c0 + c1 v + c2 v^2 + ...): both errors below
    1e-13 (about 1e-6 in float32)."""
    near = 1e-2 if v.dtype == torch.float64 else 1e-1
    series = torch.full_like(v, coefficients[-1])
    for c in reversed(coefficients[:-1]):
        series = series * v + c
    return torch.where(v.abs() < near, (scale * v) ** 2 * series, scale * (scale * closed_form))


def _log_sum_exp(v):
    """log sum_i exp(v_i) along the last dimension (kept), for the rows where E[g] overflows (then L > 709)."""
    top = v.max(dim=-1, keepdim=True).values
    return top + (v - top).exp().sum(-1, keepdim=True).log()


def kd_logit_gradient(student_logits, teacher_logits, temperature=4.0):
    """The closed-form per-sample gradient of T^2 * KL with respect to the student logits: T * (p_s - p_t)."""
    p_student = soft_targets(student_logits, temperature)
    p_teacher = soft_targets(teacher_logits, temperature)
    return temperature * (p_student - p_teacher)


def logit_matching_loss(student_logits, teacher_logits):
    """Mean squared error between zero-mean logits: the high-temperature limit of KD (Hinton sec. 2.1).

    For T >> |z|, T^2 * KL(p_t^T || p_s^T) -> (1 / 2C) * sum_i ((z_s,i - mean z_s) - (z_t,i - mean z_t))^2.
    """
    zs = student_logits - student_logits.mean(dim=-1, keepdim=True)
    zt = teacher_logits - teacher_logits.mean(dim=-1, keepdim=True)
    num_classes = student_logits.shape[-1]
    return ((zs - zt) ** 2).sum(dim=-1).mean() / (2 * num_classes)


def distillation_loss(student_logits, teacher_logits, labels, alpha=0.9, temperature=4.0):
    """(1 - alpha) * CE(student, labels) + alpha * KD(student, teacher); returns a dict of named terms."""
    ce = F.cross_entropy(student_logits, labels)
    kd = kd_loss(student_logits, teacher_logits, temperature)
    return {"loss": (1 - alpha) * ce + alpha * kd, "ce": ce, "kd": kd}


def entropy(probs, dim=-1):
    """Shannon entropy in nats; how much 'dark knowledge' a soft target spreads over the classes."""
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=dim)
