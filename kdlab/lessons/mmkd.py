"""Notebook 05 (MMKD): the teacher zoo, experiments (pilot study, comparison, ablation, beta sweep), ARI, panels.

Every experiment is a pure function of its arguments and a seed, so a slider, a test and a sweep get the
same numbers for the same settings. The method itself lives in `kdlab.methods.mmkd`.
"""
import dataclasses
import time
from types import SimpleNamespace

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F

from .. import cache, config, paths
from ..methods.mmkd import MMKD, teacher_weights
from ..methods.mmkd_baselines import fixed_weights
from ..models import MLP, SmallCNN, create
from ..models.meta_weight import teacher_outputs
from ..train import accuracy, fit
from ..widgets import Panel, slider
from .kd import new_student

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


def train_teacher(spec, data, augment=None):
    """Train one teacher of `spec` on `data` (with its label noise, if any); returns the model (eval mode)."""
    model = build_teacher(spec, data).to(data.x_train.device)
    train_data = data
    if spec.get("noise", 0) > 0:
        y = noisy_labels(data.y_train, spec["noise"], spec.get("seed", 0), data.num_classes)
        train_data = dataclasses.replace(data, y_train=y)
    fit(model, train_data, epochs=spec["epochs"], lr=spec["lr"], batch_size=spec.get("batch_size", 64),
        seed=spec.get("seed", 0), weight_decay=spec.get("weight_decay", 5e-4), augment=augment,
        progress=augment is not None)
    return model.eval()


def teacher_key(name, spec, data_config):
    return cache.config_key({"teacher": name, **spec, **data_config, "version": 1})


def teacher_zoo(data, data_config, specs=None, *, root=None, log=print, augment=None):
    """Train the teachers once and cache their weights (atomic write, checksum, weights_only load), keyed
    by `config_key` of the teacher's spec and the data's configuration. Returns {name: teacher} (eval)."""
    specs = TEACHER_SPECS if specs is None else specs
    teachers = {}
    for name, spec in specs.items():
        path = paths.cache_dir(root) / f"mmkd-teacher-{name}-{teacher_key(name, spec, data_config)}.pt"
        fresh = not path.exists()
        started = time.perf_counter()
        state = cache.load_or_build(path, lambda: {k: v.cpu() for k, v in
                                                   train_teacher(spec, data, augment).state_dict().items()}, log=log)
        model = build_teacher(spec, data).to(data.x_train.device)
        model.load_state_dict(state)
        teachers[name] = model.eval()
        log(f"teacher {name:<6} {'trained' if fresh else 'loaded from cache'} in "
            f"{time.perf_counter() - started:.1f} s ({path.name})")
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


# -- students and runs ---------------------------------------------------------------------------------
def run_ce(data, *, seed, hidden, epochs, lr, batch_size, architecture=None, schedule="cosine", augment=None):
    """The student trained from scratch with labels only (the paper's 'Student' row)."""
    student = new_student(data, hidden, seed, architecture)
    history = fit(student, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, progress=False,
                  schedule=schedule, augment=augment)
    return history.last["test_acc"]


def run_method(data, teachers, *, seed, hidden, recipe, architecture=None, **overrides):
    """One student trained with `fit(MMKD(...), ...)`, the options of `recipe | overrides` sent to `fit`
    (the loop's; evaluated at the end unless `eval_every` says otherwise) or to MMKD; returns (test
    accuracy, the trained method (`.model` the student, `.nets` the weight nets), history)."""
    options = {**recipe, **overrides}
    fit_options = {name: options.pop(name) for name in ("epochs", "lr", "batch_size", "schedule", "augment",
                                                         "eval_every", "callbacks") if name in options}
    fit_options.setdefault("eval_every", fit_options["epochs"])
    method = MMKD(new_student(data, hidden, seed, architecture), list(teachers.values()), **options)
    history = fit(method, data, seed=seed, progress=False, **fit_options)
    return history.last["test_acc"], method, history


def compare(data, teachers, variants, *, seeds, hidden, recipe, architecture=None, log=print):
    """Every variant on every seed, paired (same init and batch order within a seed). A variant is a dict
    of `run_method` overrides, "ce" (labels only), or ("teachers", {name: teacher}, overrides) for another
    teacher set. Returns ({name: [test accuracy per seed]}, {name: [seconds per run]},
    {(name, seed): (method, history)})."""
    accs, seconds, models = {name: [] for name in variants}, {name: [] for name in variants}, {}
    for seed in seeds:
        row = []
        for name, overrides in variants.items():
            started = time.perf_counter()
            if overrides == "ce":
                acc = run_ce(data, seed=seed, hidden=hidden, epochs=recipe["epochs"], lr=recipe["lr"],
                             batch_size=recipe["batch_size"], architecture=architecture,
                             schedule=recipe.get("schedule", "cosine"), augment=recipe.get("augment"))
            else:
                pool = teachers
                if isinstance(overrides, tuple):
                    _, pool, overrides = overrides
                acc, method, history = run_method(data, pool, seed=seed, hidden=hidden, recipe=recipe,
                                                  architecture=architecture, **overrides)
                models[(name, seed)] = (method, history)
            accs[name].append(acc)
            seconds[name].append(time.perf_counter() - started)
            row.append(f"{name} {acc:.1f}")
        log(f"seed {seed}: " + ", ".join(row))
    return accs, seconds, models


# -- the paper's metric -----------------------------------------------------------------------------------
def ari(method, baseline, student):
    """Average Relative Improvement (%) of `method` over `baseline` (the paper's Table I footnote):
    ARI = (1/M) sum_i (Acc_method_i - Acc_baseline_i) / (Acc_baseline_i - Acc_student_i) * 100,
    over M teacher-student settings; `student` is the student trained from scratch."""
    config.check("ari_settings", [np.ndim(v) == 1 and len(v) for v in (method, baseline, student)])
    method, baseline, student = (np.asarray(v, dtype=float) for v in (method, baseline, student))
    return float(np.mean((method - baseline) / (baseline - student)) * 100)


# Table I of the paper (CIFAR-100, three teachers of one architecture): mean test accuracy per setting
PAPER_TABLE_I = {
    "settings": ["VGG13->VGG8", "ResNet32x4->MobileNetV2", "ResNet32x4->VGG8", "WRN-40-2->MobileNetV2",
                 "WRN-40-2->WRN-40-1", "ResNet20x4->ShuffleNetV1"],
    "Student": [70.74, 65.64, 70.74, 65.64, 71.93, 71.70],
    "AVER": [73.98, 68.42, 73.23, 69.67, 74.56, 75.73],
    "EBKD": [73.97, 68.06, 73.63, 69.17, 74.37, 75.82],
    "CA-MKD": [74.27, 69.19, 75.08, 70.87, 75.27, 77.19],
    "MMKD": [74.86, 69.70, 75.66, 71.23, 75.61, 77.76],
    "ARI": {"AVER": 49.97, "EBKD": 53.64, "CA-MKD": 11.98},
}


# -- ensembles and weights ----------------------------------------------------------------------------------
@torch.no_grad()
def ensemble_accuracy(teachers, x, y, weights):
    """Accuracy (%) of the weighted ensemble sum_k w_ik softmax(z^tk_i) with per-sample weights (N, K)."""
    logits, _ = teacher_outputs(list(teachers.values()), x)
    probs = (weights.unsqueeze(-1) * F.softmax(logits, dim=-1)).sum(1)
    return 100.0 * float((probs.argmax(-1) == y).float().mean())


@torch.no_grad()
def baseline_weights(teachers, x, y, weighting):
    """AVER / EBKD / CA-MKD weights (N, K) for inputs x (CA-MKD needs the labels y)."""
    config.check("weighting", weighting)
    return fixed_weights(weighting, teacher_outputs(list(teachers.values()), x)[0], y)


@torch.no_grad()
def weights_on(method, x, y, batch_size):
    """Per-sample (logit, feature) teacher weights on inputs `x` as a trained MMKD's nets give them (the
    method is put in eval mode); whole batches of `batch_size` only (the feature net's width): N // B * B rows."""
    method.eval()
    student, t_logits, t_feats = method.model, *teacher_outputs(method.teachers, x, method.feature_index)
    options = SimpleNamespace(**{k: getattr(method, k) for k in ("temperature", "weighting", "logit_input", "gram")},
                              logit_weights=True, feature_weights=True, feature_loss=True, beta=1.0)
    w_logit, w_feat = [], []
    for start in range(0, len(x) // batch_size * batch_size, batch_size):
        rows = slice(start, start + batch_size)
        logits, features = student(x[rows], return_features=True)
        wl, wf = teacher_weights(method.nets, (logits, features[method.feature_index], None), y[rows],
                                 t_logits[rows], [f[rows] for f in t_feats], options)
        w_logit.append(wl)
        w_feat.append(wf)
    return torch.cat(w_logit), torch.cat(w_feat)


def plot_weight_map(ax, weights, names, order=None):
    """Per-sample weights as a heat map: one row per teacher, one column per sample."""
    w = weights if order is None else weights[order]
    image = ax.imshow(w.t().cpu().numpy(), aspect="auto", cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("training sample")
    return image


# -- pictures of the method --------------------------------------------------------------------------------
def draw_weight_nets(fig, num_classes, num_teachers, batch_size):
    """The two meta-weight networks as block diagrams, with this notebook's widths."""
    k, c, b = num_teachers, num_classes, batch_size
    rows = [("logit net (E3)", [f"teacher logits\nz^t1..z^t{k}\n+ sg(student z^s)", f"concat\n{c}(K+1) = {c * (k + 1)}",
                                 f"FC {c * (k + 1)} -> {c * (k + 1) // 2}\nReLU", f"FC {c * (k + 1) // 2} -> {k}",
                                 f"softmax\nw^l: {k} weights"]),
            ("feature net (E6)", [f"Gram rows G_i\nof {k} teachers\n+ sg(student)", f"concat\n{b}(K+1) = {b * (k + 1)}",
                                  f"FC {b * (k + 1)} -> {b * (k + 1) // 2}\nReLU", f"FC {b * (k + 1) // 2} -> {k}",
                                  f"softmax\nw^f: {k} weights"])]
    ax = fig.add_subplot(111, xlim=(0, 10), ylim=(0, 4.2))
    ax.axis("off")
    colors = ["#dde8f5", "#eeeeee", "#fbe3c9", "#fbe3c9", "#d9f0d3"]
    for r, (title, boxes) in enumerate(rows):
        y = 2.9 - 2.1 * r
        ax.text(0.02, y + 0.95, title, fontsize=10, weight="bold")
        for i, text in enumerate(boxes):
            x = 0.1 + 2.0 * i
            ax.add_patch(plt.Rectangle((x, y - 0.45), 1.6, 1.15, facecolor=colors[i], edgecolor="0.3"))
            ax.text(x + 0.8, y + 0.12, text, ha="center", va="center", fontsize=8)
            if i < len(boxes) - 1:
                ax.annotate("", xy=(x + 2.0, y + 0.12), xytext=(x + 1.6, y + 0.12),
                            arrowprops=dict(arrowstyle="->", color="0.3"))
    return ax


def weight_table(weights_by_method, groups, names):
    """Markdown: mean weight per teacher, for each method, within each group of samples."""
    lines = ["| weighting | samples | n | " + " | ".join(names) + " |", "|---|---|---:|" + "---:|" * len(names)]
    for method, weights in weights_by_method.items():
        for group, mask in groups.items():
            means = weights[mask].mean(0).tolist() if mask.any() else [float("nan")] * len(names)
            lines.append(f"| {method} | {group} | {int(mask.sum())} | " + " | ".join(f"{m:.2f}" for m in means) + " |")
    return "\n".join(lines)


# -- the cheap panel ---------------------------------------------------------------------------------------
def mmkd_panel(data, teachers, *, hidden, recipe, seed=0, temperature=4.0, beta=10.0, meta_every=5,
               teacher_names=None):
    """TEMPERATURE, BETA and META_EVERY sliders: retrain one short MMKD student and show the mean teacher
    weights per epoch and the final accuracy (a few seconds per setting)."""
    names = teacher_names or list(teachers)

    def compute(TEMPERATURE, BETA, META_EVERY):
        started = time.perf_counter()
        acc, _, history = run_method(data, teachers, seed=seed, hidden=hidden, recipe=recipe,
                                     temperature=TEMPERATURE, beta=BETA, meta_every=META_EVERY)
        curves = {name: history.series(f"w_logit_{k}") for k, name in enumerate(names)}
        return {"temperature": TEMPERATURE, "beta": BETA, "meta_every": META_EVERY, "acc": acc,
                "epochs": history.series("epoch"), "weights": curves,
                "final_weights": {name: c[-1] for name, c in curves.items()},
                "meta_epochs": [r["epoch"] for r in history.records if "meta_loss" in r],
                "meta_loss": history.series("meta_loss"), "seconds": time.perf_counter() - started}

    def draw(d, fig):
        ax_w, ax_m = fig.subplots(1, 2)
        for name, curve in d["weights"].items():
            ax_w.plot(d["epochs"], curve, label=name)
        ax_w.set(xlabel="epoch", ylabel="mean logit weight", ylim=(0, 1))
        ax_w.legend(fontsize=8)
        ax_m.plot(d["meta_epochs"], d["meta_loss"], color="C3")
        ax_m.set(xlabel="epoch", ylabel="meta loss (hard batch CE)")
        fig.tight_layout(rect=(0, 0, 1, 0.9))  # room for the panel's title

    def readout(d):
        weights = ", ".join(f"{n} {w:.2f}" for n, w in d["final_weights"].items())
        return (f"T = {d['temperature']:g}, beta = {d['beta']:g}, meta step every {d['meta_every']}: "
                f"student {d['acc']:.1f}%; last-epoch weights {weights}; {d['seconds']:.1f} s")

    return Panel(compute, draw, {"TEMPERATURE": slider(temperature, 1.0, 10.0, 0.5),
                                 "BETA": slider(beta, 0.0, 100.0, 1.0),
                                 "META_EVERY": slider(meta_every, 1, 20, 1)},
                 readout=readout, title="MMKD: teacher weights while the student trains", figsize=(9, 3))
