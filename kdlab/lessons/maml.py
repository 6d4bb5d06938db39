"""Notebook 02 (MAML): sinusoid regression, few-shot glyphs, the meta-gradient lab, panels.

Finn, Abbeel, Levine (2017), "Model-Agnostic Meta-Learning for Fast Adaptation of Deep Networks":

    theta'_i = theta - alpha * grad_theta L_Ti(f_theta)                     (Eq. 1, inner update)
    theta   <- theta - beta * grad_theta sum_i L_Ti(f_theta'_i)              (Eq. 2, meta update)
    L_Ti = mean squared error for regression (Eq. 3), cross-entropy for classification (Eq. 4)

Meta-training is `kdlab.train.fit_episodes(kdlab.methods.maml.MAML(net, ...), sampler)`; every inner loop
goes through `kdlab.meta`; this module only arranges experiments and panels around them.
"""
import math
import time

import numpy as np
import torch
import torch.nn.functional as F

from .. import meta
from ..gradcheck import finite_differences, relative_error
from ..data.episodes import EpisodeSampler
from ..methods.maml import MAML
from ..models import MLP, Conv4
from ..profiling import saved_tensor_bytes, step_cost
from ..stats import episodes_ci
from ..train import fit_episodes
from ..widgets import Panel, log_slider, slider

# -- sinusoid regression (MAML section 5.1) -----------------------------------------------------------
AMPLITUDE, PHASE, X_RANGE = (0.1, 5.0), (0.0, math.pi), (-5.0, 5.0)


def sinusoid_tasks(n, shots, generator, queries=None):
    """`n` tasks y = A sin(x - phi), A ~ U[0.1, 5], phi ~ U[0, pi], x ~ U[-5, 5] (the paper's ranges).

    Returns a list of (x_support, y_support, x_query, y_query, amplitude, phase) with `shots` support and
    `queries` (default `shots`) query points per task.
    """
    queries = queries or shots
    tasks = []
    for _ in range(n):
        amplitude = AMPLITUDE[0] + (AMPLITUDE[1] - AMPLITUDE[0]) * torch.rand(1, generator=generator).item()
        phase = PHASE[0] + (PHASE[1] - PHASE[0]) * torch.rand(1, generator=generator).item()
        x = X_RANGE[0] + (X_RANGE[1] - X_RANGE[0]) * torch.rand(shots + queries, 1, generator=generator)
        y = amplitude * torch.sin(x - phase)
        tasks.append((x[:shots], y[:shots], x[shots:], y[shots:], amplitude, phase))
    return tasks


def sine_net(seed):
    """The paper's regressor: 1 -> 40 -> 40 -> 1 with ReLU."""
    torch.manual_seed(seed)
    return MLP(1, hidden=(40, 40), num_classes=1)


def sinusoid_sampler(shots, seed=0, queries=None):
    """An endless iterator of sinusoid tasks (x_support, y_support, x_query, y_query) for `fit_episodes`;
    the same draws, in the same order, as `sinusoid_tasks` with a generator seeded `seed`."""
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield sinusoid_tasks(1, shots, generator, queries)[0][:4]


def sine_maml(seed, *, iterations, meta_lr, first_order=False, inner_lr=0.01, shots=10, meta_batch=10,
              log_every=None):
    """The notebook's sinusoid MAML in one call, so that it can train in another process: `sine_net(seed)`
    meta-trained by `fit_episodes(MAML(net, inner_steps=1, inner_lr, meta_lr, first_order, loss=F.mse_loss),
    sinusoid_sampler(shots, seed), iterations, meta_batch)`. Returns (network, History, seconds)."""
    net = sine_net(seed)
    started = time.perf_counter()
    history = fit_episodes(MAML(net, inner_steps=1, inner_lr=inner_lr, meta_lr=meta_lr, first_order=first_order,
                                loss=F.mse_loss), sinusoid_sampler(shots, seed=seed), iterations=iterations,
                           meta_batch=meta_batch, **({} if log_every is None else {"log_every": log_every}))
    return net, history, time.perf_counter() - started


def pretrain_sinusoid(net, *, iterations, meta_batch=10, shots=10, lr=1e-3, seed=0):
    """The paper's baseline: one regressor trained on all tasks at once (no inner loop)."""
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    for _ in range(iterations):
        tasks = sinusoid_tasks(meta_batch, shots, generator)
        x = torch.cat([t[0] for t in tasks] + [t[2] for t in tasks])
        y = torch.cat([t[1] for t in tasks] + [t[3] for t in tasks])
        opt.zero_grad(set_to_none=True)
        F.mse_loss(net(x), y).backward()
        opt.step()
    return net


def adaptation_curves(net, task, *, steps, lr, grid=None):
    """Predictions on a dense grid after 0..steps inner steps on the task's support points."""
    x_support, y_support = task[0], task[1]
    grid = torch.linspace(*X_RANGE, 200).unsqueeze(1) if grid is None else grid
    curves = []
    for k in range(steps + 1):
        with torch.enable_grad():
            start = {n: p.detach().requires_grad_() for n, p in meta.params_of(net).items()}
            fast, _ = meta.inner_loop(net, start, F.mse_loss, (x_support, y_support), steps=k, lr=lr,
                                      first_order=True)
        with torch.no_grad():
            curves.append(meta.forward(net, fast, grid).squeeze(1).tolist())
    truth = (task[4] * torch.sin(grid - task[5])).squeeze(1).tolist()
    return {"grid": grid.squeeze(1).tolist(), "curves": curves, "truth": truth,
            "x_support": x_support.squeeze(1).tolist(), "y_support": y_support.squeeze(1).tolist()}


def sinusoid_mse_after(net, tasks, *, steps, lr):
    """Mean query MSE over tasks after `steps` inner steps (the paper's Figure 3 metric)."""
    losses = []
    for x_s, y_s, x_q, y_q, *_ in tasks:
        prediction = meta.adapt_and_predict(net, (x_s, y_s), x_q, steps=steps, lr=lr, loss_fn=F.mse_loss)
        losses.append(float(F.mse_loss(prediction, y_q)))
    return float(np.mean(losses))


def sinusoid_panel(maml_net, baseline_net, task, *, lr, max_steps=10):
    """An INNER_STEPS slider: MAML's and the pretrained baseline's fit after k steps on one new task (left),
    and the error after every number of steps up to `max_steps`, with k marked (right)."""
    maml_curves = adaptation_curves(maml_net, task, steps=max_steps, lr=lr)
    base_curves = adaptation_curves(baseline_net, task, steps=max_steps, lr=lr)
    truth = np.array(maml_curves["truth"])

    def mse(curve):
        return float(np.mean((np.array(curve) - truth) ** 2))

    maml_mse = [mse(c) for c in maml_curves["curves"]]
    base_mse = [mse(c) for c in base_curves["curves"]]

    def compute(INNER_STEPS):
        return {
            "steps": INNER_STEPS, "grid": maml_curves["grid"], "truth": maml_curves["truth"],
            "maml": maml_curves["curves"][INNER_STEPS], "baseline": base_curves["curves"][INNER_STEPS],
            "maml_before": maml_curves["curves"][0],
            "x_support": maml_curves["x_support"], "y_support": maml_curves["y_support"],
            "maml_mse": maml_mse[INNER_STEPS], "baseline_mse": base_mse[INNER_STEPS],
            "maml_mse_curve": maml_mse, "baseline_mse_curve": base_mse,
        }

    def draw(d, fig):
        ax, ax_mse = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
        ax.plot(d["grid"], d["truth"], color="k", lw=1, label="true function")
        ax.plot(d["grid"], d["maml_before"], color="C0", ls=":", label="MAML, before adaptation")
        ax.plot(d["grid"], d["maml"], color="C0", label=f"MAML, {d['steps']} steps")
        ax.plot(d["grid"], d["baseline"], color="C1", ls="--", label=f"pretrained, {d['steps']} steps")
        ax.scatter(d["x_support"], d["y_support"], color="C3", zorder=3, label="support points")
        ax.set_title(f"fit to one new sine wave after {d['steps']} inner steps", fontsize=10)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        steps = range(len(d["maml_mse_curve"]))
        ax_mse.plot(steps, d["maml_mse_curve"], color="C0", marker="o", ms=3, label="MAML")
        ax_mse.plot(steps, d["baseline_mse_curve"], color="C1", ls="--", marker="s", ms=3, label="pretrained")
        ax_mse.scatter([d["steps"]] * 2, [d["maml_mse"], d["baseline_mse"]], s=60, facecolors="none",
                       edgecolors="C3", zorder=3, label=f"{d['steps']} steps (slider)")
        ax_mse.set_title("error against inner steps", fontsize=10)
        ax_mse.set_xlabel("inner steps on the 10 support points")
        ax_mse.set_ylabel("mean squared error on the curve")
        handles, labels = ax.get_legend_handles_labels()
        handles_mse, labels_mse = ax_mse.get_legend_handles_labels()
        fig.legend(handles + handles_mse, labels + labels_mse, fontsize=8, loc="lower center", ncol=4,
                   frameon=False)
        fig.tight_layout(rect=(0, 0.14, 1, 1))

    return Panel(compute, draw, {"INNER_STEPS": slider(1, 0, max_steps, 1)}, figsize=(10, 3.8),
                 readout=lambda d: f"after {d['steps']} steps: MAML MSE {d['maml_mse']:.3f}, "
                                   f"pretrained MSE {d['baseline_mse']:.3f}")


# -- few-shot classification ---------------------------------------------------------------------------
def glyph_maml(glyphs, *, shots, seed, iterations, ways, hidden, queries, inner_steps, inner_lr, meta_lr, meta_batch,
               device="cpu", callbacks=()):
    """MAML (Algorithm 2: Eq. 1 inside, Eq. 2 outside, cross-entropy) on `ways`-way `shots`-shot episodes of
    the glyphs' meta-training alphabets: a Conv-4 with `hidden` channels, seeded by `seed`, meta-trained for
    `iterations` meta-batches of `meta_batch` tasks (`fit_episodes`, which calls `callbacks`). The same
    arguments give the same network in any process. Returns (network, History, seconds)."""
    torch.manual_seed(seed)
    net = Conv4(in_channels=1, num_classes=ways, hidden=hidden).to(device)
    sampler = EpisodeSampler(glyphs, "train", ways=ways, shots=shots, queries=queries, seed=seed)
    started = time.perf_counter()
    history = fit_episodes(MAML(net, inner_steps=inner_steps, inner_lr=inner_lr, meta_lr=meta_lr), sampler,
                           iterations=iterations, meta_batch=meta_batch, log_every=max(1, iterations // 40),
                           device=device, callbacks=list(callbacks))
    return net, history, time.perf_counter() - started


def test_accuracy(net, sampler, *, episodes, inner_steps, inner_lr, bn="transductive", device="cpu"):
    """Accuracy (%) over `episodes` test tasks with MAML's interval: mean +- 1.96 std / sqrt(n)."""
    sampler.reset()
    tasks = [next(sampler).to(device) for _ in range(episodes)]
    result = meta.evaluate(net, tasks, steps=inner_steps, lr=inner_lr, bn=bn)
    return episodes_ci((100 * result["accuracies"]).tolist())


def adaptation_panel(net, task, *, inner_steps=1, inner_lr=0.4, bn="transductive"):
    """INNER_STEPS and INNER_LR sliders that adapt a trained model on one fresh task, live."""

    def compute(INNER_STEPS, INNER_LR):
        accuracies, losses = [], []
        for k in range(INNER_STEPS + 1):
            logits = meta.adapt_and_predict(net, (task.x_support, task.y_support), task.x_query, steps=k,
                                            lr=INNER_LR, bn=bn)
            accuracies.append(100 * float((logits.argmax(1) == task.y_query).float().mean()))
            losses.append(float(F.cross_entropy(logits, task.y_query)))
        probs = torch.softmax(logits, 1)
        return {"steps": INNER_STEPS, "lr": INNER_LR, "query_acc": accuracies, "query_loss": losses,
                "final_acc": accuracies[-1], "confidence": float(probs.max(1).values.mean())}

    def draw(d, fig):
        ax_acc, ax_loss = fig.subplots(1, 2)
        ax_acc.plot(range(d["steps"] + 1), d["query_acc"], marker="o")
        ax_acc.set_title(f"query accuracy, inner lr {d['lr']:.3g}", fontsize=10)
        ax_acc.set_xlabel("inner steps")
        ax_acc.set_ylabel("query accuracy (%)")
        ax_acc.set_ylim(0, 105)
        ax_loss.plot(range(d["steps"] + 1), d["query_loss"], marker="o", color="C1")
        ax_loss.set_title(f"query loss, inner lr {d['lr']:.3g}", fontsize=10)
        ax_loss.set_xlabel("inner steps")
        ax_loss.set_ylabel("cross-entropy (nats)")
        for ax in (ax_acc, ax_loss):
            ax.set_xticks(range(d["steps"] + 1))
        fig.tight_layout()

    return Panel(compute, draw, {"INNER_STEPS": slider(inner_steps, 0, 10, 1),
                                 "INNER_LR": log_slider(inner_lr, 0.01, 3.0)},
                 readout=lambda d: f"{d['steps']} steps at lr {d['lr']:.3g}: query accuracy {d['final_acc']:.0f}%, "
                                   f"mean confidence {d['confidence']:.2f}")


# -- the meta-gradient lab ---------------------------------------------------------------------------
def _flat(grads):
    return torch.cat([g.reshape(-1) for g in grads])


def meta_gradient(net, task, *, steps, lr, first_order, loss_fn=F.mse_loss):
    """The gradient of the query loss after `steps` inner steps w.r.t. the initial parameters, flattened."""
    params = meta.params_of(net)
    x_s, y_s, x_q, y_q = task[:4]
    fast, _ = meta.inner_loop(net, params, loss_fn, (x_s, y_s), steps=steps, lr=lr, first_order=first_order)
    query = loss_fn(meta.forward(net, fast, x_q), y_q)
    return _flat(torch.autograd.grad(query, list(params.values())))


def query_loss_after(net, task, *, steps, lr, loss_fn=F.mse_loss):
    """The post-adaptation query loss as a float, from the module's own parameters (what finite
    differences perturb; the inner gradients are taken, the meta-gradient is not)."""
    with torch.enable_grad():
        fast, _ = meta.inner_loop(net, meta.params_of(net), loss_fn, task[:2], steps=steps, lr=lr, first_order=True)
    with torch.no_grad():
        return float(loss_fn(meta.forward(net, fast, task[2]), task[3]))


def sinusoid_lab(seed, *, steps_list, lr):
    """`meta_gradient_lab` on the notebook's float64 sinusoid network `sine_net(seed + 1)` and one task of 10
    points drawn with `seed`, in one call, so that it can run in another process."""
    net = sine_net(seed + 1).double()
    task = [t.double() if torch.is_tensor(t) else t
            for t in sinusoid_tasks(1, 10, torch.Generator().manual_seed(seed))[0]]
    return meta_gradient_lab(net, task, steps_list=steps_list, lr=lr)


def meta_gradient_lab(net, task, *, steps_list, lr, with_finite_differences=True, repeats=3):
    """Second order vs first order vs finite differences (`kdlab.gradcheck`, float64) as inner steps grow:
    cosine, relative error, median time (`kdlab.profiling.step_cost`) and the bytes autograd saves."""
    rows = []
    for steps in steps_list:
        row, grads = {"steps": steps}, {}
        for name, first_order in (("second", False), ("first", True)):
            def gradient(fo=first_order):
                grads[name] = meta_gradient(net, task, steps=steps, lr=lr, first_order=fo)
            row[f"{name}_ms"] = 1000 * step_cost(gradient, repeats=repeats, warmup=1, peak=False).seconds
            row[f"{name}_saved_kb"] = saved_tensor_bytes(gradient) / 1024
        row["cos_first_vs_second"] = float(F.cosine_similarity(grads["first"], grads["second"], dim=0))
        if with_finite_differences:
            numeric = _flat(finite_differences(lambda: query_loss_after(net, task, steps=steps, lr=lr),
                                               list(meta.params_of(net).values())))
            row["cos_second_vs_fd"] = float(F.cosine_similarity(grads["second"], numeric, dim=0))
            row["rel_err_second_vs_fd"] = relative_error([grads["second"]], [numeric])
            row["rel_err_first_vs_fd"] = relative_error([grads["first"]], [numeric])
        rows.append(row)
    return rows
