"""kdlab.methods.tsmd: the fixed teacher stays fixed, the student's meta-gradient flows through the KD
term (finite differences, float64), KD weight 0 is plain MAML bit for bit, RKD against hand-computed
values, Reptile against torch.optim.SGD by hand, and one test per bad input the issue lists."""
import copy
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from kdlab import meta
from kdlab.errors import ParameterError
from kdlab.methods import tsmd
from kdlab.models.conv4 import Conv4

from ..gradcheck import finite_differences, relative_error


# ----------------------------------------------------------------------------------------- helpers

def mlp(width, seed, classes=3):
    """4 -> width -> classes with tanh (smooth, so finite differences are clean), float64."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, width), nn.Tanh(), nn.Linear(width, classes)).double()


def mlp_task(seed=1, classes=3):
    g = torch.Generator().manual_seed(seed)
    x_s = torch.randn(2 * classes, 4, generator=g, dtype=torch.float64)
    x_q = torch.randn(3 * classes, 4, generator=g, dtype=torch.float64)
    return x_s, torch.arange(2 * classes) % classes, x_q, torch.arange(3 * classes) % classes


def conv4(hidden, seed, dtype=torch.float32, classes=5):
    torch.manual_seed(seed)
    return Conv4(in_channels=1, num_classes=classes, hidden=hidden).to(dtype).train()


def random_tasks(n, ways=5, shots=1, queries=2, size=12, seed=2, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(ways * shots, 1, size, size, generator=g, dtype=dtype),
             torch.arange(ways).repeat_interleave(shots),
             torch.randn(ways * queries, 1, size, size, generator=g, dtype=dtype),
             torch.arange(ways).repeat_interleave(queries)) for _ in range(n)]


def flat(tensors):
    return torch.cat([t.reshape(-1) for t in tensors])


def student_objective(teacher, student, task, **knobs):
    """The student's meta-objective (Eq. 8b) after Eq. 6 and Eq. 7, as a differentiable scalar."""
    s = tsmd.settings(**knobs)
    adapted = tsmd.adapt(teacher, student, task[0], task[1], s)
    return F.cross_entropy(meta.forward(student, adapted.student, task[2]), task[3])


OURS = dict(variant="ours", inner_steps=2, inner_lr=0.5, teacher_inner_steps=1, kd_weight=0.7, temperature=2.0)


# ------------------------------------------------------------------------------- the meta-gradient

def test_student_meta_gradient_flows_through_the_kd_term_and_matches_finite_differences():
    teacher, student, task = mlp(6, 0), mlp(2, 1), mlp_task()
    params = list(student.parameters())
    with_kd = torch.autograd.grad(student_objective(teacher, student, task, **OURS), params)
    without = torch.autograd.grad(student_objective(teacher, student, task, **{**OURS, "kd_weight": 0.0}), params)
    assert (flat(with_kd) - flat(without)).norm() > 1e-3 * flat(without).norm(), "KD changed nothing"
    numeric = finite_differences(lambda: student_objective(teacher, student, task, **OURS), params)
    assert relative_error(with_kd, numeric) <= 1e-4
    # the check tells second order from first order: FOMAML misses the KD term's Hessian
    first = torch.autograd.grad(student_objective(teacher, student, task, **OURS, first_order=True), params)
    assert relative_error(first, numeric) > 1e-2


def test_rkd_guided_student_meta_gradient_matches_finite_differences():
    teacher, student, task = mlp(6, 0), mlp(2, 1), mlp_task()
    knobs = dict(OURS, kd="rkd")
    params = list(student.parameters())
    # an MLP has no feature list: give the RKD loss the logits as the embedding through a tiny wrapper

    class WithFeatures(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x, return_features=False):
            logits = self.net(x)
            return (logits, [logits]) if return_features else logits

    teacher_f, student_f = WithFeatures(teacher), WithFeatures(student)
    analytic = torch.autograd.grad(student_objective(teacher_f, student_f, task, **knobs), params)
    numeric = finite_differences(lambda: student_objective(teacher_f, student_f, task, **knobs), params)
    assert flat(analytic).norm() > 0 and relative_error(analytic, numeric) <= 1e-4


def test_teacher_gets_only_its_own_query_loss_unless_attached():
    """Eq. 10a: with the soft targets detached the teacher's meta-gradient is plain MAML's (the oracle's);
    attach_teacher=True adds a student-aware term, itself checked against finite differences."""
    teacher, student, tasks = mlp(6, 0), mlp(2, 1), [mlp_task(1), mlp_task(2)]
    tsmd.tsmd_step(teacher, student, tasks, **OURS)
    ours = [p.grad.clone() for p in teacher.parameters()]
    teacher.zero_grad()
    tsmd.tsmd_step(teacher, None, tasks, **{**OURS, "variant": "oracle"})
    assert all(torch.equal(a, p.grad) for a, p in zip(ours, teacher.parameters()))

    task, params = tasks[0], list(teacher.parameters())

    def both(attach):
        s = tsmd.settings(**OURS, attach_teacher=attach)
        adapted = tsmd.adapt(teacher, student, task[0], task[1], s)
        return (F.cross_entropy(meta.forward(student, adapted.student, task[2]), task[3])
                + F.cross_entropy(meta.forward(teacher, adapted.teacher, task[2]), task[3]))

    attached = torch.autograd.grad(both(True), params)
    detached = torch.autograd.grad(both(False), params)
    assert (flat(attached) - flat(detached)).norm() > 1e-6
    assert relative_error(attached, finite_differences(lambda: both(True), params)) <= 1e-4


# ------------------------------------------------------------------------------------- equivalences

def test_kd_weight_zero_is_plain_maml_for_the_student_bit_for_bit():
    student0, teacher0 = conv4(4, 1), conv4(6, 0)
    tasks = random_tasks(6)
    trained = {}
    for name, variant in (("ours", "ours"), ("student", "student")):
        student, teacher = copy.deepcopy(student0), copy.deepcopy(teacher0)
        _, trained[name], history = tsmd.train_tsmd(teacher, student, iter(tasks), variant=variant, iterations=3,
                                                    meta_batch=2, kd_weight=0.0, temperature=4.0, log_every=1)
        assert len(history) == 3
    by_hand = copy.deepcopy(student0)
    opt = torch.optim.Adam(by_hand.parameters(), lr=1e-3)
    for it in range(3):
        opt.zero_grad(set_to_none=True)
        meta.maml_step(by_hand, tasks[2 * it:2 * it + 2], steps=1, lr=0.4)
        opt.step()
    for name in ("ours", "student"):
        for a, b in zip(trained[name].state_dict().values(), by_hand.state_dict().values()):
            assert torch.equal(a, b), f"{name} with KD weight 0 differs from meta.maml_step"
    assert not torch.equal(next(by_hand.parameters()), next(student0.parameters()))


def test_fixed_teacher_is_never_changed():
    teacher, student = conv4(6, 0), conv4(4, 1)
    before = copy.deepcopy(teacher.state_dict())
    tsmd.train_tsmd(teacher, student, iter(random_tasks(4)), variant="fixed_teacher", iterations=2, meta_batch=2,
                    kd_weight=1.0)
    assert all(torch.equal(before[k], v) for k, v in teacher.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in student.parameters())


def test_fixed_teacher_with_rkd_accepts_a_teacher_with_another_label_space():
    teacher, student = conv4(6, 0, classes=64), conv4(4, 1)  # e.g. a classifier over all meta-train classes
    out = tsmd.tsmd_step(teacher, student, random_tasks(1), variant="fixed_teacher", kd_weight=1.0)
    assert out["inner_kd"] > 0 and math.isfinite(out["loss"])


def test_reptile_step_is_the_mean_displacement_of_sgd_by_hand():
    teacher, student = conv4(6, 0), conv4(4, 1)
    tasks = random_tasks(2)
    knobs = dict(variant="ours", inner_steps=2, inner_lr=0.3, kd_weight=0.5, temperature=2.0)
    tsmd.reptile_step(teacher, student, tasks, **knobs)
    expected_teacher, expected_student = [], []
    for x_s, y_s, _, _ in tasks:
        t, s = copy.deepcopy(teacher), copy.deepcopy(student)
        t_opt, s_opt = torch.optim.SGD(t.parameters(), lr=0.3), torch.optim.SGD(s.parameters(), lr=0.3)
        for _ in range(2):
            t_opt.zero_grad()
            F.cross_entropy(t(x_s), y_s).backward()
            t_opt.step()
        with torch.no_grad():
            soft = t(x_s)
        for _ in range(2):
            s_opt.zero_grad()
            logits = s(x_s)
            (F.cross_entropy(logits, y_s) + 0.5 * 4.0 * F.kl_div(F.log_softmax(logits / 2, 1), F.softmax(soft / 2, 1),
                                                                 reduction="batchmean")).backward()
            s_opt.step()
        expected_teacher.append([(a - b).detach() / 2 for a, b in zip(teacher.parameters(), t.parameters())])
        expected_student.append([(a - b).detach() / 2 for a, b in zip(student.parameters(), s.parameters())])
    for module, expected in ((teacher, expected_teacher), (student, expected_student)):
        for p, d0, d1 in zip(module.parameters(), *expected):
            assert torch.allclose(p.grad, d0 + d1, atol=1e-6)


def test_meta_test_adaptation_leaves_the_models_alone():
    teacher, student = conv4(6, 0), conv4(4, 1)
    before = [copy.deepcopy(m.state_dict()) for m in (teacher, student)]
    result = tsmd.evaluate(teacher, student, random_tasks(3), variant="ours", kd_weight=1.0)
    assert len(result["accuracies"]) == 3 and 0 <= result["accuracy"] <= 1
    for m, b in zip((teacher, student), before):
        assert all(torch.equal(b[k], v) for k, v in m.state_dict().items())
        assert all(p.grad is None for p in m.parameters())


# ------------------------------------------------------------------------------------------------ RKD

def test_rkd_loss_against_hand_computed_values():
    """Student: a right isosceles triangle (0,0), (1,0), (0,1); teacher: (0,0), (2,0), (0,1)."""
    s = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    t = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    huber = lambda d: 0.5 * d * d if abs(d) < 1 else abs(d) - 0.5  # noqa: E731
    # distances over the pairs (01, 02, 12), each divided by the mean distance
    ds = [1.0, 1.0, math.sqrt(2)]
    dt = [2.0, 1.0, math.sqrt(5)]
    ds = [d / (sum(ds) / 3) for d in ds]
    dt = [d / (sum(dt) / 3) for d in dt]
    distance = sum(huber(a - b) for a, b in zip(ds, dt)) / 3
    # the cosine of the angle at each vertex: student 90, 45, 45 degrees; teacher 90, atan(1/2), atan(2)
    cs = [0.0, math.sqrt(0.5), math.sqrt(0.5)]
    ct = [0.0, 2 / math.sqrt(5), 1 / math.sqrt(5)]
    angle = sum(huber(a - b) for a, b in zip(cs, ct)) / 3
    assert abs(tsmd.rkd_loss(s, t, 1.0, 0.0).item() - distance) < 1e-12
    assert abs(tsmd.rkd_loss(s, t, 0.0, 1.0).item() - angle) < 1e-12
    assert abs(tsmd.rkd_loss(s, t).item() - (distance + 2 * angle)) < 1e-12
    assert abs(distance - 0.0277267) < 1e-6 and abs(angle - 0.0171056) < 1e-6  # the numbers, written out


def test_rkd_loss_ignores_scale_rotation_and_width_and_has_finite_gradients():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(6, 5, generator=g, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(5, 5, generator=g, dtype=torch.float64))
    wide = torch.cat([3.0 * t @ rotation, torch.zeros(6, 4, dtype=torch.float64)], 1)  # 9-wide copy
    assert tsmd.rkd_loss(wide, t).abs() < 1e-12
    s = torch.cat([t[:1], t[:1], t[2:]]).requires_grad_()  # two identical rows: a zero difference vector
    (grad,) = torch.autograd.grad(tsmd.rkd_loss(s, t), s)
    assert torch.isfinite(grad).all()


# ---------------------------------------------------------------------------------------- bad inputs

def test_negative_kd_weight_is_refused():
    with pytest.raises(ParameterError, match=r"KD_WEIGHT=-0\.5 is not allowed: KD_WEIGHT must be a finite number >= 0"):
        tsmd.tsmd_step(conv4(6, 0), conv4(4, 1), random_tasks(1), variant="ours", kd_weight=-0.5)


def test_episode_with_more_ways_than_the_students_head_is_refused():
    teacher, student = conv4(6, 0, classes=10), conv4(4, 1, classes=5)
    with pytest.raises(ParameterError, match=r"ways=10 is not allowed: ways must be 5, the number of classes "
                                             r"of the student's head"):
        tsmd.tsmd_step(teacher, student, random_tasks(1, ways=10), variant="ours")


def test_episode_with_fewer_ways_than_the_teachers_head_is_refused():
    teacher, student = conv4(6, 0, classes=5), conv4(4, 1, classes=3)
    with pytest.raises(ParameterError, match=r"ways=3 is not allowed: ways must be 5, the number of classes "
                                             r"of the teacher's head"):
        tsmd.tsmd_step(teacher, student, random_tasks(1, ways=3), variant="ours")
    with pytest.raises(ParameterError, match="teacher's head"):
        tsmd.evaluate(teacher, student, random_tasks(1, ways=3), variant="ours")


def test_zero_teacher_inner_steps_in_the_adapted_teacher_variant_is_refused():
    with pytest.raises(ParameterError, match=r"TEACHER_INNER_STEPS=0 is not allowed: TEACHER_INNER_STEPS must be "
                                             r"an integer >= 1 in variant 'ours'"):
        tsmd.train_tsmd(conv4(6, 0), conv4(4, 1), iter(random_tasks(1)), variant="ours", iterations=1, meta_batch=1,
                        teacher_inner_steps=0)
    # the fixed teacher is never adapted, so 0 is fine there
    tsmd.tsmd_step(conv4(6, 0), conv4(4, 1), random_tasks(1), variant="fixed_teacher", teacher_inner_steps=0)


@pytest.mark.parametrize("knobs, name", [
    (dict(variant="teacher"), "variant"),
    (dict(kd="mse"), "kd"),
    (dict(temperature=0.0), "TEMPERATURE"),
    (dict(outer="sgd"), "outer"),
])
def test_other_bad_knobs_are_refused(knobs, name):
    with pytest.raises(ParameterError, match=rf"^{name}="):
        tsmd.train_tsmd(conv4(6, 0), conv4(4, 1), iter(random_tasks(1)), iterations=1, meta_batch=1, **knobs)
