"""A teacher trained once and shared: notebooks 01, 03 and 09 distil from the same digits teacher.

    teacher, history, reused = trained_teacher(lambda: MLP(64, hidden=(256, 256), num_classes=10), digits,
                                               seed=SEED, epochs=150, lr=0.01, batch_size=64)

`make_model()` builds the untrained teacher; it is called right after `torch.manual_seed(seed)`, so the
initial weights depend on the seed alone. The teacher is trained with `kdlab.train.fit` (cross-entropy) and its
weights and History go through the run cache (`kdlab.run_cache`), keyed by the model's structure (its `repr`),
the digest of its initial weights and of the data, the fit options and the kit's code: the notebook that comes
second, or a second run of the same one, reads the weights instead of training them again (2.2 s for the
digits teacher on a 2-core CPU), and any change to the architecture, data, options or code trains afresh.
`callbacks` (a live plot) see the training when it happens; a reused teacher comes with the History it had.
"""
import torch

from . import run_cache
from .train import fit
from .train.history import History


def trained_teacher(make_model, data, *, seed, callbacks=None, log=print, **fit_options):
    """(teacher in eval mode on the data's device, its training History, reused from the cache?)."""
    device = data.x_train.device
    torch.manual_seed(seed)
    model = make_model().to(device)
    config = {"model": repr(model), "start": run_cache.digest(model), "seed": seed,
              "data": run_cache.digest(data.x_train, data.y_train, data.x_test, data.y_test),
              "fit": {key: value for key, value in sorted(fit_options.items())}}

    def compute():
        history = fit(model, data, seed=seed, progress=False, callbacks=list(callbacks or []), **fit_options)
        return {"state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "history": {"records": history.records, "steps": history.steps,
                            "global_steps": history.global_steps}}

    stored, reused = run_cache.cached("teacher", config, compute, log=log)
    if reused:
        model.load_state_dict(stored["state"])
    history = History(records=stored["history"]["records"], steps=stored["history"]["steps"],
                      global_steps=stored["history"]["global_steps"])
    return model.eval(), history, reused
