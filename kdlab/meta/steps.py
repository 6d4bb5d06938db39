"""Differentiable SGD steps on parameter dicts: MAML's inner loop, a one-step look-ahead, and an unrolled
SGD with momentum and weight decay.

Order of the meta-gradient:
  second order  the inner gradients keep their graph (`torch.autograd.grad(..., create_graph=True)`),
                so d fast / d params = I - lr * Hessian, and anything that entered the inner loss
                (a teacher, a label generator, meta-weights, a learnable lr) gets a mixed derivative;
  first order   the inner gradients are constants: d fast / d params = I (FOMAML), and parameters
                that enter ONLY the inner loss get no gradient at all.
"""
import math
import numbers
from typing import NamedTuple

import torch

from ..errors import ParameterError
from .functional import check_bn, forward, preserved_buffers

BACKENDS = ("func", "higher")


class Adapted(NamedTuple):
    """The parameters after the inner steps, and the inner loss before each step (detached)."""
    params: dict
    losses: torch.Tensor


def check_steps(steps):
    if not (isinstance(steps, numbers.Integral) and not isinstance(steps, bool) and steps >= 0):
        raise ParameterError("steps", steps, "an integer >= 0")
    return int(steps)


def _check_number(name, value):
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0):
        raise ParameterError(name, value, "a finite number >= 0")
    return float(value)


def check_lr(lr, params):
    """A float for every parameter, or a dict with one (learnable) tensor per parameter: Meta-SGD."""
    if isinstance(lr, dict):
        missing = [name for name in params if name not in lr]
        if missing:
            raise ParameterError("lr", f"a dict without {missing[0]!r}",
                                 "a number >= 0 or a dict with a learning rate for every parameter")
        return lr
    return _check_number("lr", lr)


def check_backend(backend):
    if backend not in BACKENDS:
        raise ParameterError("backend", backend, "one of " + ", ".join(map(repr, BACKENDS)))
    return backend


def sgd_step(params, loss, lr, *, first_order=False, momentum=0.0, weight_decay=0.0, velocity=None):
    """One step of torch.optim.SGD's rule (dampening 0, no Nesterov) on the dict `params`:

        d = grad + weight_decay * p;   v = d (first step) or momentum * v + d;   p' = p - lr * v

    Returns `(new_params, new_velocity)`. Entries that do not require grad, or that the loss does not
    use, are left unchanged (as torch.optim.SGD skips parameters whose .grad is None). First order
    detaches the loss gradient only; the weight-decay term stays differentiable.
    """
    names = [name for name, p in params.items() if p.requires_grad]
    grads = torch.autograd.grad(loss, [params[name] for name in names],
                                create_graph=not first_order, allow_unused=True)
    new_params, new_velocity = dict(params), dict(velocity or {})
    for name, g in zip(names, grads):
        if g is None:
            continue
        p = params[name]
        d = g if weight_decay == 0 else g + weight_decay * p
        if momentum != 0:
            d = d if name not in new_velocity else momentum * new_velocity[name] + d
            new_velocity[name] = d
        step_lr = lr[name] if isinstance(lr, dict) else lr
        new_params[name] = p.add(d, alpha=-step_lr) if isinstance(step_lr, float) else p - step_lr * d
    return new_params, new_velocity


def inner_loop(module, params, loss_fn, batch, *, steps, lr, first_order=False, bn="transductive",
               backend="func", model_kwargs=None):
    """MAML's inner loop (Finn et al. 2017, Eq. 1), iterated `steps` times on one batch:

        theta_{j+1} = theta_j - lr * grad_theta L(f_{theta_j}(x), *targets),   batch = (x, *targets)

    with L = `loss_fn(output, *targets)` and `output = forward(module, theta_j, x, bn=bn, **model_kwargs)`.
    `lr` is a float or a dict of per-parameter tensors (Meta-SGD: learnable when they require grad).
    Returns `Adapted(params, losses)`; `steps=0` returns `params` itself. The meta-objective
    (Eq. 2-3) is then a query loss at the adapted params; see `maml_step`.
    backend="higher" runs the same steps with `higher.innerloop_ctx` (for the tests and the 2025 preprint).
    """
    steps, lr, bn = check_steps(steps), check_lr(lr, params), check_bn(bn)
    if check_backend(backend) == "higher" and steps > 0:
        from .higher_backend import higher_inner_loop

        return higher_inner_loop(module, params, loss_fn, batch, steps=steps, lr=lr,
                                 first_order=first_order, bn=bn, model_kwargs=model_kwargs or {})
    x, *targets = batch
    fast, losses = dict(params), []
    with preserved_buffers(module):
        for _ in range(steps):
            loss = loss_fn(forward(module, fast, x, bn=bn, **(model_kwargs or {})), *targets)
            fast, _ = sgd_step(fast, loss, lr, first_order=first_order)
            losses.append(loss.detach())
    return Adapted(fast, torch.stack(losses) if losses else torch.empty(0))


def lookahead(module, params, loss, lr, *, create_graph=True):
    """One differentiable SGD step of a copy of a learner: fast = params - lr * grad_params `loss`.

    `loss` was computed from `params` (e.g. with `forward`) and may depend on OUTSIDE parameters phi:
    a teacher's logits (MetaDistil), a label generator (MetaDistiller), meta-weights (MMKD). With
    create_graph=True, d quiz_loss(fast) / d phi = -lr * (d^2 loss / d phi d params) . grad_fast quiz_loss,
    a mixed second derivative. With create_graph=False the gradient is a constant, so phi gets no
    gradient at all (it enters only the inner loss): the first-order approximation kills the signal.
    """
    names = {name for name, _ in module.named_parameters()}
    unknown = [name for name in params if name not in names]
    if unknown:
        raise ParameterError("params", f"a dict with {unknown[0]!r}",
                             "a dict keyed by the module's parameter names (see params_of)")
    fast, _ = sgd_step(params, loss, check_lr(lr, params), first_order=not create_graph)
    return fast


def unrolled_sgd(module, params, loss_fn, batches, lr, momentum=0.0, weight_decay=0.0, *,
                 first_order=False, bn="transductive", velocity=None, model_kwargs=None):
    """One differentiable torch.optim.SGD step (momentum, weight decay; see `sgd_step`) per batch in
    `batches`, the momentum buffer kept in the graph, so a hypergradient flows through every step (MMKD).

    `loss_fn` is one callable for every step, or a sequence with one per batch (MMKD: two distillation
    steps, then one cross-entropy step). `velocity` optionally starts from existing momentum buffers by
    parameter name (see `momentum_buffers`). Returns `Adapted(params, losses)`.
    """
    lr, bn = check_lr(lr, params), check_bn(bn)
    momentum, weight_decay = _check_number("momentum", momentum), _check_number("weight_decay", weight_decay)
    batches = list(batches)
    loss_fns = list(loss_fn) if isinstance(loss_fn, (list, tuple)) else [loss_fn] * len(batches)
    if len(loss_fns) != len(batches):
        raise ParameterError("loss_fn", f"{len(loss_fns)} functions for {len(batches)} batches",
                             "one callable, or a sequence with one callable per batch")
    fast, losses, velocity = dict(params), [], dict(velocity or {})
    with preserved_buffers(module):
        for step_loss, (x, *targets) in zip(loss_fns, batches):
            loss = step_loss(forward(module, fast, x, bn=bn, **(model_kwargs or {})), *targets)
            fast, velocity = sgd_step(fast, loss, lr, first_order=first_order, momentum=momentum,
                                      weight_decay=weight_decay, velocity=velocity)
            losses.append(loss.detach())
    return Adapted(fast, torch.stack(losses) if losses else torch.empty(0))


def momentum_buffers(optimizer, module):
    """A torch.optim.SGD's momentum buffers by parameter name (detached): the `velocity` with which
    `unrolled_sgd` continues that optimizer's trajectory."""
    buffers = {}
    for name, p in module.named_parameters():
        buffer = optimizer.state.get(p, {}).get("momentum_buffer")
        if buffer is not None:
            buffers[name] = buffer.detach().clone()
    return buffers
