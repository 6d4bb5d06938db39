"""Notebook 03 (MetaDistil): one seed's KD run and one seed's MetaDistil run (Algorithm 1), the building
blocks of the lesson's experiments (`kdlab.lessons.metadistil`) and of its teaching panel
(`kdlab.lessons.metadistil_panel`)."""
import copy

from ..methods import metadistil as md
from ..train import distill_from, fit
from .kd import new_student


def kd_run(data, teacher, *, seed, hidden, recipe, alpha, temperature, architecture=None, callbacks=()):
    """A KD student on `data` (all of its training set); returns (student, history). `callbacks` are `fit`'s,
    called after every epoch with (history, student)."""
    student = new_student(data, hidden, seed, architecture)
    history = fit(student, data, distill_from(teacher, alpha, temperature), seed=seed, progress=False,
                  callbacks=callbacks, **recipe)
    return student, history


def meta_run(data, teacher, *, seed, hidden, recipe, alpha, temperature, teacher_lr, quiz_fraction, quiz_batch,
             pilot_update=True, freeze_epochs=0, monitor=None, log_every=0, architecture=None, callbacks=()):
    """MetaDistil from a copy of `teacher` (the original is left as it is); returns (student, teacher, history).
    `callbacks` are called after every epoch with (history, method): the method holds the moving teacher."""
    method = md.MetaDistil(new_student(data, hidden, seed, architecture), copy.deepcopy(teacher),
                           teacher_lr=teacher_lr, alpha=alpha, temperature=temperature, quiz_fraction=quiz_fraction,
                           quiz_batch_size=quiz_batch, pilot_update=pilot_update, freeze_epochs=freeze_epochs,
                           monitor=monitor, log_every=log_every)
    history = fit(method, data, seed=seed, progress=False,
                  callbacks=[lambda h, _, cb=cb: cb(h, method) for cb in callbacks], **recipe)
    return method.model, method.teacher, history


def weight_gap(a, b):
    """The largest absolute difference between two models' weights (the pilot update's effect on the student)."""
    return max(float((p - q).detach().abs().max()) for p, q in zip(a.parameters(), b.parameters()))
