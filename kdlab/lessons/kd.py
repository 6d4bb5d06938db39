"""Notebook 01 (Hinton knowledge distillation): experiments and panels.

Everything here is a pure function of its arguments (plus a seed), so a slider, a test and a sweep
all get the same numbers for the same settings.
"""
import dataclasses
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch

from .. import config
from ..losses import entropy, soft_targets
from ..models import MLP, create
from ..train import cross_entropy, distill_from, fit, fit_seeds
from ..viz import soft_target_bars
from ..widgets import Panel, slider


# -- soft targets and temperature ---------------------------------------------------------------
def temperature_view(logits, temperature, temperatures=None):
    """Soft targets of one logit vector at `temperature`, and the entropy curve over `temperatures`."""
    config.check("TEMPERATURE", temperature)
    logits = torch.as_tensor(logits, dtype=torch.float64)
    temperatures = np.geomspace(0.25, 50, 60) if temperatures is None else np.asarray(temperatures)
    curve = [float(entropy(soft_targets(logits, float(t)))) for t in temperatures]
    probs = soft_targets(logits, temperature)
    return {
        "temperature": temperature,
        "probs": probs.tolist(),
        "entropy": float(entropy(probs)),
        "max_entropy": math.log(len(logits)),
        "temperatures": temperatures.tolist(),
        "entropy_curve": curve,
    }


def temperature_panel(logits, true_class=None, class_names=None):
    """A TEMPERATURE slider over one teacher logit vector: soft-target bars and the entropy curve."""

    def draw(data, fig):
        ax_bars, ax_curve = fig.subplots(1, 2)
        soft_target_bars(ax_bars, data["probs"], class_names, highlight=true_class,
                         title=f"teacher soft targets at T = {data['temperature']:g}")
        ax_bars.set_xlabel("class (highlighted: the true class)")
        ax_bars.set_ylabel("probability")
        ax_curve.semilogx(data["temperatures"], data["entropy_curve"], color="C0", label="entropy of the soft targets")
        ax_curve.axhline(data["max_entropy"], ls="--", color="0.5", label="uniform distribution (log C)")
        ax_curve.scatter([data["temperature"]], [data["entropy"]], color="C3", zorder=3,
                         label=f"T = {data['temperature']:g}")
        ax_curve.set_title("entropy against temperature", fontsize=10)
        ax_curve.set_xlabel("temperature T (log scale)")
        ax_curve.set_ylabel("entropy (nats)")
        ax_curve.legend(fontsize=8, loc="lower right")
        fig.tight_layout()

    return Panel(lambda TEMPERATURE: temperature_view(logits, TEMPERATURE), draw,
                 {"TEMPERATURE": slider(4.0, 0.5, 20.0, 0.5)},
                 readout=lambda d: f"T = {d['temperature']:g}: entropy {d['entropy']:.3f} nats "
                                   f"(uniform {d['max_entropy']:.3f})")


# -- teacher and student training ---------------------------------------------------------------
def train_model(model, data, objective=cross_entropy, *, seed=0, callbacks=(), **recipe):
    """Seed, then fit: the same seed gives the same initial weights order and batch order."""
    history = fit(model, data, objective, seed=seed, callbacks=callbacks, **recipe)
    return history


def new_student(data, hidden, seed, architecture=None):
    """A fresh student with seeded initial weights (same seed -> identical init for CE and KD).

    An MLP with `hidden` units by default; `architecture` names a zoo model instead (e.g. "resnet8x4").
    """
    torch.manual_seed(seed)
    if architecture is not None:
        return create(architecture, num_classes=data.num_classes).to(data.x_train.device)
    in_features = int(np.prod(data.input_shape))
    return MLP(in_features, hidden=hidden, num_classes=data.num_classes).to(data.x_train.device)


def student_run(data, teacher, *, alpha, temperature, seed, hidden=(8,), recipe=None, callbacks=(),
                student=None):
    """Train one student with `(1 - alpha) CE + alpha KD` (alpha = 0: plain CE); returns (model, history)."""
    recipe = dict(recipe or {})
    student = new_student(data, hidden, seed, student)
    objective = cross_entropy if alpha == 0 else distill_from(teacher, alpha, temperature)
    history = fit(student, data, objective, seed=seed, callbacks=callbacks, **recipe)
    return student, history


def ce_vs_kd(data, teacher, *, seed, alpha, temperature, hidden, recipe, student=None):
    """Paired run: CE student and KD student from the same init and batch order; final test accuracies."""
    _, ce = student_run(data, teacher, alpha=0.0, temperature=temperature, seed=seed, hidden=hidden,
                        recipe=recipe, student=student)
    _, kd = student_run(data, teacher, alpha=alpha, temperature=temperature, seed=seed, hidden=hidden,
                        recipe=recipe, student=student)
    return {"ce": ce.last["test_acc"], "kd": kd.last["test_acc"]}


def ce_vs_kd_seeds(data, teacher, seeds, *, alpha, temperature, hidden, recipe):
    """`ce_vs_kd` for every seed of `seeds` at once (`kdlab.train.fit_seeds`: the MLP students of all seeds
    stacked and stepped together, the students of `ce_vs_kd` seed by seed to float32 rounding); {"ce": [...], "kd": [...]}
    of final test accuracies in the order of `seeds`."""
    seeds = list(seeds)
    options = {k: v for k, v in (recipe or {}).items() if k not in ("progress", "callbacks")}
    options["eval_every"] = options.get("epochs", 10)
    def make(seed):
        return new_student(data, hidden, seed)

    _, ce = fit_seeds(make, data, seeds, **options)
    _, kd = fit_seeds(make, data, seeds, teacher=teacher, alpha=alpha, temperature=temperature, **options)
    return {"ce": [h.last["test_acc"] for h in ce], "kd": [h.last["test_acc"] for h in kd]}


def retrain_panel(data, teacher, *, hidden=(8,), recipe=None, seed=0, alpha=0.9, temperature=4.0):
    """ALPHA and TEMPERATURE sliders that retrain the student (CE reference kept fixed) and redraw."""
    _, reference = student_run(data, teacher, alpha=0.0, temperature=1.0, seed=seed, hidden=hidden, recipe=recipe)

    def compute(ALPHA, TEMPERATURE):
        start = time.perf_counter()
        _, history = student_run(data, teacher, alpha=ALPHA, temperature=TEMPERATURE, seed=seed,
                                 hidden=hidden, recipe=recipe)
        return {
            "alpha": ALPHA, "temperature": TEMPERATURE,
            "epochs": history.series("epoch"),
            "test_acc": history.series("test_acc"),
            "train_loss": history.series("loss"),
            "ce_test_acc": reference.series("test_acc"),
            "final_acc": history.last["test_acc"],
            "ce_final_acc": reference.last["test_acc"],
            "seconds": time.perf_counter() - start,
        }

    def draw(data_, fig):
        ax_loss, ax_acc = fig.subplots(1, 2)
        ax_loss.plot(data_["epochs"], data_["train_loss"], color="C1")
        ax_loss.set_title("KD student: training loss", fontsize=10)
        ax_loss.set_xlabel("epoch")
        ax_loss.set_ylabel("(1 - alpha) CE + alpha KD")
        ax_acc.plot(data_["epochs"], data_["ce_test_acc"], label="CE only (fixed reference)", color="0.45", ls="--")
        ax_acc.plot(data_["epochs"], data_["test_acc"], label=f"KD (alpha = {data_['alpha']:g}, T = {data_['temperature']:g})",
                    color="C1")
        ax_acc.set_title("test accuracy per epoch", fontsize=10)
        ax_acc.set_ylabel("test accuracy (%)")
        ax_acc.set_xlabel("epoch")
        ax_acc.legend(fontsize=8, loc="lower right")
        fig.tight_layout()

    return Panel(compute, draw,
                 {"ALPHA": slider(alpha, 0.0, 1.0, 0.05), "TEMPERATURE": slider(temperature, 0.5, 20.0, 0.5)},
                 readout=lambda d: f"student test accuracy {d['final_acc']:.1f}% (CE only {d['ce_final_acc']:.1f}%), "
                                   f"retrained in {d['seconds']:.1f} s")


# -- dark knowledge ---------------------------------------------------------------------------------
@torch.no_grad()
def class_similarity(teacher, x, y, num_classes, temperature=4.0):
    """Mean teacher soft target per true class, with the true class removed and rows renormalised.

    Row c says how the teacher spreads its 'wrong-class' probability for images of class c: the dark
    knowledge a one-hot label throws away.
    """
    teacher.eval()
    probs = soft_targets(teacher(x), temperature)
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    for c in range(num_classes):
        rows = probs[y == c].double().mean(0)
        rows[c] = 0.0
        matrix[c] = rows / rows.sum()
    return matrix


def omitted_class_transfer(data, teacher, omitted, *, alpha, temperature, seed, hidden, recipe):
    """Hinton sec. 3: drop every training image of class `omitted`, then train CE and KD students.

    The CE student never sees the label `omitted`; the KD student sees it only through the teacher's
    soft targets on other digits. Returns each student's accuracy on the test images of that class.
    """
    keep = data.y_train != omitted
    reduced = dataclasses.replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep])
    mask = data.y_test == omitted
    out = {}
    for name, a in (("ce", 0.0), ("kd", alpha)):
        model, _ = student_run(reduced, teacher, alpha=a, temperature=temperature, seed=seed, hidden=hidden,
                               recipe=recipe)
        with torch.no_grad():
            logits = model(data.x_test[mask])
        out[name] = 100.0 * float((logits.argmax(1) == omitted).float().mean())
        out[name + "_mean_prob"] = float(torch.softmax(logits, 1)[:, omitted].mean())
    return out


def plot_similarity(matrix, class_names=None, ax=None):
    """The class-similarity matrix; the diagonal (zero by construction) is left blank so that the colour
    scale spans the off-diagonal values only."""
    ax = ax or plt.gca()
    names = class_names or [str(i) for i in range(len(matrix))]
    shown = np.array(matrix, dtype=float)
    np.fill_diagonal(shown, np.nan)
    image = ax.imshow(shown, cmap="viridis", vmin=np.nanmin(shown), vmax=np.nanmax(shown))
    ax.set_xticks(range(len(names)), names)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("wrong class the teacher points to")
    ax.set_ylabel("true class")
    plt.colorbar(image, ax=ax, fraction=0.046).set_label("share of the wrong-class probability")
    return ax
