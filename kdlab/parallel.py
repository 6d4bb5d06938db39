"""Independent runs on every CPU core: seeds that cannot be stacked (`kdlab.train.fit_seeds`) run side by side.

The kit trains its small models on one thread (`kdlab.env.default_threads`: several threads are no faster for
them), so a notebook that trains seed after seed leaves the other cores idle. `map_in_workers(fn, items,
workers)` sends each item to one of `workers` processes, each on one thread as well, and gives back
`[fn(item) for item in items]` in the items' order. Every run seeds itself, so a seed gives the same numbers in
a worker as in the notebook's own process, bit for bit on the CPU (`tests/unit/test_parallel.py`).

    results = map_in_workers(functools.partial(lesson.run_seed, bench, methods=METHODS), seeds, run.workers)
    job = start(functools.partial(lesson.glyph_maml, glyphs, shots=5, ...), run.workers)  # ... job.result()
    kd, meta = call_all([functools.partial(kd_seeds, ...), functools.partial(meta_seeds, ...)], run.workers)

- `fn` must be picklable: a function of a module, or a `functools.partial` of one. A lambda or a function
  defined in the notebook runs in the notebook's own process, one item after another, with a note saying why.
- What `fn` prints or warns in a worker is printed or warned by the notebook when its result arrives, in the
  items' order.
- `fn` (with the data it holds), each item and each result travel as plain pickles, copied: tensors are not moved to
  shared memory, which would hold a file descriptor per tensor for as long as it lives (a few thousand test
  episodes would exhaust a laptop's limit). The 77 MB of class-profile glyphs take about 0.1 s each way.
- The workers are started with `spawn` (a fork of a kernel with threads and OpenMP can hang) and kept for the
  next cell: the first use costs about 2 s (a fresh Python importing torch and the kit), later uses nothing.
- An interrupted cell (Kernel > Interrupt) stops the workers; the next use starts new ones.
- On a GPU, or with `workers=1`, everything runs in the notebook's process. The default is one worker per usable
  core, at most 4 (`KDLAB_WORKERS` sets the number; `kdlab.env.setup` puts it in `run.workers`).
"""
import atexit
import contextlib
import functools
import gc
import importlib
import io
import multiprocessing
import os
import pickle
import warnings

from .errors import ParameterError

_pool = {"executor": None, "workers": 0, "here_only": False, "exit_hook": False}


def usable_cores():
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# Each worker holds its own Python with torch (about 320 MB of private memory with the kit imported), so the
# default stops at 4 even on a laptop with more cores; KDLAB_WORKERS asks for more.
MAX_DEFAULT_WORKERS = 4


def default_workers(device="cpu"):
    """Worker processes for independent runs: `KDLAB_WORKERS` if set, else one per usable core up to
    MAX_DEFAULT_WORKERS (1 on a GPU or another accelerator)."""
    value = os.environ.get("KDLAB_WORKERS", "").strip()
    if value:
        if not value.isdigit() or int(value) < 1:
            raise ParameterError("KDLAB_WORKERS", value, "a whole number of worker processes, 1 or more "
                                 "(1: every run in the notebook's own process)")
        return int(value)
    return min(usable_cores(), MAX_DEFAULT_WORKERS) if str(device).startswith("cpu") else 1


def _start_worker(threads):
    import signal

    import torch

    torch.set_num_threads(threads)
    # Jupyter's interrupt signals the kernel's whole process group: the notebook's process stops the workers
    # itself (`imap_in_workers`), so a worker ignores the signal instead of dying with a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _call_pickled(payload, arguments):
    """fn(*arguments) for the pickled fn and arguments, with what it prints and warns: the pickled (result,
    printed text, [(warning text, category)])."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), warnings.catch_warnings(record=True) as caught:
        result = pickle.loads(payload)(*pickle.loads(arguments))
    warned = [(str(w.message), w.category) for w in caught]
    return pickle.dumps((result, printed.getvalue(), warned), protocol=pickle.HIGHEST_PROTOCOL)


def _executor(workers):
    executor = _pool["executor"]
    if executor is not None and _pool["workers"] == workers and not getattr(executor, "_broken", False):
        return executor
    shutdown()
    import torch
    from concurrent.futures import ProcessPoolExecutor

    _pool["executor"] = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_start_worker, initargs=(torch.get_num_threads(),))
    _pool["workers"] = workers
    _stop_first_at_exit()
    return _pool["executor"]


def shutdown(kill=False):
    """Stop the worker processes (`kill`: at once, without waiting for their current run). Either way the pool's
    own thread is joined, so its queues and their semaphores are released when this returns."""
    executor, _pool["executor"], _pool["workers"] = _pool["executor"], None, 0
    if executor is None:
        return
    if kill:
        for process in list((getattr(executor, "_processes", None) or {}).values()):
            process.kill()
    executor.shutdown(wait=True, cancel_futures=True)   # after a kill this only joins the pool's thread


atexit.register(shutdown)


def _stop_first_at_exit():
    """Stop the workers before the process that started them ends, in the order that ends it soonest.

    - In a Jupyter kernel, at the kernel's shutdown request: ipykernel then SIGTERMs the children in its
      process group, waiting 0.01, 0.03, 0.1, 0.3, 1 s ... for them to go, and multiprocessing's resource
      tracker ignores SIGTERM; jupyter_client killed the kernel after 2.5 s instead (a restart's shutdown took
      2.6 s, 0.8-1.0 s now). `stop_before_kernel_exit` runs first.
    - At interpreter exit, the workers are killed rather than asked to finish (nobody waits for a result):
      Python joins a process pool's workers in its threading exit hooks, before `atexit`'s, in the reverse
      order of registration; this one is registered after concurrent.futures' own, so it runs first."""
    import threading

    if _pool["exit_hook"]:
        return
    _pool["exit_hook"] = True
    if hasattr(threading, "_register_atexit"):
        threading._register_atexit(functools.partial(shutdown, kill=True))
    kernel = _jupyter_kernel()
    if kernel is not None and callable(getattr(kernel, "do_shutdown", None)):
        kernel.do_shutdown = functools.partial(_do_shutdown_without_workers, kernel.do_shutdown)


def _jupyter_kernel():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return getattr(get_ipython(), "kernel", None)


def _do_shutdown_without_workers(do_shutdown, restart):
    """The kernel's own `do_shutdown(restart)`, after `stop_before_kernel_exit`; then the heap is frozen.

    Only the interpreter's own exit follows (a restart starts a new process), and its garbage collections
    walk every object that torch and the notebook made: 0.6 s of a kernel's shutdown on a 2-core CPU, 0.2 s
    with the objects frozen (`gc.freeze`: the collector skips them; they are still freed when the modules are
    cleared). What is garbage now is collected first, so its finalizers (a file's last flush) still run."""
    stop_before_kernel_exit()
    reply = do_shutdown(restart)
    gc.collect()
    gc.freeze()
    return reply


def stop_before_kernel_exit():
    """Kill the workers, release the pool's semaphores and stop multiprocessing's resource tracker: the
    process then has no child left for a Jupyter kernel's shutdown to wait on. Safe to call twice; a later
    pool starts a new tracker."""
    from multiprocessing import resource_tracker

    shutdown(kill=True)   # the pool's semaphores are released while the tracker still runs
    stop = getattr(getattr(resource_tracker, "_resource_tracker", None), "_stop", None)
    if stop is not None:
        stop()


def warm_up(workers, module="kdlab"):
    """Start the `workers` processes now, each importing `module` and `torch._dynamo`, while this process goes
    on: the first run sent to them (a slider's) then does not wait for a fresh Python to import torch, nor for
    its first optimizer to import `torch._dynamo` (about 1.3 s on a 2-core CPU: every torch optimizer's
    `add_param_group` imports it on first use). Nothing with one worker."""
    if _check_workers(workers) > 1:
        for _ in range(workers):
            _executor(workers).submit(_import, module)


def _import(module):
    importlib.import_module(module)
    importlib.import_module("torch._dynamo")


def _check_workers(workers):
    """`workers` if it is a whole number >= 1; 1 in a process that runs everything itself (`here_only`)."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ParameterError("workers", workers, "a whole number of processes, 1 or more (e.g. run.workers)")
    return 1 if _pool["here_only"] else workers


def here_only():
    """From now on this process computes every run itself (`workers` counts as 1): for a forked copy of a
    kernel (`kdlab.panel_ahead`), whose copies of the kernel's worker pool and its threads do not work."""
    _pool.update(executor=None, workers=0, here_only=True)


def pickled_or_reason(fn):
    """(the pickled fn, None), or (None, why it cannot be sent to a worker process, in words)."""
    try:
        return pickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL), None
    except Exception as error:  # pickle raises several types (PicklingError, AttributeError, TypeError)
        return None, f"{getattr(fn, '__qualname__', type(fn).__name__)} cannot be sent to a worker process ({error})"


def _payload(fn, workers, instead):
    """The pickled `fn` to send to `workers` (> 1) worker processes; None when everything runs in this process:
    one worker, or an `fn` that cannot be pickled (then printed: why, and `instead`, what happens then)."""
    if workers <= 1:
        return None
    payload, reason = pickled_or_reason(fn)
    if reason is not None:
        print(f"{reason}: {instead}")
    return payload


def imap_in_workers(fn, items, workers=1, cost=None):
    """`fn(item)` for each item, yielded in the items' order, computed by `workers` processes. `cost(item)`, if
    given, is a guess of an item's run time: the workers then take the costliest items first, so that no long
    run starts last while the other workers wait (the results still come in the items' order)."""
    items = list(items)
    workers = min(_check_workers(workers), len(items))
    payload = _payload(fn, workers, f"running the {len(items)} items one after another in this process "
                                    "(a function of a module, or functools.partial of one, runs in parallel)")
    if payload is None:
        for item in items:
            yield fn(item)
        return
    order = range(len(items)) if cost is None else sorted(range(len(items)), key=lambda i: -cost(items[i]))
    futures = {i: _submit(payload, (items[i],), workers) for i in order}
    for i in range(len(items)):
        yield _result(futures[i])


def _submit(payload, arguments, workers):
    return _executor(workers).submit(_call_pickled, payload, pickle.dumps(arguments, protocol=pickle.HIGHEST_PROTOCOL))


def _result(future):
    """The result of a submitted call, after printing what it printed."""
    try:
        result, printed, warned = pickle.loads(future.result())
    except BaseException:
        shutdown(kill=True)  # an interrupted cell or a failed run: no worker keeps computing for nobody
        raise
    if printed:
        print(printed, end="", flush=True)
    if warned:
        from .meta.functional import _first_level_outside_kdlab

        for message, category in warned:  # shown at the notebook's line, as a warning in this process would be
            warnings.warn(message, category, stacklevel=_first_level_outside_kdlab())
    return result


class Job:
    """A run started by `start`: `result()` waits for it (or, without a worker, computes it then)."""

    def __init__(self, fn, future):
        self._fn, self._future, self._done = fn, future, False

    def result(self):
        if not self._done:
            self._value = self._fn() if self._future is None else _result(self._future)
            self._done = True
        return self._value


def start(fn, workers=1):
    """Start `fn()` in a worker process and go on; `.result()` of the returned Job gives its value. With
    `workers=1` (or a GPU, or an `fn` that cannot be pickled) `fn()` runs when `.result()` is first called,
    in this process, so a notebook computes exactly what it computed in that place before."""
    workers = _check_workers(workers)
    payload = _payload(fn, workers, "it will run in this process when its result is needed")
    return Job(fn, None if payload is None else _submit(payload, (), workers))


def start_each(fn, items, workers=1):
    """[start(functools.partial(fn, item), workers) for item in items], with `fn` pickled once: every item's run
    queued in the workers now, in the items' order, while this process goes on; `job.result()` gives each. A
    notebook starts the runs of a later cell this way, so that they fill the cores its own runs leave idle.
    With `workers=1` (or an `fn` that cannot be pickled) each runs in this process when its result is needed."""
    items = list(items)
    workers = _check_workers(workers)
    payload = _payload(fn, workers, f"each of the {len(items)} runs will run in this process when its result is needed")
    if payload is None:
        return [Job(functools.partial(fn, item), None) for item in items]
    return [Job(None, _submit(payload, (item,), workers)) for item in items]


def map_in_workers(fn, items, workers=1, cost=None):
    """[fn(item) for item in items], computed by `workers` processes (see the module's docstring); `cost` as in
    `imap_in_workers`."""
    return list(imap_in_workers(fn, items, workers, cost))


def call_all(calls, workers=1):
    """[call() for call in calls], computed by `workers` processes: different runs side by side, each call a
    `functools.partial` of a module's function. The workers take the calls in order, so the longest go first."""
    return map_in_workers(_call, calls, workers)


def _call(fn):
    return fn()


def in_turn(calls):
    """[call() for call in calls], one after another: `start(functools.partial(in_turn, calls), workers)` queues
    several runs on one worker, so that they fill the time it would wait while this process trains a longer one."""
    return [call() for call in calls]
