"""The ray engine: work on a Ray cluster (the optional extra `kscore[ray]`); it knows nothing of
scores.

The session (`ray_session`: connect, or start a local instance), the cluster's CPUs, the object
store's tables (`to_store`, `from_store`), and the two shapes of work the math asks for
(`RayExecutor`): chunks as tasks (`map_chunks`), and items mapped on actors that load one shared
object once (`map_with_shared`: UMAP's transform batches beside the fitted model). The difficulty
plan's stages as Ray tasks are `kscore/plan/difficulty_ray.py`.

Ray is imported only here, and in that plan, only when `--engine ray` is asked for."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any, TypeVar

import polars as pl

from kscore.engines.local import ONE_THREAD
from kscore.errors import InputError, OutputError, first_line

_T = TypeVar("_T")
_R = TypeVar("_R")
EXTRA = "pip install 'kscore[ray]'"
# Environment of the UMAP actors: one thread per library (Ray gives each one CPU), and the driver's
# numba cache folder (UMAP's compiled functions). The difficulty tasks run in Ray's default workers:
# a runtime_env would make Ray start workers of their own for them instead of its prestarted ones.


def ray_module() -> Any:
    try:
        import ray
    except ImportError:
        raise InputError(f"--engine ray needs Ray, which is not installed: {EXTRA}") from None
    return ray


@contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """Connect to the Ray cluster at `address` (default: `$RAY_ADDRESS`; with neither, a local
    instance is started) for the block, and disconnect after it; a connection made before (by the
    caller) is used and kept."""
    ray = ray_module()
    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address is not None:
        check_reachable(address)
    try:
        with _native_stderr_dropped():  # Ray's C++ client logs each retry: the error line says it
            ray.init(
                address=address,
                logging_level="ERROR",
                log_to_driver=False,
                include_dashboard=False,
                configure_logging=True,
            )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"at {address!r}" if address else "(a local instance)"
        raise InputError(
            f"--engine ray: cannot connect to the Ray cluster {where}: {first_line(exc)}"
        ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


@contextmanager
def _native_stderr_dropped() -> Iterator[None]:
    """File descriptor 2 points at /dev/null for the block (what C++ code writes there is lost;
    Python's own sys.stderr is flushed first and works again after)."""
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


CONNECT_TIMEOUT = 20.0  # seconds (the promise is 30); KSCORE_RAY_TIMEOUT changes it


def check_reachable(address: str) -> None:
    """Exit 2 naming `address` when nothing listens there, within KSCORE_RAY_TIMEOUT seconds
    (default 20): Ray itself retries a closed port for minutes. `auto` and `local` are Ray's to
    resolve."""
    import socket

    if address in ("auto", "local"):
        return
    where = address.removeprefix("ray://")
    host, _, port = where.rpartition(":")
    text = os.environ.get("KSCORE_RAY_TIMEOUT", "")
    try:
        timeout = float(text) if text else CONNECT_TIMEOUT
        if not timeout > 0:
            raise ValueError
    except ValueError:
        raise InputError(f"KSCORE_RAY_TIMEOUT must be a number of seconds above 0, not {text!r}") from None
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(
            f"--ray-address {address!r}: give HOST:PORT (the head node's GCS address), auto or local"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
        raise InputError(
            f"--engine ray: cannot connect to the Ray cluster at {address!r}: {reason} (waited up to "
            f"{timeout:g} s; KSCORE_RAY_TIMEOUT sets how long)"
        ) from None


def _actor_options() -> dict[str, Any]:
    env = dict.fromkeys(ONE_THREAD, "1")
    if "NUMBA_CACHE_DIR" in os.environ:
        env["NUMBA_CACHE_DIR"] = os.environ["NUMBA_CACHE_DIR"]
    # kscore itself must be importable in the workers: on a cluster it is installed on every node
    # (the same version); a local instance's workers share this interpreter's environment.
    return {"runtime_env": {"env_vars": env}}


def largest_task_memory() -> int:
    """The most memory (bytes) Ray can reserve for one task on a single live node of the cluster."""
    nodes = ray_module().nodes()
    return max((int(n.get("Resources", {}).get("memory", 0)) for n in nodes if n.get("Alive")), default=0)


def cluster_cpus() -> int:
    """The CPUs of the connected cluster (at least 1)."""
    return max(int(ray_module().cluster_resources().get("CPU", 1)), 1)


def unwrap(exc: BaseException) -> BaseException:
    """The error a task raised (an InputError or OutputError is the user's), not Ray's wrapper of it."""
    inner = getattr(exc, "cause", None)
    while inner is not None:  # a task's error inside another's (an actor reading a task's rows)
        if isinstance(inner, InputError | OutputError):
            return inner
        inner = getattr(inner, "cause", None)
    return exc


def cancel_running(ray: Any, refs: list[Any]) -> None:
    """After Ctrl-C or an error, nothing of the job keeps running. Only tasks not yet finished are
    cancelled: Ray 2.60's driver can abort ("Tried to complete task that was not pending") when a
    finished task is cancelled as it completes."""
    _, running = ray.wait(refs, num_returns=len(refs), timeout=0) if refs else ([], [])
    for ref in running:
        ray.cancel(ref, force=True, recursive=True)
    if running:  # their workers gone before the caller removes what they were writing into
        ray.wait(running, num_returns=len(running), timeout=CANCEL_WAIT_S)


# Seconds to wait for cancelled tasks to end (a killed worker's task ends at once).
CANCEL_WAIT_S = 10.0


class Kept:
    """A value in the object store (`keep`): chunk tasks read it there in place."""

    def __init__(self, ref: Any) -> None:
        self.ref = ref


def keep(value: Any) -> Kept:
    """`value` put in the object store once, for any number of `map_chunks` calls."""
    return Kept(ray_module().put(value))


def fetched(refs: list[Any]) -> list[Any]:
    """The values of object refs, where a task reads them (`Pieces.fetch` of pieces a task left)."""
    return ray_module().get(refs)


def map_chunks(
    func: Callable[[Any, slice], Any], shared: Any, parts: list[slice], kept: bool = False
) -> list[Any]:
    """`func(shared, part)` for every part, in order, one Ray task a part (the KDE's passes over
    chunks of points): `shared` (numpy arrays) goes into the object store once, and each task reads
    it there in place, on whichever node runs it; a `Kept` value, alone or in a tuple, is not put
    again. `kept`: `func` returns (small, large); the large stays in the object store, and (small,
    its ref) come back."""
    ray = ray_module()
    shared_ref = shared.ref if isinstance(shared, Kept) else ray.put(shared)
    task = ray.remote(num_cpus=1)(_chunk_task)
    if not kept:
        return gathered(ray, [task.remote(func, shared_ref, part) for part in parts])
    pairs = [task.options(num_returns=2).remote(func, shared_ref, part) for part in parts]
    small = gathered(ray, [first for first, _ in pairs])
    return [(value, large) for value, (_, large) in zip(small, pairs, strict=True)]


def _chunk_task(func: Callable[[Any, slice], _R], shared: Any, part: slice) -> _R:
    """`func(shared, part)` in a task, the `Kept` items of a tuple `shared` read from the store."""
    if isinstance(shared, tuple) and any(isinstance(item, Kept) for item in shared):
        ray = ray_module()
        shared = tuple(ray.get(item.ref) if isinstance(item, Kept) else item for item in shared)
    return func(shared, part)


def gathered(ray: Any, refs: list[Any], done: Callable[[int, int], None] | None = None) -> list[Any]:
    """The tasks' results, in order; a user's error one raised comes out as itself, and on any
    error or Ctrl-C the tasks still running are cancelled. `done(finished, total)`: called as the
    tasks finish (each one's error then comes out as soon as it is raised)."""
    try:
        if done is not None:
            waiting = list(refs)
            done(0, len(refs))
            while waiting:
                finished, waiting = ray.wait(waiting, num_returns=1)
                ray.get(finished)
                done(len(refs) - len(waiting), len(refs))
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        cancel_running(ray, refs)
        raise unwrap(exc) from None
    except BaseException:
        cancel_running(ray, refs)
        raise


def stage_done(
    progress: Callable[[str, int, int], None] | None, stage: str
) -> Callable[[int, int], None] | None:
    """`progress` of `stage`, as `gathered` reports the tasks done."""
    return None if progress is None else (lambda finished, total: progress(stage, finished, total))


def run_task(func: Callable[..., _R], *args: Any, memory: int = 0) -> _R:
    """`func(*args)` as one Ray task, on a node with a CPU and `memory` bytes free (Ray's `memory`
    resource; none reserved with 0); a user's error it raises reaches the caller as itself, and
    Ctrl-C cancels it."""
    ray = ray_module()
    task = ray.remote(num_cpus=1)(func)
    return gathered(ray, [(task.options(memory=memory) if memory else task).remote(*args)])[0]


def to_store(frame: pl.DataFrame) -> Any:
    """A table as Ray's object store keeps it best: Arrow, whose buffers Ray writes without a copy
    and reads back in place (a polars frame would be pickled through an IPC copy each way)."""
    return frame.to_arrow()


def from_store(table: Any) -> pl.DataFrame:
    return pl.from_arrow(table, rechunk=False)  # type: ignore[return-value]


def node_name() -> str:
    ray = ray_module()
    try:
        return ray.util.get_node_ip_address()
    except Exception:  # only a name for a message
        return "unknown node"


# -- UMAP transform batches -----------------------------------------------------------------------
class _Worker:
    """An actor holding the shared object (loaded once from the object store)."""

    def __init__(self, shared: Any) -> None:
        self.shared = shared

    def call(self, func: Callable[[Any, Any], Any], item: Any, *values: Any) -> Any:
        if values:  # the item's objects, fetched by Ray before the call (see `map_with_shared`)
            item = item.with_values(values)
        return func(self.shared, item)


def map_with_shared(
    func: Callable[[Any, _T], _R], items: Iterable[_T], shared: Any, jobs: int | None, kept: bool = False
) -> Iterator[Any]:
    """`func(shared, item)` for every item, in order, on Ray actors (one per cluster CPU, or `jobs`
    at most): `shared` is put in the object store once and each actor loads it once. Items are sent
    as actors need them (two per actor waiting at most), so a generator is never held whole. An
    item with `object_refs` (objects in the store it is made of) gets their values through
    `with_values(values)` on the actor: Ray fetches them to its node while it works on the one
    before. `kept`: each result stays in the object store, and its ref comes out once it is made
    (a task reading it raises an actor's error)."""
    ray = ray_module()
    count = min(cluster_cpus(), jobs) if jobs else cluster_cpus()
    shared_ref = ray.put(shared)
    actor = ray.remote(num_cpus=1)(_Worker).options(**_actor_options())
    actors = [actor.remote(shared_ref) for _ in range(count)]
    waiting: deque[Any] = deque()

    def done(ref: Any) -> Any:
        if not kept:
            return ray.get(ref)
        ray.wait([ref], fetch_local=False)
        return ref

    try:
        for number, item in enumerate(items):
            refs = getattr(item, "object_refs", ())
            waiting.append(actors[number % count].call.remote(func, item, *refs))
            if len(waiting) >= 2 * count:
                yield done(waiting.popleft())
        while waiting:
            yield done(waiting.popleft())
    except ray.exceptions.RayTaskError as exc:
        raise unwrap(exc) from None
    finally:
        for one in actors:  # their queued calls go with them
            ray.kill(one)


class RayExecutor:
    """A Ray cluster: chunks as tasks, shared-object maps on one actor per CPU of the cluster."""

    on_this_machine = False

    def __init__(self, address: str | None = None) -> None:
        self.address = address

    @property
    def workers(self) -> int:
        return cluster_cpus()

    def keep(self, value: Any) -> Kept:
        return keep(value)

    def map_chunks(
        self, func: Callable[[Any, slice], Any], shared: Any, parts: list[slice], kept: bool = False
    ) -> list[Any]:
        return map_chunks(func, shared, parts, kept)

    def pieces(self, items: Sequence[Any], lengths: Sequence[int]) -> Any:
        from kscore.engines.pieces import Pieces

        return Pieces(tuple(items), tuple(lengths), fetched)

    def map_with_shared(
        self, func: Callable[[Any, _T], _R], items: Iterable[_T], shared: Any, most: int, kept: bool = False
    ) -> Iterator[Any]:
        return map_with_shared(func, items, shared=shared, jobs=None, kept=kept)

    def started(self, shared: Any, most: int) -> AbstractContextManager[None]:
        return nullcontext()  # the actors start with their map

    def session(self) -> Any:
        return ray_session(self.address)
