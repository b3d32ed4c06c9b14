"""Model-to-model comparison of a difficulty table: regressions, improvements, common failures, gates."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from kscore.columns import SCORE, model_score_column
from kscore.errors import InputError, did_you_mean

STATUSES = ("regression", "improvement", "unchanged", "only_baseline", "only_candidate")
PER_MODEL_NOTE = (
    "this file was made with scope: per_model, so each model was normalized on its own: deltas "
    "compare each datapoint's standing within each model, not absolute quality. Use scope: joint "
    "in the quality standard for scores comparable between models."
)


@dataclass
class Gate:
    """A CI gate: fails when `value` exceeds `limit`."""

    name: str
    limit: int
    value: int

    @property
    def passed(self) -> bool:
        return self.value <= self.limit

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "limit": self.limit, "value": self.value, "passed": self.passed}


@dataclass
class Comparison:
    """The result of `compare_models`: counts and the per-datapoint table (`table`)."""

    baseline: str
    candidate: str
    margin: float
    common_failure_threshold: float
    # id, baseline, candidate, delta, status for every compared datapoint; lazy where the input was
    table: pl.DataFrame | pl.LazyFrame
    common_failures: int
    id_column: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def regressions(self) -> int:
        return self.counts["regression"]

    @property
    def improvements(self) -> int:
        return self.counts["improvement"]

    def top_regressions(self, n: int) -> pl.DataFrame:
        """The `n` largest regressions (ties to the smaller id)."""
        regressions = self.table.filter(pl.col("status") == "regression")
        top = regressions.sort(["delta", self.id_column], descending=[True, False]).head(n)
        return top.collect() if isinstance(top, pl.LazyFrame) else top


def models_in(difficulty: pl.DataFrame | pl.LazyFrame) -> list[str]:
    """The model names of a difficulty table, from its `difficulty_score_<model>` columns."""
    prefix = f"{SCORE}_"
    names = (
        difficulty.collect_schema().names() if isinstance(difficulty, pl.LazyFrame) else difficulty.columns
    )
    return [c[len(prefix) :] for c in names if c.startswith(prefix)]


def compare_models(
    difficulty: pl.DataFrame | pl.LazyFrame,
    baseline: str,
    candidate: str,
    *,
    margin: float = 0.0,
    common_failure_threshold: float = 0.9,
    id_column: str | None = None,
    source: str | None = None,
) -> Comparison:
    """Compare two models of a `difficulty_scores` table datapoint by datapoint.

    A regression is a datapoint whose candidate score exceeds its baseline score by more than
    `margin`; an improvement the reverse. Datapoints scored by one model only are counted apart. A
    common failure is a datapoint whose `difficulty_score` (over all models) exceeds the threshold.
    A LazyFrame is read by streaming queries and its comparison table stays lazy (a sink writes it).
    """
    if not (margin >= 0 and math.isfinite(margin)):
        raise InputError(f"--margin must be a finite number >= 0, not {margin}")
    if not math.isfinite(common_failure_threshold):
        raise InputError(
            f"--common-failure-threshold must be a finite number, not {common_failure_threshold}"
        )
    where = f"{source}: " if source else ""
    models = models_in(difficulty)
    schema = difficulty.collect_schema()
    columns = schema.names()
    shown = ", ".join(columns[:8]) + (", ..." if len(columns) > 8 else "")
    if not models:
        raise InputError(
            f"{where}not an output of `kscore difficulty`: it has no {SCORE}_<model> column, so no "
            f"model to compare (columns: {shown})"
        )
    if baseline == candidate:
        raise InputError(
            f"--baseline and --candidate are both {baseline!r}: name two different models "
            f"(this file holds: {', '.join(models)})"
        )
    for name in (baseline, candidate):
        if name not in models:
            raise InputError(
                f"{where}unknown model {name!r}{did_you_mean(name, models)} (this file holds: "
                f"{', '.join(models)})"
            )
    for column in (SCORE, model_score_column(baseline), model_score_column(candidate)):
        if column not in columns:
            raise InputError(
                f"{where}missing column {column!r}: not a complete output of `kscore difficulty` "
                f"(columns: {shown})"
            )
        dtype = schema[column]
        if not (dtype.is_float() or dtype.is_integer() or dtype == pl.Null):
            raise InputError(
                f"column {column!r} is {dtype}, not a number: is this the output of kscore difficulty?"
            )
    id_column = id_column or columns[0]
    if id_column not in columns:
        raise InputError(f"missing id column {id_column!r}")
    base, cand = pl.col(model_score_column(baseline)), pl.col(model_score_column(candidate))
    delta = cand - base
    status = (
        pl.when(base.is_null())
        .then(pl.lit("only_candidate"))
        .when(cand.is_null())
        .then(pl.lit("only_baseline"))
        .when(delta > margin)
        .then(pl.lit("regression"))
        .when(-delta > margin)
        .then(pl.lit("improvement"))
        .otherwise(pl.lit("unchanged"))
    )
    table = difficulty.filter(base.is_not_null() | cand.is_not_null()).select(
        id_column,
        base.alias("baseline"),
        cand.alias("candidate"),
        delta.alias("delta"),
        status.alias("status"),
    )
    by_status = table.group_by("status").agg(pl.len())
    by_status = by_status.collect() if isinstance(by_status, pl.LazyFrame) else by_status
    found = dict(by_status.iter_rows())
    counts = {s: int(found.get(s, 0)) for s in STATUSES}
    common_query = difficulty.select((pl.col(SCORE) > common_failure_threshold).sum())
    common_frame = common_query.collect() if isinstance(common_query, pl.LazyFrame) else common_query
    common = int(common_frame.item())
    return Comparison(baseline, candidate, margin, common_failure_threshold, table, common, id_column, counts)


def gates(
    comparison: Comparison, max_regressions: int | None = None, max_common_failures: int | None = None
) -> list[Gate]:
    """The CI gates that were asked for."""
    out = []
    if max_regressions is not None:
        out.append(Gate("regressions", max_regressions, comparison.regressions))
    if max_common_failures is not None:
        out.append(Gate("common_failures", max_common_failures, comparison.common_failures))
    return out


def compare_across(
    old: pl.DataFrame | pl.LazyFrame,
    new: pl.DataFrame | pl.LazyFrame,
    pairs: list[tuple[str, str]],
    *,
    id_column: str,
    margin: float = 0.0,
    common_failure_threshold: float = 0.9,
    sources: tuple[str, str] = ("OLD", "NEW"),
) -> Comparison:
    """Compare two difficulty tables on one scale, joined on the id: for each (model in `old`, model in
    `new`) pair, each datapoint's score then and now, as `compare_models` compares two models of one
    table (the same statuses and margin). Common failures are `new`'s (its `difficulty_score` above
    the threshold). The table gets a `model` column naming the pair (the name, where it is one)."""
    named = ((old, [a for a, _ in pairs], sources[0]), (new, [b for _, b in pairs], sources[1]))
    for table, names, source in named:
        held = models_in(table)
        for name in names:
            if name not in held:
                raise InputError(
                    f"{source}: unknown model {name!r}{did_you_mean(name, held)} (this file holds: "
                    f"{', '.join(held) or 'no model'})"
                )
        if id_column not in table.collect_schema():
            raise InputError(f"{source}: missing id column {id_column!r}")
    old_ids, new_ids = old.collect_schema()[id_column], new.collect_schema()[id_column]
    if old_ids != new_ids and not (old_ids.is_numeric() and new_ids.is_numeric()):
        raise InputError(
            f"the id column {id_column!r} is {old_ids} in {sources[0]} and {new_ids} in {sources[1]}"
        )
    tables, counts = [], dict.fromkeys(STATUSES, 0)
    comparison = None
    aligned = same_ids(old, new, id_column)
    for baseline, candidate in pairs:
        then = pl.col(model_score_column(baseline)).alias(model_score_column("old"))
        before = old.lazy().select(id_column, then)
        now = pl.col(model_score_column(candidate)).alias(model_score_column("new"))
        if aligned:  # row by row: a streaming read of both files, no hash table of either
            joined = pl.concat([before, new.lazy().select(SCORE, now)], how="horizontal")
        else:
            after = new.lazy().select(id_column, SCORE, now)
            joined = before.join(after, on=id_column, how="full", coalesce=True, maintain_order="left_right")
        comparison = compare_models(
            joined,
            "old",
            "new",
            margin=margin,
            common_failure_threshold=common_failure_threshold,
            id_column=id_column,
            source=f"{sources[0]} and {sources[1]}",
        )
        name = baseline if baseline == candidate else f"{baseline} -> {candidate}"
        tables.append(comparison.table.with_columns(pl.lit(name).alias("model")))
        for status, count in comparison.counts.items():
            counts[status] += count
    assert comparison is not None
    baselines = ", ".join(dict.fromkeys(a for a, _ in pairs))
    candidates = ", ".join(dict.fromkeys(b for _, b in pairs))
    table = pl.concat(tables) if len(tables) > 1 else tables[0]
    return Comparison(
        f"{baselines} ({sources[0]})",
        f"{candidates} ({sources[1]})",
        margin,
        common_failure_threshold,
        table,
        comparison.common_failures,
        id_column,
        counts,
    )


def same_ids(old: pl.DataFrame | pl.LazyFrame, new: pl.DataFrame | pl.LazyFrame, id_column: str) -> bool:
    """Whether two tables list the same ids in the same order (two runs on one data set: the
    common case), found by one streaming read of their id columns. Then they compare row by row
    instead of through a join, which would hold one side's ids and scores in memory."""
    counts = [t.lazy().select(pl.len()).collect(engine="streaming").item() for t in (old, new)]
    if counts[0] != counts[1]:
        return False
    ids = pl.concat(
        [old.lazy().select(pl.col(id_column)), new.lazy().select(pl.col(id_column).alias("__kscore_new_id"))],
        how="horizontal",
    )
    differ = ids.select((pl.col(id_column) != pl.col("__kscore_new_id")).fill_null(True).sum())
    return int(differ.collect(engine="streaming").item()) == 0
