"""MAML: Finn, Abbeel, Levine, "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks", ICML
2017. For a meta-batch of tasks T_i, each a support set (to adapt on) and a query set (to score on):

    theta'_i = theta - alpha * grad_theta L_Ti(f_theta; support)                 (Eq. 1, `inner_steps` times)
    theta   <- theta - beta * grad_theta sum_i L_Ti(f_theta'_i; query)          (Eq. 2; Algorithm 2)
    L = mean squared error for regression (Eq. 3), cross-entropy for classification (Eq. 4)

Order: second order by default, grad_theta L(theta'_i) = (I - alpha Hessian) grad_theta' L(theta'_i)
(create_graph=True in `kdlab.meta`); `first_order=True` is FOMAML (the inner gradients detached, nothing
else). Detached: nothing. BatchNorm: `bn` ("transductive", MAML's code: the statistics of the batch
seen; "support"; "running"). The module's buffers are never written (kdlab.meta).

Deviations, declared: the meta-objective is the MEAN over the meta-batch (Eq. 2 writes the sum; Adam is
nearly scale-free, and MAML's code averages too); beta is Adam's learning rate, as in MAML's code.
"""
import torch
import torch.nn.functional as F

from .. import config, meta
from ..meta import maml_step
from ..meta.functional import check_bn
from .base import Method
from .episodic import check_ways, head_size


class MAML(Method):
    """MAML on `net`, for `kdlab.train.fit_episodes`: one Adam step at `meta_lr` per meta-batch. Reports the
    mean query loss of the adapted models ("query_loss") and, for classification, their accuracy
    ("query_acc", in percent in the History). `loss` is L of Eqs. 3-4 (F.mse_loss for regression)."""

    name = "maml"
    progress_desc = "meta-iterations"
    card = {"paper": "Finn, Abbeel, Levine, Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks, "
                     "ICML 2017",
            "equations": "Eq. 1 (inner step on the support set), Eq. 2 (meta-update on the query losses)",
            "detached": "nothing (first_order=True detaches the inner gradients: FOMAML)",
            "order": "second order (first_order=True: first order)", "loop": "episodes",
            "deviations": "mean over the meta-batch instead of the sum; Adam for the meta-update"}

    def __init__(self, net, *, inner_steps=1, inner_lr=0.4, meta_lr=1e-3, first_order=False, bn="transductive",
                 loss=F.cross_entropy):
        config.check("INNER_STEPS", inner_steps)
        config.check("INNER_LR", inner_lr)
        config.check("META_LR", meta_lr)
        self.model, self.loss = net, loss
        self.knobs = dict(steps=inner_steps, lr=inner_lr, first_order=bool(first_order), bn=check_bn(bn))
        self.classifier = loss is F.cross_entropy
        self.optimizer = torch.optim.Adam(net.parameters(), lr=meta_lr)

    def step(self, tasks, run):
        if self.classifier:
            for task in tasks:
                check_ways(task, {"network": head_size(self.model)})
        self.optimizer.zero_grad(set_to_none=True)
        out = maml_step(self.model, tasks, inner_loss=self.loss, query_loss=self.loss, **self.knobs)
        self.optimizer.step()
        terms = {"loss": out["loss"], "query_loss": out["loss"]}
        if self.classifier:
            terms["query_acc"] = out["accuracy"]
        return terms

    def evaluate(self, tasks, *, steps=None, lr=None, bn=None):
        """`kdlab.meta.evaluate` on `tasks` with this method's inner loop (or the given steps, lr, bn)."""
        k = self.knobs
        return meta.evaluate(self.model, tasks, steps=k["steps"] if steps is None else steps,
                             lr=k["lr"] if lr is None else lr, bn=k["bn"] if bn is None else bn, loss_fn=self.loss)

    def divergence_hint(self):
        return f"Try a smaller INNER_LR (now {self.knobs['lr']:g}) or META_LR."
