"""The finite-difference oracle every meta-gradient test compares against (float64, central differences)."""
import torch


def finite_differences(objective, tensors, eps=1e-6):
    """Central differences of the scalar `objective()` with respect to every entry of `tensors`."""
    grads = []
    for t in tensors:
        g, values = torch.zeros_like(t), t.data.view(-1)
        for i in range(values.numel()):
            old = values[i].item()
            values[i] = old + eps
            up = objective().item()
            values[i] = old - eps
            down = objective().item()
            values[i] = old
            g.view(-1)[i] = (up - down) / (2 * eps)
        grads.append(g)
    return grads


def relative_error(a, b):
    """||a - b|| / ||b|| over lists of tensors, flattened and concatenated."""
    a, b = torch.cat([t.reshape(-1) for t in a]), torch.cat([t.reshape(-1) for t in b])
    return ((a - b).norm() / b.norm()).item()
