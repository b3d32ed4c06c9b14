"""The KDE against its oracle, scipy.stats.gaussian_kde, including far-tail points."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import gaussian_kde

from kscore.core.density import (
    DegenerateError,
    Kernel,
    local_difficulty,
    potential_difficulty_scores,
    representation_scores,
)
from kscore.engines import Pieces


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
    # measured: 3.5e-11 inside, 2.7e-11 relative outside (1e-10 at bandwidth 0.3)
    assert np.abs(ours - exact)[inside].max() < 1e-9
    assert (np.abs(ours - exact) / np.abs(exact))[~inside].max() < 1e-9
    assert ours[-1] < -1e6  # a point 1e5 away: tiny but finite


def test_potential_matches_scipys_weighted_estimator():
    train, reference, difficulty = clouds(1)
    difficulty[::5] = np.nan  # rows without a difficulty are left out
    known = ~np.isnan(difficulty)
    ours = potential_difficulty_scores(train, reference, difficulty)
    exact = gaussian_kde(reference[known].T, weights=difficulty[known]).pdf(train.T)
    inside = region(exact)
    assert (np.abs(ours - exact)[inside] / exact[inside]).max() < 1e-9  # measured: 8.7e-11
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
    assert np.abs(ours - exact)[inside].max() < 1e-9  # measured: 3.7e-12
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
    import kscore.core.density as density

    monkeypatch.setattr(density, "_CHUNK", 1000)  # several chunks at test size
    assert -(-5500 // density._CHUNK) > 1  # the patch took effect: the reference rows span chunks
    rng = np.random.default_rng(11)
    reference = rng.normal(size=(5500, 2)) * [3.0, 1.0]
    train = np.vstack([rng.normal(size=(4200, 2)), rng.uniform(-40, 40, size=(30, 2))])
    difficulty = rng.uniform(size=5500)
    runs = [density.kde_scores(train, reference, difficulty, "scott", jobs=jobs) for jobs in (1, 2, 3)]
    for key in ("representation", "potential", "local"):
        assert np.array_equal(runs[0][key], runs[1][key]) and np.array_equal(runs[0][key], runs[2][key])
    expected = gaussian_kde(reference.T).logpdf(train[:200].T)
    assert np.allclose(runs[0]["representation"][:200], expected, rtol=0, atol=1e-9)


def tilted_clouds(seed: int, hard_width: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A wide cloud and a tilted, elongated one whose points are the hard ones."""
    rng = np.random.default_rng(seed)
    angle = np.pi / 5
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    hard = rng.normal(size=(1200, 2)) * [4.0 * hard_width, hard_width] @ rotation.T + [3.0, 1.0]
    reference = np.vstack([rng.normal(size=(1500, 2)) * [3.0, 2.0], hard])
    difficulty = np.concatenate([rng.uniform(0, 0.05, 1500), rng.uniform(0.5, 1.0, 1200)])
    train = np.vstack([rng.normal(size=(900, 2)) * 3.0, rng.uniform(-60, 60, (60, 2))])
    return train, reference, difficulty


@pytest.mark.parametrize(("hard_width", "shared"), [(1.5, True), (0.1, False)])
def test_potential_shares_the_transforms_when_its_kernel_is_close(monkeypatch, hard_width, shared):
    """A tilted potential kernel rides on the representation's transforms (its own Fourier
    coefficients); one far narrower gets transforms of its own. Both are scipy's estimator."""
    import kscore.core.density as density

    original, separate = density._potential_sums, []

    def spy(*args, **kwargs):
        separate.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(density, "_potential_sums", spy)
    train, reference, difficulty = tilted_clouds(3, hard_width)
    scores = density.kde_scores(train, reference, difficulty, "scott")
    assert bool(separate) is not shared
    exact = gaussian_kde(reference.T, weights=difficulty).pdf(train.T)
    inside = region(exact)
    ours = scores["potential"]
    assert (np.abs(ours - exact)[inside] / exact[inside]).max() < 1e-6
    tails = ~inside & (exact > 1e-290)  # farther out scipy's density underflows to 0
    assert (np.abs(ours - exact)[tails] / exact[tails]).max() < 1e-3
    representation = gaussian_kde(reference.T).logpdf(train.T)
    assert np.abs(scores["representation"] - representation).max() < 1e-6


@pytest.mark.parametrize("nearby_weight", [True, False])
def test_exact_tail_sums_equal_brute_force(monkeypatch, nearby_weight):
    """The tail sums (whitened coordinates, unit kernel) against log-sum-exp over every point: queries
    in a gap beside a dense cluster sum a disk, far ones search a k-d tree over the points within
    reach; where the nearby cells carry no weight (no lower bound) the tree holds every point."""
    from scipy.special import logsumexp

    import kscore.core.density as density

    rng = np.random.default_rng(8)
    reference = np.vstack([rng.normal(size=(20000, 2)) * 2.0, rng.normal(size=(3000, 2)) * 0.5 + [40.0, 0.0]])
    uniform = np.full(len(reference), 1.0 / len(reference))
    if nearby_weight:  # some zeros among the weights
        other = rng.uniform(size=len(reference)) * (rng.uniform(size=len(reference)) > 0.3)
    else:  # weight only on the far cluster
        other = np.where(reference[:, 0] > 20, 1.0, 0.0)
    weights = np.vstack([uniform, other])
    angles = rng.uniform(0, 2 * np.pi, 40)
    ring = np.column_stack([np.cos(angles), np.sin(angles)])
    queries = np.vstack([ring * 13.0, ring[:10] * [300.0, 80.0], [[20.0, 0.0], [-1e4, 5.0]]])
    calls = []
    for name in ("_disk_log_sums", "_log_sums_over"):
        original = getattr(density, name)

        def counted(points, *args, _original=original, _name=name, **kwargs):
            calls.append((_name, len(points), len(args[1])))
            return _original(points, *args, **kwargs)

        monkeypatch.setattr(density, name, counted)
    bounds = (reference.min(axis=0), reference.max(axis=0))
    executor = density._executor(None, None)
    points = density._kept_points(executor, reference, weights)
    ours = density._exact_log_sums(executor, points, np.eye(2), [0, 1], queries, bounds)
    squared = ((queries[:, None, :] - reference[None, :, :]) ** 2).sum(axis=2)
    with np.errstate(divide="ignore"):
        exact = np.stack([logsumexp(np.log(w)[None, :] - 0.5 * squared, axis=1) for w in weights])
    if nearby_weight:  # the 40 gap queries on a disk, the far ones on a tree, each over a subset
        assert calls[0][0] == "_log_sums_over" and calls[0][1] < len(reference) and calls[0][2] == 12
        assert calls[1][0] == "_disk_log_sums" and calls[1][1] < len(reference) and calls[1][2] == 40
    else:
        assert calls[0] == ("_log_sums_over", len(reference), len(queries))
    assert np.isfinite(ours).all()
    assert np.abs(np.exp(ours - exact) - 1).max() < 1e-5


class _Handle:
    """A value an executor keeps out of the caller's reach (as Ray's object store does)."""

    def __init__(self, number: int) -> None:
        self.number = number


def _arrays_in(value) -> list[np.ndarray]:
    """The numpy arrays in a value sent by value, tuples and lists opened (handles are not)."""
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, tuple | list):
        return [array for item in value for array in _arrays_in(item)]
    return []


class _FarAwayExecutor:
    """Runs chunks one by one here, but the values it keeps are handles the caller cannot read:
    only the chunks see them. Records each pass and what it was sent by value."""

    on_this_machine = True
    workers = 3

    def __init__(self) -> None:
        self.store: dict[int, object] = {}
        self.passes: list[str] = []
        self.sent: list[object] = []

    def keep(self, value):
        self.store[len(self.store)] = value
        return _Handle(len(self.store) - 1)

    def map_chunks(self, func, shared, parts):
        self.passes.append(func.__name__)
        items = shared if isinstance(shared, tuple) else (shared,)
        self.sent.extend(_arrays_in(items))
        values = tuple(self.store[i.number] if isinstance(i, _Handle) else i for i in items)
        return [func(values if isinstance(shared, tuple) else values[0], part) for part in parts]


@pytest.mark.parametrize("shared_kernel", [True, False])
def test_every_pass_over_the_points_runs_in_chunks_of_kept_points(monkeypatch, shared_kernel):
    """The driver's part of the KDE reads no point: the moments, bounds, transforms, tails' cells
    and near points all come from chunks of points the executor keeps (on Ray: in the object store,
    put once), and no array the points' length is sent to a chunk by value. The scores are the
    local engine's, bitwise, far tails and a potential that cannot share the transforms included."""
    import kscore.core.density as density

    monkeypatch.setattr(density, "_CHUNK", 1000)
    rng = np.random.default_rng(21)
    reference = np.vstack([rng.normal(size=(5000, 2)) * [2.0, 1.0], rng.normal(size=(400, 2)) * 0.2 + 6])
    train = np.vstack([rng.normal(size=(700, 2)), [[80.0, -40.0], [9.0, 9.0], [-1e4, 3.0]]])
    difficulty = rng.uniform(size=len(reference))
    difficulty[::6] = np.nan
    if not shared_kernel:  # the hard points in one tight cluster: a kernel too narrow to share
        difficulty[:5000] = 0.0
    far_away = _FarAwayExecutor()
    ours = density.kde_scores(train, reference, difficulty, "scott", executor=far_away)
    local = density.kde_scores(train, reference, difficulty, "scott", jobs=2)
    for key in ("representation", "local", "potential"):
        assert np.array_equal(ours[key], local[key]), key
    assert (ours["potential_kernel"] is not None) and np.isfinite(ours["potential"]).all()
    shared = _shared_with(ours)
    assert shared == shared_kernel
    assert {"_cells_chunk", "_near_chunk"} <= set(far_away.passes)  # the far queries were summed exactly
    assert far_away.passes.count("_spread_chunk") == (1 if shared_kernel else 2)
    lengths = [len(item) for item in far_away.sent if isinstance(item, np.ndarray)]
    assert max(lengths, default=0) < len(train)


def _shared_with(scores) -> bool:
    """Whether the potential's kernel shared the representation's transforms (it then has the
    representation kernel's whitened spread within the sharing limit)."""
    import kscore.core.density as density

    transform = scores["kernel"].whitening
    eigenvalues = np.linalg.eigvalsh(transform @ scores["potential_kernel"].covariance @ transform.T)
    spread = density._SHARED_SPREAD
    return bool(eigenvalues.min() >= 1 / spread and eigenvalues.max() <= spread)


def test_many_tail_queries_are_summed_in_chunks_of_queries_with_the_same_numbers(monkeypatch):
    """Above `_TAIL_CHUNK` tail queries of a kind (here 8), their exact sums run as chunks of
    queries on the executor, one thread each: the same numbers, bitwise, as all at once here."""
    import kscore.core.density as density

    rng = np.random.default_rng(4)
    reference = np.vstack([rng.normal(size=(3000, 2)), rng.normal(size=(500, 2)) * 0.3 + [9.0, 0.0]])
    angles = rng.uniform(0, 2 * np.pi, 60)
    ring = np.column_stack([np.cos(angles), np.sin(angles)])
    train = np.vstack([rng.normal(size=(500, 2)), ring * 40.0, ring * [4.5, 0.4] + [4.5, 0.0]])
    difficulty = rng.uniform(size=len(reference))
    at_once = density.kde_scores(train, reference, difficulty, "scott", jobs=2)
    monkeypatch.setattr(density, "_TAIL_CHUNK", 8)
    far_away = _FarAwayExecutor()
    in_chunks = density.kde_scores(train, reference, difficulty, "scott", executor=far_away)
    assert far_away.passes.count("_tail_chunk") >= 2  # the far ring, and the gap between the clusters
    for key in ("representation", "local", "potential"):
        assert np.isfinite(at_once[key]).all(), key
        assert np.array_equal(at_once[key], in_chunks[key]), key


def _in_pieces(columns: list[np.ndarray | None], cuts: list[int]) -> Pieces:
    """The columns cut at `cuts` (row numbers, repeats allowed: empty pieces) into `Pieces`."""
    bounds = [0, *cuts, len(columns[0])]  # type: ignore[arg-type]
    items = tuple(
        tuple(None if c is None else np.ascontiguousarray(c[a:b]) for c in columns)
        for a, b in itertools.pairwise(bounds)
    )
    return Pieces(items, tuple(b - a for a, b in itertools.pairwise(bounds)))


@pytest.mark.parametrize("difficulty_kind", ["none", "some unknown", "all known", "tilted narrow"])
def test_scores_of_points_in_pieces_are_the_scores_of_the_points_joined_bitwise(monkeypatch, difficulty_kind):
    """Pieces cut anywhere (empty ones too, and across the fixed chunks) give `kde_scores`' numbers
    bitwise: the representation, the potential (on the shared transforms, or its own where its
    kernel is far narrower), the local difficulty, and the far queries' exact sums."""
    import kscore.core.density as density

    monkeypatch.setattr(density, "_CHUNK", 700)  # several chunks, cut across the pieces
    train, reference, difficulty = tilted_clouds(9, 0.1 if difficulty_kind == "tilted narrow" else 1.5)
    if difficulty_kind == "some unknown":
        difficulty = difficulty.copy()
        difficulty[::4] = np.nan
    wanted = None if difficulty_kind == "none" else difficulty
    whole = density.kde_scores(train, reference, wanted, "scott", jobs=2)
    rng = np.random.default_rng(4)
    for _ in range(3):
        reference_cuts = sorted([*rng.integers(0, len(reference), 6).tolist(), 0, 1500])
        train_cuts = sorted([*rng.integers(0, len(train), 4).tolist(), len(train)])
        pieced = density.kde_scores_of_pieces(
            _in_pieces([train[:, 0], train[:, 1]], train_cuts),
            _in_pieces([reference[:, 0], reference[:, 1], wanted], reference_cuts),
            wanted is not None,
            "scott",
            jobs=2,
        )
        scores = pieced["scores"].rows(slice(0, len(train)))
        for k, key in enumerate(("representation", "potential", "local")):
            if wanted is None and key != "representation":
                assert scores[k] is None
                continue
            assert np.array_equal(whole[key], scores[k], equal_nan=True), key  # type: ignore[arg-type]
        assert pieced["potential_all_nan"] is False
        assert np.array_equal(whole["kernel"].covariance, pieced["kernel"].covariance)  # type: ignore[union-attr]


def test_a_chunk_of_pieces_reads_only_the_pieces_it_overlaps():
    """`Pieces.rows` fetches the pieces a slice overlaps, and joins their rows in order."""
    fetched: list[list[int]] = []
    values = {k: (np.arange(k * 10, k * 10 + 10, dtype=np.float64), None) for k in range(5)}

    def fetch(keys: list[int]) -> list:
        fetched.append(keys)
        return [values[k] for k in keys]

    pieces = Pieces(tuple(range(5)), (10, 10, 0, 10, 10), fetch)
    x, none = pieces.rows(slice(15, 32))  # rows 15..19 of piece 1, the 10 of piece 3, 2 of piece 4
    assert none is None and fetched == [[1, 3, 4]]  # the empty piece 2 is not read
    assert np.array_equal(x, np.concatenate([np.arange(15, 20), np.arange(30, 42)]))
    (x, _), (y, _) = pieces.rows(slice(40, 40)), pieces.rows(slice(0, 40))
    assert len(x) == 0 and np.array_equal(y, np.concatenate([values[k][0] for k in (0, 1, 3, 4)]))
