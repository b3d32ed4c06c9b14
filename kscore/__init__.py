"""kscore: difficulty, representation and potential-difficulty scores for ML data curation.

One call per command, each `(inputs..., out=None, **options)`: without `out` it returns the table,
with `out` it writes it and returns the summary that `--json` prints:

    kscore.difficulty  kscore.embed_scores  kscore.compare  kscore.select  kscore.report
    kscore.init        kscore.check_config

plus the building blocks (the quality standard, the scores over arrays, the errors). Imported
lazily (PEP 562), so that `kscore --help` does not pay for polars or numpy. The layers beneath:
`kscore/jobs` (one module per command), `plan`, `core` (the math), `engines`, and the base modules.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from kscore._version import __version__

_EXPORTS = {
    # one call per command
    "difficulty": "kscore.jobs.difficulty",
    "embed_scores": "kscore.jobs.embed_scores",
    "compare": "kscore.jobs.compare",
    "select": "kscore.jobs.select",
    "report": "kscore.jobs.report",
    "init": "kscore.jobs.standard",
    "check_config": "kscore.jobs.standard",
    # building blocks
    "QualityStandard": "kscore.config",
    "Metric": "kscore.config",
    "Task": "kscore.config",
    "compare_models": "kscore.core.comparison",
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

# 0.6's names, deprecated in 0.7 and removed in 0.8: what replaces each, for the error.
_REMOVED = {
    "difficulty_scores": "kscore.difficulty",
    "write_difficulty_scores": "kscore.difficulty(results, standard, out)",
    "write_embed_scores": "kscore.embed_scores(embeddings, out)",
    "write_selection": "kscore.select(scores, budget, out)",
    "write_report": "kscore.report",
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
    "check_config",
    "compare",
    "compare_models",
    "difficulty",
    "embed_scores",
    "init",
    "local_difficulty",
    "potential_difficulty_scores",
    "reduce_to_2d",
    "report",
    "representation_scores",
    "select",
]

if TYPE_CHECKING:
    from kscore.config import Metric, QualityStandard, Task
    from kscore.core.comparison import compare_models
    from kscore.core.density import local_difficulty, potential_difficulty_scores, representation_scores
    from kscore.core.reduction import reduce_to_2d
    from kscore.errors import ConfigError, GateFailed, InputError, KscoreError, KscoreWarning
    from kscore.jobs.compare import compare
    from kscore.jobs.difficulty import difficulty
    from kscore.jobs.embed_scores import embed_scores
    from kscore.jobs.report import report
    from kscore.jobs.select import select
    from kscore.jobs.standard import check_config, init


def __getattr__(name: str) -> Any:
    if name in _REMOVED:
        raise AttributeError(f"kscore.{name} was removed in 0.8; use {_REMOVED[name]}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'kscore' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
