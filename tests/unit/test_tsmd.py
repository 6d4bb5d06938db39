"""kdlab.methods.tsmd against the paper (Wu et al., WACV 2023, Eqs. 6-10), written independently.

The oracle is Algorithm 1 for a linear softmax teacher and student in plain torch: the inner gradients
of Eqs. 6-7 in closed form (no kdlab.meta, no kdlab loss), the query losses of Eq. 8, and Eq. 10's
meta-gradients by autograd through those closed forms; the oracle itself is checked against central
finite differences (kdlab.gradcheck, float64) of Sum_i L_T (for psi) and Sum_i L_S (for theta), which is
exactly what Eq. 10a and 10b write. The `check_*` functions are the ordinary checks; the planted bugs of
test_tsmd_mutants.py must make one of them fail by an assertion.
"""
import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from kdlab.errors import ParameterError
from kdlab.gradcheck import finite_differences, relative_error
from kdlab.methods import tsmd
from kdlab.methods.tsmd import TSMD
from kdlab.models.conv4 import Conv4
from kdlab.train import fit_episodes

KNOBS = dict(inner_steps=2, inner_lr=0.5, teacher_inner_steps=2, kd_weight=0.7, temperature=2.0)


# ------------------------------------------------------------------------ the oracle, in plain torch

def linear(seed, classes=3, features=4):
    g = torch.Generator().manual_seed(seed)
    model = nn.Linear(features, classes).double()
    with torch.no_grad():
        model.weight.copy_(torch.randn(classes, features, generator=g, dtype=torch.float64))
        model.bias.copy_(0.5 * torch.randn(classes, generator=g, dtype=torch.float64))
    return model


def linear_task(seed, classes=3):
    g = torch.Generator().manual_seed(100 + seed)
    x_s = torch.randn(2 * classes, 4, generator=g, dtype=torch.float64)
    x_q = torch.randn(3 * classes, 4, generator=g, dtype=torch.float64)
    return x_s, torch.arange(2 * classes) % classes, x_q, torch.arange(3 * classes) % classes


def cross_entropy(z, y):
    return -torch.log_softmax(z, 1)[torch.arange(len(y)), y].mean()


def sgd(params, x, dz, lr):
    """One SGD step of a linear model z = x W^T + b, given dL/dz."""
    W, b = params
    return W - lr * dz.T @ x, b - lr * dz.sum(0)


def paper_losses(psi, theta, task, *, inner_steps, inner_lr, teacher_inner_steps, kd_weight, temperature,
                 attach=False):
    """Eqs. 6-8 for one task: (L_T(psi'; D_val), L_S(theta'; D_val)); psi, theta = (W, b) or None."""
    x_s, y_s, x_q, y_q = task
    n, T = len(y_s), temperature
    onehot = F.one_hot(y_s, 3).double()
    losses = [None, None]
    if psi is not None:
        for _ in range(teacher_inner_steps):  # Eq. 6: d CE / dz = (softmax(z) - onehot) / n
            psi = sgd(psi, x_s, (torch.softmax(x_s @ psi[0].T + psi[1], 1) - onehot) / n, inner_lr)
        p_teacher = torch.softmax((x_s @ psi[0].T + psi[1]) / T, 1)
        p_teacher = p_teacher if attach else p_teacher.detach()
        losses[0] = cross_entropy(x_q @ psi[0].T + psi[1], y_q)  # Eq. 8a
    if theta is not None:
        for _ in range(inner_steps):  # Eq. 7: d [CE + w T^2 KL(p_t || softmax(z / T))] / dz
            z = x_s @ theta[0].T + theta[1]
            dz = (torch.softmax(z, 1) - onehot) / n
            if psi is not None:
                dz = dz + kd_weight * T * (torch.softmax(z / T, 1) - p_teacher) / n
            theta = sgd(theta, x_s, dz, inner_lr)
        losses[1] = cross_entropy(x_q @ theta[0].T + theta[1], y_q)  # Eq. 8b
    return losses


def paper_objectives(psi, theta, tasks, attach=False, **knobs):
    """Eq. 9 over the meta-batch (means): (Sum_i L_T / n, Sum_i L_S / n)."""
    totals = [0.0, 0.0]
    for task in tasks:
        for i, loss in enumerate(paper_losses(psi, theta, task, attach=attach, **knobs)):
            totals[i] = totals[i] + (0.0 if loss is None else loss / len(tasks))
    return totals


def params(model):
    return None if model is None else [model.weight, model.bias]


def paper_gradients(psi, theta, tasks, attach=False, **knobs):
    """Eq. 10's meta-gradients [dW_t, db_t, dW_s, db_s] at psi, theta (None: no such model; its gradients
    are then None) and the two objectives (Sum L_T / n, Sum L_S / n) as floats."""
    psi, theta = ([p.detach().clone().requires_grad_() for p in ps] if ps is not None else None for ps in (psi, theta))
    l_t, l_s = paper_objectives(psi, theta, tasks, attach, **knobs)
    grads = list(torch.autograd.grad(l_t + l_s, (psi or []) + (theta or [])))
    grads = ([None, None] if psi is None else grads[:2]) + ([None, None] if theta is None else grads[-2:])
    return grads, tuple(float(torch.as_tensor(loss).detach()) for loss in (l_t, l_s))


def grads_of(teacher, student):
    return [None if m is None else p.grad for m in (teacher, student) for p in (params(m) or [None, None])]


def test_the_oracle_is_eq_10_by_finite_differences():
    """The oracle's autograd equals central differences of Sum L_T in psi (Eq. 10a: the teacher's own query
    loss only) and of Sum L_S in theta (Eq. 10b); with attach=True psi's is that of Sum (L_T + L_S)."""
    teacher, student, tasks = linear(0), linear(1), [linear_task(1), linear_task(2)]
    for attach in (False, True):
        psi, theta = params(teacher), params(student)
        grads, _ = paper_gradients(psi, theta, tasks, attach, **KNOBS)

        def objective(which):
            return lambda: sum(paper_objectives(psi, theta, tasks, attach, **KNOBS)[i] for i in which)

        assert relative_error(grads[:2], finite_differences(objective((0, 1) if attach else (0,)), psi)) < 1e-7
        assert relative_error(grads[2:], finite_differences(objective((1,)), theta)) < 1e-7


# ------------------------------------------------------------------------------------ the checks

ROWS = [("ours", False), ("ours", True), ("oracle", False), ("student", False)]


def check_meta_gradients_match_the_paper():
    """tsmd_step's .grad, for each row, equals the oracle's Eq. 10 to 1e-10, and FD to 1e-6 for 'ours'."""
    tasks = [linear_task(1), linear_task(2)]
    for variant, attach in ROWS:
        teacher = linear(0) if variant != "student" else None
        student = linear(1) if variant != "oracle" else None
        out = tsmd.tsmd_step(teacher, student, tasks, variant=variant, attach_teacher=attach, **KNOBS)
        got = grads_of(teacher, student)
        want, (l_t, l_s) = paper_gradients(params(teacher), params(student), tasks, attach, **KNOBS)
        for who, sl in (("teacher (Eq. 10a)", slice(0, 2)), ("student (Eq. 10b)", slice(2, 4))):
            if want[sl][0] is None:
                assert got[sl][0] is None, f"{variant}: the {who} got a meta-gradient it must not get"
                continue
            assert all(g is not None for g in got[sl]), f"{variant}: the {who} got no meta-gradient"
            error = relative_error(got[sl], want[sl])
            assert error < 1e-10, f"{variant}, attach={attach}: the {who} meta-gradient is off by {error:.2e}"
        for who, want in (("teacher", l_t), ("student", l_s)):
            assert abs(out.get(f"{who}_query_loss", 0.0) - want) < 1e-12, f"{variant}: the {who}'s query loss (Eq. 8)"
        if variant == "ours" and not attach:
            psi, theta = params(teacher), params(student)
            numeric = (finite_differences(lambda: paper_objectives(psi, theta, tasks, **KNOBS)[0], psi)
                       + finite_differences(lambda: paper_objectives(psi, theta, tasks, **KNOBS)[1], theta))
            assert relative_error(got, numeric) < 1e-6, "the meta-gradients differ from finite differences"


def adam_by_hand(params, grads, state, lr, t, betas=(0.9, 0.999), eps=1e-8):
    out = []
    for i, (p, g) in enumerate(zip(params, grads)):
        m, v = state.get(i, (0.0, 0.0))
        m, v = betas[0] * m + (1 - betas[0]) * g, betas[1] * v + (1 - betas[1]) * g * g
        state[i] = (m, v)
        out.append(p - lr * (m / (1 - betas[0] ** t)) / ((v / (1 - betas[1] ** t)).sqrt() + eps))
    return out


def check_two_meta_iterations_are_adam_on_the_paper_gradients():
    """fit_episodes(TSMD('ours')): Eq. 10a with Adam at beta = teacher_meta_lr, Eq. 10b at eta = meta_lr."""
    tasks = [linear_task(i) for i in range(4)]
    teacher, student = linear(0), linear(1)
    method = TSMD(teacher, student, variant="ours", meta_lr=0.01, teacher_meta_lr=0.03, **KNOBS)
    history = fit_episodes(method, iter(tasks), iterations=2, meta_batch=2, log_every=1)
    psi, theta = [p.detach() for p in params(linear(0))], [p.detach() for p in params(linear(1))]
    t_state, s_state = {}, {}
    for it in (1, 2):
        grads, (l_t, l_s) = paper_gradients(psi, theta, tasks[2 * it - 2:2 * it], **KNOBS)
        record = history.records[it - 1]
        for who, want in (("teacher", l_t), ("student", l_s)):
            assert abs(record[f"{who}_query_loss"] - want) < 1e-12, f"iteration {it}: the {who}'s query loss (Eq. 8)"
        psi = adam_by_hand(psi, grads[:2], t_state, 0.03, it)
        theta = adam_by_hand(theta, grads[2:], s_state, 0.01, it)
    for name, got, want in (("teacher", params(teacher), psi), ("student", params(student), theta)):
        error = max(float((a.detach() - b).abs().max()) for a, b in zip(got, want))
        assert error < 1e-12, f"the {name}'s weights after two meta-iterations are off by {error:.2e}"


def conv4(hidden, seed, classes=5):
    torch.manual_seed(seed)
    return Conv4(in_channels=1, num_classes=classes, hidden=hidden)


def random_tasks(n, ways=5, shots=1, queries=2, size=12, seed=2):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(ways * shots, 1, size, size, generator=g), torch.arange(ways).repeat_interleave(shots),
             torch.randn(ways * queries, 1, size, size, generator=g), torch.arange(ways).repeat_interleave(queries))
            for _ in range(n)]


def check_fixed_teacher_is_never_changed():
    """The fixed teacher (no Eq. 6, no Eq. 10a) keeps its weights and gets no gradient; the student learns."""
    teacher, student = conv4(6, 0), conv4(4, 1)
    before, student_before = copy.deepcopy(teacher.state_dict()), copy.deepcopy(student.state_dict())
    method = TSMD(teacher, student, variant="fixed_teacher", kd_weight=1.0)
    assert list(method.meta_optimizers) == ["student"], "an optimizer for the fixed teacher (no Eq. 10a)"
    history = fit_episodes(method, iter(random_tasks(4)), iterations=2, meta_batch=2)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items()), "the fixed teacher changed"
    assert all(p.grad is None for p in teacher.parameters()), "the fixed teacher got a gradient"
    assert "teacher_query_loss" not in history.last and history.last["inner_kd"] > 0
    assert any(not torch.equal(student_before[k], v) for k, v in student.state_dict().items())


def check_reptile_is_the_mean_displacement_of_sgd_by_hand():
    """Reptile (Table 4): .grad = mean_i (theta - theta'_i) with theta'_i from torch.optim.SGD by hand."""
    teacher, student, tasks = linear(0), linear(1), [linear_task(1), linear_task(2)]
    knobs = dict(variant="ours", inner_steps=2, inner_lr=0.3, kd_weight=0.5, temperature=2.0)
    tsmd.reptile_step(teacher, student, tasks, **knobs)
    expected = {id(p): torch.zeros_like(p) for p in [*teacher.parameters(), *student.parameters()]}
    for x_s, y_s, _, _ in tasks:
        t, s = copy.deepcopy(teacher), copy.deepcopy(student)
        t_opt, s_opt = torch.optim.SGD(t.parameters(), lr=0.3), torch.optim.SGD(s.parameters(), lr=0.3)
        for _ in range(2):
            t_opt.zero_grad()
            F.cross_entropy(t(x_s), y_s).backward()
            t_opt.step()
        with torch.no_grad():
            soft = torch.softmax(t(x_s) / 2, 1)
        for _ in range(2):
            s_opt.zero_grad()
            z = s(x_s)
            kl = (soft * (soft.log() - torch.log_softmax(z / 2, 1))).sum(1).mean()
            (F.cross_entropy(z, y_s) + 0.5 * 4.0 * kl).backward()
            s_opt.step()
        for original, adapted in ((teacher, t), (student, s)):
            for p, q in zip(original.parameters(), adapted.parameters()):
                expected[id(p)] += (p - q).detach() / 2
    for p in [*teacher.parameters(), *student.parameters()]:
        assert p.grad is not None and torch.allclose(p.grad, expected[id(p)], rtol=0, atol=1e-12), \
            "Reptile's meta-gradient is not mean_i (theta - theta'_i)"


def check_meta_test_adapts_the_teacher_then_the_student():
    """Meta-test (Eq. 6, then Eq. 7; the adapted student predicts) against the oracle's closed form, from
    detached copies: the models and their .grad stay untouched."""
    teacher, student, task = linear(0), linear(1), linear_task(3)
    before = [p.detach().clone() for p in (*teacher.parameters(), *student.parameters())]
    out = tsmd.adapt_and_predict(teacher, student, task, variant="ours", details=True, **KNOBS)
    psi, theta = params(teacher), params(student)
    x_s, y_s, x_q, y_q = task
    onehot, n, T = F.one_hot(y_s, 3).double(), len(y_s), KNOBS["temperature"]
    with torch.no_grad():
        for _ in range(KNOBS["teacher_inner_steps"]):
            psi = sgd(psi, x_s, (torch.softmax(x_s @ psi[0].T + psi[1], 1) - onehot) / n, KNOBS["inner_lr"])
        p_t = torch.softmax((x_s @ psi[0].T + psi[1]) / T, 1)
        for _ in range(KNOBS["inner_steps"]):
            z = x_s @ theta[0].T + theta[1]
            dz = (torch.softmax(z, 1) - onehot) / n + KNOBS["kd_weight"] * T * (torch.softmax(z / T, 1) - p_t) / n
            theta = sgd(theta, x_s, dz, KNOBS["inner_lr"])
    assert torch.allclose(out["logits"], x_q @ theta[0].T + theta[1], rtol=0, atol=1e-12), "adapted student"
    assert torch.allclose(out["teacher_logits"], x_q @ psi[0].T + psi[1], rtol=0, atol=1e-12), "adapted teacher"
    result = tsmd.evaluate(teacher, student, [task], variant="ours", **KNOBS)
    assert result["accuracy"] == float(((x_q @ theta[0].T + theta[1]).argmax(1) == y_q).double().mean()), "accuracy"
    for p, b in zip((*teacher.parameters(), *student.parameters()), before):
        assert torch.equal(p, b) and p.grad is None, "meta-test changed a model"


def test_meta_gradients_match_the_paper():
    check_meta_gradients_match_the_paper()


def test_two_meta_iterations_are_adam_on_the_paper_gradients():
    check_two_meta_iterations_are_adam_on_the_paper_gradients()


def test_fixed_teacher_is_never_changed():
    check_fixed_teacher_is_never_changed()


def test_reptile_is_the_mean_displacement_of_sgd_by_hand():
    check_reptile_is_the_mean_displacement_of_sgd_by_hand()


def test_meta_test_adapts_the_teacher_then_the_student():
    check_meta_test_adapts_the_teacher_then_the_student()


# ----------------------------------------------------------------------------------- equivalences

def test_student_and_oracle_rows_are_maml_and_kd_weight_zero_is_the_student_row_bit_for_bit():
    from kdlab.methods.maml import MAML

    student0, teacher0, tasks = conv4(4, 1), conv4(6, 0), random_tasks(6)
    runs = {"student": TSMD(None, copy.deepcopy(student0), variant="student"),
            "ours, KD weight 0": TSMD(copy.deepcopy(teacher0), copy.deepcopy(student0), variant="ours", kd_weight=0.0),
            "oracle": TSMD(copy.deepcopy(teacher0), None, variant="oracle"),
            "MAML(student)": MAML(copy.deepcopy(student0)), "MAML(teacher)": MAML(copy.deepcopy(teacher0))}
    histories = {name: fit_episodes(method, iter(tasks), iterations=3, meta_batch=2, log_every=1)
                 for name, method in runs.items()}
    for a, b in (("student", "MAML(student)"), ("ours, KD weight 0", "MAML(student)"), ("oracle", "MAML(teacher)")):
        assert all(torch.equal(x, y) for x, y in zip(runs[a].model.state_dict().values(),
                                                     runs[b].model.state_dict().values())), f"{a} differs from {b}"
    for row, who in (("student", "student"), ("oracle", "teacher")):  # tsmd sums floats, maml_step float32 tensors
        for term in ("query_loss", "query_acc"):
            expected = histories[f"MAML({who})"].series(term)
            assert histories[row].series(f"{who}_{term}") == pytest.approx(expected, rel=1e-6)
    assert runs["oracle"].model is runs["oracle"].teacher and runs["student"].model is runs["student"].student
    assert not torch.equal(next(runs["student"].model.parameters()), next(student0.parameters()))


def test_fixed_teacher_with_rkd_accepts_a_teacher_with_another_label_space():
    teacher, student = conv4(6, 0, classes=64), conv4(4, 1)  # a classifier over all meta-train classes
    out = tsmd.tsmd_step(teacher, student, random_tasks(1), variant="fixed_teacher", kd_weight=1.0)
    assert out["inner_kd"] > 0 and out["loss"] == out["student_query_loss"]


def test_rkd_guided_student_meta_gradient_matches_finite_differences():
    """RKD enters Eq. 7 for the student: its second-order meta-gradient through the RKD term, by FD."""
    class WithFeatures(nn.Module):  # the logits double as the embedding of an MLP
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x, return_features=False):
            logits = self.net(x)
            return (logits, [logits]) if return_features else logits

    torch.manual_seed(0)
    teacher = WithFeatures(nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double())
    student = WithFeatures(nn.Sequential(nn.Linear(4, 2), nn.Tanh(), nn.Linear(2, 3)).double())
    task, params = linear_task(1), list(student.parameters())
    s = tsmd.settings("ours", kd="rkd", **KNOBS)

    def objective():
        with torch.enable_grad():
            adapted = tsmd.adapt(teacher, student, task[0], task[1], s)
            return tsmd.query_loss(student, adapted.student, task, s)[0]

    analytic = torch.autograd.grad(objective(), params)
    assert torch.cat([g.reshape(-1) for g in analytic]).norm() > 0
    assert relative_error(analytic, finite_differences(objective, params)) <= 1e-6


# ------------------------------------------------------------------------------------ bad inputs

def test_negative_kd_weight_is_refused():
    with pytest.raises(ParameterError, match=r"KD_WEIGHT=-0\.5 is not allowed: KD_WEIGHT must be a finite number >= 0"):
        tsmd.tsmd_step(conv4(6, 0), conv4(4, 1), random_tasks(1), variant="ours", kd_weight=-0.5)


def test_episode_with_more_ways_than_the_students_head_is_refused():
    with pytest.raises(ParameterError, match=r"ways=10 is not allowed: ways must be 5, the number of classes "
                                             r"of the student's head"):
        tsmd.tsmd_step(conv4(6, 0, classes=10), conv4(4, 1), random_tasks(1, ways=10), variant="ours")


def test_episode_with_fewer_ways_than_the_teachers_head_is_refused():
    teacher, student = conv4(6, 0, classes=5), conv4(4, 1, classes=3)
    with pytest.raises(ParameterError, match=r"ways=3 is not allowed: ways must be 5, the number of classes "
                                             r"of the teacher's head"):
        tsmd.tsmd_step(teacher, student, random_tasks(1, ways=3), variant="ours")
    with pytest.raises(ParameterError, match="teacher's head"):
        tsmd.evaluate(teacher, student, random_tasks(1, ways=3), variant="ours")


def test_zero_teacher_inner_steps_in_the_adapted_teacher_variant_is_refused():
    with pytest.raises(ParameterError, match=r"TEACHER_INNER_STEPS=0 is not allowed: TEACHER_INNER_STEPS must be "
                                             r"an integer >= 1"):
        TSMD(conv4(6, 0), conv4(4, 1), variant="ours", teacher_inner_steps=0)
    # the fixed teacher is never adapted, so 0 is fine there
    tsmd.tsmd_step(conv4(6, 0), conv4(4, 1), random_tasks(1), variant="fixed_teacher", teacher_inner_steps=0)


@pytest.mark.parametrize("knobs, name", [
    (dict(variant="teacher"), "variant"),
    (dict(kd="mse"), "kd"),
    (dict(temperature=0.0), "TEMPERATURE"),
    (dict(outer="sgd"), "outer"),
    (dict(teacher_meta_lr=-1.0), "META_LR"),
    (dict(bn="group"), "bn"),
])
def test_other_bad_knobs_are_refused(knobs, name):
    with pytest.raises(ParameterError, match=rf"^{name}="):
        TSMD(conv4(6, 0), conv4(4, 1), **knobs)


def test_a_variant_without_its_model_is_refused():
    with pytest.raises(ParameterError, match=r"^teacher=None is not allowed: teacher must be a model for variant "
                                             r"'ours'"):
        TSMD(None, conv4(4, 1), variant="ours")


# ----------------------------------------------------------------------------------- the lesson's KD grid

def test_the_kd_grid_in_worker_processes_equals_the_grid_computed_here():
    from kdlab.data import load
    from kdlab.data.episodes import EpisodeSampler
    from kdlab.lessons.tsmd import glyph_pair, kd_sweep

    glyphs = load("glyphs", image_size=16, max_classes_per_split=60, samples_per_class=10)
    teacher, student = glyph_pair(0, ways=5, teacher_hidden=8, student_hidden=4)
    val_sampler = EpisodeSampler(glyphs, "val", ways=5, shots=1, queries=3, seed=3)
    options = dict(kd_weights=[0.0, 1.0], temperatures=[1.0, 4.0], shots=1, ways=5, queries=3, iterations=3,
                   meta_batch=2, val_tasks=[tuple(val_sampler.episode(i)) for i in range(6)], seed=0, inner_steps=1,
                   inner_lr=0.4, teacher_inner_steps=1, meta_lr=1e-2)
    here = kd_sweep(glyphs, teacher, student, **options)
    there = kd_sweep(glyphs, teacher, student, workers=2, **options)

    def without_seconds(rows):
        return [{key: value for key, value in row.items() if key != "seconds"} for row in rows]

    assert without_seconds(there) == without_seconds(here)
    assert [(r["kd_weight"], r["temperature"]) for r in here] == [(0.0, 1.0), (0.0, 4.0), (1.0, 1.0), (1.0, 4.0)]
    assert here[0]["accuracy"] == here[1]["accuracy"]  # KD weight 0 is one run (plain MAML), whatever T is
    assert not any(row["reused"] for row in here)


def test_the_reptile_rows_in_workers_are_the_reptile_loop_written_out():
    """Notebook 06's Table 4 rows (`reptile_row`, sent to worker processes) equal the loop it replaced."""
    import functools

    from kdlab import parallel
    from kdlab.data import load
    from kdlab.data.episodes import EpisodeSampler
    from kdlab.lessons.tsmd import glyph_pair, reptile_row

    glyphs = load("glyphs", image_size=16, max_classes_per_split=60, samples_per_class=10)
    sizes = dict(ways=5, teacher_hidden=8, student_hidden=4)
    oracle = glyph_pair(9, **sizes)[0].state_dict()
    test_tasks = [tuple(EpisodeSampler(glyphs, "test", ways=5, shots=1, queries=3, seed=4).episode(i))
                  for i in range(5)]
    knobs = dict(inner_steps=2, inner_lr=0.1, teacher_inner_steps=2, kd_weight=1.0, temperature=1.0)
    common = dict(seed=0, shots=1, queries=3, iterations=2, meta_batch=2, test_tasks=test_tasks, **sizes, **knobs)
    rows = ("student", "ours")
    there = parallel.call_all([functools.partial(reptile_row, glyphs, row, oracle, **common) for row in rows], 2)
    for row, got in zip(rows, there):
        teacher0, student0 = glyph_pair(0, **sizes)
        teacher0.load_state_dict(oracle)
        method = TSMD(teacher0 if row == "ours" else None, student0, variant=row, outer="reptile", meta_lr=1.0, **knobs)
        fit_episodes(method, EpisodeSampler(glyphs, "train", ways=5, shots=1, queries=3, seed=0), iterations=2,
                     meta_batch=2, log_every=2)
        want = tsmd.evaluate(method.teacher, method.student, test_tasks, variant=row, **knobs)["accuracies"]
        assert got == (100 * want).tolist(), row
    assert there[0] != there[1], "the two rows should differ (the teacher's guidance)"
