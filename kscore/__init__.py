"""kscore: difficulty, representation and potential-difficulty scores for ML data curation.

The public API is imported lazily (PEP 562), so that `kscore --help` does not pay for polars or numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kscore._version import __version__

_EXPORTS = {
    "QualityStandard": "kscore.config",
    "Metric": "kscore.config",
    "Task": "kscore.config",
    "difficulty_scores": "kscore.jobs.difficulty",
    "compare_models": "kscore.core.comparison",
    "embed_scores": "kscore.jobs.embed_scores",
    "write_difficulty_scores": "kscore.jobs.difficulty",
    "write_embed_scores": "kscore.jobs.embed_scores",
    "select": "kscore.jobs.select",
    "write_selection": "kscore.jobs.select",
    "write_report": "kscore.jobs.report",
    "reduce_to_2d": "kscore.core.reduction",
    "representation_scores": "kscore.core.density",
    "potential_difficulty_scores": "kscore.core.density",
    "local_difficulty": "kscore.core.density",
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
    from kscore.config import Metric, QualityStandard, Task
    from kscore.core.comparison import compare_models
    from kscore.core.density import local_difficulty, potential_difficulty_scores, representation_scores
    from kscore.core.reduction import reduce_to_2d
    from kscore.errors import ConfigError, GateFailed, InputError, KscoreError, KscoreWarning
    from kscore.jobs.difficulty import difficulty_scores, write_difficulty_scores
    from kscore.jobs.embed_scores import embed_scores, write_embed_scores
    from kscore.jobs.report import write_report
    from kscore.jobs.select import select, write_selection


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kscore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
