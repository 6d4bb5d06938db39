"""The few-shot container every few-shot set returns: images, class ids, and three disjoint class splits.

A few-shot dataset is a pool of labelled images plus a partition of its *classes* (not its images) into
meta-train, meta-val and meta-test. Methods meta-learn on tasks drawn from the meta-train classes and are
scored on tasks drawn from classes they have never seen (meta-test). `kdlab.data.episodes` draws the tasks.
"""
from dataclasses import dataclass, field, replace

import torch

from kdlab.errors import ParameterError

SPLITS = ("train", "val", "test")
SPLIT_HELP = {"train": "meta-train", "val": "meta-val", "test": "meta-test"}


def consecutive_splits(counts):
    """Class ids 0..n-1 handed out in SPLITS order: {'train': [0..a-1], 'val': [a..a+b-1], 'test': [...]}."""
    splits, start = {}, 0
    for split in SPLITS:
        splits[split] = list(range(start, start + counts[split]))
        start += counts[split]
    return splits


def check_split_name(split):
    """Return `split` if it is one of SPLITS, else raise one ParameterError naming the allowed values."""
    if split not in SPLITS:
        raise ParameterError("split", split, "one of 'train' (meta-train), 'val' (meta-val), 'test' (meta-test)")
    return split


@dataclass
class FewShotSplit:
    """The images of one class split, with their classes' global ids and an index of images per class.

    `labels` keep the dataset's global class ids; `local_labels` renumber the split's classes 0..n-1
    (in `class_ids` order), for training an ordinary classifier on the meta-train classes (a teacher or
    a pre-trained backbone).
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    class_ids: list
    class_names: list
    alphabets: list
    dataset_name: str = "?"

    def __post_init__(self):
        order = {class_id: local for local, class_id in enumerate(self.class_ids)}
        labels = self.labels.tolist()
        self.local_labels = torch.tensor([order[c] for c in labels], dtype=torch.long, device=self.labels.device)
        positions = {class_id: [] for class_id in self.class_ids}
        for position, class_id in enumerate(labels):
            positions[class_id].append(position)
        self.indices_by_class = {c: torch.tensor(p, dtype=torch.long) for c, p in positions.items()}

    @property
    def num_classes(self):
        return len(self.class_ids)

    @property
    def samples_per_class(self):
        """The fewest images any class of this split has (what an episode may draw per class)."""
        return min((len(p) for p in self.indices_by_class.values()), default=0)

    def __len__(self):
        return len(self.labels)

    def to(self, device):
        """A copy whose images and labels live on `device`."""
        return replace(self, images=self.images.to(device), labels=self.labels.to(device))

    def __repr__(self):
        return (f"FewShotSplit({self.dataset_name!r}, {self.name!r}: {self.num_classes} classes from "
                f"{len(set(self.alphabets))} alphabets, {len(self)} images {tuple(self.images.shape[1:])})")


@dataclass
class FewShotDataset:
    """Images (N, C, H, W) float32 in [0, 1], labels (N,) int64 class ids, and disjoint class splits.

    Class `k` is named `class_names[k]` and belongs to alphabet (group) `alphabets[k]`; `splits` maps
    'train', 'val' and 'test' (meta-train / meta-val / meta-test) to lists of class ids. `info` holds the
    generation config and provenance (plain values only, so the dataset can be cached).
    """

    name: str
    images: torch.Tensor
    labels: torch.Tensor
    class_names: list
    alphabets: list
    splits: dict
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        self._check()

    def _check(self):
        if self.images.dim() != 4 or self.images.dtype != torch.float32:
            raise ValueError(f"{self.name}: images must be a float32 (N, C, H, W) tensor, got "
                             f"{self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],) or self.labels.dtype != torch.long:
            raise ValueError(f"{self.name}: labels must be an int64 tensor of shape ({self.images.shape[0]},)")
        if len(self.class_names) != len(self.alphabets):
            raise ValueError(f"{self.name}: one alphabet per class name is needed")
        if set(self.splits) != set(SPLITS):
            raise ValueError(f"{self.name}: splits must be exactly {SPLITS}, got {sorted(self.splits)}")
        seen = {}
        for split, class_ids in self.splits.items():
            for class_id in class_ids:
                if not 0 <= class_id < len(self.class_names):
                    raise ValueError(f"{self.name}: split {split!r} names class id {class_id}, out of range")
                if class_id in seen:
                    raise ValueError(f"{self.name}: class {self.class_names[class_id]!r} is in both "
                                     f"{seen[class_id]!r} and {split!r}; splits must be disjoint")
                seen[class_id] = split

    @property
    def num_classes(self):
        return len(self.class_names)

    @property
    def image_shape(self):
        return tuple(self.images.shape[1:])

    @property
    def device(self):
        return self.images.device

    def split(self, name):
        """The images and classes of split `name` ('train', 'val' or 'test')."""
        class_ids = list(self.splits[check_split_name(name)])
        wanted = torch.zeros(self.num_classes, dtype=torch.bool, device=self.labels.device)
        wanted[torch.tensor(class_ids, dtype=torch.long, device=self.labels.device)] = True
        rows = wanted[self.labels].nonzero().squeeze(1)
        return FewShotSplit(
            name=name,
            images=self.images[rows],
            labels=self.labels[rows],
            class_ids=class_ids,
            class_names=[self.class_names[c] for c in class_ids],
            alphabets=[self.alphabets[c] for c in class_ids],
            dataset_name=self.name,
        )

    def to(self, device):
        """A copy whose tensors live on `device` (the class lists are shared)."""
        return FewShotDataset(self.name, self.images.to(device), self.labels.to(device), self.class_names,
                              self.alphabets, self.splits, self.info)

    def summary(self):
        """One line per split: classes, alphabets, images."""
        lines = [f"{self.name}: {len(self.labels)} images of shape {self.image_shape}, {self.num_classes} classes"]
        for split in SPLITS:
            ids = self.splits[split]
            groups = sorted({self.alphabets[c] for c in ids})
            lines.append(f"  {SPLIT_HELP[split]:>10}: {len(ids):5d} classes from {len(groups)} alphabets "
                         f"({', '.join(groups[:6])}{', ...' if len(groups) > 6 else ''})")
        return "\n".join(lines)

    def __repr__(self):
        sizes = ", ".join(f"{s} {len(self.splits[s])}" for s in SPLITS)
        return (f"FewShotDataset({self.name!r}: {len(self.labels)} images {self.image_shape}, "
                f"classes {sizes})")

    def state(self):
        """Plain tensors and lists, as `kdlab.cache.save_tensors` stores them (images as uint8)."""
        return {
            "name": self.name,
            "images_uint8": (self.images.cpu() * 255).round().to(torch.uint8),
            "labels": self.labels.cpu(),
            "class_names": list(self.class_names),
            "alphabets": list(self.alphabets),
            "splits": {k: [int(c) for c in v] for k, v in self.splits.items()},
            "info": dict(self.info),
        }

    @classmethod
    def from_state(cls, state):
        """Inverse of `state()`."""
        return cls(state["name"], state["images_uint8"].float() / 255, state["labels"], state["class_names"],
                   state["alphabets"], state["splits"], state["info"])
