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
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

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
from kscore.config import TASK_SIGNAL
from kscore.errors import InputError, did_you_mean

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
    """One kscore output given to the report: its path, kind (the command that wrote it), metadata,
    row count and column names (the job reads its rows; the page sees what the job found)."""

    path: Any  # a Path, or an object in object storage (kscore.storage.ObjectPath)
    kind: str
    metadata: dict[str, Any]
    rows: int
    columns: list[str]


@dataclass
class Histogram:
    """A histogram the job counted: `counts` in HISTOGRAM_BINS equal bins from `low` to `high`."""

    title: str
    counts: np.ndarray
    low: float
    high: float


@dataclass
class CompareFacts:
    """What the page shows of a compare output: the status counts and the largest changes."""

    counts: list[list[Any]]
    regressions: pl.DataFrame  # id, baseline, candidate, delta: the largest first
    improvements: pl.DataFrame


@dataclass
class MapPoints:
    """The rows the map shows, gathered by the job: embed-scores' columns with difficulty's
    per-model scores and compare's delta, in the output's row order."""

    table: pl.DataFrame
    rows: np.ndarray  # their row numbers in the embed-scores output (sorted)
    total: int  # the output's rows
    scores: list[str]  # the map's score columns, the first colour first
    named_rows: dict[str, np.ndarray]  # the row numbers of the ids each table or pick names
    text: pl.DataFrame | None  # --data's columns, one row per shown point
    models: list[str] = field(default_factory=list)  # difficulty's models (their score columns' names)


@dataclass
class Facts:
    """Everything the page shows, as the job read it from the inputs."""

    inputs: dict[str, ReportInput]
    models: list[str]
    id_column: str
    difficulty: dict[str, Any] | None = None  # the difficulty summary
    embed: dict[str, Any] | None = None  # the embed-scores summary
    histograms: dict[str, list[Histogram | None]] = field(default_factory=dict)  # by kind
    compare: CompareFacts | None = None
    picks: pl.DataFrame | None = None  # the select output, sorted by rank
    points: MapPoints | None = None


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _num(value: Any, digits: int = 4) -> str:
    """A number cell's text (`digits` significant digits) and its exact value for sorting."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return '<td class="num" data-value="">-</td>'
    if isinstance(value, (bool, np.bool_)):
        return f'<td data-value="{int(value)}">{value}</td>'
    if isinstance(value, (int, np.integer)):
        return f'<td class="num" data-value="{int(value)}">{int(value)}</td>'
    exact = repr(float(value))
    return f'<td class="num" data-value="{exact}">{_significant(float(value), digits)}</td>'


def _significant(value: float, digits: int) -> str:
    """`value` to `digits` significant digits, without an exponent between 1e-6 and 1e9."""
    if value == 0 or not 1e-6 <= abs(value) < 1e9:
        return f"{value:.{digits}g}"
    decimals = max(digits - 1 - int(np.floor(np.log10(abs(value)))), 0)
    return f"{round(value, decimals):.{decimals}f}"


MIN_DIGITS, MAX_DIGITS = 4, 10


def _digits_apart(values: Sequence[Any]) -> int:
    """The fewest significant digits (4 to 10) at which a column's distinct numbers stay distinct
    (rows differ where their values do: 0.00024 and 0.00031, 0.006401 and 0.006437)."""
    floats = {
        float(v)
        for v in values
        if isinstance(v, (float, np.floating)) and not isinstance(v, bool) and np.isfinite(v)
    }
    for digits in range(MIN_DIGITS, MAX_DIGITS + 1):
        if len({_significant(v, digits) for v in floats}) == len(floats):
            return digits
    return MAX_DIGITS


def _cell(value: Any, digits: int = MIN_DIGITS) -> str:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        return _num(value, digits)
    return f"<td>{_esc(value)}</td>"


def _table(table: Table, points: Sequence[int | None] | None = None, *, caption: bool = True) -> str:
    """A sortable HTML table; a row naming a point on the map carries its index (data-point).
    `caption=False` where a section's heading already names it."""
    head = "".join(f'<th scope="col">{_esc(h)}</th>' for h in table.headers)
    digits = [_digits_apart([row[i] for row in table.rows]) for i in range(len(table.headers))]
    body = []
    for row, point in zip(table.rows, points or [None] * len(table.rows), strict=True):
        attribute = f' data-point="{point}" tabindex="0"' if point is not None and point >= 0 else ""
        body.append(f"<tr{attribute}>{''.join(_cell(v, d) for v, d in zip(row, digits, strict=True))}</tr>")
    return (
        f'<table class="sortable" id="table-{_esc(table.key)}">'
        + (f"<caption>{_esc(table.heading)}</caption>" if caption else "")
        + f"<thead><tr>{head}</tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def _histogram(histogram: Histogram | None) -> str:
    """Inline SVG bars on a log scale of the count (a tail of a few hard datapoints stays visible
    beside a bin of thousands); hovering a bar shows its range and count (an SVG title: no script
    needed)."""
    if histogram is None:
        return ""
    title, counts, low, high = histogram.title, histogram.counts, histogram.low, histogram.high
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    width, height, gap = 300, 90, 1
    bar = width / HISTOGRAM_BINS
    peak = np.log1p(max(int(counts.max()), 1))
    bars = []
    for i, count in enumerate(counts):
        h = 0 if count == 0 else max(1.0, height * np.log1p(count) / peak)
        bars.append(
            f'<rect x="{i * bar:.1f}" y="{height - h:.1f}" width="{bar - gap:.1f}" height="{h:.1f}" '
            f'data-count="{int(count)}"><title>{edges[i]:.4g} to {edges[i + 1]:.4g}: '
            f"{int(count)} datapoints</title></rect>"
        )
    return (
        f'<figure class="histogram"><figcaption>{_esc(title)} (bar height: log count)</figcaption>'
        f'<svg viewBox="0 0 {width} {height + 14}" width="{width}" height="{height + 14}" role="img" '
        f'aria-label="{_esc(title)}">{"".join(bars)}'
        f'<text x="0" y="{height + 12}">{low:.4g}</text>'
        f'<text x="{width}" y="{height + 12}" text-anchor="end">{high:.4g}</text></svg></figure>'
    )


def histogram_bounds(low: float | None, high: float | None) -> tuple[float, float] | None:
    """A histogram's range over values from `low` to `high` (None: no finite value, no histogram)."""
    if low is None or high is None:
        return None
    return (low, high) if high > low else (low, low + 1.0)


def _section(anchor: str, heading: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{_esc(heading)}</h2>{body}</section>'


@dataclass
class PagePoints:
    """The map's payload: a header describing the buffers, and the buffers (base64 of their gzip)."""

    header: dict[str, Any]
    payload: str


def sample_rows(total: int, max_points: int, keep: np.ndarray, seed: int = 0) -> np.ndarray:
    """Row numbers of the map: all of them up to `max_points`, else a seeded uniform sample that
    always holds the `keep` rows (those named in a table or picked), in row order. Memory follows
    `max_points`, not `total`: the i-th row not kept is found from i, not from a list of them."""
    if total <= max_points:
        return np.arange(total, dtype=np.int64)
    keep = np.unique(keep)
    wanted = max(max_points - len(keep), 0)
    rng = np.random.default_rng(seed)
    pool = total - len(keep)
    chosen = rng.choice(pool, size=min(wanted, pool), replace=False) if wanted else np.zeros(0, np.int64)
    # the i-th row not in `keep` is i plus the number of kept rows at or before it
    chosen = chosen + np.searchsorted(keep - np.arange(len(keep)), chosen, side="right")
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


def _map_data(points: MapPoints, id_column: str, train: np.ndarray, image_col: str | None) -> PagePoints:
    shown, rows, text = points.table, points.rows, points.text
    buffers: list[tuple[dict[str, Any], bytes]] = [
        ({"name": axis, "type": "f32"}, shown.get_column(axis).cast(pl.Float32).to_numpy().tobytes())
        for axis in (MAP_X, MAP_Y)
    ]
    buffers.append(({"name": "train", "type": "u8"}, train.astype(np.uint8).tobytes()))
    for column in points.scores:
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
            buffers.append(({"name": column, "type": "json", "text": True}, _json_bytes(values.to_list())))
        if image_col is not None:  # which values are images; the others are shown as text
            shown_as_image = [image_origin(v) is not None for v in text.get_column(image_col).to_list()]
            buffers.append(
                ({"name": "kscore:image_ok", "type": "u8"}, np.array(shown_as_image, np.uint8).tobytes())
            )

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
    header = {
        "points": len(rows),
        "total": points.total,
        "buffers": specs,
        "scores": list(points.scores),
        "text": list(text.columns) if text is not None else [],
        "highlights": {name: np.searchsorted(rows, r).tolist() for name, r in points.named_rows.items()},
        "color": points.scores[0] if points.scores else None,
        "meanings": {c: score_meaning(c, points.models) for c in points.scores},
        "image": image_col,
        "id_column": id_column,
        "draft_points": DRAFT_POINTS,
    }
    payload = base64.b64encode(gzip.compress(bytes(blob), compresslevel=1, mtime=0)).decode("ascii")
    return PagePoints(header=header, payload=payload)


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


_HOST = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$")


def image_origin(value: str | None) -> str | None:
    """What a --image-col value needs in the page's img-src: "file:" for a relative path, its origin
    (scheme, host, port) for an http(s) URL that a strict parse accepts, "data:" for a data URL;
    None for anything else (another scheme, credentials, a host or port that is not plain), which
    the page shows as text, never as an image."""
    if not value:
        return None
    if value.startswith("data:image/"):  # already allowed: it names no origin
        return "data:"
    if any(c.isspace() or c in ";,'\"\\" for c in value):
        return None
    if ":" not in value.split("/", 1)[0] and not value.startswith("//"):
        return "file:"  # a relative path: the page's own folder
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        return None
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or parts.username or parts.password or not _HOST.match(host):
        return None
    return f"{parts.scheme}://{host}" + (f":{port}" if port is not None else "")


def _image_sources(values: pl.Series | None) -> list[str]:
    """What img-src must allow for --image-col: the files beside the report ('self' does not cover
    file:// in every browser) and the origins of the http(s) URLs the column names that pass
    `image_origin` (nothing else widens the policy)."""
    if values is None:
        return []
    sources = {"file:"}
    sources.update(o for o in map(image_origin, values.drop_nulls().unique().to_list()) if o and o != "data:")
    return sorted(sources)


def _generated_at() -> str | None:
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return None
    try:
        return datetime.fromtimestamp(int(epoch), tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    except (ValueError, OverflowError, OSError):
        raise InputError(
            f"SOURCE_DATE_EPOCH must be a whole number of seconds since 1970 (before the year 10000), "
            f"not {epoch[:40]!r}"
        ) from None


@dataclass
class Table:
    """A table of the page; `key` names it (table-KEY) and the highlight it offers on the map."""

    key: str
    heading: str
    headers: list[str]
    rows: list[list[Any]]
    note: str = ""  # a line under the heading


@dataclass
class Parts:
    """What the inputs contribute: summary HTML and tables."""

    summary: list[str]
    tables: list[Table]


def _difficulty_parts(
    stats: dict[str, Any], histograms: Sequence[Histogram | None], models: list[str], top: int, parts: Parts
) -> None:
    rows = [[m["name"], m["rows_scored"], m["mean"], m["median"], m["p90"]] for m in stats["models"]]
    parts.summary.append(
        _table(
            Table("models", f"Difficulty by model ({stats['n_datapoints']} datapoints)",
                  ["model", "rows scored", "mean", "median", "p90"], rows),
        )
    )  # fmt: skip
    parts.summary.append(f'<div class="histograms">{"".join(_histogram(h) for h in histograms)}</div>')
    hardest = stats["hardest"]
    explained = [m for m in models if hardest and m in hardest[0].get("top_signal", {})]
    classes = stats.get("classes") or {"label": {}, "predicted": {}, "missing": []}
    labels, predicted = classes["label"], classes["predicted"]
    predicting = [m for m in models if m in predicted]
    headers = [
        "id", SCORE, *(["label"] if labels else []), *(f"predicted ({m})" for m in predicting), N_MODELS,
        *models, *(top_signal_column(m) for m in explained),
    ]  # fmt: skip
    rows = [
        [h["id"], h[SCORE], *([labels.get(str(h["id"]))] if labels else []),
         *(predicted[m].get(str(h["id"])) for m in predicting), h[N_MODELS],
         *(h["scores"][m] for m in models), *(_signal_name(h["top_signal"][m]) for m in explained)]
        for h in hardest
    ]  # fmt: skip
    if top:
        note = ""
        if classes["missing"]:
            note = "label and predictions not shown for results files not found or unreadable: " + ", ".join(
                classes["missing"]
            )
        parts.tables.append(Table("hardest", f"Hardest {len(rows)} datapoints", headers, rows, note))


def _signal_name(signal: Any) -> Any:
    """A top signal as the standard names it: `metric: correct`, or `task error`."""
    if signal is None:
        return None
    return "task error" if signal == TASK_SIGNAL else f"metric: {signal}"


def _embed_parts(
    stats: dict[str, Any],
    columns: Sequence[str],
    histograms: Sequence[Histogram | None],
    top: int,
    parts: Parts,
) -> None:
    rows = [[k, v] for k, v in stats["rows_per_split"].items()]
    parts.summary.append(_table(Table("splits", "Rows per split", ["split", "rows"], rows)))
    quantiles = ["p0", "p10", "p50", "p90", "p100"]
    rows = [[score, *(q[k] for k in quantiles)] for score, q in stats["quantiles"].items()]
    caption = f"Scores of the {stats['n_train']} train rows"
    parts.summary.append(
        _table(Table("train-scores", caption, ["score", "min", "p10", "median", "p90", "max"], rows))
    )
    parts.summary.append(f'<div class="histograms">{"".join(_histogram(h) for h in histograms)}</div>')
    shown = [c for c in ("split", *EMBED_SCORES) if c in columns]
    for key, heading in (
        ("least_represented", "Least represented train points"),
        ("highest_potential", "Highest potential difficulty"),
    ):
        if key in stats and top:
            rows = [[r["id"], *(r.get(c) for c in shown)] for r in stats[key]]
            parts.tables.append(Table(key, f"{heading} ({len(rows)})", ["id", *shown], rows))


def _compare_parts(
    facts: CompareFacts, metadata: Mapping[str, Any], id_column: str, top: int, parts: Parts
) -> None:
    baseline, candidate = metadata.get("baseline"), metadata.get("candidate")
    caption = f"{baseline} -> {candidate} (margin {metadata.get('margin')})"
    parts.summary.append(_table(Table("compare-counts", caption, ["status", "datapoints"], facts.counts)))
    headers = ["id", f"baseline ({baseline})", f"candidate ({candidate})", "delta"]
    for key, heading, part in (
        ("regressions", "Largest regressions", facts.regressions),
        ("improvements", "Largest improvements", facts.improvements),
    ):
        if top:
            rows = [list(r) for r in part.select(id_column, "baseline", "candidate", "delta").iter_rows()]
            parts.tables.append(
                Table(key, f"{heading} ({len(rows)}): {baseline} -> {candidate}", headers, rows)
            )


def _select_parts(frame: pl.DataFrame, metadata: Mapping[str, Any], parts: Parts) -> None:
    headers = [c for c in frame.columns if c != "strategy"]
    rows = [list(r) for r in frame.head(MAX_PICKS_SHOWN).select(headers).iter_rows()]
    parameters = metadata.get("parameters", {})
    more = f"; the first {MAX_PICKS_SHOWN}" if frame.height > MAX_PICKS_SHOWN else ""
    heading = (
        f"{frame.height} picks ({parameters.get('strategy', '?')}, by {parameters.get('by', '?')}{more})"
    )
    parts.tables.append(Table("picks", heading, headers, rows))


def named_ids(facts: Facts, id_column: str) -> dict[str, list[Any]]:
    """The ids each table or pick names (the map highlights them and always shows them), in the
    page's order."""
    named: dict[str, list[Any]] = {}
    if facts.difficulty is not None:
        named["hardest"] = [h["id"] for h in facts.difficulty["hardest"]]
    if facts.embed is not None:
        for key in ("least_represented", "highest_potential"):
            if key in facts.embed:
                named[key] = [r["id"] for r in facts.embed[key]]
    if facts.compare is not None:
        named["regressions"] = facts.compare.regressions.get_column(id_column).to_list()
        named["improvements"] = facts.compare.improvements.get_column(id_column).to_list()
    if facts.picks is not None:
        named["picks"] = facts.picks.get_column(id_column).to_list()
    return named


# What each map score means, which end is worse, and the words for its two ends (the legend's
# direction). The page shows the line of the score the map is coloured by.
SCORE_MEANINGS: dict[str, tuple[str, str, str]] = {
    SCORE: (
        "difficulty: how badly the models did on this validation/test point, averaged over them "
        "(0 to 1); higher is harder",
        "easier",
        "harder",
    ),
    REPRESENTATION: (
        "representation: how densely the validation/test points surround this train point (a "
        "log-density); lower is less covered, the worse end",
        "less covered",
        "well covered",
    ),
    POTENTIAL: (
        "potential difficulty: how close this train point sits to hard validation/test points (a "
        "difficulty-weighted density); higher is nearer to where models fail",
        "far from hard points",
        "near hard points",
    ),
    LOCAL: (
        "local difficulty: the mean difficulty of the validation/test points around this train point "
        "(0 to 1); higher is harder",
        "easier",
        "harder",
    ),
    "compare_delta": (
        "change in difficulty from the baseline model to the candidate; above 0 the candidate does "
        "worse (a regression)",
        "improved",
        "regressed",
    ),
}


def score_meaning(column: str, models: Sequence[str]) -> dict[str, str]:
    """The page's words for a map score: what it means, and its low and high ends."""
    for model in models:
        if column == model_score_column(model):
            return {
                "means": f"difficulty for the model {model} alone (0 to 1); higher is harder",
                "low": "easier",
                "high": "harder",
            }
    means, low, high = SCORE_MEANINGS.get(column, (column, "low", "high"))
    return {"means": means, "low": low, "high": high}


def map_scores(columns: Sequence[str], models: Sequence[str], color: str | None) -> list[str]:
    """The map's score columns among `columns`, the first colour first: --color, else the score of
    the train points (what to label next); exit 2 for a --color that is not one of them."""
    candidates = [SCORE, *(model_score_column(m) for m in models), *EMBED_SCORES, "compare_delta"]
    scores = [c for c in candidates if c in columns]
    if color is not None and color not in scores:
        raise InputError(
            f"--color: no score {color!r} on the map{did_you_mean(color, scores)} "
            f"(scores: {', '.join(scores)})"
        )
    first = color or next((c for c in (POTENTIAL, REPRESENTATION) if c in scores), None)
    if first is not None:
        scores = [first, *(c for c in scores if c != first)]
    return scores


def _map_section(
    points: MapPoints | None, embed: ReportInput | None, id_column: str, image_col: str | None
) -> tuple[str, PagePoints | None, dict[Any, int]]:
    """The map's HTML and data, and the map index of every named id."""
    if points is None or embed is None:
        return "", None, {}
    table = points.table
    split_col = embed.metadata.get("split_col", "split")
    train_values = embed.metadata.get("train_values", ["train"])
    train = table.get_column(split_col).cast(pl.String).is_in(train_values).fill_null(False).to_numpy()
    map_data = _map_data(points, id_column, train, image_col)
    ids = table.get_column(id_column)
    index_of = {
        ids[int(p)]: int(p) for rows in points.named_rows.values() for p in np.searchsorted(points.rows, rows)
    }
    shown, total = map_data.header["points"], map_data.header["total"]
    note = (
        f"Showing {shown:,} of {total:,} points: a seeded uniform sample that keeps every point named in a "
        "table or picked (--max-points)."
        if shown < total
        else f"Showing all {total:,} points."
    )
    options = "".join(f'<option value="{_esc(c)}">{_esc(c)}</option>' for c in points.scores)
    highlights = "".join(
        f'<option value="{_esc(k)}">{_esc(k.replace("_", " "))} ({len(v)})</option>'
        for k, v in map_data.header["highlights"].items()
    )
    body = _template("map.html").substitute(note=_esc(note), options=options, highlights=highlights)
    return _section("map", "Map", body), map_data, index_of


def _header(inputs: Mapping[str, ReportInput], models: Sequence[str]) -> dict[str, str]:
    """The header's values: the models and the time in its meta line, the inputs' rows, the standard."""
    rows = "".join(
        f"<tr><td>{_esc(i.path.name)}</td><td><code>kscore {_esc(i.kind)}</code></td>"
        f'<td class="num">{i.rows}</td><td>{_esc(i.metadata.get("kscore_version", "?"))}</td></tr>'
        for i in inputs.values()
    )
    standard = inputs["difficulty"].metadata.get("standard") if "difficulty" in inputs else None
    generated = _generated_at()
    meta = (f" · models: {_esc(', '.join(models))}" if models else "") + (
        f" · generated {_esc(generated)}" if generated else ""
    )
    shown = _standard_html(standard) if isinstance(standard, dict) else ""
    return {"meta": meta, "inputs": rows, "standard": shown}


_DIRECTIONS = {"higher_is_better": "higher is better", "lower_is_better": "lower is better"}


def _standard_html(standard: Mapping[str, Any]) -> str:
    """The quality standard as people read it: one row per signal (which way is better, its weight
    and its share of the score), then the normalization, the scope, the id column and the task."""
    shares = (
        standard.get("normalized_weights") if isinstance(standard.get("normalized_weights"), dict) else {}
    )
    rows = []
    for metric in standard.get("metrics") or []:
        if isinstance(metric, dict):
            name = metric.get("name")
            direction = _DIRECTIONS.get(str(metric.get("direction")), metric.get("direction"))
            rows.append([name, direction, metric.get("weight"), shares.get(name)])
    task = standard.get("task") if isinstance(standard.get("task"), dict) else None
    facts = [
        f"normalization: {_esc(standard.get('normalization'))}",
        f"scope: {_esc(standard.get('scope'))}",
        f"id column: {_esc(standard.get('id_column'))}",
    ]
    if task is not None:
        rows.append(["task_error", "lower is better", task.get("weight"), shares.get("task_error")])
        columns = ", ".join(f"{k} {v}" for k, v in task.items() if k not in ("type", "weight"))
        facts.append(f"task: {_esc(task.get('type'))} ({_esc(columns)})")
    table = _table(Table("standard", "Quality standard", ["signal", "direction", "weight", "share"], rows))
    return (
        f'<details><summary>Quality standard</summary>{table}<p class="meta">{" · ".join(facts)}</p>'
        "</details>"
    )


def _template(name: str) -> string.Template:
    """A page template of kscore/_web. Its lines are joined with nothing between them (the line
    breaks and indentation are there to read it); in report.html the doctype keeps its line."""
    lines = _asset(name).splitlines()
    if lines[0].startswith("<!DOCTYPE"):
        return string.Template(lines[0] + "\n" + "".join(line.strip() for line in lines[1:]) + "\n")
    return string.Template("".join(line.strip() for line in lines))


def render_page(
    facts: Facts, id_column: str, image_col: str | None, top: int, title: str | None
) -> tuple[str, dict[str, Any]]:
    """The page, and what it holds (for --json)."""
    inputs, models = facts.inputs, facts.models
    parts = Parts([], [])
    if facts.difficulty is not None:
        _difficulty_parts(facts.difficulty, facts.histograms["difficulty"], models, top, parts)
    if facts.embed is not None:
        embed = inputs["embed-scores"]
        _embed_parts(facts.embed, embed.columns, facts.histograms["embed-scores"], top, parts)
    if facts.compare is not None:
        _compare_parts(facts.compare, inputs["compare"].metadata, id_column, top, parts)
    if facts.picks is not None:
        _select_parts(facts.picks, inputs["select"].metadata, parts)
    map_html, map_data, index_of = _map_section(
        facts.points, inputs.get("embed-scores"), id_column, image_col
    )

    def points(table: Table) -> list[int | None]:
        return [index_of.get(row[0]) for row in table.rows]

    tables = "".join(
        _section(
            f"section-{t.key}",
            t.heading,
            (f'<p class="note">{_esc(t.note)}</p>' if t.note else "") + _table(t, points(t), caption=False),
        )
        for t in parts.tables
    )
    summary = "".join(parts.summary)
    scripts = [_asset("report.js")]
    if map_data is not None:
        scripts.insert(0, _asset("vendor/regl-scatterplot.bundle.js"))
    text = facts.points.text if facts.points is not None else None
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
