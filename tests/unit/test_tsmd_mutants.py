"""Planted bugs in TSMD: each must make one of test_tsmd.py's own checks fail by an assertion.

Every mutant patches one module-level function of `kdlab.methods.tsmd` (or `tsmd_reptile`, or the
optimiser) with the wrong version a reader could write while implementing Algorithm 1.
"""
from unittest.mock import patch

import pytest
import torch
import torch.nn.functional as F

from kdlab import meta
from kdlab.losses import kd_loss
from kdlab.methods import tsmd, tsmd_reptile
from tests.mutation import assert_caught
from tests.unit.test_tsmd import (check_fixed_teacher_is_never_changed, check_meta_gradients_match_the_paper,
                                  check_meta_test_adapts_the_teacher_then_the_student,
                                  check_reptile_is_the_mean_displacement_of_sgd_by_hand,
                                  check_two_meta_iterations_are_adam_on_the_paper_gradients)

_adapt_teacher, _teacher_guide, _adapt_student = tsmd.adapt_teacher, tsmd.teacher_guide, tsmd.adapt_student
_query_loss, _meta_objective = tsmd.query_loss, tsmd.meta_objective
_route, _optimizers = tsmd.route, tsmd.meta_optimizers


def _settings_changed(original, **changes):
    """`original` (an Eq. 6 or Eq. 7 function whose last argument is the Settings) with settings changed."""
    return lambda *args: original(*args[:-1], args[-1]._replace(**changes))


def _inner_loss(kd_term):
    """student_inner_loss with the KD term computed by `kd_term(student_logits, teacher_logits, T)`."""
    def student_inner_loss(output, labels, guide, *, kd_weight, temperature, kd):
        ce, distill = F.cross_entropy(output, labels), kd_term(output, guide, temperature)
        return {"loss": ce + kd_weight * distill, "ce": ce, "kd": distill}
    return student_inner_loss


def _reverse_kl(student_logits, teacher_logits, temperature):
    log_p_s = torch.log_softmax(student_logits / temperature, 1)
    log_p_t = torch.log_softmax(teacher_logits / temperature, 1)
    return temperature ** 2 * (log_p_s.exp() * (log_p_s - log_p_t)).sum(1).mean()


def _routed(**rows):
    return lambda variant: rows.get(variant, _route(variant))


def _without_teacher_optimizer(*args):
    optimizers = _optimizers(*args)
    optimizers.pop("teacher", None)
    return optimizers


def _teacher_at_student_lr(teacher, student, variant, outer, meta_lr, teacher_meta_lr):
    return _optimizers(teacher, student, variant, outer, meta_lr, meta_lr)


def _support_loss(module, fast, task, s):
    """The adapted model scored on the support set it was adapted on (its query logits still reported)."""
    return _query_loss(module, fast, (task[0], task[1], task[0], task[1]), s)[0], _query_loss(module, fast, task, s)[1]


def _unadapted_guide(teacher, fast_teacher, x_s, s):
    return _teacher_guide(teacher, None if fast_teacher is None else meta.params_of(teacher), x_s, s)


MUTANTS = {  # name -> (the mutant, the check that must catch it)
    "Eq. 10a skipped: the teacher's outer update never applied": (
        lambda: patch.object(tsmd, "meta_optimizers", _without_teacher_optimizer),
        check_two_meta_iterations_are_adam_on_the_paper_gradients),
    "Eq. 9 without the teacher's query loss (no meta-gradient for psi)": (
        lambda: patch.object(tsmd, "meta_objective", lambda losses: losses.get("student", _meta_objective(losses))),
        check_meta_gradients_match_the_paper),
    "Eq. 6 skipped: the teacher is not adapted": (
        lambda: patch.object(tsmd, "adapt_teacher", lambda teacher, start, x_s, y_s, s: start),
        check_meta_gradients_match_the_paper),
    "Eq. 6 first order where second order is required": (
        lambda: patch.object(tsmd, "adapt_teacher", _settings_changed(_adapt_teacher, teacher_first_order=True)),
        check_meta_gradients_match_the_paper),
    "Eq. 7 first order where second order is required": (
        lambda: patch.object(tsmd, "adapt_student", _settings_changed(_adapt_student, first_order=True)),
        check_meta_gradients_match_the_paper),
    "Eq. 7's guide attached to the adapted teacher (psi gets L_S, not Eq. 10a)": (
        lambda: patch.object(tsmd, "teacher_guide", _settings_changed(_teacher_guide, attach_teacher=True)),
        check_meta_gradients_match_the_paper),
    "Eq. 7's guide detached although attach_teacher=True": (
        lambda: patch.object(tsmd, "teacher_guide", _settings_changed(_teacher_guide, attach_teacher=False)),
        check_meta_gradients_match_the_paper),
    "Eq. 7's guide from the un-adapted teacher psi, not psi'": (
        lambda: patch.object(tsmd, "teacher_guide", _unadapted_guide), check_meta_gradients_match_the_paper),
    "Eq. 7 without its KD term": (
        lambda: patch.object(tsmd, "student_inner_loss", _inner_loss(lambda s, t, T: 0 * kd_loss(s, t, T))),
        check_meta_gradients_match_the_paper),
    "Eq. 7's KD without the T^2 factor": (
        lambda: patch.object(tsmd, "student_inner_loss", _inner_loss(lambda s, t, T: kd_loss(s, t, T) / T ** 2)),
        check_meta_gradients_match_the_paper),
    "Eq. 7's KL reversed, KL(p_s || p_t)": (
        lambda: patch.object(tsmd, "student_inner_loss", _inner_loss(_reverse_kl)),
        check_meta_gradients_match_the_paper),
    "Eq. 8: the support loss in place of the query loss": (
        lambda: patch.object(tsmd, "query_loss", _support_loss), check_meta_gradients_match_the_paper),
    "Eq. 9 summed over the meta-batch, not averaged": (
        lambda: patch.object(tsmd, "meta_objective", lambda losses: 2 * _meta_objective(losses)),
        check_meta_gradients_match_the_paper),
    "variant routing: the fixed teacher is adapted and meta-updated": (
        lambda: patch.object(tsmd, "route", _routed(fixed_teacher=("adapted", True))),
        check_fixed_teacher_is_never_changed),
    "variant routing: 'ours' run as the student row (no teacher)": (
        lambda: patch.object(tsmd, "route", _routed(ours=(None, True))), check_meta_gradients_match_the_paper),
    "the teacher's optimizer at the student's meta learning rate (beta = eta)": (
        lambda: patch.object(tsmd, "meta_optimizers", _teacher_at_student_lr),
        check_two_meta_iterations_are_adam_on_the_paper_gradients),
    "gradients not cleared between meta-iterations": (
        lambda: patch.object(torch.optim.Adam, "zero_grad", lambda self, set_to_none=True: None),
        check_two_meta_iterations_are_adam_on_the_paper_gradients),
    "Reptile's displacement sign flipped (theta'_i - theta)": (
        lambda: patch.object(tsmd_reptile, "reptile_displacement", lambda initial, adapted: adapted - initial),
        check_reptile_is_the_mean_displacement_of_sgd_by_hand),
    "meta-test: the student predicts without its guide (KD weight ignored)": (
        lambda: patch.object(tsmd, "adapt_student", lambda student, start, x_s, y_s, guide, s: _adapt_student(
            student, start, x_s, y_s, None, s)), check_meta_test_adapts_the_teacher_then_the_student),
}


@pytest.mark.parametrize("name", MUTANTS)
def test_planted_bug_is_caught(name):
    mutant, check = MUTANTS[name]
    assert_caught(check, mutant)
