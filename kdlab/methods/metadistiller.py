"""MetaDistiller: network self-boosting with a meta-learned top-down label generator.

B. Liu, Y. Rao, J. Lu, J. Zhou, C.-J. Hsieh. "MetaDistiller: Network Self-Boosting via Meta-Learned
Top-Down Distillation." ECCV 2020. No public code exists; this is a reconstruction from the paper text.

A network split into K stages has an exit S_k after each stage (`kdlab.models.multi_exit.MultiExit`).
Every exit learns from the hard label, and the K-1 shallower ones also from a soft target T_k (Eqs. 3-4):

    L_S = CE(y, S_K) + sum_{k<K} L_k                                                    (3)
    L_k = alpha * CE(y, S_k) + (1 - alpha) * tau^2 * KL(T_k || S_k)                     (4)

(paper: alpha = 0.5, tau = 1). Where T_k comes from is the only difference between the three methods
of the paper's ablation (Table 4), the `mode` switch here:

    "dsn"  deeply-supervised net: no soft target, L_k = CE(y, S_k)             ("Hard Only")
    "sd"   self-distillation (BYOT): T_k = S_K, the final output             ("Hard + Simple Soft")
    "md"   MetaDistiller: T_k = G_k(F_k, ..., F_K) from the label generator   ("Hard + Better Soft")

The label generator fuses the stage feature maps F_k top-down, like a feature pyramid (Eq. 5):

    F^_K = conv1x1(F_K)
    F^_k = conv3x3( Upsample(F^_{k+1}) + conv1x1(F_k) ),   k = K-1, ..., 1                (5)

(bilinear upsampling to F_k's actual size, so odd sizes and stages that keep the resolution work),
and a bottleneck head per exit turns F^_k into soft-target logits u_k; T_k = softmax(u_k / tau).

The generator's parameters theta_g are learned by a one-step look-ahead (Eqs. 6-8), every M epochs
(Algorithm 1, paper: M = 5), on two random halves D_train, D_test of the training set:

    theta_s^+ = theta_s - zeta * grad_{theta_s} L_S(X_train; theta_s, T(theta_g))        (7)
    grad_g    = grad_{theta_g} CE(Y_test, S(X_test; theta_s^+))                          (8)

with zeta the network's current learning rate; theta_g is updated by Adam, theta_s^+ is thrown away.

Detached / second order:
  - the network step: T_k detached (labels for the network; the generator is trained only by Eq. 8);
    SD's T_k = S_K is detached too, so the final classifier is not pulled towards its own exits;
  - the generator always reads the stage maps detached: they are its input, not something it trains;
  - the look-ahead: T_k attached to theta_g, inner gradient with create_graph=True. grad_g is a mixed
    second derivative -zeta * d^2 L_S / (d theta_g d theta_s) . grad_{theta_s^+} L_test: with a first-order
    look-ahead it is exactly zero (theta_g enters only the inner loss);
  - the look-ahead runs on `kdlab.meta.forward` with batch statistics and never writes the network's
    parameters or BatchNorm buffers.

Choices the paper leaves open, made explicit here:
  - the width of the fused maps (default: half the last stage's channels);
  - the generator's heads are BYOT bottlenecks with BatchNorm whatever kind of exit the network has
    ("an additional bottleneck module"); with pooling heads on the un-normalised fused maps the targets
    collapsed to one class within a few Adam steps in our digits runs;
  - the heads' last linear layers start at zero, so an untrained generator gives uniform targets;
  - which exits the meta loss scores (`meta_exits="all"`: CE summed over every exit, or "final");
  - one generator step after every network step of a meta epoch (Algorithm 1's loop), the two halves
    drawn once per meta epoch, the meta epochs being 1, 1 + M, 1 + 2M, ...
"""
import math
import numbers
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import config, meta
from ..data.batching import batches
from ..errors import ParameterError, TrainingDivergedError
from ..losses import entropy, kd_loss, soft_targets
from ..models.multi_exit import ExitHead, MultiExit, exit_accuracies, reduction
from ..train import History, check_finite, make_optimizer, progress_bar, scheduled_lr

MODES = ("dsn", "sd", "md")
META_EXITS = ("all", "final")


# ------------------------------------------------------------------------------------ Eq. (5)
class LabelGenerator(nn.Module):
    """Top-down fusion of the stage maps F_1..F_K (Eq. 5) and one bottleneck head per shallower exit."""

    def __init__(self, stage_shapes, num_classes, *, width=None, head="bottleneck", batch_norm=True):
        super().__init__()
        channels = [shape[0] for shape in stage_shapes]
        if len(channels) < 2:
            raise ParameterError("stage_shapes", stage_shapes, "the (C, H, W) of at least 2 stages")
        width = max(1, channels[-1] // 2) if width is None else width
        if not (isinstance(width, numbers.Integral) and not isinstance(width, bool) and width >= 1):
            raise ParameterError("width", width, "an integer >= 1 (the channels of the fused maps)")
        last_channels = stage_shapes[-1][0]
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)        # conv1x1(F_k)
        self.smooth = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in channels[:-1])  # conv3x3
        self.heads = nn.ModuleList(
            ExitHead(width, num_classes, kind=head, out_channels=last_channels,
                     factor=reduction(shape, stage_shapes[-1]), batch_norm=batch_norm)
            for shape in stage_shapes[:-1])
        for head_k in self.heads:  # an untrained generator gives uniform targets, not confident random ones
            nn.init.zeros_(head_k.classifier.weight)
            nn.init.zeros_(head_k.classifier.bias)

    @classmethod
    def for_model(cls, model, width=None, head="bottleneck"):
        """A generator for a MultiExit's stages, on the model's device and dtype."""
        reference = next(model.parameters())
        return cls(model.stage_shapes, model.num_classes, width=width, head=head).to(reference.device,
                                                                                     reference.dtype)

    def fuse(self, maps):
        """[F^_1, ..., F^_K] from [F_1, ..., F_K] (Eq. 5)."""
        fused = [None] * len(maps)
        fused[-1] = self.lateral[-1](maps[-1])                   # the last stage: only the 1x1 conv
        for k in range(len(maps) - 2, -1, -1):
            upsampled = F.interpolate(fused[k + 1], size=maps[k].shape[-2:], mode="bilinear",
                                      align_corners=False)
            fused[k] = self.smooth[k](upsampled + self.lateral[k](maps[k]))
        return fused

    def forward(self, maps):
        """Soft-target logits [u_1, ..., u_{K-1}]; T_k = softmax(u_k / tau)."""
        fused = self.fuse(maps)
        return [head(f) for head, f in zip(self.heads, fused[:-1])]


# ------------------------------------------------------------------------------- Eqs. (3)-(4)
def exit_losses(outputs, labels, targets, *, alpha=0.5, temperature=1.0):
    """Eq. (3)-(4) with named terms. `outputs` = [S_1, ..., S_K] logits; `targets` = K-1 soft-target
    logits, or None for hard labels only (DSN: L_k = CE). Targets are used as given (detach them first
    unless the generator is being taught)."""
    ce_final = F.cross_entropy(outputs[-1], labels)
    terms = {"ce_final": ce_final}
    total = ce_final
    for k, s_k in enumerate(outputs[:-1], start=1):
        ce = F.cross_entropy(s_k, labels)
        terms[f"ce_exit{k}"] = ce
        if targets is None:
            total = total + ce
        else:
            kd = kd_loss(s_k, targets[k - 1], temperature)
            terms[f"kd_exit{k}"] = kd
            total = total + alpha * ce + (1 - alpha) * kd
    return {"loss": total, **terms}


def check_mode(mode):
    if mode not in MODES:
        raise ParameterError("mode", mode, "one of 'dsn' (hard labels only), 'sd' (the final output as "
                                           "every exit's soft target), 'md' (generated soft targets)")
    return mode


def check_meta_every(meta_every):
    if not (isinstance(meta_every, numbers.Integral) and not isinstance(meta_every, bool) and meta_every >= 1):
        raise ParameterError("meta_every", meta_every,
                             "an integer >= 1 (M: the label generator is trained every M epochs)")
    return int(meta_every)


def soft_targets_for(mode, outputs, maps, generator=None):
    """The soft-target logits each mode gives the K-1 shallower exits, detached: None (DSN),
    the final output K-1 times (SD), or the generator's u_k (MD)."""
    check_mode(mode)
    if mode == "dsn":
        return None
    if mode == "sd":
        return [outputs[-1].detach()] * (len(outputs) - 1)
    if generator is None:
        raise ParameterError("generator", None, "a LabelGenerator when mode='md'")
    with torch.no_grad():
        return [u.detach() for u in generator([m.detach() for m in maps])]


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
def lookahead_objective(model, generator, train_batch, test_batch, *, lr, alpha=0.5, temperature=1.0,
                        meta_exits="all", params=None, first_order=False):
    """L_test(theta_s^+(theta_g)) of Eq. (8), differentiable with respect to the generator's parameters.

    Returns (meta_loss, lookahead_loss). The inner loss is Eq. (3) with the generated targets attached;
    the look-ahead step (Eq. 7) keeps its graph; the meta loss is the CE of the chosen exits on the
    test batch at theta_s^+. `first_order=True` detaches the inner gradient: the meta loss then no
    longer depends on theta_g at all (shown in the notebook; never used for training).
    """
    if meta_exits not in META_EXITS:
        raise ParameterError("meta_exits", meta_exits, "'all' (CE summed over every exit) or 'final'")
    params = meta.params_of(model) if params is None else params
    x_train, y_train = train_batch
    outputs, maps = meta.forward(model, params, x_train, all_exits=True, return_features=True)
    targets = generator([m.detach() for m in maps])                              # attached to theta_g
    inner = exit_losses(outputs, y_train, targets, alpha=alpha, temperature=temperature)["loss"]
    fast = meta.lookahead(model, params, inner, lr, create_graph=not first_order)  # Eq. (7)
    x_test, y_test = test_batch
    test_outputs = meta.forward(model, fast, x_test, all_exits=True)
    scored = test_outputs if meta_exits == "all" else test_outputs[-1:]
    meta_loss = sum(F.cross_entropy(o, y_test) for o in scored)                  # Eq. (8)
    return meta_loss, inner


def generator_step(model, generator, optimizer, train_batch, test_batch, *, lr, alpha=0.5, temperature=1.0,
                   meta_exits="all"):
    """One label-generator update (Algorithm 1, lines 10-19); returns a dict of named terms.

    Only the generator's .grad is written: the network's parameters, gradients and buffers are untouched.
    """
    meta_loss, inner = lookahead_objective(model, generator, train_batch, test_batch, lr=lr, alpha=alpha,
                                           temperature=temperature, meta_exits=meta_exits)
    params = list(generator.parameters())
    grads = torch.autograd.grad(meta_loss, params)
    optimizer.zero_grad(set_to_none=True)
    for p, g in zip(params, grads):
        p.grad = g
    optimizer.step()
    grad_norm = torch.sqrt(sum((g.detach() ** 2).sum() for g in grads))
    return {"meta_loss": meta_loss.detach(), "lookahead_loss": inner.detach(), "meta_grad_norm": grad_norm}


@torch.no_grad()
def generated_targets(model, generator, x, batch_size=1024):
    """The generator's soft-target logits [u_1, ..., u_{K-1}] and the exits' logits [S_1, ..., S_K] for
    inputs `x`, both in eval mode (running statistics); modes are restored."""
    modes = model.training, generator.training
    model.eval()
    generator.eval()
    us, ss = [], []
    for start in range(0, len(x), batch_size):
        outputs, maps = model(x[start:start + batch_size], all_exits=True, return_features=True)
        us.append(generator(maps))
        ss.append(outputs)
    model.train(modes[0])
    generator.train(modes[1])
    return [torch.cat(t) for t in zip(*us)], [torch.cat(t) for t in zip(*ss)]


# ------------------------------------------------------------------------------- Algorithm 1
def _draw(x, y, indices, batch_size, generator):
    pick = indices[torch.randint(len(indices), (min(batch_size, len(indices)),), generator=generator)]
    pick = pick.to(x.device)
    return x[pick], y[pick]


def train_metadistiller(model, data, *, epochs, lr=0.05, batch_size=64, alpha=0.5, temperature=1.0,
                        meta_every=5, mode="md", seed=0, meta_lr=1e-3, generator=None, generator_width=None,
                        meta_exits="all", freeze_generator=False, optimizer="sgd", momentum=0.9, weight_decay=5e-4,
                        schedule="cosine", augment=None, eval_every=1, callbacks=(), progress=None):
    """Train a MultiExit `model` on `data` (a DataSplits) with DSN, SD or MetaDistiller (`mode`).

    Returns (model, generator, History); the generator is None for "dsn" and "sd". With the same
    `seed` the three modes see the same batches (and the model passed in fixes the initial weights), so
    they can be compared seed by seed. In MD every `meta_every`-th epoch (epochs 1, 1 + M, ...) splits the
    training set into two random halves and follows each network step with one generator step (Eqs. 6-8).
    `freeze_generator=True` skips those steps: the generator keeps its initial, uniform targets (a control
    that separates what meta-learning adds from what high-entropy soft targets do by themselves).
    `schedule` is "cosine", "constant" or a function epoch -> learning-rate factor (the paper's steps:
    `lambda e: 0.1 ** ((e >= 80) + (e >= 140))`).

    Each History record holds the epoch's mean of every named term, "meta_loss" and "meta_seconds" in
    meta epochs, "seconds", and (every `eval_every` epochs and at the end) "test_acc" (final output),
    "test_acc_exit{k}", "test_acc_ensemble" and "train_acc".
    """
    if not isinstance(model, MultiExit):
        raise ParameterError("model", type(model).__name__, "a kdlab.models.multi_exit.MultiExit")
    mode = check_mode(mode)
    meta_every = check_meta_every(meta_every)
    config.check("EPOCHS", epochs)
    config.check("LR", lr)
    config.check("BATCH_SIZE", batch_size)
    config.check("ALPHA", alpha)
    config.check("TEMPERATURE", temperature)
    config.check("META_LR", meta_lr)
    if not (isinstance(eval_every, numbers.Integral) and eval_every >= 1):
        raise ParameterError("eval_every", eval_every, "an integer >= 1")
    if mode == "md" and generator is None:
        with torch.random.fork_rng(devices=[]):   # the generator's init leaves the caller's RNG alone
            torch.manual_seed(seed + 7919)
            generator = LabelGenerator.for_model(model, width=generator_width)
    if mode != "md":
        generator = None
    opt = make_optimizer(model.parameters(), optimizer, lr, momentum, weight_decay)
    gen_opt = torch.optim.Adam(generator.parameters(), lr=meta_lr) if generator is not None else None
    order = torch.Generator().manual_seed(seed)
    meta_rng = torch.Generator().manual_seed(seed + 104_729)
    history, bar = History(), progress_bar(epochs, progress)
    model.train()
    if generator is not None:
        generator.train()
    try:
        for epoch in range(epochs):
            epoch_lr = lr * schedule(epoch) if callable(schedule) else scheduled_lr(lr, schedule, epoch, epochs)
            for group in opt.param_groups:
                group["lr"] = epoch_lr
            meta_epoch = generator is not None and not freeze_generator and epoch % meta_every == 0
            if meta_epoch:  # Algorithm 1, line 10: two disjoint random halves of the training set
                shuffled = torch.randperm(data.num_train, generator=meta_rng)
                half_train, half_test = shuffled[: data.num_train // 2], shuffled[data.num_train // 2:]
            start, sums, count, meta_sums, meta_seconds = time.perf_counter(), {}, 0, {}, 0.0
            for step, (xb, yb) in enumerate(batches(data.x_train, data.y_train, batch_size, generator=order)):
                if augment is not None:
                    xb = augment(xb, order)
                losses = network_losses(model, generator, xb, yb, mode=mode, alpha=alpha, temperature=temperature)
                check_finite(losses, epoch, step, epoch_lr)
                opt.zero_grad(set_to_none=True)
                losses["loss"].backward()
                opt.step()
                for name, value in losses.items():
                    sums[name] = sums.get(name, 0.0) + float(value.detach()) * len(xb)
                count += len(xb)
                if meta_epoch:
                    meta_start = time.perf_counter()
                    train_batch = _draw(data.x_train, data.y_train, half_train, batch_size, meta_rng)
                    test_batch = _draw(data.x_train, data.y_train, half_test, batch_size, meta_rng)
                    if augment is not None:
                        train_batch = (augment(train_batch[0], meta_rng), train_batch[1])
                        test_batch = (augment(test_batch[0], meta_rng), test_batch[1])
                    terms = generator_step(model, generator, gen_opt, train_batch, test_batch, lr=epoch_lr,
                                           alpha=alpha, temperature=temperature, meta_exits=meta_exits)
                    for name, value in terms.items():
                        meta_sums[name] = meta_sums.get(name, 0.0) + float(value)
                    meta_seconds += time.perf_counter() - meta_start
            record = {"epoch": epoch + 1, "lr": epoch_lr, "seconds": time.perf_counter() - start,
                      "meta_epoch": meta_epoch}
            record.update({name: total / count for name, total in sums.items()})
            if meta_epoch:
                record.update({name: total / (step + 1) for name, total in meta_sums.items()})
                record["meta_seconds"] = meta_seconds
                if not math.isfinite(record["meta_loss"]):
                    raise TrainingDivergedError(
                        f"the generator's meta loss became {record['meta_loss']} at epoch {epoch + 1}. "
                        f"Try a smaller meta_lr (now {meta_lr:g}) or lr (now {epoch_lr:g}).")
            if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:
                accs = exit_accuracies(model, data.x_test, data.y_test)
                record["test_acc"] = accs.pop("final")
                record["test_acc_ensemble"] = accs.pop("ensemble")
                record.update({f"test_acc_{name}": value for name, value in accs.items()})
                record["train_acc"] = exit_accuracies(model, data.x_train, data.y_train)["final"]
            history.append(record)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.3f}", test_acc=f"{record.get('test_acc', math.nan):.1f}")
            if any(callback(history, model) for callback in callbacks):
                break
    except KeyboardInterrupt:
        history.interrupted = True
        print(f"kdlab: training interrupted after {history.epochs_done} epochs; the model, generator and "
              "history are usable.")
    finally:
        if bar is not None:
            bar.close()
        model.eval()
        if generator is not None:
            generator.eval()
    return model, generator, history
