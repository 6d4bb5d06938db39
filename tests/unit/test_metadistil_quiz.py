"""kdlab.data.quiz (MetaDistil's quiz split, quiz stream and its augmentation) and every bad input MetaDistil
refuses by name."""
import copy
from unittest.mock import patch

import pytest
import torch

from kdlab.data.base import DataSplits
from kdlab.data.cifar import augment
from kdlab.data.quiz import quiz_batches, split_quiz
from kdlab.errors import ParameterError
from kdlab.methods import metadistil as md
from kdlab.models import MLP
from kdlab.train import distill_from, fit
from tests.unit.test_metadistil import RECIPE, digit_models, digits64


def crop_flip(x, generator):
    """The CIFAR runs' augmentation (RepDistiller's random crop with padding 4 and horizontal flip)."""
    return augment(x, "cifar100", generator=generator)


def check_zero_teacher_lr_is_kd_with_augmentation():
    """With crop/flip augmentation, teacher_lr=0 still takes KD's steps on the 80 % bit for bit: the quiz
    batches are augmented from their own generator (seed + QUIZ_AUGMENT_SEED_OFFSET), never the batch order's."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(60, 3, 32, 32, generator=g), torch.arange(60) % 10
    data = DataSplits("fake-cifar", x, y, x[:20], y[:20], 10, (3, 32, 32))
    torch.manual_seed(0)
    student, teacher = MLP(3 * 32 * 32, hidden=(8,), num_classes=10), MLP(3 * 32 * 32, hidden=(16,), num_classes=10)
    kd_student, seed = copy.deepcopy(student), 3
    recipe = dict(epochs=2, lr=0.05, batch_size=16, seed=seed, progress=False, augment=crop_flip)
    fit(kd_student, split_quiz(data, 0.2, seed).train, distill_from(copy.deepcopy(teacher), 0.9, 4.0), **recipe)
    method = md.MetaDistil(student, teacher, teacher_lr=0.0, quiz_fraction=0.2, quiz_batch_size=6)
    quizzes, real_step = [], md.metadistil_step

    def recording_step(s, t, batch, quiz, **options):
        quizzes.append(quiz[0])
        return real_step(s, t, batch, quiz, **options)

    with patch.object(md, "metadistil_step", recording_step):
        fit(method, data, **recipe)
    for a, b in zip(student.state_dict().values(), kd_student.state_dict().values()):
        assert torch.equal(a, b), "teacher_lr=0 with augmentation must take exactly KD's steps"
    order = quiz_batches(method.split.x_quiz, method.split.y_quiz, 6,
                         torch.Generator().manual_seed(seed + md.QUIZ_SEED_OFFSET))
    rng = torch.Generator().manual_seed(seed + md.QUIZ_AUGMENT_SEED_OFFSET)
    assert len(quizzes) == 6 and all(torch.equal(x_q, crop_flip(next(order)[0], rng)) for x_q in quizzes), \
        "every quiz batch is augmented, from the quiz's own generator"


def test_quiz_split_is_seeded_stratified_and_disjoint():
    data = digits64()
    a, b, c = split_quiz(data, 0.1, seed=4), split_quiz(data, 0.1, seed=4), split_quiz(data, 0.1, seed=5)
    assert a.num_quiz == 10 and a.train.num_train == 90
    assert torch.equal(a.x_quiz, b.x_quiz) and not torch.equal(a.x_quiz, c.x_quiz)
    assert sorted(a.y_quiz.tolist()) == list(range(10)), "10 quiz digits from 100 stratified ones: one per class"
    rows = {tuple(r.tolist()) for r in torch.cat([a.train.x_train, a.x_quiz]).flatten(1)}
    assert len(rows) == len({tuple(r.tolist()) for r in data.x_train.flatten(1)})
    assert torch.equal(a.train.x_test, data.x_test)


def test_quiz_batches_are_full_reshuffled_passes_over_the_quiz_set():
    x, y = torch.arange(10.0).unsqueeze(1), torch.arange(10)
    stream = quiz_batches(x, y, 4, torch.Generator().manual_seed(0))
    passes = [[next(stream) for _ in range(2)] for _ in range(3)]  # 10 // 4 = 2 full batches per pass
    for one_pass in passes:
        seen = torch.cat([yb for _, yb in one_pass])
        assert all(len(yb) == 4 for _, yb in one_pass) and len(set(seen.tolist())) == 8
    assert passes[0][0][1].tolist() != passes[1][0][1].tolist(), "each pass is reshuffled"


def test_method_prepare_splits_with_the_runs_seed_and_seeds_the_quiz_stream_apart():
    data = digits64()
    student, teacher = digit_models()
    method = md.MetaDistil(student, teacher, quiz_batch_size=5)
    fit(method, data, progress=False, **dict(RECIPE, epochs=1))
    expected = split_quiz(data, 0.1, RECIPE["seed"])
    assert torch.equal(method.split.x_quiz, expected.x_quiz)
    stream = quiz_batches(expected.x_quiz, expected.y_quiz, 5,
                          torch.Generator().manual_seed(RECIPE["seed"] + md.QUIZ_SEED_OFFSET))
    steps = -(-90 // RECIPE["batch_size"])
    for _ in range(steps):
        next(stream)
    assert torch.equal(next(method.quiz_stream)[0], next(stream)[0]), "one quiz batch drawn per step"


@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, "0.1"])
def test_quiz_fraction_outside_zero_one_is_refused(fraction):
    student, teacher = digit_models()
    with pytest.raises(ParameterError, match="QUIZ_FRACTION") as err:
        md.MetaDistil(student, teacher, quiz_fraction=fraction)
    assert "strictly between 0 and 1" in str(err.value)


def test_quiz_set_smaller_than_one_quiz_batch_is_refused():
    student, teacher = digit_models()
    with pytest.raises(ParameterError, match="QUIZ_FRACTION") as err:
        fit(md.MetaDistil(student, teacher, quiz_fraction=0.1, quiz_batch_size=16), digits64(), progress=False,
            **RECIPE)
    assert "one quiz batch of 16" in str(err.value) and "10 of 100" in str(err.value)
    with pytest.raises(ParameterError, match="QUIZ_FRACTION"):  # default quiz batch = batch_size = 16
        fit(md.MetaDistil(student, teacher, quiz_fraction=0.1), digits64(), progress=False, **RECIPE)


@pytest.mark.parametrize("kwargs,name,allowed", [
    ({"teacher_lr": -1e-4}, "TEACHER_LR", ">= 0"),
    ({"freeze_epochs": -1}, "FREEZE_EPOCHS", "integer >= 0"),
    ({"pilot_update": "yes"}, "pilot_update", "True or False"),
    ({"quiz_batch_size": 0}, "quiz_batch_size", "integer >= 1"),
    ({"alpha": 1.5}, "ALPHA", "[0, 1]"),
    ({"temperature": 0}, "TEMPERATURE", "(0, 1000]"),
    ({"lookahead_lr": -0.1}, "lookahead_lr", "> 0"),
    ({"log_every": -1}, "log_every", "integer >= 0"),
])
def test_bad_inputs_are_refused_by_name(kwargs, name, allowed):
    student, teacher = digit_models()
    with pytest.raises(ParameterError, match=name) as err:
        md.MetaDistil(student, teacher, **kwargs)
    assert allowed in str(err.value)


def test_zero_teacher_lr_reproduces_kd_bit_for_bit_with_augmentation_too():
    check_zero_teacher_lr_is_kd_with_augmentation()
