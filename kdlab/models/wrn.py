"""Wide ResNets (Zagoruyko & Komodakis 2016) for CIFAR, as in HobbitLong/RepDistiller `models/wrn.py`.

WRN-d-k: a 3x3 conv stem (16 channels), three stages of (d-4)/6 pre-activation blocks with
16k, 32k, 64k channels (strides 1, 2, 2), then BN, ReLU, global average pooling and a linear layer.
"""

import torch.nn as nn
import torch.nn.functional as F

from ..errors import ParameterError
from .base import StagedNet, check_int, init_conv_fan_out


class PreActBlock(nn.Module):
    """conv(relu(bn(conv(relu(bn(x)))))) + shortcut.

    When the shape changes, the 1x1 shortcut conv reads the pre-activated input relu(bn1(x)), not x,
    as in the reference (its `convShortcut` is applied after `x = relu1(bn1(x))`).
    """

    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride, 0, bias=False)

    def forward(self, x):
        activated = F.relu(self.bn1(x))
        out = self.conv2(F.relu(self.bn2(self.conv1(activated))))
        shortcut = x if self.shortcut is None else self.shortcut(activated)
        return shortcut + out


class WideResNet(StagedNet):
    """WRN-depth-widen_factor; depth = 6n+4."""

    def __init__(self, depth=16, widen_factor=1, num_classes=10):
        depth = check_int("depth", depth, minimum=10)
        if (depth - 4) % 6:
            raise ParameterError("depth", depth, "6n+4 for an integer n >= 1, e.g. 10, 16, 22, 28, 40")
        k = check_int("widen_factor", widen_factor)
        num_classes = check_int("num_classes", num_classes)
        blocks_per_stage = (depth - 4) // 6
        widths = [16, 16 * k, 32 * k, 64 * k]
        stem = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        stages = []
        for in_channels, out_channels, stride in zip(widths[:-1], widths[1:], (1, 2, 2)):
            blocks = [PreActBlock(in_channels, out_channels, stride)]
            blocks += [PreActBlock(out_channels, out_channels) for _ in range(blocks_per_stage - 1)]
            stages.append(nn.Sequential(*blocks))
        # the stage outputs are pre-activations: the head applies the final BN and ReLU
        head = nn.Sequential(nn.BatchNorm2d(widths[-1]), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        super().__init__(stem, stages, head, nn.Linear(widths[-1], num_classes),
                         feature_channels=[*widths, widths[-1]], input_shape=(3, 32, 32))
        self.depth, self.widen_factor = depth, k
        init_conv_fan_out(self)
        nn.init.zeros_(self.classifier.bias)
