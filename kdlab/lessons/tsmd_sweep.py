"""Notebook 06 (TSMD): the KD_WEIGHT x TEMPERATURE grid on meta-validation episodes (`kd_sweep`, or
`start_kd_sweep` to go on while it computes), its cells meta-trained side by side in worker processes
(`kdlab.parallel`), and its figure (`plot_sweep`)."""
import copy
import functools
import time

import matplotlib.pyplot as plt

from .. import parallel
from ..data.episodes import EpisodeSampler
from ..methods import tsmd
from ..methods.tsmd import TSMD
from ..stats import episodes_ci
from ..train import fit_episodes


def kd_sweep(data, teacher, student0, **options):
    """Meta-train "ours" for every (KD_WEIGHT, TEMPERATURE) of the grid from the same initialisation and
    episodes; score each on the meta-VALIDATION episodes (the grid never sees the test classes): `start_kd_sweep`
    (same arguments), waiting for its rows."""
    return start_kd_sweep(data, teacher, student0, **options).rows()


def start_kd_sweep(data, teacher, student0, *, kd_weights, temperatures, shots, ways, queries, iterations, meta_batch,
                   val_tasks, seed, inner_steps, inner_lr, teacher_inner_steps, meta_lr, device="cpu", trained=None,
                   workers=1):
    """The KD grid's runs, started: every (KD_WEIGHT, TEMPERATURE) cell meta-trained as "ours" from the same
    initialisation and episodes, and scored on the meta-VALIDATION episodes. KD weight 0 is plain MAML on the
    student (exactly: the unit tests), run once as the "student" variant. `trained` maps (w, T) (or (0.0, None))
    to a (teacher, student) pair already meta-trained with this budget (the Table 1 rows): those are only scored.
    With `workers` > 1 every cell is queued in the worker processes now (`kdlab.parallel.start_each`), the ones
    to train first, each with the numbers it gets alone, and this process goes on; runs started after this call
    queue behind them. `.rows()` of the returned SweepRuns waits for them: a list of {"kd_weight", "temperature",
    "effective" (= w T^2), "accuracy", "ci", "seconds", "reused"}."""
    trained = dict(trained or {})
    keys = list(dict.fromkeys(_sweep_key(w, t) for w in kd_weights for t in temperatures))
    # a key with T None (KD weight 0) runs with the grid's first temperature, which the student variant ignores
    cell = functools.partial(_sweep_cell, data, teacher, student0, trained, dict(
        shots=shots, ways=ways, queries=queries, iterations=iterations, meta_batch=meta_batch, val_tasks=val_tasks,
        seed=seed, inner_steps=inner_steps, inner_lr=inner_lr, teacher_inner_steps=teacher_inner_steps,
        meta_lr=meta_lr, device=device, any_temperature=float(temperatures[0])))
    order = [key for key in keys if key not in trained] + [key for key in keys if key in trained]
    return SweepRuns(kd_weights, temperatures, dict(zip(order, parallel.start_each(cell, order, workers))))


class SweepRuns:
    """The KD grid's started runs (`start_kd_sweep`)."""

    def __init__(self, kd_weights, temperatures, jobs):
        self.kd_weights, self.temperatures, self.jobs = list(kd_weights), list(temperatures), jobs

    def rows(self):
        """One row per (KD_WEIGHT, TEMPERATURE), in the grid's order, once every run is done."""
        rows = []
        for w in self.kd_weights:
            for t in self.temperatures:
                ci, seconds, reused = self.jobs[_sweep_key(w, t)].result()
                rows.append({"kd_weight": float(w), "temperature": float(t), "effective": float(w * t * t),
                             "accuracy": ci.mean, "ci": ci.half_width, "seconds": seconds, "reused": reused})
        return rows


def _sweep_key(w, t):
    """The grid cell's key: KD weight 0 is one cell (plain MAML on the student) whatever T is."""
    return (0.0, None) if w == 0 else (float(w), float(t))


def _sweep_cell(data, teacher, student0, trained, o, key):
    """One cell of the KD grid, meta-trained unless `trained` has it, scored on the validation tasks:
    (interval, seconds, reused)."""
    w, t = key[0], o["any_temperature"] if key[1] is None else key[1]
    variant = "student" if key == (0.0, None) else "ours"
    started = time.perf_counter()
    tch, stu = trained.get(key) or (None if w == 0 else copy.deepcopy(teacher), copy.deepcopy(student0))
    if key not in trained:
        sampler = EpisodeSampler(data, "train", ways=o["ways"], shots=o["shots"], queries=o["queries"], seed=o["seed"])
        fit_episodes(TSMD(tch, stu, variant=variant, inner_steps=o["inner_steps"], inner_lr=o["inner_lr"],
                          teacher_inner_steps=o["teacher_inner_steps"], kd_weight=w, temperature=t,
                          meta_lr=o["meta_lr"]), sampler, iterations=o["iterations"], meta_batch=o["meta_batch"],
                     log_every=o["iterations"], device=o["device"])
    result = tsmd.evaluate(tch, stu, o["val_tasks"], variant=variant, inner_steps=o["inner_steps"],
                           inner_lr=o["inner_lr"], teacher_inner_steps=o["teacher_inner_steps"], kd_weight=w,
                           temperature=t)
    return episodes_ci((100 * result["accuracies"]).tolist()), time.perf_counter() - started, key in trained


def plot_sweep(rows, baseline=None, ax=None):
    """Validation accuracy against KD_WEIGHT, one line per TEMPERATURE; `baseline` = plain MAML."""
    ax = ax or plt.subplots(figsize=(5, 3))[1]
    for i, t in enumerate(sorted({r["temperature"] for r in rows})):
        points = sorted((r for r in rows if r["temperature"] == t), key=lambda r: r["kd_weight"])
        ax.errorbar([max(r["kd_weight"], 1e-3) for r in points], [r["accuracy"] for r in points],
                    yerr=[r["ci"] for r in points], marker="o", capsize=3, label=f"T = {t:g}", color=f"C{i}")
    if baseline is not None:
        ax.axhline(baseline, color="0.4", ls="--", lw=1, label="plain MAML (KD weight 0)")
    ax.set(xscale="log", xlabel="KD weight w (log scale; 0 drawn at 1e-3)", ylabel="meta-val accuracy (%)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax
