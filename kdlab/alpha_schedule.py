"""A distillation weight that changes per epoch: the 2025 feature-distillation preprint's future work
("higher during early epochs, lower as training progresses"), used by `kdlab.methods.feature_meta`.

    alpha_schedule(5, alpha=0.9, schedule="linear", alpha_end=0.1)   # [0.9, 0.7, 0.5, 0.3, 0.1]

ALPHA is the weight of the distillation term, as everywhere in the kit. This is the schedule of ALPHA,
not of the learning rate (that is `kdlab.train.fit(..., schedule=...)`).
"""
import math
import numbers

from . import config
from .errors import ParameterError

SCHEDULES = ("constant", "linear", "cosine", "step")


def alpha_at(epoch, epochs, *, alpha, schedule="constant", alpha_end=None):
    """Alpha for `epoch` (0-based) of `epochs`: from ALPHA at the first epoch to ALPHA_END at the last.

    constant  ALPHA throughout
    linear    straight line from ALPHA to ALPHA_END
    cosine    half a cosine from ALPHA to ALPHA_END (flat at both ends)
    step      ALPHA for the first half of the epochs, ALPHA_END for the second half
    A callable `schedule(epoch, epochs)` is accepted too; its value must lie in [0, 1].
    """
    if callable(schedule):
        value = schedule(epoch, epochs)
        if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= value <= 1):
            raise ParameterError("SCHEDULE", f"a schedule giving {value!r} at epoch {epoch + 1}",
                                 "a schedule whose values stay in [0, 1]")
        return float(value)
    alpha, schedule = float(config.check("ALPHA", alpha)), config.check("SCHEDULE", schedule)
    if schedule == "constant":
        return alpha
    if alpha_end is None:
        raise ParameterError("ALPHA_END", None, f"a number in [0, 1] (the {schedule!r} schedule ends there)")
    alpha_end = float(config.check("ALPHA_END", alpha_end))
    progress = epoch / (epochs - 1) if epochs > 1 else 0.0
    if schedule == "linear":
        return alpha + (alpha_end - alpha) * progress
    if schedule == "cosine":
        return alpha_end + (alpha - alpha_end) * 0.5 * (1 + math.cos(math.pi * progress))
    return alpha if epoch < epochs / 2 else alpha_end


def alpha_schedule(epochs, *, alpha, schedule="constant", alpha_end=None):
    """Alpha for every epoch, validated up front (a schedule that leaves [0, 1] is refused)."""
    epochs = config.check("EPOCHS", epochs)
    return [alpha_at(e, epochs, alpha=alpha, schedule=schedule, alpha_end=alpha_end) for e in range(epochs)]
