"""Test episodes per second: TSMD's meta-test with the episodes vmapped (`kdlab.methods.tsmd_batched`, what
`tsmd.evaluate` runs) against one episode after another (`evaluate(..., one_by_one=True)`), on notebook 06's
protocol: the glyph pair (Conv-4 teacher width 32, student width 8), 5-way 1- and 5-shot test episodes with 10
queries per class, one inner step of lr 0.4 for each model, KD weight 1 at T = 1; and notebook 02's MAML test
(Conv-4 width 32, 15 queries per class, 3 inner steps): `meta.evaluate`, one episode after another, against the
same steps vmapped with `kdlab.meta.batched`, 5 and 10 episodes per call, which shows why `meta.evaluate` keeps
its loop.

    python benchmarks/episodes_vectorised.py [--episodes 300] [--repeats 3] [--out FILE]

Untrained models: the cost of a step does not depend on what the weights hold. Best of `repeats` wall times,
one process on one torch thread, after one warm-up call of each (the first vmapped call in a process pays about
a second once); "same accuracies" compares every episode's accuracy between the two.
"""
import argparse
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from kdlab import meta
from kdlab.data import load
from kdlab.data.episodes import EpisodeSampler
from kdlab.meta.batched import first_order_inner_loop, over_episodes, stack_episodes
from kdlab.methods import tsmd
from kdlab.models.conv4 import Conv4, conv4_pair
from kdlab.profiling import load_average

ROWS = ("student", "fixed_teacher", "ours", "oracle")
KNOBS = dict(inner_steps=1, inner_lr=0.4, kd_weight=1.0, temperature=1.0)


def best_of(repeats, function):
    function()  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return min(times), result


def tsmd_rows(glyphs, shots, episodes, repeats):
    teacher, student = conv4_pair(0, ways=5, teacher_hidden=32, student_hidden=8)
    sampler = EpisodeSampler(glyphs, "test", ways=5, shots=shots, queries=10, seed=10_000)
    tasks = [tuple(sampler.episode(i)) for i in range(episodes)]
    rows = []
    for row in ROWS:
        knobs = dict(KNOBS, variant=row, teacher_inner_steps=0 if row == "fixed_teacher" else 1)
        one, a = best_of(repeats, lambda: tsmd.evaluate(teacher, student, tasks, one_by_one=True, **knobs))
        together, b = best_of(repeats, lambda: tsmd.evaluate(teacher, student, tasks, **knobs))
        rows.append((f"TSMD {row}, {shots}-shot (06)", one, together,
                     torch.equal(a["accuracies"], b["accuracies"])))
    return rows


def maml_row(glyphs, episodes, repeats, chunk):
    """`meta.evaluate` (one episode after another) against the same first-order steps vmapped, `chunk` per call."""
    torch.manual_seed(0)
    net = Conv4(1, 5, hidden=32)
    sampler = EpisodeSampler(glyphs, "test", ways=5, shots=1, queries=15, seed=10_000)
    tasks = [tuple(sampler.episode(i)) for i in range(episodes)]
    params = {name: p.detach() for name, p in meta.params_of(net).items()}

    def one_episode(x_s, y_s, x_q):
        fast = first_order_inner_loop(net, params, F.cross_entropy, (x_s, y_s), steps=3, lr=0.4)
        return meta.forward(net, fast, x_q, support=x_s)

    def together():
        with torch.no_grad():
            logits = over_episodes(one_episode, stack_episodes(tasks, (0, 1, 2)), chunk)
        return (logits.argmax(-1) == torch.stack([t[3] for t in tasks])).float().mean(1)

    one, a = best_of(repeats, lambda: meta.evaluate(net, tasks, steps=3, lr=0.4)["accuracies"])
    vmapped, b = best_of(repeats, together)
    return [(f"MAML, 1-shot (02), {chunk} episodes per call", one, vmapped, torch.equal(a, b))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "episodes_vectorised.md")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    glyphs = load("glyphs", image_size=28, samples_per_class=20)
    load_before = load_average()
    rows = tsmd_rows(glyphs, 1, args.episodes, args.repeats) + tsmd_rows(glyphs, 5, args.episodes, args.repeats)
    rows += maml_row(glyphs, args.episodes, args.repeats, 5) + maml_row(glyphs, args.episodes, args.repeats, 10)
    lines = [
        "# Test episodes scored together: episodes per second", "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/episodes_vectorised.py --episodes "
        f"{args.episodes} --repeats {args.repeats}`: one torch thread, load average {load_before} before and "
        f"{load_average()} after ({os.cpu_count()} CPUs). Notebook 06's test episodes (5-way, 10 queries per class, "
        "one inner step of lr 0.4 per model; the teacher Conv-4 width 32 ten episodes per call, the student width "
        "8 fifty) and notebook 02's (width 32, 15 queries per class, three inner steps); best of the repeats after "
        "a warm-up.", "",
        f"| what is scored | {args.episodes} episodes one by one | together | episodes/s one by one | "
        "episodes/s together | speed-up | same accuracies |", "|---|---|---|---|---|---|---|"]
    for name, a, b, same in rows:
        lines.append(f"| {name} | {a:.2f} s | {b:.2f} s | {args.episodes / a:.0f} | {args.episodes / b:.0f} | "
                     f"{a / b:.2f}x | {'yes' if same else 'no'} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
