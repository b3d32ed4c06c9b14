"""The quality standard's jobs: `kscore init` writes a starter standard, `kscore check-config`
validates one and resolves it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from kscore.errors import InputError

DETECTION_NOTE = "tp, fp and fn columns found: the standard scores them as an object_detection task"


def init(
    result_file: str | os.PathLike | None = None,
    out: str | os.PathLike = "kscore.yaml",
    *,
    id_column: str = "id",
    force: bool = False,
) -> dict[str, Any]:
    """`kscore init`: write a commented starter standard to `out` (never over an existing file
    unless `force`); with a results file, one metric per numeric column. Returns the summary."""
    from kscore.config import class_columns, starter_yaml
    from kscore.io import check_output, read_table, write_atomic
    from kscore.summaries import envelope

    out = Path(out)
    check_output(out, [Path(result_file)] if result_file is not None else [])
    if out.exists() and not force:
        raise InputError(f"{out}: already exists (use --force to overwrite it)")
    numeric = None
    classes = None
    notes = []
    if result_file is not None:
        frame = read_table(Path(result_file))
        if id_column not in frame.columns:
            raise InputError(f"{result_file}: no id column {id_column!r} (choose one with --id-column)")
        # Only columns `difficulty` can score: numbers (booleans and text are not metrics).
        numeric = [c for c, t in frame.schema.items() if c != id_column and t.is_numeric()]
        if {"tp", "fp", "fn"} <= {c.lower() for c in numeric}:
            notes.append(DETECTION_NOTE)
        elif (classes := class_columns([c for c in frame.columns if c != id_column])) is not None:
            numeric = [c for c in numeric if c not in classes]
            notes.append(
                f"{classes[0]} and {classes[1]} read as the true and the predicted class: the standard "
                "scores them as a multiclass_classification task"
            )
    text = starter_yaml(id_column, numeric, classes)
    write_atomic(out, lambda temp: Path(temp).write_text(text, encoding="utf-8"))
    return envelope("init", {"output": str(out), "metrics": numeric or [], "notes": notes})


def check_config(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """`kscore check-config`: the standard at `path` (default: discovered) validated and resolved
    (normalized weights); what `kscore check-config --json` prints."""
    from kscore.config import QualityStandard, find_config
    from kscore.summaries import envelope

    found = find_config(path)
    assert found is not None
    resolved = QualityStandard.from_yaml(found).to_dict()
    return envelope("check-config", {"config": str(found), "standard": resolved})
