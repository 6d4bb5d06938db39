"""TSMD's knobs, checked once: which models a variant (a row of the paper's Table 1) uses, the inner-loop
settings of one adaptation, and the models' heads against the episodes. The method is `kdlab.methods.tsmd`."""
from typing import NamedTuple

from .. import config
from ..errors import ParameterError
from ..meta.episodes import task_list
from ..meta.functional import check_bn
from .episodic import check_ways, head_size

VARIANTS = ("student", "fixed_teacher", "ours", "oracle")
DEFAULT_KD = {"fixed_teacher": "rkd", "ours": "kl"}


def route(variant):
    """(teacher, student) of a variant: the teacher "adapted" (Eq. 6 and Eq. 10a), "fixed" (neither) or None;
    the student True (adapted by Eq. 7, updated by Eq. 10b) or False."""
    return {"student": (None, True), "fixed_teacher": ("fixed", True), "ours": ("adapted", True),
            "oracle": ("adapted", False)}[variant]


def uses_teacher(variant):
    return route(variant)[0] is not None


def uses_student(variant):
    return route(variant)[1]


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
    """Check every knob (rows of `config.RULES`) and fill the defaults: the teacher's inner steps and lr
    default to the student's, `kd` to "rkd" for the fixed teacher and "kl" otherwise, `teacher_first_order`
    to `first_order`. The adapted teacher of "ours" needs at least one inner step (Eq. 6)."""
    config.check("variant", variant)
    kd = config.check("kd", DEFAULT_KD.get(variant, "kl") if kd is None else kd)
    for name, value in (("KD_WEIGHT", kd_weight), ("TEMPERATURE", temperature), ("INNER_STEPS", inner_steps),
                        ("INNER_LR", inner_lr)):
        config.check(name, value)
    teacher_inner_steps = inner_steps if teacher_inner_steps is None else teacher_inner_steps
    teacher_inner_lr = inner_lr if teacher_inner_lr is None else teacher_inner_lr
    config.check("TEACHER_INNER_STEPS" if variant == "ours" else "INNER_STEPS", teacher_inner_steps)
    config.check("INNER_LR", teacher_inner_lr)
    check_bn(bn)
    teacher_first_order = first_order if teacher_first_order is None else teacher_first_order
    return Settings(variant, kd, float(kd_weight), float(temperature), int(inner_steps), float(inner_lr),
                    int(teacher_inner_steps), float(teacher_inner_lr), bool(first_order),
                    bool(teacher_first_order), bool(attach_teacher), bn)


def check_models(teacher, student, s: Settings):
    """The models a variant needs are there; returns the head sizes ({who: classes}) the episodes must match."""
    teacher_role, has_student = route(s.variant)
    for who, model, needed in (("student", student, has_student), ("teacher", teacher, teacher_role is not None)):
        if needed and model is None:
            raise ParameterError(who, None, f"a model for variant {s.variant!r}")
    heads = {"student": head_size(student)} if has_student else {}
    if teacher_role is not None and not (teacher_role == "fixed" and s.kd == "rkd"):  # RKD never reads its head
        heads["teacher"] = head_size(teacher)
    return heads


def check_tasks(teacher, student, tasks, s: Settings):
    """The meta-batch as a list, every episode checked against the heads; and the models there are."""
    tasks, heads = task_list(tasks), check_models(teacher, student, s)
    for task in tasks:
        check_ways(task, heads)
    return tasks, [m for m in (teacher, student) if m is not None]
