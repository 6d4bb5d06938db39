"""N-way K-shot episodes drawn from one class split of a FewShotDataset.

An episode (task) picks `ways` classes of the split, relabels them 0..ways-1 in a random order, and
draws `shots` support and `queries` query images per class, without overlap. Episode `i` depends only
on `(seed, i)`, so a test set of episodes is identical across runs, methods and devices:

    data = load_glyphs(image_size=16)
    train = EpisodeSampler(data, "train", ways=5, shots=1, queries=5, seed=0)
    test = EpisodeSampler(data, "test", ways=5, shots=1, queries=15, seed=1234)
    x_s, y_s, x_q, y_q = test.episode(0)            # the same task on every run, for every method
    xs, ys, xq, yq = train.batch(4)                 # the next 4 tasks, stacked: (4, ways*shots, C, H, W)

Within an episode the images are ordered by class (all of class 0, then class 1, ...).
"""
import numbers
from typing import NamedTuple

import numpy as np
import torch

from kdlab.errors import ParameterError

from .fewshot_base import FewShotDataset


class Task(NamedTuple):
    """One episode (or a stack of them): support images and labels, query images and labels."""

    x_support: torch.Tensor
    y_support: torch.Tensor
    x_query: torch.Tensor
    y_query: torch.Tensor

    def to(self, device):
        return Task(*(t.to(device) for t in self))


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


class EpisodeSampler:
    """Seeded, reproducible N-way K-shot tasks from split `split` ('train', 'val' or 'test') of `dataset`.

    `episode(i)` is random access and stateless; iterating and `batch(n)` walk a cursor 0, 1, 2, ...
    (`reset()` rewinds it). `to(device)` moves the split's images, so tasks are built on that device.
    """

    def __init__(self, dataset, split, ways, shots, queries, seed=0):
        if not isinstance(dataset, FewShotDataset):
            raise ParameterError("dataset", type(dataset).__name__, "a FewShotDataset (e.g. from load_glyphs())")
        self.data = dataset.split(split)  # raises one ParameterError for an unknown split name
        self.split = split
        for name, value, low in (("ways", ways, 2), ("shots", shots, 1), ("queries", queries, 1)):
            if not _is_int(value) or value < low:
                raise ParameterError(name, value, f"an integer >= {low}")
        if not _is_int(seed) or seed < 0:
            raise ParameterError("seed", seed, "an integer >= 0")
        where = f"the {dataset.name!r} {split!r} split"
        if ways > self.data.num_classes:
            raise ParameterError("ways", ways, f"an integer from 2 to {self.data.num_classes}, the number of "
                                               f"classes in {where}")
        per_class = self.data.samples_per_class
        if shots + queries > per_class:
            raise ParameterError("shots + queries", shots + queries,
                                 f"at most {per_class}, the images per class in {where} "
                                 f"(got shots={shots}, queries={queries})")
        self.ways, self.shots, self.queries, self.seed = ways, shots, queries, seed
        self._cursor = 0
        self._class_ids = np.array(self.data.class_ids)

    def episode(self, index):
        """Task number `index` (an integer >= 0); the same for the same seed, on any run."""
        if not _is_int(index) or index < 0:
            raise ParameterError("index", index, "an integer >= 0")
        rng = np.random.default_rng([self.seed, index])
        classes = rng.choice(self._class_ids, size=self.ways, replace=False)  # position = new label
        per_class = self.shots + self.queries
        picks = []
        for class_id in classes:
            members = self.data.indices_by_class[int(class_id)]
            picks.append(members[rng.choice(len(members), size=per_class, replace=False)])
        picks = torch.stack(picks)  # (ways, shots + queries) row numbers into the split
        support = picks[:, :self.shots].reshape(-1)
        query = picks[:, self.shots:].reshape(-1)
        device = self.data.images.device
        labels = torch.arange(self.ways, device=device)
        return Task(
            self.data.images[support.to(device)],
            labels.repeat_interleave(self.shots),
            self.data.images[query.to(device)],
            labels.repeat_interleave(self.queries),
        )

    def __iter__(self):
        return self

    def __next__(self):
        task = self.episode(self._cursor)
        self._cursor += 1
        return task

    def batch(self, n):
        """The next `n` tasks stacked along a new first dimension (support: (n, ways*shots, C, H, W))."""
        if not _is_int(n) or n < 1:
            raise ParameterError("n", n, "an integer >= 1")
        tasks = [next(self) for _ in range(n)]
        return Task(*(torch.stack(parts) for parts in zip(*tasks)))

    def reset(self, index=0):
        """Move the cursor so that the next task is `episode(index)`."""
        if not _is_int(index) or index < 0:
            raise ParameterError("index", index, "an integer >= 0")
        self._cursor = index
        return self

    def to(self, device):
        """Build tasks on `device` from now on (moves the split's images there); returns self."""
        self.data = self.data.to(device)
        return self

    def __repr__(self):
        return (f"EpisodeSampler({self.data.dataset_name!r}, {self.split!r}, {self.ways}-way {self.shots}-shot, "
                f"{self.queries} queries, seed={self.seed}, next episode {self._cursor})")
