"""The report's page: one self-contained HTML file rendered from frames (it reads nothing).

The skeleton, the header and the map's controls are templates in kscore/_web (report.html,
map.html; stdlib string.Template), the script and style are package data, and the loop-built parts
(tables, histograms, the map's payload) are made here. Every string from the data is escaped on its
way in; the page's scripts are allowed by their hashes alone, and its Content-Security-Policy lets no
request leave it.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import html
import json
import os
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import resources
from typing import Any

import numpy as np
import polars as pl

from kscore._version import __version__
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
from kscore.errors import InputError, did_you_mean, missing_column_message

# A map column is quantised to 16 bits over its range; this code marks a missing value.
MISSING = 65535


LEVELS = 65534


EMBED_SCORES = (REPRESENTATION, POTENTIAL, LOCAL)


DEFAULT_COLUMNS = 8


SHORT_TEXT = 60  # characters: the longest value of a column --columns picks by default


MAX_PICKS_SHOWN = 1000


HISTOGRAM_BINS = 20


# While the view moves, a map above this many points draws every k-th point (about this many):
# a million points take about half a second a frame in software WebGL, 100,000 about 0.1 s.
DRAFT_POINTS = 100_000


@dataclass
class ReportInput:
    """One kscore output given to the report: its path, kind (the command that wrote it), metadata."""

    path: Any  # a Path, or an object in object storage (kscore.storage.ObjectPath)
    kind: str
    metadata: dict[str, Any]
    frame: pl.DataFrame


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    """A number cell's text (rounded like the terminal tables) and its exact value for sorting."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return '<td class="num" data-value="">-</td>'
    if isinstance(value, (bool, np.bool_)):
        return f'<td data-value="{int(value)}">{value}</td>'
    if isinstance(value, (int, np.integer)):
        return f'<td class="num" data-value="{int(value)}">{int(value)}</td>'
    exact = repr(float(value))
    return f'<td class="num" data-value="{exact}">{float(value):.{digits}f}</td>'


def _cell(value: Any) -> str:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return _num(value)
    return f"<td>{_esc(value)}</td>"


def _table(table: Table, points: Sequence[int | None] | None = None, *, caption: bool = True) -> str:
    """A sortable HTML table; a row naming a point on the map carries its index (data-point).
    `caption=False` where a section's heading already names it."""
    head = "".join(f'<th scope="col">{_esc(h)}</th>' for h in table.headers)
    body = []
    for row, point in zip(table.rows, points or [None] * len(table.rows), strict=True):
        attribute = f' data-point="{point}" tabindex="0"' if point is not None and point >= 0 else ""
        body.append(f"<tr{attribute}>{''.join(_cell(v) for v in row)}</tr>")
    return (
        f'<table class="sortable" id="table-{_esc(table.key)}">'
        + (f"<caption>{_esc(table.heading)}</caption>" if caption else "")
        + f"<thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _histogram(title: str, values: np.ndarray, bounds: tuple[float, float] | None = None) -> str:
    """Inline SVG bars; hovering a bar shows its range and count (an SVG title: no script needed)."""
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return ""
    low, high = bounds if bounds is not None else (float(values.min()), float(values.max()))
    if high <= low:
        high = low + 1.0
    counts, edges = np.histogram(values, bins=HISTOGRAM_BINS, range=(low, high))
    width, height, gap = 300, 90, 1
    bar = width / HISTOGRAM_BINS
    peak = max(int(counts.max()), 1)
    bars = []
    for i, count in enumerate(counts):
        h = 0 if count == 0 else max(1.0, height * count / peak)
        bars.append(
            f'<rect x="{i * bar:.1f}" y="{height - h:.1f}" width="{bar - gap:.1f}" height="{h:.1f}" '
            f'data-count="{int(count)}"><title>{edges[i]:.4g} to {edges[i + 1]:.4g}: '
            f"{int(count)} datapoints</title></rect>"
        )
    return (
        f'<figure class="histogram"><figcaption>{_esc(title)}</figcaption>'
        f'<svg viewBox="0 0 {width} {height + 14}" width="{width}" height="{height + 14}" role="img" '
        f'aria-label="{_esc(title)}">{"".join(bars)}'
        f'<text x="0" y="{height + 12}">{low:.4g}</text>'
        f'<text x="{width}" y="{height + 12}" text-anchor="end">{high:.4g}</text></svg></figure>'
    )


def _section(anchor: str, heading: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_esc(heading)}</h2>{body}</section>'


@dataclass
class PagePoints:
    """The points the map shows: their rows in the embed-scores table, and the page's payload."""

    rows: np.ndarray  # row numbers into the joined table, in the table's order
    position: np.ndarray  # each table row's index on the map (-1: not shown)
    header: dict[str, Any]
    payload: str  # base64 of the gzip of the buffers the header describes


def sample_rows(total: int, max_points: int, keep: np.ndarray, seed: int = 0) -> np.ndarray:
    """Row numbers of the map: all of them up to `max_points`, else a seeded uniform sample that
    always holds the `keep` rows (those named in a table or picked), in row order."""
    if total <= max_points:
        return np.arange(total, dtype=np.int64)
    keep = np.unique(keep)
    wanted = max(max_points - len(keep), 0)
    pool = np.setdiff1d(np.arange(total, dtype=np.int64), keep, assume_unique=True)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(pool, size=min(wanted, len(pool)), replace=False) if wanted else pool[:0]
    return np.sort(np.concatenate([keep, chosen]))


def quantise(values: np.ndarray) -> tuple[np.ndarray, float | None, float | None]:
    """16-bit codes over the column's finite range (MISSING where no value), and that range."""
    finite = np.isfinite(values)
    codes = np.full(len(values), MISSING, dtype=np.uint16)
    if not finite.any():
        return codes, None, None
    low, high = float(values[finite].min()), float(values[finite].max())
    span = high - low
    if span > 0:
        codes[finite] = np.rint((values[finite] - low) / span * LEVELS).astype(np.uint16)
    else:
        codes[finite] = 0
    return codes, low, high


def _map_data(
    table: pl.DataFrame,
    id_column: str,
    train: np.ndarray,
    score_columns: Sequence[str],
    text: pl.DataFrame | None,
    keep: np.ndarray,
    max_points: int,
    highlights: Mapping[str, np.ndarray],
) -> PagePoints:
    rows = sample_rows(table.height, max_points, keep)
    shown = table[rows] if len(rows) != table.height else table
    buffers: list[tuple[dict[str, Any], bytes]] = [
        ({"name": axis, "type": "f32"}, shown.get_column(axis).cast(pl.Float32).to_numpy().tobytes())
        for axis in (MAP_X, MAP_Y)
    ]
    buffers.append(({"name": "train", "type": "u8"}, train[rows].astype(np.uint8).tobytes()))
    for column in score_columns:
        codes, low, high = quantise(shown.get_column(column).cast(pl.Float64).fill_null(np.nan).to_numpy())
        buffers.append(({"name": column, "type": "u16", "min": low, "max": high}, codes.tobytes()))
    ids = shown.get_column(id_column)
    if ids.dtype.is_integer() and (ids.len() == 0 or (ids.min() >= -(2**31) and ids.max() < 2**31)):  # type: ignore[operator]
        buffers.append(({"name": "id", "type": "i32"}, ids.cast(pl.Int32).to_numpy().tobytes()))
    else:
        buffers.append(({"name": "id", "type": "json"}, _json_bytes(ids.cast(pl.String).to_list())))
    if text is not None:
        for column in text.columns:
            values = text.get_column(column)
            values = values[rows] if len(rows) != table.height else values
            buffers.append(({"name": column, "type": "json", "text": True}, _json_bytes(values.to_list())))

    offset = 0
    blob = bytearray()
    specs = []
    for spec, data in buffers:
        pad = (-offset) % 8  # every typed array starts on an aligned byte
        blob.extend(b"\0" * pad)
        offset += pad
        specs.append({**spec, "offset": offset, "bytes": len(data)})
        blob.extend(data)
        offset += len(data)
    position = np.full(table.height, -1, dtype=np.int64)
    position[rows] = np.arange(len(rows))
    header = {
        "points": len(rows),
        "total": table.height,
        "buffers": specs,
        "scores": list(score_columns),
        "text": list(text.columns) if text is not None else [],
        "highlights": {name: [int(p) for p in position[r] if p >= 0] for name, r in highlights.items()},
    }
    payload = base64.b64encode(gzip.compress(bytes(blob), compresslevel=1, mtime=0)).decode("ascii")
    return PagePoints(rows=rows, position=position, header=header, payload=payload)


def _json_bytes(values: list[Any]) -> bytes:
    return json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' can end it or open a tag."""
    text = json.dumps(value, ensure_ascii=True, sort_keys=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _asset(name: str) -> str:
    return resources.files("kscore").joinpath("_web", name).read_text(encoding="utf-8")


def _csp(scripts: Sequence[str], image_sources: Sequence[str]) -> str:
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode("utf-8")).digest()).decode() + "'"
        for s in scripts
    )
    images = " ".join(["data:", "blob:", *image_sources])
    return (
        f"default-src 'none'; script-src {hashes} 'unsafe-eval'; style-src 'unsafe-inline'; "
        f"img-src {images}; worker-src blob:; connect-src 'none'; font-src 'none'; "
        "base-uri 'none'; form-action 'none'; object-src 'none'; frame-src 'none'"
    )


def _image_sources(values: pl.Series | None) -> list[str]:
    """What img-src must allow for --image-col: the files beside the report ('self' does not cover
    file:// in every browser) and the origins of any http(s) URLs the column names."""
    if values is None:
        return []
    sources = {"file:"}
    urls = values.drop_nulls().str.extract(r"^(https?://[^/?#]+)", 1).drop_nulls().unique().sort()
    sources.update(urls.to_list())
    return sorted(sources)


def _generated_at() -> str | None:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return None
    try:
        return datetime.fromtimestamp(int(epoch), tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        raise InputError(f"SOURCE_DATE_EPOCH must be a whole number of seconds, not {epoch!r}") from None


@dataclass
class Table:
    """A table of the page; `key` names it (table-KEY) and the highlight it offers on the map."""

    key: str
    heading: str
    headers: list[str]
    rows: list[list[Any]]


@dataclass
class Parts:
    """What the inputs contribute: summary HTML, tables, and the ids each table or pick names."""

    summary: list[str]
    tables: list[Table]
    named: dict[str, list[Any]]


def _difficulty_parts(item: ReportInput, models: list[str], id_column: str, top: int, parts: Parts) -> None:
    from kscore.summaries import difficulty_summary

    stats = difficulty_summary(item.frame, models, id_column, top=top)
    rows = [[m["name"], m["rows_scored"], m["mean"], m["median"], m["p90"]] for m in stats["models"]]
    parts.summary.append(
        _table(
            Table("models", f"Difficulty by model ({stats['n_datapoints']} datapoints)",
                  ["model", "rows scored", "mean", "median", "p90"], rows),
        )
    )  # fmt: skip
    columns = [SCORE, *(model_score_column(m) for m in models)]
    plots = [_histogram(c, _floats(item.frame, c), (0.0, 1.0)) for c in columns]
    parts.summary.append(f'<div class="histograms">{"".join(plots)}</div>')
    hardest = stats["hardest"]
    explained = [m for m in models if hardest and m in hardest[0].get("top_signal", {})]
    headers = ["id", SCORE, N_MODELS, *models, *(top_signal_column(m) for m in explained)]
    rows = [
        [h["id"], h[SCORE], h[N_MODELS], *(h["scores"][m] for m in models),
         *(h["top_signal"][m] for m in explained)]
        for h in hardest
    ]  # fmt: skip
    parts.named["hardest"] = [h["id"] for h in hardest]
    if top:
        parts.tables.append(Table("hardest", f"Hardest {len(rows)} datapoints", headers, rows))


def _embed_parts(item: ReportInput, id_column: str, top: int, parts: Parts) -> None:
    from kscore.summaries import embed_summary

    split_col = item.metadata.get("split_col", "split")
    with_difficulty = POTENTIAL in item.frame.columns
    stats = embed_summary(item.frame, id_column, split_col, top=top, with_difficulty=with_difficulty)
    rows = [[k, v] for k, v in stats["rows_per_split"].items()]
    parts.summary.append(_table(Table("splits", "Rows per split", ["split", "rows"], rows)))
    quantiles = ["p0", "p10", "p50", "p90", "p100"]
    rows = [[score, *(q[k] for k in quantiles)] for score, q in stats["quantiles"].items()]
    caption = f"Scores of the {stats['n_train']} train rows"
    parts.summary.append(
        _table(Table("train-scores", caption, ["score", "min", "p10", "median", "p90", "max"], rows))
    )
    plots = [_histogram(c, _floats(item.frame, c)) for c in EMBED_SCORES if c in item.frame.columns]
    parts.summary.append(f'<div class="histograms">{"".join(plots)}</div>')
    shown = [c for c in ("split", *EMBED_SCORES) if c in item.frame.columns]
    for key, heading in (
        ("least_represented", "Least represented train points"),
        ("highest_potential", "Highest potential difficulty"),
    ):
        if key in stats:
            parts.named[key] = [r["id"] for r in stats[key]]
            if top:
                rows = [[r["id"], *(r.get(c) for c in shown)] for r in stats[key]]
                parts.tables.append(Table(key, f"{heading} ({len(rows)})", ["id", *shown], rows))


def _compare_parts(item: ReportInput, id_column: str, top: int, parts: Parts) -> None:
    frame = item.frame
    baseline, candidate = item.metadata.get("baseline"), item.metadata.get("candidate")
    rows = [list(r) for r in frame.get_column("status").value_counts(sort=True).iter_rows()]
    caption = f"{baseline} -> {candidate} (margin {item.metadata.get('margin')})"
    parts.summary.append(_table(Table("compare-counts", caption, ["status", "datapoints"], rows)))
    regressions = frame.filter(pl.col("status") == "regression").sort(
        ["delta", id_column], descending=[True, False]
    )
    improvements = frame.filter(pl.col("status") == "improvement").sort(["delta", id_column])
    headers = ["id", f"baseline ({baseline})", f"candidate ({candidate})", "delta"]
    for key, heading, part in (
        ("regressions", "Largest regressions", regressions.head(top)),
        ("improvements", "Largest improvements", improvements.head(top)),
    ):
        parts.named[key] = part.get_column(id_column).to_list()
        if top:
            rows = [list(r) for r in part.select(id_column, "baseline", "candidate", "delta").iter_rows()]
            parts.tables.append(
                Table(key, f"{heading} ({len(rows)}): {baseline} -> {candidate}", headers, rows)
            )


def _select_parts(item: ReportInput, id_column: str, parts: Parts) -> None:
    frame = item.frame.sort("rank") if "rank" in item.frame.columns else item.frame
    parts.named["picks"] = frame.get_column(id_column).to_list()
    headers = [c for c in frame.columns if c != "strategy"]
    rows = [list(r) for r in frame.head(MAX_PICKS_SHOWN).select(headers).iter_rows()]
    parameters = item.metadata.get("parameters", {})
    more = f"; the first {MAX_PICKS_SHOWN}" if frame.height > MAX_PICKS_SHOWN else ""
    heading = (
        f"{frame.height} picks ({parameters.get('strategy', '?')}, by {parameters.get('by', '?')}{more})"
    )
    parts.tables.append(Table("picks", heading, headers, rows))


def _points(inputs: Mapping[str, ReportInput], id_column: str) -> pl.DataFrame:
    """The map's rows: embed-scores' table with difficulty's per-model scores and compare's delta."""
    table = inputs["embed-scores"].frame
    key = table.schema[id_column]
    if "difficulty" in inputs:
        frame = inputs["difficulty"].frame
        extra = [c for c in frame.columns if c != id_column and c not in table.columns]
        right = frame.select(pl.col(id_column).cast(key, strict=False), *extra)
        table = table.join(right, on=id_column, how="left", maintain_order="left")
    if "compare" in inputs:
        right = inputs["compare"].frame.select(
            pl.col(id_column).cast(key, strict=False), pl.col("delta").alias("compare_delta")
        )
        table = table.join(right, on=id_column, how="left", maintain_order="left")
    return table


def _map_section(
    inputs: Mapping[str, ReportInput],
    id_column: str,
    models: Sequence[str],
    named: Mapping[str, list[Any]],
    data: tuple[pl.DataFrame, str] | None,
    columns: Sequence[str] | None,
    image_col: str | None,
    color: str | None,
    max_points: int,
) -> tuple[str, PagePoints | None, dict[Any, int], pl.DataFrame | None]:
    """The map's HTML and data, the map index of every named id, and --data's columns."""
    if "embed-scores" not in inputs:
        if data is not None:
            raise InputError("--data needs an embed-scores output: its columns are shown on the map")
        return "", None, {}, None
    embed = inputs["embed-scores"]
    table = _points(inputs, id_column)
    ids = table.get_column(id_column)
    text = _data_columns(data, id_column, ids, columns, image_col) if data is not None else None
    split_col = embed.metadata.get("split_col", "split")
    train_values = embed.metadata.get("train_values", ["train"])
    train = table.get_column(split_col).cast(pl.String).is_in(train_values).fill_null(False).to_numpy()
    candidates = [
        SCORE,
        *(model_score_column(m) for m in models),
        *EMBED_SCORES,
        "compare_delta",
    ]
    scores = [c for c in candidates if c in table.columns]
    if color is not None and color not in scores:
        raise InputError(
            f"--color: no score {color!r} on the map{did_you_mean(color, scores)} "
            f"(scores: {', '.join(scores)})"
        )
    # The first colour: --color, else the score of the train points (what to label next).
    first = color or next((c for c in (POTENTIAL, REPRESENTATION) if c in scores), None)
    if first is not None:
        scores = [first, *(c for c in scores if c != first)]
    row_of = pl.DataFrame({"__id": ids, "__row": np.arange(table.height, dtype=np.int64)})
    named_rows = {
        key: pl.DataFrame({"__id": pl.Series(values).cast(ids.dtype, strict=False)})
        .join(row_of, on="__id", how="inner", maintain_order="left")
        .get_column("__row")
        .to_numpy()
        for key, values in named.items()
    }
    keep = np.concatenate([np.zeros(0, dtype=np.int64), *named_rows.values()])
    map_data = _map_data(table, id_column, train, scores, text, keep, max_points, named_rows)
    index_of = {ids[int(r)]: int(map_data.position[r]) for rows in named_rows.values() for r in rows}
    map_data.header.update(
        {"color": scores[0], "image": image_col, "id_column": id_column, "draft_points": DRAFT_POINTS}
    )
    shown, total = map_data.header["points"], map_data.header["total"]
    note = (
        f"Showing {shown:,} of {total:,} points: a seeded uniform sample that keeps every point named in a "
        "table or picked (--max-points)."
        if shown < total
        else f"Showing all {total:,} points."
    )
    options = "".join(f'<option value="{_esc(c)}">{_esc(c)}</option>' for c in scores)
    highlights = "".join(
        f'<option value="{_esc(k)}">{_esc(k.replace("_", " "))} ({len(v)})</option>'
        for k, v in map_data.header["highlights"].items()
    )
    body = _template("map.html").substitute(note=_esc(note), options=options, highlights=highlights)
    return _section("map", "Map", body), map_data, index_of, text


def _header(inputs: Mapping[str, ReportInput], models: Sequence[str]) -> dict[str, str]:
    """The header's values: the models and the time in its meta line, the inputs' rows, the standard."""
    rows = "".join(
        f"<tr><td>{_esc(i.path.name)}</td><td><code>kscore {_esc(i.kind)}</code></td>"
        f'<td class="num">{i.frame.height}</td><td>{_esc(i.metadata.get("kscore_version", "?"))}</td></tr>'
        for i in inputs.values()
    )
    standard = inputs["difficulty"].metadata.get("standard") if "difficulty" in inputs else None
    generated = _generated_at()
    meta = (f" · models: {_esc(', '.join(models))}" if models else "") + (
        f" · generated {_esc(generated)}" if generated else ""
    )
    text = _esc(json.dumps(standard, indent=2))
    shown = f"<details><summary>Quality standard</summary><pre>{text}</pre></details>" if standard else ""
    return {"meta": meta, "inputs": rows, "standard": shown}


def _template(name: str) -> string.Template:
    """A page template of kscore/_web. Its lines are joined with nothing between them (the line
    breaks and indentation are there to read it); in report.html the doctype keeps its line."""
    lines = _asset(name).splitlines()
    if lines[0].startswith("<!DOCTYPE"):
        return string.Template(lines[0] + "\n" + "".join(line.strip() for line in lines[1:]) + "\n")
    return string.Template("".join(line.strip() for line in lines))


def render_page(
    inputs: Mapping[str, ReportInput],
    id_column: str,
    data: tuple[pl.DataFrame, str] | None,
    columns: Sequence[str] | None,
    image_col: str | None,
    color: str | None,
    top: int,
    max_points: int,
    title: str | None,
) -> tuple[str, dict[str, Any]]:
    """The page, and what it holds (for --json)."""
    models: list[str] = []
    if "difficulty" in inputs:
        item = inputs["difficulty"]
        models = [m for m in item.metadata.get("models", []) if model_score_column(m) in item.frame.columns]
    parts = Parts([], [], {})
    if "difficulty" in inputs and models:
        _difficulty_parts(inputs["difficulty"], models, id_column, top, parts)
    if "embed-scores" in inputs:
        _embed_parts(inputs["embed-scores"], id_column, top, parts)
    if "compare" in inputs:
        _compare_parts(inputs["compare"], id_column, top, parts)
    if "select" in inputs:
        _select_parts(inputs["select"], id_column, parts)
    map_html, map_data, index_of, text = _map_section(
        inputs, id_column, models, parts.named, data, columns, image_col, color, max_points
    )

    def points(table: Table) -> list[int | None]:
        return [index_of.get(row[0]) for row in table.rows]

    tables = "".join(
        _section(f"section-{t.key}", t.heading, _table(t, points(t), caption=False)) for t in parts.tables
    )
    summary = "".join(parts.summary)
    scripts = [_asset("report.js")]
    if map_data is not None:
        scripts.insert(0, _asset("vendor/regl-scatterplot.bundle.js"))
    image_sources = _image_sources(text.get_column(image_col) if text is not None and image_col else None)
    page = _template("report.html").substitute(
        csp=_esc(_csp(scripts, image_sources)),
        version=_esc(__version__),
        title=_esc(title or "kscore report"),
        style=_asset("report.css"),
        **_header(inputs, models),
        summary=_section("summary", "Summary", summary) if summary else "",
        map=map_html,
        tables=tables,
        header_json=_script_json({"map": map_data.header if map_data else None}),
        points=(
            f'<script type="application/octet-stream" id="kscore-points">{map_data.payload}</script>'
            if map_data
            else ""
        ),
        scripts="".join(f"<script>{s}</script>" for s in scripts),
    )
    info = {
        "points_shown": map_data.header["points"] if map_data else 0,
        "points_total": map_data.header["total"] if map_data else 0,
        "sections": (["summary"] if summary else [])
        + (["map"] if map_html else [])
        + [t.key for t in parts.tables],
        "inputs": {kind: str(item.path) for kind, item in inputs.items()},
    }
    return page, info


def _floats(frame: pl.DataFrame, column: str) -> np.ndarray:
    if column not in frame.columns:
        return np.zeros(0)
    return frame.get_column(column).cast(pl.Float64).fill_null(np.nan).to_numpy()


def _data_columns(
    data: tuple[pl.DataFrame, str],
    id_column: str,
    ids: pl.Series,
    columns: Sequence[str] | None,
    image_col: str | None,
) -> pl.DataFrame:
    """The user's own columns (--data: the table and its name), one row per map point (nulls where
    the file has none)."""
    frame, label = data
    if id_column not in frame.columns:
        raise InputError(missing_column_message(label, id_column, frame.columns, "id column"))
    wanted = list(columns) if columns is not None else None
    for name in [*(wanted or []), *([image_col] if image_col else [])]:
        if name not in frame.columns:
            raise InputError(missing_column_message(label, name, frame.columns))
    if frame.get_column(id_column).is_duplicated().any():
        raise InputError(f"{label}: column {id_column!r} has duplicated ids")
    if wanted is None:
        wanted = []
        for name in frame.columns:
            if name in (id_column, image_col) or len(wanted) == DEFAULT_COLUMNS:
                continue
            longest = frame.get_column(name).cast(pl.String).str.len_chars().max()
            if longest is None or longest <= SHORT_TEXT:  # type: ignore[operator]
                wanted.append(name)
    shown = [c for c in [*wanted, *([image_col] if image_col else [])] if c is not None]
    key = frame.get_column(id_column)
    if key.dtype != ids.dtype:
        try:
            key = key.cast(ids.dtype, strict=True)
        except pl.exceptions.PolarsError:
            raise InputError(
                f"{label}: its ids ({key.dtype}) do not match the scores' ids ({ids.dtype})"
            ) from None
    if not ids.is_in(key.implode()).any():
        raise InputError(f"{label}: shares no id with the scores: is it the same dataset?")
    table = frame.select(*(pl.col(c).cast(pl.String) for c in shown)).with_columns(key.alias("__id"))
    joined = pl.DataFrame({"__id": ids}).join(table, on="__id", how="left", maintain_order="left")
    return joined.drop("__id")
