"""A notebook's `full` branch on one recipe of `kdlab.recipes`: its data, fit options, teachers and students.

    paper = PaperRun("kd_resnet32x4_resnet8x4", run)   # run = kdlab.setup(...)
    print(paper.describe())
    cifar = paper.data()                                # CIFAR-100 (or FakeData of its shape in a dry run)
    teacher = paper.teacher(cifar)                      # trained once with the recipe and cached
    history = fit(paper.student(seed), cifar, seed=seed, **paper.fit_options())

The recipe is the single source of a notebook's paper-scale numbers (epochs, batch, optimiser, lr, schedule,
weight decay, augmentation, the method's knobs); the teachers are the ones `kdlab reproduce` trains and caches
(keyed by their configuration), so a notebook and the command share them.

A dry run (`KDLAB_DRY_RUN=1` with `PROFILE="full"`, `run.dry_run`) goes through the same calls on CPU in
seconds: FakeData of the real shapes (`DRY_STEPS` batches of `DRY_BATCH`), randomly initialised teachers,
`DRY_EPOCHS` epochs and `DRY_SEEDS` seeds, so CI proves that every `full` branch runs.
"""
import dataclasses

from .. import recipes
from ..errors import ParameterError
from .data import load_data
from .models import fit_options, make_model, run_knobs, trained_teacher
from .training import dry_setting

DRY_STEPS, DRY_BATCH, DRY_EPOCHS, DRY_SEEDS = 2, 8, 1, 2


class PaperRun:
    """One recipe as a notebook's `full` branch uses it; `dry` (default: `run.dry_run`) serves FakeData.
    `dataset` runs an episodic recipe on another few-shot set of `FEWSHOT_SHAPES` (TSMD's recipe is printed
    for mini-ImageNet; notebook 06 also runs it on CIFAR-FS and FC100)."""

    FEWSHOT_SHAPES = {"mini_imagenet": (3, 84, 84), "cifar_fs": (3, 32, 32), "fc100": (3, 32, 32)}

    def __init__(self, name, run, *, dataset=None, dry=None, log=print):
        setting = recipes.get(name)
        if dataset is not None and dataset != setting.dataset:
            if not setting.episodic or dataset not in self.FEWSHOT_SHAPES:
                raise ParameterError("dataset", dataset, f"{setting.dataset!r} for {name}, or for an episodic recipe "
                                     "one of " + ", ".join(self.FEWSHOT_SHAPES))
            setting = dataclasses.replace(setting, dataset=dataset, image_shape=self.FEWSHOT_SHAPES[dataset],
                                          name=f"{name}@{dataset}")
        self.run, self.log = run, log
        self.dry = getattr(run, "dry_run", False) if dry is None else dry
        self.device = run.device
        if self.dry:   # one quiz batch, one inner step, one query, meta-batch 1: the same path, cheaper
            setting = dry_setting(setting, DRY_STEPS, 1 if setting.episodic else DRY_BATCH, quick=True)
        self.setting = setting

    @property
    def epochs(self):
        return DRY_EPOCHS if self.dry else self.setting.epochs

    @property
    def batch_size(self):
        return self.setting.batch_size

    @property
    def iterations(self):
        """Meta-iterations of an episodic setting (2 in a dry run)."""
        return DRY_STEPS if self.dry else self.setting.iterations

    @property
    def test_episodes(self):
        return DRY_STEPS if self.dry else self.setting.test_episodes

    @property
    def test_steps(self):
        """Inner steps at test time: MAML's (and TSMD's) 10 (1 in a dry run)."""
        return 1 if self.dry else 10

    @property
    def knobs(self):
        """The method's knobs of the recipe (epoch-counted knobs scaled to a dry run's length)."""
        return run_knobs(self.setting, self.epochs)

    def seeds(self, first, count=3):
        """`count` seeds from `first` (`DRY_SEEDS` in a dry run: a paired difference needs two)."""
        return range(first, first + (DRY_SEEDS if self.dry else count))

    def data(self):
        """The setting's data set (`kdlab.data.load`; offline: one message naming the fix), or FakeData."""
        return load_data(self.setting, self.device, dry_run=self.dry, steps=DRY_STEPS, batch=DRY_BATCH,
                         seed=self.run.seed)

    def fit_options(self, **overrides):
        """Keyword arguments of `kdlab.train.fit`: the recipe's length, batch, optimiser, lr, momentum, weight
        decay, lr schedule (the paper's milestones) and augmentation; `overrides` win."""
        return {"epochs": self.epochs, "batch_size": self.batch_size, **fit_options(self.setting, self.epochs),
                **overrides}

    def teacher(self, data, index=0, *, arch=None):
        """Teacher `index` of the recipe (or one of architecture `arch`, trained with the same recipe): trained
        once and cached, keyed by its configuration (random in a dry run)."""
        setting = self.setting if arch is None else dataclasses.replace(self.setting, teacher=arch)
        return trained_teacher(setting, data, index, dry_run=self.dry, seed=self.run.seed,
                               device=self.device, log=self.log)

    def teachers(self, data):
        return [self.teacher(data, i) for i in range(self.setting.num_teachers)]

    def student(self, seed, name=None):
        """A fresh student (the recipe's, or `name`) from `seed`."""
        s = self.setting
        classes = s.ways if s.episodic else s.num_classes
        return make_model(name or s.student, classes, s, seed=seed, device=self.device)

    def describe(self):
        """Two lines: the recipe and the paper's number with its source (and the dry run's note)."""
        s = self.setting
        length = recipes.length(s)
        first = (f"recipe {s.name} (kdlab.recipes): {s.teacher or 'no teacher'} -> {s.student} on {s.dataset}, "
                 f"{length}, batch {s.meta_batch if s.episodic else s.batch_size}, {s.optimizer} lr {s.lr:g}, "
                 f"{s.schedule} schedule, knobs {self.knobs}")
        second = f"paper: {s.paper_number}" + (f" ± {s.paper_interval}" if s.paper_interval is not None else "") \
            + f" ({s.source.split(';')[0]})"
        lines = [first, second]
        if self.dry:
            length = (f"{self.iterations} meta-iterations of one task, {self.test_episodes} test episodes"
                      if s.episodic else f"{self.epochs} epoch of {DRY_STEPS} steps at batch {DRY_BATCH}, "
                      f"{DRY_SEEDS} seeds")
            lines.append(f"DRY RUN (KDLAB_DRY_RUN=1): FakeData of the real shapes, random teachers, {length}: "
                         "the numbers mean nothing, the path is what is tested")
        return "\n".join(lines)
