"""Choosing the batch of points to label or train on next (numpy and numba loops; `kscore select`
is its job).

Four strategies over candidate points (rows of the 2D map, or of an embedding space):
- `typical`: the most typical point of each uncovered region (ProbCover's greedy, Yehuda et al.
  2022; the low-budget idea of TypiClust, Hacohen et al. 2022): each candidate covers the candidates
  within a radius set by the data and the budget, and each pick is the candidate covering the most
  candidates that nothing covers yet (labeled points cover theirs first);
- `balanced` (the default): `typical` with each candidate's count weighted by its score's
  percentile rank to a power (`balanced_power`): 0.25 where the models fail on half the reference
  rows or more, so that among regions of like size the harder one goes first, rising with the
  models' odds of being right to 4, where the hard points near their boundaries go first. The
  rule and the default were chosen by tests/bench/bench_select.py on half of its data sets (and
  reported on the other half);
- `diverse`: k-center greedy (farthest-first traversal): each pick is the candidate farthest from
  every earlier pick and every labeled point;
- `top`: the best scores first.

Every pick records its distance to the nearest earlier pick or labeled point. For `diverse`, the
distances to the nearest chosen point are kept in blocks of nearby points (a Morton order on the
map, a k-d tree's order beyond 2 dimensions) with each block's bounding box: a pick only updates the
blocks that hold a point it brings closer. The cover's graph of neighbours is built by a k-d tree;
its greedy keeps each block's best vertex, so a pick rescans only the blocks it changed. The loops
are compiled by numba.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

STRATEGIES = ("balanced", "typical", "diverse", "top")
DEFAULT_STRATEGY = "balanced"
COVER_PAIRS = 10_000_000  # pairs of neighbours above which typical_cover works on a sample
RADIUS_QUERIES = 2_000  # points whose neighbours set the cover radius
TREE_DIMENSIONS = 4  # up to this many dimensions, a k-d tree finds a point's neighbours
RADIUS_GRID = 512  # cells a side of the grid that bounds the coverage radius on a large map
BLOCK = 256  # points per block of the coverage index
GROUP = 64  # blocks per group: a pick tests the groups' boxes first, then the blocks of those it reaches
BALANCED_POWER = 0.25  # balanced's weight: the score's percentile rank to this power (bench_select.py)
MAX_BALANCED_POWER = 4.0  # the power where the models are right on nearly every reference row


@dataclass
class Picks:
    """Candidate indices in pick order, each pick's distance to the nearest earlier pick or labeled
    point (inf for a first pick with nothing labeled), the coverage radius afterwards (the
    largest distance from a candidate to its nearest pick or labeled point), and how many
    candidates a sampled cover chose among (none when it saw them all)."""

    order: np.ndarray
    distance: np.ndarray
    radius: float
    sample: int | None = None


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
    strategy: str = DEFAULT_STRATEGY,
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
    labeled, and the sample `typical` and `balanced` cover above `COVER_PAIRS`; `balanced` weighs a
    candidate by its score's percentile rank to the `power`.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}")
    points = np.ascontiguousarray(points, dtype=np.float64)
    n = len(points)
    budget = min(budget, n)
    if strategy in ("top", "balanced") and scores is None:
        raise ValueError(f"the {strategy} strategy needs scores")
    labeled = np.zeros((0, points.shape[1])) if labeled is None else np.asarray(labeled, dtype=np.float64)
    if strategy == "top":
        return _top(points, ranking(np.asarray(scores, dtype=np.float64), ascending)[:budget], labeled)
    if strategy in ("typical", "balanced"):
        weights = (
            percentile_weights(np.asarray(scores, dtype=np.float64), ascending) ** power
            if strategy == "balanced"
            else np.ones(n)
        )
        order, sample = typical_cover(points, budget, weights, labeled, seed)
        picks = _top(points, order, labeled)
        picks.sample = sample if sample < n else None
        return picks
    index = _Coverage(points, labeled, _spatial_order(points))
    chosen: list[int] = []
    distances: list[float] = []
    if len(labeled) == 0 and budget:  # every distance is inf: a seeded first pick
        first = int(np.random.default_rng(seed).integers(n))
        chosen.append(first)
        distances.append(index.take(first))
    while len(chosen) < budget:
        best = index.best()
        chosen.append(best)
        distances.append(index.take(best))
    return Picks(np.array(chosen, dtype=np.int64), np.array(distances), index.radius())


def balanced_power(competence: float | None) -> float:
    """`balanced`'s power for models right on a share `competence` of the reference rows: the
    base power times their odds of being right, c / (1 - c), between `BALANCED_POWER` (at even odds
    and below, or with no reference difficulty) and `MAX_BALANCED_POWER`. Models that already
    get most rows right fail near their decision boundaries, where the hard points are the ones to
    label (uncertainty's regime); models that fail everywhere need the typical points first
    (typicality's, at low budgets). Chosen by tests/bench/bench_select.py on half its data sets."""
    if competence is None or not np.isfinite(competence) or competence <= 0.5:
        return BALANCED_POWER
    if competence >= 1.0:
        return MAX_BALANCED_POWER
    return float(min(MAX_BALANCED_POWER, BALANCED_POWER * competence / (1.0 - competence)))


def cover_radius(points: np.ndarray, regions: int, seed: int = 0) -> float:
    """The radius of a region: the median distance from a point to its j-th nearest other point,
    j = len(points) / `regions` (about as many points as a region would hold if the points were cut
    into `regions` regions), over every point or a seeded `RADIUS_QUERIES` of them."""
    return _radius(points, regions, seed)[0]


def _radius(points: np.ndarray, regions: int, seed: int) -> tuple[float, float]:
    """`cover_radius`, and the mean number of points within it of a point (len(points) times this,
    halved, estimates the pairs of neighbours a cover needs). A k-d tree finds the neighbours in a
    few dimensions; beyond, blocks of distances by matrix products do (a tree visits most of its
    leaves there; the products round to about 1e-7, which a radius chosen from the data can bear)."""
    from scipy.spatial import cKDTree

    n, dims = points.shape
    if n < 2:
        return 0.0, float(n)
    j = int(min(max(round(n / max(regions, 1)), 1), n - 1))
    few = dims <= TREE_DIMENSIONS
    wanted = RADIUS_QUERIES if few else RADIUS_QUERIES // 4  # a median of 500 is a median still
    queries = points
    if n > wanted:
        queries = points[np.sort(np.random.default_rng(seed).choice(n, wanted, replace=False))]
    if few:
        tree = cKDTree(points)
        radius = float(np.median(tree.query(queries, j + 1)[0][:, j]))
        return radius, float(np.mean(tree.query_ball_point(queries, radius, return_length=True)))
    rows = max(1, 20_000_000 // n)  # bounded temporaries
    blocks = [queries[start : start + rows] for start in range(0, len(queries), rows)]
    squares = np.einsum("ij,ij->i", points, points)

    def squared(block: np.ndarray) -> np.ndarray:
        product = block @ points.T
        product *= -2
        product += squares
        product += np.einsum("ij,ij->i", block, block)[:, None]
        return product

    nearest = np.concatenate([np.partition(squared(b), j, axis=1)[:, j] for b in blocks])
    radius = float(np.median(np.sqrt(np.maximum(nearest, 0.0))))
    return radius, float(np.mean(np.concatenate([(squared(b) <= radius**2).sum(axis=1) for b in blocks])))


def typical_cover(
    points: np.ndarray, budget: int, weights: np.ndarray, labeled: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, int]:
    """The candidates that cover the most uncovered candidates, densest regions first (ProbCover's
    greedy, Yehuda et al. 2022, with a radius from the data instead of class purity).

    Each candidate covers the candidates within the radius `cover_radius(points, labeled + budget)`
    of it; labeled points cover theirs before the first pick. Each pick is the candidate with the
    largest `weight x the number of uncovered candidates it covers`; ties go to the more typical (more
    candidates within half the radius), then to the lower index. Once every candidate is covered,
    the radius halves. Where the cover would hold more than `COVER_PAIRS` pairs of neighbours, the
    picks come from a seeded sample of the candidates sized to hold about that many. Returns
    candidate indices in pick order, and the size of the sample.
    """
    n = len(points)
    budget = min(budget, n)
    if budget == 0:
        return np.zeros(0, dtype=np.int64), n
    regions = len(labeled) + budget
    smallest = min(n, 2 * budget)
    limit = COVER_PAIRS * min(1.0, TREE_DIMENSIONS / points.shape[1])  # a pair costs more in more dimensions
    size = max(min(n, int(np.sqrt(2 * limit * regions))), smallest)
    for attempt in range(2):  # pairs grow as the square of the sample: one correction suffices
        rng = np.random.default_rng(seed)
        sample = np.arange(n) if size >= n else np.sort(rng.choice(n, size, replace=False))
        radius, ball = _radius(points[sample], regions, seed)
        pairs = size * ball / 2
        if attempt or pairs <= 1.5 * limit or size == smallest:
            break
        size = max(int(size * np.sqrt(limit / pairs)), smallest)
    # one vertex per distinct point: its heaviest copy (ties: the lower index)
    distinct, first, counts = _distinct(points[sample], weights[sample])
    candidate = sample[first]
    chosen: list[int] = []
    picked = np.zeros(len(distinct), dtype=bool)
    for _ in range(64):  # each round halves the radius
        indptr, neighbours, typical = _pairs(distinct, radius, counts)
        covered = _within(distinct, np.concatenate([labeled, points[candidate[picked]]]), radius)
        order = _kernels()[3](indptr, neighbours, counts.astype(np.float64), weights[candidate], typical,
                              candidate, covered, picked, budget - len(chosen))  # fmt: skip
        chosen.extend(candidate[order].tolist())
        if len(chosen) == budget or radius == 0 or picked.all():
            break
        radius /= 2
    if len(chosen) < budget:  # every distinct point is picked or sits on a labeled one: by weight
        left = np.setdiff1d(np.arange(n), np.array(chosen, dtype=np.int64))
        chosen.extend(left[ranking(weights[left])][: budget - len(chosen)].tolist())
    return np.array(chosen, dtype=np.int64), len(sample)


def _distinct(points: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, ...]:
    """The distinct points in a spatial order, the index of each one's heaviest copy (the lowest among
    equals) and its number of copies."""
    order = np.lexsort((-weights, *points.T[::-1]))  # by position, then heaviest first
    ordered = points[order]
    new = np.ones(len(points), dtype=bool)
    new[1:] = np.any(ordered[1:] != ordered[:-1], axis=1)
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, len(points)))
    # the heaviest copy with the lowest index: lexsort kept the index order among equal keys
    distinct, first = ordered[starts], order[starts]
    near = _spatial_order(distinct) if len(distinct) > 1 else np.arange(len(distinct))
    return distinct[near], first[near], counts[near]


def _pairs(
    distinct: np.ndarray, radius: float, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The neighbours of each distinct point within `radius` (itself included) as CSR arrays, and how
    typical it is: the number of candidates within half the radius (copies counted)."""
    from scipy.spatial import cKDTree

    reach = radius * (1 + 1e-9) + 1e-300  # the tree's rounding; `_distance` decides
    found = cKDTree(distinct).query_pairs(reach, output_type="ndarray")
    gap = _distance(distinct[found[:, 0]], distinct[found[:, 1]])
    found = found[gap <= radius]
    gap = gap[gap <= radius]
    m = len(distinct)
    left, right = found[:, 0], found[:, 1]
    indptr = np.zeros(m + 1, dtype=np.int64)
    np.cumsum(np.bincount(left, minlength=m) + np.bincount(right, minlength=m) + 1, out=indptr[1:])
    neighbours = _kernels()[2](indptr, left, right)
    near = gap <= radius / 2
    typical = counts.astype(np.float64)
    typical += np.bincount(left[near], counts[right[near]], minlength=m)
    typical += np.bincount(right[near], counts[left[near]], minlength=m)
    return indptr, neighbours, typical


def _within(points: np.ndarray, centres: np.ndarray, radius: float) -> np.ndarray:
    """Whether each point lies within `radius` of a centre."""
    if len(centres) == 0:
        return np.zeros(len(points), dtype=bool)
    return _nearest_distance(points, centres) <= radius


def _nearest_distance(points: np.ndarray, centres: Any) -> np.ndarray:
    """Each point's distance to its nearest centre (an array, or a k-d tree over them), found by a
    k-d tree and measured as `_distance` measures it (the same numbers whichever path finds them)."""
    from scipy.spatial import cKDTree

    tree = centres if isinstance(centres, cKDTree) else cKDTree(centres)
    _, nearest = tree.query(points, workers=-1)
    return _distance(points, tree.data[nearest])


def _top(points: np.ndarray, ranked: np.ndarray, labeled: np.ndarray) -> Picks:
    """Picks in the given order with their distances to the nearest earlier pick or labeled point,
    and the coverage radius: a k-d tree over the few chosen points, not an index over every
    candidate."""
    chosen = points[ranked]
    covered = np.full(len(ranked), np.inf)
    if len(labeled):
        covered = _nearest_distance(chosen, labeled)
    distance = np.empty(len(ranked))
    for k in range(len(ranked)):
        distance[k] = covered[k]
        covered[k + 1 :] = np.minimum(covered[k + 1 :], _distance(chosen[k + 1 :], chosen[k]))
    centres = np.concatenate([labeled, chosen])
    if len(centres) == 0:
        return Picks(ranked.astype(np.int64), distance, float("inf") if len(points) else 0.0)
    return Picks(ranked.astype(np.int64), distance, _coverage_radius(points, centres))


def _coverage_radius(points: np.ndarray, centres: np.ndarray) -> float:
    """The largest distance from a point to its nearest centre. On a map of many points, only the
    points of the grid cells that can hold it are measured: a cell whose centre is within `d` of a
    centre holds no point farther than `d` plus half the cell's diagonal, and a sample of the points
    gives a lower bound of the answer (10M points: 1 s instead of 4)."""
    from scipy.spatial import cKDTree

    tree = cKDTree(centres)
    if points.shape[1] == 2 and len(points) > RADIUS_GRID**2:
        low, high = points.min(axis=0), points.max(axis=0)
        size = np.maximum(high - low, 1e-300) / RADIUS_GRID
        cell = np.minimum(((points - low) / size).astype(np.int64), RADIUS_GRID - 1)
        cell = cell[:, 0] * RADIUS_GRID + cell[:, 1]
        occupied = np.flatnonzero(np.bincount(cell, minlength=RADIUS_GRID**2))
        middles = low + (np.stack([occupied // RADIUS_GRID, occupied % RADIUS_GRID], axis=1) + 0.5) * size
        reach = tree.query(middles, workers=-1)[0] + np.hypot(*size) / 2
        bound = _nearest_distance(points[:: len(points) // RADIUS_GRID**2], tree).max()
        needed = np.zeros(RADIUS_GRID**2, dtype=bool)
        needed[occupied[reach >= bound * (1 - 1e-9)]] = True  # the tree rounds: keep cells at the bound
        points = points[needed[cell]]
    return float(_nearest_distance(points, tree).max())


def _kernels() -> tuple[Any, ...]:
    """The inner loops of `_Coverage` and of the cover, compiled by numba (umap-learn's dependency,
    cached in kscore's cache folder): a pick costs microseconds instead of dozens of numpy calls."""
    global _COMPILED
    if _COMPILED is None:
        from kscore.cache import use_numba_cache

        use_numba_cache()
        import numba

        @numba.njit(cache=True, nogil=True)
        def cover(xyz, low, high, reach, distance, picked, value_max, group_low, group_high, group_reach,
                  at, group):  # fmt: skip
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
                                best = max(best, current)
                        reach[b] = far
                        value_max[b] = best
                    widest = max(widest, reach[b])
                group_reach[g] = widest

        @numba.njit(cache=True, nogil=True)
        def best(value_max, distance, picked, index):
            """The lowest index among the unpicked points of the largest distance."""
            top = value_max.max()
            chosen = -1
            for b in range(value_max.shape[0]):
                if value_max[b] == top:
                    for j in range(index.shape[1]):
                        value = distance[b, j]
                        if not picked[b, j] and value == top and (chosen < 0 or index[b, j] < chosen):
                            chosen = index[b, j]
            return chosen

        @numba.njit(cache=True, nogil=True)
        def neighbour_lists(indptr, left, right):
            """CSR column indices of the symmetric graph of the pairs, each vertex first in its row."""
            m = indptr.shape[0] - 1
            filled = indptr[:-1].copy()
            neighbours = np.empty(indptr[m], dtype=np.int64)
            for u in range(m):
                neighbours[filled[u]] = u
                filled[u] += 1
            for p in range(left.shape[0]):
                a, b = left[p], right[p]
                neighbours[filled[a]] = b
                filled[a] += 1
                neighbours[filled[b]] = a
                filled[b] += 1
            return neighbours

        @numba.njit(cache=True, nogil=True)
        def ahead(u, t, mass, weights, typical, candidate):
            """Whether vertex u goes before vertex t."""
            a, b = weights[u] * mass[u], weights[t] * mass[t]
            if a != b:
                return a > b
            if typical[u] != typical[t]:
                return typical[u] > typical[t]
            return candidate[u] < candidate[t]

        @numba.njit(cache=True, nogil=True)
        def greedy(indptr, neighbours, counts, weights, typical, candidate, covered, picked, budget):
            """Max coverage, greedily: the vertex of the largest weight x uncovered mass of its ball
            (ties: the more typical, then the lower candidate index), in blocks of vertices with each
            block's best; a pick rescans only the blocks whose vertices it changed."""
            m = counts.shape[0]
            mass = np.zeros(m)
            for u in range(m):
                for p in range(indptr[u], indptr[u + 1]):
                    if not covered[neighbours[p]]:
                        mass[u] += counts[neighbours[p]]
            n_blocks = (m + BLOCK - 1) // BLOCK
            leader = np.full(n_blocks, -1)
            dirty = np.ones(n_blocks, dtype=np.bool_)
            out = np.empty(budget, dtype=np.int64)
            k = 0
            while k < budget:
                for b in range(n_blocks):
                    if dirty[b]:
                        dirty[b] = False
                        leader[b] = -1
                        for u in range(b * BLOCK, min((b + 1) * BLOCK, m)):
                            if not picked[u] and mass[u] > 0 and weights[u] > 0:
                                t = leader[b]
                                if t < 0 or ahead(u, t, mass, weights, typical, candidate):
                                    leader[b] = u
                top = -1
                for b in range(n_blocks):
                    u = leader[b]
                    if u >= 0 and (top < 0 or ahead(u, top, mass, weights, typical, candidate)):
                        top = u
                if top < 0:
                    break  # every vertex is covered
                out[k] = top
                k += 1
                picked[top] = True
                dirty[top // BLOCK] = True
                for p in range(indptr[top], indptr[top + 1]):
                    v = neighbours[p]
                    if not covered[v]:
                        covered[v] = True
                        for q in range(indptr[v], indptr[v + 1]):
                            w = neighbours[q]
                            mass[w] -= counts[v]
                            dirty[w // BLOCK] = True
            return out[:k]

        _COMPILED = (cover, best, neighbour_lists, greedy)
    return _COMPILED


_COMPILED: tuple[Any, ...] | None = None


class _Coverage:
    """Distances from candidates to their nearest chosen point, in blocks with bounding boxes, and
    each block's largest distance among the points not yet picked."""

    def __init__(self, points: np.ndarray, labeled: np.ndarray, order: np.ndarray) -> None:
        n, dims = points.shape
        n_blocks = -(-n // BLOCK)
        pad = n_blocks * BLOCK - n
        filled = np.concatenate([order, np.full(pad, order[-1])]) if pad else order
        self.index = filled.reshape(n_blocks, BLOCK)
        self.valid = (np.arange(n_blocks * BLOCK) < n).reshape(n_blocks, BLOCK)
        self.xyz = points[filled].reshape(n_blocks, BLOCK, dims)
        self.low = self.xyz.min(axis=1)
        self.high = self.xyz.max(axis=1)
        self.position = np.empty(n, dtype=np.int64)
        self.position[order] = np.arange(n)
        self.picked = ~self.valid  # padding counts as picked: never a candidate
        has_labeled = len(labeled) > 0
        self.distance = np.full((n_blocks, BLOCK), np.inf)
        if has_labeled:
            self.distance = _nearest_distance(self.xyz.reshape(-1, dims), labeled).reshape(n_blocks, BLOCK)
        self.distance[~self.valid] = 0.0
        self.reach = self.distance.max(axis=1)  # per block: the largest distance, what a pick can lower
        if has_labeled:
            self.value_max = self._values(slice(None)).max(axis=1)
        else:  # every distance is inf
            self.value_max = np.where(self.valid[:, 0], np.inf, -np.inf)
        starts = np.arange(0, n_blocks, GROUP)
        self.group_low = np.minimum.reduceat(self.low, starts, axis=0)
        self.group_high = np.maximum.reduceat(self.high, starts, axis=0)
        self.group_reach = np.maximum.reduceat(self.reach, starts)

    def _values(self, blocks: np.ndarray | slice) -> np.ndarray:
        """The distances of the blocks' points, -inf where picked (or padding)."""
        values = self.distance[blocks].copy()
        values[self.picked[blocks]] = -np.inf
        return values

    def best(self) -> int:
        """The candidate farthest from every chosen point (the lowest index among equals)."""
        return int(_kernels()[1](self.value_max, self.distance, self.picked, self.index))

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
            self.xyz, self.low, self.high, self.reach, self.distance, self.picked, self.value_max,
            self.group_low, self.group_high, self.group_reach, np.ascontiguousarray(at), GROUP,
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
