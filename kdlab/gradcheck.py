"""The one finite-difference oracle for meta-gradients, used by the notebooks and the tests.

A meta-gradient is the classic silent bug of this field (a detach too many makes it zero; a first-order
shortcut makes it wrong). Central differences in float64 need nothing of the kit's autograd code:

    grads = finite_differences(lambda: quiz_loss_after_step(), [teacher_weight])
    relative_error(autograd_grads, grads)   # about 1e-8 when the meta-gradient is right
"""
import torch


def finite_differences(objective, tensors, eps=1e-6):
    """Central differences of the scalar `objective()` with respect to every entry of `tensors`.

    Each entry is moved in place by +eps and -eps (and put back), so `objective` must read the tensors
    themselves, not copies. Use float64: in float32 the differences drown in rounding. Autograd stays on,
    so an objective may itself take differentiable steps (an unrolled inner loop)."""
    grads = []
    for t in tensors:
        g, values = torch.zeros_like(t, requires_grad=False), t.data.view(-1)
        for i in range(values.numel()):
            old = values[i].item()
            values[i] = old + eps
            up = _scalar(objective())
            values[i] = old - eps
            down = _scalar(objective())
            values[i] = old
            g.view(-1)[i] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


def _scalar(value):
    return value.detach().item() if torch.is_tensor(value) else float(value)


def relative_error(a, b):
    """||a - b|| / ||b|| over lists of tensors, flattened and concatenated (nan when b is zero)."""
    a = torch.cat([t.detach().reshape(-1) for t in a])
    b = torch.cat([t.detach().reshape(-1) for t in b])
    norm = b.norm()
    return ((a - b).norm() / norm).item() if norm > 0 else float("nan")
