"""A saved map (`embed-scores --save-map`, `--map`): saved, loaded and used to place rows without a
fit; the input it was saved from gets the same map bitwise; new rows land where their kind was."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

import kscore
from kscore.core.reduction import place_on_map, reduce_to_2d
from kscore.core.saved_map import SavedMap
from kscore.errors import InputError
from tests.conftest import SAMPLE, run_kscore

pytestmark = pytest.mark.slow  # UMAP fits: run by CI's second pass (`-m "slow or catalogue"`)


def _clusters(rows: int, dim: int = 24, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(12, dim)) * 4
    return (centers[rng.integers(0, 12, rows)] + rng.normal(size=(rows, dim))).astype(np.float32)


def _round_trip(saved: SavedMap) -> SavedMap:
    """The map through its JSON and arrays, as a file holds them."""
    record = json.loads(json.dumps(saved.record()))
    centers = None if saved.centers is None else saved.centers.copy()
    return SavedMap.from_parts(record, saved.vectors.copy(), saved.coordinates.copy(), "test", centers)


@pytest.mark.parametrize(("rows", "fit_sample"), [(1500, 20_000), (12_000, 3000)])
def test_the_input_a_map_was_saved_from_gets_the_same_map_bitwise(rows: int, fit_sample: int) -> None:
    data = _clusters(rows)
    data[7] = data[3]  # equal rows keep equal coordinates
    fitted: list[SavedMap] = []
    first, _ = reduce_to_2d(data, fit_sample=fit_sample, on_fit=fitted.append, jobs=1)
    again, params = place_on_map(data, _round_trip(fitted[0]), jobs=1)
    assert np.array_equal(first, again)
    assert np.array_equal(again[7], again[3])
    assert params["fit_rows_found"] == min(rows, fit_sample) - (rows <= fit_sample)


def test_a_map_saved_before_input_order_places_rows_as_the_run_that_saved_it() -> None:
    """A map without `distinct_order` (kscore 0.8.7 and earlier, which batched the distinct rows
    in the order of their hashes) still gives the saving run's map bitwise; a new map's run batches
    them in the input's order, so the two runs differ."""
    from kscore.core import reduction

    data = _clusters(5000)
    data[::50] = data[1]  # repeated rows: the distinct rows' order matters
    # As 0.8.7 ran: the distinct rows in the order of their hashes mapped, then each row copied.
    leaders, index = reduction.distinct_rows(data, order="hash")
    fitted: list[SavedMap] = []
    mapped, _ = reduce_to_2d(data[leaders], fit_sample=2000, on_fit=fitted.append, jobs=1)
    by_hash = mapped[index]
    saved = _round_trip(fitted[0])
    del saved.parameters["distinct_order"]  # as 0.8.7 wrote it
    again, params = place_on_map(data, saved, jobs=1)
    assert params["distinct_order"] == "hash"
    assert np.array_equal(again, by_hash)
    by_input, now = reduce_to_2d(data, fit_sample=2000, jobs=1)
    assert now["distinct_order"] == "input" and not np.array_equal(by_input, by_hash)


def test_a_map_keeps_its_index_cells_and_runs_no_k_means(monkeypatch: pytest.MonkeyPatch) -> None:
    """The saved map holds the centres of its neighbour index's k-means cells: placing rows on it
    runs no k-means, and gives the saving run's map bitwise; so does a map without them (kscore
    0.8.10 and earlier), which runs the k-means again."""
    import sklearn.cluster

    from kscore.core.neighbors import cell_count

    data = _clusters(5000)
    fitted: list[SavedMap] = []
    first, _ = reduce_to_2d(data, fit_sample=1500, on_fit=fitted.append, jobs=1)
    saved = _round_trip(fitted[0])
    assert saved.centers is not None and saved.centers.shape == (cell_count(1500), data.shape[1])

    def no_k_means(*args: object, **kwargs: object) -> None:
        raise AssertionError("a saved map's index ran a k-means")

    with monkeypatch.context() as patched:
        patched.setattr(sklearn.cluster, "KMeans", no_k_means)
        placed, _ = place_on_map(data, saved, jobs=1)
    assert np.array_equal(placed, first)
    without = _round_trip(fitted[0])
    without.centers = None
    again, _ = place_on_map(data, without, jobs=1)
    assert np.array_equal(again, first)
    assert np.array_equal(without.search_index().centers, saved.centers)


def test_a_map_file_keeps_its_cell_centres(tmp_path: Path) -> None:
    """In the file, the centres fill the first rows of `cell_center`; a map file without that column
    (kscore 0.8.10 and earlier) places the rows the same."""
    from kscore.core.neighbors import cell_count

    rows = 4000
    ids = np.arange(rows)
    split = np.where(ids % 4 == 0, "val", "train")
    table = pl.DataFrame({"id": ids, "split": split, "embedding": pl.Series(_clusters(rows, 16))})
    map_file, old_map = tmp_path / "map.parquet", tmp_path / "old.parquet"
    first = kscore.embed_scores(table, save_map=map_file, fit_sample=1000, jobs=1)
    saved = pl.read_parquet(map_file)
    assert saved.get_column("cell_center").is_not_null().sum() == cell_count(1000)
    assert saved.get_column("cell_center").head(cell_count(1000)).is_not_null().all()
    assert first.equals(kscore.embed_scores(table, saved_map=map_file, jobs=1))
    metadata = pq.read_metadata(map_file).metadata[b"kscore"].decode()
    saved.drop("cell_center").write_parquet(old_map, metadata={"kscore": metadata})
    assert first.equals(kscore.embed_scores(table, saved_map=old_map, jobs=1))


def test_a_map_with_an_unknown_distinct_order_is_refused() -> None:
    saved = SavedMap(
        np.zeros((3, 4), np.float32), np.zeros((3, 2), np.float32),
        {"n_neighbors": 2, "min_dist": 0.1, "metric": "euclidean", "seed": 0, "fit_epochs": 200,
         "transform_epochs": 10, "distinct_order": "random"},
        {"a": 1.0, "b": 1.0, "small_data": True, "disconnection_distance": 1.0, "n_neighbors_fitted": 2,
         "initial_alpha": 1.0},
    )  # fmt: skip
    with pytest.raises(InputError, match="distinct_order 'random'"):
        _round_trip(saved)


def test_fit_rows_keep_their_coordinates_among_new_rows() -> None:
    data = _clusters(6000)
    fitted: list[SavedMap] = []
    first, _ = reduce_to_2d(data, fit_sample=2000, on_fit=fitted.append, jobs=1)
    saved = fitted[0]
    new = _clusters(3000, seed=5)
    mixed = np.concatenate([new[:1500], saved.vectors[::2], new[1500:]])
    placed, params = place_on_map(mixed, _round_trip(saved), jobs=1)
    assert params["fit_rows_found"] == len(saved.vectors[::2])
    assert np.array_equal(
        placed[1500 : 1500 + len(saved.vectors[::2])], saved.coordinates[::2].astype(np.float64)
    )
    # the saving run's fit rows, bitwise, are those coordinates
    sample_rows = {row.tobytes(): i for i, row in enumerate(data)}
    index = [sample_rows[row.tobytes()] for row in saved.vectors[::2]]
    assert np.array_equal(first[index], saved.coordinates[::2].astype(np.float64))
    assert np.isfinite(placed).all()


def test_a_new_split_of_digits_lands_where_its_class_was() -> None:
    """Round 1 fits the map on half of digits; round 2 places the other half on it. Each new digit's
    nearest round-1 neighbour on the map has its class in at least 90% of cases."""
    from sklearn.datasets import load_digits
    from sklearn.neighbors import KNeighborsClassifier

    digits = load_digits()
    rng = np.random.default_rng(1)
    order = rng.permutation(len(digits.target))
    first, second = order[: len(order) // 2], order[len(order) // 2 :]
    data = (digits.data / 16).astype(np.float32)
    fitted: list[SavedMap] = []
    round_one, _ = reduce_to_2d(data[first], on_fit=fitted.append, jobs=1)
    round_two, params = place_on_map(data[second], _round_trip(fitted[0]), jobs=1)
    assert params["fit_rows_found"] == 0
    nearest = KNeighborsClassifier(n_neighbors=1).fit(round_one, digits.target[first])
    agreeing = float((nearest.predict(round_two) == digits.target[second]).mean())
    assert agreeing >= 0.9, agreeing


def _sample_table() -> pl.DataFrame:
    return pl.read_parquet(SAMPLE / "embeddings.parquet")


def test_embed_scores_with_a_saved_map_equals_the_run_that_saved_it(tmp_path: Path) -> None:
    table = _sample_table()
    saved_out, map_file, placed_out = tmp_path / "a.parquet", tmp_path / "map.parquet", tmp_path / "b.parquet"
    summary = kscore.embed_scores(table, saved_out, save_map=map_file)
    assert summary["map"] == str(map_file)
    kscore.embed_scores(table, placed_out, saved_map=map_file)
    assert pl.read_parquet(saved_out).equals(pl.read_parquet(placed_out))
    metadata = json.loads(pq.read_metadata(map_file).metadata[b"kscore"])
    assert metadata["map"]["rows"] == table.height and metadata["map"]["width"] == 64
    # A map is data: arrays and JSON, no pickle anywhere.
    assert b"pickle" not in map_file.read_bytes() and b"\x80\x04\x95" not in map_file.read_bytes()


def test_the_library_without_out_saves_and_uses_a_map(tmp_path: Path) -> None:
    table = _sample_table()
    map_file = tmp_path / "map.parquet"
    first = kscore.embed_scores(table, save_map=map_file)
    second = kscore.embed_scores(table.sample(fraction=1.0, shuffle=True, seed=3), saved_map=map_file)
    joined = first.select("id", "map_x", "map_y").join(second.select("id", "map_x", "map_y"), on="id")
    assert joined.height == table.height
    assert joined.select((pl.col("map_x") == pl.col("map_x_right")).all()).item()


def test_a_map_of_other_embeddings_is_exit_2(tmp_path: Path) -> None:
    table = _sample_table()
    map_file = tmp_path / "map.parquet"
    kscore.embed_scores(table, save_map=map_file)
    narrower = table.with_columns(pl.col("embedding").arr.head(32))
    with pytest.raises(InputError, match=r"the map was fitted on embeddings of 64 dimensions; .* has 32"):
        kscore.embed_scores(narrower, saved_map=map_file)
    with pytest.raises(InputError, match="the map measures euclidean distances, not --metric cosine"):
        kscore.embed_scores(table, saved_map=map_file, metric="cosine")


def test_a_saved_map_on_100000_rows(tmp_path: Path) -> None:
    """Save, load and transform at 100,000 rows (a 20,000-row fit sample): the same input gets the
    same map bitwise through the file, and the saving run's fit rows are the map's coordinates."""
    rows = 100_000
    data = _clusters(rows, dim=32, seed=2)
    ids = np.arange(rows)
    table = pl.DataFrame(
        {"id": ids, "split": np.where(ids % 5 == 0, "test", "train"), "embedding": pl.Series(data)}
    )
    map_file = tmp_path / "map.parquet"
    first = kscore.embed_scores(table, save_map=map_file, jobs=2)
    second = kscore.embed_scores(table, saved_map=map_file, jobs=2)
    assert first.select("map_x", "map_y").equals(second.select("map_x", "map_y"))
    saved = pl.read_parquet(map_file)
    assert saved.height == 20_000
    vectors = saved.get_column("vector").to_numpy()
    where = {row.tobytes(): i for i, row in enumerate(data)}
    index = np.array([where[row.tobytes()] for row in vectors])
    coordinates = first.select("map_x", "map_y").to_numpy()[index]
    assert np.array_equal(coordinates, saved.select("map_x", "map_y").to_numpy().astype(np.float64))


def test_the_cli_saves_and_uses_a_map(tmp_path: Path) -> None:
    embeddings = str(SAMPLE / "embeddings.parquet")
    done = run_kscore(
        "embed-scores", embeddings, "-o", "a.parquet", "--save-map", "map.parquet", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "wrote map.parquet" in done.stderr
    done = run_kscore(
        "embed-scores", embeddings, "-o", "b.parquet", "--map", "map.parquet", "--json", cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert pl.read_parquet(tmp_path / "a.parquet").equals(pl.read_parquet(tmp_path / "b.parquet"))


def test_a_saved_maps_workers_get_arrays_and_build_the_model_as_they_start(tmp_path: Path) -> None:
    """What a map run sends its transform workers: the map and its neighbour index, pickled as
    arrays (no umap object). Unpickled in a fresh process (a worker starting), it imports umap and
    builds the model there and then, before any batch; it places rows bitwise as the model built
    from the map directly."""
    import pickle
    import subprocess
    import sys

    from kscore.core.reduction import _MapTransform

    data = _clusters(3000)
    fitted: list[SavedMap] = []
    reduce_to_2d(data, fit_sample=1000, on_fit=fitted.append, jobs=1)
    saved = _round_trip(fitted[0])
    batch = _clusters(300, seed=5)
    shared = pickle.dumps(_MapTransform(saved, saved.search_index()))
    assert b"umap" not in shared
    (tmp_path / "shared.pickle").write_bytes(shared)
    np.save(tmp_path / "batch.npy", batch)
    script = (
        "import pickle, sys, numpy as np\n"
        "from kscore.core.reduction import _transform\n"
        f"shared = pickle.loads(open({str(tmp_path / 'shared.pickle')!r}, 'rb').read())\n"
        "assert 'umap' in sys.modules and shared.model is not None, 'not built on unpickling'\n"
        f"batch = np.load({str(tmp_path / 'batch.npy')!r})\n"
        f"np.save({str(tmp_path / 'placed.npy')!r}, _transform(shared, batch))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = saved.umap_model().transform(batch)
    assert np.array_equal(np.load(tmp_path / "placed.npy"), expected)


def test_a_map_runs_transform_workers_start_while_the_input_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a saved map the transform workers start before the input is read (they import umap
    and build the model meanwhile), and the map runs on them: the same output as workers started
    by the map itself. Batches of 500 rows make 12,000 rows enough for two workers."""
    import tempfile

    import kscore.core.reduction as reduction
    import kscore.engines.local as local

    monkeypatch.setattr(reduction, "TRANSFORM_BATCH", 500)
    rows = 12_000
    ids = np.arange(rows)
    table = pl.DataFrame(
        {"id": ids, "split": np.where(ids % 5 == 0, "test", "train"), "embedding": pl.Series(_clusters(rows))}
    )
    source = tmp_path / "emb.parquet"
    table.write_parquet(source)
    map_file = tmp_path / "map.parquet"
    kscore.embed_scores(table, save_map=map_file, fit_sample=2000, jobs=2)

    events: list[str] = []
    pools: list[local.SharedPool] = []
    start, read, run_map = local.SharedPool.start, reduction.place_on_map, local.map_with_shared

    def started(pool: local.SharedPool) -> None:
        events.append("workers started")
        pools.append(pool)
        start(pool)

    def placed(*args: object, **kwargs: object) -> object:
        events.append("input read")
        return read(*args, **kwargs)

    def mapped(*args: object, pool: local.SharedPool | None = None, **kwargs: object) -> object:
        events.append("map on the started workers" if pool is not None and pool in pools else "map")
        return run_map(*args, pool=pool, **kwargs)

    monkeypatch.setattr(local.SharedPool, "start", started)
    monkeypatch.setattr(reduction, "place_on_map", placed)
    monkeypatch.setattr(local, "map_with_shared", mapped)
    warm = kscore.embed_scores(source, saved_map=map_file, jobs=2)
    assert events == ["workers started", "input read", "map on the started workers"]

    # A run that fails after they started (a repeated id) stops them and leaves no folder.
    events.clear()
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    repeated = tmp_path / "repeated.parquet"
    table.with_columns(pl.when(pl.col("id") == 1).then(0).otherwise(pl.col("id")).alias("id")).write_parquet(
        repeated
    )
    with pytest.raises(InputError, match="duplicated id"):
        kscore.embed_scores(repeated, saved_map=map_file, jobs=2)
    assert events == ["workers started"]
    assert list(temp.iterdir()) == []

    events.clear()
    monkeypatch.setattr(local.LocalExecutor, "started", lambda *_: __import__("contextlib").nullcontext())
    cold = kscore.embed_scores(source, saved_map=map_file, jobs=2)
    assert events == ["input read", "map"]
    assert warm.equals(cold)


def test_started_workers_serve_only_their_own_map_and_stop_unused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers started for one shared object load it before the map does; a map with another
    object starts its own; workers never used stop at the block's end, their folder removed."""
    import os
    import tempfile
    import time

    from kscore.engines.local import LocalExecutor

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    shared = _LoadStamp(tmp_path / "loads")
    executor = LocalExecutor(2)
    with executor.started(shared, 2):
        _wait_for_files(tmp_path / "loads", 2)  # the workers load it meanwhile
        loaded = {when for _, when in map(_stamp_parts, (tmp_path / "loads").iterdir())}
        stamps = set(executor.map_with_shared(_load_time, range(4), shared, most=2))
    assert stamps <= loaded  # the map ran on those workers
    assert len(list((tmp_path / "loads").iterdir())) == 2  # and started none

    other = _LoadStamp(tmp_path / "other")
    with executor.started(shared, 2):
        before = time.time()
        assert all(s >= before for s in executor.map_with_shared(_load_time, range(4), other, most=2))

    unused = _LoadStamp(tmp_path / "unused")
    with executor.started(unused, 2):
        _wait_for_files(tmp_path / "unused", 2)
    pids = [pid for pid, _ in map(_stamp_parts, (tmp_path / "unused").iterdir())]
    assert len(pids) == 2
    deadline = time.time() + 30
    while any(_alive(pid) for pid in pids) and time.time() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("kscore-shared")] == []
    assert os.getpid() not in pids


class _LoadStamp:
    """Writes `<pid>-<time>` into `folder` when it is unpickled (a worker loading it)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir()
        self.loaded = 0.0

    def __setstate__(self, state: dict) -> None:
        import os
        import time

        self.__dict__.update(state)
        self.loaded = time.time()
        (self.folder / f"{os.getpid()}-{self.loaded!r}").touch()


def _wait_for_files(folder: Path, count: int) -> None:
    import time

    deadline = time.time() + 120
    while len(list(folder.iterdir())) < count and time.time() < deadline:
        time.sleep(0.1)


def _load_time(shared: _LoadStamp, item: int) -> float:
    return shared.loaded


def _stamp_parts(path: Path) -> tuple[int, float]:
    pid, when = path.name.split("-", 1)
    return int(pid), float(when)


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped by loky) counts as gone
        return "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return False
