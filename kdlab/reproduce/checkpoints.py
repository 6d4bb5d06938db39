"""Atomic, weights-only checkpoints of a run (module weights, optimiser states, history, RNG), and resuming from them."""
from pathlib import Path

import torch

from .. import cache

def _optimizers(method):
    found = method.optimizers() if hasattr(method, "optimizers") else [getattr(method, "optimizer", None)]
    return [opt for opt in found if opt is not None]


def method_state(method):
    if hasattr(method, "state_dict"):
        return method.state_dict()
    return {**{f"module{i}": m.state_dict() for i, m in enumerate(method.modules())},
            **{f"optimizer{i}": o.state_dict() for i, o in enumerate(_optimizers(method))}}


def load_method_state(method, state):
    if hasattr(method, "load_state_dict"):
        return method.load_state_dict(state)
    for i, m in enumerate(method.modules()):
        m.load_state_dict(state[f"module{i}"])
    for i, o in enumerate(_optimizers(method)):
        o.load_state_dict(state[f"optimizer{i}"])


def save_checkpoint(path, method, history, done):
    """Weights only (tensors and plain values), written atomically with a checksum (`kdlab.cache`)."""
    cache.save_tensors({"method": method_state(method), "records": list(history.records),
                        "global_steps": history.global_steps, "done": done, "rng": torch.get_rng_state()}, path)


def load_checkpoint(path):
    """The checkpoint at `path` (verified, `torch.load(weights_only=True)`), or None if there is none."""
    return cache.load_tensors(path) if Path(path).exists() else None


def _history(checkpoint):
    from ..train.history import History

    history = History()
    if checkpoint is not None:
        for record in checkpoint["records"]:
            history.append(record)
        history.global_steps = checkpoint["global_steps"]
    return history


def _restore_after_prepare(method, state):
    """Load `state` once the fit has built the method's lazy parts (optimisers, MMKD's nets, the adapter)."""
    def prepare(data, run):
        del method.prepare   # back to the class's own hook
        prepared = type(method).prepare(method, data, run)
        load_method_state(method, state)
        return prepared

    method.prepare = prepare


