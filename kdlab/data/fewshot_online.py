"""Online few-shot sets: Omniglot, CIFAR-FS, FC100 (torchvision's own download code) and mini-ImageNet (files).

They need the internet once (or, for mini-ImageNet, files the user provides); downloads go to
`kdlab.paths.downloads_dir(root)` and prepared tensors to `kdlab.paths.cache_dir(root)`. When something
is missing they raise one `DatasetUnavailableError` that says what, where kdlab looked, how to get it,
and names the offline set `glyphs`. Class splits come from the files under `data/splits/`.

* `omniglot`: 1,623 characters from 50 alphabets, 20 drawings each, resized to 28x28 (Lanczos) and
  inverted (ink = 1), as in MAML. Split as MAML's code does: characters shuffled with a fixed seed,
  1,100 for meta-train, the next 100 for meta-val, the remaining 423 for meta-test (MAML's "1,200
  training characters" are these 1,100 + 100). With `rotations=True` each character at 0/90/180/270
  degrees is its own class; the rotations of a character always share its split.
* `cifar_fs` (Bertinetto et al. 2019) and `fc100` (Oreshkin et al. 2018): CIFAR-100's 60,000 images
  (train + test, 600 per class) with the standard 64/16/20 and 60/20/20 class splits; the "alphabet" of a
  class is its CIFAR-100 superclass (FC100 splits by superclass: 12/4/4).
* `mini_imagenet` (Vinyals et al. 2016, split of Ravi & Larochelle 2017: 64/16/20 classes of 600 images)
  from a folder the user provides, resized to 84x84.

Images are float32 in [0, 1] with no mean/std normalisation (models normalise if they want to).
"""
import urllib.error
from pathlib import Path

import numpy as np
import torch

from kdlab.cache import config_key, load_or_build
from kdlab.errors import DatasetUnavailableError, ParameterError
from kdlab.paths import cache_dir, downloads_dir, splits_dir

from .base import resolve_device
from .fewshot_base import SPLITS, FewShotDataset, consecutive_splits

try:
    from .registry import register
except ImportError:  # the registry is optional: the loaders work on their own
    def register(*args, **kwargs):
        return lambda loader: loader

OFFLINE_HINT = ("Offline, use the few-shot set 'glyphs' instead (DATASET = 'glyphs', or "
                "kdlab.data.glyphs.load_glyphs()): it is rendered from fonts every install has.")
OMNIGLOT_SPLIT_SEED = 1
OMNIGLOT_SPLIT_SIZES = {"train": 1100, "val": 100}  # the rest (423 characters) is meta-test
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def unavailable(name, missing, looked_in, how_to_get):
    """The one error an online set raises when it cannot be loaded here."""
    return DatasetUnavailableError(
        f"The few-shot set {name!r} is not available: {missing}. Looked in {looked_in}. "
        f"To get it: {how_to_get}. {OFFLINE_HINT}"
    )


def _download(name, make_dataset, where, source):
    """Call a torchvision dataset constructor; turn "no network / missing files" into DatasetUnavailableError."""
    try:
        return make_dataset()
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        raise unavailable(
            name, f"torchvision could not download or read it ({type(error).__name__}: {error})", where,
            f"run once with internet access (torchvision downloads {source} into {where}), or copy those "
            f"files there by hand",
        ) from error


def _check_int_range(name, value, low, high):
    if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
        raise ParameterError(name, value, f"an integer from {low} to {high}")
    return value


def read_split_file(path):
    """Class names from a split file: one per line; '#' starts a comment; blank lines are skipped."""
    names = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            names.append(name)
    return names


def read_split_dir(name):
    """{'train': [...], 'val': [...], 'test': [...]} from data/splits/<name>/<split>.txt."""
    return {split: read_split_file(splits_dir() / name / f"{split}.txt") for split in SPLITS}


def cifar100_superclasses():
    """Fine class name -> CIFAR-100 superclass, from data/splits/cifar100_superclasses.txt."""
    superclass_of = {}
    for line in read_split_file(splits_dir() / "cifar100_superclasses.txt"):
        superclass, members = line.split(":", 1)
        for member in members.split():
            superclass_of[member] = superclass.strip()
    return superclass_of


def _dataset_from_split_names(name, images, labels, class_names, groups, split_names, info):
    """Assemble a FewShotDataset whose classes are ordered train, val, test as in the split files."""
    index_of = {c: i for i, c in enumerate(class_names)}
    unknown = [c for split in SPLITS for c in split_names[split] if c not in index_of]
    if unknown:
        raise ValueError(f"{name}: split files name classes the data lacks: {unknown[:5]}")
    order = [index_of[c] for split in SPLITS for c in split_names[split]]
    new_id = {old: new for new, old in enumerate(order)}
    keep = np.isin(labels, order)
    relabelled = np.array([new_id[label] for label in labels[keep]], dtype=np.int64)
    splits = consecutive_splits({split: len(split_names[split]) for split in SPLITS})
    return FewShotDataset(name, images[torch.from_numpy(keep)], torch.from_numpy(relabelled),
                          [class_names[i] for i in order], [groups[i] for i in order], splits, info)


def _uint8_to_float(images):
    """(N, H, W[, C]) uint8 numpy -> (N, C, H, W) float32 tensor in [0, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(images))
    if tensor.dim() == 3:
        tensor = tensor[:, None]
    else:
        tensor = tensor.permute(0, 3, 1, 2)
    return tensor.float().div_(255)


# ----------------------------------------------------------------------------------------------------
# Omniglot


def _omniglot_state(root, image_size, download):
    from PIL import Image
    from torchvision.datasets import Omniglot

    where = downloads_dir(root)
    folders = []
    for background in (True, False):
        dataset = _download("omniglot", lambda: Omniglot(str(where), background=background, download=download),
                            where / "omniglot-py", "images_background.zip and images_evaluation.zip")
        folders.append(Path(dataset.target_folder))
    images, labels, names, alphabets = [], [], [], []
    for folder in folders:
        for alphabet in sorted(p for p in folder.iterdir() if p.is_dir()):
            for character in sorted(p for p in alphabet.iterdir() if p.is_dir()):
                for png in sorted(character.glob("*.png")):
                    with Image.open(png) as drawing:
                        small = drawing.convert("L").resize((image_size, image_size), Image.LANCZOS)
                    images.append(255 - np.asarray(small))
                    labels.append(len(names))
                names.append(f"{alphabet.name}/{character.name}")
                alphabets.append(alphabet.name)
    order = np.random.default_rng(OMNIGLOT_SPLIT_SEED).permutation(len(names)).tolist()
    cut = OMNIGLOT_SPLIT_SIZES["train"], OMNIGLOT_SPLIT_SIZES["train"] + OMNIGLOT_SPLIT_SIZES["val"]
    splits = {"train": sorted(order[:cut[0]]), "val": sorted(order[cut[0]:cut[1]]), "test": sorted(order[cut[1]:])}
    return {"name": "omniglot", "images_uint8": torch.from_numpy(np.stack(images))[:, None],
            "labels": torch.tensor(labels), "class_names": names, "alphabets": alphabets, "splits": splits,
            "info": {"image_size": image_size, "split": "MAML: 1100 / 100 / 423 characters, seed 1"}}


def _with_rotations(data):
    """Every class at 0, 90, 180 and 270 degrees becomes four classes (4k + r), in the same split."""
    images = torch.cat([torch.rot90(data.images, r, dims=(2, 3)) for r in range(4)])
    labels = torch.cat([data.labels * 4 + r for r in range(4)])
    names = [f"{name} rot{90 * r}" for name in data.class_names for r in range(4)]
    alphabets = [a for a in data.alphabets for _ in range(4)]
    splits = {s: [4 * c + r for c in ids for r in range(4)] for s, ids in data.splits.items()}
    return FewShotDataset(data.name, images, labels, names, alphabets, splits, {**data.info, "rotations": True})


@register("omniglot", offline=False, kind="fewshot",
          description="Omniglot characters (torchvision download), 28x28, MAML split with 90-degree rotations")
def load_omniglot(root=None, device="cpu", *, image_size=28, rotations=True, download=True):
    """Omniglot background + evaluation sets as one few-shot set with MAML's character split.

    About 0.4 GB in memory with rotations (130k images of 28x28 float32).
    """
    _check_int_range("image_size", image_size, 8, 105)
    path = cache_dir(root) / f"omniglot-{config_key({'image_size': image_size, 'v': 1})}.pt"
    data = FewShotDataset.from_state(load_or_build(path, lambda: _omniglot_state(root, image_size, download)))
    return (_with_rotations(data) if rotations else data).to(resolve_device(device))


# ----------------------------------------------------------------------------------------------------
# CIFAR-FS and FC100


def _cifar100(name, root, download):
    """CIFAR-100's train + test images (N, 32, 32, 3) uint8, fine labels, and class names."""
    from torchvision.datasets import CIFAR100

    where = downloads_dir(root)
    parts = [_download(name, lambda: CIFAR100(str(where), train=train, download=download), where,
                       "cifar-100-python.tar.gz (169 MB)") for train in (True, False)]
    images = np.concatenate([p.data for p in parts])
    labels = np.concatenate([np.asarray(p.targets) for p in parts])
    return images, labels, list(parts[0].classes)


def _cifar_fewshot(name, root, device, download):
    images, labels, class_names = _cifar100(name, root, download)
    superclass_of = cifar100_superclasses()
    groups = [superclass_of[c] for c in class_names]
    info = {"source": "torchvision CIFAR100 train + test", "split_files": f"data/splits/{name}/"}
    data = _dataset_from_split_names(name, _uint8_to_float(images), labels, class_names, groups,
                                     read_split_dir(name), info)
    return data.to(resolve_device(device))


@register("cifar_fs", offline=False, kind="fewshot",
          description="CIFAR-FS: CIFAR-100 (torchvision download) split 64/16/20 classes (Bertinetto et al. 2019)")
def load_cifar_fs(root=None, device="cpu", *, download=True):
    """CIFAR-FS: 100 CIFAR-100 classes of 600 32x32 colour images, split 64 / 16 / 20."""
    return _cifar_fewshot("cifar_fs", root, device, download)


@register("fc100", offline=False, kind="fewshot",
          description="FC100: CIFAR-100 (torchvision download) split by superclass 60/20/20 (Oreshkin et al. 2018)")
def load_fc100(root=None, device="cpu", *, download=True):
    """FC100: CIFAR-100 split by superclass (12 / 4 / 4 superclasses = 60 / 20 / 20 classes)."""
    return _cifar_fewshot("fc100", root, device, download)


# ----------------------------------------------------------------------------------------------------
# mini-ImageNet


MINI_IMAGENET_HOW = (
    "mini-ImageNet cannot be downloaded automatically (ImageNet's terms of use). Get the 60,000 images of "
    "Ravi & Larochelle's split (e.g. with the tools and links collected at "
    "github.com/yaoyao-liu/mini-imagenet-tools) and put them in that folder, one folder per class "
    "(<wnid>/*.jpg, optionally under train/ val/ test/) or as images/<wnid>XXXXXXXX.jpg as in the original "
    "CSV release; or pass folder=... to load_mini_imagenet"
)


def find_mini_imagenet_files(folder, wnids):
    """{wnid: sorted image paths} for the layouts MINI_IMAGENET_HOW describes."""
    found = {wnid: [] for wnid in wnids}
    folder = Path(folder)
    if not folder.is_dir():
        return found
    class_dirs = [folder] + [folder / s for s in ("train", "val", "test")]
    for parent in class_dirs:
        for wnid in wnids:
            if (parent / wnid).is_dir():
                found[wnid] += [p for p in (parent / wnid).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES]
    if (folder / "images").is_dir():
        for path in (folder / "images").iterdir():
            if path.suffix.lower() in IMAGE_SUFFIXES and path.name[:9] in found:
                found[path.name[:9]].append(path)
    return {wnid: sorted(paths) for wnid, paths in found.items()}


def _mini_imagenet_state(files, split_names, image_size, samples_per_class):
    from PIL import Image

    images, labels, wnids = [], [], [w for split in SPLITS for w in split_names[split]]
    for label, wnid in enumerate(wnids):
        for path in files[wnid][:samples_per_class]:
            with Image.open(path) as photo:
                images.append(np.asarray(photo.convert("RGB").resize((image_size, image_size), Image.BILINEAR)))
            labels.append(label)
    splits = consecutive_splits({split: len(split_names[split]) for split in SPLITS})
    return {"name": "mini_imagenet", "images_uint8": torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2),
            "labels": torch.tensor(labels), "class_names": wnids, "alphabets": ["ImageNet"] * len(wnids),
            "splits": splits, "info": {"split": "Ravi & Larochelle 2017", "image_size": image_size}}


@register("mini_imagenet", offline=False, kind="fewshot",
          description="mini-ImageNet from your own copy of the images, Ravi & Larochelle split 64/16/20")
def load_mini_imagenet(root=None, device="cpu", *, folder=None, image_size=84, samples_per_class=600):
    """mini-ImageNet from `folder` (default `<data root>/downloads/mini_imagenet`), resized to `image_size`.

    Classes are named by their ImageNet wnid (the split files give readable names in comments); the split
    is Ravi & Larochelle's (data/splits/mini_imagenet). All 600 images per class at 84x84 take about 5 GB
    as float32: lower `samples_per_class` on a laptop.
    """
    _check_int_range("image_size", image_size, 8, 512)
    _check_int_range("samples_per_class", samples_per_class, 2, 600)
    folder = Path(folder) if folder is not None else downloads_dir(root) / "mini_imagenet"
    split_names = read_split_dir("mini_imagenet")
    files = find_mini_imagenet_files(folder, [w for split in SPLITS for w in split_names[split]])
    short = [w for w, paths in files.items() if len(paths) < samples_per_class]
    if short:
        counts = ", ".join(f"{w} ({len(files[w])} images)" for w in short[:3])
        raise unavailable("mini_imagenet", f"{len(short)} of its 100 classes have fewer than {samples_per_class} "
                          f"images, e.g. {counts}", folder, MINI_IMAGENET_HOW)
    key = config_key({"folder": str(folder.resolve()), "image_size": image_size,
                      "samples_per_class": samples_per_class, "files": sum(len(f) for f in files.values())})
    state = load_or_build(cache_dir(root) / f"mini_imagenet-{key}.pt",
                          lambda: _mini_imagenet_state(files, split_names, image_size, samples_per_class))
    return FewShotDataset.from_state(state).to(resolve_device(device))
