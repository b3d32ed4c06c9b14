"""Task error signals: a per-datapoint error in [0, 1] (lower is better) from ground truth and inference.

- binary_classification: |ground_truth - inference|, ground truth 0/1, true/false or labels with
  `positive_label`, inference a score in [0, 1];
- regression: |ground_truth - inference|;
- multiclass_classification: 1 where the predicted label differs from the ground truth, else 0;
- object_detection: 1 - F1 (or recall, or precision) from per-datapoint tp/fp/fn counts; a datapoint
  with a zero denominator scores a metric of 1 (error 0).
"""

from __future__ import annotations

import polars as pl

from kscore.config import Task
from kscore.core.signals import numeric_values
from kscore.errors import InputError

_EXAMPLES = 3


def attach_ground_truth(
    frame: pl.DataFrame, task: Task, id_col: str, label: str, datapoints: pl.DataFrame | None
) -> pl.DataFrame:
    """Bring the task's ground truth into `frame` from `datapoints` where needed, checking agreement."""
    if datapoints is None or task.type == "object_detection":
        return frame
    truth = task.ground_truth
    assert truth is not None
    if truth not in datapoints.columns:
        if truth not in frame.columns:
            raise InputError(f"{label}: missing ground truth column {truth!r} (also not in --datapoints)")
        return frame
    lookup = _same_id_type(datapoints.select(id_col, pl.col(truth).alias("__truth")), frame, id_col)
    unknown = frame.join(lookup, on=id_col, how="anti")
    if unknown.height:
        examples = unknown.get_column(id_col).head(_EXAMPLES).to_list()
        raise InputError(f"{label}: {unknown.height} ids are missing from --datapoints (e.g. {examples})")
    joined = frame.join(lookup, on=id_col, how="left", maintain_order="left")
    if truth in frame.columns:
        differs = joined.get_column(truth).cast(pl.String) != joined.get_column("__truth").cast(pl.String)
        differs = differs.fill_null(
            joined.get_column(truth).is_null() != joined.get_column("__truth").is_null()
        )
        n_differ = int(differs.sum())
        if n_differ:
            examples = joined.filter(differs).get_column(id_col).head(_EXAMPLES).to_list()
            raise InputError(
                f"{label}: ground truth {truth!r} disagrees with --datapoints on {n_differ} rows "
                f"(e.g. ids {examples})"
            )
        return joined.drop("__truth")
    return joined.drop(truth, strict=False).rename({"__truth": truth})


def _same_id_type(lookup: pl.DataFrame, frame: pl.DataFrame, id_col: str) -> pl.DataFrame:
    target = frame.schema[id_col]
    if lookup.schema[id_col] == target:
        return lookup
    return lookup.with_columns(pl.col(id_col).cast(target, strict=False))


def task_error(frame: pl.DataFrame, task: Task, label: str) -> pl.Series:
    """The task's error signal for every row of `frame` (Float64 in [0, 1] except regression)."""
    _require(frame, task.result_columns, label)
    if task.type == "object_detection":
        return _detection_error(frame, task, label)
    truth = frame.get_column(task.ground_truth)  # type: ignore[arg-type]
    inference = frame.get_column(task.inference)  # type: ignore[arg-type]
    if task.type == "multiclass_classification":
        if truth.dtype != inference.dtype:
            truth, inference = truth.cast(pl.String), inference.cast(pl.String)
        return (truth != inference).cast(pl.Float64)
    if task.type == "binary_classification":
        truth = binary_truth(truth, task, label)
        inference = numeric_values(inference, label)
        outside = (inference < 0) | (inference > 1)
        _reject(outside, inference.name, label, "scores outside [0, 1]", frame)
        return (truth - inference).abs()
    truth, inference = numeric_values(truth, label), numeric_values(inference, label)
    error = (truth - inference).abs()
    overflow = error.is_infinite().fill_null(False)  # both finite, their difference is not
    _reject(
        overflow, truth.name, label, f"errors |{truth.name} - {inference.name}| beyond the float range", frame
    )
    return error


def binary_truth(truth: pl.Series, task: Task, label: str) -> pl.Series:
    """Binary ground truth as 0.0/1.0: from 0/1, true/false, or labels with `positive_label`."""
    if task.positive_label is not None:
        positive = str(task.positive_label).lower() if truth.dtype == pl.Boolean else str(task.positive_label)
        return (truth.cast(pl.String) == positive).cast(pl.Float64)  # a null label stays null
    if truth.dtype == pl.Boolean:
        return truth.cast(pl.Float64)
    if truth.dtype == pl.String:
        lowered = truth.str.strip_chars().str.to_lowercase()
        if lowered.drop_nulls().is_in(["true", "false"]).all():
            return (lowered == "true").cast(pl.Float64)
        raise InputError(
            f"{label}: column {truth.name!r} holds text labels; set task.positive_label to the positive one"
        )
    values = numeric_values(truth, label)
    bad = ~values.is_in([0.0, 1.0]) & values.is_not_null()
    n_bad = int(bad.sum())
    if n_bad:
        examples = values.filter(bad).head(_EXAMPLES).to_list()
        raise InputError(
            f"{label}: column {truth.name!r} has {n_bad} binary labels that are not 0 or 1 "
            f"(e.g. {examples}); set task.positive_label for other labels"
        )
    return values


def _detection_error(frame: pl.DataFrame, task: Task, label: str) -> pl.Series:
    counts = {}
    for key in ("tp", "fp", "fn"):
        column = numeric_values(frame.get_column(getattr(task, key)), label)
        bad = ((column < 0) | (column != column.floor())).fill_null(False)
        _reject(bad, column.name, label, "counts that are negative or not whole numbers", frame)
        counts[key] = column
    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    if task.signal == "recall":
        numerator, denominator = tp, tp + fn
    elif task.signal == "precision":
        numerator, denominator = tp, tp + fp
    else:
        numerator, denominator = 2 * tp, 2 * tp + fp + fn
    # Nothing to find and nothing found: a perfect score, error 0.
    metric = pl.select(
        pl.when(denominator == 0).then(1.0).otherwise(numerator / denominator).alias("metric")
    ).to_series()
    return (1.0 - metric).alias("task_error")


def _reject(bad: pl.Series, column: str, label: str, what: str, frame: pl.DataFrame) -> None:
    n_bad = int(bad.sum())
    if n_bad:
        examples = frame.filter(bad).get_column(frame.columns[0]).head(_EXAMPLES).to_list()
        raise InputError(f"{label}: column {column!r} has {n_bad} {what} (e.g. ids {examples})")


def _require(frame: pl.DataFrame, columns: tuple[str | None, ...], label: str) -> None:
    for column in columns:
        if column is not None and column not in frame.columns:
            raise InputError(f"{label}: missing task column {column!r}")


def threshold_accuracy(
    frame: pl.DataFrame | pl.LazyFrame,
    task: Task,
    id_col: str,
    label: str,
    datapoints: pl.DataFrame | None = None,
) -> float | None:
    """Binary task: the share of rows whose score, thresholded at `task.threshold`, is right."""
    correct, judged = threshold_counts(frame, task, id_col, label, datapoints)
    return correct / judged if judged else None


def threshold_counts(
    frame: pl.DataFrame | pl.LazyFrame,
    task: Task,
    id_col: str,
    label: str,
    datapoints: pl.DataFrame | None = None,
) -> tuple[int, int]:
    """Binary task: how many rows are right at `task.threshold`, of how many with both a ground
    truth and a score (counts add up over batches of rows)."""
    assert task.ground_truth is not None and task.inference is not None
    present = frame.collect_schema().names()
    selected = frame.select(c for c in (id_col, task.ground_truth, task.inference) if c in present)
    if isinstance(selected, pl.LazyFrame):
        selected = selected.collect()
    selected = attach_ground_truth(selected, task, id_col, label, datapoints)
    truth = binary_truth(selected.get_column(task.ground_truth), task, label)
    predicted = (numeric_values(selected.get_column(task.inference), label) >= task.threshold).cast(
        pl.Float64
    )
    correct = (truth == predicted).drop_nulls()
    return int(correct.sum()), correct.len()


def enrich_datapoints(datapoints: pl.DataFrame, table: pl.DataFrame, id_col: str) -> pl.DataFrame:
    """The datapoints table, its rows and columns, plus the score columns (null where unscored)."""
    if id_col not in datapoints.columns:
        raise InputError(f"--datapoints: missing id column {id_col!r}")
    scores = table.with_columns(pl.col(id_col).cast(datapoints.schema[id_col], strict=False))
    known = scores.join(datapoints.select(id_col), on=id_col, how="anti")
    if known.height:
        examples = known.get_column(id_col).head(_EXAMPLES).to_list()
        raise InputError(f"--datapoints: {known.height} scored ids are missing from it (e.g. {examples})")
    overlap = [c for c in scores.columns if c != id_col and c in datapoints.columns]
    return datapoints.drop(overlap).join(scores, on=id_col, how="left", maintain_order="left")
