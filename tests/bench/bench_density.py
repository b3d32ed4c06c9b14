"""Benchmark the KDE stage (all three scores) and the whole `embed-scores --reducer none` run.

    python tests/bench/bench_density.py kde --rows 1000000 --repeats 3
    python tests/bench/bench_density.py cli --rows 1000000      # 1M train + 1M reference rows
    # the KDE stage on Ray (simulated nodes of --cpus-per-node CPUs) against this machine's threads
    python tests/bench/bench_density.py engines --rows 10000000 --nodes 1 2 --cpus-per-node 1
    # the KDE stage on a running Ray instance: the driver's own CPU seconds (`ray start --head`
    # first)
    python tests/bench/bench_density.py driver --rows 5000000 --ray-address 127.0.0.1:6379

`kde` also checks the accuracy rules on a random subsample against scipy.stats.gaussian_kde and
measures scipy's cost per (train, reference) pair at a size it finishes, to extrapolate its time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def mixture(rows: int, rng: np.random.Generator, centers: np.ndarray, far_share: float = 0.001) -> np.ndarray:
    """Clusters of different widths (like a UMAP map), plus a share of points far from everything."""
    label = rng.integers(0, len(centers), rows)
    width = np.linspace(0.3, 2.0, len(centers))[label, None]
    points = centers[label] + rng.normal(size=(rows, 2)) * width
    far = rng.random(rows) < far_share
    points[far] = rng.uniform(-300, 300, (int(far.sum()), 2))
    return points


def make_data(rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 12, (25, 2))
    train = mixture(rows, rng, centers)
    reference = mixture(rows, rng, centers, far_share=0.0)
    difficulty = np.clip(rng.beta(1, 4, rows) + (np.abs(reference[:, 0]) > 15) * 0.5, 0, 1)
    return train, reference, difficulty


def bench_kde(rows: int, repeats: int, check: int) -> dict:
    from scipy.stats import gaussian_kde

    from kscore.core.density import kde_scores

    train, reference, difficulty = make_data(rows)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        scores = kde_scores(train, reference, difficulty, "scott")
        times.append(time.perf_counter() - start)
    pick = np.random.default_rng(1).choice(rows, size=check, replace=False)
    pick = np.union1d(pick, np.flatnonzero(np.abs(train).max(axis=1) > 100)[:50])  # far points too
    kde = gaussian_kde(reference.T)
    start = time.perf_counter()
    exact_log = kde.logpdf(train[pick].T)
    scipy_seconds = time.perf_counter() - start
    weighted = gaussian_kde(reference.T, weights=difficulty)
    exact_potential = weighted.pdf(train[pick].T)
    # local difficulty: kernel-weighted mean with the representation kernel, exactly
    inverse = np.linalg.inv(kde.covariance)
    local_exact = np.empty(len(pick))
    for i, point in enumerate(train[pick]):
        delta = reference - point
        log_k = -0.5 * np.einsum("ni,ij,nj->n", delta, inverse, delta)
        k = np.exp(log_k - log_k.max())
        local_exact[i] = (k * difficulty).sum() / k.sum()
    ours_log = scores["representation"][pick]
    density = np.exp(exact_log)
    region = density >= 1e-6 * density.max()
    log_error = np.abs(ours_log - exact_log)
    potential_region = exact_potential >= 1e-6 * exact_potential.max()
    potential_error = np.abs(scores["potential"][pick] - exact_potential) / np.where(
        exact_potential > 0, exact_potential, 1.0
    )
    pairs = len(pick) * rows
    return {
        "rows": rows,
        "kscore_seconds_median": statistics.median(times),
        "kscore_runs": times,
        "checked_points": len(pick),
        "log_density_max_abs_error_in_region": float(log_error[region].max()),
        "log_density_max_rel_error_in_tails": float((log_error / np.abs(exact_log))[~region].max())
        if (~region).any()
        else 0.0,
        "all_finite": bool(np.isfinite(scores["representation"]).all()),
        "potential_max_rel_error_in_region": float(potential_error[potential_region].max()),
        "local_max_abs_error_in_region": float(np.abs(scores["local"][pick] - local_exact)[region].max()),
        "scipy_ns_per_pair": scipy_seconds / pairs * 1e9,
        "scipy_extrapolated_seconds_unweighted": scipy_seconds / pairs * rows * rows,
        "speedup_vs_scipy_representation_only": (scipy_seconds / pairs * rows * rows)
        / statistics.median(times),
    }


def bench_cli(rows: int) -> dict:
    import polars as pl

    train, reference, difficulty = make_data(rows)
    folder = Path(tempfile.mkdtemp(prefix="kscore-embed-"))
    ids = np.arange(2 * rows)
    pl.DataFrame(
        {
            "id": ids,
            "split": np.repeat(["train", "test"], rows),
            "xy": pl.Series(np.vstack([train, reference])).cast(pl.Array(pl.Float64, 2)),
        }
    ).write_parquet(folder / "emb.parquet")
    pl.DataFrame({"id": ids[rows:], "difficulty_score": difficulty}).write_parquet(folder / "d.parquet")
    kscore = Path(sys.executable).with_name("kscore")
    command = [
        str(kscore),
        "embed-scores",
        str(folder / "emb.parquet"),
        "--reducer",
        "none",
        "--difficulty",
        str(folder / "d.parquet"),
        "-o",
        str(folder / "out.parquet"),
        "--json",
    ]
    times = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, env=os.environ)
        times.append(time.perf_counter() - start)
    return {"rows_total": 2 * rows, "seconds_median": statistics.median(times), "runs": times}


def bench_engines(rows: int, repeats: int, nodes: list[int], cpus_per_node: int, store_mib: int) -> dict:
    """The KDE stage (`_scores`) on this machine's threads and as Ray tasks on clusters of `nodes`
    simulated nodes (started before their runs, not timed), alternated; the scores must be equal."""
    import ray
    from ray.cluster_utils import Cluster

    from kscore.core.density import kde_scores
    from kscore.engines.ray import RayExecutor

    train, reference, difficulty = make_data(rows)
    local = kde_scores(train, reference, difficulty, "scott")
    out: dict = {"rows": rows, "cores": os.cpu_count(), "cpus_per_node": cpus_per_node}
    threads: list[float] = []
    for k in nodes:
        node = {"num_cpus": cpus_per_node, "object_store_memory": store_mib * 2**20}
        cluster = Cluster(initialize_head=True, head_node_args=node)
        for _ in range(k - 1):
            cluster.add_node(**node)
        cluster.wait_for_nodes(timeout=120)
        ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
        try:
            on_ray = RayExecutor()
            kde_scores(train[:1000], reference[:1000], difficulty[:1000], "scott", executor=on_ray)  # warm up
            times = []
            for _ in range(repeats):  # alternated with the threads
                start = time.perf_counter()
                kde_scores(train, reference, difficulty, "scott")
                threads.append(time.perf_counter() - start)
                start = time.perf_counter()
                scores = kde_scores(train, reference, difficulty, "scott", executor=on_ray)
                times.append(time.perf_counter() - start)
                print(k, "nodes", threads[-1], times[-1], file=sys.stderr, flush=True)
            same = all(
                np.array_equal(scores[key], local[key]) for key in ("representation", "local", "potential")
            )
            out[f"ray_{k}_nodes"] = {
                "seconds_median": statistics.median(times),
                "runs": times,
                "bitwise_equal": same,
            }
        finally:
            ray.shutdown()
            cluster.shutdown()
    out["threads"] = {"seconds_median": statistics.median(threads), "runs": threads}
    return out


def bench_driver(rows: int, repeats: int, address: str) -> dict:
    """The KDE stage as Ray tasks on the running instance at `address`: the wall time and the
    driver's own CPU seconds (this process: its threads that talk to Ray included, the workers
    apart), after one run to warm the workers."""
    import ray

    import kscore
    from kscore.core.density import kde_scores
    from kscore.engines.ray import RayExecutor

    train, reference, difficulty = make_data(rows)
    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        on_ray = RayExecutor()
        kde_scores(train[:100_000], reference[:100_000], difficulty[:100_000], "scott", executor=on_ray)
        walls, cpus = [], []
        for _ in range(repeats):
            cpu, wall = time.process_time(), time.perf_counter()
            kde_scores(train, reference, difficulty, "scott", executor=on_ray)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
    finally:
        ray.shutdown()
    return {
        "kscore": kscore.__version__,
        "rows": rows,
        "wall_median": statistics.median(walls),
        "driver_cpu_median": statistics.median(cpus),
        "walls": walls,
        "driver_cpus": cpus,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["kde", "cli", "engines", "driver"])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check", type=int, default=400, help="points checked against scipy")
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2], help="engines: cluster sizes")
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--object-store-mib", type=int, default=3072)
    parser.add_argument("--ray-address", help="driver: a running Ray instance")
    args = parser.parse_args()
    if args.mode == "driver":
        result = bench_driver(args.rows, args.repeats, args.ray_address)
    elif args.mode == "engines":
        result = bench_engines(args.rows, args.repeats, args.nodes, args.cpus_per_node, args.object_store_mib)
    else:
        result = (
            bench_kde(args.rows, args.repeats, args.check) if args.mode == "kde" else bench_cli(args.rows)
        )
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
