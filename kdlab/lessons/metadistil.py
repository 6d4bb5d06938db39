"""Notebook 03 (MetaDistil): paired experiments, learning dynamics, static vs dynamic teaching, cost per
step, and the teaching panel.

Every function is a pure function of its arguments and a seed: the same settings give the same numbers
in the notebook, in a test and in a sweep. "KD (90 %)" is the fair baseline: plain KD on exactly the
training data MetaDistil's student sees (the quiz set held out), with the same initial weights and batch
order; "KD (100 %)" also trains on the quiz images.
"""
import copy
import math
import time

import numpy as np
import torch
from torch.func import functional_call

from .. import config, profiling
from ..data.quiz import quiz_batches, split_quiz
from ..gradcheck import finite_differences, relative_error
from ..methods import metadistil as md
from ..train import accuracy, distill_from, fit
from ..widgets import Panel, log_slider, slider
from .kd import new_student


# -- one seed, several methods ----------------------------------------------------------------------
def kd_run(data, teacher, *, seed, hidden, recipe, alpha, temperature, architecture=None):
    """A KD student on `data` (all of its training set); returns (student, history)."""
    student = new_student(data, hidden, seed, architecture)
    history = fit(student, data, distill_from(teacher, alpha, temperature), seed=seed, progress=False, **recipe)
    return student, history


def meta_run(data, teacher, *, seed, hidden, recipe, alpha, temperature, teacher_lr, quiz_fraction, quiz_batch,
             pilot_update=True, freeze_epochs=0, monitor=None, log_every=0, architecture=None):
    """MetaDistil from a copy of `teacher` (the original is left as it is); returns (student, teacher, history)."""
    method = md.MetaDistil(new_student(data, hidden, seed, architecture), copy.deepcopy(teacher),
                           teacher_lr=teacher_lr, alpha=alpha, temperature=temperature, quiz_fraction=quiz_fraction,
                           quiz_batch_size=quiz_batch, pilot_update=pilot_update, freeze_epochs=freeze_epochs,
                           monitor=monitor, log_every=log_every)
    history = fit(method, data, seed=seed, progress=False, **recipe)
    return method.model, method.teacher, history


def compare_methods(data, teacher, *, seed, hidden, recipe, alpha, temperature, teacher_lr, quiz_fraction, quiz_batch,
                    freeze_epochs=0, keep_teachers=None, architecture=None):
    """KD (100 %), KD (90 %), MetaDistil and MetaDistil w/o pilot update for one seed: final test accuracies,
    the meta-teachers' final test accuracy, and the share of teacher updates toward the student (first and
    second half of training). With `keep_teachers` (a dict), the pilot run's final teacher is kept there
    under the seed (static teaching reuses it)."""
    common = dict(seed=seed, hidden=hidden, recipe=recipe, alpha=alpha, temperature=temperature,
                  architecture=architecture)
    meta = dict(teacher_lr=teacher_lr, quiz_fraction=quiz_fraction, quiz_batch=quiz_batch, freeze_epochs=freeze_epochs)
    split = split_quiz(data, quiz_fraction, seed, quiz_batch_size=quiz_batch)
    _, kd_all = kd_run(data, teacher, **common)
    _, kd_90 = kd_run(split.train, teacher, **common)
    pilot_student, meta_teacher, pilot = meta_run(data, teacher, pilot_update=True, **common, **meta)
    no_pilot_student, _, no_pilot = meta_run(data, teacher, pilot_update=False, **common, **meta)
    if keep_teachers is not None:
        keep_teachers[seed] = meta_teacher
    first, second = md.toward_share(pilot)
    gap = max(float((a - b).detach().abs().max())
              for a, b in zip(pilot_student.parameters(), no_pilot_student.parameters()))
    return {"kd_100": kd_all.last["test_acc"], "kd_90": kd_90.last["test_acc"], "meta": pilot.last["test_acc"],
            "meta_no_pilot": no_pilot.last["test_acc"], "meta_teacher": pilot.last["teacher_test_acc"],
            "toward_first": first, "toward_second": second, "pilot_weight_gap": gap}


def finite_difference_check(seed=0, lr=0.5, alpha=0.9, temperature=2.0, eps=1e-6):
    """The teacher's meta-gradient against central finite differences (`kdlab.gradcheck`) of the quiz loss
    after one plain-torch student step, float64, tiny tanh MLPs (teacher 4-5-3, student 4-3-3): returns
    the relative error ||analytic - numeric|| / ||numeric||."""
    torch.manual_seed(seed)
    student = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 3)).double()
    teacher = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    g = torch.Generator().manual_seed(seed + 1)
    x, x_q = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    y, y_q = torch.arange(6) % 3, torch.arange(5) % 3
    result = md.teacher_meta_gradient(student, teacher, x, y, x_q, y_q, lr=lr, alpha=alpha, temperature=temperature)

    @torch.enable_grad()
    def quiz_loss_after_step():  # Eq. 2 by hand, then L_T; reads the teacher's weights in place
        inner = md.student_loss(student(x), teacher(x), y, alpha, temperature)["loss"]
        grads = torch.autograd.grad(inner, list(student.parameters()))
        fast = {name: p - lr * gr for (name, p), gr in zip(student.named_parameters(), grads)}
        return float(md.quiz_loss(functional_call(student, fast, (x_q,)), y_q).detach())

    numeric = finite_differences(quiz_loss_after_step, list(teacher.parameters()), eps=eps)
    return relative_error([result.grads[name] for name, _ in teacher.named_parameters()], numeric)


def pilot_ablation(data, teacher, *, seed, hidden, recipe, alpha, temperature, teacher_lr, quiz_fraction, quiz_batch):
    """MetaDistil with and without the pilot update for one seed: final test accuracies and the largest
    weight difference between the two students."""
    common = dict(seed=seed, hidden=hidden, recipe=recipe, alpha=alpha, temperature=temperature, teacher_lr=teacher_lr,
                  quiz_fraction=quiz_fraction, quiz_batch=quiz_batch)
    with_pilot, _, pilot = meta_run(data, teacher, pilot_update=True, **common)
    without_pilot, _, no_pilot = meta_run(data, teacher, pilot_update=False, **common)
    gap = max(float((a - b).detach().abs().max()) for a, b in zip(with_pilot.parameters(), without_pilot.parameters()))
    return {"meta": pilot.last["test_acc"], "meta_no_pilot": no_pilot.last["test_acc"], "pilot_weight_gap": gap}


# -- learning dynamics (section 5.1.1) --------------------------------------------------------------
def dynamics(data, teacher, *, seed, hidden, recipe, alpha, temperature, teacher_lrs, quiz_fraction, quiz_batch,
             log_every=10):
    """MetaDistil at each teacher lr with accuracy logged on the test set every `log_every` steps, and the
    KD (90 %) student's accuracy after every epoch; returns {"kd": history, teacher_lr: history, ...}."""
    split = split_quiz(data, quiz_fraction, seed, quiz_batch_size=quiz_batch)
    _, kd_history = kd_run(split.train, teacher, seed=seed, hidden=hidden, recipe=recipe, alpha=alpha,
                           temperature=temperature)
    out = {"kd": kd_history, "steps_per_epoch": math.ceil(split.train.num_train / recipe["batch_size"])}
    for lr in teacher_lrs:
        _, _, history = meta_run(data, teacher, seed=seed, hidden=hidden, recipe=recipe, alpha=alpha,
                                 temperature=temperature, teacher_lr=lr, quiz_fraction=quiz_fraction,
                                 quiz_batch=quiz_batch, monitor=(data.x_test, data.y_test), log_every=log_every)
        out[lr] = history
    return out


def plot_dynamics(runs, teacher_lrs, axes, weight_decay_term=None):
    """Left: student and teacher test accuracy over steps per teacher lr (KD's student per epoch, grey).
    Middle: the running share of teacher updates that moved the teacher toward the student.
    Right: the norm of the teacher's meta-gradient per step, and (dotted) the size of the weight-decay term
    `weight_decay_term` that the teacher's optimiser adds to it."""
    ax_acc, ax_toward, ax_grad = axes
    per_epoch = runs["steps_per_epoch"]
    kd = runs["kd"]
    ax_acc.plot([e * per_epoch for e in kd.series("epoch")], kd.series("test_acc"), color="0.5", lw=1,
                label="KD (90 %) student")
    for i, lr in enumerate(teacher_lrs):
        history = runs[lr]
        steps = [r for r in history.steps if "teacher_acc" in r]
        x = [r["step"] for r in steps]
        ax_acc.plot(x, [r["student_acc"] for r in steps], color=f"C{i}", label=f"student, teacher lr {lr:g}")
        ax_acc.plot(x, [r["teacher_acc"] for r in steps], color=f"C{i}", ls="--", label=f"teacher, lr {lr:g}")
        toward = np.array([r["toward"] for r in history.steps if r["toward"] is not None], dtype=float)
        window = max(1, len(toward) // 15)
        smooth = np.convolve(toward, np.ones(window) / window, mode="valid")
        ax_toward.plot(np.arange(len(smooth)) + window, 100 * smooth, color=f"C{i}", label=f"teacher lr {lr:g}")
        norms = [(r["step"], r["teacher_grad_norm"]) for r in history.steps if r.get("teacher_grad_norm")]
        ax_grad.semilogy(*zip(*norms), color=f"C{i}", lw=0.6, label=f"teacher lr {lr:g}")
    if weight_decay_term is not None:
        ax_grad.axhline(weight_decay_term, color="0.3", ls=":", label="weight decay * |theta_T|")
    ax_acc.set_xlabel("step")
    ax_acc.set_ylabel("test accuracy (%)")
    late = [v for line in ax_acc.get_lines() for x, v in zip(line.get_xdata(), line.get_ydata())
            if x >= 0.3 * max(line.get_xdata())]
    ax_acc.set_ylim(min(late) - 1, max(late) + 0.5)  # the early climb hides the late differences
    ax_acc.legend(fontsize=6, ncol=2)
    ax_toward.axhline(50, color="0.6", ls=":")
    ax_toward.set_xlabel("step")
    ax_toward.set_ylabel("updates toward the student (%)")
    ax_toward.legend(fontsize=7)
    ax_grad.set_xlabel("step")
    ax_grad.set_ylabel("|meta-gradient of the teacher|")
    ax_grad.legend(fontsize=7)


# -- robustness to ALPHA and TEMPERATURE (Figures 4 and 5) --------------------------------------------
def kd_vs_meta(data, teacher, *, seed, hidden, recipe, alpha, temperature, teacher_lr, quiz_fraction, quiz_batch):
    """KD (90 %) and MetaDistil for one seed and one (alpha, temperature): final test accuracies."""
    split = split_quiz(data, quiz_fraction, seed, quiz_batch_size=quiz_batch)
    common = dict(seed=seed, hidden=hidden, recipe=recipe, alpha=alpha, temperature=temperature)
    _, kd = kd_run(split.train, teacher, **common)
    _, _, meta = meta_run(data, teacher, teacher_lr=teacher_lr, quiz_fraction=quiz_fraction, quiz_batch=quiz_batch,
                          **common)
    return {"kd": kd.last["test_acc"], "meta": meta.last["test_acc"]}


# -- static vs dynamic teaching (Table 3) ---------------------------------------------------------------
def quiz_finetuned_teacher(teacher, split, *, steps, lr, quiz_batch, seed, momentum=0.9, weight_decay=5e-4):
    """A copy of `teacher` trained with its own cross-entropy on the quiz set, for `steps` SGD steps: the
    control that sees the same extra images as MetaDistil's teacher, without learning to teach."""
    tuned = copy.deepcopy(teacher).train()
    opt = torch.optim.SGD(tuned.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    stream = quiz_batches(split.x_quiz, split.y_quiz, quiz_batch,
                          torch.Generator().manual_seed(seed + md.QUIZ_SEED_OFFSET))
    for _ in range(steps):
        x_q, y_q = next(stream)
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(tuned(x_q), y_q).backward()
        opt.step()
    return tuned.eval()


def static_vs_dynamic(data, teacher, meta_teacher, *, seed, hidden, recipe, alpha, temperature, teacher_lr,
                      quiz_fraction, quiz_batch, finetune_lr=None):
    """Static KD (90 %) students from the original teacher, from MetaDistil's final teacher, and from a
    teacher fine-tuned on the quiz set with the same number of steps; and each teacher's test accuracy.
    (The dynamic MetaDistil student and its teacher come from `compare_methods`.)"""
    split = split_quiz(data, quiz_fraction, seed, quiz_batch_size=quiz_batch)
    common = dict(seed=seed, hidden=hidden, recipe=recipe, alpha=alpha, temperature=temperature)
    steps = recipe["epochs"] * math.ceil(split.train.num_train / recipe["batch_size"])
    tuned = quiz_finetuned_teacher(teacher, split, steps=steps, lr=finetune_lr or teacher_lr, quiz_batch=quiz_batch,
                                   seed=seed)
    _, static_meta = kd_run(split.train, meta_teacher, **common)
    _, static_tuned = kd_run(split.train, tuned, **common)
    return {"static_meta_teacher": static_meta.last["test_acc"], "static_quiz_tuned": static_tuned.last["test_acc"],
            "quiz_tuned_teacher_acc": accuracy(tuned, data.x_test, data.y_test),
            "meta_teacher_moved": relative_change(meta_teacher, teacher),
            "quiz_tuned_teacher_moved": relative_change(tuned, teacher)}


def relative_change(model, reference):
    """||theta - theta_ref|| / ||theta_ref|| over all parameters: how far a teacher moved."""
    diff = sum(float(((a - b).detach() ** 2).sum()) for a, b in zip(model.parameters(), reference.parameters()))
    norm = sum(float((b.detach() ** 2).sum()) for b in reference.parameters())
    return math.sqrt(diff / norm)


# -- cost per step -----------------------------------------------------------------------------------
def step_cost(student, teacher, batch, quiz_batch, *, lr, teacher_lr, alpha, temperature, repeats=30):
    """Median wall time (ms, `kdlab.profiling.step_cost`) and memory of a KD step and a MetaDistil step (with
    and without pilot) on copies of the same student, teacher and batch. Memory: `transient` = the most
    bytes the step holds at once (kdlab.profiling), `persistent` = parameters, gradients and optimiser
    state, `peak` = their sum (what max_memory_allocated would show), `saved` = bytes autograd saves."""
    rows = {}
    for name in ("kd", "meta", "meta_no_pilot"):
        s, t = copy.deepcopy(student), copy.deepcopy(teacher)
        s_opt = torch.optim.SGD(s.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
        t_opt = torch.optim.SGD(t.parameters(), lr=teacher_lr, momentum=0.9, weight_decay=5e-4)
        t.eval()
        if name == "kd":
            def step():
                return md.kd_step(s, t, batch, student_opt=s_opt, alpha=alpha, temperature=temperature)
        else:
            def step(pilot=(name == "meta")):
                return md.metadistil_step(s, t, batch, quiz_batch, student_opt=s_opt, teacher_opt=t_opt,
                                          lookahead_lr=lr, alpha=alpha, temperature=temperature, pilot_update=pilot)
        # warm-up (3 steps): optimiser state and grads exist from here on, as in training
        cost = profiling.step_cost(step, repeats=repeats, warmup=3, device=batch[0].device)
        teacher_state = profiling.state_bytes(t) if name == "kd" else profiling.state_bytes(t, t_opt)
        persistent = profiling.state_bytes(s, s_opt) + teacher_state
        rows[name] = {"ms": 1000 * cost.seconds, "transient": cost.peak_bytes, "persistent": persistent,
                      "peak": persistent + cost.peak_bytes, "saved": profiling.saved_tensor_bytes(step)}
    return rows


# -- the teaching panel --------------------------------------------------------------------------------
def teaching_panel(data, teacher, *, hidden, recipe, seed, quiz_fraction, quiz_batch, alpha=0.9, temperature=4.0,
                   teacher_lr=1e-4):
    """ALPHA, TEMPERATURE and TEACHER_LR (log) sliders: a short MetaDistil run against KD (90 %) from the
    same initial weights and batch order; curves and a readout."""
    split = split_quiz(data, quiz_fraction, seed, quiz_batch_size=quiz_batch)
    teacher_acc = accuracy(teacher, data.x_test, data.y_test)

    def compute(ALPHA, TEMPERATURE, TEACHER_LR):
        config.validate(ALPHA=ALPHA, TEMPERATURE=TEMPERATURE, TEACHER_LR=TEACHER_LR)
        start = time.perf_counter()
        common = dict(seed=seed, hidden=hidden, recipe=recipe, alpha=ALPHA, temperature=TEMPERATURE)
        _, kd = kd_run(split.train, teacher, **common)
        _, _, meta = meta_run(data, teacher, teacher_lr=TEACHER_LR, quiz_fraction=quiz_fraction,
                              quiz_batch=quiz_batch, **common)
        first, second = md.toward_share(meta)
        evaluated = [r["epoch"] for r in meta.records if "test_acc" in r]
        return {"alpha": ALPHA, "temperature": TEMPERATURE, "teacher_lr": TEACHER_LR,
                "epochs": evaluated, "meta_acc": meta.series("test_acc"),
                "kd_epochs": [r["epoch"] for r in kd.records if "test_acc" in r],
                "teacher_curve": meta.series("teacher_test_acc"), "kd_acc": kd.series("test_acc"),
                "kd_gap": meta.step_series("kd_before"),
                "final_meta": meta.last["test_acc"], "final_kd": kd.last["test_acc"],
                "teacher_start": teacher_acc, "teacher_end": meta.last["teacher_test_acc"],
                "toward_first": first, "toward_second": second, "steps": len(meta.steps),
                "seconds": time.perf_counter() - start}

    def draw(d, fig):
        ax_acc, ax_gap = fig.subplots(1, 2)
        ax_acc.plot(d["kd_epochs"], d["kd_acc"], color="0.5", label="KD (90 %) student")
        ax_acc.plot(d["epochs"], d["meta_acc"], color="C1", label="MetaDistil student")
        ax_acc.plot(d["epochs"], d["teacher_curve"], color="C1", ls="--", label="MetaDistil teacher")
        ax_acc.axhline(d["teacher_start"], color="C0", ls=":", lw=1, label="teacher before")
        ax_acc.set_xlabel("epoch")
        ax_acc.set_ylabel("test accuracy (%)")
        ax_acc.legend(fontsize=7)
        ax_gap.plot(range(1, len(d["kd_gap"]) + 1), d["kd_gap"], color="C2", lw=0.8)
        ax_gap.set_xlabel("step")
        ax_gap.set_ylabel("teacher-student tau^2 KL on the batch")
        fig.tight_layout()

    return Panel(compute, draw,
                 {"ALPHA": slider(alpha, 0.0, 1.0, 0.05), "TEMPERATURE": slider(temperature, 0.5, 20.0, 0.5),
                  "TEACHER_LR": log_slider(teacher_lr, 1e-5, 1e-1)},
                 readout=lambda d: (f"MetaDistil student {d['final_meta']:.1f}% vs KD (90 %) {d['final_kd']:.1f}% "
                                    f"after {d['steps']} steps; teacher {d['teacher_start']:.1f}% -> "
                                    f"{d['teacher_end']:.1f}%; updates toward the student: "
                                    f"{100 * d['toward_first']:.0f}% (1st half), {100 * d['toward_second']:.0f}% "
                                    f"(2nd half); {d['seconds']:.1f} s"),
                 figsize=(9, 3.2))
