"""torchvision's ResNet and MobileNetV2 with the kit's feature contract: the 2025 feature-distillation
preprint's pair (ResNet-101 `layer3` -> MobileNetV2 at stride 16, CIFAR-10 at 84x84), for the full profile.

    teacher = paper_teacher(10)                 # ImageNet weights (downloaded once), a new 10-way head
    student = paper_student(10, seed=0)         # MobileNetV2 width 1.0, random initial weights
    logits, features = teacher(x, return_features=True)    # features[2] is layer3
"""
import torch
import torch.nn as nn

from ..errors import DatasetUnavailableError


class ResNetFeatures(nn.Module):
    """A torchvision ResNet with the kit's feature contract: features = [layer1, layer2, layer3, layer4,
    pooled], so `features[2]` is `layer3` (the paper's distillation source)."""

    def __init__(self, resnet):
        super().__init__()
        self.net = resnet

    def forward(self, x, return_features=False):
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        features = []
        for layer in (n.layer1, n.layer2, n.layer3, n.layer4):
            x = layer(x)
            features.append(x)
        pooled = torch.flatten(n.avgpool(x), 1)
        features.append(pooled)
        logits = n.fc(pooled)
        return (logits, features) if return_features else logits


class MobileNetV2Features(nn.Module):
    """A torchvision MobileNetV2 with the kit's feature contract: features at strides 4, 8, 16, 32 and the
    pooled vector; `features[2]` is the output of `features[:14]` (96 channels, stride 16)."""

    BOUNDS = (0, 4, 7, 14, 19)

    def __init__(self, mobilenet):
        super().__init__()
        self.net = mobilenet

    def forward(self, x, return_features=False):
        features = []
        for start, stop in zip(self.BOUNDS, self.BOUNDS[1:]):
            x = self.net.features[start:stop](x)
            features.append(x)
        pooled = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        features.append(pooled)
        logits = self.net.classifier(pooled)
        return (logits, features) if return_features else logits


def paper_student(num_classes=10, seed=0, device="cpu"):
    """torchvision's MobileNetV2 (width 1.0), random initial weights from `seed`, with the feature contract."""
    from torchvision import models

    torch.manual_seed(seed)
    return MobileNetV2Features(models.mobilenet_v2(weights=None, num_classes=num_classes)).to(device)


def paper_teacher(num_classes=10, *, pretrained=True, log=print):
    """torchvision's ResNet-101 with ImageNet weights (downloaded once) and a new `num_classes` head,
    with the feature contract (`features[2]` is layer3)."""
    from torchvision import models

    weights = models.ResNet101_Weights.IMAGENET1K_V2 if pretrained else None
    try:
        resnet = models.resnet101(weights=weights)
    except Exception as error:  # no internet, or a broken download
        raise DatasetUnavailableError(
            f"the ImageNet weights of ResNet-101 could not be downloaded ({type(error).__name__}: {error}); "
            "run the full profile with internet access once (torchvision caches them), or use "
            "pretrained=False, or the class profile, which needs no download") from error
    resnet.fc = nn.Linear(resnet.fc.in_features, num_classes)
    log(f"teacher ResNet-101 ({'ImageNet weights' if pretrained else 'random init'}) with a {num_classes}-way head")
    return ResNetFeatures(resnet)
