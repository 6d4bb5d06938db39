"""Where the points of a sweep run: `local` threads on this machine, or a `dask` cluster.

An executor is anything with `map_unordered(function, tasks)` and `close()` (the `Executor`
protocol); register a new one in EXECUTORS. Each point already runs its notebook in a papermill
process of its own, so the local executor only needs threads to wait on those processes.
"""
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Iterable, Iterator, Protocol

from ..errors import KdlabError, ParameterError


class Executor(Protocol):
    """Runs `function(task)` for many tasks, in parallel, and reports each as it ends."""

    def map_unordered(self, function, tasks: Iterable) -> Iterator[tuple]:
        """Yield (task, result) as tasks finish; result is the exception when `function` raised."""

    def close(self) -> None:
        """Release workers and connections."""


class LocalExecutor:
    """`workers` threads on this machine, each driving one notebook process at a time."""

    def __init__(self, workers=1):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ParameterError("--workers", workers, "an integer >= 1")
        self.workers = workers

    def map_unordered(self, function, tasks):
        with ThreadPoolExecutor(self.workers, thread_name_prefix="kdlab-sweep") as pool:
            futures = {pool.submit(function, task): task for task in tasks}
            try:
                for future in as_completed(futures):
                    yield futures[future], _outcome(future)
            finally:  # stopped early (Ctrl-C): points not started yet never start
                for future in futures:
                    future.cancel()

    def close(self):
        pass


class DaskExecutor:
    """A Dask distributed cluster at `scheduler` (tcp://HOST:PORT); one task per point.

    The workers must see the same files (notebook, output folder) and import the same kdlab.
    """

    def __init__(self, scheduler, connect_timeout=30):
        if not scheduler:
            raise ParameterError("--scheduler", scheduler, "the address of a running Dask scheduler, "
                                 "e.g. tcp://127.0.0.1:8786, when --executor is dask")
        try:
            from distributed import Client
        except ImportError:
            raise KdlabError("--executor dask needs Dask: pip install 'kdlab[sweep]' "
                             "(or dask[distributed])") from None
        try:
            self.client = Client(scheduler, timeout=connect_timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as error:
            raise KdlabError(f"cannot reach the Dask scheduler at {scheduler}: {error}") from None

    def map_unordered(self, function, tasks):
        from distributed import as_completed as dask_as_completed

        batch = uuid.uuid4().hex[:8]  # task keys must not collide with an earlier sweep's
        futures = {self.client.submit(function, task, key=f"kdlab-sweep-{batch}-{index}", pure=False): task
                   for index, task in enumerate(tasks)}
        try:
            for future in dask_as_completed(futures, loop=self.client.loop):
                yield futures[future], _outcome(future)
        finally:
            self.client.cancel([future for future in futures if not future.done()])

    def close(self):
        self.client.close()


def _outcome(future):
    try:
        return future.result()
    except Exception as error:  # a worker that died or a task that raised: the point is marked failed
        return error


EXECUTORS = {
    "local": lambda workers, scheduler: LocalExecutor(workers),
    "dask": lambda workers, scheduler: DaskExecutor(scheduler),
}


def make_executor(name, *, workers=1, scheduler=None):
    """The executor called `name` (a key of EXECUTORS)."""
    if name not in EXECUTORS:
        raise ParameterError("--executor", name, f"one of {', '.join(EXECUTORS)}")
    return EXECUTORS[name](workers, scheduler)
