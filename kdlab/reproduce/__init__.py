"""`kdlab reproduce`: run a paper's headline setting (`kdlab.recipes`) at paper scale and compare with the paper.

    kdlab reproduce kd_resnet56_resnet20 --seeds 3               # a GPU, CIFAR-100, 240 epochs per seed
    kdlab reproduce all --executor dask --scheduler tcp://h:8786  # every setting x seed on a Dask cluster:
                                                                  # one worker per GPU, each `--nthreads 1`
    kdlab reproduce all --dry-run --steps 2                       # CPU, FakeData of the real shapes

A run trains with `kdlab.train.fit` (or `fit_episodes`) and the registry method, in chunks of
`checkpoint_every` epochs (iterations): after each chunk a callback saves an atomic, weights-only checkpoint
(module weights, optimiser states, history, the global RNG), so an interrupted run resumes at the last chunk
and ends with the same weights as an uninterrupted one (the loop reseeds its batch order per fit call, so
both follow the same chunks). Method-internal buffers (MMKD's hard-sample buffer) are rebuilt, not saved.
Each setting appends one row to `reproduced.csv` / `reproduced.md` in `--out`: the paper's number, ours
over seeds with a 95 % t interval (`kdlab.stats.mean_ci`), the difference, wall time and device;
`--epochs` marks the row "not comparable".

The dry run trains a few steps of every setting on CPU with `torchvision.datasets.FakeData` of the real
shapes, the real architectures and randomly initialised teachers (BatchNorm statistics from one FakeData
batch, else a random ResNet-101's layer3 overflows the feature loss; the real run trains them once and caches
them, keyed by their configuration), through the same path: augmentation, method step, schedule,
checkpoint, a simulated interruption and resume, and the table row. It records per setting the step time
and peak memory (`kdlab.profiling.step_cost`) and the projected wall time of the paper run
(steps per epoch x epochs x step time; teachers' training not included).

The package, one concern a file: `data` (requests, real or FakeData sets), `models` (the setting's models,
teacher and registry method), `checkpoints`, `training` (one setting x one seed, and the dry run's
measurement), `tables` (the reproduced-vs-paper and dry-run tables); the command is here.
"""
from pathlib import Path

import torch

from .. import paths, recipes
from ..errors import ParameterError

from .data import check_request, load_data  # noqa: F401
from .tables import append_rows, dry_row, summarise
from .training import CHECKPOINT, dry_setting, run_job, train  # noqa: F401 (re-exported)

ROW_FIELDS = ("setting", "paper", "paper_number", "ours_mean", "ours_half_width", "seeds", "difference",
              "comparable", "epochs", "wall_hours", "device", "source")
DRY_FIELDS = ("setting", "device", "batch", "step_ms", "peak_mb", "steps_per_epoch", "length", "projected_hours",
              "resumed")


def reproduce(names, *, seeds=1, epochs=None, out=None, executor="local", scheduler=None, workers=1,
              dry_run=False, steps=2, batch=None, checkpoint_every=None, device=None, quick=False, log=print):
    """Run `names` x `seeds` through the sweep executor and append the tables in `out`. Returns the rows
    (and, for the dry run, the cost rows as the second element)."""
    from ..sweep.executors import make_executor

    chosen = check_request(names, seeds=seeds, epochs=epochs, steps=steps, batch=batch,
                           checkpoint_every=checkpoint_every)
    if batch is not None and not dry_run:
        raise ParameterError("--batch", batch, "left out outside --dry-run (the paper's batch is part of the recipe)")
    device = device or ("cpu" if dry_run else ("cuda" if torch.cuda.is_available() else "cpu"))
    out = Path(out or paths.runs_dir() / ("reproduce-dry-run" if dry_run else "reproduce"))
    jobs = [{"setting": name, "seed": seed, "epochs": epochs, "out": str(out), "dry_run": dry_run, "steps": steps,
             "batch": batch, "checkpoint_every": checkpoint_every, "device": device, "quick": quick}
            for name in chosen for seed in range(seeds)]
    results, failures, errors = {}, [], []
    pool = make_executor(executor, workers=workers, scheduler=scheduler)
    try:
        for job, outcome in pool.map_unordered(run_job, jobs):
            if isinstance(outcome, BaseException):
                failures.append(f"{job['setting']} seed {job['seed']}: {type(outcome).__name__}: {outcome}")
                errors.append(outcome)
                log(f"kdlab reproduce: {failures[-1]}")
                continue
            results.setdefault(job["setting"], []).append(outcome)
            log(f"kdlab reproduce: {job['setting']} seed {job['seed']}: {outcome['acc']:.2f} % "
                f"in {outcome['seconds']:.1f} s")
    finally:
        pool.close()
    rows = [summarise(recipes.get(n), sorted(results[n], key=lambda r: r["seed"]), comparable=not (epochs or dry_run),
                      epochs=results[n][0]["length"]) for n in chosen if n in results]
    append_rows(out, "reproduced", ROW_FIELDS, rows)
    cost_rows = []
    if dry_run:
        cost_rows = [dry_row(recipes.get(n), results[n]) for n in chosen if n in results]
        append_rows(out, "dry_run", DRY_FIELDS, cost_rows)
    if failures:
        from ..errors import DatasetUnavailableError, KdlabError

        for error in errors:   # a missing data set or a bad knob: its own message, which names the fix
            if isinstance(error, (DatasetUnavailableError, ParameterError)):
                raise error

        raise KdlabError("kdlab reproduce: " + "; ".join(failures))
    return (rows, cost_rows) if dry_run else rows
