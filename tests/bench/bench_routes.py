"""How the Ray engine finds repeated embeddings and routes the rows to their UMAP transform batches.

embed-scores transforms each distinct row once, in batches of 50,000 of them. Ray tasks read the
input part by part and hash its rows. Then, two ways (alternated here):

- `input` (0.8.8): tasks of ranges of hash values find the rows whose hash an earlier row has and
  send the driver only those (and their first rows); the distinct rows are batched in the input's
  order, so a part's rows go to the one or two batches it overlaps (since 0.8.18 tasks compare the
  rows and make the batches' row numbers from the repeated rows; run from an older checkout, the
  script takes that version's way);
- `hash` (0.8.7 and earlier; still how a map saved by those versions is used): the driver gathers
  every hash, sorts them (`np.unique`), and batches the distinct rows in the order of their
  hashes, so every part sends a piece to every batch.

Then a task per part reads the part again and routes each row to its batch (`TaskRows.route`),
one object per (part, batch) pair. Writes N x D float32 embeddings with a share of them repeats of
earlier rows (a Parquet file of 50,000-row groups), starts a local Ray instance before the timing,
and, after a first round not counted, reports each stage's time, the routed objects and the
driver's peak RSS over its RSS before the run (psutil, every 50 ms). No UMAP runs.

    python tests/bench/bench_routes.py /tmp/routes --rows 5000000 --dim 64 --repeats 3

With `--sample`: the fit sample (20,000 rows) read by a pass of its own before the routing (0.8.8)
against sent to the driver by the routing pass (0.8.9), alternated:

    python tests/bench/bench_routes.py /tmp/routes --rows 1000000 --dim 384 --repeated 0 --sample --repeats 5

With `--slots`: the route with each part's rows in a batch found as one run of its slots (0.8.11)
against every row's batch and slot looked up (0.8.10), alternated:

    python tests/bench/bench_routes.py /tmp/routes --rows 5000000 --dim 64 --repeated 0 --slots --repeats 5

With `--write`: the last stage, an `embed-scores -o DIR/` output of N rows (an id, a split, the
map and the scores; no embeddings are made) written by the driver as one part (0.8.12), by the
driver in parts of `PART_ROWS` rows (the local engine since 0.8.13) and by Ray tasks, a part each
(the ray engine since 0.8.13), alternated: the wall time and the driver's own CPU.

    python tests/bench/bench_routes.py /tmp/routes --rows 10000000 --write --repeats 5

With `--ids ADDRESS`: the rows' split and the check of their ids (SPEC section 4) two ways, alternated,
each run in a fresh process connected to the Ray instance at ADDRESS (`ray start --head` first): the
driver reads the id and split columns and checks them (0.8.15, and still where the driver writes
the output) against tasks reading them part by part (`split_by_tasks`, 0.8.16): the wall time and
the driver's peak RSS over its RSS before the stage. `--text-ids`: ids like "doc-00000001234".

    ray start --head --port 6390 --num-cpus 2
    python tests/bench/bench_routes.py /tmp/routes --rows 10000000 --dim 64 --ids 127.0.0.1:6390 --repeats 3

`--difficulty` (with `--ids`): a difficulty file of 70% of the ids too, read, checked and joined by
the driver (0.8.15) or by the tasks (0.8.16).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from bench_embed_memory import embedding_part

from kscore.core import reduction
from kscore.core.reduction import TRANSFORM_BATCH, distinct_rows
from kscore.jobs.embed_scores import _task_rows


def make(folder: Path, rows: int, dim: int, repeated: float) -> Path:
    path = folder / f"emb_{rows}x{dim}_rep{repeated:g}.parquet"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    writer = None
    seen = np.empty((0, dim), dtype=np.float32)  # earlier rows a repeat may copy (a sample of them)
    for start in range(0, rows, 250_000):
        n = min(250_000, rows - start)
        data = rng.normal(0, 1, size=(n, dim)).astype(np.float32)
        pool = np.concatenate([seen, data[: n // 2]])
        copies = rng.random(n) < min(1.0, 2 * repeated)
        copies[: n // 2] = False  # a row of the second half copies one before it: `repeated` of all
        data[copies] = pool[rng.integers(0, len(pool), int(copies.sum()))]
        seen = pool[rng.choice(len(pool), min(len(pool), 100_000), replace=False)]
        part = embedding_part(start, data, rng)
        if writer is None:
            writer = pq.ParquetWriter(path.with_suffix(".partial"), part.schema)
        writer.write_table(part, row_group_size=50_000)
    writer.close()
    path.with_suffix(".partial").rename(path)
    return path


class DriverPeak:
    """The peak RSS of this process over its RSS at the start, sampled every 50 ms."""

    def __enter__(self) -> DriverPeak:
        import psutil

        self.process = psutil.Process()
        self.base = self.peak = self.process.memory_info().rss
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()

    @property
    def mib(self) -> float:
        return (self.peak - self.base) / 2**20


def one_run(path: Path, dim: int, order: str, fit_sample: int) -> dict[str, float]:
    table = pl.scan_parquet(path)
    height = table.select(pl.len()).collect().item()
    with DriverPeak() as peak:
        start = time.perf_counter()
        rows, _ = _task_rows(table, ["embedding"], dim, height, str(path), None)
        hashed = time.perf_counter()
        if order == "input" and not hasattr(reduction, "repeated_rows"):  # 0.8.17 and before
            distinct = distinct_rows(rows, order=order)
            leaders = np.arange(len(rows)) if distinct is None else distinct[0]
            found = time.perf_counter()
            sample = np.sort(np.random.default_rng(0).choice(len(leaders), fit_sample, replace=False))
            source = rows if distinct is None else rows.subset(leaders)
            batches, _ = source.route(reduction.RestBatches(len(leaders), sample))
        elif order == "input":  # as `reduce_to_2d` does: the distinct rows made when asked for
            repeats = reduction.repeated_rows(rows)
            followers = np.empty(0, np.int64) if repeats is None else repeats[0]
            leaders = reduction.Complement(len(rows), followers)
            found = time.perf_counter()
            sample = np.sort(np.random.default_rng(0).choice(len(leaders), fit_sample, replace=False))
            source = rows if repeats is None else rows.subset(leaders)
            batches, _ = source.route(reduction.RestBatches(len(leaders), sample))
        else:  # as a map saved by 0.8.7 or earlier: the distinct rows in the order of their hashes
            distinct = distinct_rows(rows, order=order)
            leaders = np.arange(len(rows)) if distinct is None else distinct[0]
            found = time.perf_counter()
            sample = np.sort(np.random.default_rng(0).choice(len(leaders), fit_sample, replace=False))
            rest = np.setdiff1d(np.arange(len(leaders)), sample, assume_unique=True)
            step = TRANSFORM_BATCH
            batches, _ = rows.route([leaders[rest[s : s + step]] for s in range(0, len(rest), step)])
        routed = time.perf_counter()
        objects = sum(len(batch.pieces) for batch in batches)
        del batches
    return {
        "read and hash": hashed - start,
        "distinct rows": found - hashed,
        "route": routed - found,
        "objects": objects,
        "parts": len(rows.parts),
        "distinct": len(leaders),
        "driver MiB": peak.mib,
    }


def hashed_rows(path: Path, dim: int, fit_sample: int) -> tuple[Any, np.ndarray, list[np.ndarray]]:
    """The input's rows as Ray tasks read and hash them (`TaskRows`), a seeded fit sample, and the
    other rows cut into transform batches in the input's order."""
    table = pl.scan_parquet(path)
    height = table.select(pl.len()).collect().item()
    rows, _ = _task_rows(table, ["embedding"], dim, height, str(path), None)
    sample = np.sort(np.random.default_rng(0).choice(height, fit_sample, replace=False))
    rest = np.setdiff1d(np.arange(height), sample, assume_unique=True)
    return rows, sample, [rest[s : s + TRANSFORM_BATCH] for s in range(0, len(rest), TRANSFORM_BATCH)]


def sample_runs(path: Path, dim: int, fit_sample: int, repeats: int) -> None:
    """The fit sample read by a pass of its own and the batches routed (0.8.8), against the sample
    sent to the driver by the routing pass (0.8.9), alternated; the rows hashed once before."""
    rows, sample, chunks = hashed_rows(path, dim, fit_sample)
    times: dict[str, list[float]] = {"apart": [], "with the routing": []}
    for _ in range(repeats + 1):  # the first round is not counted
        for way in times:
            start = time.perf_counter()
            if way == "apart":
                fitted = rows[sample]
                batches, _ = rows.route(chunks)
            else:
                batches, fitted = rows.route(chunks, also=sample)
            times[way].append(time.perf_counter() - start)
            assert fitted is not None and fitted.shape == (fit_sample, dim)
            del batches
    for way, values in times.items():
        counted = ", ".join(f"{v:.2f}" for v in values[1:])
        print(f"sample {way}: median {statistics.median(values[1:]):.2f} s ({counted})")


def slot_runs(path: Path, dim: int, fit_sample: int, repeats: int) -> None:
    """The input-order batches routed two ways, alternated: each part's rows in a batch found by
    binary search as one run of its slots (0.8.11), against every row's batch and slot looked up in
    arrays the input's length (0.8.10; still how batches in another order are routed). The route's
    time and the peak of what the driver allocated for it (tracemalloc, which sees numpy's arrays;
    its RSS hardly moves once a first round has grown the heap); the rows hashed once before."""
    from kscore.plan.embeddings_ray import TaskRows

    rows, _, chunks = hashed_rows(path, dim, fit_sample)
    ways = {"runs of slots": TaskRows._routes, "row by row": TaskRows._scattered_routes}
    times: dict[str, list[float]] = {way: [] for way in ways}
    peaks: dict[str, list[float]] = {way: [] for way in ways}
    try:
        for _ in range(repeats + 1):  # the first round is not counted
            for way, routes in ways.items():
                TaskRows._routes = routes  # type: ignore[method-assign]
                tracemalloc.start()
                start = time.perf_counter()
                batches, _ = rows.route(chunks)
                times[way].append(time.perf_counter() - start)
                peaks[way].append(tracemalloc.get_traced_memory()[1] / 2**20)
                tracemalloc.stop()
                del batches
    finally:
        TaskRows._routes = ways["runs of slots"]  # type: ignore[method-assign]
    for way in ways:
        counted = ", ".join(f"{v:.2f}" for v in times[way][1:])
        print(
            f"route, {way}: median {statistics.median(times[way][1:]):.2f} s ({counted}), "
            f"the driver's allocations at their peak {statistics.median(peaks[way][1:]):.1f} MiB"
        )


def output_table(rows: int) -> pl.DataFrame:
    """An embed-scores output of `rows` rows: 60% train rows with their three scores."""
    rng = np.random.default_rng(0)
    train = rng.random(rows) < 0.6
    scores = {
        name: pl.Series(name, np.where(train, rng.random(rows), np.nan), nan_to_null=True)
        for name in ("representation_score", "potential_difficulty_score", "local_difficulty")
    }
    return pl.DataFrame(
        {
            "id": np.arange(rows),
            "split": pl.Series(np.where(train, "train", "val")),
            "map_x": rng.normal(size=rows).astype(np.float32),
            "map_y": rng.normal(size=rows).astype(np.float32),
            **scores,
        }
    )


def write_runs(folder: Path, rows: int, repeats: int) -> None:
    """The output written three ways, alternated, after a first round not counted."""
    import shutil

    from kscore.io import metadata_tags, part_name, write_slices
    from kscore.plan.embeddings_ray import write_parts_by_tasks

    table = output_table(rows)
    meta = {"command": "embed-scores", "rows": {"total": rows}}
    ways = {
        "driver, one part": lambda out: table.write_parquet(out / part_name(0), metadata=metadata_tags(meta)),
        "driver, parts": lambda out: write_slices(table, out, meta),
        "tasks, parts": lambda out: write_parts_by_tasks(table, str(out), metadata_tags(meta)),
    }
    times: dict[str, list[tuple[float, float]]] = {way: [] for way in ways}
    for round_ in range(repeats + 1):
        for way, write in ways.items():
            out = folder / "written"
            out.mkdir(parents=True)
            cpu, wall = time.process_time(), time.perf_counter()
            write(out)
            measured = (time.perf_counter() - wall, time.process_time() - cpu)
            shutil.rmtree(out)
            if round_:
                times[way].append(measured)
                print(way, f"{measured[0]:.2f} s, driver CPU {measured[1]:.2f} s", flush=True)
    for way, runs in times.items():
        walls, cpus = ([r[k] for r in runs] for k in (0, 1))
        print(
            f"{way}: wall {statistics.median(walls):.2f} s ({', '.join(f'{w:.2f}' for w in walls)}), "
            f"driver CPU {statistics.median(cpus):.2f} s ({', '.join(f'{c:.2f}' for c in cpus)})"
        )


def make_ids(folder: Path, rows: int, dim: int, text_ids: bool) -> Path:
    """`make`'s input with no repeated rows, its ids as text where asked for."""
    path = folder / f"ids_{rows}x{dim}{'_text' if text_ids else ''}.parquet"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    writer = None
    for start in range(0, rows, 250_000):
        n = min(250_000, rows - start)
        part = pl.from_arrow(embedding_part(start, rng.normal(0, 1, size=(n, dim)).astype(np.float32), rng))
        assert isinstance(part, pl.DataFrame)
        if text_ids:
            part = part.with_columns(
                pl.format("doc-{}", pl.col("id").cast(pl.String).str.zfill(11)).alias("id")
            )
        arrow = part.to_arrow()
        if writer is None:
            writer = pq.ParquetWriter(path.with_suffix(".partial"), arrow.schema)
        writer.write_table(arrow, row_group_size=50_000)
    assert writer is not None
    writer.close()
    path.with_suffix(".partial").rename(path)
    return path


def difficulty_of(path: Path) -> Path:
    """A difficulty output for the input at `path`: 70% of its ids (in a shuffled order) and their
    scores."""
    out = path.with_name(f"difficulty_{path.name}")
    if not out.exists():
        ids = pl.read_parquet(path, columns=["id"]).get_column("id")
        rng = np.random.default_rng(1)
        chosen = np.sort(rng.choice(len(ids), int(len(ids) * 0.7), replace=False))
        rng.shuffle(chosen)
        scores = pl.DataFrame({"id": ids.gather(chosen), "difficulty_score": rng.random(len(chosen))})
        scores.write_parquet(out, row_group_size=1_000_000)
    return out


def ids_one(path: Path, dim: int, way: str, address: str, difficulty: Path | None) -> None:
    """One split of the rows (`way`: "driver" or "tasks"; with a `difficulty` file, its check and
    join too), in this fresh process: prints its wall time and the driver's peak RSS over its RSS
    before it, as JSON."""
    import functools
    import json

    import ray

    from kscore.jobs.embed_scores import Passthrough, _difficulty_by_row, _split_rows, read_part_columns

    ray.init(address=address, log_to_driver=False)
    table = pl.scan_parquet(path)
    metadata = pq.ParquetFile(path).metadata
    from kscore.plan.embeddings_ray import parts_of_groups

    parts = parts_of_groups([metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)], dim)
    options: dict[str, Any] = dict(
        id_col="id", split_col="split", train_values=["train"], reference_values=None, source=str(path),
        progress=None,
    )  # fmt: skip
    with DriverPeak() as peak:
        start = time.perf_counter()
        if way == "driver":  # as 0.8.15 did: both files read here
            scores = None if difficulty is None else pl.read_parquet(difficulty)
            others = table.select("id", "split").collect()
            _, is_train, is_reference = _split_rows(others, None, **options)
            values = None if scores is None else _difficulty_by_row(others, None, scores, "id", is_reference)
        else:
            reader = functools.partial(read_part_columns, table, str(path), str(path))
            unread = Passthrough(
                table.select("id", "split"), ["id", "split"], ["id", "split", "embedding"], str(path), reader,
                parts, ("id", "split"), table.collect_schema()["id"],
            )  # fmt: skip
            scan = None if difficulty is None else pl.scan_parquet(difficulty)
            _, is_train, is_reference = _split_rows(pl.DataFrame(), unread, **options)
            values = (
                None if scan is None else _difficulty_by_row(pl.DataFrame(), unread, scan, "id", is_reference)
            )
        wall = time.perf_counter() - start
    ray.shutdown()
    known = -1 if values is None else int((~np.isnan(values)).sum())
    found = {"wall": wall, "driver MiB": peak.mib, "train": int(is_train.sum()), "scored": known}
    print(json.dumps(found))


def ids_runs(path: Path, dim: int, address: str, repeats: int, difficulty: Path | None) -> None:
    """`ids_one` both ways, alternated, each in a fresh process; a first round not counted."""
    import json
    import subprocess
    import sys

    runs: dict[str, list[dict[str, float]]] = {"driver": [], "tasks": []}
    for round_ in range(repeats + 1):
        for way in runs:
            command = [
                sys.executable,
                __file__,
                str(path.parent),
                "--ids-one",
                way,
                str(path),
                "--dim",
                str(dim),
            ]
            command += ["--ids", address, *(["--difficulty-file", str(difficulty)] if difficulty else [])]
            out = subprocess.run(command, check=True, capture_output=True, text=True)
            result = json.loads(out.stdout.strip().splitlines()[-1])
            print(way, result, flush=True)
            if round_:
                runs[way].append(result)
    for way, results in runs.items():
        walls = [r["wall"] for r in results]
        peaks = [r["driver MiB"] for r in results]
        print(
            f"{way}: wall median {statistics.median(walls):.2f} s ({', '.join(f'{w:.2f}' for w in walls)}), "
            f"driver peak median {statistics.median(peaks):.0f} MiB ({', '.join(f'{p:.0f}' for p in peaks)})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--repeated", type=float, default=0.1, help="share of rows repeating an earlier one")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fit-sample", type=int, default=20_000)
    parser.add_argument(
        "--sample", action="store_true", help="the fit sample's read: apart or with the routing"
    )
    parser.add_argument(
        "--slots", action="store_true", help="the route: runs of slots or every row's batch and slot"
    )
    parser.add_argument("--write", action="store_true", help="the output: by the driver or the tasks")
    parser.add_argument("--ids", metavar="ADDRESS", help="the split of the rows: by the driver or the tasks")
    parser.add_argument("--text-ids", action="store_true", help="with --ids: text ids")
    parser.add_argument("--difficulty", action="store_true", help="with --ids: a difficulty file too")
    parser.add_argument("--ids-one", nargs=2, metavar=("WAY", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--difficulty-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    import ray

    if args.ids_one:
        ids_one(Path(args.ids_one[1]), args.dim, args.ids_one[0], args.ids, args.difficulty_file)
        return
    if args.ids:
        path = make_ids(args.folder, args.rows, args.dim, args.text_ids)
        ids_runs(path, args.dim, args.ids, args.repeats, difficulty_of(path) if args.difficulty else None)
        return

    if args.write:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            write_runs(args.folder, args.rows, args.repeats)
        finally:
            ray.shutdown()
        return
    path = make(args.folder, args.rows, args.dim, args.repeated)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    if args.sample or args.slots:
        try:
            runs_of = sample_runs if args.sample else slot_runs
            runs_of(path, args.dim, args.fit_sample, args.repeats)
        finally:
            ray.shutdown()
        return
    try:
        runs: dict[str, list[dict[str, float]]] = {"input": [], "hash": []}
        for order in runs:  # a first round, not counted: Ray's workers start, imports, the page cache
            one_run(path, args.dim, order, args.fit_sample)
        for _ in range(args.repeats):
            for order in runs:
                runs[order].append(one_run(path, args.dim, order, args.fit_sample))
                print(order, runs[order][-1], flush=True)
    finally:
        ray.shutdown()
    for order, results in runs.items():
        medians = {key: statistics.median(r[key] for r in results) for key in results[0]}
        print(f"{order}: " + ", ".join(f"{k} {v:.3g}" for k, v in medians.items()))


if __name__ == "__main__":
    main()
