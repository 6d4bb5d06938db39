"""kdlab.methods.maml.MAML against Finn et al. (2017), written independently, and its planted bugs.

The oracle is MAML (Eqs. 1-2, Algorithm 2) for a linear softmax classifier in plain torch: the inner
gradient in closed form, the meta-gradient by autograd through it, checked itself against central finite
differences (kdlab.gradcheck, float64), and Adam written out. `fit_episodes(MAML(...))` must reproduce it.
"""
from unittest.mock import patch

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from kdlab.errors import ParameterError
from kdlab.gradcheck import finite_differences, relative_error
from kdlab.methods import maml
from kdlab.methods.maml import MAML
from kdlab.train import fit_episodes
from tests.mutation import assert_caught
from tests.unit.test_tsmd import adam_by_hand, cross_entropy, linear, linear_task, sgd

STEPS, LR = 2, 0.5


def maml_objective(W, b, tasks, first_order=False):
    """Eq. 2's objective, the mean over tasks of the query loss after STEPS steps of Eq. 1 (closed form)."""
    total = 0.0
    for x_s, y_s, x_q, y_q in tasks:
        theta = (W, b)
        for _ in range(STEPS):
            dz = (torch.softmax(x_s @ theta[0].T + theta[1], 1) - F.one_hot(y_s, 3).double()) / len(y_s)
            step = sgd(theta, x_s, dz, LR)
            theta = tuple(t + (s - t).detach() for t, s in zip(theta, step)) if first_order else step
        total = total + cross_entropy(x_q @ theta[0].T + theta[1], y_q) / len(tasks)
    return total


def maml_gradient(W, b, tasks, first_order=False):
    leaves = [W.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()]
    loss = maml_objective(*leaves, tasks, first_order)
    return list(torch.autograd.grad(loss, leaves)), float(loss.detach())


def test_the_oracle_is_eq_2_by_finite_differences():
    net, tasks = linear(1), [linear_task(1), linear_task(2)]
    grads, _ = maml_gradient(net.weight, net.bias, tasks)
    numeric = finite_differences(lambda: maml_objective(net.weight, net.bias, tasks), [net.weight, net.bias])
    assert relative_error(grads, numeric) < 1e-7
    first, _ = maml_gradient(net.weight, net.bias, tasks, first_order=True)
    assert relative_error(first, numeric) > 1e-2  # FOMAML is a different (approximate) gradient


def check_maml_is_the_paper(first_order=False):
    """Two meta-iterations of fit_episodes(MAML): the .grad of each is Eq. 2's meta-gradient, the weights are
    Adam's, the records are the mean query loss and accuracy of the adapted models."""
    net, tasks = linear(1), [linear_task(i) for i in range(4)]
    history = fit_episodes(MAML(net, inner_steps=STEPS, inner_lr=LR, meta_lr=0.02, first_order=first_order),
                           iter(tasks), iterations=2, meta_batch=2, log_every=1)
    theta, state = [p.detach() for p in linear(1).parameters()], {}
    for it in (1, 2):
        grads, loss = maml_gradient(*theta, tasks[2 * it - 2:2 * it], first_order)
        assert abs(history.records[it - 1]["query_loss"] - loss) < 1e-12, f"iteration {it}: the query loss"
        theta = adam_by_hand(theta, grads, state, 0.02, it)
    error = relative_error([net.weight.grad, net.bias.grad], grads)
    assert error < 1e-10, f"the last meta-gradient is off by {error:.2e}"
    error = max(float((p.detach() - q).abs().max()) for p, q in zip((net.weight, net.bias), theta))
    assert error < 1e-12, f"the weights after two meta-iterations are off by {error:.2e}"
    assert set(history.last) >= {"iteration", "loss", "query_loss", "query_acc"}
    assert 0 <= history.last["query_acc"] <= 100


def test_maml_is_the_paper():
    check_maml_is_the_paper()


def test_first_order_maml_is_fomaml():
    check_maml_is_the_paper(first_order=True)


def test_regression_loss_reports_no_accuracy_and_follows_meta_maml_step():
    from kdlab import meta
    from kdlab.lessons.maml import sine_net, sinusoid_sampler

    net, reference = sine_net(0), sine_net(0)
    history = fit_episodes(MAML(net, inner_lr=0.01, loss=F.mse_loss), sinusoid_sampler(5, seed=3), iterations=2,
                           meta_batch=3, log_every=1)
    assert "query_acc" not in history.last
    opt, sampler = torch.optim.Adam(reference.parameters(), lr=1e-3), sinusoid_sampler(5, seed=3)
    for _ in range(2):
        opt.zero_grad()
        meta.maml_step(reference, [next(sampler) for _ in range(3)], steps=1, lr=0.01, inner_loss=F.mse_loss,
                       query_loss=F.mse_loss)
        opt.step()
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), reference.state_dict().values()))


@pytest.mark.parametrize("first_order", [False, True])
def test_the_notebooks_sinusoid_maml_in_one_call_is_its_fit_and_gives_it_in_a_worker(first_order):
    """Notebook 02 meta-trains its first-order sinusoid model with `sine_maml` in another process: the network
    its explicit `fit_episodes(MAML(...))` gives, bit for bit, there as here."""
    import functools

    from kdlab import parallel
    from kdlab.lessons.maml import sine_maml, sine_net, sinusoid_sampler

    knobs = dict(iterations=6, meta_lr=1e-2, first_order=first_order, meta_batch=3, shots=5)
    net, history, seconds = sine_maml(4, **knobs)
    reference = sine_net(4)
    fit_episodes(MAML(reference, inner_steps=1, inner_lr=0.01, meta_lr=1e-2, first_order=first_order,
                      loss=F.mse_loss), sinusoid_sampler(5, seed=4), iterations=6, meta_batch=3)
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), reference.state_dict().values()))
    assert history.last["iteration"] == 6 and seconds > 0
    there, _, _ = parallel.start(functools.partial(sine_maml, 4, **knobs), workers=2).result()
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), there.state_dict().values()))
    other, _, _ = sine_maml(4, **{**knobs, "first_order": not first_order})
    assert not all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), other.state_dict().values())), \
        "first_order must change the run"


def test_the_notebooks_lab_in_one_call_is_its_lab_and_runs_after_another_call_in_one_worker():
    """Notebook 02 queues `sinusoid_lab` behind its 5-shot model in one worker (`parallel.in_turn`): the lab's
    numbers (timings aside) are those of `meta_gradient_lab` on the network and task the notebook built by hand,
    and the queued calls come back in order."""
    import functools

    from kdlab import parallel
    from kdlab.lessons.maml import meta_gradient_lab, sine_maml, sine_net, sinusoid_lab, sinusoid_tasks

    def numbers(rows):
        return [{k: v for k, v in row.items() if not k.endswith("_ms")} for row in rows]

    net = sine_net(3).double()   # seed 2's lab: sine_net(seed + 1), a task drawn with the seed
    task = [t.double() if torch.is_tensor(t) else t for t in sinusoid_tasks(1, 10, torch.Generator().manual_seed(2))[0]]
    by_hand = meta_gradient_lab(net, task, steps_list=[1], lr=0.01)
    assert numbers(sinusoid_lab(2, steps_list=[1], lr=0.01)) == numbers(by_hand)
    maml_knobs = dict(iterations=3, meta_lr=1e-2, meta_batch=2, shots=5)
    (trained, _, _), lab = parallel.start(functools.partial(parallel.in_turn, [
        functools.partial(sine_maml, 4, **maml_knobs), functools.partial(sinusoid_lab, 2, steps_list=[1], lr=0.01)]),
        workers=2).result()
    assert numbers(lab) == numbers(by_hand)
    assert all(torch.equal(a, b) for a, b in zip(trained.state_dict().values(),
                                                 sine_maml(4, **maml_knobs)[0].state_dict().values()))
    assert numbers(sinusoid_lab(3, steps_list=[1], lr=0.01)) != numbers(by_hand), "the seed must matter"


def test_the_method_reports_its_model_and_card():
    net = nn.Linear(4, 3).double()
    method = MAML(net)
    assert method.model is net and method.optimizers() == [method.optimizer]
    assert {"paper", "equations", "detached", "order", "loop"} <= set(MAML.card) and MAML.card["loop"] == "episodes"
    result = method.evaluate([linear_task(1)])
    assert 0 <= result["accuracy"] <= 1


@pytest.mark.parametrize("knobs, match", [
    (dict(inner_lr=-0.1), r"^INNER_LR=-0\.1 is not allowed"),
    (dict(meta_lr=0.0), r"^META_LR=0\.0 is not allowed"),
    (dict(inner_steps=1.5), r"^INNER_STEPS=1\.5 is not allowed"),
    (dict(bn="group"), r"^bn='group' is not allowed"),
])
def test_bad_knobs_are_refused(knobs, match):
    with pytest.raises(ParameterError, match=match):
        MAML(nn.Linear(4, 3), **knobs)


def test_an_episode_with_more_ways_than_the_head_is_refused():
    with pytest.raises(ParameterError, match=r"ways=3 is not allowed: ways must be 2, the number of classes of the "
                                             r"network's head"):
        fit_episodes(MAML(nn.Linear(4, 2).double()), iter([linear_task(1)]), iterations=1, meta_batch=1)


# ------------------------------------------------------------------------------------ planted bugs
_maml_step, _step = maml.maml_step, MAML.step


def _with(**changes):
    return lambda module, tasks, **kw: _maml_step(module, tasks, **{**kw, **changes})


def _support_as_query(module, tasks, **kw):
    return _maml_step(module, [(x_s, y_s, x_s, y_s) for x_s, y_s, *_ in tasks], **kw)


def _summed(module, tasks, **kw):
    out = _maml_step(module, tasks, **kw)
    for p in module.parameters():
        p.grad *= len(tasks)
    return out


def _fresh_adam_every_step(self, tasks, run):
    self.optimizer = torch.optim.Adam(self.model.parameters(), lr=self.optimizer.param_groups[0]["lr"])
    return _step(self, tasks, run)


MUTANTS = {
    "Eq. 2 first order where second order is required":
        lambda: patch.object(maml, "maml_step", _with(first_order=True)),
    "Eq. 1 run once whatever inner_steps says": lambda: patch.object(maml, "maml_step", _with(steps=1)),
    "Eq. 2 on the support set instead of the query set": lambda: patch.object(maml, "maml_step", _support_as_query),
    "Eq. 2 summed over the meta-batch, not averaged": lambda: patch.object(maml, "maml_step", _summed),
    "gradients not cleared between meta-iterations":
        lambda: patch.object(torch.optim.Adam, "zero_grad", lambda self, set_to_none=True: None),
    "Adam's moments reset every meta-iteration": lambda: patch.object(MAML, "step", _fresh_adam_every_step),
}


@pytest.mark.parametrize("name", MUTANTS)
def test_planted_bug_is_caught(name):
    assert_caught(check_maml_is_the_paper, MUTANTS[name])
