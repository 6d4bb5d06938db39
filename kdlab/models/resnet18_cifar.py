"""ResNet-18 for CIFAR as self-distillation (Zhang et al. 2019, "Be your own teacher") and MetaDistiller (Liu et
al. 2020, Tables 1 and 4) train it: a 3x3 conv stem to 64 channels and no max-pooling, four stages of two
BasicBlocks (64, 128, 256, 512 channels; strides 1, 2, 2, 2), global average pooling and a linear classifier.
A 32x32 input goes 32 -> 32 -> 16 -> 8 -> 4. Four stages: MetaDistiller puts exits after the first three.
"""
import torch.nn as nn

from .base import StagedNet, check_int
from .resnet_cifar import BasicBlock, conv3x3

WIDTHS, BLOCKS, STRIDES = (64, 128, 256, 512), (2, 2, 2, 2), (1, 2, 2, 2)


class ResNet18Cifar(StagedNet):
    """`create("resnet18", num_classes=100)`: 11.2 M parameters at 100 classes."""

    def __init__(self, num_classes=100):
        num_classes = check_int("num_classes", num_classes)
        stem = nn.Sequential(conv3x3(3, 64), nn.BatchNorm2d(64), nn.ReLU())
        stages, in_channels = [], 64
        for width, blocks, stride in zip(WIDTHS, BLOCKS, STRIDES):
            layers = [BasicBlock(in_channels, width, stride)] + [BasicBlock(width, width) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*layers))
            in_channels = width
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        super().__init__(stem, stages, head, nn.Linear(WIDTHS[-1], num_classes),
                         feature_channels=[64, *WIDTHS, WIDTHS[-1]], input_shape=(3, 32, 32))
