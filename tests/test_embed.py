"""embed-scores over tables: real data (the sample digits), seeded UMAP, and every bad input."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kscore.core.reduction import reduce_to_2d
from kscore.errors import InputError, KscoreWarning
from kscore.jobs.embed_scores import score_embeddings

from .conftest import SAMPLE


@pytest.fixture(scope="module")
def digits_map() -> pl.DataFrame:
    """The sample digits with their UMAP map as a 2D embedding (UMAP runs once per module)."""
    table = pl.read_parquet(SAMPLE / "embeddings.parquet")
    xy, _ = reduce_to_2d(table.get_column("embedding").to_numpy(), reducer="umap", seed=0)
    return table.drop("embedding").with_columns(pl.Series("xy", xy.tolist(), dtype=pl.Array(pl.Float64, 2)))


def class_means(out: pl.DataFrame, score: str) -> pl.DataFrame:
    return out.filter(pl.col(score).is_not_null()).group_by("label").agg(pl.col(score).mean()).sort(score)


@pytest.mark.slow
def test_a_class_absent_from_the_reference_split_is_least_represented(digits_map):
    table = digits_map.filter((pl.col("split") == "train") | (pl.col("label") != 3))
    out, _ = score_embeddings(table, reducer="none")
    assert class_means(out, "representation_score")["label"][0] == 3
    # The score separates the absent class from the others: the chance that a train 3 is less
    # represented than a train point of another class (the AUC of the score).
    train = out.drop_nulls("representation_score")
    absent = train.filter(pl.col("label") == 3)["representation_score"].to_numpy()
    others = train.filter(pl.col("label") != 3)["representation_score"].to_numpy()
    assert (absent[:, None] < others[None, :]).mean() >= 0.9


@pytest.mark.slow
def test_a_class_made_hard_in_the_reference_split_has_the_highest_potential(digits_map):
    rng = np.random.default_rng(0)
    reference = digits_map.filter(pl.col("split") != "train")
    hard = np.where(reference["label"].to_numpy() == 5, 0.9, 0.05) + rng.uniform(0, 0.05, reference.height)
    difficulty = pl.DataFrame({"id": reference["id"], "difficulty_score": hard})
    out, _ = score_embeddings(digits_map, reducer="none", difficulty=difficulty)
    assert class_means(out, "potential_difficulty_score")["label"][-1] == 5
    assert class_means(out, "local_difficulty")["label"][-1] == 5
    top = (
        out.drop_nulls("potential_difficulty_score")
        .sort("potential_difficulty_score", descending=True)
        .head(40)
    )
    assert (top["label"] == 5).mean() >= 0.9
    assert (
        out.filter(pl.col("split") != "train")["potential_difficulty_score"].null_count() == reference.height
    )


@pytest.mark.slow
def test_seeded_umap_runs_give_identical_numbers():
    data = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    first, params = reduce_to_2d(data, seed=7)
    second, _ = reduce_to_2d(data, seed=7)
    assert np.array_equal(first, second)
    assert params["reducer"] == "umap" and params["seed"] == 7


def small_table(n: int = 40, dims: int = 2, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "id": np.arange(n),
            "split": np.where(np.arange(n) % 2 == 0, "train", "test"),
            "emb": rng.normal(size=(n, dims)).tolist(),
        }
    )


def test_output_keeps_every_row_and_column_and_nulls_reference_scores():
    table = small_table().with_columns(pl.lit("x").alias("note"))
    out, meta = score_embeddings(table, reducer="none")
    assert out.height == table.height
    assert out.columns == [
        "id",
        "split",
        "note",
        "map_x",
        "map_y",
        "representation_score",
        "potential_difficulty_score",
        "local_difficulty",
    ]
    assert out.filter(pl.col("split") == "test")["representation_score"].null_count() == 20
    assert out.filter(pl.col("split") == "train")["representation_score"].null_count() == 0
    assert (
        out.filter(pl.col("split") == "train")["potential_difficulty_score"].null_count() == 20
    )  # no difficulty
    assert meta["rows"] == {"train": 20, "reference": 20, "total": 40}
    kept, _ = score_embeddings(table, reducer="none", keep_embedding=True)
    assert "emb" in kept.columns


def test_prefix_columns_in_natural_order_and_pca():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(60, 12))
    columns = {f"e_{i}": data[:, i] for i in range(12)}
    table = pl.DataFrame({"id": np.arange(60), "split": ["train", "val", "test"] * 20, **columns})
    out, meta = score_embeddings(table, reducer="pca", embedding_prefix="e_")
    assert meta["reducer"]["reducer"] == "pca"
    # oracle: the centred data on its two leading right singular vectors (numpy's SVD; an axis's sign
    # is a convention, so each axis is compared up to its sign)
    centred = data - data.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ axes[:2].T
    for got, want in zip((out["map_x"].to_numpy(), out["map_y"].to_numpy()), expected.T, strict=True):
        sign = np.sign(got @ want)
        assert np.allclose(got, sign * want, rtol=0, atol=1e-9)


def test_train_and_reference_values():
    table = small_table(60).with_columns(pl.Series("split", ["train", "val", "test"] * 20))
    _, meta = score_embeddings(
        table, reducer="none", train_values=["train", "val"], reference_values=["test"]
    )
    assert meta["rows"]["train"] == 40 and meta["rows"]["reference"] == 20


def test_difficulty_warnings():
    table = small_table()
    reference_ids = table.filter(pl.col("split") == "test")["id"]
    zeros = pl.DataFrame({"id": [*reference_ids.to_list(), 999, 1000], "difficulty_score": [0.0] * 22})
    with pytest.warns(KscoreWarning) as caught:
        out, _ = score_embeddings(table, reducer="none", difficulty=zeros)
    assert out.height == table.height
    messages = " | ".join(str(w.message) for w in caught)
    assert "2 ids of the difficulty file are not in the embeddings" in messages
    assert "every reference difficulty is 0" in messages
    assert out.filter(pl.col("split") == "train")["potential_difficulty_score"].to_list() == [0.0] * 20
    partial = pl.DataFrame({"id": reference_ids.head(10), "difficulty_score": np.linspace(0, 1, 10)})
    with pytest.warns(KscoreWarning, match="10 reference rows have no difficulty score"):
        score_embeddings(table, reducer="none", difficulty=partial)


def bad(table: pl.DataFrame, message: str, **kwargs) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KscoreWarning)
        with pytest.raises(InputError, match=message):
            score_embeddings(table, reducer=kwargs.pop("reducer", "none"), **kwargs)


def test_bad_inputs():
    table = small_table()
    bad(table.drop("split"), "missing split column 'split'")
    bad(table, "missing embedding column 'vec'", embedding_col="vec")
    bad(table.with_columns(pl.lit("test").alias("split")), "no train rows")
    bad(table.with_columns(pl.Series("split", ["train"] * 38 + ["test"] * 2)), "2 reference rows: at least 3")
    line = table.with_columns(pl.Series("emb", [[float(i), 2.0 * i] for i in range(40)]))
    bad(line, "reference rows are degenerate")
    same = table.with_columns(pl.Series("emb", [[1.0, 1.0]] * 40))
    bad(same, "reference rows are degenerate")
    ragged = table.with_columns(pl.Series("emb", [[1.0, 2.0]] * 39 + [[1.0, 2.0, 3.0]]))
    bad(ragged, "embeddings of unequal length")
    nan = table.with_columns(pl.Series("emb", [[float("nan"), 1.0]] + [[1.0, float(i)] for i in range(39)]))
    bad(nan, "1 rows have NaN, inf or missing values")
    inf = table.with_columns(
        pl.Series("emb", [[float("inf"), 1.0]] * 3 + [[1.0, float(i)] for i in range(37)])
    )
    bad(inf, "3 rows have NaN, inf or missing values")
    bad(table.with_columns(pl.lit(1).alias("id")), "column 'id' has 40 rows with a duplicated id")
    bad(small_table(dims=5), "needs 2D embeddings; these have 5 dimensions")


def test_reduce_to_2d_passes_2d_through():
    data = np.random.default_rng(0).normal(size=(10, 2))
    out, params = reduce_to_2d(data)
    assert np.array_equal(out, data) and params["reducer"].startswith("none")


def test_embedding_column_must_be_unambiguous():
    table = small_table().with_columns(pl.col("emb").alias("emb2"))
    bad(table, "expected exactly one list/array column")


def test_worker_map_keeps_order_and_cleans_up(tmp_path, monkeypatch):
    import tempfile

    from kscore.engines.local import map_with_shared

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    results = list(map_with_shared(_scaled, range(6), shared=np.arange(3.0), jobs=2))
    assert [r.tolist() for r in results] == [(np.arange(3.0) * i).tolist() for i in range(6)]
    assert list(tmp_path.iterdir()) == []


def _scaled(shared: np.ndarray, factor: int) -> np.ndarray:
    return shared * factor


def test_a_failing_task_stops_the_workers_and_cleans_up(tmp_path, monkeypatch):
    import tempfile

    from kscore.engines.local import map_with_shared

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ZeroDivisionError):
        list(map_with_shared(_divide, [1, 0, 2], shared=1.0, jobs=2))
    assert list(tmp_path.iterdir()) == []


def _divide(shared: float, value: int) -> float:
    return shared / value


def test_difficulty_on_too_few_points_gives_a_null_potential_and_a_warning():
    table = small_table()
    reference_ids = table.filter(pl.col("split") == "test")["id"].to_list()
    difficulty = pl.DataFrame({"id": reference_ids, "difficulty_score": [1.0, 1.0] + [0.0] * 18})
    with pytest.warns(KscoreWarning, match="fewer than 3 points or on a line"):
        out, _ = score_embeddings(table, reducer="none", difficulty=difficulty)
    train = out.filter(pl.col("split") == "train")
    assert train["potential_difficulty_score"].null_count() == 20
    assert train["local_difficulty"].null_count() == 0


def test_distinct_rows_groups_equal_rows_and_reads_minus_zero_as_zero():
    from kscore.core.reduction import distinct_rows, row_hashes

    rng = np.random.default_rng(1)
    data = rng.normal(size=(300, 6)).astype(np.float32)
    data[10] = data[3]
    data[200] = data[3]
    data[50] = 0.0
    data[51] = -0.0
    leaders, index = distinct_rows(data, block=64)  # several blocks
    assert len(leaders) == 297
    assert index[3] == index[10] == index[200] and index[50] == index[51]
    assert np.array_equal(data[leaders][index], data + np.float32(0))
    assert distinct_rows(rng.normal(size=(100, 3))) is None
    # each group's first row, in the input's order (transform batches are runs of the input)
    assert np.array_equal(leaders, np.setdiff1d(np.arange(300), [10, 200, 51]))
    by_hash, hash_index = distinct_rows(data, block=64, order="hash")  # as maps of 0.8.7 and earlier
    assert np.array_equal(np.sort(by_hash), leaders)
    assert np.all(np.diff(row_hashes(data[by_hash])[:-1].astype(np.float64)) >= 0)
    assert np.array_equal(data[by_hash][hash_index], data + np.float32(0))
    with pytest.raises(ValueError, match="order"):
        distinct_rows(data, order="random")


def test_repeated_rows_are_distinct_rows_followers_and_their_first_rows_with_no_array_the_rows_length():
    """`repeated_rows` is what `distinct_rows` leaves out (oracle: its leaders and index), and the
    first rows are their `Complement`; a collision's rows come out in order too."""
    from kscore.core.reduction import Complement, distinct_rows, repeated_rows

    rng = np.random.default_rng(4)
    data = rng.normal(size=(500, 4)).astype(np.float32)
    data[rng.choice(500, 60)] = data[rng.choice(500, 60)]
    data[7], data[8] = 0.0, -0.0
    leaders, index = distinct_rows(data, block=64)
    followers, firsts = repeated_rows(data, block=64)
    assert np.array_equal(followers, np.setdiff1d(np.arange(500), leaders))
    assert np.array_equal(firsts, leaders[index[followers]]) and np.all(firsts < followers)
    assert np.array_equal(Complement(500, followers)[:], leaders)
    assert repeated_rows(rng.normal(size=(50, 3))) is None


@pytest.mark.parametrize(("width", "dtype"), [(384, np.float32), (3, np.float32), (5, np.float64)])
def test_row_hashes_are_the_random_linear_hash_of_each_rows_words(width, dtype):
    """Oracle: each row's bytes (-0.0 as 0.0, zero-padded to 8-byte words) times the seeded odd
    multipliers, summed in Python integers modulo 2**64."""
    from kscore.core.reduction import row_hashes

    rng = np.random.default_rng(7)
    rows = rng.normal(size=(40, width)).astype(dtype)
    rows[::5, 0] = -0.0
    raw = (rows + dtype(0)).tobytes()
    row_bytes = width * np.dtype(dtype).itemsize
    pad = (-row_bytes) % 8
    multipliers = (
        np.random.default_rng(0x5EED).integers(1, 2**63, size=(row_bytes + pad) // 8, dtype=np.uint64) | 1
    )
    expected = []
    for r in range(len(rows)):
        padded = raw[r * row_bytes : (r + 1) * row_bytes] + bytes(pad)
        words = np.frombuffer(padded, dtype=np.uint64)
        expected.append(sum(int(w) * int(m) for w, m in zip(words, multipliers, strict=True)) % 2**64)
    assert row_hashes(rows, block=16).tolist() == expected


def test_a_hash_collision_never_merges_different_rows(monkeypatch):
    from kscore.core import reduction as embedding

    data = np.arange(12, dtype=np.float64).reshape(6, 2)
    data[4] = data[1]
    monkeypatch.setattr(embedding, "row_hashes", lambda rows, block=0: np.zeros(len(rows), dtype=np.uint64))
    leaders, index = embedding.distinct_rows(data)
    assert len(leaders) == 5 and index[1] == index[4]
    assert np.array_equal(data[leaders][index], data)
    followers, firsts = embedding.repeated_rows(data)  # in order, though found apart
    assert followers.tolist() == [4] and firsts.tolist() == [1]


@pytest.mark.slow
def test_identical_embeddings_get_identical_umap_coordinates():
    from sklearn.datasets import load_digits

    data = load_digits().data[:400].astype(np.float32)
    data[1] = data[0]
    data[399] = data[0]
    coordinates, params = reduce_to_2d(data, reducer="umap", seed=0)
    assert params["distinct_rows"] == 398
    assert np.array_equal(coordinates[0], coordinates[1]) and np.array_equal(coordinates[0], coordinates[399])


@pytest.mark.slow  # umap's own init_graph_transform compiles in numba: about 20 s
def test_graph_init_is_umaps_bitwise_and_is_used_by_transforms(monkeypatch):
    import scipy.sparse
    import umap.umap_ as umap_module

    from kscore.core import reduction as embedding

    rng = np.random.default_rng(4)
    positions = rng.normal(size=(300, 2)).astype(np.float32)
    dense = rng.uniform(size=(400, 300)).astype(np.float32) * (rng.uniform(size=(400, 300)) < 0.05)
    dense[7] = 0.0  # no neighbour: NaN
    dense[8, [3, 50, 120]] = [0.5, 1.0, 0.25]  # a strength of 1 after another: that neighbour's place
    dense[9, :20] = rng.uniform(size=20).astype(np.float32)  # more than 8 neighbours (pairwise sums)
    graph = scipy.sparse.csr_matrix(dense)
    graph.eliminate_zeros()
    expected = umap_module.init_graph_transform(graph, positions)
    got = embedding.init_graph_transform(graph, positions)
    assert np.array_equal(got, expected, equal_nan=True)
    assert np.isnan(got[7]).all() and np.array_equal(got[8], positions[50])

    calls = []
    monkeypatch.setattr(
        embedding, "init_graph_transform", lambda g, e: calls.append(1) or expected[: g.shape[0]]
    )

    class Model:
        def transform(self, batch):
            return umap_module.init_graph_transform(graph, positions)

    embedding._transform(Model(), np.zeros((1, 2)))
    assert calls == [1]
    assert umap_module.init_graph_transform is not embedding.init_graph_transform  # restored


@pytest.mark.slow
def test_seeded_umap_gives_the_same_map_on_one_and_on_two_workers(monkeypatch):
    """Beyond --fit-sample, batches go to worker processes (loky): the same numbers as in one.

    The fit sample is above umap's small-data limit (4096 rows), so the workers search neighbours
    with kscore's index, pickled with the model."""
    import kscore.core.reduction as embedding

    monkeypatch.setattr(embedding, "TRANSFORM_BATCH", 600)
    rng = np.random.default_rng(0)
    data = (
        rng.normal(scale=6.0, size=(8, 24))[rng.integers(0, 8, 7000)] + rng.normal(size=(7000, 24))
    ).astype(np.float32)
    two, params = reduce_to_2d(data, fit_sample=4500, seed=3, jobs=2)
    one, _ = reduce_to_2d(data, fit_sample=4500, seed=3, jobs=1)
    assert params["fit_rows"] == 4500 and params["transform_batch"] == 600 and "transform_neighbors" in params
    assert np.array_equal(one, two)


@pytest.mark.parametrize("fails", [False, True])
def test_workers_are_killed_only_after_an_error(monkeypatch, fails):
    """Killing loky workers that were done leaked two semaphores: Python's resource tracker then
    printed a warning on stderr when kscore exited."""
    from joblib.externals.loky import ProcessPoolExecutor

    from kscore.engines.local import map_with_shared

    calls = []
    real_shutdown = ProcessPoolExecutor.shutdown

    def shutdown(self, wait=True, kill_workers=False):
        calls.append({"wait": wait, "kill_workers": kill_workers})
        return real_shutdown(self, wait=wait, kill_workers=kill_workers)

    monkeypatch.setattr(ProcessPoolExecutor, "shutdown", shutdown)
    items = [1, 0, 2] if fails else [1, 2, 4]
    if fails:
        with pytest.raises(ZeroDivisionError):
            list(map_with_shared(_divide, items, shared=1.0, jobs=2))
    else:
        assert list(map_with_shared(_divide, items, shared=1.0, jobs=2)) == [1.0, 0.5, 0.25]
    assert calls[0] == {"wait": False, "kill_workers": fails}  # done workers exit while kscore goes on


def test_the_command_line_fits_umap_on_the_librarys_default_sample():
    """The command spells the default out (importing numpy for it would slow `kscore --help`)."""
    import inspect

    from kscore.cli import commands
    from kscore.core.reduction import FIT_SAMPLE

    assert inspect.signature(commands.embed_scores).parameters["fit_sample"].default == FIT_SAMPLE


def test_umaps_uncached_numba_functions_are_cached():
    """umap compiles these in every process (10 s each time) unless kscore caches them; a rename in a
    later umap would silently bring the cost back."""
    import umap.distances
    import umap.layouts
    import umap.umap_
    from numba.core.caching import NullCache

    from kscore.core.reduction import cache_umap_kernels

    cache_umap_kernels("cosine")
    for function in (
        umap.umap_.smooth_knn_dist,
        umap.umap_.compute_membership_strengths,
        umap.layouts._nb_optimize_layout_euclidean_single_epoch,
        umap.layouts._nb_optimize_layout_euclidean_single_epoch_parallel,
        umap.distances.named_distances["cosine"],
    ):
        assert not isinstance(function._cache, NullCache), function


LAZY_PROBE = """
import numba, numpy as np
from kscore.core.reduction import compiled_when_used
with compiled_when_used():
    import umap
import pynndescent.rp_trees as trees, umap.utils as utils
never_called = [trees.make_euclidean_tree, trees.make_angular_tree, trees.make_hub_euclidean_tree]
assert all(not f.overloads for f in never_called), "compiled at import"
assert not utils.tau_rand_int.overloads and not utils.tau_rand.overloads
eager_int = numba.njit("i4(i8[:])")(utils.tau_rand_int.py_func)
eager_float = numba.njit("f4(i8[:])")(utils.tau_rand.py_func)

@numba.njit
def draws(state, n):  # a numba caller: typed through the lazy function's declared signature
    out = np.empty(n, np.int64)
    for i in range(n):
        out[i] = utils.tau_rand_int(state)
    return out

@numba.njit
def eager_draws(state, n):
    out = np.empty(n, np.int64)
    for i in range(n):
        out[i] = eager_int(state)
    return out

seeds = np.array([-7, 2**40 + 3, 12345], dtype=np.int64)
a, b = seeds.copy(), seeds.copy()
assert np.array_equal(draws(a, 1000), eager_draws(b, 1000)) and np.array_equal(a, b)
assert [utils.tau_rand(a) for _ in range(50)] == [eager_float(b) for _ in range(50)]
for lazy, eager in ((utils.tau_rand_int, eager_int), (utils.tau_rand, eager_float)):
    assert lazy.nopython_signatures == eager.nopython_signatures, lazy.nopython_signatures
    try:
        lazy(np.zeros(3, np.float64))  # another type: refused, as for numba's own declared signatures
    except TypeError:
        pass
    else:
        raise AssertionError("compiled a new signature")
assert all(not f.overloads for f in never_called), "compiled though never called"
print("ok")
"""


@pytest.mark.slow  # several seconds: run by .ci/run's second pass (the default run stays under 5 min)
def test_umap_imports_without_compiling_and_compiles_its_declared_signatures_when_used(tmp_path):
    """compiled_when_used: pynndescent's tree builders (never called on small inputs) are not
    compiled at import; umap's random integers compile at first use for exactly the declared
    signature, and draw the same numbers as numba's eager compile, from Python and from numba."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "KSCORE_CACHE_DIR": str(tmp_path), "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    result = subprocess.run(
        [sys.executable, "-c", LAZY_PROBE], capture_output=True, text=True, env=env, timeout=600
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-3000:]


def test_compiled_when_used_leaves_a_numba_it_does_not_know_alone(monkeypatch):
    """A numba whose `_jit` takes other parameters is not patched: its functions compile as numba
    decides, never through a wrapper written for another signature."""
    from numba.core import decorators

    from kscore.core.reduction import compiled_when_used

    def other_jit(sigs, options):  # not the signature the wrapper was written for
        raise AssertionError("not called here")

    monkeypatch.setattr(decorators, "_jit", other_jit)
    with compiled_when_used():
        assert decorators._jit is other_jit
    assert decorators._jit is other_jit
    monkeypatch.undo()
    real = decorators._jit
    with compiled_when_used():
        assert decorators._jit is not real  # the numba it was written for: patched while inside
    assert decorators._jit is real


def test_an_array_column_in_several_chunks_is_read_whole_and_checked_in_every_chunk():
    from kscore.errors import InputError
    from kscore.jobs.embed_scores import embedding_matrix

    rng = np.random.default_rng(5)
    values = rng.normal(size=(300, 4)).astype(np.float32)
    parts = [pl.DataFrame({"e": pl.Series(values[a:b])}) for a, b in ((0, 100), (100, 250), (250, 300))]
    table = pl.concat(parts, rechunk=False)
    assert table.n_chunks() == 3
    got = embedding_matrix(table, ["e"], np.float32)
    assert got.dtype == np.float32 and np.array_equal(got, values)
    assert np.array_equal(embedding_matrix(table, ["e"]), values.astype(np.float64))
    values[260, 2] = np.inf
    bad = pl.concat([parts[0], parts[1], pl.DataFrame({"e": pl.Series(values[250:])})], rechunk=False)
    with pytest.raises(InputError, match="1 rows have NaN, inf or missing values"):
        embedding_matrix(bad, ["e"], np.float32)


def test_a_dataset_output_is_cut_into_parts_of_part_rows(tmp_path, monkeypatch):
    """`-o DIR/`: parts of `PART_ROWS` rows in the input's order (the last one shorter), each with
    the run's metadata, the manifest beside them; together they are the one-file output."""
    import json

    import kscore.io
    from kscore.jobs.embed_scores import write_embed_scores

    monkeypatch.setattr(kscore.io, "PART_ROWS", 150)
    one_file = tmp_path / "one.parquet"
    write_embed_scores(SAMPLE / "embeddings.parquet", one_file, reducer="pca")
    whole = pl.read_parquet(one_file)
    write_embed_scores(SAMPLE / "embeddings.parquet", f"{tmp_path}/parts/", reducer="pca")
    parts = sorted((tmp_path / "parts").glob("part-*.parquet"))
    heights = [pl.read_parquet(part).height for part in parts]
    assert len(parts) == -(-whole.height // 150) > 2
    assert heights[:-1] == [150] * (len(parts) - 1) and sum(heights) == whole.height
    assert pl.concat([pl.read_parquet(part) for part in parts]).equals(whole)
    manifest = json.loads((tmp_path / "parts" / kscore.io.MANIFEST).read_text())
    assert all(kscore.io.read_kscore_metadata(part) == manifest for part in parts)
    assert manifest["rows"] == kscore.io.read_kscore_metadata(one_file)["rows"]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(min_value=0, max_value=3000).flatmap(
        lambda n: st.tuples(
            st.just(n),
            st.sets(st.integers(min_value=0, max_value=max(n - 1, 0)), max_size=n).map(sorted),
            st.integers(min_value=1, max_value=400),
        )
    )
)
def test_rest_batches_are_the_batches_of_the_rows_outside_the_sample(case):
    """`RestBatches`, made batch by batch from the sample alone, are `_batched` of the set
    difference: the same rows in the same batches (empty sample, all rows sampled, one batch).
    Their `Complement` gives the rows at any places."""
    from kscore.core.reduction import Complement, RestBatches

    n, sample, size = case
    sample = np.array(sample if n else [], dtype=np.int64)
    rest = np.setdiff1d(np.arange(n), sample, assume_unique=True)
    expected = [rest[start : start + size] for start in range(0, len(rest), size)]
    batches = RestBatches(n, sample, size)
    assert len(batches) == len(expected)
    assert all(np.array_equal(a, b) for a, b in zip(batches, expected, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(batches[1:3], expected[1:3], strict=True))
    if expected:
        assert np.array_equal(batches[-1], expected[-1])
    rows = Complement(n, sample)  # the batches' rows, at any places
    assert len(rows) == len(rest) and np.array_equal(rows[:], rest)
    places = np.arange(len(rest))[::-3]
    assert np.array_equal(rows[places], rest[places])
    with pytest.raises(IndexError):
        rows[np.array([len(rest)])]
