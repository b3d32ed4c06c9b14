"""What every job shares: running it into object storage, its progress stages, the engine names, and a
background thread at low priority."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from kscore.errors import InputError

_R = TypeVar("_R")


# Background work (the summary while the output is written) runs at this niceness.
LOW_PRIORITY = 10


def run_job(
    command: str,
    out: str | os.PathLike,
    temp_dir: str | os.PathLike | None,
    storage_options: Mapping[str, str] | None,
    job: Callable[[str], dict[str, Any]],
) -> dict[str, Any]:
    """`job(out)` with the storage options in use (an `out` in object storage is staged and
    published); its summary in the shape of every command's (`kscore.summaries.envelope`)."""
    from kscore.storage import is_remote, using
    from kscore.summaries import envelope

    with using(storage_options):
        summary = to_object_storage(out, temp_dir, job) if is_remote(out) else job(out)
    return envelope(command, summary)


# Whether the running job writes into a local staging folder that `to_object_storage` publishes
# afterwards: then only this process sees the folder (Ray's tasks must not write into it).
_STAGED: ContextVar[bool] = ContextVar("kscore_staged_for_object_storage", default=False)


def staged_for_object_storage() -> bool:
    """Whether the running job's output is a local staging folder, published to object storage."""
    return _STAGED.get()


@dataclass
class ObjectStorageDataset:
    """The object-storage prefix a running job's dataset output goes to. A job that writes it
    itself (its parts from Ray's tasks, `kscore.storage.publish_written`) sets `published`; else
    its staging folder is uploaded afterwards."""

    target: Any  # kscore.storage.ObjectPath
    published: bool = False


_OBJECT_STORAGE_DATASET: ContextVar[ObjectStorageDataset | None] = ContextVar(
    "kscore_object_storage_dataset", default=None
)


def object_storage_dataset() -> ObjectStorageDataset | None:
    """The object-storage dataset the running job's output is staged for, if it is one."""
    return _OBJECT_STORAGE_DATASET.get()


def to_object_storage(
    out: str | os.PathLike, temp_dir: str | os.PathLike | None, job: Callable[[str], dict[str, Any]]
) -> dict[str, Any]:
    """Run `job` into a local temporary folder (in `temp_dir`, default the system's), then publish
    its output to `out`: one object (and a CSV's or NDJSON's sidecar) where `out` has a table
    extension, else a dataset under the prefix `out` (see `kscore.storage`)."""
    from kscore.io import FORMATS, MANIFEST, check_temp_dir, output_format
    from kscore.storage import ObjectPath, check_remote_output

    check_temp_dir(temp_dir)
    target = ObjectPath(str(out))
    single = target.suffix.lower() in FORMATS
    if single:
        output_format(target)
    else:
        check_remote_output(target, MANIFEST)
    token = _STAGED.set(True)
    try:
        return _staged_and_published(target, single, temp_dir, job)
    finally:
        _STAGED.reset(token)


def _staged_and_published(
    target: Any, single: bool, temp_dir: str | os.PathLike | None, job: Callable[[str], dict[str, Any]]
) -> dict[str, Any]:
    from kscore.io import MANIFEST, sidecar_path
    from kscore.storage import publish, publish_file

    with tempfile.TemporaryDirectory(prefix=".kscore-", dir=temp_dir) as staging:
        if single:
            staged = Path(staging) / target.name
            summary = job(str(staged))
            if sidecar_path(staged).exists():  # the metadata first: the table names a complete output
                publish_file(sidecar_path(staged), sidecar_path(target))  # type: ignore[arg-type]
            publish_file(staged, target)
            summary["output"] = str(target)
            return summary
        staged = Path(staging) / "dataset"
        direct = ObjectStorageDataset(target)
        token = _OBJECT_STORAGE_DATASET.set(direct)
        try:
            summary = job(f"{staged}/")
        finally:
            _OBJECT_STORAGE_DATASET.reset(token)
        if not direct.published:
            publish(staged, target, MANIFEST)
    summary["output"] = f"{target}/"
    return summary


@contextlib.contextmanager
def stage(progress: Callable[[str, int, int], None] | None, name: str) -> Iterator[None]:
    """Report a stage of one step to `progress`: started, then done."""
    if progress is not None:
        progress(name, 0, 1)
    yield
    if progress is not None:
        progress(name, 1, 1)


def at_low_priority(func: Callable[..., _R], *args: Any, **kwargs: Any) -> _R:
    """Call `func` after lowering the calling thread's priority (threads it starts inherit it).

    Only for a worker thread that ends afterwards. Linux only, where a priority is per thread.
    """
    if sys.platform.startswith("linux"):
        thread = threading.get_native_id()
        with suppress(OSError):
            if os.getpriority(os.PRIO_PROCESS, thread) < LOW_PRIORITY:  # lower only, never raise
                os.setpriority(os.PRIO_PROCESS, thread, LOW_PRIORITY)
    return func(*args, **kwargs)


def source_name(value: Any) -> str:
    return "(a table in memory)" if isinstance(value, pl.DataFrame | pl.LazyFrame) else str(value)


ResultInput = pl.DataFrame | pl.LazyFrame | str | os.PathLike


def checked_output(out: str | os.PathLike, inputs: list[Any]) -> Any:
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


def checked_table_output(out: str | os.PathLike | None, inputs: list[Any]) -> Any:
    """A single-table output's path (None for none), checked before any work: not an input, a
    known format."""
    from kscore.io import check_output, output_format
    from kscore.storage import as_path

    if out is None:
        return None
    out_path = as_path(out)
    if isinstance(out_path, Path):
        check_output(out_path, inputs)
    output_format(out_path)  # type: ignore[arg-type]
    return out_path


def checked_plot(
    out: str | os.PathLike | None, size: str | tuple[int, int], inputs: list[Any]
) -> tuple[int, int]:
    """The picture's size in pixels; fails before any work when a picture cannot be made: no
    matplotlib, bad size, extension or path."""
    from kscore.plot import parse_size, picture_format, pyplot

    picture_size = parse_size(size) if isinstance(size, str) else size
    if out is not None:
        from kscore.io import check_output

        check_output(Path(out), inputs)
        picture_format(Path(out))
        pyplot()
    return picture_size


@contextlib.contextmanager
def collected_warnings() -> Iterator[dict[str | None, list[str]]]:
    """The KscoreWarnings raised in the block, by model (None: not a model's), for the job's summary;
    each is raised again when the block ends, so a caller (the command line) sees it too."""
    from kscore.errors import KscoreWarning

    collected: dict[str | None, list[str]] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", KscoreWarning)
        try:
            yield collected
        finally:
            kept = [item for item in caught if isinstance(item.message, KscoreWarning)]
            for item in kept:
                collected.setdefault(item.message.model, []).append(str(item.message))
    for item in kept:
        warnings.warn(item.message, stacklevel=3)


def parse_seed(value: int | str | None) -> int | None:
    """A seed: an integer, or None / 'none' for none (faster, not reproducible)."""
    if value is None or isinstance(value, int):
        return value
    if value.strip().lower() == "none":
        return None
    try:
        return int(value)
    except ValueError:
        raise InputError(f"--seed must be an integer or 'none', not {value!r}") from None


def parse_bandwidth(value: str | float) -> str | float:
    """A KDE bandwidth: scott, silverman, or a positive factor."""
    if value in ("scott", "silverman"):
        return value
    try:
        number = float(value)
    except ValueError:
        number = float("nan")
    if not number > 0 or number == float("inf"):
        raise InputError(f"--bandwidth must be scott, silverman or a positive number, not {value!r}")
    return number
