"""Notebook 07 (the 2025 preprint): one FeatureMeta run (`train`) and the multi-seed comparison of the arms
(`compare`), whose seeds can train side by side in worker processes (`kdlab.parallel`)."""
import functools
import time

import numpy as np

from .. import parallel
from ..methods import feature_meta as fm
from ..train import fit


def train(student, teacher, data, *, seed, recipe, settings):
    """`fit(FeatureMeta(student, teacher, **settings), data, seed=seed, **recipe)` without a progress bar;
    returns (method, history)."""
    method = fm.FeatureMeta(student, teacher, **settings)
    return method, fit(method, data, seed=seed, progress=False, **recipe)


# -- the multi-seed comparison ----------------------------------------------------------------------------
CURVES = ("loss", "ce", "train_acc", "test_acc", "passes", "alpha")


def compare(data, teacher, seeds, *, arms, recipe, settings, make_student, log=print, workers=1):
    """Train every arm for every seed (same initial weights and batch order within a seed);
    `make_student(seed)` returns a fresh student on the data's device; `recipe` goes to `fit`, `settings`
    to `FeatureMeta`, and an arm's own settings override `settings`. `workers` > 1 trains the seeds in that many
    processes side by side (`kdlab.parallel`; `make_student` a function of a module or a partial of one), each
    seed with the numbers it gets alone.

    Returns {arm: {curve: array (seeds, epochs), "seconds": array (seeds,)}} for the CURVES keys."""
    seeds = list(seeds)
    one_seed = functools.partial(_compare_seed, data, teacher, arms, recipe, settings, make_student, log, len(seeds))
    per_seed = parallel.map_in_workers(one_seed, list(enumerate(seeds, start=1)), workers)
    return {arm: {key: np.asarray([seed_result[arm][key] for seed_result in per_seed], dtype=float)
                  for key in (*CURVES, "seconds")} for arm in arms}


def _compare_seed(data, teacher, arms, recipe, settings, make_student, log, count, numbered_seed):
    """Every arm for one seed: {arm: {curve: values per epoch, "seconds": the run's wall time}}."""
    index, seed = numbered_seed
    started, shown, out = time.perf_counter(), [], {}
    for arm, arm_settings_ in arms.items():
        arm_start = time.perf_counter()
        _, history = train(make_student(seed), teacher, data, seed=seed, recipe=recipe,
                           settings={**settings, **arm_settings_})
        out[arm] = {key: history.series(key) for key in CURVES}
        out[arm]["seconds"] = time.perf_counter() - arm_start
        shown.append(f"{arm} {history.last['test_acc']:.1f}")
    log(f"seed {seed} ({index}/{count}): " + ", ".join(shown) + f"  [{time.perf_counter() - started:.1f} s]")
    return out
