"""What the methods that learn their own ALPHA or TEMPERATURE share (`ctkd`, `meta_alpha_temperature`): a number
kept inside a range by a sigmoid, its inverse (to start at a chosen value), the check that a starting value lies
inside the range, and the gradient-reversal layer.

    tau = bounded(theta, 1.0, 21.0)          # 1 + 20 sigmoid(theta), never outside [1, 21]
    theta0 = unbounded(4.0, 1.0, 21.0)       # the theta that gives tau = 4
    reverse_gradient(theta, lam)             # theta forward; -lam * gradient backward (Ganin & Lempitsky 2015)
"""
import math
import numbers

import torch

from ..errors import ParameterError


def bounded(raw, low, high):
    """low + (high - low) * sigmoid(raw), clamped to [low, high]: rounding can overshoot an end by one ulp where
    the sigmoid saturates (and only there, where its gradient has vanished anyway)."""
    return (low + (high - low) * torch.sigmoid(raw)).clamp(low, high)


def unbounded(value, low, high):
    """The raw number that `bounded` maps to `value` (which must lie strictly inside (low, high))."""
    share = (value - low) / (high - low)
    return math.log(share) - math.log1p(-share)


def check_inside(name, value, low, high, range_name):
    """Return `value` if low < value < high, else one ParameterError naming `name` and the range."""
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and low < value < high):
        raise ParameterError(name, value, f"a number strictly inside {range_name} ({low:g}, {high:g}): a sigmoid "
                                          "never reaches the ends of its range")
    return value


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.clone()

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def reverse_gradient(x, scale):
    """The gradient-reversal layer: `x` unchanged forward, the incoming gradient times -`scale` backward."""
    return _ReverseGradient.apply(x, float(scale))
