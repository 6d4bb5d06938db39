"""Notebook 07 (hybrid feature distillation with a MAML adaptation phase): teacher cache, the four-arm
multi-seed comparison (its runs in `feature_meta_runs`), early-convergence measures, the feature-matching picture and the panel.

Every training run is `kdlab.train.fit(FeatureMeta(student, teacher, **settings), data, **recipe)`; this
module only arranges experiments and pictures around it. The paper's torchvision pair (ResNet-101 ->
MobileNetV2 at 84x84) lives in `kdlab.models.torchvision_features`.
"""
import math
import time

import matplotlib.pyplot as plt
import torch

from ..alpha_schedule import SCHEDULES
from ..errors import ParameterError
from ..methods import feature_meta as fm
from ..models import SmallCNN
from ..models.adapter import spatial_plan
from ..teachers import trained_teacher
from ..viz import seed_band
from ..widgets import Panel, choice, slider
from .feature_meta_runs import CURVES, compare, train  # noqa: F401 (the notebook reads lesson.compare)

ARMS = ("baseline", "FD", "FD + adaptation", "FD + adaptation + dynamic alpha")
COLORS = {"baseline": "0.35", "FD": "C0", "FD + adaptation": "C1", "FD + adaptation + dynamic alpha": "C3"}


# -- teacher and students -------------------------------------------------------------------------------
def cached_teacher(data, spec, *, make_model, make_initial=None, augment=None, root=None, log=print):
    """A teacher trained once with cross-entropy (`kdlab.train.fit` with `spec`'s epochs, lr, batch_size and seed)
    and read back after (`kdlab.teachers`, the kit's one teacher cache). `make_initial()` builds the model to
    train (e.g. with downloaded ImageNet weights; default `make_model`). Returns (teacher in eval mode, seconds)."""
    started = time.perf_counter()
    teacher, _, _ = trained_teacher(make_initial or make_model, data, seed=spec["seed"], name=f"feature-meta-{spec['name']}",
                                    root=root, log=log, epochs=spec["epochs"], lr=spec["lr"],
                                    batch_size=spec["batch_size"], augment=augment, progress=None)
    return teacher, time.perf_counter() - started


def new_student(seed, width, device):
    """A fresh SmallCNN student; the same seed gives every arm the same initial weights."""
    torch.manual_seed(seed)
    return SmallCNN(width=width).to(device)


def arm_settings(alpha, alpha_schedule, alpha_end):
    """The four arms of the comparison: keyword arguments for `FeatureMeta`."""
    return {
        "baseline": dict(alpha=0.0, adaptation=False),
        "FD": dict(alpha=alpha, adaptation=False),
        "FD + adaptation": dict(alpha=alpha, adaptation=True),
        "FD + adaptation + dynamic alpha": dict(alpha=alpha, alpha_schedule=alpha_schedule, alpha_end=alpha_end,
                                                adaptation=True),
    }


def first_epoch_reaching(test_acc, threshold):
    """The first epoch (1-based) whose accuracy reaches `threshold`, or nan if none does."""
    return next((epoch for epoch, acc in enumerate(test_acc, start=1) if acc >= threshold), math.nan)


def epochs_to_reach(curves, threshold):
    """Per seed, the first epoch whose test accuracy reaches `threshold`; a run that never does counts as
    epochs + 1 (censored), so paired differences stay defined. Returns (values, number censored)."""
    epochs = curves.shape[1]
    values = [first_epoch_reaching(row, threshold) for row in curves]
    censored = sum(math.isnan(v) for v in values)
    return [epochs + 1 if math.isnan(v) else v for v in values], censored


def early_table(results, epochs=(1, 2)):
    """Per arm, per-seed test accuracy after each of `epochs` (1-based)."""
    return {e: {arm: results[arm]["test_acc"][:, e - 1].tolist() for arm in results} for e in epochs}


def per_epoch_table(results, arms, epochs):
    """Tables 1-2 analogue: mean training loss (the objective each arm trained with, and its CE part) and
    training accuracy at chosen epochs, as Markdown."""
    lines = ["| epoch | " + " | ".join(f"{a}: loss / CE / train acc" for a in arms) + " |",
             "|---:|" + "---:|" * len(arms)]
    for e in epochs:
        cells = [f"{results[a]['loss'][:, e - 1].mean():.3f} / {results[a]['ce'][:, e - 1].mean():.3f} / "
                 f"{results[a]['train_acc'][:, e - 1].mean():.1f}" for a in arms]
        lines.append(f"| {e} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(results, *, threshold=None, title=None):
    """Figures 1-2 analogue with seed bands: CE part of the training loss, training accuracy and test
    accuracy per epoch, and test accuracy against forward-backward passes (equal compute)."""
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.4))
    styles = ["-", "--", "-.", ":"]
    for i, (arm, curves) in enumerate(results.items()):
        color = COLORS.get(arm)
        for ax, key in zip(axes[:3], ("ce", "train_acc", "test_acc")):
            seed_band(ax, curves[key], label=arm, color=color).set_linestyle(styles[i % 4])
        axes[3].plot(curves["passes"].mean(0), curves["test_acc"].mean(0), marker="os^D"[i % 4], ms=3,
                     ls=styles[i % 4], color=color, label=arm)
    axes[0].set_yscale("log")
    for ax, name, ylabel in zip(axes, ("training loss, CE part", "training accuracy", "test accuracy",
                                       "test accuracy against compute"),
                                ("cross-entropy (nats, log scale)", "training accuracy (%)", "test accuracy (%)",
                                 "test accuracy (%), mean over seeds")):
        ax.set_title(name, fontsize=9)
        ax.set_ylabel(ylabel)
        ax.set_xlabel("epoch")
    axes[3].set_xlabel("forward-backward passes (batches)")
    if threshold is not None:
        for ax in axes[2:]:
            ax.axhline(threshold, ls=":", color="0.5", label=f"threshold {threshold:g}%")
    handles, labels = axes[3].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=len(labels), frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


# -- the feature-matching picture -------------------------------------------------------------------------
def matching_table(student_shapes, teacher_shapes):
    """For every pair (student feature i, teacher feature j): what `spatial_plan` does with their sizes,
    or "refused". Shapes without the batch dimension."""
    rows = []
    for i, s in enumerate(student_shapes):
        row = []
        for j, t in enumerate(teacher_shapes):
            try:
                plan = spatial_plan(s, t)
                row.append("same size" if plan == "same" else f"{plan[0]} {plan[1][0]}x{plan[1][1]}")
            except ParameterError:  # this pair cannot be matched
                row.append("refused")
        rows.append(row)
    return rows


def markdown_matching(rows, student_names, teacher_names):
    lines = ["| student \\ teacher | " + " | ".join(teacher_names) + " |", "|---|" + "---|" * len(teacher_names)]
    lines += [f"| {name} | " + " | ".join(row) + " |" for name, row in zip(student_names, rows)]
    return "\n".join(lines)


def draw_architecture(ax, student_shapes, teacher_shapes, student_layer, teacher_layer, names):
    """Two rows of boxes (teacher on top, student below), the matched pair joined by the adapter A."""
    ax.set_xlim(-0.5, len(names) - 0.5)
    ax.set_ylim(-0.2, 2.3)
    ax.axis("off")

    def label(shape):
        return f"{shape[0]} ch\n{shape[1]}x{shape[2]}" if len(shape) == 3 else f"{shape[0]}-vector"

    for row, (shapes, who, layer) in enumerate(((student_shapes, "student", student_layer),
                                                (teacher_shapes, "teacher", teacher_layer))):
        y = 0.3 + 1.5 * row
        for i, (shape, name) in enumerate(zip(shapes, names)):
            matched = i == layer % len(shapes)
            ax.add_patch(plt.Rectangle((i - 0.4, y - 0.28), 0.8, 0.56, fill=True,
                                       color="C1" if matched else "0.88", alpha=0.9 if matched else 1.0))
            ax.text(i, y, f"{name}\n{label(shape)}", ha="center", va="center", fontsize=7)
        ax.text(-0.48, y + 0.38, who, fontsize=8, weight="bold")
    s, t = student_layer % len(student_shapes), teacher_layer % len(teacher_shapes)
    ax.annotate("", xy=(t, 1.52), xytext=(s, 0.58), arrowprops=dict(arrowstyle="->", color="C3", lw=1.5))
    ax.text((s + t) / 2 + 0.08, 1.05, f"A: gain ({student_shapes[s][0]}) + 1x1 conv "
            f"{student_shapes[s][0]}->{teacher_shapes[t][0]}\nL_feat = alpha MSE + (1 - cos)",
            fontsize=7, color="C3")


@torch.no_grad()
def feature_views(model, teacher, x, teacher_layer):
    """For the images `x`: the teacher's map f_T, the student's raw map f_S and the adapted A(f_S), each
    averaged over channels, and the per-image cosine between A(f_S) and f_T."""
    model.eval()
    _, features = model.student(x, return_features=True)
    raw = features[model.student_layer]
    _, adapted = model(x, return_features=True)
    f_t = fm.teacher_features(teacher, x, teacher_layer)
    cos = torch.nn.functional.cosine_similarity(adapted.flatten(1), f_t.flatten(1), dim=1)
    return {"teacher": f_t.mean(1).cpu(), "student": raw.mean(1).cpu(), "adapted": adapted.mean(1).cpu(),
            "cos": cos.cpu(), "images": x[:, 0].cpu()}


def draw_feature_views(views, titles=("input", "teacher f_T", "student f_S", "adapted A(f_S)")):
    n = len(views["images"])
    fig, axes = plt.subplots(n, 4, figsize=(6.4, 1.6 * n), squeeze=False)
    for i in range(n):
        for ax, key in zip(axes[i], ("images", "teacher", "student", "adapted")):
            ax.imshow(views[key][i], cmap="gray" if key == "images" else "viridis")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[i, 3].set_xlabel(f"cos = {float(views['cos'][i]):.2f}", fontsize=7)
    for ax, title in zip(axes[0], titles):
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


# -- the panel -------------------------------------------------------------------------------------------
def retrain_panel(data, teacher, *, recipe, settings, seed, make_student, alpha=0.7, inner_steps=1,
                  schedule="linear", alpha_end=0.1):
    """ALPHA, INNER_STEPS and SCHEDULE (the alpha schedule) retrain a short FD run (INNER_STEPS = 0 switches
    the adaptation phase off) and redraw alpha per epoch, test accuracy and the CE training loss next to a
    fixed baseline. `recipe` goes to `fit`, `settings` to `FeatureMeta`."""
    settings = {k: v for k, v in settings.items() if k not in ("inner_steps", "alpha", "alpha_schedule", "alpha_end")}
    _, reference = train(make_student(seed), teacher, data, seed=seed, recipe=recipe,
                         settings=dict(settings, alpha=0.0, adaptation=False))

    def compute(ALPHA, INNER_STEPS, SCHEDULE):
        start = time.perf_counter()
        _, history = train(make_student(seed), teacher, data, seed=seed, recipe=recipe,
                           settings=dict(settings, alpha=ALPHA, alpha_schedule=SCHEDULE, alpha_end=alpha_end,
                                         adaptation=INNER_STEPS > 0, inner_steps=max(INNER_STEPS, 1)))
        return {"alpha": ALPHA, "inner_steps": INNER_STEPS, "schedule": SCHEDULE,
                "epochs": history.series("epoch"), "alphas": history.series("alpha"),
                "test_acc": history.series("test_acc"), "ce": history.series("ce"),
                "base_test_acc": reference.series("test_acc"), "base_ce": reference.series("ce"),
                "seconds": time.perf_counter() - start}

    def draw(d, fig):
        ax_alpha, ax_acc, ax_loss = fig.subplots(1, 3)
        ax_alpha.plot(d["epochs"], d["alphas"], marker="o", color="C3")
        ax_alpha.set_ylim(-0.05, 1.05)
        ax_alpha.set_title(f"alpha per epoch ({d['schedule']} schedule)", fontsize=9)
        ax_alpha.set_ylabel("alpha (weight of the feature term)")
        ax_acc.plot(d["epochs"], d["base_test_acc"], marker="s", ls="--", color="0.35", label="baseline (CE only)")
        label = f"FD + adaptation ({d['inner_steps']} inner steps)" if d["inner_steps"] else "FD, no adaptation phase"
        ax_acc.plot(d["epochs"], d["test_acc"], marker="o", color="C1", label=label)
        ax_acc.set_title("test accuracy", fontsize=9)
        ax_acc.set_ylabel("test accuracy (%)")
        ax_loss.semilogy(d["epochs"], d["base_ce"], marker="s", ls="--", color="0.35", label="baseline (CE only)")
        ax_loss.semilogy(d["epochs"], d["ce"], marker="o", color="C1", label=label)
        ax_loss.set_title("training loss, cross-entropy part", fontsize=9)
        ax_loss.set_ylabel("cross-entropy (nats, log scale)")
        for ax in (ax_alpha, ax_acc, ax_loss):
            ax.set_xlabel("epoch")
            ax.set_xticks(d["epochs"])
        handles, labels = ax_acc.get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=2, frameon=False)
        fig.tight_layout(rect=(0, 0.1, 1, 1))

    def readout(d):
        return (f"ALPHA={d['alpha']:g} ({d['schedule']}), INNER_STEPS={d['inner_steps']}: test accuracy after "
                f"epoch 1 {d['test_acc'][0]:.1f}% (baseline {d['base_test_acc'][0]:.1f}%), after epoch "
                f"{d['epochs'][-1]} {d['test_acc'][-1]:.1f}% (baseline {d['base_test_acc'][-1]:.1f}%); "
                f"retrained in {d['seconds']:.1f} s")

    return Panel(compute, draw, {"ALPHA": slider(alpha, 0.0, 1.0, 0.05), "INNER_STEPS": slider(inner_steps, 0, 3, 1),
                                 "SCHEDULE": choice(schedule, SCHEDULES)},
                 readout=readout, figsize=(11, 3.4))
