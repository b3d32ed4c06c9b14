"""The compare job (`kscore compare`): datapoints that got worse from one model to another in a
difficulty output, and the CI gates on their counts."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from kscore._version import __version__
from kscore.errors import GateFailed, InputError


def compare(
    scores: str | os.PathLike | pl.DataFrame | Sequence[str | os.PathLike],
    baseline: str | None = None,
    candidate: str | None = None,
    out: str | os.PathLike | None = None,
    **options: Any,
) -> pl.DataFrame | dict[str, Any]:
    """`kscore compare`: each datapoint's score under `baseline` and `candidate` in a `difficulty`
    output (a path or a frame), its change and status (regression, improvement, unchanged, only in
    one). Given two outputs `[OLD, NEW]` on one scale (NEW scored with `scale_from=OLD`, or both
    with one scale), each model in both is compared between them (or OLD's `baseline` with NEW's
    `candidate`), joined on the id. Without `out`, that table; with `out` (Parquet, CSV or NDJSON),
    it is written there and the summary is returned: what `kscore compare --json` prints, its gates
    included (`passed` false where a `max_*` is exceeded; `failed_gates` turns that into the CLI's
    exit code 1). `options` are `compared`'s: margin, common_failure_threshold, max_regressions,
    max_common_failures, top, storage_options."""
    table, summary = compared(scores, baseline, candidate, out, **options)
    if out is not None:
        return summary
    return table.collect() if isinstance(table, pl.LazyFrame) else table


def compared(
    scores: str | os.PathLike | pl.DataFrame | Sequence[str | os.PathLike],
    baseline: str | None = None,
    candidate: str | None = None,
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
    from kscore.core.comparison import compare_models, gates
    from kscore.io import check_input_file, read_kscore_metadata
    from kscore.jobs.common import checked_table_output
    from kscore.storage import as_path, using

    files = [scores] if isinstance(scores, str | os.PathLike | pl.DataFrame) else list(scores)
    if len(files) == 2:
        return _compared_files(
            files, baseline, candidate, out, margin=margin, common_failure_threshold=common_failure_threshold,
            max_regressions=max_regressions, max_common_failures=max_common_failures, top=top,
            storage_options=storage_options,
        )  # fmt: skip
    if len(files) != 1:
        raise InputError(f"compare takes one difficulty output, or two (OLD NEW), not {len(files)}")
    scores = files[0]
    if baseline is None or candidate is None:
        raise InputError("name the two models to compare in one file: --baseline A --candidate B")
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
        given = {"input": str(source) if source is not None else "(a table in memory)"}
        summary = _written(comparison, out, given, top, checked, standard)
    return comparison.table, summary


def _compared_files(
    files: list[Any],
    baseline: str | None,
    candidate: str | None,
    out: str | os.PathLike | None,
    *,
    margin: float,
    common_failure_threshold: float,
    max_regressions: int | None,
    max_common_failures: int | None,
    top: int,
    storage_options: Mapping[str, str] | None,
) -> tuple[pl.DataFrame | pl.LazyFrame, dict[str, Any]]:
    """`compare OLD NEW`: two difficulty outputs on one scale, model by model."""
    from kscore.core.comparison import compare_across, gates, models_in
    from kscore.io import check_input_file, read_kscore_metadata, scan_output
    from kscore.jobs.common import checked_table_output
    from kscore.storage import as_path, using

    if any(isinstance(f, pl.DataFrame | pl.LazyFrame) for f in files):
        raise InputError(
            "compare OLD NEW takes two difficulty output files (their metadata holds the scales)"
        )
    if (baseline is None) != (candidate is None):
        raise InputError(
            "with two files, name both models (--baseline from OLD, --candidate from NEW) or neither"
        )
    with using(storage_options):
        sources = [as_path(f) for f in files]
        if str(sources[0]) == str(sources[1]):
            raise InputError(f"OLD and NEW are both {sources[0]}: give two difficulty outputs")
        checked_table_output(out, sources)
        for source in sources:
            check_input_file(source)  # type: ignore[arg-type]
        metadata = [read_kscore_metadata(source) for source in sources]
        tables = [scan_output(source) for source in sources]
        if baseline is not None and candidate is not None:
            pairs = [(baseline, candidate)]
        else:
            held = [models_in(t) for t in tables]
            pairs = [(name, name) for name in held[0] if name in held[1]]
            if not pairs:
                raise InputError(
                    f"no model is in both files ({sources[0]} holds {', '.join(held[0]) or 'none'}; "
                    f"{sources[1]} holds {', '.join(held[1]) or 'none'}): name them with --baseline "
                    "(OLD's) and --candidate (NEW's)"
                )
        standard = _on_one_scale(metadata, [str(s) for s in sources], pairs)
        comparison = compare_across(
            tables[0], tables[1], pairs, id_column=standard["id_column"], margin=margin,
            common_failure_threshold=common_failure_threshold,
            sources=(sources[0].name, sources[1].name),
        )  # fmt: skip
        checked = gates(comparison, max_regressions, max_common_failures)
        given = {"inputs": {"old": str(sources[0]), "new": str(sources[1])}}
        summary = _written(comparison, out, given, top, checked, standard)
    summary["old"], summary["new"] = str(sources[0]), str(sources[1])
    return comparison.table, summary


def _written(
    comparison: Any,
    out: str | os.PathLike | None,
    inputs: dict[str, Any],
    top: int,
    checked: list[Any],
    standard: Mapping[str, Any],
) -> dict[str, Any]:
    """Write the comparison's table to `out` (when given) with its metadata (`inputs`: what it read),
    and return the summary."""
    from kscore.core.comparison import PER_MODEL_NOTE
    from kscore.io import write_table_atomic
    from kscore.storage import as_path
    from kscore.summaries import compare_summary, envelope

    if out is not None:
        metadata = {
            "kscore_version": __version__,
            "command": "compare",
            **inputs,
            "baseline": comparison.baseline,
            "candidate": comparison.candidate,
            "margin": comparison.margin,
        }
        write_table_atomic(comparison.table, as_path(out), metadata)
    output = str(out) if out is not None else None
    summary = envelope("compare", {"output": output, **compare_summary(comparison, top, checked)})
    if standard.get("scope") == "per_model":
        summary["notes"].append(PER_MODEL_NOTE)
    return summary


def _on_one_scale(
    metadata: list[dict[str, Any]], shown: list[str], pairs: list[tuple[str, str]]
) -> dict[str, Any]:
    """The files' standard, where both are difficulty outputs of one standard on one scale (their
    recorded scales agree for the compared models); exit 2 naming what differs."""
    from kscore.core.scale import standard_difference

    for meta, path in zip(metadata, shown, strict=True):
        if meta.get("command") != "difficulty":
            command = meta.get("command")
            what = f"an output of kscore {command}" if command else "has no kscore metadata"
            raise InputError(
                f"{path}: {what}; compare OLD NEW takes two difficulty outputs with their metadata "
                "(a stream or a CSV without its .kscore.json sidecar has none)"
            )
        if "scale" not in meta or not isinstance(meta.get("standard"), dict):
            raise InputError(
                f"{path}: records no scale (written by kscore {meta.get('kscore_version', '?')}); "
                "score it again"
            )
    old, new = metadata
    difference = standard_difference(old["standard"], new["standard"])
    ids = [m["standard"].get("id_column") for m in metadata]
    if difference is None and ids[0] != ids[1]:
        difference = f"id_column is {ids[0]!r} there, {ids[1]!r} here"
    if difference is not None:
        raise InputError(
            f"{shown[0]} and {shown[1]} were scored with different standards ({shown[0]}'s {difference})"
        )
    scales = [m["scale"] for m in metadata]
    if "joint" in scales[0] or "joint" in scales[1]:
        same = scales[0].get("joint") == scales[1].get("joint")
    else:
        models = [s.get("models") or {} for s in scales]
        same = all(a in models[0] and models[0].get(a) == models[1].get(b) for a, b in pairs)
    if not same:
        raise InputError(
            f"{shown[0]} and {shown[1]} are not on one scale (each run normalizes on its own): score "
            f"the new one with --scale-from {shown[0]}"
        )
    return new["standard"]


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
