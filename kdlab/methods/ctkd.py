"""CTKD: Curriculum Temperature for Knowledge Distillation (Li, Li, Yang, Zhao, Song, Luo, Li, Yang; AAAI 2023;
arXiv:2211.16231). The temperature is learned, against the student: the student minimises the KD loss, the
temperature module maximises it, and a curriculum makes the temperature's opposition grow.

    tau = lo + (hi - lo) * sigmoid(theta)       global: one theta; instance: theta_i = MLP([z_T,i, z_S,i])
    L   = (1 - alpha) * CE(z_S, y) + alpha * mean_i tau_i^2 KL(softmax(z_T,i / tau_i) || softmax(z_S,i / tau_i))
    one SGD step on (theta_S, theta): theta's gradient passes a gradient-reversal layer (identity forward, times
    -lambda backward), so the step descends L in theta_S and ascends it in theta (min over S, max over tau)
    lambda(e) = lambda_max * (1 - cos(pi * min(e, E) / E)) / 2,  e = 1, 2, ... (epochs counted from 1),
    E = curriculum_epochs: from near 0 up to lambda_max at epoch E, then constant (easy to hard)

Detached: the teacher's logits (no_grad, eval mode), and the instance module's inputs (the student learns through
its logits in L only, not through the temperature predictor). First order.

Declared deviations from the official code (zhengli97/CTKD: `models/temp_global.py`, `helper/loops.py`,
`train_student.py`, `scripts/run_cifar_distill.sh`):
- the code's `t_start + t_end * sigmoid(theta)` (t_start 1, t_end 20) is `temperature_range=(1, 21)` here;
  theta starts at the code's 1 (tau 15.62) unless `initial_temperature` is given.
- the code's reversal layer multiplies the gradient by the value it is passed, and the script passes a cosine
  from 0 to -1 (`--decay_max 0 --decay_min -1 --decay_loops 10`); here lambda goes from 0 to +lambda_max into a
  layer that multiplies by -lambda: the same product. Only the cosine curriculum (the code's default).
- instance-wise: the repository has only its loss (README); the module here is the kit's own choice, a 2-layer MLP
  (2C -> 64 -> 1, ReLU) on the detached logits, its last bias at the starting theta.
- as in the code, the temperature's parameters join the student's optimiser (SGD, momentum, weight decay, lr and
  schedule); the KD value is accurate where the textbook KL cancels (`kdlab.losses`), with the textbook gradient.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import config
from ..errors import ParameterError
from ..losses import kd_divergence_exact, textbook_value_is_accurate, with_value
from .base import Method, make_optimizer
from .frozen_teacher import FrozenLogits
from .learned import bounded, check_inside, reverse_gradient, unbounded

CODE_THETA = 1.0  # `Global_T`: nn.Parameter(torch.ones(1))


def kd_loss_with(student_logits, teacher_logits, temperature):
    """mean_i tau_i^2 KL(softmax(t_i / tau_i) || softmax(s_i / tau_i)); `temperature` of shape (N,) (one per
    sample) or () (one for all); differentiable in the temperature and the student; the teacher used as given."""
    tau = temperature.reshape(-1, 1)
    log_p_s, log_p_t = F.log_softmax(student_logits / tau, 1), F.log_softmax(teacher_logits / tau, 1)
    textbook = ((log_p_t.exp() * (log_p_t - log_p_s)).sum(1) * tau[:, 0] ** 2).mean()
    if textbook_value_is_accurate(log_p_s, log_p_t, student_logits, teacher_logits, tau):
        return textbook
    return with_value(textbook, kd_divergence_exact(student_logits, teacher_logits, tau.detach()).mean())


def ctkd_loss(student_logits, teacher_logits, labels, alpha, temperature):
    """{"loss", "ce", "kd"}: (1 - alpha) CE + alpha KD at the learned `temperature` (see `kd_loss_with`)."""
    ce = F.cross_entropy(student_logits, labels)
    kd = kd_loss_with(student_logits, teacher_logits, temperature)
    return {"loss": (1 - alpha) * ce + alpha * kd, "ce": ce, "kd": kd}


def curriculum_lambda(epoch, curriculum_epochs, lambda_max=1.0):
    """lambda for the loop's 0-based `epoch`: lambda_max (1 - cos(pi min(e, E) / E)) / 2 with e = epoch + 1."""
    e = min(epoch + 1, curriculum_epochs)
    return lambda_max * (1 - math.cos(math.pi * e / curriculum_epochs)) / 2


class GlobalTemperature(nn.Module):
    """One learnable theta: tau = lo + (hi - lo) sigmoid(GRL_lambda(theta)), whatever the batch."""

    def __init__(self, temperature_range, theta=CODE_THETA):
        super().__init__()
        self.range = tuple(temperature_range)
        self.theta = nn.Parameter(torch.tensor(float(theta), dtype=torch.float64))  # `.to` the student's dtype

    def forward(self, teacher_logits, student_logits, lam):
        return bounded(reverse_gradient(self.theta, lam), *self.range)


class InstanceTemperature(nn.Module):
    """One theta per sample from its (detached) teacher and student logits: theta_i = MLP([z_T,i, z_S,i])."""

    def __init__(self, num_classes, temperature_range, theta=CODE_THETA, hidden=64):
        super().__init__()
        self.range = tuple(temperature_range)
        self.net = nn.Sequential(nn.Linear(2 * num_classes, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        nn.init.constant_(self.net[-1].bias, theta)

    def forward(self, teacher_logits, student_logits, lam):
        theta = self.net(torch.cat([teacher_logits, student_logits], 1).detach()).squeeze(1)
        return bounded(reverse_gradient(theta, lam), *self.range)


class CTKD(Method):
    """CTKD from a frozen `teacher` into `student`. Epochs add `temperature` (the mean tau the student was taught
    with that epoch) and `lambda` (the curriculum's value); `temperature_now()` is tau after the last step."""

    name = "ctkd"
    card = {"paper": "Li et al. (AAAI 2023), Curriculum Temperature for Knowledge Distillation (arXiv:2211.16231)",
            "equations": "tau = lo + (hi - lo) sigmoid(theta); min_S max_theta (1-a) CE + a tau^2 "
                         "KL(p_T^tau || p_S^tau) by a gradient-reversal layer; "
                         "lambda(e) = (1 - cos(pi min(e, E) / E)) / 2",
            "detached": "the teacher's logits; the instance module's inputs",
            "order": "first order (one step on student and temperature; the temperature's gradient reversed)",
            "loop": "epochs", "deviations": "range (1, 21) for the code's 1 + 20 sigmoid; lambda >= 0 into a -lambda "
                                            "layer; the instance module is the kit's own"}

    def __init__(self, student, teacher, *, alpha=0.9, temperature_range=(1.0, 21.0), initial_temperature=None,
                 curriculum_epochs=10, lambda_max=1.0, temperature_module="global", num_classes=None):
        config.validate(ALPHA=alpha, TEMPERATURE_RANGE=temperature_range, CURRICULUM_EPOCHS=curriculum_epochs,
                        lambda_max=lambda_max, temperature_module=temperature_module)
        theta = CODE_THETA if initial_temperature is None else unbounded(
            check_inside("initial_temperature", initial_temperature, *temperature_range, "TEMPERATURE_RANGE"),
            *temperature_range)
        if temperature_module == "global":
            net = GlobalTemperature(temperature_range, theta)
        else:
            num_classes = num_classes or getattr(student, "num_classes", None)
            if not isinstance(num_classes, int) or num_classes < 2:
                raise ParameterError("num_classes", num_classes, "an integer >= 2 (the student has no num_classes "
                                                                 "attribute to take it from)")
            net = InstanceTemperature(num_classes, temperature_range, theta)
        first = next(student.parameters())
        self.model, self.teacher, self.temperature_net = student, teacher.eval(), net.to(first.device, first.dtype)
        self.teacher_logits = FrozenLogits(self.teacher)   # the training set's logits once, looked up per batch
        self.alpha, self.curriculum_epochs, self.lambda_max = alpha, curriculum_epochs, lambda_max

    def configure(self, recipe, run):
        if self.optimizer is None:  # one optimiser for both players, as the code's `trainable_list`
            params = [*self.model.parameters(), *self.temperature_net.parameters()]
            self.optimizer = make_optimizer(params, recipe.optimizer, recipe.lr, recipe.momentum, recipe.weight_decay)

    def prepare(self, data, run):
        self.teacher_logits.prepare(data, run)
        return data

    def step(self, batch, run):
        lam = curriculum_lambda(run.epoch, self.curriculum_epochs, self.lambda_max)
        teacher_logits = self.teacher_logits(batch)
        student_logits = self.model(batch.x)
        tau = self.temperature_net(teacher_logits, student_logits, lam)
        losses = self.descend(ctkd_loss(student_logits, teacher_logits, batch.y, self.alpha, tau), self.optimizer, run)
        return {**losses, "temperature": tau.detach().mean()}

    def temperature_now(self):
        """The global tau now (a float); None for the instance-wise module, whose tau depends on the sample."""
        net = self.temperature_net
        return float(bounded(net.theta.detach(), *net.range)) if isinstance(net, GlobalTemperature) else None

    def on_epoch_end(self, record, run):
        record["lambda"] = curriculum_lambda(run.epoch, self.curriculum_epochs, self.lambda_max)

    def modules(self):
        return [self.model, self.temperature_net]
