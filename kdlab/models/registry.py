"""Every model by name: `create("resnet32x4", num_classes=100)`, `available()`, `count_parameters`.

The CIFAR names are RepDistiller's (`vgg8` there is `vgg8_bn`; `mobile_half` is MobileNetV2 with
expansion 6 and width 0.5).
"""
from ..errors import ParameterError
from .base import check_int
from .cnn1d import CNN1D
from .mlp import MLP
from .mobilenetv2 import MobileNetV2
from .resnet18_cifar import ResNet18Cifar
from .resnet_cifar import CifarResNet
from .shufflenetv1 import ShuffleNetV1
from .small_cnn import SmallCNN
from .vgg import VGG
from .wrn import WideResNet


def _conv4(**kwargs):
    from .conv4 import Conv4  # its own module; imported only when asked for

    return Conv4(**kwargs)


# name -> (constructor, the keyword arguments the name fixes)
_MODELS = {
    "mlp": (MLP, {}),
    "small_cnn": (SmallCNN, {}),
    "cnn1d": (CNN1D, {}),
    "conv4": (_conv4, {}),
    **{f"resnet{d}": (CifarResNet, {"depth": d}) for d in (8, 14, 20, 32, 44, 56, 110)},
    **{f"resnet{d}x4": (CifarResNet, {"depth": d, "widths": (32, 64, 128, 256)}) for d in (8, 20, 32)},
    "resnet18": (ResNet18Cifar, {}),
    **{f"wrn_{d}_{k}": (WideResNet, {"depth": d, "widen_factor": k}) for d in (16, 40) for k in (1, 2)},
    **{f"vgg{d}": (VGG, {"depth": d}) for d in (8, 11, 13)},
    "mobile_half": (MobileNetV2, {"width_mult": 0.5, "expansion": 6}),
    "shufflenet_v1": (ShuffleNetV1, {}),
}


def available():
    """The model names `create` accepts."""
    return list(_MODELS)


def create(name, num_classes, **kwargs):
    """A fresh model `name` with `num_classes` outputs; `kwargs` go to its constructor
    (e.g. `create("mlp", 10, in_features=64, hidden=(128,))`)."""
    if not isinstance(name, str) or name not in _MODELS:
        raise ParameterError("model", name, "one of: " + ", ".join(available()))
    num_classes = check_int("num_classes", num_classes)
    constructor, fixed = _MODELS[name]
    clashes = sorted(fixed.keys() & kwargs.keys())
    if clashes:
        key = clashes[0]
        raise ParameterError(key, kwargs[key], f"left out for '{name}', which fixes {key}={fixed[key]!r}")
    return constructor(num_classes=num_classes, **fixed, **kwargs)


def count_parameters(model):
    """Number of trainable parameters (those with requires_grad)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
