"""Regenerate sample_data/ deterministically from scikit-learn's bundled digits data set.

Three different classifiers are trained on the `train` split; each one's per-datapoint results on the
held-out `validation` and `test` splits go to `results_<model>.csv`. `embeddings.parquet` holds every
datapoint (all splits) with its 64 pixel intensities as an embedding, and `datapoints.csv` the ground truth.

`detection/` is a small simulated object-detection example (per-image tp/fp/fn counts of two detectors
that share which images are cluttered): there is no detection data set bundled with scikit-learn.

    python sample_data/make_sample_data.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).parent
SEED = 0
# The smallest probability a log loss is computed from, so that it stays finite.
MIN_PROBABILITY = 1e-6


def split_labels(n_rows: int, seed: int = SEED) -> np.ndarray:
    """60% train, 20% validation, 20% test, shuffled with a fixed seed."""
    order = np.random.default_rng(seed).permutation(n_rows)
    split = np.empty(n_rows, dtype=object)
    n_train, n_val = int(0.6 * n_rows), int(0.2 * n_rows)
    split[order[:n_train]] = "train"
    split[order[n_train : n_train + n_val]] = "validation"
    split[order[n_train + n_val :]] = "test"
    return split


def models() -> dict[str, object]:
    return {
        "logreg": make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000)),
        "forest": RandomForestClassifier(n_estimators=30, max_depth=8, random_state=SEED),
        "knn": KNeighborsClassifier(n_neighbors=10),
    }


def write_detection_example(folder: Path, n_images: int = 120, seed: int = SEED) -> None:
    """Per-image true positives, false positives and false negatives of two simulated detectors."""
    rng = np.random.default_rng(seed)
    objects = rng.poisson(2.5, n_images)
    clutter = rng.random(n_images)  # shared: cluttered images are hard for every detector
    folder.mkdir(exist_ok=True)
    for name, recall, false_alarms in (("fast", 0.75, 1.0), ("accurate", 0.92, 0.3)):
        found = rng.binomial(objects, np.clip(recall - 0.5 * clutter, 0.05, 1.0))
        pl.DataFrame(
            {
                "id": np.arange(n_images),
                "tp": found,
                "fp": rng.poisson(false_alarms * (0.5 + clutter)),
                "fn": objects - found,
            }
        ).write_csv(folder / f"results_{name}.csv")


def main() -> None:
    digits = load_digits()
    features, labels = digits.data, digits.target
    ids = np.arange(len(labels))
    split = split_labels(len(labels))
    train, held_out = split == "train", split != "train"
    for name, model in models().items():
        model.fit(features[train], labels[train])
        probabilities = model.predict_proba(features[held_out])
        truth = labels[held_out]
        true_class_prob = probabilities[np.arange(len(truth)), truth]
        predicted = model.classes_[probabilities.argmax(axis=1)]
        results = pl.DataFrame(
            {
                "id": ids[held_out],
                "label": truth,
                "predicted": predicted,
                "correct": (predicted == truth).astype(np.int64),
                "true_class_prob": np.round(true_class_prob, 6),
                "log_loss": np.round(0.0 - np.log(np.maximum(true_class_prob, MIN_PROBABILITY)), 6),
            }
        )
        results.write_csv(HERE / f"results_{name}.csv")
    embeddings = pl.DataFrame(
        {
            "id": ids,
            "split": split.astype(str),
            "label": labels,
            "embedding": (features / 16.0).astype(np.float32),
        }
    )
    embeddings.write_parquet(HERE / "embeddings.parquet")
    pl.DataFrame({"id": ids, "split": split.astype(str), "label": labels}).write_csv(HERE / "datapoints.csv")
    write_detection_example(HERE / "detection")


if __name__ == "__main__":
    main()
