"""The 1-D CNN of the MNIST-1D benchmark (Greydanus, "Scaling down deep learning", 2020).

Three ReLU convolutions with 25 channels (kernel 5 then 3, 3; stride 2; padding 1) and a linear layer
on the flattened last feature map: 40 -> 19 -> 10 -> 5 positions, 125 features, 5,210 parameters
for 10 classes, as `ConvBase` in greydanus/mnist1d `notebooks/models.py`.
"""
import torch.nn as nn

from .base import StagedNet, check_int


def conv_length(length, kernel, stride=2, padding=1):
    """Output length of a 1-D convolution."""
    return (length + 2 * padding - kernel) // stride + 1


class CNN1D(StagedNet):
    """conv(1->c, k5) stem, two conv(c->c, k3) stages, flatten, linear. Input (B, L) or (B, 1, L)."""

    def __init__(self, num_classes=10, channels=25, input_length=40):
        num_classes = check_int("num_classes", num_classes)
        c = check_int("channels", channels)
        length = check_int("input_length", input_length, minimum=3)  # what the padded 5-wide kernel needs
        lengths = [conv_length(length, 5)]
        lengths += [conv_length(lengths[-1], 3)]
        lengths += [conv_length(lengths[-1], 3)]
        stem = nn.Sequential(nn.Conv1d(1, c, 5, stride=2, padding=1), nn.ReLU())
        stages = [nn.Sequential(nn.Conv1d(c, c, 3, stride=2, padding=1), nn.ReLU()) for _ in range(2)]
        flat = c * lengths[-1]
        super().__init__(stem, stages, nn.Flatten(), nn.Linear(flat, num_classes),
                         feature_channels=[c, c, c, flat], input_shape=(length,))
        self.feature_lengths = lengths

    def forward(self, x, return_features=False):
        if x.dim() == 2:
            x = x.unsqueeze(1)
        return super().forward(x, return_features)
