"""Benchmark `kscore difficulty --engine ray` against the local engine, side by side.

Each run is the real console script in its own process, the contenders alternated over --repeats
rounds in one session; the medians and the ratio are printed as a Markdown table, and the ray
engine's file is checked bitwise against the local engine's.

    python tests/bench/make_difficulty_data.py /tmp/bench10m --rows 10000000
    # the cost of the engine: a local Ray instance (started by kscore) against the local engine
    python tests/bench/bench_ray.py /tmp/bench10m --repeats 3
    # against an instance started before the timing (`ray start --head`, then --ray-address)
    python tests/bench/bench_ray.py /tmp/bench10m --started --repeats 5
    # against the local engine on the same partitioned plan (--memory-limit 1GiB)
    python tests/bench/bench_ray.py /tmp/bench10m --contenders local_partitioned ray --repeats 3
    # scaling: simulated nodes of --cpus-per-node CPUs each (ray.cluster_utils.Cluster on this machine)
    # the driver's own memory on a running two-node cluster: one output file (the driver writes it)
    # against a dataset DIR/ (each task writes its part)
    python tests/bench/bench_ray.py /tmp/bench100m --driver --nodes 2 --repeats 1 --memory-limit 4GiB
    # the same with outputs in object storage too (one object; a prefix, each task writing its part)
    python tests/bench/bench_ray.py /tmp/bench10m --driver --s3 --nodes 2 --repeats 3 --memory-limit 4GiB
    python tests/bench/bench_ray.py /tmp/bench30m --nodes 1 2 --cpus-per-node 1 --repeats 3

With --nodes, each cluster is started before its runs (not timed) and kscore connects to it with
--ray-address; the efficiency of k nodes is time(1 node) / (k x time(k nodes)).
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

from bench_difficulty import _bitwise_equal, kscore_command
from peak import run_measured


def _run(data_dir: Path, out: Path, engine: str, address: str | None, memory_limit: str) -> dict:
    if engine == "local_partitioned":  # the local engine on the ray engine's plan (forced by a low limit)
        engine, memory_limit = "local", "1GiB"
    command = [*kscore_command(data_dir, out, memory_limit), "--engine", engine]
    if address:
        command += ["--ray-address", address]
    code, wall, peak = run_measured(command, stdout=subprocess.DEVNULL)
    if code != 0:
        raise SystemExit(f"{engine} failed with exit code {code}")
    return {"wall_s": wall, "peak_mib": peak / 2**20}


def _engine_cost(args: argparse.Namespace, tmp: Path) -> None:
    times: dict[str, list[dict]] = {engine: [] for engine in args.contenders}
    address, started = None, None
    if args.started:  # a Ray instance of this machine's cores, started before the timing (as
        # `ray start --head`), kscore connecting to it; its start and stop are not timed
        import ray
        from ray.cluster_utils import Cluster

        began = time.perf_counter()
        node = {"num_cpus": os.cpu_count(), "object_store_memory": args.object_store_mib * 2**20}
        started = Cluster(initialize_head=True, head_node_args=node)
        started.wait_for_nodes(timeout=120)
        address = started.address
        print(f"Ray instance started in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    try:
        for _ in range(args.repeats):
            for engine in times:  # alternated: the machine's noise falls on both
                out = tmp / f"{engine}.parquet"
                on = address if engine == "ray" else None
                times[engine].append(_run(args.data_dir, out, engine, on, args.memory_limit))
                print(engine, times[engine][-1], file=sys.stderr, flush=True)
    finally:
        if started is not None:
            began = time.perf_counter()
            ray.shutdown()
            started.shutdown()
            print(f"Ray instance stopped in {time.perf_counter() - began:.1f} s", file=sys.stderr)
    same = _bitwise_equal(tmp / f"{args.contenders[0]}.parquet", tmp / "ray.parquet")
    local = statistics.median(t["wall_s"] for t in times[args.contenders[0]])
    print(f"\n{args.data_dir.name}: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"| engine | median s | runs | peak MiB (driver tree) | vs {args.contenders[0]} |")
    print("|---|---|---|---|---|")
    for engine, runs in times.items():
        wall = statistics.median(t["wall_s"] for t in runs)
        peak = max(t["peak_mib"] for t in runs)
        listed = ", ".join(f"{t['wall_s']:.1f}" for t in runs)
        print(f"| {engine} | {wall:.1f} | {listed} | {peak:.0f} | {wall / local:.2f}x |")
    print(f"\nray output equals {args.contenders[0]} bitwise: {same}")


def _scaling(args: argparse.Namespace, tmp: Path) -> None:
    import ray
    from ray.cluster_utils import Cluster

    node = {"num_cpus": args.cpus_per_node, "object_store_memory": args.object_store_mib * 2**20}
    walls: dict[int, list[float]] = {k: [] for k in args.nodes}
    for _ in range(args.repeats):
        for k in args.nodes:  # alternated
            cluster = Cluster(initialize_head=True, head_node_args=node)
            for _ in range(k - 1):
                cluster.add_node(**node)
            cluster.wait_for_nodes(timeout=120)
            try:
                out = tmp / f"ray{k}.parquet"
                walls[k].append(_run(args.data_dir, out, "ray", cluster.address, args.memory_limit)["wall_s"])
                print(k, "nodes", walls[k][-1], file=sys.stderr, flush=True)
            finally:
                ray.shutdown()
                cluster.shutdown()
    one = statistics.median(walls[args.nodes[0]]) * args.nodes[0]
    cores = os.cpu_count()
    print(f"\n{args.data_dir.name}: nodes of {args.cpus_per_node} CPU(s) on one machine, {cores} cores")
    print("| nodes | median s | runs | efficiency |")
    print("|---|---|---|---|")
    for k, runs in walls.items():
        wall = statistics.median(runs)
        listed = ", ".join(f"{w:.1f}" for w in runs)
        print(f"| {k} | {wall:.1f} | {listed} | {one / (k * wall):.2f} |")


def _driver(args: argparse.Namespace, tmp: Path) -> None:
    """The driver process's own peak memory (the cluster's workers apart) on a cluster started
    before the runs, writing one Parquet file (through the driver) and a dataset `DIR/` (written
    by the tasks), alternated; the outputs' rows compared. With --s3, also one object and a
    dataset prefix in an S3 stand-in (moto, on 127.0.0.1, holding the objects in this process)."""
    import polars as pl
    import ray
    from ray.cluster_utils import Cluster

    node = {"num_cpus": args.cpus_per_node, "object_store_memory": args.object_store_mib * 2**20}
    cluster = Cluster(initialize_head=True, head_node_args=node)
    for _ in range(args.nodes[0] - 1):
        cluster.add_node(**node)
    cluster.wait_for_nodes(timeout=120)
    outputs = {"file": str(tmp / "out.parquet"), "DIR/": f"{tmp / 'out'}/"}
    options: dict[str, str] = {}
    server = None
    if args.s3:
        from moto.server import ThreadedMotoServer
        from pyarrow import fs

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        options = {
            "aws_endpoint_url": f"http://{host}:{port}", "aws_region": "us-east-1",
            "aws_access_key_id": "bench", "aws_secret_access_key": "bench",
        }  # fmt: skip
        s3 = fs.S3FileSystem(
            endpoint_override=f"{host}:{port}", scheme="http", region="us-east-1", access_key="bench",
            secret_key="bench", allow_bucket_creation=True,
        )  # fmt: skip
        s3.create_dir("bench")
        outputs |= {"s3 object": "s3://bench/out.parquet", "s3 prefix/": "s3://bench/out/"}
    runs: dict[str, list[tuple[float, float]]] = {kind: [] for kind in outputs}
    try:
        for _ in range(args.repeats):
            for kind, out in outputs.items():
                command = [*kscore_command(args.data_dir, Path("OUT"), args.memory_limit), "--engine", "ray"]
                command[command.index("OUT")] = out
                command += ["--ray-address", cluster.address]
                if out.startswith("s3://"):
                    command += [f"--storage-option={key}={value}" for key, value in options.items()]
                code, wall, peak = run_measured(command, root_only=True, stdout=subprocess.DEVNULL)
                if code != 0:
                    raise SystemExit(f"{kind} failed with exit code {code}")
                runs[kind].append((wall, peak / 2**20))
                print(kind, runs[kind][-1], file=sys.stderr, flush=True)
        expected = pl.scan_parquet(tmp / "out.parquet").collect()
        same = expected.equals(pl.scan_parquet(tmp / "out" / "*.parquet").collect())
        if server is not None:
            read = {**options, "aws_allow_http": "true"}
            for out in ("s3://bench/out.parquet", "s3://bench/out/*.parquet"):
                same = same and expected.equals(pl.scan_parquet(out, storage_options=read).collect())
    finally:
        ray.shutdown()
        cluster.shutdown()
        if server is not None:
            server.stop()
    print(
        f"\n{args.data_dir.name}: {args.nodes[0]} nodes of {args.cpus_per_node} CPU(s), "
        f"{os.cpu_count()} cores"
    )
    print("| output | median s | driver peak MiB (max) | runs (s, MiB) |")
    print("|---|---|---|---|")
    for kind, measured in runs.items():
        listed = ", ".join(f"{w:.1f} s {m:.0f}" for w, m in measured)
        wall = statistics.median(w for w, _ in measured)
        print(f"| `{kind}` | {wall:.1f} | {max(m for _, m in measured):.0f} | {listed} |")
    print(f"\nthe same rows: {same}")


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory-limit", default="8GiB", help="kscore's --memory-limit for both engines")
    parser.add_argument(
        "--contenders", nargs="+", default=["local", "ray"], choices=["local", "local_partitioned", "ray"]
    )
    parser.add_argument("--nodes", type=int, nargs="+", help="scaling: cluster sizes to compare")
    parser.add_argument("--driver", action="store_true", help="the driver's own memory, file against DIR/")
    parser.add_argument(
        "--started", action="store_true", help="ray: against an instance started before the timing"
    )
    parser.add_argument("--s3", action="store_true", help="--driver: also S3 outputs (a moto server)")
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--object-store-mib", type=int, default=2048)
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the outputs (default: /tmp)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.tmp) as folder:
        if args.driver:
            _driver(args, Path(folder))
        else:
            (_scaling if args.nodes else _engine_cost)(args, Path(folder))


if __name__ == "__main__":
    main()
