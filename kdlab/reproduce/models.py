"""The models and the registry method of a setting, and its teacher (trained once and cached, or random in a dry run)."""
import torch

from .. import cache, paths
from ..errors import ParameterError
from .data import augmentation

def make_model(name, num_classes, setting, seed=None, device="cpu"):
    """A model of `kdlab.models.create` or of the preprint's torchvision pair, with fresh weights."""
    if seed is not None:
        torch.manual_seed(seed)
    if name.startswith("torchvision:"):
        from ..models.torchvision_features import paper_student, paper_teacher

        arch = name.split(":", 1)[1]
        if arch == "mobilenet_v2":
            return paper_student(num_classes, seed=0 if seed is None else seed, device=device)
        if arch == "resnet101":
            return paper_teacher(num_classes, pretrained=False, log=lambda *a: None).to(device)
        raise ParameterError("model", name, "'torchvision:mobilenet_v2' or 'torchvision:resnet101'")
    from ..models import create

    if name == "conv4":
        from ..models.conv4 import Conv4

        return Conv4(in_channels=setting.image_shape[0], num_classes=num_classes,
                     image_size=setting.image_shape[1], **setting.model_options).to(device)
    return create(name, num_classes=num_classes).to(device)


def trained_teacher(setting, data, index, *, dry_run, seed, device, log=print):
    """Teacher number `index`: random weights in the dry run; else trained once with cross-entropy on the
    setting's data and recipe (`kdlab.train.fit`) and cached, keyed by its configuration."""
    classes = setting.ways if setting.episodic else setting.num_classes
    if dry_run:   # random weights; BatchNorm statistics of one FakeData batch, so deep teachers stay finite
        model = make_model(setting.teacher, classes, setting, seed=seed + 1000 * (index + 1), device=device)
        sample = data.split("train").images[:16] if setting.episodic else data.x_train[:32]
        with torch.no_grad():
            model.train()(sample.to(device))
        return model.eval()
    teacher_seed = index + 1 if setting.num_teachers > 1 else 0   # MMKD: trials 1, 2, 3
    spec = {"kind": "reproduce-teacher", "dataset": setting.dataset, **setting.dataset_options,
            "arch": setting.teacher, "epochs": setting.epochs, "lr": setting.lr, "batch": setting.batch_size,
            "schedule": setting.schedule, "milestones": setting.milestones, "seed": teacher_seed, "version": 1}
    if setting.episodic:
        spec.update(epochs=160, lr=0.05, batch=128, ways=setting.ways)
    path = paths.cache_dir() / f"reproduce-teacher-{setting.teacher.replace(':', '-')}-{cache.config_key(spec)}.pt"

    def build():
        from ..train import fit

        if setting.episodic:
            from ..train.pretrain import pretrain_teacher

            model = make_model(setting.teacher, data.split("train").num_classes, setting, teacher_seed, device)
            pretrain_teacher(data, model, epochs=160, ways=setting.ways, seed=teacher_seed)
        elif setting.teacher.startswith("torchvision:"):
            from ..models.torchvision_features import paper_teacher

            torch.manual_seed(teacher_seed)
            model = paper_teacher(setting.num_classes, pretrained=True).to(device)
            fit(model, data, epochs=5, lr=0.01, batch_size=128, seed=teacher_seed, augment=augmentation(setting))
        else:
            model = make_model(setting.teacher, classes, setting, teacher_seed, device)
            fit(model, data, epochs=setting.epochs, lr=setting.lr, batch_size=setting.batch_size,
                momentum=setting.momentum, weight_decay=setting.weight_decay, seed=teacher_seed,
                schedule=schedule(setting, setting.epochs), augment=augmentation(setting), progress=True)
        return {k: v.cpu() for k, v in model.state_dict().items()}

    state = cache.load_or_build(path, build, log=log)
    model = make_model(setting.teacher, classes, setting, device=device)
    model.load_state_dict(state)
    return model.eval()


def run_knobs(setting, length):
    """The method's knobs, with epoch-counted knobs scaled to a run of `length` epochs (a shortened run or
    the dry run keeps MetaDistil's frozen-teacher share, MetaDistiller's generator phases, DKD's warm-up share
    and CTKD's curriculum share)."""
    knobs = dict(setting.knobs)
    if setting.episodic or length == setting.epochs:
        return knobs
    if "freeze_epochs" in knobs:
        knobs["freeze_epochs"] = min(length - 1, round(knobs["freeze_epochs"] * length / setting.epochs))
    for name in ("warmup_epochs", "curriculum_epochs"):   # DKD's warm-up, CTKD's curriculum: the same share
        if name in knobs:
            knobs[name] = max(1, round(knobs[name] * length / setting.epochs))
    if setting.method == "metadistiller":
        knobs["meta_every"] = max(1, min(knobs["meta_every"], length // 2))
    return knobs


def build_method(setting, data, *, seed, length, dry_run, device, log=print):
    """The registry method with the setting's models (fresh student from `seed`) and knobs."""
    from ..methods import registry

    cls, knobs = registry.get(setting.method), run_knobs(setting, length)
    classes = setting.ways if setting.episodic else setting.num_classes
    teachers = [trained_teacher(setting, data, i, dry_run=dry_run, seed=seed, device=device, log=log)
                for i in range(setting.num_teachers if setting.teacher else 0)]
    student = make_model(setting.student, classes, setting, seed=seed, device=device)
    if setting.method == "metadistiller":
        from ..models.multi_exit import MultiExit

        options = dict(setting.model_options)
        student = MultiExit(student, options.pop("num_exits"), **options).to(device)
        return cls(student, **knobs)
    if setting.method == "maml":
        return cls(student, **knobs)
    if setting.method == "tsmd":
        return cls(teachers[0], student, **knobs)
    if setting.method == "mmkd":
        return cls(student, teachers, **knobs)
    return cls(student, teachers[0], **knobs)


def fit_options(setting, length):
    """The `kdlab.train.fit` options a setting fixes for a run of `length` epochs: lr, optimiser, momentum,
    weight decay, the lr schedule (the paper's milestones scaled to `length`) and the augmentation."""
    return dict(lr=setting.lr, optimizer=setting.optimizer, momentum=setting.momentum,
                weight_decay=setting.weight_decay, schedule=schedule(setting, length), augment=augmentation(setting))


def schedule(setting, length):
    """The lr factor per epoch: the paper's multi-step decay with its milestones scaled to `length`."""
    from ..train.schedules import schedule_factor, step_milestones

    if setting.schedule != "step":
        return schedule_factor(setting.schedule, length)
    milestones = step_milestones(length, setting.milestones, of=setting.epochs)
    return lambda epoch: 0.1 ** sum(epoch >= m for m in milestones)


