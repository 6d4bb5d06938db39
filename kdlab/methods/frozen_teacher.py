"""A frozen teacher's logits (or feature maps), computed once per training set instead of once per batch.

KD, DKD and CTKD ask their teacher for the logits of every training batch, under `no_grad`, in eval mode: the
same numbers each epoch, for the same images. When the batches are rows of the training set as they are (no
augmentation), `FrozenLogits.prepare` computes the teacher's logits of the whole set once, and a step looks its
batch's rows up by `batch.index`; with augmentation (a batch of transformed images) it asks the teacher, as
before. On the CPU the rows looked up are bit for bit the logits the teacher gives the batch
(tests/unit/test_frozen_teacher.py), so a run's numbers do not change, only its time: a KD step on the
comparison's SmallCNN teacher (notebook 08) costs the student's forward and backward, not the teacher's forward.
A batch of a single image is the exception: the CPU's convolution takes another kernel for it, whose results
differ in the last bit (about 1e-6) from the same image's row; only a training set one image past a multiple
of the batch size ends an epoch with such a batch. The feature distillation of notebooks 07 and 08
(`kdlab.methods.feature_meta`) keeps its teacher's feature maps the same way (`FrozenLogits(teacher, read=...)`).
MMKD keeps its own table of its teachers' logits and features (`kdlab.models.meta_weight.teacher_outputs`).
"""
import torch

ROWS_AT_ONCE = 1024   # rows per forward pass while filling the table: a bounded peak memory for a large set


def logits(teacher, x):
    return teacher(x)


class FrozenLogits:
    """`FrozenLogits(teacher)(batch)`: the teacher's logits of the batch's images (no gradient); with `read`,
    what `read(teacher, x)` gives instead (a feature map), row by row."""

    def __init__(self, teacher, read=logits):
        self.teacher, self.read, self.table = teacher, read, None

    @torch.no_grad()
    def prepare(self, data, run):
        """Fill the table for `data`'s training set, unless the run augments its batches (then: none)."""
        self.table = None
        if run.augment is None:
            self.teacher.eval()
            x = data.x_train
            self.table = torch.cat([self.read(self.teacher, x[start:start + ROWS_AT_ONCE])
                                    for start in range(0, len(x), ROWS_AT_ONCE)])

    @torch.no_grad()
    def __call__(self, batch):
        if self.table is not None and batch.index is not None:
            return self.table[batch.index]
        return self.read(self.teacher, batch.x)
