"""Several methods side by side: one Markdown table of accuracy (paired over seeds) and step cost, the
plots of the differences and of accuracy against cost, the method cards of `kdlab.methods.registry` as
one table, and the few-shot table.

`results` is what `stats.over_seeds` returns for rows "method/metric" (`column` reads one); `costs` maps a
method to {"cost": StepCost, ...} (`kdlab.lessons.comparison.step_costs`).
"""
import math

import numpy as np

from .methods import registry

BASELINE = "KD"
SAME_STEP = {"KD (90 %)": "KD"}   # takes exactly KD's step (on fewer images): its cost is KD's
CARD_HEADERS = {"paper": "paper", "equations": "equations", "detached": "what is detached",
                "order": "gradient order", "loop": "loop", "deviations": "declared deviations"}


def column(results, name, metric="acc"):
    return results[f"{name}/{metric}"]


def step_cost_of(costs, name):
    return costs[SAME_STEP.get(name, name)]["cost"]


def comparison_table(results, costs, methods, baseline=BASELINE):
    """ONE Markdown table: accuracy (mean ± 95 % t interval over seeds), the paired difference against
    `baseline` with its interval and wins, the wall time of one training step measured in isolation
    (`costs`) and inside the training runs (mean over seeds of the training loops' seconds per step,
    where `results` has it), and the peak memory of one step; each cost also relative to the baseline."""
    from .stats import mean_ci, paired_difference

    base = column(results, baseline)
    base_cost = costs[baseline]["cost"]
    in_run = f"{baseline}/seconds_per_step" in results
    lines = [f"| method | test accuracy (%) | vs {baseline} [95% CI] (wins) | ms / step | x {baseline} | "
             + (f"ms / step in training | x {baseline} | " if in_run else "")
             + f"peak KiB / step | x {baseline} |",
             "|---|---:|---:|---:|---:|" + ("---:|---:|" if in_run else "") + "---:|---:|"]
    for name in methods:
        accs = column(results, name)
        versus = "(baseline)" if name == baseline else str(paired_difference(accs, base))
        cost = step_cost_of(costs, name)
        time_ratio, mem_ratio = cost.relative_to(base_cost)
        cells = [name, str(mean_ci(accs)), versus, f"{1000 * cost.seconds:.2f}", f"{time_ratio:.1f}"]
        if in_run:
            ms = 1000 * float(np.mean(column(results, name, "seconds_per_step")))
            base_ms = 1000 * float(np.mean(column(results, baseline, "seconds_per_step")))
            cells += [f"{ms:.2f}", f"{ms / base_ms:.1f}"]
        cells += [f"{cost.peak_bytes / 1024:.0f}", f"{mem_ratio:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_differences(ax, results, methods, baseline=BASELINE):
    """Per-seed differences against `baseline` (grey dots), their mean and 95 % t interval (black), zero line."""
    from .stats import paired_difference

    others = [m for m in methods if m != baseline]
    base = column(results, baseline)
    for i, name in enumerate(others):
        diff = paired_difference(column(results, name), base)
        jitter = np.linspace(-0.12, 0.12, len(diff.differences))
        ax.scatter(i + jitter, diff.differences, color="0.6", s=12, zorder=2)
        ax.errorbar(i, diff.mean, yerr=diff.half_width if math.isfinite(diff.half_width) else 0, fmt="s",
                    color="k", capsize=4, zorder=3)
    ax.axhline(0, color="C3", lw=1, ls="--")
    ax.set_xticks(range(len(others)), others, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel(f"test accuracy - {baseline} (points)")


def plot_cost_accuracy(ax, results, costs, methods, baseline=BASELINE):
    """Mean accuracy (with its 95 % interval) against the measured time per step, relative to the baseline."""
    from .stats import mean_ci

    base = costs[baseline]["cost"]
    for i, name in enumerate(methods):
        ci = mean_ci(column(results, name))
        ratio = step_cost_of(costs, name).relative_to(base)[0]
        ax.errorbar(ratio, ci.mean, yerr=ci.half_width if math.isfinite(ci.half_width) else 0, fmt="o",
                    color=f"C{i}", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel(f"time per training step / {baseline}'s (log)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=7)


# ------------------------------------------------------------------------------------------ method cards

def card_cost(costs, method, baseline=BASELINE):
    """'x time, x memory' of `method`'s step over the baseline's (or '' where either was not measured)."""
    if method not in costs or baseline not in costs:
        return ""
    time_ratio, mem_ratio = costs[method]["cost"].relative_to(costs[baseline]["cost"])
    return f"{time_ratio:.1f}x time, {mem_ratio:.1f}x peak memory per step"


def missing_fields(rows):
    """(row, field) pairs of `rows` ({row label: registry name}) whose registry card lacks a field of
    `registry.CARD_FIELDS` or leaves it empty: [] when every card is complete."""
    return [(label, f) for label, name in rows.items() for f in registry.CARD_FIELDS
            if not str(registry.card(name).get(f, "")).strip()]


def cards_markdown(rows, costs=None, extra_costs=None, fields=registry.CARD_FIELDS):
    """The registry's cards of `rows` ({row label: (registry name, the method in `costs` or None)}) as one
    Markdown table, one column per card field and a last column with the cost measured here: from `costs`
    over the baseline's, or the ready string `extra_costs[label]` (e.g. TSMD's, per meta-iteration)."""
    lines = ["| method | " + " | ".join(CARD_HEADERS.get(f, f) for f in fields) + " | cost vs KD (measured here) |",
             "|" + "---|" * (len(fields) + 2)]
    for label, (name, measured) in rows.items():
        card = registry.card(name)
        cost = (extra_costs or {}).get(label) or (card_cost(costs or {}, measured) if measured else "")
        cells = [label, *(str(card.get(f, "")) for f in fields), cost]
        lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ few-shot table

def fewshot_table(per_seed, names, baseline):
    """Markdown: per row of `names` ({row: label}), the mean over seeds with its t interval, MAML's
    pooled-episode interval, and the paired difference (over seeds) against `baseline`.
    `per_seed[row]` = list (one per seed) of per-episode accuracy lists."""
    from .stats import episodes_ci, mean_ci, paired_difference

    n = len(per_seed[baseline])
    lines = [f"| model | mean over {n} seeds ± 95% CI | pooled episodes ± 1.96 sd/sqrt(n) | "
             f"vs {names[baseline]} (paired over seeds) |", "|---|---:|---:|---:|"]
    base = [float(np.mean(r)) for r in per_seed[baseline]]
    for row, label in names.items():
        means = [float(np.mean(r)) for r in per_seed[row]]
        pooled = episodes_ci([a for r in per_seed[row] for a in r])
        versus = "(baseline)" if row == baseline else str(paired_difference(means, base))
        lines.append(f"| {label} | {mean_ci(means)} | {pooled.mean:.1f} ± {pooled.half_width:.1f} "
                     f"(n={pooled.n}) | {versus} |")
    return "\n".join(lines)
