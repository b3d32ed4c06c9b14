from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from kscore.report import hardest_rows
from kscore.selection import top_k_candidates


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
