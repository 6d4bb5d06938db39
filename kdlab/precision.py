"""Mixed precision (PyTorch AMP) as one small object: autocast for the forward passes, a GradScaler for
the updates. On CUDA with `amp=True`: float16 autocast and loss scaling; everywhere else both are no-ops
and the arithmetic is plain float32 (or whatever dtype the model has).

    precision = Precision(device, amp=True)
    with precision.autocast():
        loss = objective(model(x), y)
    precision.step(loss, optimizer)      # zero_grad, (scaled) backward, step (skipped on inf), scale update
"""
import contextlib

import torch


class Precision:
    """torch.autocast(float16) + GradScaler on CUDA when `amp`; plain arithmetic everywhere else."""

    def __init__(self, device, amp=True):
        self.enabled = bool(amp) and torch.device(device).type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if self.enabled else None

    def autocast(self):
        return torch.autocast("cuda", dtype=torch.float16) if self.enabled else contextlib.nullcontext()

    def step(self, loss, optimizer):
        """backward (scaled), optimizer step (unscaled, skipped on inf), scale update."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
