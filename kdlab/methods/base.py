"""What `kdlab.train.fit` needs from a method: a small object that owns its models and optimizers.

    class MyMethod(Method):
        name = "my-method"
        def __init__(self, student, teacher): self.model, self.teacher = student, teacher
        def step(self, batch, run):                      # one update; returns named losses
            losses = my_loss(self.model(batch.x), ...)
            return self.descend(losses, self.optimizer, run)

The loop owns everything else: batch order per seed, learning-rate schedules (every optimizer in
`optimizers()` follows the run's schedule), the NaN guard's position, history, progress bar,
interrupt/resume, callbacks, evaluation, augmentation and timing. `kdlab/methods/kd.py` is the template.
"""
from dataclasses import dataclass
from typing import NamedTuple, Optional

import torch

from ..errors import TrainingDivergedError


class Batch(NamedTuple):
    """A training mini-batch: inputs (augmented if the run augments), labels, and their row indices in the
    training set (for methods that cache per-sample values, such as MMKD's teacher outputs)."""

    x: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor


@dataclass
class Recipe:
    """The optimiser settings a run passes to `Method.configure`."""

    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4


@dataclass
class Run:
    """Where the loop is, handed to every hook: epoch and step (0-based), the global step count, the
    current learning rate of the main optimiser, the run's seed, its batch-order generator (also the
    augmentation's), the augmentation itself (or None), and the History being written."""

    seed: int
    epochs: int
    batch_size: int
    recipe: Recipe
    generator: torch.Generator
    augment: Optional[object] = None
    history: Optional[object] = None
    epoch: int = 0
    step: int = 0
    global_step: int = 0
    lr: float = 0.0

    def augmented(self, x, generator=None):
        """`x` through the run's augmentation (drawing from `generator`, default the batch order's)."""
        return x if self.augment is None else self.augment(x, self.generator if generator is None else generator)


def check_finite(losses, epoch, step, lr):
    """Stop with a clear message when the total loss is NaN or infinite, before any weight is written."""
    total = losses["loss"]
    if not torch.isfinite(total.detach()):
        terms = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in losses.items())
        raise TrainingDivergedError(
            f"the loss became {float(total.detach())} at epoch {epoch + 1}, step {step + 1} ({terms}). "
            f"Try a smaller learning rate (now {lr:g}), a smaller TEMPERATURE or ALPHA, or check the inputs "
            "for NaN; the model keeps the weights of the last finite step only if you re-run from a checkpoint.")


def make_optimizer(params, name="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4):
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    from ..errors import ParameterError

    raise ParameterError("optimizer", name, "'sgd' or 'adam'")


class Method:
    """Base class of every method trained by `kdlab.train.fit`.

    Subclasses set `self.model` (the network that is evaluated and deployed) and implement `step`.
    Hooks, all optional: `configure(recipe, run)` builds the optimisers (default: `self.optimizer`, the
    recipe's optimiser over `self.model`); `prepare(data, run)` returns the data to train on (MetaDistil
    holds out its quiz set); `on_epoch_start(run)`; `on_epoch_end(record, run)` adds epoch-level terms;
    `evaluate(data)` returns accuracies; `modules()` lists what `train()`/`eval()` switch.
    """

    name = "method"
    reduce = "samples"   # epoch means of the step's losses: weighted by batch size, or "steps" (one vote each)
    drop_last = False    # full batches only (MMKD's feature meta-net has a fixed width)
    checkpointed = ()    # further attributes with state_dict()/load_state_dict() that a resumed run needs
    progress_desc = "epochs"
    model = None
    optimizer = None

    def configure(self, recipe, run):
        if self.optimizer is None:
            self.optimizer = make_optimizer(self.model.parameters(), recipe.optimizer, recipe.lr, recipe.momentum,
                                            recipe.weight_decay)

    def optimizers(self):
        """Every optimiser whose learning rate follows the run's schedule."""
        return [self.optimizer]

    def prepare(self, data, run):
        return data

    def on_epoch_start(self, run):
        pass

    def step(self, batch, run):
        raise NotImplementedError

    def on_epoch_end(self, record, run):
        pass

    def evaluate(self, data):
        from ..train.evaluation import accuracy

        return {"train_acc": accuracy(self.model, data.x_train, data.y_train),
                "test_acc": accuracy(self.model, data.x_test, data.y_test)}

    def modules(self):
        return [self.model]

    def divergence_hint(self):
        """What to try when the loss becomes NaN (the episodic loop's message ends with it)."""
        return "Try a smaller learning rate or TEMPERATURE."

    def train(self):
        for module in self.modules():
            module.train()

    def eval(self):
        for module in self.modules():
            module.eval()

    def descend(self, losses, optimizer, run):
        """The NaN guard, then `optimizer`'s step on `losses["loss"]`; returns the losses detached."""
        check_finite(losses, run.epoch, run.step, optimizer.param_groups[0]["lr"])
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()
        return {name: value.detach() for name, value in losses.items()}

    def state_dict(self):
        """The modules, the optimisers, and the attributes named in `checkpointed` (a resumed run's needs)."""
        state = {f"module{i}": m.state_dict() for i, m in enumerate(self.modules())}
        state.update({f"optimizer{i}": opt.state_dict() for i, opt in enumerate(self.optimizers()) if opt is not None})
        state.update({name: getattr(self, name).state_dict() for name in self.checkpointed
                      if getattr(self, name, None) is not None})
        return state

    def load_state_dict(self, state):
        for i, m in enumerate(self.modules()):
            m.load_state_dict(state[f"module{i}"])
        for i, opt in enumerate(self.optimizers()):
            if opt is not None and f"optimizer{i}" in state:
                opt.load_state_dict(state[f"optimizer{i}"])
        for name in self.checkpointed:
            if name in state:
                getattr(self, name).load_state_dict(state[name])
