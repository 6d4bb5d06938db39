"""One benchmark for every method: the data, the budget, the shared teachers, the student, and each
contender's settings, built from `kdlab.methods.registry`.

The default is notebook 08's: scikit-learn's digits with 300 stratified training images (the other 1,497
are the test set), one student architecture (a SmallCNN), one budget, and teachers trained once and
cached. Within a seed every contender starts from the same student weights and sees the same batches.

    bench = load_benchmark(Budget(epochs=60))
    method = contender(bench, "MetaDistil", seed=0)     # registry.get("metadistil")(student, teacher, ...)
    history = fit(method, training_data(bench, "MetaDistil", 0), seed=0, **bench.budget.fit_kwargs())
"""
import copy
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import torch

from . import config
from .errors import ParameterError
from .methods import registry
from .methods.base import Recipe, Run
from .models import MLP, SmallCNN
from .models.conv4 import conv4_pair as glyph_models  # noqa: F401 (the comparison's few-shot pair)
from .models.multi_exit import MultiExit
from .teachers import trained_teacher


class Contender(NamedTuple):
    """A row of the comparison: the registry's method, the models its constructor takes first ("student",
    "multi_exit", "teacher": a copy of the shared teacher, "teachers": copies of all), and whose training
    data it uses (None: the benchmark's; a registry name: what that method's `prepare` keeps)."""

    method: str
    models: tuple
    data: str = None


CONTENDERS = {
    "CE": Contender("ce", ("student",)),
    "KD": Contender("kd", ("student", "teacher")),
    "KD (90 %)": Contender("kd", ("student", "teacher"), data="metadistil"),   # MetaDistil's 90 %
    "DKD": Contender("dkd", ("student", "teacher")),
    "CTKD": Contender("ctkd", ("student", "teacher")),
    "MetaDistil": Contender("metadistil", ("student", "teacher")),
    "MetaDistiller": Contender("metadistiller", ("multi_exit",)),
    "MMKD": Contender("mmkd", ("student", "teachers")),
    "FD + adaptation": Contender("feature_meta", ("student", "teacher")),
}
METHODS = tuple(CONTENDERS)

# Each method's constructor settings, as its notebook chose and measured them (01, 03, 04, 05, 07); none
# tuned here. ALPHA weights the distillation term everywhere (MetaDistiller's 0.5 is the paper's too).
SETTINGS = {
    "CE": {},
    "KD": dict(alpha=0.9, temperature=4.0),                                   # notebook 01, RepDistiller
    # the official defaults, epoch-counted knobs at their share of RepDistiller's 240 epochs (of 60 here)
    "DKD": dict(ce_weight=1.0, tckd_weight=1.0, nckd_weight=8.0, temperature=4.0, warmup_epochs=5),  # mdistiller
    "CTKD": dict(alpha=0.9, temperature_range=(1.0, 21.0), curriculum_epochs=3, temperature_module="global"),
    "MetaDistil": dict(alpha=0.9, temperature=4.0, teacher_lr=1e-4, quiz_fraction=0.1, quiz_batch_size=30),
    "MetaDistiller": dict(alpha=0.5, temperature=1.0, meta_every=5, meta_lr=1e-2),
    "MMKD": dict(temperature=4.0, alpha=1.0, beta=10.0, gamma=1.0, meta_every=5, buffer_size=100, meta_lr=1e-3),
    "FD + adaptation": dict(alpha=0.7, alpha_schedule="linear", alpha_end=0.1, alpha_squared=True, adaptation=True,
                            inner_steps=1, inner_lr=0.05, meta_every=1, student_layer=2, teacher_layer=2,
                            engine="func"),
}
SETTINGS["KD (90 %)"] = SETTINGS["KD"]
KD_CONTENDERS = ("KD", "KD (90 %)", "MetaDistil")   # the Hinton-KD loss that ALPHA and TEMPERATURE set

# The teachers. "cnn32" is THE teacher of every single-teacher method; MMKD adds two weaker ones.
TEACHER_SPECS = {
    "cnn32": dict(arch="small_cnn", width=32, epochs=60, lr=0.05, batch_size=50, seed=0),
    "mlp": dict(arch="mlp", hidden=(256, 256), epochs=100, lr=0.01, batch_size=50, seed=0),
    "short": dict(arch="mlp", hidden=(256, 256), epochs=5, lr=0.05, batch_size=50, seed=0),
}
TEACHER_NOTES = {
    "cnn32": "SmallCNN width 32: the shared teacher",
    "mlp": "MLP 64-256-256-10: weaker, a different architecture",
    "short": "the same MLP stopped after a few epochs: weak and unsure",
}


@dataclass(frozen=True)
class Budget:
    """What every method gets: the same epochs over the same training images, batch size, optimizer
    (SGD, momentum 0.9, weight decay 5e-4) and learning-rate schedule (cosine, per epoch)."""

    epochs: int = 60
    lr: float = 0.05
    batch_size: int = 50
    optimizer: str = "sgd"
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"

    def __post_init__(self):
        config.validate(EPOCHS=self.epochs, LR=self.lr, BATCH_SIZE=self.batch_size, budget_optimizer=self.optimizer)

    def fit_kwargs(self):
        """The keyword arguments of `kdlab.train.fit` that the budget fixes."""
        return dict(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, optimizer=self.optimizer,
                    momentum=self.momentum, weight_decay=self.weight_decay, schedule=self.schedule)

    def run(self, seed, augment=None):
        """The `Run` that `fit` would hand a method's hooks at the first step of this budget."""
        from .train import History

        return Run(seed=seed, epochs=self.epochs, batch_size=self.batch_size,
                   recipe=Recipe(self.lr, self.optimizer, self.momentum, self.weight_decay),
                   generator=torch.Generator().manual_seed(seed), augment=augment, history=History(), lr=self.lr)


@dataclass
class Benchmark:
    """The data, the teachers (the first one is the shared teacher), the student width and the budget."""

    data: object
    teachers: dict
    student_width: int
    budget: Budget
    data_config: dict
    student_arch: str = None   # None: SmallCNN(width=student_width); else a zoo name (the full profile)
    augment: object = None     # augment(x, generator) for every method's training batches (the full profile)
    settings: dict = None      # each contender's constructor settings; default: a copy of SETTINGS
    exits: dict = field(default_factory=lambda: {"num_exits": 3, "head": "pool"})   # MetaDistiller's network

    def __post_init__(self):
        self.settings = copy.deepcopy(SETTINGS if self.settings is None else self.settings)

    @property
    def teacher(self):
        return next(iter(self.teachers.values()))


def build_teacher(spec, data):
    """A fresh, seeded, untrained teacher of `spec`."""
    torch.manual_seed(spec.get("seed", 0))
    if spec["arch"] == "small_cnn":
        return SmallCNN(data.num_classes, width=spec["width"], in_channels=data.input_shape[0])
    if spec["arch"] == "mlp":
        return MLP(int(np.prod(data.input_shape)), hidden=spec["hidden"], num_classes=data.num_classes)
    from .models import available, create

    if spec["arch"] not in available():
        raise ParameterError("arch", spec["arch"], "'small_cnn', 'mlp' or a zoo model: " + ", ".join(available()))
    return create(spec["arch"], num_classes=data.num_classes)


def cached_teacher(name, spec, data, *, root=None, log=print, augment=None):
    """Teacher `name` of `spec`, trained once with cross-entropy and read back after (`kdlab.teachers`, the kit's
    one teacher cache, keyed by the model, its initial weights, the data and the training options)."""
    teacher, _, _ = trained_teacher(lambda: build_teacher(spec, data), data, seed=spec.get("seed", 0),
                                    name=f"comparison-{name}", root=root, log=log, epochs=spec["epochs"],
                                    lr=spec["lr"], batch_size=spec["batch_size"], eval_every=spec["epochs"],
                                    augment=augment, progress=augment is not None)
    return teacher


def with_kd_settings(settings, alpha, temperature):
    """A copy of `settings` where the Hinton-KD loss of KD, KD (90 %) and MetaDistil uses `alpha`, `temperature`."""
    config.validate(ALPHA=alpha, TEMPERATURE=temperature)
    settings = copy.deepcopy(settings)
    for name in KD_CONTENDERS:
        settings[name] = {**settings[name], "alpha": alpha, "temperature": temperature}
    return settings


def load_benchmark(budget=None, *, student_width=8, teacher_specs=None, device="cpu", split_seed=0, train_size=300,
                   alpha=0.9, temperature=4.0, root=None, log=print):
    """The common benchmark: digits (`train_size` training images, the rest as test), the teachers of
    `teacher_specs` (default TEACHER_SPECS; the first is the shared one), the budget, and the methods'
    SETTINGS with `alpha` and `temperature` for the Hinton-KD loss (KD, KD (90 %), MetaDistil)."""
    from .data import load

    budget = Budget() if budget is None else budget
    data = load("digits", train_size=train_size, seed=split_seed, device=device)
    data_config = {"dataset": "digits", "train_size": train_size, "split_seed": split_seed}
    specs = TEACHER_SPECS if teacher_specs is None else teacher_specs
    teachers = {name: cached_teacher(name, spec, data, root=root, log=log) for name, spec in specs.items()}
    return Benchmark(data, teachers, int(student_width), budget, data_config,
                     settings=with_kd_settings(SETTINGS, alpha, temperature))


def new_student(bench, seed):
    """The student: a SmallCNN of the benchmark's width, seeded (the same seed gives every method the same
    initial weights; MetaDistiller's exits are added after the backbone is drawn)."""
    torch.manual_seed(seed)
    data = bench.data
    if bench.student_arch is not None:
        from .models import create

        return create(bench.student_arch, num_classes=data.num_classes).to(data.device)
    return SmallCNN(data.num_classes, width=bench.student_width, in_channels=data.input_shape[0]).to(data.device)


def new_multi_exit(bench, seed):
    """The same backbone as `new_student(bench, seed)`, split into stages with exits (`bench.exits`)."""
    return MultiExit(new_student(bench, seed), **bench.exits).to(bench.data.device)


def check_contender(name):
    if name not in CONTENDERS:
        raise ParameterError("method", name, "one of " + ", ".join(map(repr, CONTENDERS)))
    return CONTENDERS[name]


def contender(bench, name, seed, **overrides):
    """The method of contender `name`, built through the registry from seed `seed`'s student and copies of
    the benchmark's teachers, with its settings (`overrides` replace some)."""
    entry = check_contender(name)
    config.check("SEED", seed)
    models = {"student": lambda: new_student(bench, seed), "multi_exit": lambda: new_multi_exit(bench, seed),
              "teacher": lambda: copy.deepcopy(bench.teacher).eval(),
              "teachers": lambda: [copy.deepcopy(t).eval() for t in bench.teachers.values()]}
    return registry.get(entry.method)(*(models[m]() for m in entry.models), **{**bench.settings[name], **overrides})


def training_data(bench, name, seed, budget=None):
    """The data contender `name` is given: the benchmark's, or what another method's `prepare` keeps
    ("KD (90 %)": exactly the images MetaDistil's student trains on, its quiz set held out)."""
    source = check_contender(name).data
    if source is None:
        return bench.data
    owner = next(n for n, c in CONTENDERS.items() if c.method == source)
    with torch.random.fork_rng(devices=[]):   # building the other method leaves the caller's RNG alone
        method = contender(bench, owner, seed)
        run = (bench.budget if budget is None else budget).run(seed, bench.augment)
        method.configure(run.recipe, run)
        return method.prepare(bench.data, run)


# ------------------------------------------------------------------------------------- the few-shot block

FEWSHOT_SETTINGS = dict(inner_steps=1, inner_lr=0.4, teacher_inner_steps=1, kd_weight=1.0, temperature=1.0)
KD_KNOBS = ("kd_weight", "temperature")   # only the TSMD row ("ours") distils


def fewshot_knobs(variant, settings=None):
    """The TSMD knobs of one few-shot row: FEWSHOT_SETTINGS (with `settings`), the KD ones for "ours" only."""
    knobs = {**FEWSHOT_SETTINGS, **(settings or {})}
    return {k: v for k, v in knobs.items() if variant == "ours" or k not in KD_KNOBS}
