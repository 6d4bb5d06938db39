"""Notebook 09's hand-tuned grid: KD at each (alpha, T) on every seed's 90 %, scored on the test set and on the
quiz set a hand-tuner may choose on (`kdlab.lessons.alpha_temperature` re-exports every name)."""
import functools

import numpy as np
import torch
import torch.nn.functional as F

from .. import parallel, stats
from ..data.quiz import split_quiz
from ..train import accuracy, distill_from, fit, fit_seeds
from .kd import new_student


# -- the grid ------------------------------------------------------------------------------------------
def quiz_scores(model, split):
    """(accuracy in %, cross-entropy) of `model` on the quiz set: what a hand-tuner may choose on."""
    with torch.no_grad():
        loss = float(F.cross_entropy(model.eval()(split.x_quiz), split.y_quiz))
    return accuracy(model, split.x_quiz, split.y_quiz), loss


def kd_point(data, teacher, *, seed, alpha, temperature, hidden, recipe, quiz_fraction, quiz_batch, callbacks=()):
    """KD at a fixed (alpha, T) on the seed's 90 %: test accuracy, quiz accuracy and quiz cross-entropy."""
    split = split_quiz(data, quiz_fraction, seed, quiz_batch_size=quiz_batch)
    student = new_student(data, hidden, seed)
    history = fit(student, split.train, distill_from(teacher, alpha, temperature), seed=seed, progress=False,
                  callbacks=callbacks, **recipe)
    quiz, quiz_ce = quiz_scores(student, split)
    return {"test": history.last["test_acc"], "quiz": quiz, "quiz_ce": quiz_ce}


def kd_points(data, teacher, *, seeds, alpha, temperature, hidden, recipe, quiz_fraction, quiz_batch):
    """`kd_point` for every seed at once (`kdlab.train.fit_seeds`: the seeds' students stacked, each on its own
    90 %, bit for bit `kd_point` seed by seed): {"test": [...], "quiz": [...], "quiz_ce": [...]}."""
    splits = [split_quiz(data, quiz_fraction, s, quiz_batch_size=quiz_batch) for s in seeds]
    options = {k: v for k, v in recipe.items() if k not in ("progress", "callbacks")}
    students, histories = fit_seeds(lambda s: new_student(data, hidden, s), [split.train for split in splits],
                                    seeds, teacher=teacher, alpha=alpha, temperature=temperature, **options)
    quiz = [quiz_scores(student, split) for student, split in zip(students, splits)]
    return {"test": [h.last["test_acc"] for h in histories], "quiz": [q[0] for q in quiz],
            "quiz_ce": [q[1] for q in quiz]}


def grid(data, teacher, *, seeds, alphas, temperatures, log=print, workers=1, **common):
    """KD at every (alpha, T) of the grid for every seed: {(alpha, T): {"test": [...], "quiz": [...],
    "quiz_ce": [...]}}, one value per seed in the order of `seeds` (the seeds of a point trained together:
    `kd_points`), the points `workers` at a time (`kdlab.parallel.call_all`); one printed line per alpha."""
    seeds, pairs = list(seeds), [(alpha, temperature) for alpha in alphas for temperature in temperatures]
    points = dict(zip(pairs, parallel.call_all(
        [functools.partial(kd_points, data, teacher, seeds=seeds, alpha=alpha, temperature=temperature, **common)
         for alpha, temperature in pairs], workers)))
    for alpha in alphas:
        log(f"ALPHA {alpha:g}: " + ", ".join(f"T {t:g} {np.mean(points[alpha, t]['test']):.2f}%"
                                             for t in temperatures)
            + f"  (test accuracy, mean of {len(seeds)} seeds)")
    return points


def best_point(points, key="quiz"):
    """The (alpha, T) with the highest mean `key` ("quiz" or "test" accuracy); a tie on the quiz accuracy
    (30 images: steps of 3.3 points per seed) goes to the lower mean quiz cross-entropy."""
    def score(point):
        values = points[point]
        return (float(np.mean(values[key])), -float(np.mean(values["quiz_ce"])) if key == "quiz" else 0.0)
    return max(points, key=score)


def mean_map(points, alphas, temperatures, key="test"):
    """The mean of `key` over seeds as a matrix, rows alpha, columns T."""
    return np.array([[np.mean(points[a, t][key]) for t in temperatures] for a in alphas])


def grid_table(points, alphas, temperatures):
    """Markdown: per (alpha, T) the test accuracy, mean ± 95 % CI over seeds, and the mean quiz accuracy."""
    lines = ["| ALPHA \\ T | " + " | ".join(f"{t:g}" for t in temperatures) + " |",
             "|---|" + "---:|" * len(temperatures)]
    for a in alphas:
        lines.append(f"| {a:g} | " + " | ".join(f"{stats.mean_ci(points[a, t]['test']):.2f} "
                                                f"(quiz {np.mean(points[a, t]['quiz']):.1f})" for t in temperatures)
                     + " |")
    return "\n".join(lines)
