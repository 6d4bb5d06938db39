"""The kit's one teacher cache: a teacher is trained once with cross-entropy and read back wherever it is asked for.

    teacher, history, reused = trained_teacher(lambda: MLP(64, hidden=(256, 256), num_classes=10), digits,
                                               seed=SEED, epochs=150, lr=0.01, batch_size=64)

`make_model()` builds the untrained teacher; it is called right after `torch.manual_seed(seed)`, so the
initial weights depend on the seed alone. The teacher is trained with `kdlab.train.fit(model, data, seed=seed,
**fit_options)`; its weights and History are stored in `<data root>/cache/teachers/<name>-<key>.pt`, where the
key is the SHA-256 of what decides them:

- the model's structure (its `repr`) and its initial weights (their digest),
- the training data, test set included (the History scores on it): a digest of the tensors,
- the seed and the `fit` options (a function such as `augment` by its qualified name), and CACHE_VERSION.

So the same teacher asked for by two notebooks is one file (notebooks 01, 03 and 09 share the digits teacher;
05's zoo, 07's teacher and 08's benchmark teachers go through this function too), and a changed architecture,
seed, data set or option trains afresh. The kit's code is not in the key, unlike `kdlab.run_cache`'s: a teacher
that took hours on a GPU (the `full` profile) must survive an update of the kit. CACHE_VERSION moves when a change
to `fit` changes what a teacher's training computes. Files are written atomically with a checksum and read with
`weights_only=True` (`kdlab.cache`): a corrupt file is reported, moved aside and trained again.
`callbacks` (a live plot) see the training when it happens; a teacher read back comes with the History it had.
"""
import functools
import time

import torch

from . import cache, paths
from .run_cache import digest
from .train import fit
from .train.history import History

CACHE_VERSION = 1
DISPLAY_ONLY = ("progress", "callbacks")   # fit options that change what is shown, never the weights


def trained_teacher(make_model, data, *, seed, name=None, callbacks=None, root=None, log=print, **fit_options):
    """(teacher in eval mode on the data's device, its training History, read back from the cache?). `name` starts
    the file's name and the printed line (default: the model's class, e.g. "mlp")."""
    started = time.perf_counter()
    model = _seeded(make_model, seed, data)
    key = cache.config_key(cache_config(model, data, seed, fit_options))
    name = name or type(model).__name__.lower()
    path = paths.cache_dir(root) / "teachers" / f"{name}-{key}.pt"
    trained = []

    def train():
        trained.append(True)
        history = fit(model, data, seed=seed, callbacks=list(callbacks or []),
                      **{"progress": False, **fit_options})
        return {"state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "history": {"records": history.records, "steps": history.steps,
                            "global_steps": history.global_steps}}

    stored = cache.load_or_build(path, train, log=log)
    if not trained:
        model.load_state_dict(stored["state"])
    log(f"teacher {name} {'trained' if trained else 'read from the cache'} in {time.perf_counter() - started:.1f} s "
        f"({path.parent.name}/{path.name})")
    history = History(records=stored["history"]["records"], steps=stored["history"]["steps"],
                      global_steps=stored["history"]["global_steps"])
    return model.eval(), history, not trained


def cache_config(model, data, seed, fit_options):
    """The plain values the teacher's key is the hash of (see the module's docstring)."""
    return {"model": repr(model), "start": digest(model), "seed": seed,
            "data": digest(data.x_train, data.y_train, data.x_test, data.y_test),
            "fit": {k: _described(v) for k, v in sorted(fit_options.items()) if k not in DISPLAY_ONLY},
            "version": CACHE_VERSION}


def _seeded(make_model, seed, data):
    torch.manual_seed(seed)
    return make_model().to(data.x_train.device)


def _described(value):
    """A fit option as a plain value: a function by its module and qualified name (a partial with its arguments)."""
    if isinstance(value, functools.partial):
        return [_described(value.func), [_described(a) for a in value.args],
                {k: _described(v) for k, v in sorted(value.keywords.items())}]
    if callable(value):
        return f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', type(value).__name__)}"
    return value
