"""The adapter of feature distillation: a student feature map brought to a teacher map's shape.

    model = attach_adapter(student, teacher, x[:2], student_layer=2, teacher_layer=2)
    logits = model(x)                                        # the student's logits (what is evaluated)
    logits, adapted = model(x, return_features=True)         # adapted = A(f_S), at the teacher map's size

A (`ChannelAdapter`) is a learnable per-channel feature weighting (a gain, initialised to 1) followed by a
1x1 convolution from the student's channels to the teacher's. Spatial sizes are matched at the teacher's
resolution (the target is never resampled): equal sizes as they are, a student map that is an integer
multiple of the teacher's is average-pooled down, one that divides it evenly is upsampled (nearest).
Anything else (6x6 against 4x4, a map against a vector) is refused with a ParameterError.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ParameterError
from .base import check_int


def spatial_plan(student_shape, teacher_shape):
    """How a student feature of `student_shape` is brought to `teacher_shape` (shapes without the batch):
    "same", ("pool", kernel) or ("upsample", size). Refuses pairs that cannot be matched."""
    student_shape, teacher_shape = tuple(student_shape), tuple(teacher_shape)
    if len(student_shape) != len(teacher_shape) or len(student_shape) not in (1, 3):
        raise ParameterError("feature shapes", f"student {student_shape} vs teacher {teacher_shape}",
                             "two features of the same kind: (C,) vectors or (C, H, W) maps")
    if len(student_shape) == 1 or student_shape[1:] == teacher_shape[1:]:
        return "same"
    (hs, ws), (ht, wt) = student_shape[1:], teacher_shape[1:]
    if hs % ht == 0 and ws % wt == 0:
        return ("pool", (hs // ht, ws // wt))
    if ht % hs == 0 and wt % ws == 0:
        return ("upsample", (ht, wt))
    raise ParameterError("feature sizes", f"student {hs}x{ws} vs teacher {ht}x{wt}",
                         "spatial sizes that are equal or integer multiples of each other in both directions "
                         "(the student map is then average-pooled or upsampled); choose another student_layer "
                         "or teacher_layer")


def match_spatial(student_map, teacher_shape):
    """The student's map at the teacher's spatial size, following `spatial_plan`."""
    plan = spatial_plan(student_map.shape[1:], teacher_shape)
    if plan == "same":
        return student_map
    kind, arg = plan
    if kind == "pool":
        return F.avg_pool2d(student_map, kernel_size=arg)
    return F.interpolate(student_map, size=arg, mode="nearest")


class ChannelAdapter(nn.Module):
    """A: the learnable per-channel feature weighting (a gain, initialised to 1), then a 1x1 conv from
    the student's channels to the teacher's. Vectors (B, C) are treated as 1x1 maps."""

    def __init__(self, student_channels, teacher_channels, weighting=True):
        super().__init__()
        student_channels = check_int("student_channels", student_channels)
        teacher_channels = check_int("teacher_channels", teacher_channels)
        self.gain = nn.Parameter(torch.ones(student_channels)) if weighting else None
        self.conv = nn.Conv2d(student_channels, teacher_channels, kernel_size=1)

    def forward(self, feature):
        vector = feature.dim() == 2
        x = feature[:, :, None, None] if vector else feature
        if self.gain is not None:
            x = x * self.gain.view(1, -1, 1, 1)
        x = self.conv(x)
        return x.flatten(1) if vector else x


class FeatureStudent(nn.Module):
    """The student with its adapter. `model(x)` gives logits (the kit's contract, so `accuracy` and
    `fit` work); `model(x, return_features=True)` gives (logits, A(f_S) at the teacher's size)."""

    def __init__(self, student, adapter, student_layer, teacher_shape):
        super().__init__()
        self.student, self.adapter = student, adapter
        self.student_layer = student_layer
        self.teacher_shape = tuple(teacher_shape)

    def forward(self, x, return_features=False):
        if not return_features:
            return self.student(x)
        logits, features = self.student(x, return_features=True)
        adapted = self.adapter(match_spatial(features[self.student_layer], self.teacher_shape))
        return logits, adapted


@torch.no_grad()
def feature_shapes(model, x):
    """Shapes (without the batch) of every feature of `model` on the inputs `x`, evaluated in eval mode
    (so probing writes no BatchNorm statistics)."""
    was_training = model.training
    model.eval()
    try:
        _, features = model(x, return_features=True)
    finally:
        model.train(was_training)
    return [tuple(f.shape[1:]) for f in features]


def feature_shape(model, x, layer, name="layer"):
    """Shape of `model`'s feature `layer` on `x` (see `feature_shapes`); `name` is the parameter named in
    the error when `layer` is not an index into the features."""
    shapes = feature_shapes(model, x)
    if not isinstance(layer, int) or isinstance(layer, bool) or not -len(shapes) <= layer < len(shapes):
        raise ParameterError(name, layer, f"an index into the model's {len(shapes)} features")
    return shapes[layer]


def attach_adapter(student, teacher, x_probe, *, student_layer, teacher_layer, weighting=True):
    """Wrap `student` with a ChannelAdapter from its `student_layer` to the teacher's `teacher_layer`,
    after checking on `x_probe` that the two maps can be matched (ParameterError otherwise)."""
    s_shape = feature_shape(student, x_probe, student_layer, "student_layer")
    t_shape = feature_shape(teacher, x_probe, teacher_layer, "teacher_layer")
    try:
        spatial_plan(s_shape, t_shape)
    except ParameterError as error:
        raise ParameterError("student_layer", f"{student_layer} (a {s_shape} feature)",
                             f"a layer that can be matched to the teacher's layer {teacher_layer} "
                             f"(a {t_shape} feature): {error.allowed}") from None
    reference = next(student.parameters())
    adapter = ChannelAdapter(s_shape[0], t_shape[0], weighting).to(reference.device, reference.dtype)
    return FeatureStudent(student, adapter, student_layer, t_shape)
