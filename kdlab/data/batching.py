"""Mini-batches by indexing tensors that already live on the device, and the train/quiz split.

For datasets of a few thousand samples a DataLoader costs more than the model; indexing a device tensor
with a permutation gives the same epochs, deterministic given a `torch.Generator`.
"""
import numbers

from ..errors import ParameterError
from .base import random_permutation, stratified_split


def batches(x, y, batch_size, *, shuffle=True, generator=None, drop_last=False):
    """Yield (xb, yb) mini-batches covering every sample once per call (one epoch).

    `shuffle` draws the order from `generator` (CPU or on the device); `drop_last` skips a final batch
    smaller than `batch_size`.
    """
    if len(x) != len(y):
        raise ParameterError("y", f"{len(y)} labels", f"one label per input ({len(x)} inputs)")
    if not isinstance(batch_size, numbers.Integral) or isinstance(batch_size, bool) or batch_size < 1:
        raise ParameterError("batch_size", batch_size, "an integer >= 1")
    n = len(x)
    order = random_permutation(n, generator, x.device) if shuffle else None
    stop = n - n % batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        if order is None:
            yield x[start:start + batch_size], y[start:start + batch_size]
        else:
            index = order[start:start + batch_size]
            yield x[index], y[index]


def train_quiz_split(n, fraction, generator=None, *, labels=None):
    """Split range(n) into (train, quiz) index tensors with round(fraction * n) quiz samples.

    MetaDistil holds out a random 10 % quiz set (`fraction=0.1`) for the teacher's meta-update. With
    `labels`, the quiz set is stratified by class. Both sets are non-empty.
    """
    if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 2:
        raise ParameterError("n", n, "an integer >= 2 (the number of samples to split)")
    if not isinstance(fraction, numbers.Real) or isinstance(fraction, bool) or not 0 < fraction < 1:
        raise ParameterError("fraction", fraction, "a number strictly between 0 and 1 (the quiz share)")
    num_quiz = min(max(round(fraction * n), 1), n - 1)
    if labels is not None:
        if len(labels) != n:
            raise ParameterError("labels", f"{len(labels)} labels", f"one label per sample (n={n})")
        quiz, train = stratified_split(labels, num_quiz, generator)
        return train, quiz
    order = random_permutation(n, generator)
    return order[num_quiz:], order[:num_quiz]
