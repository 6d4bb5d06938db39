"""Test-time adaptation of many episodes at once: the first-order inner loop written with `torch.func.grad`, so
that `torch.vmap` can run it over a stack of episodes.

    fast = first_order_inner_loop(net, params, F.cross_entropy, (x_s, y_s), steps=1, lr=0.4)   # one episode
    logits = over_episodes(lambda x_s, y_s, x_q: ..., (XS, YS, XQ), chunk=50)                # a stack of them

At meta-test nothing flows back into the model (`adapt_and_predict` starts from detached copies), so the inner
steps are first order and each episode's step is independent of every other's: a vmapped step computes the
same numbers as the loop of `inner_loop(..., first_order=True)` one episode after another, up to the
last bits where batched kernels sum in another order (`tests/unit/test_tsmd_batched.py`). Tiny networks on few
images are overhead-bound on the CPU, and one call for fifty episodes pays the overhead once.
"""
import torch

from ..errors import ParameterError
from .functional import forward
from .steps import check_lr, check_steps


def first_order_inner_loop(module, params, loss_fn, batch, *, steps, lr, bn="transductive", model_kwargs=None):
    """MAML's inner loop (Finn et al. 2017, Eq. 1), first order, as `inner_loop(..., first_order=True)` computes
    it, but with `torch.func.grad` instead of `torch.autograd.grad` so that it runs under `torch.vmap`; returns
    the fast weights. `loss_fn` must be vmappable too (no Python branch on a tensor's value)."""
    steps, lr = check_steps(steps), check_lr(lr, params)
    x, *targets = batch
    fast = dict(params)
    for _ in range(steps):
        def inner_loss(weights):
            return loss_fn(forward(module, weights, x, bn=bn, **(model_kwargs or {})), *targets)

        grads = torch.func.grad(inner_loss)(fast)
        fast = {name: p.add(grads[name], alpha=-lr) if isinstance(lr, float) else p - lr[name] * grads[name]
                for name, p in fast.items()}
    return fast


def stack_episodes(tasks, parts):
    """The items `parts` (indices into each task tuple) of every task stacked along a new first dimension, or
    None when the tasks' shapes differ (then they cannot share one vmapped call)."""
    shapes = {tuple(tuple(task[i].shape) for i in parts) for task in tasks}
    if len(shapes) != 1:
        return None
    return tuple(torch.stack([task[i] for task in tasks]) for i in parts)


def over_episodes(fn, stacked, chunk):
    """`torch.vmap(fn)` over the first dimension of the tensors `stacked`, `chunk` episodes per call; `fn`
    returns one tensor per episode, and the outputs come back concatenated in the episodes' order."""
    if not (isinstance(chunk, int) and chunk >= 1):
        raise ParameterError("chunk", chunk, "an integer >= 1 (episodes per vmapped call)")
    batched = torch.vmap(fn, randomness="error")
    starts = range(0, len(stacked[0]), chunk)
    return torch.cat([batched(*(t[first:first + chunk] for t in stacked)) for first in starts])
