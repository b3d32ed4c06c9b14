"""embed-scores above its memory limit: embeddings spilled to disk and read back by row, with the
same map and scores as in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

import kscore.plan.sizing as plan
from kscore.core.spilled_rows import SpilledRows
from kscore.errors import InputError
from kscore.jobs.embed_scores import score_embeddings


def _points(n: int, dim: int, duplicates: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(4)
    centers = rng.normal(0, 4, size=(5, dim))
    data = centers[rng.integers(0, 5, n)] + rng.normal(0, 1, size=(n, dim))
    if duplicates:  # identical embeddings, scattered: they must land on one point
        data[rng.choice(n, duplicates, replace=False)] = data[0]
    split = np.where(rng.random(n) < 0.7, "train", np.where(rng.random(n) < 0.5, "val", "test"))
    return pl.DataFrame(
        {
            "id": rng.permutation(n) * 3,
            "split": split,
            "note": [f"row {i}" for i in range(n)],
            "embedding": pl.Series(data.astype(np.float64)).reshape((n, dim)).cast(pl.List(pl.Float64)),
        }
    )


@pytest.fixture
def no_base(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plan as if the interpreter took no memory, so that a small limit spills a small input."""
    monkeypatch.setattr(plan, "BASE_BYTES", 0)


def _assert_same(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a.schema == b.schema and a.height == b.height
    for name in a.columns:
        x, y = a.get_column(name), b.get_column(name)
        assert x.is_null().equals(y.is_null()), name
        if x.dtype.is_float():
            assert np.array_equal(*(s.fill_null(0.0).to_numpy().view(np.int64) for s in (x, y))), name
        else:
            assert x.equals(y), name


def _difficulty(points: pl.DataFrame) -> pl.DataFrame:
    rng = np.random.default_rng(5)
    return pl.DataFrame({"id": points.get_column("id"), "difficulty_score": rng.random(points.height)})


@pytest.mark.slow
@pytest.mark.parametrize(("dim", "reducer"), [(2, "none"), (12, "umap")])
def test_spilled_embeddings_give_the_in_memory_output(
    tmp_path: Path, no_base, dim: int, reducer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    points = _points(3000, dim, duplicates=40)
    path = tmp_path / "emb.parquet"
    points.write_parquet(path)
    options = {"reducer": reducer, "fit_sample": 1000, "difficulty": _difficulty(points), "jobs": 1}
    whole, whole_meta = score_embeddings(points, **options)
    spill = tmp_path / "spill"
    spill.mkdir()
    seen: list[int] = []
    real = SpilledRows.append

    def spy(self, rows):
        seen.append(len(rows))
        return real(self, rows)

    monkeypatch.setattr(SpilledRows, "append", spy)  # undone when the test ends
    parts, parts_meta = score_embeddings(
        pl.scan_parquet(path), memory_limit=100_000, spill_dir=spill, **options
    )
    assert len(seen) > 1, "the embeddings were not spilled in batches"
    _assert_same(whole, parts)
    assert whole_meta == parts_meta
    assert list(spill.iterdir()) == []


def test_keep_embedding_above_the_limit_is_a_clear_error(tmp_path: Path, no_base) -> None:
    points = _points(500, 2)
    path = tmp_path / "emb.parquet"
    points.write_parquet(path)
    with pytest.raises(InputError, match="--keep-embedding needs the embeddings in memory"):
        score_embeddings(
            pl.scan_parquet(path), reducer="none", keep_embedding=True, memory_limit=1000, spill_dir=tmp_path
        )
    assert [p.name for p in tmp_path.iterdir()] == ["emb.parquet"]


def test_spilled_rows_read_back_in_any_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    data = rng.normal(size=(1000, 7)).astype(np.float32)
    rows = SpilledRows(tmp_path / "m.bin", 7)
    for part in np.array_split(data, 6):
        rows.append(part)
    rows.finish()
    try:
        index = rng.integers(0, 1000, 300)
        assert np.array_equal(rows[index], data[index])
        assert np.array_equal(rows[10:400:3], data[10:400:3])
        subset = rows.subset(np.array([5, 2, 999, 2]))
        assert np.array_equal(subset[np.array([3, 0])], data[[2, 5]])
        from kscore.core.reduction import row_hashes

        assert np.array_equal(rows.hashes, row_hashes(data))
    finally:
        rows.close()


def test_the_whole_job_is_one_library_call(tmp_path: Path) -> None:
    import kscore
    from kscore.io import read_kscore_metadata

    points = _points(400, 2)
    points.write_parquet(tmp_path / "emb.parquet")
    summary = kscore.embed_scores(tmp_path / "emb.parquet", tmp_path / "out.parquet", reducer="none")
    written = pl.read_parquet(tmp_path / "out.parquet")
    assert summary["output"] == str(tmp_path / "out.parquet") and written.height == 400
    metadata = read_kscore_metadata(tmp_path / "out.parquet")
    assert metadata["command"] == "embed-scores" and metadata["inputs"]["embeddings"] == str(
        tmp_path / "emb.parquet"
    )


def test_a_bad_row_in_a_later_batch_leaves_no_spill(tmp_path: Path, no_base) -> None:
    points = _points(3000, 2)
    bad = points.with_columns(
        pl.when(pl.int_range(pl.len()) == 2900)
        .then(pl.lit([float("nan"), 0.0]))
        .otherwise(pl.col("embedding"))
        .alias("embedding")
    )
    bad.write_parquet(tmp_path / "emb.parquet")
    spill = tmp_path / "spill"
    spill.mkdir()
    with pytest.raises(InputError, match="NaN, inf or missing values"):
        score_embeddings(
            pl.scan_parquet(tmp_path / "emb.parquet"), reducer="none", memory_limit=50_000, spill_dir=spill
        )
    assert list(spill.iterdir()) == []


def test_a_local_parquet_file_is_spilled_by_a_streaming_reader_within_its_row_groups(
    tmp_path: Path, no_base, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One row group of every row, spilled in batches smaller than it by pyarrow's streaming reader
    (polars would decode the group whole first): the in-memory output. A file cut short is a
    one-line error naming it, with nothing left in the spill folder."""
    points = _points(3000, 2)
    path = tmp_path / "emb.parquet"
    points.write_parquet(path, row_group_size=points.height)
    options = {"reducer": "none", "difficulty": _difficulty(points), "jobs": 1}
    whole, _ = score_embeddings(points, **options)

    def not_polars(*args, **kwargs):
        raise AssertionError("polars read the embeddings")

    seen: list[int] = []
    real = SpilledRows.append
    monkeypatch.setattr(pl.LazyFrame, "collect_batches", not_polars)
    monkeypatch.setattr(SpilledRows, "append", lambda self, rows: (seen.append(len(rows)), real(self, rows)))
    spill = tmp_path / "spill"
    spill.mkdir()
    parts, _ = score_embeddings(
        pl.scan_parquet(path), memory_limit=50_000, spill_dir=spill, source=str(path), **options
    )
    assert len(seen) > 1 and max(seen) < points.height
    _assert_same(whole, parts)
    data = path.read_bytes()
    cut = tmp_path / "cut.parquet"
    cut.write_bytes(data[: len(data) // 2] + data[-8:])  # the footer's length and magic kept
    with pytest.raises(InputError, match=r"cut\.parquet: ") as error:
        score_embeddings(
            pl.scan_parquet(cut), memory_limit=50_000, spill_dir=spill, source=str(cut), **options
        )
    assert "\n" not in str(error.value)
    import pyarrow as pa
    import pyarrow.parquet as pq

    def broken(*args, **kwargs):
        raise pa.ArrowInvalid("Couldn't deserialize thrift: TProtocolException: Invalid data\nmore")

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", broken)  # the embeddings' read fails alone
    with pytest.raises(InputError, match=r"emb\.parquet: cannot read: Couldn't deserialize thrift") as error:
        score_embeddings(
            pl.scan_parquet(path), memory_limit=50_000, spill_dir=spill, source=str(path), **options
        )
    assert "\n" not in str(error.value)
    assert list(spill.iterdir()) == []


def test_ray_tasks_read_runs_of_whole_row_groups_or_slices_within_their_size() -> None:
    """The parts Ray tasks read (`kscore.plan.embeddings_ray`): every row once, in order; a part
    holds consecutive row groups up to PART_BYTES of embeddings, a larger row group alone."""
    from kscore.plan import embeddings_ray as plan_ray

    per_row = 8 * 4
    groups = [1000, 1000, 3000, 500, 500, 500, 0, 7000]
    limit = plan_ray.PART_BYTES // per_row
    parts = plan_ray.parts_of_groups([limit // 2, limit // 2, 3 * limit, *groups], 8)
    sizes = [limit // 2, limit // 2, 3 * limit, *groups]
    assert [g for p in parts for g in p.groups] == list(range(len(sizes)))  # each once, in order
    assert [p.groups for p in parts][:2] == [(0, 1), (2,)]  # two halves fill a part; 3x is alone
    offset = 0
    for part in parts:
        assert part.offset == offset and part.length == sum(sizes[g] for g in part.groups)
        assert part.length * per_row <= plan_ray.PART_BYTES or len(part.groups) == 1
        offset += part.length
    assert offset == sum(sizes)
    slices = plan_ray.parts_of_slices(10 * limit + 7, 8)
    assert [s.offset for s in slices] == list(range(0, 10 * limit + 7, limit))
    assert sum(s.length for s in slices) == 10 * limit + 7 and all(s.groups is None for s in slices)


def test_hash_range_tasks_find_the_rows_an_earlier_row_shares_a_hash_with() -> None:
    """What the tasks of `TaskRows.hash_rows` and `equal_hash_pairs` find, run here: each part's
    hashes cut into ranges of hash values and the rows equal to a saved map's fit rows
    (`_hash_part`), each range's rows sharing a hash (`_equal_hashes_in_range`), gathered: the same
    pairs as `equal_hash_pairs` of all the hashes at once, and every row equal to a fit row."""
    from kscore.core.reduction import equal_hash_pairs, row_hashes
    from kscore.plan import embeddings_ray as plan_ray

    rng = np.random.default_rng(3)
    data = rng.integers(0, 4, size=(3000, 5)).astype(np.float32)  # 1024 kinds of row: many repeats
    parts = [plan_ray.EmbeddingPart(start, size) for start, size in ((0, 1000), (1000, 1500), (2500, 500))]
    starts = np.array([0, 1000, 2500, 3000])
    fit = np.stack([data[7] + np.float32(0.5), data[2999]])  # a row found nowhere, a row of the input

    def read(part: plan_ray.EmbeddingPart) -> np.ndarray:
        return data[part.offset : part.offset + part.length]

    cut = [plan_ray._hash_part(read, part, 4, fit) for part in parts]
    assert [c[0][0] for c in cut] == [1000, 1500, 500]
    found = [plan_ray._equal_hashes_in_range(starts[:-1], *(c[1 + r] for c in cut)) for r in range(4)]
    followers, firsts = (np.concatenate([f[k] for f in found]) for k in range(2))
    order = np.argsort(followers)
    expected = equal_hash_pairs(row_hashes(data))
    assert len(expected[0]) > 1000
    assert np.array_equal(followers[order], expected[0]) and np.array_equal(firsts[order], expected[1])
    rows, which = plan_ray._placed(starts, [c[0][1:] for c in cut])
    assert np.array_equal(rows, np.flatnonzero((data == data[2999]).all(axis=1))) and set(which) == {1}


def test_routes_of_ascending_batches_are_runs_of_slots() -> None:
    """Where the transform batches are ascending (cut in the input's order), each part's rows in a
    batch are found by binary search and fill one run of its slots: the same rows, batches and
    slots as looking up every row's batch and slot (the oracle, still used for other orders), with
    no array the input's length. The parts' rows then fill each batch exactly once."""
    from kscore.plan import embeddings_ray as plan_ray

    rng = np.random.default_rng(5)
    count = 5000
    parts = [
        plan_ray.EmbeddingPart(a, b - a) for a, b in ((0, 1200), (1200, 1201), (1201, 4000), (4000, 5000))
    ]
    rows = plan_ray.TaskRows(lambda part: np.empty((part.length, 2), np.float32), parts, 2)
    chosen = np.flatnonzero(rng.random(count) < 0.6)  # e.g. the rows outside the fit sample
    chunks = [chosen[a : a + 700] for a in range(0, len(chosen), 700)]
    chunks.insert(2, chosen[:0])  # an empty batch touches no part
    ascending, oracle = list(rows._routes(chunks)), list(rows._scattered_routes(chunks))
    assert len(ascending) == len(oracle) == len(parts)
    filled = [np.zeros(len(chunk), dtype=int) for chunk in chunks]
    for (local, bounds, touched, slots), oracle_part in zip(ascending, oracle, strict=True):
        o_local, o_bounds, o_touched, o_slots = oracle_part
        assert np.array_equal(local, o_local) and np.array_equal(bounds, o_bounds)
        assert np.array_equal(touched, o_touched) and all(isinstance(at, slice) for at in slots)
        for batch, at, expected in zip(touched, slots, o_slots, strict=True):
            assert np.array_equal(np.arange(len(chunks[batch]))[at], expected)
            filled[batch][at] += 1
    assert all((f == 1).all() for f in filled)
    shuffled = [rng.permutation(chunk) for chunk in chunks]  # not ascending: looked up row by row
    assert not plan_ray._ascending(shuffled) and plan_ray._ascending(chunks)
    routed = list(rows._routes(shuffled))
    assert not any(isinstance(at, slice) for *_, slots in routed for at in slots)
    for (local, bounds, touched, slots), part in zip(routed, parts, strict=True):
        for k, (batch, at) in enumerate(zip(touched, slots, strict=True)):
            assert np.array_equal(shuffled[batch][at], part.offset + local[bounds[k] : bounds[k + 1]])


def test_chunked_rows_read_back_as_the_joined_matrix_would() -> None:
    """Oracle: the chunks joined into one matrix (what `ChunkedRows` saves the copy of)."""
    from kscore.core.reduction import row_hashes
    from kscore.core.spilled_rows import ChunkedRows

    rng = np.random.default_rng(8)
    data = rng.normal(size=(1000, 7)).astype(np.float32)
    rows = ChunkedRows([data[a:b] for a, b in ((0, 300), (300, 310), (310, 1000))])
    assert rows.shape == (1000, 7) and len(rows) == 1000 and rows.dtype == np.float32
    assert np.array_equal(rows.hashes, row_hashes(data))
    index = rng.integers(0, 1000, 400)  # any order, repeats, every chunk
    assert np.array_equal(rows[index], data[index])
    assert np.array_equal(rows[np.arange(320, 900)], data[320:900])  # within one chunk
    assert np.array_equal(rows[5:995:7], data[5:995:7])
    assert rows[np.empty(0, dtype=np.int64)].shape == (0, 7)
    assert np.array_equal(rows.subset(np.array([999, 3, 3]))[np.array([2, 0])], data[[3, 999]])
    with pytest.raises(IndexError):
        rows[np.array([1000])]


@pytest.mark.slow
def test_umap_reads_a_parquet_files_row_groups_in_place_with_the_same_map(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A float32 embedding column of several row groups stays in its chunks: the output equals the
    one from the same table in one chunk (the joined matrix), bitwise; a NaN in a later chunk is
    counted with the others."""
    from kscore.core import reduction
    from kscore.core.spilled_rows import ChunkedRows

    monkeypatch.setattr(reduction, "TRANSFORM_BATCH", 700)
    points = _points(3000, 12, duplicates=40)
    points = points.with_columns(pl.col("embedding").cast(pl.Array(pl.Float32, 12)))
    path = tmp_path / "emb.parquet"
    points.write_parquet(path, row_group_size=800)
    made: list[int] = []
    monkeypatch.setattr(ChunkedRows, "__init__", _counting(ChunkedRows.__init__, made))
    options = {"fit_sample": 1000, "difficulty": _difficulty(points), "jobs": 1}
    chunked, chunked_meta = score_embeddings(pl.scan_parquet(path), **options)
    assert made == [4]  # four row groups, never joined
    whole, whole_meta = score_embeddings(pl.read_parquet(path).rechunk(), **options)
    assert made == [4]
    _assert_same(chunked, whole)
    assert chunked_meta == whole_meta
    values = points.get_column("embedding").to_numpy().copy()
    values[[5, 2500, 2900], 3] = np.nan
    bad = points.with_columns(pl.Series("embedding", values, dtype=pl.Array(pl.Float32, 12)))
    bad.write_parquet(path, row_group_size=800)
    with pytest.raises(InputError, match="3 rows have NaN"):
        score_embeddings(pl.scan_parquet(path), **options)


def _counting(init, made: list[int]):
    def counted(self, chunks):
        made.append(len(chunks))
        return init(self, chunks)

    return counted
