"""CIFAR-10 and CIFAR-100 through torchvision's own download code, returned as normalised tensors.

Files go to `<data root>/downloads/` (data root: `root`, else `KDLAB_DATA`, else the repository's
`data/`). Inputs are (N, 3, 32, 32) float32, normalised per channel with the usual statistics (CIFAR-100:
RepDistiller's values). Memory: the 50,000 training images take 0.6 GB as float32 at 32x32 and 4.2 GB at
84x84 (`resize=84`, the size one preprint uses); `train_size` keeps a stratified subset first.

Training-time augmentation (random 32x32 crop of the image padded by 4, horizontal flip) runs batched on
the device with `augment`, so no DataLoader or PIL is involved.
"""
import dataclasses
import tarfile

import torch
import torch.nn.functional as F

from .. import paths
from ..errors import DatasetUnavailableError, ParameterError
from .base import DataSplits, as_device, check_count, seeded_generator
from .registry import available, register

MEAN_STD = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4867, 0.4408), (0.2675, 0.2565, 0.2761)),
}
DISPLAY_NAMES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100"}
_RESIZE_CHUNK = 2048


def _torchvision_class(name):
    from torchvision import datasets  # torchvision is slow to import; only the online sets need it

    return {"cifar10": datasets.CIFAR10, "cifar100": datasets.CIFAR100}[name]


def unavailable_message(name, folder, reason):
    """The one message shown when CIFAR cannot be downloaded or read."""
    dataset = _torchvision_class(name)
    offline = ", ".join(repr(n) for n in available(offline_only=True))
    return (
        f"{DISPLAY_NAMES[name]} could not be downloaded or read ({reason}). kdlab looked for it in {folder}. "
        f"To place the files by hand, download {dataset.url} on a machine with internet access and put "
        f"{dataset.filename} (or the folder {dataset.base_folder}/ extracted from it) into {folder}; "
        f"set KDLAB_DATA or pass root= to use another data root. "
        f"Datasets that need no download: {offline}."
    )


def _read(name, folder):
    """The train and test torchvision datasets, downloading once; one DatasetUnavailableError on failure."""
    dataset = _torchvision_class(name)
    try:
        return dataset(folder, train=True, download=True), dataset(folder, train=False, download=True)
    except (OSError, RuntimeError, EOFError, tarfile.TarError) as error:  # URLError is an OSError
        reason = f"{type(error).__name__}: {error}"
        raise DatasetUnavailableError(unavailable_message(name, folder, reason)) from error


def normalise(images_uint8, name):
    """(N, 32, 32, 3) uint8 pixels -> (N, 3, 32, 32) float32, normalised with the dataset's mean/std."""
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in MEAN_STD[name])
    images = torch.as_tensor(images_uint8).permute(0, 3, 1, 2).float().div_(255.0)
    return images.sub_(mean).div_(std)


def resize_images(images, size):
    """Bilinear (antialiased) resize of (N, C, H, W) images to size x size, in chunks to bound memory."""
    return torch.cat([
        F.interpolate(chunk, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        for chunk in images.split(_RESIZE_CHUNK)
    ])


def _load(name, root, device, train_size, seed, resize):
    device = as_device(device)
    generator = seeded_generator(seed)
    if resize is not None:
        resize = check_count("resize", resize, 8, 512)
    folder = paths.downloads_dir(root)
    train, test = _read(name, folder)
    splits = DataSplits(
        name=name,
        x_train=normalise(train.data, name),
        y_train=torch.as_tensor(train.targets, dtype=torch.int64),
        x_test=normalise(test.data, name),
        y_test=torch.as_tensor(test.targets, dtype=torch.int64),
        num_classes=len(train.classes),
        input_shape=(3, 32, 32),
        class_names=list(train.classes),
    )
    if train_size is not None:
        splits = splits.subset_train(check_count("train_size", train_size, 1, splits.num_train), generator)
    if resize is not None and resize != 32:
        splits = dataclasses.replace(
            splits,
            x_train=resize_images(splits.x_train, resize),
            x_test=resize_images(splits.x_test, resize),
            input_shape=(3, resize, resize),
        )
    return splits.to(device)


@register("cifar10", offline=False, description="CIFAR-10: 50,000/10,000 32x32 colour images, 10 classes")
def load_cifar10(root=None, device="cpu", *, train_size=None, seed=0, resize=None):
    """CIFAR-10 as normalised `DataSplits`; `train_size` keeps a stratified subset, `resize` an image size."""
    return _load("cifar10", root, device, train_size, seed, resize)


@register("cifar100", offline=False, description="CIFAR-100: 50,000/10,000 32x32 colour images, 100 classes")
def load_cifar100(root=None, device="cpu", *, train_size=None, seed=0, resize=None):
    """CIFAR-100 as normalised `DataSplits`; `train_size` keeps a stratified subset, `resize` an image size."""
    return _load("cifar100", root, device, train_size, seed, resize)


def random_crop_flip(images, *, padding=4, fill=0.0, generator=None):
    """Per image: pad by `padding` with `fill`, crop back to the original size at a random offset, and
    flip horizontally with probability 1/2. Batched on the images' device; `fill` is a number or one
    value per channel. Deterministic given `generator` (which may live on the CPU or on the device).
    """
    padding = check_count("padding", padding, 0, min(images.shape[-2:]))
    batch, channels, height, width = images.shape
    fill = torch.as_tensor(fill, dtype=images.dtype, device=images.device).reshape(-1, 1, 1)
    padded = fill.expand(channels, height + 2 * padding, width + 2 * padding).repeat(batch, 1, 1, 1)
    padded[:, :, padding:padding + height, padding:padding + width] = images

    where = generator.device if generator is not None else images.device
    top = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=where).to(images.device)
    left = torch.randint(0, 2 * padding + 1, (batch,), generator=generator, device=where).to(images.device)
    flip = torch.rand(batch, generator=generator, device=where).to(images.device) < 0.5

    rows = top[:, None] + torch.arange(height, device=images.device)  # (B, H)
    cols = left[:, None] + torch.arange(width, device=images.device)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)  # a flipped crop reads its columns backwards
    return padded[
        torch.arange(batch, device=images.device)[:, None, None, None],
        torch.arange(channels, device=images.device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def augment(images, name="cifar100", *, padding=4, generator=None):
    """RepDistiller's training augmentation on normalised CIFAR tensors: RandomCrop(32, padding=4) and
    RandomHorizontalFlip. The padding is black in pixel space, i.e. -mean/std after normalisation.
    """
    if name not in MEAN_STD:
        raise ParameterError("name", name, "one of " + ", ".join(repr(n) for n in MEAN_STD))
    mean, std = (torch.tensor(v) for v in MEAN_STD[name])
    return random_crop_flip(images, padding=padding, fill=-mean / std, generator=generator)
