"""Which features MMKD matches and where it pools them, as the official code (Rorozhl/MMKD) does: each model's
last convolutional map (the code's `feat[-2]`) by default, every model's vector where one has no map (an MLP:
notebooks 05 and 08 in class), and a student map larger than a teacher's average-pooled to the teacher's size
BEFORE the regressor r_k (the code's `MatchFeature`); a larger teacher map is pooled to the student's.
The planted bugs at the end reintroduce the two deviations this replaced."""
from unittest.mock import patch

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from kdlab.data.base import DataSplits
from kdlab.methods import mmkd
from kdlab.models import MLP, SmallCNN, meta_weight
from kdlab.models.base import StagedNet
from kdlab.models.meta_weight import teacher_outputs
from kdlab.train import fit
from tests.mutation import assert_caught


def staged(channels, strides, num_classes=3):
    """A tiny CNN on (1, 8, 8): one 3x3 conv + ReLU per entry (the first is the stem), then global pooling."""
    layers, c_in = [], 1
    for c, s in zip(channels, strides):
        layers.append(nn.Sequential(nn.Conv2d(c_in, c, 3, s, 1), nn.ReLU()))
        c_in = c
    return StagedNet(layers[0], layers[1:], nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()),
                     nn.Linear(c_in, num_classes), feature_channels=[*channels, c_in], input_shape=(1, 8, 8))


def image_data(n=24):
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(n, 1, 8, 8, generator=g), torch.arange(n) % 3
    return DataSplits("maps", x, y, x[:12], y[:12], 3, (1, 8, 8))


def trained(student, teachers):
    method = mmkd.MMKD(student, teachers, buffer_size=8, meta_every=1, beta=5.0)
    fit(method, image_data(), epochs=1, lr=0.05, batch_size=8, seed=0, progress=False)
    return method


def check_the_student_map_is_pooled_before_its_regressor():
    torch.manual_seed(0)
    # student's last map 4x4; teacher 0's is 2x2 (smaller: pool the student first), teacher 1's 8x8 (larger)
    method = trained(staged((3, 4), (1, 2)), [SmallCNN(3, width=2), staged((5, 6), (1, 1))])
    assert method.feature_index == -2, "CNN student and CNN teachers: the last convolutional maps"
    wrapper, x = method.wrapper.eval(), image_data().x_train[:8]
    with torch.no_grad():
        _, feature, aligned = wrapper(x)
        r0, r1 = wrapper.regressors
        expected = [r0(F.adaptive_avg_pool2d(feature, (2, 2))), r1(feature)]
        t_feats = teacher_outputs(method.teachers, x, -2)[1]
        mse = mmkd.per_teacher_feature_mse(aligned, t_feats)
    assert feature.shape[-2:] == (4, 4) and t_feats[0].shape[-2:] == (2, 2) and t_feats[1].shape[-2:] == (8, 8)
    for k in range(2):
        assert aligned[k].shape == expected[k].shape and torch.equal(aligned[k], expected[k]), \
            f"r_{k} must see the student's map pooled to at most teacher {k}'s size"
    by_hand = torch.stack([(expected[0] - t_feats[0]).pow(2).mean((1, 2, 3)),
                           (expected[1] - F.adaptive_avg_pool2d(t_feats[1], (4, 4))).pow(2).mean((1, 2, 3))], 1)
    assert torch.allclose(mse, by_hand, rtol=1e-6, atol=0)


def check_the_default_layer_is_the_last_map_and_vectors_with_an_mlp():
    torch.manual_seed(0)
    cnns = trained(SmallCNN(3, width=2), [SmallCNN(3, width=4), SmallCNN(3, width=3)])
    assert cnns.feature_index == -2 and all(r.maps for r in cnns.wrapper.regressors)
    assert all(f.dim() == 4 for f in cnns.cache[1]), "the cached teacher features are the last maps"
    assert [r.body[0].in_channels for r in cnns.wrapper.regressors] == [8, 8]
    for student, teachers in ((SmallCNN(3, width=2), [SmallCNN(3, width=4), MLP(64, hidden=(6,), num_classes=3)]),
                              (MLP(64, hidden=(5,), num_classes=3), [SmallCNN(3, width=4), SmallCNN(3, width=3)])):
        mixed = trained(student, teachers)   # notebook 08 (class) and notebook 05 (class): vectors, as before
        assert mixed.feature_index == -1 and not any(r.maps for r in mixed.wrapper.regressors)


def check_the_probe_leaves_modes_and_running_statistics_alone():
    torch.manual_seed(0)
    student, teacher = SmallCNN(3, width=2).train(), SmallCNN(3, width=3).eval()
    before = {k: v.clone() for k, v in student.state_dict().items()}
    assert meta_weight.last_feature_index([student, teacher], image_data().x_train[:2]) == -2
    assert student.training and not teacher.training
    assert all(torch.equal(v, before[k]) for k, v in student.state_dict().items()), "BatchNorm buffers moved"


def test_the_student_map_is_pooled_before_its_regressor_as_the_official_code():
    check_the_student_map_is_pooled_before_its_regressor()


def test_the_default_layer_is_the_last_convolutional_map_and_vectors_where_an_mlp_takes_part():
    check_the_default_layer_is_the_last_map_and_vectors_with_an_mlp()


def test_choosing_the_layer_leaves_the_models_modes_and_running_statistics_alone():
    check_the_probe_leaves_modes_and_running_statistics_alone()


def _probe_in_train_mode(models, probe):
    with torch.no_grad():
        features = [m(probe, return_features=True)[1] for m in models]
    return -2 if all(len(f) > 1 and f[-2].dim() == 4 for f in features) else -1


MUTANTS = {
    "regressor applied before pooling (the old deviation)":
        (lambda: patch.object(meta_weight, "pool_to", lambda feature, size: feature),
         check_the_student_map_is_pooled_before_its_regressor),
    "default layer: the pooled vector of every model (the old deviation)":
        (lambda: patch.object(meta_weight, "last_feature_index", lambda models, probe: -1),
         check_the_default_layer_is_the_last_map_and_vectors_with_an_mlp),
    "layer chosen by a train-mode forward (BatchNorm statistics move)":
        (lambda: patch.object(meta_weight, "last_feature_index", _probe_in_train_mode),
         check_the_probe_leaves_modes_and_running_statistics_alone),
}


@pytest.mark.parametrize("name", MUTANTS)
def test_planted_bug_is_caught(name):
    mutant, check = MUTANTS[name]
    assert_caught(check, mutant)
