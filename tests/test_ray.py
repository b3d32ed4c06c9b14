"""The ray engine against the local one, on a real two-node Ray cluster started on this machine.

The cluster (`ray.cluster_utils.Cluster`: a head and one more node, one CPU each, on this machine) is
started once for the module and stopped at its end. Outputs must equal the local engine's: bitwise
for difficulty, the same map for embed-scores.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from tests.conftest import require

ray = require("ray")

import kscore.plan.difficulty as partitioned  # noqa: E402
from kscore.errors import InputError  # noqa: E402
from kscore.jobs.difficulty import write_difficulty_scores  # noqa: E402
from kscore.jobs.embed_scores import write_embed_scores  # noqa: E402
from tests.test_partitioned import (  # noqa: E402
    _assert_same_file,
    _assert_same_rows,
    _generate,
    _leftovers,
    _standard,
    _write_inputs,
    interrupt_after_stage,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    # Each node on this machine's own address: Ray 2.60's head does not come up with
    # node_ip_address="127.0.0.1" where the machine has another address (its driver looks there).
    local = {"num_cpus": 1, "object_store_memory": 150 * 2**20}
    two_nodes = Cluster(initialize_head=True, head_node_args=local)
    two_nodes.add_node(**local)
    two_nodes.wait_for_nodes(timeout=60)
    ray.init(address=two_nodes.address, logging_level="ERROR", log_to_driver=False)
    yield two_nodes
    ray.shutdown()
    two_nodes.shutdown()


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plan 3000-row inputs as if they were large: many id ranges, each model read in slices."""
    monkeypatch.setattr(partitioned, "BASE_BYTES", 0)
    monkeypatch.setattr(partitioned, "_MIN_BATCH", 700)


def _both(tmp_path: Path, paths: dict[str, Path], standard, explain: bool = False, limit: str = "400KB"):
    local = tmp_path / "local.parquet"
    on_ray = tmp_path / "ray.parquet"
    stages: dict[str, int] = {}

    def progress(stage: str, done: int, total: int) -> None:
        stages[stage] = total

    write_difficulty_scores(paths, standard, local, explain=explain, memory_limit="64GiB")
    write_difficulty_scores(
        paths, standard, on_ray, explain=explain, memory_limit=limit, engine="ray", progress=progress
    )
    if partitioned._MIN_BATCH == 700:  # small_batches took effect: several id ranges ran as tasks
        assert stages.get("score id ranges (ray)", 0) > 1, stages
    return local, on_ray


@pytest.mark.parametrize(
    ("kind", "normalization", "scope", "task"),
    [
        ("dense", "minmax", "per_model", False),
        ("string", "rank", "joint", False),
        ("mixed", "rank", "per_model", True),
        ("sparse", "minmax", "joint", True),
    ],
)
def test_ray_difficulty_equals_the_local_engine(
    tmp_path: Path, cluster, small_batches, kind, normalization, scope, task
) -> None:
    paths = _write_inputs(tmp_path, kind)
    standard = _standard(normalization, scope, task)
    local, on_ray = _both(tmp_path, paths, standard, explain=task)
    _assert_same_file(local, on_ray)


@pytest.mark.parametrize(
    ("kind", "normalization", "scope"), [("dense", "minmax", "per_model"), ("sparse", "rank", "joint")]
)
def test_ray_tasks_write_a_datasets_parts_and_the_driver_only_its_manifest(
    tmp_path: Path, cluster, small_batches, monkeypatch, kind, normalization, scope
) -> None:
    """`-o DIR/` on Ray: each score task writes its id range's part and sums it up; the driver
    writes no part (its Parquet writer fails here) and builds the summary from the tasks' pieces.
    The rows equal the local engine's file bitwise, the manifest its metadata, and the summary
    (exact quantiles, the hardest rows, the accuracy) the local engine's."""
    paths = _write_inputs(tmp_path, kind)
    standard = _standard(normalization, scope, True)
    local = tmp_path / "local.parquet"
    expected = write_difficulty_scores(paths, standard, local, memory_limit="64GiB", top=5)

    def no_part_here(*args, **kwargs):
        raise AssertionError("the driver wrote a Parquet file")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", no_part_here)
    out = tmp_path / "on_ray"
    got = write_difficulty_scores(paths, standard, f"{out}/", memory_limit="400KB", engine="ray", top=5)
    monkeypatch.undo()
    parts = sorted(out.glob("part-*.parquet"))
    assert len(parts) > 1
    _assert_same_rows(pl.read_parquet(local), pl.read_parquet(parts))
    from kscore.io import read_kscore_metadata

    assert read_kscore_metadata(out) == read_kscore_metadata(local)
    assert {k: v for k, v in got.items() if k != "output"} == {
        k: v for k, v in expected.items() if k != "output"
    }


def test_ray_difficulty_of_csv_inputs_read_whole_equals_local(tmp_path: Path, cluster, small_batches) -> None:
    paths = _write_inputs(tmp_path, "dense", fmt="csv")
    local, on_ray = _both(tmp_path, paths, _standard("minmax", "per_model", False))
    _assert_same_file(local, on_ray)


@pytest.mark.parametrize("scope", ["joint", "per_model"])
def test_ray_difficulty_on_a_saved_scale_equals_local_clamped_values_included(
    tmp_path: Path, cluster, small_batches, scope: str
) -> None:
    import warnings

    standard = _standard("minmax", scope, True)
    first = tmp_path / "first.parquet"
    write_difficulty_scores(_write_inputs(tmp_path, "dense"), standard, first)
    later = tmp_path / "later"
    later.mkdir()
    paths = {}
    for name, path in _write_inputs(later, "dense").items():  # the next round: larger losses
        pl.read_parquet(path).with_columns(pl.col("loss") * 2).write_parquet(path)
        paths[name] = path
    outs, messages = {}, {}
    for engine in ("local", "ray"):
        outs[engine] = tmp_path / f"{engine}.parquet"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            write_difficulty_scores(
                paths, standard, outs[engine], memory_limit="400KB", engine=engine, scale_from=first
            )
        messages[engine] = sorted(str(w.message) for w in caught)
    assert [m for m in messages["ray"] if "'loss'" in m and "clamped" in m]
    assert messages["local"] == messages["ray"]
    _assert_same_file(outs["local"], outs["ray"])


def _stages_of(paths, standard, out, **options) -> dict[str, int]:
    stages: dict[str, int] = {}
    write_difficulty_scores(
        paths, standard, out, engine="ray", progress=lambda s, d, t: stages.update({s: t}), **options
    )
    return stages


def test_a_single_file_output_that_fits_memory_is_scored_in_one_task_as_locally(
    tmp_path: Path, cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its rows pass through the driver either way: the job runs in memory on a node (the driver's
    scoring fails here), bitwise the local engine's file and summary."""
    import kscore.core.difficulty

    paths = _write_inputs(tmp_path, "mixed")
    standard = _standard("rank", "per_model", True)
    local, on_ray = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    expected = write_difficulty_scores(paths, standard, local, top=5)

    def not_here(*args, **kwargs):
        raise AssertionError("the driver scored the models")

    monkeypatch.setattr(kscore.core.difficulty, "score_in_memory", not_here)
    stages: dict[str, int] = {}
    got = write_difficulty_scores(
        paths, standard, on_ray, engine="ray", top=5, progress=lambda s, d, t: stages.update({s: t})
    )
    assert "read and score (ray)" in stages and "score id ranges (ray)" not in stages, stages
    _assert_same_file(local, on_ray)
    assert {k: v for k, v in got.items() if k != "output"} == {
        k: v for k, v in expected.items() if k != "output"
    }


def test_a_dataset_output_above_the_limit_or_beyond_every_node_takes_the_partitioned_plan(
    tmp_path: Path, cluster, small_batches, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kscore.engines.ray

    paths = _write_inputs(tmp_path, "dense")
    standard = _standard("minmax", "per_model", False)
    ranged = "score id ranges (ray)"
    assert ranged in _stages_of(paths, standard, f"{tmp_path / 'scores'}/")  # the tasks write parts
    assert ranged in _stages_of(paths, standard, tmp_path / "small.parquet", memory_limit="400KB")
    assert ranged not in _stages_of(paths, standard, tmp_path / "fits.parquet")
    monkeypatch.setattr(kscore.engines.ray, "largest_task_memory", lambda: 1024)
    assert ranged in _stages_of(paths, standard, tmp_path / "no_node.parquet")
    for name in ("small.parquet", "fits.parquet", "no_node.parquet"):
        _assert_same_rows(pl.read_parquet(tmp_path / "fits.parquet"), pl.read_parquet(tmp_path / name))


def _datapoints_case(tmp_path: Path) -> tuple[dict[str, Path], pl.DataFrame]:
    """The models' files without their ground truth, and a datapoints table holding it: every
    scored id and 50 unscored ones, shuffled, with a column of its own."""
    paths = _write_inputs(tmp_path, "dense")
    for path in paths.values():
        pl.read_parquet(path).drop("label").write_parquet(path)
    rng = np.random.default_rng(7)
    ids = rng.permutation(
        pl.concat([pl.read_parquet(p, columns=["id"]) for p in paths.values()])["id"].unique().to_numpy()
    )
    ids = np.concatenate([ids, np.arange(50) + 10**6])
    order = rng.permutation(len(ids))
    datapoints = pl.DataFrame(
        {"id": ids[order], "label": rng.integers(0, 2, len(ids)), "group": [f"g{i % 7}" for i in order]}
    )
    return paths, datapoints


def test_ray_difficulty_with_datapoints_runs_in_a_task_and_equals_the_local_engine(
    tmp_path: Path, cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --datapoints the job runs in memory as one task on a node (the driver's scoring fails
    here): the ground truth taken from the datapoints, their rows, order and columns, bitwise the
    local engine's file, and the same summary."""
    import kscore.core.difficulty

    paths, datapoints = _datapoints_case(tmp_path)
    standard = _standard("rank", "joint", True)
    options = {"datapoints": datapoints, "datapoints_source": "points.parquet", "top": 5}
    local, on_ray = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    expected = write_difficulty_scores(paths, standard, local, **options)

    def not_here(*args, **kwargs):
        raise AssertionError("the driver scored the models")

    monkeypatch.setattr(kscore.core.difficulty, "score_in_memory", not_here)
    got = write_difficulty_scores(paths, standard, on_ray, engine="ray", **options)
    _assert_same_file(local, on_ray)
    assert pl.read_parquet(on_ray)["id"].to_list() == datapoints["id"].to_list()
    assert {k: v for k, v in got.items() if k != "output"} == {
        k: v for k, v in expected.items() if k != "output"
    }


def test_datapoints_missing_a_scored_id_on_ray_is_an_input_error_and_writes_nothing(
    tmp_path: Path, cluster
) -> None:
    paths, datapoints = _datapoints_case(tmp_path)
    missing = datapoints.filter(pl.col("id") != 17)
    with pytest.raises(
        InputError, match=r"results_a\.parquet: 1 ids are missing from --datapoints \(e\.g\. \[17\]\)"
    ):
        write_difficulty_scores(
            paths, _standard("minmax", "per_model", True), tmp_path / "ray.parquet", engine="ray",
            datapoints=missing,
        )  # fmt: skip
    assert not (tmp_path / "ray.parquet").exists()
    assert not _leftovers(tmp_path)


def test_a_bad_value_read_by_a_ray_task_is_exit_2_naming_the_file_and_node(
    tmp_path: Path, cluster, small_batches
) -> None:
    paths = _write_inputs(tmp_path, "dense")
    frame = pl.read_parquet(paths["b"])
    frame = frame.with_columns(
        pl.when(pl.col("id") == 2500).then(float("inf")).otherwise(pl.col("recall")).alias("recall")
    )
    frame.write_parquet(paths["b"])
    with pytest.raises(InputError, match=r"results_b\.parquet.*infinite"):
        _both(tmp_path, paths, _standard("minmax", "per_model", False))
    assert not (tmp_path / "ray.parquet").exists()


def _kill_once(marker: str, original):
    """`original` whose first call kills its own worker process (a node losing a worker)."""

    def call_or_die(*args, **kwargs):
        if not os.path.exists(marker):
            Path(marker).touch()
            os._exit(1)
        return original(*args, **kwargs)

    return call_or_die


def test_a_killed_worker_is_retried_and_the_output_is_the_same(
    tmp_path: Path, cluster, small_batches, monkeypatch
) -> None:
    import cloudpickle

    from kscore.plan import difficulty_ray

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this file
    marker = tmp_path / "killed"
    monkeypatch.setattr(difficulty_ray, "read_slice", _kill_once(str(marker), difficulty_ray.read_slice))
    paths = _write_inputs(tmp_path, "dense")
    local, on_ray = _both(tmp_path, paths, _standard("rank", "joint", False))
    assert marker.exists()  # a worker did die
    _assert_same_file(local, on_ray)


def test_a_worker_killed_under_the_single_task_is_retried_and_the_output_is_the_same(
    tmp_path: Path, cluster, monkeypatch
) -> None:
    import cloudpickle

    from kscore.jobs import difficulty as job

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    marker = tmp_path / "killed"
    monkeypatch.setattr(job, "score_on_a_node", _kill_once(str(marker), job.score_on_a_node))
    paths = _write_inputs(tmp_path, "sparse")
    standard = _standard("rank", "joint", True)
    local = tmp_path / "local.parquet"
    write_difficulty_scores(paths, standard, local)
    stages = _stages_of(paths, standard, tmp_path / "ray.parquet")
    assert "read and score (ray)" in stages and marker.exists()  # one task, and its worker did die
    _assert_same_file(local, tmp_path / "ray.parquet")


@pytest.mark.parametrize(("reducer", "dim"), [("umap", 8), ("none", 2)])
def test_ray_embed_scores_equal_the_local_engine(
    tmp_path: Path, cluster, reducer: str, dim: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above 4096 rows with UMAP, so the fitted model travels to the actors through the object store."""
    from kscore.engines import ray as engine_module

    sent = []
    original = engine_module.map_with_shared
    chunked = engine_module.map_chunks

    def spy(func, items, shared, jobs, kept=False):
        sent.append(type(getattr(shared, "model", shared)).__name__)  # the fitted model, in its wrapper
        return original(func, items, shared, jobs, kept)

    def spy_chunks(func, shared, parts, kept=False):
        sent.append(func.__name__)
        return chunked(func, shared, parts, kept)

    monkeypatch.setattr(engine_module, "map_with_shared", spy)
    monkeypatch.setattr(engine_module, "map_chunks", spy_chunks)
    rng = np.random.default_rng(3)
    rows = 5000
    centers = rng.normal(0, 4, (6, dim))
    data = centers[rng.integers(0, 6, rows)] + rng.normal(0, 1, (rows, dim))
    split = np.where(rng.random(rows) < 0.6, "train", "val")
    table = pl.DataFrame(
        {"id": np.arange(rows), "split": split, "embedding": pl.Series(data).reshape((rows, dim))}
    )
    path = tmp_path / "emb.parquet"
    table.write_parquet(path)
    scored = table.filter(pl.col("split") == "val").select(
        "id", pl.lit(rng.random(rows)).head(int((split == "val").sum())).alias("difficulty_score")
    )
    scored_path = tmp_path / "difficulty.parquet"  # scanned on Ray, then read here for one output file
    scored.write_parquet(scored_path)
    outputs = {}
    for engine in ("local", "ray"):
        outputs[engine] = tmp_path / f"{engine}.parquet"
        write_embed_scores(
            path, outputs[engine], difficulty=scored_path, reducer=reducer, fit_sample=1000, engine=engine
        )
    # The UMAP transforms ran on the actors, and every pass of the KDE over the points as tasks:
    # the moments of both kernels, the bounds, then the transforms (one shared pair).
    kde = ["_sums_chunk", "_centred_chunk", "_sums_chunk", "_centred_chunk", "_bounds_chunk"]
    kde += ["_spread_chunk", "_evaluate_chunk"]
    assert sent == (["UMAP", *kde] if reducer == "umap" else kde)
    local, on_ray = (pl.read_parquet(outputs[e]) for e in ("local", "ray"))
    assert local.columns == on_ray.columns
    assert "potential_difficulty_score" in local.columns
    for column in ("map_x", "map_y"):
        assert np.array_equal(local[column].to_numpy(), on_ray[column].to_numpy()), column
    for column in ("representation_score", "local_difficulty", "potential_difficulty_score"):
        x, y = local[column].to_numpy(), on_ray[column].to_numpy()
        assert np.array_equal(np.isnan(x), np.isnan(y)), column
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=0, equal_nan=True, err_msg=column)


def test_a_saved_map_places_rows_on_ray_as_on_the_local_engine(tmp_path: Path, cluster) -> None:
    """Rows beyond the map's fit sample are transformed by Ray actors from the loaded map: the same
    coordinates as the local engine's, and as the run that saved the map."""
    rng = np.random.default_rng(4)
    rows, dim = 5000, 8
    centers = rng.normal(0, 4, (6, dim))
    data = centers[rng.integers(0, 6, rows)] + rng.normal(0, 1, (rows, dim))
    split = np.where(rng.random(rows) < 0.6, "train", "val")
    table = pl.DataFrame({"id": np.arange(rows), "split": split, "embedding": pl.Series(data)})
    path = tmp_path / "emb.parquet"
    table.write_parquet(path)
    map_file = tmp_path / "map.parquet"
    saving = tmp_path / "saving.parquet"
    write_embed_scores(path, saving, fit_sample=1000, on_fit=None)  # the plain run, for reference
    import kscore

    kscore.embed_scores(path, tmp_path / "saved.parquet", fit_sample=1000, save_map=map_file)
    outputs = {}
    for engine in ("local", "ray"):
        outputs[engine] = tmp_path / f"{engine}.parquet"
        kscore.embed_scores(path, outputs[engine], saved_map=map_file, engine=engine)
    maps = [pl.read_parquet(p).select("map_x", "map_y") for p in (saving, outputs["local"], outputs["ray"])]
    assert maps[0].equals(maps[1]) and maps[1].equals(maps[2])


def _embeddings_with_duplicates(tmp_path: Path, rows: int = 6000, dim: int = 8, repeated: int = 300) -> Path:
    """Clustered embeddings with `repeated` rows repeated elsewhere (some of them in the fit
    sample), in a Parquet file of 800-row groups."""
    rng = np.random.default_rng(5)
    centers = rng.normal(0, 4, (6, dim))
    data = (centers[rng.integers(0, 6, rows)] + rng.normal(0, 1, (rows, dim))).astype(np.float32)
    data[rng.choice(rows, repeated, replace=False)] = data[rng.choice(rows, repeated, replace=False)]
    split = np.where(rng.random(rows) < 0.6, "train", "val")
    table = pl.DataFrame({"id": np.arange(rows), "split": split, "embedding": pl.Series(data)})
    path = tmp_path / "emb.parquet"
    table.write_parquet(path, row_group_size=800)
    return path


@pytest.fixture
def small_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    """6000 rows as if they were many: 700-row transform batches, parts of two 800-row groups."""
    from kscore.core import reduction
    from kscore.plan import embeddings_ray

    monkeypatch.setattr(reduction, "TRANSFORM_BATCH", 700)
    monkeypatch.setattr(embeddings_ray, "PART_BYTES", 1600 * 8 * 4)
    monkeypatch.setattr(embeddings_ray, "RANGE_BYTES", 2000 * 16)  # 3 ranges of hash values


def test_the_batches_outside_the_fit_sample_go_to_the_tasks_as_runs_and_come_back_placed(
    tmp_path: Path, cluster, small_routes
) -> None:
    """The transform batches outside the fit sample (`RestBatches`) reach the routing and placing
    tasks as runs of batches, not row numbers: the batches routed hold the rows the row numbers
    would give (oracle: the matrix itself), and each row's coordinates come back in its part's
    piece at its place (the fit sample's from the driver)."""
    from kscore.core.reduction import RestBatches
    from kscore.jobs import embed_scores as job
    from kscore.plan.embeddings_ray import _BatchRuns

    path = _embeddings_with_duplicates(tmp_path)
    matrix = np.stack(pl.read_parquet(path).get_column("embedding").to_numpy())
    rows, _ = job._task_rows(pl.scan_parquet(path), ["embedding"], 8, 6000, str(path), None)
    sample = np.sort(np.random.default_rng(2).choice(6000, 1000, replace=False))
    batches = RestBatches(6000, sample)
    assert len(batches) == 8 and all(isinstance(r, _BatchRuns) for r, *_ in rows._routes(batches))
    routed, fitted = rows.route(batches, also=sample)
    assert np.array_equal(fitted, matrix[sample])
    for batch, chunk in zip(routed, batches, strict=True):
        assert np.array_equal(batch.with_values(ray.get(batch.object_refs)), matrix[chunk])
    results = [ray.put(np.column_stack([chunk, -chunk]).astype(np.float32)) for chunk in batches]
    placed = rows.placed(batches, results, sample, np.column_stack([-sample, sample]).astype(np.float32))
    x, y = placed.rows(slice(0, 6000))
    expected = np.arange(6000.0)
    expected[sample] *= -1
    assert (
        len(placed.items) == len(rows.parts) and np.array_equal(x, expected) and np.array_equal(y, -expected)
    )


def test_tasks_compare_the_repeated_rows_and_give_them_their_first_rows_coordinates(
    tmp_path: Path, cluster, small_routes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows whose hashes are equal are compared by tasks, in blocks (oracle: `distinct_rows`
    of the matrix itself), and `with_repeats` gives each repeated row its first row's coordinates,
    sent from task to task across parts (oracle: the copy on one machine). The driver reads no row."""
    from kscore.core.reduction import Complement, distinct_rows, repeated_rows
    from kscore.jobs import embed_scores as job
    from kscore.plan.embeddings_ray import TaskRows

    path = _embeddings_with_duplicates(tmp_path)
    matrix = np.stack(pl.read_parquet(path).get_column("embedding").to_numpy())
    rows, _ = job._task_rows(pl.scan_parquet(path), ["embedding"], 8, 6000, str(path), None)
    monkeypatch.setattr(TaskRows, "rows_at", lambda *a: pytest.fail("a row came to the driver"))
    monkeypatch.setattr(rows, "compare_block", 64)  # several blocks of pairs
    followers, firsts = repeated_rows(rows)  # the hashes the tasks made as they read
    leaders, index = distinct_rows(matrix)
    assert np.array_equal(followers, np.setdiff1d(np.arange(6000), leaders))
    assert np.array_equal(firsts, leaders[index[followers]])
    follower_part, first_part = (np.searchsorted(rows.starts, r, side="right") for r in (followers, firsts))
    assert np.any(follower_part != first_part) and len(rows.parts) >= 3  # repeats across parts
    a, b = np.arange(0, 6000, 7), np.arange(0, 6000, 7)[::-1].copy()
    b[:50] = a[:50]  # some pairs equal, the rest not
    assert np.array_equal(rows.equal_rows(a, b), np.all(matrix[a] == matrix[b], axis=1))
    distinct = Complement(6000, followers)
    values = np.column_stack([distinct[:], -distinct[:]]).astype(np.float64)
    placed = rows.subset(distinct).placed([], [], np.arange(len(distinct)), values)
    x, y = rows.with_repeats(placed, followers, firsts).rows(slice(0, 6000))
    expected = np.full(6000, np.nan)
    expected[distinct[:]] = distinct[:]
    expected[followers] = expected[firsts]
    assert np.array_equal(x, expected) and np.array_equal(y, -expected)


@pytest.mark.parametrize("read", ["row groups", "slices"])
def test_ray_tasks_read_the_embeddings_and_the_output_equals_the_local_engine(
    tmp_path: Path, cluster, small_routes, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    """The driver never builds the embedding matrix: tasks hash the rows, send it the fit sample and
    route each transform batch to its actor; the map is bitwise the local engine's. The batches are
    runs of the input's distinct rows, so each part sends its rows to the one or two batches it
    overlaps, not a piece to every batch."""
    from kscore.jobs import embed_scores as job
    from kscore.plan.embeddings_ray import TaskRows

    path = _embeddings_with_duplicates(tmp_path)
    local = tmp_path / "local.parquet"
    write_embed_scores(path, local, fit_sample=1000)
    built, stages, routed = [], set(), []
    original = job.embedding_matrix
    monkeypatch.setattr(job, "embedding_matrix", lambda *a, **k: built.append(1) or original(*a, **k))
    route = TaskRows.route

    def routing(rows: TaskRows, *args: Any, **kwargs: Any) -> Any:
        routed.append((rows, *route(rows, *args, **kwargs)))
        return routed[-1][1:]

    monkeypatch.setattr(TaskRows, "route", routing)
    read_back: list[int] = []  # rows the driver asked the tasks for
    rows_at = TaskRows.rows_at

    def reading(rows: TaskRows, index: np.ndarray) -> np.ndarray:
        read_back.append(len(index))
        return rows_at(rows, index)

    monkeypatch.setattr(TaskRows, "rows_at", reading)
    monkeypatch.setattr(TaskRows, "all_hashes", lambda rows: pytest.fail("the hashes came to the driver"))
    if read == "slices":  # as a dataset or an object in storage is read
        monkeypatch.setattr(job, "_local_parquet_file", lambda source: None)
    on_ray = tmp_path / "ray.parquet"
    write_embed_scores(
        path, on_ray, fit_sample=1000, engine="ray", progress=lambda stage, done, total: stages.add(stage)
    )
    assert not built  # on the driver
    assert {"read embeddings (ray)", "route embeddings (ray)", "UMAP transform"} <= stages
    ((rows, batches, sample),) = routed
    assert sample.shape == (1000, 8)  # the fit sample came with the routing pass,
    assert not read_back  # and no row came apart: the repeated rows were compared by tasks
    assert len(batches) >= 6 and len(rows.parts) >= 3  # 700-row batches, parts of 1600 rows
    assert rows.ranges == 3
    assert sum(len(batch.pieces) for batch in batches) <= len(rows.parts) + len(batches)
    a, b = pl.read_parquet(local), pl.read_parquet(on_ray)
    meta = pl.read_parquet_metadata(on_ray)
    assert '"distinct_rows": 5' in meta["kscore"]  # the repeated rows were found
    assert a.select("id", "map_x", "map_y").equals(b.select("id", "map_x", "map_y"))
    for column in ("representation_score", "local_difficulty"):
        np.testing.assert_allclose(a[column].to_numpy(), b[column].to_numpy(), rtol=1e-12, equal_nan=True)


@pytest.mark.parametrize("output", ["file", "dataset"])
def test_a_saved_map_places_task_read_rows_as_the_run_that_saved_it(
    tmp_path: Path, cluster, small_routes, monkeypatch: pytest.MonkeyPatch, output: str
) -> None:
    """The tasks that hash the rows find the map's fit rows too, and compare the repeated rows:
    the driver reads back no row, and the map stays on the cluster in pieces (gathered only for
    a single output file). Oracle: the run that saved the map, and `--map` on the local engine
    (its parameters too: the fit rows found, the distinct rows)."""
    import kscore
    from kscore.core import reduction
    from kscore.engines import Pieces
    from kscore.plan.embeddings_ray import TaskRows

    path = _embeddings_with_duplicates(tmp_path)
    map_file = tmp_path / "map.parquet"
    kscore.embed_scores(path, tmp_path / "saving.parquet", fit_sample=1000, save_map=map_file)
    kscore.embed_scores(path, tmp_path / "local.parquet", saved_map=map_file)
    read_back: list[int] = []
    rows_at = TaskRows.rows_at

    def reading(rows: TaskRows, index: np.ndarray) -> np.ndarray:
        read_back.append(len(index))
        return rows_at(rows, index)

    placed: list[Any] = []
    place_on_map = reduction.place_on_map

    def placing(*args: Any, **kwargs: Any) -> Any:
        placed.append(place_on_map(*args, **kwargs))
        return placed[-1]

    monkeypatch.setattr(TaskRows, "rows_at", reading)
    monkeypatch.setattr(reduction, "place_on_map", placing)
    out = tmp_path / "ray.parquet" if output == "file" else tmp_path / "ray"
    kscore.embed_scores(path, f"{out}/" if output == "dataset" else out, saved_map=map_file, engine="ray")
    assert not read_back
    ((coordinates, params),) = placed
    assert isinstance(coordinates, Pieces)
    parts = [out] if output == "file" else sorted(out.glob("part-*.parquet"))
    on_ray = pl.concat([pl.read_parquet(part) for part in parts])
    maps = [pl.read_parquet(tmp_path / f"{n}.parquet").select("map_x", "map_y") for n in ("saving", "local")]
    assert maps[0].equals(maps[1]) and maps[1].equals(on_ray.select("map_x", "map_y"))
    local_params = json.loads(pl.read_parquet_metadata(tmp_path / "local.parquet")["kscore"])["reducer"]
    assert params == local_params and params["distinct_rows"] < 6000 and params["fit_rows_found"] > 0


def test_task_rows_find_a_maps_fit_rows_as_they_hash_or_in_a_pass_of_their_own(
    tmp_path: Path, cluster
) -> None:
    """Oracle: numpy's exact comparison of every input row with the fit rows."""
    from kscore.jobs.embed_scores import _task_rows

    path = _embeddings_with_duplicates(tmp_path)
    data = np.asarray(pl.read_parquet(path).get_column("embedding").to_list(), dtype=np.float32)
    vectors = np.concatenate([data[[5, 4000, 5999]], np.full((1, 8), 7.5, np.float32)])
    equal = (data[:, None, :] == vectors[None, :, :]).all(axis=2)
    assert equal.sum(axis=1).max() == 1  # the fit rows differ
    expected_rows, expected_which = np.nonzero(equal)
    table = pl.scan_parquet(path)
    while_hashing, _ = _task_rows(table, ["embedding"], 8, len(data), str(path), None, vectors)
    apart, _ = _task_rows(table, ["embedding"], 8, len(data), str(path), None)
    for rows in (while_hashing, apart):
        found, which = rows.fit_rows(vectors)
        assert np.array_equal(found, expected_rows) and np.array_equal(which, expected_which)
    assert set(expected_which) == {0, 1, 2}  # rows 5, 4000 and 5999 (and their repeats); 7.5 nowhere


def test_a_map_saved_by_0_8_7_places_task_read_rows_as_on_one_machine(
    tmp_path: Path, cluster, small_routes
) -> None:
    """A map without `distinct_order` batches the distinct rows in the order of their hashes, as
    the version that saved it did: on Ray the driver then gathers the hashes (`all_hashes`)."""
    import json

    import pyarrow.parquet as pq

    import kscore

    path = _embeddings_with_duplicates(tmp_path)
    map_file = tmp_path / "map.parquet"
    kscore.embed_scores(path, tmp_path / "saving.parquet", fit_sample=1000, save_map=map_file)
    table = pq.read_table(map_file)
    meta = json.loads(pq.read_metadata(map_file).metadata[b"kscore"])
    del meta["map"]["parameters"]["distinct_order"]
    old_map = tmp_path / "old_map.parquet"
    pq.write_table(table.replace_schema_metadata({b"kscore": json.dumps(meta).encode()}), old_map)
    for engine in ("local", "ray"):
        kscore.embed_scores(path, tmp_path / f"{engine}.parquet", saved_map=old_map, engine=engine)
    names = ("local", "ray", "saving")
    maps = [pl.read_parquet(tmp_path / f"{n}.parquet").select("map_x", "map_y") for n in names]
    assert maps[0].equals(maps[1])
    assert not maps[0].equals(maps[2])  # the rows outside the fit sample, in other batches
    assert '"distinct_order": "hash"' in pl.read_parquet_metadata(tmp_path / "ray.parquet")["kscore"]


def test_a_bad_embedding_a_task_reads_is_an_input_error_and_writes_nothing(
    tmp_path: Path, cluster, small_routes
) -> None:
    path = _embeddings_with_duplicates(tmp_path)
    frame = pl.read_parquet(path)
    bad = frame.get_column("embedding").to_list()
    bad[4321][3] = float("nan")
    frame.with_columns(pl.Series("embedding", bad, dtype=pl.List(pl.Float32))).write_parquet(
        path, row_group_size=800
    )
    with pytest.raises(InputError, match=r"column 'embedding': 1 rows have NaN, inf or missing values"):
        write_embed_scores(path, tmp_path / "ray.parquet", fit_sample=1000, engine="ray")
    assert not (tmp_path / "ray.parquet").exists()
    assert not _leftovers(tmp_path)


@pytest.mark.parametrize("read", ["row groups", "slices"])
def test_an_embedding_page_a_task_cannot_read_is_an_input_error_naming_the_file_and_node(
    tmp_path: Path, cluster, small_routes, monkeypatch: pytest.MonkeyPatch, read: str
) -> None:
    """The driver reads the id and split columns and the file's footer; a task meets the damage."""
    import pyarrow.parquet as pq

    from kscore.jobs import embed_scores as job

    path = _embeddings_with_duplicates(tmp_path)
    page = pq.ParquetFile(path).metadata.row_group(3).column(2).data_page_offset
    data = bytearray(path.read_bytes())
    data[page : page + 16] = b"\xff" * 16  # the embedding column's page header in row group 3
    path.write_bytes(bytes(data))
    if read == "slices":
        monkeypatch.setattr(job, "_local_parquet_file", lambda source: None)
    with pytest.raises(InputError, match=r"emb\.parquet: cannot read on node \S+: "):
        write_embed_scores(path, tmp_path / "ray.parquet", fit_sample=1000, engine="ray")
    assert not (tmp_path / "ray.parquet").exists()
    assert not _leftovers(tmp_path)


def test_a_worker_killed_while_routing_embeddings_is_retried_and_the_map_is_the_same(
    tmp_path: Path, cluster, small_routes, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cloudpickle

    from kscore.plan import embeddings_ray

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    path = _embeddings_with_duplicates(tmp_path)
    write_embed_scores(path, tmp_path / "local.parquet", fit_sample=1000)
    marker = tmp_path / "killed"
    monkeypatch.setattr(embeddings_ray, "_route_part", _kill_once(str(marker), embeddings_ray._route_part))
    write_embed_scores(path, tmp_path / "ray.parquet", fit_sample=1000, engine="ray")
    assert marker.exists()
    a, b = (pl.read_parquet(tmp_path / f"{n}.parquet").select("map_x", "map_y") for n in ("local", "ray"))
    assert a.equals(b)


def test_the_kde_over_many_chunks_on_ray_equals_threads_bitwise(
    cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The type-1 sums of 6 reference chunks, computed by tasks on two nodes, added in chunk order on
    the driver: the same scores as one or two local threads, bitwise (far queries included, their
    exact sums in chunks of queries)."""
    import kscore.core.density as density
    from kscore.engines import make_executor

    monkeypatch.setattr(density, "_CHUNK", 1000)  # the chunks are cut on the driver
    monkeypatch.setattr(density, "_TAIL_CHUNK", 1)  # the far queries' exact sums as tasks too
    rng = np.random.default_rng(5)
    reference = np.concatenate([rng.normal(0, 1, (4000, 2)), rng.normal(4, 0.3, (1500, 2))])
    train = np.concatenate([rng.normal(0, 1.5, (3000, 2)), [[60.0, 60.0], [-25.0, 3.0]]])
    difficulty = rng.random(len(reference))
    difficulty[::5] = np.nan
    runs = [
        density.kde_scores(train, reference, difficulty, "scott", jobs, make_executor(engine, jobs))
        for jobs, engine in ((1, "local"), (2, "local"), (None, "ray"))
    ]
    for key in ("representation", "local", "potential"):
        assert np.isfinite(runs[0][key]).all(), key
        for other in runs[1:]:
            assert np.array_equal(runs[0][key], other[key]), key


def test_the_kde_of_points_left_in_the_object_store_in_pieces_equals_threads_bitwise(
    cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Train and reference points left in the object store in pieces (as the tasks that assemble a
    part's coordinates leave them): each chunk task reads the pieces it overlaps; the scores equal
    the local engine's of the points joined, bitwise."""
    import kscore.core.density as density
    from kscore.engines import Pieces, make_executor
    from kscore.engines.ray import fetched

    ray = pytest.importorskip("ray")
    monkeypatch.setattr(density, "_CHUNK", 1000)
    monkeypatch.setattr(density, "_TAIL_CHUNK", 1)
    rng = np.random.default_rng(6)
    reference = np.concatenate([rng.normal(0, 1, (4000, 2)), rng.normal(4, 0.3, (1500, 2))])
    train = np.concatenate([rng.normal(0, 1.5, (3000, 2)), [[60.0, 60.0], [-25.0, 3.0]]])
    difficulty = rng.random(len(reference))
    difficulty[::5] = np.nan

    def stored(columns: list[np.ndarray], cuts: list[int]) -> Pieces:
        bounds = [0, *cuts, len(columns[0])]
        items = tuple(
            ray.put(tuple(np.ascontiguousarray(c[a:b]) for c in columns))
            for a, b in itertools.pairwise(bounds)
        )
        return Pieces(items, tuple(b - a for a, b in itertools.pairwise(bounds)), fetched)

    local = density.kde_scores(train, reference, difficulty, "scott", 2, make_executor("local", 2))
    on_ray = density.kde_scores_of_pieces(
        stored([train[:, 0], train[:, 1]], [1200, 1200, 2999]),
        stored([reference[:, 0], reference[:, 1], difficulty], [10, 2500, 4100, 4100]),
        True,
        "scott",
        make_executor("ray"),
    )
    scores = on_ray["scores"].rows(slice(0, len(train)))
    for k, key in enumerate(("representation", "potential", "local")):
        assert np.isfinite(local[key]).all(), key
        assert np.array_equal(local[key], scores[k]), key


def _read_elsewhere(*args, **kwargs):
    """`read_slice` on a node where the input's path does not exist (it runs in a worker, where
    `difficulty_ray.read_slice` is the real one)."""
    from kscore.plan import difficulty_ray

    missing = pl.scan_parquet(Path(__file__).parent / "no-such-folder" / "results_b.parquet")
    return difficulty_ray.read_slice(missing, *args[1:], **kwargs)


def _tasks_run(monkeypatch: pytest.MonkeyPatch, name: str, replacement) -> None:
    """Ray's tasks run `replacement` for `kscore.plan.difficulty_ray`'s `name` (this module goes to
    the workers by value; there, `difficulty_ray` is the real one)."""
    import cloudpickle

    from kscore.plan import difficulty_ray

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    monkeypatch.setattr(difficulty_ray, name, replacement)


def _start_ray_difficulty(
    tmp_path: Path, cluster, extra: list[str], limit: str = "356MiB"
) -> subprocess.Popen:
    """`kscore difficulty` of 3 models x 1M rows on the cluster, in a process of its own (the
    partitioned plan at the default `limit`)."""
    _generate(tmp_path, 1_000_000, models=3)
    files = [f"results_m{m}.parquet" for m in range(3)]
    args = ["difficulty", *files, "-c", "k.yaml", "--engine", "ray", "--ray-address", cluster.address]
    return subprocess.Popen(
        [sys.executable, "-m", "kscore", *args, *extra, "--memory-limit", limit],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _score_into_nowhere(*args, **kwargs):
    """`score_slice` writing its part where nothing can be written (a node whose folder is gone)."""
    from kscore.plan import difficulty_ray

    _, *rest = args[6]
    return difficulty_ray.score_slice(*args[:6], ("/proc/kscore-no-such-folder/part.parquet", *rest))


@pytest.mark.parametrize(
    ("task", "replacement", "pattern", "output"),
    [
        ("read_slice", _read_elsewhere, r"results_\w\.parquet: cannot read on node [0-9.]+: ", "ray.parquet"),
        ("score_slice", _score_into_nowhere, r"part\.parquet: cannot write on node [0-9.]+: ", "scores/"),
    ],
)
def test_a_node_that_cannot_read_an_input_or_write_its_part_is_exit_2_naming_the_path_and_node(
    tmp_path: Path, cluster, small_batches, monkeypatch, task, replacement, pattern, output
) -> None:
    """An InputError (a read) or OutputError (a part's write) raised in a task comes out as itself:
    one line naming the path and the node, and nothing written or left behind."""
    from kscore.errors import OutputError

    _tasks_run(monkeypatch, task, replacement)
    paths = _write_inputs(tmp_path, "dense")
    out = f"{tmp_path}/{output}"  # a trailing slash kept: a dataset
    with pytest.raises(InputError if task == "read_slice" else OutputError, match=pattern) as error:
        write_difficulty_scores(
            paths, _standard("minmax", "per_model", False), out, engine="ray", memory_limit="400KB"
        )
    assert "\n" not in str(error.value) and "Traceback" not in str(error.value)
    assert not Path(out.rstrip("/")).exists()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("output", ["difficulty_scores.parquet", "scores/"])
def test_ctrl_c_cancels_the_jobs_tasks_and_leaves_no_output(tmp_path: Path, cluster, output) -> None:
    """Also while the tasks write a dataset's parts (`scores/`): they are stopped before the
    driver removes the folder they write into."""
    process = _start_ray_difficulty(tmp_path, cluster, ["-o", output])
    interrupt_after_stage(process, "read and split (ray)")
    assert not (tmp_path / output.rstrip("/")).exists()
    assert _leftovers(tmp_path) == []
    _cluster_cpus_back()


def _cluster_cpus_back() -> None:
    deadline = time.monotonic() + 60  # the job's tasks stop: the cluster's CPUs come back
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
        assert time.monotonic() < deadline, ray.available_resources()
        time.sleep(0.5)


def test_ctrl_c_while_one_task_scores_in_memory_cancels_it_and_leaves_no_output(
    tmp_path: Path, cluster
) -> None:
    import signal

    process = _start_ray_difficulty(tmp_path, cluster, ["-o", "scores.parquet"], limit="8GiB")
    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) == ray.cluster_resources()["CPU"]:  # not started
        if process.poll() is not None:
            pytest.skip("the run ended before its task was seen running: too fast to interrupt here")
        assert time.monotonic() < deadline, "the task never started"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 130, rest
    errors = [line for line in rest.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: interrupted"), rest
    assert not (tmp_path / "scores.parquet").exists()
    assert _leftovers(tmp_path) == []
    _cluster_cpus_back()


def test_ctrl_c_while_the_tasks_write_an_s3_dataset_leaves_nothing_under_the_prefix(
    tmp_path: Path, cluster, s3
) -> None:
    options = [f"--storage-option={key}={value}" for key, value in _s3_options(s3).items()]
    process = _start_ray_difficulty(tmp_path, cluster, ["-o", s3.url("ctrl-c/"), *options])
    interrupt_after_stage(process, "score id ranges (ray)")
    assert s3.keys("ctrl-c") == []
    assert _leftovers(tmp_path) == []


def _s3_options(s3) -> dict[str, str]:
    # the workers get the credentials from the options: the nodes' own environment is not the test's
    return {**s3.options, "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def _no_driver_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the driver fail if it writes a Parquet file or uploads a staged one."""
    import kscore.storage

    def no_part_here(*args, **kwargs):
        raise AssertionError("the driver wrote or uploaded a part")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", no_part_here)
    monkeypatch.setattr(kscore.storage, "_upload", no_part_here)


@pytest.mark.parametrize("repeated", [0, 300])
def test_a_map_fitted_on_every_row_with_a_dataset_output_on_ray_equals_the_local_engine(
    tmp_path: Path, cluster, monkeypatch: pytest.MonkeyPatch, repeated: int
) -> None:
    """Fewer rows than the fit sample: the map is fitted on every row here. Where no row repeats,
    the coordinates stay here, and the masks and the difficulty the tasks left on the cluster come
    here for the KDE; where rows repeat, tasks place the fitted rows and give each repeated row its
    first row's. Either way the parts and summary are the local engine's."""
    import kscore.io
    from kscore.engines import Pieces
    from kscore.plan.embeddings_ray import TaskRows

    monkeypatch.setattr(kscore.io, "PART_ROWS", 700)
    path = _embeddings_with_duplicates(tmp_path, rows=1500, repeated=repeated)
    with_repeats, in_pieces = TaskRows.with_repeats, []

    def repeating(rows: TaskRows, placed: Pieces, *args: Any) -> Pieces:
        in_pieces.append(isinstance(placed, Pieces))
        return with_repeats(rows, placed, *args)

    monkeypatch.setattr(TaskRows, "with_repeats", repeating)
    difficulty = _difficulty_of(tmp_path, np.arange(0, 1500, 2), unknown=3)
    local = kscore.embed_scores(path, f"{tmp_path}/local/", difficulty=difficulty, top=50)
    on_ray = kscore.embed_scores(path, f"{tmp_path}/ray/", difficulty=difficulty, top=50, engine="ray")
    parts = [sorted((tmp_path / name).glob("part-*.parquet")) for name in ("local", "ray")]
    assert len(parts[0]) == len(parts[1]) == 3
    for expected, written in zip(*parts, strict=True):
        a, b = pl.read_parquet(expected), pl.read_parquet(written)
        assert a.columns == b.columns
        assert a.select("id", "split", "map_x", "map_y", "difficulty_score").equals(
            b.select("id", "split", "map_x", "map_y", "difficulty_score")
        )
        for column in ("representation_score", "potential_difficulty_score", "local_difficulty"):
            x, y = a[column].to_numpy(), b[column].to_numpy()
            np.testing.assert_allclose(y, x, rtol=1e-12, atol=0, equal_nan=True, err_msg=column)
    assert on_ray["warnings"] == local["warnings"] and any(
        "3 ids of the difficulty" in w for w in local["warnings"]
    )
    for score, quantiles in local["quantiles"].items():  # rounded to 6 digits
        assert on_ray["quantiles"][score] == pytest.approx(quantiles, abs=1e-6), score
    assert [r["id"] for r in on_ray["least_represented"]] == [r["id"] for r in local["least_represented"]]
    assert in_pieces == ([True] if repeated else [])


def test_ray_tasks_write_the_parts_of_an_embed_scores_dataset(
    tmp_path: Path, cluster, s3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`embed-scores -o DIR/` and `-o s3://.../prefix/` on Ray (the embeddings and `--difficulty`
    in S3 too, which the tasks read): the tasks write the parts (the driver neither writes nor
    uploads one) and the manifest goes last; part by part, the rows are the local engine's (the map
    and the difficulty bitwise, the scores to 1e-12), each part with the run's metadata."""
    import kscore.io
    from kscore.io import MANIFEST, read_kscore_metadata

    monkeypatch.setattr(kscore.io, "PART_ROWS", 2500)
    path = _embeddings_with_duplicates(tmp_path)
    difficulty = _difficulty_of(tmp_path, np.arange(0, 6000, 3))
    write_embed_scores(path, f"{tmp_path}/local/", difficulty=difficulty, fit_sample=1000)
    local = sorted((tmp_path / "local").glob("part-*.parquet"))
    assert len(local) == 3  # 6000 rows
    options = _s3_options(s3)
    inputs = {name: s3.upload(p, f"embed-in/{p.name}") for name, p in (("e", path), ("d", difficulty))}
    _no_driver_writes(monkeypatch)
    write_embed_scores(path, f"{tmp_path}/ray/", difficulty=difficulty, fit_sample=1000, engine="ray")
    summary = write_embed_scores(
        inputs["e"], s3.url("embed-ray/"), difficulty=inputs["d"], fit_sample=1000, engine="ray",
        storage_options=options,
    )  # fmt: skip
    monkeypatch.undo()
    assert summary["output"] == s3.url("embed-ray/")
    keys = s3.keys("embed-ray")
    assert keys == [f"embed-ray/{MANIFEST}", *(f"embed-ray/{p.name}" for p in local)]
    folder = sorted((tmp_path / "ray").glob("part-*.parquet"))
    assert [p.name for p in folder] == [p.name for p in local]
    readable = {**options, "aws_allow_http": "true"}
    for number, part in enumerate(local):
        expected = pl.read_parquet(part)
        for written in (
            pl.read_parquet(folder[number]),
            pl.read_parquet(s3.url(keys[number + 1]), storage_options=readable),
        ):
            exact = ["id", "split", "map_x", "map_y", "difficulty_score"]
            assert written.select(exact).equals(expected.select(exact))
            for column in ("representation_score", "local_difficulty", "potential_difficulty_score"):
                if column in expected.columns:
                    x, y = expected[column].to_numpy(), written[column].to_numpy()
                    np.testing.assert_allclose(y, x, rtol=1e-12, atol=0, equal_nan=True, err_msg=column)
        metadata = read_kscore_metadata(folder[number])
        assert metadata == read_kscore_metadata(tmp_path / "ray") and metadata["rows"]["total"] == 6000


def _collected_columns(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """From now on, the columns of every frame this process collects from a LazyFrame (its
    reads), in a list."""
    collected: list[list[str]] = []
    collect = pl.LazyFrame.collect

    def spy(self, *args, **kwargs):
        frame = collect(self, *args, **kwargs)
        collected.append(frame.columns)
        return frame

    monkeypatch.setattr(pl.LazyFrame, "collect", spy)
    return collected


def test_the_tasks_that_write_the_parts_read_the_inputs_other_columns(
    tmp_path: Path, cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Ray with `-o DIR/`, the input's other columns (a text, a label) never reach the driver:
    each task writing a part reads its slice of them from the input. The parts are the local
    engine's, the columns in the same order (an input column named like an output column is
    replaced, as on one machine)."""
    import kscore.io

    monkeypatch.setattr(kscore.io, "PART_ROWS", 2500)
    base = pl.read_parquet(_embeddings_with_duplicates(tmp_path))
    path = tmp_path / "with_text.parquet"
    base.select(
        "id",
        pl.format("row {}", "id").alias("text"),
        "split",
        "embedding",
        (pl.col("id") % 7).alias("label"),
        pl.lit(0.5).alias("map_x"),
    ).write_parquet(path, row_group_size=800)
    write_embed_scores(path, f"{tmp_path}/local/", fit_sample=1000)
    collected = _collected_columns(monkeypatch)
    write_embed_scores(path, f"{tmp_path}/ray/", fit_sample=1000, engine="ray")
    monkeypatch.undo()
    assert collected and not any("text" in columns or "label" in columns for columns in collected)
    local, on_ray = (sorted((tmp_path / name).glob("part-*.parquet")) for name in ("local", "ray"))
    assert len(local) == len(on_ray) == 3
    for expected, written in zip(local, on_ray, strict=True):
        a, b = pl.read_parquet(expected), pl.read_parquet(written)
        assert a.columns == b.columns and a.columns[:4] == ["id", "text", "split", "label"]
        unscored = ["id", "text", "split", "label", "map_x", "map_y"]
        assert a.select(unscored).equals(b.select(unscored))
        np.testing.assert_allclose(
            b["representation_score"].to_numpy(), a["representation_score"].to_numpy(), rtol=1e-12, atol=0
        )


def _difficulty_of(tmp_path: Path, ids: np.ndarray, unknown: int = 0) -> Path:
    """A difficulty file scoring `ids` (and `unknown` ids no embedding has)."""
    rng = np.random.default_rng(9)
    all_ids = np.concatenate([ids, 100_000 + np.arange(unknown)])
    path = tmp_path / "difficulty.parquet"
    pl.DataFrame({"id": all_ids, "difficulty_score": rng.random(len(all_ids))}).write_parquet(path)
    return path


def test_tasks_check_and_split_the_ids_and_the_parts_and_summary_are_the_local_engines(
    tmp_path: Path, cluster, small_routes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On Ray with `-o DIR/`, the driver reads neither the id nor the split column, nor the
    difficulty file's rows, nor the map's coordinates (tasks assemble each part's from the
    transforms' results, repeated rows included, and the KDE's tasks and the parts' writers read
    them in the object store): tasks check the ids (float ids become integers), split the rows, read
    the difficulty file, count repeated ids and join the scores by ranges of the ids' hashes; the
    tasks writing the parts give the summary its split counts and notable rows (tied scores of
    repeated embeddings broken by id). Oracle: the local engine's parts, summary and warnings."""
    import kscore.io
    from kscore.plan import embeddings_ray

    monkeypatch.setattr(kscore.io, "PART_ROWS", 2500)
    monkeypatch.setattr(embeddings_ray, "ID_RANGE_BYTES", 2000 * 32)  # 3 ranges of id hashes
    base = pl.read_parquet(_embeddings_with_duplicates(tmp_path))
    path = tmp_path / "float_ids.parquet"
    base.with_columns(pl.col("id").cast(pl.Float64)).write_parquet(path, row_group_size=800)
    difficulty = _difficulty_of(tmp_path, np.arange(0, 6000, 2), unknown=7)
    local = kscore.embed_scores(path, f"{tmp_path}/local/", difficulty=difficulty, fit_sample=1000, top=4000)
    collected = _collected_columns(monkeypatch)
    import kscore.core.density as density
    from kscore.engines import Pieces

    read_here: list[slice] = []  # rows of the map's coordinates read on the driver
    rows_of = Pieces.rows
    monkeypatch.setattr(Pieces, "rows", lambda pieces, part: read_here.append(part) or rows_of(pieces, part))
    monkeypatch.setattr(density, "kde_scores", lambda *a, **k: pytest.fail("the KDE's points came here"))
    on_ray = kscore.embed_scores(
        path, f"{tmp_path}/ray/", difficulty=difficulty, fit_sample=1000, top=4000, engine="ray"
    )
    monkeypatch.undo()
    assert collected and not any("id" in c or "split" in c or "difficulty_score" in c for c in collected)
    assert not read_here  # the coordinates stayed in the store, from the transforms to the parts
    parts = [sorted((tmp_path / name).glob("part-*.parquet")) for name in ("local", "ray")]
    assert len(parts[0]) == len(parts[1]) == 3
    for expected, written in zip(*parts, strict=True):
        a, b = pl.read_parquet(expected), pl.read_parquet(written)
        assert a.columns == b.columns and a.schema["id"] == b.schema["id"] == pl.Int64
        exact = ["id", "split", "map_x", "map_y", "difficulty_score"]
        assert a.select(exact).equals(b.select(exact))
        for column in ("representation_score", "potential_difficulty_score", "local_difficulty"):
            x, y = a[column].to_numpy(), b[column].to_numpy()
            np.testing.assert_allclose(y, x, rtol=1e-12, atol=0, equal_nan=True, err_msg=column)
    assert on_ray["rows_per_split"] == local["rows_per_split"] and on_ray["n_train"] == local["n_train"]
    for key in ("least_represented", "highest_potential"):
        assert [r["id"] for r in on_ray[key]] == [r["id"] for r in local[key]], key
    ties = pl.DataFrame(local["least_represented"]).get_column("representation_score").is_duplicated()
    assert ties.any()  # every train row ranked: repeated embeddings tie, and the id breaks the ties
    for score, quantiles in local["quantiles"].items():  # rounded to 6 digits
        assert on_ray["quantiles"][score] == pytest.approx(quantiles, abs=1e-6), score
    assert on_ray["warnings"] == local["warnings"] and any(
        "7 ids of the difficulty" in w for w in local["warnings"]
    )


def test_the_summary_of_scores_left_on_the_cluster_is_exact_counted_by_tasks(
    tmp_path: Path, cluster, small_routes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scores stay on the cluster: tasks count them in narrowing ranges (4 bins a round here,
    so many rounds) and the driver never reads a piece of them; the summary is the local
    engine's. The job opens and closes its own session, as the command line does."""
    import kscore.io
    from kscore.core import order_stats
    from kscore.engines import Pieces

    monkeypatch.setattr(kscore.io, "PART_ROWS", 2500)
    path = _embeddings_with_duplicates(tmp_path)
    difficulty = _difficulty_of(tmp_path, np.arange(0, 6000, 3))
    local = kscore.embed_scores(path, f"{tmp_path}/local/", difficulty=difficulty, fit_sample=1000)
    monkeypatch.setattr(order_stats, "KEY_BINS", 4)
    monkeypatch.setattr(order_stats, "SENT_KEYS", 16)
    monkeypatch.setattr(Pieces, "rows", lambda *a: pytest.fail("the driver read a piece"))
    ray.shutdown()  # the job connects and disconnects itself, as the command line does
    try:
        on_ray = kscore.embed_scores(
            path, f"{tmp_path}/ray/", difficulty=difficulty, fit_sample=1000, engine="ray",
            ray_address=cluster.address,
        )  # fmt: skip
    finally:
        if not ray.is_initialized():
            ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    assert on_ray["n_train"] == local["n_train"] and on_ray["rows_per_split"] == local["rows_per_split"]
    assert set(on_ray["quantiles"]) == {
        "representation_score",
        "potential_difficulty_score",
        "local_difficulty",
    }
    for score, quantiles in local["quantiles"].items():  # rounded to 6 digits
        assert on_ray["quantiles"][score] == pytest.approx(quantiles, abs=1e-6), score


def test_quantiles_of_pieces_in_the_object_store_are_exact_quantiles(cluster, monkeypatch) -> None:
    """Oracle: `exact_quantiles` of each field's values joined (NaN, ties, an empty piece, a field
    of no value), bitwise, the ranges narrowed in 2 bins a round down to one value."""
    from kscore.core import order_stats
    from kscore.engines import Pieces
    from kscore.engines.ray import fetched
    from kscore.plan.embeddings_ray import quantiles_of_pieces

    monkeypatch.setattr(order_stats, "KEY_BINS", 2)
    monkeypatch.setattr(order_stats, "SENT_KEYS", 1)
    rng = np.random.default_rng(8)
    values = np.round(rng.normal(size=3000), 2)  # ties
    values[rng.random(3000) < 0.05] = np.nan
    cuts = [0, 700, 700, 2100, 3000]
    fields = [(values[a:b], -values[a:b], np.full(b - a, np.nan)) for a, b in itertools.pairwise(cuts)]
    pieces = Pieces(tuple(ray.put(f) for f in fields), tuple(np.diff(cuts).tolist()), fetched)
    qs = (0.0, 0.1, 0.5, 0.9, 1.0)
    found = quantiles_of_pieces(pieces, [0, 1, 2], qs)
    assert found[0] == order_stats.exact_quantiles(values, qs)
    assert found[1] == order_stats.exact_quantiles(-values, qs)
    assert found[2] == [None] * 5


@pytest.mark.parametrize("ids", ["text ids, integer difficulty ids", "integer ids, two too wide"])
def test_the_difficulty_file_is_joined_by_ranges_of_id_hashes_as_on_one_machine(
    tmp_path: Path, cluster, small_routes, ids: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tasks read the `--difficulty` file in slices (here 3) and join it by ranges of the ids'
    hashes (here 4), comparing ids of two types as on one machine: text with integers as text,
    UInt64 ids beyond Int64 matching nothing (and not taken for repeats of each other). Oracle:
    the local engine's column and warnings."""
    import kscore.io
    from kscore.plan import embeddings_ray

    monkeypatch.setattr(kscore.io, "PART_ROWS", 2500)
    monkeypatch.setattr(embeddings_ray, "ID_RANGE_BYTES", 3000 * 32)
    monkeypatch.setattr(embeddings_ray, "DIFFICULTY_ROWS", 1500)
    base = pl.read_parquet(_embeddings_with_duplicates(tmp_path))
    path = tmp_path / "ids.parquet"
    rng = np.random.default_rng(3)
    scored = rng.choice(6000, 4000, replace=False)
    if ids.startswith("text"):
        base = base.with_columns(pl.col("id").cast(pl.String))
        difficulty = pl.DataFrame(
            {"id": np.append(scored, [7001, 7002]), "difficulty_score": rng.random(4002)}
        )
    else:
        wide = pl.Series("id", [*scored.tolist(), 2**64 - 5, 2**64 - 6], dtype=pl.UInt64)
        difficulty = pl.DataFrame({"id": wide, "difficulty_score": rng.random(4002)})
    base.write_parquet(path, row_group_size=800)
    difficulty_path = tmp_path / "difficulty.parquet"
    difficulty.write_parquet(difficulty_path)
    found = {
        engine: kscore.embed_scores(
            path, f"{tmp_path}/{engine}/", difficulty=difficulty_path, fit_sample=1000, engine=engine
        )
        for engine in ("local", "ray")
    }
    # A table in memory: the driver checks it and cuts it into the ranges.
    found["in memory"] = kscore.embed_scores(
        path, f"{tmp_path}/in memory/", difficulty=difficulty, fit_sample=1000, engine="ray"
    )
    assert found["ray"]["warnings"] == found["in memory"]["warnings"] == found["local"]["warnings"]
    unknown = "ids of the difficulty file are not in the embeddings"
    assert any(unknown in w for w in found["local"]["warnings"])
    local, *on_ray = (pl.read_parquet(tmp_path / name / "*.parquet") for name in found)
    for other in on_ray:
        assert other.select("id", "difficulty_score").equals(local.select("id", "difficulty_score"))
    assert local.get_column("difficulty_score").null_count() == 2000


def _fails_as_on_one_machine(tmp_path: Path, path: Path, difficulty: Path | None, message: str) -> None:
    """Both engines raise the same InputError (matching `message`) on these inputs, and leave no
    output."""
    errors = []
    for engine in ("local", "ray"):
        with pytest.raises(InputError, match=message) as raised:
            write_embed_scores(
                path, f"{tmp_path}/{engine}/", difficulty=difficulty, fit_sample=1000, engine=engine
            )
        errors.append(str(raised.value))
        assert not (tmp_path / engine).exists()
    assert errors[0] == errors[1]


def _set(column: str, values: dict[int, Any], dtype: Any = None) -> Callable[[pl.DataFrame], pl.DataFrame]:
    """A change of a table: `column` (cast to `dtype` first, where given) with `values` at their rows."""

    def change(table: pl.DataFrame) -> pl.DataFrame:
        if dtype is not None:
            table = table.with_columns(pl.col(column).cast(dtype))
        series = table.get_column(column).to_list()
        for row, value in values.items():
            series[row] = value
        return table.with_columns(pl.Series(column, series, dtype=table.schema[column]))

    return change


_BROKEN_DIFFICULTY = {  # null and fractional ids: `IdFacts`, as the embeddings' ids above
    "repeated ids": (_set("id", {3000: 10.0, 3900: 1100.0}), "has 4 rows with a duplicated id"),
    "repeated ids beyond Int64": (
        _set("id", {100: 2**64 - 3, 3100: 2**64 - 3}, pl.UInt64),
        "has 2 rows with a duplicated id",
    ),
    "scores outside [0, 1]": (
        _set("difficulty_score", {20: 1.5, 1700: -0.5, 2600: 7.0, 3999: 7.0}),
        r"has 4 values outside \[0, 1\] \(e\.g\. \[1\.5, -0\.5, 7\.0\]\)",
    ),
    "no score column": (
        lambda d: d.rename({"difficulty_score": "score"}),
        "missing column 'difficulty_score'",
    ),
    "no rows": (lambda d: d.head(0), "file has no data rows"),
}


@pytest.mark.parametrize("case", list(_BROKEN_DIFFICULTY))
def test_a_difficulty_file_the_tasks_read_fails_as_on_one_machine_and_writes_nothing(
    tmp_path: Path, cluster, small_routes, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Repeated ids (also UInt64 ids beyond Int64, which the join compares as Int64), scores outside
    [0, 1], a missing score column, no rows, spread over the slices the tasks read (here 4): the
    ray engine raises the local engine's InputError, counts and examples added over the slices,
    and writes nothing."""
    from kscore.plan import embeddings_ray

    monkeypatch.setattr(embeddings_ray, "DIFFICULTY_ROWS", 1000)
    monkeypatch.setattr(embeddings_ray, "ID_RANGE_BYTES", 3000 * 32)
    path = _embeddings_with_duplicates(tmp_path)
    broken, message = _BROKEN_DIFFICULTY[case]
    rng = np.random.default_rng(4)
    difficulty = pl.DataFrame({"id": np.arange(4000, dtype=np.float64), "difficulty_score": rng.random(4000)})
    difficulty_path = tmp_path / "difficulty.parquet"
    broken(difficulty).write_parquet(difficulty_path)
    _fails_as_on_one_machine(tmp_path, path, difficulty_path, message)


def _null_ids(table: pl.DataFrame) -> pl.DataFrame:
    rows = [5, 3000, 5900]
    return table.with_columns(
        pl.when(pl.int_range(pl.len()).is_in(rows)).then(None).otherwise(pl.col("id")).alias("id")
    )


_BROKEN_IDS = {
    "null ids": (_null_ids, "has 3 null ids"),
    "fractional ids": (
        lambda t: t.with_columns(
            pl.when(pl.int_range(pl.len()).is_in([10, 2500, 4000, 5000])).then(pl.col("id") + 0.5)
            .otherwise(pl.col("id")).alias("id")
        ),
        r"has 4 ids that are not whole numbers \(e\.g\. \[10\.5, 2500\.5, 4000\.5\]\)",
    ),
    "repeated ids": (
        lambda t: t.with_columns(
            pl.when(pl.int_range(pl.len()) == 5000).then(10.0)
            .when(pl.int_range(pl.len()) == 3000).then(20.0).otherwise(pl.col("id")).alias("id")
        ),
        "has 4 rows with a duplicated id",
    ),
    "no train rows": (lambda t: t.with_columns(pl.lit("val").alias("split")), r"no train rows.*\['val'\]"),
    "two reference rows": (
        lambda t: t.with_columns(
            pl.when(pl.int_range(pl.len()).is_in([1, 5999])).then(pl.lit("val")).otherwise(pl.lit("train"))
            .alias("split")
        ),
        "2 reference rows",
    ),
    "no difficulty matches": (lambda t: t, "none of the .* reference rows has a difficulty score"),
}  # fmt: skip


@pytest.mark.parametrize("case", list(_BROKEN_IDS))
def test_ids_and_splits_the_tasks_check_fail_as_on_one_machine_and_write_nothing(
    tmp_path: Path, cluster, small_routes, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Null, fractional or repeated ids spread over several parts, no train rows, too few reference
    rows, a difficulty file matching no id: the ray engine, whose tasks read the ids part by part,
    raises the local engine's InputError, counts added over the parts, and writes nothing."""
    from kscore.plan import embeddings_ray

    monkeypatch.setattr(embeddings_ray, "ID_RANGE_BYTES", 2000 * 32)
    broken, message = _BROKEN_IDS[case]
    base = pl.read_parquet(_embeddings_with_duplicates(tmp_path)).with_columns(pl.col("id").cast(pl.Float64))
    path = tmp_path / "broken.parquet"
    broken(base).write_parquet(path, row_group_size=800)
    difficulty = (
        _difficulty_of(tmp_path, 50_000 + np.arange(100)) if case == "no difficulty matches" else None
    )
    _fails_as_on_one_machine(tmp_path, path, difficulty, message)


def test_an_input_that_changed_before_the_tasks_read_its_other_columns_is_exit_2(
    tmp_path: Path, cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The input loses rows between the driver's read and the tasks' read of its other columns (a
    text): the task whose slice comes up short says which rows and that the input changed, an
    input error; no dataset or temporary folder is left."""
    import kscore.io
    from kscore.errors import InputError
    from kscore.plan import embeddings_ray

    monkeypatch.setattr(kscore.io, "PART_ROWS", 2500)
    base = pl.read_parquet(_embeddings_with_duplicates(tmp_path))
    path = tmp_path / "with_text.parquet"
    base.with_columns(pl.format("row {}", "id").alias("text")).write_parquet(path)
    write_parts = embeddings_ray.write_parts_by_tasks

    def input_shortened_first(*args, **kwargs):
        pl.read_parquet(path).head(base.height - 100).write_parquet(path)
        return write_parts(*args, **kwargs)

    monkeypatch.setattr(embeddings_ray, "write_parts_by_tasks", input_shortened_first)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(
        InputError, match=r"with_text\.parquet: rows \d+\.\.\d+ read as \d+ rows \(did the input change"
    ):
        write_embed_scores(path, f"{tmp_path}/out/", fit_sample=1000, engine="ray")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_part_a_task_cannot_write_leaves_no_embed_scores_dataset(
    tmp_path: Path, cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One task's write fails (its node's disk): the error names the part and the node, and
    neither the dataset nor a temporary folder is left beside it."""
    import kscore.io
    from kscore.errors import OutputError
    from kscore.plan import embeddings_ray

    def full_disk(arrow, path, *rest):
        if path.endswith("part-00001.parquet"):
            raise OutputError(f"{path}: cannot write on node {embeddings_ray.node_name()}: No space left")
        return embeddings_ray._write_part(arrow, path, *rest)

    monkeypatch.setattr(kscore.io, "PART_ROWS", 2500)
    monkeypatch.setattr(embeddings_ray, "_write_part", full_disk)
    path = _embeddings_with_duplicates(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(OutputError, match=r"part-00001\.parquet: cannot write on node .*No space left"):
        write_embed_scores(path, f"{tmp_path}/out/", fit_sample=1000, engine="ray")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_ray_tasks_write_an_s3_datasets_parts_and_the_driver_only_its_manifest(
    tmp_path: Path, cluster, small_batches, s3, monkeypatch
) -> None:
    """`-o s3://.../prefix/` on Ray, inputs in S3 too: the tasks write the parts under the prefix
    (the driver neither writes nor uploads one), the manifest goes last; the rows equal the local
    engine's bitwise, the manifest its metadata, the summary its summary. A dataset already there
    (more parts than the new one) is replaced whole."""
    from kscore.io import MANIFEST, read_kscore_metadata
    from kscore.storage import ObjectPath, using

    paths = _write_inputs(tmp_path, "dense")
    urls = {name: s3.upload(path, f"ray-in/{path.name}") for name, path in paths.items()}
    standard = _standard("rank", "joint", True)
    local = tmp_path / "local.parquet"
    expected = write_difficulty_scores(paths, standard, local, memory_limit="64GiB", top=5)
    options = _s3_options(s3)
    out = s3.url("ray-out/")
    write_difficulty_scores(urls, standard, out, engine="ray", storage_options=options, memory_limit="250KB")
    before = s3.keys("ray-out")
    _no_driver_writes(monkeypatch)
    summary = write_difficulty_scores(
        urls, standard, out, engine="ray", storage_options=options, memory_limit="1MB", top=5
    )
    monkeypatch.undo()
    assert summary["output"] == out
    keys = s3.keys("ray-out")
    assert keys[0] == f"ray-out/{MANIFEST}" and len(keys) > 2
    assert len(before) > len(keys)  # the old dataset's extra parts are gone
    parts = [s3.url(k) for k in keys[1:]]
    _assert_same_rows(
        pl.read_parquet(local), pl.read_parquet(parts, storage_options={**options, "aws_allow_http": "true"})
    )
    with using(options):
        manifest = read_kscore_metadata(ObjectPath(out))
    assert manifest.pop("inputs") == urls
    assert manifest == {k: v for k, v in read_kscore_metadata(local).items() if k != "inputs"}
    assert {k: v for k, v in summary.items() if k != "output"} == {
        k: v for k, v in expected.items() if k != "output"
    }


def test_a_failure_before_the_manifest_leaves_nothing_under_the_s3_prefix(
    tmp_path: Path, cluster, small_batches, s3, monkeypatch
) -> None:
    """The tasks have written their parts when the manifest cannot be written: exit 2 naming the
    prefix, and every part the tasks wrote is deleted."""
    import kscore.storage
    from kscore.errors import OutputError

    paths = _write_inputs(tmp_path, "dense")
    urls = {name: s3.upload(path, f"ray-in/{path.name}") for name, path in paths.items()}
    written: list[list[str]] = []

    def refused(run_parts):
        def write_parts(prefix: str) -> None:
            run_parts(prefix)
            written.append(s3.keys("ray-fail"))
            raise OSError("AccessDenied: the manifest")

        return write_parts

    original = kscore.storage.publish_written
    monkeypatch.setattr(
        kscore.storage,
        "publish_written",
        lambda out, manifest, write_parts, text: original(out, manifest, refused(write_parts), text),
    )
    with pytest.raises(OutputError, match=r"s3://.*/ray-fail/: cannot write to object storage: AccessDenied"):
        write_difficulty_scores(
            urls, _standard("minmax", "per_model", False), s3.url("ray-fail/"), engine="ray",
            storage_options=_s3_options(s3), memory_limit="400KB",
        )  # fmt: skip
    assert written and len(written[0]) > 1  # the tasks had written parts
    assert s3.keys("ray-fail") == []


def test_an_unknown_engine_is_an_input_error(tmp_path: Path) -> None:
    paths = _write_inputs(tmp_path, "dense")
    with pytest.raises(InputError, match="unknown engine 'spark'; use one of: local, ray"):
        standard = _standard("minmax", "per_model", False)
        write_difficulty_scores(paths, standard, tmp_path / "o.parquet", engine="spark")


def test_the_ray_engine_without_ray_installed_names_the_extra(tmp_path: Path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from kscore.cli import app

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails as where it is not installed
    _write_inputs(tmp_path, "dense")
    (tmp_path / "kscore.yaml").write_text(
        "id_column: id\nmetrics:\n  - {name: recall, direction: higher_is_better}\n"
    )
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app, ["difficulty", "results_a.parquet", "results_b.parquet", "--engine", "ray", "-o", "o.parquet"]
    )
    assert result.exit_code == 2, result.output
    assert "kscore[ray]" in result.output
    assert not (tmp_path / "o.parquet").exists()
