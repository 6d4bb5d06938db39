"""A backbone split into K stages with an exit after each of the first K-1: the deeply-supervised
network (Lee et al. 2015) that self-distillation (Zhang et al. 2019, "Be your own teacher") and
MetaDistiller (Liu et al. 2020) train.

    net = MultiExit(SmallCNN(width=16), num_exits=3)        # exits after stages 1 and 2
    logits = net(x)                                          # the deployed network: the final output only
    outputs = net(x, all_exits=True)                         # [S_1, ..., S_K], shallow to deep
    outputs, stage_maps = net(x, all_exits=True, return_features=True)   # and [F_1, ..., F_K]
    exit_accuracies(net, x_test, y_test)                     # per exit, final, ensemble of all exits

Any `StagedNet` whose stages output 2-D feature maps can be split: the small CNN of the offline
notebooks and the CIFAR zoo (ResNets, WRNs, VGGs, MobileNetV2). `split_after` says after which backbone
stages the K-1 exits sit (default: after each stage when K equals the number of stages). Stage k's
output F_k feeds exit k; the backbone's own head and classifier are exit K.

Exit heads (`head=`):
  "bottleneck"  BYOT's branch bottleneck: conv1x1(C_k -> c/4)-BN-ReLU, a k x k conv with stride k that
                brings the map to the last stage's resolution (c/4 -> c/4)-BN-ReLU, conv1x1(c/4 -> c)-BN-ReLU,
                global average pool, linear; c = the last stage's channels (the paper's ResNets);
  "pool"        global average pool, linear (the paper's VGG exits): the lightest exit, so the
                shallow-vs-deep capacity gap stays as large as the backbone makes it.
At inference the exits can be dropped: `net(x)` runs the backbone alone.
"""
import torch
import torch.nn as nn

from ..errors import ParameterError
from .base import StagedNet, is_int

HEADS = ("bottleneck", "pool")


def _conv_bn_relu(in_channels, out_channels, kernel, stride, batch_norm):
    layers = [nn.Conv2d(in_channels, out_channels, kernel, stride, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU())
    return layers


class ExitHead(nn.Module):
    """Feature map (B, C, H, W) -> class logits; see the module docstring for the two kinds."""

    def __init__(self, in_channels, num_classes, *, kind="bottleneck", out_channels=None, factor=(1, 1),
                 batch_norm=True):
        super().__init__()
        if kind not in HEADS:
            raise ParameterError("head", kind, "one of " + ", ".join(map(repr, HEADS)))
        layers = []
        width = in_channels
        if kind == "bottleneck":
            width = out_channels or in_channels
            inner = max(1, width // 4)
            layers += _conv_bn_relu(in_channels, inner, 1, 1, batch_norm)
            layers += _conv_bn_relu(inner, inner, factor, factor, batch_norm)
            layers += _conv_bn_relu(inner, width, 1, 1, batch_norm)
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x):
        return self.classifier(self.body(x))


def reduction(shape, last_shape):
    """(kernel = stride) per spatial axis that brings a (C, H, W) map to about the last stage's size."""
    return tuple(max(1, size // last) for size, last in zip(shape[1:], last_shape[1:]))


def _has_batch_norm(module):
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def _stage_shapes(backbone):
    """(C, H, W) of every backbone stage output, from one forward pass of zeros (eval mode, no grad)."""
    reference = next(backbone.parameters())
    x = torch.zeros(2, *backbone.input_shape, dtype=reference.dtype, device=reference.device)
    was_training = backbone.training
    backbone.eval()
    shapes = []
    try:
        with torch.no_grad():
            x = backbone.stem(x)
            for stage in backbone.stages:
                x = stage(x)
                shapes.append(tuple(x.shape[1:]))
    finally:
        backbone.train(was_training)
    return shapes


def _default_split(num_stages, num_exits):
    """Exits spread evenly over the stages; after each stage when there are as many exits as stages."""
    return tuple(round(num_stages * k / num_exits) for k in range(1, num_exits))


class MultiExit(nn.Module):
    """`backbone` (a StagedNet) split into `num_exits` = K stages, an exit after each of the first K-1."""

    def __init__(self, backbone, num_exits=None, *, split_after=None, head="bottleneck"):
        super().__init__()
        if not isinstance(backbone, StagedNet) or len(backbone.stages) < 2:
            raise ParameterError("backbone", type(backbone).__name__,
                                 "a StagedNet with at least 2 stages of 2-D feature maps (stem, stages, head, "
                                 "classifier), e.g. SmallCNN or a CIFAR ResNet from kdlab.models.create")
        num_stages = len(backbone.stages)
        num_exits = num_stages if num_exits is None else num_exits
        if not is_int(num_exits, 2) or num_exits > num_stages:
            raise ParameterError("num_exits", num_exits,
                                 f"an integer in [2, {num_stages}]: {type(backbone).__name__} has "
                                 f"{num_stages} stages to split")
        split_after = _default_split(num_stages, num_exits) if split_after is None else split_after
        if not (isinstance(split_after, (list, tuple)) and len(split_after) == num_exits - 1
                and all(is_int(s, 1) and s < num_stages for s in split_after)
                and all(a < b for a, b in zip(split_after, split_after[1:]))):
            raise ParameterError("split_after", split_after,
                                 f"{num_exits - 1} increasing stage numbers in [1, {num_stages - 1}] "
                                 f"({type(backbone).__name__} has {num_stages} stages; the last one ends "
                                 "at the final classifier)")
        if head not in HEADS:
            raise ParameterError("head", head, "one of " + ", ".join(map(repr, HEADS)))
        try:
            shapes = _stage_shapes(backbone)
        except RuntimeError as error:  # e.g. a 1-D network whose forward reshapes its input first
            raise ParameterError("backbone", type(backbone).__name__,
                                 "a StagedNet whose stem and stages run on inputs of its input_shape "
                                 f"{backbone.input_shape} ({error})") from None
        if any(len(shape) != 3 for shape in shapes):
            raise ParameterError("backbone", type(backbone).__name__,
                                 "a StagedNet whose stages output 2-D feature maps (B, C, H, W); "
                                 f"this one's stage outputs have shapes {shapes}")
        self.backbone = backbone
        self.split_after = tuple(int(s) for s in split_after)
        self.num_exits = num_exits
        self.num_classes = backbone.num_classes
        self.input_shape = backbone.input_shape
        self.head_kind = head
        ends = [*self.split_after, num_stages]
        self.stage_shapes = [shapes[s - 1] for s in ends]  # (C_k, H_k, W_k) of F_1 .. F_K
        self.stage_channels = [shape[0] for shape in self.stage_shapes]
        self.batch_norm = _has_batch_norm(backbone)
        self.exits = nn.ModuleList(
            ExitHead(shape[0], self.num_classes, kind=head, out_channels=self.stage_channels[-1],
                     factor=reduction(shape, self.stage_shapes[-1]), batch_norm=self.batch_norm)
            for shape in self.stage_shapes[:-1])

    def forward(self, x, return_features=False, all_exits=False):
        """Backbone logits (the deployed network); with `all_exits`, the list [S_1, ..., S_K], and with
        `return_features` too, also the stage maps [F_1, ..., F_K]. `return_features` alone keeps the
        backbone's feature contract: (logits, [stem, stage outputs ..., pooled vector])."""
        if not all_exits:
            return self.backbone(x, return_features=return_features)
        ends = set(self.split_after)
        x = self.backbone.stem(x)
        maps = []
        for index, stage in enumerate(self.backbone.stages, start=1):
            x = stage(x)
            if index in ends:
                maps.append(x)
        maps.append(x)
        outputs = [exit_head(f) for exit_head, f in zip(self.exits, maps)]
        outputs.append(self.backbone.classifier(self.backbone.head(x)))
        return (outputs, maps) if return_features else outputs


def ensemble(outputs):
    """The ensemble of all exits: the mean of their softmax probabilities."""
    return torch.stack([o.softmax(dim=-1) for o in outputs]).mean(dim=0)


@torch.no_grad()
def exit_accuracies(model, x, y, batch_size=1024):
    """Top-1 accuracy (%) of every exit ("exit1" ... "exit{K-1}", "final") and of their ensemble, in eval
    mode; the model is put back in the mode it was in."""
    was_training = model.training
    model.eval()
    correct = None
    for start in range(0, len(x), batch_size):
        outputs = model(x[start:start + batch_size], all_exits=True)
        yb = y[start:start + batch_size]
        hits = [(o.argmax(dim=-1) == yb).sum().item() for o in outputs]
        hits.append((ensemble(outputs).argmax(dim=-1) == yb).sum().item())
        correct = hits if correct is None else [a + b for a, b in zip(correct, hits)]
    model.train(was_training)
    names = [f"exit{k}" for k in range(1, model.num_exits)] + ["final", "ensemble"]
    return {name: 100.0 * c / max(len(x), 1) for name, c in zip(names, correct)}
