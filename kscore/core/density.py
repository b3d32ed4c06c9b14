"""Gaussian KDE in 2D: exactly `scipy.stats.gaussian_kde`'s estimator, weighted or not, fast.

The estimator (SPEC §3): kernel covariance = the (weighted) data covariance times factor**2, with
Scott's or Silverman's factor over the effective sample size, or a given scalar factor; the density
at x is sum_i w_i N(x; x_i, kernel covariance) with weights summing to 1.

How it is evaluated: in coordinates whitened by the kernel covariance the kernel is the standard
Gaussian, and sum_i w_i exp(-|z - z_i|^2 / 2) is a discrete Gauss transform. Its Fourier series on a
periodic box (longer than the data by 8.8 kernel widths on each side, so periodic images add below
1e-16) is truncated where the Gaussian's spectrum falls below 1e-17, and evaluated with two
non-uniform FFTs (FINUFFT, tolerance 1e-11): O(n + m) for n reference and m query points, with an
absolute error near 1e-12 of the total weight. Several sums share the transforms: each weight
vector is spread onto the grid once, and each sum's kernel (a second kernel close to the first, as
the potential's usually is) is applied to the Fourier modes. Queries whose sum is too small for the
transforms' error to be a small relative error (far tails, or outside the box) are summed exactly in
log space over the reference points within reach (`_exact_log_sums`), so log-densities stay finite
and accurate however far out a point is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from kscore.engines import Executor, Pieces

# Gaussian tails below exp(-R**2 / 2) ~ 1e-17 of the peak are dropped (periodic images, modes).
_RADIUS = 8.8
_NUFFT_EPS = 1e-11

# Sums below this share of the total weight are recomputed exactly. The NUFFT's absolute error was
# at most 2.4e-13 of the total weight at 10M x 10M points (tests/bench/bench_density.py; 1.6e-16 at
# tolerance 1e-14, which costs 1.5x the time), so above this share its relative error stays below
# 2.4e-5, 40 times inside the 1e-3 accuracy rule.
_TAIL = 1e-8
# Exact tail sums stop adding neighbours once what is left is below this share of the sum.
_TAIL_RTOL = 1e-6


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
        executor = _executor(None, None)
        kept = _kept_points(executor, points, weights)
        return _fitted(_moments(executor, kept, None if weights is None else 0), bandwidth)

    @property
    def whitening(self) -> np.ndarray:
        """W with W @ covariance @ W.T = I (the inverse Cholesky factor)."""
        return np.linalg.inv(np.linalg.cholesky(self.covariance))

    @property
    def log_norm(self) -> float:
        """log of the Gaussian's normalizing constant: -log(2 pi) - log(det covariance) / 2."""
        return -math.log(2 * math.pi) - 0.5 * math.log(np.linalg.det(self.covariance))


# -- points where the executor's chunks read them --------------------------------------------------
# Every pass over the points runs in chunks on the executor (threads here, tasks on a Ray cluster):
# the caller keeps the points once (`Executor.keep`) and adds up the chunks' small results (sums,
# bounds, grids) in chunk order. The reference points' chunks depend on their count only, so the
# numbers are the same on any engine and any number of workers.


@dataclass(frozen=True)
class _Points:
    """Points and their weight rows, kept by the executor: `kept` holds (x, y, weights), float64
    columns and a (rows x points) array; `chunks` are fixed by the count."""

    kept: Any
    count: int
    chunks: list[slice]


@dataclass(frozen=True)
class _Queries:
    """Query points kept by the executor (x, y columns), and how many."""

    kept: Any
    count: int


@dataclass(frozen=True)
class _PiecedPoints:
    """Reference points in pieces (`Pieces` of x, y and the difficulty or None), and how many weight
    rows a chunk gets: `kde_scores`' rows (uniform; with the difficulty, its known values; with
    some unknown, the known ones' mask), made chunk by chunk as `kde_scores` makes them whole."""

    pieces: Pieces
    weight_rows: int

    def chunk(self, part: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        x, y, difficulty = self.pieces.rows(part)
        assert x is not None and y is not None
        rows = [np.full(len(x), 1.0 / self.pieces.count)]
        if difficulty is not None and self.weight_rows > 1:
            known = ~np.isnan(difficulty)
            rows.append(np.where(known, difficulty, 0.0))
            if self.weight_rows > 2:
                rows.append(known.astype(np.float64))
        return x, y, np.vstack(rows)


@dataclass(frozen=True)
class _PiecedQueries:
    """Query points in pieces (`Pieces` of x and y)."""

    pieces: Pieces


def _executor(executor: Executor | None, jobs: int | None) -> Executor:
    """`executor`, or this machine's `jobs` threads."""
    if executor is None:
        from kscore.engines.local import LocalExecutor

        return LocalExecutor(jobs)
    return executor


def _kept_points(executor: Executor, points: np.ndarray, weights: np.ndarray | None = None) -> _Points:
    points = np.asarray(points, dtype=np.float64)
    x, y = (np.ascontiguousarray(column) for column in points.T)
    if weights is None:
        rows = np.empty((0, len(points)))
    else:
        rows = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    chunks = _chunks(len(points), max(_CHUNK, -(-len(points) // _TYPE1_CHUNKS)))
    return _Points(executor.keep((x, y, rows)), len(points), chunks)


def _kept_queries(executor: Executor, queries: np.ndarray) -> _Queries:
    points = np.asarray(queries, dtype=np.float64)
    return _Queries(executor.keep(tuple(np.ascontiguousarray(column) for column in points.T)), len(points))


def _chunk_of(
    points: tuple[np.ndarray, np.ndarray, np.ndarray] | _PiecedPoints, part: slice, subset: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A chunk's (x, y, weights); with `subset`, only its points of positive weight in that row."""
    if isinstance(points, _PiecedPoints):
        x, y, weights = points.chunk(part)
    else:
        x, y, weights = points
        x, y, weights = x[part], y[part], weights[:, part]
    if subset is not None:
        chosen = weights[subset] > 0
        x, y, weights = x[chosen], y[chosen], weights[:, chosen]
    return x, y, weights


def _whiten(x: np.ndarray, y: np.ndarray, transform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points in whitened coordinates, element by element (a matrix product's rounding could
    depend on how the points are cut)."""
    (a, b), (c, d) = transform.tolist()
    return a * x + b * y, c * x + d * y


def _added(parts: list[Any]) -> Any:
    """The chunks' results added in chunk order (Ray's results are read-only: the first is copied)."""
    total = np.array(parts[0], copy=True)
    for part in parts[1:]:
        total += part
    return total


@dataclass(frozen=True)
class _Moments:
    """A weight row's sums over the points: the total weight, the sum of squared weights, the
    points counted, and the data covariance (scipy's, with its weights; NaN without weight)."""

    total: float
    squares: float
    count: int
    covariance: np.ndarray


def _moments(executor: Executor, points: _Points, row: int | None, subset: int | None = None) -> _Moments:
    """The moments of weight row `row` (None: every point weighs 1) over the points (with `subset`,
    those of positive weight in that row), in two passes: the sums, then the centred products."""
    sums = _added(executor.map_chunks(_sums_chunk, (points.kept, row, subset), points.chunks))
    total, squares, sum_x, sum_y, count = sums.tolist()
    if not total > 0:
        return _Moments(total, squares, int(count), np.full((2, 2), np.nan))
    mean = np.array([sum_x, sum_y]) / total
    centred = _added(executor.map_chunks(_centred_chunk, (points.kept, row, subset, mean), points.chunks))
    # np.cov's aweights estimate, for weights normalised to sum to 1: / total / (1 - sum w^2).
    normalised = centred / total / (1.0 - squares / total / total)
    covariance = np.array([[normalised[0], normalised[1]], [normalised[1], normalised[2]]])
    return _Moments(total, squares, int(count), covariance)


def _sums_chunk(shared: tuple[Any, int | None, int | None], part: slice) -> np.ndarray:
    """A chunk's total weight, squared weights, weighted x and y, and points."""
    points, row, subset = shared
    x, y, weights = _chunk_of(points, part, subset)
    if row is None:
        n = float(len(x))
        return np.array([n, n, x.sum(), y.sum(), n])
    w = weights[row]
    return np.array([w.sum(), (w * w).sum(), (w * x).sum(), (w * y).sum(), float(len(x))])


def _centred_chunk(shared: tuple[Any, int | None, int | None, np.ndarray], part: slice) -> np.ndarray:
    """A chunk's weighted products of the centred coordinates: xx, xy, yy."""
    points, row, subset, mean = shared
    x, y, weights = _chunk_of(points, part, subset)
    dx, dy = x - mean[0], y - mean[1]
    wx, wy = (dx, dy) if row is None else (weights[row] * dx, weights[row] * dy)
    return np.array([(wx * dx).sum(), (wx * dy).sum(), (wy * dy).sum()])


def _fitted(moments: _Moments, bandwidth: str | float, d: int = 2) -> Kernel:
    """scipy's kernel from the moments of its points and weights."""
    neff = 1.0 / (moments.squares / moments.total / moments.total) if moments.total > 0 else 0.0
    if isinstance(bandwidth, str):
        if bandwidth == "scott":
            factor = neff ** (-1.0 / (d + 4)) if neff > 0 else math.inf
        elif bandwidth == "silverman":
            factor = (neff * (d + 2) / 4.0) ** (-1.0 / (d + 4)) if neff > 0 else math.inf
        else:
            raise ValueError(f"bandwidth must be 'scott', 'silverman' or a number, not {bandwidth!r}")
    else:
        factor = float(bandwidth)
        if not (math.isfinite(factor) and factor > 0):
            raise ValueError(f"a bandwidth factor must be a positive number, not {bandwidth!r}")
    if moments.count < 3:
        raise DegenerateError(f"{moments.count} points")
    data_covariance = moments.covariance
    eigenvalues = np.linalg.eigvalsh(data_covariance)
    if not eigenvalues.min() > 1e-12 * max(eigenvalues.max(), 1e-300):
        raise DegenerateError("the points are all equal or all on a line")
    try:
        squared = factor**2
    except OverflowError:  # a factor beyond 1e154: reported below as out of range
        squared = math.inf
    with np.errstate(over="ignore", invalid="ignore"):
        covariance = data_covariance * squared
    kernel = Kernel(covariance=covariance, factor=factor, neff=neff)
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


def _bounds_chunk(shared: tuple[Any, np.ndarray, int | None], part: slice) -> np.ndarray:
    """A chunk's whitened bounds (low x, low y, high x, high y), then its weight rows' sums."""
    points, transform, subset = shared
    x, y, weights = _chunk_of(points, part, subset)
    if not len(x):
        return np.concatenate([[np.inf, np.inf, -np.inf, -np.inf], weights.sum(axis=1)])
    zx, zy = _whiten(x, y, transform)
    return np.concatenate([[zx.min(), zy.min(), zx.max(), zy.max()], weights.sum(axis=1)])


def _bounds(
    executor: Executor, points: _Points, transform: np.ndarray, subset: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(low, high) of the whitened points, and each weight row's total."""
    found = executor.map_chunks(_bounds_chunk, (points.kept, transform, subset), points.chunks)
    table = np.stack(found)
    return table[:, :2].min(axis=0), table[:, 2:4].max(axis=0), _added([f[4:] for f in found])


def log_gauss_sums(
    kernel: Kernel,
    reference: np.ndarray,
    weights: np.ndarray,
    queries: np.ndarray,
    jobs: int | None = None,
    outputs: list[tuple[int, Kernel]] | None = None,
    executor: Executor | None = None,
) -> np.ndarray:
    """log sum_i w_ti exp(-|z_q - z_i|^2 / 2), z in the whitened coordinates of the sum's kernel.

    `weights` is (t, n) for t weight vectors over the n reference points (non-negative).
    `outputs` lists the sums wanted as (weight row, kernel) pairs (default: every row under
    `kernel`); the result has one row per output and one column per query. An all-zero weight
    vector gives -inf. The outputs share the transforms: each weight row is spread once, in
    `kernel`'s coordinates, and every output's kernel is applied in Fourier space.
    `jobs` caps the threads (default: every core); an `executor` (`kscore.engines`) runs the
    chunks its way, e.g. as tasks on a Ray cluster (the same numbers).
    """
    executor = _executor(executor, jobs)
    points = _kept_points(executor, reference, weights)
    if outputs is None:
        outputs = [(row, kernel) for row in range(len(np.atleast_2d(weights)))]
    return _log_gauss_sums(executor, kernel, points, _kept_queries(executor, queries), outputs, None, jobs)


def _log_gauss_sums(
    executor: Executor,
    kernel: Kernel,
    points: _Points,
    queries: _Queries,
    outputs: list[tuple[int, Kernel]],
    subset: int | None,
    jobs: int | None,
    kept: bool = False,
) -> Any:
    """`log_gauss_sums` of kept points (with `subset`, of those of positive weight in that row);
    `kept`: the sums left where the executor keeps them (`_KeptLogs`)."""
    transform = kernel.whitening
    # Each output's kernel covariance in `kernel`'s coordinates (the identity for `kernel` itself).
    shapes = [np.eye(2) if k is kernel else transform @ k.covariance @ transform.T for _, k in outputs]
    margin = _RADIUS * math.sqrt(max(1.0, *(np.linalg.eigvalsh(shape).max() for shape in shapes)))
    low, high, row_totals = _bounds(executor, points, transform, subset)
    totals = row_totals[[row for row, _ in outputs]]
    box = (low, high, margin)
    shaped = [(row, shape) for (row, _), shape in zip(outputs, shapes, strict=True)]
    # Sums the transforms cannot resolve (below _TAIL of the total; rounding may even make them
    # negative, and queries outside the box are not evaluated) are computed exactly instead, at the
    # tail queries the chunks send back; an all-zero weight vector gives -inf.
    thresholds = np.where(totals > 0, _TAIL * totals, -np.inf)
    out, tail_rows, tail, tail_points = _nufft_gauss_sums(
        executor, points, queries, transform, box, shaped, subset, thresholds, kept
    )
    exact_sums: list[tuple[np.ndarray, np.ndarray]] = [(tail_rows[:0], np.empty(0)) for _ in outputs]
    for tail_kernel in {id(k): k for _, k in outputs}.values():
        mine = [o for o, (_, k) in enumerate(outputs) if k is tail_kernel]
        chosen = np.flatnonzero(tail[mine].any(axis=0))  # of the tail queries, those of this kernel
        if not len(chosen):
            continue
        tail_transform = transform if tail_kernel is kernel else tail_kernel.whitening
        z_rows = np.column_stack(_whiten(*tail_points[chosen].T, tail_transform))
        bounds = (
            (low, high) if tail_kernel is kernel else _bounds(executor, points, tail_transform, subset)[:2]
        )
        exact = _exact_log_sums(
            executor, points, tail_transform, [outputs[o][0] for o in mine], z_rows, bounds, subset, jobs
        )
        for i, o in enumerate(mine):
            needed = tail[o, chosen]
            exact_sums[o] = (tail_rows[chosen][needed], exact[i][needed])
    if kept:
        return _KeptLogs(out, exact_sums)
    for o, (rows, values) in enumerate(exact_sums):
        out[o, rows] = values
    return out


@dataclass(frozen=True)
class _KeptLogs:
    """Log-sums left where the executor keeps them: `logs` one piece a chunk of queries (a field
    an output), and for each output the exact sums of its tail queries that replace those (the
    queries, ascending, and the sums)."""

    logs: Pieces
    exact: list[tuple[np.ndarray, np.ndarray]]

    def chunk(self, part: slice) -> np.ndarray:
        """The sums at the queries `part` (outputs x queries), the exact ones in their places."""
        logs = np.array(self.logs.rows(part))
        for o, (rows, values) in enumerate(self.exact):
            a, b = np.searchsorted(rows, [part.start, part.stop])
            logs[o, rows[a:b] - part.start] = values[a:b]
        return logs


def _nufft_gauss_sums(
    executor: Executor,
    points: _Points,
    queries: _Queries,
    transform: np.ndarray,
    box: tuple[np.ndarray, np.ndarray, float],
    outputs: list[tuple[int, np.ndarray]],
    subset: int | None,
    thresholds: np.ndarray,
    kept: bool = False,
) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray]:
    """The log Gauss sums at the queries by two non-uniform FFTs, identical for any number of
    workers and on either engine (`kept`: left where the executor keeps them, in `Pieces`); the
    queries where one falls below its output's threshold (or outside the box) and needs an exact
    sum, which outputs do there, and those queries' points (unwhitened, in order).

    `box` is the whitened points' bounds and the margin the widest kernel needs around them;
    `outputs` the (weight row, kernel covariance) of each sum, in these coordinates.

    FINUFFT's own threads add the reference points onto its grid in an order that depends on the
    thread count (the results differ near 1e-8 in the tails), so it runs on one thread per call
    and the parallelism comes from fixed chunks instead: the type-1 sums of each chunk of reference
    points (they add) are added in chunk order, and each chunk of queries is evaluated on its own
    (a query's value does not depend on its chunk). The chunks run on the executor's workers:
    threads here, or tasks on a Ray cluster.
    """
    low, high, margin = box
    center = (low + high) / 2
    period = float((high - low).max()) + 2 * margin + 1e-9  # a square box, for one mode count
    scale = 2 * math.pi / period
    narrowest = min(float(np.linalg.eigvalsh(shape).min()) for _, shape in outputs)
    k_max = math.ceil(_RADIUS / (scale * math.sqrt(narrowest)))
    n_modes = 2 * k_max + 1
    k = scale * np.arange(-k_max, k_max + 1)
    rows = sorted({row for row, _ in outputs})
    grid = (center, scale, n_modes)
    spread = _added(
        executor.map_chunks(_spread_chunk, (points.kept, transform, rows, grid, subset), points.chunks)
    )
    spread = spread.reshape(len(rows), n_modes, n_modes)
    modes = np.empty((len(outputs), n_modes, n_modes), dtype=np.complex128)
    for o, (row, shape) in enumerate(outputs):
        # Fourier coefficients of the periodized exp(-u' shape^-1 u / 2) on the box.
        if np.array_equal(shape, np.eye(2)):
            spectrum = np.exp(-0.5 * k**2)
            coefficients = np.outer(spectrum, spectrum) * (2 * math.pi / period**2)
        else:
            quadratic = shape[0, 0] * k[:, None] ** 2 + 2 * shape[0, 1] * np.outer(k, k) + shape[1, 1] * k**2
            coefficients = np.exp(-0.5 * quadratic) * (
                2 * math.pi * math.sqrt(np.linalg.det(shape)) / period**2
            )
        modes[o] = spread[rows.index(row)] * coefficients
    # A query's value does not depend on its chunk: one chunk per worker, each FFT done once.
    query_chunk = max(_CHUNK, -(-queries.count // executor.workers))
    shared = (queries.kept, transform, executor.keep(modes), grid, box, thresholds)
    parts = _chunks(queries.count, query_chunk)
    if kept:
        found = executor.map_chunks(_evaluate_kept_chunk, shared, parts, kept=True)
        lengths = [part.stop - part.start for part in parts]
        logs: Any = executor.pieces([large for _, large in found], lengths)
        tails = [small for small, _ in found]
    else:
        found = executor.map_chunks(_evaluate_chunk, shared, parts)
        logs = np.concatenate([f[0] for f in found], axis=1)
        tails = [f[1:] for f in found]
    rows = np.concatenate([part.start + r for (r, _, _), part in zip(tails, parts, strict=True)])
    return (
        logs,
        rows,
        np.concatenate([t for _, t, _ in tails], axis=1),
        np.concatenate([p for *_, p in tails]),
    )


_Grid = tuple[np.ndarray, float, int]  # the box's center, the scale to angles, modes per side


def _angles(x: np.ndarray, y: np.ndarray, grid: _Grid) -> tuple[np.ndarray, np.ndarray]:
    """Whitened points as FINUFFT's angles on the box's grid (center, scale, modes)."""
    center, scale, _ = grid
    return (x - center[0]) * scale, (y - center[1]) * scale


def _spread_chunk(shared: tuple[Any, np.ndarray, list[int], _Grid, int | None], part: slice) -> np.ndarray:
    """The type-1 sums of one chunk of reference points (the points, the whitening, the weight rows
    wanted, the grid, the subset): they add."""
    points, transform, rows, grid, subset = shared
    x, y, weights = _chunk_of(points, part, subset)
    if not len(x):
        return np.zeros((len(rows), grid[2], grid[2]), dtype=np.complex128)
    strengths = weights[rows].astype(np.complex128)
    return _type1(*_angles(*_whiten(x, y, transform), grid), strengths, grid[2]).reshape(
        len(rows), grid[2], grid[2]
    )


def _evaluate_kept_chunk(
    shared: tuple[Any, ...], part: slice
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """`_evaluate_chunk`'s tail queries, then its log-sums as a piece (a field an output)."""
    logs, *tails = _evaluate_chunk(shared, part)
    return tuple(tails), tuple(logs)


def _evaluate_chunk(shared: tuple[Any, ...], part: slice) -> tuple[np.ndarray, ...]:
    """The log-sums at one chunk of queries (the queries, the whitening, the Fourier modes, the
    grid, the box, the outputs' thresholds); the queries that need an exact sum (below the
    threshold, or outside the box: not evaluated, -inf), counted from the chunk's start, which
    outputs do there, and the points of those queries."""
    queries, transform, modes, grid, (low, high, margin), thresholds = shared
    qx, qy = (
        queries.pieces.rows(part)[:2] if isinstance(queries, _PiecedQueries) else (q[part] for q in queries)
    )
    x, y = _whiten(qx, qy, transform)
    inside = (x >= low[0] - margin) & (x <= high[0] + margin)
    inside &= (y >= low[1] - margin) & (y <= high[1] + margin)
    logs = np.full((len(modes), len(x)), -np.inf)
    tail = np.ones_like(logs, dtype=bool)
    if inside.any():
        every = bool(inside.all())
        sums = np.atleast_2d(
            _type2(*_angles(x, y, grid) if every else _angles(x[inside], y[inside], grid), modes)
        )
        with np.errstate(divide="ignore", invalid="ignore"):
            logs[:, inside] = np.log(sums)
        tail[:, inside] = sums < thresholds[:, None]
    tail[thresholds == -np.inf] = False  # an all-zero weight vector: -inf everywhere
    wanted = tail.any(axis=0)
    return logs, np.flatnonzero(wanted), tail[:, wanted], np.column_stack([qx[wanted], qy[wanted]])


# Points per FINUFFT call at least: each call does an FFT of its grid (a few ms), so small calls
# would spend most of their time there.
_CHUNK = 1 << 17
# The reference points are cut in this many chunks above 16 x _CHUNK points: work for 16 cores.
_TYPE1_CHUNKS = 16


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, n)) for start in range(0, max(n, 1), size)]


def _type1(x: np.ndarray, y: np.ndarray, strengths: np.ndarray, n_modes: int) -> np.ndarray:
    import finufft

    return finufft.nufft2d1(
        x,
        y,
        strengths,
        (n_modes, n_modes),
        eps=_NUFFT_EPS,
        isign=-1,
        nthreads=1,
        spread_sort=_sorting(n_modes),
    )


def _type2(x: np.ndarray, y: np.ndarray, modes: np.ndarray) -> np.ndarray:
    import finufft

    sort = _sorting(modes.shape[-1])
    return finufft.nufft2d2(x, y, modes, eps=_NUFFT_EPS, isign=1, nthreads=1, spread_sort=sort).real


def _sorting(n_modes: int) -> int:
    """FINUFFT's `spread_sort`: sorting the points by grid cell pays only where the grid outgrows
    the caches. Measured (2M points, one thread, tolerance 1e-11): without sorting 20-30% faster up
    to 621 modes a side, even near 1241, 35% slower at 2481."""
    return 0 if n_modes <= 1024 else 2


_Cells = tuple[np.ndarray, np.ndarray, float, int, int]  # whitening, low corner, cell, columns, cells


def _cell_ids(x: np.ndarray, y: np.ndarray, cells: _Cells) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whitened points (x, y) and the grid cell of each."""
    transform, low, cell, columns, _ = cells
    zx, zy = _whiten(x, y, transform)
    ids = ((zx - low[0]) * (1.0 / cell)).astype(np.int64) * columns
    ids += ((zy - low[1]) * (1.0 / cell)).astype(np.int64)
    return zx, zy, ids


def _cells_chunk(shared: tuple[Any, _Cells, list[int], int | None], part: slice) -> tuple[np.ndarray, ...]:
    """A chunk's points counted in each grid cell, the weight rows' sums in each, their maxima."""
    points, cells, rows, subset = shared
    x, y, weights = _chunk_of(points, part, subset)
    _, _, ids = _cell_ids(x, y, cells)
    counts = np.bincount(ids, minlength=cells[4])
    # (float64 even for an empty chunk, where numpy's bincount gives integers)
    sums = np.stack([np.bincount(ids, weights[row], minlength=cells[4]) for row in rows]).astype(np.float64)
    most = weights[rows].max(axis=1) if len(x) else np.zeros(len(rows))
    return counts, sums, most


def _near_chunk(
    shared: tuple[Any, _Cells, list[int], np.ndarray, int | None], part: slice
) -> tuple[np.ndarray, ...]:
    """A chunk's whitened points in the `wanted` cells, in order, and their weight rows."""
    points, cells, rows, wanted, subset = shared
    x, y, weights = _chunk_of(points, part, subset)
    zx, zy, ids = _cell_ids(x, y, cells)
    near = np.flatnonzero(wanted[ids])
    return np.column_stack([zx[near], zy[near]]), weights[rows][:, near]


def _exact_log_sums(
    executor: Executor,
    points: _Points,
    transform: np.ndarray,
    rows: list[int],
    z_query: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
    subset: int | None = None,
    jobs: int | None = None,
) -> np.ndarray:
    """Exact log-sums of weight rows `rows` at a few whitened points (the tails), to a relative
    `_TAIL_RTOL`, over the points whitened by `transform` (their whitened `bounds`).

    The points are counted and their weights summed on a grid of one kernel width (by the
    executor's chunks). From the cells nearest a query comes a lower bound of its sum, and from
    that a radius beyond which all n points together weigh below `_TAIL_RTOL` of it: only the
    points within each query's radius are gathered and summed here. Queries far from every point
    (a handful of neighbours settle them) use a k-d tree over the points within their reach; the
    others (in a gap beside a dense cluster, whose many points at 6 to 9 kernel widths all count)
    sum their disk directly.
    """
    low, high = bounds
    cell = max(float((high - low).max()) / _GRID_CELLS, 1.0)  # a kernel width, or coarser
    columns = int((high[1] - low[1]) * (1.0 / cell)) + 1
    grid: _Cells = (transform, low, cell, columns, (int((high[0] - low[0]) * (1.0 / cell)) + 1) * columns)
    found = executor.map_chunks(_cells_chunk, (points.kept, grid, rows, subset), points.chunks)
    counts = _added([f[0] for f in found])
    n = int(counts.sum())
    occupied = np.flatnonzero(counts)
    with np.errstate(divide="ignore"):
        log_cell_weights = np.log(_added([f[1] for f in found])[:, occupied])
        log_max_w = np.log(np.max([f[2] for f in found], axis=0))
    centers = low + (np.stack(np.divmod(occupied, columns), axis=1) + 0.5) * cell
    half_diagonal = cell * math.sqrt(0.5) * (1 + 1e-9)  # a hair more for the rounding above
    from scipy.spatial import cKDTree

    cells = cKDTree(centers)
    nearest_k = min(16, len(occupied))
    distance, index = cells.query(z_query, k=nearest_k)
    distance, index = distance.reshape(len(z_query), nearest_k), index.reshape(len(z_query), nearest_k)
    farthest = distance + half_diagonal  # every point of the cell is within this
    # A lower bound of each sum: the nearest cells' weights, each at its farthest corner.
    terms = log_cell_weights[:, index] - 0.5 * farthest[None] ** 2
    peak = terms.max(axis=2)
    with np.errstate(invalid="ignore"):
        lower = peak + np.log(np.exp(terms - peak[:, :, None]).sum(axis=2))
    lower = np.where(peak > -np.inf, lower, -np.inf)
    with np.errstate(invalid="ignore"):
        squared = 2.0 * (math.log(n) + log_max_w[:, None] - lower - math.log(_TAIL_RTOL))
    squared = np.where(log_max_w[:, None] > -np.inf, squared, 0.0).max(axis=0)  # all-zero rows: -inf
    radius = np.sqrt(np.maximum(squared, farthest[:, 0] ** 2))
    far = ~np.isfinite(radius) | (distance[:, 0] > _FAR)
    out = np.empty((len(rows), len(z_query)))
    for group in (far, ~far):
        if not group.any():
            continue
        needed = np.zeros(len(occupied), dtype=bool)
        queries, radii = z_query[group], radius[group]
        for start in range(0, len(queries), 4096):
            part = slice(start, start + 4096)
            reach = np.where(np.isfinite(radii[part]), radii[part] + half_diagonal, np.inf)
            balls = cells.query_ball_point(queries[part], reach, return_sorted=False)
            needed[np.concatenate([np.asarray(b, dtype=np.int64) for b in balls])] = True
        wanted = np.zeros(grid[4], dtype=bool)
        wanted[occupied[needed]] = True
        near = executor.map_chunks(
            _near_chunk, (points.kept, grid, rows, executor.keep(wanted), subset), points.chunks
        )
        z_near = np.concatenate([z for z, _ in near])
        w_near = np.concatenate([w for _, w in near], axis=1)
        if len(queries) > _TAIL_CHUNK:  # many: in chunks of queries on the executor (the same sums)
            shared = (executor.keep((z_near, w_near)), executor.keep((queries, radii)), group is far)
            step = max(_TAIL_CHUNK, -(-len(queries) // executor.workers))
            out[:, group] = np.concatenate(
                executor.map_chunks(_tail_chunk, shared, _chunks(len(queries), step)), axis=1
            )
        else:
            out[:, group] = _tail_sums(z_near, w_near, queries, radii, group is far, jobs)
    return out


# Tail queries of one kind summed at once here at most; more go in chunks to the executor.
_TAIL_CHUNK = 4096


def _tail_sums(
    z_near: np.ndarray,
    w_near: np.ndarray,
    queries: np.ndarray,
    radii: np.ndarray,
    far: bool,
    jobs: int | None,
) -> np.ndarray:
    """Exact log-sums at tail queries over the points near them: far ones by nearest neighbours
    (beyond each radius the points are negligible by construction), the others over their disk.
    A query's sum does not depend on the others'."""
    if far:
        return _log_sums_over(z_near, w_near, queries, jobs)
    with np.errstate(divide="ignore"):
        return _disk_log_sums(z_near, np.log(w_near), queries, radii)


def _tail_chunk(shared: tuple[Any, Any, bool], part: slice) -> np.ndarray:
    """`_tail_sums` of one chunk of tail queries (the near points, the queries and radii, far or
    not), on one thread: the chunks are the parallelism."""
    (z_near, w_near), (queries, radii), far = shared
    return _tail_sums(z_near, w_near, queries[part], radii[part], far, 1)


# Grid cells per side at most when finding the references near the tail queries.
_GRID_CELLS = 512
# Tail queries farther than this (kernel widths) from every reference point search a k-d tree.
_FAR = 12.0


def _log_sums_over(
    z_ref: np.ndarray, weights: np.ndarray, z_query: np.ndarray, jobs: int | None = None
) -> np.ndarray:
    """Exact log-sums over these reference points: nearest neighbours until the rest is negligible.

    Queries that still need more than `_MAX_NEIGHBOURS` (in a gap beside a dense cluster, whose
    many points at 6 to 9 kernel widths all count) are summed over a disk instead
    (`_disk_log_sums`): a k-nearest search would sort a million neighbours per query.
    """
    from scipy.spatial import cKDTree

    n = len(z_ref)
    out = np.full((len(weights), len(z_query)), -np.inf)
    if n == 0:
        return out
    # A sliding-midpoint tree builds 2.4x faster than a balanced one (10M points: 4.3 s, not
    # 10.4 s) and finds the same exact neighbours.
    tree = cKDTree(z_ref, balanced_tree=False, compact_nodes=False)
    pending = np.arange(len(z_query))
    k = min(16, n)
    with np.errstate(divide="ignore"):
        log_w = np.log(weights)
    max_log_w = log_w.max(axis=1)
    while len(pending):
        distance, index = tree.query(z_query[pending], k=k, workers=jobs or -1)
        distance, index = distance.reshape(len(pending), k), index.reshape(len(pending), k)
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
        if k > _MAX_NEIGHBOURS and len(pending):
            # Beyond this radius the n points together weigh below _TAIL_RTOL of the partial sum.
            with np.errstate(invalid="ignore"):
                squared = 2.0 * (max_log_w[:, None] + math.log(n) - out[:, pending] - math.log(_TAIL_RTOL))
            radius = np.sqrt(np.nanmax(np.where(max_log_w[:, None] > -np.inf, squared, 0.0), axis=0))
            out[:, pending] = _disk_log_sums(z_ref, log_w, z_query[pending], radius)
            break
    return out


# Neighbours per query at most in a k-nearest search; beyond, `_disk_log_sums` sums a disk.
_MAX_NEIGHBOURS = 4096


def _disk_log_sums(
    z_ref: np.ndarray, log_w: np.ndarray, queries: np.ndarray, radii: np.ndarray
) -> np.ndarray:
    """log sum_i exp(log_w_ti - |q - z_i|^2 / 2) over every point within each query's radius (and
    some beyond: whole grid cells). The points are sorted by grid cell once; a disk's cells in one
    grid row are then one slice of them."""
    x, y = np.ascontiguousarray(z_ref.T)
    low = np.array([x.min(), y.min()])
    high = np.array([x.max(), y.max()])
    cell = max(float((high - low).max()) / 2048, 1.0)
    rows, columns = (np.floor((high - low) / cell).astype(np.int64) + 1).tolist()
    cell_id = np.floor((x - low[0]) / cell).astype(np.int64) * columns
    cell_id += np.floor((y - low[1]) / cell).astype(np.int64)
    order = np.argsort(cell_id, kind="stable")
    sorted_id, x, y, log_w = cell_id[order], x[order], y[order], log_w[:, order]
    out = np.empty((len(log_w), len(queries)))
    for j, (point, radius) in enumerate(zip(queries, radii * (1 + 1e-9), strict=True)):
        if math.isfinite(radius):
            first = np.maximum(np.floor((point - radius - low) / cell), 0)
            last = np.minimum(np.floor((point + radius - low) / cell), [rows - 1, columns - 1])
            first, last = first.astype(np.int64), last.astype(np.int64)
        else:
            first, last = np.zeros(2, dtype=np.int64), np.array([rows - 1, columns - 1])
        grid_rows = np.arange(first[0], last[0] + 1) * columns
        starts = np.searchsorted(sorted_id, grid_rows + first[1])
        stops = np.searchsorted(sorted_id, grid_rows + last[1] + 1)
        lengths = stops - starts
        index = np.arange(int(lengths.sum())) + np.repeat(starts - np.cumsum(lengths) + lengths, lengths)
        terms = log_w[:, index] - 0.5 * ((x[index] - point[0]) ** 2 + (y[index] - point[1]) ** 2)
        peak = terms.max(axis=1, keepdims=True, initial=-np.inf)
        with np.errstate(invalid="ignore", divide="ignore"):
            log_sum = np.log(np.exp(terms - peak).sum(axis=1)) + peak[:, 0]
        out[:, j] = np.where(np.isnan(log_sum), -np.inf, log_sum)
    return out


def kde_scores(
    train_xy: np.ndarray,
    reference_xy: np.ndarray,
    reference_difficulty: np.ndarray | None,
    bandwidth: str | float,
    jobs: int | None = None,
    executor: Executor | None = None,
) -> dict[str, np.ndarray | Kernel | None]:
    """All three scores at once, sharing the kernel and the transforms (their chunks, and every
    other pass over the points, run by `executor`)."""
    executor = _executor(executor, jobs)
    n = len(reference_xy)
    vectors = [np.full(n, 1.0 / n)]
    every_known = None
    if reference_difficulty is not None:
        difficulty = np.asarray(reference_difficulty, dtype=np.float64)
        known = ~np.isnan(difficulty)
        every_known = bool(known.all())
        vectors.append(np.where(known, difficulty, 0.0))
        if not every_known:  # the kernel sum over the rows with a difficulty, for the local mean
            vectors.append(known.astype(np.float64))
    points = _kept_points(executor, reference_xy, np.vstack(vectors))
    return _kde_scores(executor, points, _kept_queries(executor, train_xy), every_known, bandwidth, jobs)


def kde_scores_of_pieces(
    train: Pieces,
    reference: Pieces,
    with_difficulty: bool,
    bandwidth: str | float,
    executor: Executor | None = None,
    jobs: int | None = None,
) -> dict[str, Any]:
    """`kde_scores` of points kept in pieces, the scores left in pieces too, where the executor's
    chunks read and make them (on Ray, in the object store: no process holds them all). `train`:
    the train points (x, y); `reference`: the reference points and their difficulty (x, y, and
    the difficulty, or None in every piece without `with_difficulty`).

    Returns the kernels (`kernel`, `potential_kernel`), `scores` (`Pieces` of the representation,
    potential and local difficulty, None without a difficulty, in the train points' order) and
    `potential_all_nan`. The same numbers as
    `kde_scores` of the pieces joined, bitwise: each chunk is the same rows, made whole from the
    pieces it overlaps, and each score is made element by element."""
    executor = _executor(executor, jobs)
    n = reference.count
    chunks = _chunks(n, max(_CHUNK, -(-n // _TYPE1_CHUNKS)))
    every_known = None
    if with_difficulty:
        unknown = executor.map_chunks(_unknown_chunk, executor.keep(_PiecedPoints(reference, 1)), chunks)
        every_known = not any(unknown)
    weight_rows = 1 if every_known is None else 2 if every_known else 3
    points = _Points(executor.keep(_PiecedPoints(reference, weight_rows)), n, chunks)
    queries = _Queries(executor.keep(_PiecedQueries(train)), train.count)
    return _kde_scores(executor, points, queries, every_known, bandwidth, jobs, kept=True)


def _unknown_chunk(points: _PiecedPoints, part: slice) -> bool:
    """Whether a chunk of reference points has a point of unknown (NaN) difficulty."""
    difficulty = points.pieces.rows(part)[2]
    return bool(difficulty is not None and np.isnan(difficulty).any())


def _kde_scores(
    executor: Executor,
    points: _Points,
    queries: _Queries,
    every_known: bool | None,
    bandwidth: str | float,
    jobs: int | None,
    kept: bool = False,
) -> dict[str, Any]:
    """`kde_scores` of kept points (their weight rows: uniform, then with a difficulty
    (`every_known` not None) its known values, then where some are unknown their mask). `kept`:
    the scores left where the executor keeps them (`_scores_chunk`'s pieces)."""
    kernel = _fitted(_moments(executor, points, None), bandwidth)
    rows = 1 if every_known is None else 2 if every_known else 3
    outputs = [(row, kernel) for row in range(rows)]
    shared = potential_moments = None
    if every_known is not None:
        potential_moments = _moments(executor, points, 1, subset=1)
        shared = _potential_kernel(kernel, potential_moments, bandwidth)
        if shared is not None:  # the potential's sum rides on the same transforms
            outputs.append((1, shared))
    logs = _log_gauss_sums(executor, kernel, points, queries, outputs, None, jobs, kept)
    finish = _Finish(kernel.log_norm, points.count, every_known)
    own = potential_kernel = None
    if potential_moments is not None:
        log_total = math.log(potential_moments.total) if potential_moments.total > 0 else 0.0
        if shared is not None:
            potential_kernel, finish = shared, _Finish(*finish[:3], "shared", shared.log_norm, log_total)
        else:
            mode, potential_kernel, own = _potential_sums(
                executor, points, queries, potential_moments, bandwidth, jobs, kept
            )
            own_norm = potential_kernel.log_norm if potential_kernel is not None else 0.0
            finish = _Finish(*finish[:3], mode, own_norm, log_total)
    out: dict[str, Any] = {"kernel": kernel, "potential_kernel": potential_kernel}
    if not kept:
        out["representation"], out["potential"], out["local"] = _finished(logs, own, finish)
        return out
    lengths = list(logs.logs.lengths)
    parts = [slice(a - n, a) for a, n in zip(np.cumsum(lengths).tolist(), lengths, strict=True)]
    found = executor.map_chunks(_scores_chunk, (logs, own, finish), parts, kept=True)
    out["scores"] = executor.pieces([large for _, large in found], lengths)
    out["potential_all_nan"] = finish.potential is not None and sum(n for n, _ in found) == queries.count
    return out


class _Finish(NamedTuple):
    """How the scores come from the log-sums (`_finished`): the representation kernel's log
    normaliser, the reference points, whether every difficulty is known (None: no difficulty);
    the potential's way ("shared": the sums' last output; "own": sums of its own; "zeros"; "nan"),
    its kernel's log normaliser and the log of its total weight."""

    log_norm: float
    n: int
    every_known: bool | None
    potential: str | None = None
    potential_log_norm: float = 0.0
    log_total: float = 0.0


def _finished(
    logs: np.ndarray, own: np.ndarray | None, finish: _Finish
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(representation, potential, local) at queries, from their log-sums (`logs`, and `own`:
    the potential's where it has transforms of its own), element by element."""
    representation = finish.log_norm + logs[0]
    if finish.every_known is None:
        return representation, None, None
    with np.errstate(invalid="ignore"):
        # A kernel-weighted mean of difficulties in [0, 1]; rounding may step a hair outside.
        # With every difficulty known, the kernel sum over them is n times the uniform one.
        known_sum = logs[0] + math.log(finish.n) if finish.every_known else logs[2]
        local = np.clip(np.exp(logs[1] - known_sum), 0.0, 1.0)
    return representation, _potential_values(logs[-1] if own is None else own[0], finish), local


def _potential_values(log_sums: np.ndarray, finish: _Finish) -> np.ndarray:
    """The potential at queries from its log-sums, as `finish.potential` says."""
    if finish.potential == "zeros":
        return np.zeros(len(log_sums))
    if finish.potential == "nan":
        return np.full(len(log_sums), np.nan)
    return np.exp(finish.potential_log_norm + log_sums - finish.log_total)


def _scores_chunk(shared: tuple[Any, ...], part: slice) -> tuple[int, tuple[Any, ...]]:
    """The scores of a chunk of queries from its kept log-sums: how many potentials are NaN, then
    (representation, potential, local) as a piece."""
    logs, own, finish = shared
    scores = _finished(logs.chunk(part), None if own is None else own.chunk(part), finish)
    nan = 0 if scores[1] is None else int(np.isnan(scores[1]).sum())
    return nan, scores


# The potential's kernel shares the representation's transforms when its covariance, in the
# representation kernel's whitened coordinates, has eigenvalues within this factor of 1: a narrower
# kernel needs proportionally more Fourier modes (and memory) per side, a wider one a wider box.
_SHARED_SPREAD = 4.0


def _potential_kernel(kernel: Kernel, moments: _Moments, bandwidth: str | float) -> Kernel | None:
    """The potential's kernel (from the moments of the difficulty weights) where it can share
    `kernel`'s transforms; None where it cannot or where no density exists (`_potential` then says
    which)."""
    if moments.count == 0:
        return None
    try:
        potential = _fitted(moments, bandwidth)
    except DegenerateError:
        return None
    transform = kernel.whitening
    eigenvalues = np.linalg.eigvalsh(transform @ potential.covariance @ transform.T)
    if eigenvalues.min() < 1 / _SHARED_SPREAD or eigenvalues.max() > _SHARED_SPREAD:
        return None
    return potential


def _potential_sums(
    executor: Executor,
    points: _Points,
    queries: _Queries,
    moments: _Moments,
    bandwidth: str | float,
    jobs: int | None = None,
    kept: bool = False,
) -> tuple[str, Kernel | None, Any]:
    """The difficulty-weighted KDE's way (weight row 1 of `points`, whose `moments` are given):
    "zeros" (no weight), "nan" (no density: the difficulty on fewer than 3 points or on a line)
    or "own" with its kernel and its log-sums at the queries. Points of zero weight change neither
    scipy's covariance nor its sum: they are left out."""
    if moments.count == 0:
        return "zeros", None, None
    try:
        kernel = _fitted(moments, bandwidth)
    except DegenerateError:
        return "nan", None, None
    return "own", kernel, _log_gauss_sums(executor, kernel, points, queries, [(1, kernel)], 1, jobs, kept)


def _potential(
    executor: Executor,
    points: _Points,
    queries: _Queries,
    moments: _Moments,
    bandwidth: str | float,
    jobs: int | None = None,
) -> tuple[np.ndarray, Kernel | None]:
    """The difficulty-weighted KDE at the queries (`_potential_sums`), and its kernel (None
    without a density)."""
    mode, kernel, log_sums = _potential_sums(executor, points, queries, moments, bandwidth, jobs)
    log_total = math.log(moments.total) if mode == "own" else 0.0
    finish = _Finish(0.0, 0, True, mode, kernel.log_norm if kernel is not None else 0.0, log_total)
    sums = log_sums[0] if log_sums is not None else np.empty(queries.count)
    return _potential_values(sums, finish), kernel


def representation_scores(
    train_xy: np.ndarray, reference_xy: np.ndarray, bandwidth: str | float = "scott"
) -> np.ndarray:
    """Natural log of the Gaussian KDE of the reference points at each train point."""
    return kde_scores(train_xy, reference_xy, None, bandwidth)["representation"]  # type: ignore[return-value]


def potential_difficulty_scores(
    train_xy: np.ndarray,
    reference_xy: np.ndarray,
    reference_difficulty: np.ndarray,
    bandwidth: str | float = "scott",
) -> np.ndarray:
    """The density of the difficulty-weighted Gaussian KDE of the reference points at each train point.

    Reference points with a NaN difficulty are left out; all-zero difficulty gives zeros.
    """
    difficulty = np.asarray(reference_difficulty, dtype=np.float64)
    weights = np.where(np.isnan(difficulty), 0.0, difficulty)
    executor = _executor(None, None)
    points = _kept_points(executor, reference_xy, np.vstack([np.zeros_like(weights), weights]))
    moments = _moments(executor, points, 1, subset=1)
    return _potential(executor, points, _kept_queries(executor, train_xy), moments, bandwidth)[0]


def local_difficulty(
    train_xy: np.ndarray,
    reference_xy: np.ndarray,
    reference_difficulty: np.ndarray,
    bandwidth: str | float = "scott",
) -> np.ndarray:
    """sum(d_i K(x - x_i)) / sum(K(x - x_i)) over the reference points with a difficulty (not NaN),
    with the representation kernel (its bandwidth from all reference points)."""
    return kde_scores(train_xy, reference_xy, reference_difficulty, bandwidth)["local"]  # type: ignore[return-value]
