"""What every job shares: running it into object storage, its progress stages, the engine names, and a
background thread at low priority."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import suppress
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

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


def to_object_storage(
    out: str | os.PathLike, temp_dir: str | os.PathLike | None, job: Callable[[str], dict[str, Any]]
) -> dict[str, Any]:
    """Run `job` into a local temporary folder (in `temp_dir`, default the system's), then publish
    its output to `out`: one object (and a CSV's or NDJSON's sidecar) where `out` has a table
    extension, else a dataset under the prefix `out` (see `kscore.storage`)."""
    from kscore.io import FORMATS, MANIFEST, check_temp_dir, output_format, sidecar_path
    from kscore.storage import ObjectPath, check_remote_output, publish, publish_file

    check_temp_dir(temp_dir)
    target = ObjectPath(str(out))
    single = target.suffix.lower() in FORMATS
    if single:
        output_format(target)
    else:
        check_remote_output(target, MANIFEST)
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
        summary = job(f"{staged}/")
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
