"""The `kscore` command line: parse options, call the library, print, map errors to exit codes.

Heavy libraries are imported inside the commands that use them, so `kscore --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

# numpy asks the kernel for transparent huge pages on large arrays; where the kernel then compacts
# memory synchronously (THP defrag "madvise", common on cloud VMs) that stalls kscore's large,
# short-lived arrays (10-15% of a 10M-row run here). A user's own setting wins.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

from kscore import __version__
from kscore.errors import KscoreError, KscoreWarning

app = typer.Typer(
    name="kscore",
    help="Score datapoints for ML data curation: difficulty, representation and potential difficulty.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Options shared by several commands: defined once so they mean the same everywhere.
ConfigOption = Annotated[
    Optional[Path],
    typer.Option(
        "--config", "-c", help="Quality standard YAML (default: $KSCORE_CONFIG, then ./kscore.yaml)."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]


def _top_option(default: int, what: str) -> Any:
    return typer.Option("--top", min=0, help=f"How many {what} to list.")


_state = {"debug": False}


def _debug() -> bool:
    return _state["debug"] or os.environ.get("KSCORE_DEBUG", "") not in ("", "0")


def _stderr(line: str) -> None:
    sys.stderr.write(line.rstrip("\n") + "\n")


@contextmanager
def _errors() -> Iterator[dict[str | None, list[str]]]:
    """Turn KscoreError into `error: ...` and its exit code; collect warnings by model for the summary."""
    collected: dict[str | None, list[str]] = {}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", KscoreWarning)
            try:
                yield collected
            finally:
                for item in caught:
                    if isinstance(item.message, KscoreWarning):
                        collected.setdefault(item.message.model, []).append(str(item.message))
                        _stderr(f"warning: {item.message}")
    except KscoreError as exc:
        if _debug():
            raise
        _stderr(f"error: {exc}")
        raise typer.Exit(exc.exit_code) from None


def _print(renderables: list[Any] | Any) -> None:
    from rich.console import Console

    console = Console()
    for renderable in renderables if isinstance(renderables, list) else [renderables]:
        console.print(renderable)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"kscore {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks of errors.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """kscore: which datapoints are hard, which are covered, which sit near the hard ones."""
    _state["debug"] = debug


@app.command()
def difficulty(
    files: Annotated[
        list[str], typer.Argument(help="Result files (CSV/Parquet), globs or NAME=PATH; one model each.")
    ],
    config: ConfigOption = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output Parquet file.")] = Path(
        "difficulty_scores.parquet"
    ),
    model_col: Annotated[
        Optional[str], typer.Option("--model-col", help="Column naming the model, for long files.")
    ] = None,
    datapoints: Annotated[
        Optional[Path],
        typer.Option("--datapoints", help="Table of all datapoints (e.g. with ground truth) to enrich."),
    ] = None,
    top: Annotated[int, _top_option(10, "hardest datapoints")] = 10,
    explain: Annotated[
        bool, typer.Option("--explain", help="Add normalized signals and the top signal per model.")
    ] = False,
    json_: JsonOption = False,
) -> None:
    """Difficulty score of every datapoint, per model and averaged over models."""
    with _errors() as collected:
        from kscore.config import load_standard
        from kscore.difficulty import difficulty_scores
        from kscore.io import (
            check_output,
            read_results,
            read_table,
            resolve_model_files,
            write_parquet_atomic,
        )
        from kscore.report import difficulty_summary, render_difficulty
        from kscore.tasks import threshold_accuracy

        standard = load_standard(config)
        files = resolve_model_files(files)
        check_output(out, [*files.values(), *([datapoints] if datapoints else [])])
        metric_names = [m.name for m in standard.metrics]
        task_columns = list(standard.task.result_columns) if standard.task else []
        columns = [standard.id_column, *metric_names, *task_columns]
        frames, sources = read_results(files, columns, numeric=metric_names, model_col=model_col)
        points = read_table(datapoints) if datapoints else None
        table = difficulty_scores(frames, standard, explain=explain, datapoints=points, sources=sources)
        accuracy = {}
        if standard.task is not None and standard.task.type == "binary_classification":
            accuracy = {
                name: threshold_accuracy(frame, standard.task, standard.id_column, sources[name], points)
                for name, frame in frames.items()
            }
        metadata = {
            "kscore_version": __version__,
            "command": "difficulty",
            "standard": standard.to_dict(),
            "models": list(frames),
            "inputs": sources,
            "datapoints": str(datapoints) if datapoints else None,
        }
        # The summary is computed while the file is written: both release the GIL.
        with ThreadPoolExecutor(1) as writer:
            written = writer.submit(write_parquet_atomic, table, out, metadata)
            summary = difficulty_summary(
                table, list(frames), standard.id_column, top=top, output=str(out), accuracy=accuracy
            )
            written.result()
    summary["warnings"] = collected.pop(None, [])
    for model in summary["models"]:
        model["warnings"] = collected.get(model["name"], [])
    if json_:
        _print_json(summary)
    else:
        _print(render_difficulty(summary))


@app.command()
def init(
    result_file: Annotated[
        Optional[Path], typer.Argument(help="A result file whose numeric columns become metrics.")
    ] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the standard.")] = Path(
        "kscore.yaml"
    ),
    id_column: Annotated[str, typer.Option("--id-column", help="The datapoint id column.")] = "id",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
) -> None:
    """Write a commented starter quality standard."""
    with _errors():
        from kscore.config import starter_yaml
        from kscore.errors import InputError

        if out.exists() and not force:
            raise InputError(f"{out}: already exists (use --force to overwrite it)")
        numeric = None
        if result_file is not None:
            import polars as pl

            from kscore.io import read_table

            frame = read_table(result_file)
            if id_column not in frame.columns:
                raise InputError(f"{result_file}: no id column {id_column!r} (choose one with --id-column)")
            numeric = [
                c for c, t in frame.schema.items() if c != id_column and (t.is_numeric() or t == pl.Boolean)
            ]
        text = starter_yaml(id_column, numeric)
        _write_text_atomic(out, text)
    _stderr(f"wrote {out}; check it with `kscore check-config {out}`")


def _write_text_atomic(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    temp.write_text(text, encoding="utf-8")
    os.replace(temp, path)


@app.command("check-config")
def check_config(
    path: Annotated[Optional[Path], typer.Argument(help="The standard (default: discovered).")] = None,
    json_: JsonOption = False,
) -> None:
    """Validate a quality standard and print it resolved (normalized weights)."""
    with _errors():
        from kscore.config import QualityStandard, find_config

        found = find_config(path)
        assert found is not None
        resolved = QualityStandard.from_yaml(found).to_dict()
    if json_:
        _print_json(resolved)
    else:
        from kscore.report import render_standard

        _print([render_standard(resolved), f"{found}: valid"])


def run() -> None:
    """Console-script entry point."""
    app()
