"""Notebook 03 (MetaDistil): its multi-seed experiments with the seeds trained together.

KD students go through `kdlab.train.fit_seeds`, MetaDistil's students and teachers through
`kdlab.train.fit_seeds_metadistil` (Algorithm 1 for all seeds at once). Each function returns what
`stats.over_seeds` over the one-seed function of `kdlab.lessons.metadistil` with the same name returns (a dict of
lists, one entry per seed), and for the notebook's MLP students on the CPU the same numbers bit for bit
(tests/unit/test_metadistil_seeds.py), about three times faster (benchmarks/results/seeds_metadistil.md).
"""
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
                          quiz_batch, freeze_epochs=0, keep_teachers=None, architecture=None):
    """`compare_methods` for every seed in `seeds`: KD (100 %), KD (90 %), MetaDistil with and without the pilot
    update; a dict of lists. `keep_teachers` (a dict) receives each seed's final MetaDistil teacher."""
    seeds = list(seeds)
    common = dict(hidden=hidden, recipe=recipe, alpha=alpha, temperature=temperature, architecture=architecture)
    meta = dict(teacher_lr=teacher_lr, quiz_fraction=quiz_fraction, quiz_batch=quiz_batch, freeze_epochs=freeze_epochs)
    nineties = [split_quiz(data, quiz_fraction, s, quiz_batch_size=quiz_batch).train for s in seeds]
    _, kd_all = kd_seeds(data, teacher, seeds, **common)
    _, kd_90 = kd_seeds(nineties, teacher, seeds, **common)
    pilot_students, meta_teachers, pilot = meta_seeds(data, teacher, seeds, pilot_update=True, **common, **meta)
    no_pilot_students, _, no_pilot = meta_seeds(data, teacher, seeds, pilot_update=False, **common, **meta)
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
                         quiz_batch):
    """`pilot_ablation` for every seed: MetaDistil with and without the pilot update; a dict of lists."""
    seeds = list(seeds)
    common = dict(hidden=hidden, recipe=recipe, alpha=alpha, temperature=temperature, teacher_lr=teacher_lr,
                  quiz_fraction=quiz_fraction, quiz_batch=quiz_batch)
    with_pilot, _, pilot = meta_seeds(data, teacher, seeds, pilot_update=True, **common)
    without_pilot, _, no_pilot = meta_seeds(data, teacher, seeds, pilot_update=False, **common)
    return {"meta": [h.last["test_acc"] for h in pilot], "meta_no_pilot": [h.last["test_acc"] for h in no_pilot],
            "pilot_weight_gap": [weight_gap(a, b) for a, b in zip(with_pilot, without_pilot)]}


def kd_vs_meta_seeds(data, teacher, *, seeds, hidden, recipe, alpha, temperature, teacher_lr, quiz_fraction,
                     quiz_batch):
    """`kd_vs_meta` for every seed: KD (90 %) and MetaDistil at one (alpha, temperature); a dict of lists."""
    seeds = list(seeds)
    common = dict(hidden=hidden, recipe=recipe, alpha=alpha, temperature=temperature)
    nineties = [split_quiz(data, quiz_fraction, s, quiz_batch_size=quiz_batch).train for s in seeds]
    _, kd = kd_seeds(nineties, teacher, seeds, **common)
    _, _, meta = meta_seeds(data, teacher, seeds, teacher_lr=teacher_lr, quiz_fraction=quiz_fraction,
                            quiz_batch=quiz_batch, **common)
    return {"kd": [h.last["test_acc"] for h in kd], "meta": [h.last["test_acc"] for h in meta]}
