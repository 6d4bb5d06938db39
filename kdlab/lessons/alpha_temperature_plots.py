"""Notebook 09's figures: the grid with where the learned knobs land, the trajectories over training, the
one-step landscape against the long run, and the knobs panel (`alpha_temperature.knobs_panel`)."""
import numpy as np
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator

from ..viz import GREY, KD, META, PALETTE, legend_outside

CTKD_COLOUR = PALETTE[4]  # purple: CTKD; META (green): the meta-gradient; KD (orange): fixed KD


def temperature_axis(ax, temperatures, label="temperature T (log scale)"):
    """A log2 T axis with the grid's temperatures as its ticks."""
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(temperatures))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.set_xlabel(label)


def plot_landing(ax, fig, accuracy_map, alphas, temperatures, *, best, hindsight, start, ctkd_paths, meta_paths):
    """The grid's mean test accuracy per (alpha, T) as coloured squares, the quiz-chosen best (ring), the best in
    hindsight (diamond), the fixed-KD starting point, and the learned knobs' paths per seed (CTKD along its fixed
    alpha, the meta-gradient in both knobs), each ending in a marker where it landed."""
    ts, al = np.meshgrid(temperatures, alphas)
    cells = ax.scatter(ts.ravel(), al.ravel(), c=accuracy_map.ravel(), marker="s", s=900, cmap="viridis", zorder=1)
    for a, row in zip(alphas, accuracy_map):
        for t, value in zip(temperatures, row):
            ax.annotate(f"{value:.1f}", (t, a), xytext=(0, -24), textcoords="offset points", ha="center",
                        fontsize=8, color="0.25")
    for i, (t_path, tau_end) in enumerate(ctkd_paths):
        ax.plot(t_path, [start[0]] * len(t_path), color=CTKD_COLOUR, lw=1.5, alpha=0.7, zorder=2,
                label="CTKD's path (alpha fixed)" if i == 0 else None)
        ax.plot([tau_end], [start[0]], marker="v", color=CTKD_COLOUR, ms=8, mec="white", ls="none", zorder=4,
                label="CTKD: where T landed" if i == 0 else None)
    for i, (t_path, a_path) in enumerate(meta_paths):
        ax.plot(t_path, a_path, color=META, lw=1.2, alpha=0.8, zorder=2,
                label="meta-gradient's path" if i == 0 else None)
        ax.plot([t_path[-1]], [a_path[-1]], marker="o", color=META, ms=8, mec="white", ls="none", zorder=4,
                label="meta-gradient: where (T, alpha) landed" if i == 0 else None)
    ax.plot([start[1]], [start[0]], marker="*", color=KD, ms=15, mec="black", ls="none", zorder=5,
            label=f"fixed KD (alpha {start[0]:g}, T {start[1]:g}): the meta-gradient's start")
    ax.plot([best[1]], [best[0]], marker="o", ms=26, mfc="none", mec="black", mew=2, ls="none", zorder=3)
    ax.plot([], [], marker="o", ms=11, mfc="none", mec="black", mew=2, ls="none",
            label="grid's best, chosen on the quiz set")  # the legend's ring: smaller than the one on the grid
    ax.plot([hindsight[1]], [hindsight[0]], marker="D", ms=9, mfc="none", mec=GREY, mew=2, ls="none", zorder=3,
            label="grid's best in hindsight (chosen on the test set)")
    temperature_axis(ax, temperatures)
    ax.set_xlim(min(temperatures) / 1.6, max(max(temperatures), *(p[1] for p in ctkd_paths)) * 1.6)
    if len(alphas) > 1:  # the grid's alphas evenly spaced, linear in between: the learned alphas (0.9 to 1 here)
        a = np.array(alphas, dtype=float)  # get a whole row, not a sliver; one more row's step beyond each end
        a = np.concatenate([[2 * a[0] - a[1]], a, [2 * a[-1] - a[-2]]])
        rows = np.arange(-1.0, len(alphas) + 1)
        ax.set_yscale("function", functions=(lambda v: np.interp(v, a, rows), lambda r: np.interp(r, rows, a)))
        ax.set_ylim(np.interp(-0.5, rows, a), np.interp(len(alphas) - 0.6, rows, a))
    ax.set_yticks(alphas, [f"{a:g}" for a in alphas])
    ax.yaxis.set_minor_locator(NullLocator())
    ax.set_ylabel("ALPHA, the weight of the KD term\n(the grid's rows evenly spaced)")
    ax.set_title("Where the learned knobs land on the hand-tuned grid")
    fig.colorbar(cells, ax=ax, fraction=0.04, pad=0.02).set_label("grid: mean test accuracy (%)")
    legend_outside(ax, "below", ncol=2, fontsize=8)


def plot_trajectories(axes, kept, *, start, best, hindsight):
    """(a) alpha and (b) T over training, one thin line per seed and their mean (thick): the meta-gradient per
    meta step, CTKD's mean tau per epoch; horizontal lines at the grid's best points and at fixed KD."""
    ax_alpha, ax_t = axes
    runs = list(kept.values())
    meta_x = [r["step"] * len(runs[0]["meta"].records) / len(runs[0]["meta"].steps) for r in runs[0]["meta"].steps]
    ctkd_x = runs[0]["ctkd"].series("epoch")
    series = {"meta alpha": [r["meta"].step_series("alpha") for r in runs],
              "meta T": [r["meta"].step_series("temperature") for r in runs],
              "ctkd T": [r["ctkd"].series("temperature") for r in runs]}
    for ax, key, x, colour, name in ((ax_alpha, "meta alpha", meta_x, META, "meta-gradient"),
                                     (ax_t, "meta T", meta_x, META, "meta-gradient"),
                                     (ax_t, "ctkd T", ctkd_x, CTKD_COLOUR, "CTKD")):
        for i, values in enumerate(series[key]):
            ax.plot(x, values, color=colour, lw=0.8, alpha=0.45, label=f"{name}, one seed" if i == 0 else None)
        ax.plot(x, np.mean(series[key], axis=0), color=colour, lw=2.5, label=f"{name}, mean over seeds")
    for ax, index, name in ((ax_alpha, 0, "alpha"), (ax_t, 1, "T")):
        ax.axhline(best[index], color="black", ls=":", lw=1.5, label=f"grid's best (quiz): {name} {best[index]:g}")
        ax.axhline(hindsight[index], color=GREY, ls="--", lw=1.2,
                   label=f"grid's best in hindsight: {name} {hindsight[index]:g}")
        ax.axhline(start[index], color=KD, ls="-.", lw=1.2, label=f"fixed KD: {name} {start[index]:g}")
        ax.set_xlabel("epoch")
    ax_alpha.plot([], [], color=CTKD_COLOUR, lw=2.5, label=f"CTKD: alpha fixed at {start[0]:g}")
    ax_alpha.set(title="(a) alpha over training", ylabel="alpha (weight of the KD term)")
    log2_ticks(ax_t)
    ax_t.set(title="(b) temperature over training", ylabel="temperature T (log scale)")
    for ax in axes:
        legend_outside(ax, "below", fontsize=8)


def plot_landscape(ax, fig, matrix, alphas, temperatures, *, title, label, best="max", cmap="viridis", fmt="{:.1f}"):
    """A matrix over the grid (rows alpha, columns T) as an image with its values and its best cell boxed."""
    image = ax.imshow(matrix, cmap=cmap, aspect="auto", origin="lower")
    index = np.unravel_index(np.argmax(matrix) if best == "max" else np.argmin(matrix), matrix.shape)
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            red, green, blue, _ = image.cmap(image.norm(matrix[i, j]))
            ax.text(j, i, fmt.format(matrix[i, j]), ha="center", va="center", fontsize=8,
                    color="black" if 0.299 * red + 0.587 * green + 0.114 * blue > 0.5 else "white",
                    fontweight="bold" if (i, j) == index else None)
    ax.add_patch(Rectangle((index[1] - 0.5, index[0] - 0.5), 1, 1, fill=False, ec=PALETTE[3], lw=2.5))
    ax.set_xticks(range(len(temperatures)), [f"{t:g}" for t in temperatures])
    ax.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
    ax.set(xlabel="temperature T", ylabel="alpha", title=title)
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03).set_label(label)
    return alphas[index[0]], temperatures[index[1]]


def log2_ticks(ax, ticks=(1, 2, 4, 8, 16)):
    """A base-2 log y axis labelled with plain numbers."""
    ax.set_yscale("log", base=2)
    ax.yaxis.set_major_locator(FixedLocator(ticks))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))


def draw_knobs_panel(d, fig):
    """(a) CTKD's tau per epoch, (b) its curriculum lambda, (c) the meta-gradient's alpha and (d) T per step;
    dashed grey: the default setting (the fixed reference), dotted black: the grid's best."""
    ax_tau, ax_lambda, ax_alpha, ax_t = fig.subplots(2, 2).ravel()
    ctkd_, ref = d["ctkd"], d["ref_ctkd"]
    ax_tau.plot(ref["epochs"], ref["tau"], color=GREY, ls="--", label=f"default ({d['ref_curriculum']} epochs)")
    ax_tau.plot(ctkd_["epochs"], ctkd_["tau"], color=CTKD_COLOUR, marker=".", label=f"{d['curriculum']} epochs")
    ax_tau.ticklabel_format(axis="y", useOffset=False, style="plain")
    ax_tau.set(title="(a) CTKD: learned temperature tau", xlabel="epoch", ylabel="tau (epoch mean)")
    ax_lambda.plot(ref["epochs"], ref["lambda"], color=GREY, ls="--", label=f"default ({d['ref_curriculum']} epochs)")
    ax_lambda.plot(ctkd_["epochs"], ctkd_["lambda"], color=CTKD_COLOUR, marker=".", label=f"{d['curriculum']} epochs")
    ax_lambda.set(title="(b) CTKD: curriculum lambda (reversal strength)", xlabel="epoch", ylabel="lambda",
                  ylim=(-0.05, 1.05))
    meta, ref_meta = d["meta"], d["ref_meta"]
    for ax, key, index, name in ((ax_alpha, "alpha", 0, "alpha"), (ax_t, "temperature", 1, "T")):
        ax.plot(ref_meta["x"], ref_meta[key], color=GREY, ls="--", label=f"default (META_LR {d['ref_meta_lr']:.2g})")
        ax.plot(meta["x"], meta[key], color=META, label=f"META_LR {d['meta_lr']:.2g}")
        if d["grid_best"] is not None:
            ax.axhline(d["grid_best"][index], color="black", ls=":", lw=1.2, label=f"grid's best {name}")
        ax.set(xlabel="epoch", ylabel=name)
    lowest = min(meta["alpha"] + ref_meta["alpha"] + [d["start"][0]])
    ax_alpha.set(title="(c) meta-gradient: alpha per meta step", ylim=(min(0.5, lowest - 0.05), 1.01))
    ax_t.set(title="(d) meta-gradient: T per meta step", ylim=(0.9, 23))
    log2_ticks(ax_t)
    for ax in (ax_tau, ax_lambda, ax_alpha, ax_t):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()


def knobs_readout(d):
    return (f"CTKD ({d['curriculum']}-epoch curriculum): tau ends at {d['ctkd']['tau'][-1]:.2f}, student "
            f"{d['ctkd']['acc']:.1f}%; meta-gradient (META_LR {d['meta_lr']:.2g}): alpha {d['meta']['alpha'][-1]:.3f}, "
            f"T {d['meta']['temperature'][-1]:.2f}, student {d['meta']['acc']:.1f}%; {d['seconds']:.1f} s")
