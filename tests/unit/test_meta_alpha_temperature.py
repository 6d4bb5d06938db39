"""kdlab.methods.meta_alpha_temperature against oracles written from the specification, not from the kit:

- `closed_form_hypergradient`: d CE(S(q; theta')) / d(a, b) differentiated BY HAND for a linear student (no
  autograd), checked against `hypergradient` and against finite differences (float64) of the closed-form quiz loss;
- `autograd_hypergradient`: the same in plain torch (double backprop on weight lists, a hand-written loss; no
  kdlab.meta, no kit loss) for a tanh student: the oracle of finite differences, of one step and of `fit`;
- alpha in [0, 1] and T in its range whatever the hypergradient does; meta steps every M-th step;
- planted bugs (first order, detached, wrong quiz loss, wrong order, ...) that the checks must catch.
"""
import copy
import math
from unittest.mock import patch

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from kdlab import meta
from kdlab.data import load
from kdlab.data.quiz import split_quiz
from kdlab.errors import ParameterError
from kdlab.gradcheck import finite_differences, relative_error
from kdlab.methods import base
from kdlab.methods import meta_alpha_temperature as mat
from kdlab.models import MLP
from kdlab.train import History, fit
from tests.mutation import assert_caught

LO, HI, LAMBDA = 1.0, 20.0, 0.5


# ----------------------------------------------------------------------------------------- oracles

def sigmoid(v):
    return 1 / (1 + torch.exp(-v))


def hand_ce(logits, labels):
    return -(logits - logits.logsumexp(1, keepdim=True))[torch.arange(len(labels)), labels].mean()


def hand_loss(s, t, y, alpha, temperature):
    """(1 - alpha) CE + alpha T^2 KL(softmax(t / T) || softmax(s / T)), batch mean."""
    p_t = torch.softmax(t / temperature, 1)
    log_p_s = s / temperature - (s / temperature).logsumexp(1, keepdim=True)
    return (1 - alpha) * hand_ce(s, y) + alpha * temperature ** 2 * (p_t * (p_t.log() - log_p_s)).sum(1).mean()


def closed_form_quiz(W, c, t, x, y, x_q, y_q, a, b, lr):
    """l_q(a, b) for a linear student s = x W^T + c: the virtual step in closed form, then the quiz CE."""
    alpha, T = sigmoid(a), LO + (HI - LO) * sigmoid(b)
    s = x @ W.T + c
    D = ((1 - alpha) * (torch.softmax(s, 1) - F.one_hot(y, s.shape[1]))
         + alpha * T * (torch.softmax(s / T, 1) - torch.softmax(t / T, 1))) / len(x)  # dL / ds
    W_fast, c_fast = W - lr * D.T @ x, c - lr * D.sum(0)
    return hand_ce(x_q @ W_fast.T + c_fast, y_q), W_fast, c_fast


def closed_form_hypergradient(W, c, t, x, y, x_q, y_q, a, b, lr):
    """d l_q / d(a, b) by hand: d l_q / dD_i = -lr v_i with v_i = A x_i + beta (A, beta = d l_q / dW', dc');
    dD/dalpha = (T (p_s^T - p_t^T) - (softmax(s) - onehot)) / N; T dp^T/dT = -p (z - E_p z) / T, so
    dD/dT = alpha ((p_s^T - p_t^T) - (p_s (s - E s) - p_t (t - E t)) / T) / N; then the sigmoids' derivatives."""
    N, M = len(x), len(x_q)
    alpha, T = sigmoid(a), LO + (HI - LO) * sigmoid(b)
    l_q, W_fast, c_fast = closed_form_quiz(W, c, t, x, y, x_q, y_q, a, b, lr)
    G = (torch.softmax(x_q @ W_fast.T + c_fast, 1) - F.one_hot(y_q, W.shape[0])) / M
    v = x @ (G.T @ x_q).T + G.sum(0)
    s = x @ W.T + c
    p_s, p_t = torch.softmax(s / T, 1), torch.softmax(t / T, 1)
    dD_dalpha = (T * (p_s - p_t) - (torch.softmax(s, 1) - F.one_hot(y, s.shape[1]))) / N
    spread = p_s * (s - (p_s * s).sum(1, keepdim=True)) - p_t * (t - (p_t * t).sum(1, keepdim=True))
    dD_dT = alpha * ((p_s - p_t) - spread / T) / N
    d_a = -lr * (v * dD_dalpha).sum() * alpha * (1 - alpha)
    d_b = -lr * (v * dD_dT).sum() * (HI - LO) * sigmoid(b) * (1 - sigmoid(b))
    return l_q, [d_a, d_b]


def mlp(params, x):
    """Linear-tanh-...-linear on weight lists [W1, b1, W2, b2, ...]."""
    h = x.flatten(1)
    for i in range(0, len(params), 2):
        h = F.linear(h, params[i], params[i + 1])
        h = torch.tanh(h) if i + 2 < len(params) else h
    return h


def autograd_hypergradient(student, t, x, y, x_q, y_q, a, b, lr):
    """Plain torch: the quiz CE after one differentiable SGD step, differentiated in the raw (a, b)."""
    a, b = (v.detach().clone().requires_grad_() for v in (a, b))
    W = [p.detach().clone().requires_grad_() for p in student.parameters()]
    loss = hand_loss(mlp(W, x), t, y, sigmoid(a), LO + (HI - LO) * sigmoid(b))
    grads = torch.autograd.grad(loss, W, create_graph=True)
    l_q = hand_ce(mlp([w - lr * g for w, g in zip(W, grads)], x_q), y_q)
    return l_q.detach(), [g.detach() for g in torch.autograd.grad(l_q, [a, b])]


def tanh_net(sizes, seed):
    torch.manual_seed(seed)
    layers = [nn.Flatten()]
    for i, o in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(i, o), nn.Tanh()]
    return nn.Sequential(*layers[:-1]).double()


def tiny_problem(seed=1, classes=3):
    g = torch.Generator().manual_seed(seed)
    x, x_q = (torch.randn(n, 4, generator=g, dtype=torch.float64) for n in (6, 5))
    t = 2 * torch.randn(6, classes, generator=g, dtype=torch.float64)  # the frozen teacher's logits
    return x, torch.arange(6) % classes, x_q, torch.tensor([0, 2, 1, 1, 2]), t


def raw(alpha, temperature):
    return (torch.tensor(math.log(alpha / (1 - alpha)), dtype=torch.float64),
            torch.tensor(math.log((temperature - LO) / (HI - temperature)), dtype=torch.float64))


def hyper_at(alpha, temperature):
    return mat.AlphaTemperature(alpha, temperature, (LO, HI)).double()


# ----------------------------------------------------------------------------------------- checks

def check_hypergradient_matches_the_closed_form(alpha=0.6, temperature=3.0):
    student = nn.Linear(4, 3).double()
    torch.manual_seed(0)
    nn.init.normal_(student.weight)
    x, y, x_q, y_q, t = tiny_problem()
    quiz, grads = mat.hypergradient(student, t, x, y, x_q, y_q, hyper_at(alpha, temperature), lr=LAMBDA)
    l_q, expected = closed_form_hypergradient(student.weight.detach(), student.bias.detach(), t, x, y, x_q, y_q,
                                              *raw(alpha, temperature), LAMBDA)
    assert float(quiz) == pytest.approx(float(l_q), rel=1e-12), "the quiz loss is not CE at theta'"
    assert min(abs(float(g)) for g in expected) > 1e-5, "both hypergradients must be far from 0 in this check"
    error = relative_error(grads, expected)
    assert error < 1e-10, f"the hypergradient is off by {error:.2g} relative to the closed form"
    assert all(p.grad is None for p in student.parameters()), "the virtual step must not touch the real student"


def hand_algorithm_step(student, s_opt, a, b, meta_opt, batch, quiz, t, lr, meta_step=True):
    """One step by hand: Adam on (a, b) down the oracle's hypergradient, then the student's SGD step on the
    hand loss with the NEW alpha and T (pilot-update order)."""
    x, y = batch
    if meta_step:
        _, grads = autograd_hypergradient(student, t, x, y, *quiz, a, b, lr)
        a.grad, b.grad = grads
        meta_opt.step()
    with torch.no_grad():
        alpha, temperature = sigmoid(a), LO + (HI - LO) * sigmoid(b)
    s_opt.zero_grad()
    hand_loss(student(x), t, y, alpha, temperature).backward()
    s_opt.step()


class FrozenLogits(nn.Module):
    """A 'teacher' that returns fixed logits for the tiny problem's inputs."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits[: len(x)]


def check_one_step_is_the_algorithm(steps=2):
    x, y, x_q, y_q, t = tiny_problem()
    student, ref = tanh_net((4, 3, 3), 0), tanh_net((4, 3, 3), 0)
    method = mat.MetaAlphaTemperature(student, FrozenLogits(t), initial_alpha=0.6, initial_temperature=3.0,
                                      temperature_range=(LO, HI), meta_lr=0.05)
    method.configure(base.Recipe(lr=0.3, momentum=0.9, weight_decay=5e-4), None)
    method.quiz_stream, method.quiz_rng = iter([(x_q, y_q)] * steps), None
    a, b = (v.clone().requires_grad_() for v in raw(0.6, 3.0))
    s_opt = torch.optim.SGD(ref.parameters(), lr=0.3, momentum=0.9, weight_decay=5e-4)
    meta_opt = torch.optim.Adam([a, b], lr=0.05)
    for k in range(steps):  # two steps: Adam's and SGD's state matter in the second
        run = base.Run(seed=0, epochs=1, batch_size=6, recipe=None, generator=None, history=History(), lr=LAMBDA,
                       global_step=k)
        method.step(base.Batch(x, y, torch.arange(6)), run)
        hand_algorithm_step(ref, s_opt, a, b, meta_opt, (x, y), (x_q, y_q), t, LAMBDA)
    assert relative_error([method.hyper.a, method.hyper.b], [a, b]) < 1e-12, "(a, b) differ from the algorithm's"
    assert relative_error(list(student.parameters()), list(ref.parameters())) < 1e-12, "the student differs"
    assert abs(a.item() - raw(0.6, 3.0)[0]) > 1e-3, "alpha did not move"


def reference_fit(student, t_model, data, *, epochs, lr, batch_size, seed, quiz_batch, meta_every, meta_lr, init):
    """The algorithm by hand over epochs: batch order torch.randperm(seed), quiz batches from reshuffled full passes
    (seed + 7919), lr x (1 + cos(pi e / E)) / 2 for the student and the look-ahead, constant Adam."""
    split = split_quiz(data, 0.1, seed)
    train, n, n_q = split.train, split.train.num_train, split.num_quiz
    s_opt = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    a, b = (v.clone().requires_grad_() for v in raw(*init))
    meta_opt = torch.optim.Adam([a, b], lr=meta_lr)
    order_gen, quiz_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 7919)
    queue, step = [], 0
    for epoch in range(epochs):
        s_opt.param_groups[0]["lr"] = lam = lr * 0.5 * (1 + math.cos(math.pi * epoch / epochs))
        order = torch.randperm(n, generator=order_gen)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            x, y = train.x_train[idx], train.y_train[idx]
            quiz = None
            if step % meta_every == 0:
                if not queue:
                    perm = torch.randperm(n_q, generator=quiz_gen)
                    queue = [perm[i:i + quiz_batch] for i in range(0, n_q - n_q % quiz_batch, quiz_batch)]
                q = queue.pop(0)
                quiz = (split.x_quiz[q], split.y_quiz[q])
            with torch.no_grad():
                t = t_model(x)
            hand_algorithm_step(student, s_opt, a, b, meta_opt, (x, y), quiz, t, lam, meta_step=quiz is not None)
            step += 1
    return a, b


@pytest.fixture(scope="module")
def digits():
    return load("digits", train_size=100, seed=0)


def digits64():
    data = load("digits", train_size=100, seed=0)
    return type(data)(**{**data.__dict__, "x_train": data.x_train.double(), "x_test": data.x_test[:100].double(),
                         "y_test": data.y_test[:100]})


def check_fit_is_the_algorithm_over_epochs(meta_every=2):
    data = digits64()
    student, teacher = tanh_net((64, 8, 10), 0), tanh_net((64, 16, 10), 1).eval()
    ref = copy.deepcopy(student)
    method = mat.MetaAlphaTemperature(student, teacher, initial_alpha=0.7, initial_temperature=3.0,
                                      temperature_range=(LO, HI), meta_lr=0.1, meta_every=meta_every,
                                      quiz_batch_size=5)
    fit(method, data, epochs=2, lr=0.1, batch_size=16, seed=3, progress=False)
    a, b = reference_fit(ref, teacher, data, epochs=2, lr=0.1, batch_size=16, seed=3, quiz_batch=5,
                         meta_every=meta_every, meta_lr=0.1, init=(0.7, 3.0))
    assert relative_error([method.hyper.a, method.hyper.b], [a, b]) < 1e-9, "(a, b) differ from the algorithm's"
    assert relative_error(list(student.parameters()), list(ref.parameters())) < 1e-9, "the student differs"


def check_meta_steps_every_m(data, meta_every=3):
    torch.manual_seed(0)
    method = mat.MetaAlphaTemperature(MLP(64, (8,), 10), MLP(64, (16,), 10), meta_every=meta_every, quiz_batch_size=10)
    history = fit(method, data, epochs=2, batch_size=30, progress=False)
    expected = [g + 1 for g in range(history.global_steps) if g % meta_every == 0]  # global steps 0, M, 2M, ...
    assert [r["step"] for r in history.steps] == expected, "meta steps are not every M-th step from the first"


def check_alpha_and_t_stay_in_range(data):
    """A huge meta lr drives (a, b) far: alpha stays in [0, 1] and T in [lo, hi] at every meta step."""
    torch.manual_seed(0)
    method = mat.MetaAlphaTemperature(MLP(64, (8,), 10), MLP(64, (16,), 10), temperature_range=(2.0, 6.0),
                                      meta_lr=5.0, quiz_batch_size=10)
    history = fit(method, data, epochs=2, batch_size=30, progress=False)
    alphas, temperatures = history.step_series("alpha"), history.step_series("temperature")
    assert all(0 <= v <= 1 for v in alphas), f"alpha left [0, 1]: {min(alphas)}, {max(alphas)}"
    assert all(2.0 <= v <= 6.0 for v in temperatures), f"T left [2, 6]: {min(temperatures)}, {max(temperatures)}"
    assert max(abs(method.hyper.a.item()), abs(method.hyper.b.item())) > 5, "the check must push (a, b) far"


# ----------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("alpha,temperature", [(0.6, 3.0), (0.9, 8.0)])
def test_hypergradient_matches_the_hand_derived_closed_form(alpha, temperature):
    check_hypergradient_matches_the_closed_form(alpha, temperature)


def test_closed_form_oracle_matches_finite_differences():
    W, c = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(5)), torch.zeros(3).double()
    x, y, x_q, y_q, t = tiny_problem()
    a, b = raw(0.6, 3.0)
    numeric = finite_differences(lambda: closed_form_quiz(W, c, t, x, y, x_q, y_q, a, b, LAMBDA)[0], [a, b])
    _, oracle = closed_form_hypergradient(W, c, t, x, y, x_q, y_q, a, b, LAMBDA)
    assert relative_error(oracle, numeric) < 1e-7


def test_hypergradient_matches_finite_differences_and_plain_torch():
    """A tanh student (float64): kdlab's hypergradient = plain-torch double backprop = central differences."""
    student = tanh_net((4, 3, 3), 0)
    x, y, x_q, y_q, t = tiny_problem(2)
    hyper = hyper_at(0.7, 4.0)
    _, grads = mat.hypergradient(student, t, x, y, x_q, y_q, hyper, lr=LAMBDA)
    W = [p.detach() for p in student.parameters()]
    a, b = (p.detach().clone() for p in (hyper.a, hyper.b))

    @torch.enable_grad()
    def quiz():
        Wg = [w.clone().requires_grad_() for w in W]
        g = torch.autograd.grad(hand_loss(mlp(Wg, x), t, y, sigmoid(a), LO + (HI - LO) * sigmoid(b)), Wg)
        return hand_ce(mlp([w - LAMBDA * gi for w, gi in zip(W, g)], x_q), y_q)

    numeric = finite_differences(quiz, [a, b])
    assert min(abs(float(g)) for g in numeric) > 1e-6
    assert relative_error(grads, numeric) < 1e-6
    assert relative_error(grads, autograd_hypergradient(student, t, x, y, x_q, y_q, a, b, LAMBDA)[1]) < 1e-10


def test_one_step_is_the_algorithm():
    check_one_step_is_the_algorithm()


def test_fit_is_the_algorithm_over_epochs():
    check_fit_is_the_algorithm_over_epochs()


def test_meta_steps_every_m(digits):
    check_meta_steps_every_m(digits)


def test_alpha_and_t_stay_in_their_ranges(digits):
    check_alpha_and_t_stay_in_range(digits)
    for a, b in ((-1e4, 1e4), (1e4, -1e4), (0.0, 0.0)):
        hyper = hyper_at(0.5, 4.0)
        with torch.no_grad():
            hyper.a.fill_(a), hyper.b.fill_(b)
        alpha, temperature = hyper()
        assert 0 <= alpha.item() <= 1 and LO <= temperature.item() <= HI


def test_trains_with_fit_and_logs_alpha_and_t_per_epoch(digits):
    torch.manual_seed(0)
    method = mat.MetaAlphaTemperature(MLP(64, (8,), 10), MLP(64, (16,), 10), meta_lr=0.05, quiz_batch_size=10)
    history = fit(method, digits, epochs=3, batch_size=30, progress=False)
    alphas, temperatures = history.series("alpha"), history.series("temperature")
    assert len(alphas) == len(temperatures) == 3 and all(0 < v < 1 for v in alphas) and all(
        LO < v < HI for v in temperatures)
    assert len(set(alphas)) == 3 and len(set(temperatures)) == 3, "alpha and T did not move"
    assert len(history.steps) == history.global_steps and all("test_acc" in r for r in history.records)
    last = history.steps[-1]
    assert method.alpha_temperature() == pytest.approx((last["alpha"], last["temperature"]), rel=1e-6)


@pytest.mark.parametrize("kwargs,name", [
    ({"initial_alpha": 1.0}, "initial_alpha"), ({"initial_alpha": 0}, "initial_alpha"),
    ({"temperature_range": (4.0, 2.0)}, "TEMPERATURE_RANGE"), ({"initial_temperature": 25.0}, "initial_temperature"),
    ({"meta_every": 0}, "META_EVERY"), ({"meta_lr": 0.0}, "META_LR"), ({"quiz_fraction": 1.0}, "QUIZ_FRACTION")])
def test_bad_parameters_are_refused_by_name(kwargs, name):
    with pytest.raises(ParameterError, match=f"^{name}="):
        mat.MetaAlphaTemperature(MLP(4, (3,), 3), MLP(4, (3,), 3), **kwargs)


# ----------------------------------------------------------------------------------------- planted bugs

_virtual, _meta_update, _quiz = mat.virtual_step, mat.meta_update, mat.quiz_loss


def _first_order(student, teacher_logits, x, y, alpha, temperature, lr):
    params = meta.params_of(student)
    losses = mat.distillation_loss(meta.forward(student, params, x), teacher_logits, y, alpha, temperature)
    return meta.lookahead(student, params, losses["loss"], lr, create_graph=False)


def _detached_hyperparameters(student, teacher_logits, x, y, alpha, temperature, lr):
    return _virtual(student, teacher_logits, x, y, alpha.detach(), temperature.detach(), lr)


def _temperature_detached(student, teacher_logits, x, y, alpha, temperature, lr):  # T taken for a constant
    return _virtual(student, teacher_logits, x, y, alpha, temperature.detach(), lr)


def _kd_objective_as_quiz(student, fast, x_q, y_q):
    return F.cross_entropy(meta.forward(student, fast, x_q), y_q) + 0.5 * meta.forward(student, fast, x_q).pow(2).mean()


def _original_step_order_swapped(self, batch, run):  # the student steps with the OLD alpha and T, then the meta step
    with torch.no_grad():
        teacher_logits = self.teacher(batch.x)
    alpha, temperature = (v.detach() for v in self.hyper())
    losses = mat.distillation_loss(self.model(batch.x), teacher_logits, batch.y, alpha, temperature)
    out = self.descend(losses, self.optimizer, run)
    if mat.meta_step_due(run.global_step, self.meta_every):
        x_q, y_q = next(self.quiz_stream)
        _, grads = mat.hypergradient(self.model, teacher_logits, batch.x, batch.y, x_q, y_q, self.hyper, lr=run.lr)
        mat.meta_update(self.hyper, self.meta_optimizer, grads)
    return out


def _ascent(hyper, optimizer, grads):
    _meta_update(hyper, optimizer, [-g for g in grads])


def _unsquashed(self):
    return self.a, self.range[0] + (self.range[1] - self.range[0]) * self.b


def _quiz_is_the_training_batch(self, batch, run):
    self.quiz_stream = iter(lambda: (batch.x, batch.y), None)
    return _step(self, batch, run)


_step = mat.MetaAlphaTemperature.step


class _FixedLookahead:
    """Patches `hypergradient` so that the look-ahead lr stays at the recipe's initial lr (no schedule)."""

    def __init__(self):
        self.first = None

    def __call__(self, *args, lr):
        self.first = lr if self.first is None else self.first
        return _hypergradient(*args, lr=self.first)


_hypergradient = mat.hypergradient

MUTANTS = {
    "first-order virtual step (create_graph=False)": (lambda: patch.object(mat, "virtual_step", _first_order),
                                                      check_hypergradient_matches_the_closed_form),
    "alpha and T detached in the virtual step": (lambda: patch.object(mat, "virtual_step", _detached_hyperparameters),
                                                 check_hypergradient_matches_the_closed_form),
    "T alone detached in the virtual step": (lambda: patch.object(mat, "virtual_step", _temperature_detached),
                                             check_hypergradient_matches_the_closed_form),
    "quiz loss at theta instead of theta'": (
        lambda: patch.object(mat, "quiz_loss", lambda student, fast, x_q, y_q: _quiz(student, {}, x_q, y_q)),
        check_hypergradient_matches_the_closed_form),
    "quiz loss is not the plain CE": (lambda: patch.object(mat, "quiz_loss", _kd_objective_as_quiz),
                                      check_hypergradient_matches_the_closed_form),
    "student steps before the meta step (pilot order swapped)": (
        lambda: patch.object(mat.MetaAlphaTemperature, "step", _original_step_order_swapped),
        check_one_step_is_the_algorithm),
    "meta step ascends the quiz loss": (lambda: patch.object(mat, "meta_update", _ascent),
                                        check_one_step_is_the_algorithm),
    "meta step skipped": (lambda: patch.object(mat, "meta_update", lambda hyper, opt, grads: None),
                          check_one_step_is_the_algorithm),
    "alpha and T not squashed into their ranges": (
        lambda: patch.object(mat.AlphaTemperature, "forward", _unsquashed),
        lambda: check_alpha_and_t_stay_in_range(load("digits", train_size=100, seed=0))),
    "meta steps off by one (global steps M - 1, 2M - 1, ...)": (
        lambda: patch.object(mat, "meta_step_due", lambda g, m: (g + 1) % m == 0),
        lambda: check_meta_steps_every_m(load("digits", train_size=100, seed=0))),
    "quiz batch drawn from the training batch": (
        lambda: patch.object(mat.MetaAlphaTemperature, "step", _quiz_is_the_training_batch),
        check_fit_is_the_algorithm_over_epochs),
    "look-ahead lr not on the student's schedule": (lambda: patch.object(mat, "hypergradient", _FixedLookahead()),
                                                    check_fit_is_the_algorithm_over_epochs),
}


@pytest.mark.parametrize("name", MUTANTS)
def test_planted_meta_alpha_temperature_bug_is_caught(name):
    mutant, check = MUTANTS[name]
    assert_caught(check, mutant)
