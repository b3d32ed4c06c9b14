"""Gaussian KDE in 2D: exactly `scipy.stats.gaussian_kde`'s estimator, weighted or not, fast.

The estimator (SPEC §3): kernel covariance = the (weighted) data covariance times factor**2, with
Scott's or Silverman's factor over the effective sample size, or a given scalar factor; the density
at x is sum_i w_i N(x; x_i, kernel covariance) with weights summing to 1.

How it is evaluated: in coordinates whitened by the kernel covariance the kernel is the standard
Gaussian, and sum_i w_i exp(-|z - z_i|^2 / 2) is a discrete Gauss transform. Its Fourier series on a
periodic box (longer than the data by 8.8 kernel widths on each side, so periodic images add below
1e-16) is truncated where the Gaussian's spectrum falls below 1e-17, and evaluated with two
non-uniform FFTs (FINUFFT, tolerance 1e-14): O(n + m) for n reference and m query points, with an
absolute error near 1e-14 of the total weight. Queries whose sum is too small for that to be a small
relative error (far tails, or outside the box) are summed exactly in log space over their nearest
reference points (a k-d tree), so log-densities stay finite and accurate however far out a point is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Gaussian tails below exp(-R**2 / 2) ~ 1e-17 of the peak are dropped (periodic images, modes).
_RADIUS = 8.8
_NUFFT_EPS = 1e-14

# Sums below this share of the total weight are recomputed exactly. The NUFFT's absolute error was
# at most 1.6e-16 of the total weight at 1M x 1M points (tests/bench/bench_density.py), so above
# this share its relative error stays below 2e-4.
_TAIL = 1e-12
# Exact tail sums stop adding neighbours once what is left is below this share of the sum.
_TAIL_RTOL = 1e-7


class DegenerateError(ValueError):
    """The points span no area (fewer than 3, all equal, or all on a line): no 2D kernel exists."""


@dataclass(frozen=True)
class Kernel:
    """A Gaussian kernel fitted to reference points the way scipy's gaussian_kde fits it."""

    covariance: np.ndarray  # the kernel covariance (2 x 2)
    factor: float  # the bandwidth factor
    neff: float  # effective sample size

    @classmethod
    def fit(
        cls, points: np.ndarray, weights: np.ndarray | None = None, bandwidth: str | float = "scott"
    ) -> Kernel:
        """scipy's `gaussian_kde(points.T, bw_method=bandwidth, weights=weights)` kernel."""
        points = np.asarray(points, dtype=np.float64)
        n, d = points.shape
        if weights is None:
            w = np.full(n, 1.0 / n)
        else:
            w = np.asarray(weights, dtype=np.float64)
            w = w / w.sum()
        neff = 1.0 / float(np.sum(w**2))
        if isinstance(bandwidth, str):
            if bandwidth == "scott":
                factor = neff ** (-1.0 / (d + 4))
            elif bandwidth == "silverman":
                factor = (neff * (d + 2) / 4.0) ** (-1.0 / (d + 4))
            else:
                raise ValueError(f"bandwidth must be 'scott', 'silverman' or a number, not {bandwidth!r}")
        else:
            factor = float(bandwidth)
            if not (math.isfinite(factor) and factor > 0):
                raise ValueError(f"a bandwidth factor must be a positive number, not {bandwidth!r}")
        if n < 3:
            raise DegenerateError(f"{n} points")
        data_covariance = np.atleast_2d(np.cov(points, rowvar=False, bias=False, aweights=w))
        eigenvalues = np.linalg.eigvalsh(data_covariance)
        if not eigenvalues.min() > 1e-12 * max(eigenvalues.max(), 1e-300):
            raise DegenerateError("the points are all equal or all on a line")
        try:
            squared = factor**2
        except OverflowError:  # a factor beyond 1e154: reported below as out of range
            squared = math.inf
        with np.errstate(over="ignore", invalid="ignore"):
            covariance = data_covariance * squared
        kernel = cls(covariance=covariance, factor=factor, neff=neff)
        if not (
            np.isfinite(covariance).all()
            and np.linalg.eigvalsh(covariance).min() > 0
            and math.isfinite(kernel.log_norm)
        ):
            raise ValueError(
                f"the bandwidth factor {factor:g} gives a kernel beyond the float range; "
                "use scott, silverman or a factor near 1"
            )
        return kernel

    @property
    def whitening(self) -> np.ndarray:
        """W with W @ covariance @ W.T = I (the inverse Cholesky factor)."""
        return np.linalg.inv(np.linalg.cholesky(self.covariance))

    @property
    def log_norm(self) -> float:
        """log of the Gaussian's normalizing constant: -log(2 pi) - log(det covariance) / 2."""
        return -math.log(2 * math.pi) - 0.5 * math.log(np.linalg.det(self.covariance))


def log_gauss_sums(
    kernel: Kernel, reference: np.ndarray, weights: np.ndarray, queries: np.ndarray, jobs: int | None = None
) -> np.ndarray:
    """log sum_i w_ti exp(-|z_q - z_i|^2 / 2) in the kernel's whitened coordinates.

    `weights` is (t, n) for t weight vectors over the n reference points (non-negative); the result
    is (t, m). An all-zero weight vector gives -inf. `jobs` caps the threads (default: every core).
    """
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    transform = kernel.whitening
    z_ref = np.asarray(reference, dtype=np.float64) @ transform.T
    z_query = np.asarray(queries, dtype=np.float64) @ transform.T
    totals = weights.sum(axis=1)
    out = np.full((len(weights), len(z_query)), -np.inf)
    low, high = z_ref.min(axis=0), z_ref.max(axis=0)
    inside = np.all((z_query >= low - _RADIUS) & (z_query <= high + _RADIUS), axis=1)
    tail = np.zeros_like(out, dtype=bool)  # where the sum is computed exactly instead
    tail[:, ~inside] = True
    if inside.any():
        sums = _nufft_gauss_sums(z_ref, weights, z_query[inside], low, high, jobs)
        with np.errstate(divide="ignore", invalid="ignore"):
            out[:, inside] = np.log(np.where(sums > 0, sums, np.nan))
        tail[:, inside] = sums < _TAIL * totals[:, None]
    tail &= (totals > 0)[:, None]
    rows = np.flatnonzero(tail.any(axis=0))
    if len(rows):
        exact = _exact_log_sums(z_ref, weights, z_query[rows], jobs)
        out[:, rows] = np.where(tail[:, rows], exact, out[:, rows])
    return out


def _nufft_gauss_sums(
    z_ref: np.ndarray,
    weights: np.ndarray,
    z_query: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    jobs: int | None,
) -> np.ndarray:
    """The Gauss sums at the queries by two non-uniform FFTs, identical for any number of threads.

    FINUFFT's own threads add the reference points onto its grid in an order that depends on the
    thread count (the results differ near 1e-8 in the tails), so it runs on one thread per call
    and the parallelism comes from fixed chunks instead: the type-1 sums of each chunk of reference
    points (a partition's share: they add) are added in chunk order, and each chunk of queries is
    evaluated on its own (a query's value does not depend on its chunk).
    """
    from kscore.engines.local import parallel_map, resolve_jobs

    center = (low + high) / 2
    period = float((high - low).max()) + 2 * _RADIUS + 1e-9  # a square box, for one mode count
    scale = 2 * math.pi / period
    k_max = math.ceil(_RADIUS / scale)
    n_modes = 2 * k_max + 1
    k = np.arange(-k_max, k_max + 1)
    # Fourier coefficients of the periodized exp(-|u|^2 / 2) on the box.
    spectrum_1d = np.exp(-0.5 * (scale * k) ** 2)
    coefficients = np.outer(spectrum_1d, spectrum_1d) * (2 * math.pi / period**2)
    x_ref, y_ref = ((z_ref - center) * scale).T.copy()
    x_q, y_q = ((z_query - center) * scale).T.copy()
    strengths = weights.astype(np.complex128)
    threads = resolve_jobs(jobs)
    parts = parallel_map(
        lambda part: _type1(x_ref[part], y_ref[part], np.ascontiguousarray(strengths[:, part]), n_modes),
        _chunks(len(x_ref), _CHUNK),
        threads,
    )
    modes = parts[0]
    for part in parts[1:]:  # in chunk order: the same sum for any number of threads
        modes += part
    modes = modes.reshape(len(weights), n_modes, n_modes) * coefficients
    values = parallel_map(
        lambda part: _type2(x_q[part], y_q[part], modes), _chunks(len(x_q), _CHUNK), threads
    )
    return np.concatenate([np.atleast_2d(v) for v in values], axis=1)


# Points per FINUFFT call: small enough to keep every core busy at 1M points, large enough that
# each call's FFT (a few ms) stays a small share of its work.
_CHUNK = 1 << 17


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, n)) for start in range(0, max(n, 1), size)]


def _type1(x: np.ndarray, y: np.ndarray, strengths: np.ndarray, n_modes: int) -> np.ndarray:
    import finufft

    return finufft.nufft2d1(x, y, strengths, (n_modes, n_modes), eps=_NUFFT_EPS, isign=-1, nthreads=1)


def _type2(x: np.ndarray, y: np.ndarray, modes: np.ndarray) -> np.ndarray:
    import finufft

    return finufft.nufft2d2(x, y, modes, eps=_NUFFT_EPS, isign=1, nthreads=1).real


def _exact_log_sums(
    z_ref: np.ndarray, weights: np.ndarray, z_query: np.ndarray, jobs: int | None = None
) -> np.ndarray:
    """Exact log-sums at a few points: log-sum-exp over nearest neighbours until the rest is negligible."""
    from scipy.spatial import cKDTree

    # A sliding-midpoint tree builds 2.4x faster than a balanced one (10M points: 4.3 s, not
    # 10.4 s) and finds the same exact neighbours; only a few queries (the tails) use it.
    tree = cKDTree(z_ref, balanced_tree=False, compact_nodes=False)
    n = len(z_ref)
    out = np.empty((len(weights), len(z_query)))
    pending = np.arange(len(z_query))
    k = min(16, n)
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    max_log_w = log_w.max(axis=1)
    while len(pending):
        distance, index = tree.query(z_query[pending], k=k, workers=jobs or -1)
        distance, index = np.atleast_2d(distance), np.atleast_2d(index)
        exponent = -0.5 * distance**2
        done = np.ones(len(pending), dtype=bool)
        for t in range(len(weights)):
            terms = log_w[t][index] + exponent
            peak = terms.max(axis=1, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                log_sum = (np.log(np.exp(terms - peak).sum(axis=1, keepdims=True)) + peak)[:, 0]
            log_sum = np.where(np.isnan(log_sum), -np.inf, log_sum)  # all weights zero
            out[t, pending] = log_sum
            if k < n:
                # Every other point is at least as far as the k-th neighbour.
                rest = max_log_w[t] + math.log(n - k) + exponent[:, -1]
                with np.errstate(invalid="ignore"):
                    negligible = rest - log_sum < math.log(_TAIL_RTOL)
                done &= negligible | (rest == -np.inf)
        if k >= n:
            break
        pending = pending[~done]
        k = min(4 * k, n)
    return out


def _scores(
    train_xy: np.ndarray,
    reference_xy: np.ndarray,
    reference_difficulty: np.ndarray | None,
    bandwidth: str | float,
    jobs: int | None = None,
) -> dict[str, np.ndarray | Kernel | None]:
    """All three scores at once, sharing the kernel and the transforms."""
    train_xy = np.asarray(train_xy, dtype=np.float64)
    reference_xy = np.asarray(reference_xy, dtype=np.float64)
    kernel = Kernel.fit(reference_xy, bandwidth=bandwidth)
    n = len(reference_xy)
    vectors = [np.full(n, 1.0 / n)]
    difficulty = None
    every_known = True
    if reference_difficulty is not None:
        difficulty = np.asarray(reference_difficulty, dtype=np.float64)
        known = ~np.isnan(difficulty)
        every_known = bool(known.all())
        vectors.append(np.where(known, difficulty, 0.0))
        if not every_known:  # the kernel sum over the rows with a difficulty, for the local mean
            vectors.append(known.astype(np.float64))
    logs = log_gauss_sums(kernel, reference_xy, np.vstack(vectors), train_xy, jobs)
    out: dict[str, np.ndarray | Kernel | None] = {
        "kernel": kernel,
        "representation": kernel.log_norm + logs[0],
        "local": None,
        "potential": None,
        "potential_kernel": None,
    }
    if difficulty is not None:
        with np.errstate(invalid="ignore"):
            # A kernel-weighted mean of difficulties in [0, 1]; rounding may step a hair outside.
            # With every difficulty known, the kernel sum over them is n times the uniform one.
            known_sum = logs[0] + math.log(n) if every_known else logs[2]
            out["local"] = np.clip(np.exp(logs[1] - known_sum), 0.0, 1.0)
        out["potential"], out["potential_kernel"] = _potential(
            train_xy, reference_xy, difficulty, bandwidth, jobs
        )
    return out


def _potential(
    train_xy: np.ndarray,
    reference_xy: np.ndarray,
    difficulty: np.ndarray,
    bandwidth: str | float,
    jobs: int | None = None,
) -> tuple[np.ndarray, Kernel | None]:
    """The difficulty-weighted KDE at the train points, and its kernel (None without a density)."""
    weights = np.where(np.isnan(difficulty), 0.0, difficulty)
    chosen = weights > 0  # zero weights change neither scipy's covariance nor its sum
    if not chosen.any():
        return np.zeros(len(train_xy)), None
    try:
        kernel = Kernel.fit(reference_xy[chosen], weights[chosen], bandwidth)
    except DegenerateError:
        # The difficulty sits on fewer than 3 points, or on a line: no 2D density exists.
        return np.full(len(train_xy), np.nan), None
    log_sums = log_gauss_sums(
        kernel, reference_xy[chosen], weights[chosen] / weights[chosen].sum(), train_xy, jobs
    )
    return np.exp(kernel.log_norm + log_sums[0]), kernel


def representation_scores(
    train_xy: np.ndarray, reference_xy: np.ndarray, bandwidth: str | float = "scott"
) -> np.ndarray:
    """Natural log of the Gaussian KDE of the reference points at each train point."""
    return _scores(train_xy, reference_xy, None, bandwidth)["representation"]  # type: ignore[return-value]


def potential_difficulty_scores(
    train_xy: np.ndarray,
    reference_xy: np.ndarray,
    reference_difficulty: np.ndarray,
    bandwidth: str | float = "scott",
) -> np.ndarray:
    """The density of the difficulty-weighted Gaussian KDE of the reference points at each train point.

    Reference points with a NaN difficulty are left out; all-zero difficulty gives zeros.
    """
    train_xy = np.asarray(train_xy, dtype=np.float64)
    reference_xy = np.asarray(reference_xy, dtype=np.float64)
    difficulty = np.asarray(reference_difficulty, dtype=np.float64)
    return _potential(train_xy, reference_xy, difficulty, bandwidth)[0]


def local_difficulty(
    train_xy: np.ndarray,
    reference_xy: np.ndarray,
    reference_difficulty: np.ndarray,
    bandwidth: str | float = "scott",
) -> np.ndarray:
    """sum(d_i K(x - x_i)) / sum(K(x - x_i)) over the reference points with a difficulty (not NaN),
    with the representation kernel (its bandwidth from all reference points)."""
    return _scores(train_xy, reference_xy, reference_difficulty, bandwidth)["local"]  # type: ignore[return-value]
