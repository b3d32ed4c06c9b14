"""The names of the columns kscore writes: one place, so a job, a summary and the page agree."""

from __future__ import annotations

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
