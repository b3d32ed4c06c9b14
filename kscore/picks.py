"""Choosing the batch of points to label or train on next (numpy and two numba loops; `kscore
select` is its job).

Three strategies over candidate points (rows of the 2D map, or of an embedding space):
- `top`: the best scores first;
- `diverse`: k-center greedy (farthest-first traversal): each pick is the candidate farthest from
  every earlier pick and every labeled point;
- `balanced`: the candidate with the largest `weight x distance`, where the weight is the square root
  of the score's percentile rank in (0, 1] and the distance that of `diverse` (Lightly's weighted
  diversity: a score-weighted k-center greedy). The first pick without labeled points is the best
  score. The square root (`BALANCED_POWER`) was chosen by measurement (tests/bench/bench_select.py):
  the rank itself piles picks into the hard regions at larger budgets and loses to random picks
  there; its square root beats random and `top` picks at every budget measured.

Every pick records its distance to the nearest earlier pick or labeled point. The distances to the
nearest chosen point are kept in blocks of nearby points (a Morton order on the map, a k-d tree's
order beyond 2 dimensions) with each block's bounding box: a pick only updates the blocks that hold
a point it brings closer, which, as picks accumulate, are the few blocks around it. That loop, and
the search for the next pick, are compiled by numba.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

STRATEGIES = ("balanced", "diverse", "top")
BLOCK = 256  # points per block of the coverage index
GROUP = 64  # blocks per group: a pick tests the groups' boxes first, then the blocks of those it reaches
BALANCED_POWER = 0.5  # balanced's weight: the score's percentile rank to this power


@dataclass
class Picks:
    """Candidate indices in pick order, each pick's distance to the nearest earlier pick or labeled
    point (inf for a first pick with nothing labeled), and the coverage radius afterwards (the
    largest distance from a candidate to its nearest pick or labeled point)."""

    order: np.ndarray
    distance: np.ndarray
    radius: float


def percentile_weights(scores: np.ndarray, ascending: bool = False) -> np.ndarray:
    """Each score's rank among the candidates as a weight in (0, 1], 1 for the best (the highest, or
    with `ascending` the lowest); ties share the lower rank's weight (ordinal by index)."""
    n = len(scores)
    order = ranking(scores, ascending)
    weights = np.empty(n)
    weights[order] = (n - np.arange(n)) / n
    return weights


def ranking(scores: np.ndarray, ascending: bool = False) -> np.ndarray:
    """Indices from the best score to the worst, ties by index: a stable sort, done as a quicksort
    of the keys and a second sort of the tied runs alone (few, for real scores; a stable sort of
    10M floats costs twice a quicksort)."""
    keys = np.asarray(scores, dtype=np.float64)
    keys = keys if ascending else -keys
    order = np.argsort(keys)
    ordered = keys[order]
    tied = np.flatnonzero(ordered[1:] == ordered[:-1])
    if len(tied):
        members = np.unique(np.concatenate([tied, tied + 1]))
        runs = np.cumsum(np.concatenate([[1], np.diff(members) > 1]))  # a run: consecutive tied slots
        starts = np.concatenate([[True], ordered[members[1:]] != ordered[members[:-1]]])
        runs = runs * 2 + np.cumsum(starts)  # split runs of adjacent, different tied values
        order[members] = order[members][np.lexsort((order[members], runs))]
    return order


def pick(
    points: np.ndarray,
    budget: int,
    *,
    strategy: str = "balanced",
    scores: np.ndarray | None = None,
    ascending: bool = False,
    labeled: np.ndarray | None = None,
    seed: int = 0,
    power: float = BALANCED_POWER,
) -> Picks:
    """Pick `budget` of the candidate `points` (n x d, in id order: ties go to the lower index).

    `scores` (n,) rank the candidates for `top` and weigh them for `balanced` (higher is better, or
    lower with `ascending`); `labeled` (m x d) are points already chosen: never picked (they are not
    candidates) and counted as covered. `seed` chooses `diverse`'s first pick when nothing is
    labeled; `balanced` weighs a candidate by its score's percentile rank to the `power`.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    points = np.ascontiguousarray(points, dtype=np.float64)
    n = len(points)
    budget = min(budget, n)
    if strategy != "diverse" and scores is None:
        raise ValueError(f"the {strategy} strategy needs scores")
    if strategy == "top":
        return _top(points, ranking(np.asarray(scores, dtype=np.float64), ascending)[:budget], labeled)
    from concurrent.futures import ThreadPoolExecutor

    # balanced's ranks are sorted while the points are ordered (numpy's sorts release the GIL)
    with ThreadPoolExecutor(1) as background:
        ranked = None
        if strategy == "balanced":
            ranked = background.submit(percentile_weights, np.asarray(scores, dtype=np.float64), ascending)
        order = _spatial_order(points)
        weights = ranked.result() ** power if ranked is not None else np.ones(n)
    index = _Coverage(points, labeled, weights, order)
    chosen: list[int] = []
    distances: list[float] = []
    if (labeled is None or len(labeled) == 0) and budget:  # every distance is inf: no trade-off yet
        first = (
            int(np.argmax(weights))
            if strategy == "balanced"
            else int(np.random.default_rng(seed).integers(n))
        )
        chosen.append(first)
        distances.append(index.take(first))
    while len(chosen) < budget:
        best = index.best()
        chosen.append(best)
        distances.append(index.take(best))
    return Picks(np.array(chosen, dtype=np.int64), np.array(distances), index.radius())


def _top(points: np.ndarray, ranked: np.ndarray, labeled: np.ndarray | None) -> Picks:
    """`top`'s picks with their distances to the nearest earlier pick or labeled point, and the
    coverage radius: a k-d tree over the few chosen points, not an index over every candidate."""
    from scipy.spatial import cKDTree

    chosen = points[ranked]
    labeled = np.zeros((0, points.shape[1])) if labeled is None else np.asarray(labeled, dtype=np.float64)
    covered = np.full(len(ranked), np.inf)
    if len(labeled):
        _, nearest = cKDTree(labeled).query(chosen)
        covered = _distance(chosen, labeled[nearest])
    distance = np.empty(len(ranked))
    for k in range(len(ranked)):
        distance[k] = covered[k]
        covered[k + 1 :] = np.minimum(covered[k + 1 :], _distance(chosen[k + 1 :], chosen[k]))
    centres = np.concatenate([labeled, chosen])
    if len(centres) == 0:
        return Picks(ranked.astype(np.int64), distance, float("inf") if len(points) else 0.0)
    _, nearest = cKDTree(centres).query(points, workers=-1)
    radius = float(_distance(points, centres[nearest]).max())
    return Picks(ranked.astype(np.int64), distance, radius)


def _kernels() -> tuple[Any, Any]:
    """The two inner loops of `_Coverage`, compiled by numba (umap-learn's dependency, cached in
    kscore's cache folder): a pick costs microseconds instead of the ~25 numpy calls it took."""
    global _COMPILED
    if _COMPILED is None:
        from kscore.embedding import use_numba_cache

        use_numba_cache()
        import numba

        @numba.njit(cache=True, nogil=True)
        def cover(xyz, low, high, reach, distance, weight, picked, value_max, group_low, group_high,
                  group_reach, at, group):  # fmt: skip
            """Lower the distances of the points `at` brings closer; keep each block's reach and
            largest value, and each group's reach."""
            n_blocks, size, dims = xyz.shape
            for g in range(group_low.shape[0]):
                gap = 0.0
                for k in range(dims):
                    side = max(group_low[g, k] - at[k], 0.0) + max(at[k] - group_high[g, k], 0.0)
                    gap += side * side
                if not np.sqrt(gap) < group_reach[g]:
                    continue
                widest = 0.0
                for b in range(g * group, min((g + 1) * group, n_blocks)):
                    gap = 0.0
                    for k in range(dims):
                        side = max(low[b, k] - at[k], 0.0) + max(at[k] - high[b, k], 0.0)
                        gap += side * side
                    if np.sqrt(gap) < reach[b]:
                        far = 0.0
                        best = -np.inf
                        for j in range(size):
                            total = 0.0
                            for k in range(dims):  # in order, as `_distance` adds them
                                offset = xyz[b, j, k] - at[k]
                                total += offset * offset
                            current = min(distance[b, j], np.sqrt(total))
                            distance[b, j] = current
                            far = max(far, current)
                            if not picked[b, j]:
                                best = max(best, weight[b, j] * current)
                        reach[b] = far
                        value_max[b] = best
                    widest = max(widest, reach[b])
                group_reach[g] = widest

        @numba.njit(cache=True, nogil=True)
        def best(value_max, weight, distance, picked, index):
            """The lowest index among the unpicked points of the largest `weight x distance`."""
            top = value_max.max()
            chosen = -1
            for b in range(value_max.shape[0]):
                if value_max[b] == top:
                    for j in range(index.shape[1]):
                        value = weight[b, j] * distance[b, j]
                        if not picked[b, j] and value == top and (chosen < 0 or index[b, j] < chosen):
                            chosen = index[b, j]
            return chosen

        _COMPILED = (cover, best)
    return _COMPILED


_COMPILED: tuple[Any, Any] | None = None


class _Coverage:
    """Distances from candidates to their nearest chosen point, in blocks with bounding boxes, and
    each block's largest `weight x distance` among the points not yet picked."""

    def __init__(
        self, points: np.ndarray, labeled: np.ndarray | None, weights: np.ndarray, order: np.ndarray
    ) -> None:
        n, dims = points.shape
        n_blocks = -(-n // BLOCK)
        pad = n_blocks * BLOCK - n
        filled = np.concatenate([order, np.full(pad, order[-1])]) if pad else order
        self.index = filled.reshape(n_blocks, BLOCK)
        self.valid = (np.arange(n_blocks * BLOCK) < n).reshape(n_blocks, BLOCK)
        self.xyz = points[filled].reshape(n_blocks, BLOCK, dims)
        self.low = self.xyz.min(axis=1)
        self.high = self.xyz.max(axis=1)
        self.weight = np.where(self.valid, weights[filled].reshape(n_blocks, BLOCK), 0.0)
        self.position = np.empty(n, dtype=np.int64)
        self.position[order] = np.arange(n)
        self.picked = ~self.valid  # padding counts as picked: never a candidate
        has_labeled = labeled is not None and len(labeled) > 0
        self.distance = np.full((n_blocks, BLOCK), np.inf)
        if has_labeled:
            from scipy.spatial import cKDTree

            labeled = np.asarray(labeled, dtype=np.float64)
            flat = self.xyz.reshape(-1, dims)
            _, nearest = cKDTree(labeled).query(flat)
            # the same arithmetic as a pick's distances (`_distance`), not the tree's
            self.distance = _distance(flat, labeled[nearest]).reshape(n_blocks, BLOCK)
        self.distance[~self.valid] = 0.0
        self.reach = self.distance.max(axis=1)  # per block: the largest distance, what a pick can lower
        if has_labeled:
            self.value_max = self._values(slice(None)).max(axis=1)
        else:  # every distance is inf, every weight > 0
            self.value_max = np.where(self.valid[:, 0], np.inf, -np.inf)
        starts = np.arange(0, n_blocks, GROUP)
        self.group_low = np.minimum.reduceat(self.low, starts, axis=0)
        self.group_high = np.maximum.reduceat(self.high, starts, axis=0)
        self.group_reach = np.maximum.reduceat(self.reach, starts)

    def _values(self, blocks: np.ndarray | slice) -> np.ndarray:
        """`weight x distance` of the blocks' points, -inf where picked (or padding)."""
        with np.errstate(invalid="ignore"):
            values = self.weight[blocks] * self.distance[blocks]
        values[self.picked[blocks]] = -np.inf
        return values

    def best(self) -> int:
        """The candidate with the largest `weight x distance` (the lowest index among equals)."""
        return int(_kernels()[1](self.value_max, self.weight, self.distance, self.picked, self.index))

    def take(self, point: int) -> float:
        """Mark `point` picked; its distance to the nearest earlier pick or labeled point."""
        position = self.position[point]
        block, slot = divmod(int(position), BLOCK)
        distance = float(self.distance[block, slot])
        self.picked[block, slot] = True
        self._cover(self.xyz[block, slot])
        self.value_max[block] = self._values(np.array([block])).max()
        return distance

    def _cover(self, at: np.ndarray) -> None:
        _kernels()[0](
            self.xyz, self.low, self.high, self.reach, self.distance, self.weight, self.picked,
            self.value_max, self.group_low, self.group_high, self.group_reach, np.ascontiguousarray(at),
            GROUP,
        )  # fmt: skip

    def radius(self) -> float:
        return float(self.reach.max()) if len(self.reach) else 0.0


def _distance(points: np.ndarray, to: np.ndarray) -> np.ndarray:
    """Euclidean distances along the last axis, the squares added in order of the axes (as the
    compiled kernel adds them: the same numbers whichever computes them)."""
    offset = points - to
    total = offset[..., 0] * offset[..., 0]
    for k in range(1, offset.shape[-1]):
        total += offset[..., k] * offset[..., k]
    return np.sqrt(total)


def _spatial_order(points: np.ndarray) -> np.ndarray:
    """An order of the points in which neighbours in the order are near in space: the Morton (Z)
    order on a 2D map, a k-d tree's leaf order in more dimensions."""
    if points.shape[1] != 2:
        from scipy.spatial import cKDTree

        return np.asarray(cKDTree(points, leafsize=BLOCK // 2, balanced_tree=False).indices, dtype=np.int64)
    low = points.min(axis=0)
    scale = 65535 / np.maximum(points.max(axis=0) - low, 1e-300)
    cells = np.empty(points.shape, dtype=np.uint32)
    for axis in range(2):
        column = points[:, axis] - low[axis]
        column *= scale[axis]
        cells[:, axis] = column
    # ties in the order do not matter (a pick's ties go to the lowest index whatever the order)
    return np.argsort(_spread_bits(cells[:, 0]) | (_spread_bits(cells[:, 1]) << np.uint32(1)))


def _spread_byte_table() -> np.ndarray:
    values = np.arange(256, dtype=np.uint32)
    for shift, mask in ((4, 0x0F0F), (2, 0x3333), (1, 0x5555)):
        values = (values | (values << np.uint32(shift))) & np.uint32(mask)
    return values


_SPREAD = _spread_byte_table()


def _spread_bits(values: np.ndarray) -> np.ndarray:
    """16-bit integers with a zero bit inserted after each bit (the halves of a Morton code)."""
    return _SPREAD[values & 0xFF] | (_SPREAD[(values >> 8) & 0xFF] << np.uint32(16))
