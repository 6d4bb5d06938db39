"""kdlab.methods.dkd against an oracle written from the definitions (probabilities, one sample at a time; no kit
code), the exact decomposition KL = TCKD + (1 - p_y^T) NCKD, the warm-up, the official code's -1000 shortcut,
and planted bugs that the checks must catch."""
from unittest.mock import patch

import pytest
import torch
import torch.nn.functional as F

from kdlab.data import load
from kdlab.errors import ParameterError
from kdlab.methods import base, dkd
from kdlab.models import MLP
from kdlab.train import fit
from tests.mutation import assert_caught

T = 2.5


# ----------------------------------------------------------------------------------------- oracle

def softmax_row(z):
    e = torch.exp(z - z.max())
    return e / e.sum()


def kl(p, q):
    """sum p log(p / q) over the entries where p > 0 (0 log 0 = 0)."""
    keep = p > 0
    return (p[keep] * (p[keep].log() - q[keep].log())).sum()


def hand_terms(s, t, y, temperature):
    """Per sample, from the definitions: (KL(p^T || p^S), TCKD, NCKD, p_y^T). b = [p_y, sum of the others];
    p_hat = the softmax of the non-target logits alone."""
    rows = []
    for s_i, t_i, y_i in zip(s, t, y.tolist()):
        others = [c for c in range(len(s_i)) if c != y_i]
        p_s, p_t = softmax_row(s_i / temperature), softmax_row(t_i / temperature)
        b_s = torch.stack([p_s[y_i], p_s[others].sum()])
        b_t = torch.stack([p_t[y_i], p_t[others].sum()])
        hat_s, hat_t = softmax_row(s_i[others] / temperature), softmax_row(t_i[others] / temperature)
        rows.append(torch.stack([kl(p_t, p_s), kl(b_t, b_s), kl(hat_t, hat_s), p_t[y_i]]))
    return torch.stack(rows).unbind(1)


def official_shortcut_nckd(s, t, y, temperature):
    """NCKD as the official code computes it: softmax(z / T - 1000 [c = y]) over all classes (for comparison)."""
    mask = F.one_hot(y, s.shape[1]).to(s.dtype)
    log_q = F.log_softmax(s / temperature - 1000.0 * mask, 1)
    p = F.softmax(t / temperature - 1000.0 * mask, 1)
    return (p * (p.clamp_min(1e-300).log() - log_q)).sum(1)


def problem(seed=0, n=7, c=6, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    s = scale * torch.randn(n, c, generator=g, dtype=torch.float64)
    t = scale * torch.randn(n, c, generator=g, dtype=torch.float64)
    return s, t, torch.randint(0, c, (n,), generator=g)


# ----------------------------------------------------------------------------------------- checks

def check_decomposition_is_exact():
    """KL(p^T || p^S) = TCKD + (1 - p_y^T) NCKD, sample by sample, in float64 (and each term is the oracle's)."""
    for seed, temperature in ((0, 1.0), (1, T), (2, 8.0)):
        s, t, y = problem(seed)
        full, tckd, nckd, p_y = hand_terms(s, t, y, temperature)
        got_tckd, got_nckd, got_p_y = dkd.decoupled_kd(s, t, y, temperature)
        assert torch.allclose(got_tckd, tckd, rtol=1e-12, atol=1e-15), "TCKD is not KL(b^T || b^S)"
        assert torch.allclose(got_nckd, nckd, rtol=1e-12, atol=1e-15), "NCKD is not KL(p_hat^T || p_hat^S)"
        assert torch.allclose(got_p_y, p_y, rtol=1e-12, atol=0)
        rebuilt = got_tckd + (1 - got_p_y) * got_nckd
        assert torch.allclose(rebuilt, full, rtol=1e-12, atol=1e-15), \
            f"KL != TCKD + (1 - p_y) NCKD: off by {float((rebuilt - full).abs().max()):.3g}"
        assert float((full - got_tckd).abs().min()) > 1e-6, "the NCKD part must matter in this check"


def check_dkd_loss_matches_the_oracle():
    """dkd_loss = alpha T^2 mean TCKD + beta T^2 mean NCKD, for alpha != beta (decoupled: NCKD alone, no (1 - p_y))."""
    s, t, y = problem(3)
    _, tckd, nckd, _ = hand_terms(s, t, y, T)
    got = dkd.dkd_loss(s, t, y, tckd_weight=0.7, nckd_weight=3.0, temperature=T)
    assert float(got["tckd"]) == pytest.approx(T ** 2 * float(tckd.mean()), rel=1e-12), "TCKD term is not T^2 mean TCKD"
    assert float(got["nckd"]) == pytest.approx(T ** 2 * float(nckd.mean()), rel=1e-12), "NCKD is not decoupled"
    expected = T ** 2 * (0.7 * tckd.mean() + 3.0 * nckd.mean())
    assert float(got["dkd"]) == pytest.approx(float(expected), rel=1e-12), "DKD is not alpha TCKD + beta NCKD"


def check_nckd_is_exact_for_a_confident_teacher():
    """A teacher whose target logit exceeds the others by far more than 1000 T: NCKD is still the KL of the
    non-target distributions (where the code's -1000 shortcut keeps the target's mass)."""
    s, t, y = problem(4, scale=1.0)
    t = t + 6000.0 * F.one_hot(y, t.shape[1])
    _, _, nckd, _ = hand_terms(s, t, y, 4.0)
    got = dkd.decoupled_kd(s, t, y, 4.0)[1]
    assert torch.allclose(got, nckd, rtol=1e-12, atol=1e-15), "NCKD is not exact for a confident teacher"


def check_step_matches_the_paper(epoch, warmup=4):
    """One DKD step (plain SGD) at 0-based `epoch` = a hand-written step on
    ce_weight CE + min((epoch + 1) / warmup, 1) T^2 (alpha TCKD + beta NCKD), the oracle's terms."""
    torch.manual_seed(0)
    student, teacher = MLP(6, (5,), 4).double(), MLP(6, (7,), 4).double()
    x, y = torch.randn(9, 6, dtype=torch.float64), torch.randint(0, 4, (9,))
    w = [p.detach().clone().requires_grad_() for p in student.parameters()]
    z = torch.func.functional_call(student, dict(zip([n for n, _ in student.named_parameters()], w)), (x,))
    with torch.no_grad():
        t = teacher(x)
    _, tckd, nckd, _ = hand_terms(z, t, y, T)
    weight = min((epoch + 1) / warmup, 1.0)
    loss = 0.5 * F.cross_entropy(z, y) + weight * T ** 2 * (1.5 * tckd.mean() + 2.0 * nckd.mean())
    expected = [p - 0.1 * g for p, g in zip(w, torch.autograd.grad(loss, w))]
    method = dkd.DKD(student, teacher, ce_weight=0.5, tckd_weight=1.5, nckd_weight=2.0, temperature=T,
                     warmup_epochs=warmup)
    method.configure(base.Recipe(lr=0.1, momentum=0.0, weight_decay=0.0), None)
    run = base.Run(seed=0, epochs=epoch + 1, batch_size=9, recipe=None, generator=None, epoch=epoch)
    method.step(base.Batch(x, y, torch.arange(9)), run)
    for got, want in zip(student.parameters(), expected):
        assert torch.allclose(got, want, rtol=0, atol=1e-12), f"epoch {epoch}: off by {(got - want).abs().max():.3g}"
    assert all(p.grad is None for p in teacher.parameters()), "the teacher received a gradient"


@pytest.fixture(scope="module")
def digits():
    return load("digits", train_size=120, seed=0)


def check_warmup_is_logged_per_epoch(data, warmup=3, epochs=4):
    torch.manual_seed(1)
    student, teacher = MLP(64, (8,), 10), MLP(64, (16,), 10)
    history = fit(dkd.DKD(student, teacher, warmup_epochs=warmup), data, epochs=epochs, batch_size=40, progress=False)
    assert history.series("dkd_weight") == pytest.approx([min(e / warmup, 1.0) for e in range(1, epochs + 1)])
    return history


# ----------------------------------------------------------------------------------------- tests

def test_kl_is_tckd_plus_one_minus_p_target_times_nckd_exactly():
    check_decomposition_is_exact()


def test_dkd_loss_matches_the_oracle():
    check_dkd_loss_matches_the_oracle()


def test_nckd_is_exact_where_the_official_shortcut_is_not():
    check_nckd_is_exact_for_a_confident_teacher()
    s, t, y = problem(5)  # ordinary logits: the shortcut agrees to rounding, so it is a shortcut, not a change
    assert torch.allclose(official_shortcut_nckd(s, t, y, T), dkd.decoupled_kd(s, t, y, T)[1], rtol=1e-12, atol=1e-15)
    t = t + 6000.0 * F.one_hot(y, t.shape[1])
    assert not torch.allclose(official_shortcut_nckd(s, t, y, 4.0), dkd.decoupled_kd(s, t, y, 4.0)[1], rtol=1e-3)


def test_float32_terms_stay_finite_for_a_certain_student():
    s, t, y = (v.float() if v.is_floating_point() else v for v in problem(6))
    s = s + 300.0 * F.one_hot(y, s.shape[1])  # the student's non-target mass underflows in float32
    s.requires_grad_(True)
    out = dkd.dkd_loss(s, t, y, temperature=1.0)
    out["dkd"].backward()
    assert torch.isfinite(out["dkd"]) and torch.isfinite(s.grad).all()


@pytest.mark.parametrize("epoch", [0, 2, 5])
def test_step_matches_the_paper_with_the_warmup(epoch):
    check_step_matches_the_paper(epoch)


def test_dkd_trains_with_fit_and_logs_the_warmup(digits):
    history = check_warmup_is_logged_per_epoch(digits)
    assert all(k in history.last for k in ("loss", "ce", "dkd", "tckd", "nckd", "test_acc"))


@pytest.mark.parametrize("kwargs,name", [({"warmup_epochs": -1}, "WARMUP_EPOCHS"), ({"nckd_weight": -8}, "nckd_weight"),
                                         ({"temperature": 0}, "TEMPERATURE"), ({"ce_weight": "1"}, "ce_weight")])
def test_bad_parameters_are_refused_by_name(kwargs, name):
    with pytest.raises(ParameterError, match=f"^{name}="):
        dkd.DKD(MLP(4, (3,), 3), MLP(4, (3,), 3), **kwargs)


# ----------------------------------------------------------------------------------------- planted bugs

_decoupled, _split, _dkd_loss = dkd.decoupled_kd, dkd.split_target, dkd.dkd_loss


def _coupled(s, t, y, temperature):  # NCKD keeps KD's (1 - p_y^T): DKD's beta would act on KD's coupled term
    tckd, nckd, p_y = _decoupled(s, t, y, temperature)
    return tckd, (1 - p_y) * nckd, p_y


def _not_renormalised(logits, labels, temperature):  # p_hat_c = p_c instead of p_c / (1 - p_y)
    log_b, _ = _split(logits, labels, temperature)
    z = logits / temperature
    others = z[~F.one_hot(labels, z.shape[1]).bool()].view(len(z), -1)
    return log_b, others - z.logsumexp(1, keepdim=True)


def _shortcut(s, t, y, temperature):  # the code's -1000 shortcut taken for the exact NCKD
    tckd, _, p_y = _decoupled(s, t, y, temperature)
    return tckd, official_shortcut_nckd(s, t, y, temperature), p_y


def _without_t_squared(s, t, y, tckd_weight=1.0, nckd_weight=8.0, temperature=4.0):
    return {k: v / temperature ** 2 for k, v in _dkd_loss(s, t, y, tckd_weight, nckd_weight, temperature).items()}


MUTANTS = {
    "NCKD still coupled with (1 - p_y^T)": (lambda: patch.object(dkd, "decoupled_kd", _coupled),
                                            check_dkd_loss_matches_the_oracle),
    "non-target distribution not renormalised": (lambda: patch.object(dkd, "split_target", _not_renormalised),
                                                 check_decomposition_is_exact),
    "the -1000 shortcut taken for exact": (lambda: patch.object(dkd, "decoupled_kd", _shortcut),
                                           check_nckd_is_exact_for_a_confident_teacher),
    "warm-up off by one (epochs counted from 0)": (
        lambda: patch.object(dkd, "warmup_factor", lambda e, w: 1.0 if w == 0 else min(e / w, 1.0)),
        lambda: check_step_matches_the_paper(epoch=2)),
    "warm-up never applied": (lambda: patch.object(dkd, "warmup_factor", lambda e, w: 1.0),
                              lambda: check_step_matches_the_paper(epoch=0)),
    "T^2 factor dropped": (lambda: patch.object(dkd, "dkd_loss", _without_t_squared),
                           check_dkd_loss_matches_the_oracle),
}


@pytest.mark.parametrize("name", MUTANTS)
def test_planted_dkd_bug_is_caught(name):
    mutant, check = MUTANTS[name]
    assert_caught(check, mutant)
