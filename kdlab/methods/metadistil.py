"""MetaDistil: the teacher learns to teach from its student's quiz loss (Zhou, Xu, McAuley, ACL 2022).

arXiv:2106.04570, first titled "Meta Learning for Knowledge Distillation" (its numbering is used here).
The student's objective (Eq. 1; ALPHA weights the KD term, as in the official CV code and everywhere in
the kit: the paper's Eq. 1 writes its alpha on the task loss, so paper alpha = 1 - ALPHA):

    L_S(x; theta_S; theta_T) = (1 - alpha) * CE(S(x), y) + alpha * tau^2 * KL(p_T^tau || p_S^tau)

One iteration of Algorithm 1 on a training batch x (lines 2-7; `metadistil_step`):

    3-4  teaching experiment  theta_S' = theta_S - lambda * grad_{theta_S} L_S(x; theta_S; theta_T)     (Eq. 2)
    5-6  meta-update          theta_T <- theta_T - mu * grad_{theta_T} CE(S(q; theta_S'(theta_T)), y_q)    (Eq. 3)
    7    pilot update         theta_S <- one step of the real optimiser on L_S(x; theta_S; theta_T_new)

Detached: nothing in the experiment. The teacher's logits keep their graph and so does the student's
gradient (`kdlab.meta.lookahead(..., create_graph=True)`): the teacher enters only the inner loss, so its
meta-gradient is purely the mixed second derivative (second order; first order or detached logits: zero)
    d l_q / d theta_T = -lambda * (d^2 L_S / d theta_T d theta_S) . grad_{theta_S'} l_q .
L_T (Eq. 3): cross-entropy only, on a quiz batch, at theta_S'. The real student's KD step detaches the
teacher's logits. The copy is a dict of tensors: the real student and its optimiser are never touched.

Order (`pilot_update`; `metadistil_step(..., trace=[])` records it). True (Algorithm 1): experiment, quiz
loss, teacher update, student update with the UPDATED teacher on the SAME batch. False (section 3.2.1's
ablation): experiment, quiz loss, student update with the OLD teacher, teacher update (it lags one step).

Deviations from the official code (JetRunner/MetaDistil, cv/), declared:
- quiz set: a seeded random stratified 9:1 split (the paper), not the last N training images; quiz batches
  without replacement in reshuffled passes (`kdlab.data.quiz`), augmented (if the run augments) from their
  own generator, so the training batches see exactly the random crops of `fit` (teacher_lr=0 is KD).
- lambda = the student's current lr (official `--assume_s_step_size`, decayed with it); plain SGD in the
  experiment, SGD with momentum and weight decay for the real student (as the code). Teacher: SGD with
  momentum 0.9, weight decay 5e-4, lr following the student's schedule; eval() mode (BatchNorm fixed).
- `freeze_epochs`: the code keeps the teacher's lr at 0 for 150 of 240 epochs but still computes the
  meta-gradients (momentum accumulates); here frozen epochs are plain KD steps, momentum starts at zero.
"""
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .. import config, meta
from ..data.quiz import QuizSplit, quiz_batches, seeded_generator, split_quiz  # noqa: F401 (md.QuizSplit)
from ..losses import distillation_loss, kd_loss
from ..train.evaluation import accuracy
from .base import Method, check_finite, make_optimizer

QUIZ_SEED_OFFSET, QUIZ_AUGMENT_SEED_OFFSET = 7_919, 104_729  # the quiz order's and the quiz augmentation's


def student_loss(student_logits, teacher_logits, labels, alpha, temperature):
    """L_S of Eq. 1, a dict of named terms (loss, ce, kd); the teacher's logits are used as given."""
    return distillation_loss(student_logits, teacher_logits, labels, alpha, temperature)


def quiz_loss(student_logits, labels):
    """L_T of Eq. 3: the (experimental) student's cross-entropy on quiz data; no KD term."""
    return F.cross_entropy(student_logits, labels)


def teaching_experiment(student, teacher_logits, x, y, *, lr, alpha, temperature):
    """Lines 3-4 / Eq. 2: a copy theta_S' = theta_S - lr * grad L_S, differentiable in the teacher.

    `teacher_logits` must carry the teacher's graph. Returns `(fast_params, student_logits, losses)`."""
    params = meta.params_of(student)
    student_logits = meta.forward(student, params, x)  # batch statistics; BatchNorm buffers not written
    losses = student_loss(student_logits, teacher_logits, y, alpha, temperature)
    fast = meta.lookahead(student, params, losses["loss"], lr, create_graph=True)
    return fast, student_logits, losses


class MetaGradient(NamedTuple):
    """What lines 3-6 compute before the teacher moves."""
    quiz_loss: torch.Tensor       # CE of the experimental student on the quiz batch (detached)
    grads: dict                   # d quiz_loss / d theta_T, by teacher parameter name
    teacher_logits: torch.Tensor  # the teacher's logits on x; student_logits: the student's at theta_S
    student_logits: torch.Tensor  # (both still attached); losses: the experiment's L_S terms at theta_S
    losses: dict


def teacher_meta_gradient(student, teacher, x, y, x_q, y_q, *, lr, alpha, temperature):
    """Lines 3-6 without the step: d CE(S(q; theta_S'(theta_T)), y_q) / d theta_T (Eq. 3), second order."""
    teacher_params = meta.params_of(teacher)
    teacher_logits = teacher(x)  # NOT detached: the meta-gradient flows through it
    fast, student_logits, losses = teaching_experiment(student, teacher_logits, x, y, lr=lr, alpha=alpha,
                                                       temperature=temperature)
    l_q = quiz_loss(meta.forward(student, fast, x_q), y_q)  # at theta_S', on the quiz batch
    grads = torch.autograd.grad(l_q, list(teacher_params.values()), allow_unused=True)
    grads = {name: torch.zeros_like(p) if g is None else g  # a teacher parameter the logits do not use
             for (name, p), g in zip(teacher_params.items(), grads)}
    return MetaGradient(l_q.detach(), grads, teacher_logits, student_logits, losses)


def teacher_update(teacher, teacher_opt, grads):
    """The step of Eq. 3: the teacher's optimiser descends the meta-gradient."""
    for name, p in meta.params_of(teacher).items():
        p.grad = grads[name]
    teacher_opt.step()
    teacher_opt.zero_grad(set_to_none=True)  # the momentum buffer keeps what is needed; free the grads now


def student_update(student, student_opt, teacher_logits, x, y, alpha, temperature, position=(0, 0)):
    """Line 7: a KD step of the real student (teacher logits detached), exactly as `kdlab.train.fit`'s."""
    losses = student_loss(student(x), teacher_logits.detach(), y, alpha, temperature)
    check_finite(losses, *position, student_opt.param_groups[0]["lr"])
    student_opt.zero_grad(set_to_none=True)
    losses["loss"].backward()
    student_opt.step()
    return losses


def metadistil_step(student, teacher, batch, quiz_batch, *, student_opt, teacher_opt, lookahead_lr, alpha=0.9,
                    temperature=4.0, pilot_update=True, trace=None, position=(0, 0)):
    """One iteration of Algorithm 1 on `batch = (x, y)` with `quiz_batch = (x_q, y_q)`; both models updated.

    `lookahead_lr` is lambda of Eq. 2; the teacher's step size mu is `teacher_opt`'s lr; `trace` (a list)
    records the operations in the order they ran; `position` = (epoch, step) for error messages. Returns
    detached losses: loss, ce, kd (the real student's step), quiz (the experimental student's), the
    teacher_grad_norm, and kd_before / kd_after: the teacher-student tau^2 KL on x at the student's
    pre-step parameters, before and after the teacher's update (section 5.1's "toward").
    """
    config.check("pilot_update", pilot_update)
    log = trace.append if trace is not None else (lambda _: None)
    (x, y), (x_q, y_q) = batch, quiz_batch
    result = teacher_meta_gradient(student, teacher, x, y, x_q, y_q, lr=lookahead_lr, alpha=alpha,
                                   temperature=temperature)
    log("teaching_experiment")  # teacher forward (attached), student copy's differentiable step
    log("quiz_loss")            # ... and its quiz loss, differentiated w.r.t. the teacher
    if pilot_update:
        teacher_update(teacher, teacher_opt, result.grads)
        log("teacher_update")
        with torch.no_grad():
            new_teacher = teacher(x)
        losses = student_update(student, student_opt, new_teacher, x, y, alpha, temperature, position)
        log("student_update(updated teacher)")
    else:
        losses = student_update(student, student_opt, result.teacher_logits, x, y, alpha, temperature, position)
        log("student_update(old teacher)")
        teacher_update(teacher, teacher_opt, result.grads)
        log("teacher_update")
        with torch.no_grad():
            new_teacher = teacher(x)
    kd_after = kd_loss(result.student_logits.detach(), new_teacher, temperature)
    grad_norm = torch.sqrt(sum((g.detach() ** 2).sum() for g in result.grads.values()))
    return {**{k: losses[k].detach() for k in ("loss", "ce", "kd")}, "quiz": result.quiz_loss,
            "teacher_grad_norm": grad_norm, "kd_before": result.losses["kd"].detach(), "kd_after": kd_after}


def kd_step(student, teacher, batch, *, student_opt, alpha=0.9, temperature=4.0, position=(0, 0)):
    """A plain KD step (the frozen-teacher epochs, and the cost baseline)."""
    x, y = batch
    with torch.no_grad():
        teacher_logits = teacher(x)
    losses = student_update(student, student_opt, teacher_logits, x, y, alpha, temperature, position)
    return {name: value.detach() for name, value in losses.items()}


def toward_share(history):
    """Section 5.1's statistic: the share of teacher updates that moved the teacher toward the student
    (`kd_after < kd_before`), in the first and in the second half of the updates (frozen steps excluded)."""
    toward = [r["toward"] for r in history.steps if r.get("toward") is not None]
    halves = toward[:len(toward) // 2], toward[len(toward) // 2:]
    return tuple(sum(h) / len(h) if h else float("nan") for h in halves)


class MetaDistil(Method):
    """MetaDistil from a trained `teacher` (it keeps training) into `student`, for `kdlab.train.fit`.

    `prepare` holds out the quiz set (seeded by the run's seed); with teacher_lr=0 this is exactly `fit(student,
    split.train, distill_from(teacher))`, with augmentation too. `monitor=(x, y)`: student and teacher accuracy
    every `log_every` steps. Epochs add teacher_lr, teacher_test_acc; `history.steps`: one record a step."""

    name = "metadistil"
    progress_desc = "MetaDistil epochs"
    card = {"paper": "Zhou, Xu, McAuley (ACL 2022), BERT Learns to Teach (arXiv:2106.04570), Algorithm 1",
            "equations": "Eq. 1 L_S = (1-a) CE + a tau^2 KL; Eq. 2 theta_S' = theta_S - lambda grad L_S; "
                         "Eq. 3 theta_T <- theta_T - mu grad_theta_T CE(S(q; theta_S'(theta_T)))",
            "detached": "nothing in the teaching experiment; the teacher's logits in the real student's step",
            "order": "second order (the teacher's gradient is a mixed second derivative)", "loop": "epochs",
            "deviations": "random stratified quiz split; quiz augmentation from its own generator; "
                          "frozen epochs skip the meta-gradient"}

    def __init__(self, student, teacher, *, teacher_lr=1e-4, alpha=0.9, temperature=4.0, quiz_fraction=0.1,
                 quiz_batch_size=None, pilot_update=True, freeze_epochs=0, teacher_momentum=0.9,
                 teacher_weight_decay=5e-4, lookahead_lr=None, monitor=None, log_every=0):
        config.validate(TEACHER_LR=teacher_lr, ALPHA=alpha, TEMPERATURE=temperature, QUIZ_FRACTION=quiz_fraction,
                        FREEZE_EPOCHS=freeze_epochs, quiz_batch_size=quiz_batch_size, pilot_update=pilot_update,
                        lookahead_lr=lookahead_lr, log_every=log_every)
        self.model, self.teacher, self.monitor, self.log_every = student, teacher, monitor, log_every
        self.teacher_lr, self.teacher_momentum, self.teacher_wd = teacher_lr, teacher_momentum, teacher_weight_decay
        self.alpha, self.temperature, self.lookahead_lr = alpha, temperature, lookahead_lr
        self.pilot_update, self.freeze_epochs = pilot_update, freeze_epochs
        self.quiz_fraction, self.quiz_batch_size = quiz_fraction, quiz_batch_size
        self.teacher_optimizer = self.split = self.quiz_stream = self.quiz_rng = None

    def configure(self, recipe, run):
        super().configure(recipe, run)
        if self.teacher_optimizer is None:
            self.teacher_optimizer = make_optimizer(self.teacher.parameters(), "sgd", self.teacher_lr,
                                                    self.teacher_momentum, self.teacher_wd)

    def optimizers(self):
        return [self.optimizer, self.teacher_optimizer]  # the teacher's lr follows the student's schedule

    def prepare(self, data, run):
        size = run.batch_size if self.quiz_batch_size is None else self.quiz_batch_size
        self.split = split_quiz(data, self.quiz_fraction, run.seed, quiz_batch_size=size)
        order = seeded_generator(run.seed + QUIZ_SEED_OFFSET)
        self.quiz_stream = quiz_batches(self.split.x_quiz, self.split.y_quiz, size, order)
        self.quiz_rng = seeded_generator(run.seed + QUIZ_AUGMENT_SEED_OFFSET)  # not the batch order's run.generator
        return self.split.train

    def quiz_batch(self, batch, run):
        """Line 5: q ~ Q, the next batch of the quiz stream (never the training `batch`), augmented apart."""
        x_q, y_q = next(self.quiz_stream)
        return run.augmented(x_q, self.quiz_rng), y_q

    def step(self, batch, run):
        position = (run.epoch, run.step)
        if run.epoch < self.freeze_epochs:
            losses = kd_step(self.model, self.teacher, (batch.x, batch.y), student_opt=self.optimizer,
                             alpha=self.alpha, temperature=self.temperature, position=position)
            record = {"toward": None}
        else:
            quiz = self.quiz_batch(batch, run)
            lam = run.lr if self.lookahead_lr is None else self.lookahead_lr * (run.lr / run.recipe.lr)
            losses = metadistil_step(self.model, self.teacher, (batch.x, batch.y), quiz, student_opt=self.optimizer,
                                     teacher_opt=self.teacher_optimizer, lookahead_lr=lam, alpha=self.alpha,
                                     temperature=self.temperature, pilot_update=self.pilot_update, position=position)
            record = {"toward": bool(losses["kd_after"] < losses["kd_before"])}
        steps = run.history.steps if run.history is not None else []
        n = len(steps) + 1
        record.update(step=n, epoch=run.epoch + 1, **{k: float(v) for k, v in losses.items()})
        if self.log_every and self.monitor is not None and (n == 1 or n % self.log_every == 0):
            record["student_acc"] = accuracy(self.model, *self.monitor)
            record["teacher_acc"] = accuracy(self.teacher, *self.monitor)
        steps.append(record)
        return losses

    def on_epoch_end(self, record, run):
        record["teacher_lr"] = 0.0 if run.epoch < self.freeze_epochs else self.teacher_optimizer.param_groups[0]["lr"]

    def evaluate(self, data):
        return {**super().evaluate(data), "teacher_test_acc": accuracy(self.teacher, data.x_test, data.y_test)}

    def modules(self):
        return [self.model, self.teacher]

    def train(self):
        self.model.train()
        self.teacher.eval()  # BatchNorm running statistics stay fixed; the parameters still train
