"""kdlab.methods.metadistil: the teacher's meta-gradient (non-zero, finite differences), zero teacher lr
equals plain KD bit for bit, the order of operations with and without the pilot update against
hand-written sequences, the quiz split, frozen epochs, the step log, and every bad input."""
import copy
import dataclasses

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from kdlab.data import load
from kdlab.errors import ParameterError
from kdlab.losses import distillation_loss, kd_loss
from kdlab.methods import metadistil as md
from kdlab.models import MLP
from kdlab.train import distill_from, fit


# ----------------------------------------------------------------------------------------- helpers

def tiny(sizes, seed):
    """A float64 tanh MLP (smooth, so finite differences are clean)."""
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.Tanh()]
    return nn.Sequential(*layers[:-1]).double()


def tiny_problem(seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 4, generator=g, dtype=torch.float64)
    x_q = torch.randn(5, 4, generator=g, dtype=torch.float64)
    return x, torch.arange(6) % 3, x_q, torch.arange(5) % 3


def hand_quiz_loss(student, teacher_params, x, y, x_q, y_q, lr, alpha, temperature):
    """Eq. 2 then Eq. 3's loss, written without kdlab.meta: the reference for finite differences."""
    teacher = copy.deepcopy(TEACHER)
    with torch.no_grad():
        for p, v in zip(teacher.parameters(), teacher_params):
            p.copy_(v)
    s_params = list(student.parameters())
    loss = distillation_loss(student(x), teacher(x), y, alpha, temperature)["loss"]
    grads = torch.autograd.grad(loss, s_params)
    fast = [p - lr * g for p, g in zip(s_params, grads)]
    h = x_q
    for i, (w, b) in enumerate(zip(fast[::2], fast[1::2])):
        h = F.linear(h, w, b)
        if i < len(fast) // 2 - 1:
            h = torch.tanh(h)
    return F.cross_entropy(h, y_q).detach()


TEACHER = tiny((4, 5, 3), seed=2)


@pytest.fixture(scope="module")
def digits64():
    data = load("digits", train_size=100, seed=0)
    return dataclasses.replace(data, x_train=data.x_train.double(), x_test=data.x_test[:200].double(),
                               y_test=data.y_test[:200])


def digit_models(seed=0, bn=False):
    torch.manual_seed(100 + seed)
    teacher = MLP(64, hidden=(32,), num_classes=10).double()
    torch.manual_seed(seed)
    if bn:
        student = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 10)).double()
    else:
        student = MLP(64, hidden=(8,), num_classes=10).double()
    return student, teacher


RECIPE = dict(epochs=2, lr=0.05, batch_size=16, seed=3)


# ----------------------------------------------------------------------------------------- the meta-gradient

def test_teacher_receives_a_nonzero_meta_gradient():
    student, teacher = tiny((4, 3, 3), seed=0), copy.deepcopy(TEACHER)
    x, y, x_q, y_q = tiny_problem()
    result = md.teacher_meta_gradient(student, teacher, x, y, x_q, y_q, lr=0.5, alpha=0.9, temperature=2.0)
    assert set(result.grads) == {name for name, _ in teacher.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in result.grads.values())
    assert sum(float(g.abs().sum()) for g in result.grads.values()) > 1e-6
    assert all(p.grad is None for p in student.parameters()), "the experiment must not touch the real student"


def test_without_the_kd_term_the_teacher_gets_no_signal():
    student, teacher = tiny((4, 3, 3), seed=0), copy.deepcopy(TEACHER)
    x, y, x_q, y_q = tiny_problem()
    result = md.teacher_meta_gradient(student, teacher, x, y, x_q, y_q, lr=0.5, alpha=0.0, temperature=2.0)
    assert all(float(g.abs().max()) == 0.0 for g in result.grads.values())


@pytest.mark.parametrize("alpha,temperature", [(0.9, 2.0), (0.5, 4.0)])
def test_teacher_meta_gradient_matches_central_finite_differences(alpha, temperature):
    student, teacher = tiny((4, 3, 3), seed=0), copy.deepcopy(TEACHER)
    x, y, x_q, y_q = tiny_problem()
    lr = 0.5
    result = md.teacher_meta_gradient(student, teacher, x, y, x_q, y_q, lr=lr, alpha=alpha, temperature=temperature)
    analytic = torch.cat([result.grads[name].flatten() for name, _ in teacher.named_parameters()])
    assert float(result.quiz_loss) == pytest.approx(
        float(hand_quiz_loss(student, [p.detach() for p in teacher.parameters()], x, y, x_q, y_q, lr, alpha,
                             temperature)), rel=1e-12)
    base = [p.detach().clone() for p in teacher.parameters()]
    numeric, eps = [], 1e-6
    for i, t in enumerate(base):
        for j in range(t.numel()):
            up, down = [b.clone() for b in base], [b.clone() for b in base]
            up[i].view(-1)[j] += eps
            down[i].view(-1)[j] -= eps
            f_up = hand_quiz_loss(student, up, x, y, x_q, y_q, lr, alpha, temperature)
            f_down = hand_quiz_loss(student, down, x, y, x_q, y_q, lr, alpha, temperature)
            numeric.append(float(f_up - f_down) / (2 * eps))
    numeric = torch.tensor(numeric, dtype=torch.float64)
    assert float(numeric.norm()) > 1e-6
    assert float((analytic - numeric).norm() / numeric.norm()) < 1e-6


# ----------------------------------------------------------------------------------------- order of operations

def one_step(pilot, trace=None):
    student, teacher = tiny((4, 3, 3), seed=0), copy.deepcopy(TEACHER)
    x, y, x_q, y_q = tiny_problem()
    s_opt = torch.optim.SGD(student.parameters(), lr=0.3, momentum=0.9, weight_decay=5e-4)
    t_opt = torch.optim.SGD(teacher.parameters(), lr=0.2, momentum=0.9, weight_decay=5e-4)
    out = md.metadistil_step(student, teacher, (x, y), (x_q, y_q), student_opt=s_opt, teacher_opt=t_opt,
                             lookahead_lr=0.5, alpha=0.9, temperature=2.0, pilot_update=pilot, trace=trace)
    return student, teacher, out


def hand_sequence(pilot):
    """Algorithm 1 by hand: the teacher's SGD step with the meta-gradient, and the student's KD step with
    the updated teacher (pilot) or with the teacher as it was before its update (w/o pilot)."""
    student, teacher = tiny((4, 3, 3), seed=0), copy.deepcopy(TEACHER)
    x, y, x_q, y_q = tiny_problem()
    old_teacher = copy.deepcopy(teacher)
    params = [p.detach().clone().requires_grad_() for p in teacher.parameters()]

    def teacher_fn(inp):
        return F.linear(torch.tanh(F.linear(inp, params[0], params[1])), params[2], params[3])

    s_params = list(student.parameters())
    inner = distillation_loss(student(x), teacher_fn(x), y, 0.9, 2.0)["loss"]
    grads = torch.autograd.grad(inner, s_params, create_graph=True)
    fast = [p - 0.5 * g for p, g in zip(s_params, grads)]
    logits_q = F.linear(torch.tanh(F.linear(x_q, fast[0], fast[1])), fast[2], fast[3])
    meta_grads = torch.autograd.grad(F.cross_entropy(logits_q, y_q), params)
    t_opt = torch.optim.SGD(teacher.parameters(), lr=0.2, momentum=0.9, weight_decay=5e-4)
    for p, g in zip(teacher.parameters(), meta_grads):
        p.grad = g.detach()
    t_opt.step()
    guide = teacher if pilot else old_teacher
    with torch.no_grad():
        target = guide(x)
    s_opt = torch.optim.SGD(student.parameters(), lr=0.3, momentum=0.9, weight_decay=5e-4)
    s_opt.zero_grad()
    distillation_loss(student(x), target, y, 0.9, 2.0)["loss"].backward()
    s_opt.step()
    return student, teacher


def test_order_of_operations_is_recorded_as_the_paper_says():
    with_pilot, without = [], []
    one_step(True, with_pilot)
    one_step(False, without)
    assert with_pilot == ["teaching_experiment", "quiz_loss", "teacher_update", "student_update(updated teacher)"]
    assert without == ["teaching_experiment", "quiz_loss", "student_update(old teacher)", "teacher_update"]


@pytest.mark.parametrize("pilot", [True, False])
def test_one_step_equals_the_hand_written_sequence(pilot):
    student, teacher, _ = one_step(pilot)
    ref_student, ref_teacher = hand_sequence(pilot)
    for a, b in zip(teacher.parameters(), ref_teacher.parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    for a, b in zip(student.parameters(), ref_student.parameters()):
        assert torch.allclose(a, b, rtol=0, atol=1e-12)
    # and the other order gives a different student: the test can tell the two apart
    other, _ = hand_sequence(not pilot)
    assert max(float((a - b).detach().abs().max()) for a, b in zip(student.parameters(), other.parameters())) > 1e-6


def test_toward_is_measured_at_the_students_pre_step_parameters():
    student0 = tiny((4, 3, 3), seed=0)
    x = tiny_problem()[0]
    student, teacher, out = one_step(True)
    with torch.no_grad():
        expected_before = kd_loss(student0(x), TEACHER(x), 2.0)
        expected_after = kd_loss(student0(x), teacher(x), 2.0)
    assert float(out["kd_before"]) == pytest.approx(float(expected_before), rel=1e-12)
    assert float(out["kd_after"]) == pytest.approx(float(expected_after), rel=1e-12)
    assert float(out["kd_after"]) != float(out["kd_before"])


# ----------------------------------------------------------------------------------------- zero teacher lr == KD

@pytest.mark.parametrize("pilot,bn", [(True, False), (False, False), (True, True), (False, True)])
def test_zero_teacher_lr_reproduces_plain_kd_exactly(digits64, pilot, bn):
    student, teacher = digit_models(bn=bn)
    kd_student, kd_teacher = copy.deepcopy(student), copy.deepcopy(teacher)
    split = md.split_quiz(digits64, 0.1, RECIPE["seed"], quiz_batch_size=10)
    fit(kd_student, split.train, distill_from(kd_teacher, 0.9, 4.0), progress=False, **RECIPE)
    _, meta_teacher, history = md.train_metadistil(student, teacher, digits64, teacher_lr=0.0, alpha=0.9,
                                                   temperature=4.0, quiz_fraction=0.1, quiz_batch_size=10,
                                                   pilot_update=pilot, progress=False, **RECIPE)
    for a, b in zip(student.state_dict().values(), kd_student.state_dict().values()):
        assert torch.equal(a, b), "the real student must take exactly KD's steps (buffers included)"
    for a, b in zip(meta_teacher.parameters(), kd_teacher.parameters()):
        assert torch.equal(a, b)
    assert history.steps and all(r["toward"] is False for r in history.steps)
    assert any(r["teacher_grad_norm"] > 0 for r in history.steps), "the meta-gradient was still computed"


def test_a_positive_teacher_lr_changes_teacher_and_student(digits64):
    student, teacher = digit_models()
    original = copy.deepcopy(teacher)
    kd_student = copy.deepcopy(student)
    split = md.split_quiz(digits64, 0.1, RECIPE["seed"], quiz_batch_size=10)
    fit(kd_student, split.train, distill_from(copy.deepcopy(teacher), 0.9, 4.0), progress=False, **RECIPE)
    md.train_metadistil(student, teacher, digits64, teacher_lr=0.05, quiz_batch_size=10, progress=False, **RECIPE)
    assert any(not torch.equal(a, b) for a, b in zip(teacher.parameters(), original.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(student.parameters(), kd_student.parameters()))


def test_frozen_epochs_keep_the_teacher_and_are_plain_kd(digits64):
    student, teacher = digit_models()
    original = copy.deepcopy(teacher)
    _, _, history = md.train_metadistil(student, teacher, digits64, teacher_lr=0.05, quiz_batch_size=10,
                                        freeze_epochs=2, progress=False, **RECIPE)
    assert all(torch.equal(a, b) for a, b in zip(teacher.parameters(), original.parameters()))
    assert all(r["toward"] is None for r in history.steps)
    assert [r["teacher_lr"] for r in history.records] == [0.0, 0.0]
    student, teacher = digit_models()
    _, _, history = md.train_metadistil(student, teacher, digits64, teacher_lr=0.05, quiz_batch_size=10,
                                        freeze_epochs=1, progress=False, **RECIPE)
    per_epoch = [[r["toward"] for r in history.steps if r["epoch"] == e] for e in (1, 2)]
    assert all(t is None for t in per_epoch[0]) and all(t is not None for t in per_epoch[1])


def test_history_logs_steps_accuracies_and_the_toward_share(digits64):
    student, teacher = digit_models()
    _, _, history = md.train_metadistil(student, teacher, digits64, teacher_lr=0.01, quiz_batch_size=10,
                                        monitor=(digits64.x_test, digits64.y_test), log_every=3, progress=False,
                                        **RECIPE)
    steps_per_epoch = -(-90 // RECIPE["batch_size"])
    assert len(history.steps) == RECIPE["epochs"] * steps_per_epoch
    logged = [r["step"] for r in history.steps if "teacher_acc" in r]
    assert logged[0] == 1 and all(s % 3 == 0 for s in logged[1:])
    first, second = history.toward_share()
    assert 0 <= first <= 1 and 0 <= second <= 1
    assert {"test_acc", "teacher_test_acc", "quiz", "loss"} <= set(history.last)
    assert not student.training and not teacher.training


# ----------------------------------------------------------------------------------------- the quiz split

def test_quiz_split_is_seeded_stratified_and_disjoint(digits64):
    a = md.split_quiz(digits64, 0.1, seed=4)
    b = md.split_quiz(digits64, 0.1, seed=4)
    c = md.split_quiz(digits64, 0.1, seed=5)
    assert a.num_quiz == 10 and a.train.num_train == 90
    assert torch.equal(a.x_quiz, b.x_quiz) and not torch.equal(a.x_quiz, c.x_quiz)
    assert sorted(a.y_quiz.tolist()) == list(range(10)), "10 quiz digits from 100 stratified ones: one per class"
    rows = {tuple(r.tolist()) for r in torch.cat([a.train.x_train, a.x_quiz]).flatten(1)}
    assert len(rows) == len({tuple(r.tolist()) for r in digits64.x_train.flatten(1)})
    assert torch.equal(a.train.x_test, digits64.x_test)


# ----------------------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("fraction", [0, 1, 1.5, -0.1, "0.1"])
def test_quiz_fraction_outside_zero_one_is_refused(digits64, fraction):
    student, teacher = digit_models()
    with pytest.raises(ParameterError, match="QUIZ_FRACTION") as err:
        md.train_metadistil(student, teacher, digits64, quiz_fraction=fraction, progress=False, **RECIPE)
    assert "strictly between 0 and 1" in str(err.value)


def test_quiz_set_smaller_than_one_quiz_batch_is_refused(digits64):
    student, teacher = digit_models()
    with pytest.raises(ParameterError, match="QUIZ_FRACTION") as err:
        md.train_metadistil(student, teacher, digits64, quiz_fraction=0.1, quiz_batch_size=16, progress=False,
                            **RECIPE)
    assert "one quiz batch of 16" in str(err.value) and "10 of 100" in str(err.value)
    with pytest.raises(ParameterError, match="QUIZ_FRACTION"):  # default quiz batch = batch_size = 16
        md.train_metadistil(student, teacher, digits64, quiz_fraction=0.1, progress=False, **RECIPE)


def test_negative_teacher_lr_is_refused(digits64):
    student, teacher = digit_models()
    with pytest.raises(ParameterError, match="TEACHER_LR") as err:
        md.train_metadistil(student, teacher, digits64, teacher_lr=-1e-4, quiz_batch_size=10, progress=False,
                            **RECIPE)
    assert ">= 0" in str(err.value)


@pytest.mark.parametrize("kwargs,name", [
    ({"freeze_epochs": -1}, "FREEZE_EPOCHS"),
    ({"pilot_update": "yes"}, "pilot_update"),
    ({"quiz_batch_size": 0}, "quiz_batch_size"),
    ({"alpha": 1.5}, "ALPHA"),
    ({"temperature": 0}, "TEMPERATURE"),
    ({"lookahead_lr": -0.1}, "lookahead_lr"),
])
def test_other_bad_inputs_are_refused_by_name(digits64, kwargs, name):
    student, teacher = digit_models()
    options = {"quiz_batch_size": 10, **kwargs}
    with pytest.raises(ParameterError, match=name):
        md.train_metadistil(student, teacher, digits64, progress=False, **RECIPE, **options)


# ----------------------------------------------------------------------------------------- cost per step

def test_live_tensor_counter_sees_new_storages_not_views():
    from kdlab.lessons.metadistil import peak_step_bytes

    existing = torch.zeros(1000)

    def fn():
        view = existing.view(10, 100).t()  # a view: no new memory
        a = torch.ones(2000)               # 8000 bytes, alive until the end
        b = (a * 2).sum()                  # 8000 more at the peak, then freed
        return view, b

    peak = peak_step_bytes(fn)
    assert 16000 <= peak < 16000 + 1000


def test_a_metadistil_step_needs_at_most_three_times_the_peak_memory_of_a_kd_step():
    from kdlab.lessons.metadistil import step_cost

    torch.manual_seed(0)
    student, teacher = MLP(64, hidden=(16,), num_classes=10), MLP(64, hidden=(256, 256), num_classes=10)
    g = torch.Generator().manual_seed(0)
    batch = (torch.rand(64, 1, 8, 8, generator=g), torch.arange(64) % 10)
    quiz = (torch.rand(30, 1, 8, 8, generator=g), torch.arange(30) % 10)
    cost = step_cost(student, teacher, batch, quiz, lr=0.01, teacher_lr=1e-4, alpha=0.9, temperature=4.0, repeats=1)
    teacher_bytes = sum(p.numel() * 4 for p in teacher.parameters())
    assert cost["kd"]["peak"] >= teacher_bytes and cost["meta"]["persistent"] >= 2 * teacher_bytes
    assert cost["meta"]["saved"] > 5 * cost["kd"]["saved"], "the teacher's graph is kept only by MetaDistil"
    assert cost["meta"]["peak"] <= 3 * cost["kd"]["peak"]
