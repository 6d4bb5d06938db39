"""Notebook 03 (MetaDistil): the learning-dynamics figure of section 5.1.1 (`plot_dynamics`) and its helpers."""
import numpy as np


LR_STYLES = [dict(ls="-", marker="o"), dict(ls="--", marker="s"), dict(ls=":", marker="^"), dict(ls="-.", marker="D")]


def moving_average(values, window):
    """The mean of each run of `window` consecutive values (`len(values) - window + 1` of them)."""
    return np.convolve(np.asarray(values, dtype=float), np.ones(window) / window, mode="valid")


def staggered(points, index, markers=10):
    """`markevery` for line `index`: about `markers` markers, shifted per line so overlapping lines stay apart."""
    every = max(1, points // markers)
    return (index * every // 3 % every, every)


def plot_dynamics(runs, teacher_lrs, axes, weight_decay_term=None, teacher_start=None):
    """Section 5.1.1's views, one teacher lr per colour and line style, over training steps.
    (a) The MetaDistil student's test accuracy minus the KD (90 %) student's at the same step (paired: same
    initial weights and batch order), at every epoch end where both were evaluated.
    (b) The meta-teacher's test accuracy (`teacher_start`: where it started).
    (c) The running share of teacher updates that moved the teacher toward the student (50 %: a coin flip).
    (d) The norm of the teacher's meta-gradient (a moving geometric mean), and the size of the weight-decay
    term `weight_decay_term` that the teacher's optimiser adds to it.
    Returns the legend handles and labels (the caller places one legend for all four axes)."""
    ax_diff, ax_teacher, ax_toward, ax_grad = axes
    per_epoch = runs["steps_per_epoch"]
    kd_acc = {r["epoch"]: r["test_acc"] for r in runs["kd"].records if "test_acc" in r}
    ax_diff.axhline(0, color="C7", lw=3, alpha=0.5, label="KD (90 %) student (difference 0)")
    if teacher_start is not None:
        ax_teacher.axhline(teacher_start, color="C7", ls=":", lw=1.5, label="teacher before MetaDistil")
    ax_toward.axhline(50, color="C7", ls="--", lw=1, label="coin flip (50 %)")
    if weight_decay_term is not None:
        ax_grad.axhline(weight_decay_term, color="C7", ls="-.", lw=1.5,
                        label="weight decay's pull on the teacher (weight decay x |weights|)")
    zero_gradient = []  # teacher lrs whose meta-gradient was exactly 0 at every step (nothing for a log axis)
    for i, lr in enumerate(teacher_lrs):
        history, style = runs[lr], dict(color=f"C{i}", **LR_STYLES[i % len(LR_STYLES)])
        logged = [r for r in history.steps if "teacher_acc" in r]
        paired = [(r["step"], r["student_acc"] - kd_acc[r["step"] // per_epoch]) for r in logged
                  if r["step"] % per_epoch == 0 and r["step"] // per_epoch in kd_acc]
        if paired:
            ax_diff.plot(*zip(*paired), ms=4, markevery=staggered(len(paired), i), **style)
        ax_teacher.plot([r["step"] for r in logged], [r["teacher_acc"] for r in logged], ms=4,
                        markevery=staggered(len(logged), i), label=f"MetaDistil, teacher lr {lr:g}", **style)
        toward = [float(r["toward"]) for r in history.steps if r["toward"] is not None]
        window = max(1, len(toward) // 15)
        ax_toward.plot(np.arange(window, len(toward) + 1), 100 * moving_average(toward, window), ms=4,
                       markevery=staggered(len(toward) - window + 1, i), **style)
        norms = [r["teacher_grad_norm"] for r in history.steps if r.get("teacher_grad_norm")]
        if not norms:
            zero_gradient.append(lr)
            continue
        window = max(1, len(norms) // 30)
        ax_grad.semilogy(np.arange(window, len(norms) + 1), np.exp(moving_average(np.log(norms), window)), lw=1,
                         ms=4, markevery=staggered(len(norms) - window + 1, i), **style)
    if zero_gradient:
        ax_grad.set_yscale("log")
        ax_grad.update_datalim([(1, 1.0), (max(len(runs[lr].steps) for lr in zero_gradient), 1.0)], updatey=False)
        ax_grad.autoscale_view()
        ax_grad.text(0.5, 0.5, "meta-gradient exactly 0 at every step\n(the quiz loss does not depend on the teacher)"
                     f"\nteacher lr {', '.join(f'{lr:g}' for lr in zero_gradient)}", transform=ax_grad.transAxes,
                     ha="center", va="center", fontsize=9)
    ax_diff.set(title="(a) Students: MetaDistil minus KD (90 %)", xlabel="training step",
                ylabel="test accuracy difference (points)")
    ax_teacher.set(title="(b) Meta-teachers: test accuracy", xlabel="training step", ylabel="test accuracy (%)")
    ax_toward.set(title="(c) Teacher updates toward the student", xlabel="training step",
                  ylabel="share of recent updates (%)")
    ax_grad.set(title="(d) Size of the teacher's meta-gradient", xlabel="training step",
                ylabel="|meta-gradient| (moving average)")
    handles, labels = [], []
    for ax in (ax_teacher, ax_diff, ax_toward, ax_grad):
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    return handles, labels
