"""Notebook 03 (MetaDistil): its multi-seed experiments with the seeds trained together.

KD students go through `kdlab.train.fit_seeds`, MetaDistil's students and teachers through
`kdlab.train.fit_seeds_metadistil` (Algorithm 1 for all seeds at once). Each function returns what
`stats.over_seeds` over the one-seed function of `kdlab.lessons.metadistil` with the same name returns (a dict of
lists, one entry per seed), and for the notebook's MLP students on the CPU the same numbers, bit for bit
or to float32 rounding on a processor whose batched kernels round the last bit differently
(tests/unit/test_metadistil_seeds.py), about three times faster (benchmarks/results/seeds_metadistil.md).
With `workers` > 1 the stacked runs of one experiment (KD, MetaDistil, MetaDistil without the pilot update)
go to that many processes side by side (`kdlab.parallel.call_all`), every one with the numbers it gives here.
"""
import functools

from .. import parallel
from ..data.quiz import split_quiz
from ..methods import metadistil as md
from ..train import fit_seeds
from ..train.seeds_metadistil import fit_seeds_metadistil
from .kd import new_student
from .metadistil_runs import weight_gap


def kd_seeds(data, teacher, seeds, *, hidden, recipe, alpha, temperature, architecture=None):
    """`kd_run` for every seed: `data` is one DataSplits, or one per seed (each seed's 90 % split)."""
    first = data[0] if isinstance(data, (list, tuple)) else data
    return fit_seeds(lambda s: new_student(first, hidden, s, architecture), data, seeds, teacher=teacher,
                     alpha=alpha, temperature=temperature, **recipe)


def meta_seeds(data, teacher, seeds, *, hidden, recipe, alpha, temperature, teacher_lr, quiz_fraction, quiz_batch,
               pilot_update=True, freeze_epochs=0, architecture=None):
    """`meta_run` for every seed: (students, teachers, histories)."""
    return fit_seeds_metadistil(lambda s: new_student(data, hidden, s, architecture), teacher, data, seeds,
                                teacher_lr=teacher_lr, alpha=alpha, temperature=temperature,
                                quiz_fraction=quiz_fraction, quiz_batch_size=quiz_batch, pilot_update=pilot_update,
                                freeze_epochs=freeze_epochs, **recipe)


def compare_methods_seeds(data, teacher, *, seeds, hidden, recipe, alpha, temperature, teacher_lr, quiz_fraction,
                          quiz_batch, freeze_epochs=0, keep_teachers=None, architecture=None, workers=1):
    """`compare_methods` for every seed in `seeds`: KD (100 %), KD (90 %), MetaDistil with and without the pilot
    update; a dict of lists. `keep_teachers` (a dict) receives each seed's final MetaDistil teacher."""
    seeds = list(seeds)
    common = dict(hidden=hidden, recipe=recipe, alpha=alpha, temperature=temperature, architecture=architecture)
    meta = dict(teacher_lr=teacher_lr, quiz_fraction=quiz_fraction, quiz_batch=quiz_batch, freeze_epochs=freeze_epochs)
    nineties = [split_quiz(data, quiz_fraction, s, quiz_batch_size=quiz_batch).train for s in seeds]
    (pilot_students, meta_teachers, pilot), (no_pilot_students, _, no_pilot), (_, kd_all), (_, kd_90) = parallel.call_all(
        [functools.partial(meta_seeds, data, teacher, seeds, pilot_update=True, **common, **meta),
         functools.partial(meta_seeds, data, teacher, seeds, pilot_update=False, **common, **meta),
         functools.partial(kd_seeds, data, teacher, seeds, **common),
         functools.partial(kd_seeds, nineties, teacher, seeds, **common)], workers)
    rows = {key: [] for key in ("kd_100", "kd_90", "meta", "meta_no_pilot", "meta_teacher", "toward_first",
                                "toward_second", "pilot_weight_gap")}
    for i, seed in enumerate(seeds):
        if keep_teachers is not None:
            keep_teachers[seed] = meta_teachers[i]
        first, second = md.toward_share(pilot[i])
        for key, value in (("kd_100", kd_all[i].last["test_acc"]), ("kd_90", kd_90[i].last["test_acc"]),
                           ("meta", pilot[i].last["test_acc"]), ("meta_no_pilot", no_pilot[i].last["test_acc"]),
                           ("meta_teacher", pilot[i].last["teacher_test_acc"]), ("toward_first", first),
                           ("toward_second", second),
                           ("pilot_weight_gap", weight_gap(pilot_students[i], no_pilot_students[i]))):
            rows[key].append(value)
    return rows


def pilot_ablation_seeds(data, teacher, *, seeds, hidden, recipe, alpha, temperature, teacher_lr, quiz_fraction,
                         quiz_batch, workers=1):
    """`pilot_ablation` for every seed: MetaDistil with and without the pilot update; a dict of lists."""
    seeds = list(seeds)
    common = dict(hidden=hidden, recipe=recipe, alpha=alpha, temperature=temperature, teacher_lr=teacher_lr,
                  quiz_fraction=quiz_fraction, quiz_batch=quiz_batch)
    (with_pilot, _, pilot), (without_pilot, _, no_pilot) = parallel.call_all(
        [functools.partial(meta_seeds, data, teacher, seeds, pilot_update=pilot_update, **common)
         for pilot_update in (True, False)], workers)
    return {"meta": [h.last["test_acc"] for h in pilot], "meta_no_pilot": [h.last["test_acc"] for h in no_pilot],
            "pilot_weight_gap": [weight_gap(a, b) for a, b in zip(with_pilot, without_pilot)]}


def kd_vs_meta_seeds(data, teacher, *, seeds, hidden, recipe, alpha, temperature, teacher_lr, quiz_fraction,
                     quiz_batch, workers=1):
    """`kd_vs_meta` for every seed: KD (90 %) and MetaDistil at one (alpha, temperature); a dict of lists."""
    return kd_vs_meta_points(data, teacher, [(alpha, temperature)], seeds=seeds, hidden=hidden, recipe=recipe,
                             teacher_lr=teacher_lr, quiz_fraction=quiz_fraction, quiz_batch=quiz_batch,
                             workers=workers)[(alpha, temperature)]


def kd_vs_meta_points(data, teacher, points, *, seeds, hidden, recipe, teacher_lr, quiz_fraction, quiz_batch,
                      workers=1):
    """`kd_vs_meta_seeds` at each (alpha, temperature) of `points` (Figures 4 and 5's sweeps), its runs
    `workers` at a time: {(alpha, temperature): {"kd": [...], "meta": [...]}}."""
    seeds, points = list(seeds), list(dict.fromkeys(points))
    nineties = [split_quiz(data, quiz_fraction, s, quiz_batch_size=quiz_batch).train for s in seeds]
    meta = dict(teacher_lr=teacher_lr, quiz_fraction=quiz_fraction, quiz_batch=quiz_batch)
    calls = [functools.partial(meta_seeds, data, teacher, seeds, hidden=hidden, recipe=recipe, alpha=alpha,
                               temperature=temperature, **meta) for alpha, temperature in points]
    calls += [functools.partial(kd_seeds, nineties, teacher, seeds, hidden=hidden, recipe=recipe, alpha=alpha,
                                temperature=temperature) for alpha, temperature in points]
    done = parallel.call_all(calls, workers)   # MetaDistil's runs first: they take the longest
    metas, kds = done[:len(points)], done[len(points):]
    return {point: {"kd": [h.last["test_acc"] for h in kd[1]], "meta": [h.last["test_acc"] for h in meta[2]]}
            for point, kd, meta in zip(points, kds, metas)}
