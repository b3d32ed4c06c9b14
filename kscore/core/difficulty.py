"""Difficulty scores over polars frames (SPEC §2).

Each model's signals are oriented (higher-is-better columns negated), normalized to [0, 1] and combined
by their weights into a model-level score; the datapoint-level `difficulty_score` is the mean of the
model-level scores over the models that scored the datapoint.
"""

from __future__ import annotations

import functools
import math
import operator
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import polars as pl

from kscore.columns import N_MODELS, SCORE, model_score_column, normalized_column, top_signal_column
from kscore.config import TASK_SIGNAL, QualityStandard, Signal
from kscore.core.align import Alignment, Placed, align_by_id, normalize_ids, place_dense
from kscore.core.scale import Scale, Stats, add_counts, clamped_counts, merge_stats, scaled, warn_clamped
from kscore.core.signals import numeric_values, reject_infinite
from kscore.engines.local import parallel_map
from kscore.errors import InputError, KscoreWarning, first_line, missing_column_message

MODEL_COLUMN = "__kscore_model"

FrameLike = pl.DataFrame | pl.LazyFrame
_Frame = TypeVar("_Frame", pl.DataFrame, pl.LazyFrame)


def score_in_memory(
    results: Mapping[str, FrameLike],
    standard: QualityStandard,
    *,
    explain: bool = False,
    datapoints: pl.DataFrame | None = None,
    sources: Mapping[str, str] | None = None,
    scale: Scale | None = None,
    scale_source: str = "",
) -> tuple[pl.DataFrame, Scale]:
    """`difficulty_scores` of frames, in memory: every model's id and scores at once; and the scale
    they were normalized with. With `scale` (a stored one, from `scale_source`), on that scale."""
    if not results:
        raise InputError("no model results given")
    if datapoints is not None and standard.id_column in datapoints.columns:
        datapoints = datapoints.with_columns(
            normalize_ids(datapoints.get_column(standard.id_column), "--datapoints")
        )
    labels = {name: (sources or {}).get(name) or f"model {name!r}" for name in results}
    names = [s.name for s in standard.signals]
    measured: Scale = {}
    clamped: dict[str, int] = {}

    def signals_of(name: str, frame: FrameLike) -> tuple[pl.DataFrame, Stats]:
        signals, stats = read_signals(frame, standard, labels[name], datapoints)
        # The task's error (and text signals) are measured here: `_normalized` would otherwise.
        stats.update(column_stats(signals, [n for n in names if n not in stats]))
        measured[name] = stats
        return signals, stats

    def on_scale(
        stats: Mapping[str, Stats], rows: Mapping[str, int]
    ) -> dict[str | None, tuple[Stats, Whole]]:
        return merged_statistics(standard, stats, rows, scale=scale, scale_source=scale_source)

    # Models are read (LazyFrames) and reduced to id and score one at a time to keep memory low;
    # the joint scope needs every model's signals at once.
    read = ((name, *signals_of(name, frame)) for name, frame in results.items())
    if standard.scope == "joint":
        frames = {name: frame for name, frame, _ in read}
        if scale is None:
            scored = score_jointly(frames, standard, explain=explain)
        else:
            used, whole = on_scale(measured, {name: f.height for name, f in frames.items()})[None]
            scored = score_jointly(frames, standard, explain=explain, stats=used, whole=whole)
            for frame in frames.values():
                add_counts(clamped, clamped_counts(frame, scale[None], names))
    else:
        scored = {}
        for name, frame, stats in read:
            if scale is None:
                scored[name] = _scored_and_placed(frame, stats, standard, name, labels[name], explain)
            else:
                used, whole = on_scale({name: stats}, {name: frame.height})[name]
                scored[name] = score_model(frame, used, standard, name, explain=explain, whole=whole)
                add_counts(clamped, clamped_counts(frame, scale[name], names))
            del frame  # before the next model is read
    warn_clamped(clamped, scale_source)
    aligned = align_by_id(scored, standard.id_column, labels)
    table = assemble(aligned, names)
    if datapoints is not None:
        from kscore.core.tasks import enrich_datapoints

        table = enrich_datapoints(datapoints, table, standard.id_column)
    if scale is not None:
        return table, {key: scale[key] for key in ([None] if None in scale else results)}
    if standard.scope == "joint":
        joint: Stats = {}
        for stats in measured.values():
            joint = merge_stats(joint, stats)
        return table, {None: joint}
    return table, measured


def _scored_and_placed(
    frame: pl.DataFrame, stats: Stats, standard: QualityStandard, name: str, label: str, explain: bool
) -> pl.DataFrame | Placed:
    """One model's `score_model` columns, placed on the slots of its ids where they are compact
    (its signals are no longer needed: the next model is read into their memory); a plain score is
    computed while it is placed."""
    id_col = standard.id_column
    linear = None if explain else linear_score(frame, stats, standard)
    if linear is not None:
        placed = place_dense(frame.select(id_col, *linear.columns), id_col, label, linear)
        if placed is not None:
            return placed
    scored = score_model(frame, stats, standard, name, explain=explain)
    return place_dense(scored, id_col, label) or scored


Normalizing = tuple[Stats, "Whole"]  # the statistics a group of rows normalizes with, and its `Whole`


def merged_statistics(
    standard: QualityStandard,
    stats: Mapping[str, Stats],
    rows: Mapping[str, int],
    warn: bool = True,
    scale: Scale | None = None,
    scale_source: str = "",
) -> dict[str | None, Normalizing]:
    """Per model (per_model scope) or for all models together (key None, joint scope): the
    statistics merged over all pieces and whether no signal misses a value; warns about constant or
    empty signals once (if `warn`). `stats` and `rows` per model name, in model order. With `scale`
    (a stored one, from `scale_source`), its min and max with the rows' own counts."""
    names = [s.name for s in standard.signals]
    if standard.scope == "joint":
        merged: Stats = {}
        for one in stats.values():
            merged = merge_stats(merged, one)
        groups = {None: (merged, sum(rows.values()), "all models (joint scope)")}
    else:
        groups = {name: (one, rows[name], f"model {name!r}") for name, one in stats.items()}
    out = {}
    for key, (own, count, where) in groups.items():
        if scale is not None:
            stored = scale[None] if key is None else stored_stats(scale, key, scale_source)
            own = scaled(own, stored, standard.signals, where, scale_source)
        if warn:
            stat_warnings(own, standard.signals, key)
        out[key] = (own, Whole(all(own[n][2] == count for n in names), clamp=scale is not None))
    return out


def stored_stats(scale: Scale, model: str, source: str) -> Stats:
    """A model's statistics in a stored per_model scale; exit 2 where it has none."""
    if model not in scale:
        held = ", ".join(str(k) for k in scale)
        raise InputError(
            f"model {model!r} has no scale in {source} (it holds: {held}); with scope: per_model each "
            "model keeps its own scale: name the models as there, or use scope: joint"
        )
    return scale[model]


def read_signals(
    frame: FrameLike, standard: QualityStandard, label: str, datapoints: pl.DataFrame | None
) -> tuple[pl.DataFrame, Stats]:
    """The id column and every signal as Float64 (NaN read as null), validated, and the min, max and
    count of each metric, found in the same pass."""
    id_col = standard.id_column
    metric_names = [m.name for m in standard.metrics]
    needed = [id_col, *metric_names]
    optional = [c for c in (standard.task.result_columns if standard.task else ()) if c not in needed]
    try:
        schema = frame.collect_schema()
        _require_columns(schema.names(), needed, label)
        selected = frame.select(needed + [c for c in optional if c in schema])
        stat_exprs = _stat_exprs(schema, metric_names)
        if isinstance(selected, pl.LazyFrame):
            # One query: the file is read once, and the statistics come with it.
            selected, raw = pl.collect_all([selected, selected.select(stat_exprs)])
        else:
            raw = selected.select(stat_exprs)
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{label}: cannot read: {first_line(exc)}") from None
    if selected.height == 0:
        raise InputError(f"{label}: no rows")
    selected = selected.with_columns(normalize_ids(selected.get_column(id_col), label))
    metrics, stats = _numeric_signals(
        selected, metric_names, label, raw.row(0, named=True) if stat_exprs else {}
    )
    out = selected.with_columns(metrics)
    if standard.task is not None:
        from kscore.core.tasks import attach_ground_truth, task_error

        out = attach_ground_truth(out, standard.task, id_col, label, datapoints)
        out = out.with_columns(task_error(out, standard.task, label).alias(TASK_SIGNAL))
    return out.select(id_col, *metric_names, *([TASK_SIGNAL] if standard.task else [])), stats


def _stat_exprs(schema: pl.Schema, names: list[str]) -> list[pl.Expr]:
    """Min, max, count and whether any NaN, of each numeric signal column."""
    return [
        expr
        for n in names
        if schema[n].is_numeric() or schema[n] == pl.Boolean
        for expr in (
            pl.col(n).cast(pl.Float64).min().alias(f"{n}:min"),
            pl.col(n).cast(pl.Float64).max().alias(f"{n}:max"),
            pl.col(n).count().alias(f"{n}:n"),
            pl.col(n).cast(pl.Float64).is_nan().any().alias(f"{n}:nan"),
        )
    ]


def _numeric_signals(
    frame: pl.DataFrame, names: list[str], label: str, raw: dict[str, Any]
) -> tuple[list[pl.Series], Stats]:
    """Signal columns as Float64 with NaN read as null; text and +/-inf are errors naming the rows.

    `raw` holds the `_stat_exprs` of the numeric columns (one parallel pass), which check them and
    also give the normalization its min, max and count.
    """
    numeric = [n for n in names if f"{n}:min" in raw]
    out, stats = [], {}
    for name in names:
        column = frame.get_column(name)
        if name not in numeric:
            out.append(numeric_values(column, label))
            continue
        low, high = raw[f"{name}:min"], raw[f"{name}:max"]
        values = column.cast(pl.Float64)
        n_nan = int(values.is_nan().sum()) if raw[f"{name}:nan"] else 0
        if low is not None and not (math.isfinite(low) and math.isfinite(high)):
            reject_infinite(values, label)
        out.append(values.fill_nan(None) if n_nan else values)
        low, high = (None, None) if math.isnan(low if low is not None else 0.0) else (low, high)
        stats[name] = (low, high, raw[f"{name}:n"] - n_nan)
    return out, stats


def _require_columns(columns: list[str], needed: list[str], label: str) -> None:
    missing = [c for c in needed if c not in columns]
    if missing:
        raise InputError(missing_column_message(label, missing[0], columns))


def oriented(signal: Signal) -> pl.Expr:
    """A signal as lower-is-better."""
    column = pl.col(signal.name)
    return -column if signal.higher_is_better else column


def column_stats(frame: pl.DataFrame, names: list[str]) -> Stats:
    if not names:
        return {}
    row = frame.select(
        expr
        for n in names
        for expr in (pl.col(n).min().alias(f"{n}:min"), pl.col(n).max().alias(f"{n}:max"), pl.col(n).count())
    ).row(0, named=True)
    return {n: (row[f"{n}:min"], row[f"{n}:max"], row[n]) for n in names}


def _normalized(
    frame: FrameLike,
    signals: tuple[Signal, ...],
    method: str,
    model: str | None,
    known: Stats,
    weighted: bool = False,
    whole: Whole | None = None,
) -> tuple[list[pl.Expr], bool]:
    """Expressions normalizing each signal over the rows of `frame` (times its weight if
    `weighted`), and whether no value is null.

    `known` holds the min, max and count of some signals already. Warns on constant columns.
    `model` is None for the joint scope (all models' rows at once). With `whole`, `frame` is one
    partition of the rows: `known` holds every signal's statistics over all of them, `whole` says
    whether all of them are complete, and ranks come from the `rank_column`s; nothing warns here
    (the plan warns once, see `stat_warnings`).
    """
    where = f"model {model!r}" if model is not None else "all models (joint scope)"
    # Min and max of the raw columns, oriented here: negating 10M values just to find them costs.
    stats = {**column_stats(frame, [s.name for s in signals if s.name not in known]), **known}
    exprs = []
    for s in signals:
        low, high, count = _oriented_bounds(stats[s.name], s)
        x = oriented(s)
        factor = s.weight if weighted else 1.0
        if count == 0:
            if whole is None:
                _warn(f"{where}: signal {s.name!r} has no values", model)
            expr = pl.lit(None, dtype=pl.Float64)
        elif high == low:
            if s.natural_range:
                # A task error already lies on [0, 1]: all wrong stays 1, all right stays 0.
                expr = x * factor
            else:
                if whole is None:
                    _warn(f"{where}: signal {s.name!r} is constant ({low:g}); it normalizes to 0", model)
                expr = x * 0.0
        elif method == "rank":
            # An average rank depends only on the values, not on their order or partition.
            ranks = x.rank("average") if whole is None else pl.col(rank_column(s.name))
            expr = (ranks - 1.0) * (factor / (count - 1.0))
        else:
            expr = _min_max(pl.col(s.name), low, high, factor, s.higher_is_better)
            if whole is not None and whole.clamp:
                expr = _clamped(pl.col(s.name), expr, stats[s.name], factor, s.higher_is_better)
        exprs.append(expr.cast(pl.Float64).alias(f"norm_{s.name}"))
    if whole is not None:
        return exprs, whole.complete
    complete = all(stats[s.name][2] == frame.height for s in signals)
    return exprs, complete


def _oriented_bounds(stats: tuple[Any, Any, int], signal: Signal) -> tuple[Any, Any, int]:
    """A signal's min, max and count, its min and max as lower-is-better."""
    low, high, count = stats
    if signal.higher_is_better and count:
        low, high = -high, -low
    if count:
        # +0.0 makes a -0.0 bound 0.0: whichever zero a min met first, the numbers are the same.
        low, high = low + 0.0, high + 0.0
    return low, high, count


@dataclass(frozen=True)
class LinearScore:
    """A model's score where every row has every signal, each normalized by min and max: the sum
    in signal order of `(raw - low) * multiplier` (`((-low) - raw) * multiplier` for a negated
    signal), clipped to [0, 1].

    These are the operations, in the same order, of the polars expression `_with_scores` builds for
    such a model, so both give the same bits. numpy evaluates them on cache-sized blocks while
    `place_dense` scatters the scores: no column is made for the score or its intermediates.
    """

    terms: tuple[tuple[str, float, float, bool], ...]  # (column, low, multiplier, negate)

    @property
    def columns(self) -> list[str]:
        return [name for name, *_ in self.terms]

    def __call__(self, values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The score of a block of rows, from its signal columns (a `Derive` of `place_dense`)."""
        total = term = None
        for name, low, multiplier, negate in self.terms:
            x = values[name]
            if total is None:
                target = total = np.empty_like(x)
            else:
                target = term = term if term is not None else np.empty_like(x)
            if negate:
                np.subtract(-low, x, out=target)
            else:
                np.subtract(x, low, out=target)
            np.multiply(target, multiplier, out=target)
            if target is not total:
                np.add(total, target, out=total)
        assert total is not None
        np.clip(total, 0.0, 1.0, out=total)
        return {SCORE: total}


def linear_score(frame: pl.DataFrame, stats: Stats, standard: QualityStandard) -> LinearScore | None:
    """The `LinearScore` that scores `frame` as `score_model` does (without `explain`), where the
    model's scores are that simple: min-max normalization, every signal a Float64 column with a
    value in every row and a span of values; else None."""
    if standard.normalization != "minmax":
        return None
    terms = []
    for s in standard.signals:
        column = frame.get_column(s.name)
        low, high, count = _oriented_bounds(stats[s.name], s)
        if column.dtype != pl.Float64 or count != frame.height or column.null_count() or high == low:
            return None
        scale, low, multiplier = _min_max_plan(low, high, s.weight)
        if scale != 1.0:
            return None
        terms.append((s.name, low, multiplier, s.higher_is_better))
    return LinearScore(tuple(terms))


def rank_column(signal: str) -> str:
    """The column holding a signal's average rank over all rows, where a plan ranked them apart."""
    return f"__kscore_rank_{signal}"


@dataclass(frozen=True)
class Whole:
    """What scoring one partition needs to know about all the rows: whether every row has every
    signal (then weights are not renormalized; the choice must be the same in every partition)."""

    complete: bool
    clamp: bool = False  # the statistics are a stored scale's: values beyond it are clamped


def stat_warnings(stats: Stats, signals: tuple[Signal, ...], model: str | None) -> None:
    """The warnings `_normalized` gives for these statistics, given once by a partitioned run."""
    where = f"model {model!r}" if model is not None else "all models (joint scope)"
    for s in signals:
        low, high, count = stats[s.name]
        if count == 0:
            _warn(f"{where}: signal {s.name!r} has no values", model)
        elif high == low and not s.natural_range:
            shown = (-low if s.higher_is_better else low) + 0.0
            _warn(f"{where}: signal {s.name!r} is constant ({shown:g}); it normalizes to 0", model)


def _min_max(raw: pl.Expr, low: float, high: float, factor: float, negate: bool) -> pl.Expr:
    """factor * (v - low) / (high - low), `v` the oriented value (-raw if `negate`), without
    overflow or underflow anywhere in the float range.

    The common case is two passes over the rows (subtract, scale), orientation and weight folded
    in. A span beyond the float range (values near +/-1e308) is computed on halved values; a span
    whose inverse overflows (subnormal values, all below 1e-290) on values times 2**600. Scaling by
    a power of two is exact, so these give the same numbers the plain formula would if it could.
    """
    scale, low, multiplier = _min_max_plan(low, high, factor)
    if scale != 1.0:
        raw = raw * scale
    return ((-low) - raw if negate else raw - low) * multiplier


def _min_max_plan(low: float, high: float, factor: float) -> tuple[float, float, float]:
    """(scale, low, multiplier) of `_min_max`: the raw values times `scale`, less `low`, times
    `multiplier`."""
    span = high - low
    if math.isfinite(span) and math.isfinite(factor / span):
        return 1.0, low, factor / span
    scale = 0.5 if not math.isfinite(span) else _TINY_SPAN_SCALE
    low, span = low * scale, high * scale - low * scale
    return scale, low, factor / span


def _clamped(
    raw: pl.Expr, normalized: pl.Expr, stats: tuple[Any, Any, int], factor: float, negate: bool
) -> pl.Expr:
    """`normalized` with the raw values beyond a stored scale's range clamped to 0 or `factor`;
    values within it keep exactly the numbers the run that stored the scale gave them."""
    low, high, _ = stats
    below, above = (factor, 0.0) if negate else (0.0, factor)
    return pl.when(raw < low).then(pl.lit(below)).when(raw > high).then(pl.lit(above)).otherwise(normalized)


# 2**600: brings values whose span is subnormal into the normal range, far from overflow.
_TINY_SPAN_SCALE = math.ldexp(1.0, 600)


def _with_scores(
    frame: _Frame,
    signals: tuple[Signal, ...],
    method: str,
    model: str | None,
    explain: bool,
    known: Stats,
    whole: Whole | None = None,
) -> _Frame:
    """Add the model-level score: the weighted mean over the signals a row has (weights renormalized).

    With `explain`, also the `norm_<signal>` columns and `top_signal` (index of the largest
    weighted contribution).
    """
    if explain:
        normalized, complete = _normalized(frame, signals, method, model, known, whole=whole)
        # In [0, 1] by construction; (v - low) * (1 / span) may round a hair past 1.
        frame = frame.with_columns(e.clip(0.0, 1.0) for e in normalized)
        contributions = [pl.col(f"norm_{s.name}") * s.weight for s in signals]
    else:
        contributions, complete = _normalized(frame, signals, method, model, known, True, whole)
    if complete:
        # Every row has every signal, and the weights sum to 1: no renormalization needed. Added in
        # signal order, as `LinearScore` adds them.
        present: pl.Expr = pl.lit(1.0)
        numerator = functools.reduce(operator.add, contributions)
        score = numerator
    else:
        numerator = pl.sum_horizontal(contributions)
        present = pl.sum_horizontal(
            [c.is_not_null().cast(pl.Float64) * s.weight for c, s in zip(contributions, signals, strict=True)]
        )
        score = pl.when(present > 0).then(numerator / present)
    # A weighted mean of values in [0, 1]: rounding alone can step past its ends.
    exprs = [score.clip(0.0, 1.0).alias(SCORE)]
    if explain:
        exprs.append(pl.when(present > 0).then(_arg_max(contributions)).cast(pl.Int16).alias("top_signal"))
    return frame.with_columns(exprs)


def _arg_max(columns: list[pl.Expr]) -> pl.Expr:
    """Row-wise index of the largest of `columns` (the first on ties; nulls never win), as a chain
    of comparisons: 20x faster than `concat_list(...).list.arg_max()`."""
    filled = [c.fill_null(-1.0) for c in columns]
    best, index = filled[0], pl.lit(0, dtype=pl.Int16)
    for i, column in enumerate(filled[1:], start=1):
        index = pl.when(column > best).then(pl.lit(i, dtype=pl.Int16)).otherwise(index)
        best = pl.max_horizontal(best, column)
    return index


def _kept_columns(standard: QualityStandard, explain: bool) -> list[str]:
    keep = [standard.id_column, SCORE]
    if explain:
        keep += [f"norm_{s.name}" for s in standard.signals] + ["top_signal"]
    return keep


def score_model(
    frame: _Frame,
    stats: Stats,
    standard: QualityStandard,
    model: str,
    *,
    explain: bool,
    whole: Whole | None = None,
) -> _Frame:
    """One model's id, model-level score and (with `explain`) normalized signals and top signal.

    `whole`: `frame` is a partition of the model's rows and `stats` are over all of them (then
    `frame` may be a LazyFrame: the plan scores rows as it spills them).
    """
    scored = _with_scores(frame, standard.signals, standard.normalization, model, explain, stats, whole)
    return scored.select(_kept_columns(standard, explain))


def score_jointly(
    frames: dict[str, pl.DataFrame],
    standard: QualityStandard,
    *,
    explain: bool,
    stats: Stats | None = None,
    whole: Whole | None = None,
) -> dict[str, pl.DataFrame]:
    """Like `score_model`, normalizing each signal over the rows of all models at once.

    `stats` and `whole`: the frames are a partition of the rows, and these are over all of them.
    """
    joint = pl.concat(
        [f.with_columns(pl.lit(name).alias(MODEL_COLUMN)) for name, f in frames.items()],
        how="vertical_relaxed",
    )
    joint = _with_scores(joint, standard.signals, standard.normalization, None, explain, stats or {}, whole)
    parts = joint.partition_by(MODEL_COLUMN, as_dict=True, maintain_order=True)
    return {name: parts[(name,)].select(_kept_columns(standard, explain)) for name in frames}


def assemble(aligned: Alignment, signal_names: list[str]) -> pl.DataFrame:
    """One row per datapoint: the models' columns side by side, and their mean."""
    models = pl.DataFrame(
        [
            pl.Series(model_score_column(name), columns[SCORE], nan_to_null=True)
            for name, columns in aligned.columns.items()
        ]
    )
    if not any(column.has_nulls() for column in models.get_columns()):
        # Every model scored every datapoint (the common case): a plain in-place sum.
        scores = [columns[SCORE] for columns in aligned.columns.values()]
        mean = pl.Series(SCORE, _mean_of(scores))
        count = pl.Series(N_MODELS, np.full(len(scores[0]), len(scores), dtype=np.uint32))
    else:
        mean_values, counts = _mean_of_present([columns[SCORE] for columns in aligned.columns.values()])
        mean = pl.Series(SCORE, mean_values, nan_to_null=True)
        count = pl.Series(N_MODELS, counts)
    out = [aligned.ids, mean, count, *models.get_columns()]
    lookup = dict(enumerate(signal_names))
    for name, columns in aligned.columns.items():
        for signal in signal_names:
            if f"norm_{signal}" in columns:
                values = columns[f"norm_{signal}"]
                out.append(pl.Series(normalized_column(signal, name), values, nan_to_null=True))
        if "top_signal" in columns:
            codes = pl.Series(top_signal_column(name), columns["top_signal"])
            out.append(codes.replace_strict(lookup, default=None, return_dtype=pl.String))
    return pl.DataFrame(out)


def _mean_of(arrays: list[np.ndarray]) -> np.ndarray:
    """Element-wise mean of equally long arrays, in two halves on two threads."""
    if len(arrays) == 1:
        return arrays[0]
    total = np.empty_like(arrays[0])

    def add(part: slice) -> None:
        out = total[part]
        np.add(arrays[0][part], arrays[1][part], out=out)
        for values in arrays[2:]:
            out += values[part]
        out /= len(arrays)

    half = len(total) // 2
    parallel_map(add, [slice(0, half), slice(half, None)])
    return total


def _mean_of_present(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Element-wise mean of the values that are not NaN (NaN where none), and their count.

    The present values are added in model order and divided by their count: a row that every
    model scored gets exactly what `_mean_of` gives it, so a row's mean never depends on the other
    rows (nor on the partition it was scored in).
    """
    total = arrays[0].copy()
    counts = (~np.isnan(total)).astype(np.uint32)
    for values in arrays[1:]:
        here = ~np.isnan(values)
        first = here & (counts == 0)
        total[first] = values[first]  # not 0.0 + value: a -0.0 keeps its sign, as in `_mean_of`
        more = here & ~first
        total[more] += values[more]
        counts += here
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / counts, counts  # 0 / 0 and NaN / 0 are NaN: no model scored the row


def _warn(message: str, model: str | None) -> None:
    warnings.warn(KscoreWarning(message, model=model), stacklevel=3)
