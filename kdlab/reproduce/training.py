"""One setting x one seed: training in checkpointed chunks, evaluation, and the dry run's step measurement."""
import dataclasses
import time
from pathlib import Path

import torch

from .. import recipes
from .checkpoints import _history, _restore_after_prepare, load_checkpoint, load_method_state, save_checkpoint
from .data import augmentation, load_data
from .models import build_method, fit_options

CHECKPOINT = "checkpoint.pt"

def train(setting, data, *, seed, length, folder, checkpoint_every, dry_run=False, device="cpu",
          interrupt_after=None, progress=None, log=print):
    """Train one seed of `setting` for `length` epochs (iterations), checkpointing into `folder` after every
    `checkpoint_every`, resuming from the checkpoint there if any. `interrupt_after` (tests, the dry run)
    raises KeyboardInterrupt once that many epochs are saved. Returns (method, history, resumed)."""
    folder = Path(folder)
    path = folder / CHECKPOINT
    checkpoint = load_checkpoint(path)
    history, done = _history(checkpoint), (checkpoint or {}).get("done", 0)
    method = build_method(setting, data, seed=seed, length=length, dry_run=dry_run, device=device, log=log)
    if checkpoint is not None:
        torch.set_rng_state(checkpoint["rng"])
        if setting.episodic:
            load_method_state(method, checkpoint["method"])
        else:
            _restore_after_prepare(method, checkpoint["method"])
    resumed = checkpoint is not None
    sampler = None
    if setting.episodic:
        from ..data.episodes import EpisodeSampler

        sampler = EpisodeSampler(data, "train", ways=setting.ways, shots=setting.shots, queries=setting.queries,
                                 seed=seed)
        sampler.reset(done * setting.meta_batch)
    while done < length:
        chunk = min(checkpoint_every, length - done)
        saved = []

        def save(history_, _model, target=done + chunk):
            """The fit callback: at the chunk's end, write the checkpoint."""
            ended = history_.epochs_done if not setting.episodic else target
            if setting.episodic or ended == target:
                save_checkpoint(path, method, history_, target)
                saved.append(target)
            return False

        if setting.episodic:
            from ..train import fit_episodes

            fit_episodes(method, sampler, iterations=chunk, meta_batch=setting.meta_batch, log_every=chunk,
                         device=device, history=history, seed=seed)
            save(history, None)
        else:
            from ..train import fit

            fit(method, data, epochs=chunk, batch_size=_batch(setting, data, dry_run), seed=seed, history=history,
                callbacks=[save], eval_every=1 if not dry_run else chunk, progress=progress,
                **fit_options(setting, length))
            if history.interrupted:
                raise KeyboardInterrupt(f"{setting.name}: interrupted; resume from {path}")
        if not saved:
            save_checkpoint(path, method, history, done + chunk)
        done += chunk
        if interrupt_after is not None and done >= interrupt_after and done < length:
            raise KeyboardInterrupt(f"{setting.name}: interrupted after {done} (simulated)")
    return method, history, resumed


def _batch(setting, data, dry_run):
    if dry_run and data.num_train < setting.batch_size:   # `--batch` gave the dry run a smaller batch
        return data.num_train
    return setting.batch_size


def _dry_batch(setting, data):
    return min(setting.batch_size, int(data.num_train * (1 - setting.knobs.get("quiz_fraction", 0.0)))) \
        if not setting.episodic else setting.meta_batch


def accuracy(setting, method, history, data, device, *, test_episodes=None):
    """The paper's metric: the last epoch's test accuracy (and the best epoch's for MMKD), or the mean
    accuracy (%) over the test episodes, adapted as in meta-training (10 steps at test in MAML)."""
    if not setting.episodic:
        series = [r["test_acc"] for r in history.records if "test_acc" in r]
        return {"acc": series[-1], "best_acc": max(series)}
    from ..data.episodes import EpisodeSampler

    test = EpisodeSampler(data, "test", ways=setting.ways, shots=setting.shots, queries=setting.queries,
                          seed=10_000)
    tasks = [test.episode(i).to(device) for i in range(test_episodes or setting.test_episodes)]
    steps = {"steps": 10} if setting.method == "maml" else {}
    result = method.evaluate(tasks, **steps)
    value = float(result["accuracy"])
    return {"acc": 100 * value if value <= 1 else value}


def dry_setting(setting, steps, batch=None, quick=False):
    """The setting as the dry run trains it: `batch` (if given) for the batch or meta-batch, and a quiz set
    of exactly one quiz batch (MetaDistil), so that `steps` steps per epoch exercise the whole path.
    `quick` (CI) also takes one inner step where the recipe takes several and one query per class: the same
    code path, cheaper (a mini-ImageNet TSMD step with 15 queries per class takes half a minute on one core)."""
    if quick:
        setting = dataclasses.replace(setting, knobs={k: (1 if k in ("inner_steps", "teacher_inner_steps") else v)
                                                      for k, v in setting.knobs.items()},
                                      queries=1 if setting.episodic else None)
    if setting.episodic:
        return dataclasses.replace(setting, meta_batch=min(batch or setting.meta_batch, setting.meta_batch))
    b = batch or setting.batch_size
    changes = {"batch_size": b}
    if "quiz_fraction" in setting.knobs:
        quiz = min(setting.knobs.get("quiz_batch_size") or b, b)
        changes["knobs"] = {**setting.knobs, "quiz_batch_size": quiz, "quiz_fraction": quiz / (steps * b + quiz)}
    return dataclasses.replace(setting, **changes)


def run_job(job):
    """One setting x one seed (a plain dict, so Dask can ship it): train, checkpoint, evaluate; in the dry
    run also interrupt after the first chunk, resume, and measure the step. Returns a dict of results."""
    setting = recipes.get(job["setting"])
    if job["dry_run"]:
        setting = dry_setting(setting, job.get("steps", 2), job.get("batch"), job.get("quick", False))
    device, seed, dry = job.get("device", "cpu"), job["seed"], job["dry_run"]
    folder = Path(job["out"]) / "checkpoints" / f"{setting.name}-seed{seed}"
    started = time.perf_counter()
    torch.manual_seed(seed)
    data = load_data(setting, device, dry_run=dry, steps=job.get("steps", 2), batch=job.get("batch"), seed=seed)
    if dry:
        length = 2 * job.get("steps", 2) if setting.episodic else 2
        every = length // 2
        try:
            train(setting, data, seed=seed, length=length, folder=folder, checkpoint_every=every, dry_run=True,
                  device=device, interrupt_after=every, progress=False)
        except KeyboardInterrupt:
            pass
        method, history, resumed = train(setting, data, seed=seed, length=length, folder=folder,
                                         checkpoint_every=every, dry_run=True, device=device, progress=False)
        cost = measure(setting, method, data, device)
        result = accuracy(setting, method, history, data, device, test_episodes=2)
        result.update(cost, resumed=resumed)
    else:
        length = job.get("epochs") or (setting.iterations if setting.episodic else setting.epochs)
        every = job.get("checkpoint_every") or (1000 if setting.episodic else 10)
        method, history, resumed = train(setting, data, seed=seed, length=length, folder=folder,
                                         checkpoint_every=every, device=device)
        result = accuracy(setting, method, history, data, device)
    result.update(setting=setting.name, seed=seed, seconds=time.perf_counter() - started, length=length,
                  device=_device_name(device), batch=setting.meta_batch if setting.episodic else setting.batch_size)
    return result


def measure(setting, method, data, device):
    """Step time and peak memory of one more training step (`kdlab.profiling.step_cost`)."""
    from ..methods.base import Batch, Recipe, Run
    from ..profiling import step_cost

    if setting.episodic:
        from ..data.episodes import EpisodeSampler

        sampler = EpisodeSampler(data, "train", ways=setting.ways, shots=setting.shots, queries=setting.queries,
                                 seed=99)
        tasks = [next(sampler).to(device) for _ in range(setting.meta_batch)]
        run = Run(seed=0, epochs=1, batch_size=setting.meta_batch, recipe=Recipe(), generator=None)
        step = lambda: method.step(tasks, run)   # noqa: E731
    else:
        b = _dry_batch(setting, data)
        generator = torch.Generator().manual_seed(0)
        augment = augmentation(setting)
        index = torch.arange(b, device=data.x_train.device)
        run = Run(seed=0, epochs=2, batch_size=b, recipe=Recipe(setting.lr, setting.optimizer, setting.momentum,
                                                                 setting.weight_decay),
                  generator=generator, augment=augment, epoch=1)

        def step():
            x = data.x_train[index]
            return method.step(Batch(augment(x, generator) if augment else x, data.y_train[index], index), run)

    method.train()
    cost = step_cost(step, repeats=1, warmup=0, device=device)
    return {"step_seconds": cost.seconds, "peak_mb": cost.peak_mb}


def _device_name(device):
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return f"CPU {platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


