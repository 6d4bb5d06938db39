"""Learning ALPHA and TEMPERATURE by a meta-gradient: the kit's own construction, anchored in hypergradient descent
(Baydin et al., ICLR 2018), gradient-based hyper-parameter optimisation (Maclaurin et al., ICML 2015; Franceschi
et al., ICML 2017), learning to teach with dynamic loss functions (Wu et al., NeurIPS 2018) and MetaDistil's
look-ahead (notebook 03). The teacher stays frozen; what learns to teach is the KD objective's alpha and T.

    alpha = sigmoid(a),   T = T_lo + (T_hi - T_lo) * sigmoid(b)          (both stay in range, whatever a and b)
    L(theta; a, b) = (1 - alpha) * CE(S(x; theta), y) + alpha * T^2 * KL(p_teacher^T || p_S^T)   (the kit's KD)

Every `meta_every`-th step (global steps 0, M, 2M, ...), on the training batch (x, y) and a quiz batch (x_q, y_q):

    1  virtual step   theta' = theta - lambda * grad_theta L(theta; a, b)        (graph kept: second order)
    2  quiz loss      l_q(a, b) = CE(S(x_q; theta'), y_q)
    3  hypergradient  d l_q / d(a, b) = -lambda * (d^2 L / d(a, b) d theta) . grad_theta' l_q
    4  Adam step on (a, b) with lr `meta_lr`

and on every step the real student's step on L with the current alpha and T: after 1-4 when they ran (MetaDistil's
pilot-update order: the student learns from the hyper-parameters just updated, on the same batch).

Detached: the teacher's logits (no_grad, eval mode), and alpha, T in the real student's step. Nothing in 1-3: a
and b enter only the virtual step's loss, so a first-order step (or alpha, T detached there) makes the
hypergradient exactly 0.

Declared choices: lambda = the student's current lr (as MetaDistil's code); a plain-SGD virtual step (the real one
keeps momentum and weight decay); MetaDistil's quiz set and quiz batches (`kdlab.data.quiz`); a constant Adam lr.
The pitfall, to show rather than hide: short-horizon bias (Wu, Ren, Liao, Grosse, ICLR 2018). A one-step
look-ahead rewards what lowers the quiz loss after ONE step, which can drive alpha towards pure CE or T towards
an end of its range that a long run would not choose: compare with the sweep's best point.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import config, meta
from ..data.quiz import quiz_batches, seeded_generator, split_quiz
from ..losses import distillation_loss
from .base import Method
from .learned import bounded, check_inside, unbounded
from .metadistil import QUIZ_AUGMENT_SEED_OFFSET, QUIZ_SEED_OFFSET


class AlphaTemperature(nn.Module):
    """The raw parameters a, b; calling it gives (alpha, T), differentiable in them."""

    def __init__(self, initial_alpha, initial_temperature, temperature_range):
        super().__init__()
        self.range = tuple(temperature_range)
        a, b = unbounded(initial_alpha, 0.0, 1.0), unbounded(initial_temperature, *self.range)
        self.a, self.b = (nn.Parameter(torch.tensor(v, dtype=torch.float64)) for v in (a, b))  # `.to` the student's

    def forward(self):
        return bounded(self.a, 0.0, 1.0), bounded(self.b, *self.range)


def virtual_step(student, teacher_logits, x, y, alpha, temperature, lr):
    """Step 1: theta' = theta - lr * grad L(theta; alpha, T) on a copy (a dict), differentiable in alpha and T."""
    params = meta.params_of(student)
    losses = distillation_loss(meta.forward(student, params, x), teacher_logits, y, alpha, temperature)
    return meta.lookahead(student, params, losses["loss"], lr, create_graph=True)


def quiz_loss(student, fast, x_q, y_q):
    """Step 2: the cross-entropy of the stepped copy theta' on the quiz batch."""
    return F.cross_entropy(meta.forward(student, fast, x_q), y_q)


def hypergradient(student, teacher_logits, x, y, x_q, y_q, hyper, *, lr):
    """Steps 1-3 at the current (a, b): (l_q detached, [d l_q / da, d l_q / db]); nothing is updated."""
    alpha, temperature = hyper()
    l_q = quiz_loss(student, virtual_step(student, teacher_logits, x, y, alpha, temperature, lr), x_q, y_q)
    raw = [hyper.a, hyper.b]
    grads = torch.autograd.grad(l_q, raw, allow_unused=True)
    return l_q.detach(), [torch.zeros_like(p) if g is None else g for p, g in zip(raw, grads)]


def meta_step_due(global_step, meta_every):
    """Whether the 0-based `global_step` runs steps 1-4: global steps 0, M, 2M, ..."""
    return global_step % meta_every == 0


def meta_update(hyper, optimizer, grads):
    """Step 4: the Adam step of (a, b) down the hypergradient."""
    for p, g in zip((hyper.a, hyper.b), grads):
        p.grad = g
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


class MetaAlphaTemperature(Method):
    """KD from a frozen `teacher` into `student` with alpha and T learned by the hypergradient above.

    `prepare` holds out the quiz set (seeded by the run's seed). Epochs add `alpha` and `temperature` (the means of
    the values the student was taught with that epoch); `history.steps` gets one record per meta step (step, epoch,
    alpha and temperature after it, quiz loss, grad_a, grad_b); `alpha_temperature()` gives the values now."""

    name = "meta_alpha_temperature"
    progress_desc = "meta alpha/T epochs"
    checkpointed = ("meta_optimizer",)
    card = {"paper": "the kit's own: hypergradient descent (Baydin et al. 2018) on KD's alpha and T through "
                     "MetaDistil's one-step look-ahead",
            "equations": "alpha = sigmoid(a), T = lo + (hi - lo) sigmoid(b); theta' = theta - lambda grad L; "
                         "(a, b) <- Adam(d CE(S(q; theta')) / d(a, b)); then the student's step on L",
            "detached": "the teacher's logits; alpha and T in the real student's step; nothing in the look-ahead",
            "order": "second order (the hypergradient is a mixed second derivative)", "loop": "epochs",
            "deviations": "not a paper: lambda = the student's lr; plain SGD look-ahead; constant Adam lr"}

    def __init__(self, student, teacher, *, initial_alpha=0.9, initial_temperature=4.0, temperature_range=(1.0, 20.0),
                 meta_lr=0.02, meta_every=1, quiz_fraction=0.1, quiz_batch_size=None):
        config.validate(initial_alpha=initial_alpha, TEMPERATURE_RANGE=temperature_range, META_LR=meta_lr,
                        META_EVERY=meta_every, QUIZ_FRACTION=quiz_fraction, quiz_batch_size=quiz_batch_size)
        check_inside("initial_temperature", initial_temperature, *temperature_range, "TEMPERATURE_RANGE")
        first = next(student.parameters())
        self.model, self.teacher = student, teacher.eval()
        self.hyper = AlphaTemperature(initial_alpha, initial_temperature, temperature_range).to(first.device,
                                                                                                first.dtype)
        self.meta_optimizer = torch.optim.Adam(self.hyper.parameters(), lr=meta_lr)
        self.meta_every, self.quiz_fraction, self.quiz_batch_size = meta_every, quiz_fraction, quiz_batch_size
        self.split = self.quiz_stream = self.quiz_rng = None

    def prepare(self, data, run):
        size = run.batch_size if self.quiz_batch_size is None else self.quiz_batch_size
        self.split = split_quiz(data, self.quiz_fraction, run.seed, quiz_batch_size=size)
        self.quiz_stream = quiz_batches(self.split.x_quiz, self.split.y_quiz, size,
                                        seeded_generator(run.seed + QUIZ_SEED_OFFSET))
        self.quiz_rng = seeded_generator(run.seed + QUIZ_AUGMENT_SEED_OFFSET)  # not the batch order's generator
        return self.split.train

    def alpha_temperature(self):
        """(alpha, T) now, as floats."""
        return tuple(float(v.detach()) for v in self.hyper())

    def step(self, batch, run):
        with torch.no_grad():
            teacher_logits = self.teacher(batch.x)
        if meta_step_due(run.global_step, self.meta_every):
            x_q, y_q = next(self.quiz_stream)
            quiz, grads = hypergradient(self.model, teacher_logits, batch.x, batch.y, run.augmented(x_q, self.quiz_rng),
                                        y_q, self.hyper, lr=run.lr)
            meta_update(self.hyper, self.meta_optimizer, grads)
            if run.history is not None:
                alpha, temperature = self.alpha_temperature()
                run.history.steps.append({"step": run.global_step + 1, "epoch": run.epoch + 1, "alpha": alpha,
                                          "temperature": temperature, "quiz": float(quiz),
                                          "grad_a": float(grads[0]), "grad_b": float(grads[1])})
        alpha, temperature = (v.detach() for v in self.hyper())
        losses = distillation_loss(self.model(batch.x), teacher_logits, batch.y, alpha, temperature)
        return {**self.descend(losses, self.optimizer, run), "alpha": alpha, "temperature": temperature}

    def modules(self):
        return [self.model, self.hyper]
