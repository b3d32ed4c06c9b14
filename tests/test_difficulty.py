from __future__ import annotations

import itertools
import warnings

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kscore.config import QualityStandard
from kscore.errors import InputError, KscoreWarning
from kscore.jobs.difficulty import difficulty_scores

from .conftest import worked_example


def make_standard(*metrics: tuple[str, str, float], **extra) -> QualityStandard:
    return QualityStandard.from_dict(
        {"metrics": [{"name": n, "direction": d, "weight": w} for n, d, w in metrics], **extra}
    )


F1_LATENCY = make_standard(("f1", "HIB", 2), ("latency_ms", "LIB", 1))


def test_spec_worked_example_to_four_decimals():
    out = difficulty_scores({"m": worked_example()}, F1_LATENCY, explain=True)
    assert out["id"].to_list() == [10, 11, 12, 13, 14]
    assert out["norm_f1_m"].round(4).to_list() == [0.0, 0.6341, 0.2073, 1.0, 0.3171]
    assert out["norm_latency_ms_m"].round(4).to_list() == [0.0732, 0.6098, 0.0, 1.0, 0.2683]
    assert out["difficulty_score_m"].round(4).to_list() == [0.0244, 0.6260, 0.1382, 1.0, 0.3008]
    assert out["difficulty_score"].round(4).to_list() == [0.0244, 0.6260, 0.1382, 1.0, 0.3008]
    assert out["n_models"].to_list() == [1] * 5
    assert out["top_signal_m"].to_list() == ["latency_ms", "f1", "f1", "f1", "f1"]


def test_datapoint_score_is_the_mean_over_the_models_that_scored_it():
    a = pl.DataFrame({"id": [1, 2, 3], "m": [0.0, 5.0, 10.0]})
    b = pl.DataFrame({"id": [3, 2, 4], "m": [0.0, 10.0, 5.0]})  # other order, 1 missing, 4 extra
    out = difficulty_scores({"a": a, "b": b}, make_standard(("m", "LIB", 1)))
    assert out["id"].to_list() == [1, 2, 3, 4]
    assert out["difficulty_score_a"].to_list() == [0.0, 0.5, 1.0, None]
    assert out["difficulty_score_b"].to_list() == [None, 1.0, 0.0, 0.5]
    assert out["difficulty_score"].to_list() == [0.0, 0.75, 0.5, 0.5]
    assert out["n_models"].to_list() == [1, 2, 2, 1]


def test_constant_column_normalizes_to_zero_and_warns():
    frame = pl.DataFrame({"id": [1, 2, 3], "acc": [0.5, 0.5, 0.5], "loss": [1.0, 2.0, 3.0]})
    with pytest.warns(KscoreWarning, match="model 'a': signal 'acc' is constant") as caught:
        out = difficulty_scores(
            {"a": frame}, make_standard(("acc", "HIB", 1), ("loss", "LIB", 1)), explain=True
        )
    assert caught[0].message.model == "a"
    assert out["norm_acc_a"].to_list() == [0.0, 0.0, 0.0]
    assert out["difficulty_score"].to_list() == [0.0, 0.25, 0.5]


def test_nulls_renormalize_weights_over_present_signals():
    frame = pl.DataFrame(
        {
            "id": [1, 2, 3, 4],
            "a": [0.0, None, 10.0, None],
            "b": [0.0, 10.0, float("nan"), None],  # NaN counts as missing too
        }
    )
    standard = make_standard(("a", "LIB", 3), ("b", "LIB", 1))
    with pytest.warns(KscoreWarning, match="model 'n': signal 'a' is constant"):
        out = difficulty_scores({"m": frame, "n": frame.with_columns(pl.lit(1.0).alias("a"))}, standard)
    # m: row 1 both present -> 0; row 2 only b (norm 1) -> 1; row 3 only a (norm 1) -> 1; row 4 none.
    assert out["difficulty_score_m"].to_list() == [0.0, 1.0, 1.0, None]
    # Row 4 has no signal in either model ("n" has only the constant a -> 0): counts once.
    assert out["n_models"].to_list() == [2, 2, 2, 1]
    assert out["difficulty_score"][3] == 0.0


def average_rank_percentile(values: list[float]) -> list[float]:
    """The oracle: (average rank - 1) / (n - 1), ranks counted by hand."""
    n = len(values)
    ranks = [sum(w < v for w in values) + (sum(w == v for w in values) + 1) / 2 for v in values]
    return [(r - 1) / (n - 1) for r in ranks]


def test_rank_normalization_is_the_average_percentile_rank():
    values = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 1000.0]
    frame = pl.DataFrame({"id": list(range(10)), "loss": values, "acc": values})
    standard = make_standard(("loss", "LIB", 1), ("acc", "HIB", 1), normalization="rank")
    out = difficulty_scores({"m": frame}, standard, explain=True)
    expected = average_rank_percentile(values)
    assert out["norm_loss_m"].to_list() == pytest.approx(expected)
    assert out["norm_acc_m"].to_list() == pytest.approx([1 - v for v in expected])
    # Robust to the outlier: the second-largest value still sits at rank 8 of 9.
    assert out["norm_loss_m"][5] == pytest.approx(8 / 9)


def test_joint_scope_normalizes_over_all_models_rows():
    a = pl.DataFrame({"id": [1, 2], "loss": [0.0, 1.0]})
    b = pl.DataFrame({"id": [1, 2], "loss": [2.0, 4.0]})
    per_model = difficulty_scores({"a": a, "b": b}, make_standard(("loss", "LIB", 1)))
    joint = difficulty_scores({"a": a, "b": b}, make_standard(("loss", "LIB", 1), scope="joint"))
    assert per_model["difficulty_score_b"].to_list() == [0.0, 1.0]
    assert joint["difficulty_score_a"].to_list() == [0.0, 0.25]
    assert joint["difficulty_score_b"].to_list() == [0.5, 1.0]


def test_joint_rank_scope():
    a = pl.DataFrame({"id": [1, 2], "loss": [0.0, 1.0]})
    b = pl.DataFrame({"id": [1, 2], "loss": [2.0, 4.0]})
    out = difficulty_scores(
        {"a": a, "b": b}, make_standard(("loss", "LIB", 1), scope="joint", normalization="rank")
    )
    assert out["difficulty_score_a"].to_list() == pytest.approx([0, 1 / 3])
    assert out["difficulty_score_b"].to_list() == pytest.approx([2 / 3, 1])


@pytest.mark.parametrize(
    "id_kind",
    ["dense", "sparse", "string", "mixed_int_widths", "dense_same_set", "sparse_same_set", "string_same_set"],
)
def test_matching_by_id_does_not_depend_on_id_type_or_row_order(id_kind):
    rng = np.random.default_rng(1)
    n = 500
    base = np.arange(n)
    frames = {}
    for model in ("a", "b", "c"):
        keep = np.sort(rng.choice(n, size=400, replace=False)) if "same_set" not in id_kind else np.arange(n)
        order = rng.permutation(len(keep))
        ids = base[keep][order]
        if id_kind.startswith("sparse"):
            ids = ids * 1_000_003 - 7
        frame = pl.DataFrame({"id": ids, "x": rng.random(len(ids)), "y": rng.random(len(ids))})
        if id_kind.startswith("string"):
            frame = frame.with_columns(pl.col("id").cast(pl.String).str.zfill(6))
        if id_kind == "mixed_int_widths" and model == "b":
            frame = frame.with_columns(pl.col("id").cast(pl.Int32))
        frames[model] = frame
    out = difficulty_scores(frames, make_standard(("x", "HIB", 1), ("y", "LIB", 2)))
    expected = reference_scores(frames, [("x", True, 1 / 3), ("y", False, 2 / 3)])
    assert out["id"].to_list() == expected["id"].to_list()
    for column in ("difficulty_score", "difficulty_score_a", "difficulty_score_b", "n_models"):
        assert np.allclose(out[column].to_numpy(), expected[column].to_numpy(), atol=1e-12, equal_nan=True)


def reference_scores(frames: dict[str, pl.DataFrame], signals) -> pl.DataFrame:
    """A plain pandas implementation, the test oracle for matching and averaging."""
    import pandas as pd

    merged = None
    for name, frame in frames.items():
        df = pd.DataFrame(frame.to_dict(as_series=False))
        if pd.api.types.is_integer_dtype(df["id"]):
            df["id"] = df["id"].astype("int64")
        score = 0.0
        for column, higher, weight in signals:
            v = -df[column] if higher else df[column]
            score = score + weight * (v - v.min()) / (v.max() - v.min())
        part = pd.DataFrame({"id": df["id"], f"difficulty_score_{name}": score})
        merged = part if merged is None else merged.merge(part, on="id", how="outer")
    columns = [f"difficulty_score_{n}" for n in frames]
    merged["difficulty_score"] = merged[columns].mean(axis=1)
    merged["n_models"] = merged[columns].notna().sum(axis=1)
    merged = merged.sort_values("id").reset_index(drop=True)
    return pl.DataFrame({c: merged[c].tolist() for c in merged.columns}, strict=False)


def test_lazy_and_eager_inputs_agree():
    frame = worked_example()
    eager = difficulty_scores({"m": frame}, F1_LATENCY)
    lazy = difficulty_scores({"m": frame.lazy()}, F1_LATENCY)
    assert eager.equals(lazy)


@pytest.mark.parametrize("ids", [[1, 2, 2, 3], [10, 2_000_000, 10, 5], ["a", "b", "a", "c"]])
def test_duplicated_id_names_file_column_and_rows(ids):
    frame = pl.DataFrame({"id": ids, "f1": [0.1, 0.2, 0.3, 0.4], "latency_ms": [1, 2, 3, 4]})
    with pytest.raises(InputError, match=r"results_a\.csv: column 'id' has 2 rows with a duplicated id"):
        difficulty_scores({"a": frame}, F1_LATENCY, sources={"a": "results_a.csv"})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([0.1, float("inf"), 0.3, float("-inf")], "column 'f1' has 2 infinite values"),
        (["0.1", "oops", "0.3", "n/a"], "column 'f1' has 2 non-numeric values"),
        (["0.1", "inf", "0.3", "0.4"], "column 'f1' has 1 infinite values"),
    ],
)
def test_bad_signal_values_name_file_column_and_rows(values, message):
    frame = pl.DataFrame({"id": [1, 2, 3, 4], "f1": values, "latency_ms": [1, 2, 3, 4]})
    with pytest.raises(InputError, match=f"r.csv: {message}"):
        difficulty_scores({"a": frame}, F1_LATENCY, sources={"a": "r.csv"})


def test_missing_column_and_null_ids():
    frame = pl.DataFrame({"id": [1, None], "f1": [0.1, 0.2], "latency_ms": [1, 2]})
    with pytest.raises(InputError, match=r"r\.csv: column 'id' has 1 null ids"):
        difficulty_scores({"a": frame}, F1_LATENCY, sources={"a": "r.csv"})
    with pytest.raises(InputError, match=r"r\.csv: missing column 'latency_ms'"):
        difficulty_scores({"a": frame.drop("latency_ms")}, F1_LATENCY, sources={"a": "r.csv"})


# Property tests -----------------------------------------------------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
columns = st.integers(min_value=2, max_value=30).flatmap(
    lambda n: st.tuples(st.lists(finite, min_size=n, max_size=n), st.lists(finite, min_size=n, max_size=n))
)


def scores_of(
    x: list[float], y: list[float], standard: QualityStandard, explain: bool = False
) -> pl.DataFrame:
    frame = pl.DataFrame({"id": list(range(len(x))), "x": x, "y": y})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KscoreWarning)
        return difficulty_scores({"m": frame}, standard, explain=explain)


@settings(max_examples=60, deadline=None)
@given(columns, st.sampled_from(["minmax", "rank"]))
def test_scores_lie_in_unit_interval(xy, normalization):
    out = scores_of(*xy, make_standard(("x", "HIB", 2), ("y", "LIB", 1), normalization=normalization))
    scores = out["difficulty_score"].to_numpy()
    assert np.all((scores >= 0) & (scores <= 1 + 1e-12))


@settings(max_examples=60, deadline=None)
@given(columns, st.floats(min_value=1e-3, max_value=1e3), st.floats(min_value=-1e3, max_value=1e3))
def test_positive_affine_change_leaves_scores_unchanged(xy, scale, shift):
    x, y = xy
    standard = make_standard(("x", "HIB", 2), ("y", "LIB", 1))
    before = scores_of(x, y, standard)["difficulty_score"].to_numpy()
    after = scores_of([v * scale + shift for v in x], y, standard)["difficulty_score"].to_numpy()
    span = max(x) - min(x)
    if span * scale > 1e-6 * max(1.0, abs(shift), max(abs(v) for v in x)) or span == 0:
        assert np.allclose(before, after, atol=1e-6)


@settings(max_examples=60, deadline=None)
@given(columns, st.sampled_from(["minmax", "rank"]))
def test_flipping_direction_turns_v_into_one_minus_v(xy, normalization):
    x, y = xy
    if max(x) == min(x):
        return  # a constant column is 0 in either direction
    hib = scores_of(x, y, make_standard(("x", "HIB", 1), normalization=normalization), explain=True)
    lib = scores_of(x, y, make_standard(("x", "LIB", 1), normalization=normalization), explain=True)
    assert np.allclose(hib["norm_x_m"].to_numpy(), 1 - lib["norm_x_m"].to_numpy(), atol=1e-9)


def test_top_signal_is_the_largest_weighted_contribution_first_on_ties_nulls_never():
    rng = np.random.default_rng(3)
    n = 400
    values = {name: rng.integers(0, 4, n).astype(float) for name in ("a", "b", "c")}  # many ties
    for name in values:
        values[name][rng.random(n) < 0.2] = np.nan
    frame = pl.DataFrame({"id": np.arange(n), **values}, nan_to_null=True)
    standard = make_standard(("a", "LIB", 1), ("b", "HIB", 2), ("c", "LIB", 1))
    out = difficulty_scores({"m": frame}, standard, explain=True)
    weights = {"a": 0.25, "b": 0.5, "c": 0.25}
    contributions = np.column_stack(
        [out[f"norm_{s}_m"].fill_null(-1.0).to_numpy() * weights[s] for s in "abc"]
    )
    contributions[contributions < 0] = -1.0  # a missing signal never wins
    expected = np.array(list("abc"))[contributions.argmax(axis=1)].astype(object)
    expected[(contributions < 0).all(axis=1)] = None
    assert out["top_signal_m"].to_list() == expected.tolist()


any_finite = st.floats(allow_nan=False, allow_infinity=False, allow_subnormal=True)


@settings(max_examples=200, deadline=None)
@given(st.lists(any_finite, min_size=2, max_size=20), st.booleans())
def test_min_max_matches_exact_arithmetic_over_the_whole_float_range(values, higher):
    """Oracle: (v - min) / (max - min) in exact rational arithmetic; no overflow near +/-1e308,
    no underflow for subnormal numbers, and every score in [0, 1]."""
    from fractions import Fraction

    if max(values) == min(values):
        return  # the constant-column rule, tested above
    frame = pl.DataFrame({"id": list(range(len(values))), "x": values})
    direction = "HIB" if higher else "LIB"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KscoreWarning)
        out = difficulty_scores({"m": frame}, make_standard(("x", direction, 1)))
    got = out["difficulty_score"].to_list()
    exact = [Fraction(v) for v in values]
    low, high = min(exact), max(exact)
    expected = [float((high - v) / (high - low) if higher else (v - low) / (high - low)) for v in exact]
    assert all(0.0 <= g <= 1.0 for g in got)
    assert got == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_regression_error_beyond_the_float_range_is_an_error():
    standard = QualityStandard.from_dict(
        {"task": {"type": "regression", "ground_truth": "y", "inference": "p"}}
    )
    frame = pl.DataFrame({"id": [1, 2], "y": [1e308, 0.0], "p": [-1e308, 1.0]})
    with pytest.raises(InputError, match=r"r\.csv: column 'y' has 1 errors \|y - p\| beyond the float range"):
        difficulty_scores({"a": frame}, standard, sources={"a": "r.csv"})


def test_integer_and_integral_float_ids_are_one_id():
    standard = make_standard(("x", "LIB", 1))
    ints = pl.DataFrame({"id": [1, 2, 3], "x": [1.0, 2.0, 3.0]})
    floats = pl.DataFrame({"id": [3.0, 2.0, 1.0], "x": [1.0, 2.0, 3.0]})
    out = difficulty_scores({"i": ints, "f": floats}, standard)
    assert out["id"].to_list() == [1, 2, 3] and out["n_models"].to_list() == [2, 2, 2]
    assert out["difficulty_score"].to_list() == pytest.approx([0.5, 0.5, 0.5])


wide_finite = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False, allow_infinity=False)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(min_value=1, max_value=6).flatmap(
        lambda k: st.tuples(
            st.lists(
                st.tuples(st.sampled_from(["HIB", "LIB"]), st.floats(min_value=0.01, max_value=10)),
                min_size=k,
                max_size=k,
            ),
            st.lists(st.lists(wide_finite, min_size=k, max_size=k), min_size=2, max_size=40),
        )
    ),
    st.integers(min_value=1, max_value=7),
)
def test_linear_score_gives_the_polars_expressions_bits(spec, pieces):
    """The numpy evaluation of a plain min-max score (`LinearScore`) against the polars
    expression every plan uses, bit for bit, over chunked frames; where the score is not that
    simple (a constant column, a span beyond the float range) there is no `LinearScore`."""
    from kscore.core.align import align_by_id, place_dense
    from kscore.core.difficulty import column_stats, linear_score, score_model

    directions, rows = spec
    names = [f"s{i}" for i in range(len(directions))]
    standard = make_standard(*((n, d, w) for n, (d, w) in zip(names, directions, strict=True)))
    values = np.array(rows, dtype=np.float64)
    cut = np.linspace(0, len(rows), pieces + 1).astype(int)
    ids = np.random.default_rng(len(rows)).permutation(len(rows)) + 5  # scattered, not in order
    frame = pl.concat(
        [
            pl.DataFrame({"id": ids[a:b], **{n: values[a:b, i] for i, n in enumerate(names)}})
            for a, b in itertools.pairwise(cut)
        ],
        rechunk=False,
    )
    stats = column_stats(frame, names)
    linear = linear_score(frame, stats, standard)
    spans = [values[:, i].max() - values[:, i].min() for i in range(len(names))]
    if any(span == 0 or not np.isfinite(span) for span in spans):
        assert linear is None
        return
    if linear is None:  # the span's inverse overflows (values near the smallest normal numbers)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KscoreWarning)
        expected = score_model(frame, stats, standard, "m", explain=False)
    placed = place_dense(frame.select("id", *linear.columns), "id", "m", linear)
    assert placed is not None
    got, want = align_by_id({"m": placed}, "id"), align_by_id({"m": expected}, "id")
    assert got.ids.equals(want.ids)
    assert np.array_equal(
        got.columns["m"]["difficulty_score"].view(np.int64),
        want.columns["m"]["difficulty_score"].view(np.int64),
    )


def test_no_linear_score_for_nulls_nan_ranks_or_text():
    from kscore.core.difficulty import column_stats, linear_score

    frame = pl.DataFrame({"id": [1, 2, 3], "x": [0.0, 1.0, 2.0], "y": [3.0, None, 1.0]})
    standard = make_standard(("x", "HIB", 1))
    assert linear_score(frame, column_stats(frame, ["x"]), standard) is not None
    with_nulls = make_standard(("x", "HIB", 1), ("y", "LIB", 1))
    assert linear_score(frame, column_stats(frame, ["x", "y"]), with_nulls) is None
    ranked = make_standard(("x", "HIB", 1), normalization="rank")
    assert linear_score(frame, column_stats(frame, ["x"]), ranked) is None
    integers = frame.with_columns(pl.col("x").cast(pl.Int64))
    assert linear_score(integers, column_stats(integers, ["x"]), standard) is None
