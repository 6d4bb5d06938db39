"""Seeds per second for MetaDistil: `kdlab.train.seeds_metadistil.fit_seeds_metadistil` (all seeds' students and
teachers stacked, one step for all) against `fit(MetaDistil(...))` seed after seed, on notebook 03's class protocol
(300 digits, a 64-256-256-10 teacher trained 150 epochs, 64-16-10 MLP students, 150 epochs of batch 64 at lr 0.01,
ALPHA 0.9, TEMPERATURE 4, TEACHER_LR 1e-4, QUIZ_FRACTION 0.1, quiz batch 30, 8 seeds, evaluation at the end).

    python benchmarks/seeds_metadistil.py [--seeds 8] [--epochs 150] [--repeats 3] [--out ...]

The table gives the best of `repeats` wall times of each, in one process on one torch thread, with the machine's
load average; after timing, every seed's final student and teacher, test accuracies and per-step "toward" decisions
from the two paths are compared bit for bit.
"""
import argparse
import copy
import os
import time
from pathlib import Path

import torch

from kdlab.data import load
from kdlab.methods.metadistil import MetaDistil
from kdlab.models import MLP
from kdlab.profiling import load_average
from kdlab.train import fit
from kdlab.train.seeds_metadistil import fit_seeds_metadistil

KNOBS = dict(teacher_lr=1e-4, alpha=0.9, temperature=4.0, quiz_fraction=0.1, quiz_batch_size=30)


def student(seed):
    torch.manual_seed(seed)
    return MLP(64, hidden=(16,), num_classes=10)


def best_of(repeats, function):
    times, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return min(times), result


def one_by_one(teacher, data, seeds, recipe, pilot_update):
    methods = [MetaDistil(student(s), copy.deepcopy(teacher), pilot_update=pilot_update, **KNOBS) for s in seeds]
    return methods, [fit(method, data, seed=seed, progress=False, **recipe) for seed, method in zip(seeds, methods)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "seeds_metadistil.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = load("digits", train_size=300, seed=0)
    torch.manual_seed(0)
    teacher = MLP(64, hidden=(256, 256), num_classes=10)
    fit(teacher, data, epochs=150, lr=0.01, batch_size=64, seed=0, progress=False)
    teacher.eval()
    recipe = dict(epochs=args.epochs, lr=0.01, batch_size=64, eval_every=args.epochs)
    seeds, rows, load_before = list(range(args.seeds)), [], load_average()
    for name, pilot_update in (("MetaDistil", True), ("MetaDistil w/o pilot update", False)):
        a, (methods, references) = best_of(args.repeats, lambda: one_by_one(teacher, data, seeds, recipe, pilot_update))
        b, (students, teachers, histories) = best_of(args.repeats, lambda: fit_seeds_metadistil(
            student, teacher, data, seeds, pilot_update=pilot_update, **KNOBS, **recipe))
        same = all(torch.equal(x, y) for m, s, t in zip(methods, students, teachers)
                   for got, want in ((s, m.model), (t, m.teacher))
                   for x, y in zip(got.state_dict().values(), want.state_dict().values()))
        same = same and all([r.get(k) for r in h.records] == [r.get(k) for r in ref.records]
                            for h, ref in zip(histories, references) for k in ("test_acc", "teacher_test_acc"))
        same = same and all([r["toward"] for r in h.steps] == [r["toward"] for r in ref.steps]
                            for h, ref in zip(histories, references))
        rows.append((name, a, b, same))
    steps = args.epochs * -(-270 // 64)
    lines = [
        "# MetaDistil seeds trained together: seeds per second", "",
        f"Measured {time.strftime('%Y-%m-%d')} with `python benchmarks/seeds_metadistil.py --seeds {args.seeds} "
        f"--epochs {args.epochs} --repeats {args.repeats}`: one torch thread, load average {load_before} before and "
        f"{load_average()} after ({os.cpu_count()} CPUs), torch {torch.__version__}. Notebook 03's class protocol: "
        "300 digits (270 to train, 30 quiz), a 64-256-256-10 teacher, 64-16-10 MLP students, "
        f"{args.epochs} epochs of batch 64 ({steps} steps per seed) at lr 0.01, ALPHA 0.9, TEMPERATURE 4, "
        "TEACHER_LR 1e-4, quiz batch 30, evaluation at the end; best of the repeats. 'bit for bit': every seed's "
        "final student and teacher, its test accuracies and its teacher's 'toward' decisions equal its own "
        "`fit(MetaDistil(...))`.", "",
        f"| method | {args.seeds} seeds one by one (`fit`) | together (`fit_seeds_metadistil`) | seeds/s one by one | "
        "seeds/s together | speed-up | bit for bit |", "|---|---|---|---|---|---|---|"]
    for name, a, b, same in rows:
        lines.append(f"| {name} | {a:.2f} s | {b:.2f} s | {args.seeds / a:.2f} | {args.seeds / b:.2f} | "
                     f"{a / b:.1f}x | {'yes' if same else 'NO'} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
