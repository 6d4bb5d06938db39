"""MetaDistiller's label generator (Liu et al., ECCV 2020, Eq. 5): the stage maps of a `MultiExit` fused
top-down, like a feature pyramid, into one soft target per shallow exit.

    generator = LabelGenerator.for_model(net)                       # on the net's device and dtype
    outputs, maps = net(x, all_exits=True, return_features=True)
    u = generator([m.detach() for m in maps])                      # [u_1, ..., u_{K-1}]; T_k = softmax(u_k / tau)

    F^_K = conv1x1(F_K)
    F^_k = conv3x3( Upsample(F^_{k+1}) + conv1x1(F_k) ),   k = K-1, ..., 1                (5)

Upsampling is bilinear to F_k's actual size (the paper: "bilinear interpolation to match the spatial size
of the feature map from two neighboring stages"), so odd sizes and stages that keep the resolution work.
A bottleneck head per shallow exit ("an additional bottleneck module") turns F^_k into logits u_k. Choices
the paper leaves open: the fused width (default half the last stage's channels); BYOT bottleneck heads with
BatchNorm whatever exits the network has; the heads' last linear layers start at zero, so an untrained
generator gives uniform targets rather than confident random ones.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import config
from ..errors import ParameterError
from .multi_exit import ExitHead, reduction


def upsample(fused, size):
    """Eq. (5)'s UpSampling: bilinear, to the spatial `size` of the stage below."""
    return F.interpolate(fused, size=size, mode="bilinear", align_corners=False)


class LabelGenerator(nn.Module):
    """Top-down fusion of the stage maps F_1..F_K (Eq. 5) and one bottleneck head per shallower exit."""

    def __init__(self, stage_shapes, num_classes, *, width=None, head="bottleneck", batch_norm=True):
        super().__init__()
        channels = [shape[0] for shape in stage_shapes]
        if len(channels) < 2:
            raise ParameterError("stage_shapes", stage_shapes, "the (C, H, W) of at least 2 stages")
        width = max(1, channels[-1] // 2) if width is None else config.check("generator_width", width)
        last_channels = stage_shapes[-1][0]
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)        # conv1x1(F_k)
        self.smooth = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in channels[:-1])  # conv3x3
        self.heads = nn.ModuleList(
            ExitHead(width, num_classes, kind=head, out_channels=last_channels,
                     factor=reduction(shape, stage_shapes[-1]), batch_norm=batch_norm)
            for shape in stage_shapes[:-1])
        for head_k in self.heads:  # an untrained generator gives uniform targets, not confident random ones
            nn.init.zeros_(head_k.classifier.weight)
            nn.init.zeros_(head_k.classifier.bias)

    @classmethod
    def for_model(cls, model, width=None, head="bottleneck"):
        """A generator for a MultiExit's stages, on the model's device and dtype."""
        reference = next(model.parameters())
        return cls(model.stage_shapes, model.num_classes, width=width, head=head).to(reference.device,
                                                                                     reference.dtype)

    def fuse(self, maps):
        """[F^_1, ..., F^_K] from [F_1, ..., F_K] (Eq. 5)."""
        fused = [None] * len(maps)
        fused[-1] = self.lateral[-1](maps[-1])                   # the last stage: only the 1x1 conv
        for k in range(len(maps) - 2, -1, -1):
            fused[k] = self.smooth[k](upsample(fused[k + 1], maps[k].shape[-2:]) + self.lateral[k](maps[k]))
        return fused

    def forward(self, maps):
        """Soft-target logits [u_1, ..., u_{K-1}]; T_k = softmax(u_k / tau)."""
        fused = self.fuse(maps)
        return [head(f) for head, f in zip(self.heads, fused[:-1])]


@torch.no_grad()
def generated_targets(model, generator, x, batch_size=1024):
    """The generator's soft-target logits [u_1, ..., u_{K-1}] and the exits' logits [S_1, ..., S_K] for
    inputs `x`, both in eval mode (running statistics); modes are restored."""
    modes = model.training, generator.training
    model.eval()
    generator.eval()
    us, ss = [], []
    for start in range(0, len(x), batch_size):
        outputs, maps = model(x[start:start + batch_size], all_exits=True, return_features=True)
        us.append(generator(maps))
        ss.append(outputs)
    model.train(modes[0])
    generator.train(modes[1])
    return [torch.cat(t) for t in zip(*us)], [torch.cat(t) for t in zip(*ss)]
