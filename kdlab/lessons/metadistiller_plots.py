"""Notebook 04 (MetaDistiller): its figures: entropy of the targets (Figure 3), example soft targets, accuracy
per exit, curves over training and the top-down diagram of the label generator (Figure 2)."""
import math

import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from ..viz import soft_target_bars


def plot_entropy_bars(ax, values, errors=None, *, num_classes=10, title=None):
    """Mean entropy per target (dict label -> nats) as dots with their intervals, and the uniform
    distribution's log C. The axis is fitted to the values and log C (entropies near log C differ by
    hundredths of a nat, which bars from zero would flatten)."""
    labels = list(values)
    uniform = math.log(num_classes)
    for i, label in enumerate(labels):
        generated = label.startswith("T")
        ax.errorbar([i], [values[label]], yerr=None if errors is None else [errors[label]], capsize=3, ms=8,
                    marker="o" if generated else "s", color="C2" if generated else "C0", ls="none")
    ax.axhline(uniform, ls="--", color="0.5", lw=1, label="uniform distribution (log C)")
    spread = [values[k] - (errors or {}).get(k, 0.0) for k in labels] + [uniform]
    top = [values[k] + (errors or {}).get(k, 0.0) for k in labels] + [uniform]
    margin = 0.1 * (max(top) - min(spread)) + 0.01
    ax.set_ylim(min(spread) - margin, max(top) + 2 * margin)
    ax.set_xlim(-0.5, len(labels) - 0.5)
    ax.set_xticks(range(len(labels)), labels, fontsize=8)
    ax.set_ylabel("mean entropy (nats)")
    ax.legend(fontsize=8, loc="upper right")
    ax.set_title(title or "", fontsize=10)


def plot_example_targets(axes, rows, true_class):
    """One bar chart per soft target; a shared probability axis fitted to the largest bar."""
    top = min(1.0, 1.15 * max(max(probs) for probs in rows.values()))
    for ax, (name, probs) in zip(axes, rows.items()):
        soft_target_bars(ax, probs, highlight=true_class, title=name, color="C2" if name.startswith("T") else "C0")
        ax.set_ylim(0, top)
        ax.set_xlabel("class (highlighted: the true one)", fontsize=8)
    axes[0].set_ylabel("probability")


# -- pictures -------------------------------------------------------------------------------------
def exit_bars(ax, accuracies, title=None):
    """Grouped bars: accuracy per exit (exit1 .. final, ensemble) for each method (dict method -> dict)."""
    methods = list(accuracies)
    keys = list(next(iter(accuracies.values())))
    width = 0.8 / len(methods)
    for i, method in enumerate(methods):
        values = [accuracies[method][k] for k in keys]
        ax.bar(np.arange(len(keys)) + (i - (len(methods) - 1) / 2) * width, values, width, label=method,
               color=f"C{i}", hatch=["", "//", "..", "xx"][i % 4], edgecolor="white")
    ax.set_xticks(range(len(keys)), [exit_name(k) for k in keys])
    low = min(v for a in accuracies.values() for v in a.values())
    ax.set_ylim(max(0, low - 5), 100)
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=8)
    ax.set_title(title or "", fontsize=10)


def exit_name(key):
    """'exit1' -> 'exit 1', 'final' -> 'final exit', 'ensemble' -> 'ensemble of exits' (for legends and ticks)."""
    if key.startswith("exit"):
        return f"exit {key[4:]}"
    return {"final": "final exit", "ensemble": "ensemble of exits"}.get(key, key)


def plot_exit_curves(ax, history, num_exits, title=None):
    """Test accuracy of every exit, the final output and the ensemble at the evaluated epochs."""
    keys = [f"test_acc_exit{k}" for k in range(1, num_exits)] + ["test_acc", "test_acc_ensemble"]
    styles = ["-", "--", "-.", ":"]
    for i, key in enumerate(keys):
        epochs = [r["epoch"] for r in history.records if key in r]
        name = exit_name(key.replace("test_acc_", "").replace("test_acc", "final"))
        ax.plot(epochs, history.series(key), marker="os^D"[i % 4], ms=4, ls=styles[i % 4], label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title(title or "", fontsize=10)


def plot_target_entropy_curves(ax, history, num_exits, title=None):
    """Mean entropy of each generated target T_k on the training batches per epoch; meta epochs shaded."""
    epochs = history.series("epoch")
    for k in range(1, num_exits):
        ax.plot(epochs, history.series(f"target_entropy{k}"), marker="os^"[(k - 1) % 3], ms=4,
                ls=["-", "--", "-."][(k - 1) % 3], label=f"T{k} (target of exit {k})")
    meta = [r["epoch"] for r in history.records if r.get("meta_epoch")]
    for i, e in enumerate(meta):
        ax.axvspan(e - 0.5, e + 0.5, color="0.9", zorder=0, label="meta epoch" if i == 0 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean entropy (nats)")
    ax.set_xticks(epochs if len(epochs) <= 12 else epochs[::max(1, len(epochs) // 10)])
    ax.legend(fontsize=8, loc="lower left")
    ax.set_title(title or "", fontsize=10)


def _box(ax, xy, text, color, width=1.5, height=0.55):
    x, y = xy
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.04",
                                fc=color, ec="0.3", lw=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=8)


def _arrow(ax, start, end, color="0.3", style="-|>"):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=10, color=color, lw=1,
                                 shrinkA=0, shrinkB=0))


def draw_top_down(ax, num_stages=3):
    """Eq. (5) as a picture: the network (grey) bottom-up on the left, the label generator (yellow)
    top-down on the right, the soft targets (green) and the exits (blue)."""
    grey, yellow, green, blue = "#dddddd", "#fde9a9", "#bfe5bf", "#c6dbef"
    K = num_stages
    ys = {k: 1.2 * (k - 1) for k in range(1, K + 1)}
    _box(ax, (0, -1.1), "input x", "white")
    _arrow(ax, (0, -0.82), (0, ys[1] - 0.28))
    for k in range(1, K + 1):
        _box(ax, (0, ys[k]), f"stage {k}\n$F_{k}$", grey)
        _box(ax, (-2.2, ys[k]), f"exit {k}\n$S_{k}$" if k < K else f"final\n$S_{k}$", blue, width=1.2)
        _arrow(ax, (-0.75, ys[k]), (-1.6, ys[k]))
        _box(ax, (2.3, ys[k]), "conv 1x1", yellow, width=1.2)   # the lateral 1x1 conv
        _arrow(ax, (0.75, ys[k]), (1.7, ys[k]))
        if k < K:
            _arrow(ax, (0, ys[k] + 0.28), (0, ys[k + 1] - 0.28))
            ax.text(3.6, ys[k], "+", ha="center", va="center", fontsize=14)
            _arrow(ax, (2.9, ys[k]), (3.45, ys[k]))
            _box(ax, (5.0, ys[k]), "conv 3x3\n" + rf"$\hat F_{k}$", yellow, width=1.3)
            _arrow(ax, (3.75, ys[k]), (4.35, ys[k]))
            _box(ax, (7.1, ys[k]), "bottleneck\nhead", yellow, width=1.3)
            _arrow(ax, (5.65, ys[k]), (6.45, ys[k]))
            _box(ax, (9.0, ys[k]), f"$T_{k}$", green, width=0.9)
            _arrow(ax, (7.75, ys[k]), (8.55, ys[k]))
        else:
            _box(ax, (5.0, ys[k]), rf"$\hat F_{k}$", yellow, width=1.3)
            _arrow(ax, (2.9, ys[k]), (4.35, ys[k]))
    for k in range(K, 1, -1):  # the top-down path: upsample F^_k into stage k-1's sum
        _arrow(ax, (4.7, ys[k] - 0.3), (3.65, ys[k - 1] + 0.18), color="C1")
        ax.text(4.45, (ys[k] + ys[k - 1]) / 2, "bilinear\nupsample", fontsize=7, color="C1", va="center")
    ax.text(0, ys[K] + 0.75, "network (bottom-up)", ha="center", fontsize=9)
    ax.text(5.0, ys[K] + 0.75, "label generator (top-down, Eq. 5)", ha="center", fontsize=9)
    ax.set_xlim(-3.1, 9.8)
    ax.set_ylim(-1.6, ys[K] + 1.1)
    ax.axis("off")
