"""The papers' headline settings as data: one frozen `Setting` per number that `kdlab reproduce` chases.

    from kdlab import recipes
    recipes.names()                     # ['kd_resnet56_resnet20', ...]
    recipes.get("kd_vgg13_vgg8")        # Setting(dataset='cifar100', teacher='vgg13', ...)
    print(recipes.table())              # the Markdown table of every setting

Every number was read from the paper text (table and row given in `source`). Where the paper does not
state a value, the setting takes the official code's (or the kit's) choice and says so in `note`.
Models are names of `kdlab.models.create`, or "torchvision:<name>" for the preprint's torchvision pair
(`kdlab.models.torchvision_features`). `knobs` are constructor keyword arguments of the registry method
(`kdlab.methods.registry.get(method)(..., **knobs)`); `ALPHA` is always the distillation weight.

Sources (papers): Hinton KD numbers are those of CRD (Tian et al., ICLR 2020, Table 1), reprinted as the
"KD (2015)" row of MetaDistil's CIFAR-100 table; MetaDistil (Zhou et al., ACL 2022) Table 2; MetaDistiller
(Liu et al., ECCV 2020) Tables 1 and 4; MMKD (Zhang et al., ICME 2023) Table I; TSMD (Wu et al., WACV 2023)
Table 1; MAML (Finn et al., ICML 2017) Tables 1 and 2; the 2025 feature-distillation preprint Table 3.
"""
from dataclasses import asdict, dataclass, field
from typing import Optional

from .errors import ParameterError

REPDISTILLER_MILESTONES = (150, 180, 210)  # of 240 epochs, lr x 0.1 at each


@dataclass(frozen=True)
class Setting:
    """One headline setting. Classification settings train `epochs` epochs with `kdlab.train.fit`; episodic
    ones (`ways` set) train `iterations` meta-iterations of `meta_batch` tasks with `fit_episodes`."""

    name: str
    paper: str
    method: str                      # a kdlab.methods.registry name
    dataset: str                     # a kdlab.data.registry name
    student: str                     # a kdlab.models name, or "torchvision:<name>"
    teacher: Optional[str]           # None for self-distillation and plain MAML
    paper_number: float
    paper_interval: Optional[float]  # the ± the paper prints, if any
    metric: str
    source: str                      # table and row (and column) where the number is printed
    epochs: int = 0
    batch_size: int = 64
    optimizer: str = "sgd"
    lr: float = 0.05
    schedule: str = "step"           # "step" (x0.1 at `milestones`, of `epochs`), "cosine" or "constant"
    milestones: tuple = REPDISTILLER_MILESTONES
    weight_decay: float = 5e-4
    momentum: float = 0.9
    augmentation: str = "crop_flip"  # RandomCrop(32, pad 4) + HorizontalFlip on the device; "none"
    knobs: dict = field(default_factory=dict)
    num_teachers: int = 1
    dataset_options: dict = field(default_factory=dict)   # e.g. {"resize": 84}
    model_options: dict = field(default_factory=dict)     # e.g. MetaDistiller's exits
    # episodic settings
    ways: Optional[int] = None
    shots: Optional[int] = None
    queries: Optional[int] = None
    meta_batch: Optional[int] = None
    iterations: Optional[int] = None
    test_episodes: Optional[int] = None
    image_shape: tuple = (3, 32, 32)  # (C, H, W) of one input
    num_classes: int = 100            # classes of the dataset (classification) or of the meta-train split
    note: str = ""

    @property
    def episodic(self):
        return self.ways is not None

    def as_row(self):
        """The setting as a flat dict of plain values (for tables and JSON)."""
        return {k: (dict(v) if isinstance(v, dict) else v) for k, v in asdict(self).items()}


def _kd(name, teacher, student, number, teacher_number, column):
    return Setting(
        name=name, paper="KD (Hinton et al. 2015), as run by CRD / RepDistiller", method="kd", dataset="cifar100",
        student=student, teacher=teacher, paper_number=number, paper_interval=None,
        metric="CIFAR-100 top-1 test accuracy (%), last epoch, mean of runs",
        source=f"CRD (Tian et al. 2020) Table 1, row KD, column {column} (teacher {teacher_number}); "
               "reprinted in MetaDistil Table 2 row 'KD (2015)' where the pair is there",
        epochs=240, batch_size=64, lr=0.05, knobs={"alpha": 0.9, "temperature": 4.0},
        note="RepDistiller's command `--distill kd -r 0.1 -a 0.9 -b 0 --kd_T 4`: CE weight 0.1, KD weight 0.9. "
             "The teacher is trained with the same recipe (cross-entropy).")


def _mmkd(name, teacher, student, number, interval, column):
    lr = 0.01 if student in ("mobile_half", "shufflenet_v1") else 0.05
    return Setting(
        name=name, paper="MMKD (Zhang, Chen, Wang, ICME 2023)", method="mmkd", dataset="cifar100",
        student=student, teacher=teacher, num_teachers=3, paper_number=number, paper_interval=interval,
        metric="CIFAR-100 top-1 test accuracy (%), best epoch, mean ± std of 3 trials",
        source=f"MMKD Table I, row MMKD, column {column}",
        epochs=240, batch_size=64, lr=lr,
        knobs={"temperature": 4.0, "alpha": 1.0, "beta": 100.0, "gamma": 1.0, "meta_every": 5, "buffer_size": 256,
               "meta_lr": 1e-3, "meta_weight_decay": 1e-4, "feature_index": -2},
        note=f"Three {teacher} teachers from different seeds. The paper's text says lr 0.1; the official code "
             "uses 0.05 (0.01 forced for MobileNetV2 and ShuffleNetV1) with Nesterov momentum, kept here without "
             "Nesterov (the kit's SGD). The code saves the best epoch, which is what the table prints; "
             "`reproduce` reports the last epoch and the best.")


def _tsmd(shots, number, interval):
    return Setting(
        name=f"tsmd_miniimagenet_5w{shots}s", paper="TSMD (Wu et al., WACV 2023)", method="tsmd",
        dataset="mini_imagenet", student="conv4", teacher="resnet32x4", paper_number=number,
        paper_interval=interval, metric="mini-ImageNet 5-way test accuracy (%), 800 episodes, 95 % interval",
        source=f"TSMD Table 1, row Ours, column mini-ImageNet {shots}-shot",
        optimizer="adam", lr=1e-3, schedule="constant", weight_decay=0.0, momentum=0.0, augmentation="none",
        knobs={"variant": "ours", "meta_lr": 1e-3, "teacher_meta_lr": 1e-5, "inner_steps": 5, "inner_lr": 0.01,
               "teacher_inner_steps": 5, "teacher_first_order": True, "kd_weight": 1.0, "temperature": 1.0},
        model_options={"hidden": 32, "variant": "miniimagenet"},
        ways=5, shots=shots, queries=15, meta_batch=4, iterations=10_000, test_episodes=800,
        image_shape=(3, 84, 84), num_classes=64,
        note="The paper's teacher is a ResNet-50 pre-trained 160 epochs on the meta-train classes; the kit has no "
             "ImageNet ResNet-50 and uses resnet32x4 (declared substitute). Adam 1e-3 (student) and 1e-5 "
             "(teacher) and 5 inner steps are the paper's; 'about 600 epochs' is not given in iterations, so "
             "MAML's meta-batch 4 and 10,000 iterations are the kit's choice; the teacher's meta-gradient is "
             "first order for memory. The paper's crop/flip/colour-jitter augmentation is not applied.")


SETTINGS = {s.name: s for s in (
    _kd("kd_resnet56_resnet20", "resnet56", "resnet20", 70.66, 72.34, "resnet56 -> resnet20"),
    _kd("kd_resnet32x4_resnet8x4", "resnet32x4", "resnet8x4", 73.33, 79.42, "resnet32x4 -> resnet8x4"),
    _kd("kd_wrn40_2_wrn16_2", "wrn_40_2", "wrn_16_2", 74.92, 75.61, "wrn-40-2 -> wrn-16-2"),
    _kd("kd_vgg13_vgg8", "vgg13", "vgg8", 72.98, 74.64, "vgg13 -> vgg8"),
    Setting(
        name="metadistil_resnet56_resnet20", paper="MetaDistil (Zhou, Xu, McAuley, ACL 2022)", method="metadistil",
        dataset="cifar100", student="resnet20", teacher="resnet56", paper_number=71.25, paper_interval=None,
        metric="CIFAR-100 top-1 test accuracy (%)",
        source="MetaDistil Table 2 (CIFAR-100 test set), row 'MetaDistil (ours)', column ResNet-56 -> ResNet-20 "
               "(the trackers call it Table 3; w/o pilot update: 71.02)",
        epochs=240, batch_size=64, lr=0.05,
        knobs={"teacher_lr": 1e-4, "alpha": 0.9, "temperature": 4.0, "quiz_fraction": 0.1, "quiz_batch_size": 64,
               "pilot_update": True, "freeze_epochs": 150},
        note="RepDistiller's hyper-parameters (paper); the teacher lr is grid-searched in {1e-4, 2e-4, 3e-4} and "
             "the winner is not printed (1e-4 here); quiz = 10 % of the training set (9:1); the official code "
             "freezes the teacher for the first 150 epochs."),
    Setting(
        name="metadistiller_wrn16_1", paper="MetaDistiller (Liu et al., ECCV 2020)", method="metadistiller",
        dataset="cifar100", student="wrn_16_1", teacher=None, paper_number=70.30, paper_interval=None,
        metric="CIFAR-100 top-1 test accuracy (%) of the final exit",
        source="MetaDistiller Table 1, row WideResNet16-1, column Final Output MD (SD 69.42, baseline 67.58)",
        epochs=200, batch_size=128, lr=0.1, milestones=(80, 140),
        knobs={"mode": "md", "alpha": 0.5, "temperature": 1.0, "meta_every": 5, "meta_lr": 0.1},
        model_options={"num_exits": 3, "head": "bottleneck"},
        note="Paper section 4.1: SGD lr 0.1 (student), Adam lr 0.1 (label generator), 200 epochs, x0.1 at 80 and "
             "140, alpha 0.5, tau 1, generator every M = 5 epochs; three-stage networks get 3 exits. Batch size, "
             "weight decay and momentum are not stated (128, 5e-4, 0.9 here)."),
    Setting(
        name="metadistiller_resnet18", paper="MetaDistiller (Liu et al., ECCV 2020)", method="metadistiller",
        dataset="cifar100", student="resnet18", teacher=None, paper_number=79.05, paper_interval=None,
        metric="CIFAR-100 top-1 test accuracy (%) of the final exit",
        source="MetaDistiller Table 4, row ResNet18 'MD (Hard+Better Soft)', column Final Output (DSN 78.01, "
               "SD 78.25; the same 79.05 in Table 1)",
        epochs=200, batch_size=128, lr=0.1, milestones=(80, 140),
        knobs={"mode": "md", "alpha": 0.5, "temperature": 1.0, "meta_every": 5, "meta_lr": 0.1},
        model_options={"num_exits": 4, "head": "bottleneck"},
        note="The ablation of Table 4 on the CIFAR ResNet-18 of self-distillation (3x3 stem, four stages of two "
             "BasicBlocks): section 4.2 divides ResNets into four stages with bottleneck exits after the first "
             "three. Training as section 4.1 (the WRN row's recipe); batch, weight decay and momentum are not "
             "stated. DSN and SD are `mode='dsn'` and `mode='sd'` of the same method."),
    _mmkd("mmkd_vgg13_vgg8", "vgg13", "vgg8", 74.86, 0.07, "VGG13 -> VGG8"),
    _mmkd("mmkd_resnet32x4_mobilenetv2", "resnet32x4", "mobile_half", 69.70, 0.04, "ResNet32x4 -> MobileNetV2"),
    _mmkd("mmkd_resnet32x4_vgg8", "resnet32x4", "vgg8", 75.66, 0.18, "ResNet32x4 -> VGG8"),
    _mmkd("mmkd_wrn40_2_mobilenetv2", "wrn_40_2", "mobile_half", 71.23, 0.03, "WRN-40-2 -> MobileNetV2"),
    _mmkd("mmkd_wrn40_2_wrn40_1", "wrn_40_2", "wrn_40_1", 75.61, 0.11, "WRN-40-2 -> WRN-40-1"),
    _mmkd("mmkd_resnet20x4_shufflenetv1", "resnet20x4", "shufflenet_v1", 77.76, 0.35, "ResNet20x4 -> ShuffleNetV1"),
    _tsmd(1, 51.45, 1.80),
    _tsmd(5, 63.80, 0.85),
    Setting(
        name="maml_omniglot_5w1s", paper="MAML (Finn, Abbeel, Levine, ICML 2017)", method="maml", dataset="omniglot",
        student="conv4", teacher=None, paper_number=98.7, paper_interval=0.4,
        metric="Omniglot 5-way 1-shot test accuracy (%), 95 % interval",
        source="MAML Table 1, row MAML, column 5-way 1-shot",
        optimizer="adam", lr=1e-3, schedule="constant", weight_decay=0.0, momentum=0.0, augmentation="none",
        knobs={"inner_steps": 1, "inner_lr": 0.4, "meta_lr": 1e-3, "first_order": False, "bn": "transductive"},
        model_options={"hidden": 64, "variant": "omniglot"},
        ways=5, shots=1, queries=1, meta_batch=32, iterations=60_000, test_episodes=600,
        image_shape=(1, 28, 28), num_classes=1200,
        note="Official README command: 1 inner step at 0.4 (10 at test), meta-batch 32, Adam 1e-3, 60,000 "
             "iterations, 64 filters, strided convolutions; K query images per class as the code."),
    Setting(
        name="maml_miniimagenet_5w1s", paper="MAML (Finn, Abbeel, Levine, ICML 2017)", method="maml",
        dataset="mini_imagenet", student="conv4", teacher=None, paper_number=48.70, paper_interval=1.84,
        metric="mini-ImageNet 5-way 1-shot test accuracy (%), 600 episodes, 95 % interval",
        source="MAML Table 2, row MAML, column 5-way 1-shot",
        optimizer="adam", lr=1e-3, schedule="constant", weight_decay=0.0, momentum=0.0, augmentation="none",
        knobs={"inner_steps": 5, "inner_lr": 0.01, "meta_lr": 1e-3, "first_order": False, "bn": "transductive"},
        model_options={"hidden": 32, "variant": "miniimagenet"},
        ways=5, shots=1, queries=15, meta_batch=4, iterations=60_000, test_episodes=600,
        image_shape=(3, 84, 84), num_classes=64,
        note="Official README command: 5 inner steps at 0.01 (10 at test), meta-batch 4, 15 queries per class, "
             "Adam 1e-3, 60,000 iterations, 32 filters, max-pooling."),
    Setting(
        name="preprint_cifar10_fd_adapt", paper="Meta-learning adaptation phase feature distillation (preprint 2025)",
        method="feature_meta", dataset="cifar10", student="torchvision:mobilenet_v2", teacher="torchvision:resnet101",
        paper_number=88.63, paper_interval=None, metric="CIFAR-10 (84x84) test accuracy (%)",
        source="preprint Table 3, row Exp 4 (50 epochs, BS=128), column Meta-Learning Adaptation "
               "(baseline 88.03, feature distillation 88.63)",
        epochs=50, batch_size=128, lr=0.05, schedule="cosine",
        knobs={"alpha": 0.7, "inner_steps": 1, "inner_lr": 0.01, "meta_every": 10, "student_layer": 2,
               "teacher_layer": 2, "amp": True},
        dataset_options={"resize": 84}, image_shape=(3, 84, 84), num_classes=10,
        note="Epochs and batch are the paper's; optimiser, lr, schedule and the adaptation's inner lr/frequency "
             "are not stated (the kit's notebook 07 choices: SGD 0.05 cosine, 1 inner step at 0.01 every 10 "
             "steps). Teacher: ImageNet ResNet-101 fine-tuned 5 epochs at 84x84 (kit's choice)."),
)}



def _dkd(name, teacher, student, number, kd_number, column, beta, config_file):
    return Setting(
        name=name, paper="DKD (Zhao, Cui, Song, Qiu, Liang, CVPR 2022)", method="dkd", dataset="cifar100",
        student=student, teacher=teacher, paper_number=number, paper_interval=None,
        metric="CIFAR-100 top-1 test accuracy (%)",
        source=f"mdistiller README (megvii-research/mdistiller), CIFAR-100 table, row DKD, column {column} "
               f"(KD {kd_number}); config configs/cifar100/dkd/{config_file}",
        epochs=240, batch_size=64, lr=0.05,
        knobs={"ce_weight": 1.0, "tckd_weight": 1.0, "nckd_weight": beta, "temperature": 4.0, "warmup_epochs": 20},
        note=f"mdistiller's defaults (CE 1, alpha 1, T 4, warm-up 20 epochs) with beta {beta:g} from the pair's "
             "config; its SOLVER block is RepDistiller's recipe (240 epochs, SGD 0.05, x0.1 at 150/180/210, wd "
             "5e-4, batch 64). Open: the README does not say whether the number is the last or the best epoch "
             "(the trainer logs both) nor how many runs it averages (the maintainers quote about +-0.3 run to "
             "run, mdistiller #7); the paper's own table was not re-checked (its text is not in the kit's "
             "papers). mdistiller distils from CRD's released teachers; `reproduce` trains its own. A shortened "
             "run scales the warm-up with its length.")


SETTINGS.update({s.name: s for s in (
    _dkd("dkd_resnet56_resnet20", "resnet56", "resnet20", 71.97, 70.66, "ResNet56 -> ResNet20", 2.0,
         "res56_res20.yaml"),
    _dkd("dkd_resnet32x4_resnet8x4", "resnet32x4", "resnet8x4", 76.32, 73.33, "ResNet32x4 -> ResNet8x4", 8.0,
         "res32x4_res8x4.yaml"),
    Setting(
        name="ctkd_resnet56_resnet20", paper="CTKD (Li et al., AAAI 2023)", method="ctkd", dataset="cifar100",
        student="resnet20", teacher="resnet56", paper_number=71.19, paper_interval=None,
        metric="CIFAR-100 top-1 test accuracy (%)",
        source="CTKD README (zhengli97/CTKD), Main Results, CIFAR-100 table, row +CTKD, column RN-56 -> RN-20 "
               "(KD 70.66)",
        epochs=240, batch_size=64, lr=0.05,
        knobs={"alpha": 0.9, "temperature_range": (1.0, 21.0), "curriculum_epochs": 10, "lambda_max": 1.0,
               "temperature_module": "global"},
        note="scripts/run_cifar_distill.sh: `--distill kd -r 0.1 -a 0.9 -b 0 --batch_size 64 --learning_rate 0.05 "
             "--have_mlp 1 --mlp_name global --cosine_decay 1 --decay_max 0 --decay_min -1 --decay_loops 10`, "
             "t_start 1 and t_end 20 by default (the range (1, 21)); 240 epochs, x0.1 at 150/180/210, momentum "
             "0.9, wd 5e-4 (train_student.py defaults); the temperature shares the student's SGD, weight decay "
             "included. Open: last or best epoch (the script logs both) and the number of runs are not stated; "
             "the paper's table was not re-checked. A shortened run scales the curriculum with its length."),
)})


def names():
    return list(SETTINGS)


def get(name):
    """The Setting called `name`, or one ParameterError listing every setting."""
    if not isinstance(name, str) or name not in SETTINGS:
        raise ParameterError("SETTING", name, "one of " + ", ".join(SETTINGS))
    return SETTINGS[name]


def length(setting):
    """'240 epochs' or '60000 iterations'."""
    return f"{setting.iterations} it" if setting.episodic else f"{setting.epochs} ep"


def table(settings=None):
    """The recipe table in Markdown (setting, pair, dataset, length, batch, optimiser, schedule, paper number)."""
    rows = ["| setting | method | dataset | teacher -> student | length | batch | optimiser, lr, wd | schedule | "
            "paper | where |", "|---|---|---|---|---|---|---|---|---|---|"]
    for s in (SETTINGS.values() if settings is None else settings):
        teacher = f"{s.num_teachers} x {s.teacher}" if s.num_teachers > 1 else (s.teacher or "(none)")
        pair = f"{teacher} -> {s.student}"
        batch = f"{s.meta_batch} tasks ({s.ways}-way {s.shots}-shot)" if s.episodic else str(s.batch_size)
        schedule = ("x0.1 at " + "/".join(map(str, s.milestones))) if s.schedule == "step" else s.schedule
        number = f"{s.paper_number}" + (f" ± {s.paper_interval}" if s.paper_interval is not None else "")
        rows.append(f"| {s.name} | {s.method} | {s.dataset} | {pair} | {length(s)} | {batch} | "
                    f"{s.optimizer} {s.lr:g}, {s.weight_decay:g} | {schedule} | {number} | {s.source.split(';')[0]} |")
    return "\n".join(rows)
