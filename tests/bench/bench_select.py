"""Does `kscore select` choose well? An active-learning grid against random picks, and its speed.

    python tests/bench/bench_select.py grid --seeds 40             # every cell, README figures
    python tests/bench/bench_select.py speed --rows 10000000 --picks 10000
    python tests/bench/bench_select.py speed-embeddings --rows 1000000 --dims 384 --picks 10000

grid: six data sets (scikit-learn's bundled digits, breast cancer, wine and iris, and two
`make_classification` sets with several clusters per class) x two feature scalings (min-max to
[0, 1], standardised) x two spaces for the coverage (the UMAP map, `--embeddings` with the scaled
features) x three learners retrained on labeled + picks (logistic regression, RBF SVM, 5-nearest
neighbours) x three budgets (1, 3 and 5 times the number of classes, at least 4), over `--seeds`
seeds. For each data set, scaling and seed, the rows are split into a held-out test split (30%), a
validation split (20%, the reference) and a pool (the rest, the train rows); 20 pool rows (10 for
wine and iris) are labeled at random (at least two classes); three classifiers trained on them score
the validation split (`kscore difficulty`, the bundled standard); `kscore embed-scores` scores the
pool on the map (UMAP of the scaled features, fitted once per data set and scaling). Each strategy
picks through `kscore.select`; a learner trained on the labeled rows plus the picks is measured on
the test split. A strategy's gain is its accuracy minus the mean accuracy of 5 random picks of the
same budget (same seed); each cell shows the mean gain over the seeds and its standard error.

The default (`balanced`, and its power) was chosen on the CHOICE data sets; the README reports the
HELD_OUT ones, and this script prints both, marked.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import polars as pl

# The default (`balanced`, its power rising with the models' share right on the reference rows)
# was chosen on these six; the first three chose 0.7's fixed power, the next three then showed it
# losing to `top` on breast cancer, so all six chose 0.8.4's rule.
CHOICE = ("digits", "wine", "clusters4", "breast_cancer", "iris", "clusters6")
# It is reported on these six, fixed before anything ran on them and run once.
HELD_OUT = ("hastie", "binary_clusters", "blobs5", "quantiles3", "clusters8", "binary_hard")
# The next choice's held-out half: fixed before anything ran on them, and not run yet.
NEXT_HELD_OUT = ("moons10", "circles8", "imbalanced4", "blobs_uneven", "diabetes3", "clusters3x4")
SCALINGS = ("minmax", "standard")
SPACES = ("map", "embeddings")
STRATEGIES = ("balanced", "typical", "diverse", "top")
BUDGET_MULTIPLES = (1, 3, 5)
RANDOM_DRAWS = 5


def dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    if name == "clusters4":
        return datasets.make_classification(
            n_samples=2000, n_features=20, n_informative=8, n_redundant=4, n_classes=4,
            n_clusters_per_class=3, class_sep=1.5, random_state=0,
        )  # fmt: skip
    if name == "clusters6":
        return datasets.make_classification(
            n_samples=2000, n_features=30, n_informative=10, n_redundant=5, n_classes=6,
            n_clusters_per_class=2, class_sep=2.0, random_state=1,
        )  # fmt: skip
    generated = {
        "hastie": lambda: datasets.make_hastie_10_2(n_samples=2000, random_state=2),
        "binary_clusters": lambda: datasets.make_classification(
            n_samples=2000, n_features=20, n_informative=6, n_redundant=2, n_classes=2,
            n_clusters_per_class=2, class_sep=1.0, random_state=3,
        ),
        "blobs5": lambda: datasets.make_blobs(
            n_samples=1500, centers=5, n_features=10, cluster_std=2.5, random_state=4
        ),
        "quantiles3": lambda: datasets.make_gaussian_quantiles(
            n_samples=1500, n_features=6, n_classes=3, random_state=5
        ),
        "clusters8": lambda: datasets.make_classification(
            n_samples=2500, n_features=40, n_informative=12, n_redundant=6, n_classes=8,
            n_clusters_per_class=1, class_sep=1.5, random_state=6,
        ),
        "binary_hard": lambda: datasets.make_classification(
            n_samples=2000, n_features=30, n_informative=4, n_redundant=0, n_classes=2,
            n_clusters_per_class=3, class_sep=0.8, flip_y=0.05, random_state=7,
        ),
    }  # fmt: skip
    if name in generated:
        return generated[name]()
    if name in NEXT_HELD_OUT:
        return _next_held_out(name)
    loaded = getattr(datasets, f"load_{name}")()
    return loaded.data, loaded.target


def _next_held_out(name: str) -> tuple[np.ndarray, np.ndarray]:
    from sklearn import datasets

    def with_noise(xy: tuple, features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = xy
        noise = np.random.default_rng(seed).normal(0.0, 0.5, (len(y), features))
        return np.hstack([x, noise]), y

    if name == "moons10":
        return with_noise(datasets.make_moons(n_samples=1500, noise=0.2, random_state=11), 8, 11)
    if name == "circles8":
        circles = datasets.make_circles(n_samples=1500, noise=0.1, factor=0.5, random_state=12)
        return with_noise(circles, 6, 12)
    if name == "imbalanced4":
        return datasets.make_classification(
            n_samples=2000, n_features=20, n_informative=6, n_redundant=2, n_classes=4,
            n_clusters_per_class=2, weights=[0.55, 0.25, 0.12, 0.08], class_sep=1.2, random_state=13,
        )  # fmt: skip
    if name == "blobs_uneven":
        return datasets.make_blobs(
            n_samples=2000, centers=6, n_features=8, cluster_std=[1.0, 1.5, 2.0, 2.5, 3.0, 3.5],
            random_state=14,
        )  # fmt: skip
    if name == "diabetes3":
        loaded = datasets.load_diabetes()
        return loaded.data, np.digitize(loaded.target, np.quantile(loaded.target, [1 / 3, 2 / 3]))
    return datasets.make_classification(
        n_samples=2400, n_features=25, n_informative=8, n_redundant=4, n_classes=3,
        n_clusters_per_class=4, class_sep=1.0, random_state=15,
    )  # fmt: skip


def scaled(x: np.ndarray, scaling: str) -> np.ndarray:
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    return (MinMaxScaler() if scaling == "minmax" else StandardScaler()).fit_transform(x.astype(float))


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


def accuracies(x: np.ndarray, y: np.ndarray, rows: np.ndarray, test: np.ndarray) -> dict[str, float]:
    """Each learner, trained on `rows`, measured on `test`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.svm import SVC

    learners = {
        "linear": LogisticRegression(max_iter=2000),
        "rbf_svm": SVC(),
        "knn": KNeighborsClassifier(n_neighbors=min(5, len(rows))),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            name: float((learner.fit(x[rows], y[rows]).predict(x[test]) == y[test]).mean())
            for name, learner in learners.items()
        }


def one_setting(name: str, scaling: str, seeds: int) -> dict:
    """Gains by space, learner, budget and strategy (a list over seeds) for one data set and scaling."""
    import kscore

    x, y = dataset(name)
    x = scaled(x, scaling)
    xy, _ = kscore.reduce_to_2d(x, reducer="umap", seed=0)
    classes = len(np.unique(y))
    budgets = sorted({max(4, m * classes) for m in BUDGET_MULTIPLES})
    initial = 20 if len(y) >= 500 else 10
    standard = kscore.QualityStandard.from_yaml("configs/quality_standard.yaml")
    embeddings = pl.DataFrame({"id": np.arange(len(y)), "embedding": x})
    gains: dict = {s: {} for s in SPACES}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(y))
        n_test, n_val = int(0.3 * len(y)), int(0.2 * len(y))
        test, val, pool = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
        labeled = rng.choice(pool, initial, replace=False)
        while len(np.unique(y[labeled])) < 2:
            labeled = rng.choice(pool, initial, replace=False)
        results = classifier_results(x[labeled], y[labeled], x[val], y[val], seed)
        frames = {m: r.with_columns(id=pl.Series(val)) for m, r in results.items()}
        split = np.full(len(y), "test", dtype=object)
        split[val], split[pool] = "validation", "train"
        table = pl.DataFrame({"id": np.arange(len(y)), "split": split.astype(str), "embedding": xy})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            difficulty = kscore.difficulty(frames, standard)
            scores = kscore.embed_scores(
                table.filter(pl.col("split") != "test"), difficulty=difficulty, reducer="none"
            )
        candidates = np.setdiff1d(pool, labeled)
        draws = np.random.default_rng(1000 + seed)
        for budget in budgets:
            random = [
                accuracies(x, y, np.concatenate([labeled, draws.choice(candidates, budget, False)]), test)
                for _ in range(RANDOM_DRAWS)
            ]
            for space in SPACES:
                for strategy in STRATEGIES:
                    picks = kscore.select(
                        scores, budget, strategy=strategy, labeled=labeled.tolist(), seed=seed,
                        embeddings=embeddings if space == "embeddings" else None,
                    )  # fmt: skip
                    chosen = picks.get_column("id").to_numpy()
                    for learner, value in accuracies(x, y, np.concatenate([labeled, chosen]), test).items():
                        baseline = statistics.mean(r[learner] for r in random)
                        cell = gains[space].setdefault(learner, {}).setdefault(budget, {})
                        cell.setdefault(strategy, []).append(value - baseline)
    return {"name": name, "scaling": scaling, "rows": len(y), "classes": classes, "gains": gains}


def summarize(settings: list[dict]) -> None:
    """Every cell (mean gain +/- s.e., accuracy points), then how the default fares on each half."""
    for half, names in (("chosen on", CHOICE), ("held out", HELD_OUT)):
        cells = []
        for setting in (s for s in settings if s["name"] in names):
            print(f"\n*{setting['name']}, {setting['scaling']} ({setting['rows']} rows, {setting['classes']} "
                  f"classes; {half})*\n")  # fmt: skip
            print("| space | learner | budget | " + " | ".join(STRATEGIES) + " |")
            print("|---|---|---|" + "---|" * len(STRATEGIES))
            for space, by_learner in setting["gains"].items():
                for learner, by_budget in by_learner.items():
                    for budget, by_strategy in by_budget.items():
                        row = {s: _mean_se(v) for s, v in by_strategy.items()}
                        cells.append(row)
                        shown = " | ".join(f"{100 * m:+.1f} +/- {100 * e:.1f}" for m, e in row.values())
                        print(f"| {space} | {learner} | {budget} | {shown} |")
        if not cells:
            continue
        print(f"\n{half} ({', '.join(names)}): {len(cells)} cells")
        for strategy in STRATEGIES:
            means = [c[strategy][0] for c in cells]
            some_gain = [c for c in cells if max(v[0] for v in c.values()) > 0]
            print(
                f"  {strategy}: mean gain {100 * statistics.mean(means):+.2f}, "
                f"lowest {100 * min(means):+.2f}; "
                f"not positive in {sum(c[strategy][0] <= 0 for c in some_gain)} of the {len(some_gain)} "
                f"cells where some strategy gains; below -1 s.e. in "
                f"{sum(c[strategy][0] < -c[strategy][1] for c in cells)}; "
                f"not above top in {sum(c[strategy][0] <= c['top'][0] for c in cells)}"
            )


def _mean_se(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) / len(values) ** 0.5


def grid(seeds: int, names: list[str]) -> list[dict]:
    started = time.perf_counter()
    jobs = [(name, scaling) for name in names for scaling in SCALINGS]
    with ProcessPoolExecutor(2) as pool:
        names_, scalings = zip(*jobs, strict=True)
        settings = list(pool.map(one_setting, names_, scalings, [seeds] * len(jobs)))
    seconds = time.perf_counter() - started
    print(f"grid: {len(jobs)} settings x {seeds} seeds in {seconds:.0f} s", file=sys.stderr)
    return settings


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


def speed_embeddings(rows: int, dims: int, picks: int, check_rows: int, strategies_: list[str]) -> None:
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
        for strategy in strategies_:
            started = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "kscore", "select", str(scores), "--budget", str(picks), "--strategy",
                 strategy, "--embeddings", str(embedded), "-o", str(Path(folder) / "p.parquet"), "-q"],
                check=True, stdout=subprocess.DEVNULL,
            )  # fmt: skip
            print(
                f"kscore select --embeddings: {rows} x {dims}, {picks} picks ({strategy}): "
                f"{time.perf_counter() - started:.1f} s"
            )
    for label, points in (
        (f"{check_rows} of those points", matrix[:check_rows].astype(np.float64)),
        ("digits (1797 x 64)", load_digits().data.astype(np.float64)),
    ):
        compare_projection(label, points, max(len(points) // 100, 10))


def compare_projection(label: str, points: np.ndarray, budget: int) -> None:
    from scipy.spatial import cKDTree

    import kscore.jobs.select as selection
    from kscore.core.pick_strategies import pick

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
    use = sub.add_parser("grid")
    use.add_argument("--seeds", type=int, default=10)
    use.add_argument("--datasets", nargs="+", default=[*CHOICE, *HELD_OUT])
    use.add_argument("--json", metavar="FILE", help="also write every seed's gains to FILE")
    fast = sub.add_parser("speed")
    fast.add_argument("--rows", type=int, default=10_000_000)
    fast.add_argument("--picks", type=int, default=10_000)
    fast.add_argument("--repeats", type=int, default=3)
    fast.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    embedded = sub.add_parser("speed-embeddings")
    embedded.add_argument("--rows", type=int, default=1_000_000)
    embedded.add_argument("--dims", type=int, default=384)
    embedded.add_argument("--picks", type=int, default=10_000)
    embedded.add_argument("--check-rows", type=int, default=20_000)
    embedded.add_argument("--strategies", nargs="+", default=["balanced", "diverse"])
    args = parser.parse_args()
    if args.what == "grid":
        settings = grid(args.seeds, args.datasets)
        if args.json:
            with open(args.json, "w") as file:
                json.dump(settings, file)
        summarize(settings)
    elif args.what == "speed":
        speed(args.rows, args.picks, args.repeats, args.strategies)
    else:
        speed_embeddings(args.rows, args.dims, args.picks, args.check_rows, args.strategies)


if __name__ == "__main__":
    main()
