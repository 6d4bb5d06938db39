"""A few-shot teacher's initialisation: ordinary classification over every meta-train class (TSMD's teacher,
and `kdlab reproduce`'s few-shot settings), then a fresh head for the episodes' way count."""
import torch

from ..data.base import DataSplits, stratified_split
from .loop import fit


def pretrain_teacher(fewshot, model, *, epochs, ways=None, lr=0.05, batch_size=128, seed=0, holdout=0.05):
    """Train `model` on all meta-train classes of `fewshot` with `fit` (a stratified `holdout` share is its test
    set; the TSMD paper trains its ResNet-50 for 160 epochs), then give it a fresh `ways`-class head if `ways`
    is given. Returns the model and its History."""
    split = fewshot.split("train")
    held, kept = stratified_split(split.local_labels.cpu(), int(holdout * len(split)),
                                  torch.Generator().manual_seed(seed))
    data = DataSplits(f"{fewshot.name} meta-train classes", split.images[kept], split.local_labels[kept],
                      split.images[held], split.local_labels[held], split.num_classes, tuple(split.images.shape[1:]))
    history = fit(model, data, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed)
    if ways is not None:
        model.classifier = torch.nn.Linear(model.classifier.in_features, ways).to(next(model.parameters()).device)
        model.num_classes = ways
    return model, history
