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

from kscore._version import __version__
from kscore.errors import KscoreError, KscoreWarning

_R = TypeVar("_R")


def _conventional_help() -> None:
    """Help in the conventions of other command-line tools (`FILES...`, `--out PATH`, `--json`).

    typer 0.2x shows required arguments as `{files}...` and each option's Python type, flags too
    (`--json <bool>`), ignoring metavars: here a flag shows no value, an option its metavar, an
    argument its name in capitals. Older typer already does so and is left alone.
    """
    core = getattr(typer, "core", None)
    argument, option = getattr(core, "TyperArgument", None), getattr(core, "TyperOption", None)
    if argument is None or option is None or not hasattr(argument, "_usage_display_name"):
        return
    shown = option.display_type_rich
    names = {"<str>": "TEXT", "<path>": "PATH", "<int>": "N", "<int range>": "N", "<float>": "NUMBER"}

    def display_type_rich(self: Any, ctx: Any) -> str | None:
        if getattr(self, "is_flag", False):
            return None
        if self.metavar:
            return self.metavar
        typed = shown(self, ctx)
        return names.get(typed, typed)

    def usage_name(self: Any) -> str:
        name = (self.metavar or self.name or "").upper() + ("..." if self.nargs != 1 else "")
        return name if self.required else f"[{name}]"

    option.display_type_rich = display_type_rich
    argument.display_type_rich = lambda self, ctx: None
    argument._usage_display_name = usage_name


_conventional_help()

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
        "--config",
        "-c",
        metavar="PATH",
        help="Quality standard YAML (default: $KSCORE_CONFIG, then ./kscore.yaml).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of tables.")]
PlotOption = Annotated[
    Optional[Path],
    typer.Option(
        "--plot",
        metavar="FILE",
        help="Also draw a picture here: .png, .svg or .pdf (needs kscore\\[plot]).",
    ),
]
SizeOption = Annotated[
    str, typer.Option("--size", metavar="WxH", help="Picture size in pixels, WIDTHxHEIGHT.")
]
# --debug and --quiet are taken before the subcommand and after it (`kscore difficulty ... --debug`).
DebugOption = Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="No notes, warnings, progress or wrote-lines on stderr.")
]
MemoryLimitOption = Annotated[
    Optional[str],
    typer.Option(
        "--memory-limit",
        metavar="SIZE",
        help="Memory to stay within, e.g. 4GiB (default: half the available memory); larger inputs are "
        "scored by id ranges spilled to a temporary folder.",
    ),
]
TempDirOption = Annotated[
    Optional[Path],
    typer.Option(
        "--temp-dir", metavar="DIR", help="Folder for the spilled id ranges (default: the output's folder)."
    ),
]
EngineOption = Annotated[
    str,
    typer.Option(
        "--engine",
        metavar="local|ray",
        help="Where the work runs: local (this machine's cores) or ray (a Ray cluster; needs kscore\\[ray]).",
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
        metavar="ADDR",
        help="The Ray cluster to use with --engine ray (default: $RAY_ADDRESS; else a local instance).",
    ),
]


# Counts beyond this are clamped to it: more than any table kscore prints, and safe for polars.
MAX_TOP = 2**31 - 1


def _cap_top(value: int) -> int:
    return min(value, MAX_TOP)


def _top_option(what: str) -> Any:
    return typer.Option("--top", metavar="N", min=0, callback=_cap_top, help=f"How many {what} to list.")


_state = {"debug": False, "quiet": False}


def _debug() -> bool:
    return _state["debug"] or os.environ.get("KSCORE_DEBUG", "") not in ("", "0")


def _common(debug: bool, quiet: bool) -> None:
    """The options every command takes after its name as well as before it."""
    _state["debug"] = _state["debug"] or debug
    _state["quiet"] = _state["quiet"] or quiet


def _stderr(line: str) -> None:
    sys.stderr.write(line.rstrip("\n") + "\n")


def _note(line: str) -> None:
    """A note, a wrote-line or a progress line on stderr (silenced by --quiet)."""
    if not _state["quiet"]:
        _stderr(line)


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
                        _note(f"warning: {item.message}")
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


def _output_console() -> Any:
    """rich's console for stdout, with a closed stdout (`kscore ... | head`) dropping the rest of
    the output quietly: rich's own reaction is to exit with code 1, the gate-failed code."""
    from rich.console import Console

    class OutputConsole(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            _stdout_closed()

    return OutputConsole()


def _print(renderables: list[Any] | Any) -> None:
    console = _output_console()
    try:
        for renderable in renderables if isinstance(renderables, list) else [renderables]:
            console.print(renderable)
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_closed()


def _print_json(data: Any) -> None:
    """One JSON object on stdout: floats NaN and +/-inf as null (JSON has no such numbers)."""
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
    debug: DebugOption = False,
    quiet: QuietOption = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """kscore: which datapoints are hard, which are covered, which sit near the hard ones."""
    _state["debug"] = debug
    _state["quiet"] = quiet


@app.command()
def difficulty(
    files: Annotated[
        list[str], typer.Argument(help="Result files (CSV/Parquet), globs or NAME=PATH; one model each.")
    ],
    config: ConfigOption = None,
    out: Annotated[str, _out_option()] = "difficulty_scores.parquet",
    model_col: Annotated[
        Optional[str],
        typer.Option("--model-col", metavar="COL", help="Column naming the model, for long files."),
    ] = None,
    datapoints: Annotated[
        Optional[Path],
        typer.Option(
            "--datapoints", metavar="FILE", help="Table of all datapoints (e.g. with ground truth) to enrich."
        ),
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
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Difficulty score of every datapoint, per model and averaged over models."""
    _common(debug, quiet)
    with _errors():
        if jobs is not None:
            from kscore.engines.local import limit_threads

            limit_threads(jobs)  # before polars is imported: its pool size is fixed then
        import kscore
        from kscore.storage import parse_storage_options

        storage = parse_storage_options(storage_option or [])
        with _progress() as progress:
            summary = kscore.difficulty(
                files, config, out, model_col=model_col, datapoints=datapoints, explain=explain, top=top,
                plot=plot, size=size, memory_limit=memory_limit, temp_dir=temp_dir, jobs=jobs,
                engine=engine, ray_address=ray_address, storage_options=storage, progress=progress,
            )  # fmt: skip
    _wrote(summary)
    if json_:
        _print_json(summary)
    else:
        from kscore.summaries import render_difficulty

        _print(render_difficulty(summary))


def _wrote(summary: dict[str, Any]) -> None:
    """The summary's notes, then a wrote-line for its output and its picture."""
    for line in summary.get("notes", []):
        _note(f"note: {line}")
    for key in ("output", "plot"):
        if summary.get(key) is not None:
            _note(f"wrote {summary[key]}")


@app.command()
def init(
    result_file: Annotated[
        Optional[Path], typer.Argument(help="A result file whose numeric columns become metrics.")
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="PATH", help="Where to write the standard.")
    ] = Path("kscore.yaml"),
    id_column: Annotated[
        str, typer.Option("--id-column", metavar="COL", help="The datapoint id column.")
    ] = "id",
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Write a commented starter quality standard."""
    _common(debug, quiet)
    with _errors():
        from kscore.jobs.standard import init as write_starter

        summary = write_starter(result_file, out, id_column=id_column, force=force)
    for line in summary["notes"]:
        _note(f"note: {line}")
    _note(f"wrote {out}; check it with `kscore check-config {out}`")


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
    ] = 20_000,  # kscore.core.reduction.FIT_SAMPLE (not imported: `kscore --help` stays fast)
    keep_embedding: Annotated[
        bool, typer.Option("--keep-embedding", help="Keep the embedding column(s) in the output.")
    ] = False,
    plot: PlotOption = None,
    size: SizeOption = "1200x900",
    config: ConfigOption = None,
    out: Annotated[str, _out_option()] = "embed_scores.parquet",
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
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Representation, potential difficulty and local difficulty of every train row."""
    _common(debug, quiet)
    with _errors():
        import kscore
        from kscore.storage import parse_storage_options

        storage = parse_storage_options(storage_option or [])
        with _progress() as progress:
            summary = kscore.embed_scores(
                embeddings, out, standard=config, difficulty=difficulty, split_col=split_col,
                train_values=train_value or ["train"], reference_values=reference_value,
                embedding_col=embedding_col, embedding_prefix=embedding_prefix, reducer=reducer,
                metric=metric, seed=seed, bandwidth=bandwidth, fit_sample=fit_sample,
                keep_embedding=keep_embedding, plot=plot, size=size, top=top, jobs=jobs,
                memory_limit=memory_limit, temp_dir=temp_dir, engine=engine, ray_address=ray_address,
                storage_options=storage, progress=progress,
            )  # fmt: skip
    _wrote(summary)
    if json_:
        _print_json(summary)
    else:
        from kscore.summaries import render_embed

        _print(render_embed(summary))


@contextmanager
def _progress() -> Iterator[Any]:
    """Progress on stderr, fed by the library's (stage, done, total) callback: in a terminal a bar
    per stage with counts, the time spent and an estimate of the time left (a stage of one step, such
    as UMAP's fit, has no estimate: a pulsing bar and the time spent); elsewhere (CI logs) one line
    per stage when it ends, with its duration. Nothing with --quiet."""
    import time

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        Progress,
        ProgressColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class Counts(ProgressColumn):
        """`done/total` for a stage of several steps; nothing for one of a single step."""

        def render(self, task: Any) -> Text:
            steps = task.total or 0
            return Text(f"{int(task.completed)}/{int(steps)}" if steps > 1 else "", style="progress.download")

    console = Console(stderr=True)
    terminal = console.is_terminal and not _state["quiet"]
    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        Counts(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not terminal,
    )
    tasks: dict[str, Any] = {}
    started: dict[str, float] = {}
    reported: set[str] = set()

    def update(stage: str, done: int, total: int) -> None:
        if stage not in started:
            started[stage] = time.perf_counter()
        if terminal:
            if not tasks:
                bar.start()  # only once there is something to show: no stray output otherwise
            steps = total if total > 1 else None  # one step: no count, no estimate
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=steps)
            bar.update(tasks[stage], completed=done if steps else 0, total=steps)
            if done >= total:
                bar.update(tasks[stage], total=max(total, 1), completed=max(total, 1))
        elif done >= total and stage not in reported:
            reported.add(stage)
            counts = f"{done}/{total} " if total > 1 else ""
            _note(f"{stage}: {counts}done in {time.perf_counter() - started[stage]:.1f} s")

    try:
        yield update
    finally:
        if tasks:
            bar.stop()


@app.command()
def compare(
    difficulty_file: Annotated[
        str, typer.Argument(metavar="DIFFICULTY_FILE", help="Output of `kscore difficulty`.")
    ],
    baseline: Annotated[str, typer.Option("--baseline", metavar="MODEL", help="Model A (the reference).")],
    candidate: Annotated[str, typer.Option("--candidate", metavar="MODEL", help="Model B (the new one).")],
    margin: Annotated[float, typer.Option("--margin", metavar="M", help="Score change that counts.")] = 0.0,
    common_failure_threshold: Annotated[
        float,
        typer.Option(
            "--common-failure-threshold",
            metavar="T",
            help="difficulty_score above this is a common failure.",
        ),
    ] = 0.9,
    max_regressions: Annotated[
        Optional[int],
        typer.Option(
            "--max-regressions", metavar="N", min=0, help="Gate: exit 1 above this many regressions."
        ),
    ] = None,
    max_common_failures: Annotated[
        Optional[int],
        typer.Option(
            "--max-common-failures", metavar="N", min=0, help="Gate: exit 1 above this many common failures."
        ),
    ] = None,
    top: Annotated[int, _top_option("largest regressions")] = 20,
    out: Annotated[
        Optional[Path],
        typer.Option(
            "--out", "-o", metavar="PATH", help="Write every compared datapoint: .parquet, .csv or .ndjson."
        ),
    ] = None,
    storage_option: StorageOption = None,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Datapoints that got worse from one model to another, and CI gates on them."""
    _common(debug, quiet)
    with _errors():
        from kscore.jobs.compare import compared, failed_gates
        from kscore.storage import parse_storage_options

        _, summary = compared(
            difficulty_file, baseline, candidate, out, margin=margin,
            common_failure_threshold=common_failure_threshold, max_regressions=max_regressions,
            max_common_failures=max_common_failures, top=top,
            storage_options=parse_storage_options(storage_option or []),
        )  # fmt: skip
        _wrote(summary)
        if json_:
            _print_json(summary)
        else:
            from kscore.summaries import render_compare

            _print(render_compare(summary))
        failed = failed_gates(summary)
        if failed is not None:
            raise failed


@app.command()
def plot(
    scores_file: Annotated[
        str, typer.Argument(metavar="SCORES_FILE", help="Output of `kscore embed-scores`.")
    ],
    color: Annotated[
        str, typer.Option("--color", metavar="COL", help="Score that colors the train points.")
    ] = "representation_score",
    out: Annotated[
        Path, typer.Option("--out", "-o", metavar="FILE", help="Picture to write: .png, .svg or .pdf.")
    ] = Path("map.png"),
    title: Annotated[
        Optional[str], typer.Option("--title", metavar="T", help="Title of the picture.")
    ] = None,
    size: SizeOption = "1200x900",
    storage_option: StorageOption = None,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Draw the 2D embedding map of an embed-scores file."""
    _common(debug, quiet)
    from kscore.storage import as_path, parse_storage_options, using

    with _errors(), using(parse_storage_options(storage_option or [])):
        from kscore.io import read_table
        from kscore.plot import map_data, plot_map

        source = as_path(scores_file)
        picture_size = _check_plot(out, size, [source])
        data = map_data(read_table(source), color)  # type: ignore[arg-type]
        plot_map(data, out, title=title, size=picture_size)
    _note(f"wrote {out} ({data.n_points} points{', as densities' if data.density else ''})")


@app.command()
def select(
    scores_file: Annotated[
        str, typer.Argument(metavar="SCORES_FILE", help="Output of `kscore embed-scores` (or `difficulty`).")
    ],
    budget: Annotated[int, typer.Option("--budget", metavar="N", help="How many datapoints to pick.")],
    strategy: Annotated[
        str,
        typer.Option(
            "--strategy",
            metavar="balanced|typical|diverse|top",
            help="balanced: typical points of uncovered regions, weighted by the score; typical: the same "
            "without the score; diverse: the farthest points; top: the best scores.",
        ),
    ] = "balanced",
    by: Annotated[
        Optional[str],
        typer.Option(
            "--by",
            metavar="COL",
            help="The score (default: potential_difficulty_score, else difficulty_score, else "
            "representation_score --ascending).",
        ),
    ] = None,
    ascending: Annotated[
        Optional[bool],
        typer.Option("--ascending/--descending", help="Low scores first (e.g. representation_score)."),
    ] = None,
    labeled: Annotated[
        Optional[str],
        typer.Option(
            "--labeled", metavar="FILE", help="Ids already labeled (CSV/Parquet/NDJSON with the id column)."
        ),
    ] = None,
    split_col: Annotated[
        str, typer.Option("--split-col", metavar="COL", help="Column holding each row's split.")
    ] = "split",
    train_value: Annotated[
        Optional[list[str]],
        typer.Option("--train-value", metavar="V", help="Split value of the candidates (repeatable)."),
    ] = None,
    embeddings: Annotated[
        Optional[str],
        typer.Option(
            "--embeddings", metavar="FILE", help="Measure coverage in this embedding space, not the map."
        ),
    ] = None,
    embedding_col: Annotated[
        Optional[str], typer.Option("--embedding-col", metavar="COL", help="The list/array embedding column.")
    ] = None,
    embedding_prefix: Annotated[
        Optional[str],
        typer.Option("--embedding-prefix", metavar="PREFIX", help="Prefix of the numeric embedding columns."),
    ] = None,
    metric: Annotated[
        str, typer.Option("--metric", metavar="euclidean|cosine", help="Distance in the embedding space.")
    ] = "euclidean",
    seed: Annotated[
        int, typer.Option("--seed", metavar="N", help="Seed: diverse's first pick, samples, the projection.")
    ] = 0,
    out: Annotated[
        Optional[str],
        typer.Option(
            "--out", "-o", metavar="PATH", help="Write the picks: .csv, .parquet/.pq, .ndjson/.jsonl."
        ),
    ] = None,
    plot: PlotOption = None,
    size: SizeOption = "1200x900",
    top: Annotated[int, _top_option("picks")] = 20,
    storage_option: StorageOption = None,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """The batch of train datapoints to label or train on next."""
    _common(debug, quiet)
    with _errors():
        from kscore.jobs.select import selected
        from kscore.storage import parse_storage_options

        _, summary = selected(
            scores_file, budget, out, labeled=labeled, embeddings=embeddings, plot=plot, size=size,
            top=top, strategy=strategy, by=by, ascending=ascending, split_col=split_col,
            train_values=train_value or ["train"], embedding_col=embedding_col,
            embedding_prefix=embedding_prefix, metric=metric, seed=seed,
            storage_options=parse_storage_options(storage_option or []),
        )  # fmt: skip
    _wrote(summary)
    if json_:
        _print_json(summary)
    else:
        from kscore.summaries import render_select

        _print(render_select(summary))


def _out_option() -> Any:
    return typer.Option(
        "--out",
        "-o",
        metavar="PATH",
        help="Output table, its format by extension: .parquet/.pq, .csv, .ndjson/.jsonl; DIR/ for a "
        "Parquet dataset.",
    )


def _checked_output(out: str, inputs: list[Any]) -> Any:
    """The output's path, once it is known to be writable (a file, a dataset folder `DIR/`, or an
    object storage prefix, which the job checks before any work)."""
    from kscore.io import check_dataset_output, check_output, output_format, wants_dataset
    from kscore.storage import as_path, is_remote

    out_path = as_path(out)
    if is_remote(out):
        if out_path.suffix:  # a prefix has none; any other name is one object of a table format
            output_format(out_path)
    elif wants_dataset(out):
        check_dataset_output(out_path, inputs)
    else:
        check_output(out_path, inputs)
        output_format(out_path)
    return out_path


def _check_plot(out: Path | None, size: str, inputs: list[Path]) -> tuple[int, int]:
    """Fail before any work when a picture cannot be made: no matplotlib, bad size, extension or path."""
    from kscore.plot import parse_size, picture_format, pyplot

    picture_size = parse_size(size)
    if out is not None:
        from kscore.io import check_output

        check_output(out, inputs)
        picture_format(out)
        pyplot()
    return picture_size


@app.command()
def report(
    files: Annotated[
        Optional[list[str]],
        typer.Argument(
            metavar="FILES...",
            help="Outputs of difficulty, embed-scores, compare and select (default: "
            "difficulty_scores.parquet and embed_scores.parquet here, where present).",
            show_default=False,
        ),
    ] = None,
    data: Annotated[
        Optional[str],
        typer.Option(
            "--data", metavar="FILE", help="Your own columns (CSV/Parquet/NDJSON) joined on the id."
        ),
    ] = None,
    columns: Annotated[
        Optional[str],
        typer.Option(
            "--columns",
            metavar="COL,...",
            help="Columns of --data for the tooltips (default: up to 8 short ones).",
        ),
    ] = None,
    image_col: Annotated[
        Optional[str],
        typer.Option(
            "--image-col", metavar="COL", help="Column of --data with image paths or URLs (thumbnails)."
        ),
    ] = None,
    color: Annotated[
        Optional[str], typer.Option("--color", metavar="COL", help="The score the map is coloured by first.")
    ] = None,
    top: Annotated[int, _top_option("rows per table")] = 20,
    max_points: Annotated[
        int, typer.Option("--max-points", metavar="N", help="Above this, the map shows a seeded sample.")
    ] = 1_000_000,
    title: Annotated[Optional[str], typer.Option("--title", metavar="TEXT", help="The page's title.")] = None,
    id_col: Annotated[
        Optional[str],
        typer.Option(
            "--id-col", metavar="COL", help="The id column (default: the quality standard's, else id)."
        ),
    ] = None,
    out: Annotated[
        str, typer.Option("--out", "-o", metavar="PATH", help="The page: one self-contained .html file.")
    ] = "report.html",
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """One offline HTML page of the scores: summaries, tables and the map."""
    _common(debug, quiet)
    with _errors():
        import kscore

        with _progress() as progress:
            summary = kscore.report(
                files or [],
                out,
                data=data,
                columns=[c.strip() for c in columns.split(",") if c.strip()] if columns else None,
                image_col=image_col,
                color=color,
                top=top,
                max_points=max_points,
                title=title,
                id_column=id_col,
                progress=progress,
            )
    _note(f"wrote {out}")
    if json_:
        _print_json(summary)
    else:
        shown = (
            f"{summary['points_shown']:,} of {summary['points_total']:,} points on the map; "
            if summary["points_total"]
            else ""
        )
        size = summary["bytes"]
        written = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
        _print(f"{out}: {written}; {shown}sections: {', '.join(summary['sections'])}")


@app.command("check-config")
def check_config(
    path: Annotated[
        Optional[Path], typer.Argument(metavar="PATH", help="The standard (default: discovered).")
    ] = None,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Validate a quality standard and print it resolved (normalized weights)."""
    _common(debug, quiet)
    with _errors():
        from kscore.jobs.standard import check_config as checked

        summary = checked(path)
    if json_:
        _print_json(summary)
    else:
        from kscore.summaries import render_standard

        _print([render_standard(summary["standard"]), f"{summary['config']}: valid"])


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
    _exit_now(code)


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
        code = app(standalone_mode=False, prog_name="kscore")
    except _usage_error() as exc:
        command = exc.ctx.command.name if exc.ctx is not None else None
        hint = f" (see 'kscore {command} --help')" if command and command != "kscore" else ""
        message = exc.format_message()
        if message:  # empty when `kscore` alone printed its help
            _stderr(f"error: {message}{hint}")
        _exit_now(2)
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
    _exit_now(code if isinstance(code, int) else 0)


def _exit_now(code: int) -> NoReturn:
    """End the process once the work is done and written: flush the streams, run the exit handlers
    (Ray's shutdown, logging's), then skip the interpreter's teardown of every module, which after a
    UMAP run (numba's compiled code, scikit-learn, scipy) takes about a second of nothing."""
    import atexit

    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_closed()
    except (OSError, ValueError):
        pass
    with suppress(OSError, ValueError):
        sys.stderr.flush()
    atexit._run_exitfuncs()
    with suppress(OSError, ValueError):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
