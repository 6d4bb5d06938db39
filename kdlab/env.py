"""`setup(...)`: the first code cell of every notebook (seeds, threads, device, data root, plot style, banner)."""
import os
import platform
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import config
from .errors import ParameterError
from .parallel import default_workers
from .paths import data_root as resolve_data_root


def headless() -> bool:
    """True when no person is watching: papermill sweeps, CI, nbval, the grader.

    Widgets then render once, statically, and progress bars stay quiet (nbclient can hang on widget
    output, jupyter/nbclient#312).
    """
    flags = ("KDLAB_HEADLESS", "CI", "NBGRADER_EXECUTION", "PAPERMILL_EXECUTION")
    return any(os.environ.get(flag, "").lower() not in ("", "0", "false") for flag in flags)


def pick_device(device="auto") -> torch.device:
    """`auto` picks CUDA when present, else the CPU (never MPS silently: its numbers differ)."""
    config.check("DEVICE", device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ParameterError("DEVICE", device, "'auto' or 'cpu' here: no CUDA device is visible")
    if device == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ParameterError("DEVICE", device, "'auto' or 'cpu' here: no Apple MPS device is visible")
    return torch.device(device)


def default_threads(device) -> int:
    """CPU threads for torch: `KDLAB_THREADS` if set, else 1.

    The kit's models are small: one thread is as fast as several for them, and several threads on a
    busy or shared CPU (a sweep with parallel workers, CI) made steps 10-100x slower in our measurements
    (OpenMP threads spinning against each other). Set `KDLAB_THREADS` or `setup(threads=...)` for more.
    """
    return int(os.environ.get("KDLAB_THREADS", "1"))


def threads_source() -> str:
    """Where `default_threads` took its number from, in words (for `kdlab doctor`)."""
    if os.environ.get("KDLAB_THREADS"):
        return "from KDLAB_THREADS"
    return "the kit's default; KDLAB_THREADS changes it"


def seed_everything(seed: int):
    config.check("SEED", seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Run:
    """What `setup` decided; notebooks pass `run.device`, `run.profile`, `run.data_root` along."""

    profile: str
    seed: int
    device: torch.device
    data_root: Path
    threads: int
    headless: bool
    requested_profile: str = None  # the notebook's PROFILE, when KDLAB_PROFILE overrode it
    dry_run: bool = False          # KDLAB_DRY_RUN=1 in the full profile (`kdlab.reproduce.notebook`)
    workers: int = 1               # processes for independent runs (`kdlab.parallel`): one per core on the CPU

    def generator(self, offset=0) -> torch.Generator:
        """A CPU generator seeded from SEED (+ offset) for data order and splits."""
        return torch.Generator().manual_seed(self.seed + offset)

    def pick(self, values: dict):
        """`run.pick({"smoke": 2, "class": 40, "full": 240})`: the value for this profile (the smoke value in
        a dry run of the full profile: its small-data sections run at smoke budgets, its paper branch on
        FakeData)."""
        return config.by_profile("smoke" if self.dry_run else self.profile, values)


def setup(profile="class", seed=0, device="auto", *, threads=None, data_root=None, expected=None,
          quiet=False, start_workers=False) -> Run:
    """Seed, pick threads and device, locate data, set the kit's plot style (`kdlab.viz.use_kit_style`:
    the colour-blind-safe palette as "C0".."C9"), and print what this run will do.

    `expected` maps profile -> expected run time (a string), printed so a student knows what to expect.
    `start_workers`: start the `run.workers` worker processes now (`kdlab.parallel.warm_up`), for a notebook that
    sends runs to them later: their start (a fresh Python importing torch and the kit, about 2 s) then overlaps
    the notebook's first cells instead of delaying its first parallel cell.
    """
    from .viz import use_kit_style

    resolved = config.resolve_profile(profile)
    use_kit_style()
    seed_everything(seed)
    chosen = pick_device(device)
    threads = threads or default_threads(chosen)
    torch.set_num_threads(threads)
    root = resolve_data_root(data_root)
    requested = profile if profile != resolved else None
    run = Run(resolved, seed, chosen, root, threads, headless(), requested, dry_run(resolved),
              default_workers(chosen))
    if not quiet:
        print(banner(run, expected))
    if start_workers:
        from .parallel import warm_up

        warm_up(run.workers)
    return run


def dry_run(profile):
    """True when `KDLAB_DRY_RUN=1` and the profile is full (elsewhere the variable changes nothing)."""
    value = os.environ.get("KDLAB_DRY_RUN", "").strip()
    if value not in ("", "0", "1"):
        raise ParameterError("KDLAB_DRY_RUN", value, "'1' (a dry run of the full profile), '0' or unset")
    return value == "1" and profile == "full"


def banner(run: Run, expected=None) -> str:
    import kdlab

    device = str(run.device)
    if run.device.type == "cuda":
        device += f" ({torch.cuda.get_device_name(run.device)})"
    lines = [
        f"kdlab {kdlab.__version__} | python {platform.python_version()} | torch {torch.__version__}",
        f"device {device} | {run.threads} CPU thread{'s' if run.threads != 1 else ''} per process, "
        f"{run.workers} process{'es' if run.workers != 1 else ''} for independent runs | seed {run.seed}",
        f"profile {run.profile!r}: {config.PROFILE_HELP[run.profile]}",
    ]
    if run.requested_profile is not None:
        lines.append(f"  (set by the environment variable KDLAB_PROFILE={run.profile}: it overrides PROFILE="
                     f"{run.requested_profile!r} of the parameters cell; unset it to use the cell's value)")
    if run.dry_run:
        lines.append("  DRY RUN (KDLAB_DRY_RUN=1): the small-data sections at smoke budgets, the paper branches "
                     "a few steps on FakeData of the real shapes: every number is meaningless")
    lines += [
        f"data root {run.data_root}",
    ]
    if expected and run.profile in expected:
        lines.append(f"expected run time in this profile: {expected[run.profile]}")
    return "\n".join(lines)
