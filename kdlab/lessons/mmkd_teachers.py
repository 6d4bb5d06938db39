"""Notebook 05 (MMKD): the teacher zoo, four teachers of deliberately different quality, trained once and cached
in the kit's one teacher cache (`kdlab.teachers`), and the report of how good each one is."""
import dataclasses
import functools

import numpy as np
import torch
import torch.nn.functional as F

from ..models import MLP, SmallCNN, create
from ..teachers import trained_teacher
from ..train import accuracy


# -- the teacher zoo -----------------------------------------------------------------------------------
# Four teachers of deliberately different quality on the same 300 training digits. "noisy" memorises
# labels of which NOISE_FRACTION were moved to another class: it is confident, and wrong on half the
# training images, so a confidence-based weighting (EBKD) trusts it most where it should trust it least.
TEACHER_SPECS = {
    "mlp": dict(arch="mlp", hidden=(256, 256), epochs=100, lr=0.01, noise=0.0),
    "cnn": dict(arch="small_cnn", width=16, epochs=60, lr=0.05, noise=0.0),
    "short": dict(arch="mlp", hidden=(256, 256), epochs=5, lr=0.05, noise=0.0),
    "noisy": dict(arch="mlp", hidden=(256, 256), epochs=150, lr=0.1, noise=0.5, weight_decay=0.0),
}
TEACHER_NOTES = {
    "mlp": "MLP 64-256-256-10, fully trained",
    "cnn": "small CNN (width 16), fully trained",
    "short": "MLP 64-256-256-10, stopped early",
    "noisy": "MLP 64-256-256-10, memorised 50% wrong labels",
}
# one look per teacher in every figure: colour from the kit's cycle, plus a line style and marker, so the
# curves stay apart where they overlap and without colour
# (the kit's role colours C1 KD, C2 meta, C3 student, C7 cross-entropy are left to those roles)
TEACHER_STYLES = {"cnn": dict(color="C0", ls="-", marker="o"), "mlp": dict(color="C9", ls="--", marker="s"),
                  "short": dict(color="C5", ls="-.", marker="^"), "noisy": dict(color="C4", ls=":", marker="D")}
OTHER_STYLES = [dict(color=f"C{i}", ls=ls, marker=m) for i, ls, m in ((6, "-", "v"), (8, "--", "P"))]


def teacher_style(name, index=0):
    """Line keywords for teacher `name` (a zoo teacher's own look; others by their position)."""
    return TEACHER_STYLES.get(name, OTHER_STYLES[index % len(OTHER_STYLES)])


def noisy_labels(labels, fraction, seed, num_classes):
    """Move a random `fraction` of the labels to a different class, chosen uniformly (seeded)."""
    g = torch.Generator().manual_seed(seed)
    y = labels.clone().cpu()
    moved = torch.rand(len(y), generator=g) < fraction
    y[moved] = (y[moved] + torch.randint(1, num_classes, (int(moved.sum()),), generator=g)) % num_classes
    return y.to(labels.device)


def build_teacher(spec, data):
    """A fresh, seeded teacher of `spec` (see TEACHER_SPECS; `arch` may also name a zoo model), untrained."""
    torch.manual_seed(spec.get("seed", 0))
    if spec["arch"] == "mlp":
        return MLP(int(np.prod(data.input_shape)), hidden=spec["hidden"], num_classes=data.num_classes)
    if spec["arch"] == "small_cnn":
        return SmallCNN(data.num_classes, width=spec["width"], in_channels=data.input_shape[0])
    return create(spec["arch"], num_classes=data.num_classes)


def teacher_zoo(data, specs=None, *, root=None, log=print, augment=None):
    """The teachers of `specs` (default TEACHER_SPECS), each trained once on `data` (with its label noise, if any)
    and read back after (`kdlab.teachers`, the kit's one teacher cache). Returns {name: teacher} (eval mode)."""
    specs = TEACHER_SPECS if specs is None else specs
    teachers = {}
    for name, spec in specs.items():
        train_data = data
        if spec.get("noise", 0) > 0:
            y = noisy_labels(data.y_train, spec["noise"], spec.get("seed", 0), data.num_classes)
            train_data = dataclasses.replace(data, y_train=y)
        teachers[name], _, _ = trained_teacher(
            functools.partial(build_teacher, spec, data), train_data, seed=spec.get("seed", 0), name=f"mmkd-{name}",
            root=root, log=log, epochs=spec["epochs"], lr=spec["lr"], batch_size=spec.get("batch_size", 64),
            weight_decay=spec.get("weight_decay", 5e-4), augment=augment, progress=augment is not None)
    return teachers


@torch.no_grad()
def teacher_report(teachers, data):
    """Per teacher: test accuracy, accuracy against the true training labels, mean entropy on training data."""
    rows = {}
    for name, t in teachers.items():
        p = F.softmax(t(data.x_train), dim=-1)
        entropy = -(p * p.clamp_min(1e-12).log()).sum(-1)
        rows[name] = {"test_acc": accuracy(t, data.x_test, data.y_test),
                      "train_acc": 100.0 * float((p.argmax(-1) == data.y_train).float().mean()),
                      "train_entropy": float(entropy.mean())}
    return rows
