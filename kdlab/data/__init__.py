"""Datasets as tensors on the device: one registry of offline and online sets, and batching helpers.

    from kdlab.data import load, available
    data = load("digits", train_size=300, seed=0)   # DataSplits
    available(offline_only=True)                    # ['digits', 'mnist1d', ...]
"""
from .base import DataSplits
from .batching import batches, train_quiz_split
from .registry import available, load

__all__ = ["DataSplits", "available", "batches", "load", "train_quiz_split"]
