"""MetaDistil's seeds trained together (`kdlab.train.seeds_metadistil.fit_seeds_metadistil`) equal the seeds trained
one after another with `fit(MetaDistil(...))`: every seed's final student and teacher weights, its accuracies per
epoch (student train/test, teacher test), the learning rates, and per step the KD values and the teacher's
"toward" decisions (MLPs on the CPU: the stacked students run one `baddbmm` per layer; where it sums Eq. 2's
gradient and Eq. 3's second-order meta-gradient in the same order as each seed's `addmm`, bit for bit; on an AMD
EPYC it rounds the last bit differently, so weights and KD values agree to float32 rounding and a decision whose two
KD values tie to rounding may go either way: `seed_fixtures`). The logged
cross-entropies (ce, quiz, loss) are compared to 1e-5 relative: `F.cross_entropy`'s mean (nll_loss's cascaded
sum) and a per-seed mean of the stacked losses round differently in the last bit; their gradients do not."""
import copy

import pytest
import torch

from kdlab.data.quiz import split_quiz
from kdlab.errors import ParameterError
from kdlab.methods.metadistil import MetaDistil
from kdlab.train import distill_from, fit
from kdlab.train.seeds_metadistil import fit_seeds_metadistil

from .seed_fixtures import (assert_same_weights, digits_and_teacher, new_student, same_decision,  # noqa: F401
                            same_value)

RECIPE = dict(epochs=3, lr=0.05, batch_size=64)
KNOBS = dict(teacher_lr=0.01, alpha=0.9, temperature=4.0, quiz_fraction=0.1, quiz_batch_size=30)
SEEDS = [0, 3, 7]


@pytest.mark.parametrize("pilot_update, freeze_epochs, temperature, more", [
    (True, 0, 4.0, {}), (False, 0, 4.0, {}), (True, 1, 4.0, {}), (True, 0, 100.0, {}),
    (True, 0, 4.0, {"lookahead_lr": 0.2, "optimizer": "adam", "lr": 0.01})])
def test_each_seed_equals_its_own_fit(digits_and_teacher, pilot_update, freeze_epochs, temperature, more):
    """At TEMPERATURE 4 a third of the logged KD values need kd_loss's float64 value, at 100 its exact one."""
    data, teacher = digits_and_teacher
    knobs = dict(KNOBS, pilot_update=pilot_update, freeze_epochs=freeze_epochs, temperature=temperature)
    knobs.update({k: v for k, v in more.items() if k == "lookahead_lr"})
    recipe = dict(RECIPE, **{k: v for k, v in more.items() if k != "lookahead_lr"})
    students, teachers, histories = fit_seeds_metadistil(new_student, teacher, data, SEEDS, **knobs, **recipe)
    for seed, student, meta_teacher, history in zip(SEEDS, students, teachers, histories):
        method = MetaDistil(new_student(seed), copy.deepcopy(teacher), **knobs)
        reference = fit(method, data, seed=seed, progress=False, **recipe)
        assert not torch.equal(method.teacher.layers[0].weight, teacher.layers[0].weight), "the teacher must learn"
        assert_same_weights(student, method.model, f"seed {seed} student")
        assert_same_weights(meta_teacher, method.teacher, f"seed {seed} teacher")
        assert len(history.records) == len(reference.records) and len(history.steps) == len(reference.steps)
        for got, want in zip(history.records, reference.records):
            for key in ("epoch", "lr", "teacher_lr", "train_acc", "test_acc", "teacher_test_acc"):
                assert got.get(key) == want.get(key), (seed, want["epoch"], key)
            for key in ("kd", "kd_before", "kd_after"):
                assert same_value(got.get(key), want.get(key)), (seed, want["epoch"], key)
            for key in ("loss", "ce", "quiz", "teacher_grad_norm"):
                if key in want:
                    assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-9), (seed, want["epoch"], key)
        for got, want in zip(history.steps, reference.steps):
            assert set(got) == set(want), (seed, want["step"])
            for key in ("step", "epoch"):
                assert got.get(key) == want.get(key), (seed, want["step"], key)
            for key in ("kd", "kd_before", "kd_after"):
                assert same_value(got.get(key), want.get(key)), (seed, want["step"], key)
            if want.get("toward") is not None:
                assert same_decision(got["toward"], want["toward"], want["kd_before"], want["kd_after"]), \
                    (seed, want["step"], "toward")
            else:
                assert got.get("toward") is None, (seed, want["step"], "toward")


def test_pilot_orders_differ_and_seeds_differ(digits_and_teacher):
    data, teacher = digits_and_teacher
    pilot, pilot_teachers, _ = fit_seeds_metadistil(new_student, teacher, data, [0, 1], **KNOBS, **RECIPE)
    lagged, _, _ = fit_seeds_metadistil(new_student, teacher, data, [0, 1], pilot_update=False, **KNOBS, **RECIPE)
    assert not torch.equal(pilot[0].classifier.weight, lagged[0].classifier.weight)
    assert not torch.equal(pilot[0].classifier.weight, pilot[1].classifier.weight)
    assert not torch.equal(pilot_teachers[0].classifier.weight, pilot_teachers[1].classifier.weight)


def test_other_students_run_vmapped_and_agree_to_float_rounding(digits_and_teacher):
    """A student that is not a `kdlab.models.MLP` runs `vmap(functional_call)`: its batched double backward sums the
    teacher's meta-gradient in another order, so the weights agree to float32 rounding (here 1e-6), not bit for bit."""
    data, teacher = digits_and_teacher

    def make(seed):
        torch.manual_seed(seed)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 8), torch.nn.ReLU(), torch.nn.Linear(8, 10))

    students, teachers, _ = fit_seeds_metadistil(make, teacher, data, [0, 3], **KNOBS, **RECIPE)
    for seed, student, meta_teacher in zip([0, 3], students, teachers):
        method = MetaDistil(make(seed), copy.deepcopy(teacher), **KNOBS)
        fit(method, data, seed=seed, progress=False, **RECIPE)
        for got, want in ((student, method.model), (meta_teacher, method.teacher)):
            for name, value in want.state_dict().items():
                torch.testing.assert_close(got.state_dict()[name], value, rtol=0, atol=1e-6)


def test_teacher_lr_zero_is_kd_on_each_seeds_90_percent(digits_and_teacher):
    data, teacher = digits_and_teacher
    students, teachers, _ = fit_seeds_metadistil(new_student, teacher, data, SEEDS, **dict(KNOBS, teacher_lr=0.0),
                                                 **RECIPE)
    for seed, student, frozen in zip(SEEDS, students, teachers):
        kd_student = new_student(seed)
        split = split_quiz(data, KNOBS["quiz_fraction"], seed, quiz_batch_size=KNOBS["quiz_batch_size"])
        fit(kd_student, split.train, distill_from(teacher, 0.9, 4.0), seed=seed, progress=False, **RECIPE)
        assert_same_weights(student, kd_student, f"seed {seed} student")
        assert_same_weights(frozen, teacher, f"seed {seed} teacher")


@pytest.mark.parametrize("change", ["dropout", "batchnorm", "augment", "monitor"])
def test_unsupported_configurations_are_refused_with_the_fallback_named(digits_and_teacher, change):
    data, teacher = digits_and_teacher
    make = new_student
    options = dict(KNOBS, **RECIPE)
    if change == "dropout":
        def make(seed):
            torch.manual_seed(seed)
            return torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 10))
    elif change == "batchnorm":
        def make(seed):
            torch.manual_seed(seed)
            return torch.nn.Sequential(torch.nn.Linear(64, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 10))
    elif change == "augment":
        options["augment"] = lambda x, generator: x
    else:
        options["monitor"] = (data.x_test, data.y_test)
    with pytest.raises(ParameterError, match=r"kdlab\.train\.fit\(MetaDistil"):
        fit_seeds_metadistil(make, teacher, data, [0, 1], **options)
