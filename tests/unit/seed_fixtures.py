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
