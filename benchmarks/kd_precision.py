"""How exact is the KD loss's value? T^2 KL(p_t || p_s) against a 50-digit mpmath reference, per temperature
and dtype, for the textbook formula (before) and `kdlab.losses.kd_loss` (after).

    python benchmarks/kd_precision.py            # about a minute on one CPU core
    python benchmarks/kd_precision.py --quick    # two seeds, a few seconds

Inputs: for each temperature, logits drawn from N(0, scale^2) with scale 1e-3, 1, 30 and 1e3 (clipped to
+-1e3), batch 4, 10 classes, several seeds, in float64 and float32 (the float32 logits are the float64 ones
rounded; the reference takes the exact float32 values). Reported per temperature and dtype: the largest
relative error over those inputs, and how many values came out below 0 (impossible for a KL). Relative errors are
measured against max(reference, 1e-300) in float64 and max(reference, 1e-37) in float32, the values below
which a float may round to 0. The goal: at most 1e-6 in float64 and 1e-3 in float32, never negative.

Also measured: the time of one KD loss with its backward (batch 64, 10 classes, float32), before and after,
the smallest of 15 repeats of 200 calls in process CPU time. The gradients are the textbook ones, bit for bit
(tests/unit/test_losses.py proves it): only the value's extra work costs time.
The table goes to stdout and to benchmarks/results/kd_precision.md.
"""
import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import mpmath
import torch

from kdlab import losses

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.unit.test_losses import mpmath_kd_loss, textbook_kd_loss  # noqa: E402  (one reference, the tests')

RESULTS = Path(__file__).resolve().parent / "results" / "kd_precision.md"
TEMPERATURES = [1e-2, 1e-1, 1.0, 4.0, 20.0, 1e2, 1e3, 1e4, 1e5, 1e6, 1e8, 1e9, 1e10, 1e12]
SCALES = [1e-3, 1.0, 30.0, 1e3]
GOAL = {torch.float64: 1e-6, torch.float32: 1e-3}
TINY = {torch.float64: 1e-300, torch.float32: 1e-37}


def precision_rows(seeds):
    rows = []
    for dtype in (torch.float64, torch.float32):
        for tau in TEMPERATURES:
            worst = {"before": 0.0, "after": 0.0}
            negative = {"before": 0, "after": 0}
            for seed in range(seeds):
                for scale in SCALES:
                    g = torch.Generator().manual_seed(seed)
                    logits = scale * torch.randn(2, 4, 10, generator=g, dtype=torch.float64)
                    zs, zt = logits.clamp(-1e3, 1e3).to(dtype)
                    reference = mpmath_kd_loss(zs, zt, tau)
                    for name, fn in (("before", textbook_kd_loss), ("after", losses.kd_loss)):
                        value = float(fn(zs, zt, tau))
                        error = float(abs(mpmath.mpf(value) - reference) / max(reference, mpmath.mpf(TINY[dtype])))
                        worst[name] = max(worst[name], error)
                        negative[name] += value < 0
            rows.append((str(dtype).removeprefix("torch."), tau, worst, negative, GOAL[dtype]))
    return rows


def cpu_time_per_call(fn, zs, zt, repeats=15, number=200):
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for _ in range(number):
            fn(zs, zt, 4.0).backward()
        best = min(best, (time.process_time() - start) / number)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="two seeds instead of five")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = precision_rows(2 if args.quick else 5)

    g = torch.Generator().manual_seed(0)
    zs, zt = torch.randn(2, 64, 10, generator=g)
    zs.requires_grad_()
    timing = {name: cpu_time_per_call(fn, zs, zt)
              for name, fn in (("before", textbook_kd_loss), ("after", losses.kd_loss))}

    def sci(v):
        return f"{v:.1e}"

    lines = [
        "# The KD loss's value against a 50-digit reference, before and after",
        "",
        f"{datetime.date.today()}, torch {torch.__version__}, mpmath {mpmath.__version__}, {platform.machine()}, "
        f"1 torch thread, {os.cpu_count()} CPUs; "
        f"`python benchmarks/kd_precision.py{' --quick' if args.quick else ''}`.",
        "",
        "T^2 KL(p_t || p_s), batchmean, for logits of scale " + ", ".join(f"{s:g}" for s in SCALES)
        + f" (batch 4, 10 classes, {2 if args.quick else 5} seeds each). Before: the textbook formula "
        "(F.kl_div of two log-softmaxes); after: `kdlab.losses.kd_loss`. Max relative error against mpmath, "
        f"and how many of the {(2 if args.quick else 5) * len(SCALES)} values came out below 0 (a KL never is).",
        "",
        "| dtype | T | max rel. error before | max rel. error after | goal | values < 0 before | values < 0 after |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for dtype, tau, worst, negative, goal in rows:
        lines.append(f"| {dtype} | {tau:g} | {sci(worst['before'])} | {sci(worst['after'])} | {goal:g} | "
                     f"{negative['before']} | {negative['after']} |")
    met = all(worst["after"] <= goal and negative["after"] == 0 for _, _, worst, negative, goal in rows)
    lines += [
        "",
        f"Goal (after: at most 1e-6 in float64, 1e-3 in float32, never negative): **{'met' if met else 'NOT met'}**.",
        "",
        f"Time of one KD loss with its backward (batch 64, 10 classes, float32, CPU time, best of 15 x 200 calls): "
        f"before {timing['before'] * 1e6:.0f} us, after {timing['after'] * 1e6:.0f} us "
        f"({timing['after'] / timing['before']:.1f}x: a rounding bound is checked on every call; where it fails the "
        "value is recomputed in float64, or exactly, next to the textbook formula, whose gradients are kept).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
