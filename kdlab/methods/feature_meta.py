"""Hybrid MSE + cosine feature distillation with a MAML adaptation phase.

Paper: "Meta-Learning Adaptation Phase Enhanced Feature Distillation for Accelerated Convergence and
Improved Generalization", Preprints.org 202503.1636, v1, 21 March 2025 (not peer-reviewed, no code).
The paper's displays carry no numbers; the numbering (1)-(4) is ours, in the order of the text.

    L_feat = alpha * MSE(A(f_S), f_T) + (1 - cos(A(f_S), f_T))      (1)  section 3.1
    L      = (1 - alpha) * L_cls + alpha * L_feat                    (2)  section 3.1
    theta' = theta - eta * grad_theta L(theta; D_supp)                (3)  section 3.2.3, inner step
    theta <- theta - eta * grad_theta L(theta'; D_query)              (4)  section 3.2.3, meta-update

The paper's alpha in (2) weights the distillation (feature) term, so ALPHA is the paper's alpha: no
conversion. f_T is a teacher feature map (the paper: ResNet-101 `layer3`), f_S a student map at the same
stride, A the adapter of `kdlab.models.adapter` (a per-channel gain, then a 1x1 conv to the teacher's
channels). MSE is the mean over every entry; cos is taken per sample on the flattened maps, then averaged.

Declared deviations and readings (the paper leaves these open):
  - alpha squared: read literally, (1) inside (2) weights the MSE by alpha**2 and the cosine term by
    alpha. `alpha_squared=True` (default) is that reading; False drops the inner alpha:
    L = (1 - alpha) * CE + alpha * (MSE + (1 - cos)).
  - the "learnable feature weighting" is read as a per-channel gain on f_S, initialised to 1.
  - support and query: every `meta_every` steps, the current shuffled batch split in half (the paper:
    "drawn independently from the data distribution"); both halves hold the same 10 classes, so the phase
    acts as a look-ahead step, not as few-shot learning. The inner step is plain SGD at `inner_lr`, the
    outer step (4) plain SGD at `meta_lr` (default: the student's lr), following the run's lr schedule.
  - alpha may follow a schedule per epoch (the paper's future work), `kdlab.alpha_schedule`.
  - "Temperature = 4.0" is listed in section 4.2, but no displayed loss has a temperature: none is used.

What is detached and what is second order:
  - teacher features: always computed under no_grad, teacher in eval mode (frozen); without augmentation,
    once for the training set and looked up per batch (`FrozenLogits(teacher, read=...)`, the same numbers);
  - the adapter A trains with the student, in the ordinary step and in the phase;
  - inner steps: second order by default (the query gradient flows through the k inner updates to the
    initial weights); `first_order=True` detaches the inner gradients (FOMAML: d theta'/d theta = I);
  - BatchNorm: batch statistics in the inner and query passes; the phase writes no running statistics.
`engine="higher"` runs the inner loop with `higher.innerloop_ctx(..., copy_initial_weights=False)` (the
paper's library; with its default True no gradient reaches the initial weights, higher issue #69),
`engine="func"` with torch.func: the same numbers. Mixed precision (the paper used PyTorch AMP):
`kdlab.precision.Precision`, autocast + GradScaler on CUDA, a no-op on the CPU.
"""
import torch
import torch.nn.functional as F

from .. import config, meta
from ..alpha_schedule import alpha_at, alpha_schedule
from ..models.adapter import attach_adapter
from ..precision import Precision
from .base import Method, check_finite, make_optimizer
from .frozen_teacher import FrozenLogits


# -- the losses (1) and (2) -----------------------------------------------------------------------------
def mse_term(student_feat, teacher_feat):
    """MSE(A(f_S), f_T): the mean over every entry."""
    return F.mse_loss(student_feat, teacher_feat)


def cosine_term(student_feat, teacher_feat):
    """1 - cos(A(f_S), f_T): cosine of the per-sample flattened features, averaged over the batch."""
    cos = F.cosine_similarity(student_feat.flatten(1), teacher_feat.flatten(1), dim=1)
    return 1 - cos.mean()


def hybrid_feature_loss(student_feat, teacher_feat, mse_weight=1.0):
    """Eq. (1) with the MSE weight explicit: mse_weight * MSE + (1 - cos). Pass the teacher detached."""
    mse, cos = mse_term(student_feat, teacher_feat), cosine_term(student_feat, teacher_feat)
    return {"loss": mse_weight * mse + cos, "mse": mse, "cos": cos}


def feature_distillation_loss(logits, labels, student_feat, teacher_feat, alpha, *, alpha_squared=True):
    """Eq. (2): (1 - alpha) * CE + alpha * L_feat; L_feat weights its MSE by alpha when `alpha_squared`
    (the literal text, so the MSE carries alpha**2) and by 1 otherwise. Returns named terms."""
    alpha = float(config.check("ALPHA", alpha))
    ce = F.cross_entropy(logits, labels)
    feat = hybrid_feature_loss(student_feat, teacher_feat, alpha if alpha_squared else 1.0)
    return {"loss": (1 - alpha) * ce + alpha * feat["loss"], "ce": ce, "feat": feat["loss"],
            "mse": feat["mse"], "cos": feat["cos"]}


def objective(alpha, alpha_squared=True):
    """loss_fn(output, labels, teacher_feat) of Eq. (2) on the output of `FeatureStudent(...,
    return_features=True)`; alpha = 0 is plain cross-entropy (feature terms not even computed)."""
    alpha = float(config.check("ALPHA", alpha))

    def loss_fn(output, labels, teacher_feat):
        logits, adapted = output
        if alpha == 0:
            return {"loss": F.cross_entropy(logits, labels)}
        return feature_distillation_loss(logits, labels, adapted, teacher_feat, alpha, alpha_squared=alpha_squared)

    return loss_fn


@torch.no_grad()
def teacher_features(teacher, x, layer):
    """f_T: the frozen teacher's feature `layer` (eval mode, no gradient)."""
    teacher.eval()
    return teacher(x, return_features=True)[1][layer]


# -- the adaptation phase (3)-(4) ------------------------------------------------------------------------
def split_support_query(*tensors):
    """The first half of a (shuffled) batch as support, the second half as query, for every tensor."""
    half = len(tensors[0]) // 2
    return tuple(t[:half] for t in tensors), tuple(t[half:] for t in tensors)


def adapt(model, support, step_loss, *, steps, lr, first_order, engine):
    """Eq. (3) `steps` times on `support` = (x, *targets): `meta.Adapted(theta', support losses)`."""
    return meta.inner_loop(model, meta.params_of(model), step_loss, support, steps=steps, lr=lr,
                           first_order=first_order, bn="transductive", backend=engine,
                           model_kwargs={"return_features": True})


def adaptation_loss(model, support, query, loss_fn, *, inner_steps=1, inner_lr=0.1, first_order=False,
                    engine="higher"):
    """Eq. (3) `inner_steps` times on `support`, then the query loss at the adapted weights.

    `support` and `query` are tuples (x, labels, teacher_feat); `loss_fn(output, labels, teacher_feat)`
    returns named losses (see `objective`). Returns a dict whose "loss" is differentiable with respect
    to `model.parameters()`, the initial weights (Eq. 4 is `loss.backward()` and an optimizer step),
    plus "support_loss" (before the first inner step, detached).
    """
    inner_steps, inner_lr = config.check("INNER_STEPS", inner_steps), config.check("INNER_LR", inner_lr)
    config.check("engine", engine)
    step_loss = lambda out, *targets: loss_fn(out, *targets)["loss"]  # noqa: E731
    fast, losses = adapt(model, support, step_loss, steps=inner_steps, lr=inner_lr, first_order=first_order,
                         engine=engine)
    x_q, *targets_q = query
    query_loss = step_loss(meta.forward(model, fast, x_q, bn="transductive", return_features=True), *targets_q)
    return {"loss": query_loss, "support_loss": losses[0] if len(losses) else query_loss.detach()}


# -- the method ------------------------------------------------------------------------------------------
class FeatureMeta(Method):
    """Eq. (2) from the frozen `teacher` every step; with `adaptation`, the phase (3)-(4) after every
    `meta_every`-th step. `model` is the FeatureStudent (student + adapter, built on the first `fit`),
    `student` the bare student. Epoch records add alpha, ce, meta_loss (mean query loss of the phase) and
    passes (forward-backward passes so far, in batches; the phase's k + 1 half-batch passes count (k+1)/2).
    alpha = 0 with adaptation=False is plain cross-entropy training: the baseline.
    """

    name = "feature_meta"
    card = {"paper": "Meta-Learning Adaptation Phase Enhanced Feature Distillation for Accelerated Convergence "
                     "and Improved Generalization, Preprints.org 202503.1636 (2025)",
            "equations": "L_feat = alpha MSE(A(f_S), f_T) + 1 - cos(A(f_S), f_T); L = (1 - alpha) CE + alpha L_feat; "
                         "theta' = theta - eta grad L(theta; supp); theta <- theta - eta grad L(theta'; query)",
            "detached": "the teacher's features (no_grad, eval mode); nothing else",
            "order": "second order through the inner steps (first_order=True: FOMAML)", "loop": "epochs",
            "deviations": "alpha**2 on the MSE read literally (alpha_squared); support/query = the two halves "
                          "of the current batch; the feature weighting read as a per-channel gain"}

    def __init__(self, student, teacher, *, alpha=0.7, alpha_schedule="constant", alpha_end=None,
                 alpha_squared=True, adaptation=True, inner_steps=1, inner_lr=0.05, meta_lr=None, meta_every=1,
                 first_order=False, student_layer=2, teacher_layer=2, weighting=True, engine="higher", amp=True):
        alpha_at(0, 2, alpha=alpha, schedule=alpha_schedule, alpha_end=alpha_end)  # refused before training
        config.check("ALPHA_SQUARED", alpha_squared)
        config.check("META_EVERY", meta_every)
        config.check("engine", engine)
        if adaptation:
            config.check("INNER_STEPS", inner_steps)
            config.check("INNER_LR", inner_lr)
        self.meta_lr = None if meta_lr is None else config.check("META_LR", meta_lr)
        self.student, self.teacher = student, teacher
        self.alpha_settings = dict(alpha=alpha, schedule=alpha_schedule, alpha_end=alpha_end)
        self.alpha_squared, self.adaptation, self.meta_every = alpha_squared, adaptation, meta_every
        self.inner = dict(inner_steps=inner_steps, inner_lr=inner_lr, first_order=first_order, engine=engine)
        self.layers = dict(student_layer=student_layer, teacher_layer=teacher_layer, weighting=weighting)
        self.amp, self.recipe, self.meta_optimizer, self.passes = amp, None, None, 0
        self.teacher_maps = FrozenLogits(teacher, read=lambda t, x: teacher_features(t, x, teacher_layer))

    def configure(self, recipe, run):
        self.recipe = recipe

    def optimizers(self):
        return [self.optimizer, self.meta_optimizer]

    def prepare(self, data, run):
        """Attach the adapter (first fit only) and build the optimizers; alpha for every epoch, checked."""
        if self.model is None:
            self.model = attach_adapter(self.student, self.teacher, data.x_train[:2], **self.layers)
            r = self.recipe
            self.optimizer = make_optimizer(self.model.parameters(), r.optimizer, r.lr, r.momentum, r.weight_decay)
            # Eq. (4)'s outer step: plain SGD with its own (empty) state, not the student's momentum
            self.meta_optimizer = torch.optim.SGD(self.model.parameters(), lr=self.meta_lr or r.lr)
            self.precision = Precision(data.x_train.device, self.amp)
        self.alphas = alpha_schedule(run.epochs, **self.alpha_settings)
        self.teacher_maps.prepare(data, run)
        run.history.adapter = self.model.adapter
        return data

    def on_epoch_start(self, run):
        self.alpha = self.alphas[run.epoch]
        self.loss_fn = objective(self.alpha, self.alpha_squared)
        self.meta_sum, self.meta_count = 0.0, 0

    def descend(self, losses, optimizer, run):
        """The NaN guard before any weight is written, then backward and step (scaled under AMP)."""
        check_finite(losses, run.epoch, run.step, optimizer.param_groups[0]["lr"])
        self.precision.step(losses["loss"], optimizer)
        return {name: value.detach() for name, value in losses.items()}

    def step(self, batch, run):
        f_t = self.teacher_maps(batch) if self.alpha > 0 else None
        with self.precision.autocast():
            losses = self.loss_fn(self.model(batch.x, return_features=True), batch.y, f_t)
        losses = self.descend(losses, self.optimizer, run)
        self.passes += 1
        if self.adaptation and (run.step + 1) % self.meta_every == 0 and len(batch.x) >= 2:
            # with alpha = 0 the loss never reads the teacher's features; the labels stand in for them
            out = self.meta_step(batch.x, batch.y, f_t if f_t is not None else batch.y, run)
            self.passes += (self.inner["inner_steps"] + 1) / 2  # k support and 1 query pass, half a batch each
            self.meta_sum, self.meta_count = self.meta_sum + float(out["loss"]), self.meta_count + 1
        return losses

    def meta_step(self, x, y, f_t, run):
        """The adaptation phase: Eq. (3) on the support half, Eq. (4) from the query half."""
        support, query = split_support_query(x, y, f_t)
        with self.precision.autocast():
            out = adaptation_loss(self.model, support, query, self.loss_fn, **self.inner)
        return self.descend(out, self.meta_optimizer, run)

    def on_epoch_end(self, record, run):
        record["alpha"] = self.alpha
        record.setdefault("ce", record["loss"])  # alpha = 0: the loss is the cross-entropy
        if self.meta_count:
            record["meta_loss"] = self.meta_sum / self.meta_count
        record["passes"] = self.passes

    def divergence_hint(self):
        return "Try a smaller learning rate, META_LR or INNER_LR, or a smaller ALPHA."
