"""Notebook 09's multi-seed runs side by side (`workers=2`: `kdlab.parallel`) give exactly the numbers they give one
after another in this process: the grid's points, and CTKD's and the meta-gradient's seeds, the live seed trained
here with its callbacks while the others train in workers."""
from kdlab import stats
from kdlab.lessons import alpha_temperature as lesson

from .seed_fixtures import digits_and_teacher  # noqa: F401 (a fixture)

COMMON = dict(hidden=(8,), recipe=dict(epochs=3, lr=0.05, batch_size=64, eval_every=3), quiz_fraction=0.1,
              quiz_batch=30)


def test_the_grid_in_workers_is_the_grid_here(digits_and_teacher):
    data, teacher = digits_and_teacher
    knobs = dict(seeds=[0, 1], alphas=[0.5, 0.9], temperatures=[2.0, 4.0], log=lambda line: None, **COMMON)
    here = lesson.grid(data, teacher, **knobs)
    assert lesson.grid(data, teacher, workers=2, **knobs) == here
    assert list(here) == [(0.5, 2.0), (0.5, 4.0), (0.9, 2.0), (0.9, 4.0)]
    assert here[0.9, 4.0] == lesson.kd_points(data, teacher, seeds=[0, 1], alpha=0.9, temperature=4.0, **COMMON)


def test_learned_seeds_in_workers_are_the_seeds_one_by_one(digits_and_teacher):
    data, teacher = digits_and_teacher
    knobs = dict(alpha=0.9, temperature=4.0, curriculum_epochs=2, meta_lr=0.02, **COMMON)
    kept_one, kept_apart, epochs_seen = {}, {}, []
    one_by_one = stats.over_seeds(lambda s: lesson.learned_seed(data, teacher, seed=s, keep=kept_one, **knobs),
                                  [3, 0, 1], progress=False)
    live = {"ctkd": [lambda history, method: epochs_seen.append(history.last["epoch"])], "meta": []}
    apart = lesson.learned_seeds(data, teacher, seeds=[3, 0, 1], live_seed=0, callbacks=live, keep=kept_apart,
                                 workers=2, **knobs)
    assert apart == one_by_one
    assert epochs_seen == [1, 2, 3], "the live seed's callbacks run here, once per epoch"
    assert sorted(kept_apart) == [0, 1, 3]

    def timeless(history):
        return [{k: v for k, v in r.items() if k != "seconds"} for r in history.records + history.steps]

    for seed in (0, 1, 3):
        for run in ("ctkd", "meta"):
            assert timeless(kept_apart[seed][run]) == timeless(kept_one[seed][run]), (seed, run)
