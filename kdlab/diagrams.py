"""Schematic figures for the notebooks: rounded boxes and arrows on an empty axis.

    fig = diagrams.tsmd_story()        # notebook 06: server, client and edge device (the paper's Figs. 1-2)
    fig = diagrams.tsmd_inner_loop()   # notebook 06: one task of Algorithm 1 (Eqs. 6-10)
"""
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch


def box(ax, xy, text, color, width=0.2, height=0.12, fontsize=8):
    x, y = xy
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.01",
                                fc=color, ec="0.3", lw=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def arrow(ax, start, end, text="", dashed=False, color="0.25", offset=(0, 0.03)):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color=color, lw=1.2,
                                 ls="--" if dashed else "-", shrinkA=2, shrinkB=2))
    if text:
        ax.text((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1], text, ha="center",
                va="bottom", fontsize=7, color=color)


def tsmd_story():
    """The paper's Figures 1-2 in one picture: the server meta-trains a big teacher T and a small student S
    together; a client adapts T, then S guided by the adapted T, on its few examples and deploys S alone."""
    fig, ax = plt.subplots(figsize=(10, 3.4))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.add_patch(FancyBboxPatch((0.01, 0.08), 0.33, 0.84, boxstyle="round,pad=0.01", fc="#eef3fb", ec="0.6"))
    ax.text(0.175, 0.86, "server: meta-training (lots of compute)", ha="center", fontsize=9, weight="bold")
    box(ax, (0.1, 0.55), "teacher T\n(big, psi)", "#f6c28b", width=0.13, height=0.16)
    box(ax, (0.25, 0.55), "student S\n(small, theta)", "#9fd39b", width=0.13, height=0.16)
    ax.text(0.175, 0.27, "many N-way K-shot tasks\nfrom the meta-train classes\n(Algorithm 1, Eqs. 6-10)",
            ha="center", fontsize=8)
    arrow(ax, (0.35, 0.55), (0.42, 0.55), "send (psi, theta)")
    ax.add_patch(FancyBboxPatch((0.43, 0.08), 0.34, 0.84, boxstyle="round,pad=0.01", fc="#fbf3e6", ec="0.6"))
    ax.text(0.6, 0.86, "client: adaptation (a laptop)", ha="center", fontsize=9, weight="bold")
    ax.text(0.6, 0.72, "K labelled images of N new classes", ha="center", fontsize=8)
    box(ax, (0.5, 0.45), "adapt T\n(Eq. 6)", "#f6c28b", width=0.11, height=0.14)
    box(ax, (0.7, 0.45), "adapt S with KD\nfrom T' (Eq. 7)", "#9fd39b", width=0.13, height=0.14)
    arrow(ax, (0.555, 0.45), (0.635, 0.45), "guide")
    arrow(ax, (0.78, 0.45), (0.84, 0.45), "deploy S'")
    ax.add_patch(FancyBboxPatch((0.85, 0.08), 0.14, 0.84, boxstyle="round,pad=0.01", fc="#eaf6ea", ec="0.6"))
    ax.text(0.92, 0.86, "edge device", ha="center", fontsize=9, weight="bold")
    box(ax, (0.92, 0.45), "S' only\n(small)", "#9fd39b", width=0.1, height=0.14)
    ax.text(0.92, 0.2, "T' is too big\nto deploy", ha="center", fontsize=8, color="0.35")
    fig.tight_layout()
    return fig


def tsmd_inner_loop():
    """One task of Algorithm 1: Eq. 6 adapts the teacher, its support logits (detached) enter Eq. 7,
    both adapted models are scored on the query set (Eq. 8) and each initialisation gets its own
    meta-gradient (Eq. 10)."""
    fig, ax = plt.subplots(figsize=(10, 3.6))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    box(ax, (0.07, 0.5), "support set\nD_tr (N x K)", "#dddddd", width=0.11, height=0.16)
    box(ax, (0.26, 0.8), "teacher psi", "#f6c28b", width=0.12)
    box(ax, (0.5, 0.8), "psi' = psi - alpha grad CE\n(Eq. 6)", "#f6c28b", width=0.2)
    box(ax, (0.26, 0.22), "student theta", "#9fd39b", width=0.12)
    box(ax, (0.5, 0.22), "theta' = theta - lambda grad\n[CE + w T^2 KL] (Eq. 7)", "#9fd39b", width=0.2)
    box(ax, (0.5, 0.51), "soft targets\nsigma(f_psi'(D_tr)/T)", "#fbe3c8", width=0.16)
    box(ax, (0.76, 0.8), "L_T(psi'; D_val)\n(Eq. 8a)", "#f6c28b", width=0.15)
    box(ax, (0.76, 0.22), "L_S(theta'; D_val)\n(Eq. 8b)", "#9fd39b", width=0.15)
    box(ax, (0.93, 0.51), "query set\nD_val", "#dddddd", width=0.1, height=0.16)
    arrow(ax, (0.125, 0.56), (0.2, 0.78))
    arrow(ax, (0.125, 0.44), (0.2, 0.24))
    arrow(ax, (0.32, 0.8), (0.4, 0.8), "inner step")
    arrow(ax, (0.32, 0.22), (0.4, 0.22), "inner step")
    arrow(ax, (0.5, 0.74), (0.5, 0.57))
    arrow(ax, (0.5, 0.45), (0.5, 0.28), "detached", dashed=True, offset=(0.05, -0.01))
    arrow(ax, (0.6, 0.8), (0.685, 0.8))
    arrow(ax, (0.6, 0.22), (0.685, 0.22))
    arrow(ax, (0.88, 0.56), (0.8, 0.74))
    arrow(ax, (0.88, 0.45), (0.8, 0.28))
    arrow(ax, (0.76, 0.88), (0.26, 0.88), "Eq. 10a: meta-gradient for psi", color="C1", offset=(0, 0.0))
    arrow(ax, (0.76, 0.14), (0.26, 0.14), "Eq. 10b: meta-gradient for theta (through Eq. 7, KD included)",
           color="C2", offset=(0, -0.08))
    fig.tight_layout()
    return fig
