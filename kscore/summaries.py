"""Summaries as plain data: what each command returns and `--json` prints."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import polars as pl

from kscore.columns import (
    LOCAL,
    MAP_X,
    MAP_Y,
    N_MODELS,
    POTENTIAL,
    REPRESENTATION,
    SCORE,
    model_score_column,
    top_signal_column,
)
from kscore.core.order_stats import exact_quantiles, interpolated, top_k_candidates
from kscore.engines.local import parallel_map

FrameT = TypeVar("FrameT", pl.DataFrame, pl.LazyFrame)

if TYPE_CHECKING:
    from kscore.core.comparison import Comparison, Gate


_EXACT: ContextVar[bool] = ContextVar("kscore_exact_summaries", default=False)


def rounded(value: Any) -> float | None:
    """Floats in summaries: rounded to 6 decimals alike in every command (whole within
    `exact_values`)."""
    if value is None:
        return None
    return float(value) if _EXACT.get() else round(float(value), 6)


@contextmanager
def exact_values() -> Iterator[None]:
    """Within it, summaries keep their floats whole: the report's page rounds each column itself,
    to the digits that keep its rows apart (0.0002431 and 0.0002434 are not both 0.000243)."""
    token = _EXACT.set(True)
    try:
        yield
    finally:
        _EXACT.reset(token)


def envelope(command: str, summary: Mapping[str, Any]) -> dict[str, Any]:
    """A command's summary in the one shape every `--json` object has: `kscore_version`, `command`
    and `output` first, then the command's own fields, `warnings` and `notes` (lists of lines)."""
    from kscore._version import __version__

    body = {k: v for k, v in summary.items() if k not in ("kscore_version", "command", "output")}
    body.setdefault("warnings", [])
    body.setdefault("notes", [])
    return {"kscore_version": __version__, "command": command, "output": summary.get("output"), **body}


def difficulty_summary(
    table: pl.DataFrame,
    models: Sequence[str],
    id_column: str,
    *,
    top: int = 10,
    output: str | None = None,
    warnings_by_model: Mapping[str | None, list[str]] | None = None,
    accuracy: Mapping[str, float | None] | None = None,
) -> dict[str, Any]:
    """Per-model statistics and the hardest datapoints of a `difficulty_scores` table.

    `accuracy` (binary tasks): each model's accuracy at the task's threshold.
    """
    model_columns = [model_score_column(m) for m in models]
    per_model = parallel_map(lambda column: _score_stats(table.get_column(column)), model_columns)
    scores = table.get_column(SCORE)
    hardest = table[hardest_rows(scores, table.get_column(id_column), top)]
    return _difficulty_dict(
        models,
        per_model,
        hardest,
        id_column,
        table.height,
        int(scores.count()),
        output,
        warnings_by_model,
        accuracy,
    )


def _difficulty_dict(
    models: Sequence[str],
    per_model: Sequence[dict[str, Any]],
    hardest: pl.DataFrame,
    id_column: str,
    n_datapoints: int,
    n_scored: int,
    output: str | None,
    warnings_by_model: Mapping[str | None, list[str]] | None,
    accuracy: Mapping[str, float | None] | None,
) -> dict[str, Any]:
    warnings_by_model = warnings_by_model or {}
    accuracy = accuracy or {}
    model_columns = [model_score_column(m) for m in models]
    explained = [m for m in models if top_signal_column(m) in hardest.columns]

    def top_signals(row: dict[str, Any]) -> dict[str, Any]:
        return {"top_signal": {m: row[top_signal_column(m)] for m in explained}} if explained else {}

    return {
        "models": [
            {
                "name": model,
                **stats,
                "warnings": warnings_by_model.get(model, []),
                **({"accuracy": rounded(accuracy[model])} if model in accuracy else {}),
            }
            for model, stats in zip(models, per_model, strict=True)
        ],
        "n_datapoints": n_datapoints,
        "n_scored": n_scored,
        "output": output,
        "warnings": warnings_by_model.get(None, []),
        "hardest": [
            {
                "id": row[id_column],
                SCORE: rounded(row[SCORE]),
                N_MODELS: row[N_MODELS],
                "scores": {m: rounded(row[c]) for m, c in zip(models, model_columns, strict=True)},
                **top_signals(row),
            }
            for row in hardest.iter_rows(named=True)
        ],
    }


PRIME_ROWS = 500_000  # the rows of a scanned table whose quantiles set the bands of all of its rows


class RangeSummary:
    """The summary of a difficulty table met one id range at a time (a partitioned run), without
    holding or re-reading it: counts and sums add up; the hardest rows of each range compete at
    the end; exact quantiles keep only the values near them (see `StreamingQuantiles`)."""

    def __init__(self, models: Sequence[str], id_column: str, top: int) -> None:
        self.models = list(models)
        self.id_column = id_column
        self.top = top
        self.columns = [model_score_column(m) for m in models]
        self.quantiles = {c: StreamingQuantiles((0.5, 0.9)) for c in self.columns}
        self.sums = dict.fromkeys(self.columns, 0.0)
        self.counts = dict.fromkeys(self.columns, 0)
        self.rows = 0
        self.scored = 0
        self.hardest: list[pl.DataFrame] = []
        self.samples: dict[str, list[np.ndarray]] = {}  # pieces' samples (`add_piece`)

    def add(self, table: pl.DataFrame | pl.LazyFrame) -> None:
        """The rows of one range; or, scanned (a LazyFrame), all of a table's rows in streaming
        queries that hold no more than the quantiles' bands (set from its first PRIME_ROWS
        values: `prime_scanned`)."""
        lazy = isinstance(table, pl.LazyFrame)
        if lazy:
            prime_scanned(table, self.quantiles)  # type: ignore[arg-type]
        for column in self.columns:
            if self.quantiles[column].bounds is None:  # the first values met set the bands
                self.quantiles[column].set_bounds(table.get_column(column).drop_nulls().to_numpy())  # type: ignore[union-attr]
        # Every column's count, sum and bands in one query: polars runs the columns side by side,
        # each in a pass or two (numpy took six, on one core). A column with no bands yet has no
        # value here.
        known = [c for c in self.columns if self.quantiles[c].bounds is not None]
        exprs = _count_exprs(known)
        if not lazy:
            exprs += [e for column in known for e in self.quantiles[column].band_exprs(column)]
        found = table.select(exprs)
        found = found.collect(engine="streaming") if isinstance(found, pl.LazyFrame) else found
        if lazy:  # the bands in queries of their own, that stream
            add_scanned(table, {c: self.quantiles[c] for c in known})  # type: ignore[arg-type]
        for column in known:
            count = int(found.get_column(f"{column}:count").item())
            if not lazy:
                self.quantiles[column].add_bands(count, found, column)
            self.sums[column] += float(found.get_column(f"{column}:sum").item())
            self.counts[column] += count
        self.rows += int(found.get_column(":rows").item())
        self.scored += int(found.get_column(":scored").item())
        if isinstance(table, pl.LazyFrame):  # (a `lazy` check mypy can follow)
            hardest = table.filter(pl.col(SCORE).is_not_null()).top_k(
                self.top, by=[SCORE, self.id_column], reverse=[False, True]
            )
            self.hardest.append(hardest.collect(engine="streaming"))
        else:
            self.hardest.append(
                table[hardest_rows(table.get_column(SCORE), table.get_column(self.id_column), self.top)]
            )

    def add_piece(self, piece: RangePiece) -> None:
        """A range summed up where it was written; its scores' quantiles come from `bounds` and
        `add_found_bands` once every piece is in."""
        self.rows += piece.rows
        self.scored += piece.scored
        for column in self.columns:
            self.counts[column] += piece.counts[column]
            self.sums[column] += piece.sums[column]
            self.samples.setdefault(column, []).append(piece.samples[column])
        self.hardest.append(piece.hardest)

    def bounds(self) -> dict[str, list[tuple[float, float]]]:
        """Each model's quantile bands, set from the pieces' samples (a model without a score has
        none)."""
        for column, samples in self.samples.items():
            if self.quantiles[column].bounds is None:
                self.quantiles[column].set_bounds(np.concatenate(samples))
        return {c: q.bounds for c, q in self.quantiles.items() if q.bounds is not None}

    def add_found_bands(self, found: Mapping[str, Sequence[pl.DataFrame]]) -> None:
        """What `scanned_bands` found in one part."""
        for column, frames in found.items():
            self.quantiles[column].add_found(frames)

    def result(
        self,
        written: pl.LazyFrame,
        *,
        output: str | None = None,
        accuracy: Mapping[str, float | None] | None = None,
        warnings_by_model: Mapping[str | None, list[str]] | None = None,
    ) -> dict[str, Any]:
        """The summary; `written` (the output, scanned) is read only where a quantile's bracket
        missed."""
        per_model = []
        for column in self.columns:
            count = self.counts[column]
            median, p90 = self.quantiles[column].result(lambda c=column: column_of(written, c).to_numpy())
            per_model.append(
                {
                    "rows_scored": count,
                    "mean": rounded(self.sums[column] / count) if count else None,
                    "median": rounded(median),
                    "p90": rounded(p90),
                }
            )
        candidates = pl.concat(self.hardest) if self.hardest else pl.DataFrame()
        if candidates.height:
            rows = hardest_rows(candidates.get_column(SCORE), candidates.get_column(self.id_column), self.top)
            candidates = candidates[rows]
        return _difficulty_dict(
            self.models, per_model, candidates, self.id_column, self.rows, self.scored, output,
            warnings_by_model, accuracy,
        )  # fmt: skip


@dataclass
class RangePiece:
    """One id range of a difficulty output summed up where it was written (a Ray task writes its
    own part): its counts and sums, its hardest rows, and a sample of each model's scores from which
    the quantiles' bands are set. What `RangeSummary.add_piece` takes."""

    rows: int
    scored: int
    counts: dict[str, int]
    sums: dict[str, float]
    hardest: pl.DataFrame
    samples: dict[str, np.ndarray]


# Scores sampled over all the id ranges of a run (per model), to set the quantiles' bands: each
# wanted rank then lies within its band with a margin of about ten standard errors.
SAMPLED_SCORES = 1 << 20


def _count_exprs(columns: Sequence[str]) -> list[pl.Expr]:
    """A difficulty table's rows, its scored rows, and each of `columns`' count and sum."""
    exprs = [pl.len().alias(":rows"), pl.col(SCORE).count().alias(":scored")]
    for column in columns:
        exprs += [
            pl.col(column).count().alias(f"{column}:count"),
            pl.col(column).sum().alias(f"{column}:sum"),
        ]
    return exprs


def range_piece(
    table: pl.DataFrame, models: Sequence[str], id_column: str, top: int, ranges: int
) -> RangePiece:
    """The `RangePiece` of one of a run's `ranges` id ranges' table."""
    columns = [model_score_column(m) for m in models]
    found = table.select(_count_exprs(columns)).row(0, named=True)
    size = max(1024, -(-SAMPLED_SCORES // max(ranges, 1)))
    samples = {}
    for column in columns:
        values = table.get_column(column).drop_nulls().drop_nans().to_numpy()
        if len(values) > size:
            values = np.random.default_rng(len(values)).choice(values, size, replace=False)
        samples[column] = values
    return RangePiece(
        rows=int(found[":rows"]),
        scored=int(found[":scored"]),
        counts={c: int(found[f"{c}:count"]) for c in columns},
        sums={c: float(found[f"{c}:sum"] or 0.0) for c in columns},
        hardest=table[hardest_rows(table.get_column(SCORE), table.get_column(id_column), top)],
        samples=samples,
    )


def band_queries(
    scan: pl.LazyFrame, column: str, bounds: Sequence[tuple[float, float]]
) -> list[pl.LazyFrame]:
    """`StreamingQuantiles.scanned_queries` for the bands `bounds`: how many values of `column`
    there are and how many fall below each band, then the values inside each."""
    values = pl.col(column).cast(pl.Float64)
    kept = scan.select(values).filter(values.is_not_null() & values.is_not_nan())
    below = [(pl.col(column) < low).sum().alias(f"below:{i}") for i, (low, _) in enumerate(bounds)]
    insides = [kept.filter(pl.col(column).is_between(low, high)) for low, high in bounds]
    return [kept.select(pl.len().alias("n"), *below), *insides]


def scanned_bands(
    scan: pl.LazyFrame, bounds: Mapping[str, Sequence[tuple[float, float]]]
) -> dict[str, list[pl.DataFrame]]:
    """For each column of `bounds`, what `band_queries` find in `scan` (all in one streaming
    `pl.collect_all`), for `StreamingQuantiles.add_found`: run where a part was written (a Ray
    task), and by `add_scanned`."""
    queries = {column: band_queries(scan, column, bands) for column, bands in bounds.items()}
    found = pl.collect_all([q for its in queries.values() for q in its], engine="streaming")
    out, start = {}, 0
    for column, its in queries.items():
        out[column] = found[start : start + len(its)]
        start += len(its)
    return out


class StreamingQuantiles:
    """Exact quantiles of values given in chunks, keeping only a band of them.

    The first chunk's quantiles (widened by 0.5% of the ranks each way) bracket each wanted order
    statistic; later chunks add how many values fall below the bracket and keep those inside it.
    Where the band misses (the first chunk was not like the rest), `result` reads all the values
    again: the answer is exact either way, as `exact_quantiles` gives it.
    """

    BAND = 0.005

    def __init__(self, qs: Sequence[float]) -> None:
        self.qs = list(qs)
        self.bounds: list[tuple[float, float]] | None = None
        self.below = [0 for _ in self.qs]
        self.inside: list[list[np.ndarray]] = [[] for _ in self.qs]
        self.n = 0

    def set_bounds(self, values: np.ndarray) -> None:
        """The bands, from the first values met (NaN left out; none: no bands yet)."""
        values = values[~np.isnan(values)]
        if len(values):  # one selection for every bound (four calls took 4.7x longer)
            edges = [edge for q in self.qs for edge in (max(q - self.BAND, 0.0), min(q + self.BAND, 1.0))]
            found = np.quantile(values, edges).tolist()
            self.bounds = list(zip(found[::2], found[1::2], strict=True))

    def add(self, values: np.ndarray) -> None:
        """Another chunk of values (NaN left out)."""
        values = values[~np.isnan(values)]
        if len(values) == 0:
            return
        if self.bounds is None:
            self.set_bounds(values)
        self.add_bands(len(values), pl.DataFrame({"v": values}).select(self.band_exprs("v")), "v")

    def scanned_queries(self, scan: pl.LazyFrame, column: str) -> list[pl.LazyFrame]:
        """Streaming queries over every value of `column` in `scan` (nulls and NaN left out) that
        hold only the values inside the bands (set before: `set_bounds`); `add_found` takes what
        they found."""
        assert self.bounds is not None
        return band_queries(scan, column, self.bounds)

    def add_found(self, found: Sequence[pl.DataFrame]) -> None:
        counts, *inside = found
        for i in range(len(self.qs)):
            self.below[i] += int(counts.get_column(f"below:{i}").item())
            self.inside[i].append(inside[i].to_series().to_numpy())
        self.n += int(counts.get_column("n").item())

    def band_exprs(self, column: str) -> list[pl.Expr]:
        """Per wanted quantile, once the bands are known: how many values of `column` fall below
        its band, and those inside it (a list), for `add_bands`. Null values count nowhere; values
        are never NaN here (scores)."""
        assert self.bounds is not None
        values = pl.col(column)
        exprs = []
        for i, (low, high) in enumerate(self.bounds):
            exprs.append((values < low).sum().alias(f"{column}:{i}:below"))
            exprs.append(values.filter(values.is_between(low, high)).implode().alias(f"{column}:{i}:inside"))
        return exprs

    def add_bands(self, count: int, found: pl.DataFrame, column: str) -> None:
        """What `band_exprs` found (the columns of `found`) in `count` more values: `add` without
        the values."""
        for i in range(len(self.qs)):
            self.below[i] += int(found.get_column(f"{column}:{i}:below").item())
            self.inside[i].append(found.get_column(f"{column}:{i}:inside")[0].to_numpy())
        self.n += count

    def result(self, read_all: Callable[[], np.ndarray]) -> list[float | None]:
        if self.n == 0:
            return [None for _ in self.qs]
        out: list[float | None] = []
        for i, q in enumerate(self.qs):
            rank = q * (self.n - 1)
            k = int(rank)
            inside = np.concatenate(self.inside[i])
            j, j2 = k - self.below[i], min(k + 1, self.n - 1) - self.below[i]
            if 0 <= j <= j2 < len(inside):
                part = np.partition(inside, [j, j2])
                out.append(interpolated(part[j], part[j2], rank))
            else:
                out.append(exact_quantiles(read_all(), [q])[0])
        return out


def prime_scanned(scan: pl.LazyFrame, quantiles: Mapping[str, StreamingQuantiles]) -> None:
    """Set the bands not yet set from the first PRIME_ROWS values of each column of `scan` (a
    column with no value keeps none)."""
    unset = [c for c, q in quantiles.items() if q.bounds is None]
    heads = [scan.select(pl.col(c).cast(pl.Float64)).drop_nulls().drop_nans().head(PRIME_ROWS) for c in unset]
    for column, head in zip(unset, pl.collect_all(heads, engine="streaming"), strict=True):
        quantiles[column].set_bounds(head.to_series().to_numpy())


def add_scanned(scan: pl.LazyFrame, quantiles: Mapping[str, StreamingQuantiles]) -> None:
    """Every value of each column of `quantiles` with bands (a column without has no value) in
    `scan`: all the columns' band queries in one `pl.collect_all`."""
    bounds = {c: q.bounds for c, q in quantiles.items() if q.bounds is not None}
    for column, found in scanned_bands(scan, bounds).items():
        quantiles[column].add_found(found)


def column_of(table: pl.DataFrame | pl.LazyFrame, name: str) -> pl.Series:
    """One column of a table in memory or of a scanned file (read alone)."""
    if isinstance(table, pl.DataFrame):
        return table.get_column(name)
    return table.select(name).collect().to_series()


def _score_stats(scores: pl.Series) -> dict[str, Any]:
    """Rows scored, mean, median and p90 (exact) of one model's scores."""
    median, p90 = exact_quantiles(scores.to_numpy(), [0.5, 0.9])
    return {
        "rows_scored": len(scores) - scores.null_count(),
        "mean": rounded(scores.mean()),
        "median": rounded(median),
        "p90": rounded(p90),
    }


def hardest_rows(scores: pl.Series, ids: pl.Series, top: int) -> list[int]:
    """Row numbers of the `top` highest scores (nulls never), ties to the smaller id, hardest first."""
    candidates = top_k_candidates(scores.to_numpy(), top)
    order = pl.DataFrame(
        {"row": candidates, "score": scores.gather(candidates), "id": ids.gather(candidates)}
    ).sort(["score", "id"], descending=[True, False])
    return order.get_column("row").head(max(top, 0)).to_list()


def embed_summary(
    table: pl.DataFrame,
    id_column: str,
    split_col: str,
    *,
    top: int = 10,
    output: str | None = None,
    with_difficulty: bool = False,
) -> dict[str, Any]:
    """Rows per split, quantiles of each score over the train rows, and the notable train points."""
    summary = EmbedSummary(id_column, split_col, top=top, with_difficulty=with_difficulty)
    summary.add(table)
    return summary.result(
        lambda column: column_of(table.filter(pl.col(REPRESENTATION).is_not_null()), column).to_numpy(),
        output=output,
    )


@dataclass
class RankedChunk:
    """One chunk's rows per split and its notable train points (`EmbedSummary.ranked`)."""

    splits: dict[Any, int]
    least: pl.DataFrame
    highest: pl.DataFrame | None


class EmbedSummary:
    """The summary of an embed-scores table met in chunks (`embed_summary` is one chunk): split
    counts add up, the notable train points of each chunk compete at the end, and the quantiles are
    exact (`StreamingQuantiles`)."""

    PROBABILITIES = (0.0, 0.1, 0.5, 0.9, 1.0)

    def __init__(self, id_column: str, split_col: str, *, top: int, with_difficulty: bool) -> None:
        self.id_column = id_column
        self.split_col = split_col
        self.top = top
        self.with_difficulty = with_difficulty
        self.scores = [REPRESENTATION, *([POTENTIAL, LOCAL] if with_difficulty else [])]
        self.quantiles = {s: StreamingQuantiles(self.PROBABILITIES) for s in self.scores}
        self.splits: dict[Any, int] = {}
        self.n_train = 0
        self.least: list[pl.DataFrame] = []
        self.highest: list[pl.DataFrame] = []

    @property
    def columns(self) -> list[str]:
        """The columns `add` reads."""
        return [self.id_column, self.split_col, *self.scores, MAP_X, MAP_Y]

    def add(self, table: pl.DataFrame | pl.LazyFrame) -> None:
        """The rows of one chunk; or, scanned (a LazyFrame), all of a table's rows in streaming
        queries that hold no more than the quantiles' bands (set from its first PRIME_ROWS
        values: `prime_scanned`)."""
        if isinstance(table, pl.LazyFrame):
            self._add_scanned(table)
            return
        self.add_scores(table)
        self.add_ranked(self.ranked(table))

    def add_scores(self, table: pl.DataFrame) -> None:
        """The train rows' scores of one chunk (its score columns, whatever else it holds)."""
        train = table.filter(pl.col(REPRESENTATION).is_not_null())
        self.n_train += train.height
        for score in self.scores:
            self.quantiles[score].add(train.get_column(score).cast(pl.Float64).fill_null(np.nan).to_numpy())

    def ranked(self, table: pl.DataFrame) -> RankedChunk:
        """What one chunk gives `add_ranked`: made where the chunk's rows are (a task writing
        a part of the output), small whatever the chunk's size."""
        splits = dict(table.get_column(self.split_col).cast(pl.String).value_counts().iter_rows())
        train = table.select(self.columns).filter(pl.col(REPRESENTATION).is_not_null())
        highest = self._highest(train.drop_nulls(POTENTIAL)) if self.with_difficulty else None
        return RankedChunk(splits, self._least(train), highest)

    def add_ranked(self, chunk: RankedChunk) -> None:
        """One chunk's split counts and notable train points (`ranked`)."""
        for value, count in chunk.splits.items():
            self.splits[value] = self.splits.get(value, 0) + count
        self.least.append(chunk.least)
        if chunk.highest is not None:
            self.highest.append(chunk.highest)

    def _add_scanned(self, scan: pl.LazyFrame) -> None:
        train = scan.select(self.columns).filter(pl.col(REPRESENTATION).is_not_null())
        prime_scanned(train, self.quantiles)
        splits = scan.group_by(pl.col(self.split_col).cast(pl.String)).len()
        queries = [splits, train.select(pl.len()), self._least(train)]
        if self.with_difficulty:
            queries.append(self._highest(train.drop_nulls(POTENTIAL)))
        splits, n_train, *ranked = pl.collect_all(queries, engine="streaming")
        for value, count in splits.iter_rows():
            self.splits[value] = self.splits.get(value, 0) + count
        self.n_train += int(n_train.item())
        add_scanned(train, self.quantiles)
        self.least.append(ranked[0])
        if self.with_difficulty:
            self.highest.append(ranked[1])

    def _least(self, train: FrameT) -> FrameT:
        by = [REPRESENTATION, self.id_column]
        return train.bottom_k(self.top, by=by).sort(by)

    def _highest(self, train: FrameT) -> FrameT:
        by = [POTENTIAL, self.id_column]
        return train.top_k(self.top, by=by, reverse=[False, True]).sort(by, descending=[True, False])

    def result(
        self,
        read_all: Callable[[str], np.ndarray],
        *,
        output: str | None = None,
        quantiles: Sequence[list[float | None]] | None = None,
    ) -> dict[str, Any]:
        """The summary; `read_all(score)` gives every train row's value of a score, read only where
        a quantile's band missed. `quantiles`: each score's, found elsewhere (where the scores stay
        on a cluster), instead of the chunks'."""

        def rows(
            frames: list[pl.DataFrame], pick: Callable[[pl.DataFrame], pl.DataFrame]
        ) -> list[dict[str, Any]]:
            if not frames:
                return []
            return [
                {
                    ("id" if k == self.id_column else k): (rounded(v) if isinstance(v, float) else v)
                    for k, v in row.items()
                }
                for row in pick(pl.concat(frames)).iter_rows(named=True)
            ]

        by_score = {}
        for k, score in enumerate(self.scores):
            found = (
                quantiles[k]
                if quantiles is not None
                else self.quantiles[score].result(lambda s=score: read_all(s))
            )
            by_score[score] = {
                f"p{round(q * 100)}": rounded(v) for q, v in zip(self.PROBABILITIES, found, strict=True)
            }
        splits = sorted(self.splits.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))
        summary: dict[str, Any] = {
            "rows_per_split": dict(splits),
            "n_train": self.n_train,
            "quantiles": by_score,
            "least_represented": rows(self.least, self._least),
            "output": output,
        }
        if self.with_difficulty:
            summary["highest_potential"] = rows(self.highest, self._highest)
        else:
            summary["notes"] = [
                "potential_difficulty_score and local_difficulty need difficulty scores: run "
                "`kscore difficulty` on the models' results, then pass its output with --difficulty"
            ]
        return summary


def compare_summary(comparison: Comparison, top: int = 20, gates: list[Gate] | None = None) -> dict[str, Any]:
    """The summary of `kscore compare` (`--json`): counts, gates and the largest regressions."""
    picked = comparison.top_regressions(top)
    by_model = "model" in picked.columns  # two files compared model by model
    columns = [comparison.id_column, "baseline", "candidate", "delta", *(["model"] if by_model else [])]
    rows = picked.select(columns)
    return {
        "baseline": comparison.baseline,
        "candidate": comparison.candidate,
        "margin": comparison.margin,
        "regressions": comparison.counts["regression"],
        "improvements": comparison.counts["improvement"],
        "unchanged": comparison.counts["unchanged"],
        "only_in_one": {
            "only_baseline": comparison.counts["only_baseline"],
            "only_candidate": comparison.counts["only_candidate"],
        },
        "common_failures": comparison.common_failures,
        "common_failure_threshold": comparison.common_failure_threshold,
        "gates": [g.to_dict() for g in gates or []],
        "largest_regressions": [
            {
                "id": r[0],
                "baseline": rounded(r[1]),
                "candidate": rounded(r[2]),
                "delta": rounded(r[3]),
                **({"model": r[4]} if by_model else {}),
            }
            for r in rows.iter_rows()
        ],
    }
