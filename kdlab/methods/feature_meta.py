"""Hybrid MSE + cosine feature distillation with a MAML adaptation phase, run by `higher`.

Paper: "Meta-Learning Adaptation Phase Enhanced Feature Distillation for Accelerated Convergence and
Improved Generalization", Preprints.org 202503.1636, v1, 21 March 2025 (not peer-reviewed). The paper's
displays carry no numbers; the numbering (1)-(4) is ours, in the order of the text.

    L_feat = alpha * MSE(A(f_S), f_T) + (1 - cos(A(f_S), f_T))      (1)  section 3.1
    L      = (1 - alpha) * L_cls + alpha * L_feat                    (2)  section 3.1
    theta' = theta - eta * grad_theta L(theta; D_supp)                (3)  section 3.2.3, inner step
    theta <- theta - eta * grad_theta L(theta'; D_query)              (4)  section 3.2.3, meta-update

f_T is a teacher feature map (the paper: ResNet-101 `layer3`), f_S a student map at the same stride,
A a trainable 1x1 convolution from the student's channels to the teacher's (section 4.2), preceded by a
"learnable feature weighting" that the paper names but does not define: we read it as a per-channel
gain on f_S, initialised to 1 (it can be folded into A, so it changes the optimisation path only).
MSE is the mean over every entry; cos is taken per sample on the flattened maps, then averaged.

The alpha-squared ambiguity. Read literally, (1) inside (2) weights the MSE by alpha**2 and the cosine
term by alpha. That may be what the code did, or the text may have reused one symbol for two weights.
`alpha_squared=True` (default) is the literal reading; `alpha_squared=False` drops the inner alpha:
L = (1 - alpha) * CE + alpha * (MSE + (1 - cos)).

Spatial sizes are matched at the teacher's resolution (the target is never resampled): equal sizes
as they are, a student map that is an integer multiple of the teacher's is average-pooled down, one
that divides it evenly is upsampled (nearest). Anything else (6x6 against 4x4, a map against a vector)
is refused with a ParameterError before training starts.

The adaptation phase (MAML, Finn et al. 2017): every `meta_every` training steps the current batch is
split in half, a support and a query set from the same 10 classes (no task distribution: it acts as
a look-ahead step, not few-shot learning); k inner SGD steps (3) on the support loss L, then the query
loss L at the adapted weights is back-propagated to the initial weights and one outer SGD step (4) is
taken. `higher.innerloop_ctx(..., copy_initial_weights=False)`: with its default True the initial
weights are copied off the tape and the phase silently does nothing (higher issue #69).

What is detached and what is second order:
  - teacher features: always computed under no_grad (the teacher is frozen);
  - the adapter A and the gain train with the student, in the ordinary step and in the phase;
  - inner steps: second order by default (the query gradient flows through the k inner updates, a
    Hessian-vector product, to the initial weights); `first_order=True` detaches the inner gradients
    (FOMAML: d theta' / d theta = I);
  - alpha: a fixed number per epoch (constant, or a schedule), never learned;
  - BatchNorm: batch statistics in the inner and query passes; the phase never writes the module's
    running statistics (higher works on copies of the buffers; the torch.func twin writes none).
Mixed precision (the paper used PyTorch AMP): torch.autocast + GradScaler when the device is CUDA; on
the CPU both are no-ops and the arithmetic is plain float32.
"""
import contextlib
import math
import numbers
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import config, meta
from ..data.batching import batches
from ..errors import ParameterError
from ..meta.higher_backend import import_higher
from ..models.base import check_int
from ..train import History, accuracy, check_finite, make_optimizer, scheduled_lr

SCHEDULES = ("constant", "linear", "cosine", "step")
ENGINES = ("higher", "func")


# -- alpha and its schedule (the paper's future work: "higher during early epochs, lower later") ------
def check_alpha(alpha, name="ALPHA"):
    """`alpha` as a float if it lies in [0, 1], else one ParameterError."""
    return float(config.check(name, alpha))


def alpha_at(epoch, epochs, *, alpha, schedule="constant", alpha_end=None):
    """Alpha for `epoch` (0-based) of `epochs`: from ALPHA at the first epoch to ALPHA_END at the last.

    constant  ALPHA throughout
    linear    straight line from ALPHA to ALPHA_END
    cosine    half a cosine from ALPHA to ALPHA_END (flat at both ends)
    step      ALPHA for the first half of the epochs, ALPHA_END for the second half
    A callable `schedule(epoch, epochs)` is accepted too; its value must lie in [0, 1].
    """
    if callable(schedule):
        value = schedule(epoch, epochs)
        if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value <= 1):
            raise ParameterError("SCHEDULE", f"a schedule giving {value!r} at epoch {epoch + 1}",
                                 "a schedule whose values stay in [0, 1]")
        return float(value)
    alpha, schedule = check_alpha(alpha), config.check("SCHEDULE", schedule)
    if schedule == "constant":
        return alpha
    if alpha_end is None:
        raise ParameterError("ALPHA_END", None, f"a number in [0, 1] (the {schedule!r} schedule ends there)")
    alpha_end = check_alpha(alpha_end, "ALPHA_END")
    progress = epoch / (epochs - 1) if epochs > 1 else 0.0
    if schedule == "linear":
        return alpha + (alpha_end - alpha) * progress
    if schedule == "cosine":
        return alpha_end + (alpha - alpha_end) * 0.5 * (1 + math.cos(math.pi * progress))
    return alpha if epoch < epochs / 2 else alpha_end


def alpha_schedule(epochs, *, alpha, schedule="constant", alpha_end=None):
    """Alpha for every epoch, validated up front (a schedule that leaves [0, 1] is refused)."""
    epochs = config.check("EPOCHS", epochs)
    return [alpha_at(e, epochs, alpha=alpha, schedule=schedule, alpha_end=alpha_end) for e in range(epochs)]


# -- matching a student map to a teacher map ----------------------------------------------------------
def spatial_plan(student_shape, teacher_shape):
    """How a student feature of `student_shape` is brought to `teacher_shape` (shapes without the batch):
    "same", ("pool", kernel) or ("upsample", size). Refuses pairs that cannot be matched."""
    student_shape, teacher_shape = tuple(student_shape), tuple(teacher_shape)
    if len(student_shape) != len(teacher_shape) or len(student_shape) not in (1, 3):
        raise ParameterError("feature shapes", f"student {student_shape} vs teacher {teacher_shape}",
                             "two features of the same kind: (C,) vectors or (C, H, W) maps")
    if len(student_shape) == 1 or student_shape[1:] == teacher_shape[1:]:
        return "same"
    (hs, ws), (ht, wt) = student_shape[1:], teacher_shape[1:]
    if hs % ht == 0 and ws % wt == 0:
        return ("pool", (hs // ht, ws // wt))
    if ht % hs == 0 and wt % ws == 0:
        return ("upsample", (ht, wt))
    raise ParameterError("feature sizes", f"student {hs}x{ws} vs teacher {ht}x{wt}",
                         "spatial sizes that are equal or integer multiples of each other in both directions "
                         "(the student map is then average-pooled or upsampled); choose another student_layer "
                         "or teacher_layer")


def match_spatial(student_map, teacher_shape):
    """The student's map at the teacher's spatial size, following `spatial_plan`."""
    plan = spatial_plan(student_map.shape[1:], teacher_shape)
    if plan == "same":
        return student_map
    kind, arg = plan
    if kind == "pool":
        return F.avg_pool2d(student_map, kernel_size=arg)
    return F.interpolate(student_map, size=arg, mode="nearest")


# -- the losses (1) and (2) -----------------------------------------------------------------------------
def cosine_term(student_feat, teacher_feat):
    """1 - cos(f_S, f_T): cosine of the per-sample flattened features, averaged over the batch."""
    cos = F.cosine_similarity(student_feat.flatten(1), teacher_feat.flatten(1), dim=1)
    return 1 - cos.mean()


def hybrid_feature_loss(student_feat, teacher_feat, mse_weight=1.0):
    """Eq. (1) with the MSE weight explicit: mse_weight * MSE + (1 - cos). Pass the teacher detached."""
    mse = F.mse_loss(student_feat, teacher_feat)
    cos = cosine_term(student_feat, teacher_feat)
    return {"loss": mse_weight * mse + cos, "mse": mse, "cos": cos}


def feature_distillation_loss(logits, labels, student_feat, teacher_feat, alpha, *, alpha_squared=True):
    """Eq. (2): (1 - alpha) * CE + alpha * L_feat; L_feat weights its MSE by alpha when `alpha_squared`
    (the literal text, so the MSE carries alpha**2) and by 1 otherwise. Returns named terms."""
    alpha = check_alpha(alpha)
    ce = F.cross_entropy(logits, labels)
    feat = hybrid_feature_loss(student_feat, teacher_feat, alpha if alpha_squared else 1.0)
    return {"loss": (1 - alpha) * ce + alpha * feat["loss"], "ce": ce, "feat": feat["loss"],
            "mse": feat["mse"], "cos": feat["cos"]}


# -- the student with its adapter ------------------------------------------------------------------------
class ChannelAdapter(nn.Module):
    """A: the learnable per-channel feature weighting (a gain, initialised to 1), then a 1x1 conv from
    the student's channels to the teacher's. Vectors (B, C) are treated as 1x1 maps."""

    def __init__(self, student_channels, teacher_channels, weighting=True):
        super().__init__()
        student_channels = check_int("student_channels", student_channels)
        teacher_channels = check_int("teacher_channels", teacher_channels)
        self.gain = nn.Parameter(torch.ones(student_channels)) if weighting else None
        self.conv = nn.Conv2d(student_channels, teacher_channels, kernel_size=1)

    def forward(self, feature):
        vector = feature.dim() == 2
        x = feature[:, :, None, None] if vector else feature
        if self.gain is not None:
            x = x * self.gain.view(1, -1, 1, 1)
        x = self.conv(x)
        return x.flatten(1) if vector else x


class FeatureStudent(nn.Module):
    """The student with its adapter. `model(x)` gives logits (the kit's contract, so `accuracy` and
    `fit` work); `model(x, return_features=True)` gives (logits, A(f_S) at the teacher's size)."""

    def __init__(self, student, adapter, student_layer, teacher_shape):
        super().__init__()
        self.student, self.adapter = student, adapter
        self.student_layer = student_layer
        self.teacher_shape = tuple(teacher_shape)

    def forward(self, x, return_features=False):
        if not return_features:
            return self.student(x)
        logits, features = self.student(x, return_features=True)
        adapted = self.adapter(match_spatial(features[self.student_layer], self.teacher_shape))
        return logits, adapted


@torch.no_grad()
def feature_shape(model, x, layer, name="layer"):
    """Shape (without the batch) of `model`'s feature `layer` on the inputs `x`, evaluated in eval mode
    (so probing writes no BatchNorm statistics); `name` is the parameter named in the error."""
    was_training = model.training
    model.eval()
    try:
        _, features = model(x, return_features=True)
    finally:
        model.train(was_training)
    if not isinstance(layer, int) or isinstance(layer, bool) or not -len(features) <= layer < len(features):
        raise ParameterError(name, layer, f"an index into the model's {len(features)} features")
    return tuple(features[layer].shape[1:])


def attach_adapter(student, teacher, x_probe, *, student_layer, teacher_layer, weighting=True):
    """Wrap `student` with a ChannelAdapter from its `student_layer` to the teacher's `teacher_layer`,
    after checking on `x_probe` that the two maps can be matched (ParameterError otherwise)."""
    s_shape = feature_shape(student, x_probe, student_layer, "student_layer")
    t_shape = feature_shape(teacher, x_probe, teacher_layer, "teacher_layer")
    try:
        spatial_plan(s_shape, t_shape)
    except ParameterError as error:
        raise ParameterError("student_layer", f"{student_layer} (a {s_shape} feature)",
                             f"a layer that can be matched to the teacher's layer {teacher_layer} "
                             f"(a {t_shape} feature): {error.allowed}") from None
    reference = next(student.parameters())
    adapter = ChannelAdapter(s_shape[0], t_shape[0], weighting).to(reference.device, reference.dtype)
    return FeatureStudent(student, adapter, student_layer, t_shape)


@torch.no_grad()
def teacher_features(teacher, x, layer):
    """f_T: the frozen teacher's feature `layer` (eval mode, no gradient)."""
    teacher.eval()
    return teacher(x, return_features=True)[1][layer]


# -- the ordinary step (mdistiller style: forward in, named losses out) ---------------------------------
def objective(alpha, alpha_squared=True):
    """loss_fn(output, labels, teacher_feat) of Eq. (2) on the output of `FeatureStudent(...,
    return_features=True)`; alpha = 0 is plain cross-entropy (feature terms not even computed)."""
    alpha = check_alpha(alpha)

    def loss_fn(output, labels, teacher_feat):
        logits, adapted = output
        if alpha == 0:
            return {"loss": F.cross_entropy(logits, labels)}
        return feature_distillation_loss(logits, labels, adapted, teacher_feat, alpha, alpha_squared=alpha_squared)

    return loss_fn


def feature_meta_step(model, teacher, x, y, *, alpha, teacher_layer, alpha_squared=True):
    """The named losses of one ordinary training step on (x, y); 'loss' is L of Eq. (2)."""
    if check_alpha(alpha) == 0:
        return {"loss": F.cross_entropy(model(x), y)}
    f_t = teacher_features(teacher, x, teacher_layer)
    return objective(alpha, alpha_squared)(model(x, return_features=True), y, f_t)


# -- the adaptation phase (3)-(4) ------------------------------------------------------------------------
def split_support_query(*tensors):
    """The first half of a (shuffled) batch as support, the second half as query, for every tensor."""
    half = len(tensors[0]) // 2
    return tuple(t[:half] for t in tensors), tuple(t[half:] for t in tensors)


def adaptation_loss(model, support, query, loss_fn, *, inner_steps=1, inner_lr=0.1, first_order=False,
                    engine="higher"):
    """Eq. (3) `inner_steps` times on `support`, then the query loss at the adapted weights.

    `support` and `query` are tuples (x, labels, teacher_feat); `loss_fn(output, labels, teacher_feat)`
    returns named losses (see `objective`). Returns a dict whose "loss" is differentiable with respect
    to `model.parameters()`, the initial weights (Eq. 4 is `loss.backward()` and an optimizer step),
    plus "support_loss" (before the first inner step, detached). engine="higher" runs the inner loop
    with `higher.innerloop_ctx`, engine="func" with kdlab.meta (torch.func): the same numbers.
    """
    inner_steps = config.check("INNER_STEPS", inner_steps)
    inner_lr = config.check("INNER_LR", inner_lr)
    if engine not in ENGINES:
        raise ParameterError("engine", engine, "one of " + ", ".join(map(repr, ENGINES)))
    x_s, *targets_s = support
    x_q, *targets_q = query
    step_loss = lambda out, *t: loss_fn(out, *t)["loss"]  # noqa: E731
    if engine == "func":
        params = meta.params_of(model)
        fast, losses = meta.inner_loop(model, params, step_loss, (x_s, *targets_s), steps=inner_steps,
                                       lr=inner_lr, first_order=first_order, bn="transductive",
                                       model_kwargs={"return_features": True})
        query_loss = step_loss(meta.forward(model, fast, x_q, return_features=True), *targets_q)
        first = losses[0] if len(losses) else query_loss.detach()
        return {"loss": query_loss, "support_loss": first}
    higher = import_higher()
    inner_opt = torch.optim.SGD(model.parameters(), lr=inner_lr)
    losses = []
    with meta.bn_mode(model, "transductive"), higher.innerloop_ctx(
            model, inner_opt, copy_initial_weights=False, track_higher_grads=not first_order) as (fmodel, diffopt):
        for _ in range(inner_steps):
            loss = step_loss(fmodel(x_s, return_features=True), *targets_s)
            diffopt.step(loss)
            losses.append(loss.detach())
        fast = fmodel.fast_params
        if first_order:  # higher detached every step: re-attach so that d fast / d params = I (FOMAML)
            fast = [p + (f - p).detach() for p, f in zip(model.parameters(), fast)]
        query_loss = step_loss(fmodel(x_q, return_features=True, params=fast), *targets_q)
    return {"loss": query_loss, "support_loss": losses[0] if losses else query_loss.detach()}


# -- mixed precision -------------------------------------------------------------------------------------
class Precision:
    """torch.autocast(float16) + GradScaler on CUDA when `amp`; plain float32 everywhere else."""

    def __init__(self, device, amp=True):
        self.enabled = bool(amp) and torch.device(device).type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if self.enabled else None

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.float16) if self.enabled else contextlib.nullcontext()

    def step(self, loss, optimizer):
        """backward (scaled), optimizer step (unscaled, skipped on inf), scale update."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


# -- end to end ------------------------------------------------------------------------------------------
def train_feature_meta(student, teacher, data, *, epochs=10, lr=0.05, batch_size=64, alpha=0.7,
                       schedule="constant", alpha_end=None, alpha_squared=True, adaptation=True,
                       inner_steps=1, inner_lr=0.05, meta_lr=None, meta_every=1, first_order=False,
                       student_layer=2, teacher_layer=2, weighting=True, engine="higher", amp=True,
                       optimizer="sgd", momentum=0.9, weight_decay=5e-4, lr_schedule="cosine", seed=0,
                       augment=None, callbacks=()):
    """Train `student` with Eq. (2) from the frozen `teacher` on `data` (a DataSplits); with
    `adaptation`, an adaptation phase (3)-(4) every `meta_every` steps. Returns (student, History).

    Every epoch records alpha, the mean of each named loss of the ordinary steps ("loss" is Eq. 2,
    "ce" its cross-entropy part), "meta_loss" (the mean query loss of the phase), "passes" (forward-
    backward passes so far, in batches; a second-order backward costs more, so compare "seconds" too),
    "train_acc" and "test_acc".
    alpha = 0 with adaptation=False is plain cross-entropy training (the baseline): the student's
    weights then equal `kdlab.train.fit(student, data, cross_entropy, ...)` with the same recipe.
    The adapter is training scaffolding: the History keeps it as `history.adapter`. Interrupting the
    kernel ends training cleanly with `history.interrupted = True`, as in `kdlab.train.fit`.
    """
    epochs, lr = config.check("EPOCHS", epochs), config.check("LR", lr)
    batch_size = config.check("BATCH_SIZE", batch_size)
    alphas = alpha_schedule(epochs, alpha=alpha, schedule=schedule, alpha_end=alpha_end)
    meta_every = config.check("META_EVERY", meta_every)
    if adaptation:
        config.check("INNER_STEPS", inner_steps)
        config.check("INNER_LR", inner_lr)
    meta_lr = lr if meta_lr is None else config.check("META_LR", meta_lr)
    device = data.x_train.device
    model = attach_adapter(student, teacher, data.x_train[:2], student_layer=student_layer,
                           teacher_layer=teacher_layer, weighting=weighting)
    opt = make_optimizer(model.parameters(), optimizer, lr, momentum, weight_decay)
    meta_opt = torch.optim.SGD(model.parameters(), lr=meta_lr)
    precision = Precision(device, amp)
    generator = torch.Generator().manual_seed(seed)
    history, passes = History(), 0
    history.adapter = model.adapter
    model.train()
    try:
        for epoch in range(epochs):
            epoch_lr = scheduled_lr(lr, lr_schedule, epoch, epochs)
            for group in opt.param_groups:
                group["lr"] = epoch_lr
            for group in meta_opt.param_groups:
                group["lr"] = meta_lr * epoch_lr / lr
            loss_fn = objective(alphas[epoch], alpha_squared)
            start, sums, count, meta_sum, meta_count = time.perf_counter(), {}, 0, 0.0, 0
            for step, (xb, yb) in enumerate(batches(data.x_train, data.y_train, batch_size, generator=generator)):
                if augment is not None:
                    xb = augment(xb, generator)
                f_t = teacher_features(teacher, xb, teacher_layer) if alphas[epoch] > 0 else None
                with precision.autocast():
                    losses = loss_fn(model(xb, return_features=True), yb, f_t)
                check_finite(losses, epoch, step, epoch_lr)
                precision.step(losses["loss"], opt)
                passes += 1
                for name, value in losses.items():
                    sums[name] = sums.get(name, 0.0) + float(value.detach()) * len(xb)
                count += len(xb)
                if adaptation and (step + 1) % meta_every == 0 and len(xb) >= 2:
                    # with alpha = 0 the loss never reads the teacher's features; the labels stand in for them
                    support, query = split_support_query(xb, yb, f_t if f_t is not None else yb)
                    with precision.autocast():
                        out = adaptation_loss(model, support, query, loss_fn, inner_steps=inner_steps,
                                              inner_lr=inner_lr, first_order=first_order, engine=engine)
                    check_finite(out, epoch, step, meta_lr)
                    precision.step(out["loss"], meta_opt)
                    passes += (inner_steps + 1) / 2  # k support and 1 query pass, each on half a batch
                    meta_sum, meta_count = meta_sum + float(out["loss"].detach()), meta_count + 1
            record = {"epoch": epoch + 1, "lr": epoch_lr, "alpha": alphas[epoch],
                      "seconds": time.perf_counter() - start}
            record.update({name: total / count for name, total in sums.items()})
            if "ce" not in record:  # alpha = 0: the loss is the cross-entropy
                record["ce"] = record["loss"]
            if meta_count:
                record["meta_loss"] = meta_sum / meta_count
            record["passes"] = passes
            record["train_acc"] = accuracy(model, data.x_train, data.y_train)
            record["test_acc"] = accuracy(model, data.x_test, data.y_test)
            history.append(record)
            if any(callback(history, model) for callback in callbacks):
                break
    except KeyboardInterrupt:  # the stop button: keep the weights of the last completed step
        history.interrupted = True
        print(f"kdlab: training interrupted after {history.epochs_done} epochs; the student and history are usable.")
    finally:
        model.eval()
    return student, history


def epochs_to_reach(test_acc, threshold):
    """The first epoch (1-based) whose accuracy reaches `threshold`, or nan if none does."""
    for epoch, acc in enumerate(test_acc, start=1):
        if acc >= threshold:
            return epoch
    return math.nan
