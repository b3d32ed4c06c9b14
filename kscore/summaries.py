"""Summaries as plain data: what each command returns and `--json` prints."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from kscore.columns import N_MODELS, SCORE, model_score_column, top_signal_column
from kscore.core.order_stats import exact_quantiles, top_k_candidates
from kscore.engines.local import parallel_map

if TYPE_CHECKING:
    from kscore.core.comparison import Comparison, Gate


def rounded(value: Any) -> float | None:
    """Floats in summaries: rounded to 6 decimals alike in every command."""
    return None if value is None else round(float(value), 6)


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

    def add(self, table: pl.DataFrame) -> None:
        for column in self.columns:
            if self.quantiles[column].bounds is None:  # the first values met set the bands
                self.quantiles[column].set_bounds(table.get_column(column).drop_nulls().to_numpy())
        # Every column's count, sum and bands in one query: polars runs the columns side by side,
        # each in a pass or two (numpy took six, on one core). A column with no bands yet has no
        # value here.
        known = [c for c in self.columns if self.quantiles[c].bounds is not None]
        exprs = []
        for column in known:
            exprs += [
                pl.col(column).count().alias(f"{column}:count"),
                pl.col(column).sum().alias(f"{column}:sum"),
                *self.quantiles[column].band_exprs(column),
            ]
        found = table.select(exprs) if exprs else pl.DataFrame()
        for column in known:
            count = int(found.get_column(f"{column}:count").item())
            self.quantiles[column].add_bands(count, found, column)
            self.sums[column] += float(found.get_column(f"{column}:sum").item())
            self.counts[column] += count
        scores = table.get_column(SCORE)
        self.rows += table.height
        self.scored += int(scores.count())
        self.hardest.append(table[hardest_rows(scores, table.get_column(self.id_column), self.top)])

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
                low, high = part[j], part[j2]
                out.append(float(low + (rank - k) * (high - low)))
            else:
                out.append(exact_quantiles(read_all(), [q])[0])
        return out


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
    from kscore.columns import LOCAL, MAP_X, MAP_Y, POTENTIAL, REPRESENTATION

    splits = table.get_column(split_col).cast(pl.String).value_counts(sort=True)
    train = table.filter(pl.col(REPRESENTATION).is_not_null())
    scores = [REPRESENTATION, *([POTENTIAL, LOCAL] if with_difficulty else [])]
    probabilities = (0.0, 0.1, 0.5, 0.9, 1.0)
    quantiles = {
        score: {
            f"p{round(q * 100)}": rounded(train.get_column(score).quantile(q, "linear"))
            for q in probabilities
        }
        for score in scores
    }
    shown = [id_column, split_col, REPRESENTATION, *scores[1:], MAP_X, MAP_Y]

    def rows(frame: pl.DataFrame) -> list[dict[str, Any]]:
        return [
            {
                ("id" if k == id_column else k): (rounded(v) if isinstance(v, float) else v)
                for k, v in row.items()
            }
            for row in frame.select(shown).iter_rows(named=True)
        ]

    summary: dict[str, Any] = {
        "rows_per_split": dict(splits.iter_rows()),
        "n_train": train.height,
        "quantiles": quantiles,
        "least_represented": rows(
            train.bottom_k(top, by=[REPRESENTATION, id_column]).sort([REPRESENTATION, id_column])
        ),
        "output": output,
    }
    if with_difficulty:
        summary["highest_potential"] = rows(
            train.drop_nulls(POTENTIAL)
            .top_k(top, by=[POTENTIAL, id_column], reverse=[False, True])
            .sort([POTENTIAL, id_column], descending=[True, False])
        )
    else:
        summary["notes"] = [
            "potential_difficulty_score and local_difficulty need difficulty scores: run "
            "`kscore difficulty` on the models' results, then pass its output with --difficulty"
        ]
    return summary


def compare_summary(comparison: Comparison, top: int = 20, gates: list[Gate] | None = None) -> dict[str, Any]:
    """The summary of `kscore compare` (`--json`): counts, gates and the largest regressions."""
    rows = comparison.top_regressions(top).select(comparison.id_column, "baseline", "candidate", "delta")
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
            {"id": r[0], "baseline": rounded(r[1]), "candidate": rounded(r[2]), "delta": rounded(r[3])}
            for r in rows.iter_rows()
        ],
    }
