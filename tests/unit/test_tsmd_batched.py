"""TSMD's meta-test for many episodes at once (`kdlab.methods.tsmd_batched`, what `tsmd.evaluate` runs for tasks
of one shape) against the paper and against the one-episode-at-a-time path.

- The oracle: for linear softmax models in float64, Eq. 6 then Eq. 7 written out in closed form (the gradient of
  CE + KD_WEIGHT * T^2 KL with respect to the logits), one episode after another, for every row of Table 1; the
  batched logits must equal it to 1e-12, with chunks that do not divide the episodes.
- Conv-4 (BatchNorm, ReLU, stride) under every BatchNorm policy and both guides (KL and RKD): the batched logits
  equal `adapt_and_predict`'s to 1e-9 in float64, and to 1e-5 in float32 with the same per-episode accuracies
  (float32 batched kernels sum in another order: the last bits differ).
- Planted bugs fail these checks by their assertions.
"""
import contextlib
from unittest.mock import patch

import pytest
import torch
import torch.nn.functional as F

from kdlab.errors import ParameterError
from kdlab.meta import batched
from kdlab.methods import tsmd, tsmd_batched
from kdlab.models.conv4 import Conv4
from kdlab.methods.tsmd_settings import settings
from tests.mutation import assert_caught
from tests.unit.test_tsmd import KNOBS, linear, linear_task, random_tasks

ROWS = ("student", "fixed_teacher", "ours", "oracle")
_teacher_phase, _kd_textbook = tsmd_batched.teacher_phase, tsmd_batched.kd_textbook
_over_episodes, _first_order_inner_loop = batched.over_episodes, batched.first_order_inner_loop


def knobs_for(row, **changes):
    """KNOBS for a row; the fixed teacher guides by KL here, whose closed form is short (RKD: the Conv-4 checks)."""
    return {**KNOBS, "variant": row, **({"teacher_inner_steps": 0, "kd": "kl"} if row == "fixed_teacher" else {}),
            **changes}


def paper_meta_test(teacher, student, task, row, *, inner_steps, inner_lr, teacher_inner_steps, kd_weight,
                    temperature, **_):
    """The deployed model's query logits after Eq. 6 (rows with an adapted teacher) and Eq. 7, in closed form."""
    x_s, y_s, x_q, _ = task
    n, T, onehot = len(y_s), temperature, F.one_hot(y_s, 3).double()
    with torch.no_grad():
        psi = [teacher.weight.clone(), teacher.bias.clone()]
        theta = [student.weight.clone(), student.bias.clone()]
        if row in ("ours", "oracle"):
            for _ in range(teacher_inner_steps):  # Eq. 6: d CE / dz = (softmax(z) - onehot) / n
                dz = (torch.softmax(x_s @ psi[0].T + psi[1], 1) - onehot) / n
                psi = [psi[0] - inner_lr * dz.T @ x_s, psi[1] - inner_lr * dz.sum(0)]
        if row == "oracle":
            return x_q @ psi[0].T + psi[1]
        p_teacher = torch.softmax((x_s @ psi[0].T + psi[1]) / T, 1)
        for _ in range(inner_steps):  # Eq. 7: d [CE + w T^2 KL(p_t || softmax(z / T))] / dz
            z = x_s @ theta[0].T + theta[1]
            dz = (torch.softmax(z, 1) - onehot) / n
            if row != "student":
                dz = dz + kd_weight * T * (torch.softmax(z / T, 1) - p_teacher) / n
            theta = [theta[0] - inner_lr * dz.T @ x_s, theta[1] - inner_lr * dz.sum(0)]
        return x_q @ theta[0].T + theta[1]


def check_batched_meta_test_is_the_paper_closed_form():
    """Seven episodes in chunks of 3 (teacher) and 2 (student), every row: the logits are the closed form's, the
    accuracies those of the closed form's logits, and the models and their .grad are untouched."""
    teacher, student = linear(0), linear(1)
    tasks = [linear_task(seed) for seed in range(7)]
    stacked = tuple(torch.stack([task[i] for task in tasks]) for i in range(4))
    before = [p.detach().clone() for p in (*teacher.parameters(), *student.parameters())]
    for row in ROWS:
        knobs = knobs_for(row)
        s = settings(**{**knobs, "first_order": True, "teacher_first_order": True})
        logits = tsmd_batched.predict(teacher, student, stacked[:3], s, teacher_chunk=3, student_chunk=2)
        want = torch.stack([paper_meta_test(teacher, student, task, row, **knobs) for task in tasks])
        assert logits.shape == want.shape, f"{row}: logits of {tuple(logits.shape)}, not {tuple(want.shape)}"
        assert torch.allclose(logits, want, rtol=0, atol=1e-12), f"{row}: the batched meta-test is not Eqs. 6-7"
        result = tsmd.evaluate(teacher, student, tasks, **knobs)
        assert torch.equal(result["accuracies"], (want.argmax(-1) == stacked[3]).float().mean(1)), f"{row}: accuracies"
    for p, b in zip((*teacher.parameters(), *student.parameters()), before):
        assert torch.equal(p, b) and p.grad is None, "the batched meta-test changed a model"


def conv4(hidden, seed, dtype):
    torch.manual_seed(seed)
    return Conv4(in_channels=1, num_classes=5, hidden=hidden).to(dtype)


def check_batched_equals_one_by_one(dtype=torch.float64, atol=1e-9, bns=("transductive", "support", "running")):
    """Conv-4 pairs, every row, both guides, every BatchNorm policy: `evaluate`'s batched logits against
    `adapt_and_predict` episode by episode; the running statistics and weights are left as they were."""
    teacher, student = conv4(6, 0, dtype), conv4(4, 1, dtype)
    with torch.no_grad():  # running statistics of some data, for bn="running"
        for model in (teacher, student):
            model.train()(torch.randn(20, 1, 12, 12, dtype=dtype))
    tasks = [tuple(t.to(dtype) if t.is_floating_point() else t for t in task)
             for task in random_tasks(7, shots=2, queries=3)]
    stacked = tuple(torch.stack([task[i] for task in tasks]) for i in range(4))
    states = [{k: v.clone() for k, v in m.state_dict().items()} for m in (teacher, student)]
    for row in ROWS:
        for kd in ("kl", "rkd") if row == "fixed_teacher" else ("kl",):
            for bn in bns:
                knobs = {**KNOBS, "variant": row, "kd": kd, "bn": bn,
                         **({"teacher_inner_steps": 0} if row == "fixed_teacher" else {})}
                s = settings(**{**knobs, "first_order": True, "teacher_first_order": True})
                logits = tsmd_batched.predict(teacher, student, stacked[:3], s, teacher_chunk=3, student_chunk=2)
                want = torch.stack([tsmd.adapt_and_predict(teacher, student, task, **knobs)["logits"]
                                    for task in tasks])
                assert logits.shape == want.shape, f"{row}, {kd}, {bn}: logits of {tuple(logits.shape)}"
                gap = float((logits - want).abs().max())
                assert gap <= atol, f"{row}, {kd}, {bn}: batched logits {gap:.1e} from one by one"
                one_by_one = tsmd.evaluate(teacher, student, tasks, one_by_one=True, **knobs)["accuracies"]
                assert torch.equal(tsmd.evaluate(teacher, student, tasks, **knobs)["accuracies"], one_by_one), \
                    f"{row}, {kd}, {bn}: accuracies"
    for model, state in zip((teacher, student), states):
        for name, value in model.state_dict().items():
            assert torch.equal(value, state[name]), f"the batched meta-test changed {name}"


def test_batched_meta_test_is_the_paper_closed_form():
    check_batched_meta_test_is_the_paper_closed_form()


def test_batched_equals_one_by_one_in_float64():
    check_batched_equals_one_by_one()


def test_batched_equals_one_by_one_in_float32_with_the_same_accuracies():
    check_batched_equals_one_by_one(torch.float32, atol=1e-5, bns=("transductive",))


def test_tasks_of_different_shapes_are_scored_one_by_one():
    teacher, student = conv4(6, 0, torch.float32), conv4(4, 1, torch.float32)
    tasks = random_tasks(2, shots=1, queries=2) + random_tasks(2, shots=2, queries=2)
    assert batched.stack_episodes(tasks, (0, 1, 2, 3)) is None
    got = tsmd.evaluate(teacher, student, tasks, variant="ours")
    want = [float((tsmd.adapt_and_predict(teacher, student, task, variant="ours")["logits"].argmax(1)
                   == task[3]).float().mean()) for task in tasks]
    assert got["accuracies"].tolist() == want


def test_an_episode_that_does_not_fit_the_head_is_refused_wherever_it_is():
    teacher, student = conv4(6, 0, torch.float32), conv4(4, 1, torch.float32)
    tasks = random_tasks(3)
    x_s, y_s, x_q, y_q = tasks[2]
    tasks[2] = (x_s, y_s.clamp(max=3), x_q, y_q.clamp(max=3))   # 4 ways, same shapes
    with pytest.raises(ParameterError, match="ways=4 is not allowed"):
        tsmd.evaluate(teacher, student, tasks, variant="ours")


def test_a_chunk_must_be_a_positive_integer():
    with pytest.raises(ParameterError, match="chunk=0 is not allowed"):
        batched.over_episodes(lambda x: x, (torch.zeros(3, 2),), 0)


# ------------------------------------------------------------------------ planted bugs

def _without_kd(s):
    return lambda output, labels, guide: F.cross_entropy(output if s.kd != "rkd" else output[0], labels)


def _first_order_loop_with(**changes):
    def loop(module, params, loss_fn, batch, **kwargs):
        return _first_order_inner_loop(module, params, loss_fn, batch, **{**kwargs, **changes})
    return loop


@contextlib.contextmanager
def _rolled_episodes():
    """Each episode gets the next one's outputs (a misaligned concatenation)."""
    def over(fn, stacked, chunk):
        return _over_episodes(fn, stacked, chunk).roll(1, 0)
    with patch.object(tsmd_batched, "over_episodes", over):
        yield


@contextlib.contextmanager
def _last_chunk_dropped():
    def over(fn, stacked, chunk):
        whole = len(stacked[0]) - len(stacked[0]) % chunk
        return _over_episodes(fn, tuple(t[:whole] for t in stacked), chunk) if whole else _over_episodes(
            fn, stacked, chunk)
    with patch.object(tsmd_batched, "over_episodes", over):
        yield


MUTANTS = {  # name -> (the mutant, the check that must catch it)
    "Eq. 7 without its KD term": (
        lambda: patch.object(tsmd_batched, "student_inner_loss", _without_kd),
        check_batched_meta_test_is_the_paper_closed_form),
    "Eq. 7's KD without the T^2 factor": (
        lambda: patch.object(tsmd_batched, "kd_textbook", lambda s, t, T: _kd_textbook(s, t, T) / T ** 2),
        check_batched_meta_test_is_the_paper_closed_form),
    "Eq. 6 skipped: the teacher is not adapted at meta-test": (
        lambda: patch.object(tsmd_batched, "teacher_phase", lambda teacher, s, *args: _teacher_phase(
            teacher, s._replace(teacher_inner_steps=0), *args)), check_batched_meta_test_is_the_paper_closed_form),
    "one inner step where the settings ask for two": (
        lambda: patch.object(tsmd_batched, "first_order_inner_loop", _first_order_loop_with(steps=1)),
        check_batched_meta_test_is_the_paper_closed_form),
    "the inner steps at a doubled learning rate": (
        lambda: patch.object(tsmd_batched, "first_order_inner_loop", _first_order_loop_with(lr=1.0)),
        check_batched_meta_test_is_the_paper_closed_form),
    "every episode gets its neighbour's outputs": (_rolled_episodes, check_batched_meta_test_is_the_paper_closed_form),
    "the last, partial chunk of episodes dropped": (_last_chunk_dropped, check_batched_equals_one_by_one),
    "BatchNorm with the support set's statistics ignored (transductive for every policy)": (
        lambda: patch.object(tsmd_batched, "first_order_inner_loop", _first_order_loop_with(bn="transductive")),
        check_batched_equals_one_by_one),
}


@pytest.mark.parametrize("name", MUTANTS)
def test_planted_bug_is_caught(name):
    mutant, check = MUTANTS[name]
    assert_caught(check, mutant)
