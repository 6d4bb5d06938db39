"""What one training step costs: wall time and peak memory, measured the same way for every method.

Peak memory is the most bytes that the step itself holds at once on top of what was alive before it
(parameters, data, optimizer state are not counted, so the figure compares methods on the same model).
On CUDA it comes from the caching allocator's statistics; on the CPU, where PyTorch keeps no such
statistic, from the allocation timeline of `torch.profiler` (every allocation and free, in order).
`saved_tensor_bytes` measures one thing more: what autograd keeps for the backward pass.
"""
import contextlib
import os
import statistics
import sys
import time
from dataclasses import dataclass

import torch

from .errors import ParameterError


@dataclass
class StepCost:
    seconds: float  # median wall time of one step
    peak_bytes: int  # most bytes held at once by the step, above what was alive before it (None: not measured)

    @property
    def peak_mb(self):
        return self.peak_bytes / 2**20

    def relative_to(self, other: "StepCost"):
        """(time ratio, memory ratio) of this step over `other`."""
        return self.seconds / other.seconds, self.peak_bytes / max(other.peak_bytes, 1)


@contextlib.contextmanager
def _native_stderr_silenced():
    """The profiler's C++ side logs start/stop lines on file descriptor 2, which Jupyter shows in the
    notebook; Python exceptions are unaffected (they propagate and are printed afterwards)."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _cpu_peak_bytes(step):
    from torch.profiler import ProfilerActivity, profile

    with _native_stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    timeline = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events()
                      if e.self_cpu_memory_usage)
    live = peak = 0
    for _, change in timeline:
        live += change
        peak = max(peak, live)
    return peak


def _cuda_peak_bytes(step, device):
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before


def step_cost(step, *, repeats=5, warmup=1, device="cpu", peak=True) -> StepCost:
    """Median seconds over `repeats` calls of `step()` (after `warmup` calls) and its peak memory (`peak=False`:
    not measured, `peak_bytes` None; on the CPU the profiler's allocation timeline costs several steps' time)."""
    if not isinstance(repeats, int) or repeats < 1:
        raise ParameterError("repeats", repeats, "an integer >= 1")
    device = torch.device(device)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    if not peak:
        return StepCost(statistics.median(times), None)
    peak_bytes = _cuda_peak_bytes(step, device) if device.type == "cuda" else _cpu_peak_bytes(step)
    return StepCost(statistics.median(times), int(peak_bytes))


def state_bytes(*objects):
    """Bytes of the persistent state a method carries between steps: parameters and their .grad (modules)
    and optimiser buffers such as momentum (optimisers)."""
    total = 0
    for obj in objects:
        if isinstance(obj, torch.optim.Optimizer):
            total += sum(v.numel() * v.element_size() for s in obj.state.values() for v in s.values()
                         if torch.is_tensor(v))
        else:
            total += sum(t.numel() * t.element_size() for p in obj.parameters() for t in (p, p.grad) if t is not None)
    return total


def saved_tensor_bytes(fn):
    """Bytes of the tensors autograd saves for backward while `fn()` runs: the activation memory a
    (meta-)gradient's graph keeps alive, the quantity that grows with MAML's inner steps. It counts every
    saved tensor, so a tensor saved twice counts twice; `step_cost` gives the step's peak."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def cpu_model():
    """The processor's model name ("AMD EPYC", "Intel(R) Xeon(R) ..."): machines that look alike (2 cores, the
    same platform string) may run on different processors, at different speeds and with float kernels that
    round differently, so a recorded run names its processor."""
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def load_average():
    """The machine's 1, 5 and 15 minute load averages (timings on a shared CPU are only as good as these)."""
    try:
        return tuple(round(v, 2) for v in os.getloadavg())
    except (OSError, AttributeError):
        return "unavailable"
