"""Training: the one fit loop for epochs of mini-batches (`fit`) and the one for few-shot episodes
(`fit_episodes`). Methods live in `kdlab.methods`; `fit(model, data)` trains with cross-entropy and
`fit(model, data, distill_from(teacher))` with Hinton KD, as before methods were objects. `fit_seeds` trains
the same CE or KD student under several seeds at once (stacked weights, `torch.func`), bit for bit as `fit`
seed after seed; `seeds_metadistil.fit_seeds_metadistil` does the same for MetaDistil's students and teachers.
"""
from ..methods.base import check_finite, make_optimizer
from ..methods.kd import cross_entropy, distill_from
from .episodes import fit_episodes
from .evaluation import accuracy
from .history import History
from .loop import as_method, fit
from .progress import progress_bar
from .schedules import SCHEDULES, make_schedulers, schedule_factor, scheduled_lr, step_milestones
from .seeds import fit_seeds

__all__ = ["fit", "fit_seeds", "fit_episodes", "as_method", "History", "accuracy", "cross_entropy", "distill_from",
           "check_finite", "make_optimizer", "progress_bar", "scheduled_lr", "schedule_factor",
           "make_schedulers", "step_milestones", "SCHEDULES"]
