"""Notebook 05 (MMKD): experiments (pilot study, comparison, ablation, beta sweep), ARI, weight maps and the
cheap panel. The teacher zoo lives in `mmkd_teachers`, the pictures of the method in `mmkd_plots`; the notebook
reads their names from here too.

Every experiment is a pure function of its arguments and a seed, so a slider, a test and a sweep get the
same numbers for the same settings. The method itself lives in `kdlab.methods.mmkd`.
"""
import functools
import time
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.colors import TwoSlopeNorm
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from .. import config, parallel
from ..methods.mmkd import MMKD, teacher_weights
from ..methods.mmkd_baselines import fixed_weights
from ..models.meta_weight import teacher_outputs
from ..train import fit
from ..widgets import Panel, slider
from .kd import new_student
# The notebook reads everything as `lesson.<name>`: the zoo's and the pictures' names are re-exported here.
from .mmkd_plots import draw_weight_nets, weight_table  # noqa: F401
from .mmkd_teachers import (OTHER_STYLES, TEACHER_NOTES, TEACHER_SPECS, TEACHER_STYLES,  # noqa: F401
                            build_teacher, noisy_labels, teacher_report, teacher_style, teacher_zoo)


# -- students and runs ---------------------------------------------------------------------------------
FIT_OPTIONS = ("epochs", "lr", "batch_size", "optimizer", "momentum", "weight_decay", "schedule", "augment",
               "eval_every", "callbacks")


def run_ce(data, *, seed, hidden, epochs, lr, batch_size, architecture=None, schedule="cosine", augment=None,
           **fit_options):
    """The student trained from scratch with labels only (the paper's 'Student' row)."""
    student = new_student(data, hidden, seed, architecture)
    history = fit(student, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, progress=False,
                  schedule=schedule, augment=augment, **fit_options)
    return history.last["test_acc"]


def run_method(data, teachers, *, seed, hidden, recipe, architecture=None, method_class=MMKD, **overrides):
    """One student trained with `fit(MMKD(...), ...)`, the options of `recipe | overrides` sent to `fit`
    (the loop's; evaluated at the end unless `eval_every` says otherwise) or to MMKD (or `method_class`);
    returns (test accuracy, the trained method (`.model` the student, `.nets` the weight nets), history)."""
    options = {**recipe, **overrides}
    fit_options = {name: options.pop(name) for name in FIT_OPTIONS if name in options}
    fit_options.setdefault("eval_every", fit_options["epochs"])
    method = method_class(new_student(data, hidden, seed, architecture), list(teachers.values()), **options)
    history = fit(method, data, seed=seed, progress=False, **fit_options)
    return history.last["test_acc"], method, history


def compare(data, teachers, variants, *, seeds, hidden, recipe, architecture=None, log=print, workers=1,
            keep_models=True):
    """Every variant on every seed, paired (same init and batch order within a seed). A variant is a dict
    of `run_method` overrides, "ce" (labels only), or ("teachers", {name: teacher}, overrides) for another
    teacher set. Returns ({name: [test accuracy per seed]}, {name: [seconds per run]},
    {(name, seed): (method, history)}). `workers` > 1 runs the (seed, variant) pairs in that many processes
    side by side (`kdlab.parallel`), each with the numbers it gets alone; `keep_models=False` leaves the
    trained students where they ran (the third dict is then empty)."""
    seeds = list(seeds)
    pairs = [(seed, name) for seed in seeds for name in variants]
    one_run = functools.partial(_compare_run, data, teachers, variants, hidden, recipe, architecture, keep_models)
    accs, seconds, models = {name: [] for name in variants}, {name: [] for name in variants}, {}
    for (seed, name), (acc, run_seconds, model) in zip(pairs, parallel.imap_in_workers(one_run, pairs, workers)):
        accs[name].append(acc)
        seconds[name].append(run_seconds)
        if model is not None:
            models[(name, seed)] = model
        if name == pairs[-1][1]:  # the seed's last variant
            log(f"seed {seed}: " + ", ".join(f"{key} {accs[key][-1]:.1f}" for key in variants))
    return accs, seconds, models


def _compare_run(data, teachers, variants, hidden, recipe, architecture, keep_models, seed_and_name):
    """One variant on one seed: (test accuracy, seconds, (method, history) or None)."""
    seed, name = seed_and_name
    overrides, started, kept = variants[name], time.perf_counter(), None
    if overrides == "ce":
        acc = run_ce(data, seed=seed, hidden=hidden, architecture=architecture,
                     **{key: value for key, value in recipe.items()
                        if key in FIT_OPTIONS and key not in ("eval_every", "callbacks")})
    else:
        pool = teachers
        if isinstance(overrides, tuple):
            _, pool, overrides = overrides
        acc, method, history = run_method(data, pool, seed=seed, hidden=hidden, recipe=recipe,
                                          architecture=architecture, **overrides)
        kept = (method, history) if keep_models else None
    return acc, time.perf_counter() - started, kept


# -- the paper's metric -----------------------------------------------------------------------------------
def ari(method, baseline, student):
    """Average Relative Improvement (%) of `method` over `baseline` (the paper's Table I footnote):
    ARI = (1/M) sum_i (Acc_method_i - Acc_baseline_i) / (Acc_baseline_i - Acc_student_i) * 100,
    over M teacher-student settings; `student` is the student trained from scratch."""
    config.check("ari_settings", [np.ndim(v) == 1 and len(v) for v in (method, baseline, student)])
    method, baseline, student = (np.asarray(v, dtype=float) for v in (method, baseline, student))
    return float(np.mean((method - baseline) / (baseline - student)) * 100)


# Table I of the paper (CIFAR-100, three teachers of one architecture): mean test accuracy per setting
PAPER_TABLE_I = {
    "settings": ["VGG13->VGG8", "ResNet32x4->MobileNetV2", "ResNet32x4->VGG8", "WRN-40-2->MobileNetV2",
                 "WRN-40-2->WRN-40-1", "ResNet20x4->ShuffleNetV1"],
    "Student": [70.74, 65.64, 70.74, 65.64, 71.93, 71.70],
    "AVER": [73.98, 68.42, 73.23, 69.67, 74.56, 75.73],
    "EBKD": [73.97, 68.06, 73.63, 69.17, 74.37, 75.82],
    "CA-MKD": [74.27, 69.19, 75.08, 70.87, 75.27, 77.19],
    "MMKD": [74.86, 69.70, 75.66, 71.23, 75.61, 77.76],
    "ARI": {"AVER": 49.97, "EBKD": 53.64, "CA-MKD": 11.98},
}


# -- ensembles and weights ----------------------------------------------------------------------------------
@torch.no_grad()
def ensemble_accuracy(teachers, x, y, weights):
    """Accuracy (%) of the weighted ensemble sum_k w_ik softmax(z^tk_i) with per-sample weights (N, K)."""
    logits, _ = teacher_outputs(list(teachers.values()), x)
    probs = (weights.unsqueeze(-1) * F.softmax(logits, dim=-1)).sum(1)
    return 100.0 * float((probs.argmax(-1) == y).float().mean())


@torch.no_grad()
def baseline_weights(teachers, x, y, weighting):
    """AVER / EBKD / CA-MKD weights (N, K) for inputs x (CA-MKD needs the labels y)."""
    config.check("weighting", weighting)
    return fixed_weights(weighting, teacher_outputs(list(teachers.values()), x)[0], y)


@torch.no_grad()
def weights_on(method, x, y, batch_size):
    """Per-sample (logit, feature) teacher weights on inputs `x` as a trained MMKD's nets give them (the
    method is put in eval mode); whole batches of `batch_size` only (the feature net's width): N // B * B rows."""
    method.eval()
    student, t_logits, t_feats = method.model, *teacher_outputs(method.teachers, x, method.feature_index)
    options = SimpleNamespace(**{k: getattr(method, k) for k in ("temperature", "weighting", "logit_input", "gram")},
                              logit_weights=True, feature_weights=True, feature_loss=True, beta=1.0)
    w_logit, w_feat = [], []
    for start in range(0, len(x) // batch_size * batch_size, batch_size):
        rows = slice(start, start + batch_size)
        logits, features = student(x[rows], return_features=True)
        wl, wf = teacher_weights(method.nets, (logits, features[method.feature_index], None), y[rows],
                                 t_logits[rows], [f[rows] for f in t_feats], options)
        w_logit.append(wl)
        w_feat.append(wf)
    return torch.cat(w_logit), torch.cat(w_feat)


def weight_norm(*weights):
    """A diverging colour scale for teacher weights, centred at uniform 1/K and fitted to the data's range."""
    k = weights[0].shape[1]
    low = min(float(w.min()) for w in weights)
    high = max(float(w.max()) for w in weights)
    return TwoSlopeNorm(vcenter=1.0 / k, vmin=min(low, 1.0 / k - 1e-3), vmax=max(high, 1.0 / k + 1e-3))


def plot_weight_map(ax, weights, names, order=None, norm=None):
    """Per-sample weights as a heat map: one row per teacher, one column per sample; white is the uniform
    weight 1/K, warm colours more, cool colours less (`norm` from `weight_norm`, shared between maps)."""
    w = weights if order is None else weights[order]
    norm = norm or weight_norm(w)
    image = ax.imshow(w.t().cpu().numpy(), aspect="auto", cmap="RdBu_r", norm=norm, interpolation="nearest")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("training sample")
    return image


# -- the cheap panel ---------------------------------------------------------------------------------------
class WatchedMMKD(MMKD):
    """MMKD that also keeps, per training batch, the mean logit weight of each teacher and the loss terms,
    and per meta update the batch it followed and its meta loss; training is exactly MMKD's."""

    def prepare(self, data, run):
        self.batch_weights, self.batch_terms, self.meta_batches, self.meta_losses = [], [], [], []
        return super().prepare(data, run)

    def step(self, batch, run):
        losses = super().step(batch, run)
        self.batch_weights.append([float(losses[f"w_logit_{k}"]) for k in range(len(self.teachers))])
        terms = (self.gamma * float(losses["ce"]), self.alpha * float(losses["kd"]), self.beta * float(losses["feat"]))
        self.batch_terms.append(terms)
        return losses

    def meta_step(self, hard_batch):
        result = super().meta_step(hard_batch)
        self.meta_batches.append(len(self.batch_weights) + 1)  # called inside the step of that batch
        self.meta_losses.append(float(result["meta_loss"]))
        return result


# the terms of Eq. 9 as the panel names them, with their line styles
LOSS_TERMS = {"gamma x cross-entropy (Eq. 8)": dict(color="C7", ls="-"),
              "alpha x logit KD term (Eq. 6)": dict(color="C1", ls="--"),
              "beta x feature term (Eq. 7)": dict(color="C6", ls="-.", lw=1.6)}


@torch.no_grad()
def disputed_image(teachers, x):
    """Index of the first input on which the teachers' predicted classes differ (0 if they always agree)."""
    logits, _ = teacher_outputs(list(teachers.values()), x)
    disputed = (logits.argmax(-1) != logits[:, :1].argmax(-1)).any(dim=1).nonzero()
    return int(disputed[0]) if len(disputed) else 0


@torch.no_grad()
def mixed_target(method, x, y, index, batch_size):
    """For input `index` of the first batch of `x`: the soft target the student is pulled towards,
    sum_k w_k softmax(z^tk / tau) (the minimiser over q of sum_k w_k KL(p_tk || q), so Eq. 6's target), with
    the trained method's logit weights, and the student's softmax(z^s / tau). Both (C,) arrays."""
    weights, _ = weights_on(method, x[:batch_size], y[:batch_size], batch_size)
    t_logits, _ = teacher_outputs(method.teachers, x[index:index + 1])
    tau = method.temperature
    mixed = (weights[index].view(-1, 1) * F.softmax(t_logits[0] / tau, dim=-1)).sum(0)
    student = F.softmax(method.model(x[index:index + 1])[0] / tau, dim=-1)
    return mixed.cpu().numpy(), student.cpu().numpy()


def mmkd_panel(data, teachers, *, hidden, recipe, seed=0, temperature=4.0, beta=10.0, meta_every=5,
               teacher_names=None):
    """TEMPERATURE, BETA and META_EVERY sliders: retrain one short MMKD student and show, per training
    batch, the mean logit weight of each teacher (Eq. 2) and the terms of the student's loss (Eq. 9); the
    meta loss of each meta update (Eq. 12); and, after training, the mixed soft target of one training
    image on which the teachers disagree (a few seconds per setting)."""
    names = teacher_names or list(teachers)
    batch_size = recipe["batch_size"]
    image = disputed_image(teachers, data.x_train[:batch_size])

    def compute(TEMPERATURE, BETA, META_EVERY):
        started = time.perf_counter()
        acc, method, _ = run_method(data, teachers, seed=seed, hidden=hidden, recipe=recipe, method_class=WatchedMMKD,
                                    temperature=TEMPERATURE, beta=BETA, meta_every=META_EVERY)
        weights, terms = np.array(method.batch_weights), np.array(method.batch_terms)
        mixed, student = mixed_target(method, data.x_train, data.y_train, image, batch_size)
        return {"temperature": TEMPERATURE, "beta": BETA, "meta_every": META_EVERY, "acc": acc,
                "batches": np.arange(1, len(weights) + 1), "weights": dict(zip(names, weights.T)),
                "final_weights": dict(zip(names, weights[-1].tolist())), "terms": dict(zip(LOSS_TERMS, terms.T)),
                "meta_batches": np.array(method.meta_batches), "meta_loss": np.array(method.meta_losses),
                "image": image, "label": int(data.y_train[image]), "mixed_target": mixed, "student": student,
                "seconds": time.perf_counter() - started}

    def draw(d, fig):
        (ax_w, ax_m), (ax_l, ax_t) = fig.subplots(2, 2)
        batches, n_meta = d["batches"], len(d["meta_batches"])
        every = max(1, len(batches) // 8)
        for k, (name, curve) in enumerate(d["weights"].items()):
            ax_w.plot(batches, curve, label=name, markevery=every, markersize=4, **teacher_style(name, k))
        ax_w.axhline(1 / len(names), color="0.4", lw=0.8, ls=(0, (1, 3)), label="uniform 1/K")
        ax_w.set(title="mean logit weight per teacher (Eq. 2)", xlabel="training batch", ylabel="weight (fraction)")
        ax_w.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        ax_m.plot(d["meta_batches"], d["meta_loss"], color="C2", marker="o", markersize=3, lw=1)
        ax_m.set(title=f"meta loss at each of the {n_meta} meta updates (Eq. 12)", xlabel="training batch",
                 ylabel="hard-batch CE (nats)")
        for (name, curve), style in zip(d["terms"].items(), LOSS_TERMS.values()):
            if np.any(curve > 0):  # beta = 0: no feature term to draw on a log scale
                ax_l.plot(batches, curve, label=name, **{"lw": 1.2, **style})
        ax_l.set(title="student's loss terms (Eq. 9)", xlabel="training batch", ylabel="loss (nats, log scale)",
                 yscale="log")
        ax_l.yaxis.set_major_locator(LogLocator(subs=(1, 2, 5)))
        ax_l.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        ax_l.yaxis.set_minor_formatter(NullFormatter())
        ax_l.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        for ax in (ax_w, ax_m, ax_l):
            ax.set_xlim(0, batches[-1] + 0.5)
        classes = np.arange(len(d["mixed_target"]))
        ax_t.bar(classes, d["mixed_target"], color="C0", alpha=0.8, label="mixed teacher target")
        ax_t.plot(classes, d["student"], "D", color="C3", markersize=5, label="student")
        ax_t.set(title=f"soft targets at tau = {d['temperature']:g}, training image {d['image']} (label {d['label']})",
                 xlabel="class", ylabel="probability", xticks=classes)
        ax_t.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        fig.tight_layout(rect=(0, 0, 1, 0.95))  # room for the panel's title

    def readout(d):
        weights = ", ".join(f"{n} {w:.2f}" for n, w in d["final_weights"].items())
        return (f"T = {d['temperature']:g}, beta = {d['beta']:g}, a meta update every {d['meta_every']} batches: "
                f"{len(d['meta_batches'])} meta updates in {len(d['batches'])} batches; student {d['acc']:.1f}%; "
                f"last-batch weights {weights}; {d['seconds']:.1f} s")

    return Panel(compute, draw, {"TEMPERATURE": slider(temperature, 1.0, 10.0, 0.5),
                                 "BETA": slider(beta, 0.0, 100.0, 1.0),
                                 "META_EVERY": slider(meta_every, 1, 20, 1)},
                 readout=readout, title="MMKD: what each slider moves while one student trains", figsize=(12, 6.4))
