"""The feature contract every kdlab model keeps, and the staged network most of them are built on.

`model(x)` returns logits. `model(x, return_features=True)` returns `(logits, features)`, as
RepDistiller's `is_feat=True` does (there the pair comes as `(features, logits)`): the output of the
stem, the output of each stage, and last the pooled vector that feeds the classifier. So
`features[-2]` is the last stage's feature map and `features[-1]` the penultimate vector.
`model.feature_channels[i]` is the channel count (the width, for vectors) of `features[i]`.
"""
import math
import numbers

import torch.nn as nn

from ..errors import ParameterError


def is_int(value, minimum=1):
    """True for an integer (not a bool) >= `minimum`."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= minimum


def check_int(name, value, minimum=1):
    """Return `value` as an int if it is an integer >= `minimum`, else raise one clear ParameterError."""
    if not is_int(value, minimum):
        raise ParameterError(name, value, f"an integer >= {minimum}")
    return int(value)


class StagedNet(nn.Module):
    """stem -> stages -> head (pool and flatten) -> classifier, recording each boundary as a feature."""

    def __init__(self, stem, stages, head, classifier, feature_channels, input_shape):
        super().__init__()
        self.stem = stem
        self.stages = nn.ModuleList(stages)
        self.head = head
        self.classifier = classifier
        self.num_classes = classifier.out_features
        self.feature_channels = list(feature_channels)
        self.input_shape = tuple(input_shape)  # one example's shape, the one the model was designed for

    def forward(self, x, return_features=False):
        x = self.stem(x)
        features = [x]
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        x = self.head(x)
        features.append(x)
        logits = self.classifier(x)
        return (logits, features) if return_features else logits


def init_conv_fan_out(module):
    """He-normal init of every conv from its fan-out, as RepDistiller's WRN and MobileNetV2 do."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
