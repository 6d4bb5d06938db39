"""TSMD: task-specific meta distillation, few-shot learning of a compact student guided by a big teacher.

Wu, Chanda, Hosseinzadeh, Liu, Wang, "Few-Shot Learning of Compact Models via Task-Specific Meta
Distillation", WACV 2023 (arXiv 2210.09922). A large teacher f_psi and a small student g_theta are
meta-learned jointly (MAML); for each task T_i = (D_tr, D_val) (support, query):

    psi'_i   = psi - alpha * grad_psi L_T(psi; D_tr)                                     (Eq. 6)
    theta'_i = theta - lambda * grad_theta [ L_S(theta; D_tr) + L_KD(psi'_i, theta; D_tr) ]  (Eq. 7)
    L_T(psi'_i; D_val),  L_S(theta'_i; D_val)                                             (Eq. 8a, 8b)
    min_psi sum_i L_T(psi'_i; D_val),  min_theta sum_i L_S(theta'_i; D_val)               (Eq. 9)
    psi <- psi - beta * grad_psi sum_i L_T(...),  theta <- theta - eta * grad_theta sum_i L_S(...)  (Eq. 10)

L_T and L_S are cross-entropies (Eqs. 4-5; kdlab averages over the batch instead of summing). There is
no KD term in the meta-objective (Eq. 9): KD only shapes the student's inner step. At meta-test the
teacher is adapted (Eq. 6), then the student (Eq. 7), and only the adapted student predicts.

This module writes L_KD = KD_WEIGHT * T^2 * KL(p_teacher^T || p_student^T) (`kdlab.losses.kd_loss`);
the paper's Eq. 7 has unit weights and does not say whether the T^2 factor is used. Both numbers are
explicit here because, inside a one-step inner loop, they set the size of the student's adaptation step.

Variants (the rows of the paper's Table 1; `variant=`):
  "student"        MAML on the student alone (no teacher).
  "fixed_teacher"  the teacher is neither adapted (no Eq. 6) nor meta-updated (no Eq. 10a); its support
                   embeddings guide the student through the RKD loss (Park et al. 2019), the paper's choice
                   for a fixed teacher, since an unadapted teacher's logits mean nothing for new classes.
  "ours"           the full method: Eq. 6, Eq. 7 with KL-based KD, Eq. 10a and 10b.
  "oracle"         MAML on the teacher alone: the (undeployable) upper bound.
`outer="reptile"` replaces the MAML outer step by Reptile's (Nichol et al. 2018; the paper's Table 4):
first-order inner steps, and the meta-gradient of each model is its mean displacement theta - theta'_i.

What is detached and what is second order:
  * The adapted teacher's support logits are DETACHED before the KD term (the equations give psi only
    its own query loss, Eq. 10a). `attach_teacher=True` keeps them on the graph: psi then also gets a
    "student-aware" gradient d L_S(theta'_i) / d psi through the student's inner step (an experiment,
    not the paper; it needs a second-order student step, it is exactly zero in first order).
  * Both inner loops are second order by default (create_graph=True in kdlab.meta): theta gets
    (I - lambda * Hessian of Eq. 7's loss) times the query gradient, INCLUDING the Hessian of the KD
    term, so the KD term changes the student's meta-gradient. `first_order=True` (FOMAML) detaches the
    inner gradients of both models; `teacher_first_order` overrides it for the teacher alone (the
    practical choice for a big teacher).
  * The fixed teacher runs under no_grad: it gets no gradient and its parameters never change.
  * Reptile: every inner step is first order; no query loss is differentiated.
"""
import functools
import math
import numbers
import time
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import config, meta
from ..errors import ParameterError, TrainingDivergedError
from ..meta.episodes import task_list
from ..meta.functional import check_bn
from ..losses import kd_loss
from ..train import History

VARIANTS = ("student", "fixed_teacher", "ours", "oracle")
KD_KINDS = ("kl", "rkd")
OUTER = ("maml", "reptile")
DEFAULT_KD = {"fixed_teacher": "rkd", "ours": "kl"}


# ------------------------------------------------------------------------------------------------ losses

@functools.lru_cache(maxsize=32)
def _masks(n):
    """Boolean masks of the pairs i != j (n, n) and of the triplets of distinct indices (n, n, n)."""
    eye = torch.eye(n, dtype=torch.bool)
    pairs = ~eye
    triplets = pairs.unsqueeze(2) & pairs.unsqueeze(1) & pairs.unsqueeze(0)
    return pairs, triplets


def rkd_loss(student_features, teacher_features, distance_weight=1.0, angle_weight=2.0):
    """Relational KD (Park, Kim, Lu, Cho, CVPR 2019): match the *shape* of the two embeddings of a batch,
    not the embeddings themselves, so teacher and student may have different widths (and label spaces).

        psi_D(i, j)    = ||t_i - t_j|| / mu,  mu = mean distance over the pairs i != j      (RKD Eq. 4)
        psi_A(i, j, k) = < (t_i - t_j) / ||t_i - t_j||, (t_k - t_j) / ||t_k - t_j|| >       (RKD Eq. 6)
        L = distance_weight * mean_{i != j} huber(psi_D^s, psi_D^t)
          + angle_weight * mean_{i, j, k distinct} huber(psi_A^s, psi_A^t)                 (huber: delta 1)

    The RKD paper weighs the two terms 1 : 2 (RepDistiller uses 25 : 50). Pass the teacher's features
    detached unless it is meant to learn from this loss. Needs at least 3 examples for the angle term.
    """
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


def student_inner_loss(output, labels, guide, *, kd_weight, temperature, kd):
    """Eq. 7's inner objective: CE(student, labels) + KD_WEIGHT * L_KD(student, guide).

    kd="kl":  guide = the teacher's support logits, L_KD = T^2 * KL(p_t^T || p_s^T) (Hinton; batchmean);
    kd="rkd": guide = the teacher's support embeddings, L_KD = rkd_loss on the student's embeddings,
              `output` is then (logits, features) and features[-1] the pooled embedding.
    Returns a dict of named terms, "loss" first.
    """
    if kd == "rkd":
        logits, features = output
        distill = rkd_loss(features[-1], guide)
    else:
        logits = output
        distill = kd_loss(logits, guide, temperature)
    ce = F.cross_entropy(logits, labels)
    return {"loss": ce + kd_weight * distill, "ce": ce, "kd": distill}


# ------------------------------------------------------------------------------------------- checking

def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def head_size(module):
    """The number of classes a model predicts: `num_classes`, else its last nn.Linear's out_features."""
    if isinstance(getattr(module, "num_classes", None), int):
        return module.num_classes
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ParameterError("module", type(module).__name__, "a classifier with an nn.Linear head")
    return linears[-1].out_features


def episode_ways(task):
    """The way count of an episode: its number of classes (labels are 0..ways-1)."""
    labels = torch.cat([task[1].reshape(-1), task[3].reshape(-1)])
    return max(int(torch.unique(labels).numel()), int(labels.max()) + 1)


class Settings(NamedTuple):
    """Everything that decides one TSMD adaptation, validated once (see `settings`)."""

    variant: str
    kd: str
    kd_weight: float
    temperature: float
    inner_steps: int
    inner_lr: float
    teacher_inner_steps: int
    teacher_inner_lr: float
    first_order: bool
    teacher_first_order: bool
    attach_teacher: bool
    bn: str


def settings(variant="ours", *, inner_steps=1, inner_lr=0.4, teacher_inner_steps=None, teacher_inner_lr=None,
             kd_weight=1.0, temperature=4.0, kd=None, first_order=False, teacher_first_order=None,
             attach_teacher=False, bn="transductive"):
    """Check every knob once and fill the defaults: the teacher's inner steps and lr default to the
    student's; `kd` defaults to "rkd" for the fixed teacher and "kl" otherwise."""
    if variant not in VARIANTS:
        raise ParameterError("variant", variant, "one of " + ", ".join(map(repr, VARIANTS)))
    kd = DEFAULT_KD.get(variant, "kl") if kd is None else kd
    if kd not in KD_KINDS:
        raise ParameterError("kd", kd, "'kl' (Hinton KD on logits) or 'rkd' (relational KD on embeddings)")
    config.check("KD_WEIGHT", kd_weight)
    config.check("TEMPERATURE", temperature)
    config.check("INNER_STEPS", inner_steps)
    config.check("INNER_LR", inner_lr)
    teacher_inner_steps = inner_steps if teacher_inner_steps is None else teacher_inner_steps
    teacher_inner_lr = inner_lr if teacher_inner_lr is None else teacher_inner_lr
    if variant == "ours" and not (_is_int(teacher_inner_steps) and teacher_inner_steps >= 1):
        raise ParameterError("TEACHER_INNER_STEPS", teacher_inner_steps,
                             "an integer >= 1 in variant 'ours': the teacher must be adapted to the task "
                             "(Eq. 6) before it can teach; variant 'fixed_teacher' uses it unadapted")
    config.check("INNER_STEPS", teacher_inner_steps)
    config.check("INNER_LR", teacher_inner_lr)
    check_bn(bn)
    teacher_first_order = first_order if teacher_first_order is None else teacher_first_order
    return Settings(variant, kd, float(kd_weight), float(temperature), int(inner_steps), float(inner_lr),
                    int(teacher_inner_steps), float(teacher_inner_lr), bool(first_order),
                    bool(teacher_first_order), bool(attach_teacher), bn)


def uses_teacher(variant):
    return variant in ("fixed_teacher", "ours", "oracle")


def uses_student(variant):
    return variant != "oracle"


def check_models(teacher, student, s: Settings):
    """The models a variant needs are there; returns the head sizes the episodes must match."""
    heads = {}
    if uses_student(s.variant):
        if student is None:
            raise ParameterError("student", None, f"a model for variant {s.variant!r}")
        heads["student"] = head_size(student)
    if uses_teacher(s.variant):
        if teacher is None:
            raise ParameterError("teacher", None, f"a model for variant {s.variant!r}")
        if not (s.variant == "fixed_teacher" and s.kd == "rkd"):  # RKD never reads the teacher's head
            heads["teacher"] = head_size(teacher)
    return heads


def check_ways(task, heads):
    ways = episode_ways(task)
    for who, size in heads.items():
        if ways != size:
            raise ParameterError("ways", ways, f"{size}, the number of classes of the {who}'s head "
                                               "(every episode must have as many classes as the models predict)")
    return ways


# ---------------------------------------------------------------------------------------- adaptation

class Adaptation(NamedTuple):
    """One task's adapted parameters (None where a variant has no such model) and what guided the student."""

    student: dict
    teacher: dict
    guide: torch.Tensor          # teacher's support logits (kl) or embeddings (rkd), or None
    student_inner: dict          # the first inner step's named terms (detached floats)


def adapt(teacher, student, x_support, y_support, s: Settings, *, teacher_params=None, student_params=None):
    """The inner loop of one task: Eq. 6 for the teacher, then Eq. 7 for the student.

    Starts from `teacher_params` / `student_params` (default: the modules' own tensors, so the result is on
    the meta-graph); the orders of the two loops are `s.teacher_first_order` and `s.first_order`.
    """
    fast_teacher, guide = None, None
    if s.variant in ("ours", "oracle"):
        start = meta.params_of(teacher) if teacher_params is None else teacher_params
        fast_teacher, _ = meta.inner_loop(teacher, start, F.cross_entropy, (x_support, y_support),
                                          steps=s.teacher_inner_steps, lr=s.teacher_inner_lr,
                                          first_order=s.teacher_first_order, bn=s.bn)
    if s.variant == "ours":
        if s.kd == "rkd":
            guide = meta.forward(teacher, fast_teacher, x_support, bn=s.bn, return_features=True)[1][-1]
        else:
            guide = meta.forward(teacher, fast_teacher, x_support, bn=s.bn)
        if not s.attach_teacher:
            guide = guide.detach()
    elif s.variant == "fixed_teacher":
        with torch.no_grad(), meta.preserved_buffers(teacher):
            out = meta.forward(teacher, meta.params_of(teacher), x_support, bn=s.bn, return_features=True)
        guide = out[1][-1] if s.kd == "rkd" else out[0]
    if not uses_student(s.variant):
        return Adaptation(None, fast_teacher, None, {})

    start = meta.params_of(student) if student_params is None else student_params
    first = {}
    if guide is None:  # plain MAML: exactly meta.maml_step's inner loss
        loss_fn, batch, kwargs = F.cross_entropy, (x_support, y_support), None
    else:
        def loss_fn(output, labels, target):
            terms = student_inner_loss(output, labels, target, kd_weight=s.kd_weight,
                                       temperature=s.temperature, kd=s.kd)
            if not first:
                first.update({k: float(v.detach()) for k, v in terms.items()})
            return terms["loss"]
        batch, kwargs = (x_support, y_support, guide), ({"return_features": True} if s.kd == "rkd" else None)
    fast_student, _ = meta.inner_loop(student, start, loss_fn, batch, steps=s.inner_steps, lr=s.inner_lr,
                                      first_order=s.first_order, bn=s.bn, model_kwargs=kwargs)
    return Adaptation(fast_student, fast_teacher, guide, first)



def _accuracy(logits, y):
    return float((logits.argmax(1) == y).float().mean())


def tsmd_step(teacher, student, tasks, **knobs):
    """Accumulate into `.grad` the meta-gradients of Eq. 10 over a meta-batch of tasks (MAML outer loop):
    the teacher's from its query loss (Eq. 8a), the student's from its query loss (Eq. 8b), each averaged
    over the tasks. The optimizer steps are left to the caller:

        opt.zero_grad(); out = tsmd_step(teacher, student, tasks, variant="ours"); opt.step()

    `knobs` are those of `settings`. A task is (x_support, y_support, x_query, y_query). Returns a dict of
    named floats: "loss" (the summed meta-objective), "student_query_loss", "student_query_acc",
    "teacher_query_loss", "teacher_query_acc" (where a variant has the model), and the student's first
    inner step terms "inner_ce", "inner_kd" (variants with a teacher guide).
    """
    s = settings(**knobs)
    tasks = task_list(tasks)
    heads = check_models(teacher, student, s)
    for task in tasks:
        check_ways(task, heads)
    sums = {}

    def add(name, value):
        sums[name] = sums.get(name, 0.0) + float(value) / len(tasks)

    modules = [m for m in (teacher, student) if m is not None]
    with meta.preserved_buffers(modules[0]), meta.preserved_buffers(modules[-1]):
        for x_s, y_s, x_q, y_q, *_ in tasks:
            adapted = adapt(teacher, student, x_s, y_s, s)
            objective = 0.0
            if adapted.student is not None:
                logits = meta.forward(student, adapted.student, x_q, bn=s.bn, support=x_s)
                loss = F.cross_entropy(logits, y_q)
                objective = objective + loss
                add("student_query_loss", loss.detach())
                add("student_query_acc", _accuracy(logits.detach(), y_q))
                for name, value in adapted.student_inner.items():
                    if name != "loss":
                        add(f"inner_{name}", value)
            if adapted.teacher is not None:
                logits = meta.forward(teacher, adapted.teacher, x_q, bn=s.bn, support=x_s)
                loss = F.cross_entropy(logits, y_q)
                objective = objective + loss
                add("teacher_query_loss", loss.detach())
                add("teacher_query_acc", _accuracy(logits.detach(), y_q))
            (objective / len(tasks)).backward()  # one task's graph at a time, as meta.maml_step
            add("loss", objective.detach())
    return sums


def reptile_step(teacher, student, tasks, **knobs):
    """Reptile's outer step (Nichol et al. 2018) for the variants: after first-order inner steps on each
    task's support set (Eq. 6, then Eq. 7 with KD), write grad = theta - mean_i theta'_i (and the same for
    the teacher in 'ours' and 'oracle') into `.grad`, so that an SGD optimizer with lr epsilon performs
    theta <- theta + epsilon * mean_i (theta'_i - theta). Returns the same named floats as `tsmd_step`
    (query terms measured without gradient).
    """
    s = settings(**{**knobs, "first_order": True, "teacher_first_order": True, "attach_teacher": False})
    tasks = task_list(tasks)
    heads = check_models(teacher, student, s)
    for task in tasks:
        check_ways(task, heads)
    sums, displacement = {}, {}

    def add(name, value):
        sums[name] = sums.get(name, 0.0) + float(value) / len(tasks)

    def detached(module):
        return None if module is None else {n: p.detach().requires_grad_() for n, p in meta.params_of(module).items()}

    moved = {"student": student if uses_student(s.variant) else None,
             "teacher": teacher if s.variant in ("ours", "oracle") else None}
    modules = [m for m in (teacher, student) if m is not None]
    with meta.preserved_buffers(modules[0]), meta.preserved_buffers(modules[-1]):
        for x_s, y_s, x_q, y_q, *_ in tasks:
            with torch.enable_grad():
                adapted = adapt(teacher, student, x_s, y_s, s, teacher_params=detached(teacher),
                                student_params=detached(student))
            for who, fast in (("student", adapted.student), ("teacher", adapted.teacher)):
                if fast is None:
                    continue
                module = moved[who]
                with torch.no_grad():
                    logits = meta.forward(module, fast, x_q, bn=s.bn, support=x_s)
                    for name, p in meta.params_of(module).items():
                        step = (p - fast[name]) / len(tasks)
                        displacement[(who, name)] = displacement.get((who, name), 0) + step
                add(f"{who}_query_loss", F.cross_entropy(logits, y_q))
                add(f"{who}_query_acc", _accuracy(logits, y_q))
            for name, value in adapted.student_inner.items():
                if name != "loss":
                    add(f"inner_{name}", value)
    for (who, name), step in displacement.items():
        p = meta.params_of(moved[who])[name]
        p.grad = step.detach().clone() if p.grad is None else p.grad + step.detach()
    sums["loss"] = sums.get("student_query_loss", 0.0) + sums.get("teacher_query_loss", 0.0)
    return sums


# -------------------------------------------------------------------------------------------- meta-test

def adapt_and_predict(teacher, student, task, *, details=False, **knobs):
    """Meta-test on one task: adapt (teacher, then student) on the support set from detached copies, and
    return a dict with the deployed model's query logits ("logits": the student's, or the teacher's for
    'oracle'); with details=True also the adapted teacher's support and query logits ("teacher_support",
    "teacher_logits", where there is an adapted teacher) and the adapted student's support logits
    ("student_support"). Nothing flows back to the modules.
    """
    s = settings(**{**knobs, "first_order": True, "teacher_first_order": True})
    heads = check_models(teacher, student, s)
    check_ways(task, heads)
    x_s, y_s, x_q = task[0], task[1], task[2]
    start = {who: None if m is None else {n: p.detach().requires_grad_() for n, p in meta.params_of(m).items()}
             for who, m in (("teacher", teacher), ("student", student))}
    with torch.enable_grad():
        adapted = adapt(teacher, student, x_s, y_s, s, teacher_params=start["teacher"],
                        student_params=start["student"])
    out = {}
    with torch.no_grad():
        if adapted.teacher is not None and (details or adapted.student is None):
            out["teacher_logits"] = meta.forward(teacher, adapted.teacher, x_q, bn=s.bn, support=x_s)
            if details:
                out["teacher_support"] = meta.forward(teacher, adapted.teacher, x_s, bn=s.bn)
        if adapted.student is not None:
            out["logits"] = meta.forward(student, adapted.student, x_q, bn=s.bn, support=x_s)
            if details:
                out["student_support"] = meta.forward(student, adapted.student, x_s, bn=s.bn)
        else:
            out["logits"] = out["teacher_logits"]
    return out


def evaluate(teacher, student, tasks, **knobs):
    """Adapt on each task's support set and score the deployed model (the student; the teacher for
    'oracle') on its query set. Returns {"accuracy", "loss", "accuracies" (one per task, CPU tensor)}."""
    accuracies, losses = [], []
    for task in task_list(tasks):
        logits = adapt_and_predict(teacher, student, task, **knobs)["logits"]
        accuracies.append((logits.argmax(1) == task[3]).float().mean())
        losses.append(F.cross_entropy(logits, task[3]))
    accuracies = torch.stack(accuracies).cpu()
    return {"accuracy": float(accuracies.mean()), "loss": float(torch.stack(losses).mean()),
            "accuracies": accuracies}


# ---------------------------------------------------------------------------------------------- training

def train_tsmd(teacher, student, sampler, *, variant="ours", iterations=100, meta_batch=4, meta_lr=1e-3,
               teacher_meta_lr=None, outer="maml", device="cpu", log_every=10, callback=None, history=None,
               **knobs):
    """Meta-train one row of Table 1 end to end (Algorithm 1) on episodes from `sampler` (an
    EpisodeSampler over the meta-train split, or any iterator of tasks).

    Adam with `meta_lr` for the student (eta) and `teacher_meta_lr` (beta, default meta_lr) for the teacher
    (the paper: 1e-3 and 1e-5); outer="reptile" uses plain SGD at those rates on Reptile's displacement.
    Only the models a variant updates are touched: "student" ignores `teacher`, "oracle" ignores `student`,
    "fixed_teacher" never changes `teacher`. `knobs` go to `settings`.
    Returns (teacher, student, History); one History record per `log_every` iterations with the window's
    mean of every named term (accuracies in %), "iteration" and "seconds".
    """
    s = settings(variant, **knobs)
    if outer not in OUTER:
        raise ParameterError("outer", outer, "'maml' or 'reptile' (the paper's Table 4)")
    if not (_is_int(iterations) and iterations >= 1):
        raise ParameterError("iterations", iterations, "an integer >= 1")
    if not (_is_int(meta_batch) and meta_batch >= 1):
        raise ParameterError("meta_batch", meta_batch, "an integer >= 1")
    config.check("META_LR", meta_lr)
    teacher_meta_lr = meta_lr if teacher_meta_lr is None else teacher_meta_lr
    config.check("META_LR", teacher_meta_lr)
    check_models(teacher, student, s)
    make = torch.optim.SGD if outer == "reptile" else torch.optim.Adam
    optimizers = []
    if uses_student(variant):
        optimizers.append(make(student.parameters(), lr=meta_lr))
    if variant in ("ours", "oracle"):
        optimizers.append(make(teacher.parameters(), lr=teacher_meta_lr))
    step = reptile_step if outer == "reptile" else tsmd_step
    history = History() if history is None else history
    window, started = {}, time.perf_counter()
    for it in range(1, iterations + 1):
        tasks = [tuple(t.to(device) for t in next(sampler)) for _ in range(meta_batch)]
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        terms = step(teacher, student, tasks, **s._asdict())
        for opt in optimizers:
            opt.step()
        if not math.isfinite(terms["loss"]):
            raise TrainingDivergedError(
                f"the meta-objective became {terms['loss']} at iteration {it} ({terms}). Try a smaller "
                f"INNER_LR (now {s.inner_lr:g}), a smaller KD_WEIGHT (now {s.kd_weight:g}) or TEMPERATURE.")
        for name, value in terms.items():
            window.setdefault(name, []).append(100 * value if name.endswith("_acc") else value)
        if it % log_every == 0 or it == iterations:
            record = {"iteration": it, **{k: sum(v) / len(v) for k, v in window.items()},
                      "seconds": time.perf_counter() - started}
            history.append(record)
            window = {}
            if callback is not None:
                callback(history)
    return teacher, student, history
