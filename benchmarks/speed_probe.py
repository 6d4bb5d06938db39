"""How fast this machine is right now: a fixed piece of the kit's work on one thread, timed.

    python benchmarks/speed_probe.py          # prints {"speed_probe_seconds": ..., "cpu": ...}

The 2-core machines the benchmarks run on are not one machine: between sessions the processor changed (an Intel
Xeon, an AMD EPYC) and the same computation took up to 1.5x as long. A recorded run time is read together with
the probe taken when it ran: `slider_effects.py` (the class record) takes it before and after its run.

The probe: 300 SGD steps (momentum 0.9) of notebook 08's student, a SmallCNN of width 8, on batches of 50
random 8x8 images with cross-entropy, forward and backward, as most of the kit's steps are; the best of five
repeats, so a moment of load elsewhere does not count.
"""
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kdlab.models import SmallCNN  # noqa: E402
from kdlab.profiling import cpu_model  # noqa: E402

STEPS = 300
REPEATS = 5


def probe_seconds(steps=STEPS, repeats=REPEATS):
    """The fastest of `repeats` timings of `steps` training steps of 08's student, on one torch thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(steps, 50, 1, 8, 8, generator=generator)
        y = torch.randint(0, 10, (steps, 50), generator=generator)
        best = float("inf")
        for _ in range(repeats):
            torch.manual_seed(0)
            model = SmallCNN(10, width=8, in_channels=1)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
            started = time.perf_counter()
            for i in range(steps):
                loss = F.cross_entropy(model(x[i]), y[i])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            best = min(best, time.perf_counter() - started)
        return round(best, 3)
    finally:
        torch.set_num_threads(threads)


if __name__ == "__main__":
    print(json.dumps({"speed_probe_seconds": probe_seconds(), "cpu": cpu_model()}))
