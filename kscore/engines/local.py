"""The local engine: a plan's tasks on this machine's cores, in loky's process pool.

loky starts workers by fork + exec (never re-running the caller's `__main__`, and safe beside
OpenMP and numba), pickles tasks with cloudpickle, and turns a crashed worker into an exception.
A large object every task needs (a fitted model) is pickled once into a temporary folder and
loaded once per worker, not sent with every task.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from kscore.errors import InputError

_T = TypeVar("_T")
_R = TypeVar("_R")

# Thread pools inside a worker: one worker per core already, so each runs its libraries on one.
ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")
# The object of the running map, in a worker process (set by `_load_shared`).
_shared: dict[str, Any] = {}


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return os.cpu_count() or 1


def resolve_jobs(jobs: int | None) -> int:
    """The number of workers: `jobs`, or every available core when None."""
    if jobs is None:
        return available_cores()
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InputError(f"--jobs must be a whole number >= 1, not {jobs!r}")
    return jobs


# The thread count `parallel_map` uses by default: every core, or what `limit_threads` set.
_default_threads: list[int] = []


def limit_threads(jobs: int) -> None:
    """Cap this process's threads at `jobs`: kscore's own maps, and polars' pool where polars is not
    imported yet (its pool size is fixed when it is imported; the CLI calls this first)."""
    _default_threads[:] = [resolve_jobs(jobs)]
    os.environ["POLARS_MAX_THREADS"] = str(_default_threads[0])


def parallel_map(func: Callable[[_T], _R], items: Sequence[_T], workers: int | None = None) -> list[_R]:
    """`map` over threads, in item order: one per core (or as `limit_threads` set), or `workers` at
    most. For work that releases the GIL (numpy's scatter, polars, FINUFFT)."""
    default = _default_threads[0] if _default_threads else os.cpu_count() or 1
    workers = min(len(items), workers or default)
    if workers <= 1:
        return [func(item) for item in items]
    context = contextvars.copy_context()  # each call sees the caller's context variables

    def call(item: _T) -> _R:
        return context.copy().run(func, item)

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(call, items))


def map_chunks(
    func: Callable[[Any, slice], _R], shared: Any, parts: Sequence[slice], workers: int | None = None
) -> list[_R]:
    """`func(shared, part)` for every part, in order, on threads (`parallel_map`): the local
    counterpart of the ray engine's `map_chunks`."""
    return parallel_map(lambda part: func(shared, part), parts, workers)


def map_with_shared(
    func: Callable[[Any, _T], _R], items: Iterable[_T], shared: Any, jobs: int, pool: SharedPool | None = None
) -> Iterator[_R]:
    """`func(shared, item)` for every item, in order, on `jobs` worker processes (`pool`, where
    they were started before with this `shared`).

    `shared` is pickled once and loaded once per worker. Items are drawn from `items` as workers
    need them (at most two per worker waiting), so a generator of large items is never held whole.
    With `jobs` 1 everything runs here. An error or Ctrl-C stops the workers and removes the
    temporary folder.
    """
    iterator = iter(items)
    if jobs <= 1:
        for item in iterator:
            yield func(shared, item)
        return
    from collections import deque

    pool = pool if pool is not None else SharedPool(shared, jobs)
    finished = False
    try:
        pending: deque[Any] = deque()
        for item in iterator:
            pending.append(pool.executor.submit(_call_with_shared, func, item))
            if len(pending) >= 2 * jobs:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
        finished = True
    finally:
        pool.close(busy=not finished)


class SharedPool:
    """loky's process pool of `jobs` workers, each loading `shared` once as it starts (pickled into
    a temporary folder, removed by `close`)."""

    def __init__(self, shared: Any, jobs: int) -> None:
        from joblib.externals.loky import ProcessPoolExecutor

        from kscore.io import temporary_folder

        self.shared = shared
        self.jobs = jobs
        self._folder = contextlib.ExitStack()
        folder = self._folder.enter_context(temporary_folder(Path(tempfile.gettempdir()) / "kscore-shared"))
        try:
            path = folder / "shared.pickle"
            path.write_bytes(pickle.dumps(shared, protocol=pickle.HIGHEST_PROTOCOL))
            self.executor = ProcessPoolExecutor(
                max_workers=jobs,
                initializer=_load_shared,
                initargs=(str(path),),
                env=dict.fromkeys(ONE_THREAD, "1"),
            )
        except BaseException:
            self._folder.close()
            raise

    def start(self) -> None:
        """Start every worker now, not at the first item (loky starts them all at its first task)."""
        self.executor.submit(_nothing)

    def close(self, busy: bool) -> None:
        """Let the workers go and remove the folder. Killing workers that are done leaks their
        semaphores (a warning at exit): only when `busy` (an error or an interrupt, or never used).
        Done, they exit while the caller goes on (0.4 s here), not before it does."""
        try:
            self.executor.shutdown(wait=False, kill_workers=busy)
        finally:
            self._folder.close()


def _nothing() -> None:
    return None


def _load_shared(path: str) -> None:
    with open(path, "rb") as handle:
        _shared["value"] = pickle.load(handle)


def _call_with_shared(func: Callable[[Any, _T], _R], item: _T) -> _R:
    return func(_shared["value"], item)


class LocalExecutor:
    """This machine: chunks on `jobs` threads (default every core), shared-object maps on loky
    worker processes."""

    on_this_machine = True

    def __init__(self, jobs: int | None = None) -> None:
        self.workers = resolve_jobs(jobs)
        self._started: SharedPool | None = None  # `started`: workers waiting for their map

    def keep(self, value: Any) -> Any:
        return value

    def map_chunks(
        self, func: Callable[[Any, slice], _R], shared: Any, parts: Sequence[slice], kept: bool = False
    ) -> list[_R]:
        return map_chunks(func, shared, parts, self.workers)  # a kept value is the value

    def pieces(self, items: Sequence[Any], lengths: Sequence[int]) -> Any:
        from kscore.engines.pieces import Pieces

        return Pieces(tuple(items), tuple(lengths))

    def map_with_shared(
        self, func: Callable[[Any, _T], _R], items: Iterable[_T], shared: Any, most: int, kept: bool = False
    ) -> Iterator[_R]:
        jobs = min(most, self.workers)
        # Taken at the first item: a map never iterated leaves started workers to `started`.
        pool, self._started = self._started, None
        if pool is not None and (pool.shared is not shared or pool.jobs != jobs):
            pool.close(busy=True)  # started for another map
            pool = None
        yield from map_with_shared(func, items, shared, jobs=jobs, pool=pool)

    @contextlib.contextmanager
    def started(self, shared: Any, most: int) -> Iterator[None]:
        """Start the worker processes of the next `map_with_shared` with this `shared` (the same
        object) and `most` now, while the caller does other work; stopped at the end if it never
        ran."""
        jobs = min(most, self.workers)
        if jobs > 1:
            self._started = SharedPool(shared, jobs)
            self._started.start()
        try:
            yield
        finally:
            pool, self._started = self._started, None
            if pool is not None:
                pool.close(busy=True)

    def session(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()
