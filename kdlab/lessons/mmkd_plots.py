"""Notebook 05 (MMKD): pictures of the method: the two meta-weight networks as block diagrams (Eq. 4-6) and
the table of mean weights per teacher and group."""
import matplotlib.pyplot as plt


# -- pictures of the method --------------------------------------------------------------------------------
def draw_weight_nets(fig, num_classes, num_teachers, batch_size):
    """The two meta-weight networks as block diagrams, with this notebook's widths."""
    k, c, b = num_teachers, num_classes, batch_size
    rows = [("logit net (Eqs. 1-2)", [f"teacher logits\nz^t1..z^t{k}\n+ sg(student z^s)",
                                       f"concat\n{c}(K+1) = {c * (k + 1)}",
                                       f"FC {c * (k + 1)} -> {c * (k + 1) // 2}\nReLU", f"FC {c * (k + 1) // 2} -> {k}",
                                       f"softmax\nw^l: {k} weights"]),
            ("feature net (Eqs. 3-5)", [f"Gram rows G_i\nof {k} teachers\n+ sg(student)",
                                        f"concat\n{b}(K+1) = {b * (k + 1)}",
                                        f"FC {b * (k + 1)} -> {b * (k + 1) // 2}\nReLU",
                                        f"FC {b * (k + 1) // 2} -> {k}", f"softmax\nw^f: {k} weights"])]
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
