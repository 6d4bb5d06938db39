"""Relational knowledge distillation (Park, Kim, Lu, Cho, "Relational Knowledge Distillation", CVPR 2019):
match the *shape* of two embeddings of one batch, not the embeddings themselves, so teacher and student
may have different widths and label spaces (TSMD's fixed teacher guides the student this way).

    psi_D(i, j)    = ||t_i - t_j|| / mu,  mu = mean distance over the pairs i != j      (RKD Eq. 4)
    psi_A(i, j, k) = < (t_i - t_j) / ||t_i - t_j||, (t_k - t_j) / ||t_k - t_j|| >       (RKD Eq. 6)
    L = distance_weight * mean_{i != j} huber(psi_D^s, psi_D^t)
      + angle_weight * mean_{i, j, k distinct} huber(psi_A^s, psi_A^t)                 (huber: delta 1)
"""
import functools

import torch
import torch.nn.functional as F

from .errors import ParameterError


@functools.lru_cache(maxsize=32)
def _masks(n):
    """Boolean masks of the pairs i != j (n, n) and of the triplets of distinct indices (n, n, n)."""
    pairs = ~torch.eye(n, dtype=torch.bool)
    return pairs, pairs.unsqueeze(2) & pairs.unsqueeze(1) & pairs.unsqueeze(0)


def rkd_loss(student_features, teacher_features, distance_weight=1.0, angle_weight=2.0):
    """The RKD loss above. The RKD paper weighs the two terms 1 : 2 (RepDistiller uses 25 : 50). Pass the
    teacher's features detached unless it is meant to learn from this loss. Needs at least 3 examples for
    the angle term."""
    s, t = student_features.flatten(1), teacher_features.flatten(1)
    n = s.shape[0]
    if n < 2 or t.shape[0] != n:
        raise ParameterError("features", f"{n} student and {t.shape[0]} teacher rows",
                             "the same batch of at least 2 examples for both models")
    pairs, triplets = (m.to(s.device) for m in _masks(n))

    def differences(z):  # d[j, i] = z_i - z_j, and its length (a finite gradient even at 0, unlike a norm's)
        d = z.unsqueeze(0) - z.unsqueeze(1)
        return d, d.pow(2).sum(-1).clamp_min(1e-24).sqrt()

    def distances(z):
        length = differences(z)[1][pairs]
        return length / length.mean()

    def angles(z):  # angles[j, i, k] = < unit(z_i - z_j), unit(z_k - z_j) >, the angle at vertex j
        d, length = differences(z)
        e = d / length.unsqueeze(-1)
        return torch.einsum("jid,jkd->jik", e, e)[triplets]

    loss = distance_weight * F.smooth_l1_loss(distances(s), distances(t))
    if angle_weight and n >= 3:
        loss = loss + angle_weight * F.smooth_l1_loss(angles(s), angles(t))
    return loss
