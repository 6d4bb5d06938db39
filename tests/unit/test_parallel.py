"""Independent runs in worker processes (`kdlab.parallel`): the same results as in the notebook's process,
in the items' order, with what they print, and clear failures."""
import functools
import gc
import os

import pytest
import torch

from kdlab import parallel, stats
from kdlab.errors import ParameterError

from .parallel_runs import (accuracy_of_seed, distil_cnn, fail_on_two, imported_modules, square_after_pause,
                            start_time_after_pause, warn_and_return)


def test_a_run_in_a_worker_equals_the_run_in_this_process_bit_for_bit():
    in_workers = parallel.map_in_workers(distil_cnn, [3, 4], workers=2)
    here = [distil_cnn(3), distil_cnn(4)]
    assert {run["pid"] for run in in_workers}.isdisjoint({os.getpid()})  # they did run elsewhere
    for theirs, ours in zip(in_workers, here):
        assert theirs["acc"] == ours["acc"]
        assert theirs["weights"].keys() == ours["weights"].keys()
        for name, tensor in ours["weights"].items():
            assert torch.equal(theirs["weights"][name], tensor), name


def test_results_and_printed_lines_come_in_the_items_order(capsys):
    assert parallel.map_in_workers(square_after_pause, [0, 1, 2, 3], workers=2) == [0, 1, 4, 9]
    assert capsys.readouterr().out == "item 0\nitem 1\nitem 2\nitem 3\n"


def test_warnings_in_a_worker_are_warned_here():
    with pytest.warns(RuntimeWarning) as caught:
        assert parallel.map_in_workers(warn_and_return, [1, 2], workers=2) == [1, 2]
    assert [str(w.message) for w in caught] == ["item 1 warns", "item 2 warns"]
    assert all(w.filename == __file__ for w in caught)  # at the caller's line, not inside the kit


def test_over_seeds_in_workers_equals_over_seeds_in_this_process():
    together = stats.over_seeds(accuracy_of_seed, [0, 1], progress=False, workers=2)
    assert together == stats.over_seeds(accuracy_of_seed, [0, 1], progress=False)


def test_a_function_that_cannot_be_pickled_runs_here_with_a_note(capsys):
    assert parallel.map_in_workers(lambda x: (x, os.getpid()), [1, 2], workers=2) == [(1, os.getpid()),
                                                                                    (2, os.getpid())]
    assert "cannot be sent to a worker process" in capsys.readouterr().out
    assert parallel.map_in_workers(functools.partial(divmod, 7), [2, 3], workers=2) == [(3, 1), (2, 1)]


def test_a_failing_run_raises_its_error_and_the_next_call_starts_new_workers():
    with pytest.raises(ValueError, match="item 2 failed on purpose"):
        parallel.map_in_workers(fail_on_two, [0, 1, 2, 3], workers=2)
    assert parallel._pool["executor"] is None
    assert parallel.map_in_workers(fail_on_two, [0, 1], workers=2) == [0, 1]


def test_worker_counts(monkeypatch):
    with pytest.raises(ParameterError, match="workers"):
        parallel.map_in_workers(abs, [1], workers=0)
    monkeypatch.setenv("KDLAB_WORKERS", "two")
    with pytest.raises(ParameterError, match="KDLAB_WORKERS"):
        parallel.default_workers()
    monkeypatch.setenv("KDLAB_WORKERS", "3")
    assert parallel.default_workers("cuda") == 3
    monkeypatch.delenv("KDLAB_WORKERS")
    assert parallel.default_workers("cuda") == 1 and parallel.default_workers("mps") == 1
    assert parallel.default_workers("cpu") == min(parallel.usable_cores(), parallel.MAX_DEFAULT_WORKERS)
    monkeypatch.setattr(parallel, "usable_cores", lambda: 16)
    assert parallel.default_workers("cpu") == parallel.MAX_DEFAULT_WORKERS == 4


def test_the_two_seeds_differ_so_that_equality_means_something():
    first, second = distil_cnn(3)["weights"], distil_cnn(4)["weights"]
    assert any(not torch.equal(first[name], second[name]) for name in first if first[name].is_floating_point())


def test_a_started_job_runs_in_a_worker_while_this_process_goes_on():
    job = parallel.start(functools.partial(distil_cnn, 5), workers=2)
    here = distil_cnn(5)  # computed meanwhile, in this process
    there = job.result()
    assert there["pid"] != os.getpid() and job.result() is there
    assert all(torch.equal(there["weights"][name], tensor) for name, tensor in here["weights"].items())
    assert there["acc"] == here["acc"]


def test_a_job_without_a_worker_runs_when_its_result_is_first_needed(capsys):
    calls = []
    job = parallel.start(lambda: calls.append(1) or 7, workers=1)
    assert calls == []
    assert job.result() == 7 and job.result() == 7 and calls == [1]
    job = parallel.start(lambda: calls.append(2) or 8, workers=2)  # a lambda cannot go to a worker
    assert "cannot be sent to a worker process" in capsys.readouterr().out
    assert calls == [1] and job.result() == 8 and calls == [1, 2]


def test_different_calls_side_by_side_come_back_in_order():
    calls = [functools.partial(square_after_pause, 0), functools.partial(square_after_pause, 2), os.getpid]
    squares_first, squares_second, worker_pid = parallel.call_all(calls, workers=2)
    assert (squares_first, squares_second) == (0, 4)
    assert worker_pid != os.getpid()
    assert parallel.call_all(calls, workers=1)[2] == os.getpid()


def test_the_costliest_items_start_first_and_the_results_keep_the_items_order():
    items = [0, 1, 2, 3]
    started = parallel.map_in_workers(start_time_after_pause, items, workers=2, cost=lambda item: item)
    assert max(started[3], started[2]) < min(started[1], started[0])  # 3 and 2 first, then 1 and 0
    assert parallel.map_in_workers(square_after_pause, items, workers=2, cost=lambda item: -item) == [0, 1, 4, 9]


def test_warm_workers_have_imported_what_the_first_optimizer_needs():
    parallel.shutdown()
    parallel.warm_up(2, "kdlab.stats")
    names = ["kdlab.stats", "torch._dynamo", "kdlab.lessons.tsmd"]
    seen = parallel.map_in_workers(imported_modules, [names] * 2, workers=2)
    assert seen == [names[:2]] * 2, "each worker imports the module asked for and torch._dynamo, nothing more"


def test_runs_started_each_queue_in_order_and_come_back_when_asked(capsys):
    jobs = parallel.start_each(square_after_pause, [3, 1, 2], workers=2)
    later = parallel.start(functools.partial(square_after_pause, 0), workers=2)   # queued behind them
    assert later.result() == 0 and [job.result() for job in jobs] == [9, 1, 4]
    out = capsys.readouterr().out
    assert out == "item 0\nitem 3\nitem 1\nitem 2\n", "each run's printing comes with its result"
    started = [job.result() for job in parallel.start_each(start_time_after_pause, [0, 1, 2, 3], workers=2)]
    assert max(started[0], started[1]) < min(started[2], started[3]), "the workers take the runs in the items' order"


def test_runs_started_each_without_workers_run_here_when_asked():
    calls = []
    jobs = parallel.start_each(lambda item: calls.append(item) or item * 10, [1, 2], workers=1)
    assert calls == []
    assert jobs[1].result() == 20 and calls == [2] and jobs[0].result() == 10 and calls == [2, 1]


class FakeKernel:
    """Stands in for ipykernel's kernel: records the processes still alive when its shutdown begins."""

    def __init__(self, psutil):
        self.psutil, self.alive_at_shutdown = psutil, None

    def do_shutdown(self, restart):
        self.alive_at_shutdown = [child.cmdline()[-1] for child in self.psutil.Process().children(recursive=True)]
        return {"status": "ok", "restart": restart}


def test_a_kernel_shutting_down_has_no_child_left_to_wait_for(monkeypatch, capfd):
    # ipykernel SIGTERMs its children and waits; multiprocessing's resource tracker ignores SIGTERM, so a kernel
    # with workers was killed by jupyter_client after 2.5 s instead of exiting
    psutil = pytest.importorskip("psutil")
    parallel.shutdown()
    kernel = FakeKernel(psutil)
    monkeypatch.setattr(parallel, "_jupyter_kernel", lambda: kernel)
    monkeypatch.setitem(parallel._pool, "exit_hook", False)
    assert parallel.map_in_workers(abs, [-1, -2], workers=2) == [1, 2]   # starts the pool, wraps do_shutdown
    running = [child.cmdline() for child in psutil.Process().children(recursive=True)]
    assert any("resource_tracker" in " ".join(line) for line in running) and len(running) >= 3
    assert gc.get_freeze_count() == 0
    try:
        assert kernel.do_shutdown(False) == {"status": "ok", "restart": False}
        assert gc.get_freeze_count() > 0, "the heap is frozen for the interpreter's exit (0.6 -> 0.2 s)"
    finally:
        gc.unfreeze()
    assert kernel.alive_at_shutdown == [], "workers and resource tracker stopped before the kernel's own shutdown"
    assert "leaked" not in capfd.readouterr().err, "the pool's semaphores were released before the tracker stopped"
    assert parallel.map_in_workers(abs, [-3, -4], workers=2) == [3, 4]   # a later pool starts afresh
