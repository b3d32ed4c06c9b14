"""kscore report: the page's numbers against its input files, sampling, determinism, escaping, exit 2."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from kscore.html_page import LEVELS, MISSING, quantise, sample_rows
from kscore.summaries import difficulty_summary, exact_values

from .conftest import run_kscore
from .report_pages import HOSTILE_IDS, make_inputs, page_data, tables_of


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_inputs(tmp_path_factory.mktemp("report"))


def decode(codes: np.ndarray, low: float | None, high: float | None) -> np.ndarray:
    """The values a quantised column stands for (NaN where missing): what the page shows."""
    values = np.full(len(codes), np.nan)
    present = codes != MISSING
    if low is not None and high is not None:
        values[present] = low + codes[present].astype(np.float64) * ((high - low) / LEVELS)
    return values


def report(inputs: dict[str, Path], *args: str, out: Path | None = None, env: dict | None = None):
    folder = inputs["embed"].parent
    out = out or folder / "report.html"
    result = run_kscore("report", *args, "-o", str(out), "--json", cwd=folder, env=env)
    return result, out


def full_report(inputs: dict[str, Path], *args: str, out: Path | None = None, env: dict | None = None):
    files = [str(inputs[k]) for k in ("difficulty", "embed", "picks", "compare")]
    return report(inputs, *files, "--data", str(inputs["embed"].parent / "data.csv"), *args, out=out, env=env)


def test_the_map_holds_every_point_with_the_files_values(inputs: dict[str, Path]):
    result, out = full_report(inputs)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    embed = pl.read_parquet(inputs["embed"])
    difficulty = pl.read_parquet(inputs["difficulty"])
    header, columns = page_data(out.read_text(encoding="utf-8"))
    assert summary["points_shown"] == summary["points_total"] == header["map"]["points"] == embed.height
    assert summary["bytes"] == out.stat().st_size
    assert columns["id"] == embed.get_column("id").to_list()  # every point, in the file's order
    for axis in ("map_x", "map_y"):
        assert np.array_equal(columns[axis], embed.get_column(axis).cast(pl.Float32).to_numpy())
    assert list(columns["train"]) == (embed.get_column("split") == "train").cast(pl.UInt8).to_list()
    joined = embed.join(difficulty.drop("difficulty_score"), on="id", how="left", maintain_order="left")
    specs = {s["name"]: s for s in header["map"]["buffers"]}
    for name in header["map"]["scores"]:
        if name == "compare_delta":
            continue
        truth = joined.get_column(name).cast(pl.Float64).fill_null(np.nan).to_numpy()
        shown = decode(columns[name], specs[name]["min"], specs[name]["max"])
        assert np.array_equal(np.isnan(shown), np.isnan(truth)), name  # missing exactly where missing
        present = ~np.isnan(truth)
        step = (specs[name]["max"] - specs[name]["min"]) / LEVELS
        assert np.nanmax(np.abs(shown[present] - truth[present])) <= step / 2 + 1e-12, name
        assert specs[name]["min"] == np.nanmin(truth) and specs[name]["max"] == np.nanmax(truth)
    # --data's columns ride along, as text, for the tooltips
    data = pl.read_csv(inputs["embed"].parent / "data.csv")
    assert columns["label"] == data.get_column("label").to_list()
    assert header["map"]["text"] == ["label", "note"]


def test_tables_carry_the_files_numbers(inputs: dict[str, Path]):
    result, out = full_report(inputs, "--top", "7")
    assert result.returncode == 0, result.stderr
    page = out.read_text(encoding="utf-8")
    tables = tables_of(page)
    difficulty = pl.read_parquet(inputs["difficulty"])
    with exact_values():  # the page shows the exact values, to the digits that keep rows apart
        stats = difficulty_summary(difficulty, ["a", "b"], "id", top=7)
    models = tables.tables["table-models"]
    for row, model in zip(models, stats["models"], strict=True):
        assert row[0][0] == model["name"]
        shown = [float(v) for _, v in row[1:]]  # a streamed sum: the mean to the last bits
        assert shown == pytest.approx([model[k] for k in ("rows_scored", "mean", "median", "p90")], rel=1e-12)
    hardest = tables.tables["table-hardest"]
    assert [r[0][0] for r in hardest] == [h["id"] for h in stats["hardest"]]  # the hostile ids, as text
    by_id = {r["id"]: r for r in difficulty.iter_rows(named=True)}
    for row in hardest:
        truth = by_id[row[0][0]]
        assert float(row[1][1]) == truth["difficulty_score"]  # the cell's exact value
        assert abs(float(row[1][0]) - truth["difficulty_score"]) <= 5e-4 * truth["difficulty_score"]
        assert row[-1][0] == f"metric: {truth['top_signal_b']}"  # named as the standard names it
    picks = pl.read_parquet(inputs["picks"]).sort("rank")
    assert [r[0][0] for r in tables.tables["table-picks"]] == picks.get_column("id").to_list()
    compare = pl.read_parquet(inputs["compare"])
    regressions = compare.filter(pl.col("status") == "regression").sort(
        ["delta", "id"], descending=[True, False]
    )
    rows = tables.tables["table-regressions"]
    assert [r[0][0] for r in rows] == regressions.get_column("id").head(7).to_list()
    assert [float(r[3][1]) for r in rows] == regressions.get_column("delta").head(7).to_list()
    # every row that names a point on the map points at that very point
    _, columns = page_data(page)
    for name, points in tables.points.items():
        for row, point in zip(tables.tables[name], points, strict=True):
            if point is not None:
                assert columns["id"][int(point)] == row[0][0], name
    assert all(p is not None for p in tables.points["table-picks"])


def test_the_sample_keeps_every_named_point(inputs: dict[str, Path]):
    result, out = full_report(inputs, "--max-points", "40", "--top", "5")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["points_shown"], summary["points_total"]) == (40, 122)
    page = out.read_text(encoding="utf-8")
    _, columns = page_data(page)
    shown = set(columns["id"])
    assert len(shown) == 40
    assert set(pl.read_parquet(inputs["picks"]).get_column("id")) <= shown
    for name, rows in tables_of(page).tables.items():
        if name in ("table-hardest", "table-least_represented", "table-highest_potential", "table-picks"):
            assert {r[0][0] for r in rows} <= shown, name
    assert "Showing 40 of 122 points" in page
    embed_ids = pl.read_parquet(inputs["embed"]).get_column("id").to_list()
    assert columns["id"] == [i for i in embed_ids if i in shown]  # still in the file's order


def test_sample_rows_is_seeded_uniform_and_keeps_what_it_must():
    keep = np.array([5, 999, 5, 123])
    rows = sample_rows(1000, 50, keep)
    assert len(rows) == 50 and set(keep) <= set(rows) and np.all(np.diff(rows) > 0)
    assert np.array_equal(rows, sample_rows(1000, 50, keep))
    assert np.array_equal(sample_rows(10, 50, keep[:0]), np.arange(10))
    # uniform: over many draws each row is shown about equally often
    counts = np.bincount(
        np.concatenate([sample_rows(100, 20, keep[:0], seed=s) for s in range(500)]), minlength=100
    )
    assert counts.min() > 60 and counts.max() < 140  # expected 100 each


def test_quantise_round_trips_within_half_a_step():
    values = np.array([np.nan, -3.0, 0.25, 7.5, np.inf])
    codes, low, high = quantise(values)
    assert codes[0] == MISSING and codes[4] == MISSING and (low, high) == (-3.0, 7.5)
    back = decode(codes, low, high)
    assert np.all(np.abs(back[1:4] - values[1:4]) <= (high - low) / LEVELS / 2)
    codes, low, high = quantise(np.array([2.0, 2.0]))
    assert list(decode(codes, low, high)) == [2.0, 2.0]


def test_reruns_are_byte_identical_and_only_source_date_epoch_adds_a_date(inputs: dict[str, Path]):
    folder = inputs["embed"].parent
    first, a = full_report(inputs, out=folder / "a.html")
    second, b = full_report(inputs, out=folder / "b.html")
    assert first.returncode == second.returncode == 0
    assert a.read_bytes() == b.read_bytes()
    dated, c = full_report(inputs, out=folder / "c.html", env={"SOURCE_DATE_EPOCH": "1767225600"})
    assert dated.returncode == 0
    assert "generated 2026-01-01 00:00 UTC" in c.read_text() and "generated" not in a.read_text()


def test_data_strings_are_escaped_and_only_kscores_scripts_run(inputs: dict[str, Path]):
    result, out = full_report(inputs, "--title", "<script>alert('title')</script>")
    assert result.returncode == 0, result.stderr
    page = out.read_text(encoding="utf-8")
    for hostile in (*HOSTILE_IDS, "<script>alert('title')</script>", "<b>bold</b>"):
        assert hostile not in page
    # every <script> is kscore's: the header JSON, the payload, the bundle and the page's script
    assert re.findall(r"<script(?: [^>]*)?>", page) == [
        '<script type="application/json" id="kscore-header">',
        '<script type="application/octet-stream" id="kscore-points">',
        "<script>",
        "<script>",
    ]
    csp = html.unescape(re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1))
    assert (
        "default-src 'none'" in csp
        and "connect-src 'none'" in csp
        and "'unsafe-inline'" not in csp.split(";")[1]
    )
    assert "http" not in csp


def test_a_report_of_difficulty_alone_has_tables_and_no_map(inputs: dict[str, Path]):
    result, out = report(inputs, str(inputs["difficulty"]))
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["points_total"] == 0 and "map" not in summary["sections"]
    assert summary["sections"] == ["summary", "hardest"]
    page = out.read_text(encoding="utf-8")
    assert 'id="kscore-points"' not in page and "globalThis.createScatterplot" not in page  # no bundle


def test_with_no_files_the_default_outputs_here_are_used(inputs: dict[str, Path], tmp_path: Path):
    for name, key in (("difficulty_scores.parquet", "difficulty"), ("embed_scores.parquet", "embed")):
        (tmp_path / name).write_bytes(inputs[key].read_bytes())
    result = run_kscore("report", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["output"] == "report.html" and (tmp_path / "report.html").exists()
    assert summary["inputs"] == {
        "difficulty": "difficulty_scores.parquet",
        "embed-scores": "embed_scores.parquet",
    }


def error_of(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(lines) == 1, (result.returncode, result.stderr)
    return lines[0]


@pytest.mark.slow  # several seconds: run by .ci/run's second pass (the default run stays under 5 min)
def test_bad_inputs_exit_2_naming_the_file_and_the_fix(inputs: dict[str, Path], tmp_path: Path):
    folder = inputs["embed"].parent
    diff, embed = str(inputs["difficulty"]), str(inputs["embed"])
    pl.DataFrame({"id": ["x"], "score": [1.0]}).write_parquet(tmp_path / "mine.parquet")
    other = tmp_path / "other.parquet"
    result = run_kscore(
        "embed-scores", str(folder / "emb.parquet"), "--reducer", "none", "-o", str(other), "-q"
    )
    assert result.returncode == 0
    renamed = tmp_path / "renamed.parquet"
    meta = pl.read_parquet_metadata(other)
    pl.read_parquet(other).with_columns(("other-" + pl.col("id")).alias("id")).write_parquet(
        renamed, metadata=meta
    )
    cases = [
        ([str(tmp_path / "mine.parquet")], "mine.parquet: not an output of kscore"),
        ([embed, str(other)], "are both outputs of `kscore embed-scores`: give one of each kind"),
        ([diff, str(renamed)], "shares no id in 'id' with"),
        (
            [diff, "-o", str(tmp_path / "r.pdf")],
            "the report is one HTML file: give -o a name ending in .html",
        ),
        ([embed, "--color", "potential_dificulty"], "did you mean 'potential_difficulty_score'?"),
        ([embed, "--data", str(tmp_path / "mine.parquet"), "--columns", "labl"], "missing column 'labl'"),
        ([embed, "--max-points", "0"], "--max-points must be at least 1"),
        ([str(tmp_path / "missing.parquet")], "missing.parquet: no such file"),
    ]
    for args, message in cases:
        if "-o" not in args:
            args = [*args, "-o", str(tmp_path / "r.html")]
        result = run_kscore("report", *args, cwd=tmp_path)
        assert message in error_of(result), (args, result.stderr)
        assert not (tmp_path / "r.html").exists() and not (tmp_path / "r.pdf").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no inputs: give the outputs of" in error_of(run_kscore("report", cwd=empty))
    assert list(empty.iterdir()) == []  # nothing written, nothing left behind


def test_histograms_count_the_files_values(inputs: dict[str, Path]):
    result, out = full_report(inputs)
    assert result.returncode == 0, result.stderr
    page = out.read_text(encoding="utf-8")
    figures = dict(
        re.findall(
            r'<figure class="histogram"><figcaption>([^<]+) \(bar height: log count\)'
            r"</figcaption>(.*?)</figure>",
            page,
        )
    )
    difficulty = pl.read_parquet(inputs["difficulty"])
    embed = pl.read_parquet(inputs["embed"])
    for name, frame, bounds in (
        ("difficulty_score", difficulty, (0.0, 1.0)),
        ("difficulty_score_a", difficulty, (0.0, 1.0)),
        ("representation_score", embed, None),
    ):
        values = frame.get_column(name).drop_nulls().to_numpy()
        expected, _ = np.histogram(values, bins=20, range=bounds or (values.min(), values.max()))
        shown = [int(c) for c in re.findall(r'data-count="(\d+)"', figures[name])]
        assert shown == expected.tolist(), name
        assert sum(shown) == len(values)
        # the bars' heights follow the log of the count: a tail of one or two datapoints shows
        heights = np.array([float(h) for h in re.findall(r'height="([\d.]+)" data-count', figures[name])])
        counts = np.array(shown)
        assert np.allclose(
            heights[counts > 0],
            np.maximum(1.0, 90 * np.log1p(counts[counts > 0]) / np.log1p(counts.max())),
            atol=0.051,
        )
        assert (heights[counts == 0] == 0).all()


def test_the_train_scores_table_holds_the_files_quantiles(inputs: dict[str, Path]):
    result, out = full_report(inputs)
    assert result.returncode == 0, result.stderr
    rows = tables_of(out.read_text(encoding="utf-8")).tables["table-train-scores"]
    train = pl.read_parquet(inputs["embed"]).filter(pl.col("split") == "train")
    assert [r[0][0] for r in rows] == [
        "representation_score",
        "potential_difficulty_score",
        "local_difficulty",
    ]
    for row in rows:
        values = train.get_column(row[0][0])
        expected = [values.quantile(q, "linear") for q in (0.0, 0.1, 0.5, 0.9, 1.0)]
        assert np.allclose([float(v) for _, v in row[1:]], expected, rtol=0, atol=5e-7)  # 6 places


@pytest.mark.parametrize("max_points", [1_000_000, 40])
def test_bands_and_probes_from_a_few_rows_write_the_same_page(
    inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, max_points: int
):
    """The report reads its inputs in streaming queries whose exact quantiles keep a band around
    each one, set from the first rows, and probes ids with a file's first ids: bands from 7 rows
    (which miss, so the whole column is read) and a probe of 3 ids give the page, byte for byte,
    that bands from every row and a probe of every id give."""
    import kscore
    from kscore import summaries
    from kscore.jobs import report as job

    files = [inputs[k] for k in ("difficulty", "embed", "picks", "compare")]
    data = inputs["embed"].parent / "data.csv"
    options = {"data": data, "max_points": max_points, "top": 6}
    whole = kscore.report(files, tmp_path / "whole.html", **options)
    monkeypatch.setattr(summaries, "PRIME_ROWS", 7)
    monkeypatch.setattr(job, "PROBE_IDS", 3)
    pieces = kscore.report(files, tmp_path / "pieces.html", **options)
    assert (tmp_path / "whole.html").read_bytes() == (tmp_path / "pieces.html").read_bytes()
    assert {**whole, "output": None} == {**pieces, "output": None}
    assert whole["points_shown"] == min(max_points, whole["points_total"])


def test_ids_found_past_the_first_probe_still_join(inputs: dict[str, Path], tmp_path: Path, monkeypatch):
    """A file whose first ids are not in the embed-scores output, but later ones are, is joined
    (the probe is a shortcut, not the check): only a file that shares no id at all is exit 2."""
    import kscore
    from kscore.errors import InputError
    from kscore.jobs import report as job

    monkeypatch.setattr(job, "PROBE_IDS", 2)
    from kscore.io import read_kscore_metadata, write_table_atomic

    picks = pl.read_parquet(inputs["picks"])
    metadata = read_kscore_metadata(inputs["picks"])
    stranger = picks.with_columns(pl.format("stranger-{}", pl.col("id")).cast(picks.schema["id"]).alias("id"))
    mixed = pl.concat([stranger.head(2), picks])
    write_table_atomic(mixed, tmp_path / "mixed.parquet", metadata)
    write_table_atomic(stranger, tmp_path / "stranger.parquet", metadata)
    summary = kscore.report([inputs["embed"], tmp_path / "mixed.parquet"], tmp_path / "mixed.html")
    assert "picks" in summary["sections"]
    with pytest.raises(InputError, match=r"stranger\.parquet shares no id in 'id' with"):
        kscore.report([inputs["embed"], tmp_path / "stranger.parquet"], tmp_path / "stranger.html")
    assert not (tmp_path / "stranger.html").exists()


@pytest.mark.slow
def test_a_report_holds_batches_not_its_inputs(tmp_path: Path):
    """`report` of a difficulty output of 2M and of 4M rows: the second's peak memory (the process
    tree's summed RSS) is not above the first's by more than a third of what the 2M rows more
    take in memory (read whole, as before 0.7.1, they would add all of it)."""
    import subprocess
    import sys

    from .test_partitioned import _peak_rss

    rng = np.random.default_rng(3)
    (tmp_path / "k.yaml").write_text(
        "id_column: id\nmetrics:\n  - {name: recall, direction: higher_is_better}\n"
        "  - {name: latency_ms, direction: lower_is_better}\n"
    )
    peaks, sizes = {}, {}
    for rows in (2_000_000, 4_000_000):
        folder = tmp_path / str(rows)
        folder.mkdir()
        for m in range(3):
            results = {
                "id": rng.permutation(rows),
                "recall": rng.random(rows),
                "latency_ms": rng.random(rows),
            }
            pl.DataFrame(results).write_parquet(folder / f"results_m{m}.parquet")
        models = [str(folder / f"results_m{m}.parquet") for m in range(3)]
        made = run_kscore(
            "difficulty", *models, "-c", str(tmp_path / "k.yaml"), "--explain", "-q", cwd=folder
        )
        assert made.returncode == 0, made.stderr
        shown = pl.read_parquet(folder / "difficulty_scores.parquet").select(pl.exclude("^norm_.*$"))
        sizes[rows] = shown.estimated_size()
        del shown
        process = subprocess.Popen(
            [sys.executable, "-m", "kscore", "report", "difficulty_scores.parquet", "-o", "r.html", "-q"],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        peaks[rows] = _peak_rss(process)
        assert process.wait() == 0, process.stderr.read() if process.stderr else ""
    growth, more = peaks[4_000_000] - peaks[2_000_000], sizes[4_000_000] - sizes[2_000_000]
    assert growth < more / 3, f"{growth / 2**20:.0f} MiB more for 2M rows more of {more / 2**20:.0f} MiB"


def test_the_histograms_count_as_numpy_does():
    """The report's histograms are polars aggregations (one streaming pass, nothing held): their
    counts equal `np.histogram`'s, values on the edges, outside the range, NaN, inf and nulls
    included."""
    from kscore.html_page import HISTOGRAM_BINS
    from kscore.jobs.report import _histogram, _histogram_exprs

    rng = np.random.default_rng(5)
    for low, high in ((0.0, 1.0), (-8.3, -5.1), (1e-4, 6.4e-3)):
        edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
        values = np.concatenate(
            [rng.uniform(low - 0.1, high + 0.1, 5000), edges, np.nextafter(edges, np.inf),
             np.nextafter(edges, -np.inf), [np.nan, np.inf, -np.inf]]
        )  # fmt: skip
        column = pl.Series("v", values).append(pl.Series("v", [None], dtype=pl.Float64))
        found = pl.DataFrame({"v": column}).lazy().select(_histogram_exprs("v", (low, high))).collect()
        histogram = _histogram(found, "v", (low, high))
        finite = values[np.isfinite(values)]
        assert np.array_equal(histogram.counts, np.histogram(finite, HISTOGRAM_BINS, (low, high))[0])
    nothing = pl.DataFrame({"v": [np.nan, None]}).select(_histogram_exprs("v", (0.0, 1.0)))
    assert _histogram(nothing, "v", (0.0, 1.0)) is None


def test_the_quality_standard_is_a_table_people_read(inputs: dict[str, Path]):
    """One row per signal: which way is better, its weight and its share of the score (the
    difficulty file's standard, normalized weights included), then the normalization and scope."""
    result, out = full_report(inputs)
    assert result.returncode == 0, result.stderr
    page = out.read_text(encoding="utf-8")
    standard = json.loads(pl.read_parquet_metadata(inputs["difficulty"])["kscore"])["standard"]
    rows = tables_of(page).tables["table-standard"]
    expected = [
        [m["name"], m["direction"].replace("_", " "), m["weight"], standard["normalized_weights"][m["name"]]]
        for m in standard["metrics"]
    ]
    assert [[c[0][0], c[1][0], float(c[2][1]), float(c[3][1])] for c in rows] == expected
    assert f"normalization: {standard['normalization']}" in page and f"scope: {standard['scope']}" in page
    assert "<pre>" not in page  # no raw JSON


def test_numbers_are_rounded_so_that_rows_differ_where_their_values_do(inputs: dict[str, Path]):
    """In every table of the page, two cells of a column whose exact values differ show different
    text (significant digits, at least 4, as many as that takes), and each text is its value
    rounded."""
    result, out = full_report(inputs)
    assert result.returncode == 0, result.stderr
    checked = 0
    for name, rows in tables_of(out.read_text(encoding="utf-8")).tables.items():
        for column in range(len(rows[0]) if rows else 0):
            cells = {
                (value, text) for text, value in (row[column] for row in rows) if value not in (None, "")
            }
            numbers = {(float(v), t) for v, t in cells}
            by_value = {}
            for value, text in numbers:
                by_value.setdefault(value, set()).add(text)
                assert abs(float(text) - value) <= abs(value) * 5e-4 + 1e-12, (name, value, text)
            texts = [next(iter(t)) for t in by_value.values()]
            assert len(set(texts)) == len(texts), (name, column, sorted(by_value))
            checked += len(texts)
    assert checked > 100


def test_significant_digits_grow_only_as_far_as_the_values_need():
    from kscore.html_page import _digits_apart, _significant

    assert _significant(0.00024312, 4) == "0.0002431" and _significant(-5.74439, 4) == "-5.744"
    assert _digits_apart([0.0064012, 0.0064371, 0.0064]) == 4
    assert _digits_apart([0.006401234, 0.006401239]) == 6  # 0.00640123 and 0.00640124
    assert _digits_apart([0.5, 0.5, None, float("nan"), "text", 3]) == 4


def test_the_hardest_table_shows_the_label_and_each_models_prediction(tmp_path: Path):
    """On the sample, the hardest datapoints carry the label and every model's prediction, read for
    those rows from the results files the difficulty output names; a results file that is gone is
    named in a line above the table, and its model's column is left out."""
    from .conftest import ROOT

    for model in ("forest", "knn", "logreg"):
        (tmp_path / f"results_{model}.csv").write_bytes(
            (ROOT / f"sample_data/results_{model}.csv").read_bytes()
        )
    files = [f"results_{m}.csv" for m in ("forest", "knn", "logreg")]
    config = str(ROOT / "configs/quality_standard.yaml")
    result = run_kscore(
        "difficulty", *files, "-c", config, "--explain", "-o", "d.parquet", "-q", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert run_kscore("report", "d.parquet", "-o", "r.html", "-q", cwd=tmp_path).returncode == 0
    rows = tables_of((tmp_path / "r.html").read_text(encoding="utf-8")).tables["table-hardest"]
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    headers = re.search(r'<table class="sortable" id="table-hardest">.*?<thead><tr>(.*?)</tr>', page).group(1)
    names = re.findall(r"<th[^>]*>([^<]*)</th>", headers)
    assert names[:6] == [
        "id",
        "difficulty_score",
        "label",
        "predicted (forest)",
        "predicted (knn)",
        "predicted (logreg)",
    ]
    results = {m: pl.read_csv(tmp_path / f"results_{m}.csv") for m in ("forest", "knn", "logreg")}
    for row in rows:
        point = int(row[0][0])
        truth = {m: r.filter(pl.col("id") == point).row(0, named=True) for m, r in results.items()}
        assert int(row[2][0]) == truth["forest"]["label"]
        assert [int(c[0]) for c in row[3:6]] == [truth[m]["predicted"] for m in ("forest", "knn", "logreg")]
        assert all(c[0].startswith("metric: ") for c in row[-3:])  # each model's top signal, named
    (tmp_path / "results_knn.csv").unlink()
    assert run_kscore("report", "d.parquet", "-o", "r2.html", "-q", cwd=tmp_path).returncode == 0
    page = (tmp_path / "r2.html").read_text(encoding="utf-8")
    assert (
        "label and predictions not shown for results files not found or unreadable: results_knn.csv" in page
    )
    headers = re.search(r'<table class="sortable" id="table-hardest">.*?<thead><tr>(.*?)</tr>', page).group(1)
    assert re.findall(r"<th[^>]*>([^<]*)</th>", headers)[2:5] == [
        "label",
        "predicted (forest)",
        "predicted (logreg)",
    ]
