"""Peak memory and time of `kscore embed-scores` on embeddings larger than its memory limit.

Writes N x D float32 embeddings (a Parquet list column, 70% train) under a folder, then runs the
console script with --memory-limit, sampling the summed RSS of its process tree every 50 ms (psutil).
The stage lines kscore prints on stderr give the split of the time.

    python tests/bench/bench_embed_memory.py /tmp/emb1m --rows 1000000 --dim 384 --memory-limit 3GiB

With `--ray-nodes N`, a local cluster of N nodes (`ray.cluster_utils.Cluster`, `--cpus-per-node`
each) is started first and kscore runs on it (`--engine ray`), writing a dataset `DIR/`; the peak
is then the driver process's own (the cluster's workers apart):

    python tests/bench/bench_embed_memory.py /tmp/emb5m --rows 5000000 --memory-limit 2GiB --ray-nodes 2

`--text-bytes N` adds a text column of N bytes a row (what the output carries along, unscored):

    python tests/bench/bench_embed_memory.py /tmp/embt --rows 1000000 --dim 64 --ray-nodes 2 --text-bytes 1000

`--repeated S` makes a share S of the rows copies of others (of the same 500,000 rows):

    python tests/bench/bench_embed_memory.py /tmp/embr --rows 3000000 --dim 32 --ray-nodes 2 --repeated 0.1

`--save-map FILE` saves the map; `--map FILE` places the rows on it instead of fitting one:

    python tests/bench/bench_embed_memory.py /tmp/embr --rows 3000000 --dim 32 --ray-nodes 2 --map map.parquet
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from peak import run_measured


def embedding_part(start: int, data: np.ndarray, rng: np.random.Generator, text_bytes: int = 0) -> Any:
    """Rows `start`... of the input as Arrow: ids, a split (70% train) and the embeddings `data`,
    and with `text_bytes` a text of that many bytes a row."""
    n, dim = data.shape
    frame = pl.DataFrame(
        {
            "id": np.arange(start, start + n),
            "split": np.where(rng.random(n) < 0.7, "train", "val"),
            "embedding": pl.Series(data).reshape((n, dim)).cast(pl.List(pl.Float32)),
        }
    )
    if text_bytes:
        padding = "x" * max(text_bytes - 12, 0)
        frame = frame.with_columns(
            pl.format("{} {}", pl.col("id").cast(pl.String).str.zfill(11), pl.lit(padding)).alias("text")
        )
    return frame.to_arrow()


def make(folder: Path, rows: int, dim: int, text_bytes: int = 0, repeated: float = 0.0) -> Path:
    """The input (made once): `repeated` of each 500,000 rows' rows copy another of them."""
    text = f"_text{text_bytes}" if text_bytes else ""
    path = folder / f"emb_{rows}x{dim}{text}{f'_rep{repeated:g}' if repeated else ''}.parquet"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3, size=(20, dim)).astype(np.float32)
    writer = None  # written part by part: 10M x 384 is 15 GB, more than this machine could hold twice
    for start in range(0, rows, 500_000):
        n = min(500_000, rows - start)
        data = centers[rng.integers(0, 20, n)] + rng.normal(0, 1, size=(n, dim)).astype(np.float32)
        if repeated:
            copies = int(repeated * n)
            data[rng.choice(n, copies, replace=False)] = data[rng.integers(0, n, copies)]
        part = embedding_part(start, data, rng, text_bytes)
        if writer is None:
            writer = pq.ParquetWriter(path.with_suffix(".partial"), part.schema)
        writer.write_table(part)
    writer.close()
    path.with_suffix(".partial").rename(path)  # an interrupted run leaves no file to reuse
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--memory-limit", default="3GiB")
    parser.add_argument("--reducer", default="umap")
    parser.add_argument("--ray-nodes", type=int, default=0, help="run on a local cluster of N nodes")
    parser.add_argument("--cpus-per-node", type=int, default=1)
    parser.add_argument("--object-store-mib", type=int, default=2048)
    parser.add_argument("--text-bytes", type=int, default=0, help="a text column of N bytes a row")
    parser.add_argument("--repeated", type=float, default=0.0, help="the share of rows that repeat another")
    parser.add_argument("--save-map", type=Path, help="save the map there (kscore's --save-map)")
    parser.add_argument("--map", type=Path, help="place the rows on a saved map (kscore's --map)")
    args = parser.parse_args()
    path = make(args.folder, args.rows, args.dim, args.text_bytes, args.repeated)
    kscore = Path(sys.executable).with_name("kscore")
    out = f"{args.folder / 'out'}/" if args.ray_nodes else str(args.folder / "out.parquet")
    command = [
        str(kscore), "embed-scores", str(path), "--reducer", args.reducer,
        "--memory-limit", args.memory_limit, "-o", out, "--json",
    ]  # fmt: skip
    if args.save_map:
        command += ["--save-map", str(args.save_map)]
    if args.map:
        command += ["--map", str(args.map)]
    if not args.ray_nodes:
        code, wall, peak = run_measured(command, stdout=subprocess.DEVNULL)
        where = "the process tree"
    else:
        import ray
        from ray.cluster_utils import Cluster

        node = {"num_cpus": args.cpus_per_node, "object_store_memory": args.object_store_mib * 2**20}
        cluster = Cluster(initialize_head=True, head_node_args=node)
        for _ in range(args.ray_nodes - 1):
            cluster.add_node(**node)
        cluster.wait_for_nodes(timeout=120)
        try:
            command += ["--engine", "ray", "--ray-address", cluster.address]
            code, wall, peak = run_measured(command, root_only=True, stdout=subprocess.DEVNULL)
        finally:
            ray.shutdown()
            cluster.shutdown()
        where = f"the driver alone ({args.ray_nodes} nodes of {args.cpus_per_node} CPU)"
    print(
        f"{args.rows} x {args.dim}, --memory-limit {args.memory_limit}, reducer {args.reducer}: "
        f"exit {code}, {wall:.1f} s, peak RSS of {where} {peak / 2**20:.0f} MiB"
    )


if __name__ == "__main__":
    main()
