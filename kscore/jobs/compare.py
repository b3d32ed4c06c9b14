"""The compare job (`kscore compare`): datapoints that got worse from one model to another in a
difficulty output, and the CI gates on their counts."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import polars as pl

from kscore._version import __version__
from kscore.errors import GateFailed


def compare(
    scores: str | os.PathLike | pl.DataFrame,
    baseline: str,
    candidate: str,
    out: str | os.PathLike | None = None,
    **options: Any,
) -> pl.DataFrame | dict[str, Any]:
    """`kscore compare`: each datapoint's score under `baseline` and `candidate` in a `difficulty`
    output (a path or a frame), its change and status (regression, improvement, unchanged, only in
    one). Without `out`, that table; with `out` (Parquet, CSV or NDJSON), it is written there and the
    summary is returned: what `kscore compare --json` prints, its gates included (`passed` false
    where a `max_*` is exceeded; `failed_gates` turns that into the CLI's exit code 1). `options`
    are `compared`'s: margin, common_failure_threshold, max_regressions, max_common_failures, top,
    storage_options."""
    table, summary = compared(scores, baseline, candidate, out, **options)
    if out is not None:
        return summary
    return table.collect() if isinstance(table, pl.LazyFrame) else table


def compared(
    scores: str | os.PathLike | pl.DataFrame,
    baseline: str,
    candidate: str,
    out: str | os.PathLike | None = None,
    *,
    margin: float = 0.0,
    common_failure_threshold: float = 0.9,
    max_regressions: int | None = None,
    max_common_failures: int | None = None,
    top: int = 20,
    storage_options: Mapping[str, str] | None = None,
) -> tuple[pl.DataFrame | pl.LazyFrame, dict[str, Any]]:
    """The whole compare job: (the compared table, lazy for a Parquet or NDJSON input; the summary),
    writing `out` when given."""
    from kscore.core.comparison import PER_MODEL_NOTE, compare_models, gates
    from kscore.io import check_input_file, read_kscore_metadata, write_table_atomic
    from kscore.jobs.common import checked_table_output
    from kscore.storage import as_path, using
    from kscore.summaries import compare_summary, envelope

    with using(storage_options):
        in_memory = isinstance(scores, pl.DataFrame)
        source = None if in_memory else as_path(scores)
        checked_table_output(out, [source] if source is not None else [])
        if source is not None:
            check_input_file(source)  # missing, empty or of an unknown type: said before anything
        metadata = {} if source is None else read_kscore_metadata(source)
        standard = metadata.get("standard")
        standard = standard if isinstance(standard, dict) else {}
        if not isinstance(standard.get("id_column"), str):
            standard.pop("id_column", None)
        table = (
            scores if in_memory else _needed_columns(source, standard.get("id_column"), baseline, candidate)
        )
        comparison = compare_models(
            table,  # type: ignore[arg-type]
            baseline,
            candidate,
            margin=margin,
            common_failure_threshold=common_failure_threshold,
            id_column=standard.get("id_column"),
            source=str(source) if source is not None else "the table",
        )
        checked = gates(comparison, max_regressions, max_common_failures)
        if out is not None:
            metadata_out = {
                "kscore_version": __version__,
                "command": "compare",
                "input": str(source) if source is not None else "(a table in memory)",
                "baseline": baseline,
                "candidate": candidate,
                "margin": margin,
            }
            write_table_atomic(comparison.table, as_path(out), metadata_out)
    output = str(out) if out is not None else None
    summary = envelope("compare", {"output": output, **compare_summary(comparison, top, checked)})
    if standard.get("scope") == "per_model":
        summary["notes"].append(PER_MODEL_NOTE)
    return comparison.table, summary


def failed_gates(summary: Mapping[str, Any]) -> GateFailed | None:
    """The error the command line exits 1 with when a gate of a compare summary failed, else None."""
    failed = [gate for gate in summary["gates"] if not gate["passed"]]
    if not failed:
        return None
    return GateFailed(
        "; ".join(
            f"gate failed: {g['name']} {g['value']} > max {g['limit']} (over by {g['value'] - g['limit']})"
            for g in failed
        )
    )


def _needed_columns(
    source: Any, id_column: str | None, baseline: str, candidate: str
) -> pl.DataFrame | pl.LazyFrame:
    """The scores file's id and score columns only (its explain columns are never read); the whole
    file where those are not all there, so that the error can list what it holds."""
    from kscore.columns import SCORE, model_score_column
    from kscore.io import read_table, scan_output

    try:
        names = scan_output(source).collect_schema().names()
    except (pl.exceptions.PolarsError, OSError):
        return read_table(source)  # type: ignore[return-value]  # it names what is wrong
    needed = (SCORE, model_score_column(baseline), model_score_column(candidate))
    if not names or not all(n in names for n in needed):
        return read_table(source)  # type: ignore[return-value]
    wanted = {names[0], id_column, SCORE, *(n for n in names if n.startswith(f"{SCORE}_"))}
    # Parquet and NDJSON stay lazy: the comparison streams them (CSV is read, as read_table does)
    return read_table(source, [n for n in names if n in wanted], lazy=True)  # type: ignore[return-value]
