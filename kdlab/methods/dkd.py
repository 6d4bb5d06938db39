"""DKD: Decoupled Knowledge Distillation (Zhao, Cui, Song, Qiu, Liang; CVPR 2022; arXiv:2203.08679).

With p = softmax(z / T) for teacher (p^T) and student (p^S), y the label, b = [p_y, 1 - p_y] the binary
target/non-target split and p_hat the softmax over the non-target logits alone (p_hat_c = p_c / (1 - p_y), c != y),
Hinton's KL splits exactly, sample by sample:

    KL(p^T || p^S) = KL(b^T || b^S) + (1 - p_y^T) * KL(p_hat^T || p_hat^S) = TCKD + (1 - p_y^T) * NCKD

KD ties the non-target term to the teacher's doubt (1 - p_y^T): the surer the teacher, the less dark knowledge
reaches the student. DKD weights the two terms freely (the paper's alpha and beta are `tckd_weight`,
`nckd_weight`: ALPHA is the distillation weight everywhere else in the kit), and warms the term up:

    DKD = tckd_weight * T^2 * TCKD + nckd_weight * T^2 * NCKD          (batch means)
    L   = ce_weight * CE(z^S, y) + min(e / warmup_epochs, 1) * DKD        (e = 1, 2, ...: epochs counted from 1)

Defaults are mdistiller's (CE 1, alpha 1, beta 8, T 4, warm-up 20; beta 2 for resnet56 -> resnet20). The teacher is
frozen (no_grad, eval mode); first order, nothing meta.

Declared deviations from the official code (megvii-research/mdistiller, `mdistiller/distillers/DKD.py`):
- NCKD is a log-softmax over the C - 1 non-target logits (the target column removed), not the code's
  softmax(z / T - 1000 * [c = y]). They agree to rounding unless the target logit exceeds the others by hundreds
  of T; beyond that the shortcut leaves mass on the target class and is no longer the non-target distribution.
- TCKD takes log p_y and log(1 - p_y) as log-sum-exps, not the log of summed probabilities (the code's
  log(1 - p_y) is -inf once the student's non-target mass underflows).
"""
import torch
import torch.nn.functional as F

from .. import config
from .base import Method
from .frozen_teacher import FrozenLogits


def split_target(logits, labels, temperature):
    """(log b, log p_hat) of softmax(logits / T): log [p_y, 1 - p_y], shape (N, 2), and the log-softmax over
    the C - 1 non-target classes, shape (N, C - 1), in class order with the target column removed."""
    z = logits / temperature
    n, c = z.shape
    is_target = F.one_hot(labels, c).bool()
    others = z[~is_target].view(n, c - 1)
    log_all, log_others = z.logsumexp(1), others.logsumexp(1)
    log_b = torch.stack([z[is_target] - log_all, log_others - log_all], dim=1)
    return log_b, others - log_others[:, None]


def kl_rows(log_p, log_q):
    """KL(p || q) per row, from log-probabilities."""
    return (log_p.exp() * (log_p - log_q)).sum(1)


def decoupled_kd(student_logits, teacher_logits, labels, temperature):
    """Per sample, without the T^2 factor: (TCKD, NCKD, p_y^T); the teacher's logits are used as given."""
    log_b_s, log_hat_s = split_target(student_logits, labels, temperature)
    log_b_t, log_hat_t = split_target(teacher_logits, labels, temperature)
    return kl_rows(log_b_t, log_b_s), kl_rows(log_hat_t, log_hat_s), log_b_t[:, 0].exp()


def dkd_loss(student_logits, teacher_logits, labels, tckd_weight=1.0, nckd_weight=8.0, temperature=4.0):
    """{"dkd", "tckd", "nckd"}: tckd_weight * T^2 TCKD + nckd_weight * T^2 NCKD and its two terms (batch means)."""
    tckd, nckd, _ = decoupled_kd(student_logits, teacher_logits, labels, temperature)
    tckd, nckd = temperature ** 2 * tckd.mean(), temperature ** 2 * nckd.mean()
    return {"dkd": tckd_weight * tckd + nckd_weight * nckd, "tckd": tckd, "nckd": nckd}


def warmup_factor(epoch, warmup_epochs):
    """min(e / warmup_epochs, 1) for the 0-based `epoch` of the loop, e = epoch + 1 (the code's epochs start at 1);
    1 with warmup_epochs = 0."""
    return 1.0 if warmup_epochs == 0 else min((epoch + 1) / warmup_epochs, 1.0)


class DKD(Method):
    """DKD from a frozen `teacher` into `student`. Epochs add `dkd_weight`, the warm-up factor of that epoch."""

    name = "dkd"
    card = {"paper": "Zhao, Cui, Song, Qiu, Liang (CVPR 2022), Decoupled Knowledge Distillation (arXiv:2203.08679)",
            "equations": "KL = TCKD + (1 - p_y^T) NCKD; L = w_ce CE + min(e / warmup, 1) T^2 (alpha TCKD + beta NCKD)",
            "detached": "the teacher's logits (no_grad, eval mode)", "order": "first order", "loop": "epochs",
            "deviations": "exact masked log-softmax for NCKD (no -1000 shortcut); log-sum-exp TCKD"}

    def __init__(self, student, teacher, *, ce_weight=1.0, tckd_weight=1.0, nckd_weight=8.0, temperature=4.0,
                 warmup_epochs=20):
        config.validate(ce_weight=ce_weight, tckd_weight=tckd_weight, nckd_weight=nckd_weight,
                        TEMPERATURE=temperature, WARMUP_EPOCHS=warmup_epochs)
        self.model, self.teacher = student, teacher.eval()
        self.teacher_logits = FrozenLogits(self.teacher)   # the training set's logits once, looked up per batch
        self.ce_weight, self.tckd_weight, self.nckd_weight = ce_weight, tckd_weight, nckd_weight
        self.temperature, self.warmup_epochs = temperature, warmup_epochs

    def objective(self, x, y, epoch, teacher_logits=None):
        """The named losses of one batch in (0-based) `epoch`: loss, ce, dkd, tckd, nckd (tckd, nckd times T^2).
        `teacher_logits`: the teacher's logits of `x`, if known (default: asked of the teacher)."""
        if teacher_logits is None:
            with torch.no_grad():
                teacher_logits = self.teacher(x)
        logits = self.model(x)
        ce = F.cross_entropy(logits, y)
        terms = dkd_loss(logits, teacher_logits, y, self.tckd_weight, self.nckd_weight, self.temperature)
        loss = self.ce_weight * ce + warmup_factor(epoch, self.warmup_epochs) * terms["dkd"]
        return {"loss": loss, "ce": ce, **terms}

    def prepare(self, data, run):
        self.teacher_logits.prepare(data, run)
        return data

    def step(self, batch, run):
        return self.descend(self.objective(batch.x, batch.y, run.epoch, self.teacher_logits(batch)), self.optimizer,
                            run)

    def on_epoch_end(self, record, run):
        record["dkd_weight"] = warmup_factor(run.epoch, self.warmup_epochs)
