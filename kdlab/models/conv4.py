"""Conv-4, MAML's few-shot backbone (Finn et al. 2017, Sec. 5.2; Vinyals et al. 2016).

Four blocks of conv3x3 -> norm -> ReLU -> downsample, then a linear classifier.

- "omniglot": 64 channels, stride-2 convs, global average pooling. Any image size works
  (28x28 -> 14 -> 7 -> 4 -> 2 -> pooled; 16x16 -> 8 -> 4 -> 2 -> 1).
- "miniimagenet": 32 channels in the paper, 2x2 max-pooling, flatten (84x84 -> 5x5x32 = 800).
  The flattened width depends on the image size, so it is fixed by `image_size` (at least 16).

`model(x, return_features=True)` returns `(logits, [block1, block2, block3, block4, pooled])`:
`features[-2]` is the last conv map and `features[-1]` the vector that feeds the classifier.
"""
import torch
import torch.nn as nn

from ..errors import ParameterError
from .base import StagedNet, check_int

VARIANTS = ("omniglot", "miniimagenet")
NORMS = ("batch", "layer", "none")


def _norm_layer(norm, channels):
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "layer":
        return nn.GroupNorm(1, channels)  # one group: normalises each example on its own
    return nn.Identity()


def conv_block(in_channels, out_channels, variant, norm):
    """conv3x3 -> norm -> ReLU -> downsample by 2 (stride-2 conv or 2x2 max-pool)."""
    stride = 2 if variant == "omniglot" else 1
    # a conv bias right before a normalisation is cancelled by its mean subtraction
    layers = [nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=norm == "none"),
              _norm_layer(norm, out_channels), nn.ReLU()]
    if variant == "miniimagenet":
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class Conv4(StagedNet):
    """MAML's Conv-4: `Conv4(in_channels=1, num_classes=5, hidden=64, variant="omniglot")` for
    28x28 glyphs, `Conv4(3, 5, hidden=32, variant="miniimagenet")` for 84x84 images.

    norm: "batch" (BatchNorm2d, as MAML), "layer" (per-example, no batch statistics) or "none".
    image_size: the side of the square input; used only by "miniimagenet" (default 84).
    """

    def __init__(self, in_channels=1, num_classes=5, hidden=64, variant="omniglot", norm="batch",
                 image_size=None):
        in_channels = check_int("in_channels", in_channels)
        num_classes = check_int("num_classes", num_classes)
        hidden = check_int("hidden", hidden)
        if variant not in VARIANTS:
            raise ParameterError("variant", variant, "one of " + ", ".join(map(repr, VARIANTS)))
        if norm not in NORMS:
            raise ParameterError("norm", norm, "one of " + ", ".join(map(repr, NORMS)))
        if variant == "miniimagenet":
            image_size = check_int("image_size", 84 if image_size is None else image_size, minimum=16)
            side = image_size // 16  # four 2x2 max-pools
            head, width = nn.Flatten(), hidden * side * side
        else:
            image_size = 28 if image_size is None else check_int("image_size", image_size)
            head, width = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), hidden
        blocks = [conv_block(in_channels, hidden, variant, norm)]
        blocks += [conv_block(hidden, hidden, variant, norm) for _ in range(3)]
        super().__init__(blocks[0], blocks[1:], head, nn.Linear(width, num_classes),
                         feature_channels=[hidden] * 4 + [width],
                         input_shape=(in_channels, image_size, image_size))
        self.variant, self.norm = variant, norm
        self._init_weights()

    def _init_weights(self):
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x, return_features=False):
        if self.variant == "miniimagenet" and tuple(x.shape[-2:]) != self.input_shape[1:]:
            raise ParameterError("x", f"a batch of {tuple(x.shape[-2:])} images",
                                 f"{self.input_shape[1]}x{self.input_shape[2]} images, the image_size "
                                 "this 'miniimagenet' Conv4 was built for")
        return super().forward(x, return_features=return_features)



def conv4_pair(seed, *, ways, teacher_hidden, student_hidden, in_channels=1, device="cpu"):
    """A wide Conv-4 teacher (seeded `seed`) and a narrow Conv-4 student (seeded `seed + 1000`), the few-shot
    pair of notebooks 06 and 08: every row of a seed starts from the same two initialisations."""
    torch.manual_seed(seed)
    teacher = Conv4(in_channels=in_channels, num_classes=ways, hidden=teacher_hidden).to(device)
    torch.manual_seed(seed + 1000)
    student = Conv4(in_channels=in_channels, num_classes=ways, hidden=student_hidden).to(device)
    return teacher, student
