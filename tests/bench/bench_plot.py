"""Benchmark `kscore plot` on a 1,000,000-point map (drawn as densities beyond 100,000 points).

python tests/bench/bench_plot.py --rows 1000000 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 10, (30, 2))
    label = rng.integers(0, 30, args.rows)
    xy = centers[label] + rng.normal(size=(args.rows, 2))
    train = rng.random(args.rows) < 0.6
    representation = np.where(train, -0.5 * ((xy - centers[label]) ** 2).sum(axis=1), np.nan)
    folder = Path(tempfile.mkdtemp(prefix="kscore-plot-"))
    pl.DataFrame(
        {
            "id": np.arange(args.rows),
            "split": np.where(train, "train", "test"),
            "map_x": xy[:, 0],
            "map_y": xy[:, 1],
            "representation_score": pl.Series(representation, nan_to_null=True),
        }
    ).write_parquet(folder / "scores.parquet")
    kscore = Path(sys.executable).with_name("kscore")
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        subprocess.run(
            [str(kscore), "plot", str(folder / "scores.parquet"), "-o", str(folder / "map.png")],
            check=True,
            capture_output=True,
        )
        times.append(time.perf_counter() - start)
    print(
        f"kscore plot, {args.rows} points: median {statistics.median(times):.2f} s over {args.repeats} runs "
        f"({', '.join(f'{t:.2f}' for t in times)}); PNG {(folder / 'map.png').stat().st_size // 1024} KiB"
    )


if __name__ == "__main__":
    main()
