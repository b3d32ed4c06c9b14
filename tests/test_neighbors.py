"""The transform's neighbour search: exact within the nearest k-means cells (against scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from kscore.core.neighbors import CellNeighbors


def clustered(rows: int, dims: int = 32, clusters: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated Gaussian clusters (the case where a graph search can be stranded), and labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=6.0, size=(clusters, dims))
    labels = rng.integers(0, clusters, rows)
    return (centers[labels] + rng.normal(size=(rows, dims))).astype(np.float32), labels


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_query_finds_the_exact_neighbours_nearest_first(metric):
    data, _ = clustered(6000)
    sample, queries = data[:5000], data[5000:]
    rows, distances = CellNeighbors(sample, metric, seed=0).query(queries, 15)
    exact_distances, exact_rows = (
        NearestNeighbors(n_neighbors=15, metric=metric).fit(sample).kneighbors(queries)
    )
    recall = np.mean([len(set(a) & set(b)) / 15 for a, b in zip(rows, exact_rows, strict=True)])
    assert recall >= 0.999
    assert np.all(np.diff(distances, axis=1) >= 0)
    same = rows == exact_rows
    assert np.allclose(distances[same], exact_distances[same], rtol=1e-4, atol=1e-5)


def test_small_samples_are_searched_whole():
    data, _ = clustered(300, clusters=3)
    rows, distances = CellNeighbors(data[:40], "euclidean", seed=1).query(data[40:], 10)
    exact_distances, exact_rows = NearestNeighbors(n_neighbors=10).fit(data[:40]).kneighbors(data[40:])
    assert np.array_equal(rows, exact_rows)
    assert np.allclose(distances, exact_distances, rtol=1e-4)


def test_fewer_sample_rows_than_neighbours_pads_with_minus_one_and_inf():
    data, _ = clustered(20, clusters=2)
    rows, distances = CellNeighbors(data[:4], "euclidean", seed=0).query(data[4:], 6)
    assert np.all(rows[:, 4:] == -1) and np.all(np.isinf(distances[:, 4:]))
    assert sorted(rows[0, :4].tolist()) == [0, 1, 2, 3]


def test_same_seed_same_index():
    data, _ = clustered(3000)
    first = CellNeighbors(data[:2000], "cosine", seed=7).query(data[2000:], 15)
    again = CellNeighbors(data[:2000], "cosine", seed=7).query(data[2000:], 15)
    assert np.array_equal(first[0], again[0]) and np.array_equal(first[1], again[1])


@pytest.mark.slow
def test_umap_transform_uses_it_and_maps_new_points_into_their_cluster(monkeypatch):
    """Beyond umap's small-data path (4096 rows), the fitted model's search index is kscore's, and
    every transformed point lands among fitted points of its own cluster."""
    import kscore.core.neighbors as neighbors
    from kscore.core.reduction import reduce_to_2d

    queried = []
    query = neighbors.CellNeighbors.query
    monkeypatch.setattr(
        neighbors.CellNeighbors,
        "query",
        lambda self, x, k, epsilon=None: queried.append(len(x)) or query(self, x, k),
    )
    data, labels = clustered(7000, dims=24, clusters=8)
    xy, params = reduce_to_2d(data, fit_sample=4500, seed=0)
    assert sum(queried) == 2500 and "transform_neighbors" in params
    fitted = np.sort(np.random.default_rng(0).choice(7000, size=4500, replace=False))
    new = np.setdiff1d(np.arange(7000), fitted)
    _, nearest = NearestNeighbors(n_neighbors=5).fit(xy[fitted]).kneighbors(xy[new])
    same_cluster = (labels[fitted][nearest] == labels[new][:, None]).mean()
    assert same_cluster >= 0.99
