"""A panel's next slider moves, computed ahead while the student reads.

A training panel retrains on every move (1-3 s on a 2-core CPU). Most moves are small: one slider, one or two
steps from where it stands. While the student reads the panel, `Ahead` computes those settings in a copy of
the kernel (`os.fork`, so the panel's compute, its data and models need no pickling) at the lowest CPU
priority (nice 19: a cell that runs meanwhile keeps its speed), and hands each result back. The panel keeps
them (`Panel.set` looks there first), so such a move costs only the redraw. Every move starts a new copy
around the new setting; a move outside the neighbourhood is computed as before.

A panel's compute is a pure function of its slider values (the `Panel` contract), so a setting computed
ahead gives the data the kernel would compute itself; `audit_sliders(ahead=True)` checks this for every
slider of every notebook (the same plotted data both ways). Linux only (fork after torch is safe there with
one thread per process); elsewhere, and in headless runs, nothing is computed ahead unless
KDLAB_PANEL_AHEAD=1 asks for it (KDLAB_PANEL_AHEAD=0 turns it off everywhere).
"""
import atexit
import math
import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import tempfile
import warnings
from pathlib import Path

NICE = 19  # the lowest priority: Linux gives such a process about 1.5 % of a core another process wants
STEPS = (1, 2)  # a slider moved one and two steps either way
LOG_STEPS = (1, 2, 4)  # a log slider (a quarter decade per step) also a decade either way, as learning rates move


def setting_key(values):
    """A hashable key of a panel's control values (the cache's key). Floats to 12 significant digits: the
    browser's slider computes 10 ** -3.75 or 0.05 * 17 in its own way, and a last-bit difference must not
    make a setting computed ahead look like another one."""
    return tuple(sorted((name, _plain(value)) for name, value in values.items()))


def _plain(value):
    return float(f"{value:.12g}") if isinstance(value, float) else value


def snapped(control, candidate):
    """`candidate` as the control holds it (a whole number for an int slider, 12 significant digits for a float),
    or None outside the control's range."""
    candidate = int(round(candidate)) if control.kind == "int" else _plain(float(candidate))
    return candidate if control.min <= candidate <= control.max else None


def neighbours(controls, values, steps=STEPS, log_steps=LOG_STEPS):
    """The settings one slider away from `values`: each number slider `steps` steps either way (a log slider
    `log_steps` steps of a quarter decade, as its widget moves), each choice at each other option; inside the
    ranges, nearest first, so a copy stopped early has computed the likeliest moves."""
    found = []
    for step in sorted(set(steps) | set(log_steps)):
        for name, control in controls.items():
            if step not in (log_steps if control.kind == "log" else steps):
                continue
            for value in _moves(control, values[name], step):
                setting = {**values, name: value}
                if setting != values and setting not in found:
                    found.append(setting)
    return found


def _moves(control, value, step):
    if control.kind == "button":
        return []
    if control.kind == "choice":
        return [option for option in control.options if option != value] if step == 1 else []
    if control.kind == "log":
        candidates = [value * 10 ** (-0.25 * step), value * 10 ** (0.25 * step)]
    else:
        candidates = [value - step * control.step, value + step * control.step]
    moved = [snapped(control, candidate) for candidate in candidates]
    return [candidate for candidate in moved if candidate is not None and not math.isclose(candidate, value)]


def wanted():
    """Whether panels compute ahead here: KDLAB_PANEL_AHEAD=1/0 decides; unset, only in a live kernel on Linux."""
    from .env import headless

    setting = os.environ.get("KDLAB_PANEL_AHEAD", "")
    if setting in ("0", "1"):
        return setting == "1" and _can_fork()
    return _can_fork() and not headless()


def _can_fork():
    """Linux, and no CUDA context yet (a forked copy cannot use the kernel's)."""
    torch = sys.modules.get("torch")
    cuda_started = torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized()
    return sys.platform.startswith("linux") and not cuda_started


class Ahead:
    """One copy of the kernel computing `compute(**setting)` for each of `settings`, nearest first.

        ahead = Ahead(panel.compute, neighbours(panel.controls, panel.values))
        ahead.collect()   # {setting_key: data} of the settings finished since the last call
        ahead.stop()

    The copy writes each result to a file of its own folder (renamed into place when complete), so it never
    waits for the kernel to read, and killing it mid-write leaves nothing half-read.
    """

    def __init__(self, compute, settings):
        self.pending = [setting_key(s) for s in settings]
        self.folder = Path(tempfile.mkdtemp(prefix="kdlab-panel-ahead-"))
        _folders.add(self.folder)
        self._process = multiprocessing.get_context("fork").Process(
            target=_compute_all, args=(compute, settings, self.folder, os.getpid()), daemon=True,
            name="kdlab-panel-ahead")
        with warnings.catch_warnings():  # Python 3.12+ warns about fork in a threaded process; the copy never
            warnings.simplefilter("ignore", DeprecationWarning)  # touches the kernel's threads or sockets
            self._process.start()

    def collect(self):
        """{setting key: data} of the settings computed since the last call (None for a setting whose compute
        failed: the kernel then computes it itself and shows the error)."""
        done = {}
        for path in sorted(self.folder.glob("*.pickle")) if self.folder.exists() else ():
            key, payload = pickle.loads(path.read_bytes())
            path.unlink()
            done[key] = None if payload is None else pickle.loads(payload)
            if key in self.pending:
                self.pending.remove(key)
        return done

    def running(self):
        return self._process.is_alive()

    def stop(self):
        """Stop the copy and remove its folder (`collect` first to keep what it finished)."""
        if self._process.is_alive():
            self._process.kill()
        self._process.join(timeout=5)
        shutil.rmtree(self.folder, ignore_errors=True)
        _folders.discard(self.folder)


_folders = set()  # the folders of copies not stopped yet, removed when the kernel exits


@atexit.register
def _remove_folders():
    for folder in list(_folders):
        shutil.rmtree(folder, ignore_errors=True)


def _compute_all(compute, settings, folder, parent):
    """In the copy: lowest priority, one torch thread, no output, every run in this process; then each
    setting's data, pickled here so that a failure is caught here, in a file of its own."""
    os.nice(NICE)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # interrupting a cell of the kernel stops the kernel's work only
    devnull = open(os.devnull, "w")
    sys.stdout = sys.stderr = devnull
    import torch

    from . import parallel

    torch.set_num_threads(1)
    parallel.here_only()  # the kernel's worker processes belong to the kernel
    for number, setting in enumerate(settings):
        if os.getppid() != parent:  # the kernel is gone
            break
        try:
            payload = pickle.dumps(compute(**setting), protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:  # noqa: BLE001 (the kernel computes it itself and shows the error there)
            payload = None
        partial = folder / f"{number:04d}.partial"
        partial.write_bytes(pickle.dumps((setting_key(setting), payload), protocol=pickle.HIGHEST_PROTOCOL))
        partial.rename(folder / f"{number:04d}.pickle")
