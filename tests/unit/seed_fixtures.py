"""What the seeds-together tests share: 300 digits, a small trained MLP teacher, and the seeded MLP student."""
import pytest
import torch

from kdlab.data import load
from kdlab.models import MLP
from kdlab.train import fit


def digits_with_teacher(hidden):
    """300 digits and an MLP teacher with these hidden layers, trained for 5 epochs from seed 0."""
    data = load("digits", train_size=300, seed=0)
    torch.manual_seed(0)
    teacher = MLP(64, hidden=hidden, num_classes=10)
    fit(teacher, data, epochs=5, lr=0.05, batch_size=50, seed=0, progress=False)
    return data, teacher.eval()


@pytest.fixture(scope="module")
def digits_and_teacher():
    return digits_with_teacher((64,))


def new_student(seed):
    torch.manual_seed(seed)
    return MLP(64, hidden=(8,), num_classes=10)


# Bit for bit or to float32 rounding. On the Intel Xeon of the earlier sessions the stacked seeds' batched matrix
# products summed in the same order as each seed's own, and every number was equal bit for bit. On an AMD EPYC
# (AVX-512) the batched kernels round the last bit differently: after 3 epochs the weights were 1.5e-8 apart (3e-8
# at most), KD values near 0.03 4e-7 apart, and every accuracy was equal. So the seed tests compare weights and logged values to float32 rounding,
# accuracies exactly, and a MetaDistil "toward" decision (kd_after < kd_before) exactly unless its two KD values tie
# to rounding, where the last bit decides it.
WEIGHT_ATOL = 1e-6
VALUE_RTOL, VALUE_ATOL = 1e-5, 1e-6   # a KD value near 0.03 came out 4e-7 apart


def assert_same_weights(got, want, what):
    """Every tensor of `got`'s state equals `want`'s to float32 rounding (WEIGHT_ATOL)."""
    for name, value in want.state_dict().items():
        assert torch.allclose(got.state_dict()[name], value, rtol=0, atol=WEIGHT_ATOL), f"{what}: {name} differs"


def same_value(got, want):
    """Two logged numbers equal to float32 rounding (None and None too)."""
    if got is None or want is None:
        return got is want
    return got == pytest.approx(want, rel=VALUE_RTOL, abs=VALUE_ATOL)


def same_decision(got, want, kd_before, kd_after):
    """A "toward" decision agrees, or its two KD values tie to float32 rounding."""
    return got == want or abs(kd_after - kd_before) <= 2 * (VALUE_ATOL + VALUE_RTOL * max(abs(kd_before), abs(kd_after)))
