"""Planted bugs in MetaDistil: each one must make one of test_metadistil.py's own checks fail by an assertion.

Every mutant patches one module-level function (or a method of `MetaDistil`) with a concrete wrong
version: the bug a reader could write while implementing Algorithm 1.
"""
from unittest.mock import patch

import pytest
import torch

from kdlab import meta
from kdlab.methods import metadistil as md
from tests.mutation import assert_caught
from tests.unit.test_metadistil import (check_fit_is_algorithm_1_over_epochs, check_meta_gradient_matches_plain_torch,
                                        check_meta_gradient_matches_the_closed_form, check_one_step_is_algorithm_1,
                                        check_zero_teacher_lr_is_kd_on_the_90_split)
from tests.unit.test_metadistil_quiz import check_zero_teacher_lr_is_kd_with_augmentation

_experiment, _meta_gradient, _step = md.teaching_experiment, md.teacher_meta_gradient, md.metadistil_step
_teacher_update, _prepare = md.teacher_update, md.MetaDistil.prepare


def _detached_logits(student, teacher_logits, x, y, **kw):
    return _experiment(student, teacher_logits.detach(), x, y, **kw)


def _first_order(student, teacher_logits, x, y, *, lr, alpha, temperature):
    params = meta.params_of(student)
    student_logits = meta.forward(student, params, x)
    losses = md.student_loss(student_logits, teacher_logits, y, alpha, temperature)
    return meta.lookahead(student, params, losses["loss"], lr, create_graph=False), student_logits, losses


def _meta_gradient_with(quiz_objective):
    """teacher_meta_gradient with its quiz loss line replaced by `quiz_objective`."""
    def teacher_meta_gradient(student, teacher, x, y, x_q, y_q, *, lr, alpha, temperature):
        teacher_params = meta.params_of(teacher)
        teacher_logits = teacher(x)
        fast, student_logits, losses = md.teaching_experiment(student, teacher_logits, x, y, lr=lr, alpha=alpha,
                                                              temperature=temperature)
        l_q = quiz_objective(student, teacher, fast, x_q, y_q, alpha, temperature)
        grads = torch.autograd.grad(l_q, list(teacher_params.values()), allow_unused=True)
        grads = {n: torch.zeros_like(p) if g is None else g for (n, p), g in zip(teacher_params.items(), grads)}
        return md.MetaGradient(l_q.detach(), grads, teacher_logits, student_logits, losses)
    return teacher_meta_gradient


def _kd_objective_as_quiz(student, teacher, fast, x_q, y_q, alpha, temperature):
    return md.student_loss(meta.forward(student, fast, x_q), teacher(x_q), y_q, alpha, temperature)["loss"]


def _quiz_at_theta_s(student, teacher, fast, x_q, y_q, alpha, temperature):
    return md.quiz_loss(student(x_q), y_q)


def _order_swapped(*args, pilot_update=True, **kw):
    return _step(*args, pilot_update=not pilot_update, **kw)


def _sign_flipped(teacher, teacher_opt, grads):
    _teacher_update(teacher, teacher_opt, {name: -g for name, g in grads.items()})


def _quiz_augmented_from_the_batch_order(self, batch, run):  # the deviation of issue 19, as it was
    x_q, y_q = next(self.quiz_stream)
    return run.augmented(x_q), y_q


def _quiz_not_augmented(self, batch, run):
    return next(self.quiz_stream)


def _trains_on_the_quiz_images_too(self, data, run):
    _prepare(self, data, run)
    return data


MUTANTS = {
    "teacher logits detached in the teaching experiment":
        lambda: patch.object(md, "teaching_experiment", _detached_logits),
    "first-order look-ahead (create_graph=False)": lambda: patch.object(md, "teaching_experiment", _first_order),
    "quiz loss replaced by the KD objective":
        lambda: patch.object(md, "teacher_meta_gradient", _meta_gradient_with(_kd_objective_as_quiz)),
    "quiz loss computed at theta_S instead of theta_S'":
        lambda: patch.object(md, "teacher_meta_gradient", _meta_gradient_with(_quiz_at_theta_s)),
    "pilot update order swapped": lambda: patch.object(md, "metadistil_step", _order_swapped),
    "teacher update skipped": lambda: patch.object(md, "teacher_update", lambda teacher, opt, grads: None),
    "sign of the teacher step flipped": lambda: patch.object(md, "teacher_update", _sign_flipped),
    "quiz batch drawn from the training batch":
        lambda: patch.object(md.MetaDistil, "quiz_batch", lambda self, batch, run: (batch.x, batch.y)),
    "quiz stream seeded like the batch order": lambda: patch.object(md, "QUIZ_SEED_OFFSET", 0),
    "quiz batch augmented from the training batch order's generator":
        lambda: patch.object(md.MetaDistil, "quiz_batch", _quiz_augmented_from_the_batch_order),
    "quiz batch not augmented in an augmented run":
        lambda: patch.object(md.MetaDistil, "quiz_batch", _quiz_not_augmented),
    "teacher optimizer left out of the schedule":
        lambda: patch.object(md.MetaDistil, "optimizers", lambda self: [self.optimizer]),
    "student trains on the quiz images too": lambda: patch.object(md.MetaDistil, "prepare",
                                                                  _trains_on_the_quiz_images_too),
}

CAUGHT_BY = {
    "teacher logits detached in the teaching experiment": check_meta_gradient_matches_the_closed_form,
    "first-order look-ahead (create_graph=False)": check_meta_gradient_matches_the_closed_form,
    "quiz loss replaced by the KD objective": check_meta_gradient_matches_the_closed_form,
    "quiz loss computed at theta_S instead of theta_S'": check_meta_gradient_matches_plain_torch,
    "pilot update order swapped": lambda: check_one_step_is_algorithm_1(pilot=True),
    "teacher update skipped": lambda: check_one_step_is_algorithm_1(pilot=True),
    "sign of the teacher step flipped": lambda: check_one_step_is_algorithm_1(pilot=False),
    "quiz batch drawn from the training batch": check_fit_is_algorithm_1_over_epochs,
    "quiz stream seeded like the batch order": check_fit_is_algorithm_1_over_epochs,
    "quiz batch augmented from the training batch order's generator": check_zero_teacher_lr_is_kd_with_augmentation,
    "quiz batch not augmented in an augmented run": check_zero_teacher_lr_is_kd_with_augmentation,
    "teacher optimizer left out of the schedule": check_fit_is_algorithm_1_over_epochs,
    "student trains on the quiz images too": check_zero_teacher_lr_is_kd_on_the_90_split,
}


@pytest.mark.parametrize("name", MUTANTS)
def test_planted_metadistil_bug_is_caught(name):
    assert_caught(CAUGHT_BY[name], MUTANTS[name])
