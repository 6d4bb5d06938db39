"""A small CNN for the 8x8 scikit-learn digits: a stem and three conv stages, then global pooling."""
import torch.nn as nn

from .base import StagedNet, check_int


def conv_bn_relu(in_channels, out_channels, stride, batch_norm):
    """3x3 conv (padding 1), optional BatchNorm, ReLU."""
    layers = [nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class SmallCNN(StagedNet):
    """stem (8x8, width) -> stage 1 (8x8, width) -> stage 2 (4x4, 2 width) -> stage 3 (2x2, 4 width)
    -> global average pool -> linear.

    Input (B, in_channels, H, W), designed for (B, 1, 8, 8); the global pool accepts other sizes.
    `batch_norm=False` gives a network without running statistics, the easy case for inner loops.
    """

    def __init__(self, num_classes=10, width=16, in_channels=1, batch_norm=True):
        num_classes = check_int("num_classes", num_classes)
        w = check_int("width", width)
        in_channels = check_int("in_channels", in_channels)
        batch_norm = bool(batch_norm)
        stem = conv_bn_relu(in_channels, w, 1, batch_norm)
        stages = [conv_bn_relu(w, w, 1, batch_norm),
                  conv_bn_relu(w, 2 * w, 2, batch_norm),
                  conv_bn_relu(2 * w, 4 * w, 2, batch_norm)]
        head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        super().__init__(stem, stages, head, nn.Linear(4 * w, num_classes),
                         feature_channels=[w, w, 2 * w, 4 * w, 4 * w], input_shape=(in_channels, 8, 8))
