"""MMKD against an oracle written from the equations (E1-E11 of kdlab.methods.mmkd) in plain torch: no
kdlab.meta, no kit loss, no kit weight function. Then planted bugs: each must make one of these checks
fail by an assertion.

The oracle replays, for a tiny float64 problem, the real student step (E1-E9, SGD with momentum and weight
decay), and the meta step: R virtual rounds from the optimizer's momentum buffers (R - 1 matching rounds
where phi enters, then one CE round), the hard-batch CE, its gradient with respect to phi, and Adam.
"""
import copy
from unittest.mock import patch

import pytest
import torch
from torch.func import functional_call

from kdlab import meta
from kdlab.data.base import DataSplits
from kdlab.data.hard_buffer import HardBuffer
from kdlab.gradcheck import finite_differences, relative_error
from kdlab.methods import mmkd
from kdlab.methods.base import Batch, Recipe, Run
from kdlab.models import MLP

from ..mutation import assert_caught
from .test_mmkd import tiny_setup

OPTIONS = dict(temperature=2.0, alpha=0.7, beta=3.0, gamma=1.3)   # every weight != 1, so a swap shows
LR, MOMENTUM, DECAY = 0.3, 0.9, 0.01


# ------------------------------------------------------------------------------ the oracle, from E1-E11

def outputs(student, theta, x, num_teachers):
    """z^s, F^s and r_k(F^s) = relu(W_k F^s + b_k) at the parameters `theta` (names of the wrapper)."""
    own = {n[len("student."):]: t for n, t in theta.items() if n.startswith("student.")}
    logits, features = functional_call(student, own, (x,), {"return_features": True})
    f = features[-1]
    aligned = [torch.relu(f @ theta[f"regressors.{k}.body.0.weight"].t() + theta[f"regressors.{k}.body.0.bias"])
               for k in range(num_teachers)]
    return logits, f, aligned


def weight_net(phi, name, a):
    """E3 / E6: softmax(W2 relu(W1 a + b1) + b2)."""
    h = torch.relu(a @ phi[f"{name}.fc1.weight"].t() + phi[f"{name}.fc1.bias"])
    return torch.softmax(h @ phi[f"{name}.fc2.weight"].t() + phi[f"{name}.fc2.bias"], dim=-1)


def gram(f):
    """E5 with rows L2-normalised (a zero row stays zero)."""
    g = f.flatten(1) @ f.flatten(1).t()
    return g / g.norm(dim=1, keepdim=True).clamp_min(1e-12)


def cross_entropy(logits, y):
    return -torch.log_softmax(logits, dim=-1)[torch.arange(len(y)), y].mean()


def training_loss(student, theta, phi, batch, o, matching_only=False):
    """E9 (E1-E8), or alpha L_logit + beta L_feat for the virtual matching rounds (E10)."""
    x, y, t_logits, *t_feats = batch
    k = t_logits.shape[1]
    logits, f, aligned = outputs(student, theta, x, k)
    a = torch.cat([t_logits.flatten(1), logits.detach()], dim=1)                     # E3: sg(z^s)
    b = torch.cat([gram(t) for t in t_feats] + [gram(f.detach())], dim=1)            # E6: sg(G^s)
    w_logit, w_feat = weight_net(phi, "logit_net", a), weight_net(phi, "feature_net", b)
    tau = o["temperature"]
    log_p_s = torch.log_softmax(logits / tau, dim=-1)
    kd = torch.stack([tau**2 * (torch.softmax(t_logits[:, j] / tau, -1) * (torch.log_softmax(t_logits[:, j] / tau, -1)
                                                                            - log_p_s)).sum(-1) for j in range(k)], 1)
    mse = torch.stack([(aligned[j] - t_feats[j]).pow(2).mean(1) for j in range(k)], 1)
    loss = o["alpha"] * (w_logit * kd).sum(1).mean() + o["beta"] * (w_feat * mse).sum(1).mean()
    return loss if matching_only else loss + o["gamma"] * cross_entropy(logits, y)


def sgd(theta, velocity, loss, create_graph):
    """torch.optim.SGD's rule: d = g + wd p; v = d (first) or mu v + d; p - lr v (unused entries skipped)."""
    names = list(theta)
    grads = torch.autograd.grad(loss, [theta[n] for n in names], create_graph=create_graph, allow_unused=True)
    theta, velocity = dict(theta), dict(velocity)
    for n, g in zip(names, grads):
        if g is not None:
            d = g + DECAY * theta[n]
            velocity[n] = d if velocity.get(n) is None else MOMENTUM * velocity[n] + d
            theta[n] = theta[n] - LR * velocity[n]
    return theta, velocity


def hypergradient(student, theta0, velocity0, phi0, hard, o, rounds):
    """E10-E11: (L_meta, dL_meta/dphi) after R rounds from theta0 and the momentum buffers velocity0."""
    phi = {n: p.detach().clone().requires_grad_() for n, p in phi0.items()}
    theta = {n: p.detach().clone().requires_grad_() for n, p in theta0.items()}
    velocity = {n: v.detach().clone() for n, v in velocity0.items()}
    k = hard[2].shape[1]
    for r in range(rounds):
        loss = (training_loss(student, theta, phi, hard, o, matching_only=True) if r < rounds - 1
                else cross_entropy(outputs(student, theta, hard[0], k)[0], hard[1]))
        theta, velocity = sgd(theta, velocity, loss, create_graph=True)
    meta_loss = cross_entropy(outputs(student, theta, hard[0], k)[0], hard[1])
    return meta_loss, list(torch.autograd.grad(meta_loss, list(phi.values())))


def named(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def grads_or_zeros(tensors, grads):
    return [torch.zeros_like(t) if g is None else g for t, g in zip(tensors, grads)]


# ------------------------------------------------------------------------------ the checks

def check_hypergradient_matches_the_oracle(rounds=2):
    """mmkd.meta_objective's hypergradient (both nets, non-zero momentum buffers, weight decay) equals
    the oracle's, for R = 2 (exact) and R = 3 (the code's detached-input approximation, written out)."""
    wrapper, _, nets, batch, s = tiny_setup(seed=3, **OPTIONS)   # a seed where no hidden unit of phi is dead
    g = torch.Generator().manual_seed(5)
    velocity = {n: 0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in wrapper.named_parameters()}
    loss, _ = mmkd.meta_objective(wrapper, nets, batch, s, lr=LR, momentum=MOMENTUM, weight_decay=DECAY,
                                  velocity=velocity, virtual_steps=rounds)
    phi = list(nets.parameters())
    grads = grads_or_zeros(phi, torch.autograd.grad(loss, phi, allow_unused=True))
    expected_loss, expected = hypergradient(wrapper.student, named(wrapper), velocity, named(nets), batch,
                                            OPTIONS, rounds)
    assert all(float(e.abs().sum()) > 0 for e in expected), "every tensor of both nets gets a hypergradient"
    assert abs(loss.item() - expected_loss.item()) <= 1e-12 * abs(expected_loss.item()), "L_meta is not the oracle's"
    assert relative_error(grads, expected) <= 1e-10, "the hypergradient is not the oracle's"


def check_hypergradient_matches_finite_differences():
    """R = 2: autograd's hypergradient of the method's own meta objective equals central differences."""
    wrapper, _, nets, batch, s = tiny_setup(seed=3, **OPTIONS)   # a seed where no hidden unit of phi is dead
    g = torch.Generator().manual_seed(6)
    velocity = {n: 0.1 * torch.randn(p.shape, generator=g, dtype=p.dtype) for n, p in wrapper.named_parameters()}

    def objective():
        with torch.enable_grad():   # finite_differences calls it under no_grad; the unroll needs autograd
            return mmkd.meta_objective(wrapper, nets, batch, s, lr=LR, momentum=MOMENTUM, weight_decay=DECAY,
                                       velocity=velocity, virtual_steps=2)[0]

    phi = list(nets.parameters())
    analytic = grads_or_zeros(phi, torch.autograd.grad(objective(), phi, allow_unused=True))
    numeric = finite_differences(objective, phi)
    assert relative_error(numeric, analytic) == relative_error(numeric, analytic), "phi gets no hypergradient"
    assert relative_error(analytic, numeric) <= 1e-6, "the hypergradient is not the finite differences'"


def toy_problem(n=16, batch=4):
    """A float64 MMKD on 16 samples in batches of 4, configured and prepared as `fit` does."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, 4, generator=g, dtype=torch.float64)
    y = torch.arange(n) % 3
    data = DataSplits("toy", x, y, x[:4], y[:4], 3, (4,))
    torch.manual_seed(1)
    student = MLP(4, hidden=(5,), num_classes=3).double()
    teachers = [MLP(4, hidden=(6,), num_classes=3).double() for _ in range(2)]
    method = mmkd.MMKD(student, teachers, meta_every=3, buffer_size=8, virtual_steps=3, meta_lr=0.01, **OPTIONS)
    run = Run(seed=0, epochs=1, batch_size=batch, recipe=Recipe(LR, "sgd", MOMENTUM, DECAY), generator=g)
    method.configure(run.recipe, run)
    method.prepare(data, run)
    method.train()
    method.on_epoch_start(run)
    return method, data, run


def check_training_steps_match_the_oracle():
    """Four steps of MMKD.step (meta steps at global steps 0 and 3) against the oracle: the real step
    moves theta by SGD on E9 with frozen weights and leaves phi and its gradient alone; a meta step draws
    one hard batch from the buffer and gives phi the oracle's hypergradient and Adam step."""
    method, data, run = toy_problem()
    order = torch.randperm(16, generator=torch.Generator().manual_seed(3))
    teachers, student = method.teachers, method.wrapper.student
    for step in range(4):
        index = order[4 * step:4 * step + 4]
        x, y = data.x_train[index], data.y_train[index]
        theta0, phi0 = named(method.wrapper), named(method.nets)
        velocity0 = {n: method.optimizer.state[p]["momentum_buffer"].clone()
                     for n, p in method.wrapper.named_parameters() if p in method.optimizer.state}
        grad0 = [None if p.grad is None else p.grad.clone() for p in method.nets.parameters()]
        adam = copy.deepcopy(method.meta_optimizer.state_dict())
        drawn, sample = [], HardBuffer.sample

        def spy(buffer):
            drawn.append(sample(buffer))
            return drawn[-1]

        run.global_step = step
        with patch.object(HardBuffer, "sample", spy):
            method.step(Batch(x, y, index), run)
        with torch.no_grad():                                            # the teachers, straight from x
            t_logits = torch.stack([t(x) for t in teachers], dim=1)
            t_feats = [t(x, return_features=True)[1][-1] for t in teachers]
        theta = {n: p.clone().requires_grad_() for n, p in theta0.items()}
        loss = training_loss(student, theta, phi0, (x, y, t_logits, *t_feats), OPTIONS)
        theta1, velocity1 = sgd(theta, velocity0, loss, create_graph=False)
        assert relative_error(list(named(method.wrapper).values()), list(theta1.values())) <= 1e-12, \
            "theta after the real step is not SGD (momentum, weight decay) on E9 with frozen weights"
        phi = list(method.nets.parameters())
        if step % 3:
            assert not drawn, "a meta batch was drawn on a step without a meta step"
            assert all(torch.equal(p, phi0[n]) for n, p in method.nets.named_parameters()), "phi moved"
            same = [(a is None and p.grad is None) or (a is not None and p.grad is not None and torch.equal(a, p.grad))
                    for a, p in zip(grad0, phi)]
            assert all(same), "the real step gave phi a gradient"
            continue
        assert len(drawn) == 1, "the meta batch must be drawn from the hard buffer"
        assert not torch.equal(drawn[0][0], x) or step == 0
        _, expected = hypergradient(student, theta1, velocity1, phi0, drawn[0], OPTIONS, rounds=3)
        assert relative_error(grads_or_zeros(phi, [p.grad for p in phi]), expected) <= 1e-9, \
            "phi's gradient is not the oracle's hypergradient (from the optimizer's momentum buffers)"
        reference = [phi0[n].clone().requires_grad_() for n, _ in method.nets.named_parameters()]
        adam_step = torch.optim.Adam(reference, lr=0.01, weight_decay=method.meta_weight_decay)
        adam_step.load_state_dict(adam)
        for r, e in zip(reference, expected):
            r.grad = e
        adam_step.step()
        assert relative_error(phi, reference) <= 1e-12, "phi is not Adam's step down the hypergradient"


def check_buffer_keeps_the_hard_samples():
    """E12: whole batches until full, then exactly the misclassified samples replace slots."""
    buffer = HardBuffer(capacity=6, batch_size=4, seed=0)
    ids = lambda: set(buffer.store[0][:len(buffer)].long().tolist())  # noqa: E731
    right = torch.zeros(4, dtype=torch.bool)
    assert buffer.put((torch.arange(4.0), torch.arange(4)), right) == 4
    assert buffer.put((torch.arange(4.0, 8.0), torch.arange(4)), right) == 2 and ids() == set(range(6))
    wrong = torch.tensor([True, False, True, True])
    assert buffer.put((torch.arange(100.0, 104.0), torch.arange(4)), wrong) == 3
    assert {100, 102, 103} <= ids() and 101 not in ids() and len(ids()) == 6
    x, _ = buffer.sample()
    assert len(set(x.tolist())) == 4 and set(x.long().tolist()) <= ids()


# ------------------------------------------------------------------------------ the checks pass as written

@pytest.mark.parametrize("rounds", [2, 3])
def test_hypergradient_matches_the_oracle(rounds):
    check_hypergradient_matches_the_oracle(rounds)


def test_hypergradient_matches_finite_differences():
    check_hypergradient_matches_finite_differences()


def test_training_steps_match_the_oracle():
    check_training_steps_match_the_oracle()


def test_buffer_keeps_the_hard_samples():
    check_buffer_keeps_the_hard_samples()


# ------------------------------------------------------------------------------ planted bugs

_real_virtual_losses = mmkd.virtual_losses


def _with(name, **changes):
    real = getattr(meta, name)
    return lambda *args, **kwargs: real(*args, **{**kwargs, **changes})


def _undetached_logit_input(teacher_logits, student_logits, mode="logits", temperature=4.0):
    parts = torch.cat([teacher_logits, student_logits.unsqueeze(1)], dim=1)
    return (torch.softmax(parts / temperature, dim=-1) if mode == "probs" else parts).flatten(1)


def _undetached_feature_input(teacher_features, student_feature, gram="normalized"):
    return torch.cat([mmkd.similarity_matrix(f, gram == "normalized") for f in [*teacher_features, student_feature]], 1)


def _ascending_update(nets, meta_optimizer, grads):
    meta_optimizer.zero_grad(set_to_none=True)
    for p, g in zip(nets.parameters(), grads):
        p.grad = None if g is None else -g
    meta_optimizer.step()


def _climbing_matching(nets, s, rounds):
    losses = _real_virtual_losses(nets, s, rounds)
    return [(lambda *args, f=f: -f(*args)) for f in losses[:-1]] + losses[-1:]


def _never_replacing(self, samples, wrong):
    return 0


_real_teacher_rows = mmkd.teacher_rows
_real_teacher_weights = mmkd.teacher_weights
_real_similarity = mmkd.similarity_matrix

MUTANTS = {
    "meta step ignores the optimizer's momentum buffers (velocity=None)":
        (lambda: patch.object(mmkd, "momentum_buffers", lambda optimizer, model: None),
         check_training_steps_match_the_oracle),
    "meta batch drawn from the current batch, not the hard buffer":
        (lambda: patch.object(mmkd, "meta_batch", lambda buffer, batch: batch), check_training_steps_match_the_oracle),
    "first-order unroll (no create_graph)":
        (lambda: patch.object(mmkd, "unrolled_sgd", _with("unrolled_sgd", first_order=True)),
         check_hypergradient_matches_the_oracle),
    "student logits not detached in the logit net's input (E3)":
        (lambda: patch.object(mmkd, "logit_net_input", _undetached_logit_input),
         check_hypergradient_matches_the_oracle),
    "student Gram matrix not detached in the feature net's input (E6)":
        (lambda: patch.object(mmkd, "feature_net_input", _undetached_feature_input),
         check_hypergradient_matches_the_oracle),
    "weights computed with grad in the real student step":
        (lambda: patch.object(mmkd, "frozen_weights", _real_teacher_weights), check_training_steps_match_the_oracle),
    "hard buffer never replaces misclassified samples (E12)":
        (lambda: patch.object(HardBuffer, "replace", _never_replacing), check_buffer_keeps_the_hard_samples),
    "virtual CE round replaced by a matching round (E10)":
        (lambda: patch.object(mmkd, "virtual_losses", lambda nets, s, r: _real_virtual_losses(nets, s, r)[:1] * r),
         check_hypergradient_matches_the_oracle),
    "sign flipped: phi ascends the meta loss (E11)":
        (lambda: patch.object(mmkd, "meta_update", _ascending_update), check_training_steps_match_the_oracle),
    "sign flipped: the virtual matching rounds climb the distillation loss (E10)":
        (lambda: patch.object(mmkd, "virtual_losses", _climbing_matching), check_hypergradient_matches_the_oracle),
    "weight decay dropped from the virtual rounds":
        (lambda: patch.object(mmkd, "unrolled_sgd", _with("unrolled_sgd", weight_decay=0.0)),
         check_hypergradient_matches_the_oracle),
    "matching rounds replaced by CE rounds: phi never enters (E10)":
        (lambda: patch.object(mmkd, "virtual_losses", lambda nets, s, r: _real_virtual_losses(nets, s, r)[-1:] * r),
         check_hypergradient_matches_finite_differences),
    "KD term skipped (E4)":
        (lambda: patch.object(mmkd, "per_teacher_kd", lambda s, t, tau: torch.zeros(t.shape[:2], dtype=s.dtype)),
         check_training_steps_match_the_oracle),
    "feature term skipped (E8)":
        (lambda: patch.object(mmkd, "per_teacher_feature_mse",
                              lambda fs, ft: torch.zeros(len(fs[0]), len(fs), dtype=fs[0].dtype)),
         check_training_steps_match_the_oracle),
    "cached teacher outputs of the wrong rows":
        (lambda: patch.object(mmkd, "teacher_rows", lambda cache, i: _real_teacher_rows(cache, i.sort().values)),
         check_training_steps_match_the_oracle),
    "Gram matrix left unnormalised by default (E5)":
        (lambda: patch.object(mmkd, "similarity_matrix", lambda f, normalize=True: _real_similarity(f, False)),
         check_hypergradient_matches_the_oracle),
}


@pytest.mark.parametrize("name", MUTANTS)
def test_planted_bug_is_caught(name):
    mutant, check = MUTANTS[name]
    assert_caught(check, mutant)
