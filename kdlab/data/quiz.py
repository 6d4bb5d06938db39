"""MetaDistil's quiz set: a seeded, class-stratified share of the training data that the student never
trains on, and an endless stream of quiz batches over it.

    split = split_quiz(data, 0.1, seed=0)          # the paper's random 9:1 split (section 4.1)
    split.train                                     # a DataSplits: the 90 % the student trains on
    stream = quiz_batches(split.x_quiz, split.y_quiz, 30, torch.Generator().manual_seed(7919))
    x_q, y_q = next(stream)

The fair KD baseline for MetaDistil trains on `split.train`, the same 90 %.
"""
import dataclasses
import math
from dataclasses import dataclass

import torch

from .. import config
from ..errors import ParameterError
from .base import seeded_generator
from .batching import batches, train_quiz_split


@dataclass
class QuizSplit:
    """The training data without the quiz set (`train`, a DataSplits) and the quiz set itself."""

    train: object
    x_quiz: torch.Tensor
    y_quiz: torch.Tensor

    @property
    def num_quiz(self):
        return len(self.y_quiz)


def split_quiz(data, quiz_fraction=0.1, seed=0, *, quiz_batch_size=None):
    """Hold out a seeded, class-stratified `quiz_fraction` of `data`'s training set as the quiz set.

    Returns a `QuizSplit` whose `train` is `data` with the remaining training samples (same test set).
    With `quiz_batch_size`, a quiz set too small for one quiz batch is refused (naming QUIZ_FRACTION and
    the smallest fraction that would do).
    """
    config.check("QUIZ_FRACTION", quiz_fraction)
    generator = seeded_generator(seed)
    train_idx, quiz_idx = train_quiz_split(data.num_train, quiz_fraction, generator, labels=data.y_train.cpu())
    # the quiz set must hold one quiz batch: it depends on the data, so it is not a RULES row
    if config.check("quiz_batch_size", quiz_batch_size) is not None and len(quiz_idx) < quiz_batch_size:
        need = math.ceil(1000 * quiz_batch_size / data.num_train) / 1000
        raise ParameterError(
            "QUIZ_FRACTION", quiz_fraction,
            f"large enough for one quiz batch of {quiz_batch_size}: it leaves {len(quiz_idx)} of "
            f"{data.num_train} training samples for the quiz set; use QUIZ_FRACTION >= {need:.3g} "
            "or a smaller quiz batch")
    train_idx, quiz_idx = train_idx.to(data.device), quiz_idx.to(data.device)
    train = dataclasses.replace(data, x_train=data.x_train[train_idx], y_train=data.y_train[train_idx])
    return QuizSplit(train, data.x_train[quiz_idx], data.y_train[quiz_idx])


def quiz_batches(x_quiz, y_quiz, batch_size, generator):
    """Endless quiz batches: reshuffled passes over the quiz set, full batches only."""
    while True:
        yield from batches(x_quiz, y_quiz, batch_size, generator=generator, drop_last=True)
