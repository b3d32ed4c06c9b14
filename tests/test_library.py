"""The library is the product, the CLI a view of it: each command's `--json` is what its one library
call returns on the same inputs, and 0.6's names still work and warn."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import polars as pl
import pytest

import kscore

from .conftest import ROOT, run_kscore

RESULTS = ["sample_data/results_forest.csv", "sample_data/results_knn.csv", "sample_data/results_logreg.csv"]
STANDARD = "configs/quality_standard.yaml"


@pytest.fixture
def two_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The sample in two folders: one for the CLI, one (the working directory) for the library, so
    that both record the same relative paths."""
    folders = []
    for name in ("cli", "library"):
        folder = tmp_path / name
        for part in ("sample_data", "configs"):
            shutil.copytree(ROOT / part, folder / part)
        folders.append(folder)
    monkeypatch.chdir(folders[1])
    return folders[0], folders[1]


def cli_json(folder: Path, *args: str) -> dict:
    result = run_kscore(*args, "--json", cwd=folder)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def as_printed(summary: dict) -> dict:
    return json.loads(json.dumps(summary, default=str))


def test_difficulty_compare_select_report_and_check_config(two_folders: tuple[Path, Path]):
    cli, _ = two_folders
    got = cli_json(cli, "difficulty", *RESULTS, "-c", STANDARD, "--explain", "-o", "d.parquet")
    summary = kscore.difficulty(RESULTS, STANDARD, "d.parquet", explain=True)
    assert got == as_printed(summary)

    got = cli_json(cli, "compare", "d.parquet", "--baseline", "knn", "--candidate", "logreg", "-o", "c.csv")
    assert got == as_printed(kscore.compare("d.parquet", "knn", "logreg", "c.csv"))

    got = cli_json(cli, "select", "d.parquet", "--budget", "7", "--strategy", "top", "-o", "p.ndjson")
    assert got == as_printed(kscore.select("d.parquet", 7, "p.ndjson", strategy="top"))

    got = cli_json(cli, "report", "d.parquet", "-o", "r.html")
    assert got == as_printed(kscore.report(["d.parquet"], "r.html"))

    got = cli_json(cli, "check-config", STANDARD)
    assert got == as_printed(kscore.check_config(STANDARD))


def test_embed_scores_json_is_the_library_summary_warnings_included(two_folders: tuple[Path, Path]):
    cli, library = two_folders
    # A constant difficulty: every reference difficulty is 0, a warning in the summary.
    for folder in two_folders:
        ids = pl.read_parquet(folder / "sample_data/embeddings.parquet").select("id")
        ids.with_columns(difficulty_score=pl.lit(0.0)).write_parquet(folder / "zero.parquet")
    args = ["sample_data/embeddings.parquet", "-c", STANDARD, "--difficulty", "zero.parquet"]
    got = cli_json(cli, "embed-scores", *args, "--reducer", "pca", "-o", "e.parquet")
    summary = kscore.embed_scores(
        "sample_data/embeddings.parquet",
        "e.parquet",
        standard=STANDARD,
        difficulty="zero.parquet",
        reducer="pca",
    )
    assert summary["warnings"], "the warning reaches the library's own summary"
    assert got == as_printed(summary)
    assert pl.read_parquet(cli / "e.parquet").equals(pl.read_parquet(library / "e.parquet"))


def test_a_compare_gate_fails_in_the_summary_and_exits_1_on_the_command_line(two_folders):
    cli, _ = two_folders
    for folder in two_folders:
        assert (
            run_kscore("difficulty", *RESULTS, "-c", STANDARD, "-o", "d.parquet", cwd=folder).returncode == 0
        )
    args = ["compare", "d.parquet", "--baseline", "knn", "--candidate", "logreg", "--max-regressions", "0"]
    result = run_kscore(*args, "--json", cwd=cli)
    assert result.returncode == 1 and "gate failed: regressions" in result.stderr
    summary = kscore.compare("d.parquet", "knn", "logreg", "c.parquet", max_regressions=0)
    assert [gate["passed"] for gate in summary["gates"]] == [False]
    assert json.loads(result.stdout)["gates"] == summary["gates"]


def test_without_out_each_call_returns_its_table(two_folders: tuple[Path, Path]):
    table = kscore.difficulty(RESULTS, STANDARD)
    assert isinstance(table, pl.DataFrame) and table.height == 719
    written = kscore.difficulty(RESULTS, STANDARD, "d.parquet")
    assert table.equals(pl.read_parquet(written["output"]))
    compared = kscore.compare(table, "knn", "logreg")
    assert compared.height == 719 and "status" in compared.columns
    picks = kscore.select(table, 5, strategy="top")
    assert (
        picks["id"].to_list()
        == table.sort(["difficulty_score", "id"], descending=[True, False])["id"][:5].to_list()
    )


@pytest.mark.parametrize(
    ("old", "instead"),
    [("difficulty_scores", "kscore.difficulty"), ("write_report", "kscore.report"),
     ("write_selection", "kscore.select(scores, budget, out)")],
)  # fmt: skip
def test_0_6_names_are_gone_in_0_8_naming_their_replacement(old: str, instead: str):
    with pytest.raises(AttributeError, match=rf"kscore.{old} was removed in 0.8; use {re.escape(instead)}"):
        getattr(kscore, old)


def test_paths_may_be_str_everywhere(two_folders: tuple[Path, Path]):
    from kscore.io import read_kscore_metadata

    kscore.difficulty(RESULTS, STANDARD, "d.parquet")
    assert read_kscore_metadata("d.parquet")["command"] == "difficulty"
