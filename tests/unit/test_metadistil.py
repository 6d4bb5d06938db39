"""kdlab.methods.metadistil against oracles written from the paper, not from the kit.

- `closed_form_meta_gradient`: Eqs. 1-3 differentiated BY HAND for a linear student and a tanh teacher
  (no autograd at all), checked against `teacher_meta_gradient` and against finite differences
  (`kdlab.gradcheck`) of the same closed-form quiz loss;
- `autograd_meta_gradient`: Eqs. 1-3 in plain torch (double backprop, explicit weight lists; no kdlab.meta,
  no kit loss) for a tanh student, the oracle of the step and of the training loop;
- `reference_fit`: Algorithm 1 by hand over epochs (seeded batch order, seeded quiz passes, cosine
  schedule for both optimisers) against `fit(MetaDistil(...))` at a POSITIVE teacher lr;
- zero teacher lr reproduces `fit(..., distill_from(...))` on the 90 % split bit for bit.

The `check_*` functions are also the checks of the planted bugs in test_metadistil_mutants.py.
"""
import copy
import dataclasses
import functools
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from kdlab.data import load
from kdlab.data.quiz import split_quiz
from kdlab.gradcheck import finite_differences, relative_error
from kdlab.losses import kd_loss
from kdlab.methods import metadistil as md
from kdlab.models import MLP
from kdlab.train import distill_from, fit

ALPHA, TAU, LAMBDA = 0.7, 2.0, 0.5


# ----------------------------------------------------------------------------------------- oracles

def hand_ce(logits, labels):
    return -(logits - logits.logsumexp(1, keepdim=True))[torch.arange(len(labels)), labels].mean()


def hand_student_loss(s, t, y, alpha, tau):
    """Eq. 1 with kdlab's ALPHA on the KD term: (1 - alpha) CE + alpha tau^2 KL(p_T || p_S), batch mean."""
    p_t = torch.softmax(t / tau, 1)
    log_p_s = s / tau - (s / tau).logsumexp(1, keepdim=True)
    kl = (p_t * (p_t.log() - log_p_s)).sum(1).mean()
    return (1 - alpha) * hand_ce(s, y) + alpha * tau ** 2 * kl


def mlp(params, x):
    """Linear-tanh-...-linear with weights [W1, b1, W2, b2, ...] (inputs flattened)."""
    h = x.flatten(1)
    for i in range(0, len(params), 2):
        h = F.linear(h, params[i], params[i + 1])
        if i + 2 < len(params):
            h = torch.tanh(h)
    return h


def closed_form_quiz(W, b, V, x, y, x_q, y_q, lr, alpha, tau):
    """l_q(theta_T) for a linear student s = W x + b: Eq. 2's step in closed form, then Eq. 3's CE."""
    N = len(x)
    s, t = x @ W.T + b, mlp(V, x)
    D = ((1 - alpha) * (torch.softmax(s, 1) - F.one_hot(y, s.shape[1]))
         + alpha * tau * (torch.softmax(s / tau, 1) - torch.softmax(t / tau, 1))) / N  # dL_S / ds
    W_fast, b_fast = W - lr * D.T @ x, b - lr * D.sum(0)
    return hand_ce(x_q @ W_fast.T + b_fast, y_q), W_fast, b_fast


def closed_form_meta_gradient(W, b, V, x, y, x_q, y_q, lr, alpha, tau):
    """d l_q / d theta_T by hand: dl_q/dt_i = (lr alpha / N) J_i (A x_i + beta), J_i the softmax Jacobian at
    t_i / tau, A, beta = dl_q/dW', dl_q/db'; then back through t = V2 tanh(V1 x + c1) + c2."""
    N, M = len(x), len(x_q)
    l_q, W_fast, b_fast = closed_form_quiz(W, b, V, x, y, x_q, y_q, lr, alpha, tau)
    G = (torch.softmax(x_q @ W_fast.T + b_fast, 1) - F.one_hot(y_q, W.shape[0])) / M
    A, beta = G.T @ x_q, G.sum(0)
    V1, c1, V2, c2 = V
    H = torch.tanh(x @ V1.T + c1)
    P = torch.softmax((H @ V2.T + c2) / tau, 1)
    v = x @ A.T + beta                                                    # (A x_i + beta), row i
    delta = lr * alpha / N * (P * v - P * (P * v).sum(1, keepdim=True))  # J_i v_i, row i
    dZ = (delta @ V2) * (1 - H ** 2)
    return l_q, [dZ.T @ x, dZ.sum(0), delta.T @ H, delta.sum(0)]


def autograd_meta_gradient(student, teacher, x, y, x_q, y_q, lr, alpha, tau):
    """Eqs. 1-3 in plain torch on weight lists: (quiz loss, teacher gradients)."""
    W = [p.detach().clone().requires_grad_() for p in student.parameters()]
    V = [p.detach().clone().requires_grad_() for p in teacher.parameters()]
    grads = torch.autograd.grad(hand_student_loss(mlp(W, x), mlp(V, x), y, alpha, tau), W, create_graph=True)
    l_q = hand_ce(mlp([w - lr * g for w, g in zip(W, grads)], x_q), y_q)
    return l_q.detach(), [g.detach() for g in torch.autograd.grad(l_q, V)]


def algorithm_1_step(student, teacher, s_opt, t_opt, batch, quiz, lr, alpha, tau, pilot):
    """One iteration by hand: teacher SGD step on the oracle's meta-gradient, and the student's KD step with
    the updated teacher (pilot) or the teacher from before its update (w/o pilot)."""
    (x, y), (x_q, y_q) = batch, quiz
    _, meta_grads = autograd_meta_gradient(student, teacher, x, y, x_q, y_q, lr, alpha, tau)
    with torch.no_grad():
        old_logits = teacher(x)
    for p, g in zip(teacher.parameters(), meta_grads):
        p.grad = g
    t_opt.step()
    with torch.no_grad():
        target = teacher(x) if pilot else old_logits
    s_opt.zero_grad()
    hand_student_loss(student(x), target, y, alpha, tau).backward()
    s_opt.step()


def tanh_net(sizes, seed):
    torch.manual_seed(seed)
    layers = [nn.Flatten()]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1]).double()


def tiny_problem(seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    x_q = torch.randn(5, 4, generator=g, dtype=torch.float64)
    return x, torch.arange(6) % 3, x_q, torch.tensor([0, 2, 1, 1, 2])


@functools.lru_cache(maxsize=1)
def digits64():
    data = load("digits", train_size=100, seed=0)
    return dataclasses.replace(data, x_train=data.x_train.double(), x_test=data.x_test[:200].double(),
                               y_test=data.y_test[:200])


def digit_models(seed=0, bn=False):
    torch.manual_seed(100 + seed)
    teacher = MLP(64, hidden=(32,), num_classes=10).double()
    torch.manual_seed(seed)
    if bn:
        student = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 10)).double()
    else:
        student = MLP(64, hidden=(8,), num_classes=10).double()
    return student, teacher


RECIPE = dict(epochs=2, lr=0.05, batch_size=16, seed=3)


# ----------------------------------------------------------------------------------------- checks

def check_meta_gradient_matches_the_closed_form():
    """teacher_meta_gradient == Eqs. 1-3 differentiated by hand (linear student, tanh teacher), to 1e-12."""
    student, teacher = nn.Linear(4, 3).double(), tanh_net((4, 5, 3), seed=2)
    torch.manual_seed(0)
    nn.init.normal_(student.weight)
    x, y, x_q, y_q = tiny_problem()
    result = md.teacher_meta_gradient(student, teacher, x, y, x_q, y_q, lr=LAMBDA, alpha=ALPHA, temperature=TAU)
    V = [p.detach() for p in teacher.parameters()]
    l_q, expected = closed_form_meta_gradient(student.weight.detach(), student.bias.detach(), V, x, y, x_q, y_q,
                                              LAMBDA, ALPHA, TAU)
    got = [result.grads[name] for name, _ in teacher.named_parameters()]
    assert float(result.quiz_loss) == pytest.approx(float(l_q), rel=1e-12), "the quiz loss is not Eq. 3's"
    assert float(torch.cat([g.flatten() for g in expected]).norm()) > 1e-4
    error = relative_error(got, expected)
    assert error < 1e-10, f"the meta-gradient is off by {error:.2g} (relative to the closed form)"
    assert all(p.grad is None for p in student.parameters()), "the experiment must not touch the real student"


def check_meta_gradient_matches_plain_torch(pilot_alpha=ALPHA):
    """teacher_meta_gradient == plain-torch double backprop for a tanh student (4-3-3), teacher 4-5-3."""
    student, teacher = tanh_net((4, 3, 3), seed=0), tanh_net((4, 5, 3), seed=2)
    x, y, x_q, y_q = tiny_problem()
    result = md.teacher_meta_gradient(student, teacher, x, y, x_q, y_q, lr=LAMBDA, alpha=pilot_alpha, temperature=TAU)
    l_q, expected = autograd_meta_gradient(student, teacher, x, y, x_q, y_q, LAMBDA, pilot_alpha, TAU)
    assert float(result.quiz_loss) == pytest.approx(float(l_q), rel=1e-12), "the quiz loss is not Eq. 3's"
    error = relative_error([result.grads[n] for n, _ in teacher.named_parameters()], expected)
    assert error < 1e-10, f"the meta-gradient is off by {error:.2g} (relative to plain torch)"


def check_one_step_is_algorithm_1(pilot):
    """metadistil_step (momentum and weight decay in both optimisers) == `algorithm_1_step` by hand."""
    x, y, x_q, y_q = tiny_problem()
    runs = []
    for step_fn in ("kdlab", "hand"):
        student, teacher = tanh_net((4, 3, 3), seed=0), tanh_net((4, 5, 3), seed=2)
        s_opt = torch.optim.SGD(student.parameters(), lr=0.3, momentum=0.9, weight_decay=5e-4)
        t_opt = torch.optim.SGD(teacher.parameters(), lr=0.2, momentum=0.9, weight_decay=5e-4)
        for _ in range(2):  # two steps: the momentum buffers matter in the second
            if step_fn == "kdlab":
                md.metadistil_step(student, teacher, (x, y), (x_q, y_q), student_opt=s_opt, teacher_opt=t_opt,
                                   lookahead_lr=LAMBDA, alpha=ALPHA, temperature=TAU, pilot_update=pilot)
            else:
                algorithm_1_step(student, teacher, s_opt, t_opt, (x, y), (x_q, y_q), LAMBDA, ALPHA, TAU, pilot)
        runs.append((student, teacher))
    (student, teacher), (ref_student, ref_teacher) = runs
    assert relative_error(list(teacher.parameters()), list(ref_teacher.parameters())) < 1e-12, "teacher differs"
    assert relative_error(list(student.parameters()), list(ref_student.parameters())) < 1e-12, "student differs"
    moved = relative_error(list(teacher.parameters()), list(tanh_net((4, 5, 3), seed=2).parameters()))
    assert moved > 1e-4, "the teacher did not move"


def reference_fit(student, teacher, data, *, epochs, lr, batch_size, seed, teacher_lr, quiz_batch, pilot):
    """Algorithm 1 by hand over epochs: batch order from torch.randperm(seed), quiz batches from reshuffled
    full passes (seed + 7919), both lrs x (1 + cos(pi e / E)) / 2."""
    split = split_quiz(data, 0.1, seed)
    train, n, n_q = split.train, split.train.num_train, split.num_quiz
    s_opt = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    t_opt = torch.optim.SGD(teacher.parameters(), lr=teacher_lr, momentum=0.9, weight_decay=5e-4)
    order_gen, quiz_gen, queue = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 7919), []
    teacher.eval()
    for epoch in range(epochs):
        factor = 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        s_opt.param_groups[0]["lr"], t_opt.param_groups[0]["lr"] = lr * factor, teacher_lr * factor
        order = torch.randperm(n, generator=order_gen)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            if not queue:
                perm = torch.randperm(n_q, generator=quiz_gen)
                queue = [perm[i:i + quiz_batch] for i in range(0, n_q - n_q % quiz_batch, quiz_batch)]
            q = queue.pop(0)
            algorithm_1_step(student, teacher, s_opt, t_opt, (train.x_train[idx], train.y_train[idx]),
                             (split.x_quiz[q], split.y_quiz[q]), lr * factor, ALPHA, TAU, pilot)


def check_fit_is_algorithm_1_over_epochs(pilot=True):
    data = digits64()
    student, teacher = tanh_net((64, 8, 10), seed=0), tanh_net((64, 16, 10), seed=1)
    ref_student, ref_teacher = copy.deepcopy(student), copy.deepcopy(teacher)
    method = md.MetaDistil(student, teacher, teacher_lr=0.05, alpha=ALPHA, temperature=TAU, quiz_batch_size=5,
                           pilot_update=pilot)
    history = fit(method, data, progress=False, **RECIPE)
    reference_fit(ref_student, ref_teacher, data, teacher_lr=0.05, quiz_batch=5, pilot=pilot, **RECIPE)
    assert relative_error(list(teacher.parameters()), list(ref_teacher.parameters())) < 1e-9, "teacher differs"
    assert relative_error(list(student.parameters()), list(ref_student.parameters())) < 1e-9, "student differs"
    assert [r["teacher_lr"] for r in history.records] == pytest.approx([0.05, 0.025], rel=1e-12)


def check_zero_teacher_lr_is_kd_on_the_90_split(pilot=True, bn=False):
    data = digits64()
    student, teacher = digit_models(bn=bn)
    kd_student, kd_teacher = copy.deepcopy(student), copy.deepcopy(teacher)
    split = split_quiz(data, 0.1, RECIPE["seed"], quiz_batch_size=10)
    fit(kd_student, split.train, distill_from(kd_teacher, 0.9, 4.0), progress=False, **RECIPE)
    method = md.MetaDistil(student, teacher, teacher_lr=0.0, alpha=0.9, temperature=4.0, quiz_fraction=0.1,
                           quiz_batch_size=10, pilot_update=pilot)
    history = fit(method, data, progress=False, **RECIPE)
    for a, b in zip(method.model.state_dict().values(), kd_student.state_dict().values()):
        assert torch.equal(a, b), "the real student must take exactly KD's steps (buffers included)"
    for a, b in zip(method.teacher.parameters(), kd_teacher.parameters()):
        assert torch.equal(a, b)
    assert history.steps and all(r["toward"] is False for r in history.steps)
    assert any(r["teacher_grad_norm"] > 0 for r in history.steps), "the meta-gradient was still computed"


# ----------------------------------------------------------------------------------------- the meta-gradient

def test_teacher_meta_gradient_matches_the_hand_derived_closed_form():
    check_meta_gradient_matches_the_closed_form()


def test_closed_form_oracle_matches_finite_differences():
    """The oracle itself, against kdlab.gradcheck on the closed-form quiz loss (float64)."""
    student, teacher = nn.Linear(4, 3).double(), tanh_net((4, 5, 3), seed=2)
    x, y, x_q, y_q = tiny_problem()
    W, b = student.weight.detach(), student.bias.detach()
    V = list(teacher.parameters())
    numeric = finite_differences(lambda: closed_form_quiz(W, b, V, x, y, x_q, y_q, LAMBDA, ALPHA, TAU)[0], V)
    _, oracle = closed_form_meta_gradient(W, b, [v.detach() for v in V], x, y, x_q, y_q, LAMBDA, ALPHA, TAU)
    assert relative_error(oracle, numeric) < 1e-7


@pytest.mark.parametrize("alpha,temperature", [(0.9, 2.0), (0.5, 4.0)])
def test_teacher_meta_gradient_matches_finite_differences(alpha, temperature):
    """kdlab's meta-gradient (tanh student) against kdlab.gradcheck of the plain-torch quiz loss."""
    student, teacher = tanh_net((4, 3, 3), seed=0), tanh_net((4, 5, 3), seed=2)
    x, y, x_q, y_q = tiny_problem()
    result = md.teacher_meta_gradient(student, teacher, x, y, x_q, y_q, lr=LAMBDA, alpha=alpha,
                                      temperature=temperature)
    W = [p.detach() for p in student.parameters()]

    @torch.enable_grad()
    def quiz():
        Wg = [w.clone().requires_grad_() for w in W]
        grads = torch.autograd.grad(hand_student_loss(mlp(Wg, x), teacher(x), y, alpha, temperature), Wg)
        return hand_ce(mlp([w - LAMBDA * g for w, g in zip(W, grads)], x_q), y_q)

    numeric = finite_differences(quiz, list(teacher.parameters()))
    assert float(torch.cat([g.flatten() for g in numeric]).norm()) > 1e-6
    assert relative_error([result.grads[n] for n, _ in teacher.named_parameters()], numeric) < 1e-6


def test_teacher_meta_gradient_matches_plain_torch_double_backprop():
    check_meta_gradient_matches_plain_torch()


def test_without_the_kd_term_the_teacher_gets_no_signal():
    student, teacher = tanh_net((4, 3, 3), seed=0), tanh_net((4, 5, 3), seed=2)
    x, y, x_q, y_q = tiny_problem()
    result = md.teacher_meta_gradient(student, teacher, x, y, x_q, y_q, lr=LAMBDA, alpha=0.0, temperature=TAU)
    assert all(float(g.abs().max()) == 0.0 for g in result.grads.values())


# ----------------------------------------------------------------------------------------- step and loop

def test_order_of_operations_is_recorded_as_the_paper_says():
    x, y, x_q, y_q = tiny_problem()
    traces = {}
    for pilot in (True, False):
        student, teacher = tanh_net((4, 3, 3), seed=0), tanh_net((4, 5, 3), seed=2)
        traces[pilot] = []
        md.metadistil_step(student, teacher, (x, y), (x_q, y_q), student_opt=torch.optim.SGD(student.parameters(), 0.1),
                           teacher_opt=torch.optim.SGD(teacher.parameters(), 0.1), lookahead_lr=LAMBDA,
                           pilot_update=pilot, trace=traces[pilot])
    assert traces[True] == ["teaching_experiment", "quiz_loss", "teacher_update", "student_update(updated teacher)"]
    assert traces[False] == ["teaching_experiment", "quiz_loss", "student_update(old teacher)", "teacher_update"]


@pytest.mark.parametrize("pilot", [True, False])
def test_one_step_is_algorithm_1(pilot):
    check_one_step_is_algorithm_1(pilot)


def test_toward_is_measured_at_the_students_pre_step_parameters():
    x, y, x_q, y_q = tiny_problem()
    student, teacher = tanh_net((4, 3, 3), seed=0), tanh_net((4, 5, 3), seed=2)
    before_s, before_t = copy.deepcopy(student), copy.deepcopy(teacher)
    s_opt, t_opt = torch.optim.SGD(student.parameters(), 0.3), torch.optim.SGD(teacher.parameters(), 0.2)
    out = md.metadistil_step(student, teacher, (x, y), (x_q, y_q), student_opt=s_opt, teacher_opt=t_opt,
                             lookahead_lr=LAMBDA, temperature=TAU)
    with torch.no_grad():
        assert float(out["kd_before"]) == pytest.approx(float(kd_loss(before_s(x), before_t(x), TAU)), rel=1e-12)
        assert float(out["kd_after"]) == pytest.approx(float(kd_loss(before_s(x), teacher(x), TAU)), rel=1e-12)
    assert float(out["kd_after"]) != float(out["kd_before"])


@pytest.mark.parametrize("pilot", [True, False])
def test_fit_is_algorithm_1_over_epochs_at_a_positive_teacher_lr(pilot):
    check_fit_is_algorithm_1_over_epochs(pilot)


@pytest.mark.parametrize("pilot,bn", [(True, False), (False, False), (True, True), (False, True)])
def test_zero_teacher_lr_reproduces_plain_kd_on_the_90_split_bit_for_bit(pilot, bn):
    check_zero_teacher_lr_is_kd_on_the_90_split(pilot, bn)


def test_frozen_epochs_keep_the_teacher_and_are_plain_kd():
    data = digits64()
    student, teacher = digit_models()
    original = copy.deepcopy(teacher)
    history = fit(md.MetaDistil(student, teacher, teacher_lr=0.05, quiz_batch_size=10, freeze_epochs=2), data,
                  progress=False, **RECIPE)
    assert all(torch.equal(a, b) for a, b in zip(teacher.parameters(), original.parameters()))
    assert all(r["toward"] is None for r in history.steps)
    assert [r["teacher_lr"] for r in history.records] == [0.0, 0.0]
    student, teacher = digit_models()
    history = fit(md.MetaDistil(student, teacher, teacher_lr=0.05, quiz_batch_size=10, freeze_epochs=1), data,
                  progress=False, **RECIPE)
    per_epoch = [[r["toward"] for r in history.steps if r["epoch"] == e] for e in (1, 2)]
    assert all(t is None for t in per_epoch[0]) and all(t is not None for t in per_epoch[1])
    assert history.records[0]["teacher_lr"] == 0.0 and history.records[1]["teacher_lr"] > 0


def test_history_logs_steps_accuracies_and_the_toward_share():
    data = digits64()
    student, teacher = digit_models()
    method = md.MetaDistil(student, teacher, teacher_lr=0.01, quiz_batch_size=10,
                           monitor=(data.x_test, data.y_test), log_every=3)
    history = fit(method, data, progress=False, **RECIPE)
    steps_per_epoch = -(-90 // RECIPE["batch_size"])
    assert [r["step"] for r in history.steps] == list(range(1, RECIPE["epochs"] * steps_per_epoch + 1))
    logged = [r["step"] for r in history.steps if "teacher_acc" in r]
    assert logged[0] == 1 and all(s % 3 == 0 for s in logged[1:])
    first, second = md.toward_share(history)
    toward = [r["toward"] for r in history.steps]
    half = len(toward) // 2
    assert (first, second) == (sum(toward[:half]) / half, sum(toward[half:]) / (len(toward) - half))
    assert {"test_acc", "teacher_test_acc", "teacher_lr", "quiz", "loss", "kd_before"} <= set(history.last)
    assert not student.training and not teacher.training
    assert method.optimizers()[1] is method.teacher_optimizer


def test_the_teacher_stays_in_eval_mode_while_training():
    data = digits64()
    student, teacher = digit_models()
    modes = []
    fit(md.MetaDistil(student, teacher, quiz_batch_size=10), data,
        callbacks=[lambda h, m: modes.append((m.training, teacher.training))], progress=False, **RECIPE)
    assert modes == [(True, False)] * RECIPE["epochs"]


def test_toward_share_skips_frozen_steps_and_halves_the_rest():
    class H:
        steps = [{"toward": None}, {"toward": True}, {"toward": False}, {"toward": True}, {"toward": True},
                 {"toward": False}]
    assert md.toward_share(H) == (0.5, 2 / 3)


def test_registry_card_names_the_paper_and_the_order():
    from kdlab.methods import registry

    assert registry.get("metadistil") is md.MetaDistil
    card = registry.card("metadistil")
    assert set(registry.CARD_FIELDS) <= set(card) and "second order" in card["order"]


# ----------------------------------------------------------------------------------------- cost per step (lesson)

def test_a_metadistil_step_needs_at_most_three_times_the_peak_memory_of_a_kd_step():
    from kdlab.lessons.metadistil import step_cost

    torch.manual_seed(0)
    student, teacher = MLP(64, hidden=(16,), num_classes=10), MLP(64, hidden=(256, 256), num_classes=10)
    g = torch.Generator().manual_seed(0)
    batch = (torch.rand(64, 1, 8, 8, generator=g), torch.arange(64) % 10)
    quiz = (torch.rand(30, 1, 8, 8, generator=g), torch.arange(30) % 10)
    cost = step_cost(student, teacher, batch, quiz, lr=0.01, teacher_lr=1e-4, alpha=0.9, temperature=4.0, repeats=1)
    teacher_bytes = sum(p.numel() * 4 for p in teacher.parameters())
    assert cost["kd"]["peak"] >= teacher_bytes and cost["meta"]["persistent"] >= 2 * teacher_bytes
    assert cost["meta"]["transient"] >= teacher_bytes, "the teacher's meta-gradient is held during the step"
    assert cost["meta"]["saved"] > 5 * cost["kd"]["saved"], "the teacher's graph is kept only by MetaDistil"
    assert cost["meta"]["peak"] <= 3 * cost["kd"]["peak"]


def test_lesson_finite_difference_check_is_tight():
    from kdlab.lessons.metadistil import finite_difference_check

    assert finite_difference_check(seed=0) < 1e-6


# ----------------------------------------------------------------------------------------- the teaching panel (lesson)

@pytest.mark.parametrize("alpha", [0.0, 0.9])
def test_teacher_watch_splits_the_teachers_movement_into_weight_decay_and_meta_gradients(alpha):
    from kdlab.lessons.metadistil import TeacherWatch

    data = digits64()
    student, teacher = digit_models()
    method = md.MetaDistil(student, teacher, teacher_lr=1e-2, alpha=alpha, temperature=TAU, quiz_batch_size=10)
    watch = TeacherWatch(teacher, data.x_train, TAU)
    fit(method, data, epochs=3, lr=0.05, batch_size=32, seed=0, progress=False, eval_every=3,
        callbacks=[lambda history, _: watch(history, method)])
    assert watch.epochs == [1, 2, 3]
    assert 0 < watch.decay_moved[0] < watch.decay_moved[-1]
    if alpha == 0:  # no KD term, no meta-gradient: the teacher is exactly its start scaled by weight decay
        assert max(watch.meta_moved) < 1e-12 and watch.soft_target_change[-1] > 0
    else:
        assert min(watch.meta_moved) > 1e-6


def test_lesson_finite_difference_check_follows_a_teaching_experiment_of_several_steps():
    from kdlab import meta
    from kdlab.lessons.metadistil import finite_difference_check

    def unrolled(student, teacher, batches, x_q, y_q, lr, alpha, temperature, keep=slice(None)):
        params = meta.params_of(student)
        for x, y in batches[keep]:
            loss = md.student_loss(meta.forward(student, params, x), teacher(x), y, alpha, temperature)["loss"]
            params = meta.lookahead(student, params, loss, lr, create_graph=True)
        return torch.autograd.grad(md.quiz_loss(meta.forward(student, params, x_q), y_q), list(teacher.parameters()))

    assert finite_difference_check(seed=0, steps=3, gradient=unrolled) < 1e-6
    last_step_only = functools.partial(unrolled, keep=slice(-1, None))
    assert finite_difference_check(seed=0, steps=3, gradient=last_step_only) > 1e-2
    with pytest.raises(ValueError):
        finite_difference_check(seed=0, steps=2)


def test_every_slider_of_the_teaching_panel_changes_its_plot_visibly():
    from kdlab.lessons.metadistil import teaching_panel
    from kdlab.widgets import audit_sliders

    data = load("digits", train_size=100, seed=0)
    torch.manual_seed(0)
    teacher = MLP(64, hidden=(32,), num_classes=10)
    fit(teacher, data, epochs=5, lr=0.05, batch_size=32, seed=0, progress=False)
    panel = teaching_panel(data, teacher, hidden=(8,), recipe=dict(epochs=2, lr=0.05, batch_size=32), seed=0,
                           quiz_fraction=0.1, quiz_batch=10)
    rows = audit_sliders([panel])
    assert {row.control for row in rows} == {"ALPHA", "TEMPERATURE", "TEACHER_LR"}
    assert all(row.ok for row in rows), [(row.control, row.error, row.changes) for row in rows]
    lr_row = next(row for row in rows if row.control == "TEACHER_LR")
    assert any("how far its weights moved" in name for name in lr_row.series)
    d = panel.set(ALPHA=0.0)
    assert d["student_distance"] == [0.0, 0.0], "without the KD term both students are the same CE student"


def test_the_teaching_panel_with_a_worker_process_shows_the_same_numbers():
    from kdlab.lessons.metadistil import teaching_panel

    data = load("digits", train_size=100, seed=0)
    torch.manual_seed(0)
    teacher = MLP(64, hidden=(32,), num_classes=10)
    fit(teacher, data, epochs=5, lr=0.05, batch_size=32, seed=0, progress=False)
    options = dict(hidden=(8,), recipe=dict(epochs=2, lr=0.05, batch_size=32), seed=0, quiz_fraction=0.1,
                   quiz_batch=10)
    here, with_worker = (teaching_panel(data, teacher, workers=n, **options) for n in (1, 2))
    ours, theirs = here.set(ALPHA=0.5, TEACHER_LR=1e-2), with_worker.set(ALPHA=0.5, TEACHER_LR=1e-2)
    assert ours.keys() == theirs.keys()
    assert {key: value for key, value in ours.items() if key != "seconds"} == \
        {key: value for key, value in theirs.items() if key != "seconds"}
    assert ours["kd_acc"] != ours["meta_acc"] or ours["student_distance"][-1] > 0  # two different runs compared


# ----------------------------------------------------------------------------------------- parameter edges (lesson)
def test_dynamics_plot_says_so_when_the_meta_gradient_is_exactly_zero():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kdlab.lessons.metadistil import plot_dynamics
    from kdlab.train.history import History

    steps = [{"step": n, "epoch": 1 + (n - 1) // 5, "toward": n % 2 == 0, "teacher_grad_norm": 0.0,
              "teacher_acc": 70.0, "student_acc": 20.0} for n in range(1, 11)]  # ALPHA = 0: the teacher is not in L_S
    kd = History(records=[{"epoch": e, "test_acc": 20.0} for e in (1, 2)])
    runs = {"kd": kd, "steps_per_epoch": 5, 1e-4: History(records=list(kd.records), steps=steps)}
    fig, axes = plt.subplots(2, 2)
    plot_dynamics(runs, [1e-4], axes.ravel(), weight_decay_term=1e-3)
    assert any("exactly 0" in text.get_text() for text in axes[1, 1].texts)
    assert axes[1, 1].get_xlim()[1] >= 10, "the steps' range stays on the x axis"
    plt.close(fig)


def test_teacher_lr_description_leaves_a_zero_teacher_lr_out_of_the_ratios():
    from kdlab.lessons.metadistil import describe_teacher_lr

    def effect(lr):
        return {"meta_moved": [lr], "decay_moved": [7 * lr], "soft_target_change": [lr / 2], "final_meta": 90.0,
                "final_kd": 90.0, "test_digits_differ": 0.0, "teacher_start": 95.0, "teacher_end": 95.0}

    text = describe_teacher_lr({lr: effect(lr) for lr in (0.0, 1e-3, 1e-1)}, 0.0)
    assert "From teacher lr 0.001 to 0.1 (a factor 100)" in text and "about in proportion" in text
    assert "At TEACHER_LR = 0 the meta-gradients moved the teacher by 0.0e+00" in text and "inf" not in text


def test_toward_share_over_seeds_counts_only_seeds_with_teacher_updates():
    from kdlab.lessons.metadistil import share_over_seeds

    assert share_over_seeds([math.nan, math.nan]) is None  # FREEZE_EPOCHS beyond the epochs: no update at all
    assert share_over_seeds([0.5, math.nan, 0.7]).mean == pytest.approx(60.0)


def test_notebook_03_refuses_a_quiz_set_smaller_than_one_quiz_batch_up_front():
    from kdlab import config
    from kdlab.errors import ParameterError

    assert config.check("QUIZ_FRACTION", 0.1, notebook="03") == 0.1  # 30 of 300 digits: one quiz batch of 30
    with pytest.raises(ParameterError, match="one quiz batch of 30"):
        config.check("QUIZ_FRACTION", 0.02, notebook="03")
    assert config.check("QUIZ_FRACTION", 0.02) == 0.02  # other datasets and quiz batches may allow it
