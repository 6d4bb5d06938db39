"""Plain training and Hinton knowledge distillation: the template to copy when adding a method.

Hinton, Vinyals, Dean, "Distilling the Knowledge in a Neural Network" (2015), section 2:

    L = (1 - alpha) * CE(S(x), y) + alpha * tau^2 * KL(softmax(t / tau) || softmax(s / tau))

ALPHA weights the distillation term, everywhere in the kit. The teacher is frozen: its logits are computed
under `no_grad` and it stays in eval() mode. First order; nothing meta.

A new method is one file like this one: the paper's equations in the docstring, the losses as free
functions (here in `kdlab.losses`), a `Method` whose `step` returns named losses, and its `card` for
`kdlab.methods.registry`.
"""
import torch
import torch.nn.functional as F

from .. import config
from ..losses import distillation_loss
from .base import Method
from .frozen_teacher import FrozenLogits

def cross_entropy(model, x, y):
    """The plain objective: `{"loss": CE(model(x), y)}`."""
    return {"loss": F.cross_entropy(model(x), y)}


class Distillation:
    """The Hinton objective `(1 - alpha) * CE + alpha * T^2 * KL(p_t || p_s)` from a frozen teacher, as a function
    `objective(model, x, y) -> dict of named losses` that asks the teacher for the batch's logits. `fit(model,
    data, distill_from(teacher, ...))` trains it as `KD`, which looks the logits up in a table of the training
    set instead (`FrozenLogits`): the same numbers, without the teacher's forward pass at every step."""

    def __init__(self, teacher, alpha=0.9, temperature=4.0):
        config.check("ALPHA", alpha)
        config.check("TEMPERATURE", temperature)
        self.teacher, self.alpha, self.temperature = teacher.eval(), alpha, temperature

    def __repr__(self):
        return f"distill_from({type(self.teacher).__name__}, alpha={self.alpha:g}, temperature={self.temperature:g})"

    def __call__(self, model, x, y):
        with torch.no_grad():
            teacher_logits = self.teacher(x)
        return distillation_loss(model(x), teacher_logits, y, self.alpha, self.temperature)


def distill_from(teacher, alpha=0.9, temperature=4.0):
    """The Hinton objective `(1 - alpha) * CE + alpha * T^2 * KL(p_t || p_s)`; the teacher is frozen."""
    return Distillation(teacher, alpha, temperature)


class Supervised(Method):
    """Train `model` on `objective(model, x, y) -> dict of named losses` (default: cross-entropy)."""

    name = "ce"
    card = {"paper": "plain supervised training (the baseline every method is compared with)",
            "equations": "L = CE(S(x), y)", "detached": "nothing", "order": "first order", "loop": "epochs"}

    def __init__(self, model, objective=cross_entropy):
        self.model, self.objective = model, objective

    def step(self, batch, run):
        return self.descend(self.objective(self.model, batch.x, batch.y), self.optimizer, run)


class KD(Supervised):
    """Hinton KD from a frozen `teacher` (the section 2 objective above)."""

    name = "kd"
    card = {"paper": "Hinton, Vinyals, Dean (2015), Distilling the Knowledge in a Neural Network, section 2",
            "equations": "L = (1 - alpha) CE + alpha tau^2 KL(p_T^tau || p_S^tau)",
            "detached": "the teacher's logits (no_grad, eval mode)", "order": "first order", "loop": "epochs"}

    def __init__(self, student, teacher, alpha=0.9, temperature=4.0):
        super().__init__(student, Distillation(teacher, alpha, temperature))
        self.teacher, self.alpha, self.temperature = teacher, alpha, temperature
        self.teacher_logits = FrozenLogits(teacher)   # the training set's logits once, looked up per batch

    def prepare(self, data, run):
        self.teacher_logits.prepare(data, run)
        return data

    def step(self, batch, run):
        losses = distillation_loss(self.model(batch.x), self.teacher_logits(batch), batch.y, self.alpha,
                                   self.temperature)
        return self.descend(losses, self.optimizer, run)
