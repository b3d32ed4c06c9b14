"""Matching models by id: direct addressing (chunk by chunk, marker scatter) against a plain join."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kscore.align import _UNWRITTEN, align_by_id
from kscore.errors import InputError


def chunked(frame: pl.DataFrame, pieces: int) -> pl.DataFrame:
    """The same rows in `pieces` chunks, as a multi-row-group Parquet read leaves them."""
    bounds = np.linspace(0, frame.height, pieces + 1).astype(int)
    parts = [frame.slice(a, b - a) for a, b in itertools.pairwise(bounds) if b > a]
    return pl.concat(parts, rechunk=False)


def expected(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    """The reference: an outer join on id, sorted by id."""
    joined = None
    for name, frame in frames.items():
        renamed = frame.rename({c: f"{c}_{name}" for c in frame.columns if c != "id"})
        joined = renamed if joined is None else joined.join(renamed, on="id", how="full", coalesce=True)
    return joined.sort("id")


def aligned_table(frames: dict[str, pl.DataFrame]) -> pl.DataFrame:
    alignment = align_by_id(frames, "id")
    columns = [alignment.ids]
    for name, placed in alignment.columns.items():
        for column, values in placed.items():
            columns.append(pl.Series(f"{column}_{name}", values, nan_to_null=values.dtype.kind == "f"))
    return pl.DataFrame(columns)


model_rows = st.lists(st.integers(0, 40), min_size=1, max_size=30, unique=True)


@settings(max_examples=60, deadline=None)
@given(st.lists(model_rows, min_size=1, max_size=4), st.integers(1, 4), st.data())
def test_matches_an_outer_join(id_sets, pieces, data):
    frames = {}
    for m, ids in enumerate(id_sets):
        scores = data.draw(st.lists(st.none() | st.floats(0, 1), min_size=len(ids), max_size=len(ids)))
        frame = pl.DataFrame({"id": ids, "score": scores, "code": list(range(len(ids)))}).cast(
            {"score": pl.Float64, "code": pl.Int16}
        )
        frames[f"m{m}"] = chunked(frame, pieces)
    got = aligned_table(frames)
    want = expected(frames).select(got.columns).with_columns(pl.col("^code_.*$").fill_null(-1))
    assert got.equals(want)


def test_ids_and_values_chunked_differently():
    ids = chunked(pl.DataFrame({"id": [4, 2, 0, 3, 1]}), 2)
    values = chunked(pl.DataFrame({"score": [0.4, 0.2, 0.0, 0.3, 0.1]}), 3)
    frame = pl.concat([ids, values], how="horizontal")
    out = align_by_id({"m": frame}, "id")
    assert out.ids.to_list() == [0, 1, 2, 3, 4]
    assert out.columns["m"]["score"].tolist() == [0.0, 0.1, 0.2, 0.3, 0.4]


def test_a_duplicate_is_found_also_when_the_model_lacks_other_ids():
    full = pl.DataFrame({"id": [0, 1, 2, 3], "score": [0.0, 0.1, 0.2, 0.3]})
    # As many rows as the other model, but id 1 twice and id 3 missing.
    gappy = pl.DataFrame({"id": [0, 1, 1, 2], "score": [0.5, 0.6, 0.7, 0.8]})
    with pytest.raises(InputError, match="model 'b': column 'id' has 2 rows with a duplicated id"):
        align_by_id({"a": full, "b": gappy}, "id")


def test_a_score_holding_the_marker_bit_pattern_is_placed_as_is():
    marker = _UNWRITTEN.view(np.float64)
    frame = pl.DataFrame({"id": [2, 0, 1], "score": np.array([0.2, marker, 0.1])})
    other = pl.DataFrame({"id": [0, 1, 2, 3], "score": [0.0, 0.1, 0.2, 0.3]})
    out = align_by_id({"m": frame, "o": other}, "id")
    placed = out.columns["m"]["score"]
    assert placed.view(np.int64)[0] == _UNWRITTEN  # the value itself, not read as "missing"
    assert placed[1:3].tolist() == [0.1, 0.2] and np.isnan(placed[3])
