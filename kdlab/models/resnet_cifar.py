"""The CIFAR ResNets of He et al. 2016 (§4.2), as defined in HobbitLong/RepDistiller `models/resnet.py`.

Depth 6n+2: a 3x3 conv stem, three stages of n BasicBlocks (strides 1, 2, 2), global average pooling
and a linear classifier. resnet8 ... resnet110 use widths (16, 16, 32, 64); RepDistiller's "x4"
variants (resnet8x4, resnet32x4) use (32, 64, 128, 256).
"""
import torch.nn as nn
import torch.nn.functional as F

from ..errors import ParameterError
from .base import StagedNet, check_int, is_int


def conv3x3(in_channels, out_channels, stride=1):
    return nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)


class BasicBlock(nn.Module):
    """relu(bn(conv(relu(bn(conv(x))))) + shortcut(x)); the shortcut is the identity, or a strided
    1x1 conv + BN when the shape changes (He et al. 2016, option B)."""

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + shortcut)


class CifarResNet(StagedNet):
    """CIFAR ResNet of depth 6n+2; widths = (stem, stage 1, stage 2, stage 3) channels."""

    def __init__(self, depth=20, widths=(16, 16, 32, 64), num_classes=10):
        depth = check_int("depth", depth, minimum=8)
        if (depth - 2) % 6:
            raise ParameterError("depth", depth, "6n+2 with n >= 1: 8, 14, 20, 32, 44, 56, 110, ...")
        if not (isinstance(widths, (list, tuple)) and len(widths) == 4 and all(is_int(w) for w in widths)):
            raise ParameterError("widths", widths, "4 integers >= 1: the stem's and the 3 stages' channels")
        widths = [int(w) for w in widths]
        num_classes = check_int("num_classes", num_classes)
        blocks_per_stage = (depth - 2) // 6
        stem = nn.Sequential(conv3x3(3, widths[0]), nn.BatchNorm2d(widths[0]), nn.ReLU())
        stages = []
        for in_channels, out_channels, stride in zip(widths[:-1], widths[1:], (1, 2, 2)):
            blocks = [BasicBlock(in_channels, out_channels, stride)]
            blocks += [BasicBlock(out_channels, out_channels) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        super().__init__(stem, stages, head, nn.Linear(widths[-1], num_classes),
                         feature_channels=[*widths, widths[-1]], input_shape=(3, 32, 32))
        self.depth = depth
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
