"""How long notebook 08's race must take on this machine: each contender's seconds per seed, the least wall time
two processes can share them in, and what training seeds together would save.

    python benchmarks/race_floor.py [--seeds 2] [--workers 2] [--out ...]   # about 3 minutes on a 2-core CPU

The race trains every contender of `kdlab.benchmark` (notebook 08, `class`: 300 digits, the width-8 SmallCNN
student, 60 epochs of batch 50) for 8 seeds, the seeds side by side in `--workers` processes. Timed here in one
process on one torch thread, `lesson.run_method` as the race calls it, for `--seeds` seeds each (their median).
The floor is the sum over methods and the race's 8 seeds, divided by the workers: what perfectly shared cores
would take, before the slowdown of two busy cores (`benchmarks/speed_probe.py`: 0.71 s alone, 0.78 s two at once).

Two ways to shrink the sum, measured:
- `fit_seeds` for the three contenders it can train (CE, KD, KD (90 %): a fixed teacher, no per-seed state), the
  race's 8 seeds stacked against one after another;
- MetaDistil's seeds stacked (`fit_seeds_metadistil`) against `fit(MetaDistil(...))` one after another, 5 epochs,
  on the race's models without BatchNorm (`SmallCNN(batch_norm=False)`, student and teacher; the stacked path
  refuses BatchNorm): what vmap does to the convolutions' double backward, per seed-epoch.
"""
import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from kdlab import benchmark
from kdlab.lessons import comparison as lesson
from kdlab.methods.metadistil import MetaDistil
from kdlab.models import SmallCNN
from kdlab.profiling import cpu_model, load_average
from kdlab.train import fit
from kdlab.train.seeds import fit_seeds
from kdlab.train.seeds_metadistil import fit_seeds_metadistil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seeds_metadistil import best_of  # noqa: E402 (a sibling script, not a package)
from speed_probe import probe_seconds  # noqa: E402

RACE_SEEDS = 8
MD_SEEDS, MD_EPOCHS = 4, 5   # the stacked-MetaDistil probe
RECORD = Path(__file__).resolve().parent / "results" / "class_run.json"


def timed(function):
    return best_of(1, function)


def per_seed_seconds(bench, seeds):
    """{method: median seconds of one seed's `run_method`} in this process."""
    lesson.run_method(bench, "KD", 0, benchmark.Budget(epochs=2))   # first-call costs out of the way
    return {name: statistics.median(timed(lambda: lesson.run_method(bench, name, seed))[0] for seed in seeds)
            for name in benchmark.METHODS}


def stacked_kd(bench):
    """{contender: (seconds one seed after another, seconds stacked, largest accuracy difference)} for 8 seeds."""
    budget, seeds, rows = bench.budget, range(RACE_SEEDS), {}
    for name in ("CE", "KD", "KD (90 %)"):
        knobs = bench.settings[name]   # the race's own: CE has no teacher (alpha 0)
        alpha, temperature = knobs.get("alpha", 0.0), knobs.get("temperature", 4.0)
        one_by_one, accs = timed(lambda: [lesson.run_method(bench, name, s)["acc"] for s in seeds])
        datas = [benchmark.training_data(bench, name, s) for s in seeds]
        together, (_, histories) = timed(lambda: fit_seeds(
            lambda s: benchmark.new_student(bench, s), datas, seeds, teacher=bench.teacher if alpha else None,
            alpha=alpha, temperature=temperature, epochs=budget.epochs, lr=budget.lr, batch_size=budget.batch_size,
            eval_every=budget.epochs))
        gap = max(abs(a - h.last["test_acc"]) for a, h in zip(accs, histories))
        rows[name] = (one_by_one, together, gap)
    return rows


def stacked_metadistil(bench, seeds=MD_SEEDS, epochs=MD_EPOCHS):
    """(seconds per seed-epoch one after another, stacked) for MetaDistil on BatchNorm-free SmallCNNs."""
    data, knobs = bench.data, dict(bench.settings["MetaDistil"])
    torch.manual_seed(0)
    teacher = SmallCNN(10, width=32, batch_norm=False)
    fit(teacher, data, epochs=20, lr=bench.budget.lr, batch_size=bench.budget.batch_size, seed=0, progress=False)

    def student(seed):
        torch.manual_seed(seed)
        return SmallCNN(10, width=bench.student_width, batch_norm=False)

    recipe = dict(epochs=epochs, lr=bench.budget.lr, batch_size=bench.budget.batch_size)
    one_by_one, _ = timed(lambda: [fit(MetaDistil(student(s), copy.deepcopy(teacher), **knobs), data, seed=s,
                                       progress=False, eval_every=epochs, **recipe) for s in range(seeds)])
    together, _ = timed(lambda: fit_seeds_metadistil(student, teacher, data, range(seeds), eval_every=epochs,
                                                     **knobs, **recipe))
    return one_by_one / seeds / epochs, together / seeds / epochs


def report(seconds, workers, kd_rows, md_rows, loads, recorded, probes):
    total = sum(seconds.values()) * RACE_SEEDS
    lines = ["# Notebook 08's race: its floor on this machine", "",
             f"`python benchmarks/race_floor.py`, {time.strftime('%Y-%m-%d %H:%M')}, {cpu_model()}, one torch "
             f"thread; load average {loads[0]} before, {loads[1]} after; speed probe (`speed_probe.py`) "
             f"{probes[0]:.2f} s before, {probes[1]:.2f} s after.", "",
             "| contender | seconds per seed (one process) | share of the race |", "|---|---:|---:|"]
    lines += [f"| {name} | {s:.2f} | {100 * s * RACE_SEEDS / total:.0f} % |" for name, s in seconds.items()]
    lines += ["", f"Sum over {len(seconds)} contenders and {RACE_SEEDS} seeds: **{total:.0f} CPU-seconds**; shared "
              f"perfectly by {workers} workers: **{total / workers:.0f} s**, the race's floor."]
    if recorded:
        lines.append(f"The class record's race: {recorded}.")
    lines += ["", f"Seeds stacked with `fit_seeds` ({RACE_SEEDS} seeds, the race's budget):", "",
              "| contender | one after another (s) | stacked (s) | speed-up | largest accuracy difference (points) |",
              "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {a:.2f} | {b:.2f} | {a / b:.2f}x | {gap:.2f} |" for name, (a, b, gap) in kd_rows.items()]
    saved = sum(a - b for a, b, _ in kd_rows.values())
    lines += ["", f"Stacking them saves {saved:.1f} CPU-seconds of the {total:.0f}, "
              f"{saved / workers:.1f} s of the floor.", "",
              f"MetaDistil, BatchNorm-free SmallCNNs, {MD_SEEDS} seeds x {MD_EPOCHS} epochs: {md_rows[0]:.3f} s per "
              f"seed-epoch one after another, {md_rows[1]:.3f} s stacked ({md_rows[0] / md_rows[1]:.2f}x).", ""]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="seeds timed per contender (their median)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "race_floor.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    loads, probes = [load_average()], [probe_seconds()]
    bench = benchmark.load_benchmark(benchmark.Budget(epochs=60), student_width=8, log=lambda *a: None)
    seconds = per_seed_seconds(bench, range(args.seeds))
    kd_rows = stacked_kd(bench)
    md_rows = stacked_metadistil(bench)
    loads.append(load_average())
    probes.append(probe_seconds())
    recorded = None
    if RECORD.exists():
        race = json.loads(RECORD.read_text())["notebooks"].get("08_comparison", {}).get("results", {})
        recorded = f"{race['race_seconds']} s (benchmarks/results/class_run.json)" if "race_seconds" in race else None
    text = report(seconds, args.workers, kd_rows, md_rows, loads, recorded, probes)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
