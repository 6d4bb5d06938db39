"""Seeds per second: `kdlab.train.seeds.fit_seeds` (all seeds stacked, one vmapped step) against `fit` seed after
seed, on notebook 01's protocol (300 digits, a 64-8-10 MLP student, 30 epochs, batch 64), for CE and KD.

    python benchmarks/seeds_vectorised.py [--seeds 10] [--repeats 3] [--out benchmarks/results/seeds_vectorised.md]

Both produce the same students bit for bit (tests/unit/test_seeds.py); the table gives the best of `repeats`
wall times of each, in one process on one torch thread, with the machine's load average.
"""
import argparse
import os
import time
from pathlib import Path

import torch

from kdlab.data import load
from kdlab.models import MLP
from kdlab.profiling import load_average
from kdlab.train import distill_from, fit
from kdlab.train.seeds import fit_seeds

RECIPE = dict(epochs=30, lr=0.05, batch_size=64, eval_every=30)


def student(seed):
    torch.manual_seed(seed)
    return MLP(64, hidden=(8,), num_classes=10)


def best_of(repeats, function):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "seeds_vectorised.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = load("digits", train_size=300, seed=0)
    torch.manual_seed(0)
    teacher = MLP(64, hidden=(256, 256), num_classes=10)
    fit(teacher, data, epochs=30, lr=0.01, batch_size=50, seed=0, progress=False)
    seeds = list(range(args.seeds))
    rows, load_before = [], load_average()
    for name, alpha in (("CE", 0.0), ("KD (alpha 0.9, T 4)", 0.9)):
        objective = distill_from(teacher, alpha, 4.0) if alpha else None
        one_by_one = best_of(args.repeats, lambda: [fit(student(s), data, objective, seed=s, progress=False, **RECIPE)
                                                    for s in seeds])
        together = best_of(args.repeats, lambda: fit_seeds(student, data, seeds, teacher=teacher, alpha=alpha,
                                                           temperature=4.0, **RECIPE))
        rows.append((name, one_by_one, together))
    lines = [
        "# Seeds trained together: seeds per second", "",
        f"Measured {time.strftime('%Y-%m-%d')} with `python benchmarks/seeds_vectorised.py --seeds {args.seeds} "
        f"--repeats {args.repeats}`: one torch thread, load average {load_before} before and {load_average()} after "
        f"({os.cpu_count()} CPUs). Notebook 01's protocol: 300 digits, a 64-8-10 MLP student, 30 epochs of batch 64 "
        "(150 steps per seed), evaluation at the end; best of the repeats. The students are bit for bit the same "
        "(tests/unit/test_seeds.py).", "",
        f"| objective | {args.seeds} seeds one by one (`fit`) | together (`fit_seeds`) | seeds/s one by one | "
        "seeds/s together | speed-up |", "|---|---|---|---|---|---|"]
    for name, a, b in rows:
        lines.append(f"| {name} | {a:.2f} s | {b:.2f} s | {args.seeds / a:.1f} | {args.seeds / b:.1f} | {a / b:.1f}x |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
