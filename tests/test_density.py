"""The KDE against its oracle, scipy.stats.gaussian_kde, including far-tail points."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import gaussian_kde

from kscore.density import (
    DegenerateError,
    Kernel,
    local_difficulty,
    potential_difficulty_scores,
    representation_scores,
)


def clouds(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    reference = np.vstack([rng.normal(0, 1, (1500, 2)), rng.normal([6, 2], [0.5, 2], (800, 2))])
    train = np.vstack(
        [
            rng.normal(0, 1.5, (1000, 2)),
            rng.uniform(-40, 40, (150, 2)),  # tails
            [[1e3, -1e3], [50.0, 50.0], [-1e5, 3.0]],  # far outside the reference cloud
        ]
    )
    difficulty = rng.random(len(reference))
    return train, reference, difficulty


def region(density: np.ndarray) -> np.ndarray:
    return density >= 1e-6 * density.max()


@pytest.mark.parametrize("bandwidth", ["scott", "silverman", 0.3])
def test_representation_matches_scipy_everywhere(bandwidth):
    train, reference, _ = clouds()
    ours = representation_scores(train, reference, bandwidth=bandwidth)
    exact = gaussian_kde(reference.T, bw_method=bandwidth).logpdf(train.T)
    assert np.isfinite(ours).all()
    inside = region(np.exp(exact))
    assert np.abs(ours - exact)[inside].max() < 1e-3
    assert (np.abs(ours - exact) / np.abs(exact))[~inside].max() < 1e-3
    assert ours[-1] < -1e6  # a point 1e5 away: tiny but finite


def test_potential_matches_scipys_weighted_estimator():
    train, reference, difficulty = clouds(1)
    difficulty[::5] = np.nan  # rows without a difficulty are left out
    known = ~np.isnan(difficulty)
    ours = potential_difficulty_scores(train, reference, difficulty)
    exact = gaussian_kde(reference[known].T, weights=difficulty[known]).pdf(train.T)
    inside = region(exact)
    assert (np.abs(ours - exact)[inside] / exact[inside]).max() < 1e-3
    assert np.all(ours >= 0)


@pytest.mark.parametrize("missing", [True, False])
def test_local_difficulty_is_the_kernel_weighted_mean(missing):
    train, reference, difficulty = clouds(2)
    if missing:  # a separate kernel sum over the rows with a difficulty
        difficulty[::4] = np.nan
    known = ~np.isnan(difficulty)
    ours = local_difficulty(train, reference, difficulty)
    kernel = gaussian_kde(reference.T)  # bandwidth from all reference rows
    inverse = np.linalg.inv(kernel.covariance)
    delta = train[:, None, :] - reference[known][None, :, :]
    log_k = -0.5 * np.einsum("mni,ij,mnj->mn", delta, inverse, delta)
    k = np.exp(log_k - log_k.max(axis=1, keepdims=True))
    exact = (k * difficulty[known]).sum(axis=1) / k.sum(axis=1)
    inside = region(kernel.pdf(train.T))
    assert np.abs(ours - exact)[inside].max() < 1e-3
    assert np.all((ours >= 0) & (ours <= 1))


def test_kernel_is_scipys():
    _, reference, difficulty = clouds(3)
    for weights in (None, difficulty):
        for bandwidth in ("scott", "silverman", 0.5):
            ours = Kernel.fit(reference, weights, bandwidth)
            theirs = gaussian_kde(reference.T, bw_method=bandwidth, weights=weights)
            assert np.allclose(ours.covariance, theirs.covariance, rtol=1e-12)
            assert ours.neff == pytest.approx(theirs.neff)


def test_all_zero_difficulty_gives_zero_potential():
    train, reference, _ = clouds(4)
    assert np.all(potential_difficulty_scores(train, reference, np.zeros(len(reference))) == 0)


@pytest.mark.parametrize(
    "points",
    [
        np.array([[0.0, 0.0], [1.0, 1.0]]),  # fewer than 3
        np.zeros((10, 2)),  # all equal
        np.column_stack([np.arange(10.0), 2 * np.arange(10.0)]),  # on a line
    ],
)
def test_degenerate_reference_sets(points):
    with pytest.raises(DegenerateError):
        Kernel.fit(points)


def test_translation_invariance():
    train, reference, _ = clouds(5)
    shift = np.array([1e4, -3e3])
    assert np.allclose(
        representation_scores(train, reference),
        representation_scores(train + shift, reference + shift),
        atol=1e-6,
    )


def test_local_difficulty_stays_in_the_unit_interval_in_the_far_tails():
    rng = np.random.default_rng(5)
    reference = rng.normal(size=(400, 2))
    difficulty = np.ones(400)
    difficulty[:200] = 0.999999
    far = np.array([[x, y] for x in (-60.0, 0.0, 45.0, 1e6) for y in (-80.0, 30.0, 1e5)])
    local = local_difficulty(far, reference, difficulty)
    assert np.all((local >= 0.0) & (local <= 1.0))
    assert np.all(local > 0.99)


@pytest.mark.parametrize("factor", [1e300, 1e160, 1e-300])
def test_a_bandwidth_factor_beyond_the_float_range_is_an_error(factor):
    points = np.random.default_rng(0).normal(size=(50, 2))
    with pytest.raises(ValueError, match="beyond the float range"):
        Kernel.fit(points, bandwidth=factor)


def test_scores_are_bitwise_identical_on_any_number_of_threads(monkeypatch):
    """FINUFFT's own threads would change the sums near 1e-8; fixed chunks added in order do not."""
    import kscore.density as density

    monkeypatch.setattr(density, "_CHUNK", 1000)  # several chunks at test size
    rng = np.random.default_rng(11)
    reference = rng.normal(size=(5500, 2)) * [3.0, 1.0]
    train = np.vstack([rng.normal(size=(4200, 2)), rng.uniform(-40, 40, size=(30, 2))])
    difficulty = rng.uniform(size=5500)
    runs = [density._scores(train, reference, difficulty, "scott", jobs=jobs) for jobs in (1, 2, 3)]
    for key in ("representation", "potential", "local"):
        assert np.array_equal(runs[0][key], runs[1][key]) and np.array_equal(runs[0][key], runs[2][key])
    expected = gaussian_kde(reference.T).logpdf(train[:200].T)
    assert np.allclose(runs[0]["representation"][:200], expected, rtol=0, atol=1e-9)
