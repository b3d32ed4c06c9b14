"""The names of the columns kscore writes: one place, so a job, a summary and the page agree."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# difficulty
SCORE = "difficulty_score"
N_MODELS = "n_models"

# embed-scores
REPRESENTATION = "representation_score"
POTENTIAL = "potential_difficulty_score"
LOCAL = "local_difficulty"
MAP_X, MAP_Y = "map_x", "map_y"


def model_score_column(model: str) -> str:
    return f"{SCORE}_{model}"


def normalized_column(signal: str, model: str) -> str:
    return f"norm_{signal}_{model}"


def top_signal_column(model: str) -> str:
    return f"top_signal_{model}"


def embed_score_columns(
    x: Any, y: Any, is_train: Any, scores: Sequence[Any], difficulty: Any = None
) -> list[Any]:
    """embed-scores' map and score columns (polars Series) of some rows: their coordinates `x`,
    `y` (arrays), and the train rows' (`is_train`) representation, potential and local difficulty
    (`scores`, each None where there is none) put in their rows, null elsewhere; and with
    `difficulty`, each row's difficulty score (NaN: null)."""
    import numpy as np
    import polars as pl

    columns = [pl.Series(MAP_X, x), pl.Series(MAP_Y, y)]
    for name, values in zip((REPRESENTATION, POTENTIAL, LOCAL), scores, strict=True):
        column = np.full(len(is_train), np.nan)
        if values is not None:
            column[is_train] = values
        columns.append(pl.Series(name, column, nan_to_null=True))
    if difficulty is not None:
        columns.append(pl.Series(SCORE, difficulty, nan_to_null=True))
    return columns
