"""The kdlab model zoo: small offline models and the RepDistiller CIFAR zoo, one feature contract.

    model = create("resnet8x4", num_classes=100)
    logits = model(x)
    logits, features = model(x, return_features=True)   # stem, each stage, pooled vector
    model.feature_channels                               # channels of each feature
    MultiExit(SmallCNN(), num_exits=3)                   # exits after stages for self-distillation
"""
from .base import StagedNet
from .cnn1d import CNN1D
from .label_generator import LabelGenerator
from .mlp import MLP
from .mobilenetv2 import MobileNetV2
from .multi_exit import MultiExit
from .registry import available, count_parameters, create
from .resnet_cifar import CifarResNet
from .small_cnn import SmallCNN
from .vgg import VGG
from .wrn import WideResNet

__all__ = ["available", "create", "count_parameters", "StagedNet", "MLP", "SmallCNN", "CNN1D",
           "CifarResNet", "WideResNet", "VGG", "MobileNetV2", "Conv4", "MultiExit", "LabelGenerator"]


def __getattr__(name):
    if name == "Conv4":  # lives in its own module; imported on first use
        from .conv4 import Conv4

        return Conv4
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
