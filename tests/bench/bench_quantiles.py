"""Exact quantiles of scores left in Ray's object store, the way `embed-scores -o DIR/` finds its
summary's on a cluster.

Puts N values of three fields (the three scores: normal, uniform, a few ties) into Ray's object
store in pieces of `--piece` rows, then, alternated:

- `tasks`: `quantiles_of_pieces` (0.8.18): a task a piece counts each field's values in narrowing
  ranges of their order, and only the counts and the last few values come to the driver;
- `driver`: the driver gathers each field whole and takes `exact_quantiles` of it: what 0.8.17 did
  where a quantile's band missed (it held the values inside the bands, 4% of each field, always).

Reports the wall time, the rounds, and the driver's own peak RSS over its RSS before the run
(psutil, every 50 ms), and checks that both give the same numbers. Starts a local Ray instance of
`--cpus` CPUs before the timing.

    python tests/bench/bench_quantiles.py --rows 30000000 --piece 1000000 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

import numpy as np
import psutil
import ray

from kscore.core import order_stats
from kscore.engines import Pieces
from kscore.engines.ray import fetched
from kscore.plan.embeddings_ray import quantiles_of_pieces

QS = (0.0, 0.1, 0.5, 0.9, 1.0)


def put_pieces(rows: int, piece: int) -> Pieces:
    rng = np.random.default_rng(0)
    items, lengths = [], []
    for start in range(0, rows, piece):
        n = min(piece, rows - start)
        fields = (rng.normal(size=n) * 3.0, rng.random(n), rng.integers(0, 50, n) / 49)
        items.append(ray.put(fields))
        lengths.append(n)
    return Pieces(tuple(items), tuple(lengths), fetched)


def by_driver(pieces: Pieces) -> list[list[float | None]]:
    return [order_stats.exact_quantiles(pieces.rows(slice(0, pieces.count))[field], QS) for field in range(3)]


def measured(run: Any) -> tuple[Any, float, int]:
    """(the result, wall seconds, this process's peak RSS over its RSS before)."""
    me = psutil.Process()
    base = me.memory_info().rss
    peak = base
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, me.memory_info().rss)
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    try:
        result = run()
    finally:
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
    return result, wall, peak - base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--piece", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    ray.init(num_cpus=args.cpus, object_store_memory=4 * 2**30, logging_level="ERROR", log_to_driver=False)
    pieces = put_pieces(args.rows, args.piece)
    rounds: list[int] = []
    counting = order_stats.quantiles_by_counting

    def counted(count: Any, *rest: Any) -> Any:
        def each(requests: Any) -> Any:
            rounds.append(1)
            return count(requests)

        return counting(each, *rest)

    order_stats.quantiles_by_counting = counted  # type: ignore[assignment]
    import kscore.plan.embeddings_ray as plan

    plan.quantiles_by_counting = counted  # type: ignore[assignment]
    ways = {"tasks": lambda: quantiles_of_pieces(pieces, [0, 1, 2], QS), "driver": lambda: by_driver(pieces)}
    quantiles_of_pieces(pieces, [0, 1, 2], QS)  # the workers started, not counted
    times: dict[str, list[float]] = {way: [] for way in ways}
    peaks: dict[str, list[int]] = {way: [] for way in ways}
    found = {}
    for _ in range(args.repeats):
        for way, run in ways.items():
            rounds.clear()
            found[way], wall, peak = measured(run)
            times[way].append(wall)
            peaks[way].append(peak)
            print(f"{way}: {wall:.2f} s, peak {peak / 2**20:.0f} MiB over its start, rounds {len(rounds)}")
    assert found["tasks"] == found["driver"], (found["tasks"], found["driver"])
    for way in ways:
        print(
            f"{way}: median {statistics.median(times[way]):.2f} s "
            f"({', '.join(f'{t:.2f}' for t in times[way])}), "
            f"peak {max(peaks[way]) / 2**20:.0f} MiB over its start"
        )
    ray.shutdown()


if __name__ == "__main__":
    main()
