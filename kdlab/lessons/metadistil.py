"""Notebook 03 (MetaDistil): paired experiments, learning dynamics, static vs dynamic teaching and cost per
step. The teaching panel (`metadistil_panel`), the dynamics figure (`metadistil_plots`) and one seed's runs
(`metadistil_runs`) live in modules of their own; their names are importable from here, as the notebook does.

Every function is a pure function of its arguments and a seed: the same settings give the same numbers
in the notebook, in a test and in a sweep. "KD (90 %)" is the fair baseline: plain KD on exactly the
training data MetaDistil's student sees (the quiz set held out), with the same initial weights and batch
order; "KD (100 %)" also trains on the quiz images.
"""
import copy
import functools
import math

import torch
from torch.func import functional_call

from .. import parallel, profiling, stats
from ..data.quiz import quiz_batches, split_quiz
from ..gradcheck import finite_differences, relative_error
from ..methods import metadistil as md
from ..train import accuracy
# The notebook reads everything as `lesson.<name>`: the panel's, the figure's and the seeds-together
# experiments' names are re-exported here.
from .metadistil_panel import TeacherWatch, describe_teacher_lr, teacher_lr_table, teaching_panel  # noqa: F401
from .metadistil_plots import plot_dynamics  # noqa: F401
from .metadistil_seeds import compare_methods_seeds, kd_vs_meta_points, kd_vs_meta_seeds, pilot_ablation_seeds  # noqa: F401
from .metadistil_runs import kd_run, meta_run, weight_gap


# -- one seed, several methods ----------------------------------------------------------------------
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
    gap = weight_gap(pilot_student, no_pilot_student)
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
    gap = weight_gap(with_pilot, without_pilot)
    return {"meta": pilot.last["test_acc"], "meta_no_pilot": no_pilot.last["test_acc"], "pilot_weight_gap": gap}


# -- learning dynamics (section 5.1.1) --------------------------------------------------------------
def share_over_seeds(shares):
    """Mean and 95 % CI, in %, of per-seed shares of teacher updates toward the student (`md.toward_share`),
    over the seeds whose teacher took any update; None where none did (frozen for the whole run: no share)."""
    counted = [100 * v for v in shares if not math.isnan(v)]
    return stats.mean_ci(counted) if counted else None


def dynamics(data, teacher, *, seed, hidden, recipe, alpha, temperature, teacher_lrs, quiz_fraction, quiz_batch,
             log_every=10, workers=1):
    """MetaDistil at each teacher lr with accuracy logged on the test set every `log_every` steps, and the
    KD (90 %) student's accuracy after every epoch; returns {"kd": history, teacher_lr: history, ...}. The runs
    go `workers` at a time (`kdlab.parallel.call_all`), each with the numbers it gives alone."""
    split = split_quiz(data, quiz_fraction, seed, quiz_batch_size=quiz_batch)
    common = dict(seed=seed, hidden=hidden, recipe=recipe, alpha=alpha, temperature=temperature)
    calls = [functools.partial(meta_run, data, teacher, teacher_lr=lr, quiz_fraction=quiz_fraction,
                               quiz_batch=quiz_batch, monitor=(data.x_test, data.y_test), log_every=log_every, **common)
             for lr in teacher_lrs]
    *metas, (_, kd_history) = parallel.call_all(calls + [functools.partial(kd_run, split.train, teacher, **common)],
                                                workers)
    out = {"kd": kd_history, "steps_per_epoch": math.ceil(split.train.num_train / recipe["batch_size"])}
    out.update({lr: history for lr, (_, _, history) in zip(teacher_lrs, metas)})
    return out


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


def static_vs_dynamic_seeds(data, teacher, meta_teachers, *, seeds, workers=1, **knobs):
    """`static_vs_dynamic` for every seed, with that seed's final MetaDistil teacher `meta_teachers[seed]`, the
    seeds `workers` at a time; a dict of lists, as `stats.over_seeds` gives."""
    seeds = list(seeds)
    calls = [functools.partial(static_vs_dynamic, data, teacher, meta_teachers[s], seed=s, **knobs) for s in seeds]
    rows = parallel.call_all(calls, workers)
    return {key: [row[key] for row in rows] for key in rows[0]}


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


