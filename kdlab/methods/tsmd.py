"""TSMD: task-specific meta distillation, few-shot learning of a compact student guided by a big teacher.

Wu, Chanda, Hosseinzadeh, Liu, Wang, "Few-Shot Learning of Compact Models via Task-Specific Meta
Distillation", WACV 2023 (arXiv 2210.09922). A teacher f_psi and a student g_theta are meta-learned
jointly (MAML); for each task T_i = (D_tr, D_val) (support, query), Algorithm 1:

    psi'_i   = psi - alpha * grad_psi L_T(psi; D_tr)                                         (Eq. 6)
    theta'_i = theta - lambda * grad_theta [ L_S(theta; D_tr) + L_KD(psi'_i, theta; D_tr) ]  (Eq. 7)
    L_T(psi'_i; D_val),  L_S(theta'_i; D_val)                                                (Eq. 8a, 8b)
    min_psi sum_i L_T(psi'_i; D_val),  min_theta sum_i L_S(theta'_i; D_val)                  (Eq. 9)
    psi <- psi - beta grad_psi sum_i L_T(...),   theta <- theta - eta grad_theta sum_i L_S(...)  (Eq. 10a, b)

No KD term in Eq. 9: KD only shapes the student's inner step. Meta-test: Eq. 6, then Eq. 7; only the
adapted student predicts. Variants (Table 1): "student" (MAML on the student), "fixed_teacher" (no
Eq. 6, no Eq. 10a; the unadapted teacher's support embeddings guide the student by RKD, Park et al.
2019), "ours" (Eqs. 6-10), "oracle" (MAML on the teacher, the upper bound). Reptile's outer step
(Table 4): `kdlab.methods.tsmd_reptile`.

Detached: the adapted teacher's guide (support logits) enters Eq. 7 DETACHED, so psi gets only its own
query loss, as Eq. 10a writes; `attach_teacher=True` (an experiment, not the paper) keeps it, and psi
also gets d L_S(theta'_i) / d psi through the student's inner step. The fixed teacher runs under no_grad.
Order: both inner loops second order (create_graph=True), so theta's meta-gradient carries the Hessian
of Eq. 7's loss, KD term included; `first_order` (FOMAML) for both, `teacher_first_order` for the teacher.

Deviations, declared: batch means, not the sums of Eqs. 4-5 and 8; L_KD = KD_WEIGHT * T^2 *
KL(p_teacher^T || p_student^T) (the paper: weight 1, no temperature); Adam outer steps (MAML's; the
paper writes SGD); MAML's transductive BatchNorm statistics by default (`bn`). No official code exists.
"""
from collections import namedtuple

import torch
import torch.nn.functional as F

from .. import config, meta
from ..losses import kd_loss
from ..losses_relational import rkd_loss
from ..meta.episodes import task_list
from . import tsmd_batched
from .base import Method
from .episodic import accuracy, check_ways
from .tsmd_settings import (VARIANTS, Settings, check_models, check_tasks, route, settings,  # noqa: F401
                            uses_student, uses_teacher)


def student_inner_loss(output, labels, guide, *, kd_weight, temperature, kd):
    """Eq. 7's inner objective, CE(student, labels) + KD_WEIGHT * L_KD(student, guide), as named terms.
    kd="kl": guide = the teacher's support logits, L_KD = T^2 KL(p_t^T || p_s^T) (batchmean);
    kd="rkd": guide = the teacher's support embeddings, `output` = (logits, features), features[-1] pooled."""
    if kd == "rkd":
        logits, features = output
        distill = rkd_loss(features[-1], guide)
    else:
        logits = output
        distill = kd_loss(logits, guide, temperature)
    ce = F.cross_entropy(logits, labels)
    return {"loss": ce + kd_weight * distill, "ce": ce, "kd": distill}


# one task's fast weights (None where a variant has no such model), the student's guide, its first inner terms
Adaptation = namedtuple("Adaptation", "student teacher guide student_inner")


def adapt_teacher(teacher, start, x_s, y_s, s):
    """Eq. 6: `s.teacher_inner_steps` SGD steps on the support cross-entropy from `start`."""
    return meta.inner_loop(teacher, start, F.cross_entropy, (x_s, y_s), steps=s.teacher_inner_steps,
                           lr=s.teacher_inner_lr, first_order=s.teacher_first_order, bn=s.bn).params


def teacher_guide(teacher, fast_teacher, x_s, s):
    """What guides Eq. 7: the adapted teacher's support logits (kl) or embeddings (rkd), detached unless
    `s.attach_teacher`; for the fixed teacher (`fast_teacher` None) the unadapted one's, under no_grad."""
    if fast_teacher is None:
        with torch.no_grad(), meta.preserved_buffers(teacher):
            out = meta.forward(teacher, meta.params_of(teacher), x_s, bn=s.bn, return_features=True)
        return out[1][-1] if s.kd == "rkd" else out[0]
    out = meta.forward(teacher, fast_teacher, x_s, bn=s.bn, **({"return_features": True} if s.kd == "rkd" else {}))
    guide = out[1][-1] if s.kd == "rkd" else out
    return guide if s.attach_teacher else guide.detach()


def adapt_student(student, start, x_s, y_s, guide, s):
    """Eq. 7 (plain MAML's step when `guide` is None); returns the fast weights and the first step's terms."""
    first = {}
    if guide is None:
        loss_fn, batch, kwargs = F.cross_entropy, (x_s, y_s), None
    else:
        def loss_fn(output, labels, target):
            terms = student_inner_loss(output, labels, target, kd_weight=s.kd_weight, temperature=s.temperature,
                                       kd=s.kd)
            if not first:
                first.update({k: float(v.detach()) for k, v in terms.items()})
            return terms["loss"]
        batch, kwargs = (x_s, y_s, guide), ({"return_features": True} if s.kd == "rkd" else None)
    fast, _ = meta.inner_loop(student, start, loss_fn, batch, steps=s.inner_steps, lr=s.inner_lr,
                              first_order=s.first_order, bn=s.bn, model_kwargs=kwargs)
    return fast, first


def adapt(teacher, student, x_support, y_support, s: Settings, *, teacher_params=None, student_params=None):
    """The inner loop of one task: Eq. 6 for the teacher, then Eq. 7 for the student, from `teacher_params`
    / `student_params` (default: the modules' own tensors, so the result is on the meta-graph)."""
    teacher_role, has_student = route(s.variant)
    fast_teacher, guide = None, None
    if teacher_role == "adapted":
        start = meta.params_of(teacher) if teacher_params is None else teacher_params
        fast_teacher = adapt_teacher(teacher, start, x_support, y_support, s)
    if not has_student:
        return Adaptation(None, fast_teacher, None, {})
    if teacher_role is not None:
        guide = teacher_guide(teacher, fast_teacher, x_support, s)
    start = meta.params_of(student) if student_params is None else student_params
    fast_student, first = adapt_student(student, start, x_support, y_support, guide, s)
    return Adaptation(fast_student, fast_teacher, guide, first)


def query_loss(module, fast, task, s):
    """Eq. 8: the adapted model's cross-entropy on the task's query set; returns (loss, logits)."""
    logits = meta.forward(module, fast, task[2], bn=s.bn, support=task[0])
    return F.cross_entropy(logits, task[3]), logits


def meta_objective(losses):
    """Eq. 9 for one task: the sum of the adapted models' query losses, {"student": L_S, "teacher": L_T}."""
    return sum(losses.values())


def tsmd_step(teacher, student, tasks, **knobs):
    """Accumulate into `.grad` Eq. 10's meta-gradients, averaged over the tasks (x_s, y_s, x_q, y_q); the
    optimizer steps are the caller's; `knobs` as `settings`. Returns named floats: "loss" (Eq. 9), the
    "{student,teacher}_query_{loss,acc}" a variant has, and the first inner step's "inner_ce", "inner_kd"."""
    s = settings(**knobs)
    tasks, modules = check_tasks(teacher, student, tasks, s)
    sums = {}

    def add(name, value):
        sums[name] = sums.get(name, 0.0) + float(value) / len(tasks)

    with meta.preserved_buffers(modules[0]), meta.preserved_buffers(modules[-1]):
        for task in tasks:
            adapted, losses = adapt(teacher, student, task[0], task[1], s), {}
            for who, module, fast in (("student", student, adapted.student), ("teacher", teacher, adapted.teacher)):
                if fast is not None:
                    losses[who], logits = query_loss(module, fast, task, s)
                    add(f"{who}_query_loss", losses[who].detach())
                    add(f"{who}_query_acc", accuracy(logits.detach(), task[3]))
                    for name, value in adapted.student_inner.items() if who == "student" else ():
                        if name != "loss":
                            add(f"inner_{name}", value)
            objective = meta_objective(losses)
            (objective / len(tasks)).backward()  # one task's graph at a time, as meta.maml_step
            add("loss", objective.detach())
    return sums


def reptile_step(teacher, student, tasks, **knobs):
    """Reptile's outer step instead of MAML's (the paper's Table 4): see `kdlab.methods.tsmd_reptile`."""
    from .tsmd_reptile import reptile_step as step

    return step(teacher, student, tasks, **knobs)


def adapt_and_predict(teacher, student, task, *, details=False, **knobs):
    """Meta-test on one task: adapt (teacher, then student) on the support set from detached copies; returns
    {"logits": the deployed model's query logits (the student's; the teacher's for 'oracle')}, with
    details=True also "teacher_support", "teacher_logits" (adapted teacher) and "student_support"."""
    s = settings(**{**knobs, "first_order": True, "teacher_first_order": True})
    check_ways(task, check_models(teacher, student, s))
    x_s, x_q = task[0], task[2]  # the support and query images
    fresh = {f"{who}_params": {n: p.detach().requires_grad_() for n, p in meta.params_of(m).items()}
             for who, m in (("teacher", teacher), ("student", student)) if m is not None}
    with torch.enable_grad():
        adapted = adapt(teacher, student, x_s, task[1], s, **fresh)
    out = {}
    with torch.no_grad():
        for who, module, fast in (("teacher", teacher, adapted.teacher), ("student", student, adapted.student)):
            if fast is not None and (details or who == "student" or adapted.student is None):
                out[f"{who}_logits"] = meta.forward(module, fast, x_q, bn=s.bn, support=x_s)
                if details:
                    out[f"{who}_support"] = meta.forward(module, fast, x_s, bn=s.bn)
    out["logits"] = out.pop("student_logits") if adapted.student is not None else out["teacher_logits"]
    return out


def evaluate(teacher, student, tasks, *, one_by_one=False, **knobs):
    """Adapt to each task's support set and score its queries, tasks many at once (`tsmd_batched.query_logits`)."""
    tasks = task_list(tasks)
    all_logits = None if one_by_one else tsmd_batched.query_logits(teacher, student, tasks, **knobs)
    if all_logits is None:
        all_logits = [adapt_and_predict(teacher, student, task, **knobs)["logits"] for task in tasks]
    accuracies = torch.stack([(z.argmax(1) == t[3]).float().mean() for t, z in zip(tasks, all_logits)]).cpu()
    return {"accuracy": float(accuracies.mean()), "accuracies": accuracies,
            "loss": float(torch.stack([F.cross_entropy(z, t[3]) for t, z in zip(tasks, all_logits)]).mean())}


def meta_optimizers(teacher, student, variant, outer, meta_lr, teacher_meta_lr):
    """Eq. 10's optimizers {"student": eta, "teacher": beta}: Adam, or SGD on Reptile's displacement."""
    make = torch.optim.SGD if outer == "reptile" else torch.optim.Adam
    teacher_role, has_student = route(variant)
    optimizers = {"student": make(student.parameters(), lr=meta_lr)} if has_student else {}
    if teacher_role == "adapted":
        optimizers["teacher"] = make(teacher.parameters(), lr=teacher_meta_lr)
    return optimizers


class TSMD(Method):
    """One row of Table 1 (`variant`) for `kdlab.train.fit_episodes`; `knobs` are `settings`'s. Adam at `meta_lr`
    (eta) for the student, at `teacher_meta_lr` (beta, default meta_lr; the paper 1e-5) for the teacher."""

    name = "tsmd"
    progress_desc = "meta-iterations"
    card = {"paper": "Wu et al., Few-Shot Learning of Compact Models via Task-Specific Meta Distillation, WACV 2023",
            "equations": "Eq. 6 (teacher inner), Eq. 7 (student inner, CE + KD from the adapted teacher), "
                         "Eq. 8-9 (query losses), Eq. 10a/b (outer steps)",
            "detached": "the adapted teacher's guide in Eq. 7 (attach_teacher=True keeps it); the fixed teacher",
            "order": "second order for both inner loops (first_order, teacher_first_order: FOMAML)", "loop": "episodes",
            "deviations": "batch-mean losses; KD_WEIGHT * T^2 * KL; Adam outer steps; transductive BatchNorm"}

    def __init__(self, teacher, student, *, variant="ours", meta_lr=1e-3, teacher_meta_lr=None, outer="maml",
                 **knobs):
        self.settings = settings(variant, **knobs)
        config.check("outer", outer), config.check("META_LR", meta_lr), check_models(teacher, student, self.settings)
        teacher_meta_lr = config.check("META_LR", meta_lr if teacher_meta_lr is None else teacher_meta_lr)
        self.teacher, self.student, self.outer = teacher, student, outer
        self.model = teacher if variant == "oracle" else student
        self.meta_optimizers = meta_optimizers(teacher, student, variant, outer, meta_lr, teacher_meta_lr)
        self.optimizer = self.meta_optimizers["teacher" if variant == "oracle" else "student"]  # the deployed model's

    def optimizers(self):
        return list(self.meta_optimizers.values())

    def step(self, tasks, run):
        for opt in self.optimizers():
            opt.zero_grad(set_to_none=True)
        outer_step = reptile_step if self.outer == "reptile" else tsmd_step
        terms = outer_step(self.teacher, self.student, tasks, **self.settings._asdict())
        for opt in self.optimizers():
            opt.step()
        return terms

    def evaluate(self, tasks, **overrides):
        """`evaluate` of the deployed model on `tasks`, with this method's knobs (or `overrides`)."""
        return evaluate(self.teacher, self.student, tasks, **{**self.settings._asdict(), **overrides})

    def modules(self):
        teacher_role, has_student = route(self.settings.variant)
        return [m for m, used in ((self.teacher, teacher_role), (self.student, has_student)) if used]

    def divergence_hint(self):
        return (f"Try a smaller INNER_LR (now {self.settings.inner_lr:g}), a smaller KD_WEIGHT (now "
                f"{self.settings.kd_weight:g}) or TEMPERATURE.")
