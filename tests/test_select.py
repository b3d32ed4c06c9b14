"""`kscore select` through the real entry point and the library: picks, labeled points, determinism,
the default score, --embeddings, and every bad input of the issue."""

from __future__ import annotations

import json
from itertools import pairwise
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import kscore
from kscore.core.pick_strategies import pick
from kscore.io import read_kscore_metadata
from kscore.jobs.select import selected

from .conftest import CONFIGS, SAMPLE, run_kscore


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's difficulty and embed-scores outputs (PCA map: fast)."""
    folder = tmp_path_factory.mktemp("select")
    files = sorted(str(p) for p in SAMPLE.glob("results_*.csv"))
    config = str(CONFIGS / "quality_standard.yaml")
    assert run_kscore("difficulty", *files, "-c", config, "-o", str(folder / "d.parquet")).returncode == 0
    result = run_kscore(
        "embed-scores", str(SAMPLE / "embeddings.parquet"), "--reducer", "pca", "--difficulty",
        str(folder / "d.parquet"), "-o", str(folder / "e.parquet"),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return folder


def select_cli(scored: Path, *args: str) -> tuple[object, pl.DataFrame | None]:
    out = scored / "picks.csv"
    out.unlink(missing_ok=True)
    result = run_kscore("select", str(scored / "e.parquet"), *args, "-o", str(out), "--json")
    return result, (pl.read_csv(out) if out.exists() else None)


@pytest.mark.slow  # several seconds (CLI runs, an S3 server): CI's second pass
@pytest.mark.parametrize("strategy", ["balanced", "typical", "diverse", "top"])
def test_the_cli_writes_what_the_library_picks(scored: Path, strategy: str):
    result, picks = select_cli(scored, "--budget", "25", "--strategy", strategy)
    assert result.returncode == 0, result.stderr
    assert picks.columns == ["id", "rank", "potential_difficulty_score", "distance", "strategy"]
    table = pl.read_parquet(scored / "e.parquet")
    expected = kscore.select(table, 25, strategy=strategy)
    assert picks.get_column("id").to_list() == expected.get_column("id").to_list()
    assert picks.get_column("rank").to_list() == list(range(1, 26))
    assert set(picks.get_column("strategy")) == {strategy}
    train = table.filter(pl.col("split") == "train")
    assert set(picks.get_column("id")) <= set(train.get_column("id"))
    summary = json.loads(result.stdout)
    assert list(summary)[:3] == ["kscore_version", "command", "output"] and summary["command"] == "select"
    assert summary["n_picked"] == 25 and summary["n_candidates"] == train.height
    assert [p["id"] for p in summary["picks"]] == picks.get_column("id").to_list()[:20]
    metadata = read_kscore_metadata(scored / "picks.csv")
    assert metadata["command"] == "select" and metadata["parameters"]["strategy"] == strategy


def _reference_power(table: pl.DataFrame) -> float:
    """balanced's power by its definition: 0.25 times the odds that the models were right (difficulty
    below 0.5) on a reference row, between 0.25 and 4."""
    reference = table.filter((pl.col("split") != "train") & pl.col("difficulty_score").is_not_null())
    right = float((reference.get_column("difficulty_score") < 0.5).mean())
    return 0.25 if right <= 0.5 else min(4.0, 0.25 * right / (1 - right)) if right < 1 else 4.0


def test_picks_equal_the_strategies_on_the_map_in_id_order(scored: Path):
    table = pl.read_parquet(scored / "e.parquet")
    train = table.filter(pl.col("split") == "train").sort("id")
    points = train.select("map_x", "map_y").to_numpy()
    scores = train.get_column("potential_difficulty_score").to_numpy()
    power = _reference_power(table)
    for strategy in ("balanced", "typical", "diverse", "top"):
        expected = pick(points, 30, strategy=strategy, scores=scores, seed=4, power=power)
        got = kscore.select(table, 30, strategy=strategy, seed=4)
        assert got.get_column("id").to_list() == train.get_column("id").gather(expected.order).to_list()
        distance = got.get_column("distance").fill_null(np.inf).to_numpy()
        assert np.array_equal(distance, expected.distance)


def test_balanced_power_follows_the_models_odds_of_being_right():
    from kscore.core.pick_strategies import BALANCED_POWER, MAX_BALANCED_POWER, balanced_power

    assert balanced_power(None) == balanced_power(float("nan")) == BALANCED_POWER
    assert balanced_power(0.2) == balanced_power(0.5) == BALANCED_POWER
    assert balanced_power(0.8) == pytest.approx(1.0) and balanced_power(0.6) == pytest.approx(0.375)
    assert balanced_power(0.95) == balanced_power(1.0) == MAX_BALANCED_POWER
    grid = [balanced_power(c) for c in np.linspace(0, 1, 201)]
    assert all(a <= b for a, b in pairwise(grid))


@pytest.mark.parametrize(("difficulty", "power"), [(0.1, 4.0), (0.9, 0.25), (None, 0.25)])
def test_balanced_weighs_the_score_by_the_reference_rows_the_models_got_right(difficulty, power):
    """Easy reference rows everywhere: the hard train points go first (power 4); hard ones, or no
    difficulty: the typical ones (0.25). The summary says which, and the picks are `pick`'s."""
    from kscore.jobs.select import select_batch

    rng = np.random.default_rng(2)
    n = 600
    split = np.where(np.arange(n) % 3 == 0, "validation", "train")
    table = pl.DataFrame(
        {
            "id": np.arange(n),
            "split": split,
            "map_x": rng.normal(size=n),
            "map_y": rng.normal(size=n),
            "potential_difficulty_score": np.where(split == "train", rng.random(n), np.nan),
        }
    )
    if difficulty is not None:
        table = table.with_columns(
            difficulty_score=pl.when(pl.col("split") == "train").then(None).otherwise(pl.lit(difficulty))
        )
    selection = select_batch(table, 20)
    assert selection.info["score_power"] == power
    assert selection.info["reference_right"] == (None if difficulty is None else float(difficulty < 0.5))
    train = table.filter(pl.col("split") == "train")
    points = train.select("map_x", "map_y").to_numpy()
    scores = train.get_column("potential_difficulty_score").to_numpy()
    expected = pick(points, 20, scores=scores, power=power)
    picked = selection.picks.get_column("id").to_list()
    assert picked == train.get_column("id").gather(expected.order).to_list()
    if power == 4.0:  # the score matters more than at the base power: the picks differ
        assert pick(points, 20, scores=scores, power=0.25).order.tolist() != expected.order.tolist()


def test_top_is_a_sort_by_the_score_with_ties_by_id(scored: Path):
    table = pl.read_parquet(scored / "e.parquet").with_columns(
        potential_difficulty_score=pl.col("potential_difficulty_score").round(3)  # many ties
    )
    got = kscore.select(table, 40, strategy="top")
    expected = (
        table.filter(pl.col("split") == "train")
        .sort(["potential_difficulty_score", "id"], descending=[True, False])
        .head(40)
    )
    assert got.get_column("id").to_list() == expected.get_column("id").to_list()
    low = kscore.select(table, 10, strategy="top", by="representation_score", ascending=True)
    least = table.filter(pl.col("split") == "train").sort(["representation_score", "id"]).head(10)
    assert low.get_column("id").to_list() == least.get_column("id").to_list()


def test_labeled_points_are_never_picked_and_count_as_covered(scored: Path):
    table = pl.read_parquet(scored / "e.parquet")
    train = table.filter(pl.col("split") == "train").sort("id")
    labeled = train.get_column("id").gather(list(range(0, train.height, 7))).to_list()
    pl.DataFrame({"id": [*labeled, 99_999], "label": 0}).write_csv(scored / "labeled.csv")
    result, picks = select_cli(scored, "--budget", "30", "--labeled", str(scored / "labeled.csv"))
    assert result.returncode == 0, result.stderr
    assert not set(picks.get_column("id")) & set(labeled)
    assert "warning: 1 of " in result.stderr and "labeled ids are not in" in result.stderr
    others = train.filter(~pl.col("id").is_in(labeled))
    marked = train.filter(pl.col("id").is_in(labeled)).select("map_x", "map_y").to_numpy()
    expected = pick(
        others.select("map_x", "map_y").to_numpy(), 30,
        scores=others.get_column("potential_difficulty_score").to_numpy(), labeled=marked,
        power=_reference_power(table),
    )  # fmt: skip
    assert picks.get_column("id").to_list() == others.get_column("id").gather(expected.order).to_list()
    first = others.filter(pl.col("id") == picks.get_column("id")[0]).select("map_x", "map_y").to_numpy()
    assert picks.get_column("distance")[0] == pytest.approx(np.sqrt(((marked - first) ** 2).sum(1)).min())
    summary = json.loads(result.stdout)
    assert summary["labeled"] == {"given": len(labeled) + 1, "in_file": len(labeled), "not_in_file": 1}


def test_the_same_seed_gives_the_same_picks_and_diverse_starts_from_it(scored: Path):
    runs = [
        select_cli(scored, "--budget", "20", "--strategy", "diverse", "--seed", seed)[1] for seed in "112"
    ]
    assert runs[0].equals(runs[1])
    assert runs[0].get_column("id")[0] != runs[2].get_column("id")[0]


def test_without_a_difficulty_score_the_least_represented_come_first(scored: Path):
    table = pl.read_parquet(scored / "e.parquet").drop(
        "potential_difficulty_score", "difficulty_score", "local_difficulty"
    )
    table.write_parquet(scored / "plain.parquet")
    result = run_kscore(
        "select", str(scored / "plain.parquet"), "--budget", "5", "--strategy", "top", "--json"
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["by"] == "representation_score" and summary["ascending"] is True
    least = table.filter(pl.col("split") == "train").sort(["representation_score", "id"]).head(5)
    assert [p["id"] for p in summary["picks"]] == least.get_column("id").to_list()


def test_rows_without_a_score_are_skipped_and_counted(scored: Path):
    table = pl.read_parquet(scored / "e.parquet")
    holes = table.with_columns(
        potential_difficulty_score=pl.when(pl.col("id") % 5 == 0)
        .then(None)
        .otherwise(pl.col("potential_difficulty_score"))
    )
    holes.write_parquet(scored / "holes.parquet")
    result = run_kscore("select", str(scored / "holes.parquet"), "--budget", "50", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    skipped = holes.filter(
        (pl.col("split") == "train") & pl.col("potential_difficulty_score").is_null()
    ).height
    assert summary["skipped_null_score"] == skipped > 0
    assert all(p["id"] % 5 for p in summary["picks"])


def test_embeddings_measure_coverage_in_the_embedding_space(scored: Path):
    table = pl.read_parquet(scored / "e.parquet")
    embeddings = pl.read_parquet(SAMPLE / "embeddings.parquet")
    got = kscore.select(table, 15, strategy="diverse", embeddings=embeddings)
    train = embeddings.filter(pl.col("split") == "train").sort("id")
    matrix = np.stack(train.get_column("embedding").to_list()).astype(np.float64)
    expected = pick(matrix, 15, strategy="diverse")
    assert got.get_column("id").to_list() == train.get_column("id").gather(expected.order).to_list()
    result = run_kscore(
        "select",
        str(scored / "e.parquet"),
        "--budget",
        "5",
        "--embeddings",
        str(SAMPLE / "embeddings.parquet"),
        "--strategy",
        "typical",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["space"].startswith("embeddings (64 dimensions, euclidean)")


def test_balanced_picks_on_the_map_even_with_embeddings(scored: Path):
    """The default covers the map (chosen by tests/bench/bench_select.py); --embeddings is said to be
    for typical and diverse, and a file without a map still covers the embedding space."""
    table = pl.read_parquet(scored / "e.parquet")
    embeddings = pl.read_parquet(SAMPLE / "embeddings.parquet")
    labeled = [2, 3, 5]
    on_map = kscore.select(table, 12, labeled=labeled)
    picks, summary = selected(table, 12, labeled=labeled, embeddings=embeddings)
    assert picks.equals(on_map) and summary["space"] == "map"
    assert any("--embeddings is used by --strategy typical and diverse" in n for n in summary["notes"])
    typical = kscore.select(table, 12, strategy="typical", labeled=labeled, embeddings=embeddings)
    assert not typical.equals(kscore.select(table, 12, strategy="typical", labeled=labeled))
    no_map = table.drop("map_x", "map_y")
    _, without = selected(no_map, 12, labeled=labeled, embeddings=embeddings)
    assert without["space"].startswith("embeddings (64 dimensions")


@pytest.mark.slow  # several seconds (CLI runs, an S3 server): CI's second pass
def test_plot_draws_the_picks_on_the_map(scored: Path):
    out = scored / "picks.svg"
    result = run_kscore("select", str(scored / "e.parquet"), "--budget", "10", "--plot", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(b"<?xml") and f"wrote {out}" in result.stderr


def test_a_difficulty_output_allows_top_and_names_the_fix_for_the_others(scored: Path):
    result = run_kscore("select", str(scored / "d.parquet"), "--budget", "5", "--strategy", "top", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["by"] == "difficulty_score" and summary["coverage_radius"] is None
    hardest = (
        pl.read_parquet(scored / "d.parquet")
        .sort(["difficulty_score", "id"], descending=[True, False])
        .head(5)
    )
    assert [p["id"] for p in summary["picks"]] == hardest.get_column("id").to_list()
    assert "every row is a candidate" in result.stderr
    balanced = run_kscore("select", str(scored / "d.parquet"), "--budget", "5")
    assert balanced.returncode == 2
    assert (
        "--strategy balanced needs coordinates" in balanced.stderr and "--embeddings FILE" in balanced.stderr
    )


def error_of(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget", "0"], "--budget"),
        (
            ["--budget", "5", "--by", "potential_dificulty_score"],
            "unknown --by column 'potential_dificulty_score'; did you mean 'potential_difficulty_score'? "
            "(valid: ",
        ),
        (
            ["--budget", "5", "--train-value", "pool"],
            "no train rows ('split' has: test, train, validation); choose them with --train-value",
        ),
        (
            ["--budget", "5", "--strategy", "greedy"],
            "unknown --strategy 'greedy'; use one of: balanced, typical, diverse, top",
        ),
        (["--budget", "5", "-o", "picks.txt"], "unsupported output type '.txt'"),
    ],
)
def test_bad_input_is_exit_2_with_one_line(scored: Path, args: list[str], message: str):
    result = run_kscore("select", str(scored / "e.parquet"), *args, cwd=scored)
    assert message in error_of(result)
    assert not (scored / "picks.txt").exists()


def test_a_labeled_file_without_the_id_column_is_exit_2(scored: Path):
    pl.DataFrame({"ID": [1, 2]}).write_csv(scored / "bad_labeled.csv")
    result = run_kscore(
        "select", str(scored / "e.parquet"), "--budget", "5", "--labeled", str(scored / "bad_labeled.csv")
    )
    assert "the labeled file has no id column 'id'; did you mean 'ID'?" in error_of(result)


def test_a_budget_above_the_candidates_is_clamped_with_a_warning(scored: Path):
    table = pl.read_parquet(scored / "e.parquet")
    n_train = table.filter(pl.col("split") == "train").height
    result = run_kscore(
        "select", str(scored / "e.parquet"), "--budget", str(n_train + 50), "--strategy", "top", "--json"
    )
    assert result.returncode == 0, result.stderr
    assert f"warning: --budget {n_train + 50} is more than the {n_train} candidates" in result.stderr
    assert json.loads(result.stdout)["n_picked"] == n_train


@pytest.mark.slow  # several seconds (CLI runs, an S3 server): CI's second pass
def test_fractional_labeled_ids_and_a_negative_seed_are_exit_2(scored: Path):
    """A labeled id 1.5 must not mark id 1 (a cast truncates); a negative seed is refused up front."""
    (scored / "fractional.csv").write_text("id\n1.5\n2.0\n")
    (scored / "whole.csv").write_text("id\n1.0\n2.0\n")
    result, picks = select_cli(scored, "--budget", "5", "--labeled", str(scored / "fractional.csv"))
    assert result.returncode == 2 and picks is None
    assert error_of(result) == (
        "error: 1 labeled ids are not whole numbers (such as 1.5), and the scores' ids are integers: "
        "they cannot match"
    )
    result, _ = select_cli(scored, "--budget", "5", "--labeled", str(scored / "whole.csv"))
    assert result.returncode == 0, result.stderr  # integral floats are the same ids
    assert json.loads(result.stdout)["labeled"]["given"] == 2
    for strategy in ("diverse", "balanced"):
        result, picks = select_cli(scored, "--budget", "5", "--strategy", strategy, "--seed", "-1")
        assert result.returncode == 2 and picks is None
        assert error_of(result) == "error: --seed must be 0 or more, not -1"
