"""VGG with BatchNorm for CIFAR (Simonyan & Zisserman 2015), as RepDistiller's `vgg8_bn`, `vgg11_bn`,
`vgg13_bn` in HobbitLong/RepDistiller `models/vgg.py`: five blocks of 3x3 conv + BN + ReLU, no
fully connected layers but the classifier, Linear(512, num_classes).

On 32x32 inputs there are three 2x2 max-pools (32 -> 16 -> 8 -> 4), the last two blocks both work at
4x4, and an adaptive average pool makes the 512-vector. (RepDistiller pools a fourth time only for
64x64 inputs; pooling layers have no parameters, so the counts are the same.)
"""
import math

import torch.nn as nn

from ..errors import ParameterError
from .base import StagedNet, check_int, is_int

# channels of the convolutions in each of the five blocks
CONFIGS = {
    8: [[64], [128], [256], [512], [512]],
    11: [[64], [128], [256, 256], [512, 512], [512, 512]],
    13: [[64, 64], [128, 128], [256, 256], [512, 512], [512, 512]],
}


def conv_block(in_channels, widths):
    """(3x3 conv with bias, BN, ReLU) for each width."""
    layers = []
    for width in widths:
        layers += [nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
        in_channels = width
    return nn.Sequential(*layers)


class VGG(StagedNet):
    """VGG-depth with BatchNorm; depth in {8, 11, 13}. The stem is block 0; each stage is (pool,) block."""

    def __init__(self, depth=8, num_classes=10):
        if not is_int(depth) or depth not in CONFIGS:
            raise ParameterError("depth", depth, f"one of {sorted(CONFIGS)}")
        num_classes = check_int("num_classes", num_classes)
        config = CONFIGS[depth]
        stem = conv_block(3, config[0])
        stages = []
        for i in range(1, 5):
            block = conv_block(config[i - 1][-1], config[i])
            pool = [nn.MaxPool2d(2, 2)] if i < 4 else []
            stages.append(nn.Sequential(*pool, *block))
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        channels = [block[-1] for block in config]
        super().__init__(stem, stages, head, nn.Linear(channels[-1], num_classes),
                         feature_channels=[*channels, channels[-1]], input_shape=(3, 32, 32))
        self.depth = depth
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
                nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
