"""Forward passes on explicit parameter dicts, and the BatchNorm policy they run under.

    out = forward(net, params, x)                                   # batch statistics of x
    out = forward(net, fast, x_query, bn="support", support=x_support)
    out = forward(net, params, x, bn="running")                     # the module's running statistics

kdlab.meta never writes a module's buffers: batch statistics are computed without updating the
running ones, and `preserved_buffers` restores them around any code that might. So a network trained
only through kdlab.meta still holds PyTorch's initial running statistics (mean 0, variance 1), and
bn="running" then warns (`RunningStatisticsWarning`): its outputs are not normalised by any data.
"""
import contextlib
import sys
import warnings
from collections import OrderedDict
from pathlib import Path

import torch
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import ParameterError, RunningStatisticsWarning

BN_POLICIES = ("transductive", "support", "running")
_BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


def check_bn(bn):
    """Return `bn` if it names a BatchNorm policy, else raise one clear ParameterError."""
    if bn not in BN_POLICIES:
        raise ParameterError("bn", bn, "one of " + ", ".join(map(repr, BN_POLICIES)))
    return bn


def params_of(module):
    """The trainable parameters by name, in `named_parameters()` order (the module's own tensors)."""
    return OrderedDict((name, p) for name, p in module.named_parameters() if p.requires_grad)


def buffers_of(module):
    """The buffers by name (BatchNorm running statistics, num_batches_tracked, ...)."""
    return OrderedDict(module.named_buffers())


@contextlib.contextmanager
def preserved_buffers(module):
    """Snapshot every buffer of `module` and write the snapshot back on exit, whatever ran inside.

    Only changed buffers are written: an in-place write would invalidate a graph that saved the
    buffer (eval-mode BatchNorm saves its running statistics for backward)."""
    snapshot = {name: b.clone() for name, b in module.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, b in module.named_buffers():
                if name in snapshot and not torch.equal(b, snapshot[name]):
                    b.copy_(snapshot[name])


def batch_norms(module):
    """Every BatchNorm layer of `module` with its qualified name."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, _BatchNorm)]


def bn_mode(module, bn):
    """Context: the BatchNorm layers in train mode (batch statistics) or, for bn="running", in eval mode;
    the other layers keep their mode, and every flag is restored on exit."""
    return _layers_in_mode(batch_norms(module), bn)


@contextlib.contextmanager
def _layers_in_mode(layers, bn):
    modes = [m.training for _, m in layers]
    for _, m in layers:
        m.training = bn != "running"
    try:
        yield
    finally:
        for (_, m), mode in zip(layers, modes):
            m.training = mode


def unusable_running_statistics(module):
    """The BatchNorm layers whose running statistics describe no data, by name: never updated (0 batches
    tracked, mean all 0, variance all 1, as PyTorch creates them) or not kept (track_running_stats=False:
    eval mode then normalises with each batch's own statistics). Returns (never updated, not kept)."""
    never, not_kept = [], []
    for name, m in batch_norms(module):
        if m.running_mean is None or m.running_var is None:
            not_kept.append(name)
        elif (m.num_batches_tracked is None or int(m.num_batches_tracked) == 0) \
                and not m.running_mean.any() and bool((m.running_var == 1).all()):
            never.append(name)
    return never, not_kept


def warn_if_running_statistics_unusable(module):
    """One RunningStatisticsWarning line when bn="running" would normalise with statistics of no data,
    attributed to the first caller outside kdlab (so an evaluation loop shows it once, at the user's line)."""
    never, not_kept = unusable_running_statistics(module)
    if never:
        message = (f"bn='running' uses BatchNorm running statistics that were never updated ({_names(never)}): "
                   "they are PyTorch's initial mean 0 and variance 1, because kdlab.meta never writes them; "
                   "use bn='transductive' or bn='support', or update them first with forward passes in train mode")
    elif not_kept:
        message = (f"bn='running' asks for running statistics that BatchNorm layers {_names(not_kept)} do not keep "
                   "(track_running_stats=False), so eval mode normalises with each batch's own, as "
                   "bn='transductive' does; use bn='transductive' or bn='support'")
    else:
        return
    warnings.warn(message, RunningStatisticsWarning, stacklevel=_first_level_outside_kdlab())


def _first_level_outside_kdlab():
    kdlab_dir = str(Path(__file__).resolve().parents[1])
    frame, level = sys._getframe(1), 1  # level 1: the function that calls warnings.warn
    while frame is not None and frame.f_code.co_filename.startswith(kdlab_dir):
        frame, level = frame.f_back, level + 1
    return level


def _names(layers):
    shown = ", ".join(name or "the module itself" for name in layers[:3])
    return shown + (f" and {len(layers) - 3} more" if len(layers) > 3 else "")


def _without_running_statistics(layers):
    """None for every BatchNorm buffer: train-mode BatchNorm then uses batch statistics and writes nothing."""
    return {f"{name}.{b}" if name else b: None
            for name, m in layers for b in _BN_BUFFERS if getattr(m, b, None) is not None}


def _structure(module):
    """(`batch_norms(module)`, whether one parameter is registered under two names) in one walk over the
    submodules, because `forward` runs at every inner step; a tie must be kept by functional_call."""
    layers, seen_layers, seen_params, tied = [], set(), set(), False
    for name, m in module.named_modules(remove_duplicate=False):
        if isinstance(m, _BatchNorm) and id(m) not in seen_layers:
            seen_layers.add(id(m))
            layers.append((name, m))
        for p in m._parameters.values():
            if p is not None:
                tied = tied or id(p) in seen_params
                seen_params.add(id(p))
    return layers, tied


def _normalise(x, mean, var, layer):
    shape = (1, -1) + (1,) * (x.dim() - 2)
    y = (x - mean.reshape(shape)) * torch.rsqrt(var.reshape(shape) + layer.eps)
    if layer.affine:
        y = y * layer.weight.reshape(shape) + layer.bias.reshape(shape)
    return y


@contextlib.contextmanager
def _support_statistics(layers, stats, record):
    """Forward hooks on every BatchNorm: record the (mean, biased variance) of each layer's input in call
    order (record=True), or normalise with the recorded ones instead of the batch's own (record=False).

    The statistics stay on the graph, so the meta-gradient also flows through them."""
    recorded = iter(stats)

    def hook(layer, inputs, output):
        x = inputs[0]
        if record:
            dims = [d for d in range(x.dim()) if d != 1]
            stats.append((x.mean(dims), x.var(dims, unbiased=False)))
            return None  # keep BatchNorm's own output: the same batch-statistics normalisation
        mean, var = next(recorded)
        return _normalise(x, mean, var, layer)

    handles = [m.register_forward_hook(hook) for _, m in layers]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def forward(module, params, x, *, bn="transductive", support=None, **model_kwargs):
    """`module(x, **model_kwargs)` computed with the tensors in `params` (torch.func.functional_call).

    Names missing from `params` fall back to the module's own tensors. BatchNorm policy `bn`:
      "transductive"  statistics of the batch `x` itself (MAML's code: the query set shares statistics);
      "support"       statistics of the `support` inputs, computed with the same `params` and reused,
                      unchanged, to normalise `x` (with support=None, `x` is the support set);
      "running"       the module's running statistics (eval mode); warns (RunningStatisticsWarning) when
                      they were never updated or are not kept, since they then normalise with no data.
    """
    check_bn(bn)
    layers, tie_weights = _structure(module)  # untying costs time, so only when there is a tie
    tensors = dict(params)
    if bn == "running":
        warn_if_running_statistics_unusable(module)
    else:
        tensors.update(_without_running_statistics(layers))
    with _layers_in_mode(layers, bn):
        if bn != "support" or support is None:
            return functional_call(module, tensors, (x,), model_kwargs, tie_weights=tie_weights)
        stats = []
        with _support_statistics(layers, stats, record=True):
            functional_call(module, tensors, (support,), tie_weights=tie_weights)
        with _support_statistics(layers, stats, record=False):
            return functional_call(module, tensors, (x,), model_kwargs, tie_weights=tie_weights)
