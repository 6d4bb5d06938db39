"""TSMD under Reptile's outer step (Nichol, Achiam, Schulman 2018; the TSMD paper's Table 4): the inner
loops of `kdlab.methods.tsmd` (Eq. 6, then Eq. 7 with KD), all first order, and for every meta-updated
model the meta-gradient mean_i (theta - theta'_i), so that SGD at lr epsilon moves
theta <- theta + epsilon * mean_i (theta'_i - theta). Nothing is differentiated through the inner loops.
"""
import torch

from .. import meta
from . import tsmd
from .episodic import accuracy


def reptile_displacement(initial, adapted):
    """Reptile's meta-gradient of one task: theta - theta'_i (SGD on it moves theta towards theta'_i)."""
    return initial - adapted


def reptile_step(teacher, student, tasks, **knobs):
    """Reptile's outer step (Nichol et al. 2018): first-order inner steps (Eq. 6, then Eq. 7) on each task,
    then `.grad` = mean_i (theta - theta'_i) for every meta-updated model, so SGD with lr epsilon moves
    theta <- theta + epsilon mean_i (theta'_i - theta). Returns `tsmd_step`'s named floats (no gradient)."""
    s = tsmd.settings(**{**knobs, "first_order": True, "teacher_first_order": True, "attach_teacher": False})
    tasks, modules = tsmd.check_tasks(teacher, student, tasks, s)
    sums, displacement = {}, {}

    def add(name, value):
        sums[name] = sums.get(name, 0.0) + float(value) / len(tasks)

    def detached(module):
        return None if module is None else {n: p.detach().requires_grad_() for n, p in meta.params_of(module).items()}

    moved = {"student": student if tsmd.uses_student(s.variant) else None,
             "teacher": teacher if tsmd.route(s.variant)[0] == "adapted" else None}
    with meta.preserved_buffers(modules[0]), meta.preserved_buffers(modules[-1]):
        for task in tasks:
            with torch.enable_grad():
                adapted = tsmd.adapt(teacher, student, task[0], task[1], s, teacher_params=detached(teacher),
                                     student_params=detached(student))
            for who, fast in (("student", adapted.student), ("teacher", adapted.teacher)):
                if fast is not None:
                    with torch.no_grad():
                        loss, logits = tsmd.query_loss(moved[who], fast, task, s)
                        for name, p in meta.params_of(moved[who]).items():
                            step = reptile_displacement(p, fast[name]) / len(tasks)
                            displacement[(who, name)] = displacement.get((who, name), 0) + step
                    add(f"{who}_query_loss", loss)
                    add(f"{who}_query_acc", accuracy(logits, task[3]))
            for name, value in adapted.student_inner.items():
                if name != "loss":
                    add(f"inner_{name}", value)
    for (who, name), step in displacement.items():
        p = meta.params_of(moved[who])[name]
        p.grad = step.detach().clone() if p.grad is None else p.grad + step.detach()
    sums["loss"] = sums.get("student_query_loss", 0.0) + sums.get("teacher_query_loss", 0.0)
    return sums
