"""The partitioned difficulty plan run as Ray tasks: the same stages as `plan/difficulty.py` (read and
split, rank, score), each piece a task, the tables kept in Ray's object store."""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from kscore.core.align import common_id_dtype
from kscore.core.difficulty import merged_statistics, oriented
from kscore.core.scale import merge_stats, scale_record
from kscore.engines.ray import (
    cancel_running,
    cluster_cpus,
    from_store,
    gathered,
    node_name,
    ray_module,
    stage_done,
    to_store,
    unwrap,
)
from kscore.errors import InputError, OutputError, first_line
from kscore.io import metadata_tags, part_name
from kscore.plan.difficulty import (
    average_ranks,
    drive,
    score_range,
    split_batch,
)
from kscore.storage import polars_options, using
from kscore.summaries import RangePiece, range_piece, scanned_bands


def read_slice(
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
    try:
        batch = frame.slice(offset, length).collect() if length is not None else frame.collect()
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{label}: cannot read on node {node_name()}: {first_line(exc)}") from None
    except OSError as exc:
        raise InputError(f"{label}: cannot read on node {node_name()}: {exc.strerror or exc}") from None
    piece = split_batch(batch, standard, ranges, dtype, label, binary)
    tables: list[Any] = [None] * ranges.count
    for k, rows in piece.ranges:
        tables[k] = to_store(rows)
    sizes = {k: rows.height for k, rows in piece.ranges}
    return ((piece.stats, piece.correct, piece.judged, sizes), *tables)


def rank_slices(signal: Any, pieces: list[Any]) -> tuple[pl.DataFrame, ...]:
    """Stage 3: one signal's average ranks over the pieces (object refs of tables, in order), cut
    back into one single-column table per piece."""
    ray = ray_module()
    columns = [from_store(ray.get(ref)).select(oriented(signal)).to_series() for ref in pieces]
    sizes = [len(c) for c in columns]
    ranks = average_ranks(pl.concat(columns, rechunk=True), signal.name)
    del columns
    out, offset = [], 0
    for size in sizes:
        out.append(to_store(ranks.slice(offset, size).to_frame()))
        offset += size
    return tuple(out) if len(out) > 1 else out[0]


@dataclass
class PartWrites:
    """Where the score tasks write their id ranges themselves: a dataset's folder that every node
    sees, or its object-storage prefix with the storage options (a part per range,
    `part_name(range)`), and the metadata each part records (its scale set once the plan has it).
    The tasks then return `RangePiece`s, not tables; `parts` lists those written, in order."""

    folder: str
    metadata: dict[str, Any]
    top: int
    storage_options: dict[str, str] | None = None
    parts: list[str] = field(default_factory=list)

    def part(self, number: int) -> str:
        return f"{self.folder.rstrip('/')}/{part_name(number)}"


def score_slice(
    tables: dict[str, list[Any]],
    ranks: dict[str, list[list[Any]]],
    standard: Any,
    whole: Any,
    labels: Mapping[str, str],
    explain: bool,
    write: tuple[str, dict[str, str], int, int] | None = None,
) -> pl.DataFrame | RangePiece | None:
    """Stage 4: one id range's table from each model's pieces of it (object refs) and their ranks.
    With `write` (the part's path, its metadata tags, the summary's hardest rows and the run's
    range count), the task writes the table there and returns its `RangePiece`."""
    ray = ray_module()
    frames = {}
    for name, refs in tables.items():
        frame = pl.concat([from_store(t) for t in ray.get(refs)], rechunk=False)
        per_signal = [
            pl.concat([from_store(t) for t in ray.get(r)], rechunk=False).to_series()
            for r in ranks.get(name, [])
        ]
        frames[name] = frame.hstack(per_signal) if per_signal else frame
    table = score_range(frames, standard, whole, labels, explain)
    if write is None or table is None:
        return table
    path, tags, top, count, options = write
    try:
        with using(options):
            table.write_parquet(path, metadata=tags, **polars_options(path))
    except OSError as exc:
        raise OutputError(f"{path}: cannot write on node {node_name()}: {exc.strerror or exc}") from None
    except pl.exceptions.PolarsError as exc:  # object storage's failures come as polars errors
        raise OutputError(f"{path}: cannot write on node {node_name()}: {first_line(exc)}") from None
    return range_piece(table, list(labels), standard.id_column, top, count)


def part_bands(
    path: str, bounds: dict[str, list[tuple[float, float]]], options: dict[str, str] | None = None
) -> dict[str, list[pl.DataFrame]]:
    """The summary's second look at one written part: the scores inside the quantiles' bands."""
    try:
        with using(options):
            return scanned_bands(pl.scan_parquet(path, **polars_options(path)), bounds)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"{path}: cannot read on node {node_name()}: {first_line(exc)}") from None


class RayDifficultyRun:
    """The partitioned plan of `difficulty` with its stages run as Ray tasks (`Stages`, driven by
    `kscore.plan.difficulty.drive`): `tables()` yields the output's id ranges in order; afterwards
    `accuracy` holds the binary task's accuracy per model. `sliced`: models whose files can be read
    in row slices (Parquet); others are read by one task each. The tables stay in the object store."""

    def __init__(self, run: Any, sliced: Mapping[str, bool]) -> None:
        self.run = run
        self.sliced = sliced
        self.accuracy: dict[str, float | None] = {}
        self.pending: set[Any] = set()  # a ref of every task that may still run, to cancel it
        # pieces[m][c] = (summary ref, [table ref per range]) of model m's slice c
        self.pieces: list[list[tuple[Any, list[Any]]]] = []
        self.sizes: list[list[dict[int, int]]] = []  # [model][slice]: range -> rows
        self.ranks: list[list[list[list[Any]]]] | None = None  # [model][slice][range][signal]
        self.writes: PartWrites | None = None  # the score tasks write the parts (`PartWrites`)

    def tables(self) -> Iterator[pl.DataFrame]:
        return drive(self.run, self)

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        ray = ray_module()
        try:
            yield
        except ray.exceptions.RayTaskError as exc:
            raise unwrap(exc) from None
        except BaseException:
            cancel_running(ray, list(self.pending))
            raise

    def split(self) -> dict[str | None, tuple[Any, Any]]:
        ray, run, pending = ray_module(), self.run, self.pending
        standard, count = run.standard, run.ranges.count
        dtype = common_id_dtype([m.id_dtype for m in run.models])
        task = standard.task
        binary = task is not None and task.type == "binary_classification"
        read = ray.remote(read_slice).options(num_returns=count + 1)
        pieces = self.pieces
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
        refs = [summary for model_pieces in pieces for summary, _ in model_pieces]
        done = stage_done(run.progress, "read and split (ray)")
        summaries = dict(zip(refs, gathered(ray, refs, done), strict=True))
        stats, rows = {}, {}
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
            model.stats = stats[model.name] = merged
            rows[model.name] = sum(sum(s.values()) for s in model_sizes)
            self.sizes.append(model_sizes)
            if binary:
                self.accuracy[model.name] = correct / judged if judged else None
        return merged_statistics(standard, stats, rows, scale=run.scale, scale_source=run.scale_source)

    def rank(self) -> None:
        self.ranks = self._ranks(ray_module(), self.pieces, self.sizes, self.pending)

    def score(self, whole: dict[str | None, tuple[Any, Any]]) -> Iterator[pl.DataFrame | None]:
        ray, run, pending = ray_module(), self.run, self.pending
        standard, count = run.standard, run.ranges.count
        pieces, sizes, ranks = self.pieces, self.sizes, self.ranks
        labels = {m.name: m.label for m in run.models}
        score = ray.remote(score_slice)
        tags = None
        if self.writes is not None:
            self.writes.metadata["scale"] = scale_record(run.statistics)
            tags = metadata_tags(self.writes.metadata)
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
            write = None
            if self.writes is not None and tags is not None:
                write = (self.writes.part(k), tags, self.writes.top, count, self.writes.storage_options)
            ref = score.remote(tables, range_ranks, standard, whole, labels, run.explain, write)
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
            if self.writes is not None and table is not None:
                self.writes.parts.append(self.writes.part(k))
            yield table

    def bands(self, bounds: dict[str, list[tuple[float, float]]]) -> Iterator[dict[str, list[pl.DataFrame]]]:
        """`part_bands` of every part the tasks wrote, each read by a task, in order."""
        assert self.writes is not None
        ray, pending = ray_module(), self.pending
        task = ray.remote(part_bands)
        refs = [task.remote(path, bounds, self.writes.storage_options) for path in self.writes.parts]
        pending.update(refs)
        with self.running():
            for done, ref in enumerate(refs, start=1):
                found = ray.get(ref)
                pending.discard(ref)
                if self.run.progress:
                    self.run.progress("summary (ray)", done, len(refs))
                yield found

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
                task = ray.remote(rank_slices).options(num_returns=len(order))
                result = task.remote(signal, refs)
                result = [result] if len(order) == 1 else result
                pending.add(result[0])
                for (m, c, k), ref in zip(order, result, strict=True):
                    out[m][c][k].append(ref)
        return out
