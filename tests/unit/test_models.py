"""The model zoo: reference architectures, the feature contract, and clear errors."""
import pytest
import torch
import torch.nn.functional as F

from kdlab.errors import ParameterError
from kdlab.models import (CNN1D, MLP, CifarResNet, MobileNetV2, SmallCNN, StagedNet, VGG, WideResNet,
                          available, count_parameters, create)
from kdlab.models.mobilenetv2 import InvertedResidual
from kdlab.models.resnet_cifar import BasicBlock
from kdlab.models.wrn import PreActBlock

# Trainable parameters for num_classes=100, computed by instantiating the reference models of
# HobbitLong/RepDistiller `models/__init__.py` (`model_dict`, which maps vggN to vggN_bn and
# MobileNetV2 to mobile_half): `models/resnet.py`, `models/wrn.py`, `models/vgg.py`,
# `models/mobilenetv2.py`, and summing `p.numel()` over `parameters()`.
REFERENCE_PARAMETERS = {
    "resnet8": 83_892,
    "resnet14": 181_108,
    "resnet20": 278_324,
    "resnet32": 472_756,
    "resnet44": 667_188,
    "resnet56": 861_620,
    "resnet110": 1_736_564,
    "resnet8x4": 1_233_540,
    "resnet32x4": 7_433_860,
    "wrn_16_1": 180_916,
    "wrn_16_2": 703_284,
    "wrn_40_1": 569_780,
    "wrn_40_2": 2_255_156,
    "vgg8": 3_965_028,
    "vgg11": 9_277_284,
    "vgg13": 9_462_180,
    "mobile_half": 812_836,
}

# Shapes (without the batch) of the reference's `is_feat=True` features for a 2x3x32x32 input,
# from the same reference models.
_RESNET = [(16, 32, 32), (16, 32, 32), (32, 16, 16), (64, 8, 8), (64,)]
_RESNET_X4 = [(32, 32, 32), (64, 32, 32), (128, 16, 16), (256, 8, 8), (256,)]
_WRN_2 = [(16, 32, 32), (32, 32, 32), (64, 16, 16), (128, 8, 8), (128,)]
_VGG = [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 4, 4), (512,)]
REFERENCE_FEATURE_SHAPES = {
    **{f"resnet{d}": _RESNET for d in (8, 14, 20, 32, 44, 56, 110)},
    "resnet8x4": _RESNET_X4, "resnet32x4": _RESNET_X4,
    "wrn_16_1": _RESNET, "wrn_40_1": _RESNET, "wrn_16_2": _WRN_2, "wrn_40_2": _WRN_2,
    "vgg8": _VGG, "vgg11": _VGG, "vgg13": _VGG,
    "mobile_half": [(16, 16, 16), (12, 16, 16), (16, 8, 8), (48, 4, 4), (160, 2, 2), (1280,)],
}


@pytest.fixture(scope="module")
def cifar_runs():
    """Each CIFAR model built once, run once on a batch of 2 in eval mode."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    runs = {}
    for name in REFERENCE_PARAMETERS:
        model = create(name, num_classes=100).eval()
        with torch.no_grad():
            logits, features = model(x, return_features=True)
        runs[name] = (model, x, logits, features)
    return runs


def small_models():
    torch.manual_seed(0)
    return [
        (MLP(64, hidden=(32, 16), num_classes=10), torch.randn(2, 1, 8, 8)),
        (SmallCNN(num_classes=10, width=8), torch.randn(2, 1, 8, 8)),
        (CNN1D(num_classes=10), torch.randn(2, 40)),
    ]


def test_registry_lists_every_zoo_model():
    for name in [*REFERENCE_PARAMETERS, "mlp", "small_cnn", "cnn1d", "conv4"]:
        assert name in available()


@pytest.mark.parametrize("name", list(REFERENCE_PARAMETERS))
def test_parameter_count_equals_repdistiller(cifar_runs, name):
    model = cifar_runs[name][0]
    assert count_parameters(model) == REFERENCE_PARAMETERS[name]


@pytest.mark.parametrize("name", list(REFERENCE_PARAMETERS))
def test_cifar_output_and_feature_shapes(cifar_runs, name):
    model, _, logits, features = cifar_runs[name]
    assert logits.shape == (2, 100)
    assert [tuple(f.shape) for f in features] == [(2, *s) for s in REFERENCE_FEATURE_SHAPES[name]]
    assert model.num_classes == 100
    assert model.feature_channels == [s[0] for s in REFERENCE_FEATURE_SHAPES[name]]


@pytest.mark.parametrize("name", list(REFERENCE_PARAMETERS))
def test_cifar_features_are_the_stage_boundaries(cifar_runs, name):
    """Re-running each part on the recorded features reproduces the next feature and the logits,
    so no feature was changed in place after it was recorded."""
    model, x, logits, features = cifar_runs[name]
    with torch.no_grad():
        assert torch.allclose(model.stem(x), features[0], atol=1e-5)
        for stage, before, after in zip(model.stages, features[:-2], features[1:-1]):
            assert torch.allclose(stage(before), after, atol=1e-5)
        assert torch.allclose(model.head(features[-2]), features[-1], atol=1e-5)
        assert torch.allclose(model.classifier(features[-1]), logits, atol=1e-5)
        assert torch.equal(model(x), logits)


@pytest.mark.parametrize("index", range(3))
def test_small_models_keep_the_feature_contract(index):
    model, x = small_models()[index]
    model.eval()
    logits, features = model(x, return_features=True)
    assert logits.shape == (2, 10) and model.num_classes == 10
    assert [f.shape[1] for f in features] == model.feature_channels
    assert torch.allclose(model.classifier(features[-1]), logits, atol=1e-6)
    assert torch.equal(model(x), logits)


def test_mlp_features_are_the_hidden_activations():
    torch.manual_seed(0)
    model = MLP(6, hidden=(5, 4), num_classes=3)
    x = torch.randn(7, 2, 3)
    _, features = model(x, return_features=True)
    h1 = torch.relu(x.reshape(7, 6) @ model.layers[0].weight.T + model.layers[0].bias)
    h2 = torch.relu(h1 @ model.layers[1].weight.T + model.layers[1].bias)
    assert torch.allclose(features[0], h1) and torch.allclose(features[1], h2)


def test_mlp_parameter_count_by_hand():
    assert count_parameters(MLP(4, hidden=(3,), num_classes=2)) == (4 * 3 + 3) + (3 * 2 + 2)


def test_count_parameters_skips_frozen_parameters():
    model = MLP(4, hidden=(3,), num_classes=2)
    model.classifier.requires_grad_(False)
    assert count_parameters(model) == 4 * 3 + 3


def test_small_cnn_spatial_sizes_on_digits():
    _, features = SmallCNN(width=8)(torch.randn(2, 1, 8, 8), return_features=True)
    assert [tuple(f.shape[1:]) for f in features] == [(8, 8, 8), (8, 8, 8), (16, 4, 4), (32, 2, 2), (32,)]
    assert isinstance(SmallCNN(), StagedNet) and len(SmallCNN().stages) == 3


def test_cnn1d_matches_the_mnist1d_convbase():
    # greydanus/mnist1d notebooks/models.py ConvBase: Conv1d(1,25,5,s2,p1), 2x Conv1d(25,25,3,s2,p1),
    # Linear(125, 10); lengths 40 -> 19 -> 10 -> 5
    model = CNN1D()
    assert count_parameters(model) == (25 * 5 + 25) + 2 * (25 * 25 * 3 + 25) + (125 * 10 + 10)
    _, features = model(torch.randn(2, 40), return_features=True)
    assert [tuple(f.shape[1:]) for f in features] == [(25, 19), (25, 10), (25, 5), (125,)]


def test_cnn1d_accepts_flat_and_channel_inputs():
    model, x = CNN1D(), torch.randn(3, 40)
    assert torch.equal(model(x), model(x.unsqueeze(1)))


def test_cnn1d_trains():
    """Plain gradient descent memorises 64 random labels (torch.optim is avoided on purpose: building
    an optimizer imports torch._dynamo, seconds on a busy CPU)."""
    torch.manual_seed(0)
    model = CNN1D()
    x, y = torch.randn(64, 40), torch.randint(0, 10, (64,))
    losses = []
    for _ in range(60):
        loss = F.cross_entropy(model(x), y)
        model.zero_grad()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.5 * p.grad
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]


def test_resnet_block_with_silent_branch_is_relu_of_identity():
    block = BasicBlock(4, 4)
    torch.nn.init.zeros_(block.bn2.weight)
    x = torch.randn(2, 4, 5, 5)
    assert torch.allclose(block(x), torch.relu(x))


def test_resnet_block_projection_shortcut():
    torch.manual_seed(0)
    block = BasicBlock(4, 8, stride=2)
    torch.nn.init.zeros_(block.bn2.weight)
    x = torch.randn(2, 4, 6, 6)
    projected = F.batch_norm(F.conv2d(x, block.shortcut[0].weight, stride=2), None, None, training=True)
    assert torch.allclose(block(x), torch.relu(projected), atol=1e-5)


def test_wrn_shortcut_reads_the_preactivated_input():
    torch.manual_seed(0)
    block = PreActBlock(4, 8, stride=2)
    torch.nn.init.zeros_(block.conv2.weight)  # the residual branch is then exactly zero
    torch.nn.init.uniform_(block.bn1.weight, 0.5, 1.5)
    torch.nn.init.uniform_(block.bn1.bias, -0.5, 0.5)
    x = torch.randn(2, 4, 6, 6)
    activated = torch.relu(F.batch_norm(x, None, None, block.bn1.weight, block.bn1.bias, training=True))
    assert torch.allclose(block(x), F.conv2d(activated, block.shortcut.weight, stride=2), atol=1e-5)
    same_width = PreActBlock(4, 4)
    torch.nn.init.zeros_(same_width.conv2.weight)
    assert torch.equal(same_width(x), x)


@pytest.mark.parametrize("stride, channels, residual", [(1, 4, True), (2, 4, False), (1, 6, False)])
def test_inverted_residual_adds_input_only_when_shape_is_kept(stride, channels, residual):
    block = InvertedResidual(4, channels, stride, expansion=6)
    torch.nn.init.zeros_(block.conv[-1].weight)  # projection BN outputs zero
    x = torch.randn(2, 4, 6, 6)
    out = block(x)
    assert torch.equal(out, x) if residual else torch.count_nonzero(out) == 0


def test_inverted_residual_matches_the_reference_definition():
    """pw conv-BN-ReLU, depthwise conv-BN-ReLU, pw conv-BN, written out with functional ops; the BN
    scales are large so that a clipping ReLU6 would differ from the reference's ReLU."""
    torch.manual_seed(0)
    block = InvertedResidual(4, 4, 1, expansion=3)
    norms = [m for m in block.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        torch.nn.init.uniform_(norm.weight, 2.0, 10.0)
        torch.nn.init.uniform_(norm.bias, -1.0, 1.0)
    x = torch.randn(2, 4, 5, 5)

    def bn(h, norm):
        return F.batch_norm(h, None, None, norm.weight, norm.bias, training=True)

    hidden = torch.relu(bn(F.conv2d(x, block.conv[0][0].weight), norms[0]))
    hidden = torch.relu(bn(F.conv2d(hidden, block.conv[1].weight, padding=1, groups=12), norms[1]))
    expected = x + bn(F.conv2d(hidden, block.conv[4].weight), norms[2])
    assert hidden.max() > 6
    assert torch.allclose(block(x), expected, atol=1e-4)


def test_models_are_usable_in_train_mode_with_backward():
    model = create("resnet8", num_classes=10)
    logits, features = model(torch.randn(2, 3, 32, 32), return_features=True)
    (logits.sum() + features[-2].pow(2).mean()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_conv4_is_created_lazily():
    pytest.importorskip("kdlab.models.conv4")
    model = create("conv4", num_classes=5)
    assert model.num_classes == 5


# ---- bad input: one clear message naming the parameter, the value and what is allowed ----

def test_unknown_model_name():
    with pytest.raises(ParameterError) as error:
        create("resnet9", num_classes=10)
    message = str(error.value)
    assert "model='resnet9'" in message and "one of:" in message and "resnet32x4" in message


def _raises(name, value, call):
    with pytest.raises(ParameterError) as error:
        call()
    assert error.value.name == name and error.value.value == value
    assert f"{name}={value!r}" in str(error.value)


BAD_INPUTS = {
    "num_classes zero": ("num_classes", 0, lambda: create("resnet8", num_classes=0)),
    "num_classes float": ("num_classes", 10.0, lambda: create("resnet8", num_classes=10.0)),
    "num_classes bool": ("num_classes", True, lambda: MLP(4, num_classes=True)),
    "resnet depth": ("depth", 9, lambda: CifarResNet(depth=9)),
    "resnet widths": ("widths", (16, 32), lambda: CifarResNet(widths=(16, 32))),
    "wrn depth": ("depth", 20, lambda: WideResNet(depth=20)),
    "wrn widen": ("widen_factor", 0, lambda: WideResNet(widen_factor=0)),
    "vgg depth": ("depth", 16, lambda: VGG(depth=16)),
    "mobilenet width": ("width_mult", 0.0, lambda: MobileNetV2(width_mult=0.0)),
    "mobilenet expansion": ("expansion", 0, lambda: MobileNetV2(expansion=0)),
    "mlp hidden empty": ("hidden", (), lambda: MLP(4, hidden=())),
    "mlp hidden negative": ("hidden", (8, -1), lambda: MLP(4, hidden=(8, -1))),
    "mlp in_features": ("in_features", 0, lambda: MLP(0)),
    "small_cnn width": ("width", 0, lambda: SmallCNN(width=0)),
    "cnn1d channels": ("channels", -3, lambda: CNN1D(channels=-3)),
    "cnn1d input_length": ("input_length", 2, lambda: CNN1D(input_length=2)),
    "fixed kwarg overridden": ("depth", 20, lambda: create("resnet8", num_classes=10, depth=20)),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_names_parameter_and_value(case):
    _raises(*BAD_INPUTS[case])


def _shufflenet_v1_parameters(num_classes=100, groups=3, stem=24, widths=(240, 480, 960), units=(4, 8, 4)):
    """Hand count from the paper's unit (Fig. 2 b, c): 1x1 group conv to a quarter of the branch output, BN,
    3x3 depthwise, BN, 1x1 group conv, BN; the first unit's first conv ungrouped; bias-free convs."""
    total, in_channels = 3 * stem + 2 * stem, stem
    for index, (width, count) in enumerate(zip(widths, units)):
        for unit in range(count):
            made = width - in_channels if unit == 0 else width
            mid = made // 4
            first_groups = 1 if (index == 0 and unit == 0) else groups
            total += in_channels * mid // first_groups + 2 * mid + 9 * mid + 2 * mid + mid * made // groups + 2 * made
            in_channels = width
    return total + widths[-1] * num_classes + num_classes


def _cifar_resnet_parameters(blocks, widths, stem, strides, num_classes=100):
    """Hand count of a ResNet of BasicBlocks: 3x3 conv stem + BN, two 3x3 conv + BN per block, a 1x1 conv + BN
    shortcut where the shape changes, a linear classifier."""
    total, in_channels = 27 * stem + 2 * stem, stem
    for count, width, stride in zip(blocks, widths, strides):
        for block in range(count):
            s = stride if block == 0 else 1
            total += 9 * in_channels * width + 2 * width + 9 * width * width + 2 * width
            if s != 1 or in_channels != width:
                total += in_channels * width + 2 * width
            in_channels = width
    return total + widths[-1] * num_classes + num_classes


@pytest.mark.parametrize("name, expected, shapes", [
    ("resnet18", _cifar_resnet_parameters((2, 2, 2, 2), (64, 128, 256, 512), 64, (1, 2, 2, 2)),
     [(64, 32, 32), (64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512,)]),
    ("resnet20x4", _cifar_resnet_parameters((3, 3, 3), (64, 128, 256), 32, (1, 2, 2)), _RESNET_X4),
    ("shufflenet_v1", _shufflenet_v1_parameters(),
     [(24, 32, 32), (240, 16, 16), (480, 8, 8), (960, 4, 4), (960,)]),
])
def test_models_of_the_added_paper_rows(name, expected, shapes):
    """MetaDistiller Table 4's ResNet-18 and MMKD Table I's ResNet20x4 -> ShuffleNetV1 pair: hand-counted
    parameters (ResNet-18 at 100 classes is the 11.2 M the self-distillation papers print), the feature contract."""
    torch.manual_seed(0)
    model = create(name, num_classes=100).eval()
    assert count_parameters(model) == expected
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits, features = model(x, return_features=True)
        assert torch.equal(model(x), logits)
    assert logits.shape == (2, 100)
    assert [tuple(f.shape[1:]) for f in features] == shapes
    assert model.feature_channels == [s[0] for s in shapes]


def test_resnet18_count_is_the_published_size():
    assert _cifar_resnet_parameters((2, 2, 2, 2), (64, 128, 256, 512), 64, (1, 2, 2, 2)) == 11_220_132


def test_channel_shuffle_interleaves_the_groups():
    from kdlab.models.shufflenetv1 import channel_shuffle

    x = torch.arange(6.0).view(1, 6, 1, 1)            # groups of 2 channels: (0 1) (2 3) (4 5) with g = 3
    assert channel_shuffle(x, 3).flatten().tolist() == [0.0, 2.0, 4.0, 1.0, 3.0, 5.0]


def test_resnet18_splits_into_four_exits():
    from kdlab.models.multi_exit import MultiExit

    net = MultiExit(create("resnet18", num_classes=10), 4, head="bottleneck")
    outputs = net(torch.randn(2, 3, 32, 32), all_exits=True)
    assert [tuple(o.shape) for o in outputs] == [(2, 10)] * 4
