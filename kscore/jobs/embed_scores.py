"""The embed-scores job (`kscore embed-scores`, `kscore.embed_scores`): read the embeddings (spilled
to disk above the memory limit), map every row to 2D (`kscore/core/reduction.py`), score the train
rows (`kscore/core/density.py`), write and summarise (SPEC §3)."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from kscore._version import __version__
from kscore.columns import LOCAL, MAP_X, MAP_Y, POTENTIAL, REPRESENTATION, SCORE, embed_score_columns
from kscore.core.align import (
    DifficultyFacts,
    checked_difficulty_columns,
    checked_difficulty_values,
    checked_id_type,
    joined_id_type,
    normalize_ids,
    split_masks,
    with_id_type,
)
from kscore.core.reduction import FIT_SAMPLE
from kscore.engines import Executor, check_engine, make_executor
from kscore.errors import InputError, KscoreWarning, first_line, missing_column_message
from kscore.jobs.common import ResultInput, run_job, source_name, stage


def embedding_columns(
    table: pl.DataFrame | pl.LazyFrame, embedding_col: str | None = None, embedding_prefix: str | None = None
) -> list[str]:
    """The column(s) holding the embedding: one list/array column, or numeric columns with a prefix."""
    schema = table.collect_schema() if isinstance(table, pl.LazyFrame) else table.schema
    if embedding_col is not None and embedding_prefix is not None:
        raise InputError("give --embedding-col or --embedding-prefix, not both")
    if embedding_prefix is not None:
        matching = [c for c, t in schema.items() if c.startswith(embedding_prefix) and t.is_numeric()]
        if not matching:
            raise InputError(f"no numeric column starts with the embedding prefix {embedding_prefix!r}")
        return sorted(matching, key=lambda c: _natural_key(c[len(embedding_prefix) :]))
    if embedding_col is not None:
        if embedding_col not in schema:
            message = missing_column_message(
                "the embeddings", embedding_col, schema.names(), "embedding column"
            )
            raise InputError(f"{message}; name it with --embedding-col")
        return [embedding_col]
    nested = [c for c, t in schema.items() if isinstance(t, (pl.List, pl.Array))]
    if len(nested) != 1:
        found = f"found {', '.join(nested)}" if nested else "found none"
        raise InputError(
            f"cannot tell the embedding column: expected exactly one list/array column ({found}); "
            "name it with --embedding-col or --embedding-prefix"
        )
    return nested


def _natural_key(suffix: str) -> tuple[int, str]:
    digits = re.fullmatch(r"_?(\d+)", suffix)
    return (int(digits.group(1)), "") if digits else (1 << 62, suffix)


def embedding_matrix(table: pl.DataFrame, columns: list[str], dtype: type = np.float64) -> np.ndarray:
    """The embeddings as a (rows x dimensions) float array, validated; float32 values stay float32
    with `dtype=np.float32` (half the memory, for callers that only project them)."""
    if len(columns) > 1:
        matrix = table.select(pl.col(c).cast(pl.Float64) for c in columns).to_numpy()
        what = f"columns {columns[0]!r}..{columns[-1]!r}"
    else:
        column = table.get_column(columns[0])
        what = f"column {columns[0]!r}"
        inner = getattr(column.dtype, "inner", None)
        if inner is not None and not (inner.is_numeric() or inner == pl.Null):
            raise InputError(f"{what} holds {inner} values, not numbers")
        if isinstance(column.dtype, pl.List):
            lengths = column.list.len()
            if column.null_count():
                raise InputError(f"{what} has {column.null_count()} null embeddings")
            if lengths.n_unique() > 1:
                counts = lengths.value_counts(sort=True)
                raise InputError(
                    f"{what}: embeddings of unequal length ({counts.height} different lengths, "
                    f"e.g. {counts.get_column(lengths.name).head(3).to_list()})"
                )
            width = int(lengths[0])
            if width and inner is not None and inner.is_float():
                # the values laid end to end, read as one array: a cast to Array costs ten times more
                flat = column.explode().to_numpy().astype(_wider(inner, dtype), copy=False).reshape(-1, width)
                return _finite(flat, what)
            column = column.cast(pl.Array(pl.Float64, width))
        elif not isinstance(column.dtype, pl.Array):
            raise InputError(f"{what} is {column.dtype}, not a list or array of numbers")
        if column.null_count():
            raise InputError(f"{what} has {column.null_count()} null embeddings")
        inner = column.dtype.inner
        if inner is not None and inner.is_float() and not isinstance(inner, pl.Array):
            matrix = _joined_chunks(column, _wider(inner, dtype))  # no cast in polars
        else:
            matrix = column.cast(pl.Array(pl.Float64, column.dtype.size)).to_numpy()
    return _finite(matrix, what)


_CHECK_ROWS = 65_536  # rows checked for NaN and inf at once, on every core


def embedding_rows(table: pl.DataFrame, columns: list[str], reducer: str) -> Any:
    """The embeddings as the reduction reads them: `embedding_matrix`, except that UMAP's float32
    array column of several chunks (a Parquet file's row groups) stays in its chunks
    (`ChunkedRows`: the same rows and hashes, without a joined copy)."""
    if reducer == "umap" and len(columns) == 1:
        column = table.get_column(columns[0])
        dtype = column.dtype
        if isinstance(dtype, pl.Array) and dtype.inner == pl.Float32 and column.n_chunks() > 1:
            if column.null_count():
                raise InputError(f"column {columns[0]!r} has {column.null_count()} null embeddings")
            chunks = [chunk.to_numpy() for chunk in column.get_chunks()]  # views of the chunks' values
            if all(chunk.ndim == 2 and chunk.dtype == np.float32 for chunk in chunks):
                from kscore.core.spilled_rows import ChunkedRows

                _finite_chunks(chunks, f"column {columns[0]!r}")
                return ChunkedRows(chunks)
    return embedding_matrix(table, columns, np.float32 if reducer == "umap" else np.float64)


def _wider(inner: pl.DataType, dtype: type) -> type:
    """`dtype`, unless the values are wider (float64 values are never narrowed)."""
    return np.float64 if inner == pl.Float64 else dtype


def _joined_chunks(column: pl.Series, dtype: type) -> np.ndarray:
    """An Array column of floats as one (rows x width) array: the chunks (a Parquet file's row
    groups) copied side by side on every core, 2x faster than polars joining them first."""
    from kscore.engines.local import parallel_map

    chunks = [chunk.to_numpy() for chunk in column.get_chunks()]  # views of the chunks' values
    if len(chunks) == 1:
        return chunks[0].astype(dtype, copy=False)
    matrix = np.empty((len(column), column.dtype.size), dtype=dtype)  # type: ignore[attr-defined]
    starts = np.cumsum([0, *(len(chunk) for chunk in chunks)]).tolist()
    parallel_map(lambda i: np.copyto(matrix[starts[i] : starts[i + 1]], chunks[i]), range(len(chunks)))
    return matrix


def _finite(matrix: np.ndarray, what: str) -> np.ndarray:
    _finite_chunks([matrix], what)
    return matrix


def _finite_chunks(chunks: list[np.ndarray], what: str) -> None:
    """InputError where a row of the chunks has NaN or inf (checked block by block, on every core)."""
    from kscore.engines.local import parallel_map

    step = _CHECK_ROWS
    blocks = [(chunk, slice(start, start + step)) for chunk in chunks for start in range(0, len(chunk), step)]
    if all(parallel_map(lambda block: bool(np.isfinite(block[0][block[1]]).all()), blocks)):
        return
    bad_rows = sum(int((~np.isfinite(chunk).all(axis=1)).sum()) for chunk in chunks)
    if bad_rows:
        raise InputError(f"{what}: {bad_rows} rows have NaN, inf or missing values in the embedding")


def score_embeddings(
    table: pl.DataFrame | pl.LazyFrame,
    *,
    id_col: str = "id",
    split_col: str = "split",
    train_values: Sequence[str] = ("train",),
    reference_values: Sequence[str] | None = None,
    difficulty: pl.DataFrame | pl.LazyFrame | None = None,
    embedding_col: str | None = None,
    embedding_prefix: str | None = None,
    reducer: str = "umap",
    metric: str = "euclidean",
    seed: int | None = 0,
    bandwidth: str | float = "scott",
    fit_sample: int = FIT_SAMPLE,
    keep_embedding: bool = False,
    progress: Any = None,
    source: str = "embeddings",
    jobs: int | None = None,
    memory_limit: int | str | None = None,
    spill_dir: str | os.PathLike | None = None,
    engine: str = "local",
    saved_map: Any = None,
    on_fit: Any = None,
    on_passthrough: Callable[[Passthrough], None] | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The input table enriched with `map_x`, `map_y` and the three scores of the train rows.

    `difficulty` is the output of `difficulty_scores` (its id column and `difficulty_score`, in
    [0, 1]), needed for `potential_difficulty_score` and `local_difficulty`. `source` names the
    table in error messages. `jobs` caps the worker processes and threads (default: every core); the
    numbers do not depend on it. Returns the table and the run's metadata.

    A LazyFrame whose embeddings would not fit `memory_limit` (default: half the available memory)
    has them written once to a file in `spill_dir` (a temporary folder by default, removed at the
    end), batch by batch, and UMAP reads the rows it needs from there: the same map and scores, in
    bounded memory. Every other column, the map and the scores stay in memory (about 70 bytes a row).

    `engine="ray"` transforms the UMAP batches and runs the KDE's transforms on the connected Ray
    cluster (the same map and scores); the embeddings of a Parquet input are then read by its tasks,
    never by this process (`kscore.plan.embeddings_ray`).

    `saved_map` (a `SavedMap`): place the rows on that map instead of fitting one. `on_fit`: called
    with the fitted map (`SavedMap`), to save it. `on_passthrough`: where the Ray tasks read a
    Parquet input's embeddings, the columns other than the embedding (the id and split among them)
    are not read here but handed to this callback (a `Passthrough`, for the tasks that write the
    output's parts): tasks check the ids and split the rows part by part. Where UMAP was fitted
    on a sample of the rows, the map, the masks, the difficulty and the scores then stay on the
    cluster, in pieces (the `Passthrough`'s `scored`, a `ScoredPieces`), and the table returned
    is empty; else it holds the map and the scores.
    """
    from kscore.plan.sizing import resolve_memory_limit

    if saved_map is not None:  # its workers import umap, not this process
        saved_map.build_index_meanwhile()  # while the embeddings are read
    elif reducer == "umap":
        from kscore.core.reduction import import_umap_meanwhile

        import_umap_meanwhile()  # while the embeddings are read
    limit = resolve_memory_limit(memory_limit)
    executor = make_executor(engine, jobs)
    if isinstance(table, pl.LazyFrame):
        spill = (embedding_col, embedding_prefix, reducer, limit, spill_dir, source, progress, engine)
        deferring = (id_col, split_col) if on_passthrough is not None else None
        loading: contextlib.AbstractContextManager[Any] = _embeddings_of(
            table, *spill, keep_embedding, saved_map, deferring
        )
    else:  # in memory: the embeddings are read from the table
        loading = contextlib.nullcontext(
            (table, None, embedding_columns(table, embedding_col, embedding_prefix), None)
        )
    with (
        _map_workers(saved_map, table, reducer, source, executor, jobs, limit) as transform,
        loading as loaded,
    ):
        frame, matrix, columns, passthrough = loaded
        scored = _embed_scores(
            frame, matrix, columns, id_col=id_col, split_col=split_col, train_values=train_values,
            reference_values=reference_values, difficulty=difficulty, reducer=reducer, metric=metric,
            seed=seed, bandwidth=bandwidth, fit_sample=fit_sample, keep_embedding=keep_embedding,
            progress=progress, source=source, jobs=jobs, memory_limit=limit, executor=executor,
            saved_map=saved_map, transform=transform, on_fit=on_fit, passthrough=passthrough,
        )  # fmt: skip
        if passthrough is not None and on_passthrough is not None:
            on_passthrough(passthrough)
        return scored


def _map_workers(
    saved_map: Any,
    table: pl.DataFrame | pl.LazyFrame,
    reducer: str,
    source: str,
    executor: Executor,
    jobs: int | None,
    memory_limit: int,
) -> contextlib.AbstractContextManager[Any]:
    """With a saved map: its transform workers started while the input is read
    (`map_workers_started`), where the input's row count is known without reading it (a table
    in memory, a Parquet input's metadata); yields the map's transform, or None."""
    if saved_map is None or reducer != "umap":
        return contextlib.nullcontext()
    if isinstance(table, pl.DataFrame):
        rows = table.height
    elif _is_parquet(source):
        try:
            rows = int(table.select(pl.len()).collect().item())
        except pl.exceptions.PolarsError:
            return contextlib.nullcontext()  # the read says what is wrong
    else:
        return contextlib.nullcontext()
    from kscore.core.reduction import map_workers_started

    return map_workers_started(saved_map, rows, executor, jobs=jobs, memory_limit=memory_limit)


# Bytes an embedding element takes in memory on the in-memory path (the list column, its Float64
# array, the numpy matrix and umap's float32 copy).
_BYTES_PER_ELEMENT = 24


@contextlib.contextmanager
def _embeddings_of(
    table: pl.LazyFrame,
    embedding_col: str | None,
    embedding_prefix: str | None,
    reducer: str,
    limit: int,
    spill_dir: str | os.PathLike | None,
    source: str,
    progress: Any,
    engine: str = "local",
    keep_embedding: bool = False,
    saved_map: Any = None,
    deferring: tuple[str, str] | None = None,
) -> Iterator[tuple[pl.DataFrame, Any, list[str], Passthrough | None]]:
    """(the table, the embeddings or None to read them from the table, the embedding columns, the
    columns left unread): the whole table in memory when it fits, else every other column in
    memory and the embeddings spilled to disk (`SpilledRows`). On Ray, a Parquet input's embeddings
    for UMAP are read by the cluster's tasks (`TaskRows`), whatever their size: they never pass
    through this process (the tasks find the rows of `saved_map`'s fit sample as they hash them);
    with `deferring` (the id and split columns), neither do the columns but any named like an
    output column (a `Passthrough`: tasks check the ids and splits, and write the output's parts)."""
    from kscore.plan.sizing import BASE_BYTES

    try:
        columns = embedding_columns(table, embedding_col, embedding_prefix)
        dim = _dimensions(table, columns)
        names = table.collect_schema().names()
        on_tasks = engine == "ray" and reducer == "umap" and dim > 2 and not keep_embedding
        unread = _unread(names, columns, deferring) if on_tasks and _is_parquet(source) else []
        others = table.select(pl.exclude(*columns, *unread)).collect()
        height = others.height if others.width else int(table.select(pl.len()).collect().item())
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"{source}: cannot read: {first_line(exc)}") from None
    if on_tasks:
        fit = saved_map.vectors if saved_map is not None and saved_map.width == dim else None
        found = _task_rows(table, columns, dim, height, source, progress, fit)
        if found is not None:
            rows, reader = found
            passthrough = None
            if unread and deferring is not None:  # (`_unread` reads all without `deferring`)
                id_dtype = table.collect_schema()[deferring[0]]
                passthrough = Passthrough(
                    table.select(unread), unread, names, source, reader, rows.parts, deferring, id_dtype
                )
            yield others, rows, columns, passthrough
            return
    need = BASE_BYTES + others.height * dim * _BYTES_PER_ELEMENT
    if need <= limit:
        yield _collected(table, others, columns, source), None, columns, None
        return
    from kscore.core.spilled_rows import SpilledRows
    from kscore.io import temporary_folder

    batch = max(1024, int((limit - BASE_BYTES) * 0.1 // max(dim * _BYTES_PER_ELEMENT, 1)))
    where = Path(spill_dir) if spill_dir is not None else Path(tempfile.gettempdir())
    with temporary_folder(where / "embeddings") as folder:
        # The precision the reducer reads: umap float32, PCA and 2D inputs float64 (as in memory).
        dtype = np.float32 if reducer == "umap" and dim != 2 else np.float64
        rows = SpilledRows(folder / "embeddings.bin", dim, dtype)
        try:
            try:
                for part in _embedding_batches(table, columns, batch, source):
                    if part.height:
                        matrix = embedding_matrix(part, columns)
                        if matrix.shape[1] != dim:
                            raise InputError(
                                f"{source}: embeddings of unequal length ({dim} and {matrix.shape[1]})"
                            )
                        rows.append(matrix)
                        if progress:
                            progress("spill embeddings", len(rows), others.height)
            except pl.exceptions.PolarsError as exc:
                raise InputError(f"{source}: cannot read: {first_line(exc)}") from None
            rows.finish()
            if len(rows) != others.height:
                raise InputError(
                    f"{source}: the embedding column has {len(rows)} rows, the table {others.height}"
                )
            yield others, rows, columns, None
        finally:
            rows.close()


@dataclass
class Passthrough:
    """Columns of a Parquet input this process does not read, the id and split among them: tasks
    read the ids and splits part by part (`read`, `parts`) to check them and split the rows, and the
    tasks that write the output's parts read every such column, slice by slice (`scan`, those
    columns), and put them where the output has them (`order`, set once the scores are made), the
    ids typed as `id_type` (set once they are checked)."""

    scan: pl.LazyFrame
    columns: list[str]
    names: list[str]  # the input's columns, in order
    source: str
    read: Callable[[list[str], Any], pl.DataFrame]  # (columns, an EmbeddingPart) -> its rows of them
    parts: list[Any]
    id_split: tuple[str, str]  # the id and split columns
    id_dtype: pl.DataType  # as read
    order: list[str] = field(default_factory=list)
    id_type: pl.DataType | None = None
    scored: Any = None  # the output's rows, where tasks left them (`ScoredPieces`)


# Columns the output writes: an input column of one of these names is read here, to be replaced.
_OUTPUT_COLUMNS = (MAP_X, MAP_Y, REPRESENTATION, POTENTIAL, LOCAL, SCORE)


def _unread(names: list[str], embedding: list[str], deferring: tuple[str, str] | None) -> list[str]:
    """The columns the tasks that write the output read instead of this process: none without
    `deferring`, or where the id or split column is missing (its error lists every column)."""
    if deferring is None or not all(column in names for column in deferring):
        return []
    return [c for c in names if c not in embedding and c not in _OUTPUT_COLUMNS]


def _is_parquet(source: str) -> bool:
    """Whether `source` names Parquet (a file, a dataset or an object)."""
    from kscore.io import file_format
    from kscore.storage import as_path

    try:
        return file_format(as_path(source)) == "parquet"  # type: ignore[arg-type]
    except InputError:
        return False


def _embedding_batches(
    table: pl.LazyFrame, columns: list[str], batch: int, source: str
) -> Iterator[pl.DataFrame]:
    """The embedding columns, `batch` rows at a time. From a local Parquet file, by pyarrow's
    streaming reader, which never decodes a row group whole: polars' batches of a file of
    500,000-row groups (768 MB of 384-d embeddings each) peaked at 3.4 GiB under a 2 GiB limit,
    pyarrow's at 0.3 GiB. Anything else by polars."""
    path = _local_parquet_file(source)
    if path is None:
        yield from table.select(columns).collect_batches(chunk_size=batch)
        return
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        reader = pq.ParquetFile(path, pre_buffer=False, buffer_size=1 << 20)
        for record_batch in reader.iter_batches(batch_size=batch, columns=columns):
            yield pl.DataFrame(pl.from_arrow(record_batch))
    except (pa.ArrowException, OSError) as exc:
        raise InputError(f"{source}: cannot read: {first_line(exc)}") from None


def _task_rows(
    table: pl.LazyFrame,
    columns: list[str],
    dim: int,
    height: int,
    source: str,
    progress: Any,
    fit_vectors: np.ndarray | None = None,
) -> Any:
    """The embeddings as Ray tasks read them (`TaskRows`, hashed) and a reader of any columns of
    its parts (`read_part_columns`), or None where the input is not Parquet (a CSV is read here, as
    on one machine). A local Parquet file is cut at its row groups; a dataset or an object in
    storage into slices of rows."""
    from kscore.plan.embeddings_ray import TaskRows, parts_of_groups, parts_of_slices

    if not _is_parquet(source):
        return None
    path = _local_parquet_file(source)
    parts = None
    if path is not None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            metadata = pq.ParquetFile(path).metadata
            parts = parts_of_groups(
                [metadata.row_group(g).num_rows for g in range(metadata.num_row_groups)], dim
            )
        except (pa.ArrowException, OSError):  # read as slices by polars, which names what is wrong
            parts = None
    if parts is None or sum(part.length for part in parts) != height:
        path, parts = None, parts_of_slices(height, dim)
    where = str(path) if path else None
    reader = functools.partial(read_embedding_part, table.select(columns), where, columns, dim, source)
    columns_reader = functools.partial(read_part_columns, table, where, source)
    return TaskRows(reader, parts, dim, fit_vectors).hash_rows(progress), columns_reader


def read_embedding_part(
    table: pl.LazyFrame, path: str | None, columns: list[str], dim: int, source: str, part: Any
) -> np.ndarray:
    """A part's embeddings as float32 rows, checked as on one machine; run by a Ray task. `path`: a
    local Parquet file, read by pyarrow a row group at a time; else `table` (the embedding columns,
    scanned) is sliced."""
    frame = read_part_columns(table, path, source, columns, part)
    if frame.height == 0:
        return np.empty((0, dim), dtype=np.float32)
    matrix = embedding_matrix(frame, columns, np.float32)
    if matrix.shape[1] != dim:
        raise InputError(f"{source}: embeddings of unequal length ({dim} and {matrix.shape[1]})")
    return np.ascontiguousarray(matrix, dtype=np.float32)


def read_part_columns(
    table: pl.LazyFrame, path: str | None, source: str, columns: list[str], part: Any
) -> pl.DataFrame:
    """A part's `columns` (an `EmbeddingPart`'s rows), read by a Ray task: from a local Parquet
    file `path` a row group at a time by pyarrow, else as a slice of `table` (scanned)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kscore.engines.ray import node_name

    try:
        if path is not None and part.groups is not None:
            arrow = pq.ParquetFile(path).read_row_groups(list(part.groups), columns=columns)
            return pl.DataFrame(pl.from_arrow(arrow))
        return table.select(columns).slice(part.offset, part.length).collect()
    except (pl.exceptions.PolarsError, pa.ArrowException, OSError) as exc:
        raise InputError(f"{source}: cannot read on node {node_name()}: {first_line(exc)}") from None


def _local_parquet_file(source: str) -> Path | None:
    """`source` as a path, where it names one local Parquet file (not a dataset folder)."""
    from kscore.io import file_format, is_dataset

    path = Path(source)
    return path if path.is_file() and not is_dataset(path) and file_format(path) == "parquet" else None


def _collected(table: pl.LazyFrame, others: pl.DataFrame, columns: list[str], source: str) -> pl.DataFrame:
    """The whole table: `others` (its other columns, read) and the embedding columns. From a local
    Parquet file those are read by pyarrow, 2.6 times faster than polars' reader for a fixed-size
    list column (1,000,000 x 384 float32: 2.5 s against 6.6 s), and handed over without a copy;
    anything else, or any failure there, is read by polars."""
    path = _local_parquet_file(source)
    if path is not None:
        try:
            embedding = pl.from_arrow(_read_row_groups(path, columns))
            if isinstance(embedding, pl.DataFrame) and embedding.height == others.height:
                order = table.collect_schema().names()
                return others.hstack(embedding.get_columns()).select(order)
        except Exception:  # polars reads it below, and names what is wrong
            pass
    return table.collect()


def _read_row_groups(path: Path, columns: list[str]) -> Any:
    """`columns` of a Parquet file as a pyarrow table of one chunk per row group, the row groups
    read side by side on threads (`parallel_map`). Not `pq.read_table`, which imports pyarrow's
    dataset module and pandas (0.7 s), nor one `ParquetFile.read`, which grows one chunk for the
    whole column (1,000,000 x 384 float32: 8.3 s against 2.0 s, medians of 6 fresh processes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from kscore.engines.local import parallel_map

    metadata = pq.ParquetFile(path).metadata

    def read_group(group: int) -> Any:
        return pq.ParquetFile(path, metadata=metadata).read_row_group(group, columns=columns)

    return pa.concat_tables(parallel_map(read_group, range(metadata.num_row_groups)))


def _dimensions(table: pl.LazyFrame, columns: list[str]) -> int:
    """The embedding's length, from the schema (an array or prefixed columns) or the first row."""
    if len(columns) > 1:
        return len(columns)
    dtype = table.collect_schema()[columns[0]]
    if isinstance(dtype, pl.Array):
        return int(dtype.size)
    if not isinstance(dtype, pl.List):  # not an embedding: `embedding_matrix` says so, in memory
        return 0
    first = table.select(pl.col(columns[0]).list.len()).head(1).collect()
    return int(first.item()) if first.height and first.item() is not None else 0


def _embed_scores(
    table: pl.DataFrame,
    matrix: Any,
    columns: list[str],
    *,
    id_col: str,
    split_col: str,
    train_values: Sequence[str],
    reference_values: Sequence[str] | None,
    difficulty: pl.DataFrame | pl.LazyFrame | None,
    reducer: str,
    metric: str,
    seed: int | None,
    bandwidth: str | float,
    fit_sample: int,
    keep_embedding: bool,
    progress: Any,
    source: str,
    jobs: int | None,
    memory_limit: int,
    executor: Executor,
    saved_map: Any = None,
    transform: Any = None,
    on_fit: Any = None,
    passthrough: Passthrough | None = None,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    from kscore.core.density import DegenerateError, kde_scores, kde_scores_of_pieces
    from kscore.core.reduction import place_on_map, reduce_to_2d
    from kscore.engines import Pieces

    if matrix is not None and keep_embedding:
        raise InputError(
            "--keep-embedding needs the embeddings in memory, and they do not fit --memory-limit; "
            "drop --keep-embedding or raise --memory-limit"
        )
    table, split = _split_rows(
        table, passthrough, id_col=id_col, split_col=split_col, train_values=train_values,
        reference_values=reference_values, source=source, progress=progress,
    )  # fmt: skip
    row_difficulty = None
    if difficulty is not None:  # read before the reduction: a wrong file fails before UMAP runs
        row_difficulty = _difficulty_by_row(table, passthrough, difficulty, id_col, split)
    if matrix is None:
        # UMAP reads float32 (a float32 input stays as it is: no float64 copy of it first).
        matrix = embedding_rows(table, columns, reducer)
    try:
        if saved_map is not None:
            if matrix.shape[1] != saved_map.width:
                raise InputError(
                    f"--map: the map was fitted on embeddings of {saved_map.width} dimensions; "
                    f"{source} has {matrix.shape[1]}"
                )
            coordinates, reducer_params = place_on_map(
                matrix, saved_map, progress=progress, jobs=jobs, memory_limit=memory_limit, executor=executor,
                transform=transform,
            )  # fmt: skip
        else:
            if on_fit is not None and matrix.shape[1] == 2:
                raise InputError("--save-map: the embeddings are 2D already: there is no map to fit or save")
            coordinates, reducer_params = reduce_to_2d(
                matrix,
                reducer=reducer,
                metric=metric,
                seed=seed,
                fit_sample=fit_sample,
                progress=progress,
                jobs=jobs,
                memory_limit=memory_limit,
                executor=executor,
                on_fit=on_fit,
            )
    except ValueError as exc:  # an unknown reducer or metric, or --reducer none on non-2D input
        raise InputError(str(exc)) from None
    del matrix
    in_pieces = isinstance(coordinates, Pieces) and split.masks is not None  # left on the cluster
    if isinstance(coordinates, Pieces) and not in_pieces:  # the output is made here: so is the map
        coordinates = np.column_stack(coordinates.rows(slice(0, coordinates.count)))
    difficulty_column = reference_difficulty = None
    if not in_pieces:  # the rows' masks and difficulty here too
        is_train, is_reference = split.here()
        if row_difficulty is not None:
            difficulty_column = row_difficulty.here()
            reference_difficulty = difficulty_column[is_reference]

    if progress:
        progress("KDE scores", 0, 1)
    try:
        if in_pieces:  # tasks split each part's coordinates, and the KDE's tasks read them there
            from kscore.plan.embeddings_ray import ScoredPieces, kde_points_by_tasks

            pieces = None if row_difficulty is None else row_difficulty.pieces
            train, reference = kde_points_by_tasks(coordinates, split.masks, pieces)
            with_difficulty = row_difficulty is not None
            scores = kde_scores_of_pieces(train, reference, with_difficulty, bandwidth, executor, jobs)
        else:
            scores = kde_scores(
                coordinates[is_train], coordinates[is_reference], reference_difficulty, bandwidth, jobs,
                executor,
            )  # fmt: skip
    except DegenerateError as exc:
        raise InputError(
            f"the reference rows are degenerate in 2D ({exc}): no density can be fitted"
        ) from None

    if progress:
        progress("KDE scores", 1, 1)
    if in_pieces:
        all_nan = scores["potential_all_nan"]
    else:
        all_nan = scores["potential"] is not None and bool(np.isnan(scores["potential"]).all())
    if all_nan:
        _warn(
            "the reference difficulty sits on fewer than 3 points or on a line: "
            "potential_difficulty_score is null"
        )
    n = split.rows
    names = [MAP_X, MAP_Y, REPRESENTATION, POTENTIAL, LOCAL, *([SCORE] if row_difficulty is not None else [])]
    out = table.drop(columns, strict=False) if not keep_embedding else table
    out = out.drop(names, strict=False)
    if passthrough is not None:  # the input's order, the unread columns in their places
        read = set(out.columns) | set(passthrough.columns)
        passthrough.order = [c for c in passthrough.names if c in read] + names
    if in_pieces:  # the output's rows are made where its parts are written, from the pieces
        assert passthrough is not None
        difficulty_pieces = None if row_difficulty is None else row_difficulty.pieces
        passthrough.scored = ScoredPieces(
            coordinates, split.masks, split.train_counts, difficulty_pieces, scores["scores"]
        )
        out = pl.DataFrame()
    else:
        series = embed_score_columns(
            coordinates[:, 0], coordinates[:, 1], is_train,
            [scores[key] for key in ("representation", "potential", "local")], difficulty_column,
        )  # fmt: skip
        out = out.with_columns(series) if out.width else pl.DataFrame(series)
    kernel = scores["kernel"]
    potential_kernel = scores["potential_kernel"]
    meta = {
        "reducer": reducer_params,
        "seed": seed,
        "bandwidth": bandwidth,
        "kernel_covariance": kernel.covariance.tolist(),  # type: ignore[union-attr]
        "kernel_factor": kernel.factor,  # type: ignore[union-attr]
        "potential_kernel_covariance": (
            potential_kernel.covariance.tolist() if potential_kernel is not None else None  # type: ignore[union-attr]
        ),
        "split_col": split_col,
        "train_values": list(train_values),
        "reference_values": list(reference_values) if reference_values is not None else "all other values",
        "rows": {"train": split.train, "reference": split.reference, "total": n},
        "embedding_columns": columns if len(columns) < 5 else [columns[0], "...", columns[-1]],
        "versions": _versions(),
    }
    return out, meta


@dataclass
class RowSplit:
    """Which rows are train and which reference rows: arrays here, or where the Ray tasks left
    them (`masks`: each input part's, with its train rows)."""

    rows: int
    train: int
    reference: int
    masks: Any = None  # `Pieces` of (is_train, is_reference), one a part of the input
    train_counts: tuple[int, ...] = ()
    arrays: tuple[np.ndarray, np.ndarray] | None = None

    def here(self) -> tuple[np.ndarray, np.ndarray]:
        """(is_train, is_reference), read from the pieces where they are elsewhere."""
        if self.arrays is None:
            is_train, is_reference = self.masks.rows(slice(0, self.rows))
            self.arrays = (is_train, is_reference)
        return self.arrays


def _split_rows(
    table: pl.DataFrame,
    passthrough: Passthrough | None,
    *,
    id_col: str,
    split_col: str,
    train_values: Sequence[str],
    reference_values: Sequence[str] | None,
    source: str,
    progress: Any,
) -> tuple[pl.DataFrame, RowSplit]:
    """(the table, its ids normalized; which rows are train and reference rows), the ids checked
    (SPEC §4). Where the Ray tasks read the ids and splits (`passthrough`), they check and split
    them part by part (`split_by_tasks`), the masks stay with them and the table lacks them."""
    if passthrough is not None:
        from kscore.plan.embeddings_ray import split_by_tasks

        found = split_by_tasks(
            passthrough.read, passthrough.parts, id_col, split_col, passthrough.id_dtype, train_values,
            reference_values, source, progress,
        )  # fmt: skip
        passthrough.id_type = found.id_type
        duplicated = found.duplicated
        split = RowSplit(
            found.masks.count, sum(found.train_counts), sum(found.reference_counts), found.masks,
            found.train_counts,
        )  # fmt: skip
        split_values: Callable[[], list[str]] = lambda: found.split_values  # noqa: E731
    else:
        for column, what, option in ((id_col, "id", "--id-col"), (split_col, "split", "--split-col")):
            if column not in table.columns:
                message = missing_column_message(source, column, table.columns, f"{what} column")
                raise InputError(f"{message}; name it with {option}")
        table = table.with_columns(normalize_ids(table.get_column(id_col), source))
        duplicated = int(table.get_column(id_col).is_duplicated().sum())
        values = table.get_column(split_col).cast(pl.String)
        is_train, is_reference = split_masks(values, train_values, reference_values)
        counts = (len(is_train), int(is_train.sum()), int(is_reference.sum()))
        split = RowSplit(*counts, arrays=(is_train, is_reference))
        split_values = lambda: values.unique().drop_nulls().sort().head(8).to_list()  # noqa: E731
    if duplicated:
        raise InputError(f"{source}: column {id_col!r} has {duplicated} rows with a duplicated id")
    if not split.train:
        raise InputError(
            f"no train rows: no {split_col!r} value is one of {list(train_values)} (values: {split_values()})"
        )
    if split.reference < 3:
        raise InputError(f"{split.reference} reference rows: at least 3 are needed for a 2D density")
    return table, split


@dataclass
class RowDifficulty:
    """Each row's difficulty score (NaN where none): an array here, or where the Ray tasks left
    it (`pieces`: each input part's)."""

    rows: int
    array: np.ndarray | None = None
    pieces: Any = None

    def here(self) -> np.ndarray:
        """The scores as an array, read from the pieces where they are elsewhere."""
        if self.array is None:
            self.array = self.pieces.rows(slice(0, self.rows))[0]
        assert self.array is not None
        return self.array


def _difficulty_by_row(
    table: pl.DataFrame,
    passthrough: Passthrough | None,
    difficulty: pl.DataFrame | pl.LazyFrame,
    id_col: str,
    split: RowSplit,
) -> RowDifficulty:
    """Each row's difficulty score (NaN where the file has none), the file checked and the rows it
    leaves unscored warned about; where the Ray tasks read the ids (`passthrough`), they join it
    (and read it, a Parquet file: `scanned_difficulty_by_tasks`), and keep the scores."""
    if passthrough is not None:
        from kscore.plan import embeddings_ray

        id_type = passthrough.id_type or passthrough.id_dtype
        read, parts = passthrough.read, passthrough.parts
        if isinstance(difficulty, pl.LazyFrame):  # a Parquet file, which tasks read
            try:
                schema, rows = difficulty.collect_schema(), int(difficulty.select(pl.len()).collect().item())
            except pl.exceptions.PolarsError as exc:
                raise InputError(f"--difficulty: cannot read: {first_line(exc)}") from None
            checked_difficulty_columns(schema, id_col)
            scan = difficulty.select(id_col, SCORE)
            joined = embeddings_ray.scanned_difficulty_by_tasks(
                read, parts, id_col, id_type, scan, rows, split.masks
            )
            count = rows
        else:
            scores = _checked_difficulty(difficulty, id_col)
            joined = embeddings_ray.difficulty_by_tasks(read, parts, id_col, id_type, scores, split.masks)
            count = scores.height
        found = RowDifficulty(split.rows, pieces=joined.values)
        matched, missing, total = joined.matched, joined.reference_missing, joined.reference_sum
    else:
        scores = _checked_difficulty(_collected_difficulty(difficulty), id_col)
        column, matched = _joined_difficulty(table.select(id_col), scores)
        count = scores.height
        reference_difficulty = column[split.here()[1]]
        missing, total = int(np.isnan(reference_difficulty).sum()), float(np.nansum(reference_difficulty))
        found = RowDifficulty(split.rows, array=column)
    unknown = count - matched
    if unknown:
        _warn(f"{unknown} ids of the difficulty file are not in the embeddings; they are ignored")
    if missing == split.reference:
        id_type = table.schema[id_col] if passthrough is None else passthrough.id_type or passthrough.id_dtype
        raise InputError(
            f"--difficulty: none of the {missing} reference rows has a difficulty score: do the "
            f"difficulty file's ids match the embeddings' ({id_type}) in {id_col!r}?"
        )
    if missing:
        _warn(
            f"{missing} reference rows have no difficulty score; they are left out of the "
            "potential and local difficulty"
        )
    if total == 0:
        _warn("every reference difficulty is 0: potential_difficulty_score is 0 everywhere")
    return found


def _collected_difficulty(difficulty: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    if isinstance(difficulty, pl.DataFrame):
        return difficulty
    try:
        return difficulty.collect()
    except pl.exceptions.PolarsError as exc:
        raise InputError(f"--difficulty: cannot read: {first_line(exc)}") from None


def _checked_difficulty(difficulty: pl.DataFrame, id_col: str) -> pl.DataFrame:
    """The difficulty table's ids (normalized) and scores (`__difficulty`), checked: its columns,
    unique ids, scores in [0, 1]."""
    checked_difficulty_columns(difficulty.schema, id_col)
    ids, values = difficulty.get_column(id_col), difficulty.get_column(SCORE).cast(pl.Float64)
    facts = DifficultyFacts.of(ids, values)
    ids = with_id_type(ids, checked_id_type(facts.ids, "--difficulty"))
    checked_difficulty_values(facts, int(ids.is_duplicated().sum()), id_col)
    return pl.DataFrame([ids, values.alias("__difficulty")])


def _joined_difficulty(ids: pl.DataFrame, scores: pl.DataFrame) -> tuple[np.ndarray, int]:
    """(each of the unique `ids`' difficulty score, NaN where `scores` (`_checked_difficulty`) has
    none; how many of the scores' ids are among them)."""
    id_col = ids.columns[0]
    if scores.schema[id_col] != ids.schema[id_col]:
        common = joined_id_type(ids.schema[id_col], scores.schema[id_col])
        scores = scores.with_columns(pl.col(id_col).cast(common, strict=False))
        ids = ids.select(pl.col(id_col).cast(common, strict=False))
    scores = scores.with_columns(pl.lit(True).alias("__found"))
    joined = ids.join(scores, on=id_col, how="left", maintain_order="left")
    matched = int(joined.get_column("__found").sum())
    return joined.get_column("__difficulty").fill_nan(None).to_numpy().astype(np.float64), matched


def _versions() -> dict[str, str]:
    versions = {}
    for package in ("kscore", "numpy", "polars", "finufft", "scipy", "scikit-learn", "umap-learn", "numba"):
        try:
            versions[package] = importlib_metadata.version(package)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def _warn(message: str) -> None:
    warnings.warn(KscoreWarning(message), stacklevel=3)


def write_embed_scores(
    embeddings: ResultInput,
    out: str | os.PathLike,
    *,
    difficulty: ResultInput | None = None,
    temp_dir: str | os.PathLike | None = None,
    top: int = 10,
    engine: str = "local",
    ray_address: str | None = None,
    storage_options: Mapping[str, str] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """The whole embed-scores job: score the embeddings (a path or a frame; see `score_embeddings` for
    `options`), write `out` (Parquet with kscore's metadata) atomically, and return the summary.

    Embeddings above the memory limit are spilled to a temporary folder in `temp_dir` (default:
    beside `out`), removed at the end. `engine="ray"`: UMAP's transform batches and the KDE's
    transforms run on the Ray cluster at `ray_address` (default `$RAY_ADDRESS`, else a local
    instance); the same map and scores. An `out`
    ending in a slash is a Parquet dataset (parts of `kscore.io.PART_ROWS` rows, written by the Ray
    tasks on that engine, and the manifest last); paths may be in object storage, as for
    `write_difficulty_scores`.
    """
    job = functools.partial(
        _write_embed_scores,
        embeddings,
        difficulty=difficulty,
        temp_dir=temp_dir,
        top=top,
        engine=engine,
        ray_address=ray_address,
        **options,
    )
    return run_job("embed-scores", out, temp_dir, storage_options, job)


def _write_embed_scores(
    embeddings: ResultInput,
    out: str | os.PathLike,
    *,
    difficulty: ResultInput | None,
    temp_dir: str | os.PathLike | None,
    top: int,
    engine: str,
    ray_address: str | None,
    **options: Any,
) -> dict[str, Any]:
    from kscore.io import check_temp_dir, wants_dataset, write_table_atomic
    from kscore.summaries import EmbedSummary, embed_summary

    check_engine(engine)
    check_temp_dir(temp_dir)
    dataset = wants_dataset(out)
    out = Path(out)
    id_col = options.get("id_col", "id")
    spill_dir = temp_dir if temp_dir is not None else out.parent
    unread: list[Passthrough] = []  # the columns the tasks that write the parts read themselves
    by_tasks = dataset and _tasks_write(engine)
    if by_tasks:
        options = {**options, "on_passthrough": unread.append}
    with make_executor(engine, address=ray_address).session():  # open for the scores and the write
        enriched, meta = _scored(embeddings, difficulty, spill_dir, engine, ray_address, options)
        meta.update(
            {
                "kscore_version": __version__,
                "command": "embed-scores",
                "inputs": {
                    "embeddings": source_name(embeddings),
                    "difficulty": source_name(difficulty) if difficulty is not None else None,
                },
            }
        )
        summary = EmbedSummary(
            id_col, options.get("split_col", "split"), top=top, with_difficulty=difficulty is not None
        )
        chunks = None
        scored = unread[0].scored if unread else None
        with stage(options.get("progress"), "write"):
            if dataset:
                chunks = _write_dataset(enriched, out, meta, by_tasks, unread[0] if unread else None, summary)
            else:
                write_table_atomic(enriched, out, meta)
        if chunks is not None:  # the tasks read the ids; the session still holds the scores' pieces
            if scored is None:
                summary.add_scores(enriched)
            for chunk in chunks:
                summary.add_ranked(chunk)
            quantiles = None
            if scored is not None:  # the scores stay on the cluster: tasks count them
                from kscore.plan.embeddings_ray import quantiles_of_pieces

                summary.n_train = sum(scored.train_counts)
                fields = range(len(summary.scores))  # the representation's, then the potential's and local
                quantiles = quantiles_of_pieces(scored.scores, fields, summary.PROBABILITIES)

            def read_all(column: str) -> np.ndarray:  # where a quantile's band missed
                return enriched.filter(pl.col(REPRESENTATION).is_not_null()).get_column(column).to_numpy()

            return summary.result(read_all, output=str(out), quantiles=quantiles)
    with_difficulty = summary.with_difficulty  # the ids and splits are here
    return embed_summary(
        enriched, id_col, summary.split_col, top=top, output=str(out), with_difficulty=with_difficulty
    )


def _tasks_write(engine: str) -> bool:
    """Whether Ray's tasks write a dataset output's parts: on Ray, into a folder every node sees or
    straight under an object-storage prefix (not into a staging folder only this process sees)."""
    from kscore.jobs.common import object_storage_dataset, staged_for_object_storage

    return engine == "ray" and (object_storage_dataset() is not None or not staged_for_object_storage())


def _write_dataset(
    table: pl.DataFrame,
    out: Path,
    meta: dict[str, Any],
    by_tasks: bool,
    unread: Passthrough | None = None,
    ranked: Any = None,
) -> list[Any] | None:
    """`table` as a dataset at `out`, `PART_ROWS` rows a part, the manifest last. `by_tasks`
    (`_tasks_write`, decided once with which columns are left `unread`): Ray's tasks write the parts
    (into a folder every node sees, or straight under an object-storage prefix), each reading its
    slice of the `unread` columns from the input; else this process. Where the tasks read the ids
    (`unread`), each also gives its part's chunk of the summary (`EmbedSummary.ranked` of
    `ranked`): those come back, in order."""
    from kscore.io import MANIFEST, metadata_tags, write_dataset_atomic, write_slices
    from kscore.jobs.common import object_storage_dataset

    if not by_tasks:
        write_dataset_atomic(out, lambda folder: write_slices(table, folder, meta), meta)
        return None
    import json

    from kscore.plan.embeddings_ray import ColumnsFrom, write_parts_by_tasks
    from kscore.storage import options_in_use, publish_written

    tags = metadata_tags(meta)
    columns = None
    if unread is not None:
        columns = ColumnsFrom(
            unread.scan, unread.order, unread.source, unread.id_split[0], unread.id_type, unread.scored
        )
    else:
        ranked = None
    written: list[Any] = []

    def write(folder: str, options: dict[str, str] | None) -> list[str]:
        written.extend(write_parts_by_tasks(table, folder, tags, options, columns, ranked))
        return [w[0] for w in written] if ranked is not None else list(written)

    remote = object_storage_dataset()
    if remote is None:
        write_dataset_atomic(out, lambda folder: write(str(folder), None), meta)
    else:
        publish_written(remote.target, MANIFEST, lambda prefix: write(prefix, options_in_use()),
                        lambda: json.dumps(meta, default=str))  # fmt: skip
        remote.published = True
    return [w[1] for w in written] if ranked is not None else None


def embed_scores(
    embeddings: ResultInput | None = None,
    out: str | os.PathLike | None = None,
    *,
    standard: Any = None,
    difficulty: ResultInput | None = None,
    split_col: str = "split",
    train_values: Sequence[str] = ("train",),
    reference_values: Sequence[str] | None = None,
    embedding_col: str | None = None,
    embedding_prefix: str | None = None,
    reducer: str = "umap",
    metric: str | None = None,
    seed: int | str | None = 0,
    bandwidth: str | float = "scott",
    fit_sample: int = FIT_SAMPLE,
    keep_embedding: bool = False,
    plot: str | os.PathLike | None = None,
    size: str | tuple[int, int] = "1200x900",
    top: int = 10,
    jobs: int | None = None,
    memory_limit: int | str | None = None,
    temp_dir: str | os.PathLike | None = None,
    engine: str = "local",
    ray_address: str | None = None,
    storage_options: Mapping[str, str] | None = None,
    progress: Any = None,
    save_map: str | os.PathLike | None = None,
    saved_map: str | os.PathLike | None = None,
) -> pl.DataFrame | dict[str, Any]:
    """`kscore embed-scores`: the map and the representation, potential and local difficulty of
    every train row.

    `embeddings`: a table (path or frame) with an id, a split and the embedding; default: the
    standard's `embeddings`. `standard`: a QualityStandard or its YAML file (default: discovered,
    if there is one), for the id column and that default. `difficulty`: a `difficulty` output.
    Without `out`, the enriched table is returned; with `out`, it is written there and the summary is
    returned: what `kscore embed-scores --json` prints, warnings included.

    `save_map`: also write the fitted UMAP map there (Parquet: the fit sample's vectors and
    coordinates, UMAP's parameters; see `kscore.core.saved_map`). `saved_map`: a map saved so: place
    every row on it without fitting (its metric, seed and fit sample are the map's), then score.
    `metric` defaults to euclidean, or the map's.
    """
    from kscore.config import QualityStandard, find_config
    from kscore.io import output_format, read_table, wants_dataset
    from kscore.jobs.common import (
        checked_output,
        checked_plot,
        collected_warnings,
        parse_bandwidth,
        parse_seed,
    )
    from kscore.plan.sizing import resolve_memory_limit
    from kscore.storage import as_path, using

    with using(storage_options), collected_warnings() as collected:
        limit = resolve_memory_limit(memory_limit)
        config_path = None
        if not isinstance(standard, QualityStandard):
            config_path = find_config(standard, required=False)
            standard = QualityStandard.from_yaml(config_path) if config_path else None
        elif standard.source:
            config_path = Path(standard.source)
        id_col = standard.id_column if standard else "id"
        if embeddings is None:
            if standard is None or standard.embeddings is None:
                raise InputError(
                    "no embeddings file: pass EMBEDDINGS or set `embeddings:` in the quality standard"
                )
            embeddings = str(config_path.parent / standard.embeddings) if config_path else standard.embeddings
        tables = (embeddings, difficulty, saved_map)
        sources = [
            as_path(t) for t in tables if t is not None and not isinstance(t, pl.DataFrame | pl.LazyFrame)
        ]
        inputs = [*sources, *([config_path] if config_path else [])]
        out_path = checked_output(out, inputs) if out is not None else None
        loaded = read_map(as_path(saved_map)) if saved_map is not None else None
        metric, reducer = _map_choices(loaded, metric, reducer, save_map)
        map_path = checked_map_output(save_map, [*inputs, *([out_path] if out_path else [])])
        if (
            keep_embedding
            and out is not None
            and not wants_dataset(out)
            and output_format(Path(out)) == "csv"
        ):
            raise InputError(  # checked before the work, not when writing after it
                f"{out}: CSV cannot hold the embedding lists --keep-embedding keeps; "
                "write .parquet or .ndjson"
            )
        picture_size = checked_plot(plot, size, [*inputs, *([out_path] if out_path else [])])
        options: dict[str, Any] = dict(
            id_col=id_col, split_col=split_col, train_values=list(train_values),
            reference_values=list(reference_values) if reference_values is not None else None,
            embedding_col=embedding_col, embedding_prefix=embedding_prefix, reducer=reducer, metric=metric,
            seed=parse_seed(seed), bandwidth=parse_bandwidth(bandwidth), fit_sample=fit_sample,
            keep_embedding=keep_embedding, progress=progress, jobs=jobs, memory_limit=limit,
            saved_map=loaded,
        )  # fmt: skip
        fitted: list[Any] = []
        if map_path is not None:
            options["on_fit"] = fitted.append
        if out is None:
            enriched, _ = _scored(embeddings, difficulty, temp_dir, engine, ray_address, options)
            if map_path is not None:
                write_map(fitted, map_path, temp_dir)
            if plot is not None:
                from kscore.plot import map_data, plot_map

                plot_map(map_data(enriched), plot, size=picture_size)
            return enriched
        summary = write_embed_scores(
            embeddings, out, difficulty=difficulty, temp_dir=temp_dir, top=top, engine=engine,
            ray_address=ray_address, **options,
        )  # fmt: skip
        if map_path is not None:
            write_map(fitted, map_path, temp_dir, written=str(out))
            summary["map"] = str(map_path)
        if plot is not None:
            from kscore.plot import map_data, plot_map

            plot_map(map_data(read_table(out_path)), plot, size=picture_size)
            summary["plot"] = str(plot)
    summary["warnings"] = [w for ws in collected.values() for w in ws]
    return summary


def _scored(
    embeddings: ResultInput,
    difficulty: ResultInput | None,
    spill_dir: str | os.PathLike | None,
    engine: str,
    ray_address: str | None,
    options: dict[str, Any],
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """`score_embeddings` of the inputs (paths or frames) in the engine's session: both the face's
    in-memory path and the writing job score through here."""
    id_col = options.get("id_col", "id")
    table = _table_of(embeddings)
    difficulty_table = _difficulty_table(difficulty, id_col, engine)
    if not isinstance(embeddings, pl.DataFrame | pl.LazyFrame):
        options.setdefault("source", str(embeddings))
    try:
        with make_executor(engine, address=ray_address).session():
            return score_embeddings(
                table, difficulty=difficulty_table, spill_dir=spill_dir, engine=engine, **options
            )
    except ValueError as exc:  # an invalid reducer, metric or bandwidth
        raise InputError(str(exc)) from None


def _table_of(embeddings: ResultInput) -> pl.DataFrame | pl.LazyFrame:
    from kscore.io import scan_table
    from kscore.storage import as_path

    if isinstance(embeddings, pl.DataFrame | pl.LazyFrame):
        return embeddings
    return scan_table(as_path(embeddings))


def _difficulty_table(
    difficulty: ResultInput | None, id_col: str, engine: str = "local"
) -> pl.DataFrame | pl.LazyFrame | None:
    """The `--difficulty` table's id and score columns: read here, or on Ray a Parquet file only
    scanned (its rows counted), for the tasks to read where they read the ids."""
    from kscore.io import read_table
    from kscore.storage import as_path

    if difficulty is None:
        return None
    if isinstance(difficulty, pl.DataFrame | pl.LazyFrame):
        return difficulty.collect() if isinstance(difficulty, pl.LazyFrame) else difficulty
    path = as_path(difficulty)
    table = read_table(path, [id_col, SCORE], lazy=engine == "ray")
    if isinstance(table, pl.LazyFrame):
        try:
            rows = int(table.select(pl.len()).collect().item())
        except pl.exceptions.PolarsError as exc:
            raise InputError(f"{path}: cannot read PARQUET file: {first_line(exc)}") from None
        if rows == 0:
            raise InputError(f"{path}: file has no data rows")
    return table


def _map_choices(loaded: Any, metric: str | None, reducer: str, save_map: Any) -> tuple[str, str]:
    """The metric and reducer of a run with a saved map (`loaded`) or one saving it; exit 2 where
    they do not fit it."""
    if save_map is not None and loaded is not None:
        raise InputError("--save-map with --map: the map is saved already; drop --save-map")
    if save_map is not None and reducer != "umap":
        raise InputError(f"--save-map saves a UMAP map, not one of --reducer {reducer}")
    if loaded is None:
        return metric or "euclidean", reducer
    if reducer != "umap":
        raise InputError(f"--map places rows on a UMAP map; drop --reducer {reducer}")
    if metric is not None and metric != loaded.metric:
        raise InputError(f"--map: the map measures {loaded.metric} distances, not --metric {metric}")
    return loaded.metric, reducer


def checked_map_output(save_map: str | os.PathLike | None, inputs: list[Any]) -> Any:
    """Where `--save-map` writes (None for nowhere): a Parquet file that is no input nor the output."""
    from kscore.io import check_output
    from kscore.storage import as_path

    if save_map is None:
        return None
    path = as_path(save_map)
    if path.suffix.lower() != ".parquet" or str(save_map).endswith("/"):
        raise InputError(f"--save-map {save_map}: a saved map is one Parquet file: name it NAME.parquet")
    if isinstance(path, Path):
        check_output(path, inputs)
    elif any(str(path) == str(i) for i in inputs):
        raise InputError(f"{path}: the map would overwrite an input or the output; choose another --save-map")
    return path


def read_map(path: Any) -> Any:
    """A map saved by `--save-map`, checked (exit 2 naming the file and what is wrong)."""
    from kscore.core.saved_map import SavedMap
    from kscore.io import check_input_file, is_dataset, read_kscore_metadata, read_table

    if check_input_file(path) != "parquet" or is_dataset(path):
        raise InputError(
            f"--map {path}: a saved map is one Parquet file (save one with embed-scores --save-map)"
        )
    metadata = read_kscore_metadata(path)
    if "map" not in metadata:
        raise InputError(f"--map {path}: not a saved map (save one with embed-scores --save-map)")
    try:
        table = read_table(path, ["vector", "map_x", "map_y", "cell_center"])
        assert isinstance(table, pl.DataFrame)
        vectors = _float32_rows(table.get_column("vector"), path)
        coordinates = np.ascontiguousarray(table.select("map_x", "map_y").to_numpy(), dtype=np.float32)
        centers = None
        if "cell_center" in table.columns:  # saved by kscore 0.8.11 or later
            centers = _float32_rows(table.get_column("cell_center").drop_nulls(), path)
    except pl.exceptions.ColumnNotFoundError:
        raise InputError(f"--map {path}: not a saved map (no vector, map_x, map_y)") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"--map {path}: cannot read: {first_line(exc)}") from None
    return SavedMap.from_parts(metadata["map"], vectors, coordinates, f"--map {path}", centers)


def _float32_rows(column: pl.Series, path: Any) -> np.ndarray:
    """A saved map's column of float32 arrays as a matrix (exit 2 where it is something else)."""
    if not isinstance(column.dtype, pl.Array) or column.dtype.inner != pl.Float32:
        raise InputError(f"--map {path}: its {column.name!r} column is {column.dtype}, not float32 arrays")
    return np.ascontiguousarray(column.to_numpy(), dtype=np.float32)


def write_map(fitted: list[Any], path: Any, temp_dir: Any, written: str | None = None) -> None:
    """Write the fitted map (`fitted`: what `on_fit` received) to `path`, atomically; exit 2 where
    no map was fitted (2D embeddings)."""
    from kscore.io import write_table_atomic
    from kscore.storage import ObjectPath, publish_file

    done = f" ({written} was written)" if written else ""
    if not fitted:
        raise InputError(f"--save-map: the embeddings are 2D, so no map was fitted and none saved{done}")
    saved = fitted[-1]
    frame = pl.DataFrame(
        [
            pl.Series("vector", saved.vectors),
            pl.Series("map_x", saved.coordinates[:, 0]),
            pl.Series("map_y", saved.coordinates[:, 1]),
        ]
    )
    if saved.centers is not None:  # in the first rows (there are fewer cells than rows), then nulls
        padded = np.zeros_like(saved.vectors)
        padded[: len(saved.centers)] = saved.centers
        in_first_rows = pl.int_range(pl.len()) < len(saved.centers)
        frame = frame.with_columns(pl.when(in_first_rows).then(pl.Series(padded)).alias("cell_center"))
    metadata = {"kscore_version": __version__, "command": "embed-scores", "map": saved.record()}
    if not isinstance(path, ObjectPath):
        write_table_atomic(frame, path, metadata)
        return
    with tempfile.TemporaryDirectory(prefix=".kscore-", dir=temp_dir) as staging:
        staged = Path(staging) / path.name
        write_table_atomic(frame, staged, metadata)
        publish_file(staged, path)
