"""Does `kscore select` choose well? The active-learning loop of the select issue, and its speed.

    python tests/bench/bench_select.py usefulness --seeds 10          # the table in the README
    python tests/bench/bench_select.py speed --rows 10000000 --picks 10000
    python tests/bench/bench_select.py speed-embeddings --rows 1000000 --dims 384 --picks 10000

usefulness: for each data set (scikit-learn's bundled digits and breast cancer) and seed, the rows
are split into a held-out test split (30%), a validation split (20%, the reference) and a pool (the
rest, the train rows). 30 random pool rows are labeled; three classifiers trained on them score the
validation split (`kscore difficulty`, the bundled standard); `kscore embed-scores` maps every row
(UMAP, fitted once per data set) and scores the pool. Each strategy picks a budget of pool rows; a
logistic regression trained on the labeled rows plus the picks is measured on the test split. The
gain of a strategy is its accuracy minus the mean accuracy of 5 random picks of the same budget
(same seed); the table shows the mean gain over the seeds and its standard error.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings

import numpy as np
import polars as pl

INITIAL = 30
RANDOM_DRAWS = 5


def datasets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.preprocessing import StandardScaler

    digits = load_digits()
    cancer = load_breast_cancer()
    return {
        "digits": (digits.data / 16.0, digits.target),
        "breast_cancer": (StandardScaler().fit_transform(cancer.data), cancer.target),
    }


def classifier_results(x_train, y_train, x_val, y_val, seed: int) -> dict[str, pl.DataFrame]:
    """Per-datapoint results of three classifiers on the validation split (the sample's signals)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier

    models = {
        "logreg": LogisticRegression(max_iter=2000),
        "knn": KNeighborsClassifier(n_neighbors=min(5, len(y_train))),
        "forest": RandomForestClassifier(n_estimators=100, random_state=seed),
    }
    results = {}
    for name, model in models.items():
        model.fit(x_train, y_train)
        proba = model.predict_proba(x_val)
        classes = list(model.classes_)
        column = np.array([classes.index(c) if c in classes else -1 for c in y_val])
        true_prob = np.where(column >= 0, proba[np.arange(len(y_val)), np.maximum(column, 0)], 0.0)
        predicted = np.array(classes)[proba.argmax(axis=1)]
        results[name] = pl.DataFrame(
            {
                "correct": (predicted == y_val).astype(float),
                "true_class_prob": true_prob,
                "log_loss": -np.log(np.maximum(true_prob, 1e-6)),
            }
        )
    return results


def accuracy(x, y, train_rows, test_rows) -> float:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=2000).fit(x[train_rows], y[train_rows])
    return float((model.predict(x[test_rows]) == y[test_rows]).mean())


def strategies() -> dict[str, dict]:
    """The contenders: kscore's three strategies (balanced: weights = sqrt of the score's rank), and
    balanced with other powers of the rank, the measurement that chose the square root."""
    return {
        "top": {"strategy": "top"},
        "diverse": {"strategy": "diverse"},
        "balanced (default)": {"strategy": "balanced"},
        "balanced, rank^1": {"strategy": "balanced", "power": 1.0},
        "balanced, rank^0.25": {"strategy": "balanced", "power": 0.25},
    }


def one_seed(name: str, x: np.ndarray, y: np.ndarray, xy: np.ndarray, seed: int, budgets: list[int]) -> dict:
    import kscore
    from kscore.picks import pick

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_test, n_val = int(0.3 * len(y)), int(0.2 * len(y))
    test, val, pool = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
    labeled = rng.choice(pool, INITIAL, replace=False)
    results = classifier_results(x[labeled], y[labeled], x[val], y[val], seed)
    standard = kscore.QualityStandard.from_yaml("configs/quality_standard.yaml")
    frames = {m: r.with_columns(id=pl.Series(val)) for m, r in results.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        difficulty = kscore.difficulty_scores(frames, standard)
        split = np.full(len(y), "test", dtype=object)
        split[val], split[pool] = "validation", "train"
        table = pl.DataFrame(
            {"id": np.arange(len(y)), "split": split.astype(str), "x": xy[:, 0], "y": xy[:, 1]}
        )
        table = table.filter(pl.col("split") != "test")
        scores, _ = kscore.embed_scores(
            table.with_columns(emb=pl.concat_list("x", "y")).drop("x", "y"),
            difficulty=difficulty,
            reducer="none",
        )
    candidates = scores.filter((pl.col("split") == "train") & ~pl.col("id").is_in(labeled.tolist())).sort(
        "id"
    )
    ids = candidates.get_column("id").to_numpy()
    points = candidates.select("map_x", "map_y").to_numpy()
    potential = candidates.get_column("potential_difficulty_score").to_numpy()
    gains: dict[str, dict[int, float]] = {s: {} for s in strategies()}
    for budget in budgets:
        random_accuracy = statistics.mean(
            accuracy(x, y, np.concatenate([labeled, rng.choice(ids, budget, replace=False)]), test)
            for _ in range(RANDOM_DRAWS)
        )
        for label, options in strategies().items():
            picks = pick(points, budget, scores=potential, labeled=xy[labeled], seed=seed, **options)
            shipped = kscore.select(
                scores, budget, labeled=labeled.tolist(), strategy=options["strategy"], seed=seed
            )
            if "power" not in options:  # the library gives what the loop measured
                assert shipped.get_column("id").to_list() == ids[picks.order].tolist(), label
            gains[label][budget] = (
                accuracy(x, y, np.concatenate([labeled, ids[picks.order]]), test) - random_accuracy
            )
    return gains


def usefulness(seeds: int, budgets: list[int]) -> dict:
    import kscore

    report = {}
    for name, (x, y) in datasets().items():
        started = time.perf_counter()
        xy, _ = kscore.reduce_to_2d(x, reducer="umap", seed=0)
        per_seed = [one_seed(name, x, y, xy, seed, budgets) for seed in range(seeds)]
        table = {}
        for label in strategies():
            table[label] = {}
            for budget in budgets:
                values = [g[label][budget] for g in per_seed]
                mean = statistics.mean(values)
                error = statistics.stdev(values) / len(values) ** 0.5
                table[label][budget] = (round(100 * mean, 2), round(100 * error, 2))
        report[name] = table
        print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
        print(
            f"\n{name} ({len(y)} rows, {seeds} seeds): accuracy gain over random picks, points "
            "(mean +/- s.e.)"
        )
        print("| strategy | " + " | ".join(f"budget {b}" for b in budgets) + " |")
        print("|---|" + "---|" * len(budgets))
        for label, row in table.items():
            print(f"| {label} | " + " | ".join(f"{m:+.2f} +/- {e:.2f}" for m, e in row.values()) + " |")
    return report


def clustered(rows: int, dims: int, rng: np.random.Generator) -> np.ndarray:
    centers = rng.normal(size=(200, dims)) * 10
    return centers[rng.integers(0, 200, rows)] + rng.normal(size=(rows, dims)) * rng.choice(
        [0.2, 1.0], (rows, 1)
    )


def speed(rows: int, picks: int, repeats: int, strategies_: list[str]) -> None:
    """`kscore select` on an embed-scores-like file of `rows` train rows: the whole command."""
    import subprocess
    import tempfile
    from pathlib import Path

    rng = np.random.default_rng(0)
    xy = clustered(rows, 2, rng)
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        path = Path(folder) / "scores.parquet"
        pl.DataFrame(
            {
                "id": np.arange(rows),
                "split": np.full(rows, "train"),
                "map_x": xy[:, 0],
                "map_y": xy[:, 1],
                "potential_difficulty_score": rng.random(rows),
            }
        ).write_parquet(path)
        del xy
        times: dict[str, list[float]] = {s: [] for s in strategies_}
        for _ in range(repeats):
            for strategy in strategies_:  # alternated: the machine is shared
                started = time.perf_counter()
                subprocess.run(
                    [sys.executable, "-m", "kscore", "select", str(path), "--budget", str(picks),
                     "--strategy", strategy, "-o", str(Path(folder) / "picks.parquet"), "-q"],
                    check=True, stdout=subprocess.DEVNULL,
                )  # fmt: skip
                times[strategy].append(time.perf_counter() - started)
        for strategy, values in times.items():
            print(
                f"{strategy}: {rows} rows, {picks} picks: median {statistics.median(values):.2f} s "
                f"of {[round(v, 2) for v in values]}"
            )


def speed_embeddings(rows: int, dims: int, picks: int, check_rows: int) -> None:
    """`kscore select --embeddings` on `rows` x `dims` (files in /tmp, the whole command), and how close
    the projection's coverage comes to the exact one, measured in the full space (the coverage
    radius and the mean distance to the nearest pick) on `check_rows` of those points and on the
    digits' 64-dimensional pixels."""
    import subprocess
    import tempfile
    from pathlib import Path

    from sklearn.datasets import load_digits

    rng = np.random.default_rng(1)
    matrix = clustered(rows, dims, rng).astype(np.float32)
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        scores, embedded = Path(folder) / "scores.parquet", Path(folder) / "emb.parquet"
        pl.DataFrame(
            {
                "id": np.arange(rows),
                "split": np.full(rows, "train"),
                "potential_difficulty_score": rng.random(rows),
            }
        ).write_parquet(scores)
        pl.DataFrame({"id": np.arange(rows), "embedding": matrix}).write_parquet(embedded)
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "kscore", "select", str(scores), "--budget", str(picks), "--strategy",
             "diverse", "--embeddings", str(embedded), "-o", str(Path(folder) / "p.parquet"), "-q"],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        print(
            f"kscore select --embeddings: {rows} x {dims}, {picks} picks (diverse): "
            f"{time.perf_counter() - started:.1f} s"
        )
    for label, points in (
        (f"{check_rows} of those points", matrix[:check_rows].astype(np.float64)),
        ("digits (1797 x 64)", load_digits().data.astype(np.float64)),
    ):
        compare_projection(label, points, max(len(points) // 100, 10))


def compare_projection(label: str, points: np.ndarray, budget: int) -> None:
    from scipy.spatial import cKDTree

    import kscore.selection as selection
    from kscore.picks import pick

    n = len(points)
    table = pl.DataFrame(
        {"id": np.arange(n), "split": np.full(n, "train"), "potential_difficulty_score": np.zeros(n)}
    )
    embeddings = pl.DataFrame({"id": np.arange(n), "embedding": points})
    saved = selection.EXACT_WORK
    selection.EXACT_WORK = 0  # force the projection
    try:
        projected = selection.select(table, budget, strategy="diverse", embeddings=embeddings)
    finally:
        selection.EXACT_WORK = saved
    for name, chosen in (("exact", pick(points, budget, strategy="diverse").order),
                         ("projected", projected.get_column("id").to_numpy())):  # fmt: skip
        distance, _ = cKDTree(points[chosen]).query(points)
        print(f"{label}, {budget} picks, {name}: radius {distance.max():.3f}, mean distance to the "
              f"nearest pick {distance.mean():.3f}")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="what", required=True)
    use = sub.add_parser("usefulness")
    use.add_argument("--seeds", type=int, default=10)
    use.add_argument("--budgets", type=int, nargs="+", default=[20, 40, 80])
    use.add_argument("--json", action="store_true")
    fast = sub.add_parser("speed")
    fast.add_argument("--rows", type=int, default=10_000_000)
    fast.add_argument("--picks", type=int, default=10_000)
    fast.add_argument("--repeats", type=int, default=3)
    fast.add_argument("--strategies", nargs="+", default=["balanced", "diverse", "top"])
    embedded = sub.add_parser("speed-embeddings")
    embedded.add_argument("--rows", type=int, default=1_000_000)
    embedded.add_argument("--dims", type=int, default=384)
    embedded.add_argument("--picks", type=int, default=10_000)
    embedded.add_argument("--check-rows", type=int, default=20_000)
    args = parser.parse_args()
    if args.what == "usefulness":
        report = usefulness(args.seeds, args.budgets)
        if args.json:
            print(json.dumps(report))
    elif args.what == "speed":
        speed(args.rows, args.picks, args.repeats, args.strategies)
    else:
        speed_embeddings(args.rows, args.dims, args.picks, args.check_rows)


if __name__ == "__main__":
    main()
