"""The one container every classification loader returns, and the stratified split it is built on.

Small datasets live whole on the device as tensors (float32 inputs, int64 labels), so a training loop
indexes them directly instead of going through a DataLoader.
"""
import dataclasses
import numbers
from dataclasses import dataclass

import torch

from ..errors import ParameterError


def resolve_device(device):
    """'auto' -> 'cuda' if available, else 'mps' if available, else 'cpu'; anything else unchanged."""
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def as_device(device):
    """`device` ('auto' allowed) as a `torch.device`, or one ParameterError naming what is allowed."""
    device = resolve_device(device)
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ParameterError("device", device, "'auto' or a torch device such as 'cpu', 'cuda' or 'cuda:0'") from None


def check_count(name, value, low, high):
    """Return `value` if it is an integer in [low, high], else raise one ParameterError."""
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or not low <= value <= high:
        raise ParameterError(name, value, f"an integer in [{low}, {high}]")
    return int(value)


def seeded_generator(seed):
    """A CPU `torch.Generator` seeded with `seed` (an integer >= 0)."""
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or seed < 0:
        raise ParameterError("seed", seed, "an integer >= 0")
    return torch.Generator().manual_seed(int(seed))


def random_permutation(n, generator=None, device="cpu"):
    """A permutation of range(n) drawn from `generator` (on its own device), returned on `device`."""
    where = generator.device if generator is not None else torch.device("cpu")
    return torch.randperm(n, generator=generator, device=where).to(device)


def stratified_split(labels, n_first, generator=None):
    """Split the indices of `labels` into (first, rest) with `n_first` in `first`, class by class.

    Each class contributes to `first` in proportion to its size; the rounding remainders go to the
    classes with the largest fractional share (ties to the smaller class index). Both index tensors are
    shuffled, so neither is sorted by class.
    """
    labels = torch.as_tensor(labels).cpu()
    total = len(labels)
    n_first = check_count("n_first", n_first, 0, total)
    classes, counts = torch.unique(labels, return_counts=True)
    exact = counts.double() * n_first / total
    quota = exact.floor().long()
    leftover = n_first - int(quota.sum())
    # stable sort so equal fractions go to the smaller class index
    order = torch.sort(-(exact - quota), stable=True).indices
    quota[order[:leftover]] += 1

    first, rest = [], []
    for cls, take in zip(classes.tolist(), quota.tolist()):
        members = torch.nonzero(labels == cls).flatten()
        members = members[random_permutation(len(members), generator)]
        first.append(members[:take])
        rest.append(members[take:])
    first, rest = torch.cat(first), torch.cat(rest)
    return first[random_permutation(len(first), generator)], rest[random_permutation(len(rest), generator)]


@dataclass
class DataSplits:
    """A classification dataset as tensors: a training and a test split, plus what a model needs to know.

    `input_shape` is the shape of one input (no batch dimension), e.g. (1, 8, 8) or (40,).
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    input_shape: tuple
    class_names: list = None

    def __post_init__(self):
        self.input_shape = tuple(self.input_shape)
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if len(x) != len(y) or tuple(x.shape[1:]) != self.input_shape:
                raise ValueError(
                    f"{self.name}: x_{split} {tuple(x.shape)} and y_{split} {tuple(y.shape)} do not match "
                    f"input_shape {self.input_shape}"
                )

    @property
    def num_train(self):
        return len(self.y_train)

    @property
    def num_test(self):
        return len(self.y_test)

    @property
    def device(self):
        return self.x_train.device

    def to(self, device):
        """The same splits on `device` (tensors already there are not copied)."""
        device = as_device(device)
        return dataclasses.replace(
            self,
            x_train=self.x_train.to(device),
            y_train=self.y_train.to(device),
            x_test=self.x_test.to(device),
            y_test=self.y_test.to(device),
        )

    def subset_train(self, n, generator=None):
        """Keep `n` training samples, stratified by class (the test split is unchanged)."""
        n = check_count("n", n, 1, self.num_train)
        keep, _ = stratified_split(self.y_train, n, generator)
        keep = keep.to(self.device)
        return dataclasses.replace(self, x_train=self.x_train[keep], y_train=self.y_train[keep])

    def __repr__(self):
        return (
            f"DataSplits({self.name!r}: {self.num_train} train / {self.num_test} test, "
            f"inputs {self.input_shape}, {self.num_classes} classes, {self.x_train.dtype} on {self.device})"
        )
