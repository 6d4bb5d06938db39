"""The one fit loop: any `kdlab.methods.base.Method` (or a model and an objective) over epochs of mini-batches.

The loop owns the batch order (a `torch.Generator` seeded by `seed`), the learning-rate schedules (one
`LambdaLR` per optimiser of the method), the history, progress bar, interrupt and resume, callbacks,
evaluation, augmentation and timing. The method owns its models, optimisers and the step itself.
"""
import math
import time
import warnings

import torch

from .. import config
from ..data.batching import batches
from ..methods.base import Batch, Method, Recipe, Run
from .history import History
from .progress import progress_bar, stoppable
from .schedules import make_schedulers


def as_method(model_or_method, objective=None):
    """A Method as given, or `Supervised(model, objective)` for a plain module (cross-entropy by default);
    `KD` for a `distill_from` objective (its frozen teacher's logits computed once, `FrozenLogits`)."""
    if isinstance(model_or_method, Method):
        if objective is not None:
            from ..errors import ParameterError

            raise ParameterError("objective", objective, "None when a Method is given (the method has its own step)")
        return model_or_method
    from ..methods.kd import KD, Distillation, Supervised, cross_entropy

    if isinstance(objective, Distillation):
        return KD(model_or_method, objective.teacher, objective.alpha, objective.temperature)
    return Supervised(model_or_method, cross_entropy if objective is None else objective)


def fit(method, data, objective=None, *, epochs=10, lr=0.05, batch_size=64, optimizer="sgd", momentum=0.9,
        weight_decay=5e-4, schedule="cosine", seed=0, callbacks=(), history=None, progress=None, eval_every=1,
        augment=None):
    """Train `method` (a Method, or a model with an optional `objective(model, x, y) -> dict`) on `data`
    (a DataSplits); returns the History.

    Every epoch records the mean of each named loss the step returns, `lr`, `seconds` (the epoch's
    training time), and every `eval_every` epochs and at the end what `method.evaluate` returns
    (`train_acc`, `test_acc`, ...). A callback is any callable `callback(history, model)`; returning True
    stops training early. `augment(x, generator)`, if given, transforms each training batch on the device.
    `schedule` is "cosine", "constant", "step" (RepDistiller's x0.1 at 150/180/210 of 240, scaled) or a
    function epoch -> lr factor, applied to every optimiser of the method.
    Interrupting the kernel (Ctrl-C, the stop button) ends training cleanly: the partial History is
    returned with `interrupted=True` and the model keeps the weights of the last completed step, so the
    cell can be re-run or training continued with `fit(..., history=history)`.
    """
    config.check("EPOCHS", epochs)
    config.check("LR", lr)
    config.check("BATCH_SIZE", batch_size)
    method = as_method(method, objective)
    history = history if history is not None else History()
    history.interrupted = False  # a resumed run is interrupted only if it is stopped again
    first_epoch = history.epochs_done
    total_epochs = first_epoch + epochs
    run = Run(seed=seed, epochs=total_epochs, batch_size=batch_size,
              recipe=Recipe(lr, optimizer, momentum, weight_decay),
              generator=torch.Generator().manual_seed(seed + first_epoch), augment=augment, history=history,
              global_step=history.global_steps)
    method.configure(run.recipe, run)
    train_data = method.prepare(data, run)
    schedulers = make_schedulers([opt for opt in method.optimizers() if opt is not None], schedule,
                                 total_epochs, first_epoch)
    main_optimizer = method.optimizers()[0]
    index = torch.arange(train_data.num_train, device=train_data.x_train.device)
    bar = progress_bar(epochs, progress, desc=method.progress_desc)
    def stopped():
        return (f"kdlab: training interrupted after {history.epochs_done} epochs; the model and history are usable "
                "(continue with fit(..., history=history)).")

    with stoppable(method, history, bar, stopped):
        for epoch in range(first_epoch, total_epochs):
            run.epoch, run.lr = epoch, main_optimizer.param_groups[0]["lr"]
            method.on_epoch_start(run)
            start, sums, count = time.perf_counter(), {}, 0
            for step, (idx, yb) in enumerate(batches(index, train_data.y_train, batch_size, generator=run.generator,
                                                     drop_last=method.drop_last)):
                run.step = step
                xb = train_data.x_train[idx]
                if augment is not None:
                    xb = augment(xb, run.generator)
                losses = method.step(Batch(xb, yb, idx), run)
                weight = len(xb) if method.reduce == "samples" else 1
                for name, value in losses.items():
                    sums[name] = sums.get(name, 0.0) + float(value) * weight
                count += weight
                run.global_step += 1
                history.global_steps = run.global_step
            record = {"epoch": epoch + 1, "lr": run.lr, "seconds": time.perf_counter() - start}
            record.update({name: total / count for name, total in sums.items()})
            method.on_epoch_end(record, run)
            if (epoch + 1) % eval_every == 0 or epoch + 1 == total_epochs:
                record.update(method.evaluate(train_data))
            history.append(record)
            _advance(schedulers)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{record.get('loss', math.nan):.3f}",
                                test_acc=f"{record.get('test_acc', math.nan):.1f}")
            if any(callback(history, method.model) for callback in callbacks):
                break
    return history


def _advance(schedulers):
    with warnings.catch_warnings():  # an optimiser that did not step this epoch (a frozen teacher) is fine
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)`")
        for scheduler in schedulers:
            scheduler.step()
