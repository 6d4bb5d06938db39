"""Notebook 09 (learning ALPHA and TEMPERATURE): the hand-tuned grid, CTKD and the meta-gradient on the same seeds,
where the learned knobs land, the one-step landscape behind the short-horizon bias, the cost per step and the
knobs panel. The figures are in `alpha_temperature_plots`.

Every run of a seed starts from the same student weights (`kd.new_student`) in the same batch order and trains on
the same images: the 90 % left when the seed's quiz set (`split_quiz`) is held out. The quiz set is the meta-
gradient's held-out data and, for the grid, the validation set a hand-tuner may choose on; the test set only
scores. Every function is a pure function of its arguments and a seed.
"""
import copy
import functools
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call

from .. import parallel
from ..gradcheck import finite_differences, relative_error
from ..losses import distillation_loss
from ..data.quiz import split_quiz
from ..methods import ctkd, meta_alpha_temperature as mat
from ..methods.base import Batch, Recipe, Run
from ..methods.kd import KD
from ..methods.learned import bounded
from ..profiling import saved_tensor_bytes, state_bytes, step_cost
from ..train import fit
from ..widgets import Panel, log_slider, slider
from .alpha_temperature_grid import best_point, grid, grid_table, kd_point, kd_points, mean_map, quiz_scores  # noqa: F401
from .kd import new_student

TEMPERATURE_RANGE = (1.0, 21.0)  # CTKD's code: 1 + 20 sigmoid(theta); the meta-gradient's T moves in the same range
CTKD_START = TEMPERATURE_RANGE[0] + (TEMPERATURE_RANGE[1] - TEMPERATURE_RANGE[0]) / (1 + math.exp(-ctkd.CODE_THETA))


# -- the learned knobs ---------------------------------------------------------------------------------
def ctkd_run(data, teacher, *, seed, alpha, curriculum_epochs, hidden, recipe, quiz_fraction, quiz_batch,
             callbacks=()):
    """CTKD (global temperature, the code's start theta = 1, tau 15.6) on the seed's 90 %: (method, history)."""
    split = split_quiz(data, quiz_fraction, seed, quiz_batch_size=quiz_batch)
    method = ctkd.CTKD(new_student(data, hidden, seed), teacher, alpha=alpha, temperature_range=TEMPERATURE_RANGE,
                       curriculum_epochs=curriculum_epochs)
    return method, fit(method, split.train, seed=seed, progress=False, callbacks=callbacks, **recipe)


def meta_run(data, teacher, *, seed, alpha, temperature, meta_lr, hidden, recipe, quiz_fraction, quiz_batch,
             callbacks=()):
    """alpha and T by the meta-gradient, from (alpha, T); it holds out the same quiz set itself: (method, history)."""
    method = mat.MetaAlphaTemperature(new_student(data, hidden, seed), teacher, initial_alpha=alpha,
                                      initial_temperature=temperature, temperature_range=TEMPERATURE_RANGE,
                                      meta_lr=meta_lr, quiz_fraction=quiz_fraction, quiz_batch_size=quiz_batch)
    return method, fit(method, data, seed=seed, progress=False, callbacks=callbacks, **recipe)


def learned_seed(data, teacher, *, seed, alpha, temperature, curriculum_epochs, meta_lr, keep=None, callbacks=None,
                 **common):
    """CTKD and the meta-gradient for one seed: final test accuracies and where the knobs ended. With `keep` (a
    dict) the two histories are kept there under the seed, for the trajectories; `callbacks` = {"ctkd": [...],
    "meta": [...]} are `fit`'s callbacks of each run (live plots)."""
    callbacks = callbacks or {}
    ctkd_method, ctkd_history = ctkd_run(data, teacher, seed=seed, alpha=alpha, curriculum_epochs=curriculum_epochs,
                                         callbacks=callbacks.get("ctkd", ()), **common)
    meta_method, meta_history = meta_run(data, teacher, seed=seed, alpha=alpha, temperature=temperature,
                                         meta_lr=meta_lr, callbacks=callbacks.get("meta", ()), **common)
    if keep is not None:
        keep[seed] = {"ctkd": ctkd_history, "meta": meta_history}
    meta_alpha, meta_temperature = meta_method.alpha_temperature()
    return {"ctkd": ctkd_history.last["test_acc"], "meta": meta_history.last["test_acc"],
            "ctkd_temperature": ctkd_method.temperature_now(), "meta_alpha": meta_alpha,
            "meta_temperature": meta_temperature}


def learned_seeds(data, teacher, *, seeds, live_seed=None, callbacks=None, keep=None, workers=1, **knobs):
    """`learned_seed` for every seed, collected as `stats.over_seeds` collects it (a dict of lists, in the seeds'
    order). Seed `live_seed` trains in this process with `callbacks` (live plots); the others train meanwhile in
    `workers` processes (`kdlab.parallel`), each with the numbers it gives alone. `keep` as `learned_seed`'s."""
    seeds = list(seeds)
    jobs = {s: parallel.start(functools.partial(_learned_and_kept, data, teacher, seed=s, **knobs), workers)
            for s in seeds if s != live_seed}
    done = {} if live_seed not in seeds else {
        live_seed: _learned_and_kept(data, teacher, seed=live_seed, callbacks=callbacks, **knobs)}
    done.update({s: job.result() for s, job in jobs.items()})
    if keep is not None:
        keep.update({s: done[s][1] for s in seeds})
    return {key: [done[s][0][key] for s in seeds] for key in done[seeds[0]][0]}


def _learned_and_kept(data, teacher, *, seed, **knobs):
    kept = {}
    return learned_seed(data, teacher, seed=seed, keep=kept, **knobs), kept[seed]


# -- the two checks: CTKD's sign, the meta-gradient against finite differences ------------------------------
def ctkd_sign_check(data, teacher, *, seed, alpha, hidden, batch_size, lr, curriculum_epochs):
    """One CTKD step at full curriculum strength (lambda = 1) on a fresh student, without weight decay (which pulls
    theta toward 0 whatever the gradient says): the slope dL/dtheta of the objective itself (no reversal layer),
    the gradient the optimiser was handed for theta (the reversal's: -lambda times the slope), tau before and after,
    and in float64 the objective L of the student as it was at the old and the new tau (the temperature's move must
    raise it) and of the stepped student at the old tau (the student's move must lower it)."""
    method = ctkd.CTKD(new_student(data, hidden, seed), teacher, alpha=alpha, temperature_range=TEMPERATURE_RANGE,
                       curriculum_epochs=curriculum_epochs)
    run = Run(seed=seed, epochs=curriculum_epochs, batch_size=batch_size, recipe=Recipe(lr=lr, weight_decay=0.0),
              generator=torch.Generator().manual_seed(seed), epoch=curriculum_epochs - 1, lr=lr)
    method.configure(run.recipe, run)
    x, y = data.x_train[:batch_size], data.y_train[:batch_size]
    theta, tau_before = method.temperature_net.theta, method.temperature_now()
    with torch.no_grad():
        teacher_logits, old_logits = teacher(x), method.model(x)
    objective = ctkd.ctkd_loss(method.model(x), teacher_logits, y, alpha, bounded(theta, *TEMPERATURE_RANGE))
    (slope,) = torch.autograd.grad(objective["loss"], [theta])
    method.train()
    method.step(Batch(x, y, torch.arange(len(y))), run)
    with torch.no_grad():  # in float64: one step moves tau by about lr * |slope|, often below float32's resolution
        loss = lambda logits, tau: float(ctkd.ctkd_loss(logits.double(), teacher_logits.double(), y, alpha,  # noqa
                                                        torch.tensor(tau, dtype=torch.float64))["loss"])
        new_logits = method.model(x)
    tau_after = method.temperature_now()
    return {"lambda": ctkd.curriculum_lambda(run.epoch, curriculum_epochs), "slope": float(slope),
            "handed": float(theta.grad), "tau_before": tau_before, "tau_after": tau_after,
            "loss_old_student_tau_before": loss(old_logits, tau_before),
            "loss_old_student_tau_after": loss(old_logits, tau_after),
            "loss_new_student_tau_before": loss(new_logits, tau_before)}


def hypergradient_check(seed=0, alpha=0.9, temperature=4.0, lr=0.5, gradient=None, eps=1e-6):
    """The hypergradient d l_q / d(a, b) against central finite differences (`kdlab.gradcheck`) of the quiz loss after
    one plain-torch SGD step, float64, a tiny tanh student (6-5-3), a batch of 8 and a quiz batch of 5: returns the
    relative error. `gradient(student, teacher_logits, x, y, x_q, y_q, hyper, lr)` returning [d/da, d/db] is the
    function under test (default: `mat.hypergradient`)."""
    torch.manual_seed(seed)
    student = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    g = torch.Generator().manual_seed(seed + 1)
    x, x_q = torch.randn(8, 6, generator=g, dtype=torch.float64), torch.randn(5, 6, generator=g, dtype=torch.float64)
    y, y_q, teacher_logits = torch.arange(8) % 3, torch.arange(5) % 3, 3 * torch.randn(8, 3, generator=g).double()
    hyper = mat.AlphaTemperature(alpha, temperature, TEMPERATURE_RANGE).double()
    if gradient is None:
        analytic = mat.hypergradient(student, teacher_logits, x, y, x_q, y_q, hyper, lr=lr)[1]
    else:
        analytic = gradient(student, teacher_logits, x, y, x_q, y_q, hyper, lr)

    def quiz_after_step():  # the virtual step by hand, reading hyper.a and hyper.b in place
        params = dict(student.named_parameters())
        inner = distillation_loss(functional_call(student, params, (x,)), teacher_logits, y, *hyper())["loss"]
        grads = torch.autograd.grad(inner, list(params.values()))
        fast = {name: p - lr * gr for (name, p), gr in zip(params.items(), grads)}
        return F.cross_entropy(functional_call(student, fast, (x_q,)), y_q)

    return relative_error(list(analytic), finite_differences(quiz_after_step, [hyper.a, hyper.b], eps=eps))


# -- the short horizon -----------------------------------------------------------------------------------
def checkpoints(data, teacher, *, seed, alpha, temperature, hidden, recipe, quiz_fraction, quiz_batch, epochs):
    """The fixed-KD student of `seed` after each epoch in `epochs`: {epoch: (student copy, that epoch's lr)}."""
    kept = {}

    def keep(history, model):
        if history.epochs_done in epochs:
            kept[history.epochs_done] = (copy.deepcopy(model).eval(), history.last["lr"])
        return False

    kd_point(data, teacher, seed=seed, alpha=alpha, temperature=temperature, hidden=hidden, recipe=recipe,
             quiz_fraction=quiz_fraction, quiz_batch=quiz_batch, callbacks=[keep])
    return kept


def one_step_landscape(student, teacher, split, alphas, temperatures, lr):
    """What the one-step look-ahead sees: the change of the quiz cross-entropy after ONE plain SGD step of size
    `lr` on the whole 90 % with loss L(alpha, T), at every grid point (rows alpha, columns T)."""
    x, y = split.train.x_train, split.train.y_train
    with torch.no_grad():
        teacher_logits = teacher(x)
        before = float(F.cross_entropy(student(split.x_quiz), split.y_quiz))
    out = np.zeros((len(alphas), len(temperatures)))
    for i, alpha in enumerate(alphas):
        for j, temperature in enumerate(temperatures):
            fast = mat.virtual_step(student, teacher_logits, x, y, torch.tensor(float(alpha)),
                                    torch.tensor(float(temperature)), lr)
            out[i, j] = float(mat.quiz_loss(student, fast, split.x_quiz, split.y_quiz).detach()) - before
    return out


# -- the cost per step -------------------------------------------------------------------------------------
def step_costs(data, teacher, *, seed, hidden, alpha, temperature, curriculum_epochs, meta_lr, batch_size,
               quiz_fraction, quiz_batch, lr, repeats=20, device="cpu"):
    """Wall time (median) and memory of one training step of KD, CTKD and the meta-gradient (a meta step at
    every step), each the method's own `step` on the same batch: {name: {"ms", "transient", "saved", "state"}}:
    the step's transient peak, the bytes autograd saves for backward, and the persistent state (parameters,
    gradients, optimiser buffers; the frozen teacher, the same for all three, not counted)."""
    makers = {"KD": lambda s: KD(s, teacher, alpha, temperature),
              "CTKD": lambda s: ctkd.CTKD(s, teacher, alpha=alpha, temperature_range=TEMPERATURE_RANGE,
                                          curriculum_epochs=curriculum_epochs),
              "meta-gradient": lambda s: mat.MetaAlphaTemperature(
                  s, teacher, initial_alpha=alpha, initial_temperature=temperature,
                  temperature_range=TEMPERATURE_RANGE, meta_lr=meta_lr, quiz_fraction=quiz_fraction,
                  quiz_batch_size=quiz_batch)}
    rows = {}
    for name, make in makers.items():
        method = make(new_student(data, hidden, seed))
        run = Run(seed=seed, epochs=1, batch_size=batch_size, recipe=Recipe(lr=lr),
                  generator=torch.Generator().manual_seed(seed), lr=lr)
        method.configure(run.recipe, run)
        train = method.prepare(data, run)
        index = torch.randperm(train.num_train, generator=torch.Generator().manual_seed(seed))[:batch_size]
        index = index.to(train.x_train.device)
        method.train()
        step = functools.partial(method.step, Batch(train.x_train[index], train.y_train[index], index), run)
        cost = step_cost(step, repeats=repeats, warmup=3, device=device)
        extra = [method.meta_optimizer] if name == "meta-gradient" else []
        rows[name] = {"ms": 1000 * cost.seconds, "transient": cost.peak_bytes, "saved": saved_tensor_bytes(step),
                      "state": state_bytes(*method.modules(), method.optimizer, *extra)}
    return rows


# -- the knobs panel ---------------------------------------------------------------------------------------
def knobs_panel(data, teacher, *, hidden, recipe, seed, alpha, temperature, curriculum_epochs, meta_lr,
                quiz_fraction, quiz_batch, reference=None):
    """CURRICULUM_EPOCHS and META_LR (log) sliders: a short CTKD run and a short meta-gradient run of one seed,
    each retrained only when its own slider moves; the default setting's trajectories stay as a reference.
    `reference` = (alpha, T) of the grid's best, drawn as a line."""
    common = dict(seed=seed, hidden=hidden, recipe=recipe, quiz_fraction=quiz_fraction, quiz_batch=quiz_batch)

    @functools.lru_cache(maxsize=8)
    def ctkd_of(epochs):
        method, history = ctkd_run(data, teacher, alpha=alpha, curriculum_epochs=epochs, **common)
        return {"epochs": history.series("epoch"), "tau": history.series("temperature"),
                "lambda": history.series("lambda"), "acc": history.last["test_acc"]}

    @functools.lru_cache(maxsize=8)
    def meta_of(lr):
        method, history = meta_run(data, teacher, alpha=alpha, temperature=temperature, meta_lr=lr, **common)
        per_epoch = math.ceil(len(history.steps) / len(history.records))
        return {"x": [r["step"] / per_epoch for r in history.steps], "alpha": history.step_series("alpha"),
                "temperature": history.step_series("temperature"), "acc": history.last["test_acc"]}

    def compute(CURRICULUM_EPOCHS, META_LR):
        started = time.perf_counter()
        data_ = {"curriculum": CURRICULUM_EPOCHS, "meta_lr": META_LR, "ctkd": ctkd_of(CURRICULUM_EPOCHS),
                 "meta": meta_of(META_LR), "ref_ctkd": ctkd_of(curriculum_epochs), "ref_meta": meta_of(meta_lr),
                 "ref_curriculum": curriculum_epochs, "ref_meta_lr": meta_lr, "start": (alpha, temperature),
                 "grid_best": reference}
        return {**data_, "seconds": time.perf_counter() - started}

    from .alpha_temperature_plots import draw_knobs_panel, knobs_readout

    controls = {"CURRICULUM_EPOCHS": slider(curriculum_epochs, 1, max(recipe["epochs"], curriculum_epochs), 1),
                "META_LR": log_slider(meta_lr, min(1e-4, meta_lr), max(1.0, meta_lr))}
    return Panel(compute, draw_knobs_panel, controls, readout=knobs_readout, figsize=(10, 6.2))
