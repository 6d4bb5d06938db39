"""MMKD's networks (Zhang, Chen, Wang, ICME 2023): the meta-weight nets phi and the student theta with its
feature regressors, plus the frozen teachers' outputs they read. The method is `kdlab.methods.mmkd`.

    nets = MMKDNets(num_classes=10, num_teachers=4, batch_size=50)   # phi = (logit net, feature net)
    wrapper = DistillationStudent(student, teacher_channels=[64, 256, 256, 256])
    logits, feature, aligned = wrapper(x)                             # aligned[k] = r_k(feature)

The matched features (`feature_index=None`, `last_feature_index`): each model's last convolutional map, the
official code's `feat[-2]`, when the student and every teacher have one; else every model's feature vector
(`features[-1]`: an MLP's last hidden layer, a CNN's globally pooled last map). A student map larger than
teacher k's is average-pooled to its size BEFORE r_k (`pool_to`), as the code's `MatchFeature` does.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class MetaWeightNet(nn.Module):
    """Two fully connected layers, ReLU then softmax over the K teachers (the paper's Eqs. 2 and 5):
    w = softmax(W2 relu(W1 a + b1) + b2); hidden width in // 2, as in the official code."""

    def __init__(self, in_features, num_teachers, hidden=None):
        super().__init__()
        hidden = hidden or max(in_features // 2, 1)
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, num_teachers)

    def forward(self, inputs):
        return F.softmax(self.fc2(F.relu(self.fc1(inputs))), dim=-1)


class MMKDNets(nn.Module):
    """phi: the logit meta-weight net (input width C(K+1)) and the feature meta-weight net (input width
    B(K+1): one row of the K + 1 batch similarity matrices, so the batch size is fixed)."""

    def __init__(self, num_classes, num_teachers, batch_size):
        super().__init__()
        self.logit_net = MetaWeightNet(num_classes * (num_teachers + 1), num_teachers)
        self.feature_net = MetaWeightNet(batch_size * (num_teachers + 1), num_teachers)


class Regressor(nn.Module):
    """r_k: maps the student's feature into teacher k's space. Linear-ReLU for feature vectors;
    conv1x1-BN-ReLU for feature maps (the official code's `Embed` without `--convs`)."""

    def __init__(self, in_channels, out_channels, maps=False):
        super().__init__()
        self.maps = maps
        if maps:
            self.body = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                      nn.BatchNorm2d(out_channels), nn.ReLU())
        else:
            self.body = nn.Sequential(nn.Linear(in_channels, out_channels), nn.ReLU())

    def forward(self, x):
        return self.body(x)


def pool_to(feature, size):
    """A feature map average-pooled to at most `size` = (H, W) in each dimension (the official code pools
    the student's map to the teacher's before the regressor); vectors, and `size` None, pass unchanged."""
    if feature.dim() != 4 or size is None:
        return feature
    target = tuple(min(a, b) for a, b in zip(feature.shape[-2:], size))
    return feature if target == tuple(feature.shape[-2:]) else F.adaptive_avg_pool2d(feature, target)


class DistillationStudent(nn.Module):
    """theta: the student and its K regressors as one module, so that one functional call (and one
    optimizer) covers both. `forward(x)` -> (logits, the student's feature, [r_k(pool_to(feature, size_k))
    for each teacher k]); `teacher_sizes[k]` is teacher k's map size (H, W), or None for vectors."""

    def __init__(self, student, teacher_channels, feature_index=-1, maps=False, teacher_sizes=None):
        super().__init__()
        self.student = student
        self.feature_index = feature_index
        self.teacher_sizes = list(teacher_sizes) if teacher_sizes is not None else [None] * len(teacher_channels)
        channels = student.feature_channels[feature_index]
        self.regressors = nn.ModuleList(Regressor(channels, c, maps) for c in teacher_channels)

    def forward(self, x):
        logits, features = self.student(x, return_features=True)
        feature = features[self.feature_index]
        return logits, feature, [r(pool_to(feature, size)) for r, size in zip(self.regressors, self.teacher_sizes)]


@torch.no_grad()
def teacher_outputs(teachers, x, feature_index=-1, batch_size=1024):
    """Frozen teachers' logits (N, K, C) and features (one (N, ...) tensor per teacher), in eval mode."""
    logits, features = [], [[] for _ in teachers]
    for t in teachers:
        t.eval()
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size]
        row = []
        for k, t in enumerate(teachers):
            z, feats = t(xb, return_features=True)
            row.append(z)
            features[k].append(feats[feature_index])
        logits.append(torch.stack(row, dim=1))
    return torch.cat(logits), [torch.cat(f) for f in features]


def num_classes_of(model, probe=None):
    """The number of classes a model predicts: its `num_classes`, else the width of its logits on `probe`."""
    count = getattr(model, "num_classes", None)
    if count is None and probe is not None:
        with torch.no_grad():
            count = model(probe[:1]).shape[-1]
    return count


def teacher_rows(cache, index):
    """The rows `index` of cached `teacher_outputs`: (logits, [features])."""
    return cache[0][index], [f[index] for f in cache[1]]


@torch.no_grad()
def last_feature_index(models, probe):
    """-2 (the last convolutional map, the official code's `feat[-2]`) when every model in `models` has one
    on the inputs `probe`, else -1 (every model's feature vector). Probed in eval mode, modes restored."""
    modes = [m.training for m in models]
    try:
        features = [m.eval()(probe, return_features=True)[1] for m in models]
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)
    return -2 if all(len(f) > 1 and f[-2].dim() == 4 for f in features) else -1


def build_modules(student, teachers, data, batch_size, seed, feature_index=None):
    """(DistillationStudent, MMKDNets) for `data`, on its device and dtype, initialised from `seed` inside
    `fork_rng` (the global random state is left as it was). `feature_index` None: `last_feature_index`;
    the wrapper keeps the index used. Feature maps get convolutional regressors."""
    x = data.x_train
    index = last_feature_index([student, *teachers], x[:2]) if feature_index is None else feature_index
    probe = teacher_outputs(teachers, x[:2], index)[1]
    sizes = [tuple(f.shape[-2:]) if f.dim() == 4 else None for f in probe]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        wrapper = DistillationStudent(student, [f.shape[1] for f in probe], index, probe[0].dim() == 4, sizes)
        wrapper = wrapper.to(device=x.device, dtype=x.dtype)
        nets = MMKDNets(data.num_classes, len(teachers), batch_size).to(x.device, x.dtype)
    return wrapper, nets
