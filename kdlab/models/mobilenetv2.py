"""MobileNetV2 (Sandler et al. 2018) for CIFAR, as in HobbitLong/RepDistiller `models/mobilenetv2.py`
(the version of "Knowledge Distillation via Route Constrained Optimization"), not torchvision's.

Differences from the ImageNet model that the reference makes and this one keeps: ReLU instead of
ReLU6, a 1x1 expansion conv even where the expansion is 1, the last 1x1 conv stays at 1280 channels
for width multipliers <= 1. `mobile_half` is expansion 6, width multiplier 0.5.

A 32x32 input goes 16x16 (stem, stride 2) -> 16 -> 8 -> 4 -> 2 through the four feature stages,
which group the seven inverted-residual groups as RepDistiller's features do: (0, 1), (2), (3, 4),
(5, 6). The head is the 1x1 conv to 1280 channels, BN, ReLU and the global average pool; so
`features[-2]` is the last inverted-residual output (160 channels at half width), as in the reference.
"""
import math
import numbers

import torch.nn as nn

from ..errors import ParameterError
from .base import StagedNet, check_int, init_conv_fan_out

# (expansion or None for "the model's expansion", output channels, blocks, first stride)
GROUPS = [(1, 16, 1, 1), (None, 24, 2, 1), (None, 32, 3, 2), (None, 64, 4, 2),
          (None, 96, 3, 1), (None, 160, 3, 2), (None, 320, 1, 1)]
STAGES = [(0, 1), (2,), (3, 4), (5, 6)]  # which groups end in a recorded feature


def conv_bn_relu(in_channels, out_channels, kernel, stride):
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU())


class InvertedResidual(nn.Module):
    """1x1 expansion -> 3x3 depthwise (stride) -> 1x1 linear projection, each with BN; the input is
    added back when the stride is 1 and the channel count is kept."""

    def __init__(self, in_channels, out_channels, stride, expansion):
        super().__init__()
        hidden = in_channels * expansion
        self.conv = nn.Sequential(
            conv_bn_relu(in_channels, hidden, 1, 1),
            nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU(),
            nn.Conv2d(hidden, out_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(out_channels))
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x):
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(StagedNet):
    """MobileNetV2 with expansion T and width multiplier W (RepDistiller's `mobilenetv2_T_w`)."""

    def __init__(self, num_classes=10, width_mult=1.0, expansion=6):
        num_classes = check_int("num_classes", num_classes)
        expansion = check_int("expansion", expansion)
        if not (isinstance(width_mult, numbers.Real) and not isinstance(width_mult, bool)
                and 1 / 16 <= width_mult < math.inf):
            raise ParameterError("width_mult", width_mult,
                                 "a finite number >= 1/16 (so every layer keeps a channel)")
        stem_channels = int(32 * width_mult)
        stem = conv_bn_relu(3, stem_channels, 3, 2)
        groups, in_channels = [], stem_channels
        for group_expansion, channels, blocks, stride in GROUPS:
            out_channels = int(channels * width_mult)
            layers = []
            for block_stride in [stride] + [1] * (blocks - 1):
                layers.append(InvertedResidual(in_channels, out_channels, block_stride,
                                               group_expansion or expansion))
                in_channels = out_channels
            groups.append(nn.Sequential(*layers))
        stages = [nn.Sequential(*(groups[g] for g in stage)) for stage in STAGES]
        last_channels = int(1280 * width_mult) if width_mult > 1.0 else 1280
        head = nn.Sequential(conv_bn_relu(in_channels, last_channels, 1, 1),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten())
        stage_channels = [int(GROUPS[stage[-1]][1] * width_mult) for stage in STAGES]
        super().__init__(stem, stages, head, nn.Linear(last_channels, num_classes),
                         feature_channels=[stem_channels, *stage_channels, last_channels],
                         input_shape=(3, 32, 32))
        self.width_mult, self.expansion = width_mult, expansion
        init_conv_fan_out(self)
        nn.init.normal_(self.classifier.weight, 0.0, 0.01)
        nn.init.zeros_(self.classifier.bias)
