"""The ray engine: a plan's tasks on a Ray cluster (the optional extra `kscore[ray]`).

The stages are the partitioned plan's (`kscore.plan.difficulty`), run as Ray tasks: each model is read
in slices, one task a slice, which checks its rows, takes their statistics and returns them cut by
id range as separate objects (a shuffle through Ray's object store, which spills to disk by
itself); the driver merges the statistics; with `normalization: rank` one task per signal ranks
its column; then one task per id range matches and scores that range's rows, and the driver writes
the ranges in id order. The numbers are the local engine's, bitwise: the same functions on the same
rows. UMAP transform batches go to actors that load the fitted model once from the object store;
the KDE's transforms run as one task per chunk of points (`map_chunks`), their grids added in chunk
order on the driver, as on one machine.

Ray is imported only here, only when `--engine ray` is asked for.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import polars as pl

from kscore.errors import InputError, first_line

_T = TypeVar("_T")
_R = TypeVar("_R")
EXTRA = "pip install 'kscore[ray]'"
# Environment of the UMAP actors: one thread per library (Ray gives each one CPU), and the driver's
# numba cache folder (UMAP's compiled functions). The difficulty tasks run in Ray's default workers:
# a runtime_env would make Ray start workers of their own for them instead of its prestarted ones.
_ONE_THREAD = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def _ray() -> Any:
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
    ray = _ray()
    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    try:
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


def _actor_options() -> dict[str, Any]:
    env = dict.fromkeys(_ONE_THREAD, "1")
    if "NUMBA_CACHE_DIR" in os.environ:
        env["NUMBA_CACHE_DIR"] = os.environ["NUMBA_CACHE_DIR"]
    # kscore itself must be importable in the workers: on a cluster it is installed on every node
    # (the same version); a local instance's workers share this interpreter's environment.
    return {"runtime_env": {"env_vars": env}}


def cluster_cpus() -> int:
    """The CPUs of the connected cluster (at least 1)."""
    return max(int(_ray().cluster_resources().get("CPU", 1)), 1)


def _unwrap(exc: BaseException) -> BaseException:
    """The error a task raised (an InputError is the user's), not Ray's wrapper of it."""
    cause = getattr(exc, "cause", None)
    return cause if isinstance(cause, InputError) else exc


def _cancel_running(ray: Any, refs: list[Any]) -> None:
    """After Ctrl-C or an error, nothing of the job keeps running. Only tasks not yet finished are
    cancelled: Ray 2.60's driver can abort ("Tried to complete task that was not pending") when a
    finished task is cancelled as it completes."""
    _, running = ray.wait(refs, num_returns=len(refs), timeout=0) if refs else ([], [])
    for ref in running:
        ray.cancel(ref, force=True, recursive=True)


def map_chunks(func: Callable[[Any, slice], _R], shared: Any, parts: list[slice]) -> list[_R]:
    """`func(shared, part)` for every part, in order, one Ray task a part (the KDE's transforms over
    chunks of points): `shared` (numpy arrays) goes into the object store once, and each task reads
    it there in place, on whichever node runs it."""
    ray = _ray()
    shared_ref = ray.put(shared)
    task = ray.remote(num_cpus=1)(func)
    refs = [task.remote(shared_ref, part) for part in parts]
    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        raise _unwrap(exc) from None
    except BaseException:
        _cancel_running(ray, refs)
        raise


def _to_store(frame: pl.DataFrame) -> Any:
    """A table as Ray's object store keeps it best: Arrow, whose buffers Ray writes without a copy
    and reads back in place (a polars frame would be pickled through an IPC copy each way)."""
    return frame.to_arrow()


def _from_store(table: Any) -> pl.DataFrame:
    return pl.from_arrow(table, rechunk=False)  # type: ignore[return-value]


def _node() -> str:
    ray = _ray()
    try:
        return ray.util.get_node_ip_address()
    except Exception:  # only a name for a message
        return "unknown node"


# -- difficulty -----------------------------------------------------------------------------------
def _read_slice(
    frame: pl.LazyFrame,
    offset: int,
    length: int | None,
    standard: Any,
    ranges: Any,
    dtype: pl.DataType,
    label: str,
    binary: bool,
) -> tuple[Any, ...]:
    """Stage 2 on one slice of a model: (summary, one table or None per id range)."""
    from kscore.plan.difficulty import split_batch

    try:
        batch = frame.slice(offset, length).collect() if length is not None else frame.collect()
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{label}: cannot read on node {_node()}: {first_line(exc)}") from None
    except OSError as exc:
        raise InputError(f"{label}: cannot read on node {_node()}: {exc.strerror or exc}") from None
    piece = split_batch(batch, standard, ranges, dtype, label, binary)
    tables: list[Any] = [None] * ranges.count
    for k, rows in piece.ranges:
        tables[k] = _to_store(rows)
    sizes = {k: rows.height for k, rows in piece.ranges}
    return ((piece.stats, piece.correct, piece.judged, sizes), *tables)


def _rank_slices(signal: Any, pieces: list[Any]) -> tuple[pl.DataFrame, ...]:
    """Stage 3: one signal's average ranks over the pieces (object refs of tables, in order), cut
    back into one single-column table per piece."""
    from kscore.plan.difficulty import average_ranks, oriented_signal

    ray = _ray()
    columns = [_from_store(ray.get(ref)).select(oriented_signal(signal)).to_series() for ref in pieces]
    sizes = [len(c) for c in columns]
    ranks = average_ranks(pl.concat(columns, rechunk=True), signal.name)
    del columns
    out, offset = [], 0
    for size in sizes:
        out.append(_to_store(ranks.slice(offset, size).to_frame()))
        offset += size
    return tuple(out) if len(out) > 1 else out[0]


def _score_slice(
    tables: dict[str, list[Any]],
    ranks: dict[str, list[list[Any]]],
    standard: Any,
    whole: Any,
    labels: Mapping[str, str],
    explain: bool,
) -> pl.DataFrame | None:
    """Stage 4: one id range's table from each model's pieces of it (object refs) and their ranks."""
    from kscore.plan.difficulty import score_range

    ray = _ray()
    frames = {}
    for name, refs in tables.items():
        frame = pl.concat([_from_store(t) for t in ray.get(refs)], rechunk=False)
        per_signal = [
            pl.concat([_from_store(t) for t in ray.get(r)], rechunk=False).to_series()
            for r in ranks.get(name, [])
        ]
        frames[name] = frame.hstack(per_signal) if per_signal else frame
    return score_range(frames, standard, whole, labels, explain)


class RayDifficultyRun:
    """The partitioned plan of `difficulty` on Ray: `tables()` yields the output's id ranges in
    order (the local `PartitionedRun`'s interface); afterwards `accuracy` holds the binary task's
    accuracy per model. `sliced`: models whose files can be read in row slices (Parquet); others
    are read by one task each."""

    def __init__(self, run: Any, sliced: Mapping[str, bool]) -> None:
        self.run = run
        self.sliced = sliced
        self.accuracy: dict[str, float | None] = {}

    def tables(self) -> Iterator[pl.DataFrame]:
        ray = _ray()
        pending: set[Any] = set()  # a ref of every task that may still run, to cancel it
        try:
            yield from self._tables(ray, pending)
        except ray.exceptions.RayTaskError as exc:
            raise _unwrap(exc) from None
        except BaseException:
            _cancel_running(ray, list(pending))
            raise

    def _tables(self, ray: Any, pending: set[Any]) -> Iterator[pl.DataFrame]:
        from kscore.core.align import common_id_dtype
        from kscore.plan.difficulty import merge_stats, merged_statistics

        run, standard, count = self.run, self.run.standard, self.run.ranges.count
        dtype = common_id_dtype([m.id_dtype for m in run.models])
        task = standard.task
        binary = task is not None and task.type == "binary_classification"
        read = ray.remote(_read_slice).options(num_returns=count + 1)
        # pieces[m][c] = (summary ref, [table ref per range]) of model m's slice c
        pieces: list[list[tuple[Any, list[Any]]]] = []
        for model in run.models:
            slices = [(0, None)]
            if self.sliced.get(model.name) and model.rows > run.batch_rows:
                slices = [(start, run.batch_rows) for start in range(0, model.rows, run.batch_rows)]
            model_pieces = []
            for offset, length in slices:
                refs = read.remote(
                    model.frame, offset, length, standard, run.ranges, dtype, model.label, binary
                )
                pending.add(refs[0])  # only the summary: a table ref held here would never be freed
                model_pieces.append((refs[0], list(refs[1:])))
            pieces.append(model_pieces)
        total = sum(len(p) for p in pieces)
        summaries: dict[Any, Any] = {}
        waiting = [summary for model_pieces in pieces for summary, _ in model_pieces]
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            summaries[done[0]] = ray.get(done[0])
            if run.progress:
                run.progress("read and split (ray)", len(summaries), total)
        stats, rows, sizes = {}, {}, []
        for model, model_pieces in zip(run.models, pieces, strict=True):
            merged: Any = {}
            correct = judged = 0
            model_sizes: list[dict[int, int]] = []
            for summary, _ in model_pieces:
                piece_stats, piece_correct, piece_judged, piece_sizes = summaries[summary]
                merged = merge_stats(merged, piece_stats)
                correct += piece_correct
                judged += piece_judged
                model_sizes.append(piece_sizes)
            if not any(model_sizes):
                raise InputError(f"{model.label}: no rows")
            stats[model.name], rows[model.name] = merged, sum(sum(s.values()) for s in model_sizes)
            sizes.append(model_sizes)
            if binary:
                self.accuracy[model.name] = correct / judged if judged else None
        whole = merged_statistics(standard, stats, rows)
        # ranks[m][c][k] = per signal, the rank table ref of model m's slice c in range k
        ranks = None
        if standard.normalization == "rank":
            ranks = self._ranks(ray, pieces, sizes, pending)
        labels = {m.name: m.label for m in run.models}
        score = ray.remote(_score_slice)
        window = 2 * cluster_cpus()
        submitted: deque[Any] = deque()

        def submit(k: int) -> None:
            tables: dict[str, list[Any]] = {}
            range_ranks: dict[str, list[list[Any]]] = {}
            for m, model in enumerate(run.models):
                present = [c for c in range(len(pieces[m])) if k in sizes[m][c]]
                if not present:
                    continue
                tables[model.name] = [pieces[m][c][1][k] for c in present]
                if ranks is not None:
                    range_ranks[model.name] = [
                        [ranks[m][c][k][s] for c in present] for s in range(len(standard.signals))
                    ]
            for m in range(len(run.models)):  # the driver's hold on them: the task keeps its own
                for c in range(len(pieces[m])):
                    pieces[m][c][1][k] = None
                    if ranks is not None:
                        ranks[m][c][k] = None
            ref = score.remote(tables, range_ranks, standard, whole, labels, run.explain)
            pending.add(ref)
            submitted.append(ref)

        following = 0
        for k in range(count):
            while following < count and following < k + window:
                submit(following)
                following += 1
            ref = submitted.popleft()
            table = ray.get(ref)
            pending.discard(ref)
            del ref
            if run.progress:
                run.progress("score id ranges (ray)", k + 1, count)
            if table is not None:
                yield table

    def _ranks(
        self,
        ray: Any,
        pieces: list[list[tuple[Any, list[Any]]]],
        sizes: list[list[dict[int, int]]],
        pending: set[Any],
    ) -> list[list[list[list[Any]]]]:
        """One task per signal and group (all models, joint scope; each model, per_model): the
        rank table refs, indexed [model][slice][range][signal]."""
        run, standard = self.run, self.run.standard
        models = range(len(run.models))
        groups = [list(models)] if standard.scope == "joint" else [[m] for m in models]
        out: list[list[list[list[Any]]]] = [
            [[[] for _ in range(run.ranges.count)] for _ in pieces[m]] for m in models
        ]
        for group in groups:
            # The local plan's order: by model, then range, then slice within the range.
            order = [
                (m, c, k)
                for m in group
                for k in range(run.ranges.count)
                for c in range(len(pieces[m]))
                if k in sizes[m][c]
            ]
            refs = [pieces[m][c][1][k] for m, c, k in order]
            for signal in standard.signals:
                task = ray.remote(_rank_slices).options(num_returns=len(order))
                result = task.remote(signal, refs)
                result = [result] if len(order) == 1 else result
                pending.add(result[0])
                for (m, c, k), ref in zip(order, result, strict=True):
                    out[m][c][k].append(ref)
        return out


# -- UMAP transform batches -----------------------------------------------------------------------
class _Worker:
    """An actor holding the shared object (loaded once from the object store)."""

    def __init__(self, shared: Any) -> None:
        self.shared = shared

    def call(self, func: Callable[[Any, Any], Any], item: Any) -> Any:
        return func(self.shared, item)


def map_with_shared(
    func: Callable[[Any, _T], _R], items: Iterable[_T], shared: Any, jobs: int | None
) -> Iterator[_R]:
    """`func(shared, item)` for every item, in order, on Ray actors (one per cluster CPU, or `jobs`
    at most): `shared` is put in the object store once and each actor loads it once. Items are sent
    as actors need them (two per actor waiting at most), so a generator is never held whole."""
    ray = _ray()
    count = min(cluster_cpus(), jobs) if jobs else cluster_cpus()
    shared_ref = ray.put(shared)
    actor = ray.remote(num_cpus=1)(_Worker).options(**_actor_options())
    actors = [actor.remote(shared_ref) for _ in range(count)]
    waiting: deque[Any] = deque()
    try:
        for number, item in enumerate(items):
            waiting.append(actors[number % count].call.remote(func, item))
            if len(waiting) >= 2 * count:
                yield ray.get(waiting.popleft())
        while waiting:
            yield ray.get(waiting.popleft())
    except ray.exceptions.RayTaskError as exc:
        raise _unwrap(exc) from None
    finally:
        for one in actors:  # their queued calls go with them
            ray.kill(one)
