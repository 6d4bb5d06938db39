"""Learning-rate schedules as `torch.optim.lr_scheduler.LambdaLR` factors, one per run shared by every
optimizer of a method (the student's, and a teacher's or meta-net's that follows the student's decay).

- "cosine":   factor(e) = (1 + cos(pi e / E)) / 2, evaluated at the start of epoch e of E
- "constant": factor(e) = 1 (also None)
- "step":     RepDistiller's multi-step decay, x0.1 at epochs 150, 180 and 210 of 240, scaled to E
- a callable `factor(epoch)`, for example MetaDistiller's `lambda e: 0.1 ** ((e >= 80) + (e >= 140))`

A cosine factor of exactly (1 + cos) / 2 makes `lr * factor` bit-identical to `0.5 * lr * (1 + cos)`:
multiplying by 0.5 is exact in binary floating point.
"""
import math

import torch

from ..errors import ParameterError

SCHEDULES = ("cosine", "constant", "step")
REPDISTILLER_MILESTONES = (150, 180, 210)  # of 240 epochs, lr x 0.1 at each
REPDISTILLER_EPOCHS = 240


def step_milestones(total_epochs, milestones=REPDISTILLER_MILESTONES, of=REPDISTILLER_EPOCHS):
    """RepDistiller's milestones scaled to `total_epochs`: 240 epochs give (150, 180, 210), 24 give (15, 18, 21)."""
    return tuple(max(1, round(m * total_epochs / of)) for m in milestones)


def schedule_factor(schedule, total_epochs):
    """The function epoch -> lr factor for `schedule` over `total_epochs` epochs."""
    if callable(schedule):
        return schedule
    if schedule in (None, "constant"):
        return lambda epoch: 1.0
    if schedule == "cosine":
        return lambda epoch: 0.5 * (1 + math.cos(math.pi * epoch / total_epochs))
    if schedule == "step":
        milestones = step_milestones(total_epochs)
        return lambda epoch: 0.1 ** sum(epoch >= m for m in milestones)
    raise ParameterError("schedule", schedule, "'cosine', 'constant', 'step', None or a function epoch -> factor")


def scheduled_lr(lr, schedule, epoch, total_epochs):
    """The learning rate of epoch `epoch` (0-based) under `schedule`: `lr * factor(epoch)`."""
    return lr * schedule_factor(schedule, total_epochs)(epoch)


def make_schedulers(optimizers, schedule, total_epochs, first_epoch=0):
    """One LambdaLR per optimizer, all following `schedule`; epoch `first_epoch` is in force on return
    (a resumed run continues the schedule where the previous fit stopped)."""
    factor = schedule_factor(schedule, total_epochs)
    return [torch.optim.lr_scheduler.LambdaLR(opt, lambda epoch, start=first_epoch: factor(start + epoch))
            for opt in optimizers]
