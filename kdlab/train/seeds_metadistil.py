"""MetaDistil's seeds trained together: students and teachers stacked and stepped as one (`torch.func`).

    students, teachers, histories = fit_seeds_metadistil(new_student, teacher, data, range(8), teacher_lr=1e-4,
                                                         quiz_batch_size=30, epochs=150, lr=0.01)

Seed s gets what `fit(MetaDistil(make_student(s), copy.deepcopy(teacher), ...), data, seed=s, ...)` gives it
(`kdlab.methods.metadistil`; Zhou, Xu, McAuley, ACL 2022, arXiv:2106.04570): its initial weights, quiz split
(`split_quiz(data, quiz_fraction, s)`), batch order (seeded by s), quiz stream (seeded by s + QUIZ_SEED_OFFSET),
optimisers (the teacher's: SGD, momentum 0.9, weight decay 5e-4, following the student's schedule), frozen
epochs and pilot-update order. One iteration of Algorithm 1 (lines 3-7) for all S seeds at once:

    Eq. 1  L_S = (1 - alpha) CE(S(x), y) + alpha tau^2 KL(p_T^tau || p_S^tau), one value per seed
    Eq. 2  theta_S' = theta_S - lambda grad L_S (lambda: the student's current lr): one autograd.grad of the summed
           L_S with create_graph; the seeds share no weight, so each slice is its own seed's gradient
    Eq. 3  theta_T <- theta_T - mu grad_theta_T CE(S(q; theta_S'(theta_T)), y_q): one autograd.grad of the summed
           quiz losses through the look-ahead (second order), one optimiser step over the stacked teachers
    line 7 the students' KD step with the updated teachers (pilot_update=False: old logits, then the teacher step)

SGD (momentum, weight decay) and Adam act element by element: one optimiser over stacked weights is S optimisers.
`kdlab.models.MLP`s run one `baddbmm` per layer, summing as each seed's `addmm` does where the processor's kernels
block them alike: there every seed's student and teacher weights, accuracies, KD values and "toward" decisions
equal its own `fit` bit for bit; on an AMD EPYC the last bit differs, so weights and KD values agree to float32
rounding and a decision whose two KD values tie to rounding may flip (`tests/unit/test_seeds_metadistil.py`); other models run `vmap(functional_call)`, whose batched double backward
sums in another order (last-bit differences). Logged cross-entropies and the teacher gradient norm round
differently (1e-6 relative). Refused, naming the fallback: BatchNorm or dropout, augmentation, `monitor`.
"""
import copy
import time
import warnings

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state
from torch.nn.modules.batchnorm import _BatchNorm

from .. import config
from ..data.base import random_permutation, seeded_generator
from ..data.quiz import quiz_batches, split_quiz
from ..errors import ParameterError, TrainingDivergedError
from ..losses import TEXTBOOK_TOLERANCE, kd_divergence_exact
from ..methods.base import make_optimizer
from ..methods.metadistil import QUIZ_SEED_OFFSET
from ..models import MLP
from .history import History
from .schedules import make_schedulers
from .seeds import check_vectorisable, evaluate

FALLBACK = "for fit_seeds_metadistil; train seed by seed with kdlab.train.fit(MetaDistil(...))"


def stacked(models, role, training):
    """The models' weights stacked on a leading seed axis, and one forward over them: `mlp_forward` for MLPs (their
    weights laid out (S, in, out), so that their gradients come out so, not transposed), else vmapped."""
    for model in models:
        # BatchNorm is refused here though fit_seeds stacks it: the look-ahead's extra forward would update the
        # running statistics a second time per step
        stateful = [type(m).__name__ for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
        allowed = "a model without BatchNorm running statistics or dropout " + FALLBACK
        if stateful:
            raise ParameterError(role, f"{type(model).__name__} ({stateful[0]})", allowed)
        try:
            check_vectorisable(model)
        except ParameterError as error:
            raise ParameterError(role, error.value, allowed) from None
    base = copy.deepcopy(models[0]).to("meta").train(training)
    params, buffers = stack_module_state(models)
    if all(type(m) is MLP for m in models):
        params = {k: v.detach().transpose(1, 2).contiguous().transpose(1, 2).requires_grad_() if v.dim() == 3 else v
                  for k, v in params.items()}
        return params, buffers, lambda p, b, x: mlp_forward(p, x)
    return params, buffers, torch.vmap(lambda p, b, x: functional_call(base, (p, b), (x,)))


def per_seed_ce(logits, labels):
    """(S, B, C) logits -> each seed's mean cross-entropy (S,) (Eq. 3's L_T; the CE of Eq. 1)."""
    s, b, c = logits.shape
    return F.cross_entropy(logits.reshape(s * b, c), labels.reshape(s * b), reduction="none").view(s, b).mean(1)


def per_seed_kd(log_p_s, log_p_t, temperature):
    """tau^2 KL per seed (S,), summed and divided as `F.kl_div(..., "batchmean", log_target=True)` does (its value
    and gradients, of every order, bit for bit)."""
    return temperature ** 2 * ((log_p_t.exp() * (log_p_t - log_p_s)).sum((1, 2)) / log_p_s.shape[1])


def per_seed_losses(student_logits, teacher_logits, labels, alpha, temperature):
    """Eq. 1 per seed on (S, B, C) logits: loss, ce, kd, each (S,), and the two log-probabilities at tau."""
    ce = per_seed_ce(student_logits, labels)
    log_p = [F.log_softmax(z / temperature, dim=-1) for z in (student_logits, teacher_logits)]
    kd = per_seed_kd(*log_p, temperature)
    return (1 - alpha) * ce + alpha * kd, ce, kd, log_p


def mlp_forward(params, x):
    """`kdlab.models.MLP` on stacked weights: one `baddbmm` per Linear, as `addmm` in each seed's forward (vmap's
    batched linear sums the double backward of Eq. 2-3 in another order: last-bit differences)."""
    h, depth = x.flatten(2), sum(name.startswith("layers.") for name in params) // 2
    for name in [f"layers.{j}" for j in range(depth)] + ["classifier"]:
        h = torch.baddbmm(params[f"{name}.bias"].unsqueeze(1), h, params[f"{name}.weight"].transpose(1, 2))
        h = torch.relu(h) if name != "classifier" else h
    return h


def accurate(student_logits, teacher_logits, temperature, log_p=None):
    """Per seed (S,): `textbook_value_is_accurate` for all the seed's rows (its bound, row by row), and the
    log-probabilities at `temperature` (as given, or computed)."""
    log_p_s, log_p_t = log_p or [F.log_softmax(z / temperature, dim=-1) for z in (student_logits, teacher_logits)]
    p_t, log_ratio = log_p_t.exp(), log_p_t - log_p_s
    magnitude = (log_p_t.abs() + log_p_s.abs() + (student_logits / temperature).abs()
                 + (teacher_logits / temperature).abs())
    terms = p_t * log_ratio
    bound = torch.finfo(log_p_s.dtype).eps * (8 * (p_t * magnitude).sum(-1) + log_ratio.shape[-1] * terms.abs().sum(-1))
    return (bound <= TEXTBOOK_TOLERANCE.get(log_p_s.dtype, 1e-2) * terms.sum(-1)).all(-1), log_p_s, log_p_t


@torch.no_grad()
def logged_kd(kd, student_logits, teacher_logits, temperature, log_p):
    """`kd_loss`'s value per seed: the textbook `kd`, or where float32 cancels in a seed's batch, the mean of
    `kd_divergence` (float64 textbook rows, or `kd_divergence_exact` where those cancel too)."""
    s, t = student_logits.detach(), teacher_logits.detach()
    ok = accurate(s, t, temperature, log_p)[0]
    if bool(ok.all()):  # the common case
        return kd.detach()
    ok64, log_p_s, log_p_t = accurate(s.double(), t.double(), temperature)
    rows = temperature ** 2 * (log_p_t.exp() * (log_p_t - log_p_s)).sum(-1)
    if not bool(ok64.all()):
        rows = torch.where(ok64[:, None], rows, kd_divergence_exact(s, t, temperature))
    return torch.where(ok, kd.detach(), (rows.sum(-1) / s.shape[1]).to(kd.dtype))


def fit_seeds_metadistil(make_student, teacher, data, seeds, *, teacher_lr=1e-4, alpha=0.9, temperature=4.0,
                         quiz_fraction=0.1, quiz_batch_size=None, pilot_update=True, freeze_epochs=0,
                         teacher_momentum=0.9, teacher_weight_decay=5e-4, lookahead_lr=None, epochs=10, lr=0.05,
                         batch_size=64, optimizer="sgd", momentum=0.9, weight_decay=5e-4, schedule="cosine",
                         eval_every=1, augment=None, monitor=None, log_every=0):
    """MetaDistil for `make_student(seed)` and a copy of `teacher` (a module, or a function seed -> teacher) for
    every seed at once on `data` (one DataSplits); returns (students, teachers, histories)."""
    seeds = list(seeds)
    config.validate(TEACHER_LR=teacher_lr, ALPHA=alpha, TEMPERATURE=temperature, QUIZ_FRACTION=quiz_fraction,
                    FREEZE_EPOCHS=freeze_epochs, quiz_batch_size=quiz_batch_size, pilot_update=pilot_update,
                    lookahead_lr=lookahead_lr, log_every=log_every, EPOCHS=epochs, LR=lr, BATCH_SIZE=batch_size)
    for name, value, default in (("augment", augment, None), ("monitor", monitor, None), ("log_every", log_every, 0)):
        if value is not default and value != default:
            raise ParameterError(name, value, f"{default} (not implemented) {FALLBACK}")
    if not seeds:
        raise ParameterError("seeds", seeds, "at least one seed")
    quiz_size = batch_size if quiz_batch_size is None else quiz_batch_size
    splits = [split_quiz(data, quiz_fraction, seed, quiz_batch_size=quiz_size) for seed in seeds]
    students = [make_student(seed) for seed in seeds]
    teachers = [(copy.deepcopy(teacher) if isinstance(teacher, torch.nn.Module) else teacher(seed)).eval()
                for seed in seeds]
    params, buffers, student_forward = stacked(students, "make_student", True)
    t_params, t_buffers, teacher_forward = stacked(teachers, "teacher", False)  # eval(), as MetaDistil.train()
    student_opt = make_optimizer(list(params.values()), optimizer, lr, momentum, weight_decay)
    teacher_opt = make_optimizer(list(t_params.values()), "sgd", teacher_lr, teacher_momentum, teacher_weight_decay)
    schedulers = make_schedulers([student_opt, teacher_opt], schedule, epochs)
    datas = [split.train for split in splits]
    x, y = torch.stack([d.x_train for d in datas]), torch.stack([d.y_train for d in datas])   # (S, n, ...)
    x_quiz, y_quiz = torch.stack([s.x_quiz for s in splits]), torch.stack([s.y_quiz for s in splits])
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    at = torch.arange(x_quiz.shape[1], device=x.device)  # quiz batches as `quiz_batches` draws them, by index
    streams = [quiz_batches(at, at, quiz_size, seeded_generator(seed + QUIZ_SEED_OFFSET)) for seed in seeds]
    histories, n, rows = [History() for _ in seeds], x.shape[1], torch.arange(len(seeds), device=x.device)[:, None]

    def teacher_logits_now(xb):
        with torch.no_grad():
            return teacher_forward(t_params, t_buffers, xb)

    def student_step(teacher_logits, xb, yb, position):
        """Line 7: the students' KD step (the teachers' logits detached), as MetaDistil's `student_update`."""
        logits = student_forward(params, buffers, xb)
        loss, ce, kd, log_p = per_seed_losses(logits, teacher_logits.detach(), yb, alpha, temperature)
        bad = (~torch.isfinite(loss.detach())).nonzero().flatten().tolist()
        if bad:
            raise TrainingDivergedError(f"the loss of seed {seeds[bad[0]]} became {float(loss[bad[0]])} at epoch "
                                        f"{position[0] + 1}, step {position[1] + 1}. Try a smaller learning rate (now "
                                        f"{student_opt.param_groups[0]['lr']:g}), TEMPERATURE or ALPHA.")
        student_opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        student_opt.step()
        kd = logged_kd(kd, logits, teacher_logits, temperature, log_p)
        return {"loss": (1 - alpha) * ce.detach() + alpha * kd, "ce": ce.detach(), "kd": kd}

    def metadistil_step(xb, yb, lam, position):
        """Lines 3-7 of Algorithm 1 for every seed (`kdlab.methods.metadistil.metadistil_step`)."""
        index = torch.stack([next(stream)[0] for stream in streams])
        xq, yq = x_quiz[rows, index], y_quiz[rows, index]
        teacher_logits = teacher_forward(t_params, t_buffers, xb)  # NOT detached: Eq. 3 differentiates through it
        student_logits = student_forward(params, buffers, xb)
        loss, _, kd, log_p = per_seed_losses(student_logits, teacher_logits, yb, alpha, temperature)
        grads = torch.autograd.grad(loss.sum(), list(params.values()), create_graph=True)  # Eq. 2, second order
        fast = {name: p.add(g, alpha=-lam) for (name, p), g in zip(params.items(), grads)}
        quiz = per_seed_ce(student_forward(fast, buffers, xq), yq)                           # Eq. 3's L_T
        meta = torch.autograd.grad(quiz.sum(), list(t_params.values()), allow_unused=True)
        meta = [torch.zeros_like(p) if g is None else g for p, g in zip(t_params.values(), meta)]
        logs = None if pilot_update else student_step(teacher_logits, xb, yb, position)  # the old teachers' logits
        for p, g in zip(t_params.values(), meta):                                     # Eq. 3's step
            p.grad = g
        teacher_opt.step()
        teacher_opt.zero_grad(set_to_none=True)
        new_teacher = teacher_logits_now(xb)
        logs = logs or student_step(new_teacher, xb, yb, position)  # pilot update: the updated teachers' logits
        log_p_after = [log_p[0].detach(), F.log_softmax(new_teacher / temperature, dim=-1)]
        norm = torch.sqrt(sum(torch.linalg.vector_norm(g, dim=tuple(range(1, g.dim()))) ** 2 for g in meta))
        return {**logs, "quiz": quiz.detach(), "teacher_grad_norm": norm,
                "kd_before": logged_kd(kd, student_logits, teacher_logits, temperature, log_p),
                "kd_after": logged_kd(per_seed_kd(*log_p_after, temperature), student_logits, new_teacher,
                                      temperature, log_p_after)}

    for epoch in range(epochs):
        start, step_lr, frozen = time.perf_counter(), student_opt.param_groups[0]["lr"], epoch < freeze_epochs
        lam = step_lr if lookahead_lr is None else lookahead_lr * (step_lr / lr)
        orders = torch.stack([random_permutation(n, g, x.device) for g in generators])
        sums, count = [{} for _ in seeds], 0
        for step, first in enumerate(range(0, n, batch_size)):
            idx = orders[:, first:first + batch_size]
            xb, yb = x[rows, idx], y[rows, idx]
            logs = (student_step(teacher_logits_now(xb), xb, yb, (epoch, step)) if frozen  # plain KD steps
                    else metadistil_step(xb, yb, lam, (epoch, step)))
            for i, values in enumerate(torch.stack(list(logs.values())).t().tolist()):  # as fit and step() log
                record = dict(zip(logs, values))
                toward = None if frozen else bool(record["kd_after"] < record["kd_before"])
                histories[i].steps.append({"toward": toward, "step": len(histories[i].steps) + 1,
                                           "epoch": epoch + 1, **record})
                sums[i].update({k: sums[i].get(k, 0.0) + v * idx.shape[1] for k, v in record.items()})
            count += idx.shape[1]
        seconds, scores = time.perf_counter() - start, {}
        if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:
            scores = evaluate(student_forward, params, buffers, datas)  # no mode to switch: no BatchNorm, no dropout
            scores["teacher_test_acc"] = evaluate(teacher_forward, t_params, t_buffers, datas)["test_acc"]
        for i, history in enumerate(histories):
            history.append({"epoch": epoch + 1, "lr": step_lr, "seconds": seconds / len(seeds),
                            **{k: total / count for k, total in sums[i].items()},
                            "teacher_lr": 0.0 if frozen else teacher_opt.param_groups[0]["lr"],
                            **{k: value[i] for k, value in scores.items()}})
            history.global_steps = (epoch + 1) * -(-n // batch_size)
        with warnings.catch_warnings():  # a teacher that did not step this epoch (frozen) is fine, as in fit
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)`")
            for scheduler in schedulers:
                scheduler.step()
    for models, (p, b) in ((students, (params, buffers)), (teachers, (t_params, t_buffers))):
        for i, model in enumerate(models):
            model.load_state_dict({**{k: v[i].detach() for k, v in p.items()}, **{k: v[i] for k, v in b.items()}})
    return students, teachers, histories
