"""KD, DKD and CTKD look their frozen teacher's logits up in a table of the training set (`FrozenLogits`), the
feature distillation of notebook 07 its teacher's feature maps: the same students, bit for bit on the CPU, as asking
the teacher for every batch (what an augmented run still does), and the teacher is not called by the steps."""
import pytest
import torch

from kdlab.data import load
from kdlab.methods.ctkd import CTKD
from kdlab.methods.dkd import DKD
from kdlab.methods.feature_meta import FeatureMeta
from kdlab.methods.kd import KD
from kdlab.models import MLP, SmallCNN
from kdlab.train import fit

METHODS = {"kd": lambda s, t: KD(s, t, alpha=0.9, temperature=4.0),
           "dkd": lambda s, t: DKD(s, t, warmup_epochs=1),
           "ctkd": lambda s, t: CTKD(s, t, alpha=0.9, curriculum_epochs=1),
           "feature_meta": lambda s, t: FeatureMeta(s, t, alpha=0.7, adaptation=True, engine="func")}
PROBE_ROWS = {"feature_meta": [2]}   # FeatureMeta attaches its adapter from the teacher's maps of two images


@pytest.fixture(scope="module")
def digits_and_teachers():
    data = load("digits", train_size=200, seed=0)
    torch.manual_seed(0)
    cnn = SmallCNN(10, width=4, in_channels=1)
    fit(cnn, data, epochs=2, lr=0.05, batch_size=50, seed=0, progress=False)
    torch.manual_seed(0)
    mlp = MLP(64, hidden=(32,), num_classes=10)
    fit(mlp, data, epochs=2, lr=0.05, batch_size=50, seed=0, progress=False)
    return data, {"cnn": cnn.eval(), "mlp": mlp.eval()}


def train(method_name, teacher, data, augment=None):
    torch.manual_seed(5)
    student = SmallCNN(10, width=4, in_channels=1)
    calls = []
    hook = teacher.register_forward_hook(lambda module, args, output: calls.append(len(args[0])))
    try:
        fit(METHODS[method_name](student, teacher), data, epochs=3, lr=0.05, batch_size=64, seed=5, progress=False,
            augment=augment)
    finally:
        hook.remove()
    return student.state_dict(), calls


# feature distillation matches a teacher's feature map: the CNN teacher's only
PAIRS = [(m, t) for m in sorted(METHODS) for t in ("cnn", "mlp") if not (m == "feature_meta" and t == "mlp")]


@pytest.mark.parametrize("method_name, teacher_name", PAIRS)
def test_the_table_gives_the_students_the_teacher_gives(digits_and_teachers, method_name, teacher_name):
    data, teachers = digits_and_teachers
    looked_up, table_calls = train(method_name, teachers[teacher_name], data)
    asked, asked_calls = train(method_name, teachers[teacher_name], data, augment=lambda x, generator: x)
    assert looked_up.keys() == asked.keys()
    for name, value in looked_up.items():
        assert torch.equal(value, asked[name]), f"{method_name} from the {teacher_name} teacher: {name}"
    probe = PROBE_ROWS.get(method_name, [])
    assert table_calls == probe + [200], "one pass over the training set, then no teacher call per batch"
    assert asked_calls[:len(probe)] == probe
    asked_calls = asked_calls[len(probe):]
    assert sum(asked_calls) == 3 * 200 and len(asked_calls) == 3 * 4, "an augmented run asks for every batch"


@pytest.mark.parametrize("teacher_name", ["cnn", "mlp"])
def test_fit_with_a_distill_from_objective_trains_kd_from_the_table(digits_and_teachers, teacher_name):
    """`fit(model, data, distill_from(teacher, ...))` (notebook 01's panel, 03's and 09's KD runs) is KD with the
    table: the student that the objective's own per-batch call gives (`Supervised`), bit for bit, with one
    teacher pass over the training set."""
    from kdlab.methods.kd import Supervised, distill_from

    data, teachers = digits_and_teachers
    teacher = teachers[teacher_name]
    students = {}
    for how in ("fit", "per batch"):
        torch.manual_seed(5)
        student = MLP(64, hidden=(8,), num_classes=10)
        calls = []
        hook = teacher.register_forward_hook(lambda module, args, output: calls.append(len(args[0])))
        objective = distill_from(teacher, 0.8, 3.0)
        try:
            fit(student if how == "fit" else Supervised(student, objective), data,
                objective if how == "fit" else None, epochs=3, lr=0.05, batch_size=64, seed=5, progress=False)
        finally:
            hook.remove()
        students[how] = (student.state_dict(), calls)
    (table, table_calls), (asked, asked_calls) = students["fit"], students["per batch"]
    assert all(torch.equal(value, asked[name]) for name, value in table.items())
    assert table_calls == [200] and len(asked_calls) == 3 * 4
