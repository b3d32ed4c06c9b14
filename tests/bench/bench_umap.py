"""Benchmark the UMAP stage of embed-scores: time, peak memory and trustworthiness.

    python tests/bench/bench_umap.py full --rows 100000        # one full fit
    python tests/bench/bench_umap.py sampled --rows 1000000    # fit on the default sample, transform the rest
    python tests/bench/bench_umap.py trust --rows 100000 --fit-sample 20000 50000 \
        --transform-epochs 30 10 [--data manifold]
    python tests/bench/bench_umap.py sampled --rows 1000000 --fit-sample 20000 --transform-epochs 10
    python tests/bench/bench_umap.py trust-parts --rows 100000 --fit-sample 50000  # umap's own transform
    python tests/bench/bench_umap.py cold-warm [--against OLD]  # the sample's first picture, cold and warm
    python tests/bench/bench_umap.py fit-epochs --fit-epochs 200 100 --seeds 5  # small inputs' fit epochs
    python tests/bench/bench_umap.py saved-map --rows 1000000 --repeats 2  # --map against a full fit

Each mode runs in its own process; peak memory is that process's maximum resident size.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import kscore.core.reduction

ROOT = Path(__file__).resolve().parents[2]


def text_like_embeddings(rows: int, dims: int = 384, clusters: int = 40, seed: int = 0) -> np.ndarray:
    """Unit vectors around `clusters` topics, each topic with a few sub-topics (float32, seeded).

    Made in chunks, so that the benchmark's own data does not dominate its peak memory.
    """
    rng = np.random.default_rng(seed)
    topics = rng.normal(size=(clusters, dims))
    subtopics = (topics[:, None, :] + 0.6 * rng.normal(size=(clusters, 4, dims))).astype(np.float32)
    out = np.empty((rows, dims), dtype=np.float32)
    for start in range(0, rows, 100_000):
        n = min(100_000, rows - start)
        chunk = subtopics[rng.integers(0, clusters, n), rng.integers(0, 4, n)]
        chunk += 0.8 * rng.standard_normal((n, dims), dtype=np.float32)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        out[start : start + n] = chunk
    return out


def manifold_embeddings(rows: int, dims: int = 384, latent: int = 5, seed: int = 0) -> np.ndarray:
    """Unit vectors on a smooth curved manifold (no clusters): latent points from three overlapping
    Gaussians of different widths, mapped to `dims` by random sinusoids, plus a little noise."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(3, latent))
    widths = np.array([0.4, 0.8, 1.5])
    frequencies = rng.normal(size=(latent, dims)) * 0.7
    phases = rng.uniform(0, 2 * np.pi, dims)
    out = np.empty((rows, dims), dtype=np.float32)
    for start in range(0, rows, 100_000):
        n = min(100_000, rows - start)
        which = rng.integers(0, 3, n)
        points = centers[which] + rng.normal(size=(n, latent)) * widths[which, None]
        chunk = np.sin(points @ frequencies + phases) + 0.05 * rng.standard_normal((n, dims))
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
        out[start : start + n] = chunk
    return out


DATA = {"text": text_like_embeddings, "manifold": manifold_embeddings}


def peak_mib() -> float:
    """This process's peak resident memory (not the transform workers': Linux counts a child's
    peak from its parent's size at fork, so RUSAGE_CHILDREN cannot tell them apart)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_reduce(rows: int, fit_sample: int, jobs: int | None = None, kind: str = "text") -> dict:
    from kscore.core.reduction import reduce_to_2d

    data = DATA[kind](rows)
    stages: dict[str, float] = {}

    def progress(stage: str, done: int, total: int) -> None:
        stages.setdefault(stage, time.perf_counter())

    start = time.perf_counter()
    reduce_to_2d(data, fit_sample=fit_sample, seed=0, progress=progress, jobs=jobs)
    end = time.perf_counter()
    transform_start = stages.get("UMAP transform", end)
    return {
        "rows": rows,
        "data": kind,
        "fit_sample": min(rows, fit_sample),
        "transform_epochs": kscore.core.reduction.TRANSFORM_EPOCHS,
        "jobs": jobs,
        "seconds": end - start,
        "fit_and_index_seconds": transform_start - start,
        "transform_seconds": end - transform_start,
        "peak_mib": peak_mib(),
    }


def run_trust(
    rows: int, fit_samples: list[int], epochs: list[int], subsample: int = 5000, kind: str = "text"
) -> dict:
    """Trustworthiness of sample fit + transform against one full fit, for each fit sample size
    and transform epoch count (the full fit is made once)."""
    from sklearn.manifold import trustworthiness

    from kscore.core.reduction import reduce_to_2d

    data = DATA[kind](rows)
    full, _ = reduce_to_2d(data, fit_sample=rows, seed=0)
    pick = np.random.default_rng(1).choice(rows, size=subsample, replace=False)
    t_full = trustworthiness(data[pick], full[pick], n_neighbors=15)
    results = []
    for fit_sample in fit_samples:
        for count in epochs:
            kscore.core.reduction.TRANSFORM_EPOCHS = count
            start = time.perf_counter()
            sampled, _ = reduce_to_2d(data, fit_sample=fit_sample, seed=0)
            seconds = time.perf_counter() - start
            t_sampled = trustworthiness(data[pick], sampled[pick], n_neighbors=15)
            results.append(
                {
                    "fit_sample": fit_sample,
                    "transform_epochs": count,
                    "trust_sampled": t_sampled,
                    "difference": t_full - t_sampled,
                    "seconds": seconds,
                }
            )
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    return {"rows": rows, "data": kind, "trust_full": t_full, "sampled": results}


def run_trust_parts(rows: int, fit_sample: int, subsample: int = 5000) -> dict:
    """Trustworthiness of a sample fit + transform on the sampled and the transformed points apart,
    against the full fit, and for transforms with more epochs or a higher learning rate.

    The sample fit uses the UMAP parameters of kscore's seeded runs (see kscore/embedding.py), but
    transforms with umap's own neighbour search: this is the diagnosis that led kscore to its own
    (kscore.core.neighbors); `trust` measures what kscore does.
    """
    import pickle

    import umap
    from sklearn.manifold import trustworthiness

    from kscore.cache import use_numba_cache
    from kscore.core.reduction import reduce_to_2d

    use_numba_cache()
    data = text_like_embeddings(rows)
    full, _ = reduce_to_2d(data, fit_sample=rows, seed=0)
    sample = np.sort(np.random.default_rng(0).choice(rows, size=fit_sample, replace=False))
    rest = np.setdiff1d(np.arange(rows), sample, assume_unique=True)
    model = umap.UMAP(
        n_neighbors=15, min_dist=0.1, random_state=0, transform_seed=0, n_jobs=1, low_memory=True
    )
    fitted = model.fit_transform(data[sample])
    rng = np.random.default_rng(1)
    on_sample = rng.choice(fit_sample, size=subsample, replace=False)
    on_rest = rng.choice(len(rest), size=subsample, replace=False)
    result = {
        "rows": rows,
        "fit_sample": fit_sample,
        "sampled_points": {
            "full": trustworthiness(data[sample[on_sample]], full[sample[on_sample]], n_neighbors=15),
            "sample_fit": trustworthiness(data[sample[on_sample]], fitted[on_sample], n_neighbors=15),
        },
        "transformed_points": {
            "full": trustworthiness(data[rest[on_rest]], full[rest[on_rest]], n_neighbors=15)
        },
    }
    # umap's transform runs n_epochs // 3 epochs at learning rate _initial_alpha / 4.
    variants = {
        "default": {},
        "epochs_100": {"n_epochs": 300},
        "epochs_200": {"n_epochs": 600},
        "learning_rate_x4": {"_initial_alpha": 4.0 * model._initial_alpha},
    }
    for name, attributes in variants.items():
        variant = pickle.loads(pickle.dumps(model))
        for attribute, value in attributes.items():
            setattr(variant, attribute, value)
        start = time.perf_counter()
        mapped = variant.transform(data[rest])  # all of them: umap runs more epochs for <= 10,000 rows
        seconds = time.perf_counter() - start
        result["transformed_points"][name] = trustworthiness(
            data[rest[on_rest]], mapped[on_rest], n_neighbors=15
        )
        result["transformed_points"][f"{name}_transform_s"] = seconds
    return result


def fit_epoch_sets() -> dict[str, tuple[str, np.ndarray]]:
    """The small inputs the fit's epochs are chosen and reported on: (role, vectors). The count is
    chosen on the first two (the sample; 60 clusters of text-like vectors) and reported on the other
    two (digits standardised; breast cancer standardised), which the choice never saw."""
    import polars as pl
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.preprocessing import StandardScaler

    sample = pl.read_parquet(ROOT / "sample_data" / "embeddings.parquet").get_column("embedding")
    return {
        "sample": ("choose", np.asarray(sample.to_list(), dtype=np.float32)),
        "clusters60": ("choose", text_like_embeddings(5000, dims=384, clusters=60, seed=3)),
        "digits_standardised": ("report", StandardScaler().fit_transform(load_digits().data)),
        "breast_cancer_standardised": ("report", StandardScaler().fit_transform(load_breast_cancer().data)),
    }


def run_fit_epochs(epochs: list[int], seeds: int = 3) -> dict:
    """Trustworthiness (15 neighbours) and fit time of UMAP on small inputs for several numbers of
    fit epochs, against umap's own default for them (500 below 10,000 rows): kscore's fit for each
    count and seed (0 to `seeds` - 1), counts alternated; the mean trustworthiness over the seeds
    and the median time."""
    from sklearn.manifold import trustworthiness

    from kscore.core.reduction import reduce_to_2d

    reduce_to_2d(np.random.default_rng(0).normal(size=(200, 8)))  # import and compile first
    results = {}
    for name, (role, data) in fit_epoch_sets().items():
        counts = [500, *epochs]
        times: dict[int, list[float]] = {e: [] for e in counts}
        trust: dict[int, list[float]] = {e: [] for e in counts}
        for seed in range(seeds):
            for count in counts:
                kscore.core.reduction.FIT_EPOCHS = count
                start = time.perf_counter()
                mapped, _ = reduce_to_2d(data, seed=seed)
                times[count].append(time.perf_counter() - start)
                trust[count].append(float(trustworthiness(data, mapped, n_neighbors=15)))
        mean = {e: float(np.mean(t)) for e, t in trust.items()}
        results[name] = {
            "role": role,
            "rows": len(data),
            "trust_mean": mean,
            "trust_loss_vs_500": {e: mean[500] - mean[e] for e in epochs},
            "worst_seed_loss_vs_500": {
                e: float(max(a - b for a, b in zip(trust[500], trust[e], strict=True))) for e in epochs
            },
            "median_s": {e: float(np.median(t)) for e, t in times.items()},
        }
    return results


def run_cold_warm(repeats: int = 3, against: Path | None = None) -> dict:
    """The sample's first picture: `embed-scores` as the README's tour runs it, with an empty cache
    folder (cold: numba compiles what the run uses) and then twice with that folder (warm); with
    `against` (another kscore's source folder), alternated with it, each with its own cache."""
    versions = {"this": ROOT, **({"against": against} if against else {})}
    folder = Path(tempfile.mkdtemp(prefix="kscore-first-"))
    standard = ROOT / "configs" / "quality_standard.yaml"
    results = sorted(str(p) for p in (ROOT / "sample_data").glob("results_*.csv"))
    base = [sys.executable, "-m", "kscore"]
    env = {**os.environ, "KSCORE_CACHE_DIR": str(folder / "cache-setup"), "PYTHONPATH": str(ROOT)}
    difficulty = folder / "difficulty_scores.parquet"
    subprocess.run([*base, "difficulty", *results, "-c", str(standard), "-o", str(difficulty), "-q"],
                   env=env, check=True, capture_output=True)  # fmt: skip
    figures: dict[str, dict[str, list[float]]] = {n: {"cold": [], "warm": []} for n in versions}
    for repeat in range(repeats):
        for name, source in versions.items():
            cache = folder / f"cache-{name}-{repeat}"
            run_env = {**os.environ, "KSCORE_CACHE_DIR": str(cache), "PYTHONPATH": str(source)}
            command = [*base, "embed-scores", "-c", str(standard), "--difficulty", str(difficulty),
                       "-o", str(folder / f"embed-{name}.parquet"), "-q"]  # fmt: skip

            def timed(command: list[str] = command, run_env: dict = run_env) -> float:
                start = time.perf_counter()
                subprocess.run(command, env=run_env, check=True, capture_output=True, cwd=folder)
                return time.perf_counter() - start

            figures[name]["cold"].append(timed())
            figures[name]["warm"] += [timed(), timed()]
            shutil.rmtree(cache)
            print(name, {k: round(v[-1], 2) for k, v in figures[name].items()}, file=sys.stderr, flush=True)
    shutil.rmtree(folder)
    return {
        name: {f"{kind}_s_median": float(np.median(runs)) for kind, runs in kinds.items()} | {"runs": kinds}
        for name, kinds in figures.items()
    }


def run_saved_map(rows: int, repeats: int = 2, folder: Path | None = None) -> dict:
    """`embed-scores --map` against a full run (fit on the sample, transform the rest) on the same
    input, through the CLI, alternated: the total and each stage (from the progress lines on stderr).

    The input: `rows` text-like 384-d embeddings in a Parquet list column, a fifth of them `test`
    (the reference), written once under `folder` (default: a temporary folder, removed at the end).
    The map is saved by a first full run (`--save-map`), not timed."""
    import re

    import polars as pl

    own = folder is None
    folder = Path(tempfile.mkdtemp(prefix="kscore-map-")) if folder is None else folder
    folder.mkdir(parents=True, exist_ok=True)
    emb = folder / "emb.parquet"
    if not emb.exists():
        data = text_like_embeddings(rows)
        ids = np.arange(rows)
        pl.DataFrame(
            {"id": ids, "split": np.where(ids % 5 == 0, "test", "train"), "embedding": pl.Series(data)}
        ).write_parquet(emb)
        del data
    base = [sys.executable, "-m", "kscore", "embed-scores", str(emb)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def run(name: str, *extra: str) -> dict[str, float]:
        start = time.perf_counter()
        done = subprocess.run(
            [*base, "-o", str(folder / f"{name}.parquet"), *extra], env=env, check=True, capture_output=True,
            text=True,
        )  # fmt: skip
        stages = {
            m[0]: float(m[1])
            for m in re.findall(r"^(.+?): (?:\d+/\d+ )?done in ([\d.]+) s$", done.stderr, re.M)
        }
        stages["total"] = time.perf_counter() - start
        print(name, stages, file=sys.stderr, flush=True)
        return stages

    map_file = folder / "saved_map.parquet"
    if not map_file.exists():
        run("save", "--save-map", str(map_file))
    figures: dict[str, list[dict[str, float]]] = {"full": [], "map": []}
    for _ in range(repeats):
        figures["full"].append(run("full"))
        figures["map"].append(run("map", "--map", str(map_file)))
    same = pl.read_parquet(folder / "full.parquet").equals(pl.read_parquet(folder / "map.parquet"))
    if own:
        shutil.rmtree(folder)

    def median(kind: str, *stages: str) -> float:
        return float(np.median([sum(run.get(s, 0.0) for s in stages) for run in figures[kind]]))

    full_rest = median("full", "UMAP transform", "KDE scores")
    return {
        "rows": rows,
        "same_output": same,
        "full_total_s": median("full", "total"),
        "full_fit_s": median("full", "UMAP fit on a sample"),
        "full_transform_and_scoring_s": full_rest,
        "map_total_s": median("map", "total"),
        "map_load_s": median("map", "load the map"),
        "map_transform_and_scoring_s": median("map", "UMAP transform", "KDE scores"),
        "map_total_over_full_transform_and_scoring": median("map", "total") / full_rest,
        "map_total_over_full_total_less_fit": median("map", "total")
        / float(np.median([r["total"] - r.get("UMAP fit on a sample", 0.0) for r in figures["full"]])),
        "runs": figures,
    }


def run_distinct_order(rows: int, fit_sample: int, seeds: int, repeated: float = 0.2) -> dict:
    """Trustworthiness of the map when the distinct rows are batched in the input's order (0.8.8)
    and in the order of their hashes (0.8.7), on inputs where `repeated` of the rows repeat
    earlier ones, for seeds 0 to `seeds` - 1 (the same subsample of distinct rows is scored)."""
    from sklearn.manifold import trustworthiness

    from kscore.core import reduction

    results = {}
    for kind in ("text", "manifold"):
        base = DATA[kind](rows)
        rng = np.random.default_rng(2)
        data = base.copy()
        copies = rng.choice(np.arange(rows // 2, rows), int(repeated * rows), replace=False)
        data[copies] = base[rng.integers(0, rows // 2, len(copies))]
        distinct = np.setdiff1d(np.arange(rows), copies)
        pick = np.random.default_rng(1).choice(distinct, size=min(5000, len(distinct)), replace=False)
        leaders, index = reduction.distinct_rows(data, order="hash")
        for order in ("input", "hash"):
            values = []
            for seed in range(seeds):
                if order == "input":
                    mapped, _ = reduction.reduce_to_2d(data, fit_sample=fit_sample, seed=seed)
                else:  # as 0.8.7 ran: the distinct rows in their hashes' order mapped, then copied
                    mapped, _ = reduction.reduce_to_2d(data[leaders], fit_sample=fit_sample, seed=seed)
                    mapped = mapped[index]
                values.append(trustworthiness(data[pick], mapped[pick], n_neighbors=15))
            results[f"{kind} {order}"] = {"mean": float(np.mean(values)), "values": values}
            print(kind, order, results[f"{kind} {order}"], file=sys.stderr, flush=True)
    return {"rows": rows, "fit_sample": fit_sample, "repeated": repeated, "trust": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "mode",
        choices=[
            "full",
            "sampled",
            "trust",
            "trust-parts",
            "cold-warm",
            "fit-epochs",
            "saved-map",
            "distinct-order",
        ],
    )
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--fit-sample", type=int, nargs="+", default=[kscore.core.reduction.FIT_SAMPLE], help="trust: several"
    )
    parser.add_argument("--jobs", type=int, default=None)
    parser.add_argument("--data", choices=sorted(DATA), default="text")
    parser.add_argument(
        "--transform-epochs", type=int, nargs="+", default=None, help="kscore's default if not given"
    )
    parser.add_argument("--repeats", type=int, default=3, help="cold-warm: alternated rounds")
    parser.add_argument("--against", type=Path, default=None, help="cold-warm: another kscore's source")
    parser.add_argument("--fit-epochs", type=int, nargs="+", default=[200, 100], help="fit-epochs")
    parser.add_argument("--seeds", type=int, default=5, help="fit-epochs, distinct-order: seeds 0 to N-1")
    parser.add_argument("--folder", type=Path, default=None, help="saved-map: keep the input there")
    args = parser.parse_args()
    epochs = args.transform_epochs or [kscore.core.reduction.TRANSFORM_EPOCHS]
    kscore.core.reduction.TRANSFORM_EPOCHS = epochs[0]
    if args.mode == "full":
        result = run_reduce(args.rows, fit_sample=args.rows, kind=args.data)
    elif args.mode == "sampled":
        result = run_reduce(args.rows, fit_sample=args.fit_sample[0], jobs=args.jobs, kind=args.data)
    elif args.mode == "trust":
        result = run_trust(args.rows, args.fit_sample, epochs, kind=args.data)
    elif args.mode == "trust-parts":
        result = run_trust_parts(args.rows, args.fit_sample[0])
    elif args.mode == "fit-epochs":
        result = run_fit_epochs(args.fit_epochs, args.seeds)
    elif args.mode == "saved-map":
        result = run_saved_map(args.rows, args.repeats, args.folder)
    elif args.mode == "distinct-order":
        result = run_distinct_order(args.rows, args.fit_sample[0], args.seeds)
    else:
        result = run_cold_warm(args.repeats, args.against)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
