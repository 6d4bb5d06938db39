"""Runs the parallel tests send to worker processes: functions of a module, so that they can be pickled."""
import os
import time

import torch

from kdlab.data import load
from kdlab.models import MLP, SmallCNN
from kdlab.train import distill_from, fit


def square_after_pause(x):
    """x * x, later for smaller x (the results arrive out of order), printing which item it was."""
    time.sleep(0.3 * (3 - x))
    print(f"item {x}")
    return x * x


def fail_on_two(x):
    if x == 2:
        raise ValueError("item 2 failed on purpose")
    return x


def distil_cnn(seed):
    """A BatchNorm CNN student distilled from an MLP teacher for 2 epochs, trained by `fit` in a worker."""
    data = load("digits", train_size=200, seed=0)
    torch.manual_seed(0)
    teacher = MLP(64, hidden=(32,), num_classes=10)
    fit(teacher, data, epochs=2, lr=0.05, batch_size=50, seed=0, progress=False)
    torch.manual_seed(seed)
    student = SmallCNN(in_channels=1, num_classes=10, width=4)
    history = fit(student, data, distill_from(teacher, alpha=0.9, temperature=4.0), epochs=2, lr=0.05,
                  batch_size=50, seed=seed, progress=False)
    return {"weights": student.state_dict(), "acc": history.last["test_acc"], "pid": os.getpid()}


def accuracy_of_seed(seed):
    return {"acc": float(distil_cnn(seed)["acc"])}


def warn_and_return(x):
    import warnings

    warnings.warn(f"item {x} warns", RuntimeWarning)
    return x


def start_time_after_pause(item):
    """When the run of `item` started (the system's monotonic clock, the same in every process), after 0.3 s."""
    started = time.monotonic()
    time.sleep(0.3)
    return started


def imported_modules(names):
    """Which of `names` this process has imported (for the warm-up test)."""
    import sys

    return [name for name in names if name in sys.modules]
