"""The report job (`kscore report`): read kscore's outputs (and --data), check that their ids
belong together, hand the frames to the page (`kscore/html_page.py`) and write it atomically."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kscore.columns import (
    MAP_X,
    MAP_Y,
    N_MODELS,
    SCORE,
    model_score_column,
    top_signal_column,
)
from kscore.errors import InputError, missing_column_message
from kscore.html_page import (
    EMBED_SCORES,
    HISTOGRAM_BINS,
    CompareFacts,
    Facts,
    Histogram,
    MapPoints,
    ReportInput,
    histogram_bounds,
    map_scores,
    named_ids,
    render_page,
    sample_rows,
)
from kscore.io import COMMANDS
from kscore.storage import as_path

KINDS = COMMANDS  # the outputs the page shows: those of every command that writes kscore's metadata
DEFAULT_FILES = ("difficulty_scores.parquet", "embed_scores.parquet")
MAX_POINTS = 1_000_000
PROBE_IDS = 100_000  # ids of one file looked for in another before all of its ids are
DATA_COLUMNS = 8  # --data's columns shown by default: the first this many short ones
SHORT_TEXT = 60  # characters: the longest value of a column shown by default
Progress = Callable[[str, int, int], None]


@dataclass
class Source:
    """An input of the report: what the page is told of it, and its rows, scanned lazily."""

    item: ReportInput
    scan: pl.LazyFrame


@contextmanager
def reading(path: Any) -> Iterator[None]:
    """A failure to read `path` (polars or the file system) is exit 2 naming it."""
    try:
        yield
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"{path}: cannot read: {str(exc).strip()[:200]}") from None


def read_inputs(files: Sequence[str | os.PathLike]) -> dict[str, Source]:
    """The outputs by kind, scanned (their footers or first lines read, not their rows); exit-2
    errors for a file kscore did not write or two of one kind."""
    from kscore.io import read_kscore_metadata, scan_output

    if not files:
        files = [name for name in DEFAULT_FILES if Path(name).exists()]
        if not files:
            raise InputError(
                "no inputs: give the outputs of `kscore difficulty`, `embed-scores`, `compare` or "
                f"`select`, or run where {' or '.join(DEFAULT_FILES)} is"
            )
    found: dict[str, Source] = {}
    for name in files:
        path = as_path(name)
        if isinstance(path, Path) and not path.exists():
            raise InputError(f"{path}: no such file")
        metadata = read_kscore_metadata(path)
        kind = metadata.get("command")
        if kind not in KINDS:
            raise InputError(
                f"{path}: not an output of kscore (it carries no kscore metadata); give the outputs "
                "of `kscore difficulty`, `embed-scores`, `compare` or `select`"
            )
        if kind in found:
            raise InputError(
                f"{path} and {found[kind].item.path} are both outputs of `kscore {kind}`: "
                "give one of each kind"
            )
        with reading(path):
            scan = scan_output(path)
            columns = scan.collect_schema().names()
            rows = int(scan.select(pl.len()).collect().item())
        for column in _needed(kind, metadata):
            if column not in columns:
                message = missing_column_message(str(path), column, columns)
                raise InputError(f"{message}: an output of `kscore {kind}` has it; was the file changed?")
        found[kind] = Source(ReportInput(path, kind, metadata, rows, columns), scan)
    return found


def _needed(kind: str, metadata: Mapping[str, Any]) -> tuple[str, ...]:
    """The columns the page reads of an output of `kscore KIND` (besides the id)."""
    from kscore.columns import REPRESENTATION

    if kind == "difficulty":
        return (SCORE, N_MODELS)
    if kind == "embed-scores":
        return (metadata.get("split_col", "split"), MAP_X, MAP_Y, REPRESENTATION)
    if kind == "compare":
        return ("status", "baseline", "candidate", "delta")
    return ()


def _id_column(sources: Mapping[str, Source], id_column: str | None) -> str:
    if id_column is None:
        metadata = sources["difficulty"].item.metadata if "difficulty" in sources else {}
        standard = metadata.get("standard", {})
        id_column = standard.get("id_column") if isinstance(standard, dict) else None
        id_column = id_column if isinstance(id_column, str) else "id"
    for source in sources.values():
        if id_column not in source.item.columns:
            message = missing_column_message(
                str(source.item.path), id_column, source.item.columns, "id column"
            )
            raise InputError(f"{message}; name it with --id-col")
    return id_column


def _shares_id(scan: pl.LazyFrame, id_column: str, ids: pl.Series, path: Any) -> bool:
    """Whether any of `ids` is an id of `scan` (compared as text where the types differ), in one
    streaming pass that holds only `ids`."""
    column = pl.col(id_column)
    with reading(path):
        if scan.collect_schema()[id_column] != ids.dtype:
            column, ids = column.cast(pl.String), ids.cast(pl.String)
        hit = scan.select(column).filter(column.is_in(ids.implode())).head(1).collect(engine="streaming")
    return hit.height > 0


def _check_overlap(sources: Mapping[str, Source], id_column: str) -> None:
    """Every file is joined to the embed-scores output (or the difficulty output where there is
    none, SPEC section 8): a file none of whose ids are there was computed on another dataset. Its
    first ids are looked for first; all of them only where none of those is there."""
    base_kind = next(k for k in KINDS[1::-1] + KINDS[2:] if k in sources)
    base = sources[base_kind]
    for kind, source in sources.items():
        if kind == base_kind:
            continue
        ids = source.scan.select(id_column)
        with reading(source.item.path):
            probe = ids.head(PROBE_IDS).collect().to_series()
        if _shares_id(base.scan, id_column, probe, base.item.path):
            continue
        if source.item.rows > PROBE_IDS:
            with reading(source.item.path):
                every = ids.collect(engine="streaming").to_series()
            if _shares_id(base.scan, id_column, every, base.item.path):
                continue
        raise InputError(
            f"{source.item.path} shares no id in {id_column!r} with {base.item.path}: were they computed "
            "on the same dataset?"
        )


def _difficulty_facts(
    source: Source, models: list[str], id_column: str, top: int
) -> tuple[dict[str, Any], list[Histogram | None]]:
    """The difficulty summary and the scores' histograms, in streaming queries; the top signals
    (text, which polars' streaming would hold whole) are read for the hardest rows alone."""
    from kscore.summaries import RangeSummary

    scores = [SCORE, *(model_score_column(m) for m in models)]
    explained = [m for m in models if top_signal_column(m) in source.item.columns]
    summary = RangeSummary(models, id_column, top)
    bounds: dict[str, tuple[float, float] | None] = {c: (0.0, 1.0) for c in scores}
    scan = source.scan.select(id_column, *scores, N_MODELS)
    with reading(source.item.path):
        summary.add(scan)
        found = scan.select(*(e for c in scores for e in _histogram_exprs(c, bounds[c]))).collect(
            engine="streaming"
        )
        stats = summary.result(source.scan)
        ids = [h["id"] for h in stats["hardest"]]
        if explained and ids:
            signals = [top_signal_column(m) for m in explained]
            rows = source.scan.select(id_column, *signals).filter(pl.col(id_column).is_in(ids))
            by_id = {row[id_column]: row for row in rows.collect(engine="streaming").iter_rows(named=True)}
            for hardest in stats["hardest"]:
                row = by_id[hardest["id"]]
                hardest["top_signal"] = {m: row[top_signal_column(m)] for m in explained}
    if ids:
        stats["classes"] = _labels_and_predictions(source.item, models, id_column, ids)
    return stats, [_histogram(found, c, bounds[c]) for c in scores]


def _labels_and_predictions(
    item: ReportInput, models: Sequence[str], id_column: str, ids: list[Any]
) -> dict[str, Any]:
    """The label and each model's prediction of the hardest `ids`, read (those rows alone) from the
    results files the difficulty output names in its metadata: the task's ground truth and inference
    columns, else the columns named like a class and a predicted class (`label`, `predicted`).
    A results file that is gone or unreadable is named in `missing`; the page shows the rest."""
    from kscore.config import class_columns
    from kscore.io import file_columns, scan_table

    standard = item.metadata.get("standard") or {}
    task = standard.get("task") if isinstance(standard.get("task"), dict) else {}
    files = item.metadata.get("inputs") or {}
    wanted = [str(i) for i in ids]
    found: dict[str, Any] = {"label": {}, "predicted": {}, "missing": []}
    for model in models:
        path = files.get(model)
        if not isinstance(path, str):
            continue
        try:
            results = as_path(path)
            present = file_columns(results)
            pair = (task.get("ground_truth"), task.get("inference")) if task else class_columns(present)
            if pair is None or any(c not in present for c in (id_column, *pair)):
                continue
            with reading(results):
                rows = (
                    scan_table(results, [id_column, *pair])
                    .filter(pl.col(id_column).cast(pl.String).is_in(wanted))
                    .collect(engine="streaming")
                )
        except (InputError, pl.exceptions.PolarsError, OSError):
            found["missing"].append(path)
            continue
        for key, truth, predicted in rows.select(pl.col(id_column).cast(pl.String), *pair).iter_rows():
            found["label"].setdefault(key, truth)
            found["predicted"].setdefault(model, {})[key] = predicted
    return found


def _embed_facts(source: Source, id_column: str, top: int) -> tuple[dict[str, Any], list[Histogram | None]]:
    """The embed-scores summary and the scores' histograms (over their finite values' range), in
    streaming queries."""
    from kscore.columns import POTENTIAL
    from kscore.summaries import EmbedSummary

    columns = source.item.columns
    split_col = source.item.metadata.get("split_col", "split")
    summary = EmbedSummary(id_column, split_col, top=top, with_difficulty=POTENTIAL in columns)
    scores = [c for c in EMBED_SCORES if c in columns]
    with reading(source.item.path):
        finite = [_finite(c) for c in scores]
        ranges = source.scan.select(
            *(f.min().alias(f"{c}:min") for f, c in zip(finite, scores, strict=True)),
            *(f.max().alias(f"{c}:max") for f, c in zip(finite, scores, strict=True)),
        ).collect(engine="streaming")
        bounds = {c: histogram_bounds(ranges[f"{c}:min"].item(), ranges[f"{c}:max"].item()) for c in scores}
        summary.add(source.scan)
        found = source.scan.select(*(e for c in scores for e in _histogram_exprs(c, bounds[c]))).collect(
            engine="streaming"
        )

        def train_values(score: str) -> np.ndarray:
            train = source.scan.filter(pl.col(summary.scores[0]).is_not_null()).select(score)
            return train.collect().to_series().cast(pl.Float64).fill_null(np.nan).to_numpy()

        stats = summary.result(train_values)
    return stats, [_histogram(found, c, bounds[c]) for c in scores]


def _finite(column: str) -> pl.Expr:
    values = pl.col(column).cast(pl.Float64)
    return values.filter(values.is_finite())


def _histogram_exprs(column: str, bounds: tuple[float, float] | None) -> list[pl.Expr]:
    """Aggregations that count a column's finite values as `np.histogram(values, HISTOGRAM_BINS,
    bounds)` does: how many are at or above each bin's left edge (numpy's bin of a value is the
    last edge at or below it; the last bin holds its right edge too), and how many lie above the
    range."""
    finite = _finite(column)
    exprs = [finite.count().alias(f"{column}:finite")]
    if bounds is not None:
        edges = np.linspace(bounds[0], bounds[1], HISTOGRAM_BINS + 1)
        exprs += [(finite >= float(e)).sum().alias(f"{column}:{i}") for i, e in enumerate(edges)]
        exprs.append((finite > float(edges[-1])).sum().alias(f"{column}:above"))
    return exprs


def _histogram(found: pl.DataFrame, column: str, bounds: tuple[float, float] | None) -> Histogram | None:
    """The histogram `_histogram_exprs` counted (None where the column has no finite value)."""
    if bounds is None or not found.get_column(f"{column}:finite").item():
        return None
    at_or_above = [int(found.get_column(f"{column}:{i}").item()) for i in range(HISTOGRAM_BINS + 1)]
    at_or_above[-1] = int(found.get_column(f"{column}:above").item())  # the last bin holds its right edge
    counts = np.diff(-np.array(at_or_above, dtype=np.int64))
    return Histogram(column, counts, *bounds)


def _compare_facts(source: Source, id_column: str, top: int) -> CompareFacts:
    status = pl.col("status")
    shown = [id_column, "baseline", "candidate", "delta"]
    with reading(source.item.path):
        counts, regressions, improvements = pl.collect_all(
            [
                source.scan.group_by(status)
                .agg(pl.len().alias("count"))
                .sort(["count", "status"], descending=[True, False]),
                source.scan.filter(status == "regression")
                .select(shown)
                .sort(["delta", id_column], descending=[True, False])
                .head(top),
                source.scan.filter(status == "improvement")
                .select(shown)
                .sort(["delta", id_column])
                .head(top),
            ],
            engine="streaming",
        )
    return CompareFacts([list(r) for r in counts.iter_rows()], regressions, improvements)


def _picks(source: Source) -> pl.DataFrame:
    with reading(source.item.path):
        frame = source.scan.collect()  # a batch of picks: small
    return frame.sort("rank") if "rank" in frame.columns else frame


def _map_points(
    sources: Mapping[str, Source],
    id_column: str,
    models: Sequence[str],
    named: Mapping[str, list[Any]],
    scores: list[str],
    data: pl.DataFrame | None,
    max_points: int,
) -> MapPoints:
    """The rows the map shows (at most `max_points`, always those `named`), gathered in one pass
    over embed-scores' columns the map needs, and difficulty's and compare's values for those ids."""
    embed = sources["embed-scores"]
    split_col = embed.item.metadata.get("split_col", "split")
    key = embed.scan.collect_schema()[id_column]
    ids = pl.col(id_column)
    wanted = pl.concat(
        [pl.Series(v, dtype=None).cast(key, strict=False) for v in named.values()]
        or [pl.Series([], dtype=key)]
    )
    with reading(embed.item.path):
        found = (
            embed.scan.select(ids)
            .with_row_index("__row")
            .filter(ids.is_in(wanted.drop_nulls().unique().implode()))
            .collect(engine="streaming")
            .rename({id_column: "__id"})
        )
    named_rows = {
        name: pl.DataFrame({"__id": pl.Series(values).cast(key, strict=False)})
        .join(found, on="__id", how="inner", maintain_order="left")
        .get_column("__row")
        .cast(pl.Int64)
        .to_numpy()
        for name, values in named.items()
    }
    keep = np.concatenate([np.zeros(0, dtype=np.int64), *named_rows.values()])
    rows = sample_rows(embed.item.rows, max_points, keep)
    columns = [
        c for c in dict.fromkeys([id_column, split_col, MAP_X, MAP_Y, *scores]) if c in embed.item.columns
    ]
    sampled = len(rows) < embed.item.rows
    with reading(embed.item.path):
        scan = embed.scan.select(columns)
        if sampled:
            scan = scan.with_row_index("__row").filter(pl.col("__row").is_in(pl.Series(rows).implode()))
            table = scan.collect(engine="streaming").sort("__row").drop("__row")
        else:
            table = scan.collect()
    shown_ids = table.get_column(id_column)
    extra_sources = []
    if "difficulty" in sources:
        difficulty = sources["difficulty"]
        extra = [c for c in scores if c in difficulty.item.columns and c not in table.columns]
        extra_sources.append((difficulty, [ids.cast(key, strict=False), *extra]))
    if "compare" in sources:
        extra_sources.append(
            (sources["compare"], [ids.cast(key, strict=False), pl.col("delta").alias("compare_delta")])
        )
    for source, exprs in extra_sources:
        with reading(source.item.path):
            right = source.scan.select(exprs)
            if sampled:
                right = right.filter(ids.is_in(shown_ids.implode()))
            right = right.collect(engine="streaming")
        table = table.join(right, on=id_column, how="left", maintain_order="left")
    text = None
    if data is not None:
        text = (
            pl.DataFrame({"__id": shown_ids})
            .join(data, on="__id", how="left", maintain_order="left")
            .drop("__id")
        )
    return MapPoints(table, rows, embed.item.rows, scores, named_rows, text, list(models))


def _as_text(dtype: pl.DataType) -> bool:
    """Whether the page can show a --data column of `dtype` as text (lists, structs and bytes: no)."""
    return not (dtype.is_nested() or dtype in (pl.Binary, pl.Object, pl.Null))


def _kind_of(dtype: pl.DataType) -> str:
    if isinstance(dtype, pl.List | pl.Array):
        return "lists"
    if isinstance(dtype, pl.Struct):
        return "structs"
    return "bytes" if dtype == pl.Binary else str(dtype)


def _data_columns(
    data: str | os.PathLike,
    embed: Source,
    id_column: str,
    columns: Sequence[str] | None,
    image_col: str | None,
) -> pl.DataFrame:
    """The user's own columns (--data) as text, keyed by `__id`: checked (the id column, the named
    columns, unique ids of the scores' type, at least one of the scores' ids)."""
    from kscore.io import read_table

    path = as_path(data)
    label = f"--data {path}"
    frame = read_table(path)
    if id_column not in frame.columns:
        raise InputError(missing_column_message(label, id_column, frame.columns, "id column"))
    wanted = list(columns) if columns is not None else None
    for name in [*(wanted or []), *([image_col] if image_col else [])]:
        if name not in frame.columns:
            raise InputError(missing_column_message(label, name, frame.columns))
        if not _as_text(frame.schema[name]):
            option = "--image-col" if name == image_col else "--columns"
            raise InputError(
                f"{label}: column {name!r} holds {_kind_of(frame.schema[name])}; {option} takes columns "
                "of text or numbers"
            )
    if frame.get_column(id_column).is_duplicated().any():
        raise InputError(f"{label}: column {id_column!r} has duplicated ids")
    if wanted is None:
        wanted = []
        for name in frame.columns:
            if (
                name in (id_column, image_col)
                or len(wanted) == DATA_COLUMNS
                or not _as_text(frame.schema[name])
            ):
                continue
            longest = frame.get_column(name).cast(pl.String).str.len_chars().max()
            if longest is None or longest <= SHORT_TEXT:  # type: ignore[operator]
                wanted.append(name)
    shown = [c for c in [*wanted, *([image_col] if image_col else [])] if c is not None]
    key = frame.get_column(id_column)
    dtype = embed.scan.collect_schema()[id_column]
    if key.dtype != dtype:
        try:
            key = key.cast(dtype, strict=True)
        except pl.exceptions.PolarsError:
            raise InputError(
                f"{label}: its ids ({key.dtype}) do not match the scores' ids ({dtype})"
            ) from None
    if not _shares_id(embed.scan, id_column, key, embed.item.path):
        raise InputError(f"{label}: shares no id with the scores: is it the same dataset?")
    return frame.select(*(pl.col(c).cast(pl.String) for c in shown)).with_columns(key.alias("__id"))


def check_report_output(out: str | os.PathLike) -> Path:
    """The report's path: a local .html (or .htm) file; anything else is exit 2."""
    from kscore.storage import is_remote

    if is_remote(os.fspath(out)):
        raise InputError(
            f"{os.fspath(out)}: the report is written to a local file (it is opened in a browser): give "
            "-o a local name ending in .html, then copy it where you like"
        )
    path = Path(out)
    if path.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"{path}: the report is one HTML file: give -o a name ending in .html")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give -o a file name ending in .html")
    return path


def _facts(
    sources: Mapping[str, Source],
    id_column: str | None,
    data: str | os.PathLike | None,
    columns: Sequence[str] | None,
    image_col: str | None,
    color: str | None,
    top: int,
    max_points: int,
) -> Facts:
    """Everything the page shows, read from the inputs without holding any of them whole."""
    id_column = _id_column(sources, id_column)
    _check_overlap(sources, id_column)
    inputs = {kind: source.item for kind, source in sources.items()}
    models: list[str] = []
    if "difficulty" in sources:
        item = inputs["difficulty"]
        models = [m for m in item.metadata.get("models", []) if model_score_column(m) in item.columns]
    facts = Facts(inputs, models, id_column)
    scores: list[str] = []
    if "embed-scores" in sources:
        joined = [
            *inputs["embed-scores"].columns,
            *(inputs["difficulty"].columns if "difficulty" in inputs else []),
        ]
        scores = map_scores([*joined, *(["compare_delta"] if "compare" in sources else [])], models, color)
    if "difficulty" in sources and models:
        facts.difficulty, facts.histograms["difficulty"] = _difficulty_facts(
            sources["difficulty"], models, id_column, top
        )
    if "embed-scores" in sources:
        facts.embed, facts.histograms["embed-scores"] = _embed_facts(sources["embed-scores"], id_column, top)
    if "compare" in sources:
        facts.compare = _compare_facts(sources["compare"], id_column, top)
    if "select" in sources:
        facts.picks = _picks(sources["select"])
    if "embed-scores" in sources:
        own = _data_columns(data, sources["embed-scores"], id_column, columns, image_col) if data else None
        named = named_ids(facts, id_column)
        facts.points = _map_points(sources, id_column, models, named, scores, own, max_points)
    return facts


def report(
    files: Sequence[str | os.PathLike] = (),
    out: str | os.PathLike = "report.html",
    *,
    data: str | os.PathLike | None = None,
    columns: Sequence[str] | None = None,
    image_col: str | None = None,
    color: str | None = None,
    top: int = 20,
    max_points: int = MAX_POINTS,
    title: str | None = None,
    id_column: str | None = None,
    progress: Progress | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`kscore report`: one offline HTML page of kscore outputs `files` (default: the difficulty
    and embed-scores outputs here; local or in object storage, with `storage_options`), written to
    `out` (a local file) atomically; returns what was written, as `kscore report --json` prints it."""
    from kscore.io import check_output, write_atomic
    from kscore.jobs.common import stage
    from kscore.storage import using
    from kscore.summaries import exact_values

    out_path = check_report_output(out)
    if max_points < 1:
        raise InputError(f"--max-points must be at least 1, not {max_points}")
    if top < 0:
        raise InputError(f"--top must be 0 or more, not {top}")
    with stage(progress, "read"), using(storage_options):  # the inputs may be in object storage
        sources = read_inputs(files)
    local = [
        p
        for p in [*(s.item.path for s in sources.values()), *([as_path(data)] if data else [])]
        if isinstance(p, Path)
    ]
    check_output(out_path, local)
    if data is not None and "embed-scores" not in sources:
        raise InputError("--data needs an embed-scores output: its columns are shown on the map")
    with stage(progress, "build page"), using(storage_options):
        with exact_values():  # the page rounds each column to the digits that keep its rows apart
            facts = _facts(sources, id_column, data, columns, image_col, color, top, max_points)
        page, summary = render_page(facts, facts.id_column, image_col, top, title)
    encoded = page.encode("utf-8")
    with stage(progress, "write"):
        write_atomic(out_path, lambda target: Path(target).write_bytes(encoded))
    from kscore.summaries import envelope

    return envelope("report", {"output": str(out_path), "bytes": len(encoded), **summary})


write_report = report  # 0.6's name
