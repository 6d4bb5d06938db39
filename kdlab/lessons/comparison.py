"""Notebook 08 (comparison): every method of the kit on one benchmark, measured the same way.

Every contender is a method of `kdlab.methods.registry`, built by `kdlab.benchmark.contender` from the same
seeded student and the benchmark's teachers, trained by `kdlab.train.fit` (TSMD's few-shot block: by
`fit_episodes`), and timed by calling its own `step(batch, run)` under `kdlab.profiling.step_cost`.

    bench = load_benchmark(Budget(epochs=60))
    result = run_method(bench, "MetaDistil", seed=0)     # {"acc": ..., "seconds": ..., "steps": ...}
    costs = step_costs(bench, seed=0)                     # {method: {"cost": StepCost, "components": ...}}
"""
import dataclasses
import functools
import math
import time

import torch

from .. import config
from ..benchmark import METHODS, check_contender, contender, training_data
from ..methods.base import Batch
from ..profiling import StepCost, step_cost
from ..scoreboard import SAME_STEP
from ..train import fit
from ..widgets import Panel, choice, mark_wall_clock, slider
from .comparison_fewshot import (FEWSHOT_NAMES, FEWSHOT_ROWS, fewshot_method, fewshot_seed,  # noqa: F401 (08's few-shot
                                 fewshot_seeds, fewshot_step_costs)                        # block, as lesson.*)

COST_METHODS = tuple(m for m in METHODS if m not in SAME_STEP)   # "KD (90 %)" takes exactly KD's step

# What the panel's ALPHA and TEMPERATURE sliders set for each method (None: the method has no such knob).
KNOBS = {"CE": (None, None), "KD": ("alpha", "temperature"), "KD (90 %)": ("alpha", "temperature"),
         "MetaDistil": ("alpha", "temperature"), "MetaDistiller": ("alpha", "temperature"),
         "MMKD": ("alpha", "temperature"), "FD + adaptation": ("alpha", None), "DKD": (None, "temperature"),
         "CTKD": ("alpha", None)}
ALPHA_MEANING = {
    "CE": "not used",
    "KD": "weight of the KD term",
    "KD (90 %)": "weight of the KD term",
    "MetaDistil": "weight of the KD term",
    "MetaDistiller": "weight of a shallow exit's soft target (the paper's alpha, on the hard label, is 1 - ALPHA)",
    "MMKD": "weight of the meta-weighted KD term (CE keeps weight 1)",
    "FD + adaptation": "start of the linear alpha schedule (feature-loss weight)",
    "DKD": "not used (CE weight 1, TCKD 1, NCKD 8: the paper's alpha and beta)",
    "CTKD": "weight of the KD term (its temperature is learned)",
}
# The method cards of notebook 08: row -> (registry name, the contender whose measured cost it shows).
CARD_ROWS = {"KD (reference)": ("kd", "KD"), "DKD": ("dkd", "DKD"), "CTKD": ("ctkd", "CTKD"),
             "MetaDistil": ("metadistil", "MetaDistil"),
             "MetaDistiller": ("metadistiller", "MetaDistiller"), "MMKD": ("mmkd", "MMKD"),
             "FD + adaptation": ("feature_meta", "FD + adaptation"), "TSMD (few-shot block)": ("tsmd", None)}
# Numbers a contender's history holds besides the final test accuracy: result key -> History key.
EXTRAS = {"MetaDistil": {"teacher_acc": "teacher_test_acc"}, "MetaDistiller": {"exit1_acc": "test_acc_exit1"},
          "CTKD": {"temperature": "temperature"}}


# --------------------------------------------------------------------------------------- one run per method

def run_method(bench, name, seed, budget=None, *, curves=False, **overrides):
    """Train contender `name` from seed `seed` with `budget` (default: the benchmark's) and its settings
    (`overrides` replace some). Returns {"acc": final test accuracy (%), "seconds": wall time of the whole
    run, "train_seconds": time inside the training loop, "steps", "seconds_per_step", and EXTRAS}; with
    `curves`, the test set is scored after every epoch and "epochs", "test_acc" and "loss" hold the curves."""
    budget = bench.budget if budget is None else budget
    started = time.perf_counter()
    data = training_data(bench, name, seed, budget)
    method = contender(bench, name, seed, **overrides)
    history = fit(method, data, seed=seed, progress=False, eval_every=1 if curves else budget.epochs,
                  augment=bench.augment, **budget.fit_kwargs())
    train_seconds = sum(r.get("seconds", 0.0) for r in history.records)
    result = {"acc": float(history.last["test_acc"]), "seconds": time.perf_counter() - started,
              "train_seconds": train_seconds, "steps": history.global_steps,
              "seconds_per_step": train_seconds / max(history.global_steps, 1)}
    result.update({key: float(history.last[field]) for key, field in EXTRAS.get(name, {}).items()})
    if curves:
        result.update(epochs=history.series("epoch"), test_acc=history.series("test_acc"), loss=history.series("loss"))
    return result


def run_seed(bench, seed, methods=METHODS, budget=None, log=None, overrides=None):
    """Every method in `methods` from seed `seed` (`overrides`: {method: {setting: value}}); a flat dict
    "method/metric" -> number for `stats.over_seeds`."""
    row = {}
    for name in methods:
        result = run_method(bench, name, seed, budget, **(overrides or {}).get(name, {}))
        row.update({f"{name}/{k}": float(v) for k, v in result.items()})
    if log is not None:
        log(f"seed {seed}: " + ", ".join(f"{name} {row[name + '/acc']:.1f}" for name in methods))
    return row


# ---------------------------------------------------------------------------------- cost of one training step

STEP_LABELS = {"CE": "CE step", "KD": "KD step", "KD (90 %)": "KD step",
               "MetaDistil": "MetaDistil step (teaching experiment, teacher update, pilot update)",
               "MetaDistiller": "network step (all exits)", "MMKD": "student step (weights from the nets)",
               "FD + adaptation": "feature-KD step", "DKD": "DKD step", "CTKD": "CTKD step (student and temperature)"}
META_LABELS = {"MetaDistiller": "generator step (look-ahead)", "MMKD": "meta step (3 virtual steps)",
               "FD + adaptation": "adaptation phase (2nd order)"}
# Where a method's own step includes its meta step (MMKD: every META_EVERY-th step of the run;
# MetaDistiller: every step of every META_EVERY-th epoch; the adaptation phase: after every META_EVERY-th
# step of an epoch): (run position of a step with it, of one without it, share of the steps with it).
META_SCHEDULES = {
    "MMKD": lambda s, budget: ({"global_step": 0}, {"global_step": 1}, 1 / s["meta_every"]),
    "MetaDistiller": lambda s, budget: ({"epoch": 0}, {"epoch": 1},
                                        math.ceil(budget.epochs / s["meta_every"]) / budget.epochs),
    "FD + adaptation": lambda s, budget: ({"step": s["meta_every"] - 1}, {"step": 0}, 1 / s["meta_every"]),
}


def step_phases(bench, name, budget=None):
    """The kinds of training step of contender `name`: [(label, run position, share of the steps)]."""
    check_contender(name)
    budget = bench.budget if budget is None else budget
    label = STEP_LABELS[name]
    if name not in META_SCHEDULES or not bench.settings[name].get("adaptation", True):
        return [(label, {}, 1.0)]
    with_meta, without, share = META_SCHEDULES[name](bench.settings[name], budget)
    phases = [(f"{label} + {META_LABELS[name]}", with_meta, share), (f"{label} alone", without, 1.0 - share)]
    return [phase for phase in phases if phase[2] > 0]


def step_components(bench, name, seed=0, budget=None):
    """One call of the method's own `step` per kind of step (`step_phases`), as [(label, step function,
    share)]: each on a fresh method, configured and prepared as `fit` does, at the phase's run position
    (after `on_epoch_start`), on one batch of `batch_size` images drawn from its training data."""
    budget = bench.budget if budget is None else budget
    parts = []
    for label, position, share in step_phases(bench, name, budget):
        method = contender(bench, name, seed)
        run = budget.run(seed)
        method.configure(run.recipe, run)
        data = method.prepare(training_data(bench, name, seed, budget), run)
        index = torch.randperm(data.num_train, generator=torch.Generator().manual_seed(seed))[:budget.batch_size]
        index = index.to(data.x_train.device)
        for key, value in position.items():
            setattr(run, key, value)
        method.train()
        method.on_epoch_start(run)
        parts.append((label, functools.partial(method.step, Batch(data.x_train[index], data.y_train[index], index),
                                               run), share))
    return parts


def step_costs(bench, methods=COST_METHODS, *, seed=0, budget=None, repeats=5, warmup=2, rounds=1, device="cpu"):
    """Wall time and peak memory of one training step per method, each kind of step measured with
    `kdlab.profiling.step_cost`: {method: {"cost": StepCost (seconds weighted by each kind's share of the
    steps; peak = the largest kind's), "components": {label: (StepCost, share)}}}.

    With `rounds` > 1 every method is measured that many times, the methods interleaved, and each piece keeps
    its fastest median: on a shared CPU the least disturbed measurement is the closest to the step's cost. The
    peak memory is measured in the first round only: the step allocates the same tensors in the same order each
    time (rounds differed by 0.3 % at most, 18 KiB of MMKD's 6.3 MiB), and on the CPU its measurement (the
    profiler's allocation timeline) took half of this function's time."""
    config.validate(COST_REPEATS=repeats, COST_ROUNDS=rounds)
    best = {}
    for first in [True] + [False] * (rounds - 1):
        for name in methods:
            for label, fn, share in step_components(bench, name, seed, budget):
                cost = step_cost(fn, repeats=repeats, warmup=warmup, device=device, peak=first)
                if not first:
                    old = best[(name, label)][0]
                    cost = StepCost(min(cost.seconds, old.seconds), old.peak_bytes)
                best[(name, label)] = (cost, share)
    out = {}
    for name in methods:
        parts = {label: value for (owner, label), value in best.items() if owner == name}
        seconds = sum(c.seconds * share for c, share in parts.values())
        peak = max(c.peak_bytes for c, _ in parts.values())
        out[name] = {"cost": StepCost(seconds, peak), "components": parts}
    return out


# ---------------------------------------------------------------------------------------------- the panel

def quick_run(bench, method, *, seed, epochs, alpha=None, temperature=None):
    """A short run of `method` (`epochs` epochs of the benchmark's budget) with ALPHA / TEMPERATURE applied
    where the method has them (KNOBS); returns the run's dict plus the settings used."""
    budget = dataclasses.replace(bench.budget, epochs=epochs)
    alpha_key, temperature_key = KNOBS.get(method, (None, None))
    overrides = {key: value for key, value in ((alpha_key, alpha), (temperature_key, temperature))
                 if key is not None and value is not None}
    result = run_method(bench, method, seed, budget, curves=True, **overrides)
    return {**result, "method": method, "overrides": overrides, "epochs": epochs, "curve_epochs": result["epochs"]}


def method_panel(bench, *, seed=0, epochs=10, method="KD", alpha=0.9, temperature=4.0):
    """METHOD (choice), ALPHA and TEMPERATURE: a short run of the chosen method next to a KD run of the same
    length (same seed), with a readout of both accuracies and the time."""
    references = {}

    def compute(METHOD, ALPHA, TEMPERATURE):
        config.validate(ALPHA=ALPHA, TEMPERATURE=TEMPERATURE)
        started = time.perf_counter()
        if epochs not in references:
            references[epochs] = quick_run(bench, "KD", seed=seed, epochs=epochs)
        result = quick_run(bench, METHOD, seed=seed, epochs=epochs, alpha=ALPHA, temperature=TEMPERATURE)
        reference = references[epochs]
        return {"method": METHOD, "alpha": ALPHA, "temperature": TEMPERATURE, "acc": result["acc"],
                "kd_acc": reference["acc"], "overrides": result["overrides"],
                "curve_epochs": result["curve_epochs"], "test_acc": result["test_acc"], "loss": result["loss"],
                "kd_test_acc": reference["test_acc"], "kd_loss": reference["loss"],
                "ms_per_step": 1000 * result["seconds_per_step"],
                "kd_ms_per_step": 1000 * references[epochs]["seconds_per_step"],
                "seconds": time.perf_counter() - started, "epochs": epochs}

    def draw(d, fig):
        ax_acc, ax_loss, ax_time = fig.subplots(1, 3, gridspec_kw={"width_ratios": [3, 3, 2]})
        label = f"{d['method']} (this setting)"
        ax_acc.plot(d["curve_epochs"], d["kd_test_acc"], color="0.45", ls="--", marker="s", label="KD (default settings)")
        ax_acc.plot(d["curve_epochs"], d["test_acc"], color="C1", marker="o", label=label)
        ax_acc.set(title="test accuracy per epoch", xlabel="epoch", ylabel="test accuracy (%)")
        ax_loss.plot(d["curve_epochs"], d["kd_loss"], color="0.45", ls="--", marker="s")
        ax_loss.plot(d["curve_epochs"], d["loss"], color="C1", marker="o")
        ax_loss.set(title="training loss (each method's own objective)", xlabel="epoch", ylabel="loss")
        for ax in (ax_acc, ax_loss):
            ax.set_xticks(d["curve_epochs"])
            ax.title.set_fontsize(9)
        ax_time.bar(["KD", d["method"]], [d["kd_ms_per_step"], d["ms_per_step"]], color=["0.6", "C1"])
        mark_wall_clock(ax_time)
        ax_time.set_title("time per training step", fontsize=9)
        ax_time.set_ylabel("milliseconds (this run)")
        ax_time.tick_params(axis="x", labelsize=8)
        handles, labels = ax_acc.get_legend_handles_labels()
        fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=2, frameon=False)
        fig.tight_layout(rect=(0, 0.1, 1, 1))

    def readout(d):
        used = ", ".join(f"{k}={v:g}" for k, v in d["overrides"].items()) or "no ALPHA/TEMPERATURE knob"
        return (f"{d['method']} ({used}; ALPHA = {ALPHA_MEANING[d['method']]}): {d['acc']:.1f}% after {d['epochs']} "
                f"epochs vs KD {d['kd_acc']:.1f}%; {d['ms_per_step']:.1f} ms/step vs KD {d['kd_ms_per_step']:.1f}; "
                f"{d['seconds']:.1f} s")

    return Panel(compute, draw,
                 {"METHOD": choice(method, METHODS), "ALPHA": slider(alpha, 0.0, 1.0, 0.05),
                  "TEMPERATURE": slider(temperature, 0.5, 20.0, 0.5)},
                 readout=readout, figsize=(11, 3.4))
