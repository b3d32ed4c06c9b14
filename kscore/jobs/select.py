"""The select job: the batch of train rows to label or train on next (`kscore select`), from an
`embed-scores` output (the map and the scores) or a `difficulty` output (scores only).

The strategies are in `kscore.core.pick_strategies`; this module finds the candidates, their scores
and coordinates, the labeled points, and writes and summarizes the picks.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from kscore.columns import MAP_X, MAP_Y, POTENTIAL, REPRESENTATION, SCORE
from kscore.core.pick_strategies import DEFAULT_STRATEGY, STRATEGIES, balanced_power, pick, ranking
from kscore.errors import InputError, KscoreWarning, did_you_mean

MAP = (MAP_X, MAP_Y)
# --by without one: the first of these the file has (representation: the least covered first)
DEFAULT_BY = (
    (POTENTIAL, False),
    (SCORE, False),
    (REPRESENTATION, True),
)
# Coverage in an embedding space with more dimensions than this, for many candidates and picks, is
# measured in a PCA projection to this many dimensions (see `_embedding_space`).
APPROX_DIMENSIONS = 16
EXACT_WORK = 2e10  # candidates x picks x dimensions above which the projection is used


@dataclass
class Selection:
    """The picks (id, rank, the score, distance, strategy; in pick order) and what the summary says."""

    picks: pl.DataFrame
    info: dict[str, Any] = field(default_factory=dict)


def select_batch(
    table: pl.DataFrame | pl.LazyFrame,
    budget: int,
    *,
    strategy: str = DEFAULT_STRATEGY,
    by: str | None = None,
    ascending: bool | None = None,
    labeled: Iterable[Any] | pl.Series | None = None,
    id_column: str = "id",
    split_col: str = "split",
    train_values: Sequence[str] = ("train",),
    embeddings: pl.DataFrame | pl.LazyFrame | None = None,
    embedding_col: str | None = None,
    embedding_prefix: str | None = None,
    metric: str = "euclidean",
    seed: int = 0,
    source: str = "the scores",
) -> Selection:
    """`select`, with what its summary reports (counts, the space, the coverage radius)."""
    if strategy not in STRATEGIES:
        raise InputError(f"unknown --strategy {strategy!r}; use one of: {', '.join(STRATEGIES)}")
    if budget < 1:
        raise InputError(f"--budget must be at least 1, not {budget}")
    if seed < 0:
        raise InputError(f"--seed must be 0 or more, not {seed}")
    scan = table.lazy()
    schema = scan.collect_schema()
    if id_column not in schema:
        raise InputError(
            f"{source}: missing id column {id_column!r}{did_you_mean(id_column, schema.names())}"
        )
    by, ascending = _score_column(scan, schema, by, ascending, id_column, source)
    notes: list[str] = []
    has_map = all(c in schema for c in MAP)
    if strategy != "top" and not has_map and embeddings is None:
        raise InputError(
            f"{source}: --strategy {strategy} needs coordinates, and this file has no map (map_x, map_y): "
            "give an embed-scores output, or the embeddings with --embeddings FILE, or use --strategy top"
        )
    train = (
        pl.col(split_col).cast(pl.String).is_in(list(train_values)) if split_col in schema else pl.lit(True)
    )
    rows = scan.select(id_column, by, *(MAP if has_map else ()), train.alias("_train")).collect()
    is_train = rows.get_column("_train")
    if split_col not in schema:
        notes.append(f"{source} has no {split_col!r} column: every row is a candidate")
    elif not is_train.any():
        values = scan.select(pl.col(split_col).cast(pl.String).unique().sort().head(8)).collect().to_series()
        raise InputError(
            f"{source}: no train rows ({split_col!r} has: {', '.join(map(str, values.to_list()))}); "
            "choose them with --train-value"
        )
    ids = rows.get_column(id_column)
    if ids.null_count():
        raise InputError(f"{source}: column {id_column!r} has {ids.null_count()} rows with no id")
    if ids.n_unique() != ids.len():  # a hash count: far cheaper than is_duplicated on 10M ids
        raise InputError(
            f"{source}: column {id_column!r} has {int(ids.is_duplicated().sum())} rows with a duplicated id"
        )
    labeled_ids = _labeled_ids(labeled, ids.dtype)
    is_labeled = (
        ids.is_in(labeled_ids) if labeled_ids is not None else pl.repeat(False, rows.height, eager=True)
    )
    not_found = 0 if labeled_ids is None else int((~labeled_ids.is_in(ids)).sum())
    if not_found:
        warnings.warn(
            KscoreWarning(f"{not_found} of {labeled_ids.len()} labeled ids are not in {source}"), stacklevel=2
        )
    scores = rows.get_column(by).cast(pl.Float64).fill_nan(None)
    candidate = is_train & ~is_labeled
    skipped = int((candidate & scores.is_null()).sum())
    candidate = candidate & scores.is_not_null()
    frame = rows.with_columns(_candidate=candidate, _labeled=is_labeled, _score=scores)
    candidates = frame.filter(pl.col("_candidate"))
    if not candidates.get_column(id_column).is_sorted():  # ties are broken by id: id order
        candidates = candidates.sort(id_column)
    n_candidates = candidates.height
    if n_candidates == 0:
        raise InputError(
            f"{source}: no candidate rows: every train row is labeled or has no {by}"
            if is_train.any()
            else f"{source}: no train rows"
        )
    if budget > n_candidates:
        warnings.warn(
            KscoreWarning(
                f"--budget {budget} is more than the {n_candidates} candidates: picking all of them"
            ),
            stacklevel=2,
        )
        budget = n_candidates
    if strategy == "balanced" and has_map and embeddings is not None:
        notes.append(
            "balanced picks on the map (its regions and their typical points); --embeddings is used "
            "by --strategy typical and diverse"
        )
        embeddings = None
    points, labeled_points, space = _coordinates(
        frame, candidates, id_column, has_map, embeddings, embedding_col, embedding_prefix, metric,
        budget, seed, source,
    )  # fmt: skip
    score_values = candidates.get_column("_score").to_numpy()
    competence = _competence(scan, schema, train) if strategy == "balanced" and by == POTENTIAL else None
    power = balanced_power(competence)
    if points is None:  # top on a file without a map: no distances
        chosen = ranking(score_values, bool(ascending))[:budget]
        distance = np.full(len(chosen), np.inf)
        radius = None
    else:
        result = pick(
            points, budget, strategy=strategy, scores=score_values, ascending=bool(ascending),
            labeled=labeled_points, seed=seed, power=power,
        )  # fmt: skip
        chosen, distance, radius = result.order, result.distance, result.radius
        if result.sample is not None:
            notes.append(
                f"the cover chose among a seeded sample of {result.sample:,} of the "
                f"{n_candidates:,} candidates"
            )
    picked = candidates[chosen]
    picks = pl.DataFrame(
        {
            id_column: picked.get_column(id_column),
            "rank": np.arange(1, len(chosen) + 1, dtype=np.int64),
            by: picked.get_column("_score"),
            # none for a first pick with nothing labeled, or without coordinates
            "distance": pl.Series(np.where(np.isfinite(distance), distance, np.nan)).fill_nan(None),
            "strategy": [strategy] * len(chosen),
        }
    )
    info = {
        "strategy": strategy,
        "by": by,
        "ascending": bool(ascending),
        "budget": budget,
        "n_candidates": n_candidates,
        "n_picked": picks.height,
        "skipped_null_score": skipped,
        "labeled": {
            "given": 0 if labeled_ids is None else labeled_ids.len(),
            "in_file": int(is_labeled.sum()),
            "not_in_file": not_found,
        },
        "space": space,
        "coverage_radius": None if radius is None or not np.isfinite(radius) else float(radius),
        "reference_right": competence,
        "score_power": power if strategy == "balanced" else None,
        "seed": seed,
        "notes": notes,
    }
    return Selection(picks, info)


def _competence(scan: pl.LazyFrame, schema: pl.Schema, train: pl.Expr) -> float | None:
    """The share of the reference rows (not train, with a difficulty score) whose difficulty is
    below 0.5, where the models were mostly right; None without any."""
    if SCORE not in schema:
        return None
    score = pl.col(SCORE).cast(pl.Float64).fill_nan(None)
    reference = scan.filter(~train & score.is_not_null())
    share, count = reference.select((score < 0.5).mean(), pl.len()).collect().row(0)
    return float(share) if count else None


def _score_column(
    scan: pl.LazyFrame, schema: pl.Schema, by: str | None, ascending: bool | None, id_column: str, source: str
) -> tuple[str, bool]:
    """--by, checked; without it the first of DEFAULT_BY the file has with a value (an embed-scores
    output made without --difficulty has an empty potential_difficulty_score)."""
    numeric = [c for c, t in schema.items() if t.is_numeric() and c not in (id_column, *MAP)]
    if by is None:
        for name, low_first in DEFAULT_BY:
            if (
                name in schema
                and scan.select(pl.col(name).is_not_null().any()).collect(engine="streaming").item()
            ):
                return name, low_first if ascending is None else ascending
        raise InputError(
            f"{source}: none of {', '.join(n for n, _ in DEFAULT_BY)}: is it an output of kscore "
            f"embed-scores or difficulty? (or choose a score with --by; numeric columns: "
            f"{', '.join(numeric[:8]) or 'none'})"
        )
    if by not in numeric:
        raise InputError(
            f"unknown --by column {by!r}{did_you_mean(by, numeric)} "
            f"(valid: {', '.join(numeric[:12]) or 'none'})"
        )
    return by, bool(ascending)


def _labeled_ids(labeled: Iterable[Any] | pl.Series | None, dtype: pl.DataType) -> pl.Series | None:
    if labeled is None:
        return None
    series = labeled if isinstance(labeled, pl.Series) else pl.Series("labeled", list(labeled))
    if dtype.is_integer() and series.dtype.is_float():
        values = series.drop_nulls()
        fractional = values.filter(values != values.floor())
        if fractional.len():
            raise InputError(
                f"{fractional.len()} labeled ids are not whole numbers (such as {fractional[0]}), and the "
                "scores' ids are integers: they cannot match"
            )
    try:
        return series.cast(dtype).drop_nulls().unique()
    except pl.exceptions.PolarsError:
        raise InputError(
            f"the labeled ids are {series.dtype}, the scores' ids {dtype}: they cannot match"
        ) from None


def _coordinates(
    frame: pl.DataFrame,
    candidates: pl.DataFrame,
    id_column: str,
    has_map: bool,
    embeddings: pl.DataFrame | pl.LazyFrame | None,
    embedding_col: str | None,
    embedding_prefix: str | None,
    metric: str,
    budget: int,
    seed: int,
    source: str,
) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """The candidates' and the labeled points' coordinates: on the map, or in the embedding space."""
    labeled = frame.filter(pl.col("_labeled")).sort(id_column)
    if embeddings is None:
        if not has_map:
            return None, None, "none"
        return candidates.select(MAP).to_numpy(), labeled.select(MAP).to_numpy(), "map"
    from kscore.jobs.embed_scores import embedding_columns, embedding_matrix

    scan = embeddings.lazy()
    columns = embedding_columns(scan, embedding_col, embedding_prefix)
    schema = scan.collect_schema()
    if id_column not in schema:
        raise InputError(f"--embeddings: missing id column {id_column!r}")
    needed = pl.concat([candidates.get_column(id_column), labeled.get_column(id_column)])
    table = scan.select(id_column, *columns).collect()
    rows = table.get_column(id_column)
    if rows.dtype != needed.dtype:  # ids of one dataset have one type: an integral float is an integer
        try:
            rows = rows.cast(needed.dtype, strict=True)
        except pl.exceptions.PolarsError:
            raise InputError(
                f"--embeddings: its ids ({rows.dtype}) do not match the ids of {source} ({needed.dtype}): "
                "is it the same dataset?"
            ) from None
    if rows.n_unique() != rows.len():
        raise InputError(f"--embeddings: column {id_column!r} has rows with a duplicated id")
    where = (
        pl.DataFrame({id_column: needed})
        .join(
            pl.DataFrame({id_column: rows}).with_row_index("_at"),
            on=id_column,
            how="left",
            maintain_order="left",
        )
        .get_column("_at")
    )
    if where.null_count():
        raise InputError(f"--embeddings: {where.null_count()} ids of {source} have no embedding")
    if metric not in ("euclidean", "cosine"):
        raise InputError(f"--metric must be euclidean or cosine, not {metric!r}")
    at = where.to_numpy()
    matrix = embedding_matrix(table, columns, dtype=np.float32)
    if matrix.shape[1] == 0:
        raise InputError("--embeddings: the embeddings are empty (0 dimensions); give vectors of numbers")
    if not np.array_equal(at, np.arange(len(matrix))):  # the file holds other rows, or another order
        matrix = matrix[at]
    dimensions = matrix.shape[1]
    project = dimensions > APPROX_DIMENSIONS and len(matrix) * budget * dimensions > EXACT_WORK
    if not project:
        matrix = matrix.astype(np.float64, copy=False)
    if metric == "cosine":
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = matrix / np.where(norms == 0, 1.0, norms)
    space = f"embeddings ({dimensions} dimensions, {metric})"
    if project:
        matrix = _pca_projection(matrix, APPROX_DIMENSIONS, seed)
        space += f", approximated in a {APPROX_DIMENSIONS}-dimensional PCA projection"
    n = candidates.height
    return matrix[:n], matrix[n:], space


PCA_SAMPLE = 50_000  # rows whose covariance gives the projection's axes


def _pca_projection(matrix: np.ndarray, dimensions: int, seed: int) -> np.ndarray:
    """The rows projected on the `dimensions` principal axes of a seeded sample of them (the axes of
    50,000 rows are those of a million, to the precision a coverage needs; a full PCA of 1M x 384
    costs 40 s, this one 2)."""
    rng = np.random.default_rng(seed)
    sample = matrix[np.sort(rng.choice(len(matrix), min(len(matrix), PCA_SAMPLE), replace=False))]
    sample = sample.astype(np.float64)
    mean = sample.mean(axis=0)
    centred = sample - mean
    _, vectors = np.linalg.eigh(centred.T @ centred)
    axes = vectors[:, ::-1][:, :dimensions]
    projected = np.empty((len(matrix), dimensions))
    for start in range(0, len(matrix), 100_000):  # bounded temporaries
        projected[start : start + 100_000] = (matrix[start : start + 100_000] - mean) @ axes  # float64
    return projected


def select(
    scores: str | os.PathLike | pl.DataFrame | pl.LazyFrame,
    budget: int,
    out: str | os.PathLike | None = None,
    **options: Any,
) -> pl.DataFrame | dict[str, Any]:
    """`kscore select`: the `budget` train rows of an embed-scores (or difficulty) output (a path
    or a frame) to label next.

    `strategy`: `balanced` (the most typical points of the uncovered regions, weighted by the
    score), `typical` (the same without the score), `diverse` (the farthest points: k-center
    greedy) or `top` (the best scores). `by` is the score (default:
    `potential_difficulty_score`, else `difficulty_score`, else `representation_score` ascending);
    `ascending` puts low scores first. `labeled` ids (a file, or ids) are never picked and count as
    covered. `embeddings` (the embed-scores input: a file or a frame) measures coverage in the
    embedding space instead of the map, for `typical` and `diverse` (`balanced` picks on the map
    where the file has one: on raw features its typical points crowd the middle of the data). The
    other `options` are `selected`'s and `select_batch`'s.
    Without `out`: id, rank, the score, `distance` (to the nearest earlier pick or labeled point)
    and `strategy`, in pick order, deterministic for a `seed`, ties broken by id; with `out`, they
    are written there and the summary is returned: what `kscore select --json` prints."""
    picks, summary = selected(scores, budget, out, **options)
    return summary if out is not None else picks


def write_selection(
    scores: str | os.PathLike, budget: int, out: str | os.PathLike | None = None, **options: Any
) -> dict[str, Any]:
    """The summary of `selected` (kept for 0.6's callers; `kscore.select` is the library call)."""
    return selected(scores, budget, out, **options)[1]


def selected(
    scores: str | os.PathLike | pl.DataFrame | pl.LazyFrame,
    budget: int,
    out: str | os.PathLike | None = None,
    **options: Any,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The whole `kscore select` job (see `_selected`), its warnings in the summary."""
    from kscore.jobs.common import collected_warnings

    with collected_warnings() as collected:
        picks, summary = _selected(scores, budget, out, **options)
    summary["warnings"] = [line for lines in collected.values() for line in lines]
    return picks, summary


def _selected(
    scores: str | os.PathLike | pl.DataFrame | pl.LazyFrame,
    budget: int,
    out: str | os.PathLike | None = None,
    *,
    labeled: str | os.PathLike | Iterable[Any] | None = None,
    embeddings: str | os.PathLike | pl.DataFrame | pl.LazyFrame | None = None,
    id_column: str | None = None,
    storage_options: Mapping[str, str] | None = None,
    top: int = 20,
    plot: str | os.PathLike | None = None,
    size: str | tuple[int, int] = (1200, 900),
    **options: Any,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The whole `kscore select` job: read the scores (a file's id column from kscore's metadata),
    the labeled ids and the embeddings, pick, write `out` (format by extension) with the parameters
    as metadata, draw the picks on the map to `plot`; return the picks and the summary (the `--json`
    object, listing the first `top` picks)."""
    from kscore._version import __version__
    from kscore.io import read_kscore_metadata, read_table, scan_table, write_table_atomic
    from kscore.jobs.common import checked_plot, checked_table_output
    from kscore.storage import as_path, using
    from kscore.summaries import envelope, rounded

    with using(storage_options):
        in_memory = isinstance(scores, pl.DataFrame | pl.LazyFrame)
        path = None if in_memory else as_path(scores)
        files = [as_path(p) for p in (labeled, embeddings) if isinstance(p, str | os.PathLike)]
        inputs = [*([path] if path is not None else []), *files]
        out_path = checked_table_output(out, inputs)
        picture_size = checked_plot(plot, size, [*inputs, *([out_path] if out_path is not None else [])])
        table = scores.lazy() if in_memory else scan_table(path)  # type: ignore[union-attr]
        metadata = {} if path is None else read_kscore_metadata(path)
        standard = metadata.get("standard") if isinstance(metadata.get("standard"), dict) else {}
        id_column = id_column or (
            standard.get("id_column") if isinstance(standard.get("id_column"), str) else "id"
        )
        labeled_ids: Any = labeled
        if isinstance(labeled, str | os.PathLike):
            labeled_path = as_path(labeled)
            frame = read_table(labeled_path)
            if id_column not in frame.columns:
                raise InputError(
                    f"{labeled_path}: the labeled file has no id column {id_column!r}"
                    f"{did_you_mean(id_column, frame.columns)} (columns: {', '.join(frame.columns[:8])})"
                )
            labeled_ids = frame.get_column(id_column)
        embedding_table = embeddings
        if isinstance(embeddings, str | os.PathLike):
            embedding_table = scan_table(as_path(embeddings))
        label = str(path) if path is not None else "the scores table"
        selection = select_batch(
            table, budget, labeled=labeled_ids, id_column=id_column, embeddings=embedding_table,
            source=label, **options,
        )  # fmt: skip
        info = selection.info
        if out is not None:
            write_table_atomic(
                selection.picks,
                out_path,
                {
                    "kscore_version": __version__,
                    "command": "select",
                    "inputs": {
                        "scores": str(path) if path is not None else "(a table in memory)",
                        "labeled": _text(labeled),
                        "embeddings": _text(embeddings),
                    },
                    "parameters": {
                        k: v
                        for k, v in info.items()
                        if k in ("strategy", "by", "ascending", "budget", "space", "seed")
                    },
                },
            )
        if plot is not None:
            from kscore.plot import plot_picks

            plot_picks(table.collect(), selection.picks, id_column, labeled_ids, plot, size=picture_size)
    picks = selection.picks
    by = info["by"]
    values = picks.get_column(by)
    rows = [
        {
            "id": row[id_column],
            "rank": row["rank"],
            by: rounded(row[by]),
            "distance": rounded(row["distance"]),
        }
        for row in picks.head(top).iter_rows(named=True)
    ]
    summary = {
        "output": str(out) if out is not None else None,
        **{k: v for k, v in info.items() if k != "notes"},
        "score_range": [rounded(values.min()), rounded(values.max())] if picks.height else None,
        "coverage_radius": rounded(info["coverage_radius"]) if info["coverage_radius"] is not None else None,
        "picks": rows,
        **({"plot": str(plot)} if plot is not None else {}),
        "notes": info["notes"],
    }
    return picks, envelope("select", summary)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return str(value) if isinstance(value, str | os.PathLike) else "(in memory)"
