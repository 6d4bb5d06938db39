"""Seeds trained together (`kdlab.train.seeds.fit_seeds`) equal seeds trained one after another with `fit`:
each seed's final weights to float32 rounding and its accuracies per epoch exactly (MLP students on the CPU: bit for
bit where the batched matrix products sum in the same order as S separate ones, 1.5e-8 apart on an AMD EPYC whose
batched kernels round the last bit differently: `seed_fixtures`); the logged loss terms to 1e-5 relative."""
import pytest
import torch

from kdlab.data import load
from kdlab.errors import ParameterError
from kdlab.models import SmallCNN
from kdlab.train import distill_from, fit
from kdlab.train.seeds import fit_seeds

from .seed_fixtures import assert_same_weights, digits_and_teacher, new_student  # noqa: F401 (a fixture)

RECIPE = dict(epochs=3, lr=0.05, batch_size=64)


@pytest.mark.parametrize("alpha", [0.0, 0.9])
def test_each_seed_equals_its_own_fit(digits_and_teacher, alpha):
    data, teacher = digits_and_teacher
    seeds = [0, 3, 7]
    models, histories = fit_seeds(new_student, data, seeds, teacher=teacher, alpha=alpha, temperature=4.0, **RECIPE)
    for seed, model, history in zip(seeds, models, histories):
        alone = new_student(seed)
        objective = distill_from(teacher, alpha, 4.0) if alpha else None
        reference = fit(alone, data, objective, seed=seed, progress=False, **RECIPE)
        assert_same_weights(model, alone, f"seed {seed}")
        for got, want in zip(history.records, reference.records):
            assert (got["train_acc"], got["test_acc"], got["lr"]) == (want["train_acc"], want["test_acc"], want["lr"])
            # the logged epoch means: summed as tensors here, as Python floats in fit; and the KD term's value is
            # the textbook one here, where `kd_loss` swaps in the exact value when float32 cancels (its gradient,
            # and so every weight, is the textbook one in both)
            for key, rel in (("ce", 1e-6), ("loss", 1e-5), ("kd", 1e-5)):
                if key in want:
                    assert got[key] == pytest.approx(want[key], rel=rel, abs=1e-9), (seed, key)


def test_seeds_differ_from_each_other(digits_and_teacher):
    data, teacher = digits_and_teacher
    models, _ = fit_seeds(new_student, data, [0, 1], teacher=teacher, alpha=0.9, **RECIPE)
    first, second = (next(iter(m.state_dict().values())) for m in models)
    assert not torch.equal(first, second)


def new_cnn_student(seed):
    torch.manual_seed(seed)
    return SmallCNN(10, width=4, in_channels=1)


@pytest.mark.parametrize("alpha", [0.0, 0.9])
def test_batchnorm_students_equal_their_own_fit(digits_and_teacher, alpha):
    """A SmallCNN (BatchNorm with running statistics, the comparison's student): each seed's weights AND running
    statistics end within float32 rounding of its own `fit` (batched convolutions round the last bits their own
    way), and its accuracies, scored in eval mode with those statistics, are the same every epoch."""
    data, teacher = digits_and_teacher
    seeds = [0, 5]
    models, histories = fit_seeds(new_cnn_student, data, seeds, teacher=teacher, alpha=alpha, temperature=4.0,
                                  **RECIPE)
    for seed, model, history in zip(seeds, models, histories):
        alone = new_cnn_student(seed)
        reference = fit(alone, data, distill_from(teacher, alpha, 4.0) if alpha else None, seed=seed,
                        progress=False, **RECIPE)
        assert_same_weights(model, alone, f"seed {seed}")   # the state: weights, running means and variances
        assert torch.equal(model.state_dict()["stem.1.num_batches_tracked"],
                           alone.state_dict()["stem.1.num_batches_tracked"])
        assert [(r["train_acc"], r["test_acc"]) for r in history.records] == \
               [(r["train_acc"], r["test_acc"]) for r in reference.records], f"seed {seed}"


def test_dropout_students_are_refused_with_the_fallback_named(digits_and_teacher):
    data, _ = digits_and_teacher
    with pytest.raises(ParameterError, match="kdlab.train.fit"):
        fit_seeds(lambda s: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Dropout(0.1), torch.nn.Linear(64, 10)),
                  data, [0, 1], **RECIPE)


def test_notebook_01_paired_runs_are_the_same_numbers_together(digits_and_teacher):
    """The lesson's `ce_vs_kd_seeds` (notebook 01's multi-seed cells) records what `ce_vs_kd` seed by seed does."""
    from kdlab import stats
    from kdlab.lessons import kd as lesson

    data, teacher = digits_and_teacher
    recipe = {**RECIPE, "progress": False}
    one_by_one = stats.over_seeds(lambda s: lesson.ce_vs_kd(data, teacher, seed=s, alpha=0.9, temperature=4.0,
                                                            hidden=(8,), recipe=recipe), [0, 1], progress=False)
    together = lesson.ce_vs_kd_seeds(data, teacher, [0, 1], alpha=0.9, temperature=4.0, hidden=(8,), recipe=recipe)
    assert together == one_by_one



def test_one_data_set_per_seed_notebook_09_grid_points(digits_and_teacher):
    """Notebook 09's grid: each seed trains on its own 90 % (a per-seed quiz split); `kd_points` records what
    `kd_point` seed by seed does, quiz cross-entropy included."""
    from kdlab import stats
    from kdlab.lessons import alpha_temperature as lesson

    data, teacher = digits_and_teacher
    common = dict(alpha=0.5, temperature=2.0, hidden=(8,), recipe=RECIPE, quiz_fraction=0.1, quiz_batch=30)
    one_by_one = stats.over_seeds(lambda s: lesson.kd_point(data, teacher, seed=s, **common), [0, 1], progress=False)
    assert lesson.kd_points(data, teacher, seeds=[0, 1], **common) == one_by_one


def test_data_sets_of_different_sizes_are_refused(digits_and_teacher):
    data, _ = digits_and_teacher
    smaller = load("digits", train_size=200, seed=0)
    with pytest.raises(ParameterError, match="equal training and test sizes"):
        fit_seeds(new_student, [data, smaller], [0, 1], **RECIPE)
