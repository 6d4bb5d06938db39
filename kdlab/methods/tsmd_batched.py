"""TSMD's meta-test for many test episodes at once (`tsmd.evaluate`): Eq. 6 adapts the teacher on each episode's
support set, Eq. 7 the student with the adapted teacher's guide, and the deployed model predicts the queries,
first order as `tsmd.adapt_and_predict`, vmapped over chunks of episodes (`kdlab.meta.batched`).

Two phases, because the two models want different chunks on the CPU (one core, 5-way 1-shot, 50 queries, one
inner step): in a probe the width-8 student's step ran fastest fifty episodes per call, while the width-32
teacher's ran fastest ten per call and slower than one by one at fifty (its activations no longer fit the cache).
So the teacher's phase makes every episode's guide (its support logits, or embeddings for RKD) ten episodes at a
time, then the student's phase adapts and predicts fifty at a time. Against one episode after another this
scores 1.8-2.6x the episodes per second for the 1-shot rows with a student
(`benchmarks/results/episodes_vectorised.md`).

The student's inner loss is Eq. 7's, CE + KD_WEIGHT * L_KD, with L_KD's textbook formula: its gradient is the
one `kd_loss` takes (kd_loss only replaces the value where float32 cancels, which a first-order step never
reads), and it has no branch on a tensor's value, which `vmap` could not take.
"""
import contextlib

import torch
import torch.nn.functional as F

from .. import meta
from ..losses import kl_rows_textbook
from ..losses_relational import rkd_loss
from ..meta.batched import first_order_inner_loop, over_episodes, stack_episodes
from .episodic import check_ways
from .tsmd_settings import check_models, route, settings

TEACHER_EPISODES_AT_ONCE = 10
STUDENT_EPISODES_AT_ONCE = 50


def kd_textbook(student_logits, teacher_logits, temperature):
    """T^2 KL(p_teacher^T || p_student^T), batch mean, as the textbook writes it (the gradient of `kd_loss`)."""
    return temperature ** 2 * kl_rows_textbook(student_logits, teacher_logits, temperature).mean()


def student_inner_loss(s):
    """Eq. 7's inner objective for the settings `s` (`tsmd.student_inner_loss`'s, with `kd_textbook`)."""
    def loss(output, labels, guide):
        if s.kd == "rkd":
            logits, features = output
            distill = rkd_loss(features[-1], guide)
        else:
            logits, distill = output, kd_textbook(output, guide, s.temperature)
        return F.cross_entropy(logits, labels) + s.kd_weight * distill
    return loss


def _detached(module):
    return {name: p.detach() for name, p in meta.params_of(module).items()}


def teacher_phase(teacher, s, has_student, stacked, chunk):
    """Eq. 6 on every episode, then what the episodes need of the adapted teacher: the student's guide (its
    support logits, or embeddings for RKD) or, for the oracle, its query logits."""
    params = _detached(teacher)
    rkd = {"return_features": True} if s.kd == "rkd" else {}

    def one_episode(x_s, y_s, x_q):
        fast = first_order_inner_loop(teacher, params, F.cross_entropy, (x_s, y_s), steps=s.teacher_inner_steps,
                                      lr=s.teacher_inner_lr, bn=s.bn)
        if not has_student:
            return meta.forward(teacher, fast, x_q, bn=s.bn, support=x_s)
        out = meta.forward(teacher, fast, x_s, bn=s.bn, **rkd)
        return out[1][-1] if rkd else out

    return over_episodes(one_episode, stacked[:3], chunk)


def fixed_teacher_guide(teacher, s, x_support, chunk):
    """The unadapted teacher's support embeddings (or logits) of every episode, the fixed teacher's guide."""
    params = _detached(teacher)

    rkd = {"return_features": True} if s.kd == "rkd" else {}

    def one_episode(x_s):
        out = meta.forward(teacher, params, x_s, bn=s.bn, **rkd)
        return out[1][-1] if rkd else out

    return over_episodes(one_episode, (x_support,), chunk)


def student_phase(student, s, stacked, guides, chunk):
    """Eq. 7 on every episode (plain MAML's step when `guides` is None), then the adapted student's query logits."""
    params = _detached(student)
    loss_fn, kwargs = F.cross_entropy, None
    if guides is not None:
        loss_fn, kwargs = student_inner_loss(s), ({"return_features": True} if s.kd == "rkd" else None)

    def one_episode(x_s, y_s, x_q, *guide):
        fast = first_order_inner_loop(student, params, loss_fn, (x_s, y_s, *guide), steps=s.inner_steps,
                                      lr=s.inner_lr, bn=s.bn, model_kwargs=kwargs)
        return meta.forward(student, fast, x_q, bn=s.bn, support=x_s)

    return over_episodes(one_episode, stacked[:3] + (() if guides is None else (guides,)), chunk)


def predict(teacher, student, stacked, s, *, teacher_chunk=TEACHER_EPISODES_AT_ONCE,
            student_chunk=STUDENT_EPISODES_AT_ONCE):
    """The deployed model's query logits (episodes, queries, classes) for the stacked episodes
    (x_support, y_support, x_query); `s` the validated settings, first order."""
    teacher_role, has_student = route(s.variant)
    guides = None
    with torch.no_grad(), contextlib.ExitStack() as stack:
        for module in (teacher, student):
            if module is not None:
                stack.enter_context(meta.preserved_buffers(module))
        if teacher_role == "adapted":
            out = teacher_phase(teacher, s, has_student, stacked, teacher_chunk)
            if not has_student:
                return out
            guides = out
        elif teacher_role == "fixed":
            guides = fixed_teacher_guide(teacher, s, stacked[0], student_chunk)
        return student_phase(student, s, stacked, guides, student_chunk)


def query_logits(teacher, student, tasks, **knobs):
    """What `tsmd.evaluate` scores: the deployed model's query logits of every task (x_s, y_s, x_q, y_q), the
    tasks adapted many at once with the knobs of `tsmd.settings`, first order; None when the tasks' shapes
    differ (they are then adapted one by one). Every task is checked against the models' heads first."""
    stacked = stack_episodes(tasks, (0, 1, 2))
    if stacked is None:
        return None
    s = settings(**{**knobs, "first_order": True, "teacher_first_order": True})
    heads = check_models(teacher, student, s)
    for task in tasks:
        check_ways(task, heads)
    return predict(teacher, student, stacked, s)
