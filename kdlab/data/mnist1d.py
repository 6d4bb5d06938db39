"""MNIST-1D (Greydanus & Steinbach), regenerated locally: 4,000 training and 1,000 test signals of length 40.

The signals come from `mnist1d.data.make_dataset(get_dataset_args())`, the procedural generator of the
benchmark (seed 42), never from `get_dataset`, which downloads a pickle. Generation takes about a second;
the result is cached under `<data root>/cache/`, keyed by the generation arguments, and a corrupt cache
file is reported, moved aside and rebuilt.

Normalisation: the generator itself centres the whole set and scales it to standard deviation 1 (one
global mean and std over all 5,000 signals); the kit keeps exactly that, so published MNIST-1D accuracies
(logistic regression 32 %, MLP 68 %, CNN 94 %) refer to the same inputs. Inputs have shape (N, 40); a 1-D
CNN wants `x.unsqueeze(1)`.
"""
import random

import numpy as np
import torch

from .. import cache, paths
from .base import DataSplits, as_device, check_count, seeded_generator
from .registry import register


def generation_args():
    """The benchmark's generation arguments as a plain dict (the download URL left out)."""
    from mnist1d.data import get_dataset_args

    args = dict(vars(get_dataset_args()))
    args.pop("url", None)
    return args


def generate(args):
    """Run the MNIST-1D generator with `args`; returns a dict of tensors (float32 inputs, int64 labels).

    The generator reseeds Python's and NumPy's global random state; that state is restored afterwards so
    loading data never changes the randomness of the caller's experiment.
    """
    from mnist1d.data import get_dataset_args, make_dataset
    from mnist1d.utils import ObjectView

    full_args = dict(vars(get_dataset_args()), **args)
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(ObjectView(full_args))
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
    return {
        "x_train": torch.as_tensor(data["x"], dtype=torch.float32),
        "y_train": torch.as_tensor(data["y"], dtype=torch.int64),
        "x_test": torch.as_tensor(data["x_test"], dtype=torch.float32),
        "y_test": torch.as_tensor(data["y_test"], dtype=torch.int64),
    }


def cache_path(root=None, args=None):
    """Where the generated set with `args` (default: the benchmark's) is cached."""
    args = generation_args() if args is None else args
    return paths.cache_dir(root) / f"mnist1d-{cache.config_key(args)}.pt"


@register("mnist1d", offline=True, description="MNIST-1D: 4,000/1,000 procedural 1-D signals of length 40, 10 classes")
def load_mnist1d(root=None, device="cpu", *, train_size=None, seed=0, log=print):
    """MNIST-1D as `DataSplits`, generated once and then read from the cache.

    `train_size=n` keeps n stratified training signals chosen with `seed` (the test set stays the 1,000
    benchmark signals). `log` receives the one-line report when a corrupt cache file is rebuilt.
    """
    device = as_device(device)
    generator = seeded_generator(seed)
    args = generation_args()
    tensors = cache.load_or_build(cache_path(root, args), lambda: generate(args), log=log)
    splits = DataSplits(
        name="mnist1d",
        num_classes=10,
        input_shape=(tensors["x_train"].shape[1],),
        class_names=[str(d) for d in range(10)],
        **tensors,
    )
    if train_size is not None:
        splits = splits.subset_train(check_count("train_size", train_size, 1, splits.num_train), generator)
    return splits.to(device)
