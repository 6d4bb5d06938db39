"""MetaDistiller: network self-boosting with a meta-learned top-down label generator.

B. Liu, Y. Rao, J. Lu, J. Zhou, C.-J. Hsieh. "MetaDistiller: Network Self-Boosting via Meta-Learned
Top-Down Distillation." ECCV 2020. No public code exists; this is a reconstruction from the paper text.

A network split into K stages has an exit S_k after each (`kdlab.models.multi_exit.MultiExit`); every exit
learns from the label, the K-1 shallower ones also from a soft target T_k (Eqs. 3-4):

    L_S = CE(y, S_K) + sum_{k<K} L_k                                                    (3)
    L_k = (1 - alpha) * CE(y, S_k) + alpha * tau^2 * KL(T_k || S_k)                     (4)

alpha weights the distillation term, as everywhere in the kit; the paper's alpha weights CE: alpha_paper =
1 - alpha (paper: 0.5, tau = 1). The rows of the ablation (Table 4) differ only in T_k, `mode` here:

    "dsn"  deeply-supervised net: no soft target, L_k = CE(y, S_k)             ("Hard Only")
    "sd"   self-distillation (BYOT): T_k = S_K, the final output             ("Hard + Simple Soft")
    "md"   MetaDistiller: T_k = softmax(u_k / tau), u_k from the label generator ("Hard + Better Soft")

The label generator (`kdlab.models.label_generator`) fuses the stage maps top-down (Eq. 5); its theta_g
is learned every M epochs (Algorithm 1, paper: M = 5) by a one-step look-ahead (Eqs. 6-8) on two random
halves D_train, D_test of the training set, zeta the network's current lr, Adam on theta_g:

    theta_s^+ = theta_s - zeta * grad_{theta_s} L_S(X_train; theta_s, T(theta_g))        (7)
    grad_g    = grad_{theta_g} CE(Y_test, S(X_test; theta_s^+))                          (8)

Detached / second order:
  - network step: T_k detached (labels; the generator learns only from Eq. 8), SD's T_k = S_K too;
  - the generator reads the stage maps detached: they are its input, not something it trains;
  - look-ahead: T_k attached, create_graph=True: grad_g = -zeta d^2 L_S / (d theta_g d theta_s) . grad L_test
    is a mixed second derivative, zero if first order; `kdlab.meta.forward` (batch statistics) writes
    nothing of the network (parameters, BatchNorm buffers); theta_s^+ is thrown away.

Deviations and open choices: alpha on the KL term (= 1 - alpha_paper); the generator's width, heads and
zero init (`kdlab.models.label_generator`); the meta loss scores every exit (`meta_exits`: "all" or
"final"); one generator step after every network step of a meta epoch (epochs 1, 1 + M, ...; the halves
drawn once per meta epoch); the generator's Adam keeps its learning rate (only the network's is scheduled).
"""
import math
import time

import torch
import torch.nn.functional as F

from .. import config, meta
from ..errors import ParameterError, TrainingDivergedError
from ..losses import entropy, kd_loss, soft_targets
from ..models.label_generator import LabelGenerator
from ..models.multi_exit import MultiExit, exit_accuracies
from .base import Method


# ------------------------------------------------------------------------------- Eqs. (3)-(4)
def exit_losses(outputs, labels, targets, *, alpha=0.5, temperature=1.0):
    """Eqs. (3)-(4), named terms. `outputs` = [S_1, ..., S_K]; `targets` = K-1 soft-target logits used as
    given (detach them unless the generator is being taught), or None for hard labels only (DSN)."""
    total = ce_final = F.cross_entropy(outputs[-1], labels)
    terms = {"ce_final": ce_final}
    for k, s_k in enumerate(outputs[:-1], start=1):
        ce = F.cross_entropy(s_k, labels)
        terms[f"ce_exit{k}"] = ce
        if targets is None:
            total = total + ce
        else:
            kd = kd_loss(s_k, targets[k - 1], temperature)
            terms[f"kd_exit{k}"] = kd
            total = total + (1 - alpha) * ce + alpha * kd
    return {"loss": total, **terms}


def generator_input(maps):
    """What the label generator reads: the stage maps, detached (its input, not something it trains)."""
    return [m.detach() for m in maps]


def soft_targets_for(mode, outputs, maps, generator=None):
    """The soft-target logits each mode gives the K-1 shallower exits in the network step, detached:
    None (DSN), the final output K-1 times (SD), or the generator's u_k (MD)."""
    config.check("mode", mode)
    if mode == "dsn":
        return None
    if mode == "sd":
        return [outputs[-1].detach()] * (len(outputs) - 1)
    if generator is None:
        raise ParameterError("generator", None, "a LabelGenerator when mode='md'")
    with torch.no_grad():
        return [u.detach() for u in generator(generator_input(maps))]


def network_losses(model, generator, x, y, *, mode="md", alpha=0.5, temperature=1.0):
    """The network step's objective (Algorithm 1, lines 4-7): a dict of named terms with a
    differentiable "loss", plus the mean entropy of each exit's soft target (nats, "target_entropy{k}")."""
    outputs, maps = model(x, all_exits=True, return_features=True)
    targets = soft_targets_for(mode, outputs, maps, generator)
    losses = exit_losses(outputs, y, targets, alpha=alpha, temperature=temperature)
    for k, t in enumerate(targets or [], start=1):
        losses[f"target_entropy{k}"] = entropy(soft_targets(t, temperature)).mean()
    return losses


# ------------------------------------------------------------------------------- Eqs. (6)-(8)
def lookahead_targets(generator, maps):
    """The generated targets inside the look-ahead: attached to theta_g (the meta-gradient's only path)."""
    return generator(generator_input(maps))


def lookahead_step(model, params, inner, lr, first_order=False):
    """Eq. (7): theta_s^+ = theta_s - zeta * grad L_S, the inner gradient kept in the graph."""
    return meta.lookahead(model, params, inner, lr, create_graph=not first_order)


def heldout_loss(outputs, labels, meta_exits="all"):
    """Eq. (8)'s L^test at theta_s^+: CE summed over the scored exits (every exit, or the final one)."""
    scored = outputs if meta_exits == "all" else outputs[-1:]
    return sum(F.cross_entropy(o, labels) for o in scored)


def lookahead_objective(model, generator, train_batch, test_batch, *, lr, alpha=0.5, temperature=1.0,
                        meta_exits="all", params=None, first_order=False):
    """(L_test(theta_s^+(theta_g)) of Eq. (8), the inner loss). `first_order=True` detaches the inner gradient:
    the meta loss then no longer depends on theta_g at all (shown in the notebook; never used for training)."""
    config.check("meta_exits", meta_exits)
    params = meta.params_of(model) if params is None else params
    (x_train, y_train), (x_test, y_test) = train_batch, test_batch
    outputs, maps = meta.forward(model, params, x_train, all_exits=True, return_features=True)
    targets = lookahead_targets(generator, maps)
    inner = exit_losses(outputs, y_train, targets, alpha=alpha, temperature=temperature)["loss"]
    fast = lookahead_step(model, params, inner, lr, first_order)
    return heldout_loss(meta.forward(model, fast, x_test, all_exits=True), y_test, meta_exits), inner


def meta_gradient(meta_loss, generator):
    """grad_g of Eq. (8); a generator tensor the meta loss does not reach gets zeros (meta_grad_norm 0)."""
    grads = torch.autograd.grad(meta_loss, list(generator.parameters()), allow_unused=True)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(generator.parameters(), grads)]


def generator_step(model, generator, optimizer, train_batch, test_batch, *, lr, alpha=0.5, temperature=1.0,
                   meta_exits="all"):
    """One label-generator update (Algorithm 1, lines 10-19): only the generator's .grad and weights change."""
    meta_loss, inner = lookahead_objective(model, generator, train_batch, test_batch, lr=lr, alpha=alpha,
                                           temperature=temperature, meta_exits=meta_exits)
    grads = meta_gradient(meta_loss, generator)
    optimizer.zero_grad(set_to_none=True)
    for p, g in zip(generator.parameters(), grads):
        p.grad = g
    optimizer.step()
    return {"meta_loss": meta_loss.detach(), "lookahead_loss": inner.detach(),
            "meta_grad_norm": torch.sqrt(sum((g.detach() ** 2).sum() for g in grads))}


# ------------------------------------------------------------------------------- Algorithm 1
def split_halves(num_train, rng):
    """Algorithm 1, line 10: two disjoint random halves (D_train, D_test) of the training set's rows."""
    shuffled = torch.randperm(num_train, generator=rng)
    return shuffled[: num_train // 2], shuffled[num_train // 2:]


def meta_batches(x, y, halves, batch_size, rng):
    """A batch of D_train for the look-ahead (Eq. 7), then one of D_test for the meta loss (Eq. 8)."""
    picks = [rows[torch.randint(len(rows), (min(batch_size, len(rows)),), generator=rng)].to(x.device)
             for rows in halves]
    return [(x[pick], y[pick]) for pick in picks]


class MetaDistiller(Method):
    """DSN, SD or MD (`mode`) on a MultiExit: `fit(MetaDistiller(net), data, ...)`; same seed, same batches in
    every mode. `freeze_generator=True` skips the generator steps (uniform targets: a control)."""

    name = "metadistiller"
    card = {"paper": "Liu et al., MetaDistiller: Network Self-Boosting via Meta-Learned Top-Down Distillation",
            "equations": "L_k = (1 - alpha) CE + alpha tau^2 KL(T_k || S_k) (3-4); T_k top-down (5); look-ahead (6-8)",
            "detached": "T_k and SD's S_K in the network step; the maps the generator reads; not T_k in the "
                        "look-ahead", "order": "second order (a mixed second derivative through Eq. 7)",
            "loop": "epochs", "deviations": "alpha on KL (= 1 - the paper's alpha); meta loss over every exit; "
                                            "the generator's width, heads and init"}

    def __init__(self, model, *, mode="md", alpha=0.5, temperature=1.0, meta_every=5, meta_lr=1e-3,
                 generator=None, generator_width=None, meta_exits="all", freeze_generator=False):
        if not isinstance(model, MultiExit):
            raise ParameterError("model", type(model).__name__, "a kdlab.models.multi_exit.MultiExit")
        self.model, self.mode = model, config.check("mode", mode)
        self.alpha, self.temperature = config.check("ALPHA", alpha), config.check("TEMPERATURE", temperature)
        self.meta_every = int(config.check("meta_every", meta_every))
        self.meta_lr, self.meta_exits = config.check("META_LR", meta_lr), config.check("meta_exits", meta_exits)
        self.freeze_generator = config.check("freeze_generator", freeze_generator)
        self.generator, self.generator_width = (generator if mode == "md" else None), generator_width
        self.generator_optimizer = self.meta_rng = self.data = self.halves = None

    def configure(self, recipe, run):
        if self.mode == "md" and self.generator is None:
            with torch.random.fork_rng(devices=[]):   # the generator's init leaves the caller's RNG alone
                torch.manual_seed(run.seed + 7919)
                self.generator = LabelGenerator.for_model(self.model, width=self.generator_width)
        super().configure(recipe, run)
        if self.generator is not None and self.generator_optimizer is None:
            self.generator_optimizer = torch.optim.Adam(self.generator.parameters(), lr=self.meta_lr)
        done = run.history.epochs_done if run.history is not None else 0   # a resumed run goes on, not over
        self.meta_rng = torch.Generator().manual_seed(run.seed + 104_729 + done)

    def prepare(self, data, run):
        self.data = data   # the meta batches are drawn from the training set's two halves
        return data

    def modules(self):
        return [self.model] + ([self.generator] if self.generator is not None else [])

    def on_epoch_start(self, run):
        self.meta_epoch = self.generator is not None and not self.freeze_generator and run.epoch % self.meta_every == 0
        self.meta_sums, self.meta_steps, self.meta_seconds = {}, 0, 0.0
        if self.meta_epoch:
            self.halves = split_halves(self.data.num_train, self.meta_rng)

    def step(self, batch, run):
        losses = self.descend(network_losses(self.model, self.generator, batch.x, batch.y, mode=self.mode,
                                             alpha=self.alpha, temperature=self.temperature), self.optimizer, run)
        if self.meta_epoch:
            start = time.perf_counter()
            train_batch, test_batch = ((run.augmented(x, self.meta_rng), y) for x, y in meta_batches(
                self.data.x_train, self.data.y_train, self.halves, run.batch_size, self.meta_rng))
            terms = generator_step(self.model, self.generator, self.generator_optimizer, train_batch, test_batch,
                                   lr=run.lr, alpha=self.alpha, temperature=self.temperature,
                                   meta_exits=self.meta_exits)
            self.meta_sums = {name: self.meta_sums.get(name, 0.0) + float(value) for name, value in terms.items()}
            self.meta_steps += 1
            self.meta_seconds += time.perf_counter() - start
        return losses

    def on_epoch_end(self, record, run):
        record["meta_epoch"] = self.meta_epoch
        if self.meta_epoch:
            record.update({name: total / self.meta_steps for name, total in self.meta_sums.items()})
            record["meta_seconds"] = self.meta_seconds
            if not math.isfinite(record["meta_loss"]):
                raise TrainingDivergedError(f"the generator's meta loss became {record['meta_loss']} at epoch "
                                            f"{run.epoch + 1}. Try a smaller meta_lr (now {self.meta_lr:g}) or lr.")

    def evaluate(self, data):
        accs = exit_accuracies(self.model, data.x_test, data.y_test)
        out = {"test_acc": accs.pop("final"), "test_acc_ensemble": accs.pop("ensemble"),
               "train_acc": exit_accuracies(self.model, data.x_train, data.y_train)["final"]}
        return {**out, **{f"test_acc_{name}": value for name, value in accs.items()}}

    def state_dict(self):  # the generator's Adam is not in optimizers(): it does not follow the schedule
        return {**super().state_dict(),
                "generator_optimizer": getattr(self.generator_optimizer, "state_dict", dict)()}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if state.get("generator_optimizer"):
            self.generator_optimizer.load_state_dict(state["generator_optimizer"])
