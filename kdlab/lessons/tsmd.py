"""Notebook 06 (TSMD): the story and inner-loop diagrams, the Table 1 experiment on few-shot glyphs, the
loss-scaling measurements, and the adaptation panel.

Every inner loop goes through `kdlab.methods.tsmd` (and so `kdlab.meta`); this module only arranges
experiments and pictures around it.
"""
import copy
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .. import meta
from ..losses import kd_loss, soft_targets
from ..methods import tsmd
from ..models import Conv4, count_parameters
from ..stats import episodes_ci
from ..widgets import Panel, log_slider, slider

ROWS = ("student", "fixed_teacher", "ours", "oracle")
ROW_NAMES = {"student": "Student (MAML, small)", "fixed_teacher": "Fixed teacher (RKD)",
             "ours": "Ours (TSMD)", "oracle": "Oracle (MAML, big)"}


# -- pictures -----------------------------------------------------------------------------------------
def _box(ax, xy, text, color, width=0.2, height=0.12, fontsize=8):
    x, y = xy
    ax.add_patch(FancyBboxPatch((x - width / 2, y - height / 2), width, height, boxstyle="round,pad=0.01",
                                fc=color, ec="0.3", lw=1))
    ax.text(x, y, text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, start, end, text="", dashed=False, color="0.25", offset=(0, 0.03)):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color=color, lw=1.2,
                                 ls="--" if dashed else "-", shrinkA=2, shrinkB=2))
    if text:
        ax.text((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1], text, ha="center",
                va="bottom", fontsize=7, color=color)


def story_figure():
    """The paper's Figures 1-2 in one picture: the server meta-trains a big teacher T and a small student S
    together; a client adapts T, then S guided by the adapted T, on its few examples and deploys S alone."""
    fig, ax = plt.subplots(figsize=(10, 3.4))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.add_patch(FancyBboxPatch((0.01, 0.08), 0.33, 0.84, boxstyle="round,pad=0.01", fc="#eef3fb", ec="0.6"))
    ax.text(0.175, 0.86, "server: meta-training (lots of compute)", ha="center", fontsize=9, weight="bold")
    _box(ax, (0.1, 0.55), "teacher T\n(big, psi)", "#f6c28b", width=0.13, height=0.16)
    _box(ax, (0.25, 0.55), "student S\n(small, theta)", "#9fd39b", width=0.13, height=0.16)
    ax.text(0.175, 0.27, "many N-way K-shot tasks\nfrom the meta-train classes\n(Algorithm 1, Eqs. 6-10)",
            ha="center", fontsize=8)
    _arrow(ax, (0.35, 0.55), (0.42, 0.55), "send (psi, theta)")
    ax.add_patch(FancyBboxPatch((0.43, 0.08), 0.34, 0.84, boxstyle="round,pad=0.01", fc="#fbf3e6", ec="0.6"))
    ax.text(0.6, 0.86, "client: adaptation (a laptop)", ha="center", fontsize=9, weight="bold")
    ax.text(0.6, 0.72, "K labelled images of N new classes", ha="center", fontsize=8)
    _box(ax, (0.5, 0.45), "adapt T\n(Eq. 6)", "#f6c28b", width=0.11, height=0.14)
    _box(ax, (0.7, 0.45), "adapt S with KD\nfrom T' (Eq. 7)", "#9fd39b", width=0.13, height=0.14)
    _arrow(ax, (0.555, 0.45), (0.635, 0.45), "guide")
    _arrow(ax, (0.78, 0.45), (0.84, 0.45), "deploy S'")
    ax.add_patch(FancyBboxPatch((0.85, 0.08), 0.14, 0.84, boxstyle="round,pad=0.01", fc="#eaf6ea", ec="0.6"))
    ax.text(0.92, 0.86, "edge device", ha="center", fontsize=9, weight="bold")
    _box(ax, (0.92, 0.45), "S' only\n(small)", "#9fd39b", width=0.1, height=0.14)
    ax.text(0.92, 0.2, "T' is too big\nto deploy", ha="center", fontsize=8, color="0.35")
    fig.tight_layout()
    return fig


def inner_loop_figure():
    """One task of Algorithm 1: Eq. 6 adapts the teacher, its support logits (detached) enter Eq. 7,
    both adapted models are scored on the query set (Eq. 8) and each initialisation gets its own
    meta-gradient (Eq. 10)."""
    fig, ax = plt.subplots(figsize=(10, 3.6))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.axis("off")
    _box(ax, (0.07, 0.5), "support set\nD_tr (N x K)", "#dddddd", width=0.11, height=0.16)
    _box(ax, (0.26, 0.8), "teacher psi", "#f6c28b", width=0.12)
    _box(ax, (0.5, 0.8), "psi' = psi - alpha grad CE\n(Eq. 6)", "#f6c28b", width=0.2)
    _box(ax, (0.26, 0.22), "student theta", "#9fd39b", width=0.12)
    _box(ax, (0.5, 0.22), "theta' = theta - lambda grad\n[CE + w T^2 KL] (Eq. 7)", "#9fd39b", width=0.2)
    _box(ax, (0.5, 0.51), "soft targets\nsigma(f_psi'(D_tr)/T)", "#fbe3c8", width=0.16)
    _box(ax, (0.76, 0.8), "L_T(psi'; D_val)\n(Eq. 8a)", "#f6c28b", width=0.15)
    _box(ax, (0.76, 0.22), "L_S(theta'; D_val)\n(Eq. 8b)", "#9fd39b", width=0.15)
    _box(ax, (0.93, 0.51), "query set\nD_val", "#dddddd", width=0.1, height=0.16)
    _arrow(ax, (0.125, 0.56), (0.2, 0.78))
    _arrow(ax, (0.125, 0.44), (0.2, 0.24))
    _arrow(ax, (0.32, 0.8), (0.4, 0.8), "inner step")
    _arrow(ax, (0.32, 0.22), (0.4, 0.22), "inner step")
    _arrow(ax, (0.5, 0.74), (0.5, 0.57))
    _arrow(ax, (0.5, 0.45), (0.5, 0.28), "detached", dashed=True, offset=(0.05, -0.01))
    _arrow(ax, (0.6, 0.8), (0.685, 0.8))
    _arrow(ax, (0.6, 0.22), (0.685, 0.22))
    _arrow(ax, (0.88, 0.56), (0.8, 0.74))
    _arrow(ax, (0.88, 0.45), (0.8, 0.28))
    _arrow(ax, (0.76, 0.88), (0.26, 0.88), "Eq. 10a: meta-gradient for psi", color="C1", offset=(0, 0.0))
    _arrow(ax, (0.76, 0.14), (0.26, 0.14), "Eq. 10b: meta-gradient for theta (through Eq. 7, KD included)",
           color="C2", offset=(0, -0.08))
    fig.tight_layout()
    return fig


# -- models ---------------------------------------------------------------------------------------------
def glyph_pair(seed, *, ways, teacher_hidden, student_hidden, device="cpu"):
    """A fresh wide Conv-4 teacher and narrow Conv-4 student, seeded (teacher from `seed`, student from
    `seed + 1000`, so every row of a seed starts from the same student)."""
    torch.manual_seed(seed)
    teacher = Conv4(in_channels=1, num_classes=ways, hidden=teacher_hidden).to(device)
    torch.manual_seed(seed + 1000)
    student = Conv4(in_channels=1, num_classes=ways, hidden=student_hidden).to(device)
    return teacher, student


def size_report(teacher, student, image_shape):
    """Parameters and multiply-accumulates of one forward pass, per model."""
    def macs(model):
        total = 0

        def hook(module, inputs, output):
            nonlocal total
            per_image = output.numel() // output.shape[0]
            if isinstance(module, torch.nn.Conv2d):
                total += per_image * module.in_channels * module.kernel_size[0] * module.kernel_size[1] // module.groups
            elif isinstance(module, torch.nn.Linear):
                total += per_image * module.in_features

        handles = [m.register_forward_hook(hook) for m in model.modules()]
        with torch.no_grad(), meta.preserved_buffers(model):  # two images: train-mode BatchNorm needs a batch
            model(torch.zeros(2, *image_shape, device=next(model.parameters()).device))
        for h in handles:
            h.remove()
        return total

    return {name: {"params": count_parameters(m), "macs": macs(m)} for name, m in
            (("teacher", teacher), ("student", student))}


# -- Table 1 --------------------------------------------------------------------------------------------
def table_seed(data, *, seed, shots, ways, queries, iterations, meta_batch, test_tasks, make_models,
               inner_steps, inner_lr, teacher_inner_steps, kd_weight, temperature, meta_lr, teacher_meta_lr=None,
               test_steps=None, teacher_from_oracle=True, teacher_first_order=False, device="cpu", rows=ROWS,
               log=None):
    """One seed of the Table 1 analogue: the rows meta-trained on the same episodes from the same student
    initialisation, then scored on the same test episodes. `make_models(seed)` returns (teacher, student).

    teacher_from_oracle=True (the class profile): the teacher is first meta-trained by MAML from scratch
    (the Oracle row) and its weights initialise the teacher of "fixed_teacher" (frozen, RKD on its
    embeddings) and of "ours" (meta-trained on, jointly with the student), standing in for the paper's
    teacher pre-trained on the meta-training set. teacher_from_oracle=False (the full profile, as the
    paper): every row that has a teacher starts from the teacher `make_models` returns (pre-trained).
    Returns {"accuracies": {row: per-episode %}, "models": {row: (teacher, student)},
    "seconds": {row: training seconds}, "histories": {row: History}}.
    """
    from ..data.episodes import EpisodeSampler

    teacher0, student0 = make_models(seed)
    test_steps = inner_steps if test_steps is None else test_steps
    common = dict(iterations=iterations, meta_batch=meta_batch, inner_steps=inner_steps, inner_lr=inner_lr,
                  teacher_inner_steps=teacher_inner_steps, meta_lr=meta_lr, teacher_meta_lr=teacher_meta_lr,
                  teacher_first_order=teacher_first_order, device=device, log_every=max(1, iterations // 20))
    knobs = {"fixed_teacher": dict(kd_weight=kd_weight), "ours": dict(kd_weight=kd_weight, temperature=temperature)}
    out = {"accuracies": {}, "models": {}, "seconds": {}, "histories": {}}
    order = ["oracle"] + [r for r in ROWS if r in rows and r != "oracle"]
    if not teacher_from_oracle:
        order = [r for r in ROWS if r in rows]
    for row in order:
        sampler = EpisodeSampler(data, "train", ways=ways, shots=shots, queries=queries, seed=seed)
        teacher = None
        if tsmd.uses_teacher(row):
            source = out["models"]["oracle"][0] if teacher_from_oracle and row != "oracle" else teacher0
            teacher = copy.deepcopy(source)
        student = copy.deepcopy(student0) if tsmd.uses_student(row) else None
        started = time.perf_counter()
        teacher, student, history = tsmd.train_tsmd(teacher, student, sampler, variant=row, **common,
                                                     **knobs.get(row, {}))
        out["seconds"][row] = time.perf_counter() - started
        out["models"][row] = (teacher, student)
        out["histories"][row] = history
        result = tsmd.evaluate(teacher, student, test_tasks, variant=row, inner_steps=test_steps,
                               inner_lr=inner_lr, teacher_inner_steps=test_steps if row != "fixed_teacher" else 0,
                               **knobs.get(row, {}))
        out["accuracies"][row] = (100 * result["accuracies"]).tolist()
        if log is not None:
            log(f"seed {seed}, {shots}-shot, {row:>13}: {float(np.mean(out['accuracies'][row])):5.1f}% "
                f"({out['seconds'][row]:.0f} s meta-training)")
    if "oracle" not in rows:
        for key in ("accuracies", "seconds", "histories"):
            out[key].pop("oracle", None)
    return out


def table_markdown(per_seed, shots_list, baseline="student", paper=None):
    """The Table 1 analogue as Markdown: per row and shot, the mean over seeds with its t interval, the
    pooled-episode interval (MAML's 1.96 sigma / sqrt(n)) and the paired difference against `baseline`.

    `per_seed[shots][row]` is a list (one per seed) of per-episode accuracy lists."""
    from ..stats import mean_ci, paired_difference

    lines = ["| method | " + " | ".join(f"{k}-shot: mean ± 95% CI over seeds [pooled episodes] | "
                                         f"{k}-shot: vs {baseline} (paired, seeds)" for k in shots_list) + " |",
             "|---|" + "---:|---:|" * len(shots_list)]
    for row in ROWS:
        cells = []
        for k in shots_list:
            runs = per_seed[k].get(row)
            if runs is None:
                cells += ["-", "-"]
                continue
            seed_means = [float(np.mean(r)) for r in runs]
            pooled = episodes_ci([a for r in runs for a in r])
            cells.append(f"{mean_ci(seed_means)} [{pooled.mean:.1f} ± {pooled.half_width:.1f}, n={pooled.n}]")
            if row == baseline:
                cells.append("(baseline)")
            else:
                base = [float(np.mean(r)) for r in per_seed[k][baseline]]
                cells.append(str(paired_difference(seed_means, base)))
        lines.append(f"| {ROW_NAMES[row]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# -- loss scaling ---------------------------------------------------------------------------------------
def inner_gradients(teacher, student, task, *, temperature, teacher_inner_steps=1, inner_lr=0.4, bn="transductive"):
    """The two parts of the student's first inner gradient (Eq. 7) on one task, at the initialisation:
    grad CE and grad of T^2 KL against the adapted teacher's soft targets, flattened."""
    s = tsmd.settings("ours", teacher_inner_steps=teacher_inner_steps, inner_lr=inner_lr, temperature=temperature,
                      bn=bn, first_order=True)
    x_s, y_s = task[0], task[1]
    start = {n: p.detach().requires_grad_() for n, p in meta.params_of(teacher).items()}
    with torch.enable_grad():
        fast_teacher, _ = meta.inner_loop(teacher, start, F.cross_entropy, (x_s, y_s),
                                          steps=s.teacher_inner_steps, lr=s.teacher_inner_lr, first_order=True,
                                          bn=bn)
        with torch.no_grad():
            teacher_logits = meta.forward(teacher, fast_teacher, x_s, bn=bn)
        params = {n: p.detach().requires_grad_() for n, p in meta.params_of(student).items()}
        logits = meta.forward(student, params, x_s, bn=bn)
        ce = torch.autograd.grad(F.cross_entropy(logits, y_s), list(params.values()), retain_graph=True)
        kd = torch.autograd.grad(kd_loss(logits, teacher_logits, temperature), list(params.values()))
    flat = lambda grads: torch.cat([g.reshape(-1) for g in grads])  # noqa: E731
    return flat(ce), flat(kd), teacher_logits


def gradient_scale(teacher, student, tasks, temperatures, *, teacher_inner_steps=1, inner_lr=0.4):
    """For each temperature: the median over tasks of ||grad KD|| / ||grad CE|| (the KD term's size at
    KD_WEIGHT = 1) and of the cosine between the two gradients, at the student's initialisation."""
    rows = []
    for t in temperatures:
        ratios, cosines = [], []
        for task in tasks:
            ce, kd, _ = inner_gradients(teacher, student, task, temperature=t,
                                        teacher_inner_steps=teacher_inner_steps, inner_lr=inner_lr)
            ratios.append(float(kd.norm() / ce.norm()))
            cosines.append(float(F.cosine_similarity(ce, kd, dim=0)))
        rows.append({"temperature": float(t), "ratio": float(np.median(ratios)), "cosine": float(np.median(cosines))})
    return rows


def rkd_gradient_scale(teacher, student, tasks, *, bn="transductive"):
    """The Fixed-teacher row's inner step: the median over tasks of ||grad RKD|| / ||grad CE|| and of their
    cosine at the student's initialisation, RKD against the unadapted teacher's support embeddings."""
    ratios, cosines = [], []
    for x_s, y_s, *_ in tasks:
        with torch.no_grad(), meta.preserved_buffers(teacher):
            guide = meta.forward(teacher, meta.params_of(teacher), x_s, bn=bn, return_features=True)[1][-1]
        params = {n: p.detach().requires_grad_() for n, p in meta.params_of(student).items()}
        with torch.enable_grad():
            logits, features = meta.forward(student, params, x_s, bn=bn, return_features=True)
            ce = torch.autograd.grad(F.cross_entropy(logits, y_s), list(params.values()), retain_graph=True)
            rkd = torch.autograd.grad(tsmd.rkd_loss(features[-1], guide), list(params.values()), allow_unused=True)
        ce = torch.cat([g.reshape(-1) for g in ce])
        rkd = torch.cat([torch.zeros_like(p).reshape(-1) if g is None else g.reshape(-1)
                         for g, p in zip(rkd, params.values())])
        ratios.append(float(rkd.norm() / ce.norm()))
        cosines.append(float(F.cosine_similarity(ce, rkd, dim=0)))
    return {"ratio": float(np.median(ratios)), "cosine": float(np.median(cosines))}


def kd_sweep(data, teacher, student0, *, kd_weights, temperatures, shots, ways, queries, iterations, meta_batch,
             val_tasks, seed, inner_steps, inner_lr, teacher_inner_steps, meta_lr, device="cpu", trained=None):
    """Meta-train "ours" for every (KD_WEIGHT, TEMPERATURE) in the grid from the same teacher and student
    initialisation and episodes, and score each on the meta-VALIDATION episodes (so the grid never
    looks at the test classes). KD weight 0 is plain MAML on the student (exactly, see the unit tests), so
    it is run once, as the "student" variant. `trained` maps (w, T) (or (0.0, None)) to an already
    meta-trained (teacher, student) pair with this very budget, e.g. the Table 1 rows, to skip retraining.
    Returns a list of {"kd_weight", "temperature", "effective" (= w T^2), "accuracy", "ci", "seconds"}."""
    from ..data.episodes import EpisodeSampler

    rows, cache, trained = [], {}, dict(trained or {})
    for w in kd_weights:
        for t in temperatures:
            key = (0.0, None) if w == 0 else (float(w), float(t))
            variant = "student" if w == 0 else "ours"
            if key not in cache:
                started = time.perf_counter()
                if key in trained:
                    tch, stu = trained[key]
                else:
                    sampler = EpisodeSampler(data, "train", ways=ways, shots=shots, queries=queries, seed=seed)
                    tch, stu, _ = tsmd.train_tsmd(None if w == 0 else copy.deepcopy(teacher), copy.deepcopy(student0),
                                                  sampler, variant=variant, iterations=iterations,
                                                  meta_batch=meta_batch, inner_steps=inner_steps, inner_lr=inner_lr,
                                                  teacher_inner_steps=teacher_inner_steps, kd_weight=w,
                                                  temperature=t, meta_lr=meta_lr, device=device,
                                                  log_every=iterations)
                result = tsmd.evaluate(tch, stu, val_tasks, variant=variant, inner_steps=inner_steps,
                                       inner_lr=inner_lr, teacher_inner_steps=teacher_inner_steps, kd_weight=w,
                                       temperature=t)
                cache[key] = (episodes_ci((100 * result["accuracies"]).tolist()), time.perf_counter() - started,
                              key in trained)
            ci, seconds, reused = cache[key]
            rows.append({"kd_weight": float(w), "temperature": float(t), "effective": float(w * t * t),
                         "accuracy": ci.mean, "ci": ci.half_width, "seconds": seconds, "reused": reused})
    return rows


def plot_sweep(rows, baseline=None, ax=None):
    """Validation accuracy against KD_WEIGHT, one line per TEMPERATURE; `baseline` = plain MAML."""
    ax = ax or plt.subplots(figsize=(5, 3))[1]
    temperatures = sorted({r["temperature"] for r in rows})
    for i, t in enumerate(temperatures):
        points = sorted((r for r in rows if r["temperature"] == t), key=lambda r: r["kd_weight"])
        x = [max(r["kd_weight"], 1e-3) for r in points]
        ax.errorbar(x, [r["accuracy"] for r in points], yerr=[r["ci"] for r in points], marker="o", capsize=3,
                    label=f"T = {t:g}", color=f"C{i}")
    if baseline is not None:
        ax.axhline(baseline, color="0.4", ls="--", lw=1, label="plain MAML (KD weight 0)")
    ax.set_xscale("log")
    ax.set_xlabel("KD_WEIGHT (0 drawn at 1e-3)")
    ax.set_ylabel("meta-val accuracy (%)")
    ax.legend(fontsize=8)
    return ax


# -- the panel ------------------------------------------------------------------------------------------
def adaptation_view(teacher, student, tasks, *, inner_steps, inner_lr, kd_weight, temperature,
                    teacher_inner_steps=1, show=0):
    """Adapt (teacher, then student) on each task with the given knobs, from meta-trained weights.

    Returns the student's query accuracy with KD and without it (same steps and lr), the adapted
    teacher's, and for task `show` the teacher's and the student's soft targets on one support image."""
    knobs = dict(inner_steps=inner_steps, inner_lr=inner_lr, teacher_inner_steps=teacher_inner_steps,
                 kd_weight=kd_weight, temperature=temperature)
    accuracy = {"with_kd": [], "without_kd": [], "teacher": []}
    shown = None
    for i, task in enumerate(tasks):
        out = tsmd.adapt_and_predict(teacher, student, task, variant="ours", details=True, **knobs)
        plain = tsmd.adapt_and_predict(teacher, student, task, variant="ours", details=True,
                                       **{**knobs, "kd_weight": 0.0})
        y_q = task[3]
        accuracy["with_kd"].append(100 * float((out["logits"].argmax(1) == y_q).float().mean()))
        accuracy["without_kd"].append(100 * float((plain["logits"].argmax(1) == y_q).float().mean()))
        accuracy["teacher"].append(100 * float((out["teacher_logits"].argmax(1) == y_q).float().mean()))
        if i == show:
            shown = {"teacher": soft_targets(out["teacher_support"][0], temperature).tolist(),
                     "student": soft_targets(out["student_support"][0], temperature).tolist(),
                     "student_plain": soft_targets(plain["student_support"][0], temperature).tolist(),
                     "label": int(task[1][0])}
    return {"inner_steps": inner_steps, "inner_lr": inner_lr, "kd_weight": kd_weight, "temperature": temperature,
            **{k: float(np.mean(v)) for k, v in accuracy.items()}, "tasks": len(tasks), "soft": shown}


def adaptation_panel(teacher, student, tasks, *, inner_steps=1, inner_lr=0.4, kd_weight=1.0, temperature=1.0,
                     teacher_inner_steps=1):
    """INNER_STEPS, INNER_LR, KD_WEIGHT and TEMPERATURE sliders: re-adapt the meta-trained pair on a few
    test tasks (no meta-training), and show accuracy with and without KD and the soft targets it chases."""

    def compute(INNER_STEPS, INNER_LR, KD_WEIGHT, TEMPERATURE):
        started = time.perf_counter()
        data = adaptation_view(teacher, student, tasks, inner_steps=INNER_STEPS, inner_lr=INNER_LR,
                               kd_weight=KD_WEIGHT, temperature=TEMPERATURE, teacher_inner_steps=teacher_inner_steps)
        data["seconds"] = time.perf_counter() - started
        return data

    def draw(d, fig):
        ax_acc, ax_soft = fig.subplots(1, 2)
        names = ["student, CE only", "student, CE + KD", "adapted teacher"]
        values = [d["without_kd"], d["with_kd"], d["teacher"]]
        ax_acc.bar(range(3), values, color=["C2", "C0", "C1"])
        ax_acc.set_xticks(range(3), names, fontsize=8)
        ax_acc.set_ylim(0, 105)
        ax_acc.set_ylabel(f"query accuracy (%), {d['tasks']} test tasks")
        soft = d["soft"]
        width = 0.38
        x = np.arange(len(soft["teacher"]))
        ax_soft.bar(x - width / 2, soft["teacher"], width, color="C1", label="adapted teacher (target)")
        ax_soft.bar(x + width / 2, soft["student"], width, color="C0", label="adapted student")
        ax_soft.set_xticks(x, [str(i) for i in x])
        ax_soft.set_ylim(0, 1)
        ax_soft.set_title(f"soft targets at T = {d['temperature']:g}, support image of class {soft['label']}",
                          fontsize=9)
        ax_soft.legend(fontsize=7)
        fig.tight_layout()

    return Panel(compute, draw, {"INNER_STEPS": slider(inner_steps, 0, 5, 1),
                                 "INNER_LR": log_slider(inner_lr, 0.01, 2.0),
                                 "KD_WEIGHT": slider(float(kd_weight), 0.0, 4.0, 0.05),
                                 "TEMPERATURE": slider(float(temperature), 0.5, 10.0, 0.5)},
                 figsize=(9, 3.2),
                 readout=lambda d: (f"{d['inner_steps']} steps at lr {d['inner_lr']:.3g}, "
                                    f"KD_WEIGHT {d['kd_weight']:g}, T {d['temperature']:g}: "
                                    f"student {d['with_kd']:.1f}% with KD vs {d['without_kd']:.1f}% without; "
                                    f"teacher {d['teacher']:.1f}% ({d['seconds']:.1f} s)"))


# -- the full profile -------------------------------------------------------------------------------------
def with_new_head(model, ways):
    """The same network with a fresh `ways`-class linear classifier (after pre-training on many classes)."""
    model.classifier = torch.nn.Linear(model.classifier.in_features, ways).to(next(model.parameters()).device)
    model.num_classes = ways
    return model


def pretrain_teacher(fewshot, model, *, epochs, lr=0.05, batch_size=128, seed=0, holdout=0.05):
    """The paper's teacher initialisation: ordinary classification over all meta-train classes (it trains
    its ResNet-50 for 160 epochs), with `kdlab.train.fit`; returns the model and its History."""
    from ..data.base import DataSplits, stratified_split
    from ..train import fit

    split = fewshot.split("train")
    held, kept = stratified_split(split.local_labels.cpu(), int(holdout * len(split)),
                                  torch.Generator().manual_seed(seed))
    data = DataSplits(f"{fewshot.name} meta-train classes", split.images[kept], split.local_labels[kept],
                      split.images[held], split.local_labels[held], split.num_classes, tuple(split.images.shape[1:]))
    history = fit(model, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    return model, history


def full_benchmark(name, *, shots, ways=5, seed=0, teacher_name="resnet32x4", teacher_epochs=160, iterations=10_000,
                   meta_batch=4, queries=15, test_episodes=800, inner_steps=5, test_steps=10, inner_lr=0.01,
                   kd_weight=1.0, temperature=1.0, meta_lr=1e-3, teacher_meta_lr=1e-5, device="cuda", log=print):
    """Table 1 at paper scale on one benchmark (cifar_fs, fc100, mini_imagenet): a CIFAR ResNet teacher
    pre-trained on the meta-train classes, a 32-channel Conv-4 student, MAML's mini-ImageNet settings
    (5 inner steps at 0.01, 10 at test, Adam 1e-3 for the student and the paper's 1e-5 for the teacher),
    first-order inner loop for the teacher (memory), 800 test episodes. Returns `table_seed`'s dict."""
    from ..data import load
    from ..data.episodes import EpisodeSampler
    from ..models import create

    data = load(name, device=device)
    channels, side = data.split("train").images.shape[1:3]
    torch.manual_seed(seed)
    teacher = create(teacher_name, num_classes=data.split("train").num_classes).to(device)
    pretrain_teacher(data, teacher, epochs=teacher_epochs, seed=seed)
    teacher = with_new_head(teacher, ways)

    def make_models(s):
        torch.manual_seed(s + 1000)
        student = Conv4(in_channels=channels, num_classes=ways, hidden=32, variant="miniimagenet",
                        image_size=side).to(device)
        return copy.deepcopy(teacher), student

    test = EpisodeSampler(data, "test", ways=ways, shots=shots, queries=queries, seed=10_000 + seed)
    return table_seed(data, seed=seed, shots=shots, ways=ways, queries=queries, iterations=iterations,
                      meta_batch=meta_batch, test_tasks=[test.episode(i) for i in range(test_episodes)],
                      make_models=make_models, inner_steps=inner_steps, test_steps=test_steps, inner_lr=inner_lr,
                      teacher_inner_steps=inner_steps, kd_weight=kd_weight, temperature=temperature,
                      meta_lr=meta_lr, teacher_meta_lr=teacher_meta_lr, teacher_from_oracle=False,
                      teacher_first_order=True, device=device, log=log)
