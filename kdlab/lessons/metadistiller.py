"""Notebook 04 (MetaDistiller): experiments and the panel; the figures live in `metadistiller_plots`.

Every function is a pure function of its arguments and a seed, so the notebook, the slider and a sweep
get the same numbers for the same settings. ALPHA weights the soft target (the paper's alpha, on the
hard label, is 1 - ALPHA). Methods by name:

    "plain"    the backbone alone, cross-entropy (the paper's "baseline" column)
    "DSN"      exits with hard labels only                      (Table 4, "Hard Only")
    "SD"       the final output as every exit's soft target      (Table 4, "Hard + Simple Soft")
    "MD"       MetaDistiller's generated soft targets           (Table 4, "Hard + Better Soft")
    "uniform"  MD's generator frozen at its start: uniform targets (our control, not in the paper)
    "KD"       a wide teacher trained first, then the plain backbone distilled from it (Table 3's pipeline)
"""
import copy
import functools
import time

import torch

from .. import parallel, profiling, stats
from ..losses import entropy, soft_targets
from ..methods.kd import KD
from ..methods.metadistiller import MetaDistiller, generator_step, network_losses
from ..models import SmallCNN
from ..models.label_generator import generated_targets
from ..models.multi_exit import MultiExit, exit_accuracies
from ..train import fit
from ..widgets import Panel, slider
# The notebook reads everything as `lesson.<name>`: the figures' names are re-exported here.
from .metadistiller_plots import (draw_top_down, exit_bars, exit_name, plot_entropy_bars,  # noqa: F401
                                  plot_example_targets, plot_exit_curves, plot_target_entropy_curves)

MODES = {"DSN": "dsn", "SD": "sd", "MD": "md", "uniform": "md"}


# -- models and runs ------------------------------------------------------------------------------
def new_model(data, seed, *, width=16, head="pool", num_exits=3):
    """A SmallCNN backbone with `num_exits - 1` exits, seeded: the same seed gives the same backbone as
    `SmallCNN(width)` after `torch.manual_seed(seed)`, so plain and multi-exit runs start alike."""
    torch.manual_seed(seed)
    backbone = SmallCNN(num_classes=data.num_classes, width=width, in_channels=data.input_shape[0])
    return MultiExit(backbone, num_exits, head=head).to(data.x_train.device)


def train_exits(data, seed, *, model, recipe, eval_every, **knobs):
    """`net = new_model(data, seed, **model)`, then `fit(MetaDistiller(net, **knobs), data, seed=seed,
    eval_every=eval_every, progress=False, **recipe)`, timed; a function of this module, so that a worker process
    can run it (`kdlab.parallel.start`). Returns (the trained net, the method's label generator (None but in MD
    mode), History, seconds)."""
    start = time.perf_counter()
    net = new_model(data, seed, **model)
    method = MetaDistiller(net, **knobs)
    history = fit(method, data, seed=seed, eval_every=eval_every, progress=False, **recipe)
    return net, method.generator, history, time.perf_counter() - start


def train_teacher(data, seed, *, width, recipe):
    """The KD teacher of the ablation: SmallCNN of `width` after `torch.manual_seed(seed)`, trained with `recipe`.
    Returns (teacher, History, seconds)."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    teacher = SmallCNN(num_classes=data.num_classes, width=width, in_channels=data.input_shape[0])
    teacher = teacher.to(data.x_train.device)
    history = fit(teacher, data, seed=seed, progress=False, eval_every=recipe["epochs"], **recipe)
    return teacher, history, time.perf_counter() - start


def run_method(data, method, seed, *, recipe, alpha=0.5, temperature=1.0, meta_every=5, meta_lr=1e-2,
               width=16, head="pool", teacher=None, kd=None):
    """Train one method from seed `seed`; returns a dict of numbers (accuracies in %, seconds, entropies)
    and, under "model"/"generator"/"history", what was trained."""
    start = time.perf_counter()
    if method in ("plain", "KD"):
        torch.manual_seed(seed)
        model = SmallCNN(num_classes=data.num_classes, width=width, in_channels=data.input_shape[0])
        model = model.to(data.x_train.device)
        history = fit(KD(model, teacher, **(kd or {})) if method == "KD" else model, data, seed=seed, progress=False,
                      eval_every=recipe["epochs"], **recipe)
        return {"final": history.last["test_acc"], "seconds": time.perf_counter() - start,
                "model": model, "history": history}
    model = new_model(data, seed, width=width, head=head)
    md = MetaDistiller(model, mode=MODES[method], alpha=alpha, temperature=temperature, meta_every=meta_every,
                       meta_lr=meta_lr, freeze_generator=method == "uniform")
    history = fit(md, data, seed=seed, eval_every=recipe["epochs"], progress=False, **recipe)
    seconds, generator = time.perf_counter() - start, md.generator
    accs = exit_accuracies(model, data.x_test, data.y_test)
    out = {**accs, "seconds": seconds, "meta_seconds": sum(r.get("meta_seconds", 0.0) for r in history.records),
           "model": model, "generator": generator, "history": history}
    out.update(entropy_profile(model, generator, data.x_test, temperature))
    if generator is not None:
        out.update(target_argmax(model, generator, data.x_test, data.y_test))
    return out


def ablation_seed(data, seed, methods, **kwargs):
    """Every method in `methods` from the same seed: a flat dict "method/metric" -> number (`stats.over_seeds`)."""
    row = {}
    for method in methods:
        row.update({f"{method}/{k}": v for k, v in _numbers_of_run(data, kwargs, (seed, method)).items()})
    return row


# A run's time relative to DSN's (60 epochs on the digits, one thread): the workers take the longest runs first.
RUN_COST = {"MD": 3.1, "uniform": 1.9, "SD": 1.25, "DSN": 1.0, "KD": 1.0, "plain": 0.9}


def ablation(data, seeds, methods, *, workers=1, **kwargs):
    """`ablation_seed` for every seed, collected as `stats.over_seeds` collects it ({"method/metric": [value per
    seed]}), with every (seed, method) run in one of `workers` processes side by side (`kdlab.parallel`): each
    run seeds itself, so it gives the numbers it gives in `ablation_seed`."""
    seeds = list(seeds)
    pairs = [(seed, method) for seed in seeds for method in methods]
    numbers = parallel.map_in_workers(functools.partial(_numbers_of_run, data, kwargs), pairs, workers,
                                      cost=lambda pair: RUN_COST.get(pair[1], 1.0))
    rows = {seed: {} for seed in seeds}
    for (seed, method), result in zip(pairs, numbers):
        rows[seed].update({f"{method}/{k}": v for k, v in result.items()})
    return stats.over_seeds(rows.__getitem__, seeds, progress=False)


def _numbers_of_run(data, kwargs, seed_and_method):
    """The numbers of one `run_method` (what was trained stays where it ran)."""
    seed, method = seed_and_method
    result = run_method(data, method, seed, **kwargs)
    return {k: float(v) for k, v in result.items() if isinstance(v, (int, float))}


def column(results, method, metric):
    return results[f"{method}/{metric}"]


# -- Figure 3: how soft are the targets? ------------------------------------------------------------
@torch.no_grad()
def entropy_profile(model, generator, x, temperature=1.0):
    """Mean entropy (nats) over `x` of each exit's prediction ("H_exit{k}", "H_final": SD's soft target) and
    of each generated target T_k ("H_T{k}", MD only)."""
    out = {}
    if generator is not None:
        targets, outputs = generated_targets(model, generator, x)
        for k, u in enumerate(targets, start=1):
            out[f"H_T{k}"] = float(entropy(soft_targets(u, temperature)).mean())
    else:
        was_training = model.training
        model.eval()
        outputs = model(x, all_exits=True)
        model.train(was_training)
    for k, s in enumerate(outputs[:-1], start=1):
        out[f"H_exit{k}"] = float(entropy(soft_targets(s, temperature)).mean())
    out["H_final"] = float(entropy(soft_targets(outputs[-1], temperature)).mean())
    return out


@torch.no_grad()
def target_argmax(model, generator, x, y):
    """Where the generated targets point: for each T_k, the share (%) of inputs whose arg-max is the true
    label ("agree_T{k}") and the share of the most frequent arg-max class ("mode_T{k}"; 10% for a balanced
    10-class set, 100% if every target points at one class)."""
    targets, _ = generated_targets(model, generator, x)
    out = {}
    for k, u in enumerate(targets, start=1):
        pred = u.argmax(dim=-1)
        out[f"agree_T{k}"] = 100.0 * float((pred == y).float().mean())
        out[f"mode_T{k}"] = 100.0 * float(torch.bincount(pred).max()) / len(pred)
    return out


@torch.no_grad()
def feature_overlap(model, x, k):
    """Mean cosine similarity between the features of two different inputs, taken where exit `k`'s linear
    layer reads them (after pooling, or after the bottleneck). Near 1: the exit sees almost the same
    direction for every input, so moving its logits on one input moves them on all."""
    was_training = model.training
    model.eval()
    _, maps = model(x, all_exits=True, return_features=True)
    model.train(was_training)
    h, n = torch.nn.functional.normalize(model.exits[k - 1].body(maps[k - 1]), dim=1), len(x)
    return float(((h @ h.T).sum() - n) / (n * n - n))


def step_costs(model, generator, data, *, batch_size=64, repeats=10, alpha=0.5, temperature=1.0, lr=0.05):
    """`kdlab.profiling.StepCost` (median seconds, peak bytes) of a network step (DSN and MD objectives,
    forward + backward + SGD) and of a generator step (Eqs. 6-8), on copies: `model` and `generator` are
    left as they were."""
    net, gen = copy.deepcopy(model).train(), copy.deepcopy(generator).train()
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    gen_opt = torch.optim.Adam(gen.parameters(), lr=1e-3)
    x, y = data.x_train[:batch_size], data.y_train[:batch_size]
    x2, y2 = data.x_train[-batch_size:], data.y_train[-batch_size:]

    def network(mode):
        losses = network_losses(net, gen, x, y, mode=mode, alpha=alpha, temperature=temperature)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()

    steps = {"network step (DSN)": lambda: network("dsn"), "network step (MD)": lambda: network("md"),
             "generator step": lambda: generator_step(net, gen, gen_opt, (x, y), (x2, y2), lr=lr, alpha=alpha,
                                                      temperature=temperature)}
    return {name: profiling.step_cost(step, repeats=repeats, device=x.device) for name, step in steps.items()}


@torch.no_grad()
def example_targets(model, generator, x, index, temperature=1.0):
    """The soft targets one test image gets: T_1 .. T_{K-1} (generated) and the final output (SD's target)."""
    targets, outputs = generated_targets(model, generator, x[index:index + 1])
    rows = {f"T{k} (MD, exit {k})": soft_targets(u[0], temperature).tolist() for k, u in enumerate(targets, 1)}
    rows["final output (SD)"] = soft_targets(outputs[-1][0], temperature).tolist()
    return rows


# -- the panel ------------------------------------------------------------------------------------
def md_panel(data, *, recipe, seed=0, alpha=0.5, temperature=1.0, meta_every=5, meta_lr=1e-2, width=16,
             head="pool"):
    """ALPHA, TEMPERATURE and META_EVERY sliders that retrain MD on `recipe` and compare every exit
    with a fixed DSN reference from the same seed."""
    reference = run_method(data, "DSN", seed, recipe=recipe, width=width, head=head)
    keys = [k for k in reference if k.startswith("exit")] + ["final", "ensemble"]

    def compute(ALPHA, TEMPERATURE, META_EVERY):
        result = run_method(data, "MD", seed, recipe=recipe, alpha=ALPHA, temperature=TEMPERATURE,
                            meta_every=META_EVERY, meta_lr=meta_lr, width=width, head=head)
        history = result["history"]
        return {
            "alpha": ALPHA, "temperature": TEMPERATURE, "meta_every": META_EVERY,
            "md": {k: result[k] for k in keys}, "dsn": {k: reference[k] for k in keys},
            "entropies": {k: result[k] for k in result if k.startswith("H_T")} | {"H_final": result["H_final"]},
            "meta_epochs": sum(bool(r.get("meta_epoch")) for r in history.records),
            "history": history, "num_exits": len(keys) - 1,
            "seconds": result["seconds"], "meta_seconds": result["meta_seconds"],
            "train_loss": history.last.get("loss", float("nan")),
        }

    def draw(d, fig):
        ax_acc, ax_h, ax_curve = fig.subplots(1, 3, gridspec_kw={"width_ratios": [3, 2, 3]})
        exit_bars(ax_acc, {"DSN": d["dsn"], "MD": d["md"]}, title="test accuracy per exit")
        labels = {k: k.replace("H_", "") for k in d["entropies"]}
        plot_entropy_bars(ax_h, {labels[k]: v for k, v in d["entropies"].items()}, num_classes=data.num_classes,
                          title=f"test-set entropy at T = {d['temperature']:g}")
        plot_target_entropy_curves(ax_curve, d["history"], d["num_exits"],
                                   title=f"generated targets while training (M = {d['meta_every']})")
        fig.tight_layout()

    def readout(d):
        gaps = ", ".join(f"{k} {d['md'][k] - d['dsn'][k]:+.1f}" for k in keys)
        entropies = ", ".join(f"{k.replace('H_', '')} {v:.3f}" for k, v in d["entropies"].items())
        return (f"MD - DSN (points): {gaps} | target entropy (nats): {entropies} | last-epoch loss "
                f"{d['train_loss']:.4f} | {d['meta_epochs']} meta epochs, trained in {d['seconds']:.1f} s "
                f"({d['meta_seconds']:.1f} s in generator steps)")

    return Panel(compute, draw,
                 {"ALPHA": slider(alpha, 0.0, 1.0, 0.05), "TEMPERATURE": slider(temperature, 0.5, 8.0, 0.5),
                  "META_EVERY": slider(meta_every, 1, 20, 1)},
                 readout=readout, figsize=(14, 3.6))
