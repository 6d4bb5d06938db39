"""What a reproduce request may ask, and the data of a setting: the real sets, or FakeData of their shapes."""
import torch

from .. import recipes
from ..errors import ParameterError

def check_request(names, *, seeds=1, epochs=None, steps=2, batch=None, checkpoint_every=None):
    """The settings asked for (`all` = every one), or one ParameterError naming what is allowed."""
    names = list(names) or ["all"]
    chosen = recipes.names() if names == ["all"] else [recipes.get(n).name for n in names]
    for name, value, low in (("--seeds", seeds, 1), ("--epochs", epochs, 1), ("--steps", steps, 1),
                             ("--batch", batch, 1), ("--checkpoint-every", checkpoint_every, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise ParameterError(name, value, f"an integer >= {low}" + (" (or leave it out for the paper's length)"
                                                                        if name == "--epochs" else ""))
    return chosen


def _pixels(image):
    import numpy as np

    return torch.from_numpy(np.array(image, dtype=np.uint8))


def fake_classification(setting, n_train, n_test, seed):
    """FakeData of the setting's real shape and classes, normalised like the real set (a DataSplits)."""
    from torchvision.datasets import FakeData

    from ..data.base import DataSplits
    from ..data.cifar import MEAN_STD

    channels, height, width = setting.image_shape
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in MEAN_STD[setting.dataset])

    def split(n, offset):
        fake = FakeData(size=n, image_size=(channels, height, width), num_classes=setting.num_classes,
                        random_offset=seed * 1_000_003 + offset)
        x = torch.stack([_pixels(fake[i][0]) for i in range(n)]).view(n, height, width, channels)
        x = x.permute(0, 3, 1, 2).float().div_(255).sub_(mean).div_(std)
        return x, torch.arange(n) % setting.num_classes   # every class present, so heads see all labels

    (x_train, y_train), (x_test, y_test) = split(n_train, 0), split(n_test, 500_000)
    return DataSplits(f"fake {setting.dataset}", x_train, y_train, x_test, y_test, setting.num_classes,
                      setting.image_shape)


def fake_fewshot(setting, seed):
    """A FewShotDataset of FakeData images (the real shape): `ways` classes per split, enough per class."""
    from torchvision.datasets import FakeData

    from ..data.fewshot_base import FewShotDataset

    channels, height, width = setting.image_shape
    per_class, classes = setting.shots + setting.queries, 3 * setting.ways
    fake = FakeData(size=per_class * classes, image_size=setting.image_shape, num_classes=classes,
                    random_offset=seed * 1_000_003)
    images = torch.stack([_pixels(fake[i][0]) for i in range(len(fake))]).view(-1, height, width, channels)
    images = images.permute(0, 3, 1, 2)
    labels = torch.arange(classes).repeat_interleave(per_class)
    ids = list(range(classes))
    splits = {"train": ids[:setting.ways], "val": ids[setting.ways:2 * setting.ways], "test": ids[2 * setting.ways:]}
    return FewShotDataset(f"fake {setting.dataset}", images.float() / 255, labels, [f"c{i}" for i in ids],
                          ["fake"] * classes, splits)


def load_data(setting, device, *, dry_run, steps=2, batch=None, seed=0):
    """The setting's data: the real set (`kdlab.data.load`; offline, a DatasetUnavailableError naming the
    fix) or, for the dry run, FakeData with `steps` batches (a quiz share more for MetaDistil)."""
    if dry_run:
        if setting.episodic:
            return fake_fewshot(setting, seed)
        batch = batch or setting.batch_size
        quiz = setting.knobs.get("quiz_batch_size") or 0 if "quiz_fraction" in setting.knobs else 0
        data = fake_classification(setting, steps * batch + quiz, min(batch, 64), seed)
        return data.to(device)
    from ..data import load

    return load(setting.dataset, device=device, **setting.dataset_options)


def augmentation(setting):
    if setting.augmentation == "none":
        return None
    from ..data.cifar import augment

    name = setting.dataset
    return lambda x, generator: augment(x, name, generator=generator)


