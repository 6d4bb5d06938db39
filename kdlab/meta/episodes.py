"""Few-shot episodes: one MAML outer step over a meta-batch of tasks, and test-time adaptation.

A task is `(x_support, y_support, x_query, y_query, *extra)`; `extra` items (e.g. a teacher's support
logits, for TSMD) are passed to the inner loss after y_support.
"""
import torch
import torch.nn.functional as F

from ..errors import ParameterError
from .functional import forward, params_of, preserved_buffers
from .steps import inner_loop


def task_list(tasks):
    tasks = list(tasks)
    if not tasks:
        raise ParameterError("tasks", tasks, "a non-empty sequence of (x_support, y_support, x_query, y_query)")
    return tasks


def _accuracy(logits, y):
    return (logits.argmax(dim=1) == y).float().mean()


def maml_step(module, tasks, *, steps, lr, first_order=False, bn="transductive",
              inner_loss=F.cross_entropy, query_loss=F.cross_entropy, backend="func"):
    """Accumulate into `.grad` the MAML meta-gradient (Finn et al. 2017, Algorithm 2) of the mean
    query loss over `tasks`:

        theta'_i = inner_loop(theta) on the support set (Eq. 1)
        grad_theta (1/n) sum_i L_query_i(f_{theta'_i})      (the meta-objective, Eq. 2-3)

    Second order by default; first_order=True gives FOMAML. Learnable per-parameter lrs (a dict of
    tensors requiring grad) get their gradient too. The optimizer step is left to the caller:

        opt.zero_grad(); stats = maml_step(net, tasks, steps=1, lr=0.4); opt.step()

    Returns {"loss": mean query loss, "accuracy": mean query accuracy} as floats.
    """
    tasks = task_list(tasks)
    params = params_of(module)
    total_loss, total_accuracy = 0.0, 0.0
    with preserved_buffers(module):
        for x_support, y_support, x_query, y_query, *extra in tasks:
            fast, _ = inner_loop(module, params, inner_loss, (x_support, y_support, *extra), steps=steps,
                                 lr=lr, first_order=first_order, bn=bn, backend=backend)
            logits = forward(module, fast, x_query, bn=bn, support=x_support)
            loss = query_loss(logits, y_query)
            (loss / len(tasks)).backward()  # one task's graph at a time
            total_loss += loss.detach()
            total_accuracy += _accuracy(logits.detach(), y_query)
    return {"loss": float(total_loss / len(tasks)), "accuracy": float(total_accuracy / len(tasks))}


def adapt_and_predict(module, support, x_query, *, steps, lr, bn="transductive", loss_fn=F.cross_entropy):
    """Query logits after `steps` inner steps on `support = (x_support, y_support, *extra)`.

    Test time: the steps start from detached copies of the parameters and no meta-graph is built, so
    nothing flows back into the module."""
    start = {name: p.detach().requires_grad_() for name, p in params_of(module).items()}
    if isinstance(lr, dict):
        lr = {name: torch.as_tensor(v).detach() for name, v in lr.items()}
    with torch.enable_grad():
        fast, _ = inner_loop(module, start, loss_fn, support, steps=steps, lr=lr, first_order=True, bn=bn)
    with torch.no_grad():
        return forward(module, fast, x_query, bn=bn, support=support[0])


def evaluate(module, tasks, *, steps, lr, bn="transductive", loss_fn=F.cross_entropy):
    """Adapt on each task's support set, score its query set.

    Returns {"accuracy": mean, "loss": mean query cross-entropy, "accuracies": one value per task
    (a CPU tensor, for confidence intervals)}."""
    accuracies, losses = [], []
    for x_support, y_support, x_query, y_query, *extra in task_list(tasks):
        logits = adapt_and_predict(module, (x_support, y_support, *extra), x_query, steps=steps, lr=lr,
                                   bn=bn, loss_fn=loss_fn)
        accuracies.append(_accuracy(logits, y_query))
        losses.append(F.cross_entropy(logits, y_query))
    accuracies = torch.stack(accuracies).cpu()
    return {"accuracy": float(accuracies.mean()), "loss": float(torch.stack(losses).mean()),
            "accuracies": accuracies}
