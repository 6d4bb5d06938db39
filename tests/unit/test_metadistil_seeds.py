"""Notebook 03's multi-seed experiments with the seeds trained together (`kdlab.lessons.metadistil_seeds`) give
what `stats.over_seeds` over the one-seed functions gives: every number of every seed (MLP students and teachers on
the CPU: bit for bit where the batched products sum like each seed's own, to float32 rounding on an AMD EPYC,
`seed_fixtures`), and the same final MetaDistil teachers for static teaching."""
import pytest
import torch

from kdlab import stats
from kdlab.lessons import metadistil as lesson
from kdlab.lessons import metadistil_seeds

from .seed_fixtures import assert_same_weights, digits_with_teacher, same_value

SEEDS = [0, 2, 5]
KNOBS = dict(hidden=(8,), recipe=dict(epochs=3, lr=0.05, batch_size=64, eval_every=3), alpha=0.9, temperature=4.0,
             teacher_lr=0.01, quiz_fraction=0.1, quiz_batch=30)


@pytest.fixture(scope="module")
def digits_and_teacher():
    return digits_with_teacher((32,))  # a smaller teacher than the other seed tests': these numbers were set on it


def assert_same_numbers(got, want):
    """Every seed's numbers: accuracies and gaps to float32 rounding; the share of "toward" decisions within two of
    the eight decisions it counts here, since a decision whose two KD values tie to rounding may go either way
    (`test_seeds_metadistil` checks each decision against its tie)."""
    assert got.keys() == want.keys()
    for key in want:
        assert len(got[key]) == len(want[key]), key
        for g, w in zip(got[key], want[key]):
            assert abs(g - w) <= 0.25 if key.startswith("toward") else same_value(g, w), (key, got[key], want[key])


def one_by_one(function, data, teacher, **kwargs):
    return stats.over_seeds(lambda s: function(data, teacher, seed=s, **kwargs), SEEDS, progress=False)


def test_compare_methods_equals_the_seed_by_seed_run_and_keeps_the_same_teachers(digits_and_teacher):
    data, teacher = digits_and_teacher
    kept_one, kept_together = {}, {}
    want = one_by_one(lesson.compare_methods, data, teacher, keep_teachers=kept_one, **KNOBS)
    got = metadistil_seeds.compare_methods_seeds(data, teacher, seeds=SEEDS, keep_teachers=kept_together, **KNOBS)
    assert_same_numbers(got, want)
    assert sorted(kept_together) == SEEDS
    for seed in SEEDS:
        assert_same_weights(kept_together[seed], kept_one[seed], f"seed {seed} teacher")
    assert len(set(want["meta"])) > 1 or len(set(want["kd_90"])) > 1, "the seeds should not all agree"


@pytest.mark.parametrize("name", ["pilot_ablation", "kd_vs_meta"])
def test_the_other_multi_seed_experiments_equal_their_seed_by_seed_runs(digits_and_teacher, name):
    data, teacher = digits_and_teacher
    want = one_by_one(getattr(lesson, name), data, teacher, **KNOBS)
    got = getattr(metadistil_seeds, f"{name}_seeds")(data, teacher, seeds=SEEDS, **KNOBS)
    assert_same_numbers(got, want)


def test_the_experiments_in_two_worker_processes_give_the_same_numbers(digits_and_teacher):
    """Notebook 03 runs each experiment's stacked runs side by side (`workers=run.workers`): the same numbers,
    the same teachers, and the per-seed and per-lr functions fed in the same order."""
    data, teacher = digits_and_teacher
    kept_here, kept_there = {}, {}
    here = metadistil_seeds.compare_methods_seeds(data, teacher, seeds=SEEDS, keep_teachers=kept_here, **KNOBS)
    there = metadistil_seeds.compare_methods_seeds(data, teacher, seeds=SEEDS, keep_teachers=kept_there, workers=2,
                                                   **KNOBS)
    assert there == here
    for seed in SEEDS:
        assert all(torch.equal(a, b) for a, b in zip(kept_here[seed].parameters(), kept_there[seed].parameters()))
    knobs = {k: v for k, v in KNOBS.items() if k not in ("alpha", "temperature")}
    points = [(0.5, 4.0), (0.9, 1.0)]
    swept = metadistil_seeds.kd_vs_meta_points(data, teacher, points, seeds=SEEDS, workers=2, **knobs)
    assert swept == {p: one_by_one(lesson.kd_vs_meta, data, teacher, alpha=p[0], temperature=p[1], **knobs)
                     for p in points}
    static = lesson.static_vs_dynamic_seeds(data, teacher, kept_here, seeds=SEEDS, workers=2, **KNOBS)
    assert static == stats.over_seeds(lambda s: lesson.static_vs_dynamic(data, teacher, kept_here[s], seed=s, **KNOBS),
                                      SEEDS, progress=False)
    lrs = [0.0, 0.01]
    dynamics_knobs = {k: v for k, v in KNOBS.items() if k != "teacher_lr"}
    apart = lesson.dynamics(data, teacher, seed=2, teacher_lrs=lrs, log_every=5, workers=2, **dynamics_knobs)
    together = lesson.dynamics(data, teacher, seed=2, teacher_lrs=lrs, log_every=5, **dynamics_knobs)
    def timeless(history):
        return [{k: v for k, v in record.items() if k != "seconds"} for record in history.records + history.steps]

    for key in ["kd", *lrs]:
        assert timeless(apart[key]) == timeless(together[key]), key
