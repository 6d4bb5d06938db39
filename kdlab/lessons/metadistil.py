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
from matplotlib.ticker import MaxNLocator
from torch.func import functional_call

from .. import config, profiling, stats
from ..data.quiz import quiz_batches, split_quiz
from ..gradcheck import finite_differences, relative_error
from ..methods import metadistil as md
from ..train import accuracy, distill_from, fit
from ..widgets import Panel, log_slider, slider
from .kd import new_student


# -- one seed, several methods ----------------------------------------------------------------------
def kd_run(data, teacher, *, seed, hidden, recipe, alpha, temperature, architecture=None, callbacks=()):
    """A KD student on `data` (all of its training set); returns (student, history). `callbacks` are `fit`'s,
    called after every epoch with (history, student)."""
    student = new_student(data, hidden, seed, architecture)
    history = fit(student, data, distill_from(teacher, alpha, temperature), seed=seed, progress=False,
                  callbacks=callbacks, **recipe)
    return student, history


def meta_run(data, teacher, *, seed, hidden, recipe, alpha, temperature, teacher_lr, quiz_fraction, quiz_batch,
             pilot_update=True, freeze_epochs=0, monitor=None, log_every=0, architecture=None, callbacks=()):
    """MetaDistil from a copy of `teacher` (the original is left as it is); returns (student, teacher, history).
    `callbacks` are called after every epoch with (history, method): the method holds the moving teacher."""
    method = md.MetaDistil(new_student(data, hidden, seed, architecture), copy.deepcopy(teacher),
                           teacher_lr=teacher_lr, alpha=alpha, temperature=temperature, quiz_fraction=quiz_fraction,
                           quiz_batch_size=quiz_batch, pilot_update=pilot_update, freeze_epochs=freeze_epochs,
                           monitor=monitor, log_every=log_every)
    history = fit(method, data, seed=seed, progress=False,
                  callbacks=[lambda h, _, cb=cb: cb(h, method) for cb in callbacks], **recipe)
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


def finite_difference_check(seed=0, lr=0.5, alpha=0.9, temperature=2.0, eps=1e-6, steps=1, gradient=None):
    """The teacher's meta-gradient against central finite differences (`kdlab.gradcheck`) of the quiz loss
    after `steps` plain-torch student steps (Eq. 2, one batch of 6 each), float64, tiny tanh MLPs (teacher
    4-5-3, student 4-3-3): returns the relative error ||analytic - numeric|| / ||numeric||.

    `gradient(student, teacher, batches, x_q, y_q, lr, alpha, temperature)`, returning one tensor per teacher
    parameter, is the function under test; the default is `md.teacher_meta_gradient` (one step only)."""
    torch.manual_seed(seed)
    student = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Tanh(), torch.nn.Linear(3, 3)).double()
    teacher = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh(), torch.nn.Linear(5, 3)).double()
    g = torch.Generator().manual_seed(seed + 1)
    x, x_q = torch.randn(6, 4, generator=g, dtype=torch.float64), torch.randn(5, 4, generator=g, dtype=torch.float64)
    y, y_q = torch.arange(6) % 3, torch.arange(5) % 3
    batches = [(x, y)] + [(torch.randn(6, 4, generator=g, dtype=torch.float64), (torch.arange(6) + k) % 3)
                          for k in range(1, steps)]
    if gradient is None:
        if steps != 1:
            raise ValueError("md.teacher_meta_gradient takes one step: pass `gradient` for steps > 1")
        result = md.teacher_meta_gradient(student, teacher, x, y, x_q, y_q, lr=lr, alpha=alpha,
                                          temperature=temperature)
        analytic = [result.grads[name] for name, _ in teacher.named_parameters()]
    else:
        analytic = list(gradient(student, teacher, batches, x_q, y_q, lr, alpha, temperature))

    @torch.enable_grad()
    def quiz_loss_after_steps():  # Eq. 2 by hand, `steps` times, then L_T; reads the teacher's weights in place
        params = dict(student.named_parameters())
        for xb, yb in batches:
            inner = md.student_loss(functional_call(student, params, (xb,)), teacher(xb), yb, alpha,
                                    temperature)["loss"]
            grads = torch.autograd.grad(inner, list(params.values()))
            params = {name: p - lr * gr for (name, p), gr in zip(params.items(), grads)}
        return float(md.quiz_loss(functional_call(student, params, (x_q,)), y_q).detach())

    numeric = finite_differences(quiz_loss_after_steps, list(teacher.parameters()), eps=eps)
    return relative_error(analytic, numeric)


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
def share_over_seeds(shares):
    """Mean and 95 % CI, in %, of per-seed shares of teacher updates toward the student (`md.toward_share`),
    over the seeds whose teacher took any update; None where none did (frozen for the whole run: no share)."""
    counted = [100 * v for v in shares if not math.isnan(v)]
    return stats.mean_ci(counted) if counted else None


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


LR_STYLES = [dict(ls="-", marker="o"), dict(ls="--", marker="s"), dict(ls=":", marker="^"), dict(ls="-.", marker="D")]


def moving_average(values, window):
    """The mean of each run of `window` consecutive values (`len(values) - window + 1` of them)."""
    return np.convolve(np.asarray(values, dtype=float), np.ones(window) / window, mode="valid")


def staggered(points, index, markers=10):
    """`markevery` for line `index`: about `markers` markers, shifted per line so overlapping lines stay apart."""
    every = max(1, points // markers)
    return (index * every // 3 % every, every)


def plot_dynamics(runs, teacher_lrs, axes, weight_decay_term=None, teacher_start=None):
    """Section 5.1.1's views, one teacher lr per colour and line style, over training steps.
    (a) The MetaDistil student's test accuracy minus the KD (90 %) student's at the same step (paired: same
    initial weights and batch order), at every epoch end where both were evaluated.
    (b) The meta-teacher's test accuracy (`teacher_start`: where it started).
    (c) The running share of teacher updates that moved the teacher toward the student (50 %: a coin flip).
    (d) The norm of the teacher's meta-gradient (a moving geometric mean), and the size of the weight-decay
    term `weight_decay_term` that the teacher's optimiser adds to it.
    Returns the legend handles and labels (the caller places one legend for all four axes)."""
    ax_diff, ax_teacher, ax_toward, ax_grad = axes
    per_epoch = runs["steps_per_epoch"]
    kd_acc = {r["epoch"]: r["test_acc"] for r in runs["kd"].records if "test_acc" in r}
    ax_diff.axhline(0, color="C7", lw=3, alpha=0.5, label="KD (90 %) student (difference 0)")
    if teacher_start is not None:
        ax_teacher.axhline(teacher_start, color="C7", ls=":", lw=1.5, label="teacher before MetaDistil")
    ax_toward.axhline(50, color="C7", ls="--", lw=1, label="coin flip (50 %)")
    if weight_decay_term is not None:
        ax_grad.axhline(weight_decay_term, color="C7", ls="-.", lw=1.5,
                        label="weight decay's pull on the teacher (weight decay x |weights|)")
    zero_gradient = []  # teacher lrs whose meta-gradient was exactly 0 at every step (nothing for a log axis)
    for i, lr in enumerate(teacher_lrs):
        history, style = runs[lr], dict(color=f"C{i}", **LR_STYLES[i % len(LR_STYLES)])
        logged = [r for r in history.steps if "teacher_acc" in r]
        paired = [(r["step"], r["student_acc"] - kd_acc[r["step"] // per_epoch]) for r in logged
                  if r["step"] % per_epoch == 0 and r["step"] // per_epoch in kd_acc]
        if paired:
            ax_diff.plot(*zip(*paired), ms=4, markevery=staggered(len(paired), i), **style)
        ax_teacher.plot([r["step"] for r in logged], [r["teacher_acc"] for r in logged], ms=4,
                        markevery=staggered(len(logged), i), label=f"MetaDistil, teacher lr {lr:g}", **style)
        toward = [float(r["toward"]) for r in history.steps if r["toward"] is not None]
        window = max(1, len(toward) // 15)
        ax_toward.plot(np.arange(window, len(toward) + 1), 100 * moving_average(toward, window), ms=4,
                       markevery=staggered(len(toward) - window + 1, i), **style)
        norms = [r["teacher_grad_norm"] for r in history.steps if r.get("teacher_grad_norm")]
        if not norms:
            zero_gradient.append(lr)
            continue
        window = max(1, len(norms) // 30)
        ax_grad.semilogy(np.arange(window, len(norms) + 1), np.exp(moving_average(np.log(norms), window)), lw=1,
                         ms=4, markevery=staggered(len(norms) - window + 1, i), **style)
    if zero_gradient:
        ax_grad.set_yscale("log")
        ax_grad.update_datalim([(1, 1.0), (max(len(runs[lr].steps) for lr in zero_gradient), 1.0)], updatey=False)
        ax_grad.autoscale_view()
        ax_grad.text(0.5, 0.5, "meta-gradient exactly 0 at every step\n(the quiz loss does not depend on the teacher)"
                     f"\nteacher lr {', '.join(f'{lr:g}' for lr in zero_gradient)}", transform=ax_grad.transAxes,
                     ha="center", va="center", fontsize=9)
    ax_diff.set(title="(a) Students: MetaDistil minus KD (90 %)", xlabel="training step",
                ylabel="test accuracy difference (points)")
    ax_teacher.set(title="(b) Meta-teachers: test accuracy", xlabel="training step", ylabel="test accuracy (%)")
    ax_toward.set(title="(c) Teacher updates toward the student", xlabel="training step",
                  ylabel="share of recent updates (%)")
    ax_grad.set(title="(d) Size of the teacher's meta-gradient", xlabel="training step",
                ylabel="|meta-gradient| (moving average)")
    handles, labels = [], []
    for ax in (ax_teacher, ax_diff, ax_toward, ax_grad):
        for handle, label in zip(*ax.get_legend_handles_labels()):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    return handles, labels


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
def soft_targets(model, x, temperature):
    """p^tau = softmax(logits / tau) on `x` (Eq. 1's soft targets), float64, without a graph."""
    with torch.no_grad():
        return torch.softmax(model(x).double() / temperature, dim=1)


def flat_parameters(model):
    """All parameters of `model` as one detached float64 vector."""
    return torch.cat([p.detach().double().flatten() for p in model.parameters()])


class TeacherWatch:
    """A `meta_run` callback: after every epoch, how far the teacher has moved from its starting weights theta_0
    and how much its soft targets on `x` have changed.

    The teacher's SGD with momentum and weight decay is linear in the gradients it is given, so after any number
    of steps theta_T = c * theta_0 + m exactly: c is what weight decay alone makes of theta_0 (a scalar
    recursion over the same learning rates) and m is what the meta-gradients of Eq. 3 added. Per epoch:
    `decay_moved` = |1 - c|, `meta_moved` = |m| / |theta_0|, and `soft_target_change`, the mean
    total-variation distance 1/2 sum_k |p_T^tau - p_T0^tau| over `x` (a share of probability mass, 0 to 1)."""

    def __init__(self, teacher, x, temperature):
        self.start = flat_parameters(teacher)
        self.start_targets = soft_targets(teacher, x, temperature)
        self.x, self.temperature = x, temperature
        self.scale, self.buffer, self.steps_seen = 1.0, 0.0, 0  # weight decay alone: theta = scale * theta_0
        self.epochs, self.decay_moved, self.meta_moved, self.soft_target_change = [], [], [], []

    def __call__(self, history, method):
        record, steps = history.records[-1], len(history.steps) - self.steps_seen
        self.steps_seen = len(history.steps)
        if record["teacher_lr"] > 0:  # frozen epochs take no teacher step at all
            for _ in range(steps):  # torch's SGD with a zero gradient: buf = mu buf + wd theta; theta -= lr buf
                self.buffer = method.teacher_momentum * self.buffer + method.teacher_wd * self.scale
                self.scale -= record["teacher_lr"] * self.buffer
        meta_part = flat_parameters(method.teacher) - self.scale * self.start
        self.epochs.append(record["epoch"])
        self.decay_moved.append(abs(1.0 - self.scale))
        self.meta_moved.append(float(meta_part.norm() / self.start.norm()))
        change = soft_targets(method.teacher, self.x, self.temperature) - self.start_targets
        self.soft_target_change.append(float(0.5 * change.abs().sum(dim=1).mean()))
        return False


class StudentSnapshots:
    """A `fit` callback that keeps the student's parameters after every epoch (a small student: a few KB)."""

    def __init__(self):
        self.parameters = []

    def __call__(self, history, model):
        self.parameters.append(flat_parameters(model))
        return False


def relative_distance(a, b):
    """|a - b| / |b| of two parameter vectors."""
    return float((a - b).norm() / b.norm())


def teaching_panel(data, teacher, *, hidden, recipe, seed, quiz_fraction, quiz_batch, alpha=0.9, temperature=4.0,
                   teacher_lr=1e-4):
    """ALPHA, TEMPERATURE and TEACHER_LR (log) sliders: a short MetaDistil run against KD (90 %) from the same
    initial weights and batch order. Four views, per epoch: the students' test accuracy; how far the teacher
    moved, split into its meta-gradients' part and weight decay's part (`TeacherWatch`); how much its soft
    targets on the training digits changed; how far the MetaDistil student is from the KD student."""
    split = split_quiz(data, quiz_fraction, seed, quiz_batch_size=quiz_batch)
    teacher_acc = accuracy(teacher, data.x_test, data.y_test)

    def compute(ALPHA, TEMPERATURE, TEACHER_LR):
        config.validate(ALPHA=ALPHA, TEMPERATURE=TEMPERATURE, TEACHER_LR=TEACHER_LR)
        start = time.perf_counter()
        common = dict(seed=seed, hidden=hidden, recipe=recipe, alpha=ALPHA, temperature=TEMPERATURE)
        kd_snapshots, meta_snapshots = StudentSnapshots(), StudentSnapshots()
        watch = TeacherWatch(teacher, split.train.x_train, TEMPERATURE)
        kd_student, kd = kd_run(split.train, teacher, callbacks=[kd_snapshots], **common)
        snapshot_meta_student = lambda history, method: meta_snapshots(history, method.model)  # noqa: E731
        meta_student, _, meta = meta_run(data, teacher, teacher_lr=TEACHER_LR, quiz_fraction=quiz_fraction,
                                         quiz_batch=quiz_batch, callbacks=[watch, snapshot_meta_student], **common)
        first, second = md.toward_share(meta)
        with torch.no_grad():
            differ = (kd_student.eval()(data.x_test).argmax(1) != meta_student.eval()(data.x_test).argmax(1))
        return {"alpha": ALPHA, "temperature": TEMPERATURE, "teacher_lr": TEACHER_LR,
                "epochs": [r["epoch"] for r in meta.records if "test_acc" in r], "meta_acc": meta.series("test_acc"),
                "kd_epochs": [r["epoch"] for r in kd.records if "test_acc" in r], "kd_acc": kd.series("test_acc"),
                "watch_epochs": watch.epochs, "meta_moved": watch.meta_moved, "decay_moved": watch.decay_moved,
                "soft_target_change": watch.soft_target_change,
                "student_distance": [relative_distance(m, k) for m, k in zip(meta_snapshots.parameters,
                                                                            kd_snapshots.parameters)],
                "final_meta": meta.last["test_acc"], "final_kd": kd.last["test_acc"],
                "test_digits_differ": 100 * float(differ.double().mean()),
                "teacher_start": teacher_acc, "teacher_end": meta.last["teacher_test_acc"],
                "toward_first": first, "toward_second": second, "steps": len(meta.steps),
                "seconds": time.perf_counter() - start}

    return Panel(compute, draw_teaching_panel,
                 {"ALPHA": slider(alpha, 0.0, 1.0, 0.05), "TEMPERATURE": slider(temperature, 0.5, 20.0, 0.5),
                  "TEACHER_LR": log_slider(teacher_lr, 1e-5, 1e-1)},
                 readout=teaching_readout, figsize=(10, 6.4))


def teaching_readout(d):
    return (f"MetaDistil student {d['final_meta']:.1f}% vs KD (90 %) {d['final_kd']:.1f}%, "
            f"{d['test_digits_differ']:.1f}% of test digits classified differently; teacher moved "
            f"{d['meta_moved'][-1]:.1e} (meta-gradients) and {d['decay_moved'][-1]:.1e} (weight decay) of its "
            f"weights' size, soft targets changed by {d['soft_target_change'][-1]:.1e}, test accuracy "
            f"{d['teacher_start']:.1f}% -> {d['teacher_end']:.1f}%; updates toward the student "
            f"{100 * d['toward_first']:.0f}% / {100 * d['toward_second']:.0f}% (1st / 2nd half); "
            f"{d['steps']} steps, {d['seconds']:.1f} s")


FLOAT32_STEP = 2.0 ** -24  # relative rounding of one float32 weight update (half the spacing of floats near 1)


def log_curve(ax, x, y, **style):
    """Plot the positive values of y on a log axis; say so in the axes when every value is exactly zero (one
    line of text per such curve, stacked, and the x-range of the curve kept)."""
    points = [(a, b) for a, b in zip(x, y) if b > 0]
    if points:
        ax.semilogy(*zip(*points), **style)
    else:
        ax.semilogy([], [], **style)
        if len(x):
            ax.update_datalim([(min(x), 1.0), (max(x), 1.0)], updatey=False)
            ax.autoscale_view()
        ax.text(0.5, 0.5 - 0.1 * len(ax.texts), f"{style.get('label', 'value')}: exactly 0", transform=ax.transAxes,
                ha="center", fontsize=9)


def fixed_log_range(ax, low, high, *series):
    """The same log y-range for every slider setting (so a factor 10 moves a curve by one decade on
    screen), widened only where the data leave it."""
    values = [v for s in series for v in s if v > 0]
    ax.set_ylim(min([low] + [v / 2 for v in values]), max([high] + [2 * v for v in values]))


def draw_teaching_panel(d, fig):
    ax_acc, ax_moved, ax_targets, ax_student = fig.subplots(2, 2).ravel()
    ax_acc.plot(d["kd_epochs"], d["kd_acc"], color="C0", marker="o", ms=4, label="KD (90 %)")
    ax_acc.plot(d["epochs"], d["meta_acc"], color="C1", ls="--", marker="x", ms=5, label="MetaDistil")
    ax_acc.set(title="Students: test accuracy", xlabel="epoch", ylabel="test accuracy (%)")
    ax_acc.legend(fontsize=8, loc="lower right")
    epochs = d["watch_epochs"]
    log_curve(ax_moved, epochs, d["meta_moved"], color="C1", marker=".", label="by the meta-gradients (Eq. 3)")
    log_curve(ax_moved, epochs, d["decay_moved"], color="C0", ls="--", label="by weight decay alone")
    steps_per_epoch = d["steps"] / len(epochs)
    ax_moved.semilogy(epochs, [FLOAT32_STEP * math.sqrt(e * steps_per_epoch) for e in epochs], color="C7", ls=":",
                      label="float32 rounding (about)")
    fixed_log_range(ax_moved, 1e-8, 10.0, d["meta_moved"], d["decay_moved"])  # the top decades hold the legend
    ax_moved.set(title="Teacher: how far its weights moved", xlabel="epoch",
                 ylabel="|change| / |starting weights|")
    ax_moved.legend(fontsize=8, loc="upper left")
    log_curve(ax_targets, epochs, d["soft_target_change"], color="C2", marker=".", label="soft targets")
    fixed_log_range(ax_targets, 1e-8, 1.0, d["soft_target_change"])
    ax_targets.set(title=f"Teacher: change of its soft targets (tau {d['temperature']:g})", xlabel="epoch",
                   ylabel="mean total variation (0 to 1)")
    log_curve(ax_student, epochs, d["student_distance"], color="C4", marker=".", label="MetaDistil student")
    fixed_log_range(ax_student, 1e-8, 1.0, d["student_distance"])
    ax_student.set(title="MetaDistil student vs KD student", xlabel="epoch",
                   ylabel="|weight difference| / |KD weights|")
    fig.suptitle(f"ALPHA {d['alpha']:g}, TEMPERATURE {d['temperature']:g}, TEACHER_LR {d['teacher_lr']:.1e}: "
                 f"{d['steps']} steps", fontsize=10)
    for ax in (ax_acc, ax_moved, ax_targets, ax_student):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()


# -- what TEACHER_LR moves ---------------------------------------------------------------------------------
def teacher_lr_table(effects):
    """One Markdown row per teacher lr from the panel's data (`{lr: teaching_panel data}`), final epoch."""
    lines = ["| teacher lr | teacher moved: meta-gradients | teacher moved: weight decay | soft targets changed "
             "| teacher test accuracy (%) | MetaDistil - KD (90 %) student | test digits classified differently |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for lr, d in effects.items():
        lines.append(f"| {lr:g} | {d['meta_moved'][-1]:.1e} | {d['decay_moved'][-1]:.1e} "
                     f"| {d['soft_target_change'][-1]:.1e} | {d['teacher_start']:.1f} -> {d['teacher_end']:.1f} "
                     f"| {d['final_meta'] - d['final_kd']:+.1f} points | {d['test_digits_differ']:.1f} % |")
    return "\n".join(lines)


def ratio(a, b):
    return a / b if b > 0 else math.inf


def describe_teacher_lr(effects, default_lr, visible_points=0.5):
    """What TEACHER_LR moved in `effects` (`{lr: teaching_panel data}`), in sentences built from the numbers.
    A teacher lr of 0 (the teacher stays where it is) takes no part in the ratios between learning rates."""
    lrs = sorted(effects)
    positive = [lr for lr in lrs if lr > 0]
    high, default = effects[lrs[-1]], effects[default_lr]
    text = []
    if len(positive) >= 2:
        low, top = effects[positive[0]], effects[positive[-1]]
        factor = positive[-1] / positive[0]
        moved = ratio(top["meta_moved"][-1], low["meta_moved"][-1])
        targets = ratio(top["soft_target_change"][-1], low["soft_target_change"][-1])
        exponent = math.log(moved) / math.log(factor) if 0 < moved < math.inf else math.nan
        growth = ("about in proportion to" if 0.9 <= exponent <= 1.1 else
                  "less than in proportion to" if exponent < 0.9 else "faster than")
        text.append(f"From teacher lr {positive[0]:g} to {positive[-1]:g} (a factor {factor:g}) the meta-gradients "
                    f"moved the teacher {moved:.3g} times as far and its soft targets changed {targets:.3g} times as "
                    f"much: the teacher's change grows {growth} its learning rate.")
    versus_decay = (f" ({ratio(default['meta_moved'][-1], default['decay_moved'][-1]):.2g} times what weight decay "
                    "alone did)" if default["decay_moved"][-1] > 0 else
                    f" and weight decay by {default['decay_moved'][-1]:.1e}")
    text.append(f"At TEACHER_LR = {default_lr:g} the meta-gradients moved the teacher by "
                f"{default['meta_moved'][-1]:.1e} of its weights' size{versus_decay}, its soft targets changed by "
                f"{default['soft_target_change'][-1]:.1e} of their probability mass, and the two students classify "
                f"{default['test_digits_differ']:.1f} % of the test digits differently.")
    moving = [lr for lr in lrs if abs(effects[lr]["final_meta"] - effects[lr]["final_kd"]) >= visible_points]
    if moving:
        first = effects[moving[0]]
        text.append(f"The student's test accuracy moves by {visible_points:g} points or more from KD's only from "
                    f"teacher lr {moving[0]:g} on ({first['final_meta'] - first['final_kd']:+.1f} points there); "
                    f"at {lrs[-1]:g} the teacher's own test accuracy goes from {high['teacher_start']:.1f} % to "
                    f"{high['teacher_end']:.1f} %.")
    else:
        text.append(f"At none of these teacher lrs does the student's test accuracy move by {visible_points:g} "
                    "points from KD's in this run: at this scale TEACHER_LR changes the teacher, and the student "
                    "only in its weights (the panel's last view).")
    return " ".join(text)
