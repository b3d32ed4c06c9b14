"""kscore: difficulty, representation and potential-difficulty scores for ML data curation.

The public API is imported lazily (PEP 562), so that `kscore --help` does not pay for polars or numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.6.3"

_EXPORTS = {
    "QualityStandard": "kscore.config",
    "Metric": "kscore.config",
    "Task": "kscore.config",
    "difficulty_scores": "kscore.difficulty",
    "compare_models": "kscore.compare",
    "embed_scores": "kscore.embed",
    "write_difficulty_scores": "kscore.jobs",
    "write_embed_scores": "kscore.jobs",
    "select": "kscore.selection",
    "write_selection": "kscore.selection",
    "write_report": "kscore.report",
    "reduce_to_2d": "kscore.embedding",
    "representation_scores": "kscore.density",
    "potential_difficulty_scores": "kscore.density",
    "local_difficulty": "kscore.density",
    "KscoreError": "kscore.errors",
    "ConfigError": "kscore.errors",
    "InputError": "kscore.errors",
    "GateFailed": "kscore.errors",
    "KscoreWarning": "kscore.errors",
}

__all__ = [
    "ConfigError",
    "GateFailed",
    "InputError",
    "KscoreError",
    "KscoreWarning",
    "Metric",
    "QualityStandard",
    "Task",
    "__version__",
    "compare_models",
    "difficulty_scores",
    "embed_scores",
    "local_difficulty",
    "potential_difficulty_scores",
    "reduce_to_2d",
    "representation_scores",
    "select",
    "write_difficulty_scores",
    "write_embed_scores",
    "write_report",
    "write_selection",
]

if TYPE_CHECKING:
    from kscore.compare import compare_models
    from kscore.config import Metric, QualityStandard, Task
    from kscore.density import local_difficulty, potential_difficulty_scores, representation_scores
    from kscore.difficulty import difficulty_scores
    from kscore.embed import embed_scores
    from kscore.embedding import reduce_to_2d
    from kscore.errors import ConfigError, GateFailed, InputError, KscoreError, KscoreWarning
    from kscore.jobs import write_difficulty_scores, write_embed_scores
    from kscore.report import write_report
    from kscore.selection import select, write_selection


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kscore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
