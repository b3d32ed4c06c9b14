"""The report job (`kscore report`): read kscore's outputs (and --data), check that their ids
belong together, hand the frames to the page (`kscore/html_page.py`) and write it atomically."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from kscore.errors import InputError, missing_column_message
from kscore.html_page import ReportInput, render_page
from kscore.storage import as_path

KINDS = ("difficulty", "embed-scores", "compare", "select")
DEFAULT_FILES = ("difficulty_scores.parquet", "embed_scores.parquet")
MAX_POINTS = 1_000_000
Progress = Callable[[str, int, int], None]


def read_inputs(files: Sequence[str | os.PathLike]) -> dict[str, ReportInput]:
    """The outputs by kind; exit-2 errors for a file kscore did not write or two of one kind."""
    from kscore.io import read_kscore_metadata, scan_output

    if not files:
        files = [name for name in DEFAULT_FILES if Path(name).exists()]
        if not files:
            raise InputError(
                "no inputs: give the outputs of `kscore difficulty`, `embed-scores`, `compare` or "
                f"`select`, or run where {' or '.join(DEFAULT_FILES)} is"
            )
    found: dict[str, ReportInput] = {}
    for name in files:
        path = as_path(name)
        if isinstance(path, Path) and not path.exists():
            raise InputError(f"{path}: no such file")
        metadata = read_kscore_metadata(path)
        kind = metadata.get("command")
        if kind not in KINDS:
            raise InputError(
                f"{path}: not an output of kscore (it carries no kscore metadata); give the outputs "
                "of `kscore difficulty`, `embed-scores`, `compare` or `select`"
            )
        if kind in found:
            raise InputError(
                f"{path} and {found[kind].path} are both outputs of `kscore {kind}`: give one of each kind"
            )
        try:
            scan = scan_output(path)
            if kind == "difficulty":  # the normalised signals are not shown: not read
                scan = scan.select(pl.exclude("^norm_.*$"))
            frame = scan.collect()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise InputError(f"{path}: cannot read: {str(exc).strip()[:200]}") from None
        found[kind] = ReportInput(path, kind, metadata, frame)
    return found


def _id_column(inputs: Mapping[str, ReportInput], id_column: str | None) -> str:
    if id_column is None:
        standard = inputs["difficulty"].metadata.get("standard", {}) if "difficulty" in inputs else {}
        id_column = standard.get("id_column") if isinstance(standard, dict) else None
        id_column = id_column if isinstance(id_column, str) else "id"
    for item in inputs.values():
        if id_column not in item.frame.columns:
            message = missing_column_message(str(item.path), id_column, item.frame.columns, "id column")
            raise InputError(f"{message}; name it with --id-col")
    return id_column


def _check_overlap(inputs: Mapping[str, ReportInput], id_column: str) -> None:
    """Files computed on different datasets share no id: name the one that shares none with the rest
    (picks are train ids and difficulty reference ids, so each is held against all the others)."""
    if len(inputs) < 2:
        return
    ids = {kind: item.frame.get_column(id_column) for kind, item in inputs.items()}
    if len({v.dtype for v in ids.values()}) > 1:  # ints in one file, text in another: compare as text
        ids = {kind: v.cast(pl.String) for kind, v in ids.items()}
    for kind, item in inputs.items():
        others = pl.concat([v for k, v in ids.items() if k != kind])
        if not ids[kind].is_in(others.implode()).any():
            rest = ", ".join(str(i.path) for k, i in inputs.items() if k != kind)
            raise InputError(
                f"{item.path} shares no id in {id_column!r} with {rest}: were they computed on the "
                "same dataset?"
            )


def _read_data(data: str | os.PathLike) -> tuple[pl.DataFrame, str]:
    """The user's own columns (--data) as read, and the name errors give the file."""
    from kscore.io import read_table

    path = as_path(data)
    return read_table(path), f"--data {path}"  # type: ignore[return-value]


def check_report_output(out: str | os.PathLike) -> Path:
    """The report's path: an .html (or .htm) file; anything else is exit 2."""
    path = Path(out)
    if path.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"{path}: the report is one HTML file: give -o a name ending in .html")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give -o a file name ending in .html")
    return path


def report(
    files: Sequence[str | os.PathLike] = (),
    out: str | os.PathLike = "report.html",
    *,
    data: str | os.PathLike | None = None,
    columns: Sequence[str] | None = None,
    image_col: str | None = None,
    color: str | None = None,
    top: int = 20,
    max_points: int = MAX_POINTS,
    title: str | None = None,
    id_column: str | None = None,
    progress: Progress | None = None,
    storage_options: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`kscore report`: one offline HTML page of kscore outputs `files` (default: the difficulty
    and embed-scores outputs here; local or in object storage, with `storage_options`), written to
    `out` (a local file) atomically; returns what was written, as `kscore report --json` prints it."""
    from kscore.io import check_output, write_atomic
    from kscore.jobs.common import stage
    from kscore.storage import using

    out_path = check_report_output(out)
    if max_points < 1:
        raise InputError(f"--max-points must be at least 1, not {max_points}")
    if top < 0:
        raise InputError(f"--top must be 0 or more, not {top}")
    with stage(progress, "read"), using(storage_options):  # the inputs may be in object storage
        inputs = read_inputs(files)
    local = [
        p
        for p in [*(i.path for i in inputs.values()), *([as_path(data)] if data else [])]
        if isinstance(p, Path)
    ]
    check_output(out_path, local)
    id_column = _id_column(inputs, id_column)
    _check_overlap(inputs, id_column)
    if data is not None and "embed-scores" not in inputs:
        raise InputError("--data needs an embed-scores output: its columns are shown on the map")
    with stage(progress, "build page"):
        with using(storage_options):
            own = _read_data(data) if data is not None else None
        page, summary = render_page(inputs, id_column, own, columns, image_col, color, top, max_points, title)
    encoded = page.encode("utf-8")
    with stage(progress, "write"):
        write_atomic(out_path, lambda target: Path(target).write_bytes(encoded))
    from kscore.summaries import envelope

    return envelope("report", {"output": str(out_path), "bytes": len(encoded), **summary})


write_report = report  # 0.6's name
