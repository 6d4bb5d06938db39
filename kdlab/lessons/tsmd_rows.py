"""One row of TSMD's Table 1 (notebooks 06 and 08): meta-train a method on a sampler's episodes, then score it
on test tasks, computed once per configuration and code (`kdlab.run_cache`).

Notebook 08's few-shot block repeats three of notebook 06's rows on the same seeds and settings; with this
function both notebooks make the same cache key for the same row, so the second one reads the first one's
result instead of meta-training again: the trained weights, the history, the per-episode test accuracies and
the meta-training seconds measured when it ran. The key holds everything that decides the result: the method's
validated settings and optimisers, digests of its starting weights, of the training split and of the test
tasks, the sampler's draw, the iterations and the evaluation knobs.
"""
import time

import torch

from .. import run_cache
from ..methods import tsmd
from ..train import History, fit_episodes


def _optimizers(method):
    return {name: [type(opt).__name__, {k: v for k, v in opt.defaults.items() if not callable(v)}]
            for name, opt in sorted(method.meta_optimizers.items())}


def row_config(method, sampler, *, iterations, meta_batch, log_every, test_tasks, eval_knobs, device):
    """The cache key's configuration of one row (plain values and digests)."""
    split = sampler.data
    return {"settings": method.settings._asdict(), "outer": method.outer, "optimizers": _optimizers(method),
            "start": run_cache.digest(method.teacher, method.student),
            "split": run_cache.digest(split.images, split.labels, list(split.class_ids)),
            "sampler": [sampler.split, sampler.ways, sampler.shots, sampler.queries, sampler.seed, sampler._cursor],
            "iterations": iterations, "meta_batch": meta_batch, "log_every": log_every, "device": str(device),
            "test_tasks": run_cache.digest([tuple(task) for task in test_tasks]),
            "evaluation": evaluation_settings(eval_knobs)}


def evaluation_settings(eval_knobs):
    """The evaluation's knobs validated and filled, first order as `tsmd.adapt_and_predict` adapts."""
    return tsmd.settings(**{**eval_knobs, "first_order": True, "teacher_first_order": True})._asdict()


def train_and_score(method, sampler, *, iterations, meta_batch, log_every, test_tasks, eval_knobs, device="cpu",
                    log=print):
    """`fit_episodes(method, sampler, ...)` then `tsmd.evaluate(method.teacher, method.student, test_tasks,
    **eval_knobs)`, or the cached result of that same run. The method's models end up trained either way.
    Returns {"history", "seconds" (meta-training, measured when it ran), "accuracies" (per episode, in [0, 1]),
    "reused" (True when read from the cache)}."""
    def compute():
        started = time.perf_counter()
        history = fit_episodes(method, sampler, iterations=iterations, meta_batch=meta_batch, log_every=log_every,
                               device=device)
        seconds = time.perf_counter() - started
        result = tsmd.evaluate(method.teacher, method.student, test_tasks, **eval_knobs)
        return {"teacher": None if method.teacher is None else method.teacher.state_dict(),
                "student": None if method.student is None else method.student.state_dict(),
                "records": history.records, "steps": history.steps, "global_steps": history.global_steps,
                "seconds": seconds, "accuracies": result["accuracies"]}

    config = row_config(method, sampler, iterations=iterations, meta_batch=meta_batch, log_every=log_every,
                        test_tasks=test_tasks, eval_knobs=eval_knobs, device=device)
    stored, reused = run_cache.cached("tsmd-row", config, compute, log=log or (lambda message: None))
    if reused:
        with torch.no_grad():
            for module, state in ((method.teacher, stored["teacher"]), (method.student, stored["student"])):
                if module is not None:
                    module.load_state_dict(state)
    history = History(records=stored["records"], steps=stored["steps"], global_steps=stored["global_steps"])
    return {"history": history, "seconds": stored["seconds"], "accuracies": stored["accuracies"], "reused": reused}
