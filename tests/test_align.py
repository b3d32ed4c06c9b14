"""Matching models by id: direct addressing (chunk by chunk, marker scatter) against a plain join."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kscore.core.align import _UNWRITTEN, IdFacts, align_by_id, checked_id_type, normalize_ids, place_dense
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


def aligned_table(frames: dict[str, pl.DataFrame], placed: frozenset[str] = frozenset()) -> pl.DataFrame:
    """The alignment as a table; the models in `placed` placed on their own ids first, where
    `place_dense` takes them."""
    ready = {name: (place_dense(f, "id", name) or f) if name in placed else f for name, f in frames.items()}
    alignment = align_by_id(ready, "id")
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


sparse_rows = st.lists(st.integers(0, 10_000), min_size=1, max_size=30, unique=True)


@settings(max_examples=80, deadline=None)
@given(st.lists(model_rows | sparse_rows, min_size=1, max_size=4), st.integers(1, 4), st.data())
def test_models_placed_one_by_one_match_an_outer_join(id_sets, pieces, data):
    """Models placed on their own spans (as the in-memory plan places each model after reading
    it), beside frames, on other spans, or with ids too sparse for direct addressing."""
    frames = {}
    for m, ids in enumerate(id_sets):
        scores = data.draw(st.lists(st.none() | st.floats(0, 1), min_size=len(ids), max_size=len(ids)))
        frame = pl.DataFrame({"id": ids, "score": scores, "code": list(range(len(ids)))}).cast(
            {"id": pl.Int64, "score": pl.Float64, "code": pl.Int16}
        )
        frames[f"m{m}"] = chunked(frame, pieces)
    placed = frozenset(data.draw(st.sets(st.sampled_from(sorted(frames)))))
    got = aligned_table(frames, placed)
    want = expected(frames).select(got.columns).with_columns(pl.col("^code_.*$").fill_null(-1))
    assert got.equals(want)


def test_a_placed_model_with_a_duplicate_names_its_file():
    gappy = pl.DataFrame({"id": [0, 1, 1, 2], "score": [0.5, 0.6, 0.7, 0.8]})
    with pytest.raises(InputError, match=r"b\.csv: column 'id' has 2 rows with a duplicated id"):
        place_dense(gappy, "id", "b.csv")


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


@pytest.mark.parametrize(
    ("values", "dtype", "expected", "expected_dtype"),
    [
        ([1.0, 2.0, -3.0], pl.Float64, [1, 2, -3], pl.Int64),
        ([1, 2], pl.Int32, [1, 2], pl.Int64),
        ([2**63, 5], pl.UInt64, [2**63, 5], pl.UInt64),
        ([2**63 - 1, -(2**63)], pl.Int128, [2**63 - 1, -(2**63)], pl.Int64),
        ([2**64 - 1, 0], pl.Int128, [2**64 - 1, 0], pl.UInt64),
        (["a", "nan-x"], pl.String, ["a", "nan-x"], pl.String),
    ],
)
def test_normalized_ids_keep_their_values(values, dtype, expected, expected_dtype):
    ids = normalize_ids(pl.Series("id", values, dtype=dtype), "f.csv")
    assert ids.to_list() == expected and ids.dtype == expected_dtype


@pytest.mark.parametrize(
    ("values", "dtype", "message"),
    [
        ([1.0, None], pl.Float64, "1 null ids"),
        ([1.0, float("nan")], pl.Float64, "1 NaN or infinite ids"),
        ([1.0, float("-inf")], pl.Float64, "1 NaN or infinite ids"),
        ([1.5, 2.0], pl.Float64, r"1 ids that are not whole numbers \(e.g. \[1.5\]\)"),
        ([2.0**53 + 2, 1.0], pl.Float64, "above 2\\*\\*53"),
        ([2**64, 1], pl.Int128, "wider than 64 bits"),
        ([-(2**63) - 1, 1], pl.Int128, "wider than 64 bits"),
        (["NaN", "b"], pl.String, "1 NaN ids"),
        ([True, False], pl.Boolean, "ids must be integers or text"),
    ],
)
def test_bad_ids_name_the_file_and_the_count(values, dtype, message):
    with pytest.raises(InputError, match=f"f.csv: column 'id' has {message}|f.csv: column 'id' .*{message}"):
        normalize_ids(pl.Series("id", values, dtype=dtype), "f.csv")


def _decision(check) -> object:
    """The type `check()` gives, or the message it raises."""
    try:
        return check()
    except InputError as exc:
        return str(exc)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(
        [
            ([1.0, None, 2.5, 3.0, None, 4.5, 5.5, float("inf")], pl.Float64),
            ([1.5, 2.0, 3.25, 4.0, 5.75, 6.5, 7.0, 8.0], pl.Float64),
            ([1.0, 2.0, 2.0**53 + 2, 4.0, -(2.0**54), 6.0], pl.Float64),
            ([1.0, 2.0, 3.0, 4.0, -5.0], pl.Float64),
            ([2**63, 5, 7, 2**64 - 1, 0], pl.UInt64),
            ([1, 2, 3, 4, 5], pl.UInt64),
            ([2**64, 1, -(2**63) - 1, 3], pl.Int128),
            ([-(2**63), 1, 2**63 - 1, 3], pl.Int128),
            (["a", "NaN", "b", " -nan ", "c"], pl.String),
            (["a", None, "b", None], pl.String),
            ([1, None, 3], pl.Int32),
        ]
    ),
    st.lists(st.integers(0, 8), max_size=4),
)
def test_id_facts_of_pieces_added_in_order_decide_as_the_whole_column(case, cuts):
    """A column cut into pieces (some empty), each piece's facts merged in row order: the same type,
    or the same error with the same counts and examples, as the whole column."""
    values, dtype = case
    ids = pl.Series("id", values, dtype=dtype)
    bounds = [0, *sorted(min(c, len(ids)) for c in cuts), len(ids)]
    pieces = [IdFacts.of(ids.slice(a, b - a)) for a, b in itertools.pairwise(bounds)]
    merged = pieces[0]
    for piece in pieces[1:]:
        merged = merged.merged(piece)
    whole = _decision(lambda: checked_id_type(IdFacts.of(ids), "f.csv"))
    assert _decision(lambda: checked_id_type(merged, "f.csv")) == whole


def test_an_empty_column_of_a_wide_integer_type_is_typed_not_an_error():
    assert normalize_ids(pl.Series("id", [], dtype=pl.UInt64), "f.csv").dtype == pl.Int64


def test_ids_above_two_to_the_63_match_across_files():
    big = pl.Series("id", [2**64 - 1, 2**63, 7], dtype=pl.UInt64)
    frames = {
        "a": pl.DataFrame({"id": big, "v": [1.0, 2.0, 3.0]}),
        "b": pl.DataFrame({"id": big.reverse(), "v": [30.0, 20.0, 10.0]}),
    }
    aligned = align_by_id(frames, "id")
    assert aligned.ids.to_list() == [7, 2**63, 2**64 - 1]
    assert aligned.columns["a"]["v"].tolist() == [3.0, 2.0, 1.0]
    assert aligned.columns["b"]["v"].tolist() == [30.0, 20.0, 10.0]
