"""Plots the notebooks share: the kit's look, live curves, soft-target bars, seed bands, paired per-seed dots.

Plain matplotlib, no widget JavaScript: a live plot is a display handle that is updated in place
(d2l's ProgressBoard idea), so it also works in VS Code, Colab and a static HTML export.

One colour-blind-safe palette across the kit: seaborn's "colorblind" (Okabe-Ito-like) colours, written out
here so seaborn is not needed. `use_kit_style()` (called by `kdlab.setup`) makes them matplotlib's default
colour cycle, so "C0".."C9" in any plot are these colours; the role names below pick one per meaning.
"""
import re

import matplotlib as mpl
import numpy as np
from cycler import cycler
from matplotlib.transforms import ScaledTranslation

from .env import headless

# seaborn.color_palette("colorblind").as_hex(), seaborn 0.13
PALETTE = ("#0173b2", "#de8f05", "#029e73", "#d55e00", "#cc78bc",
           "#ca9161", "#fbafe4", "#949494", "#ece133", "#56b4e9")
BLUE, ORANGE, GREEN, VERMILLION, PURPLE, BROWN, PINK, GREY, YELLOW, SKY = PALETTE

# one colour per role, the same in every notebook
TEACHER = BLUE
KD = ORANGE
META = GREEN
STUDENT = VERMILLION
CE = GREY
HIGHLIGHT = VERMILLION  # a marked point or bar: the true class, the current slider value

STYLE = {
    "axes.prop_cycle": cycler(color=list(PALETTE)),
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 9,
    "legend.title_fontsize": 9,
    "figure.titlesize": 11,
    "image.cmap": "viridis",  # perceptually uniform and colour-blind safe
}


def use_kit_style():
    """Make the kit's palette matplotlib's default colour cycle and set readable font sizes."""
    import matplotlib.pyplot  # noqa: F401  (a kernel's inline backend sets its own rcParams on first import)

    mpl.rcParams.update(STYLE)


# -- names a student reads ------------------------------------------------------------------------
DISPLAY_NAMES = {
    "loss": "training loss",
    "ce": "cross-entropy term",
    "kd": "distillation (KD) term",
    "feat": "feature term",
    "quiz": "quiz loss",
    "kd_before": "KD term before the teacher's step",
    "kd_after": "KD term after the teacher's step",
    "train_acc": "train accuracy (%)",
    "test_acc": "test accuracy (%)",
    "teacher_test_acc": "teacher test accuracy (%)",
    "test_acc_ensemble": "ensemble test accuracy (%)",
    "lr": "learning rate",
    "teacher_lr": "teacher learning rate",
    "teacher_grad_norm": "teacher gradient norm",
    "seconds": "seconds per epoch",
}
LOSS_KEYS = {"loss", "ce", "kd", "feat", "quiz", "kd_before", "kd_after"}


def display_name(key):
    """The words a student reads for a History column: `train_acc` -> "train accuracy (%)"."""
    if key in DISPLAY_NAMES:
        return DISPLAY_NAMES[key]
    match = re.fullmatch(r"test_acc_(\w+)", key)
    if match:
        return f"test accuracy of {match.group(1).replace('_', ' ')} (%)"
    return key.replace("_", " ")


def _is_accuracy(key):
    return key.endswith("_acc") or "_acc_" in key


def group_label(keys):
    """(axes title, y label) for one LivePlot panel drawing the History columns `keys`."""
    if all(_is_accuracy(key) for key in keys):
        return "accuracy", "accuracy (%)"
    if all(key in LOSS_KEYS for key in keys):
        return ("training loss" if keys == ("loss",) else "training loss and its terms"), "loss (epoch mean)"
    names = [display_name(key) for key in keys]
    return ", ".join(names), names[0] if len(names) == 1 else "value"


def legend_outside(ax, where="right", **kwargs):
    """A legend next to the axes (right) or under it (below), where it cannot cover the data."""
    if where == "below":  # under the tick labels and the x label, whatever the axes' height
        below = ax.transAxes + ScaledTranslation(0, -0.42, ax.figure.dpi_scale_trans)
        options = dict(loc="upper center", bbox_to_anchor=(0.5, 0.0), bbox_transform=below, ncol=2,
                       frameon=False)
    else:
        options = dict(loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)
    return ax.legend(**{**options, **kwargs})


LINESTYLES = ("-", "--", ":", "-.")




class LivePlot:
    """A `fit` callback that redraws chosen History columns every `every` epochs.

    `LivePlot(["loss"], ["train_acc", "test_acc"])` draws one panel per group, titled and labelled in words
    (`display_name`, `group_label`). Headless (papermill, CI), it draws nothing while training; call
    `.final(history)` to draw once at the end.
    """

    def __init__(self, *groups, every=1, title=None, figsize=None):
        self.groups = tuple(tuple(group) for group in groups) or (("loss",), ("test_acc",))
        self.every, self.title = every, title
        self.figsize = figsize or (4.4 * len(self.groups), 3.4)
        self._handle = None

    def __call__(self, history, model=None):
        if headless() or history.epochs_done % self.every:
            return False
        import matplotlib.pyplot as plt
        from IPython.display import display

        fig = self._draw(history)
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        plt.close(fig)
        return False

    def final(self, history):
        """Draw the finished curves once (the static view headless runs and exports keep)."""
        import matplotlib.pyplot as plt

        fig = self._draw(history)
        if self._handle is not None:
            self._handle.update(fig)
            plt.close(fig)
        else:
            plt.show()

    def _draw(self, history):
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(self.groups), figsize=self.figsize, squeeze=False)
        for ax, keys in zip(axes[0], self.groups):
            for index, key in enumerate(keys):
                epochs = [r["epoch"] for r in history.records if key in r]
                ax.plot(epochs, history.series(key), label=display_name(key),
                        ls=LINESTYLES[index % len(LINESTYLES)])
            title, ylabel = group_label(keys)
            ax.set_title(title)
            ax.set_xlabel("epoch")
            ax.set_ylabel(ylabel)
            if len(keys) > 1:  # one curve: the title names it
                legend_outside(ax, "below", ncol=min(len(keys), 2))
        if self.title:
            fig.suptitle(self.title)
        fig.tight_layout()
        return fig


def soft_target_bars(ax, probs, class_names=None, highlight=None, title=None, color="C0"):
    """Bar chart of one probability vector; `highlight` marks the true class."""
    probs = np.asarray(probs, dtype=float)
    names = class_names if class_names is not None else [str(i) for i in range(len(probs))]
    bars = ax.bar(range(len(probs)), probs, color=color)
    if highlight is not None:
        bars[highlight].set_color(HIGHLIGHT)
    ax.set_xticks(range(len(probs)), names, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_xlabel("class")
    ax.set_ylabel("probability")
    if title:
        ax.set_title(title)
    return bars


def seed_band(ax, curves, x=None, label=None, color=None, ls="-"):
    """Mean curve over seeds with a +-1 std band; `curves` is (seeds, steps)."""
    curves = np.asarray(curves, dtype=float)
    x = np.arange(1, curves.shape[1] + 1) if x is None else np.asarray(x)
    mean, std = curves.mean(axis=0), curves.std(axis=0)
    (line,) = ax.plot(x, mean, label=label, color=color, ls=ls)
    ax.fill_between(x, mean - std, mean + std, alpha=0.2, color=line.get_color())
    return line


def paired_dots(ax, values_by_method: dict, ylabel="test accuracy (%)", title=None):
    """One line per seed across methods, so paired differences are visible at a glance."""
    names = list(values_by_method)
    table = np.array([values_by_method[n] for n in names], dtype=float)
    for index, seed_values in enumerate(table.T):
        ax.plot(range(len(names)), seed_values, color=GREY, marker="o", lw=1,
                label="one seed" if index == 0 else None)
    ax.plot(range(len(names)), table.mean(axis=1), color=HIGHLIGHT, marker="s", lw=2, label="mean over seeds")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("method (same seeds)")
    if title:
        ax.set_title(title)
    legend_outside(ax, "below")
