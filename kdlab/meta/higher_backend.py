"""The same inner loop run by `higher` (Grefenstette et al. 2019), kept to prove both backends equal
and to reproduce code written with it (the 2025 feature-distillation preprint).

Two traps of `higher.innerloop_ctx` are handled here:
  copy_initial_weights=True (its default) takes the initial weights off the tape, so the module's
  parameters get NO meta-gradient; MAML needs copy_initial_weights=False.
  track_higher_grads=False (first order) detaches the fast weights after every step, so the query loss
  would reach nothing; the adapted weights are re-attached as params + (fast - params).detach(),
  which is exactly FOMAML's d fast / d params = I.
"""
import warnings

import torch

from ..errors import ParameterError
from .functional import bn_mode
from .steps import Adapted


def import_higher():
    """`import higher`, without the SyntaxWarning/DeprecationWarning its 2020 source prints on compile."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        import higher
    return higher


def _optimizer(named, names, lr):
    """torch.optim.SGD over `names`; a per-parameter lr needs one parameter group per parameter."""
    if isinstance(lr, dict):
        groups = [{"params": [named[name]]} for name in names]
        return torch.optim.SGD(groups, lr=0.0), {"lr": [lr[name] for name in names]}
    return torch.optim.SGD([named[name] for name in names], lr=lr), None


def higher_inner_loop(module, params, loss_fn, batch, *, steps, lr, first_order, bn, model_kwargs):
    """`inner_loop(..., backend="higher")`; `params` must be the module's own tensors."""
    higher = import_higher()
    named = dict(module.named_parameters())
    if any(named.get(name) is not p for name, p in params.items()):
        raise ParameterError("params", "tensors that are not the module's own parameters",
                             "params_of(module) when backend='higher' (it adapts the module's weights)")
    if first_order and isinstance(lr, dict) and any(torch.is_tensor(v) and v.requires_grad for v in lr.values()):
        raise ParameterError("lr", "learnable per-parameter tensors with first_order=True",
                             "fixed learning rates with backend='higher' in first order (higher detaches "
                             "every step, so a learnable lr would get no gradient); use backend='func'")
    names = list(params)
    optimizer, override = _optimizer(named, names, lr)
    x, *targets = batch
    losses = []
    # the patched copy takes the BatchNorm modes and a copy of the buffers when it is created
    with bn_mode(module, bn), higher.innerloop_ctx(module, optimizer, copy_initial_weights=False,
                                                   track_higher_grads=not first_order,
                                                   override=override) as (fmodel, diffopt):
        for _ in range(steps):
            loss = loss_fn(fmodel(x, **model_kwargs), *targets)
            diffopt.step(loss)
            losses.append(loss.detach())
        fast = dict(zip(named, fmodel.fast_params))
    adapted = {name: fast[name] for name in names}
    if first_order:
        adapted = {name: params[name] + (adapted[name] - params[name]).detach() for name in names}
    return Adapted(adapted, torch.stack(losses))
