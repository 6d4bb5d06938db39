"""ShuffleNet V1 (Zhang, Zhou, Lin, Sun, CVPR 2018) for CIFAR, at the size the CIFAR distillation papers use
(RepDistiller's `ShuffleV1`, MMKD Table I's student of the ResNet20x4 teachers): 3 groups, stage widths
(240, 480, 960) with (4, 8, 4) units, a 1x1 conv stem to 24 channels and no max-pooling, so a 32x32 input goes
32 -> 16 -> 8 -> 4 through the three stages.

A unit (the paper's Fig. 2 b and c): 1x1 group conv to a quarter of the branch's output width, BN, ReLU; channel
shuffle; 3x3 depthwise conv (stride 1 or 2), BN; 1x1 group conv, BN. Stride 1: the input is added back;
stride 2: the unit makes `out - in` channels and concatenates the 3x3 average-pooled input. ReLU after either.
The first unit's first 1x1 conv is not grouped (the paper: the 24 input channels are too few).
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import StagedNet, check_int

WIDTHS, UNITS, GROUPS, STEM = (240, 480, 960), (4, 8, 4), 3, 24


def channel_shuffle(x, groups):
    """(B, g*n, H, W) -> the channels of each group spread over all groups (the paper's Fig. 1 c)."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


class ShuffleUnit(nn.Module):
    def __init__(self, in_channels, out_channels, stride, groups, group_first=True):
        super().__init__()
        self.stride, self.groups = stride, groups
        made = out_channels - in_channels if stride == 2 else out_channels
        mid = made // 4   # a quarter of the branch's output, as the CIFAR code the distillation tables used
        first_groups = groups if group_first else 1
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, mid, 1, groups=first_groups, bias=False),
                                    nn.BatchNorm2d(mid), nn.ReLU())
        self.first_groups = first_groups
        self.depthwise = nn.Sequential(nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid))
        self.expand = nn.Sequential(nn.Conv2d(mid, made, 1, groups=groups, bias=False), nn.BatchNorm2d(made))

    def forward(self, x):
        out = self.reduce(x)
        if self.first_groups > 1:
            out = channel_shuffle(out, self.groups)
        out = self.expand(self.depthwise(out))
        if self.stride == 2:
            return F.relu(torch.cat([out, F.avg_pool2d(x, 3, 2, 1)], dim=1))
        return F.relu(out + x)


class ShuffleNetV1(StagedNet):
    """ShuffleNet V1 with 3 groups for 32x32 inputs; `create("shufflenet_v1", num_classes=100)`."""

    def __init__(self, num_classes=100):
        num_classes = check_int("num_classes", num_classes)
        stem = nn.Sequential(nn.Conv2d(3, STEM, 1, bias=False), nn.BatchNorm2d(STEM), nn.ReLU())
        stages, in_channels = [], STEM
        for index, (width, units) in enumerate(zip(WIDTHS, UNITS)):
            blocks = [ShuffleUnit(in_channels, width, 2, GROUPS, group_first=index > 0)]
            blocks += [ShuffleUnit(width, width, 1, GROUPS) for _ in range(units - 1)]
            stages.append(nn.Sequential(*blocks))
            in_channels = width
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        super().__init__(stem, stages, head, nn.Linear(WIDTHS[-1], num_classes),
                         feature_channels=[STEM, *WIDTHS, WIDTHS[-1]], input_shape=(3, 32, 32))
