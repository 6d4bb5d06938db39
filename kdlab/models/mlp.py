"""A multi-layer perceptron: flatten, Linear + ReLU per hidden layer, then a linear classifier."""
import numbers

import torch.nn as nn
import torch.nn.functional as F

from ..errors import ParameterError
from .base import check_int, is_int


class MLP(nn.Module):
    """MLP on flattened inputs; its features are the hidden activations (after ReLU), the last of
    which feeds the classifier."""

    def __init__(self, in_features, hidden=(256, 256), num_classes=10):
        super().__init__()
        in_features = check_int("in_features", in_features)
        num_classes = check_int("num_classes", num_classes)
        hidden = (hidden,) if isinstance(hidden, numbers.Integral) else hidden
        if not (isinstance(hidden, (list, tuple)) and hidden and all(is_int(h) for h in hidden)):
            raise ParameterError("hidden", hidden, "a non-empty tuple of integers >= 1, e.g. (256, 256)")
        hidden = tuple(int(h) for h in hidden)
        widths = (in_features, *hidden)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.classifier = nn.Linear(widths[-1], num_classes)
        self.num_classes = num_classes
        self.feature_channels = list(hidden)
        self.input_shape = (in_features,)

    def forward(self, x, return_features=False):
        h = x.flatten(1)
        features = []
        for layer in self.layers:
            h = F.relu(layer(h))
            features.append(h)
        logits = self.classifier(h)
        return (logits, features) if return_features else logits
