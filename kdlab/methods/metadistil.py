"""MetaDistil: the teacher learns to teach from its student's quiz loss (Zhou, Xu, McAuley, ACL 2022).

arXiv:2106.04570, first titled "Meta Learning for Knowledge Distillation" (its numbering is used here).

The student's objective (paper Eq. 1; kdlab's ALPHA weights the KD term, as in the official CV code and
`kdlab.losses.distillation_loss`; the paper's Eq. 1 writes alpha on the task loss instead):

    L_S(x; theta_S; theta_T) = (1 - alpha) * CE(S(x), y) + alpha * tau^2 * KL(p_T^tau || p_S^tau)

One iteration of Algorithm 1 on a training batch x (lines 2-7):

    3-4  teaching experiment  theta_S' = theta_S - lambda * grad_{theta_S} L_S(x; theta_S; theta_T)     (Eq. 2)
    5-6  meta-update          theta_T <- theta_T - mu * grad_{theta_T} CE(S(q; theta_S'(theta_T)), y_q)    (Eq. 3)
    7    pilot update         theta_S <- one step of the real optimiser on L_S(x; theta_S; theta_T_new)

Detach map and gradient order:
- teaching experiment: the teacher's logits are NOT detached, and the student's gradient keeps its graph
  (`kdlab.meta.lookahead(..., create_graph=True)`). The teacher enters only the inner loss, so its
  meta-gradient is purely the mixed second derivative
      d l_q / d theta_T = -lambda * (d^2 L_S / d theta_T d theta_S) . grad_{theta_S'} l_q ;
  a first-order shortcut (detached inner gradient) would make it exactly zero.
- quiz loss (L_T in Eq. 3): cross-entropy only, no KD term, on a batch of the held-out quiz set.
- real student update: the teacher's logits are detached (computed under no_grad), exactly a KD step.
- the real student's optimiser state (momentum) is untouched by the experiment: the copy is a dict of
  tensors (`kdlab.meta.params_of`), never the module, so nothing has to be restored afterwards.

Order of operations (`pilot_update`; the names are what `metadistil_step(..., trace=[])` records, and
tests/unit/test_metadistil.py checks both orders against hand-written sequences):
- pilot_update=True (Algorithm 1): teaching_experiment (teacher logits attached, the copy's step) ->
  quiz_loss (and its gradient w.r.t. the teacher) -> teacher_update -> student_update(updated teacher):
  the real student steps on the SAME batch with logits of the already updated teacher.
- pilot_update=False (the paper's "w/o pilot update" ablation, section 3.2.1: the meta-learner is
  updated for the inner learner at the start of the iteration and applied to the updated inner learner on
  the NEXT batch): teaching_experiment -> quiz_loss (teacher gradient computed, not yet applied) ->
  student_update(old teacher) with the teacher's logits from before its update -> teacher_update. The new
  teacher first acts on the next batch: it lags the student by one step.

The quiz set is a seeded, class-stratified 9:1 split of the training data (`split_quiz`); the real student
never trains on it, so the fair KD baseline trains on the same 90 % (`split_quiz(...).train`).

Where this implementation follows or departs from the official code (JetRunner/MetaDistil, cv/):
- look-ahead step lambda = the student's current learning rate (official `--assume_s_step_size`, decayed
  with the student's lr); plain SGD in the experiment, SGD with momentum and weight decay for the real
  student (as the official code).
- teacher optimiser SGD(momentum 0.9, weight decay 5e-4); its lr follows the student's schedule factor.
- the teacher stays in eval() mode (BatchNorm running statistics untouched), its parameters train.
- `freeze_epochs`: the official code keeps the teacher's lr at 0 for its first 150 of 240 epochs but
  still computes the meta-gradients (and accumulates teacher momentum). Here frozen epochs skip the
  teaching experiment altogether: they are plain KD steps, and the teacher's momentum starts at zero.
- the quiz set is a random stratified split (the paper), not the last N training images (the code);
  quiz batches are drawn without replacement in reshuffled passes over the quiz set.
"""
import dataclasses
import math
import numbers
import time
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .. import config, meta
from ..data.base import seeded_generator
from ..data.batching import batches, train_quiz_split
from ..errors import ParameterError
from ..losses import distillation_loss, kd_loss
from ..train import History, accuracy, check_finite, make_optimizer, progress_bar, scheduled_lr

QUIZ_SEED_OFFSET = 7_919  # the quiz batches' generator, independent of the training order's


# -- losses ---------------------------------------------------------------------------------------
def student_loss(student_logits, teacher_logits, labels, alpha, temperature):
    """L_S of Eq. 1: `(1 - alpha) * CE + alpha * tau^2 * KL(p_T || p_S)`, a dict of named terms.

    The teacher's logits are used as given: attached in the teaching experiment, detached for the real
    student's step."""
    return distillation_loss(student_logits, teacher_logits, labels, alpha, temperature)


def quiz_loss(student_logits, labels):
    """L_T of Eq. 3: the (experimental) student's cross-entropy on quiz data; no KD term."""
    return F.cross_entropy(student_logits, labels)


# -- the quiz set ---------------------------------------------------------------------------------
@dataclass
class QuizSplit:
    """The training data without the quiz set (`train`, a DataSplits) and the quiz set itself."""

    train: object
    x_quiz: torch.Tensor
    y_quiz: torch.Tensor

    @property
    def num_quiz(self):
        return len(self.y_quiz)


def split_quiz(data, quiz_fraction=0.1, seed=0, *, quiz_batch_size=None):
    """Hold out a seeded, class-stratified `quiz_fraction` of `data`'s training set as the quiz set.

    Returns a `QuizSplit` whose `train` is `data` with the remaining training samples (same test set).
    With `quiz_batch_size`, a quiz set too small for one quiz batch is refused.
    """
    config.check("QUIZ_FRACTION", quiz_fraction)
    generator = seeded_generator(seed)
    train_idx, quiz_idx = train_quiz_split(data.num_train, quiz_fraction, generator, labels=data.y_train.cpu())
    if quiz_batch_size is not None:
        _check_positive_int("quiz_batch_size", quiz_batch_size)
        if len(quiz_idx) < quiz_batch_size:
            need = math.ceil(1000 * quiz_batch_size / data.num_train) / 1000
            raise ParameterError(
                "QUIZ_FRACTION", quiz_fraction,
                f"large enough for one quiz batch of {quiz_batch_size}: it leaves {len(quiz_idx)} of "
                f"{data.num_train} training samples for the quiz set; use QUIZ_FRACTION >= {need:.3g} "
                "or a smaller quiz batch")
    train_idx, quiz_idx = train_idx.to(data.device), quiz_idx.to(data.device)
    train = dataclasses.replace(data, x_train=data.x_train[train_idx], y_train=data.y_train[train_idx])
    return QuizSplit(train, data.x_train[quiz_idx], data.y_train[quiz_idx])


def quiz_batches(x_quiz, y_quiz, batch_size, generator):
    """Endless quiz batches: reshuffled passes over the quiz set, full batches only."""
    while True:
        yield from batches(x_quiz, y_quiz, batch_size, generator=generator, drop_last=True)


# -- Algorithm 1, lines 3-6 -----------------------------------------------------------------------
def teaching_experiment(student, teacher_logits, x, y, *, lr, alpha, temperature):
    """Lines 3-4 / Eq. 2: a copy theta_S' = theta_S - lr * grad L_S, differentiable in the teacher.

    `teacher_logits` must carry the teacher's graph. Returns `(fast_params, student_logits, losses)`; the
    student module and its optimiser are untouched (the copy is a dict of tensors, `kdlab.meta.params_of`)."""
    params = meta.params_of(student)
    student_logits = meta.forward(student, params, x)  # batch statistics; BatchNorm buffers not written
    losses = student_loss(student_logits, teacher_logits, y, alpha, temperature)
    fast = meta.lookahead(student, params, losses["loss"], lr, create_graph=True)
    return fast, student_logits, losses


class MetaGradient(NamedTuple):
    """What lines 3-6 compute before the teacher moves."""

    quiz_loss: torch.Tensor       # CE of the experimental student on the quiz batch (detached)
    grads: dict                   # d quiz_loss / d theta_T, by teacher parameter name
    teacher_logits: torch.Tensor  # the teacher's logits on x (still attached)
    student_logits: torch.Tensor  # the student's logits on x at theta_S (still attached)
    losses: dict                  # the experiment's named losses (L_S at theta_S)


def teacher_meta_gradient(student, teacher, x, y, x_quiz, y_quiz, *, lr, alpha, temperature):
    """Lines 3-6 without the step: d CE(S(q; theta_S'(theta_T)), y_q) / d theta_T (Eq. 3), second order."""
    teacher_params = meta.params_of(teacher)
    teacher_logits = teacher(x)  # NOT detached: the meta-gradient flows through it
    fast, student_logits, losses = teaching_experiment(student, teacher_logits, x, y, lr=lr, alpha=alpha,
                                                       temperature=temperature)
    l_q = quiz_loss(meta.forward(student, fast, x_quiz), y_quiz)
    grads = torch.autograd.grad(l_q, list(teacher_params.values()), allow_unused=True)
    grads = {name: torch.zeros_like(p) if g is None else g  # a teacher parameter the logits do not use
             for (name, p), g in zip(teacher_params.items(), grads)}
    return MetaGradient(l_q.detach(), grads, teacher_logits, student_logits, losses)


def _apply_teacher_step(teacher, teacher_opt, grads):
    for name, p in meta.params_of(teacher).items():
        p.grad = grads[name]
    teacher_opt.step()
    teacher_opt.zero_grad(set_to_none=True)  # the momentum buffer keeps what is needed; free the grads now


def _real_student_step(student, student_opt, teacher_logits, x, y, alpha, temperature, position):
    """A KD step of the real student (the teacher's logits detached), exactly as `kdlab.train.fit` takes it."""
    losses = student_loss(student(x), teacher_logits.detach(), y, alpha, temperature)
    check_finite(losses, *position, student_opt.param_groups[0]["lr"])
    student_opt.zero_grad(set_to_none=True)
    losses["loss"].backward()
    student_opt.step()
    return losses


def metadistil_step(student, teacher, batch, quiz_batch, *, student_opt, teacher_opt, lookahead_lr, alpha=0.9,
                    temperature=4.0, pilot_update=True, trace=None, position=(0, 0)):
    """One iteration of Algorithm 1 on `batch = (x, y)` with `quiz_batch = (x_q, y_q)`; both models updated.

    `lookahead_lr` is lambda of Eq. 2; the teacher's step size mu is `teacher_opt`'s lr. With `trace` (a
    list) the operations are appended in the order they ran; `position` = (epoch, step) for error messages.
    Returns detached named losses: loss, ce, kd (the real student's step), quiz (the experimental student's
    quiz loss), teacher_grad_norm, and kd_before / kd_after: the teacher-student tau^2 KL on x at the
    student's pre-step parameters, before and after the teacher's update. The teacher moved TOWARD the
    student in this update when kd_after < kd_before (the paper's section 5.1 statistic).
    """
    _check_bool("pilot_update", pilot_update)
    log = trace.append if trace is not None else (lambda _: None)
    x, y = batch
    x_q, y_q = quiz_batch
    result = teacher_meta_gradient(student, teacher, x, y, x_q, y_q, lr=lookahead_lr, alpha=alpha,
                                   temperature=temperature)
    log("teaching_experiment")  # teacher forward (attached), student copy's differentiable step
    log("quiz_loss")            # ... and its quiz loss, differentiated w.r.t. the teacher
    old_student = result.student_logits.detach()
    if pilot_update:
        _apply_teacher_step(teacher, teacher_opt, result.grads)
        log("teacher_update")
        with torch.no_grad():
            new_teacher = teacher(x)
        losses = _real_student_step(student, student_opt, new_teacher, x, y, alpha, temperature, position)
        log("student_update(updated teacher)")
    else:
        losses = _real_student_step(student, student_opt, result.teacher_logits, x, y, alpha, temperature,
                                    position)
        log("student_update(old teacher)")
        _apply_teacher_step(teacher, teacher_opt, result.grads)
        log("teacher_update")
        with torch.no_grad():
            new_teacher = teacher(x)
    kd_after = kd_loss(old_student, new_teacher, temperature)
    grad_norm = torch.sqrt(sum((g.detach() ** 2).sum() for g in result.grads.values()))
    return {"loss": losses["loss"].detach(), "ce": losses["ce"].detach(), "kd": losses["kd"].detach(),
            "quiz": result.quiz_loss, "teacher_grad_norm": grad_norm,
            "kd_before": result.losses["kd"].detach(), "kd_after": kd_after}


def kd_step(student, teacher, batch, *, student_opt, alpha=0.9, temperature=4.0, position=(0, 0)):
    """A plain KD step (the frozen-teacher epochs, and the cost baseline)."""
    x, y = batch
    with torch.no_grad():
        teacher_logits = teacher(x)
    losses = _real_student_step(student, student_opt, teacher_logits, x, y, alpha, temperature, position)
    return {name: value.detach() for name, value in losses.items()}


# -- training -------------------------------------------------------------------------------------
@dataclass
class MetaDistilHistory(History):
    """Per-epoch records (as `kdlab.train.History`) plus one record per step in `steps`.

    Step records: step, epoch, loss, quiz, kd_before, kd_after, toward (True when the teacher's update
    lowered its KL to the student on the batch; None in frozen epochs), and every `log_every` steps
    student_acc / teacher_acc on the monitor set."""

    steps: list = field(default_factory=list)

    def step_series(self, key):
        return [r[key] for r in self.steps if r.get(key) is not None]

    def toward_share(self):
        """Share of teacher updates that moved the teacher toward the student: (first half, second half)."""
        toward = [r["toward"] for r in self.steps if r.get("toward") is not None]
        half = len(toward) // 2
        first, second = toward[:half], toward[half:]
        share = lambda xs: sum(xs) / len(xs) if xs else math.nan  # noqa: E731
        return share(first), share(second)


def _check_positive_int(name, value):
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= 1):
        raise ParameterError(name, value, "an integer >= 1")
    return int(value)


def _check_bool(name, value):
    if not isinstance(value, bool):
        raise ParameterError(name, value, "True or False")
    return value


def train_metadistil(student, teacher, data, *, epochs, lr=0.05, batch_size=64, teacher_lr=1e-4, alpha=0.9,
                     temperature=4.0, quiz_fraction=0.1, quiz_batch_size=None, pilot_update=True, freeze_epochs=0,
                     seed=0, schedule="cosine", momentum=0.9, weight_decay=5e-4, teacher_momentum=0.9,
                     teacher_weight_decay=5e-4, lookahead_lr=None, monitor=None, log_every=0, eval_every=1,
                     augment=None, callbacks=(), progress=None):
    """Train `student` with MetaDistil from `teacher` on `data` (a DataSplits); returns (student, teacher, history).

    The training set is split 9:1 (`quiz_fraction`, seeded by `seed`) into the student's training data and
    the quiz set; quiz batches have `quiz_batch_size` samples (default `batch_size`). The real student takes
    exactly `kdlab.train.fit`'s steps (SGD with momentum, weight decay, `schedule` per epoch, the batch order
    of `seed`), so with teacher_lr=0 it reproduces `fit(student, split_quiz(data, ...).train,
    distill_from(teacher, alpha, temperature), seed=seed, ...)`. The teacher (trained; it keeps training)
    uses SGD(teacher_lr, teacher_momentum, teacher_weight_decay) scaled by the same schedule factor, and is
    frozen for the first `freeze_epochs` epochs. `lookahead_lr` (lambda) defaults to the student's current lr.
    `monitor=(x, y)` logs teacher and student accuracy every `log_every` steps (for learning curves only).
    """
    config.check("EPOCHS", epochs)
    config.check("LR", lr)
    config.check("BATCH_SIZE", batch_size)
    config.check("TEACHER_LR", teacher_lr)
    config.check("ALPHA", alpha)
    config.check("TEMPERATURE", temperature)
    config.check("QUIZ_FRACTION", quiz_fraction)
    config.check("FREEZE_EPOCHS", freeze_epochs)
    _check_bool("pilot_update", pilot_update)
    quiz_batch_size = batch_size if quiz_batch_size is None else _check_positive_int("quiz_batch_size", quiz_batch_size)
    if lookahead_lr is not None and not (isinstance(lookahead_lr, numbers.Real) and lookahead_lr > 0):
        raise ParameterError("lookahead_lr", lookahead_lr, "None (track the student's lr) or a number > 0")
    if not (isinstance(log_every, numbers.Integral) and log_every >= 0):
        raise ParameterError("log_every", log_every, "an integer >= 0 (0: no accuracy log)")
    split = split_quiz(data, quiz_fraction, seed, quiz_batch_size=quiz_batch_size)
    train = split.train

    history = MetaDistilHistory()
    student_opt = make_optimizer(student.parameters(), "sgd", lr, momentum, weight_decay)
    teacher_opt = make_optimizer(teacher.parameters(), "sgd", teacher_lr, teacher_momentum, teacher_weight_decay)
    generator = torch.Generator().manual_seed(seed)  # the same batch order as fit(..., seed=seed)
    quiz_stream = quiz_batches(split.x_quiz, split.y_quiz, quiz_batch_size,
                               torch.Generator().manual_seed(seed + QUIZ_SEED_OFFSET))
    bar = progress_bar(epochs, progress, desc="MetaDistil epochs")
    teacher.eval()  # BatchNorm running statistics stay fixed; the parameters still train
    student.train()
    step = 0
    try:
        for epoch in range(epochs):
            epoch_lr = scheduled_lr(lr, schedule, epoch, epochs)
            factor = epoch_lr / lr
            for group in student_opt.param_groups:
                group["lr"] = epoch_lr
            for group in teacher_opt.param_groups:
                group["lr"] = teacher_lr * factor
            frozen = epoch < freeze_epochs
            start, sums, count = time.perf_counter(), {}, 0
            for step_in_epoch, (xb, yb) in enumerate(batches(train.x_train, train.y_train, batch_size,
                                                             generator=generator)):
                if augment is not None:
                    xb = augment(xb, generator)
                if frozen:
                    losses = kd_step(student, teacher, (xb, yb), student_opt=student_opt, alpha=alpha,
                                     temperature=temperature, position=(epoch, step_in_epoch))
                    record = {"toward": None}
                else:
                    x_q, y_q = next(quiz_stream)
                    if augment is not None:
                        x_q = augment(x_q, generator)
                    losses = metadistil_step(student, teacher, (xb, yb), (x_q, y_q), student_opt=student_opt,
                                             teacher_opt=teacher_opt,
                                             lookahead_lr=epoch_lr if lookahead_lr is None else lookahead_lr * factor,
                                             alpha=alpha, temperature=temperature, pilot_update=pilot_update,
                                             position=(epoch, step_in_epoch))
                    record = {"toward": bool(losses["kd_after"] < losses["kd_before"])}
                step += 1
                record.update(step=step, epoch=epoch + 1, **{k: float(v) for k, v in losses.items()})
                if log_every and monitor is not None and (step % log_every == 0 or step == 1):
                    record["student_acc"] = accuracy(student, *monitor)
                    record["teacher_acc"] = accuracy(teacher, *monitor)
                    student.train()
                history.steps.append(record)
                for name, value in losses.items():
                    sums[name] = sums.get(name, 0.0) + float(value) * len(xb)
                count += len(xb)
            epoch_record = {"epoch": epoch + 1, "lr": epoch_lr, "teacher_lr": 0.0 if frozen else teacher_lr * factor,
                            "seconds": time.perf_counter() - start}
            epoch_record.update({name: total / count for name, total in sums.items()})
            if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:
                epoch_record["train_acc"] = accuracy(student, train.x_train, train.y_train)
                epoch_record["test_acc"] = accuracy(student, train.x_test, train.y_test)
                epoch_record["teacher_test_acc"] = accuracy(teacher, train.x_test, train.y_test)
            history.append(epoch_record)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{epoch_record['loss']:.3f}",
                                test_acc=f"{epoch_record.get('test_acc', math.nan):.1f}")
            if any(callback(history, student) for callback in callbacks):
                break
    except KeyboardInterrupt:
        history.interrupted = True
        print(f"kdlab: MetaDistil interrupted after {history.epochs_done} epochs; student, teacher and history "
              "are usable.")
    finally:
        if bar is not None:
            bar.close()
        student.eval()
        teacher.eval()
    return student, teacher, history
