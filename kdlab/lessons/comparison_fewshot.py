"""Notebook 08's few-shot block: TSMD against its MAML student and the oracle teacher, notebook 06's rows
seed for seed (the same settings, starting weights and episodes, so the run cache shares them).

    out = fewshot_seed(glyphs, seed, test_tasks=tasks)               # {row: per-episode accuracies (%), ...}
    outs = fewshot_seeds(glyphs, seeds, workers=2, test_tasks=tasks)  # the same, the seeds' runs in workers
    costs = fewshot_step_costs(glyphs)                               # {row: StepCost of one meta-iteration}
"""
import copy
import functools

from .. import parallel
from ..benchmark import fewshot_knobs, glyph_models
from ..errors import ParameterError
from ..methods import registry
from ..methods.base import Recipe, Run
from ..profiling import step_cost

FEWSHOT_ROWS = ("student", "ours", "oracle")
FEWSHOT_NAMES = {"student": "MAML student (Conv-4, small)", "ours": "TSMD student",
                 "oracle": "oracle teacher (MAML, Conv-4, big)"}


def fewshot_method(variant, teacher, student, *, meta_lr=1e-3, settings=None):
    """TSMD's row `variant` from the registry; only the models the row meta-trains are passed."""
    return registry.get("tsmd")(None if variant == "student" else teacher, None if variant == "oracle" else student,
                                variant=variant, meta_lr=meta_lr, **fewshot_knobs(variant, settings))


def fewshot_seed(glyphs, seed, *, test_tasks, ways=5, shots=1, queries=5, iterations=150, meta_batch=2,
                 meta_lr=1e-3, teacher_hidden=32, student_hidden=8, device="cpu", settings=None, rows=FEWSHOT_ROWS):
    """One seed of the few-shot block: the oracle teacher (MAML on the big Conv-4) first; then the MAML
    student and TSMD (the student with KD from the adapted teacher, the teacher initialised from the oracle
    and meta-trained on, notebook 06's protocol), from the same student initialisation and on the same
    training episodes; all scored on `test_tasks`. Returns {row: per-episode accuracies (%)} and
    {row + '/seconds': meta-training seconds, row + '/seconds_per_iteration': ...}, for the `rows` asked
    ("ours" needs "oracle": TSMD's teacher starts from it)."""
    from ..data.episodes import EpisodeSampler
    from .tsmd_rows import train_and_score

    unknown = [row for row in rows if row not in FEWSHOT_ROWS]
    if unknown or ("ours" in rows and "oracle" not in rows):
        raise ParameterError("rows", rows, "few-shot rows among " + ", ".join(map(repr, FEWSHOT_ROWS))
                             + ", with 'oracle' wherever 'ours' is (TSMD's teacher starts from it)")
    teacher0, student0 = glyph_models(seed, ways=ways, teacher_hidden=teacher_hidden,
                                      student_hidden=student_hidden, device=device)
    out, trained = {}, {}
    for row in [row for row in ("oracle", "student", "ours") if row in rows]:
        sampler = EpisodeSampler(glyphs, "train", ways=ways, shots=shots, queries=queries, seed=seed)
        teacher = copy.deepcopy(trained["oracle"].teacher if row == "ours" else teacher0)
        method = fewshot_method(row, teacher, copy.deepcopy(student0), meta_lr=meta_lr, settings=settings)
        # notebook 06 logs its rows every iterations // 20: the same log_every makes the same run-cache key
        done = train_and_score(method, sampler, iterations=iterations, meta_batch=meta_batch,
                               log_every=max(1, iterations // 20), test_tasks=test_tasks, device=device, log=None,
                               eval_knobs=dict(variant=row, **fewshot_knobs(row, settings)))
        trained[row] = method
        out[row] = (100 * done["accuracies"]).tolist()
        out[row + "/seconds"] = done["seconds"]
        out[row + "/seconds_per_iteration"] = done["seconds"] / iterations
    return out


def fewshot_seeds(glyphs, seeds, *, workers=1, **knobs):
    """[fewshot_seed(glyphs, seed, **knobs) for seed in seeds], computed by `workers` processes
    (`kdlab.parallel`). Each seed is sent as two runs, the oracle then TSMD (TSMD's teacher starts from the
    oracle) and the MAML student, which needs neither, so that two workers share three seeds evenly; the
    longer runs go first. A seed's numbers are those `fewshot_seed` gives it in one process."""
    parts = [(seed, rows) for seed in seeds for rows in (("oracle", "ours"), ("student",))]
    done = parallel.map_in_workers(functools.partial(_fewshot_part, glyphs, knobs), parts, workers,
                                   cost=lambda part: len(part[1]))
    merged = {seed: {} for seed in seeds}
    for (seed, _), out in zip(parts, done):
        merged[seed].update(out)
    return [merged[seed] for seed in seeds]


def _fewshot_part(glyphs, knobs, part):
    seed, rows = part
    return fewshot_seed(glyphs, seed, rows=rows, **knobs)


def fewshot_step_costs(glyphs, *, seed=0, ways=5, shots=1, queries=5, meta_batch=2, teacher_hidden=32,
                       student_hidden=8, repeats=3, warmup=1, device="cpu", settings=None):
    """Wall time and peak memory of one meta-iteration (the method's own `step` on a meta-batch of tasks:
    Eq. 10's gradients and the Adam steps) per few-shot row: {row: StepCost}."""
    from ..data.episodes import EpisodeSampler

    sampler = EpisodeSampler(glyphs, "train", ways=ways, shots=shots, queries=queries, seed=seed)
    tasks = [tuple(t.to(device) for t in sampler.episode(i)) for i in range(meta_batch)]
    out = {}
    for row in FEWSHOT_ROWS:
        teacher, student = glyph_models(seed, ways=ways, teacher_hidden=teacher_hidden,
                                        student_hidden=student_hidden, device=device)
        method = fewshot_method(row, teacher, student, settings=settings)
        run = Run(seed=seed, epochs=1, batch_size=meta_batch, recipe=Recipe(), generator=None)
        method.train()
        out[row] = step_cost(functools.partial(method.step, tasks, run), repeats=repeats, warmup=warmup,
                             device=device)
    return out
