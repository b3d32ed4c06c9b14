from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from kscore.core.order_stats import exact_quantiles, top_k_candidates
from kscore.summaries import hardest_rows


def by_sorting(scores: pl.Series, ids: pl.Series, top: int) -> list[int]:
    frame = pl.DataFrame({"row": np.arange(len(scores)), "s": scores, "id": ids}).drop_nulls("s")
    return frame.sort(["s", "id"], descending=[True, False]).head(top)["row"].to_list()


@pytest.mark.parametrize("n", [0, 5, 4096 * 3 + 17, 200_000])
@pytest.mark.parametrize("top", [0, 1, 10, 50])
def test_hardest_rows_equal_a_full_sort_with_ties_and_nulls(n, top):
    rng = np.random.default_rng(n + top)
    values = rng.integers(0, 50, n) / 50  # many ties
    scores = (
        pl.Series(values).set(pl.Series(rng.random(n) < 0.1), None) if n else pl.Series([], dtype=pl.Float64)
    )
    ids = pl.Series(rng.permutation(n))
    assert hardest_rows(scores, ids, top) == by_sorting(scores, ids, top)


def test_all_null_scores_have_no_hardest_rows():
    scores = pl.Series([None, None], dtype=pl.Float64)
    assert hardest_rows(scores, pl.Series([1, 2]), 5) == []


def test_candidates_contain_every_tie_of_the_kth_value():
    values = np.zeros(100_000)
    values[::7] = 1.0
    candidates = top_k_candidates(values, 3)
    assert set(np.flatnonzero(values == 1.0)) <= set(candidates.tolist())


QS = [0.0, 0.1, 0.5, 0.9, 1.0]


def polars_quantiles(values: np.ndarray) -> list[float]:
    series = pl.Series(values, nan_to_null=True)
    return [series.quantile(q, "linear") for q in QS]


@pytest.mark.parametrize(
    "kind", ["uniform", "skewed", "ties", "sorted", "reversed", "periodic", "constant", "nans"]
)
@pytest.mark.parametrize("n", [1, 2, 7, 1000, 70_000, 300_001])
def test_exact_quantiles_equal_polars_linear(kind, n):
    rng = np.random.default_rng(n)
    values = {
        "uniform": lambda: rng.random(n),
        "skewed": lambda: rng.random(n) ** 8,
        "ties": lambda: rng.integers(0, 3, n) / 2,  # brackets hold huge runs of equal values
        "sorted": lambda: np.sort(rng.random(n)),
        "reversed": lambda: np.sort(rng.random(n))[::-1].copy(),
        "periodic": lambda: np.tile(rng.random(4), n // 4 + 1)[:n],  # a strided sample sees one phase
        "constant": lambda: np.full(n, 0.25),
        "nans": lambda: np.where(rng.random(n) < 0.3, np.nan, rng.random(n)),
    }[kind]()
    got = exact_quantiles(values, QS)
    want = polars_quantiles(values)
    assert [g is None for g in got] == [w is None for w in want]
    assert [g for g in got if g is not None] == pytest.approx([w for w in want if w is not None], rel=1e-15)


def test_exact_quantiles_of_no_values_are_none():
    assert exact_quantiles(np.array([]), [0.5]) == [None]
    assert exact_quantiles(np.array([np.nan, np.nan]), [0.5, 0.9]) == [None, None]


def test_order_keys_order_every_float_as_it_compares_and_give_it_back():
    """Oracle: the floats' own order, from -inf to inf through the subnormals (-0.0 is 0.0)."""
    from kscore.core.order_stats import order_keys, value_of_key

    rng = np.random.default_rng(3)
    special = [-np.inf, -1e308, -1.0, -5e-324, -0.0, 0.0, 5e-324, 1e-310, 1.0, 1e308, np.inf]
    values = np.concatenate([special, rng.normal(size=500) * 10.0 ** rng.integers(-300, 300, 500)])
    keys = order_keys(values)
    order = np.argsort(values, kind="stable")
    assert np.all(np.diff(keys[order].astype(object)) >= 0)  # the floats' order
    assert len(set(keys.tolist())) == len(set((values + 0.0).tolist()))  # equal keys: equal values
    assert [value_of_key(int(k)) for k in keys] == (values + 0.0).tolist()


@pytest.mark.parametrize(
    "kind", ["normal", "ties", "one value", "signed zeros and infinities", "a few", "none"]
)
@pytest.mark.parametrize(("bins", "sent"), [(2, 1), (4, 16), (256, 1 << 16), ("missed", 16)])
def test_quantiles_counted_in_pieces_equal_exact_quantiles(monkeypatch, kind, bins, sent):
    """`quantiles_by_counting` over pieces (empty ones and NaN included), each range narrowed in
    `bins` bins until `sent` values are left: bitwise `exact_quantiles` of the values joined (2
    bins and 1 value: the most rounds there are). "missed": every bracket the sample sets misses,
    under or above the order statistic."""
    from kscore.core import order_stats

    if bins == "missed":
        bins = 4
        top = 2**64 - 2
        monkeypatch.setattr(
            order_stats,
            "_bracket",
            lambda sample, rank, n: (0, 1, -1, -1) if rank % 2 else (top, top + 1, -1, -1),
        )
    monkeypatch.setattr(order_stats, "KEY_BINS", bins)
    monkeypatch.setattr(order_stats, "SENT_KEYS", sent)
    rng = np.random.default_rng(len(kind))
    n = {"a few": 3, "none": 0}.get(kind, 5000)
    values = {
        "normal": rng.normal(size=n) * 1e3,
        "ties": rng.integers(-3, 4, n) / 4,
        "one value": np.full(n, 2.5),
        "signed zeros and infinities": rng.choice([-np.inf, -0.0, 0.0, 1e-320, np.inf, -7.0], n),
        "a few": np.array([3.0, -1.0, 2.0]),
        "none": np.empty(0),
    }[kind]
    values[rng.random(n) < 0.1] = np.nan
    cuts = np.sort(rng.integers(0, n + 1, 6))
    pieces = [(part, -part) for part in np.split(values, cuts)]  # two fields, empty pieces too
    qs = (0.0, 0.1, 0.5, 0.9, 1.0, 0.37)
    asked: list[int] = []

    def count(requests):
        asked.append(len(requests))
        return [order_stats.key_counts(piece, requests) for piece in pieces]

    def same(quantiles):  # NaN (-inf to inf) equal to itself, -0.0 to 0.0
        return [None if v is None else "nan" if np.isnan(v) else v + 0.0 for v in quantiles]

    found = order_stats.quantiles_by_counting(count, [0, 1], qs)
    for field, quantiles in enumerate(found):
        expected = exact_quantiles(values if field == 0 else -values, qs)
        assert same(quantiles) == same(expected), (field, kind)
    if kind == "normal" and bins == 2:
        assert len(asked) > 10  # many rounds: the ranges narrowed in halves
