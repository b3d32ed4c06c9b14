"""The partitioned plan of `difficulty` (id ranges spilled to disk) against the in-memory plan: the
same file, bitwise, for every kind of id, normalization, scope, task and `--explain`."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import kscore.plan.difficulty as partitioned
from kscore.config import QualityStandard
from kscore.errors import InputError, OutputError
from kscore.io import read_kscore_metadata
from kscore.jobs.difficulty import write_difficulty_scores
from tests.conftest import require, run_kscore

ROWS = 3000
MODELS = ("a", "b", "c")


def _ids(kind: str, rng: np.random.Generator, model: int) -> pl.Series:
    """Each model's ids, shuffled; `mixed` models cover different, overlapping sets."""
    base = np.arange(ROWS)
    if kind == "mixed":
        keep = [base[: int(ROWS * 0.8)], base[int(ROWS * 0.2) :], base[rng.random(ROWS) < 0.5]][model]
        base = keep
    base = rng.permutation(base)
    if kind == "dense":
        return pl.Series("id", base, dtype=pl.Int64)
    if kind == "mixed":  # one model's ids as integral floats: the same ids by value
        return pl.Series("id", base.astype(np.float64) if model == 1 else base, strict=False)
    if kind == "sparse":
        return pl.Series("id", base.astype(np.int64) * 1_000_003 - 7_000_000, dtype=pl.Int64)
    if kind == "huge":  # above 2**63: UInt64
        return pl.Series(
            "id", (np.uint64(2**63 + 5) + base.astype(np.uint64) * np.uint64(977)), dtype=pl.UInt64
        )
    return pl.Series("id", [f"dp-{i:x}" for i in base], dtype=pl.String)


def _model_frame(kind: str, model: int) -> pl.DataFrame:
    rng = np.random.default_rng(model + 10 * len(kind))
    ids = _ids(kind, rng, model)
    n = len(ids)
    recall = rng.random(n)
    recall[rng.random(n) < 0.05] = np.nan  # missing signals: weights renormalized
    latency = np.round(rng.gamma(2.0, 20.0, n), 1)  # ties, for the ranks
    return pl.DataFrame(
        {
            "id": ids,
            "recall": recall,
            "latency_ms": pl.Series(latency).scatter(np.flatnonzero(rng.random(n) < 0.03), None),
            "loss": -rng.exponential(1.0, n),  # all negative: -0.0 never a bound, but signs matter
            "label": (rng.random(n) < 0.4).astype(np.int64),
            "score": rng.random(n),
        }
    )


def _standard(normalization: str, scope: str, task: bool) -> QualityStandard:
    data = {
        "id_column": "id",
        "metrics": [
            {"name": "recall", "direction": "higher_is_better", "weight": 2},
            {"name": "latency_ms", "direction": "lower_is_better"},
            {"name": "loss", "direction": "lower_is_better", "weight": 0.5},
        ],
        "normalization": normalization,
        "scope": scope,
    }
    if task:
        data["task"] = {"type": "binary_classification", "ground_truth": "label", "inference": "score"}
    return QualityStandard.from_dict(data)


def _write_inputs(folder: Path, kind: str, fmt: str = "parquet") -> dict[str, Path]:
    paths = {}
    for number, name in enumerate(MODELS):
        path = folder / f"results_{name}.{fmt}"
        frame = _model_frame(kind, number)
        frame.write_parquet(path) if fmt == "parquet" else frame.write_csv(path)
        paths[name] = path
    return paths


def _assert_same_file(a: Path, b: Path) -> None:
    """Same rows, order, dtypes and values (floats compared bit for bit) and the same metadata."""
    _assert_same_rows(pl.read_parquet(a), pl.read_parquet(b))
    assert read_kscore_metadata(a) == read_kscore_metadata(b)


def _assert_same_rows(left: pl.DataFrame, right: pl.DataFrame) -> None:
    """Same rows, order, dtypes and values (floats compared bit for bit)."""
    assert left.schema == right.schema
    assert left.height == right.height
    for name in left.columns:
        x, y = left.get_column(name), right.get_column(name)
        assert x.is_null().equals(y.is_null()), name
        if x.dtype.is_float():
            bits = [s.fill_null(0.0).to_numpy().view(np.int64) for s in (x, y)]
            assert np.array_equal(*bits), f"{name}: values differ"
        else:
            assert x.equals(y), name


def _run_both(tmp_path: Path, paths: dict[str, Path], standard: QualityStandard, explain: bool, limit: int):
    ranges: list[int] = []

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "score id ranges":
            ranges.append(total)

    whole = write_difficulty_scores(
        paths, standard, tmp_path / "memory" / "out.parquet", explain=explain, memory_limit="64GiB"
    )
    parts = write_difficulty_scores(
        paths,
        standard,
        tmp_path / "parts" / "out.parquet",
        explain=explain,
        memory_limit=limit,
        progress=progress,
    )
    return whole, parts, ranges


@pytest.mark.parametrize("kind", ["dense", "sparse", "string", "mixed", "huge"])
@pytest.mark.parametrize(("normalization", "scope"), [("minmax", "per_model"), ("rank", "joint")])
def test_partitioned_file_equals_in_memory(tmp_path: Path, tiny_overhead, kind, normalization, scope) -> None:
    (tmp_path / "memory").mkdir()
    (tmp_path / "parts").mkdir()
    paths = _write_inputs(tmp_path, kind)
    whole, parts, ranges = _run_both(tmp_path, paths, _standard(normalization, scope, False), False, 300_000)
    assert ranges and ranges[-1] > 2, "the limit did not cut the ids into ranges"
    _assert_same_file(tmp_path / "memory" / "out.parquet", tmp_path / "parts" / "out.parquet")
    whole.pop("output"), parts.pop("output")
    assert whole == parts


@pytest.mark.parametrize(("normalization", "scope"), [("rank", "per_model"), ("minmax", "joint")])
def test_partitioned_with_a_task_and_explain_equals_in_memory(
    tmp_path: Path, tiny_overhead, normalization, scope
) -> None:
    (tmp_path / "memory").mkdir()
    (tmp_path / "parts").mkdir()
    paths = _write_inputs(tmp_path, "mixed")
    whole, parts, ranges = _run_both(tmp_path, paths, _standard(normalization, scope, True), True, 400_000)
    assert ranges and ranges[-1] > 2
    _assert_same_file(tmp_path / "memory" / "out.parquet", tmp_path / "parts" / "out.parquet")
    assert [m["accuracy"] for m in whole["models"]] == [m["accuracy"] for m in parts["models"]]
    whole.pop("output"), parts.pop("output")
    assert whole == parts


def test_partitioned_csv_inputs_equal_in_memory(tmp_path: Path, tiny_overhead) -> None:
    (tmp_path / "memory").mkdir()
    (tmp_path / "parts").mkdir()
    paths = _write_inputs(tmp_path, "sparse", fmt="csv")
    _, _, ranges = _run_both(tmp_path, paths, _standard("minmax", "per_model", False), True, 300_000)
    assert ranges and ranges[-1] > 2
    _assert_same_file(tmp_path / "memory" / "out.parquet", tmp_path / "parts" / "out.parquet")


def _start_partitioned(folder: Path, limit: str) -> subprocess.Popen:
    """A partitioned `kscore difficulty` on 3 generated models of 1M rows, started in the background."""
    _generate(folder, 1_000_000, models=3)
    args = ["difficulty", "results_m0.parquet", "results_m1.parquet", "results_m2.parquet", "-c", "k.yaml"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSCORE_")}
    return subprocess.Popen(
        [sys.executable, "-m", "kscore", *args, "--memory-limit", limit],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _spilling(folder: Path) -> bool:
    """Whether a run has started spilling rows under `folder` (which it may be deleting meanwhile)."""
    try:
        return any(p.name.startswith("rows-m") for p in folder.rglob("*"))
    except FileNotFoundError:
        return False


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".kscore-" in p.name)


def test_temp_folder_is_removed_after_success_and_after_an_error(tmp_path: Path, tiny_overhead) -> None:
    paths = _write_inputs(tmp_path, "dense")
    out = tmp_path / "out.parquet"
    write_difficulty_scores(paths, _standard("minmax", "per_model", False), out, memory_limit=300_000)
    assert out.exists() and _leftovers(tmp_path) == []
    # A bad value in the last model fails the run after the others were spilled.
    bad = _model_frame("dense", 2).with_columns(pl.col("recall").fill_nan(float("inf")))
    bad.write_parquet(paths["c"])
    out.unlink()
    with pytest.raises(InputError, match="infinite"):
        write_difficulty_scores(paths, _standard("minmax", "per_model", False), out, memory_limit=300_000)
    assert not out.exists() and _leftovers(tmp_path) == []


def test_temp_dir_holds_the_spill(tmp_path: Path, tiny_overhead, monkeypatch) -> None:
    paths = _write_inputs(tmp_path, "dense")
    spill = tmp_path / "spill"
    spill.mkdir()
    seen: list[Path] = []
    real = partitioned.PartitionedRun._score_range

    def spy(self, k, whole):
        seen.append(self.folder)
        return real(self, k, whole)

    monkeypatch.setattr(partitioned.PartitionedRun, "_score_range", spy)
    out = tmp_path / "out.parquet"
    write_difficulty_scores(
        paths, _standard("minmax", "per_model", False), out, memory_limit=300_000, temp_dir=spill
    )
    assert seen and all(folder.parent == spill for folder in seen)
    assert list(spill.iterdir()) == [] and out.exists()


def test_a_memory_limit_below_one_range_names_the_size_needed(tmp_path: Path) -> None:
    _write_inputs(tmp_path, "dense")
    result = run_kscore(
        "difficulty", "results_a.parquet", "results_b.parquet", "-c", "k.yaml", "--memory-limit", "1MB",
        cwd=_with_config(tmp_path),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "--memory-limit 976.6 KiB is below the" in error[0] and "MiB" in error[0]
    assert not (tmp_path / "difficulty_scores.parquet").exists() and _leftovers(tmp_path) == []


@pytest.mark.parametrize("text", ["4 lots", "-1GiB", "GiB", "0"])
def test_a_bad_memory_limit_is_exit_2(tmp_path: Path, text: str) -> None:
    _write_inputs(tmp_path, "dense")
    result = run_kscore(
        "difficulty", "results_a.parquet", "-c", "k.yaml", "--memory-limit", text, cwd=_with_config(tmp_path)
    )
    assert result.returncode == 2 and "error: --memory-limit" in result.stderr, result.stderr


def _with_config(folder: Path) -> Path:
    (folder / "k.yaml").write_text(
        "id_column: id\nmetrics:\n  - {name: recall, direction: higher_is_better}\n"
        "  - {name: latency_ms, direction: lower_is_better}\n"
    )
    return folder


def _generate(folder: Path, rows: int, models: int = 5) -> None:
    for m in range(models):
        rng = np.random.default_rng(m)
        pl.DataFrame(
            {
                "id": rng.permutation(rows),
                "recall": rng.random(rows),
                "latency_ms": rng.gamma(2.0, 20.0, rows),
            }
        ).write_parquet(folder / f"results_m{m}.parquet")
    _with_config(folder)


def _peak_rss(process: subprocess.Popen) -> int:
    """The peak of the summed RSS of a process and its children, sampled every 50 ms (psutil)."""
    psutil = require("psutil")
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree))
        except psutil.Error:
            pass
        time.sleep(0.05)
    return peak


@pytest.mark.slow  # several seconds (CLI runs, an S3 server): CI's second pass
def test_a_forced_partition_run_stays_under_its_memory_limit(tmp_path: Path) -> None:
    _generate(tmp_path, 2_000_000)
    limit = 400 * 1024**2
    args = [
        "difficulty",
        *(f"results_m{m}.parquet" for m in range(5)),
        "-c",
        "k.yaml",
        "--memory-limit",
        "400MiB",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "kscore", *args, "--json"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    peak = _peak_rss(process)
    stdout, stderr = process.communicate()
    assert process.returncode == 0, stderr
    assert b"score id ranges" in stderr  # it ran partitioned
    assert json.loads(stdout)["n_datapoints"] == 2_000_000
    assert peak <= limit, f"peak {peak / 2**20:.0f} MiB above the {limit / 2**20:.0f} MiB limit"


def test_ctrl_c_during_a_partitioned_run_leaves_no_spill_and_no_output(tmp_path: Path) -> None:
    process = _start_partitioned(tmp_path, "356MiB")
    deadline = time.monotonic() + 60
    while not _spilling(tmp_path) and process.poll() is None:
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    if process.poll() is not None:
        pytest.skip("the run ended before it spilled: too fast to interrupt here")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert not (tmp_path / "difficulty_scores.parquet").exists()
    assert _leftovers(tmp_path) == []


def test_full_temp_disk_is_exit_2_and_leaves_nothing(tmp_path: Path) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    _generate(tmp_path, 300_000, models=2)
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        result = run_kscore(
            "difficulty", "results_m0.parquet", "results_m1.parquet", "-c", "k.yaml",
            "--memory-limit", "271MiB", "--temp-dir", str(disk), cwd=tmp_path,
        )  # fmt: skip
        assert result.returncode == 2, result.stderr
        error = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(error) == 1 and "cannot write temporary files" in error[0] and "disk is full" in error[0]
        assert list(disk.iterdir()) == []
        assert not (tmp_path / "difficulty_scores.parquet").exists() and _leftovers(tmp_path) == []
    finally:
        subprocess.run(["umount", "-l", str(disk)])


def test_a_full_disk_met_inside_polars_spill_is_named_as_the_temp_disk(
    tmp_path: Path, tiny_overhead, monkeypatch
) -> None:
    """polars reports a write failure of its sink's writer tasks as a ComputeError, not an
    OSError: the error still names the spill's folder and the full disk, not the input."""

    def full(self, *args, **kwargs):
        raise pl.exceptions.ComputeError("IO error: No space left on device (os error 28)")

    paths = _write_inputs(tmp_path, "dense")
    monkeypatch.setattr(pl.LazyFrame, "sink_ipc", full)
    out = tmp_path / "o.parquet"
    with pytest.raises(OutputError, match="cannot write temporary files: the disk is full"):
        write_difficulty_scores(paths, _standard("minmax", "per_model", False), out, memory_limit=300_000)
    assert not out.exists() and _leftovers(tmp_path) == []


def test_the_library_takes_paths_and_refuses_an_in_memory_result_above_its_limit(tmp_path: Path) -> None:
    from kscore.jobs.difficulty import difficulty_scores

    paths = _write_inputs(tmp_path, "dense")
    standard = _standard("minmax", "per_model", False)
    table = difficulty_scores(paths, standard)
    assert isinstance(table, pl.DataFrame) and table.height == ROWS
    with pytest.raises(InputError, match=r"above the memory limit.*pass out="):
        difficulty_scores(paths, standard, memory_limit="1MB")
    summary = difficulty_scores(paths, standard, out=tmp_path / "o.parquet")
    assert summary["n_datapoints"] == ROWS
    assert pl.read_parquet(tmp_path / "o.parquet").equals(table)


@pytest.mark.parametrize(
    ("text", "size"),
    [("4GiB", 4 * 2**30), ("500MB", 500 * 10**6), ("2g", 2 * 10**9), ("1024", 1024), ("1.5KiB", 1536)],
)
def test_memory_sizes(text: str, size: int) -> None:
    from kscore.plan.sizing import parse_size

    assert parse_size(text) == size


@pytest.mark.parametrize("layout", ["shuffled", "sorted"])
def test_streaming_quantiles_are_exact_also_when_the_first_chunk_misleads(layout: str) -> None:
    from kscore.core.order_stats import exact_quantiles
    from kscore.summaries import StreamingQuantiles

    rng = np.random.default_rng(3)
    values = rng.gamma(2.0, 1.0, 200_001)
    values[rng.random(len(values)) < 0.01] = np.nan
    if layout == "sorted":  # the first chunk holds only the smallest values: the band misses
        values = np.sort(values)
    streaming = StreamingQuantiles((0.5, 0.9))
    for chunk in np.array_split(values, 7):
        streaming.add(chunk)
    reads = []
    got = streaming.result(lambda: reads.append(1) or values)
    assert got == exact_quantiles(values, [0.5, 0.9])
    assert bool(reads) == (layout == "sorted")


@pytest.mark.parametrize("layout", ["shuffled", "sorted"])
def test_a_summary_met_range_by_range_equals_the_whole_tables(layout: str) -> None:
    """Counts, means and exact quantiles of every model's scores, added one range at a time (after
    the first, one polars query per range), equal those of the whole column; nulls count nowhere,
    and a range with no value inside a band adds nothing to it."""
    from kscore.columns import N_MODELS, SCORE, model_score_column
    from kscore.core.order_stats import exact_quantiles
    from kscore.summaries import RangeSummary

    rng = np.random.default_rng(11)
    rows, nulls = 400_000, 4_000
    columns = {}
    for model in ("a", "b"):
        values = rng.gamma(2.0, 1.0, rows)
        if layout == "sorted":  # the first range holds only the smallest values: the bands miss
            values = np.sort(values)
        columns[model_score_column(model)] = pl.Series(values).scatter(
            rng.choice(rows, nulls, replace=False), None
        )
    table = pl.DataFrame({"id": np.arange(rows), **columns}).with_columns(
        pl.mean_horizontal(*columns).alias(SCORE), pl.lit(2, dtype=pl.UInt32).alias(N_MODELS)
    )
    summary = RangeSummary(["a", "b"], "id", top=5)
    for start in range(0, rows, 100_000):
        summary.add(table.slice(start, 100_000))
    # Shuffled, the bands hold every quantile: the written file is never read (an empty frame here).
    got = summary.result(table.lazy() if layout == "sorted" else pl.LazyFrame())
    assert got["n_datapoints"] == rows
    for model, column in zip(got["models"], columns, strict=True):
        values = table.get_column(column).drop_nulls()
        median, p90 = exact_quantiles(values.to_numpy(), [0.5, 0.9])
        assert model["rows_scored"] == rows - nulls
        assert (model["median"], model["p90"]) == (round(median, 6), round(p90, 6))
        assert model["mean"] == pytest.approx(values.mean(), abs=1e-6)
    hardest = (
        table.sort([SCORE, "id"], descending=[True, False], nulls_last=True)
        .head(5)
        .get_column("id")
        .to_list()
    )
    assert [row["id"] for row in got["hardest"]] == hardest


def test_a_summary_of_pieces_written_apart_equals_the_whole_tables(tmp_path: Path) -> None:
    """As a Ray run sums up the parts its tasks wrote: each range's `RangePiece` (counts, sums,
    hardest rows, a sample of each model's scores, even where the ranges' values differ in kind),
    the bands set from the pooled samples, each part read for the values inside them. Exact without
    reading the output whole (`result` is given an empty frame), as the whole table's figures."""
    from kscore.columns import N_MODELS, SCORE, model_score_column
    from kscore.core.order_stats import exact_quantiles
    from kscore.summaries import RangeSummary, range_piece, scanned_bands

    rng = np.random.default_rng(12)
    rows, ranges = 300_000, 6
    columns = {}
    for model in ("a", "b"):
        values = np.sort(rng.gamma(2.0, 1.0, rows))  # each range's scores unlike the others'
        columns[model_score_column(model)] = pl.Series(values).scatter(
            rng.choice(rows, 3_000, replace=False), None
        )
    table = pl.DataFrame({"id": np.arange(rows), **columns}).with_columns(
        pl.mean_horizontal(*columns).alias(SCORE), pl.lit(2, dtype=pl.UInt32).alias(N_MODELS)
    )
    summary = RangeSummary(["a", "b"], "id", top=5)
    for k, start in enumerate(range(0, rows, rows // ranges)):
        part = table.slice(start, rows // ranges)
        part.write_parquet(tmp_path / f"part-{k:05d}.parquet")
        summary.add_piece(range_piece(part, ["a", "b"], "id", 5, ranges))
    bounds = summary.bounds()
    for path in sorted(tmp_path.glob("part-*.parquet")):
        summary.add_found_bands(scanned_bands(pl.scan_parquet(path), bounds))
    got = summary.result(pl.LazyFrame())
    assert got["n_datapoints"] == rows
    for model, column in zip(got["models"], columns, strict=True):
        values = table.get_column(column).drop_nulls()
        median, p90 = exact_quantiles(values.to_numpy(), [0.5, 0.9])
        assert model["rows_scored"] == rows - 3_000
        assert (model["median"], model["p90"]) == (round(median, 6), round(p90, 6))
        assert model["mean"] == pytest.approx(values.mean(), abs=1e-6)
    hardest = table.sort([SCORE, "id"], descending=[True, False], nulls_last=True).head(5)
    assert [row["id"] for row in got["hardest"]] == hardest.get_column("id").to_list()


@pytest.mark.parametrize("normalization", ["minmax", "rank"])  # scores in the spill, signals in it
@pytest.mark.parametrize(
    ("column", "values", "message"),
    [("id", [5, 9], "has 2 null ids"), ("recall", [3, 4, 7], "'recall' has 3 infinite values")],
)
def test_null_ids_or_infinite_values_in_a_natively_spilled_file_are_exit_2(
    tmp_path: Path, tiny_overhead, normalization, column, values, message
) -> None:
    paths = _write_inputs(tmp_path, "dense")
    frame = _model_frame("dense", 1)
    bad = None if column == "id" else float("-inf")
    frame.with_columns(frame.get_column(column).scatter(values, bad)).write_parquet(paths["b"])
    with pytest.raises(InputError, match=message) as raised:
        write_difficulty_scores(
            paths, _standard(normalization, "per_model", False), tmp_path / "o.parquet", memory_limit=300_000
        )
    assert str(raised.value).startswith(str(paths["b"]))
    assert _leftovers(tmp_path) == [] and not (tmp_path / "o.parquet").exists()


@pytest.mark.parametrize("scope", ["per_model", "joint"])
@pytest.mark.parametrize("explain", [False, True])
@pytest.mark.parametrize("nan", [False, True])
def test_scores_computed_as_rows_are_spilled_equal_in_memory(
    tmp_path: Path, tiny_overhead, scope, explain, nan
) -> None:
    """Min-max scores computed in the spill's query with the statistics of the Parquet footers:
    the same file as in memory. NaN (read as missing; footers do not count it) in one model's
    signals: that model (every model, joint scope) is spilled again with the measured statistics."""
    for number, name in enumerate(MODELS):
        frame = _model_frame("dense", number)
        if not (nan and number == 1):
            frame = frame.with_columns(pl.col("recall").fill_nan(None))
        frame.write_parquet(tmp_path / f"results_{name}.parquet")
    paths = {name: tmp_path / f"results_{name}.parquet" for name in MODELS}
    standard = _standard("minmax", scope, False)
    stages: dict[str, int] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if done == total:
            stages[stage] = total

    memory = write_difficulty_scores(
        paths, standard, tmp_path / "m.parquet", explain=explain, memory_limit="64GiB"
    )
    parts = write_difficulty_scores(
        paths, standard, tmp_path / "p.parquet", explain=explain, memory_limit=300_000, progress=progress
    )
    assert stages["read and spill"] == 3 * ROWS and stages["score id ranges"] > 2
    again = {"joint": 3 * ROWS, "per_model": ROWS}[scope] if nan else None
    assert stages.get("spill again") == again
    _assert_same_file(tmp_path / "m.parquet", tmp_path / "p.parquet")
    memory.pop("output"), parts.pop("output")
    assert memory == parts


def test_parquet_without_footer_statistics_or_csv_spill_their_signals(tmp_path: Path, tiny_overhead) -> None:
    """Without statistics in a footer, the signals are spilled (read once) and scored by range."""
    import pyarrow.parquet as pq

    paths = _write_inputs(tmp_path, "dense")
    pq.write_table(_model_frame("dense", 2).to_arrow(), paths["c"], write_statistics=False)
    assert partitioned.footer_checks(paths["c"], "id", ["recall"]) is None
    assert partitioned.footer_checks(paths["a"], "id", ["recall"])["rows"] == ROWS
    stages: list[str] = []
    standard = _standard("minmax", "per_model", False)
    write_difficulty_scores(paths, standard, tmp_path / "m.parquet", memory_limit="64GiB")
    seen = lambda stage, done, total: stages.append(stage)  # noqa: E731
    write_difficulty_scores(paths, standard, tmp_path / "p.parquet", memory_limit=300_000, progress=seen)
    assert "read and spill" in stages and "spill again" not in stages
    _assert_same_file(tmp_path / "m.parquet", tmp_path / "p.parquet")


def _read_dataset(folder: Path) -> pl.DataFrame:
    parts = sorted(folder.glob("part-*.parquet"))
    assert parts and (folder / "_kscore.json").is_file()
    return pl.concat([pl.read_parquet(p) for p in parts])


@pytest.mark.parametrize("limit", ["64GiB", 300_000])
def test_a_dataset_output_holds_the_same_rows_as_the_file(tmp_path: Path, tiny_overhead, limit) -> None:
    paths = _write_inputs(tmp_path, "sparse")
    standard = _standard("minmax", "per_model", False)
    write_difficulty_scores(paths, standard, tmp_path / "one.parquet", memory_limit="64GiB")
    summary = write_difficulty_scores(paths, standard, str(tmp_path / "lake") + "/", memory_limit=limit)
    assert _read_dataset(tmp_path / "lake").equals(pl.read_parquet(tmp_path / "one.parquet"))
    manifest = json.loads((tmp_path / "lake" / "_kscore.json").read_text())
    assert manifest == read_kscore_metadata(tmp_path / "one.parquet")
    assert summary["n_datapoints"] == pl.read_parquet(tmp_path / "one.parquet").height
    assert _leftovers(tmp_path) == []


def test_cli_dataset_output_replaces_its_own_refuses_a_foreign_folder_and_feeds_compare(
    tmp_path: Path,
) -> None:
    _write_inputs(tmp_path, "dense")
    _with_config(tmp_path)
    args = ["difficulty", "results_a.parquet", "results_b.parquet", "-c", "k.yaml", "-o", "lake/"]
    first = run_kscore(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = _read_dataset(tmp_path / "lake")
    (tmp_path / "results_b.parquet").unlink()
    _model_frame("dense", 2).write_parquet(tmp_path / "results_b.parquet")
    again = run_kscore(*args[:-1], "lake", cwd=tmp_path)  # an existing kscore dataset: replaced whole
    assert again.returncode == 0, again.stderr
    after = _read_dataset(tmp_path / "lake")
    assert after.height == before.height and not after.equals(before)
    compared = run_kscore("compare", "lake", "--baseline", "a", "--candidate", "b", "--json", cwd=tmp_path)
    assert compared.returncode in (0, 1), compared.stderr
    assert json.loads(compared.stdout)["baseline"] == "a"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    refused = run_kscore(*args[:-1], "mine/", cwd=tmp_path)
    assert refused.returncode == 2
    assert "holds files kscore did not write" in refused.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    assert _leftovers(tmp_path) == []


def test_jobs_caps_polars_threads_and_keeps_the_numbers(tmp_path: Path) -> None:
    _write_inputs(tmp_path, "dense")
    _with_config(tmp_path)
    files = ["results_a.parquet", "results_b.parquet", "results_c.parquet"]
    script = (
        "import atexit, sys\n"
        "size = lambda: __import__('polars').thread_pool_size()\n"
        "atexit.register(lambda: print('threads', size(), file=sys.stderr))\n"
        "sys.argv = ['kscore', *sys.argv[1:]]\n"
        "from kscore.cli import run\n"
        "run()\n"
    )
    outputs = {}
    for jobs in ("1", "2"):
        args = ["difficulty", *files, "-c", "k.yaml", "-o", f"j{jobs}.parquet", "-j", jobs]
        done = subprocess.run(
            [sys.executable, "-c", script, *args], cwd=tmp_path, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert f"threads {jobs}" in done.stderr
        outputs[jobs] = tmp_path / f"j{jobs}.parquet"
    _assert_same_file(outputs["1"], outputs["2"])


def interrupt_after_stage(process: subprocess.Popen, stage: str) -> str:
    """Send SIGINT to a running `kscore` once its stderr reports `stage` done (one line per stage
    when stderr is not a terminal); check it exited 130 and return the rest of its stderr."""
    assert process.stderr is not None
    lines = []
    for line in process.stderr:
        lines.append(line)
        if line.startswith(stage):
            break
    if process.poll() is not None:
        pytest.skip("the run ended before its ranges were scored: too fast to interrupt here")
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=120)
    assert process.returncode == 130, "".join(lines) + rest
    return rest


def test_ctrl_c_while_ranges_stream_into_the_output_leaves_nothing(tmp_path: Path) -> None:
    process = _start_partitioned(tmp_path, "316MiB")
    rest = interrupt_after_stage(process, "read and spill:")
    errors = [line for line in rest.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: interrupted"), rest
    assert not (tmp_path / "difficulty_scores.parquet").exists()
    assert _leftovers(tmp_path) == []


def test_an_error_in_a_late_range_comes_out_as_itself(tmp_path: Path, tiny_overhead) -> None:
    paths = _write_inputs(tmp_path, "dense")
    frame = _model_frame("dense", 0)
    last = frame.filter(pl.col("id") == ROWS - 1)
    pl.concat([frame, last]).write_parquet(paths["a"])  # id ROWS - 1 twice: found in the last range
    out = tmp_path / "o.parquet"
    with pytest.raises(InputError, match="duplicated id"):
        write_difficulty_scores(paths, _standard("minmax", "per_model", False), out, memory_limit=300_000)
    assert not out.exists() and _leftovers(tmp_path) == []


@pytest.mark.catalogue
@pytest.mark.parametrize("output", ["parquet", "csv", "dataset"])
def test_signals_at_seeded_moments_leave_the_whole_output_or_nothing(tmp_path: Path, output: str) -> None:
    """The Ctrl-C probe (tests/signal_probe.py; its 3M-row run is tests/bench/signal_probe.py) at six
    seeded moments of a partitioned run, SIGINT and SIGTERM alternating: exit 0, 130 or 143, at most
    the one `error:` line, the complete output (said to be written) or none, no temporary."""
    from .signal_probe import make_inputs, moments, probe, run_length

    rows = 300_000
    names = make_inputs(tmp_path, rows)
    length = run_length(tmp_path, names, output, "271MiB")
    found = [
        probe(tmp_path, names, output, number, delay, rows, "271MiB")
        for number, delay in enumerate(moments(length, 6, seed=len(output)))
    ]
    problems = [f"{p.signal} at {p.delay} s: {', '.join(p.problems())}" for p in found if p.problems()]
    assert not problems, problems


@pytest.mark.parametrize("lie", ["low", "high", "both"])
def test_a_footer_that_lies_about_the_ids_bounds_changes_no_score(
    tmp_path: Path, tiny_overhead, monkeypatch, lie
) -> None:
    """A Parquet footer claiming a higher minimum id (or a lower maximum) than its rows hold: the
    rows outside the claimed bounds go to the first (or last) id range, and the file is the one the
    in-memory path writes (it was 'conversion from i64 to u16 failed')."""
    for number, name in enumerate(MODELS):
        _model_frame("dense", number).write_parquet(tmp_path / f"results_{name}.parquet")
    paths = {name: tmp_path / f"results_{name}.parquet" for name in MODELS}
    honest = partitioned.footer_checks

    def lying(path: Path, id_col: str, metrics: list[str]):
        found = honest(path, id_col, metrics)
        if found is not None:
            found["low"] += 700 if lie in ("low", "both") else 0
            found["high"] -= 700 if lie in ("high", "both") else 0
        return found

    monkeypatch.setattr(partitioned, "footer_checks", lying)
    standard = _standard("minmax", "per_model", False)
    stages: dict[str, int] = {}

    def progress(stage: str, done: int, total: int) -> None:
        stages[stage] = total

    write_difficulty_scores(paths, standard, tmp_path / "m.parquet", memory_limit="64GiB")
    write_difficulty_scores(paths, standard, tmp_path / "p.parquet", memory_limit=300_000, progress=progress)
    assert stages["score id ranges"] > 2  # partitioned
    _assert_same_file(tmp_path / "m.parquet", tmp_path / "p.parquet")


def test_id_ranges_put_ids_outside_their_bounds_in_the_end_ranges() -> None:
    from kscore.plan.sizing import dense_ranges

    ranges = dense_ranges(100, 199, 4, pl.Int64())
    ids = pl.Series("id", [-5, 0, 99, 100, 124, 125, 199, 200, 10_000], dtype=pl.Int64)
    expected = [0, 0, 0, 0, 0, 1, 3, 3, 3]
    assert ranges.of(ids).tolist() == expected
    assert pl.select(ranges.expr(pl.lit(ids))).to_series().to_list() == expected
