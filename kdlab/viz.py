"""Plots the notebooks share: live curves, soft-target bars, seed bands, paired per-seed dots.

Plain matplotlib, no widget JavaScript: a live plot is a display handle that is updated in place
(d2l's ProgressBoard idea), so it also works in VS Code, Colab and a static HTML export.
"""
import matplotlib.pyplot as plt
import numpy as np

from .env import headless


class LivePlot:
    """A `fit` callback that redraws chosen History columns every `every` epochs.

    `LivePlot(["loss"], ["train_acc", "test_acc"])` draws one panel per group. Headless (papermill,
    CI), it draws nothing while training; call `.final(history)` to draw once at the end.
    """

    def __init__(self, *groups, every=1, title=None, figsize=None):
        self.groups = groups or (("loss",), ("test_acc",))
        self.every, self.title = every, title
        self.figsize = figsize or (4.2 * len(self.groups), 3.0)
        self._handle = None

    def __call__(self, history, model=None):
        if headless() or history.epochs_done % self.every:
            return False
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
        fig = self._draw(history)
        if self._handle is not None:
            self._handle.update(fig)
            plt.close(fig)
        else:
            plt.show()

    def _draw(self, history):
        fig, axes = plt.subplots(1, len(self.groups), figsize=self.figsize, squeeze=False)
        for ax, keys in zip(axes[0], self.groups):
            for key in keys:
                epochs = [r["epoch"] for r in history.records if key in r]
                ax.plot(epochs, history.series(key), label=key)
            ax.set_xlabel("epoch")
            ax.legend(fontsize=8)
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
        bars[highlight].set_color("C3")
    ax.set_xticks(range(len(probs)), names, fontsize=8)
    ax.set_ylim(0, 1)
    if title:
        ax.set_title(title, fontsize=10)
    return bars


def seed_band(ax, curves, x=None, label=None, color=None):
    """Mean curve over seeds with a +-1 std band; `curves` is (seeds, steps)."""
    curves = np.asarray(curves, dtype=float)
    x = np.arange(1, curves.shape[1] + 1) if x is None else np.asarray(x)
    mean, std = curves.mean(axis=0), curves.std(axis=0)
    (line,) = ax.plot(x, mean, label=label, color=color)
    ax.fill_between(x, mean - std, mean + std, alpha=0.2, color=line.get_color())
    return line


def paired_dots(ax, values_by_method: dict, ylabel="test accuracy (%)"):
    """One line per seed across methods, so paired differences are visible at a glance."""
    names = list(values_by_method)
    table = np.array([values_by_method[n] for n in names], dtype=float)
    for seed_values in table.T:
        ax.plot(range(len(names)), seed_values, color="0.6", marker="o", lw=1)
    ax.plot(range(len(names)), table.mean(axis=1), color="C3", marker="s", lw=2, label="mean")
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
