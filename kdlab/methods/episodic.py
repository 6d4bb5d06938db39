"""What the episodic methods (MAML, TSMD) share: the checks that an episode fits a model's head, and the
query accuracy they report. `kdlab.train.fit_episodes` trains them."""
import torch
import torch.nn as nn

from ..errors import ParameterError


def head_size(module):
    """The number of classes a model predicts: `num_classes`, else its last nn.Linear's out_features."""
    if isinstance(getattr(module, "num_classes", None), int):
        return module.num_classes
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ParameterError("module", type(module).__name__, "a classifier with an nn.Linear head")
    return linears[-1].out_features


def episode_ways(task):
    """The way count of an episode: its number of classes (labels are 0..ways-1)."""
    labels = torch.cat([task[1].reshape(-1), task[3].reshape(-1)])
    return max(int(torch.unique(labels).numel()), int(labels.max()) + 1)


def check_ways(task, heads):
    """Every model in `heads` ({who: head size}) predicts as many classes as the episode has; returns them."""
    ways = episode_ways(task)
    for who, size in heads.items():
        if ways != size:
            raise ParameterError("ways", ways, f"{size}, the number of classes of the {who}'s head "
                                               "(every episode must have as many classes as the models predict)")
    return ways


def accuracy(logits, y):
    """The fraction of rows whose arg-max is the label, as a float (the loop reports it in percent)."""
    return float((logits.argmax(1) == y).float().mean())
