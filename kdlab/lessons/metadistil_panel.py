"""Notebook 03 (MetaDistil): the teaching panel (ALPHA, TEMPERATURE and TEACHER_LR sliders) and what it shows
of the teacher: how far the meta-gradients of Eq. 3 move it, against weight decay alone, and how its soft
targets and the student follow; plus the teacher-lr table and its description in sentences."""
import functools
import math
import time

import torch
from matplotlib.ticker import MaxNLocator

from .. import config, parallel
from ..data.quiz import split_quiz
from ..methods import metadistil as md
from ..train import accuracy
from ..widgets import Panel, log_slider, slider
from .metadistil_runs import kd_run, meta_run


# -- the teaching panel --------------------------------------------------------------------------------
def soft_targets(model, x, temperature):
    """p^tau = softmax(logits / tau) on `x` (Eq. 1's soft targets), float64, without a graph."""
    with torch.no_grad():
        return torch.softmax(model(x).double() / temperature, dim=1)


def flat_parameters(model):
    """All parameters of `model` as one detached float64 vector."""
    return torch.cat([p.detach().double().flatten() for p in model.parameters()])


class TeacherWatch:
    """A `meta_run` callback: after every epoch, how far the teacher has moved from its starting weights theta_0
    and how much its soft targets on `x` have changed.

    The teacher's SGD with momentum and weight decay is linear in the gradients it is given, so after any number
    of steps theta_T = c * theta_0 + m exactly: c is what weight decay alone makes of theta_0 (a scalar
    recursion over the same learning rates) and m is what the meta-gradients of Eq. 3 added. Per epoch:
    `decay_moved` = |1 - c|, `meta_moved` = |m| / |theta_0|, and `soft_target_change`, the mean
    total-variation distance 1/2 sum_k |p_T^tau - p_T0^tau| over `x` (a share of probability mass, 0 to 1)."""

    def __init__(self, teacher, x, temperature):
        self.start = flat_parameters(teacher)
        self.start_targets = soft_targets(teacher, x, temperature)
        self.x, self.temperature = x, temperature
        self.scale, self.buffer, self.steps_seen = 1.0, 0.0, 0  # weight decay alone: theta = scale * theta_0
        self.epochs, self.decay_moved, self.meta_moved, self.soft_target_change = [], [], [], []

    def __call__(self, history, method):
        record, steps = history.records[-1], len(history.steps) - self.steps_seen
        self.steps_seen = len(history.steps)
        if record["teacher_lr"] > 0:  # frozen epochs take no teacher step at all
            for _ in range(steps):  # torch's SGD with a zero gradient: buf = mu buf + wd theta; theta -= lr buf
                self.buffer = method.teacher_momentum * self.buffer + method.teacher_wd * self.scale
                self.scale -= record["teacher_lr"] * self.buffer
        meta_part = flat_parameters(method.teacher) - self.scale * self.start
        self.epochs.append(record["epoch"])
        self.decay_moved.append(abs(1.0 - self.scale))
        self.meta_moved.append(float(meta_part.norm() / self.start.norm()))
        change = soft_targets(method.teacher, self.x, self.temperature) - self.start_targets
        self.soft_target_change.append(float(0.5 * change.abs().sum(dim=1).mean()))
        return False


class StudentSnapshots:
    """A `fit` callback that keeps the student's parameters after every epoch (a small student: a few KB)."""

    def __init__(self):
        self.parameters = []

    def __call__(self, history, model):
        self.parameters.append(flat_parameters(model))
        return False


def relative_distance(a, b):
    """|a - b| / |b| of two parameter vectors."""
    return float((a - b).norm() / b.norm())


def _kd_part(train_data, teacher, common):
    """The panel's KD (90 %) run with the student's per-epoch snapshots: (student, history, snapshots)."""
    snapshots = StudentSnapshots()
    student, history = kd_run(train_data, teacher, callbacks=[snapshots], **common)
    return student, history, snapshots


def teaching_panel(data, teacher, *, hidden, recipe, seed, quiz_fraction, quiz_batch, alpha=0.9, temperature=4.0,
                   teacher_lr=1e-4, workers=1):
    """ALPHA, TEMPERATURE and TEACHER_LR (log) sliders: a short MetaDistil run against KD (90 %) from the same
    initial weights and batch order. Four views, per epoch: the students' test accuracy; how far the teacher
    moved, split into its meta-gradients' part and weight decay's part (`TeacherWatch`); how much its soft
    targets on the training digits changed; how far the MetaDistil student is from the KD student.
    `workers` > 1: the KD run trains in a worker process while the MetaDistil run trains here (`kdlab.parallel`,
    started when the panel is made), the same numbers in less time."""
    parallel.warm_up(workers, __name__)
    split = split_quiz(data, quiz_fraction, seed, quiz_batch_size=quiz_batch)
    teacher_acc = accuracy(teacher, data.x_test, data.y_test)

    def compute(ALPHA, TEMPERATURE, TEACHER_LR):
        config.validate(ALPHA=ALPHA, TEMPERATURE=TEMPERATURE, TEACHER_LR=TEACHER_LR)
        start = time.perf_counter()
        common = dict(seed=seed, hidden=hidden, recipe=recipe, alpha=ALPHA, temperature=TEMPERATURE)
        kd_job = parallel.start(functools.partial(_kd_part, split.train, teacher, common), workers)
        meta_snapshots = StudentSnapshots()
        watch = TeacherWatch(teacher, split.train.x_train, TEMPERATURE)
        snapshot_meta_student = lambda history, method: meta_snapshots(history, method.model)  # noqa: E731
        meta_student, _, meta = meta_run(data, teacher, teacher_lr=TEACHER_LR, quiz_fraction=quiz_fraction,
                                         quiz_batch=quiz_batch, callbacks=[watch, snapshot_meta_student], **common)
        kd_student, kd, kd_snapshots = kd_job.result()
        first, second = md.toward_share(meta)
        with torch.no_grad():
            differ = (kd_student.eval()(data.x_test).argmax(1) != meta_student.eval()(data.x_test).argmax(1))
        return {"alpha": ALPHA, "temperature": TEMPERATURE, "teacher_lr": TEACHER_LR,
                "epochs": [r["epoch"] for r in meta.records if "test_acc" in r], "meta_acc": meta.series("test_acc"),
                "kd_epochs": [r["epoch"] for r in kd.records if "test_acc" in r], "kd_acc": kd.series("test_acc"),
                "watch_epochs": watch.epochs, "meta_moved": watch.meta_moved, "decay_moved": watch.decay_moved,
                "soft_target_change": watch.soft_target_change,
                "student_distance": [relative_distance(m, k) for m, k in zip(meta_snapshots.parameters,
                                                                            kd_snapshots.parameters)],
                "final_meta": meta.last["test_acc"], "final_kd": kd.last["test_acc"],
                "test_digits_differ": 100 * float(differ.double().mean()),
                "teacher_start": teacher_acc, "teacher_end": meta.last["teacher_test_acc"],
                "toward_first": first, "toward_second": second, "steps": len(meta.steps),
                "seconds": time.perf_counter() - start}

    return Panel(compute, draw_teaching_panel,
                 {"ALPHA": slider(alpha, 0.0, 1.0, 0.05), "TEMPERATURE": slider(temperature, 0.5, 20.0, 0.5),
                  "TEACHER_LR": log_slider(teacher_lr, 1e-5, 1e-1)},
                 readout=teaching_readout, figsize=(10, 6.4))


def teaching_readout(d):
    return (f"MetaDistil student {d['final_meta']:.1f}% vs KD (90 %) {d['final_kd']:.1f}%, "
            f"{d['test_digits_differ']:.1f}% of test digits classified differently; teacher moved "
            f"{d['meta_moved'][-1]:.1e} (meta-gradients) and {d['decay_moved'][-1]:.1e} (weight decay) of its "
            f"weights' size, soft targets changed by {d['soft_target_change'][-1]:.1e}, test accuracy "
            f"{d['teacher_start']:.1f}% -> {d['teacher_end']:.1f}%; updates toward the student "
            f"{100 * d['toward_first']:.0f}% / {100 * d['toward_second']:.0f}% (1st / 2nd half); "
            f"{d['steps']} steps, {d['seconds']:.1f} s")


FLOAT32_STEP = 2.0 ** -24  # relative rounding of one float32 weight update (half the spacing of floats near 1)


def log_curve(ax, x, y, **style):
    """Plot the positive values of y on a log axis; say so in the axes when every value is exactly zero (one
    line of text per such curve, stacked, and the x-range of the curve kept)."""
    points = [(a, b) for a, b in zip(x, y) if b > 0]
    if points:
        ax.semilogy(*zip(*points), **style)
    else:
        ax.semilogy([], [], **style)
        if len(x):
            ax.update_datalim([(min(x), 1.0), (max(x), 1.0)], updatey=False)
            ax.autoscale_view()
        ax.text(0.5, 0.5 - 0.1 * len(ax.texts), f"{style.get('label', 'value')}: exactly 0", transform=ax.transAxes,
                ha="center", fontsize=9)


def fixed_log_range(ax, low, high, *series):
    """The same log y-range for every slider setting (so a factor 10 moves a curve by one decade on
    screen), widened only where the data leave it."""
    values = [v for s in series for v in s if v > 0]
    ax.set_ylim(min([low] + [v / 2 for v in values]), max([high] + [2 * v for v in values]))


def draw_teaching_panel(d, fig):
    ax_acc, ax_moved, ax_targets, ax_student = fig.subplots(2, 2).ravel()
    ax_acc.plot(d["kd_epochs"], d["kd_acc"], color="C0", marker="o", ms=4, label="KD (90 %)")
    ax_acc.plot(d["epochs"], d["meta_acc"], color="C1", ls="--", marker="x", ms=5, label="MetaDistil")
    ax_acc.set(title="Students: test accuracy", xlabel="epoch", ylabel="test accuracy (%)")
    ax_acc.legend(fontsize=8, loc="lower right")
    epochs = d["watch_epochs"]
    log_curve(ax_moved, epochs, d["meta_moved"], color="C1", marker=".", label="by the meta-gradients (Eq. 3)")
    log_curve(ax_moved, epochs, d["decay_moved"], color="C0", ls="--", label="by weight decay alone")
    steps_per_epoch = d["steps"] / len(epochs)
    ax_moved.semilogy(epochs, [FLOAT32_STEP * math.sqrt(e * steps_per_epoch) for e in epochs], color="C7", ls=":",
                      label="float32 rounding (about)")
    fixed_log_range(ax_moved, 1e-8, 10.0, d["meta_moved"], d["decay_moved"])  # the top decades hold the legend
    ax_moved.set(title="Teacher: how far its weights moved", xlabel="epoch",
                 ylabel="|change| / |starting weights|")
    ax_moved.legend(fontsize=8, loc="upper left")
    log_curve(ax_targets, epochs, d["soft_target_change"], color="C2", marker=".", label="soft targets")
    fixed_log_range(ax_targets, 1e-8, 1.0, d["soft_target_change"])
    ax_targets.set(title=f"Teacher: change of its soft targets (tau {d['temperature']:g})", xlabel="epoch",
                   ylabel="mean total variation (0 to 1)")
    log_curve(ax_student, epochs, d["student_distance"], color="C4", marker=".", label="MetaDistil student")
    fixed_log_range(ax_student, 1e-8, 1.0, d["student_distance"])
    ax_student.set(title="MetaDistil student vs KD student", xlabel="epoch",
                   ylabel="|weight difference| / |KD weights|")
    fig.suptitle(f"ALPHA {d['alpha']:g}, TEMPERATURE {d['temperature']:g}, TEACHER_LR {d['teacher_lr']:.1e}: "
                 f"{d['steps']} steps", fontsize=10)
    for ax in (ax_acc, ax_moved, ax_targets, ax_student):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()


# -- what TEACHER_LR moves ---------------------------------------------------------------------------------
def teacher_lr_table(effects):
    """One Markdown row per teacher lr from the panel's data (`{lr: teaching_panel data}`), final epoch."""
    lines = ["| teacher lr | teacher moved: meta-gradients | teacher moved: weight decay | soft targets changed "
             "| teacher test accuracy (%) | MetaDistil - KD (90 %) student | test digits classified differently |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for lr, d in effects.items():
        lines.append(f"| {lr:g} | {d['meta_moved'][-1]:.1e} | {d['decay_moved'][-1]:.1e} "
                     f"| {d['soft_target_change'][-1]:.1e} | {d['teacher_start']:.1f} -> {d['teacher_end']:.1f} "
                     f"| {d['final_meta'] - d['final_kd']:+.1f} points | {d['test_digits_differ']:.1f} % |")
    return "\n".join(lines)


def ratio(a, b):
    return a / b if b > 0 else math.inf


def describe_teacher_lr(effects, default_lr, visible_points=0.5):
    """What TEACHER_LR moved in `effects` (`{lr: teaching_panel data}`), in sentences built from the numbers.
    A teacher lr of 0 (the teacher stays where it is) takes no part in the ratios between learning rates."""
    lrs = sorted(effects)
    positive = [lr for lr in lrs if lr > 0]
    high, default = effects[lrs[-1]], effects[default_lr]
    text = []
    if len(positive) >= 2:
        low, top = effects[positive[0]], effects[positive[-1]]
        factor = positive[-1] / positive[0]
        moved = ratio(top["meta_moved"][-1], low["meta_moved"][-1])
        targets = ratio(top["soft_target_change"][-1], low["soft_target_change"][-1])
        exponent = math.log(moved) / math.log(factor) if 0 < moved < math.inf else math.nan
        growth = ("about in proportion to" if 0.9 <= exponent <= 1.1 else
                  "less than in proportion to" if exponent < 0.9 else "faster than")
        text.append(f"From teacher lr {positive[0]:g} to {positive[-1]:g} (a factor {factor:g}) the meta-gradients "
                    f"moved the teacher {moved:.3g} times as far and its soft targets changed {targets:.3g} times as "
                    f"much: the teacher's change grows {growth} its learning rate.")
    versus_decay = (f" ({ratio(default['meta_moved'][-1], default['decay_moved'][-1]):.2g} times what weight decay "
                    "alone did)" if default["decay_moved"][-1] > 0 else
                    f" and weight decay by {default['decay_moved'][-1]:.1e}")
    text.append(f"At TEACHER_LR = {default_lr:g} the meta-gradients moved the teacher by "
                f"{default['meta_moved'][-1]:.1e} of its weights' size{versus_decay}, its soft targets changed by "
                f"{default['soft_target_change'][-1]:.1e} of their probability mass, and the two students classify "
                f"{default['test_digits_differ']:.1f} % of the test digits differently.")
    moving = [lr for lr in lrs if abs(effects[lr]["final_meta"] - effects[lr]["final_kd"]) >= visible_points]
    if moving:
        first = effects[moving[0]]
        text.append(f"The student's test accuracy moves by {visible_points:g} points or more from KD's only from "
                    f"teacher lr {moving[0]:g} on ({first['final_meta'] - first['final_kd']:+.1f} points there); "
                    f"at {lrs[-1]:g} the teacher's own test accuracy goes from {high['teacher_start']:.1f} % to "
                    f"{high['teacher_end']:.1f} %.")
    else:
        text.append(f"At none of these teacher lrs does the student's test accuracy move by {visible_points:g} "
                    "points from KD's in this run: at this scale TEACHER_LR changes the teacher, and the student "
                    "only in its weights (the panel's last view).")
    return " ".join(text)
