"""Benchmark `kscore difficulty` against the I/O floor and a straightforward pandas implementation.

Each contender runs in its own process (so peak memory is its own; kscore as its console script),
alternated over --repeats rounds in one session; the medians and ratios are printed as a Markdown table.
Peak memory is the peak of the summed RSS of the contender's process tree, sampled every 50 ms.

    python tests/bench/make_difficulty_data.py /tmp/bench10m --rows 10000000
    python tests/bench/bench_difficulty.py /tmp/bench10m --repeats 3
    # 100M rows in bounded memory: the partitioned plan against a streaming floor
    python tests/bench/bench_difficulty.py /tmp/bench100m --contenders io_floor_streaming kscore_partitioned \
        --memory-limit 4GiB --repeats 3
    # the partitioned plan's file equals the in-memory plan's, bitwise
    python tests/bench/bench_difficulty.py /tmp/bench10m --contenders kscore kscore_partitioned \
        --memory-limit 1GiB --repeats 1
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import yaml
from peak import run_measured

CONTENDERS = ("io_floor", "kscore", "pandas")
ALL = (*CONTENDERS, "io_floor_streaming", "kscore_partitioned")


def _inputs(data_dir: Path) -> tuple[list[Path], dict]:
    files = sorted(p for p in data_dir.iterdir() if p.suffix in (".csv", ".parquet"))
    config = yaml.safe_load((data_dir / "kscore.yaml").read_text())
    return files, config


def _read_polars(path: Path, columns: list[str]) -> pl.DataFrame:
    if path.suffix == ".csv":
        return pl.read_csv(path, columns=columns)
    return pl.read_parquet(path, columns=columns)


def run_io_floor(data_dir: Path, out: Path) -> None:
    """Read the needed columns of every file and write an output of the same shape, nothing else."""
    files, config = _inputs(data_dir)
    columns = [config["id_column"], *(m["name"] for m in config["metrics"])]
    frames = [_read_polars(p, columns) for p in files]
    first = frames[0]
    output = {
        "id": first.get_column("id"),
        "difficulty_score": first.get_column(columns[1]),
        "n_models": pl.Series(np.full(first.height, len(files), dtype=np.uint32)),
    }
    for i, frame in enumerate(frames):
        output[f"difficulty_score_m{i}"] = frame.get_column(columns[2])
    pl.DataFrame(output).write_parquet(out)


def run_io_floor_streaming(data_dir: Path, out: Path) -> None:
    """The floor in bounded memory: polars' streaming engine scans the needed columns of every file
    and sinks an output of the same shape (id, mean, count, one score per model)."""
    files, config = _inputs(data_dir)
    id_col = config["id_column"]
    metrics = [m["name"] for m in config["metrics"]]
    scans = [pl.scan_csv(p) if p.suffix == ".csv" else pl.scan_parquet(p) for p in files]
    first = scans[0].select(
        pl.col(id_col),
        pl.sum_horizontal(metrics).alias("difficulty_score"),
        pl.lit(len(files), dtype=pl.UInt32).alias("n_models"),
    )
    others = [
        scan.select(pl.sum_horizontal([id_col, *metrics]).cast(pl.Float64).alias(f"difficulty_score_m{i}"))
        for i, scan in enumerate(scans)
    ]
    pl.concat([first, *others], how="horizontal").sink_parquet(out)


def kscore_command(data_dir: Path, out: Path, memory_limit: str | None = None) -> list[str]:
    """The real console script, as a user runs it."""
    files, _ = _inputs(data_dir)
    kscore = Path(sys.executable).with_name("kscore")
    return [
        str(kscore),
        "difficulty",
        *map(str, files),
        "-c",
        str(data_dir / "kscore.yaml"),
        "-o",
        str(out),
        "--json",
        *(["--memory-limit", memory_limit] if memory_limit else ["--memory-limit", "20GiB"]),
    ]


def run_pandas(data_dir: Path, out: Path) -> None:
    """What a careful user writes in pandas: per-model min-max and weighted sum, mean over models by id."""
    import pandas as pd

    files, config = _inputs(data_dir)
    id_col = config["id_column"]
    metrics = config["metrics"]
    total_weight = sum(m.get("weight", 1) for m in metrics)
    merged = None
    names = []
    for i, path in enumerate(files):
        columns = [id_col, *(m["name"] for m in metrics)]
        frame = (
            pd.read_csv(path, usecols=columns)
            if path.suffix == ".csv"
            else pd.read_parquet(path, columns=columns)
        )
        score = np.zeros(len(frame))
        for m in metrics:
            values = frame[m["name"]].astype(float)
            if m["direction"].lower() in ("higher_is_better", "hib", "higher"):
                values = -values
            span = values.max() - values.min()
            norm = (values - values.min()) / span if span > 0 else values * 0.0
            score += norm.to_numpy() * m.get("weight", 1) / total_weight
        name = f"difficulty_score_m{i}"
        names.append(name)
        scores = pd.DataFrame({id_col: frame[id_col], name: score})
        merged = scores if merged is None else merged.merge(scores, on=id_col, how="outer")
    merged["difficulty_score"] = merged[names].mean(axis=1)
    merged["n_models"] = merged[names].notna().sum(axis=1)
    merged.sort_values(id_col).to_parquet(out, index=False)


def _one(contender: str, data_dir: Path, out: Path) -> None:
    runner = {"io_floor": run_io_floor, "pandas": run_pandas, "io_floor_streaming": run_io_floor_streaming}
    runner[contender](data_dir, out)


def _timed(contender: str, data_dir: Path, out: Path, memory_limit: str | None) -> dict:
    """Wall time and peak summed RSS of the process tree of one run in a fresh process."""
    if contender == "kscore":
        command = kscore_command(data_dir, out)
    elif contender == "kscore_partitioned":
        command = kscore_command(data_dir, out, memory_limit or "1GiB")
    else:
        command = [sys.executable, __file__, str(data_dir), "--one", contender, "--out", str(out)]
    code, wall, peak = run_measured(command, stdout=subprocess.DEVNULL)
    if code != 0:
        raise SystemExit(f"{contender} failed with exit code {code}")
    return {"wall_s": wall, "peak_mib": peak / 2**20}


def _bitwise_equal(a: Path, b: Path) -> bool:
    """Same schema, rows and values (floats bit for bit), read one column at a time."""
    if pl.read_parquet_schema(a) != pl.read_parquet_schema(b):
        return False
    for name in pl.read_parquet_schema(a):
        x = pl.read_parquet(a, columns=[name]).to_series()
        y = pl.read_parquet(b, columns=[name]).to_series()
        if not x.is_null().equals(y.is_null()):
            return False
        if x.dtype.is_float():
            if not np.array_equal(*(s.fill_null(0.0).to_numpy().view(np.int64) for s in (x, y))):
                return False
        elif not x.equals(y):
            return False
    return True


def _max_difference(kscore_out: Path, pandas_out: Path) -> float:
    ours = pl.read_parquet(kscore_out).sort("id")
    theirs = pl.read_parquet(pandas_out).sort("id")
    model_columns = sorted(c for c in ours.columns if c.startswith("difficulty_score_"))
    their_columns = sorted(c for c in theirs.columns if c.startswith("difficulty_score_"))
    assert ours.height == theirs.height and ours["id"].equals(theirs["id"])
    worst = float((ours["difficulty_score"] - theirs["difficulty_score"]).abs().max())
    for a, b in zip(model_columns, their_columns, strict=True):
        worst = max(worst, float((ours[a] - theirs[b]).abs().max()))
    return worst


def _help_seconds(repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "kscore", "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--contenders", nargs="+", default=list(CONTENDERS), choices=ALL)
    parser.add_argument("--memory-limit", help="kscore_partitioned's --memory-limit (default 1GiB)")
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the outputs (default: /tmp)")
    parser.add_argument("--one", choices=["io_floor", "pandas", "io_floor_streaming"], help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        _one(args.one, args.data_dir, args.out)
        return
    runs: dict[str, list[dict]] = {c: [] for c in args.contenders}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        outs = {c: Path(tmp) / f"{c}.parquet" for c in args.contenders}
        for _ in range(args.repeats):
            for contender in args.contenders:
                runs[contender].append(_timed(contender, args.data_dir, outs[contender], args.memory_limit))
                print(contender, runs[contender][-1], file=sys.stderr, flush=True)
        ours = next((c for c in ("kscore", "kscore_partitioned") if c in args.contenders), None)
        difference = (
            _max_difference(outs[ours], outs["pandas"]) if ours and "pandas" in args.contenders else None
        )
        same = (
            _bitwise_equal(outs["kscore"], outs["kscore_partitioned"])
            if {"kscore", "kscore_partitioned"} <= set(args.contenders)
            else None
        )
    medians = {
        c: {k: statistics.median(r[k] for r in rs) for k in ("wall_s", "peak_mib")} for c, rs in runs.items()
    }
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"polars {pl.__version__}; data: {args.data_dir.name}; medians of {args.repeats} alternated runs"
    )
    print("| contender | wall s (median) | peak MiB (median) | time / io_floor | memory / io_floor |")
    print("|---|---|---|---|---|")
    floor = medians.get("io_floor") or medians.get("io_floor_streaming")
    for c, m in medians.items():
        time_ratio = f"{m['wall_s'] / floor['wall_s']:.2f}x" if floor else "-"
        mem_ratio = f"{m['peak_mib'] / floor['peak_mib']:.2f}x" if floor else "-"
        print(f"| {c} | {m['wall_s']:.2f} | {m['peak_mib']:.0f} | {time_ratio} | {mem_ratio} |")
    if "pandas" in medians and "kscore" in medians:
        print(f"pandas / kscore time: {medians['pandas']['wall_s'] / medians['kscore']['wall_s']:.1f}x")
    if same is not None:
        print(f"kscore_partitioned's file equals kscore's (in memory), bitwise: {same}")
    if difference is not None:
        print(f"max |{ours} - pandas| over all score columns: {difference:.3g}")
    print(f"kscore --help: {_help_seconds(7):.3f} s (median of 7)")


if __name__ == "__main__":
    main()
