"""kscore.core.pick_strategies against a brute-force reference: every strategy, ties, duplicates,
labeled points."""

from __future__ import annotations

import numpy as np
import pytest

import kscore.core.pick_strategies
from kscore.core.pick_strategies import BALANCED_POWER, cover_radius, percentile_weights, pick


def rank_weights(scores: np.ndarray) -> np.ndarray:
    """Percentile ranks by their definition: the best score 1, the worst 1/n, ties by index."""
    n = len(scores)
    weights = np.empty(n)
    weights[np.argsort(-scores, kind="stable")] = (n - np.arange(n)) / n
    return weights


def distances(points: np.ndarray, to: np.ndarray) -> np.ndarray:
    """Euclidean distances, the squares added axis by axis."""
    offset = points - to
    return np.sqrt(sum(offset[..., k] ** 2 for k in range(offset.shape[-1])))


def brute_force(points, budget, strategy, scores, labeled, seed):
    """The definitions, one point at a time over every candidate."""
    n = len(points)
    if strategy in ("typical", "balanced"):
        weights = rank_weights(scores) ** BALANCED_POWER if strategy == "balanced" else np.ones(n)
        order = typical_reference(points, budget, weights, labeled, seed)
        return order, *top_distances(points, order, labeled)
    covered = np.full(n, np.inf)
    for point in labeled:
        covered = np.minimum(covered, distances(points, point))
    picked = np.zeros(n, dtype=bool)
    order, gaps = [], []
    ranking = np.argsort(-scores, kind="stable")
    for k in range(min(budget, n)):
        if strategy == "top":
            chosen = int(ranking[k])
        elif k == 0 and len(labeled) == 0:
            chosen = int(np.random.default_rng(seed).integers(n))
        else:
            values = np.where(picked, -np.inf, covered)
            chosen = int(np.flatnonzero(values == values.max()).min())  # ties: the lowest index
        order.append(chosen)
        gaps.append(covered[chosen])
        picked[chosen] = True
        covered = np.minimum(covered, distances(points, points[chosen]))
    return np.array(order, dtype=np.int64), np.array(gaps), covered.max()


def top_distances(points, order, labeled):
    """Each pick's distance to the nearest earlier pick or labeled point, and the coverage radius."""
    covered = np.full(len(points), np.inf)
    for point in labeled:
        covered = np.minimum(covered, distances(points, point))
    gaps = []
    for chosen in order:
        gaps.append(covered[chosen])
        covered = np.minimum(covered, distances(points, points[chosen]))
    return np.array(gaps), covered.max() if len(points) else 0.0


def typical_reference(points, budget, weights, labeled, seed):
    """`typical` and `balanced` by their definition: a candidate covers the candidates within the
    radius; each pick covers the most uncovered candidates (times its weight; ties: more candidates
    within half the radius, then the lower index); the radius halves once all are covered; then, if
    every point is picked or sits on a labeled one, the rest by weight."""
    n = len(points)
    budget = min(budget, n)
    radius = cover_radius(points, len(labeled) + budget, seed)
    pair = np.stack([distances(points, p) for p in points])
    chosen, picked = [], np.zeros(n, dtype=bool)
    for _ in range(64):
        covered = np.zeros(n, dtype=bool)
        for centre in [*labeled, *points[chosen]]:
            covered |= distances(points, centre) <= radius
        within = (pair <= radius).astype(np.int64)
        typical = (pair <= radius / 2).sum(axis=1)
        while len(chosen) < budget:
            value = np.where(picked, -1.0, weights * (within @ ~covered))
            if value.max() <= 0:
                break
            best = max(np.flatnonzero(value == value.max()), key=lambda i: (typical[i], -i))
            chosen.append(int(best))
            picked[best] = True
            covered |= within[best].astype(bool)
        if len(chosen) == budget or radius == 0 or (pair[:, picked] == 0).any(axis=1).all():
            break
        radius /= 2
    left = sorted(set(range(n)) - set(chosen), key=lambda i: (-weights[i], i))
    return np.array(chosen + left[: budget - len(chosen)], dtype=np.int64)


@pytest.mark.parametrize("trial", range(24))
@pytest.mark.parametrize("strategy", ["top", "diverse", "typical", "balanced"])
def test_every_strategy_equals_the_brute_force_reference(trial: int, strategy: str):
    rng = np.random.default_rng(trial)
    n = int(rng.integers(1, 1500))
    if strategy in ("typical", "balanced"):  # the reference is quadratic in memory and time
        n = n % 500 + 1
    dims = 2 if trial % 4 else 6
    points = rng.normal(size=(n, dims)) * rng.choice([0.1, 1.0, 5.0], size=(n, 1))
    if trial % 3 == 0:
        points = np.round(points, 1)  # duplicated points, tied distances
    scores = np.round(rng.random(n), 2 if trial % 2 else 8)  # tied scores
    labeled = rng.normal(size=(int(rng.integers(0, 25)) if trial % 5 else 0, dims))
    budget = int(rng.integers(1, n + 10))
    got = pick(points, budget, strategy=strategy, scores=scores, labeled=labeled, seed=trial)
    order, gaps, radius = brute_force(points, budget, strategy, scores, labeled, trial)
    assert np.array_equal(got.order, order)
    assert np.array_equal(got.distance, gaps)
    assert got.radius == radius


def test_top_is_a_sort_with_ties_to_the_lower_index():
    scores = np.array([0.5, 0.9, 0.5, 0.9, 0.1])
    points = np.arange(10.0).reshape(5, 2)
    assert pick(points, 5, strategy="top", scores=scores).order.tolist() == [1, 3, 0, 2, 4]
    assert pick(points, 5, strategy="top", scores=scores, ascending=True).order.tolist() == [4, 0, 2, 1, 3]


def test_percentile_weights_are_ranks_in_0_1():
    assert percentile_weights(np.array([3.0, 1.0, 2.0])).tolist() == [1.0, 1 / 3, 2 / 3]
    assert percentile_weights(np.array([3.0, 1.0, 2.0]), ascending=True).tolist() == [1 / 3, 1.0, 2 / 3]


def test_cover_radius_is_the_median_distance_to_the_jth_neighbour():
    rng = np.random.default_rng(3)
    points = rng.normal(size=(300, 2))
    pair = np.sort(np.stack([distances(points, p) for p in points]), axis=1)  # column 0: itself
    for regions in (1, 7, 30, 299, 1000):
        j = min(max(round(300 / regions), 1), 299)
        assert cover_radius(points, regions) == pytest.approx(np.median(pair[:, j]), rel=1e-12)


def clusters(rng, sizes, spread=0.3):
    """Gaussian clusters of the given sizes, centres 10 apart on a line."""
    blobs = [rng.normal(size=(size, 2)) * spread + [10.0 * k, 0] for k, size in enumerate(sizes)]
    return np.concatenate(blobs)


def test_typical_picks_the_densest_point_of_the_largest_region_first():
    rng = np.random.default_rng(0)
    points = clusters(rng, [40, 200, 80])
    first = pick(points, 1, strategy="typical").order[0]
    assert 40 <= first < 240  # the largest cluster
    radius = cover_radius(points, 1)
    counts = np.array([(distances(points, p) <= radius).sum() for p in points])
    assert counts[first] == counts.max()  # it covers the most candidates
    picks = pick(points, 3, strategy="typical").order
    assert sorted(np.digitize(picks, [40, 240]).tolist()) == [0, 1, 2]  # one per cluster


def test_typical_skips_the_regions_labeled_points_cover():
    rng = np.random.default_rng(1)
    points = clusters(rng, [200, 100, 100])
    labeled = np.array([[0.0, 0.0]])  # the centre of the largest cluster
    picks = pick(points, 2, strategy="typical", labeled=labeled).order
    assert (picks >= 200).all()  # both in the clusters nothing covers
    assert sorted(np.digitize(picks, [300]).tolist()) == [0, 1]


def test_balanced_goes_to_the_harder_of_two_like_regions_and_top_piles_up():
    rng = np.random.default_rng(2)
    points = clusters(rng, [100, 100, 100])
    scores = np.repeat([0.2, 0.9, 0.5], 100) + rng.random(300) * 0.01  # the middle cluster is the hardest
    assert 100 <= pick(points, 1, strategy="balanced", scores=scores).order[0] < 200
    balanced = pick(points, 3, strategy="balanced", scores=scores).order
    assert sorted(np.digitize(balanced, [100, 200])) == [0, 1, 2]
    assert (np.digitize(pick(points, 3, strategy="top", scores=scores).order, [100, 200]) == 1).all()


def test_typical_on_a_sample_above_the_pair_limit(monkeypatch):
    """Above COVER_PAIRS the cover runs on a seeded sample: still `budget` distinct picks, the same
    for a seed, the first in the largest cluster."""
    rng = np.random.default_rng(4)
    points = clusters(rng, [3000, 9000, 3000])
    assert pick(points, 30, strategy="typical").sample is None  # every candidate under the limit
    monkeypatch.setattr(kscore.core.pick_strategies, "COVER_PAIRS", 20_000)
    picks = pick(points, 30, strategy="typical", seed=5)
    assert picks.sample is not None and 60 <= picks.sample < len(points)
    assert len(set(picks.order.tolist())) == 30
    assert 3000 <= picks.order[0] < 12000
    assert np.array_equal(pick(points, 30, strategy="typical", seed=5).order, picks.order)


def test_cover_radius_in_many_dimensions_by_matrix_products():
    rng = np.random.default_rng(6)
    points = rng.normal(size=(400, 12))
    pair = np.sort(np.stack([distances(points, p) for p in points]), axis=1)
    for regions in (4, 40):
        j = round(400 / regions)
        assert cover_radius(points, regions) == pytest.approx(np.median(pair[:, j]), rel=1e-6)


def test_the_coverage_radius_of_a_large_map_is_the_farthest_point_from_its_centre():
    """Above RADIUS_GRID**2 points the radius is measured on the grid cells that can hold it only."""
    rng = np.random.default_rng(7)
    points = np.concatenate([clusters(rng, [150_000, 120_000], spread=1.0), rng.normal(size=(50, 2)) * 30])
    assert len(points) > kscore.core.pick_strategies.RADIUS_GRID**2
    for centres in (points[rng.choice(len(points), 40, replace=False)], np.array([[5.0, 0.0]])):
        nearest = np.min([distances(points, c) for c in centres], axis=0)
        assert kscore.core.pick_strategies._coverage_radius(points, centres) == nearest.max()
