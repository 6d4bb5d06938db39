"""Notebook 06 (TSMD): the KD_WEIGHT x TEMPERATURE grid on meta-validation episodes (`kd_sweep`), its cells
meta-trained side by side in worker processes (`kdlab.parallel`), and its figure (`plot_sweep`)."""
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


def kd_sweep(data, teacher, student0, *, kd_weights, temperatures, shots, ways, queries, iterations, meta_batch,
             val_tasks, seed, inner_steps, inner_lr, teacher_inner_steps, meta_lr, device="cpu", trained=None,
             workers=1):
    """Meta-train "ours" for every (KD_WEIGHT, TEMPERATURE) of the grid from the same initialisation and
    episodes; score each on the meta-VALIDATION episodes (the grid never sees the test classes). KD weight 0
    is plain MAML on the student (exactly: the unit tests), run once as the "student" variant. `trained` maps
    (w, T) (or (0.0, None)) to a (teacher, student) pair already meta-trained with this budget (the Table 1
    rows). `workers` > 1 meta-trains the other cells in that many processes side by side (`kdlab.parallel`),
    each with the numbers it gets alone. Returns a list of {"kd_weight", "temperature", "effective" (= w T^2),
    "accuracy", "ci", "seconds"}."""
    trained = dict(trained or {})
    keys = list(dict.fromkeys(_sweep_key(w, t) for w in kd_weights for t in temperatures))
    # a key with T None (KD weight 0) runs with the grid's first temperature, which the student variant ignores
    cell = functools.partial(_sweep_cell, data, teacher, student0, trained, dict(
        shots=shots, ways=ways, queries=queries, iterations=iterations, meta_batch=meta_batch, val_tasks=val_tasks,
        seed=seed, inner_steps=inner_steps, inner_lr=inner_lr, teacher_inner_steps=teacher_inner_steps,
        meta_lr=meta_lr, device=device, any_temperature=float(temperatures[0])))
    fresh = [key for key in keys if key not in trained]
    scored = dict(zip(fresh, parallel.map_in_workers(cell, fresh, workers)))
    scored.update({key: cell(key) for key in keys if key in trained})
    rows = []
    for w in kd_weights:
        for t in temperatures:
            ci, seconds, reused = scored[_sweep_key(w, t)]
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
