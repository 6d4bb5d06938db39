"""The fit loop every notebook uses: named losses in, a History out, with callbacks and a NaN guard.

An objective is a function `objective(model, x, y) -> dict` with a differentiable `"loss"` entry and any
other named terms (mdistiller style). `cross_entropy` and `distill_from(teacher, ...)` build the usual ones.
"""
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from . import config
from .data.batching import batches
from .errors import TrainingDivergedError
from .losses import distillation_loss


def cross_entropy(model, x, y):
    logits = model(x)
    return {"loss": F.cross_entropy(logits, y)}


def distill_from(teacher, alpha=0.9, temperature=4.0):
    """The Hinton objective `(1 - alpha) * CE + alpha * T^2 * KL(p_t || p_s)`; the teacher is frozen."""
    config.check("ALPHA", alpha)
    config.check("TEMPERATURE", temperature)
    teacher.eval()

    def objective(model, x, y):
        with torch.no_grad():
            teacher_logits = teacher(x)
        return distillation_loss(model(x), teacher_logits, y, alpha, temperature)

    return objective


@torch.no_grad()
def accuracy(model, x, y, batch_size=1024):
    """Top-1 accuracy in percent, evaluated in eval() mode and put back to the mode it was in."""
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size])
        correct += (logits.argmax(dim=-1) == y[start:start + batch_size]).sum().item()
    model.train(was_training)
    return 100.0 * correct / max(len(x), 1)


@dataclass
class History:
    """One record (a dict) per epoch; `series("test_acc")` gives a column."""

    records: list = field(default_factory=list)
    interrupted: bool = False

    def append(self, record):
        self.records.append(record)

    def series(self, key):
        return [r[key] for r in self.records if key in r]

    @property
    def last(self):
        return self.records[-1] if self.records else {}

    @property
    def epochs_done(self):
        return len(self.records)

    def __len__(self):
        return len(self.records)


def make_optimizer(params, name="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    from .errors import ParameterError

    raise ParameterError("optimizer", name, "'sgd' or 'adam'")


def check_finite(losses, epoch, step, lr):
    total = losses["loss"]
    if not torch.isfinite(total.detach()):
        terms = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
        raise TrainingDivergedError(
            f"the loss became {float(total.detach())} at epoch {epoch + 1}, step {step + 1} ({terms}). "
            f"Try a smaller learning rate (now {lr:g}), a smaller TEMPERATURE or ALPHA, or check the inputs "
            "for NaN; the model keeps the weights of the last finite step only if you re-run from a checkpoint."
        )


def fit(model, data, objective=cross_entropy, *, epochs=10, lr=0.05, batch_size=64, optimizer="sgd",
        momentum=0.9, weight_decay=5e-4, schedule="cosine", seed=0, callbacks=(), history=None,
        progress=None, eval_every=1, augment=None):
    """Train `model` on `data` (a DataSplits) with `objective`; returns the History.

    Every epoch records the mean of each named loss, `train_acc`, `test_acc`, `lr` and `seconds`.
    A callback is any callable `callback(history, model)`; returning True stops training early.
    `augment(x, generator)`, if given, transforms each training batch on the device (CIFAR crops/flips).
    Interrupting the kernel (Ctrl-C, the stop button) ends training cleanly: the partial History is
    returned with `interrupted=True` and the model keeps the weights of the last completed step, so the
    cell can be re-run or training continued with `fit(..., history=history)`.
    """
    config.check("EPOCHS", epochs)
    config.check("LR", lr)
    config.check("BATCH_SIZE", batch_size)
    history = history if history is not None else History()
    history.interrupted = False  # a resumed run is interrupted only if it is stopped again
    opt = make_optimizer(model.parameters(), optimizer, lr, momentum, weight_decay)
    total_epochs = history.epochs_done + epochs
    generator = torch.Generator().manual_seed(seed + history.epochs_done)
    bar = progress_bar(epochs, progress)
    model.train()
    try:
        for epoch in range(history.epochs_done, total_epochs):
            epoch_lr = scheduled_lr(lr, schedule, epoch, total_epochs)
            for group in opt.param_groups:
                group["lr"] = epoch_lr
            start, sums, count = time.perf_counter(), {}, 0
            for step, (xb, yb) in enumerate(batches(data.x_train, data.y_train, batch_size,
                                                    generator=generator)):
                if augment is not None:
                    xb = augment(xb, generator)
                losses = objective(model, xb, yb)
                check_finite(losses, epoch, step, epoch_lr)
                opt.zero_grad(set_to_none=True)
                losses["loss"].backward()
                opt.step()
                for name, value in losses.items():
                    sums[name] = sums.get(name, 0.0) + float(value.detach()) * len(xb)
                count += len(xb)
            record = {"epoch": epoch + 1, "lr": epoch_lr, "seconds": time.perf_counter() - start}
            record.update({name: total / count for name, total in sums.items()})
            if (epoch + 1) % eval_every == 0 or epoch + 1 == total_epochs:
                record["train_acc"] = accuracy(model, data.x_train, data.y_train)
                record["test_acc"] = accuracy(model, data.x_test, data.y_test)
            history.append(record)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.3f}", test_acc=f"{record.get('test_acc', math.nan):.1f}")
            if any(callback(history, model) for callback in callbacks):
                break
    except KeyboardInterrupt:
        history.interrupted = True
        print(f"kdlab: training interrupted after {history.epochs_done} epochs; "
              "the model and history are usable (continue with fit(..., history=history)).")
    finally:
        if bar is not None:
            bar.close()
        model.eval()
    return history


def scheduled_lr(lr, schedule, epoch, total_epochs):
    if schedule in (None, "constant"):
        return lr
    if schedule == "cosine":
        return 0.5 * lr * (1 + math.cos(math.pi * epoch / total_epochs))
    from .errors import ParameterError

    raise ParameterError("schedule", schedule, "'cosine', 'constant' or None")


def progress_bar(total, progress, desc="epochs"):
    from .env import headless

    if progress is None:
        progress = not headless()
    if not progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, leave=False)
