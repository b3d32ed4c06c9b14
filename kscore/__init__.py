"""kscore: difficulty, representation and potential-difficulty scores for ML data curation.

The public API is imported lazily (PEP 562), so that `kscore --help` does not pay for polars or numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "QualityStandard": "kscore.config",
    "Metric": "kscore.config",
    "Task": "kscore.config",
    "difficulty_scores": "kscore.difficulty",
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
    "difficulty_scores",
]

if TYPE_CHECKING:
    from kscore.config import Metric, QualityStandard, Task
    from kscore.difficulty import difficulty_scores
    from kscore.errors import ConfigError, GateFailed, InputError, KscoreError, KscoreWarning


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kscore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
