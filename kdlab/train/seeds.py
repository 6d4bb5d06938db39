"""Seeds trained together: one student per seed, their weights stacked and stepped as one (`torch.func`).

    students, histories = fit_seeds(lambda s: new_student(s), data, seeds=range(10), teacher=teacher,
                                    alpha=0.9, temperature=4.0, epochs=30, lr=0.05, batch_size=64)

Seed s gets what `fit(make_model(s), data, distill_from(teacher, alpha, temperature), seed=s, ...)` gives it
(`alpha=0` or no teacher: plain cross-entropy): its own initial weights, its own batch order (a generator seeded
by s, drawn as `kdlab.data.batches` draws it), the same optimiser, schedule and epochs. What is shared is only
the arithmetic: the S students' weights are stacked (`torch.func.stack_module_state`), one `vmap` of
`functional_call` runs all S forwards on their own batches, and one backward of the summed losses gives each
seed's weights the gradient of its own loss (the losses share no parameter). SGD with momentum and weight decay,
and Adam, act element by element, so one optimiser over the stacked weights is S independent optimisers.

On the CPU with MLP students each seed's accuracies equal its own `fit` exactly and its weights to float32
rounding (`tests/unit/test_seeds.py`): bit for bit where the batched matrix product sums in the same order as S
separate ones (the Intel Xeon of the earlier sessions), 1.5e-8 apart after 3 epochs on an AMD EPYC, whose
batched kernels round the last bit differently. The
logged KD term is the textbook value, where `kd_loss` reports the exact one when float32 cancels (1e-5 apart at
most in the tests); the teacher's logits are computed once for the whole training set.

Students with BatchNorm train too: their running statistics are stacked with the weights (`stack_module_state`
stacks the buffers), so each seed's BatchNorm updates its own buffers in place under `vmap` and evaluates with
them; with convolutions the batched kernels round the last bits differently from S separate calls, so each seed
ends within float32 rounding of its own `fit` (`tests/unit/test_seeds.py`). Students with dropout are refused
(random masks drawn for the stack are not each seed's own); the
meta methods, whose steps hold per-seed state (quiz streams, buffers, a teacher that learns), use `fit` seed by
seed.
"""
import copy
import time

import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state

from .. import config
from ..data.base import random_permutation
from ..errors import ParameterError
from ..losses import kl_rows_textbook
from ..methods.base import make_optimizer
from .history import History
from .schedules import make_schedulers


def check_vectorisable(model):
    """Refuse a model with dropout: one clear message naming the fallback. (BatchNorm's running statistics are
    stacked with the weights: each seed's buffers are updated in place under `vmap`, as its own `fit` would.)"""
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.modules.dropout._DropoutNd):
            raise ParameterError("model", f"{type(model).__name__} ({type(module).__name__} at {name or 'the top'})",
                                 "a model without dropout for fit_seeds (its random masks would not be each "
                                 "seed's own); train it seed by seed with kdlab.train.fit")
    return model


def per_seed_losses(logits, labels, teacher_logits, alpha, temperature):
    """(S, B, C) logits -> per-seed batch means (S,) of CE, the textbook KD term and (1 - alpha) CE + alpha KD."""
    s, b, c = logits.shape
    ce = F.cross_entropy(logits.reshape(s * b, c), labels.reshape(s * b), reduction="none").view(s, b).mean(1)
    if teacher_logits is None or alpha == 0:
        return {"loss": ce, "ce": ce}
    kd = temperature ** 2 * kl_rows_textbook(logits, teacher_logits, temperature).mean(1)
    return {"loss": (1 - alpha) * ce + alpha * kd, "ce": ce, "kd": kd}


def fit_seeds(make_model, data, seeds, *, teacher=None, alpha=0.0, temperature=4.0, epochs=10, lr=0.05,
              batch_size=64, optimizer="sgd", momentum=0.9, weight_decay=5e-4, schedule="cosine", eval_every=1):
    """Train `make_model(seed)` for every seed at once on `data` (one DataSplits, or one per seed of equal sizes:
    notebook 09's per-seed quiz splits); returns (the trained models, one History per seed)."""
    seeds = list(seeds)
    config.validate(EPOCHS=epochs, LR=lr, BATCH_SIZE=batch_size, ALPHA=alpha, TEMPERATURE=temperature)
    if not seeds:
        raise ParameterError("seeds", seeds, "at least one seed")
    datas = list(data) if isinstance(data, (list, tuple)) else [data] * len(seeds)
    if len(datas) != len(seeds) or len({(d.num_train, d.num_test) for d in datas}) != 1:
        raise ParameterError("data", f"{len(datas)} data sets", f"one DataSplits, or one per seed ({len(seeds)}) "
                             "with equal training and test sizes")
    models = [check_vectorisable(make_model(seed)) for seed in seeds]
    base = copy.deepcopy(models[0]).to("meta")
    params, buffers = stack_module_state(models)
    forward = torch.vmap(lambda p, b, x: functional_call(base, (p, b), (x,)))
    opt = make_optimizer(list(params.values()), optimizer, lr, momentum, weight_decay)
    scheduler, = make_schedulers([opt], schedule, epochs)
    x, y = torch.stack([d.x_train for d in datas]), torch.stack([d.y_train for d in datas])   # (S, n, ...)
    teacher_logits = None
    if teacher is not None and alpha > 0:
        with torch.no_grad():
            teacher_logits = torch.stack([teacher.eval()(d.x_train) for d in datas])
    generators = [torch.Generator().manual_seed(seed) for seed in seeds]
    histories, n, rows = [History() for _ in seeds], x.shape[1], torch.arange(len(seeds), device=x.device)[:, None]
    for epoch in range(epochs):
        start, step_lr = time.perf_counter(), opt.param_groups[0]["lr"]
        orders = torch.stack([random_permutation(n, g, x.device) for g in generators])
        sums, count = {}, 0
        for first in range(0, n, batch_size):
            idx = orders[:, first:first + batch_size]
            losses = per_seed_losses(forward(params, buffers, x[rows, idx]), y[rows, idx],
                                     None if teacher_logits is None else teacher_logits[rows, idx], alpha, temperature)
            opt.zero_grad(set_to_none=True)
            losses["loss"].sum().backward()
            opt.step()
            for name, value in losses.items():
                sums[name] = sums.get(name, 0.0) + value.detach() * idx.shape[1]
            count += idx.shape[1]
        seconds = time.perf_counter() - start
        evaluated = (epoch + 1) % eval_every == 0 or epoch + 1 == epochs
        base.eval()
        scores = evaluate(forward, params, buffers, datas) if evaluated else {}
        base.train()
        for i, history in enumerate(histories):
            record = {"epoch": epoch + 1, "lr": step_lr, "seconds": seconds / len(seeds)}
            record.update({name: float(total[i]) / count for name, total in sums.items()})
            record.update({name: value[i] for name, value in scores.items()})
            history.append(record)
            history.global_steps = (epoch + 1) * -(-n // batch_size)
        scheduler.step()
    for i, model in enumerate(models):
        model.load_state_dict({**{k: v[i].detach() for k, v in params.items()},
                               **{k: v[i] for k, v in buffers.items()}})
    return models, histories


def evaluate(forward, params, buffers, datas):
    """Train and test accuracy (%) of every seed's model on its data set, a list per split, computed as
    `kdlab.train.accuracy` computes it (correct count over size, in Python floats)."""
    scores = {}
    with torch.no_grad():
        for split, part in (("train_acc", "train"), ("test_acc", "test")):
            x = torch.stack([getattr(d, f"x_{part}") for d in datas])
            y = torch.stack([getattr(d, f"y_{part}") for d in datas])
            correct = (forward(params, buffers, x).argmax(-1) == y).sum(1).tolist()
            scores[split] = [100.0 * c / max(x.shape[1], 1) for c in correct]
    return scores
