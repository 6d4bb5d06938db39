"""The functional inner loop every kdlab method shares: differentiable SGD steps on a parameter dict.

    from kdlab import meta
    params = meta.params_of(net)                                   # the module's own tensors, by name
    fast, losses = meta.inner_loop(net, params, F.cross_entropy, (x_s, y_s), steps=1, lr=0.4)
    query_loss = F.cross_entropy(meta.forward(net, fast, x_q), y_q)
    query_loss.backward()                                          # MAML's second-order meta-gradient

- `forward`: `torch.func.functional_call` with a BatchNorm policy ("transductive", "support", "running");
  "running" warns when the running statistics were never updated (kdlab.meta itself never updates them).
- `inner_loop`: MAML's Eq. 1, k steps; first or second order; float or per-parameter (Meta-SGD) lr;
  backend "func" (default) or "higher".
- `lookahead`: one differentiable step whose loss may depend on outside parameters (MetaDistil,
  MetaDistiller, MMKD); `unrolled_sgd`: k steps of SGD with momentum and weight decay (MMKD), from
  an optimizer's own `momentum_buffers` if wanted.
- `maml_step`, `evaluate`, `adapt_and_predict`: few-shot episodes (MAML, TSMD).

Nothing here writes a module's buffers, and nothing detaches silently: first order detaches the inner
gradients and nothing else (see `steps`).
"""
from .episodes import adapt_and_predict, evaluate, maml_step
from .functional import (BN_POLICIES, batch_norms, bn_mode, buffers_of, forward, params_of,
                         preserved_buffers, unusable_running_statistics)
from .steps import BACKENDS, Adapted, inner_loop, lookahead, momentum_buffers, sgd_step, unrolled_sgd

__all__ = ["BN_POLICIES", "BACKENDS", "Adapted", "params_of", "buffers_of", "preserved_buffers",
           "batch_norms", "bn_mode", "unusable_running_statistics", "forward", "sgd_step", "inner_loop",
           "lookahead", "unrolled_sgd", "momentum_buffers", "maml_step", "evaluate", "adapt_and_predict"]
