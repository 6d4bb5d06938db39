"""Distillation losses as free functions (mdistiller style): logits in, a scalar out.

Hinton, Vinyals, Dean (2015), "Distilling the Knowledge in a Neural Network", section 2:

    q_i = exp(z_i / T) / sum_j exp(z_j / T)                       (soft targets, Eq. 1)
    L_KD = T^2 * KL(p_teacher^T || p_student^T)                   (teacher distribution is the target)

The T^2 factor keeps the soft term's gradient magnitude roughly constant as T changes (Hinton, sec. 2).
The KL is averaged over the batch (`reduction="batchmean"`); `reduction="mean"` would also divide by
the number of classes, a classic silent bug (PyTorch PR #7006).

How the papers in this kit weight the cross-entropy (CE) against the KD term:

| source            | student objective                          | usual defaults         |
|-------------------|--------------------------------------------|------------------------|
| Hinton 2015       | weighted average, small weight on CE       | T in 2..20             |
| RepDistiller      | gamma*CE + alpha*KD (+ beta*other)         | gamma 0.1, alpha 0.9, T 4 |
| MetaDistil        | (1-alpha)*CE + alpha*KD                    | alpha 0.9 (CV), T 4    |
| MetaDistiller     | CE on the final exit; alpha*CE + (1-alpha)*T^2*KL on each shallow exit (Eqs. 3-4) | alpha 0.5, T 1 |
| MMKD              | CE + sum_k w_k*KD_k + beta*L_feat          | T 4, beta 100          |
| 2025 preprint     | (1-alpha)*CE + alpha*L_feat (no logit KD)  | -                      |

This kit's `distillation_loss` uses `(1 - alpha) * CE + alpha * KD` (MetaDistil's and the preprint's form).
"""
import torch
import torch.nn.functional as F


def soft_targets(logits, temperature=1.0):
    """sigma(z / T): Hinton's Eq. 1. Higher T gives a softer distribution over classes."""
    return F.softmax(logits / temperature, dim=-1)


def kd_loss(student_logits, teacher_logits, temperature=4.0):
    """T^2 * KL(p_teacher^T || p_student^T), averaged over the batch.

    Gradient with respect to one sample's student logits: T * (p_student^T - p_teacher^T) / batch.
    Pass `teacher_logits` detached unless the teacher is being taught (MetaDistil's teaching experiment).
    """
    log_p_student = F.log_softmax(student_logits / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return temperature**2 * kl


def kd_logit_gradient(student_logits, teacher_logits, temperature=4.0):
    """The closed-form per-sample gradient of T^2 * KL with respect to the student logits: T * (p_s - p_t)."""
    p_student = soft_targets(student_logits, temperature)
    p_teacher = soft_targets(teacher_logits, temperature)
    return temperature * (p_student - p_teacher)


def logit_matching_loss(student_logits, teacher_logits):
    """Mean squared error between zero-mean logits: the high-temperature limit of KD (Hinton sec. 2.1).

    For T >> |z|, T^2 * KL(p_t^T || p_s^T) -> (1 / 2C) * sum_i ((z_s,i - mean z_s) - (z_t,i - mean z_t))^2.
    """
    zs = student_logits - student_logits.mean(dim=-1, keepdim=True)
    zt = teacher_logits - teacher_logits.mean(dim=-1, keepdim=True)
    num_classes = student_logits.shape[-1]
    return ((zs - zt) ** 2).sum(dim=-1).mean() / (2 * num_classes)


def distillation_loss(student_logits, teacher_logits, labels, alpha=0.9, temperature=4.0):
    """(1 - alpha) * CE(student, labels) + alpha * KD(student, teacher); returns a dict of named terms."""
    ce = F.cross_entropy(student_logits, labels)
    kd = kd_loss(student_logits, teacher_logits, temperature)
    return {"loss": (1 - alpha) * ce + alpha * kd, "ce": ce, "kd": kd}


def entropy(probs, dim=-1):
    """Shannon entropy in nats; how much 'dark knowledge' a soft target spreads over the classes."""
    return -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=dim)
