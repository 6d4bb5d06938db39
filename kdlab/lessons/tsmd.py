"""Notebook 06 (TSMD): the Table 1 experiment on few-shot glyphs, the loss-scaling measurements, the KD grid
(in `tsmd_sweep`), the adaptation panel and the full profile. Meta-training is `fit_episodes(TSMD(teacher, student, ...))`;
every inner loop goes through `kdlab.methods.tsmd`; the diagrams are in `kdlab.diagrams`.
"""
import copy
import functools
import time

import numpy as np
import torch
import torch.nn.functional as F

from .. import meta, parallel
from ..data.episodes import EpisodeSampler
from ..losses import kd_loss, soft_targets
from ..losses_relational import rkd_loss
from ..methods import tsmd
from ..methods.tsmd import TSMD
from ..methods.episodic import accuracy
from ..models.conv4 import conv4_pair as glyph_pair  # noqa: F401 (the notebook's model pair)
from ..stats import episodes_ci, mean_ci, paired_difference
from ..train import fit_episodes
from ..train.pretrain import pretrain_teacher  # noqa: F401 (the notebook's teacher initialisation)
from ..widgets import Panel, log_slider, slider
from .tsmd_rows import train_and_score
from .tsmd_sweep import kd_sweep, plot_sweep, start_kd_sweep  # noqa: F401 (the notebook reads them here)

ROWS = ("student", "fixed_teacher", "ours", "oracle")
ROW_NAMES = {"student": "Student (MAML, small)", "fixed_teacher": "Fixed teacher (RKD)",
             "ours": "Ours (TSMD)", "oracle": "Oracle (MAML, big)"}


def table_seed(data, *, seed, shots, ways, queries, iterations, meta_batch, test_tasks, make_models,
               inner_steps, inner_lr, teacher_inner_steps, kd_weight, temperature, meta_lr, teacher_meta_lr=None,
               test_steps=None, teacher_from_oracle=True, teacher_first_order=False, device="cpu", rows=ROWS,
               log=None):
    """One seed of the Table 1 analogue: the rows meta-trained (`fit_episodes(TSMD(...))`) on the same episodes
    from the same student initialisation, then scored on the same test episodes. `make_models(seed)` returns
    (teacher, student). teacher_from_oracle=True (class profile): the Oracle row (MAML on the teacher from
    scratch) runs first and its weights initialise the teacher of "fixed_teacher" and "ours", standing in for
    the paper's teacher pre-trained on the meta-training set; False (full profile, as the paper): every
    teacher starts from `make_models`'s. Returns {"accuracies": {row: per-episode %}, "models": {row:
    (teacher, student)}, "seconds": {row: training seconds}, "histories": {row: History}}."""
    teacher0, student0 = make_models(seed)
    test_steps = inner_steps if test_steps is None else test_steps
    common = dict(inner_steps=inner_steps, inner_lr=inner_lr, teacher_inner_steps=teacher_inner_steps, meta_lr=meta_lr,
                  teacher_meta_lr=teacher_meta_lr, teacher_first_order=teacher_first_order)
    knobs = {"fixed_teacher": dict(kd_weight=kd_weight), "ours": dict(kd_weight=kd_weight, temperature=temperature)}
    out = {"accuracies": {}, "models": {}, "seconds": {}, "histories": {}}
    first = ["oracle"] if teacher_from_oracle else []
    order = first + [r for r in ROWS if r in rows and r not in first]
    for row in order:
        sampler = EpisodeSampler(data, "train", ways=ways, shots=shots, queries=queries, seed=seed)
        source = out["models"]["oracle"][0] if teacher_from_oracle and row != "oracle" else teacher0
        teacher = copy.deepcopy(source) if tsmd.uses_teacher(row) else None
        student = copy.deepcopy(student0) if tsmd.uses_student(row) else None
        done = train_and_score(
            TSMD(teacher, student, variant=row, **common, **knobs.get(row, {})), sampler, iterations=iterations,
            meta_batch=meta_batch, log_every=max(1, iterations // 20), test_tasks=test_tasks, device=device, log=log,
            eval_knobs=dict(variant=row, inner_steps=test_steps, inner_lr=inner_lr,
                            teacher_inner_steps=test_steps if row != "fixed_teacher" else 0, **knobs.get(row, {})))
        out["seconds"][row], out["models"][row], out["histories"][row] = (done["seconds"], (teacher, student),
                                                                         done["history"])
        out["accuracies"][row] = (100 * done["accuracies"]).tolist()
        if log is not None:
            log(f"seed {seed}, {shots}-shot, {row:>13}: {float(np.mean(out['accuracies'][row])):5.1f}% "
                f"({out['seconds'][row]:.0f} s meta-training{', reused from the run cache' if done['reused'] else ''})")
    if "oracle" not in rows:
        for key in ("accuracies", "seconds", "histories"):
            out[key].pop("oracle", None)
    return out


def table_runs(data, jobs, *, workers=1, **settings):
    """`table_seed(data, **job, **settings)` for each job (a dict of the settings that differ between runs,
    such as {"seed": 1, "shots": 5, "iterations": 120, "test_tasks": [...]}), computed by `workers` processes
    side by side (`kdlab.parallel`; `make_models` a function of a module or a partial of one). Every run gives
    what it gives alone; the results come in the jobs' order."""
    return parallel.map_in_workers(functools.partial(_table_job, data, settings), jobs, workers)


def _table_job(data, settings, job):
    return table_seed(data, **job, **settings)


def reptile_row(data, row, teacher_state, *, seed, ways, teacher_hidden, student_hidden, shots, queries, iterations,
                meta_batch, test_tasks, device="cpu", **knobs):
    """Table 4's Reptile outer loop for one row ("student": Reptile on the student alone; "ours": TSMD with
    Reptile for both models): `glyph_pair(seed)`'s models, the teacher starting from `teacher_state`,
    meta-trained by `fit_episodes(TSMD(..., outer="reptile", meta_lr=1.0, **knobs))` on the training alphabets,
    then scored on `test_tasks` with the same knobs. Returns the per-episode accuracies (%)."""
    teacher0, student0 = glyph_pair(seed, ways=ways, teacher_hidden=teacher_hidden, student_hidden=student_hidden,
                                    device=device)
    teacher0.load_state_dict(teacher_state)
    sampler = EpisodeSampler(data, "train", ways=ways, shots=shots, queries=queries, seed=seed)
    method = TSMD(teacher0 if row == "ours" else None, student0, variant=row, outer="reptile", meta_lr=1.0, **knobs)
    fit_episodes(method, sampler, iterations=iterations, meta_batch=meta_batch, log_every=iterations, device=device)
    result = tsmd.evaluate(method.teacher, method.student, test_tasks, variant=row, **knobs)
    return (100 * result["accuracies"]).tolist()


def table_markdown(per_seed, shots_list, baseline="student", paper=None):
    """The Table 1 analogue as Markdown: per row and shot, the mean over seeds with its t interval, the pooled-
    episode interval (MAML's 1.96 sigma / sqrt(n)) and the paired difference against `baseline`;
    `per_seed[shots][row]` is a list (one per seed) of per-episode accuracy lists."""
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
            base = [float(np.mean(r)) for r in per_seed[k][baseline]]
            cells.append("(baseline)" if row == baseline else str(paired_difference(seed_means, base)))
        lines.append(f"| {ROW_NAMES[row]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def split_gradient(student, x_s, y_s, distill, bn="transductive"):
    """The two parts of the student's first inner gradient (Eq. 7) at its initialisation, flattened: grad CE
    and grad of `distill(logits, embedding)` (zeros where it does not reach)."""
    params = {n: p.detach().requires_grad_() for n, p in meta.params_of(student).items()}
    with torch.enable_grad():
        logits, features = meta.forward(student, params, x_s, bn=bn, return_features=True)
        ce = torch.autograd.grad(F.cross_entropy(logits, y_s), list(params.values()), retain_graph=True)
        kd = torch.autograd.grad(distill(logits, features[-1]), list(params.values()), allow_unused=True)
    flat = lambda grads: torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)  # noqa: E731
                                    for g, p in zip(grads, params.values())])
    return flat(ce), flat(kd)


def inner_gradients(teacher, student, task, *, temperature, teacher_inner_steps=1, inner_lr=0.4, bn="transductive"):
    """grad CE and grad T^2 KL against the adapted teacher's soft targets (Eq. 7) on one task, at the student's
    initialisation, and the adapted teacher's support logits."""
    teacher_logits = tsmd.adapt_and_predict(teacher, student, task, variant="ours", details=True, bn=bn,
                                            teacher_inner_steps=teacher_inner_steps, inner_lr=inner_lr,
                                            temperature=temperature)["teacher_support"]
    ce, kd = split_gradient(student, task[0], task[1], lambda z, _: kd_loss(z, teacher_logits, temperature), bn)
    return ce, kd, teacher_logits


def _medians(pairs):
    """Medians over tasks of ||grad KD|| / ||grad CE|| and of their cosine."""
    ratios = [float(kd.norm() / ce.norm()) for ce, kd in pairs]
    cosines = [float(F.cosine_similarity(ce, kd, dim=0)) for ce, kd in pairs]
    return {"ratio": float(np.median(ratios)), "cosine": float(np.median(cosines))}


def gradient_scale(teacher, student, tasks, temperatures, *, teacher_inner_steps=1, inner_lr=0.4):
    """For each temperature: the medians over tasks of ||grad KD|| / ||grad CE|| (the KD term's size at
    KD_WEIGHT = 1) and of the cosine between the two gradients, at the student's initialisation."""
    return [{"temperature": float(t), **_medians([inner_gradients(teacher, student, task, temperature=t,
                                                                  teacher_inner_steps=teacher_inner_steps,
                                                                  inner_lr=inner_lr)[:2] for task in tasks])}
            for t in temperatures]


def rkd_gradient_scale(teacher, student, tasks, *, bn="transductive"):
    """The Fixed-teacher row: the same medians for RKD against the unadapted teacher's support embeddings."""
    s = tsmd.settings("fixed_teacher", bn=bn)
    return _medians([split_gradient(student, x_s, y_s, lambda _, e, g=tsmd.teacher_guide(teacher, None, x_s, s):
                                    rkd_loss(e, g), bn) for x_s, y_s, *_ in tasks])


def adaptation_view(teacher, student, tasks, *, inner_steps, inner_lr, kd_weight, temperature,
                    teacher_inner_steps=1, show=0):
    """Adapt (teacher, then student) on each task with the given knobs, from meta-trained weights. Returns the
    student's query accuracy with KD and without it (same steps and lr), the adapted teacher's, and for task
    `show` the teacher's and the student's soft targets on one support image."""
    knobs = dict(inner_steps=inner_steps, inner_lr=inner_lr, teacher_inner_steps=teacher_inner_steps,
                 kd_weight=kd_weight, temperature=temperature)
    scores, shown = {"with_kd": [], "without_kd": [], "teacher": []}, None
    for i, task in enumerate(tasks):
        out = tsmd.adapt_and_predict(teacher, student, task, variant="ours", details=True, **knobs)
        plain = tsmd.adapt_and_predict(teacher, student, task, variant="ours", details=True,
                                       **{**knobs, "kd_weight": 0.0})
        for name, logits in (("with_kd", out["logits"]), ("without_kd", plain["logits"]),
                             ("teacher", out["teacher_logits"])):
            scores[name].append(100 * accuracy(logits, task[3]))
        if i == show:
            shown = {"teacher": soft_targets(out["teacher_support"][0], temperature).tolist(),
                     "student": soft_targets(out["student_support"][0], temperature).tolist(),
                     "label": int(task[1][0])}
    return {"inner_steps": inner_steps, "inner_lr": inner_lr, "kd_weight": kd_weight, "temperature": temperature,
            **{k: float(np.mean(v)) for k, v in scores.items()}, "tasks": len(tasks), "soft": shown}


def adaptation_panel(teacher, student, tasks, *, inner_steps=1, inner_lr=0.4, kd_weight=1.0, temperature=1.0,
                     teacher_inner_steps=1):
    """INNER_STEPS, INNER_LR, KD_WEIGHT, TEMPERATURE sliders: re-adapt the meta-trained pair on a few test tasks,
    show the accuracy with and without KD and the soft targets it chases."""

    def compute(INNER_STEPS, INNER_LR, KD_WEIGHT, TEMPERATURE):
        started = time.perf_counter()
        data = adaptation_view(teacher, student, tasks, inner_steps=INNER_STEPS, inner_lr=INNER_LR,
                               kd_weight=KD_WEIGHT, temperature=TEMPERATURE, teacher_inner_steps=teacher_inner_steps)
        data["seconds"] = time.perf_counter() - started
        return data

    def draw(d, fig):
        ax_acc, ax_soft = fig.subplots(1, 2)
        ax_acc.bar(range(3), [d["without_kd"], d["with_kd"], d["teacher"]], color=["C2", "C0", "C1"])
        ax_acc.set_xticks(range(3), ["student, CE only", "student, CE + KD", "adapted teacher"], fontsize=8)
        ax_acc.set(ylim=(0, 105), ylabel="query accuracy (%)")
        ax_acc.set_title(f"after adaptation, mean of {d['tasks']} test tasks", fontsize=9)
        soft, width = d["soft"], 0.38
        x = np.arange(len(soft["teacher"]))
        ax_soft.bar(x - width / 2, soft["teacher"], width, color="C1", label="adapted teacher\n(the KD target)")
        ax_soft.bar(x + width / 2, soft["student"], width, color="C0", hatch="//", edgecolor="white",
                    label="adapted student")
        ax_soft.set(xticks=x, ylim=(0, min(1.0, 1.15 * max(soft["teacher"] + soft["student"]))),
                    xlabel="class of the task", ylabel="probability")
        ax_soft.set_title(f"soft targets at T = {d['temperature']:g}, support image of class {soft['label']}",
                          fontsize=9)
        ax_soft.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()

    return Panel(compute, draw, {"INNER_STEPS": slider(inner_steps, 0, 5, 1),
                                 "INNER_LR": log_slider(inner_lr, 0.01, 2.0),
                                 "KD_WEIGHT": slider(float(kd_weight), 0.0, 4.0, 0.25),
                                 "TEMPERATURE": slider(float(temperature), 0.5, 10.0, 0.5)}, figsize=(10, 3.4),
                 readout=lambda d: (f"{d['inner_steps']} steps at lr {d['inner_lr']:.3g}, "
                                    f"KD_WEIGHT {d['kd_weight']:g}, T {d['temperature']:g}: "
                                    f"student {d['with_kd']:.1f}% with KD vs {d['without_kd']:.1f}% without; "
                                    f"teacher {d['teacher']:.1f}% ({d['seconds']:.1f} s)"))


def full_benchmark(paper, *, seed=0, kd_weight=None, temperature=None, log=print):
    """Table 1 at paper scale on the recipe `paper` (a `kdlab.reproduce.notebook.PaperRun` of
    `tsmd_miniimagenet_5w{1,5}s`, possibly on CIFAR-FS or FC100): the recipe's teacher pre-trained on the
    meta-train classes (cached), its 32-channel Conv-4 student, MAML's mini-ImageNet settings (5 inner steps at
    0.01, 10 at test, Adam 1e-3; the paper's 1e-5 for the teacher, first order for memory) and its
    test episodes. `kd_weight` and `temperature` override the recipe's."""
    s, knobs = paper.setting, paper.knobs
    data = paper.data()
    teacher = paper.teacher(data)

    def make_models(student_seed):
        return copy.deepcopy(teacher), paper.student(student_seed + 1000)

    test = EpisodeSampler(data, "test", ways=s.ways, shots=s.shots, queries=s.queries, seed=10_000 + seed)
    return table_seed(data, seed=seed, shots=s.shots, ways=s.ways, queries=s.queries, iterations=paper.iterations,
                      meta_batch=s.meta_batch, test_tasks=[test.episode(i) for i in range(paper.test_episodes)],
                      make_models=make_models, inner_steps=knobs["inner_steps"], test_steps=paper.test_steps,
                      inner_lr=knobs["inner_lr"], teacher_inner_steps=knobs["teacher_inner_steps"],
                      kd_weight=knobs["kd_weight"] if kd_weight is None else kd_weight,
                      temperature=knobs["temperature"] if temperature is None else temperature,
                      meta_lr=knobs["meta_lr"], teacher_meta_lr=knobs["teacher_meta_lr"], teacher_from_oracle=False,
                      teacher_first_order=knobs["teacher_first_order"], device=paper.device, log=log)
