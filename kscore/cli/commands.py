"""The commands: each parses its options, makes one library call, and prints what it returns.

Heavy libraries are imported inside the commands that use them, so `kscore --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from kscore._version import __version__
from kscore.cli.console import (
    common_options,
    note,
    print_json,
    print_line,
    print_result,
    progress_bar,
    reported_errors,
    state,
    wrote,
)
from kscore.cli.options import (
    ConfigOption,
    DebugOption,
    EmbedMemoryLimitOption,
    EmbedTempDirOption,
    EngineOption,
    InputFormatOption,
    JsonOption,
    MemoryLimitOption,
    OutputFormatOption,
    PlotOption,
    QuietOption,
    RayAddressOption,
    SizeOption,
    StorageOption,
    TempDirOption,
    conventional_help,
    out_option,
    top_option,
)

conventional_help()

app = typer.Typer(
    name="kscore",
    help="Score datapoints for ML data curation: difficulty, representation and potential difficulty.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


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
    state["debug"] = debug
    state["quiet"] = quiet


@app.command()
def difficulty(
    files: Annotated[
        list[str],
        typer.Argument(
            help="Result files (Parquet, CSV or NDJSON; local or in object storage), globs or NAME=PATH; "
            "one model each."
        ),
    ],
    config: ConfigOption = None,
    out: Annotated[str, out_option()] = "difficulty_scores.parquet",
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
    top: Annotated[int, top_option("hardest datapoints")] = 10,
    explain: Annotated[
        bool, typer.Option("--explain", help="Add normalized signals and the top signal per model.")
    ] = False,
    scale_from: Annotated[
        Optional[str],
        typer.Option(
            "--scale-from",
            metavar="FILE",
            help="An earlier difficulty output: normalize on its scale, so the two outputs compare.",
        ),
    ] = None,
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
    input_format: InputFormatOption = None,
    output_format: OutputFormatOption = None,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Difficulty score of every datapoint, per model and averaged over models."""
    common_options(debug, quiet)
    with reported_errors():
        if jobs is not None:
            from kscore.engines.local import limit_threads

            limit_threads(jobs)  # before polars is imported: its pool size is fixed then
        import kscore
        from kscore.cli.streams import standard_streams, streamed
        from kscore.storage import parse_storage_options

        storage = parse_storage_options(storage_option or [])
        with (
            standard_streams(
                files, out, input_format=input_format, output_format=output_format, temp_dir=temp_dir
            ) as streams,
            progress_bar() as progress,
        ):
            summary = kscore.difficulty(
                streams.inputs, config, streams.out, model_col=model_col, datapoints=datapoints,
                explain=explain, top=top, plot=plot, size=size, memory_limit=memory_limit,
                temp_dir=temp_dir, jobs=jobs, engine=engine, ray_address=ray_address,
                storage_options=storage, progress=progress, scale_from=scale_from,
            )  # fmt: skip
        summary = streamed(summary, streams)
    wrote(summary)
    if json_:
        print_json(summary)
    else:
        from kscore.cli.tables import render_difficulty

        print_result(render_difficulty(summary))


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
    common_options(debug, quiet)
    with reported_errors():
        from kscore.jobs.standard import init as write_starter

        summary = write_starter(result_file, out, id_column=id_column, force=force)
    for line in summary["notes"]:
        note(f"note: {line}")
    note(f"wrote {out}; check it with `kscore check-config {out}`")


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
    metric: Annotated[
        Optional[str],
        typer.Option("--metric", help="euclidean (default) or cosine (UMAP, PCA); with --map, the map's."),
    ] = None,
    seed: Annotated[
        str, typer.Option("--seed", help="Random seed, or 'none' (faster, not reproducible).")
    ] = "0",
    save_map: Annotated[
        Optional[str],
        typer.Option("--save-map", metavar="FILE", help="Also write the fitted map (.parquet), to reuse."),
    ] = None,
    map_file: Annotated[
        Optional[str],
        typer.Option("--map", metavar="FILE", help="Place the rows on a saved map instead of fitting one."),
    ] = None,
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
    out: Annotated[str, out_option()] = "embed_scores.parquet",
    top: Annotated[int, top_option("least represented / highest-potential train points")] = 10,
    jobs: Annotated[
        Optional[int],
        typer.Option("--jobs", "-j", min=1, help="Worker processes and threads (default: every core)."),
    ] = None,
    memory_limit: EmbedMemoryLimitOption = None,
    temp_dir: EmbedTempDirOption = None,
    engine: EngineOption = "local",
    ray_address: RayAddressOption = None,
    storage_option: StorageOption = None,
    input_format: InputFormatOption = None,
    output_format: OutputFormatOption = None,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Representation, potential difficulty and local difficulty of every train row."""
    common_options(debug, quiet)
    with reported_errors():
        import kscore
        from kscore.cli.streams import standard_streams, streamed
        from kscore.storage import parse_storage_options

        storage = parse_storage_options(storage_option or [])
        given = [embeddings] if embeddings is not None else []
        with (
            standard_streams(
                given, out, input_format=input_format, output_format=output_format, temp_dir=temp_dir
            ) as streams,
            progress_bar() as progress,
        ):
            summary = kscore.embed_scores(
                streams.inputs[0] if given else None, streams.out, standard=config, difficulty=difficulty,
                split_col=split_col, train_values=train_value or ["train"], reference_values=reference_value,
                embedding_col=embedding_col, embedding_prefix=embedding_prefix, reducer=reducer,
                metric=metric, seed=seed, bandwidth=bandwidth, fit_sample=fit_sample,
                keep_embedding=keep_embedding, plot=plot, size=size, top=top, jobs=jobs,
                memory_limit=memory_limit, temp_dir=temp_dir, engine=engine, ray_address=ray_address,
                storage_options=storage, progress=progress, save_map=save_map, saved_map=map_file,
            )  # fmt: skip
        summary = streamed(summary, streams)
    wrote(summary)
    if json_:
        print_json(summary)
    else:
        from kscore.cli.tables import render_embed

        print_result(render_embed(summary))


@app.command()
def compare(
    difficulty_files: Annotated[
        list[str],
        typer.Argument(
            metavar="DIFFICULTY_FILE [NEW_FILE]",
            help="Output of `kscore difficulty`; or two, OLD NEW, on one scale (NEW --scale-from OLD).",
        ),
    ],
    baseline: Annotated[
        Optional[str],
        typer.Option("--baseline", metavar="MODEL", help="Model A (the reference; with two files, OLD's)."),
    ] = None,
    candidate: Annotated[
        Optional[str],
        typer.Option("--candidate", metavar="MODEL", help="Model B (the new one; with two files, NEW's)."),
    ] = None,
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
    top: Annotated[int, top_option("largest regressions")] = 20,
    out: Annotated[
        Optional[str],
        typer.Option(
            "--out",
            "-o",
            metavar="PATH",
            help="Write every compared datapoint: .parquet, .csv or .ndjson; - for stdout.",
        ),
    ] = None,
    storage_option: StorageOption = None,
    input_format: InputFormatOption = None,
    output_format: OutputFormatOption = None,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """Datapoints that got worse from one model (or run) to another, and CI gates on them."""
    common_options(debug, quiet)
    with reported_errors():
        from kscore.cli.streams import standard_streams, streamed
        from kscore.jobs.compare import compared, failed_gates
        from kscore.storage import parse_storage_options

        with standard_streams(
            difficulty_files, out, input_format=input_format, output_format=output_format
        ) as streams:
            _, summary = compared(
                streams.inputs, baseline, candidate, streams.out, margin=margin,
                common_failure_threshold=common_failure_threshold, max_regressions=max_regressions,
                max_common_failures=max_common_failures, top=top,
                storage_options=parse_storage_options(storage_option or []),
            )  # fmt: skip
        summary = streamed(summary, streams)
        wrote(summary)
        if json_:
            print_json(summary)
        else:
            from kscore.cli.tables import render_compare

            print_result(render_compare(summary))
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
    common_options(debug, quiet)
    with reported_errors():
        from kscore.jobs.picture import plot_scores
        from kscore.storage import parse_storage_options

        summary = plot_scores(
            scores_file, out, color=color, title=title, size=size,
            storage_options=parse_storage_options(storage_option or []),
        )  # fmt: skip
    densities = ", as densities" if summary["as_densities"] else ""
    note(f"wrote {out} ({summary['points']} points{densities})")


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
            "--embeddings",
            metavar="FILE",
            help="Measure coverage in this embedding space, not the map (typical, diverse; balanced "
            "where the file has no map).",
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
            "--out",
            "-o",
            metavar="PATH",
            help="Write the picks: .csv, .parquet/.pq, .ndjson/.jsonl; - for stdout.",
        ),
    ] = None,
    plot: PlotOption = None,
    size: SizeOption = "1200x900",
    top: Annotated[int, top_option("picks")] = 20,
    storage_option: StorageOption = None,
    input_format: InputFormatOption = None,
    output_format: OutputFormatOption = None,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """The batch of train datapoints to label or train on next."""
    common_options(debug, quiet)
    with reported_errors():
        from kscore.cli.streams import standard_streams, streamed
        from kscore.jobs.select import selected
        from kscore.storage import parse_storage_options

        with standard_streams(
            [scores_file], out, input_format=input_format, output_format=output_format
        ) as streams:
            _, summary = selected(
                streams.inputs[0], budget, streams.out, labeled=labeled, embeddings=embeddings, plot=plot,
                size=size, top=top, strategy=strategy, by=by, ascending=ascending, split_col=split_col,
                train_values=train_value or ["train"], embedding_col=embedding_col,
                embedding_prefix=embedding_prefix, metric=metric, seed=seed,
                storage_options=parse_storage_options(storage_option or []),
            )  # fmt: skip
        summary = streamed(summary, streams)
    wrote(summary)
    if json_:
        print_json(summary)
    else:
        from kscore.cli.tables import render_select

        print_result(render_select(summary))


@app.command()
def report(
    files: Annotated[
        Optional[list[str]],
        typer.Argument(
            metavar="FILES",
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
    top: Annotated[int, top_option("rows per table")] = 20,
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
    storage_option: StorageOption = None,
    json_: JsonOption = False,
    quiet: QuietOption = False,
    debug: DebugOption = False,
) -> None:
    """One offline HTML page of the scores: summaries, tables and the map."""
    common_options(debug, quiet)
    with reported_errors():
        import kscore
        from kscore.storage import parse_storage_options

        storage = parse_storage_options(storage_option or [])
        with progress_bar() as progress:
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
                storage_options=storage,
            )
    note(f"wrote {out}")
    if json_:
        print_json(summary)
    else:
        shown = (
            f"{summary['points_shown']:,} of {summary['points_total']:,} points on the map; "
            if summary["points_total"]
            else ""
        )
        size = summary["bytes"]
        written = f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{size / 1e3:.0f} kB"
        print_line(f"{out}: {written}; {shown}sections: {', '.join(summary['sections'])}")


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
    common_options(debug, quiet)
    with reported_errors():
        from kscore.jobs.standard import check_config as checked

        summary = checked(path)
    if json_:
        print_json(summary)
    else:
        from kscore.cli.tables import render_standard

        print_result([render_standard(summary["standard"]), f"{summary['config']}: valid"])
