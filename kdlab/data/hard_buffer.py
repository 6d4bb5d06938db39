"""MMKD's hard buffer (Zhang, Chen, Wang, ICME 2023; the official code's `dataset/buffer.py`): the
meta-validation set of recently misclassified training samples.

    buffer = HardBuffer(capacity=256, batch_size=64, seed=0)
    buffer.put((x, y, teacher_logits, *teacher_features), wrong)   # wrong: the student's mistakes
    x_h, y_h, *rest = buffer.sample()                               # 64 distinct held samples
"""
import torch

from .. import config
from ..errors import ParameterError


def check_sizes(batch_size, num_train=None, buffer_size=None):
    """Full batches only (the feature meta-net's width is B(K+1)), and a meta batch fits in the buffer."""
    config.check("BATCH_SIZE", batch_size)
    if num_train is not None and batch_size > num_train:
        raise ParameterError("batch_size", batch_size, f"at most the {num_train} training samples (MMKD uses "
                             "full batches only: the feature meta-net's width is batch_size * (K + 1))")
    if buffer_size is not None:
        config.check("BUFFER_SIZE", buffer_size)
        if buffer_size < batch_size:
            raise ParameterError("buffer_size", buffer_size,
                                 f"an integer >= the meta batch size (batch_size={batch_size}): "
                                 "a meta batch is drawn from the buffer without replacement")
    return batch_size


class HardBuffer:
    """A fixed-capacity store of hard training samples (tuples of tensors, first dimension = sample).

    Filling: whole batches are appended until `capacity` samples are held (the last one truncated).
    Then `put` writes each misclassified sample of a batch into a slot drawn uniformly without
    replacement (correctly classified samples never enter a full buffer). `sample` draws a meta batch
    of `batch_size` distinct slots. One `torch.Generator`, seeded by `seed`, makes every draw.
    """

    def __init__(self, capacity, batch_size, seed=0):
        self.batch_size = check_sizes(batch_size, buffer_size=capacity)
        self.capacity = int(capacity)
        self.generator = torch.Generator().manual_seed(seed)
        self.store, self.size = None, 0

    @property
    def full(self):
        return self.size == self.capacity

    def __len__(self):
        return self.size

    def put(self, samples, wrong):
        """Add `samples` (a tuple of tensors) given the bool mask `wrong`; returns how many slots were written."""
        samples = tuple(t.detach() for t in samples)
        if self.store is None:
            self.store = tuple(t.new_zeros((self.capacity, *t.shape[1:])) for t in samples)
        if not self.full:
            n = min(len(samples[0]), self.capacity - self.size)
            for slot, t in zip(self.store, samples):
                slot[self.size:self.size + n] = t[:n]
            self.size += n
            return n
        return self.replace(samples, wrong)

    def replace(self, samples, wrong):
        """A full buffer: the misclassified samples overwrite as many slots, drawn without replacement."""
        hard = torch.nonzero(wrong.cpu()).flatten()
        if len(hard) > self.capacity:
            hard = hard[torch.randperm(len(hard), generator=self.generator)[:self.capacity]]
        slots = torch.randperm(self.capacity, generator=self.generator)[:len(hard)]
        if len(hard):
            for slot, t in zip(self.store, samples):
                slot[slots.to(slot.device)] = t[hard.to(t.device)]
        return len(hard)

    def sample(self):
        """A meta batch: `batch_size` distinct samples, uniformly from those held."""
        if self.size < self.batch_size:
            raise ParameterError("buffer", f"{self.size} samples held",
                                 f"at least batch_size={self.batch_size} samples before sampling (put first)")
        index = torch.randperm(self.size, generator=self.generator)[:self.batch_size]
        return tuple(slot[index.to(slot.device)] for slot in self.store)

    def state_dict(self):
        """What a resumed run needs to draw exactly as an uninterrupted one: the slots, the fill, the generator."""
        return {"store": list(self.store or ()), "size": self.size, "generator": self.generator.get_state()}

    def load_state_dict(self, state):
        self.store = tuple(state["store"]) or None
        self.size = int(state["size"])
        self.generator.set_state(state["generator"])
