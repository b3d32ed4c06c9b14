"""The partitioned plan of `difficulty`: inputs of any size in bounded memory (SPEC §6).

Stages, each over pieces whose results merge:
1. ids: every model's row count and id bounds (a sample of ids where they are not dense integers)
   give id ranges small enough to score one at a time within the memory limit. Where scores can be
   computed as rows are spilled (min-max normalization, no task, integer ids, numeric metrics, local
   Parquet files), the statistics (min, max, count) come from the files' footers, no row read;
2. spill: every model is read once and its rows written to the temporary folder, one file per id
   range, by polars' partitioned sink; each batch is checked and measured on its way. With the
   footers' statistics the rows are scored in the same query and only (id, score) is spilled (16
   bytes a row instead of 8 per signal more), and models whose measured statistics differ from the
   footers' (NaN) are spilled again. Otherwise the signals are spilled (the same sink, or batches
   checked and turned into signals exactly as in memory by `read_signals`), their statistics merged;
3. ranks (`normalization: rank`): each signal's average rank over all rows of a model (of all
   models, joint scope), computed on that one column and spilled per range beside the rows;
4. score: per id range, the models' rows are scored with the merged statistics (unless the spill
   holds scores), matched by id and averaged, as in memory. The ranges come in id order, so their
   tables one after another are the in-memory table, bitwise.
"""

from __future__ import annotations

import contextlib
import errno
import math
import re
import shutil
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl

from kscore.config import QualityStandard
from kscore.core.align import Alignment, align_by_id, common_id_dtype, normalize_ids
from kscore.core.difficulty import (
    Stats,
    Whole,
    assemble,
    column_stats,
    merged_statistics,
    oriented,
    rank_column,
    read_signals,
    score_jointly,
    score_model,
)
from kscore.core.scale import Scale, add_counts, beyond, clamped_counts, merge_stats, warn_clamped
from kscore.errors import InputError, first_line
from kscore.plan.sizing import BASE_BYTES, IdRanges, dense_ranges, format_size, sampled_ranges

_INT64_MAX = (1 << 63) - 1
# A polars error from the spill's writes, not the input's reads: a full disk, a quota, read-only.
_WRITE_FAILURE = re.compile(rf"os error ({errno.ENOSPC}|{errno.EDQUOT}|{errno.EROFS})\b")
# Ids sampled per model to cut non-dense id spaces into ranges of about equal size.
_SAMPLE = 20_000
# Rows per batch of the spill stage, at most (larger batches gain nothing once the cores are busy).
_MAX_BATCH = 4_000_000
_MIN_BATCH = 50_000

Progress = Callable[[str, int, int], None]
_KEY = "__kscore_range"


def row_bytes(standard: QualityStandard, explain: bool, text_ids: bool = False) -> int:
    """Memory that scoring takes per row of one model, all copies included (measured on 2M-row
    inputs: about 40 bytes a model-row for 4 metrics, 125 with `--explain`), with a margin."""
    signals = len(standard.signals)
    per_row = (24 if text_ids else 8) + 8 * signals + 8
    if explain:
        per_row += 16 * signals + 8
    return int(per_row * 1.5)


def in_memory_bytes(rows: int, standard: QualityStandard, explain: bool, text_ids: bool = False) -> int:
    """The estimated peak of scoring `rows` model-rows in memory, the interpreter included."""
    return BASE_BYTES + rows * row_bytes(standard, explain, text_ids)


@dataclass
class _Model:
    name: str
    label: str
    frame: pl.LazyFrame
    rows: int
    id_dtype: pl.DataType
    low: int | None  # integer id bounds, where the ids are integers
    high: int | None
    stats: Stats = field(default_factory=dict)
    files: dict[int, list[Path]] = field(default_factory=dict)  # range -> spilled batches
    ranks: dict[int, list[Path]] = field(default_factory=dict)  # range -> its rows' ranks, per signal
    sizes: dict[int, int] = field(default_factory=dict)  # range -> rows
    correct: int = 0  # binary task: rows right at the threshold, and rows with both columns
    judged: int = 0
    checks: dict[str, Any] | None = None  # the plan's `_check_exprs` of the model, where it took them


class Stages(Protocol):
    """How an engine runs the plan's stages; `drive` runs them in order, the same for every engine."""

    def running(self) -> contextlib.AbstractContextManager[Any]:
        """The engine's hold on its work for the whole run (cancelled on an error)."""
        ...

    def split(self) -> dict[str | None, tuple[Stats, Whole]]:
        """Stage 2: read every model, check its rows, split them by id range; the merged statistics."""
        ...

    def rank(self) -> None:
        """Stage 3 (rank normalization): each signal's average ranks over its group."""
        ...

    def score(self, whole: dict[str | None, tuple[Stats, Whole]]) -> Iterator[pl.DataFrame | None]:
        """Stage 4: each id range's table, in range order (None for a range no model holds)."""
        ...


def drive(run: PartitionedRun, stages: Stages) -> Iterator[pl.DataFrame]:
    """The partitioned difficulty plan, written once for every engine: split (stage 2), rank
    (stage 3, rank normalization), score (stage 4); the output's id ranges in order. Each stage's
    work on one piece is one of the functions below, whichever engine runs it."""
    with stages.running():
        whole = stages.split()
        run.statistics = run.recorded_scale(whole)
        if run.scale is not None:
            run.warn_clamped()
        if run.standard.normalization == "rank" and not run.scored:
            stages.rank()
        for table in stages.score(whole):
            if table is not None:
                yield table


@dataclass
class PartitionedRun:
    """A partitioned run: `tables()` yields the output's id ranges in order; afterwards
    `accuracy` holds each model's accuracy at the task's threshold (binary tasks)."""

    standard: QualityStandard
    models: list[_Model]
    ranges: IdRanges
    folder: Path
    explain: bool
    batch_rows: int
    progress: Progress | None = None
    accuracy: dict[str, float | None] = field(default_factory=dict)
    scored: bool = False  # the spilled rows hold their scores (see `scores_in_spill`)
    scale: Scale | None = None  # a stored scale to score on (`difficulty --scale-from`)
    scale_source: str = ""
    statistics: Scale = field(default_factory=dict)  # the scale the run normalized with

    def recorded_scale(self, whole: Mapping[str | None, tuple[Stats, Whole]]) -> Scale:
        """The scale the output records: the stored one where given, else the run's own."""
        if self.scale is not None:
            return {key: self.scale[key] for key in whole}
        return {key: stats for key, (stats, _) in whole.items()}

    def warn_clamped(self) -> None:
        """One warning per signal with values beyond the stored scale, counted by a second read of
        the models that have such values (their statistics tell which; most runs read nothing)."""
        assert self.scale is not None
        counts: dict[str, int] = {}
        for model in self.models:
            stored = self.scale[None if self.standard.scope == "joint" else model.name]
            names = beyond(model.stats, stored)
            if not names:
                continue
            try:
                for batch in model.frame.collect_batches(chunk_size=self.batch_rows):
                    signals, _ = read_signals(batch, self.standard, model.label, None)
                    add_counts(counts, clamped_counts(signals, stored, names))
            except pl.exceptions.PolarsError as exc:
                raise InputError(f"{model.label}: cannot read: {first_line(exc)}") from None
        warn_clamped(counts, self.scale_source)

    @property
    def scores_in_spill(self) -> bool:
        """Whether the models' scores are computed as they are spilled (min-max normalization with
        statistics the plan took): the spill then holds each row's id and score, not its signals."""
        dtype = common_id_dtype([m.id_dtype for m in self.models])
        return all(m.checks is not None and self._native(m, dtype) for m in self.models)

    def tables(self) -> Iterator[pl.DataFrame]:
        """The output's id ranges in order, the stages run on this machine."""
        return drive(self, self)

    # This machine's way of running the stages (`Stages`): polars' partitioned sinks into a spill
    # folder, Parquet footers' statistics where they are the truth, scores computed in the spill
    # where min-max statistics are known before it.
    def running(self) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def split(self) -> dict[str | None, tuple[Stats, Whole]]:
        self.scored = self.scores_in_spill
        if self.scored:
            return self._spill_scores()
        self._spill()
        return self._merge_statistics()

    def rank(self) -> None:
        self._rank()

    def score(self, whole: dict[str | None, tuple[Stats, Whole]]) -> Iterator[pl.DataFrame | None]:
        total = self.ranges.count
        # A range's spilled files are deleted once it is scored, in a thread (deleting gigabytes
        # takes the file system a while): the next range is scored meanwhile, and the disk holds
        # less at once.
        with ThreadPoolExecutor(1) as cleaner:
            for k in range(total):
                table = self._score_range(k, whole)
                done = [p for m in self.models for p in (*m.files.get(k, ()), *m.ranks.get(k, ()))]
                cleaner.submit(_remove, done)
                if self.progress:
                    self.progress("score id ranges", k + 1, total)
                yield table

    # -- stage 2: spill -------------------------------------------------------------------------
    def _spill(self) -> None:
        dtype = common_id_dtype([m.id_dtype for m in self.models])
        task = self.standard.task
        binary = task is not None and task.type == "binary_classification"
        total_rows = sum(m.rows for m in self.models)
        done = 0
        if self.progress:  # the stage starts now, not when a first model is done
            self.progress("read and spill", 0, total_rows)
        for index, model in enumerate(self.models):
            if self._native(model, dtype):
                self._spill_natively(index, dtype)
                done += model.rows
                if self.progress:
                    self.progress("read and spill", done, total_rows)
                continue
            try:
                batches = model.frame.collect_batches(chunk_size=self.batch_rows)
                for number, batch in enumerate(batches):
                    if batch.height == 0:
                        continue
                    self._spill_batch(index, number, batch, dtype, binary)
                    done += batch.height
                    if self.progress:
                        self.progress("read and spill", done, total_rows)
            except pl.exceptions.PolarsError as exc:
                raise InputError(f"{model.label}: cannot read: {first_line(exc)}") from None
        for model in self.models:
            if not model.files:
                raise InputError(f"{model.label}: no rows")

    def _native(self, model: _Model, dtype: pl.DataType) -> bool:
        """Whether polars' streaming engine can spill this model by itself: 64-bit integer ids and
        numeric signals, no task (whose checks and error column are computed in Python)."""
        if self.standard.task is not None or dtype != pl.Int64:
            return False
        schema = model.frame.collect_schema()
        if not schema[self.standard.id_column].is_integer():
            return False
        return all(_numeric(schema[m.name]) for m in self.standard.metrics)

    def _spill_natively(self, index: int, dtype: pl.DataType) -> None:
        """Spill one model's signals with polars' partitioned sink (every core), checking its rows
        and taking their statistics in the same query: the file is read once, the spill not at all.

        The same checks as `read_signals`: null ids and infinite values are errors (with counts),
        NaN reads as null; a duplicated id is found when its range is matched.
        """
        model = self.models[index]
        id_col = self.standard.id_column
        names = [m.name for m in self.standard.metrics]
        selected = model.frame.select(_native_columns(id_col, names, dtype))
        model.stats = _checked_stats(
            self._sink(index, selected, lambda rows: rows), model.label, id_col, names
        )

    def _spill_scores(self) -> dict[str | None, tuple[Stats, Whole]]:
        """Spill each model's ids and scores, computed in the sink's query (as `score_model`
        computes them in memory) with the statistics the plan read in the Parquet footers.

        The same query checks the rows and measures their statistics. Where the footers were not
        the whole truth (NaN, which they do not count; footers of another writer), the models whose
        scores used wrong statistics are spilled again with the measured ones.
        """
        id_col = self.standard.id_column
        names = [m.name for m in self.standard.metrics]
        for model in self.models:
            assert model.checks is not None
            model.stats = _checked_stats(model.checks, model.label, id_col, names)
        whole = self._merge_statistics(warn=False)
        stale = list(range(len(self.models)))
        for stage in ("read and spill", "spill again"):
            total_rows = sum(self.models[i].rows for i in stale)
            done = 0
            if self.progress:
                self.progress(stage, 0, total_rows)
            for index in stale:
                model = self.models[index]
                # Per row, the joint scope's scores are the model's rows' with the merged stats.
                stats, all_rows = whole[None if self.standard.scope == "joint" else model.name]
                selected = model.frame.select(_native_columns(id_col, names, pl.Int64()))
                scored = partial(
                    score_model,
                    stats=stats,
                    standard=self.standard,
                    model=model.name,
                    explain=self.explain,
                    whole=all_rows,
                )
                found = self._sink(index, selected, scored)
                model.stats = _checked_stats(found, model.label, id_col, names)
                done += model.rows
                if self.progress:
                    self.progress(stage, done, total_rows)
            measured = self._merge_statistics(warn=False)
            if self.standard.scope == "joint":
                stale = [] if measured == whole else list(range(len(self.models)))
            else:
                stale = [i for i, m in enumerate(self.models) if measured[m.name] != whole[m.name]]
            whole = measured
            if not stale:  # the second time, measured with the statistics it measured: always
                break
        return self._merge_statistics()

    def _sink(
        self, index: int, selected: pl.LazyFrame, rows: Callable[[pl.LazyFrame], pl.LazyFrame]
    ) -> dict[str, Any]:
        """Spill `rows(selected)` (with the id column) into one folder per id range with polars'
        partitioned sink, and return `_check_exprs` of `selected`, measured batch by batch on the
        way: the input is read once and nothing is held. (Collecting the checks as a second query
        beside the sink shares the scan, but polars then buffers the whole input for the slower
        branch: 3.9 GB for 100M rows.)"""
        model = self.models[index]
        target = self.folder / f"rows-m{index}"
        if target.exists():  # spilled again: the first spill's files go
            shutil.rmtree(target)
            model.files.clear()
            model.sizes.clear()
        names = [m.name for m in self.standard.metrics]
        exprs = _check_exprs(self.standard.id_column, names)
        pieces: list[pl.DataFrame] = []

        def measure(batch: pl.DataFrame) -> pl.DataFrame:
            pieces.append(batch.select(exprs))
            return batch

        watched = selected.map_batches(measure, streamable=True, schema=selected.collect_schema())
        keyed = rows(watched).with_columns(self.ranges.expr(pl.col(self.standard.id_column)).alias(_KEY))
        try:
            keyed.sink_ipc(pl.PartitionBy(target, key=_KEY, include_key=False))
        except pl.exceptions.PolarsError as exc:
            text = str(exc).strip()
            if _WRITE_FAILURE.search(text):  # the spill's disk: the caller names the folder
                raise
            raise InputError(f"{model.label}: cannot read: {first_line(exc)}") from None
        found = _merged_checks(pieces, names)
        if not found["rows"]:
            return found
        # An infinite bound is an error; its values are counted (another read) for its message.
        infinite = [
            n for n in names if not all(math.isfinite(found[f"{n}:{b}"] or 0.0) for b in ("min", "max"))
        ]
        found.update({f"{n}:inf": 0 for n in names})
        if infinite:
            counted = selected.select(pl.col(n).is_infinite().sum() for n in infinite).collect()
            found.update({f"{n}:inf": counted.get_column(n).item() for n in infinite})
        for folder in sorted(target.iterdir()):
            key = folder.name.split("=", 1)[1]
            if not key.isdigit():  # null ids (hive's default partition): the caller's checks refuse them
                continue
            k = int(key)
            model.files[k] = files = sorted(folder.iterdir())
            model.sizes[k] = int(pl.scan_ipc(files).select(pl.len()).collect().item())
        return found

    def _spill_batch(
        self, index: int, number: int, batch: pl.DataFrame, dtype: pl.DataType, binary: bool
    ) -> None:
        model = self.models[index]
        piece = split_batch(batch, self.standard, self.ranges, dtype, model.label, binary)
        model.stats = merge_stats(model.stats, piece.stats)
        model.correct += piece.correct
        model.judged += piece.judged
        for k, rows in piece.ranges:
            path = self.folder / f"rows-m{index}-r{k}-b{number}.arrow"
            rows.write_ipc(path)
            model.files.setdefault(k, []).append(path)
            model.sizes[k] = model.sizes.get(k, 0) + rows.height

    def _merge_statistics(self, warn: bool = True) -> dict[str | None, tuple[Stats, Whole]]:
        task = self.standard.task
        if task is not None and task.type == "binary_classification":
            self.accuracy = {m.name: m.correct / m.judged if m.judged else None for m in self.models}
        return merged_statistics(
            self.standard,
            {m.name: m.stats for m in self.models},
            {m.name: m.rows for m in self.models},
            warn,
            self.scale,
            self.scale_source,
        )

    # -- stage 3: ranks -------------------------------------------------------------------------
    def _rank(self) -> None:
        groups = [self.models] if self.standard.scope == "joint" else [[m] for m in self.models]
        for group in groups:
            pieces = [(m, k) for m in group for k in sorted(m.files)]
            for number, signal in enumerate(self.standard.signals):
                expr = oriented(signal)
                values = pl.scan_ipc([p for m, k in pieces for p in m.files[k]]).select(expr).collect()
                ranks = average_ranks(values.to_series(), signal.name)
                del values
                offset = 0
                for m, k in pieces:
                    size = m.sizes[k]
                    path = self.folder / f"ranks-m{self.models.index(m)}-r{k}-s{number}.arrow"
                    ranks.slice(offset, size).to_frame().write_ipc(path)
                    m.ranks.setdefault(k, []).append(path)
                    offset += size
                del ranks

    # -- stage 4: score -------------------------------------------------------------------------
    def _read_range(self, model: _Model, k: int) -> pl.DataFrame | None:
        if k not in model.files:
            return None
        frame = pl.concat([pl.read_ipc(p) for p in model.files[k]], rechunk=False)
        ranks = [pl.read_ipc(p) for p in model.ranks.get(k, [])]
        return frame.hstack([r.to_series() for r in ranks]) if ranks else frame

    def _score_range(self, k: int, whole: dict[str | None, tuple[Stats, Whole]]) -> pl.DataFrame | None:
        frames = {m.name: frame for m in self.models if (frame := self._read_range(m, k)) is not None}
        labels = {m.name: m.label for m in self.models}
        return score_range(frames, self.standard, whole, labels, self.explain, self.scored)


# -- the stages' work on one piece, whichever engine runs it (kscore.engines) -------------------------
@dataclass
class SplitBatch:
    """One batch of a model's rows, checked and turned into signals: its statistics (and binary
    task counts), and its rows by id range (range number, rows), ranges in order."""

    stats: Stats
    correct: int
    judged: int
    ranges: list[tuple[int, pl.DataFrame]]


def split_batch(
    batch: pl.DataFrame,
    standard: QualityStandard,
    ranges: IdRanges,
    dtype: pl.DataType,
    label: str,
    binary: bool,
) -> SplitBatch:
    """Stage 2 on one batch: check it and compute its signals exactly as in memory (`read_signals`),
    take their statistics, and cut its rows by id range (keeping their order within a range)."""
    id_col = standard.id_column
    correct = judged = 0
    if binary:
        from kscore.core.tasks import threshold_counts

        assert standard.task is not None
        correct, judged = threshold_counts(batch, standard.task, id_col, label)
    signals, stats = read_signals(batch, standard, label, None)
    # Statistics of every signal, also those `read_signals` leaves to `_normalized` (the task's
    # error, text columns parsed as numbers): computed per range, they would be the range's.
    stats.update(column_stats(signals, [s.name for s in standard.signals if s.name not in stats]))
    ids = signals.get_column(id_col).cast(dtype, strict=False)
    if ids.null_count():
        raise InputError(
            f"{label}: column {id_col!r} holds ids that do not fit one 64-bit integer type "
            "with the other files' ids; store ids as text"
        )
    keys = ranges.of(ids)
    signals = signals.with_columns(ids)
    if ranges.count > 1:
        # Rows grouped by range, keeping their order within it: a stable radix sort of 16-bit keys.
        order = np.argsort(keys, kind="stable")
        signals = signals[order]
        counts = np.bincount(keys, minlength=ranges.count)
    else:
        counts = np.array([signals.height])
    pieces = []
    offset = 0
    for k in np.flatnonzero(counts):
        size = int(counts[k])
        pieces.append((int(k), signals.slice(offset, size)))
        offset += size
    return SplitBatch(stats, correct, judged, pieces)


def average_ranks(values: pl.Series, signal: str) -> pl.Series:
    """Stage 3: the average ranks of one signal's oriented values over all rows of its group."""
    return values.rank("average").alias(rank_column(signal))


def score_range(
    frames: Mapping[str, pl.DataFrame],
    standard: QualityStandard,
    whole: Mapping[str | None, tuple[Stats, Whole]],
    labels: Mapping[str, str],
    explain: bool,
    scored: bool = False,
) -> pl.DataFrame | None:
    """Stage 4: one id range's table from each model's rows of it (with their ranks), given the
    merged statistics: scored, matched by id and averaged, as in memory. `labels`: every model,
    in model order; a model with no row in the range is absent from `frames`. `scored`: the rows
    hold their scores already (`score_model`'s columns)."""
    if not frames:
        return None
    if scored:
        scored_frames = dict(frames)
    elif standard.scope == "joint":
        stats, complete = whole[None]
        scored_frames = score_jointly(dict(frames), standard, explain=explain, stats=stats, whole=complete)
    else:
        scored_frames = {
            name: score_model(frame, whole[name][0], standard, name, explain=explain, whole=whole[name][1])
            for name, frame in frames.items()
        }
    aligned = align_by_id(scored_frames, standard.id_column, labels)
    columns = {}
    for name in labels:
        columns[name] = aligned.columns.get(name) or _absent(scored_frames, len(aligned.ids))
    return assemble(Alignment(aligned.ids, columns), [s.name for s in standard.signals])


def plan_partitions(
    results: Mapping[str, pl.LazyFrame],
    standard: QualityStandard,
    *,
    labels: Mapping[str, str],
    explain: bool,
    memory_limit: int,
    folder: Path,
    progress: Progress | None = None,
    min_parts: int = 1,
    footers: Mapping[str, Path] | None = None,
    scale: Scale | None = None,
    scale_source: str = "",
) -> PartitionedRun:
    """Stage 1: the id ranges for `results` within `memory_limit` (and `min_parts` at least, to
    score ranges side by side); InputError if the limit is below what one range needs.

    `footers`: the local Parquet file of each model that has one. Where the signals allow the
    scores to be computed as rows are spilled (min-max, no task, integer ids, numeric signals), the
    statistics in those files' footers stand in for a first read.
    """
    id_col = standard.id_column
    scorable = footers is not None and standard.task is None and standard.normalization == "minmax"
    names = [m.name for m in standard.metrics]
    models = [
        _describe(name, frame, id_col, labels[name], names, (footers or {}).get(name) if scorable else None)
        for name, frame in results.items()
    ]
    dtype = common_id_dtype([m.id_dtype for m in models])
    text_ids = not dtype.is_integer()
    per_row = row_bytes(standard, explain, text_ids)
    rows = sum(m.rows for m in models)
    largest = max(m.rows for m in models)
    # Stages that hold whole columns, each alone: the ranks of one signal (values, ranks and the
    # sort's order), and the summary's one column of scores (values and a sorted copy).
    rank_group = rows if standard.scope == "joint" else largest
    whole_columns = max(24 * rank_group if standard.normalization == "rank" else 0, 24 * largest)
    room = memory_limit - BASE_BYTES
    smallest_range = 2 * per_row * _MIN_BATCH
    if room < max(smallest_range, whole_columns):
        need = BASE_BYTES + max(smallest_range, whole_columns)
        why = " (ranks need whole columns)" if standard.normalization == "rank" else ""
        raise InputError(
            f"--memory-limit {format_size(memory_limit)} is below the {format_size(need)} this input needs "
            f"at least{why}; raise --memory-limit"
        )
    parts = max(min_parts, math.ceil(rows * per_row / (room * 0.5)))
    # A batch is read, checked and split (about three copies of its columns) beside nothing else.
    batch_rows = int(min(_MAX_BATCH, max(_MIN_BATCH, room * 0.25 // (3 * per_row))))
    ranges = _ranges(models, dtype, parts, id_col)
    run = PartitionedRun(standard, models, ranges, folder, explain, batch_rows, progress)
    run.scale, run.scale_source = scale, scale_source
    return run


def _describe(
    name: str, frame: pl.LazyFrame, id_col: str, label: str, metrics: list[str], footer: Path | None
) -> _Model:
    """A model's row count and the type and bounds of its ids (after `normalize_ids`); with the
    model's Parquet file `footer`, where its ids are integers and `metrics` numbers, what its
    footer says of `_check_exprs` (then no row is read here)."""
    try:
        schema = frame.collect_schema()
        if id_col not in schema:
            shown = ", ".join(schema.names()[:12])
            raise InputError(f"{label}: missing column {id_col!r} (columns: {shown})")
        dtype = schema[id_col]
        checks = None
        if footer is not None and dtype.is_integer() and all(_numeric(schema.get(n)) for n in metrics):
            checks = footer_checks(footer, id_col, metrics)
        if checks is not None:
            row = (checks["rows"], checks["low"], checks["high"])
        else:
            bounds = (pl.col(id_col).min().alias("low"), pl.col(id_col).max().alias("high"))
            row = frame.select(pl.len(), *bounds).collect().row(0)
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{label}: cannot read: {first_line(exc)}") from None
    rows, low, high = row
    if dtype.is_float():
        finite = low is not None and math.isfinite(low) and math.isfinite(high)
        low, high = (math.floor(low), math.floor(high)) if finite else (None, None)
        return _Model(name, label, frame, rows, pl.Int64(), low, high)
    if dtype.is_integer():
        wide = high is not None and int(high) > _INT64_MAX
        kind = pl.UInt64() if wide else pl.Int64()
        return _Model(name, label, frame, rows, kind, None if low is None else int(low), high, checks=checks)
    return _Model(name, label, frame, rows, pl.String(), None, None)


def _ranges(models: list[_Model], dtype: pl.DataType, parts: int, id_col: str) -> IdRanges:
    if parts <= 1:
        return IdRanges(pl.Series("bounds", [], dtype=dtype))
    bounds = [(m.low, m.high) for m in models]
    if dtype.is_integer() and all(low is not None and high is not None for low, high in bounds):
        low = min(b[0] for b in bounds)
        high = max(b[1] for b in bounds)
        if high - low + 1 <= 4 * max(m.rows for m in models) + 1024:
            return dense_ranges(low, high, parts, dtype)
    samples = []
    for model in models:
        step = max(1, model.rows // _SAMPLE)
        ids = model.frame.select(pl.col(id_col).gather_every(step)).collect().get_column(id_col)
        samples.append(normalize_ids(ids, model.label).cast(dtype, strict=False).drop_nulls())
    return sampled_ranges(pl.concat(samples), parts)


def _remove(paths: list[Path]) -> None:
    for path in paths:
        with suppress(OSError):  # what is left goes with the temporary folder
            path.unlink()


def _absent(scored: Mapping[str, pl.DataFrame], size: int) -> dict[str, np.ndarray]:
    """The aligned columns of a model with no row in a range: all missing (see `Alignment`)."""
    frame = next(iter(scored.values()))
    out: dict[str, np.ndarray] = {}
    for name, dtype in frame.schema.items():
        if name == frame.columns[0]:
            continue
        out[name] = np.full(size, np.nan) if dtype.is_float() else np.full(size, -1, dtype=np.int64)
    return out


def _numeric(dtype: pl.DataType | None) -> bool:
    return dtype is not None and (dtype.is_numeric() or dtype == pl.Boolean)


def _native_columns(id_col: str, metrics: list[str], dtype: pl.DataType) -> list[pl.Expr]:
    """The id cast to `dtype` and each metric as Float64 with NaN read as null."""
    return [pl.col(id_col).cast(dtype), *(pl.col(n).cast(pl.Float64).fill_nan(None) for n in metrics)]


def footer_checks(path: Path, id_col: str, metrics: list[str]) -> dict[str, Any] | None:
    """What `_check_exprs` would find in a Parquet file, read from its footer: the row count, the
    id bounds and null count, each metric's min, max and non-null count (which counts NaN as a
    value: the spill measures the rows again). None where the footer cannot tell (a row group
    without statistics, a NaN or infinite bound, a nested or missing column, an unreadable footer).
    """
    import pyarrow.parquet as pq

    try:
        meta = pq.read_metadata(path)
    except (OSError, ValueError):  # a footer pyarrow cannot read (ArrowInvalid): read the rows
        return None
    index = {meta.schema.column(i).path: i for i in range(meta.num_columns)}
    found: dict[str, Any] = {"rows": meta.num_rows}
    for name in [id_col, *metrics]:
        if name not in index:
            return None
        low = high = None
        nulls = 0
        for group in range(meta.num_row_groups):
            chunk = meta.row_group(group)
            stats = chunk.column(index[name]).statistics
            if stats is None or not stats.has_null_count:
                return None
            nulls += stats.null_count
            if stats.null_count == chunk.num_rows:
                continue
            if not stats.has_min_max:
                return None
            bounds = (stats.min, stats.max) if name == id_col else (float(stats.min), float(stats.max))
            if name != id_col and not all(math.isfinite(b) for b in bounds):
                return None
            low = bounds[0] if low is None else min(low, bounds[0])
            high = bounds[1] if high is None else max(high, bounds[1])
        if name == id_col:
            found.update({"low": low, "high": high, "ids:null": nulls})
        else:
            found.update({f"{name}:min": low, f"{name}:max": high, f"{name}:n": meta.num_rows - nulls})
            found[f"{name}:inf"] = 0
    return found


def _check_exprs(id_col: str, metrics: list[str]) -> list[pl.Expr]:
    """Over `_native_columns`: the rows, null ids, and each metric's min, max and count (an
    infinite value shows in the min or max; they are few expressions, as each batch runs them)."""
    exprs = [pl.len().alias("rows"), pl.col(id_col).null_count().alias("ids:null")]
    for n in metrics:
        column = pl.col(n)
        exprs += [
            column.min().alias(f"{n}:min"),
            column.max().alias(f"{n}:max"),
            column.count().alias(f"{n}:n"),
        ]
    return exprs


def _merged_checks(pieces: list[pl.DataFrame], metrics: list[str]) -> dict[str, Any]:
    """`_check_exprs` over all rows from their values over each batch."""
    if not pieces:
        return {"rows": 0}
    exprs = [pl.col("rows").cast(pl.Int64).sum(), pl.col("ids:null").cast(pl.Int64).sum()]
    for n in metrics:
        exprs += [
            pl.col(f"{n}:min").min(),
            pl.col(f"{n}:max").max(),
            pl.col(f"{n}:n").cast(pl.Int64).sum(),
        ]
    return pl.concat(pieces).select(exprs).row(0, named=True)


def _checked_stats(found: Mapping[str, Any], label: str, id_col: str, metrics: list[str]) -> Stats:
    """The checks of `read_signals` on `_check_exprs`' results (no rows, null ids and infinite
    values are errors), and the metrics' statistics."""
    if not found["rows"]:
        raise InputError(f"{label}: no rows")
    if found["ids:null"]:
        raise InputError(f"{label}: column {id_col!r} has {found['ids:null']} null ids")
    for n in metrics:
        if found[f"{n}:inf"]:
            raise InputError(f"{label}: column {n!r} has {found[f'{n}:inf']} infinite values (+/-inf)")
    return {n: (found[f"{n}:min"], found[f"{n}:max"], found[f"{n}:n"]) for n in metrics}
