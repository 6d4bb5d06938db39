"""The one loop for episodic meta-learning (MAML, TSMD): meta-batches of few-shot tasks from a sampler.

The method owns its models and meta-optimisers and takes one outer step per call of
`step(tasks, run) -> dict of named floats` (its "loss" entry is checked for NaN here). The loop owns the
task draw, the NaN guard, the logging windows (a History record every `log_every` iterations with the
window's mean of every term, accuracies in percent), callbacks, the progress bar and the stop button.
"""
import math
import time

from .. import config
from ..errors import ParameterError, TrainingDivergedError
from ..methods.base import Recipe, Run
from .history import History
from .progress import progress_bar, stoppable


def _on(task, device):
    """A task on `device`: an object with `.to` (an Episode), or a tuple of tensors."""
    if hasattr(task, "to"):
        return task.to(device)
    return tuple(t.to(device) for t in task)


def _positive_int(name, value):
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ParameterError(name, value, "an integer >= 1")
    return value


def fit_episodes(method, sampler, *, iterations, meta_batch=4, log_every=10, device="cpu", callbacks=(),
                 history=None, progress=False, seed=0):
    """Meta-train `method` for `iterations` outer steps of `meta_batch` tasks drawn from `sampler`.

    Returns the History: one record per `log_every` iterations (and the last) with "iteration", the
    window's mean of every named term ("..._acc" in percent), and "seconds" since the start. A callback
    is `callback(history, method)`; returning True stops early.
    """
    _positive_int("iterations", iterations)
    _positive_int("meta_batch", meta_batch)
    _positive_int("log_every", log_every)
    config.check("SEED", seed)
    history = History() if history is None else history
    history.interrupted = False
    run = Run(seed=seed, epochs=iterations, batch_size=meta_batch, recipe=Recipe(), generator=None, history=history)
    window, started = {}, time.perf_counter()
    bar = progress_bar(iterations, progress, desc=getattr(method, "progress_desc", "iterations"))
    def stopped():
        return f"kdlab: meta-training interrupted after {len(history)} logged windows; the models and history are usable."

    with stoppable(method, history, bar, stopped):
        for it in range(1, iterations + 1):
            run.step = run.global_step = it - 1
            tasks = [_on(next(sampler), device) for _ in range(meta_batch)]
            terms = method.step(tasks, run)
            if not math.isfinite(terms["loss"]):
                raise TrainingDivergedError(f"the meta-objective became {terms['loss']} at iteration {it} ({terms}). "
                                            + method.divergence_hint())
            for name, value in terms.items():
                window.setdefault(name, []).append(100 * value if name.endswith("_acc") else value)
            if bar is not None:
                bar.update(1)
            if it % log_every == 0 or it == iterations:
                history.append({"iteration": it, **{k: sum(v) / len(v) for k, v in window.items()},
                                "seconds": time.perf_counter() - started})
                window = {}
                if any(callback(history, method) for callback in callbacks):
                    break
    return history
