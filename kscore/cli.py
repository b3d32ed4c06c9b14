"""The `kscore` command line: parse options, call the library, print, map errors to exit codes.

Heavy libraries are imported inside the commands that use them, so `kscore --help` stays fast.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any, NoReturn, Optional, TypeVar

import typer

# numpy asks the kernel for transparent huge pages on large arrays; where the kernel then compacts
# memory synchronously (THP defrag "madvise", common on cloud VMs) that stalls kscore's large,
# short-lived arrays (10-15% of a 10M-row run here). A user's own setting wins.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

from kscore import __version__
from kscore.errors import KscoreError, KscoreWarning

_R = TypeVar("_R")

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
PlotOption = Annotated[
    Optional[Path], typer.Option("--plot", help="Also draw a PNG picture here (needs kscore[plot]).")
]
SizeOption = Annotated[str, typer.Option("--size", help="Picture size in pixels, WIDTHxHEIGHT.")]
MemoryLimitOption = Annotated[
    Optional[str],
    typer.Option(
        "--memory-limit",
        help="Memory to stay within, e.g. 4GiB (default: half the available memory); larger inputs are "
        "scored by id ranges spilled to a temporary folder.",
    ),
]
TempDirOption = Annotated[
    Optional[Path],
    typer.Option("--temp-dir", help="Folder for the spilled id ranges (default: the output's folder)."),
]
EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        help="Where the work runs: local (this machine's cores) or ray (a Ray cluster; needs kscore[ray]).",
    ),
]
StorageOption = Annotated[
    Optional[list[str]],
    typer.Option(
        "--storage-option",
        metavar="KEY=VALUE",
        help="For s3:// gs:// az:// paths: an endpoint, a region... (polars' names); repeatable.",
    ),
]
RayAddressOption = Annotated[
    Optional[str],
    typer.Option(
        "--ray-address",
        help="The Ray cluster to use with --engine ray (default: $RAY_ADDRESS; else a local instance).",
    ),
]


# Counts beyond this are clamped to it: more than any table kscore prints, and safe for polars.
MAX_TOP = 2**31 - 1


def _cap_top(value: int) -> int:
    return min(value, MAX_TOP)


def _top_option(what: str) -> Any:
    return typer.Option("--top", min=0, callback=_cap_top, help=f"How many {what} to list.")


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
            traceback.print_exc()
        _stderr(f"error: {exc}")
        raise typer.Exit(exc.exit_code) from None


def _stdout_closed() -> None:
    """stdout's reader went away (`kscore ... | head`): drop the rest of the output quietly.

    Not an error of kscore's: the exit code stays what the work decided (a failed gate is still 1).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    with suppress(OSError, ValueError):
        os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _print(renderables: list[Any] | Any) -> None:
    from rich.console import Console

    console = Console()
    try:
        for renderable in renderables if isinstance(renderables, list) else [renderables]:
            console.print(renderable)
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_closed()


def _print_json(data: Any) -> None:
    text = json.dumps(_json_safe(data), indent=2, default=str, allow_nan=False)
    try:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_closed()


def _json_safe(value: Any) -> Any:
    """`value` with NaN and +/-inf as null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


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
    out: Annotated[
        str, typer.Option("--out", "-o", help="Output Parquet file; a folder (DIR/) for a Parquet dataset.")
    ] = "difficulty_scores.parquet",
    model_col: Annotated[
        Optional[str], typer.Option("--model-col", help="Column naming the model, for long files.")
    ] = None,
    datapoints: Annotated[
        Optional[Path],
        typer.Option("--datapoints", help="Table of all datapoints (e.g. with ground truth) to enrich."),
    ] = None,
    top: Annotated[int, _top_option("hardest datapoints")] = 10,
    explain: Annotated[
        bool, typer.Option("--explain", help="Add normalized signals and the top signal per model.")
    ] = False,
    plot: PlotOption = None,
    size: SizeOption = "1200x900",
    memory_limit: MemoryLimitOption = None,
    temp_dir: TempDirOption = None,
    jobs: Annotated[
        Optional[int], typer.Option("--jobs", "-j", min=1, help="Threads to use (default: every core).")
    ] = None,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
    storage_option: StorageOption = None,
    json_: JsonOption = False,
) -> None:
    """Difficulty score of every datapoint, per model and averaged over models."""
    from kscore.storage import parse_storage_options, using

    # the storage options hold for the whole command: its inputs, output and --plot
    with _errors() as collected, using(storage := parse_storage_options(storage_option or [])):
        if jobs is not None:
            from kscore.engines.local import limit_threads

            limit_threads(jobs)  # before polars is imported: its pool size is fixed then
        import polars as pl

        from kscore.config import load_standard
        from kscore.io import (
            read_results,
            read_table,
            resolve_model_files,
            scan_output,
        )
        from kscore.jobs import write_difficulty_scores
        from kscore.plan import resolve_memory_limit
        from kscore.report import render_difficulty

        limit = resolve_memory_limit(memory_limit)
        standard = load_standard(config)
        files = resolve_model_files(files)
        config_file = [Path(standard.source)] if standard.source else []
        inputs = [*files.values(), *([datapoints] if datapoints else []), *config_file]
        out_path = _checked_output(out, inputs)
        picture_size = _check_plot(plot, size, [*inputs, out_path])
        sources: dict[str, str] = {}
        results: Any = files
        if model_col is not None:
            metric_names = [m.name for m in standard.metrics]
            task_columns = list(standard.task.result_columns) if standard.task else []
            columns = [standard.id_column, *metric_names, *task_columns]
            results, sources = read_results(files, columns, numeric=metric_names, model_col=model_col)
        points = read_table(datapoints) if datapoints else None
        assert not isinstance(points, pl.LazyFrame)
        with _progress() as progress:
            summary = write_difficulty_scores(
                results,
                standard,
                out,
                explain=explain,
                datapoints=points,
                datapoints_source=str(datapoints) if datapoints else None,
                sources=sources,
                memory_limit=limit,
                temp_dir=temp_dir,
                top=top,
                progress=progress,
                engine=engine,
                ray_address=ray_address,
            )
    models = [model["name"] for model in summary["models"]]
    summary["warnings"] = collected.pop(None, [])
    for model in summary["models"]:
        model["warnings"] = collected.get(model["name"], [])
    if plot is not None:
        with _errors(), using(storage):
            from kscore.plot import plot_difficulty

            plot_difficulty(scan_output(out_path), models, plot, size=picture_size)
        summary["plot"] = str(plot)
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
        from kscore.io import check_output

        check_output(out, [result_file] if result_file is not None else [])
        if out.exists() and not force:
            raise InputError(f"{out}: already exists (use --force to overwrite it)")
        numeric = None
        if result_file is not None:
            from kscore.io import read_table

            frame = read_table(result_file)
            if id_column not in frame.columns:
                raise InputError(f"{result_file}: no id column {id_column!r} (choose one with --id-column)")
            # Only columns `difficulty` can score: numbers (booleans and text are not metrics).
            numeric = [c for c, t in frame.schema.items() if c != id_column and t.is_numeric()]
        text = starter_yaml(id_column, numeric)
        _write_text_atomic(out, text)
    _stderr(f"wrote {out}; check it with `kscore check-config {out}`")


def _write_text_atomic(path: Path, text: str) -> None:
    from kscore.io import write_atomic

    write_atomic(path, lambda temp: Path(temp).write_text(text, encoding="utf-8"))


@app.command("embed-scores")
def embed_scores(
    embeddings: Annotated[
        Optional[str],
        typer.Argument(help="Embeddings table (CSV/Parquet); default: the standard's `embeddings`."),
    ] = None,
    split_col: Annotated[str, typer.Option("--split-col", help="Column holding each row's split.")] = "split",
    train_value: Annotated[
        Optional[list[str]], typer.Option("--train-value", help="Split value of scored rows (repeatable).")
    ] = None,
    reference_value: Annotated[
        Optional[list[str]],
        typer.Option("--reference-value", help="Split value of reference rows (default: all others)."),
    ] = None,
    difficulty: Annotated[
        Optional[str], typer.Option("--difficulty", help="Output of `kscore difficulty`, for the potential.")
    ] = None,
    embedding_col: Annotated[
        Optional[str], typer.Option("--embedding-col", help="The list/array column holding the embedding.")
    ] = None,
    embedding_prefix: Annotated[
        Optional[str], typer.Option("--embedding-prefix", help="Prefix of the numeric embedding columns.")
    ] = None,
    reducer: Annotated[str, typer.Option("--reducer", help="umap, pca, or none (2D input).")] = "umap",
    metric: Annotated[str, typer.Option("--metric", help="euclidean or cosine (UMAP, PCA).")] = "euclidean",
    seed: Annotated[
        str, typer.Option("--seed", help="Random seed, or 'none' (faster, not reproducible).")
    ] = "0",
    bandwidth: Annotated[
        str, typer.Option("--bandwidth", help="KDE bandwidth: scott, silverman, or a factor.")
    ] = "scott",
    fit_sample: Annotated[
        int, typer.Option("--fit-sample", min=100, help="Fit UMAP on a sample of this many rows at most.")
    ] = 20_000,  # kscore.embedding.FIT_SAMPLE (not imported: `kscore --help` stays fast)
    keep_embedding: Annotated[
        bool, typer.Option("--keep-embedding", help="Keep the embedding column(s) in the output.")
    ] = False,
    plot: PlotOption = None,
    size: SizeOption = "1200x900",
    config: ConfigOption = None,
    out: Annotated[
        str, typer.Option("--out", "-o", help="Output Parquet file; a folder (DIR/) for a Parquet dataset.")
    ] = "embed_scores.parquet",
    top: Annotated[int, _top_option("least represented / highest-potential train points")] = 10,
    jobs: Annotated[
        Optional[int],
        typer.Option("--jobs", "-j", min=1, help="Worker processes and threads (default: every core)."),
    ] = None,
    memory_limit: MemoryLimitOption = None,
    temp_dir: TempDirOption = None,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
    storage_option: StorageOption = None,
    json_: JsonOption = False,
) -> None:
    """Representation, potential difficulty and local difficulty of every train row."""
    from kscore.storage import as_path, parse_storage_options, using

    # the storage options hold for the whole command: its inputs, output and --plot
    with _errors() as collected, using(storage := parse_storage_options(storage_option or [])):
        from kscore.config import QualityStandard, find_config
        from kscore.errors import InputError
        from kscore.io import read_table
        from kscore.jobs import write_embed_scores
        from kscore.plan import resolve_memory_limit

        limit = resolve_memory_limit(memory_limit)
        config_path = find_config(config, required=False)
        standard = QualityStandard.from_yaml(config_path) if config_path else None
        id_col = standard.id_column if standard else "id"
        if embeddings is None:
            if standard is None or standard.embeddings is None:
                raise InputError(
                    "no embeddings file: pass EMBEDDINGS or set `embeddings:` in the quality standard"
                )
            embeddings = str(config_path.parent / standard.embeddings) if config_path else None
        assert embeddings is not None
        sources = [as_path(embeddings), *([as_path(difficulty)] if difficulty else [])]
        inputs = [*sources, *([config_path] if config_path else [])]
        out_path = _checked_output(out, inputs)
        picture_size = _check_plot(plot, size, [*inputs, out_path])
        seed_value = _parse_seed(seed)
        bandwidth_value = _parse_bandwidth(bandwidth)
        with _progress() as progress:
            summary = write_embed_scores(
                embeddings,
                out,
                difficulty=difficulty,
                temp_dir=temp_dir,
                top=top,
                id_col=id_col,
                split_col=split_col,
                train_values=train_value or ["train"],
                reference_values=reference_value,
                embedding_col=embedding_col,
                embedding_prefix=embedding_prefix,
                reducer=reducer,
                metric=metric,
                seed=seed_value,
                bandwidth=bandwidth_value,
                fit_sample=fit_sample,
                keep_embedding=keep_embedding,
                progress=progress,
                jobs=jobs,
                memory_limit=limit,
                engine=engine,
                ray_address=ray_address,
            )
    summary["warnings"] = [w for ws in collected.values() for w in ws]
    if plot is not None:
        with _errors(), using(storage):
            from kscore.plot import map_data, plot_map

            plot_map(map_data(read_table(out_path)), plot, size=picture_size)
        summary["plot"] = str(plot)
    if json_:
        _print_json(summary)
    else:
        from kscore.report import render_embed

        _print(render_embed(summary))


def _parse_seed(text: str) -> int | None:
    from kscore.errors import InputError

    if text.strip().lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise InputError(f"--seed must be an integer or 'none', not {text!r}") from None


def _parse_bandwidth(text: str) -> str | float:
    from kscore.errors import InputError

    if text in ("scott", "silverman"):
        return text
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise InputError(f"--bandwidth must be scott, silverman or a positive number, not {text!r}")
    return value


@contextmanager
def _progress() -> Iterator[Any]:
    """Progress on stderr, fed by the library's (stage, done, total) callback: a rich bar with counts
    in a terminal; elsewhere (CI logs) one line per stage when it ends, with its duration."""
    import time

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    tasks: dict[str, Any] = {}
    started: dict[str, float] = {}
    reported: set[str] = set()

    def update(stage: str, done: int, total: int) -> None:
        if stage not in started:
            started[stage] = time.perf_counter()
        if console.is_terminal:
            if not tasks:
                bar.start()  # only once there is something to show: no stray output otherwise
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)
        elif done >= total and stage not in reported:
            reported.add(stage)
            _stderr(f"{stage}: {done}/{total} done in {time.perf_counter() - started[stage]:.1f} s")

    try:
        yield update
    finally:
        if tasks:
            bar.stop()


@app.command()
def compare(
    difficulty_file: Annotated[Path, typer.Argument(help="Output of `kscore difficulty`.")],
    baseline: Annotated[str, typer.Option("--baseline", help="Model A (the reference).")],
    candidate: Annotated[str, typer.Option("--candidate", help="Model B (the new one).")],
    margin: Annotated[float, typer.Option("--margin", help="Score change that counts (default 0).")] = 0.0,
    common_failure_threshold: Annotated[
        float,
        typer.Option("--common-failure-threshold", help="difficulty_score above this is a common failure."),
    ] = 0.9,
    max_regressions: Annotated[
        Optional[int],
        typer.Option("--max-regressions", min=0, help="Gate: exit 1 above this many regressions."),
    ] = None,
    max_common_failures: Annotated[
        Optional[int],
        typer.Option("--max-common-failures", min=0, help="Gate: exit 1 above this many common failures."),
    ] = None,
    top: Annotated[int, _top_option("largest regressions")] = 20,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Write every compared datapoint (Parquet).")
    ] = None,
    json_: JsonOption = False,
) -> None:
    """Datapoints that got worse from one model to another, and CI gates on them."""
    with _errors():
        from kscore.compare import PER_MODEL_NOTE, compare_models, gates
        from kscore.errors import GateFailed
        from kscore.io import check_output, read_kscore_metadata, read_table, write_parquet_atomic

        if out is not None:
            check_output(out, [difficulty_file])
        table = read_table(difficulty_file)
        metadata = read_kscore_metadata(difficulty_file) if difficulty_file.suffix != ".csv" else {}
        standard = metadata.get("standard")
        standard = standard if isinstance(standard, dict) else {}
        if not isinstance(standard.get("id_column"), str):
            standard.pop("id_column", None)
        comparison = compare_models(
            table,  # type: ignore[arg-type]
            baseline,
            candidate,
            margin=margin,
            common_failure_threshold=common_failure_threshold,
            id_column=standard.get("id_column"),
        )
        checked = gates(comparison, max_regressions, max_common_failures)
        if out is not None:
            write_parquet_atomic(
                comparison.table,
                out,
                {"command": "compare", "baseline": baseline, "candidate": candidate, "margin": margin},
            )
        summary = comparison.to_dict(top=top, gates=checked)
        if standard.get("scope") == "per_model":
            summary["note"] = PER_MODEL_NOTE
            _stderr(f"note: {PER_MODEL_NOTE}")
        if json_:
            _print_json(summary)
        else:
            from kscore.report import render_compare

            _print(render_compare(summary))
        failed = [g for g in checked if not g.passed]
        if failed:
            raise GateFailed(
                "; ".join(
                    f"gate failed: {g.name} {g.value} > max {g.limit} (over by {g.value - g.limit})"
                    for g in failed
                )
            )


@app.command()
def plot(
    scores_file: Annotated[Path, typer.Argument(help="Output of `kscore embed-scores`.")],
    color: Annotated[
        str, typer.Option("--color", help="Score that colors the train points.")
    ] = "representation_score",
    out: Annotated[Path, typer.Option("--out", "-o", help="PNG file to write.")] = Path("map.png"),
    title: Annotated[Optional[str], typer.Option("--title", help="Title of the picture.")] = None,
    size: SizeOption = "1200x900",
) -> None:
    """Draw the 2D embedding map of an embed-scores file."""
    with _errors():
        from kscore.io import read_table
        from kscore.plot import map_data, plot_map

        picture_size = _check_plot(out, size, [scores_file])
        data = map_data(read_table(scores_file), color)  # type: ignore[arg-type]
        plot_map(data, out, title=title, size=picture_size)
    _stderr(f"wrote {out} ({data.n_points} points{', as densities' if data.density else ''})")


def _checked_output(out: str, inputs: list[Any]) -> Any:
    """The output's path, once it is known to be writable (a file, a dataset folder `DIR/`, or an
    object storage prefix, which the job checks before any work)."""
    from kscore.io import check_dataset_output, check_output, wants_dataset
    from kscore.storage import as_path, is_remote

    out_path = as_path(out)
    if not is_remote(out):
        if wants_dataset(out):
            check_dataset_output(out_path, inputs)
        else:
            check_output(out_path, inputs)
    return out_path


def _check_plot(out: Path | None, size: str, inputs: list[Path]) -> tuple[int, int]:
    """Fail before any work when a picture cannot be made: no matplotlib, bad size or path."""
    from kscore.plot import _pyplot, parse_size

    picture_size = parse_size(size)
    if out is not None:
        from kscore.io import check_output

        check_output(out, inputs)
        _pyplot()
    return picture_size


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


def _usage_error() -> type[Exception]:
    """click's UsageError: typer vendors click from 0.20 on, older typer uses click itself."""
    import importlib

    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            return importlib.import_module(module).UsageError
        except (ImportError, AttributeError):
            continue
    raise ImportError("neither typer's nor click's UsageError found")  # pragma: no cover


INTERRUPTED = "error: interrupted (Ctrl-C); no output was written"


def _on_signal(signum: int, frame: Any) -> None:
    """Stop the run with an exception, once: cleanup (`finally`, temporary files) then runs to the
    end, since a second Ctrl-C, or polars re-raising the interrupt it saw, is ignored from now on."""
    from kscore.errors import Interrupted

    for other in (signal.SIGINT, signal.SIGTERM):
        signal.signal(other, signal.SIG_IGN)
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    raise Interrupted("terminated (SIGTERM)", 143)


def _fail(message: str, code: int) -> NoReturn:
    if _debug():
        traceback.print_exc()
    _stderr(message)
    sys.exit(code)


def run() -> None:
    """Console-script entry point: every outcome becomes an exit code (SPEC §4, §8).

    0 done; 1 a CI gate failed; 2 bad usage, bad input or an environment fault (a path, permissions,
    a full disk, memory), with one `error:` line; 130 Ctrl-C; 143 SIGTERM; 70 a bug (an unexpected
    exception), with one `internal error:` line. Cleanup (temporary files) runs in every case.
    """
    from kscore.errors import Interrupted

    with suppress(ValueError):  # not in the main thread: leave the signals alone
        for caught in (signal.SIGINT, signal.SIGTERM):
            signal.signal(caught, _on_signal)
    try:
        code = app(standalone_mode=False)
    except _usage_error() as exc:
        command = exc.ctx.command.name if exc.ctx is not None else None
        hint = f" (see 'kscore {command} --help')" if command and command != "kscore" else ""
        message = exc.format_message()
        if message:  # empty when `kscore` alone printed its help
            _stderr(f"error: {message}{hint}")
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        _fail(INTERRUPTED, 130)
    except Interrupted as exc:
        _fail(f"error: {exc}; no output was written", 143)
    except KscoreError as exc:
        _fail(f"error: {exc}", exc.exit_code)
    except BrokenPipeError:
        _stdout_closed()
        code = 0
    except MemoryError:
        _fail("error: out of memory; use a machine with more memory or a smaller input", 2)
    except OSError as exc:  # an environment fault kscore did not anticipate
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        _fail(f"error: {where}{exc.strerror or exc}", 2)
    except Exception as exc:
        text = str(exc).strip().splitlines()
        detail = f": {text[0][:200]}" if text else ""
        _fail(
            f"internal error: {type(exc).__name__}{detail} (a bug in kscore; rerun with --debug "
            "for the traceback and report it)",
            70,
        )
    if code == 130:  # typer turns KeyboardInterrupt into Exit(130) itself
        _stderr(INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)
