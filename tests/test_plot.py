"""Pictures: valid PNGs of the requested size, the right points, clear errors."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from kscore import plot as plotting
from kscore.errors import InputError, KscoreWarning
from kscore.jobs.embed_scores import score_embeddings

from .conftest import CONFIGS, SAMPLE, run_kscore


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n" and header[12:16] == b"IHDR"
    return struct.unpack(">II", header[16:24])


@pytest.fixture(scope="module")
def scores() -> pl.DataFrame:
    table = pl.read_parquet(SAMPLE / "embeddings.parquet")
    out, _ = score_embeddings(table, reducer="pca")
    return out


def test_map_data_keeps_every_point(scores: pl.DataFrame):
    data = plotting.map_data(scores, "representation_score", outlined=7)
    assert data.n_points == scores.height
    assert len(data.train_xy) == scores.filter(pl.col("split") == "train").height == len(data.train_values)
    least = scores.drop_nulls("representation_score").sort("representation_score").head(7)
    assert np.array_equal(data.outlined_xy, least.select("map_x", "map_y").to_numpy())
    assert not data.density


def test_unknown_color_lists_the_valid_ones(scores: pl.DataFrame):
    with pytest.raises(InputError, match=r"unknown --color 'loss' \(valid: representation_score, potential_"):
        plotting.map_data(scores, "loss")


@pytest.mark.parametrize("density", [False, True])
def test_map_png_has_the_requested_size(scores: pl.DataFrame, tmp_path: Path, monkeypatch, density: bool):
    if density:
        monkeypatch.setattr(plotting, "DENSITY_THRESHOLD", 100)
    data = plotting.map_data(scores)
    assert data.density is density
    out = tmp_path / "map.png"
    plotting.plot_map(data, out, size=(640, 480))
    assert png_size(out) == (640, 480)


def test_plot_command_and_unknown_color(tmp_path: Path, scores: pl.DataFrame):
    path = tmp_path / "scores.parquet"
    scores.write_parquet(path)
    out = tmp_path / "m.png"
    result = run_kscore(
        "plot", str(path), "--color", "representation_score", "-o", str(out), "--size", "800x600"
    )
    assert result.returncode == 0, result.stderr
    assert png_size(out) == (800, 600)
    bad = run_kscore("plot", str(path), "--color", "represntation_score", "-o", str(tmp_path / "x.png"))
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith(
        "error: unknown --color 'represntation_score'; did you mean 'representation_score'? (valid: "
    )
    assert not (tmp_path / "x.png").exists()
    size = run_kscore("plot", str(path), "--size", "big", "-o", str(tmp_path / "x.png"))
    assert size.returncode == 2 and "--size must look like 1200x900" in size.stderr


@pytest.mark.slow  # several seconds: run by .ci/run's second pass (the default run stays under 5 min)
def test_difficulty_and_embed_scores_draw_pictures(tmp_path: Path):
    files = sorted(str(p) for p in SAMPLE.glob("results_*.csv"))
    hist = tmp_path / "hist.png"
    result = run_kscore(
        "difficulty",
        *files,
        "-c",
        str(CONFIGS / "quality_standard.yaml"),
        "-o",
        str(tmp_path / "d.parquet"),
        "--plot",
        str(hist),
        "--size",
        "600x400",
    )
    assert result.returncode == 0, result.stderr
    assert png_size(hist) == (600, 400)
    picture = tmp_path / "map.png"
    result = run_kscore(
        "embed-scores",
        str(SAMPLE / "embeddings.parquet"),
        "--reducer",
        "pca",
        "-o",
        str(tmp_path / "e.parquet"),
        "--plot",
        str(picture),
    )
    assert result.returncode == 0, result.stderr
    assert png_size(picture) == (1200, 900)


def test_missing_matplotlib_names_the_extra(tmp_path: Path):
    """With matplotlib unimportable, --plot fails at once (exit 2) and says how to install it."""
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from kscore.cli import run\n"
        f"sys.argv = ['kscore', 'plot', {str(tmp_path / 's.parquet')!r}, '-o', {str(tmp_path / 'm.png')!r}]\n"
        "run()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert "pip install 'kscore[plot]'" in result.stderr


def test_a_picture_never_overwrites_an_input_or_the_output(workdir: Path):
    before = (workdir / "results_b.parquet").read_bytes()
    result = run_kscore("difficulty", "results_*", "--plot", "results_b.parquet", cwd=workdir)
    assert result.returncode == 2 and "would overwrite an input" in result.stderr
    assert (workdir / "results_b.parquet").read_bytes() == before
    same = run_kscore("difficulty", "results_*", "-o", "d.parquet", "--plot", "d.parquet", cwd=workdir)
    assert same.returncode == 2 and not (workdir / "d.parquet").exists()


def test_a_color_no_train_point_has_is_exit_2_naming_the_fix(tmp_path: Path, scores: pl.DataFrame):
    """potential/local difficulty of a file made without --difficulty, or difficulty_score (the
    reference rows' own): no plotted train point has it, so no picture of invisible points."""
    path = tmp_path / "scores.parquet"
    scores.with_columns(difficulty_score=pl.when(pl.col("split") != "train").then(0.5)).write_parquet(path)
    for color, fix in [
        ("potential_difficulty_score", "embed-scores --difficulty"),
        ("difficulty_score", "color the train points by local_difficulty"),
    ]:
        result = run_kscore("plot", str(path), "--color", color, "-o", str(tmp_path / "m.png"))
        assert result.returncode == 2, result.stderr
        assert (
            result.stderr.startswith(f"error: --color {color}: no train point has a {color}")
            and fix in result.stderr
        )
        assert not (tmp_path / "m.png").exists()


def test_a_color_some_train_points_lack_draws_them_grey_and_warns(tmp_path: Path, scores: pl.DataFrame):
    half = scores.with_columns(
        local_difficulty=pl.when(pl.int_range(pl.len()) % 2 == 0).then(pl.col("representation_score"))
    )
    path = tmp_path / "scores.parquet"
    half.write_parquet(path)
    lacking = half.filter(pl.col("representation_score").is_not_null() & pl.col("local_difficulty").is_null())
    with pytest.warns(KscoreWarning, match="drawn grey"):
        data = plotting.map_data(half, "local_difficulty")
    assert int(np.isnan(data.train_values).sum()) == lacking.height > 0
    result = run_kscore("plot", str(path), "--color", "local_difficulty", "-o", str(tmp_path / "m.png"))
    assert result.returncode == 0, result.stderr
    n_train = half.filter(pl.col("representation_score").is_not_null()).height
    assert f"warning: --color local_difficulty: {lacking.height} of {n_train} train points have none" in (
        result.stderr
    )
    assert png_size(tmp_path / "m.png") == (1200, 900)


@pytest.mark.parametrize(("name", "magic"), [("m.svg", b"<?xml"), ("m.pdf", b"%PDF"), ("m.png", b"\x89PNG")])
def test_the_picture_format_follows_the_extension(
    tmp_path: Path, scores: pl.DataFrame, name: str, magic: bytes
):
    path = tmp_path / "scores.parquet"
    scores.write_parquet(path)
    result = run_kscore("plot", str(path), "-o", str(tmp_path / name))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / name).read_bytes().startswith(magic)


def test_an_unknown_picture_extension_is_exit_2_listing_the_supported_ones(
    tmp_path: Path, scores: pl.DataFrame
):
    path = tmp_path / "scores.parquet"
    scores.write_parquet(path)
    result = run_kscore("plot", str(path), "-o", str(tmp_path / "map.jpg"))
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"error: {tmp_path / 'map.jpg'}: unsupported picture type '.jpg'; name it .png, .svg, .pdf"
    )
    assert not (tmp_path / "map.jpg").exists()
