"""The difficulty job (`kscore difficulty`, `kscore.difficulty`): read the results, choose the
in-memory or the partitioned plan and the engine, write the output atomically with its metadata,
and summarise it. The math is `kscore/core/difficulty.py`; the partitioned plan `kscore/plan/`."""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from kscore._version import __version__
from kscore.config import QualityStandard
from kscore.engines import check_engine
from kscore.errors import InputError, first_line
from kscore.jobs.common import (
    ResultInput,
    at_low_priority,
    object_storage_dataset,
    run_job,
    stage,
    staged_for_object_storage,
)

_R = TypeVar("_R")


def _labels(frames: Mapping[str, Any], sources: Mapping[str, str]) -> dict[str, str]:
    """Each model's name in messages: its file, else `model 'name'`."""
    return {name: sources.get(name) or f"model {name!r}" for name in frames}


def _inputs(
    results: Mapping[str, ResultInput], standard: QualityStandard
) -> tuple[Mapping[str, pl.DataFrame | pl.LazyFrame], dict[str, pl.LazyFrame] | None, dict[str, str]]:
    """The models' frames for the in-memory plan (read when scored: see `ResultFiles`), lazy scans of
    them for the partitioned plan (None where a frame is in memory already), and their files."""
    from kscore.io import ResultFiles, read_table, require_columns, scan_table
    from kscore.storage import as_path

    metric_names = [m.name for m in standard.metrics]
    columns = [standard.id_column, *metric_names, *(standard.task.result_columns if standard.task else ())]
    paths = {n: as_path(v) for n, v in results.items() if not isinstance(v, pl.DataFrame | pl.LazyFrame)}
    for path in paths.values():
        require_columns(path, [standard.id_column, *metric_names])  # naming the file's real columns
    sources = {name: str(path) for name, path in paths.items()}
    scans: dict[str, pl.LazyFrame] | None = {}
    for name, value in results.items():
        if isinstance(value, pl.DataFrame):
            scans = None
        elif scans is not None:
            scans[name] = (
                value if isinstance(value, pl.LazyFrame) else scan_table(paths[name], columns, metric_names)
            )
    if len(paths) == len(results):
        return ResultFiles(paths, columns, metric_names), scans, sources
    frames = {
        name: read_table(paths[name], columns, metric_names, lazy=True) if name in paths else value
        for name, value in results.items()
    }
    return frames, scans, sources  # type: ignore[return-value]


def in_memory_inputs(
    results: Mapping[str, ResultInput],
    standard: QualityStandard,
    memory_limit: int | str | None,
    explain: bool,
) -> tuple[Mapping[str, pl.DataFrame | pl.LazyFrame], dict[str, str]]:
    """Frames for `score_in_memory` and their files; a result estimated above the memory limit is
    refused (it would be returned whole)."""
    from kscore.plan.difficulty import in_memory_bytes
    from kscore.plan.sizing import format_size, resolve_memory_limit

    limit = resolve_memory_limit(memory_limit)
    frames, scans, sources = _inputs(results, standard)
    labels = _labels(frames, sources)
    rows = count_rows(scans, labels) if scans is not None else None
    need = in_memory_bytes(rows, standard, explain) if rows is not None else 0
    if need > limit:
        raise InputError(
            f"the scores of {rows} model rows need about {format_size(need)}, above the memory limit "
            f"of {format_size(limit)}; pass out= to write them to a file by parts"
        )
    return frames, sources


def count_rows(frames: Mapping[str, pl.DataFrame | pl.LazyFrame], labels: Mapping[str, str]) -> int:
    """Rows over all models (Parquet: from its metadata; CSV: a fast scan of the lines)."""
    total = 0
    for name, frame in frames.items():
        if isinstance(frame, pl.DataFrame):
            total += frame.height
            continue
        try:
            total += int(frame.select(pl.len()).collect().item())
        except pl.exceptions.PolarsError as exc:
            raise InputError(f"{labels[name]}: cannot read: {first_line(exc)}") from None
    return total


def write_difficulty_scores(
    results: Mapping[str, ResultInput],
    standard: QualityStandard,
    out: str | os.PathLike,
    *,
    explain: bool = False,
    datapoints: pl.DataFrame | None = None,
    datapoints_source: str | None = None,
    sources: Mapping[str, str] | None = None,
    memory_limit: int | str | None = None,
    temp_dir: str | os.PathLike | None = None,
    top: int = 10,
    progress: Callable[[str, int, int], None] | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    storage_options: Mapping[str, str] | None = None,
    scale_from: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Score `results` and write the table to `out` (Parquet) with kscore's metadata; the summary.

    Runs in memory while the estimated peak fits `memory_limit` (bytes, or a size such as "4GiB";
    default: half the available memory); otherwise by id ranges spilled to a temporary folder beside
    `out` (or in `temp_dir`), which is removed at the end whatever happens. Both give the same file.
    Inputs given as DataFrames, `datapoints`, and long files run in memory. An `out` ending in a
    slash, or an existing folder, is written as a Parquet dataset (`part-NNNNN.parquet` files and a
    `_kscore.json` manifest written last).

    `engine="ray"` runs the partitioned plan's tasks on the Ray cluster at `ray_address` (default
    `$RAY_ADDRESS`, else a local instance; `kscore[ray]`): the same file. A single-file `out` whose
    job fits `memory_limit` and a node's memory, or any job with `datapoints`, runs in memory as
    one task on a node instead.

    Inputs and `out` may be in object storage (`s3://bucket/key`); `out` there is a dataset of parts
    under that prefix, published only when complete. `storage_options` (polars' names, such as
    `aws_endpoint_url`) apply to those paths; credentials come from the environment.

    `scale_from`: an earlier difficulty output whose recorded scale this run normalizes with (see
    `load_scale`); the output records the scale it was scored on either way.
    """
    job = functools.partial(
        _write_difficulty_scores,
        results,
        standard,
        explain=explain,
        datapoints=datapoints,
        datapoints_source=datapoints_source,
        sources=sources,
        memory_limit=memory_limit,
        temp_dir=temp_dir,
        top=top,
        progress=progress,
        engine=engine,
        ray_address=ray_address,
        scale_from=scale_from,
    )
    return run_job("difficulty", out, temp_dir, storage_options, job)


def _write_difficulty_scores(
    results: Mapping[str, ResultInput],
    standard: QualityStandard,
    out: str | os.PathLike,
    *,
    explain: bool,
    datapoints: pl.DataFrame | None,
    datapoints_source: str | None,
    sources: Mapping[str, str] | None,
    memory_limit: int | str | None,
    temp_dir: str | os.PathLike | None,
    top: int,
    progress: Callable[[str, int, int], None] | None,
    engine: str,
    ray_address: str | None,
    scale_from: str | os.PathLike | None,
) -> dict[str, Any]:
    from kscore.core.difficulty import score_in_memory
    from kscore.core.scale import scale_record
    from kscore.io import check_temp_dir, wants_dataset
    from kscore.plan.sizing import resolve_memory_limit

    check_engine(engine)
    check_temp_dir(temp_dir)
    scale, scale_source = load_scale(scale_from, standard) if scale_from is not None else (None, "")
    dataset = wants_dataset(out)
    out = Path(out)
    limit = resolve_memory_limit(memory_limit)
    frames, scans, scanned = _inputs(results, standard)
    sources = {**scanned, **(sources or {})}
    labels = _labels(frames, sources)
    models = list(frames)
    metadata = {
        "kscore_version": __version__,
        "command": "difficulty",
        "standard": standard.to_dict(),
        "models": models,
        "inputs": sources,
        "datapoints": datapoints_source,
    }
    if scale_source:
        metadata["scale_from"] = scale_source
    partitioned = functools.partial(
        _write_partitioned,
        standard=standard,
        out=out,
        labels=labels,
        metadata=metadata,
        explain=explain,
        limit=limit,
        temp_dir=temp_dir,
        top=top,
        progress=progress,
        dataset=dataset,
        scale=scale,
        scale_source=scale_source,
    )
    if engine == "ray":
        if scans is None:
            raise InputError("--engine ray reads the models from files, not from tables in memory")
        from kscore.engines.ray import largest_task_memory, ray_session, run_task
        from kscore.io import file_format
        from kscore.storage import as_path

        sliced = {
            name: name in scanned and file_format(as_path(scanned[name])) == "parquet" for name in scans
        }
        # Ray's workers run in folders of their own: they are given absolute paths.
        absolute = {
            name: as_path(scanned[name]).absolute() if name in scanned else results[name] for name in results
        }
        # (a dataset output keeps the plan whose tasks write its parts: no count of its rows)
        need = 0 if datapoints is not None or dataset else _in_memory_need(scans, standard, labels, explain)
        with ray_session(ray_address):
            # In memory as one task where a single file is written (its rows pass through here
            # either way) and the job fits the memory limit and a node; --datapoints always.
            if datapoints is None and (dataset or need > limit or need > largest_task_memory()):
                scans = _inputs(absolute, standard)[1]
                assert scans is not None
                return partitioned(scans, ray_sliced=sliced)
            with stage(progress, "read and score (ray)"):
                table, used, accuracy = run_task(
                    score_on_a_node, absolute, standard, explain, datapoints, sources, scale, scale_source,
                    memory=need,
                )  # fmt: skip
        if not isinstance(table, pl.DataFrame):
            from kscore.engines.ray import from_store

            table = from_store(table)
        metadata["scale"] = scale_record(used)
        return _written(table, out, metadata, models, standard, top, accuracy, dataset, progress)
    if scans is not None and datapoints is None and _in_memory_need(scans, standard, labels, explain) > limit:
        return partitioned(scans, footers=_local_parquet(scanned))
    with stage(progress, "read and score"):
        table, used = score_in_memory(
            frames, standard, explain=explain, datapoints=datapoints, sources=sources, scale=scale,
            scale_source=scale_source,
        )  # fmt: skip
        metadata["scale"] = scale_record(used)
        accuracy = _accuracy(frames, standard, labels, datapoints)
    return _written(table, out, metadata, models, standard, top, accuracy, dataset, progress)


def _in_memory_need(
    scans: Mapping[str, pl.LazyFrame], standard: QualityStandard, labels: Mapping[str, str], explain: bool
) -> int:
    """The estimated peak memory of scoring the models in memory (bytes)."""
    from kscore.plan.difficulty import in_memory_bytes

    text_ids = any(
        not f.collect_schema()[standard.id_column].is_numeric()
        for f in scans.values()
        if standard.id_column in f.collect_schema()
    )
    return in_memory_bytes(count_rows(scans, labels), standard, explain, text_ids)


def score_on_a_node(
    paths: Mapping[str, ResultInput],
    standard: QualityStandard,
    explain: bool,
    datapoints: pl.DataFrame | None,
    sources: Mapping[str, str],
    scale: Any,
    scale_source: str,
) -> tuple[pl.DataFrame, Any, dict[str, float | None]]:
    """The in-memory job on a Ray node: the models read there from `paths` (named in messages as
    `sources` name them), scored; (the table, the scale used, the accuracy)."""
    from kscore.core.difficulty import score_in_memory

    frames = _inputs(paths, standard)[0]
    labels = _labels(frames, sources)
    table, used = score_in_memory(
        frames, standard, explain=explain, datapoints=datapoints, sources=sources, scale=scale,
        scale_source=scale_source,
    )  # fmt: skip
    accuracy = _accuracy(frames, standard, labels, datapoints)
    if datapoints is None:  # kscore's own columns: as Arrow, which Ray moves without a copy
        from kscore.engines.ray import to_store

        return to_store(table), used, accuracy
    return table, used, accuracy  # a datapoints table's columns may be any of polars' types


def _written(
    table: pl.DataFrame,
    out: Path,
    metadata: dict[str, Any],
    models: list[str],
    standard: QualityStandard,
    top: int,
    accuracy: dict[str, float | None],
    dataset: bool,
    progress: Callable[[str, int, int], None] | None,
) -> dict[str, Any]:
    """`table` written to `out` (a file, or a dataset of parts) with `metadata`; the summary."""
    from kscore.io import write_dataset_atomic, write_slices, write_table_atomic
    from kscore.summaries import difficulty_summary

    # The summary is computed while the file is written, in a thread of lower priority: the write
    # is the longer job, and the summary then only takes the cycles it leaves idle.
    with ThreadPoolExecutor(1) as background:
        summarized = background.submit(
            at_low_priority,
            difficulty_summary,
            table,
            models,
            standard.id_column,
            top=top,
            output=str(out),
            accuracy=accuracy,
        )
        with stage(progress, "write"):
            if dataset:
                write_dataset_atomic(out, lambda folder: write_slices(table, folder, metadata), metadata)
            else:
                write_table_atomic(table, out, metadata)
        return summarized.result()


def _write_partitioned(
    frames: Mapping[str, pl.LazyFrame],
    standard: QualityStandard,
    out: Path,
    labels: Mapping[str, str],
    metadata: dict[str, Any],
    explain: bool,
    limit: int,
    temp_dir: str | os.PathLike | None,
    top: int,
    progress: Callable[[str, int, int], None] | None,
    dataset: bool,
    ray_sliced: Mapping[str, bool] | None = None,
    footers: Mapping[str, Path] | None = None,
    scale: Any = None,
    scale_source: str = "",
) -> dict[str, Any]:
    """The partitioned plan, on this machine or (`ray_sliced` given: which models can be read in
    row slices) on the connected Ray cluster. `footers`: the models' local Parquet files."""
    from kscore.core.scale import scale_record
    from kscore.io import (
        MANIFEST,
        metadata_tags,
        part_name,
        scan_output,
        temporary_folder,
        write_dataset_atomic,
        write_failure,
        write_table_atomic,
    )
    from kscore.plan.difficulty import plan_partitions
    from kscore.summaries import RangeSummary

    spill = Path(temp_dir) if temp_dir is not None else out.parent
    with temporary_folder(spill / out.name) as folder:
        try:
            run = plan_partitions(
                frames,
                standard,
                labels=labels,
                explain=explain,
                memory_limit=limit,
                folder=folder,
                progress=progress,
                min_parts=1 if ray_sliced is None else 2 * _ray_cpus(),
                footers=footers,
                scale=scale,
                scale_source=scale_source,
            )
            planned = run
            if ray_sliced is not None:
                from kscore.plan.difficulty_ray import RayDifficultyRun

                run = RayDifficultyRun(planned, ray_sliced)
            summary = RangeSummary(list(frames), standard.id_column, top)
            remote = object_storage_dataset()
            if dataset and ray_sliced is not None and remote is not None:
                # The tasks write the parts under the prefix; the manifest goes last, from here.
                from kscore.storage import options_in_use, publish_written

                publish_written(
                    remote.target,
                    MANIFEST,
                    lambda prefix: _parts_by_tasks(run, prefix, metadata, summary, top, options_in_use()),
                    lambda: json.dumps(metadata, default=str),
                )
                remote.published = True
                return summary.result(
                    scan_output(remote.target), output=f"{remote.target}/", accuracy=run.accuracy
                )
            if dataset and ray_sliced is not None and not staged_for_object_storage():
                # The tasks write the parts themselves, into a folder every node sees.
                write_dataset_atomic(
                    out, lambda target: _parts_by_tasks(run, str(target), metadata, summary, top), metadata
                )
                return summary.result(scan_output(out), output=str(out), accuracy=run.accuracy)
            tables = run.tables()
            first = next(tables)  # the spill, and the first range
            metadata["scale"] = scale_record(planned.statistics)
            parts: list[Path] = []
            if dataset:  # each range is a part of the dataset as it is
                for number, table in enumerate(itertools.chain([first], tables)):
                    parts.append(folder / part_name(number))
                    table.write_parquet(parts[-1], metadata=metadata_tags(metadata))
                    summary.add(table)
        except (OSError, pl.exceptions.PolarsError) as exc:
            option = "--temp-dir" if temp_dir is not None else "--temp-dir or -o"
            raise write_failure(spill, exc, option, "cannot write temporary files") from None
        if dataset:
            write_dataset_atomic(out, lambda target: _move_parts(parts, target), metadata)
        else:
            write_table_atomic(
                _streamed(itertools.chain([first], tables), first.schema, summary), out, metadata
            )
    return summary.result(scan_output(out), output=str(out), accuracy=run.accuracy)


def _parts_by_tasks(
    run: Any,
    folder: str,
    metadata: dict[str, Any],
    summary: Any,
    top: int,
    storage_options: dict[str, str] | None = None,
) -> None:
    """The Ray plan with each score task writing its id range into `folder` (a part of the
    dataset; a local folder every node sees, or an object-storage prefix) and summing it up; then
    the quantiles' bands, read from the parts by tasks too. Nothing of the output passes through
    this process but the summary's few values."""
    from kscore.plan.difficulty_ray import PartWrites

    run.writes = PartWrites(folder, metadata, top, storage_options)
    for piece in run.tables():
        summary.add_piece(piece)
    bounds = summary.bounds()
    if bounds:
        for found in run.bands(bounds):
            summary.add_found_bands(found)


def _ray_cpus() -> int:
    from kscore.engines.ray import cluster_cpus

    return cluster_cpus()


def _local_parquet(sources: Mapping[str, str]) -> dict[str, Path]:
    """The models read from local Parquet files: their footers' statistics can stand in for a read."""
    from kscore.io import file_format
    from kscore.storage import as_path

    paths = {name: as_path(source) for name, source in sources.items()}
    return {
        name: path
        for name, path in paths.items()
        if isinstance(path, Path) and path.is_file() and file_format(path) == "parquet"
    }


def _streamed(tables: Iterator[pl.DataFrame], schema: pl.Schema, summary: Any) -> pl.LazyFrame:
    """The ranges' tables as one LazyFrame that polars' Parquet sink pulls range by range (scored
    while the previous one is encoded); each is added to the summary on its way. An error raised
    while scoring a range comes out of the sink as itself."""
    from polars.io.plugins import register_io_source

    def source(
        with_columns: list[str] | None, predicate: Any, n_rows: int | None, batch_size: int | None
    ) -> Iterator[pl.DataFrame]:
        for table in tables:
            summary.add(table)
            yield table if with_columns is None else table.select(with_columns)

    return register_io_source(source, schema=schema)


def _move_parts(parts: list[Path], folder: Path) -> None:
    """Parts written in the spill folder, moved into the dataset (a rename where both share a file
    system, a copy otherwise)."""
    import shutil

    for path in parts:
        shutil.move(path, folder / path.name)


def _accuracy(
    frames: Mapping[str, pl.DataFrame | pl.LazyFrame],
    standard: QualityStandard,
    labels: Mapping[str, str],
    datapoints: pl.DataFrame | None,
) -> dict[str, float | None]:
    """Binary tasks: each model's accuracy at the task's threshold."""
    if standard.task is None or standard.task.type != "binary_classification":
        return {}
    from kscore.core.tasks import threshold_accuracy

    return {
        name: threshold_accuracy(frame, standard.task, standard.id_column, labels[name], datapoints)
        for name, frame in frames.items()
    }


def difficulty_scores(
    results: Mapping[str, pl.DataFrame | pl.LazyFrame | str | os.PathLike],
    standard: QualityStandard,
    *,
    explain: bool = False,
    datapoints: pl.DataFrame | None = None,
    sources: Mapping[str, str] | None = None,
    out: str | os.PathLike | None = None,
    memory_limit: int | str | None = None,
    temp_dir: str | os.PathLike | None = None,
    top: int = 10,
    scale_from: str | os.PathLike | None = None,
) -> pl.DataFrame | dict[str, Any]:
    """Per-model and datapoint-level difficulty scores.

    Parameters
    ----------
    results
        Model name -> that model's per-datapoint results (id column plus the standard's columns):
        a DataFrame, a LazyFrame or the path of a CSV/Parquet file.
    explain
        Also return each model's normalized signals and the signal that contributed most.
    datapoints
        Optional table of every datapoint (e.g. holding the ground truth); the output is then this
        table enriched with the score columns, in its row order.
    sources
        Model name -> the file it came from, used to name the culprit in error messages.
    out
        Write the table there (Parquet, with kscore's metadata) and return the summary instead:
        inputs larger than `memory_limit` are then scored by id ranges spilled to a temporary folder
        beside `out` (or in `temp_dir`), with the same result.
    memory_limit
        Bytes, or a size such as "4GiB"; default half the available memory. Without `out`, a result
        estimated above it is refused (pass `out` to stream it to a file).
    scale_from
        An earlier difficulty output: normalize on the scale it recorded (`load_scale`).

    Returns
    -------
    One row per datapoint id (sorted by id, or in `datapoints` order): the id column,
    `difficulty_score`, `n_models` and `difficulty_score_<model>` per model. With `out`: the summary
    (`kscore difficulty --json`).
    """
    if out is not None:
        return write_difficulty_scores(
            results, standard, out, explain=explain, datapoints=datapoints, sources=sources,
            memory_limit=memory_limit, temp_dir=temp_dir, top=top, scale_from=scale_from,
        )  # fmt: skip
    from kscore.core.difficulty import score_in_memory

    scale, scale_source = load_scale(scale_from, standard) if scale_from is not None else (None, "")
    frames, scanned = in_memory_inputs(results, standard, memory_limit, explain)
    table, _ = score_in_memory(
        frames, standard, explain=explain, datapoints=datapoints, sources={**scanned, **(sources or {})},
        scale=scale, scale_source=scale_source,
    )  # fmt: skip
    return table


def load_scale(path: str | os.PathLike, standard: QualityStandard) -> tuple[Any, str]:
    """The scale an earlier difficulty output recorded, and its path as shown in messages.

    Exit 2 where the file records none (not a difficulty output; written before 0.8), where its
    standard differs from `standard` in what scores depend on (metrics, directions, weights, task,
    scope), or where the normalization is `rank`: a rank is a datapoint's place among one run's
    rows, and keeping it would mean keeping every earlier value, so only min-max scales are kept.
    """
    from kscore.core.scale import read_scale, standard_difference
    from kscore.io import check_input_file, read_kscore_metadata
    from kscore.storage import as_path

    source = as_path(path)
    shown = str(source)
    if standard.normalization != "minmax":
        raise InputError(
            "--scale-from needs normalization: minmax; a rank scale is the run's own order of its rows "
            "and cannot be kept apart from them"
        )
    check_input_file(source)  # type: ignore[arg-type]
    metadata = read_kscore_metadata(source)
    if metadata.get("command") != "difficulty":
        what = f"an output of kscore {metadata['command']}" if metadata.get("command") else "no kscore output"
        raise InputError(f"--scale-from {shown}: {what}, not of kscore difficulty; give a difficulty output")
    if "scale" not in metadata:
        version = metadata.get("kscore_version", "an earlier version")
        raise InputError(
            f"--scale-from {shown}: records no scale (written by kscore {version}; scales are recorded "
            "from 0.8.0); score it again"
        )
    stored = metadata.get("standard")
    difference = standard_difference(stored if isinstance(stored, dict) else {}, standard.to_dict())
    if difference is not None:
        raise InputError(f"--scale-from {shown} was scored with another quality standard: {difference}")
    return read_scale(metadata["scale"], standard, f"--scale-from {shown}"), shown


def difficulty(
    results: Sequence[str | os.PathLike] | Mapping[str, ResultInput],
    standard: QualityStandard | str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    *,
    model_col: str | None = None,
    datapoints: str | os.PathLike | pl.DataFrame | None = None,
    explain: bool = False,
    top: int = 10,
    plot: str | os.PathLike | None = None,
    size: str | tuple[int, int] = "1200x900",
    memory_limit: int | str | None = None,
    temp_dir: str | os.PathLike | None = None,
    jobs: int | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    storage_options: Mapping[str, str] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    scale_from: str | os.PathLike | None = None,
) -> pl.DataFrame | dict[str, Any]:
    """`kscore difficulty`: every datapoint's difficulty, per model and averaged over the models.

    `results`: result files (paths, globs, `NAME=PATH`; one model each, or long files with
    `model_col`), or a mapping of model name to a path or a frame. `standard`: a QualityStandard
    or its YAML file (default: `$KSCORE_CONFIG`, then `./kscore.yaml`). Without `out`, the table is
    returned (refused above `memory_limit`); with `out`, it is written there (Parquet, CSV, NDJSON
    or a dataset `DIR/`, local or in object storage) and the summary is returned: what
    `kscore difficulty --json` prints, warnings included. `plot` also draws the scores' picture.
    `scale_from`: an earlier difficulty output; this run is normalized on the scale it recorded, so
    that the two outputs' scores compare (`kscore compare OLD NEW`).
    """
    from kscore.config import load_standard
    from kscore.io import read_results, read_table, resolve_model_files, scan_output
    from kscore.jobs.common import checked_output, checked_plot, collected_warnings
    from kscore.plan.sizing import resolve_memory_limit
    from kscore.storage import as_path, using

    del jobs  # threads are set for the whole process (`kscore.engines.local.limit_threads`)
    with using(storage_options), collected_warnings() as collected:
        if not isinstance(standard, QualityStandard):
            standard = load_standard(standard)
        if isinstance(results, Mapping):
            files: dict[str, Any] = dict(results)
        else:
            files = dict(resolve_model_files([os.fspath(r) for r in results]))
        limit = resolve_memory_limit(memory_limit)
        points_file = None if datapoints is None or isinstance(datapoints, pl.DataFrame) else datapoints
        config_file = [Path(standard.source)] if standard.source else []
        paths = [as_path(v) for v in files.values() if not isinstance(v, pl.DataFrame | pl.LazyFrame)]
        scale_file = [as_path(scale_from)] if scale_from is not None else []
        inputs = [*paths, *([as_path(points_file)] if points_file else []), *config_file, *scale_file]
        out_path = checked_output(out, inputs) if out is not None else None
        picture_size = checked_plot(plot, size, [*inputs, *([out_path] if out_path else [])])
        sources: dict[str, str] = {}
        chosen: Any = files
        if model_col is not None:
            metric_names = [m.name for m in standard.metrics]
            task_columns = list(standard.task.result_columns) if standard.task else []
            columns = [standard.id_column, *metric_names, *task_columns]
            chosen, sources = read_results(
                files,
                columns,
                numeric=metric_names,
                model_col=model_col,
                required=columns[: 1 + len(metric_names)],
            )
        points = read_table(as_path(points_file)) if points_file else datapoints
        assert not isinstance(points, pl.LazyFrame)
        with _long_file_hint(model_col is None):
            if out is None:
                table = difficulty_scores(
                    chosen, standard, explain=explain, datapoints=points, sources=sources, memory_limit=limit,
                    scale_from=scale_from,
                )  # fmt: skip
                assert isinstance(table, pl.DataFrame)
                if plot is not None:
                    from kscore.core.comparison import models_in

                    _plot(table, models_in(table), plot, picture_size)
                return table
            summary = write_difficulty_scores(
                chosen, standard, out, explain=explain, datapoints=points,
                datapoints_source=str(points_file) if points_file else None, sources=sources,
                memory_limit=limit, temp_dir=temp_dir, top=top, progress=progress, engine=engine,
                ray_address=ray_address, scale_from=scale_from,
            )  # fmt: skip
        if plot is not None:
            _plot(scan_output(out_path), [model["name"] for model in summary["models"]], plot, picture_size)
            summary["plot"] = str(plot)
    summary["warnings"] = collected.pop(None, [])
    for model in summary["models"]:
        model["warnings"] = collected.get(model["name"], [])
    return summary


def _plot(
    table: pl.DataFrame | pl.LazyFrame, models: list[str], plot: str | os.PathLike, size: tuple[int, int]
) -> None:
    from kscore.plot import plot_difficulty

    plot_difficulty(table, models, plot, size=size)


@contextlib.contextmanager
def _long_file_hint(wanted: bool) -> Iterator[None]:
    """A duplicated id in a file read without `model_col`: perhaps a long file of several models."""
    from kscore.errors import DuplicatedIds

    try:
        yield
    except DuplicatedIds as exc:
        if not wanted:
            raise
        raise DuplicatedIds(
            f"{exc}; is this a long file, one row per model? name the model column with --model-col"
        ) from None
