"""Notebook 08 (comparison): every method of the kit on one benchmark, measured the same way.

The common benchmark: scikit-learn's digits with 300 stratified training images (the other 1,497 are the
test set, the protocol of notebook 01), one student architecture (a SmallCNN), one budget (epochs, batch
size, learning rate, optimizer and schedule), and one shared teacher, trained once and cached. Every
method starts from the same student initialisation and sees the same batch order within a seed, so the
methods can be compared seed by seed.

    bench = load_benchmark(Budget(epochs=60), device="cpu")
    result = run_method(bench, "MetaDistil", seed=0)         # {"acc": ..., "seconds": ..., "steps": ...}
    costs = step_costs(bench, seed=0)                         # {method: StepCost amortised per step}
    print(cards_markdown(CARDS, costs))

The method modules are used as they are; this file only adapts their signatures to one call
(`run_method(bench, name, seed, budget)`) and builds one representative training step per method for
`kdlab.profiling.step_cost`.
"""
import copy
import dataclasses
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .. import cache, config, paths
from ..errors import ParameterError
from ..methods import feature_meta as fm
from ..methods import metadistil as md
from ..methods import metadistiller as mdr
from ..methods import mmkd
from ..methods import tsmd
from ..models import MLP, SmallCNN
from ..models.multi_exit import MultiExit
from ..profiling import StepCost, load_average, step_cost  # noqa: F401 (load_average: used by notebook 08)
from ..stats import verdict  # noqa: F401 (the notebook calls lesson.verdict)
from ..train import distill_from, fit, make_optimizer
from ..widgets import Panel, choice, slider

# ------------------------------------------------------------------------------------------ the benchmark

METHODS = ("CE", "KD", "KD (90 %)", "MetaDistil", "MetaDistiller", "MMKD", "FD + adaptation")
BASELINE = "KD"
# "KD (90 %)" takes exactly KD's step (on fewer images), so its cost is not measured twice.
COST_METHODS = tuple(m for m in METHODS if m != "KD (90 %)")
SAME_STEP = {"KD (90 %)": "KD"}


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
        config.check("EPOCHS", self.epochs)
        config.check("LR", self.lr)
        config.check("BATCH_SIZE", self.batch_size)
        if self.optimizer != "sgd":
            raise ParameterError("optimizer", self.optimizer, "'sgd': every method of the kit steps the student "
                                                              "with SGD (MetaDistil's look-ahead assumes it)")

    def fit_kwargs(self):
        """The keyword arguments of `kdlab.train.fit` (and of the methods that mirror it)."""
        return dict(epochs=self.epochs, lr=self.lr, batch_size=self.batch_size, momentum=self.momentum,
                    weight_decay=self.weight_decay)


# Each method's own settings, as its notebook chose and measured them (03, 04, 05, 07); none tuned here.
SETTINGS = {
    "KD": dict(alpha=0.9, temperature=4.0),                                   # notebook 01, RepDistiller
    "MetaDistil": dict(alpha=0.9, temperature=4.0, teacher_lr=1e-4, quiz_fraction=0.1, quiz_batch_size=30),
    "MetaDistiller": dict(alpha=0.5, temperature=1.0, meta_every=5, meta_lr=1e-2, num_exits=3, head="pool"),
    "MMKD": dict(temperature=4.0, alpha=1.0, beta=10.0, gamma=1.0, meta_every=5, buffer_size=100, meta_lr=1e-3),
    "FD + adaptation": dict(alpha=0.7, schedule="linear", alpha_end=0.1, alpha_squared=True, adaptation=True,
                            inner_steps=1, inner_lr=0.05, meta_every=1, student_layer=2, teacher_layer=2,
                            engine="func"),
}
SETTINGS["KD (90 %)"] = SETTINGS["KD"]

# What the panel's ALPHA and TEMPERATURE sliders mean for each method (None: the method has no such knob).
KNOBS = {
    "CE": (None, None),
    "KD": ("alpha", "temperature"),
    "KD (90 %)": ("alpha", "temperature"),
    "MetaDistil": ("alpha", "temperature"),
    "MetaDistiller": ("alpha", "temperature"),   # alpha weighs the HARD label of a shallow exit (Eq. 4)
    "MMKD": ("alpha", "temperature"),            # alpha weighs the weighted logit KD term (E9)
    "FD + adaptation": ("alpha", None),          # alpha: the schedule's start (it ends at alpha_end)
}
ALPHA_MEANING = {
    "CE": "not used",
    "KD": "weight of the KD term",
    "KD (90 %)": "weight of the KD term",
    "MetaDistil": "weight of the KD term",
    "MetaDistiller": "weight of the hard label on a shallow exit (1 - ALPHA on its soft target)",
    "MMKD": "weight of the meta-weighted KD term (CE keeps weight 1)",
    "FD + adaptation": "start of the linear alpha schedule (feature-loss weight)",
}

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
    settings: dict = None      # each method's settings; default: a copy of SETTINGS

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
    from ..models import available, create

    if spec["arch"] in available():
        return create(spec["arch"], num_classes=data.num_classes)
    raise ParameterError("arch", spec["arch"], "'small_cnn', 'mlp' or a zoo model: " + ", ".join(available()))


def cached_teacher(name, spec, data, data_config, *, root=None, log=print, augment=None):
    """Train a teacher once with cross-entropy and cache its weights (atomic write, checksum,
    `weights_only` load), keyed by `config_key` of its spec and the data's configuration."""
    key = cache.config_key({"notebook": "08", "teacher": name, **spec, **data_config, "version": 1})
    path = paths.cache_dir(root) / f"comparison-teacher-{name}-{key}.pt"
    fresh, started = not path.exists(), time.perf_counter()

    def build():
        model = build_teacher(spec, data).to(data.x_train.device)
        fit(model, data, epochs=spec["epochs"], lr=spec["lr"], batch_size=spec["batch_size"], seed=spec.get("seed", 0),
            progress=augment is not None, eval_every=spec["epochs"], augment=augment)
        return {k: v.detach().cpu() for k, v in model.state_dict().items()}

    state = cache.load_or_build(path, build, log=log)
    model = build_teacher(spec, data).to(data.x_train.device)
    model.load_state_dict(state)
    log(f"teacher {name:<5} {'trained' if fresh else 'loaded from cache'} in {time.perf_counter() - started:.1f} s "
        f"({path.name})")
    return model.eval()


def with_kd_settings(settings, alpha, temperature):
    """A copy of `settings` where the Hinton-KD loss of KD, KD (90 %) and MetaDistil uses `alpha`, `temperature`."""
    config.validate(ALPHA=alpha, TEMPERATURE=temperature)
    settings = copy.deepcopy(settings)
    for name in ("KD", "KD (90 %)", "MetaDistil"):
        settings[name] = {**settings[name], "alpha": alpha, "temperature": temperature}
    return settings


def load_benchmark(budget=None, *, student_width=8, teacher_specs=None, device="cpu", split_seed=0, train_size=300,
                   alpha=0.9, temperature=4.0, root=None, log=print):
    """The common benchmark: digits (`train_size` training images, the rest as test), the teachers of
    `teacher_specs` (default TEACHER_SPECS; the first is the shared one), the budget, and the methods'
    SETTINGS with `alpha` and `temperature` for the Hinton-KD loss (KD, KD (90 %), MetaDistil)."""
    from ..data import load

    budget = Budget() if budget is None else budget
    data = load("digits", train_size=train_size, seed=split_seed, device=device)
    data_config = {"dataset": "digits", "train_size": train_size, "split_seed": split_seed}
    specs = TEACHER_SPECS if teacher_specs is None else teacher_specs
    teachers = {name: cached_teacher(name, spec, data, data_config, root=root, log=log) for name, spec in specs.items()}
    return Benchmark(data, teachers, int(student_width), budget, data_config,
                     settings=with_kd_settings(SETTINGS, alpha, temperature))


def new_student(bench, seed):
    """The student: a SmallCNN of the benchmark's width, seeded (the same seed gives every method the same
    initial weights; MetaDistiller's exits are added after the backbone is drawn)."""
    torch.manual_seed(seed)
    data = bench.data
    if bench.student_arch is not None:
        from ..models import create

        return create(bench.student_arch, num_classes=data.num_classes).to(data.device)
    return SmallCNN(data.num_classes, width=bench.student_width, in_channels=data.input_shape[0]).to(data.device)


def new_multi_exit(bench, seed, num_exits=3, head="pool"):
    """The same backbone as `new_student(bench, seed)`, split into `num_exits` stages with exits."""
    return MultiExit(new_student(bench, seed), num_exits, head=head).to(bench.data.device)


# --------------------------------------------------------------------------------------- one run per method

def _steps_per_epoch(num_train, batch_size, drop_last=False):
    return num_train // batch_size if drop_last else math.ceil(num_train / batch_size)


def _result(history, started, steps, **extra):
    train_seconds = sum(r.get("seconds", 0.0) for r in history.records)
    return {"acc": float(history.last["test_acc"]), "seconds": time.perf_counter() - started,
            "train_seconds": train_seconds, "steps": steps, "seconds_per_step": train_seconds / max(steps, 1),
            **extra}


def run_ce(bench, seed, budget, **_):
    started = time.perf_counter()
    student = new_student(bench, seed)
    history = fit(student, bench.data, seed=seed, progress=False, eval_every=budget.epochs,
                  schedule=budget.schedule, augment=bench.augment, **budget.fit_kwargs())
    return _result(history, started, budget.epochs * _steps_per_epoch(bench.data.num_train, budget.batch_size))


def run_kd(bench, seed, budget, *, alpha, temperature, data=None, **_):
    started = time.perf_counter()
    data = bench.data if data is None else data
    student = new_student(bench, seed)
    history = fit(student, data, distill_from(bench.teacher, alpha, temperature), seed=seed, progress=False,
                  eval_every=budget.epochs, schedule=budget.schedule, augment=bench.augment, **budget.fit_kwargs())
    return _result(history, started, budget.epochs * _steps_per_epoch(data.num_train, budget.batch_size))


def run_kd_90(bench, seed, budget, *, alpha, temperature, **_):
    """KD on exactly the 90 % of the training images that MetaDistil's student trains on."""
    q = bench.settings["MetaDistil"]
    split = md.split_quiz(bench.data, q["quiz_fraction"], seed, quiz_batch_size=q["quiz_batch_size"])
    return run_kd(bench, seed, budget, alpha=alpha, temperature=temperature, data=split.train)


def run_metadistil(bench, seed, budget, *, alpha, temperature, teacher_lr, quiz_fraction, quiz_batch_size, **_):
    started = time.perf_counter()
    student = new_student(bench, seed)
    _, teacher, history = md.train_metadistil(
        student, copy.deepcopy(bench.teacher), bench.data, teacher_lr=teacher_lr, alpha=alpha,
        temperature=temperature, quiz_fraction=quiz_fraction, quiz_batch_size=quiz_batch_size, seed=seed,
        progress=False, eval_every=budget.epochs, schedule=budget.schedule, augment=bench.augment,
        **budget.fit_kwargs())
    return _result(history, started, len(history.steps), teacher_acc=float(history.last["teacher_test_acc"]))


def run_metadistiller(bench, seed, budget, *, alpha, temperature, meta_every, meta_lr, num_exits, head, **_):
    started = time.perf_counter()
    model = new_multi_exit(bench, seed, num_exits, head)
    _, _, history = mdr.train_metadistiller(
        model, bench.data, mode="md", seed=seed, alpha=alpha, temperature=temperature, meta_every=meta_every,
        meta_lr=meta_lr, eval_every=budget.epochs, progress=False, schedule=budget.schedule,
        optimizer=budget.optimizer, augment=bench.augment, **budget.fit_kwargs())
    steps = budget.epochs * _steps_per_epoch(bench.data.num_train, budget.batch_size)
    return _result(history, started, steps, exit1_acc=float(history.last.get("test_acc_exit1", math.nan)))


def run_mmkd(bench, seed, budget, *, temperature, alpha, beta, gamma, meta_every, buffer_size, meta_lr, **_):
    started = time.perf_counter()
    student = new_student(bench, seed)
    _, history, _ = mmkd.train_mmkd(
        student, list(bench.teachers.values()), bench.data, temperature=temperature, alpha=alpha, beta=beta,
        gamma=gamma, meta_every=meta_every, buffer_size=buffer_size, meta_lr=meta_lr, seed=seed,
        schedule=budget.schedule, augment=bench.augment, **budget.fit_kwargs())
    steps = budget.epochs * _steps_per_epoch(bench.data.num_train, budget.batch_size, drop_last=True)
    return _result(history, started, steps)


def run_feature(bench, seed, budget, *, alpha, schedule, alpha_end, alpha_squared, adaptation, inner_steps,
                inner_lr, meta_every, student_layer, teacher_layer, engine, **_):
    started = time.perf_counter()
    student = new_student(bench, seed)
    _, history = fm.train_feature_meta(
        student, bench.teacher, bench.data, alpha=alpha, schedule=schedule, alpha_end=alpha_end,
        alpha_squared=alpha_squared, adaptation=adaptation, inner_steps=inner_steps, inner_lr=inner_lr,
        meta_every=meta_every, student_layer=student_layer, teacher_layer=teacher_layer, engine=engine,
        seed=seed, optimizer=budget.optimizer, lr_schedule=budget.schedule, augment=bench.augment,
        **budget.fit_kwargs())
    return _result(history, started, budget.epochs * _steps_per_epoch(bench.data.num_train, budget.batch_size))


RUNNERS = {"CE": run_ce, "KD": run_kd, "KD (90 %)": run_kd_90, "MetaDistil": run_metadistil,
           "MetaDistiller": run_metadistiller, "MMKD": run_mmkd, "FD + adaptation": run_feature}


def check_method(name):
    if name not in RUNNERS:
        raise ParameterError("method", name, "one of " + ", ".join(map(repr, METHODS)))
    return name


def run_method(bench, name, seed, budget=None, **overrides):
    """Train method `name` from seed `seed` on the benchmark with `budget` (default: the benchmark's) and its
    SETTINGS (`overrides` replace some). Returns {"acc": final test accuracy (%), "seconds": wall time of the
    whole run, "train_seconds": time inside the training loops, "steps", "seconds_per_step", ...}."""
    check_method(name)
    budget = bench.budget if budget is None else budget
    config.check("SEED", seed)
    settings = {**bench.settings.get(name, {}), **overrides}
    return RUNNERS[name](bench, seed, budget, **settings)


def run_seed(bench, seed, methods=METHODS, budget=None, log=None, overrides=None):
    """Every method in `methods` from seed `seed` (`overrides`: {method: {setting: value}}); a flat dict
    "method/metric" -> number for `stats.over_seeds`."""
    row = {}
    for name in methods:
        result = run_method(bench, name, seed, budget, **(overrides or {}).get(name, {}))
        row.update({f"{name}/{k}": float(v) for k, v in result.items()})
    if log is not None:
        log(f"seed {seed}: " + ", ".join(f"{name} {row[name + '/acc']:.1f}" for name in methods))
    return row


def column(results, name, metric="acc"):
    return results[f"{name}/{metric}"]


# ---------------------------------------------------------------------------------- cost of one training step

def _batch(bench, seed, batch_size, offset=0):
    g = torch.Generator().manual_seed(seed + offset)
    index = torch.randperm(bench.data.num_train, generator=g)[:batch_size].to(bench.data.device)
    return bench.data.x_train[index], bench.data.y_train[index]


def _sgd(params, budget):
    return make_optimizer(params, "sgd", budget.lr, budget.momentum, budget.weight_decay)


def step_components(bench, name, seed=0, budget=None):
    """The pieces of one training step of method `name`, as [(label, step function, share of steps)]: the
    ordinary step (share 1) and the meta step with the share of training steps it follows (MMKD: 1 /
    META_EVERY; MetaDistiller: the share of meta epochs; FD: 1 / META_EVERY). Every function trains copies
    made here, on one batch drawn from the training set."""
    check_method(name)
    budget = bench.budget if budget is None else budget
    s = bench.settings.get(name, {})
    x, y = _batch(bench, seed, budget.batch_size)
    teacher = copy.deepcopy(bench.teacher).eval()
    if name == "CE":
        student = new_student(bench, seed)
        opt = _sgd(student.parameters(), budget)

        def ce_step():
            loss = F.cross_entropy(student(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return [("CE step", ce_step, 1.0)]
    if name in ("KD", "KD (90 %)"):
        student = new_student(bench, seed)
        opt = _sgd(student.parameters(), budget)
        return [("KD step", lambda: md.kd_step(student, teacher, (x, y), student_opt=opt, alpha=s["alpha"],
                                               temperature=s["temperature"]), 1.0)]
    if name == "MetaDistil":
        student = new_student(bench, seed)
        opt = _sgd(student.parameters(), budget)
        t_opt = make_optimizer(teacher.parameters(), "sgd", s["teacher_lr"], 0.9, 5e-4)
        x_q, y_q = _batch(bench, seed, s["quiz_batch_size"], offset=1)
        return [("MetaDistil step (teaching experiment, teacher update, pilot update)",
                 lambda: md.metadistil_step(student, teacher, (x, y), (x_q, y_q), student_opt=opt, teacher_opt=t_opt,
                                            lookahead_lr=budget.lr, alpha=s["alpha"], temperature=s["temperature"]),
                 1.0)]
    if name == "MetaDistiller":
        model = new_multi_exit(bench, seed, s["num_exits"], s["head"]).train()
        torch.manual_seed(seed + 7919)
        generator = mdr.LabelGenerator.for_model(model).train()
        opt = _sgd(model.parameters(), budget)
        gen_opt = torch.optim.Adam(generator.parameters(), lr=s["meta_lr"])
        x2, y2 = _batch(bench, seed, budget.batch_size, offset=1)

        def network_step():
            losses = mdr.network_losses(model, generator, x, y, mode="md", alpha=s["alpha"],
                                        temperature=s["temperature"])
            opt.zero_grad(set_to_none=True)
            losses["loss"].backward()
            opt.step()
        meta_epochs = math.ceil(budget.epochs / s["meta_every"])
        return [("network step (all exits)", network_step, 1.0),
                ("label-generator step (look-ahead)",
                 lambda: mdr.generator_step(model, generator, gen_opt, (x, y), (x2, y2), lr=budget.lr,
                                            alpha=s["alpha"], temperature=s["temperature"]),
                 meta_epochs / budget.epochs)]
    if name == "MMKD":
        teachers = [copy.deepcopy(t).eval() for t in bench.teachers.values()]
        t_logits, t_feats = mmkd.teacher_outputs(teachers, x)  # precomputed once per data set in train_mmkd
        settings = mmkd.Settings(temperature=s["temperature"], alpha=s["alpha"], beta=s["beta"], gamma=s["gamma"])
        student = new_student(bench, seed)
        torch.manual_seed(seed)
        model = mmkd.DistillationStudent(student, [f.shape[1] for f in t_feats]).to(bench.data.device)
        nets = mmkd.MMKDNets(bench.data.num_classes, len(teachers), budget.batch_size).to(bench.data.device)
        opt = _sgd(model.parameters(), budget)
        meta_opt = torch.optim.Adam(nets.parameters(), lr=s["meta_lr"], weight_decay=1e-4)
        batch = (x, y, t_logits, *t_feats)
        return [("student step (weights from the nets)",
                 lambda: mmkd.student_step(model, nets, opt, batch, settings), 1.0),
                ("meta step (3 unrolled virtual steps, hypergradient)",
                 lambda: mmkd.meta_step(model, nets, meta_opt, opt, batch, settings, lr=budget.lr,
                                        momentum=budget.momentum, weight_decay=budget.weight_decay),
                 1.0 / s["meta_every"])]
    # FD + adaptation
    student = new_student(bench, seed)
    model = fm.attach_adapter(student, teacher, x[:2], student_layer=s["student_layer"],
                              teacher_layer=s["teacher_layer"])
    opt = _sgd(model.parameters(), budget)
    meta_opt = torch.optim.SGD(model.parameters(), lr=budget.lr)
    loss_fn = fm.objective(s["alpha"], s["alpha_squared"])
    model.train()

    def feature_step():
        f_t = fm.teacher_features(teacher, x, s["teacher_layer"])
        losses = loss_fn(model(x, return_features=True), y, f_t)
        opt.zero_grad(set_to_none=True)
        losses["loss"].backward()
        opt.step()

    def adaptation_step():
        f_t = fm.teacher_features(teacher, x, s["teacher_layer"])
        support, query = fm.split_support_query(x, y, f_t)
        out = fm.adaptation_loss(model, support, query, loss_fn, inner_steps=s["inner_steps"],
                                 inner_lr=s["inner_lr"], engine=s["engine"])
        meta_opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        meta_opt.step()
    return [("feature-KD step", feature_step, 1.0),
            ("adaptation phase (support/query halves, 2nd order)", adaptation_step, 1.0 / s["meta_every"])]


def step_costs(bench, methods=COST_METHODS, *, seed=0, budget=None, repeats=5, warmup=2, rounds=1, device="cpu"):
    """Wall time and peak memory of one training step per method, each measured with
    `kdlab.profiling.step_cost` on the same batch: {method: {"cost": StepCost (seconds amortised over the
    meta step's share; peak = the larger of the components' peaks), "components": {label: (StepCost, share)}}}.

    With `rounds` > 1 every method is measured that many times, the methods interleaved, and each piece keeps
    its fastest median: on a shared CPU the least disturbed measurement is the closest to the step's cost."""
    if not (isinstance(rounds, int) and rounds >= 1):
        raise ParameterError("rounds", rounds, "an integer >= 1")
    best = {}
    for _ in range(rounds):
        for name in methods:
            for label, fn, share in step_components(bench, name, seed, budget):
                cost = step_cost(fn, repeats=repeats, warmup=warmup, device=device)
                old = best.get((name, label))
                if old is not None:
                    cost = StepCost(min(cost.seconds, old[0].seconds), max(cost.peak_bytes, old[0].peak_bytes))
                best[(name, label)] = (cost, share)
    out = {}
    for name in methods:
        parts = {label: value for (owner, label), value in best.items() if owner == name}
        seconds = sum(c.seconds * share for c, share in parts.values())
        peak = max(c.peak_bytes for c, _ in parts.values())
        out[name] = {"cost": StepCost(seconds, peak), "components": parts}
    return out


# ------------------------------------------------------------------------------------------- the table

def comparison_table(results, costs, methods=METHODS, baseline=BASELINE):
    """ONE Markdown table: accuracy (mean ± 95 % t interval over seeds), the paired difference against
    `baseline` with its interval and wins, the wall time of one training step measured in isolation
    (`step_costs`) and inside the training runs (mean over seeds of the training loops' seconds per step,
    where `results` has it), and the peak memory of one step; each cost also relative to the baseline."""
    from ..stats import mean_ci, paired_difference

    base = column(results, baseline)
    base_cost = costs[baseline]["cost"]
    in_run = f"{baseline}/seconds_per_step" in results
    lines = [f"| method | test accuracy (%) | vs {baseline} [95% CI] (wins) | ms / step | x {baseline} | "
             + (f"ms / step in training | x {baseline} | " if in_run else "")
             + f"peak KiB / step | x {baseline} |",
             "|---|---:|---:|---:|---:|" + ("---:|---:|" if in_run else "") + "---:|---:|"]
    for name in methods:
        accs = column(results, name)
        versus = "(baseline)" if name == baseline else str(paired_difference(accs, base))
        cost = costs[SAME_STEP.get(name, name)]["cost"]
        time_ratio, mem_ratio = cost.relative_to(base_cost)
        cells = [name, str(mean_ci(accs)), versus, f"{1000 * cost.seconds:.2f}", f"{time_ratio:.1f}"]
        if in_run:
            ms = 1000 * float(np.mean(column(results, name, "seconds_per_step")))
            base_ms = 1000 * float(np.mean(column(results, baseline, "seconds_per_step")))
            cells += [f"{ms:.2f}", f"{ms / base_ms:.1f}"]
        cells += [f"{cost.peak_bytes / 1024:.0f}", f"{mem_ratio:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)




def plot_differences(ax, results, methods=METHODS, baseline=BASELINE):
    """Per-seed differences against `baseline` (grey dots), their mean and 95 % t interval (black), zero line."""
    from ..stats import paired_difference

    others = [m for m in methods if m != baseline]
    base = column(results, baseline)
    for i, name in enumerate(others):
        diff = paired_difference(column(results, name), base)
        jitter = np.linspace(-0.12, 0.12, len(diff.differences))
        ax.scatter(i + jitter, diff.differences, color="0.6", s=12, zorder=2)
        ax.errorbar(i, diff.mean, yerr=diff.half_width if math.isfinite(diff.half_width) else 0, fmt="s",
                    color="k", capsize=4, zorder=3)
    ax.axhline(0, color="C3", lw=1, ls="--")
    ax.set_xticks(range(len(others)), others, rotation=25, ha="right", fontsize=8)
    ax.set_ylabel(f"test accuracy - {baseline} (points)")


def plot_cost_accuracy(ax, results, costs, methods=METHODS, baseline=BASELINE):
    """Mean accuracy (with its 95 % interval) against the measured time per step, relative to the baseline."""
    from ..stats import mean_ci

    base = costs[baseline]["cost"]
    for i, name in enumerate(methods):
        ci = mean_ci(column(results, name))
        ratio = costs[SAME_STEP.get(name, name)]["cost"].relative_to(base)[0]
        ax.errorbar(ratio, ci.mean, yerr=ci.half_width if math.isfinite(ci.half_width) else 0, fmt="o",
                    color=f"C{i}", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel(f"time per training step / {baseline}'s (log)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=7)


# ------------------------------------------------------------------------------------------- method cards

@dataclass(frozen=True)
class MethodCard:
    """One paper in one schema. `cost` is filled from the measurement (`cards_markdown`)."""

    method: str
    paper: str
    meta_learned: str
    inner_loop: str
    outer_objective: str
    data_split: str
    detached: str
    cost_vs_kd: str = ""


CARD_FIELDS = tuple(f.name for f in dataclasses.fields(MethodCard))
CARD_HEADERS = {"method": "method", "paper": "paper", "meta_learned": "what is meta-learned",
                "inner_loop": "inner loop", "outer_objective": "outer objective", "data_split": "data split",
                "detached": "what is detached", "cost_vs_kd": "cost vs KD (measured here)"}

CARDS = [
    MethodCard(
        method="KD (reference)", paper="Hinton, Vinyals, Dean 2015 (arXiv:1503.02531)",
        meta_learned="nothing", inner_loop="none",
        outer_objective="(1 - alpha) CE + alpha tau^2 KL(p_t ‖ p_s) on the training batch",
        data_split="all training images", detached="teacher logits (frozen teacher, no_grad)"),
    MethodCard(
        method="MetaDistil", paper="Zhou, Xu, McAuley, ACL 2022 (arXiv:2106.04570)",
        meta_learned="the teacher's weights (it keeps training, to teach)",
        inner_loop="1 SGD look-ahead step of a student copy on the KD loss (step = student lr), then the real "
                   "student's 'pilot' step with the updated teacher",
        outer_objective="CE of the look-ahead student on a quiz batch, differentiated w.r.t. the teacher "
                        "(2nd order: a mixed derivative)",
        data_split="training set split 9:1 into train / quiz (the student never trains on the quiz set)",
        detached="teacher logits in the real student step; NOT in the look-ahead"),
    MethodCard(
        method="MetaDistiller", paper="Liu, Rao, Lu, Zhou, Hsieh, ECCV 2020 (arXiv:2008.12094)",
        meta_learned="a top-down label generator that fuses the stage maps into soft targets for the shallow "
                     "exits",
        inner_loop="1 SGD look-ahead step of the whole multi-exit network on Eqs. 3-4 (step = network lr)",
        outer_objective="CE of every exit of the look-ahead network on the other half of the training set",
        data_split="two random halves of the training set, redrawn every meta epoch (every M epochs); the "
                   "network itself trains on all images",
        detached="targets in the network step; the generator's input maps; NOT the targets in the look-ahead"),
    MethodCard(
        method="MMKD", paper="Zhang, Chen, Wang, ICME 2023 (arXiv:2306.06634)",
        meta_learned="two small nets giving per-sample weights over K teachers (logit KD and feature terms)",
        inner_loop="3 unrolled virtual SGD-momentum steps of a student copy (2 matching-only, 1 CE) on a hard-"
                   "buffer batch, every META_EVERY steps",
        outer_objective="CE of the virtual student on the same hard batch (hypergradient through the unroll)",
        data_split="a hard buffer of recently misclassified training images (no held-out set)",
        detached="teacher outputs; the weight nets' student-side inputs; the weights in the real step"),
    MethodCard(
        method="FD + adaptation", paper="Preprints.org 202503.1636 (2025, not peer reviewed)",
        meta_learned="nothing beyond the student: MAML-style extra updates of the student's own initial "
                     "weights (no task distribution)",
        inner_loop="k SGD steps on the hybrid feature loss (MSE + 1 - cos through a 1x1 adapter) on half a "
                   "batch",
        outer_objective="the same loss on the other half, back-propagated through the inner steps (2nd order)",
        data_split="each batch split into support / query halves (same 10 classes)",
        detached="teacher features (frozen teacher); alpha is scheduled, never learned"),
    MethodCard(
        method="TSMD (few-shot block)", paper="Wu, Chanda, Hosseinzadeh, Liu, Wang, WACV 2023 (arXiv:2210.09922)",
        meta_learned="the initialisations of a big teacher and a small student (MAML, jointly)",
        inner_loop="per task: teacher adapted on the support set (Eq. 6), then the student with CE + KD from the "
                   "adapted teacher (Eq. 7)",
        outer_objective="each model's CE on the query set after adaptation (Eqs. 8-10)",
        data_split="episodes: N-way K-shot support / query sets from meta-train classes; test classes unseen",
        detached="the adapted teacher's soft targets in the student's inner step"),
]


def card_cost(costs, method, baseline=BASELINE):
    """'x time, x memory' of `method`'s step over the baseline's, from `step_costs` (or '' if not measured)."""
    name = {"KD (reference)": baseline}.get(method, method)
    if name not in costs or baseline not in costs:
        return ""
    time_ratio, mem_ratio = costs[name]["cost"].relative_to(costs[baseline]["cost"])
    return f"{time_ratio:.1f}x time, {mem_ratio:.1f}x peak memory per step"


def cards_markdown(cards=CARDS, costs=None, extra_costs=None):
    """The method cards as one Markdown table (one row per paper, one column per field). The cost column is
    filled from `costs` (`step_costs`) where a card has no cost text; `extra_costs` maps a method to a
    ready string (e.g. TSMD's cost, measured per meta-iteration in its own block)."""
    rows = ["| " + " | ".join(CARD_HEADERS[f] for f in CARD_FIELDS) + " |",
            "|" + "---|" * len(CARD_FIELDS)]
    for card in cards:
        values = dataclasses.asdict(card)
        if not values["cost_vs_kd"]:
            values["cost_vs_kd"] = (extra_costs or {}).get(card.method) or card_cost(costs or {}, card.method)
        rows.append("| " + " | ".join(str(values[f]).replace("|", "/") for f in CARD_FIELDS) + " |")
    return "\n".join(rows)


def missing_fields(cards=CARDS):
    """(method, field) pairs whose text is empty, cost excluded (it is measured): [] when the schema is
    complete."""
    return [(c.method, f) for c in cards for f in CARD_FIELDS if f != "cost_vs_kd" and not str(getattr(c, f)).strip()]


# ------------------------------------------------------------------------------------- the few-shot block

FEWSHOT_ROWS = ("student", "ours", "oracle")
FEWSHOT_NAMES = {"student": "MAML student (Conv-4, small)", "ours": "TSMD student",
                 "oracle": "oracle teacher (MAML, Conv-4, big)"}
FEWSHOT_SETTINGS = dict(inner_steps=1, inner_lr=0.4, teacher_inner_steps=1, kd_weight=1.0, temperature=1.0)


def glyph_models(seed, *, ways, teacher_hidden, student_hidden, device="cpu"):
    """A wide Conv-4 teacher (seeded by `seed`) and a narrow Conv-4 student (seeded by `seed + 1000`), as in
    notebook 06."""
    from ..models import Conv4

    torch.manual_seed(seed)
    teacher = Conv4(in_channels=1, num_classes=ways, hidden=teacher_hidden).to(device)
    torch.manual_seed(seed + 1000)
    student = Conv4(in_channels=1, num_classes=ways, hidden=student_hidden).to(device)
    return teacher, student


def fewshot_seed(glyphs, seed, *, test_tasks, ways=5, shots=1, queries=5, iterations=150, meta_batch=2,
                 meta_lr=1e-3, teacher_hidden=32, student_hidden=8, device="cpu", settings=None):
    """One seed of the few-shot block: the oracle teacher (MAML on the big Conv-4) first; then the MAML
    student and TSMD (the student with KD from the adapted teacher, the teacher initialised from the oracle
    and meta-trained on, notebook 06's protocol), from the same student initialisation and on the same
    training episodes; all scored on `test_tasks`. Returns {row: per-episode accuracies (%)} and
    {row + '/seconds': meta-training seconds, row + '/seconds_per_iteration': ...}."""
    from ..data.episodes import EpisodeSampler

    knobs = {**FEWSHOT_SETTINGS, **(settings or {})}
    teacher0, student0 = glyph_models(seed, ways=ways, teacher_hidden=teacher_hidden,
                                      student_hidden=student_hidden, device=device)
    common = dict(iterations=iterations, meta_batch=meta_batch, meta_lr=meta_lr, device=device,
                  log_every=max(1, iterations), inner_steps=knobs["inner_steps"], inner_lr=knobs["inner_lr"],
                  teacher_inner_steps=knobs["teacher_inner_steps"])
    kd = dict(kd_weight=knobs["kd_weight"], temperature=knobs["temperature"])
    out, trained = {}, {}
    for row in ("oracle", "student", "ours"):
        sampler = EpisodeSampler(glyphs, "train", ways=ways, shots=shots, queries=queries, seed=seed)
        teacher = copy.deepcopy(trained["oracle"][0] if row == "ours" else teacher0) if row != "student" else None
        student = copy.deepcopy(student0) if row != "oracle" else None
        started = time.perf_counter()
        teacher, student, _ = tsmd.train_tsmd(teacher, student, sampler, variant=row, **common,
                                              **(kd if row == "ours" else {}))
        seconds = time.perf_counter() - started
        trained[row] = (teacher, student)
        result = tsmd.evaluate(teacher, student, test_tasks, variant=row, inner_steps=knobs["inner_steps"],
                               inner_lr=knobs["inner_lr"], teacher_inner_steps=knobs["teacher_inner_steps"],
                               **(kd if row == "ours" else {}))
        out[row] = (100 * result["accuracies"]).tolist()
        out[row + "/seconds"] = seconds
        out[row + "/seconds_per_iteration"] = seconds / iterations
    return out


def fewshot_table(per_seed, baseline="student"):
    """Markdown: per row, the mean over seeds with its t interval, MAML's pooled-episode interval, and the
    paired difference (over seeds) against `baseline`. `per_seed[row]` = list (one per seed) of per-episode
    accuracy lists."""
    from ..stats import episodes_ci, mean_ci, paired_difference

    n = len(per_seed[baseline])
    lines = [f"| model | mean over {n} seeds ± 95% CI | pooled episodes ± 1.96 sd/sqrt(n) | "
             f"vs {FEWSHOT_NAMES[baseline]} (paired over seeds) |", "|---|---:|---:|---:|"]
    base = [float(np.mean(r)) for r in per_seed[baseline]]
    for row in FEWSHOT_ROWS:
        means = [float(np.mean(r)) for r in per_seed[row]]
        pooled = episodes_ci([a for r in per_seed[row] for a in r])
        versus = "(baseline)" if row == baseline else str(paired_difference(means, base))
        lines.append(f"| {FEWSHOT_NAMES[row]} | {mean_ci(means)} | {pooled.mean:.1f} ± {pooled.half_width:.1f} "
                     f"(n={pooled.n}) | {versus} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- the panel

def quick_run(bench, method, *, seed, epochs, alpha=None, temperature=None):
    """A short run of `method` (`epochs` epochs of the benchmark's budget) with ALPHA / TEMPERATURE applied
    where the method has them (KNOBS); returns the run's dict plus the settings used."""
    check_method(method)
    budget = dataclasses.replace(bench.budget, epochs=epochs)
    alpha_key, temperature_key = KNOBS[method]
    overrides = {}
    if alpha_key is not None and alpha is not None:
        overrides[alpha_key] = alpha
    if temperature_key is not None and temperature is not None:
        overrides[temperature_key] = temperature
    result = run_method(bench, method, seed, budget, **overrides)
    return {**result, "method": method, "overrides": overrides, "epochs": epochs}


def method_panel(bench, *, seed=0, epochs=10, method="KD", alpha=0.9, temperature=4.0):
    """METHOD (choice), ALPHA and TEMPERATURE: a short run of the chosen method next to a KD run of the same
    length (same seed), with a readout of both accuracies and the time."""
    references = {}

    def compute(METHOD, ALPHA, TEMPERATURE):
        config.validate(ALPHA=ALPHA, TEMPERATURE=TEMPERATURE)
        started = time.perf_counter()
        if epochs not in references:
            references[epochs] = quick_run(bench, "KD", seed=seed, epochs=epochs)
        result = quick_run(bench, METHOD, seed=seed, epochs=epochs, alpha=ALPHA, temperature=TEMPERATURE)
        return {"method": METHOD, "alpha": ALPHA, "temperature": TEMPERATURE, "acc": result["acc"],
                "kd_acc": references[epochs]["acc"], "overrides": result["overrides"],
                "ms_per_step": 1000 * result["seconds_per_step"],
                "kd_ms_per_step": 1000 * references[epochs]["seconds_per_step"],
                "seconds": time.perf_counter() - started, "epochs": epochs}

    def draw(d, fig):
        ax_acc, ax_time = fig.subplots(1, 2)
        names = ["KD (default)", d["method"]]
        ax_acc.bar(names, [d["kd_acc"], d["acc"]], color=["0.6", "C1"])
        low = min(d["kd_acc"], d["acc"])
        ax_acc.set_ylim(max(0, low - 10), 100)
        ax_acc.set_ylabel(f"test accuracy after {d['epochs']} epochs (%)")
        ax_time.bar(names, [d["kd_ms_per_step"], d["ms_per_step"]], color=["0.6", "C1"])
        ax_time.set_ylabel("ms per training step (this run)")
        fig.tight_layout()

    def readout(d):
        used = ", ".join(f"{k}={v:g}" for k, v in d["overrides"].items()) or "no ALPHA/TEMPERATURE knob"
        return (f"{d['method']} ({used}; ALPHA = {ALPHA_MEANING[d['method']]}): {d['acc']:.1f}% after {d['epochs']} "
                f"epochs vs KD {d['kd_acc']:.1f}%; {d['ms_per_step']:.1f} ms/step vs KD {d['kd_ms_per_step']:.1f}; "
                f"{d['seconds']:.1f} s")

    return Panel(compute, draw,
                 {"METHOD": choice(method, METHODS), "ALPHA": slider(alpha, 0.0, 1.0, 0.05),
                  "TEMPERATURE": slider(temperature, 0.5, 20.0, 0.5)},
                 readout=readout, figsize=(8, 3))


# ------------------------------------------------------------------------------------------ verdicts



def fewshot_step_costs(glyphs, *, seed=0, ways=5, shots=1, queries=5, meta_batch=2, teacher_hidden=32,
                       student_hidden=8, repeats=3, warmup=1, device="cpu", settings=None):
    """Wall time and peak memory of one meta-iteration (a meta-batch of tasks, Eq. 10's gradients and the
    Adam steps) per few-shot row, measured like the digits steps: {row: StepCost}."""
    from ..data.episodes import EpisodeSampler

    knobs = {**FEWSHOT_SETTINGS, **(settings or {})}
    sampler = EpisodeSampler(glyphs, "train", ways=ways, shots=shots, queries=queries, seed=seed)
    tasks = [tuple(t.to(device) for t in sampler.episode(i)) for i in range(meta_batch)]
    out = {}
    for row in FEWSHOT_ROWS:
        teacher, student = glyph_models(seed, ways=ways, teacher_hidden=teacher_hidden,
                                        student_hidden=student_hidden, device=device)
        teacher = teacher if tsmd.uses_teacher(row) else None
        student = student if tsmd.uses_student(row) else None
        s = tsmd.settings(row, inner_steps=knobs["inner_steps"], inner_lr=knobs["inner_lr"],
                          teacher_inner_steps=knobs["teacher_inner_steps"],
                          **({"kd_weight": knobs["kd_weight"], "temperature": knobs["temperature"]}
                             if row == "ours" else {}))
        opts = [torch.optim.Adam(m.parameters(), lr=1e-3) for m in (teacher, student) if m is not None]

        def step(teacher=teacher, student=student, opts=opts, s=s):
            for opt in opts:
                opt.zero_grad(set_to_none=True)
            tsmd.tsmd_step(teacher, student, tasks, **s._asdict())
            for opt in opts:
                opt.step()
        out[row] = step_cost(step, repeats=repeats, warmup=warmup, device=device)
    return out
