"""kscore.picks against a brute-force reference: every strategy, ties, duplicates, labeled points."""

from __future__ import annotations

import numpy as np
import pytest

from kscore.picks import percentile_weights, pick


def distances(points: np.ndarray, to: np.ndarray) -> np.ndarray:
    """Euclidean distances, the squares added axis by axis."""
    offset = points - to
    return np.sqrt(sum(offset[..., k] ** 2 for k in range(offset.shape[-1])))


def brute_force(points, budget, strategy, scores, labeled, seed):
    """The definitions, one point at a time over every candidate."""
    n = len(points)
    weights = np.sqrt(percentile_weights(scores)) if strategy == "balanced" else np.ones(n)
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
            chosen = (
                int(np.argmax(weights))
                if strategy == "balanced"
                else int(np.random.default_rng(seed).integers(n))
            )
        else:
            values = np.where(picked, -np.inf, weights * covered)
            chosen = int(np.flatnonzero(values == values.max()).min())  # ties: the lowest index
        order.append(chosen)
        gaps.append(covered[chosen])
        picked[chosen] = True
        covered = np.minimum(covered, distances(points, points[chosen]))
    return np.array(order, dtype=np.int64), np.array(gaps), covered.max()


@pytest.mark.parametrize("trial", range(24))
@pytest.mark.parametrize("strategy", ["top", "diverse", "balanced"])
def test_every_strategy_equals_the_brute_force_reference(trial: int, strategy: str):
    rng = np.random.default_rng(trial)
    n = int(rng.integers(1, 1500))
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
