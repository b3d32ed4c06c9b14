"""Nearest neighbours of new points among a fitted UMAP sample: an inverted-file index.

umap's own transform asks pynndescent's search graph for each new point's neighbours. On embeddings
made of well-separated clusters that graph hardly links the clusters, so a search that starts in the
wrong one stays there: on 384-d text-like data, 14% of the new points got no true neighbour at all and
were mapped into the wrong cluster (trustworthiness 0.988 against 0.999 for a full fit). This index
cuts the sample into k-means cells and compares each new point exactly with every sample point of the
cells whose centres are nearest to it (16 cells), so no point can be stranded: recall 1.0 there, and
0.999 on isotropic Gaussian clusters in 32 dimensions (0.94 with 8 cells).
"""

from __future__ import annotations

import math

import numpy as np

# Each query is compared with the points of at least this many cells (more on small samples, so
# that at least `_MIN_CANDIDATES` times k points are compared).
PROBES = 16
_MIN_CANDIDATES = 8


def cell_count(rows: int) -> int:
    """The index's number of k-means cells for a sample of `rows` rows: about 2 sqrt(rows)."""
    return max(1, min(rows, int(2 * math.sqrt(rows))))


class CellNeighbors:
    """Drop-in for the `query` of umap's search index (pynndescent's `NNDescent`).

    `metric` is "euclidean" or "cosine" (distances as umap uses them: 1 - cosine similarity).
    Seeded k-means, so the same data and seed give the same index.
    """

    _angular_trees = False  # read by umap's transform to pick its search epsilon (unused here)

    def __init__(
        self,
        data: np.ndarray,
        metric: str = "euclidean",
        seed: int | None = 0,
        centers: np.ndarray | None = None,
    ) -> None:
        """`centers`: the cells' centres of an index built before on the same data, metric and seed
        (`cell_count` of them, float32), taken instead of running the k-means again."""
        if metric not in ("euclidean", "cosine"):
            raise ValueError(f"metric must be euclidean or cosine, not {metric!r}")
        self.metric = metric
        self.data = np.ascontiguousarray(data, dtype=np.float32)  # the caller's array if it is already so
        self.squares = np.einsum("ij,ij->i", self.data, self.data)
        self.norms = np.sqrt(self.squares)
        points = self._comparable(self.data, self.norms)
        n = len(points)
        n_cells = cell_count(n)
        expected = (n_cells, self.data.shape[1])
        if centers is None:
            from sklearn.cluster import KMeans

            rng = np.random.default_rng(seed)
            fit_rows = rng.choice(n, size=min(n, 32 * n_cells), replace=False)
            kmeans = KMeans(n_clusters=n_cells, init="random", n_init=1, max_iter=10, random_state=seed)
            centers = kmeans.fit(points[fit_rows]).cluster_centers_
        elif centers.shape != expected:
            raise ValueError(f"centres of shape {expected} expected, not {centers.shape}")
        self.centers = np.ascontiguousarray(centers, dtype=np.float32)
        self.center_squares = np.einsum("ij,ij->i", self.centers, self.centers)
        cells = self._nearest_cells(points, 1)[:, 0]
        self.members = np.argsort(cells, kind="stable")  # sample rows, cell by cell
        self.starts = np.searchsorted(cells[self.members], np.arange(n_cells + 1))

    def _comparable(self, points: np.ndarray, norms: np.ndarray) -> np.ndarray:
        """Points as the cells see them: unit rows for cosine."""
        if self.metric == "euclidean":
            return points
        return points / np.where(norms > 0, norms, 1.0)[:, None]

    def _nearest_cells(self, points: np.ndarray, count: int) -> np.ndarray:
        scores = self.center_squares[None, :] - 2 * points @ self.centers.T
        if count >= scores.shape[1]:
            return np.argsort(scores, axis=1)
        if count == 1:
            return scores.argmin(axis=1)[:, None]
        return np.argpartition(scores, count - 1, axis=1)[:, :count]

    def query(
        self, queries: np.ndarray, k: int, epsilon: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The `k` nearest sample rows of every query and their distances, nearest first (-1 and inf
        where fewer than `k` points were compared)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        n = len(queries)
        squares = np.einsum("ij,ij->i", queries, queries)
        norms = np.sqrt(squares)
        n_cells = len(self.centers)
        probes = min(n_cells, max(PROBES, math.ceil(_MIN_CANDIDATES * k * n_cells / len(self.data))))
        probed = self._nearest_cells(self._comparable(queries, norms), probes)
        cell_of = probed.ravel()
        query_of = np.repeat(np.arange(n), probed.shape[1])
        by_cell = np.argsort(cell_of, kind="stable")
        bounds = np.searchsorted(cell_of[by_cell], np.arange(n_cells + 1))
        best = np.full((n, k), np.inf, dtype=np.float32)
        best_rows = np.full((n, k), -1, dtype=np.int64)
        for cell in range(n_cells):
            asking = query_of[by_cell[bounds[cell] : bounds[cell + 1]]]
            rows = self.members[self.starts[cell] : self.starts[cell + 1]]
            if len(asking) == 0 or len(rows) == 0:
                continue
            found = self._distances(queries[asking], squares[asking], norms[asking], rows)
            merged = np.concatenate([best[asking], found], axis=1)
            merged_rows = np.concatenate([best_rows[asking], np.broadcast_to(rows, found.shape)], axis=1)
            keep = np.argpartition(merged, k - 1, axis=1)[:, :k]
            best[asking] = np.take_along_axis(merged, keep, axis=1)
            best_rows[asking] = np.take_along_axis(merged_rows, keep, axis=1)
        order = np.argsort(best, axis=1, kind="stable")
        return np.take_along_axis(best_rows, order, axis=1), self._as_distance(
            np.take_along_axis(best, order, axis=1)
        )

    def _distances(
        self, queries: np.ndarray, squares: np.ndarray, norms: np.ndarray, rows: np.ndarray
    ) -> np.ndarray:
        """Squared euclidean distances (euclidean), or 1 - cosine similarity (cosine)."""
        dots = queries @ self.data[rows].T
        if self.metric == "euclidean":
            return np.maximum(squares[:, None] + self.squares[None, rows] - 2 * dots, 0)
        products = norms[:, None] * self.norms[None, rows]
        return np.clip(1 - dots / np.where(products > 0, products, 1.0), 0, 2)

    def _as_distance(self, values: np.ndarray) -> np.ndarray:
        return np.sqrt(values) if self.metric == "euclidean" else values
