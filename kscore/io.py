"""Reading CSV/Parquet/NDJSON inputs (paths, globs, NAME=PATH) and writing tables atomically in the
format their extension names."""

from __future__ import annotations

import contextlib
import csv
import errno
import glob
import json
import os
import re
import secrets
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from kscore.errors import InputError, OutputError, first_line, missing_column_message
from kscore.storage import ObjectPath, is_remote, polars_options, publishing, signals_deferred

FORMATS = {
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".ndjson": "ndjson",
    ".jsonl": "ndjson",
}
# A CSV or NDJSON input may be compressed (`results.csv.gz`): polars reads it as it decompresses.
COMPRESSIONS = (".gz", ".zst")
METADATA_KEY = "kscore"
# kscore's metadata beside a CSV or NDJSON output (formats with no place for it): NAME + this.
SIDECAR_SUFFIX = ".kscore.json"
# A Parquet dataset kscore wrote: a folder of `part-NNNNN.parquet` files and this manifest, written last.
MANIFEST = "_kscore.json"
PART_GLOB = "part-*.parquet"
_GLOB_CHARS = re.compile(r"[*?\[]")
_NAME_SEPARATORS = "_-."


def is_dataset(path: Path | ObjectPath) -> bool:
    """Whether `path` is a Parquet dataset kscore wrote (a folder, or an object prefix, with its
    manifest)."""
    return path.is_dir() and (path / MANIFEST).is_file()


def _source(path: Path | ObjectPath | Sequence[Path | ObjectPath]) -> Any:
    """What polars is given for a path: an object path as its URL (a `Path` would fold its `//`)."""
    if isinstance(path, list):
        return [_source(p) for p in path]
    return str(path) if isinstance(path, ObjectPath) else path


def _scan_parquet(sources: Any) -> pl.LazyFrame:
    first = sources[0] if isinstance(sources, list) and sources else sources
    return pl.scan_parquet(_source(sources), **polars_options(first))


def _input_suffixes(path: Path) -> tuple[str, str]:
    """An input's format suffix and its compression suffix ('' if none): ('.csv', '.gz')."""
    suffix = path.suffix.lower()
    if suffix in COMPRESSIONS:
        inner = Path(path.name[: -len(suffix)]).suffix.lower()
        return inner, suffix
    return suffix, ""


def _valid_inputs() -> str:
    text = [f"{s}{c}" for s, f in FORMATS.items() if f != "parquet" for c in COMPRESSIONS]
    return ", ".join([*FORMATS, *text])


def file_format(path: Path) -> str:
    """'parquet', 'csv' or 'ndjson', by extension (a kscore dataset folder is Parquet; a CSV or
    NDJSON file may be compressed: `.csv.gz`, `.ndjson.zst`)."""
    if is_dataset(path):
        return "parquet"
    suffix, compression = _input_suffixes(path)
    fmt = FORMATS.get(suffix)
    if compression and fmt == "parquet":
        fmt = None  # Parquet compresses inside the file
    if fmt is None and path.is_dir():
        raise InputError(
            f"{path}: is a folder, and not a dataset kscore wrote (one holds {MANIFEST}); give a file "
            f"({_valid_inputs()})"
        )
    if fmt is None:
        shown = suffix + compression
        raise InputError(f"{path}: unsupported file type {shown or '(none)'!r} (valid: {_valid_inputs()})")
    return fmt


def output_format(out: Path) -> str:
    """The format a table output is written in, by its extension; any other one is an InputError
    listing the supported ones (SPEC §4)."""
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise InputError(
            f"{out}: unsupported output type {out.suffix or '(none)'!r}; name it .parquet, .pq, .csv, "
            ".ndjson or .jsonl, or DIR/ for a Parquet dataset"
        )
    return fmt


def sidecar_path(path: Path) -> Path:
    """Where a CSV or NDJSON output's metadata goes: its full name plus `.kscore.json`."""
    return path.parent / f"{path.name}{SIDECAR_SUFFIX}"


def expand_paths(patterns: Iterable[str]) -> list[Path]:
    """Paths from arguments that may be globs (also when the shell left them quoted)."""
    paths: list[Any] = []
    for pattern in patterns:
        if is_remote(pattern):
            if _GLOB_CHARS.search(pattern):
                raise InputError(f"{pattern}: patterns are not expanded in object storage; name each object")
            paths.append(ObjectPath(pattern))
        elif _GLOB_CHARS.search(pattern) and not Path(pattern).exists():
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise InputError(f"{pattern}: no file matches this pattern")
            paths.extend(Path(m) for m in matches)
        else:
            paths.append(Path(pattern))
    return paths


def _stem(path: Path) -> str:
    """A file's name without its format suffix, and without its compression suffix if it has one."""
    name = path.name
    suffix, compression = _input_suffixes(path)
    if compression:
        name = name[: -len(compression)]
    return name[: -len(suffix)] if suffix else name


def model_names(paths: Sequence[Path]) -> list[str]:
    """Model names from file stems, dropping the prefix all stems share up to a `_`, `-` or `.`."""
    stems = [_stem(p) for p in paths]
    if len(stems) < 2:
        return stems
    prefix = os.path.commonprefix(stems)  # noqa: RUF071 - a prefix of names, not of paths
    cut = max(prefix.rfind(sep) for sep in _NAME_SEPARATORS) + 1
    if cut == 0 or any(len(stem) == cut for stem in stems):
        return stems
    return [stem[cut:] for stem in stems]


def resolve_model_files(arguments: Sequence[str]) -> dict[str, Path]:
    """Model name -> file, from paths, globs and `NAME=PATH` arguments."""
    named: list[tuple[str, Path]] = []
    unnamed: list[Path] = []
    for argument in arguments:
        name, sep, path = argument.partition("=")
        if sep and name and "/" not in name and (is_remote(path) or not Path(argument).exists()):
            named.extend((name, p) for p in expand_paths([path]))
        else:
            unnamed.extend(expand_paths([argument]))
    pairs = named + list(zip(model_names(unnamed), unnamed, strict=True))
    files: dict[str, Path] = {}
    for name, path in pairs:
        if name in files:
            raise InputError(
                f"two inputs are both named model {name!r} ({files[name]} and {path}); "
                "name them with NAME=PATH"
            )
        files[name] = path
    if not files:
        raise InputError("no input files given")
    return files


def check_input_file(path: Path) -> str:
    """The file's format; a missing or empty file or an unknown type is an InputError."""
    fmt = file_format(path)
    if is_dataset(path):
        if not dataset_parts(path):
            raise InputError(f"{path}: the dataset holds no parts")
        return fmt
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a {fmt.upper()} file")
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: file is empty")
    return fmt


def read_table(
    path: Path, columns: Sequence[str] | None = None, numeric: Sequence[str] = (), lazy: bool = False
) -> pl.DataFrame | pl.LazyFrame:
    """Read `columns` (those present; all if None) of a CSV or Parquet file.

    Columns in `numeric` are read as Float64 from CSV where they parse; where they do not, they are
    read as text so that the caller can report the offending rows. With `lazy`, a Parquet file is
    only checked and scanned, to be read when it is used.
    """
    fmt = check_input_file(path)
    try:
        if fmt == "parquet":
            sources = dataset_parts(path) if is_dataset(path) else path
            present = list(_scan_parquet(sources).collect_schema())
            wanted = present if columns is None else [c for c in columns if c in present]
            if lazy:
                return _scan_parquet(sources).select(wanted)
            frame = _scan_parquet(sources).select(wanted).collect()
        elif fmt == "ndjson":
            scan = _scan_ndjson(path)
            present = list(scan.collect_schema())
            wanted = present if columns is None else [c for c in columns if c in present]
            if lazy:
                return scan.select(wanted)
            frame = scan.select(wanted).collect()
        else:
            present = _read_csv_header(path)
            _reject_duplicated_header(path)
            wanted = present if columns is None else [c for c in columns if c in present]
            floats = {c: pl.Float64 for c in numeric if c in wanted}
            try:
                frame = pl.read_csv(
                    _source(path), columns=wanted, schema_overrides=floats, **polars_options(path)
                )
            except pl.exceptions.ComputeError:
                if not floats:
                    raise
                as_text = {c: pl.String for c in floats}
                frame = pl.read_csv(
                    _source(path), columns=wanted, schema_overrides=as_text, **polars_options(path)
                )
    except pl.exceptions.NoDataError:
        raise InputError(f"{path}: file is empty") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"{path}: cannot read {fmt.upper()} file: {first_line(exc)}") from None
    if frame.height == 0:
        raise InputError(f"{path}: file has no data rows")
    return frame


def scan_table(path: Path, columns: Sequence[str] | None = None, numeric: Sequence[str] = ()) -> pl.LazyFrame:
    """`columns` (those present; all if None) of a CSV or Parquet file, scanned lazily; `numeric`
    columns of a CSV are read as Float64 (text there fails the scan, naming the value)."""
    fmt = check_input_file(path)
    try:
        if fmt != "csv":
            scan = scan_output(path)
            present = scan.collect_schema()
            return scan if columns is None else scan.select(c for c in columns if c in present)
        present = _read_csv_header(path)
        _reject_duplicated_header(path)
    except pl.exceptions.NoDataError:
        raise InputError(f"{path}: file is empty") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"{path}: cannot read {fmt.upper()} file: {first_line(exc)}") from None
    wanted = present if columns is None else [c for c in columns if c in present]
    floats = {c: pl.Float64 for c in numeric if c in wanted}
    return pl.scan_csv(_source(path), schema_overrides=floats, **polars_options(path)).select(wanted)


def _scan_ndjson(path: Path | ObjectPath) -> pl.LazyFrame:
    return pl.scan_ndjson(_source(path), **polars_options(path))


def file_columns(path: Path) -> list[str]:
    """The column names of a table file (its header or schema), without reading its rows; a
    missing or empty file is an InputError."""
    fmt = check_input_file(path)
    try:
        if fmt == "csv":
            return _read_csv_header(path)
        return scan_output(path).collect_schema().names()
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"{path}: cannot read {fmt.upper()} file: {first_line(exc)}") from None


def require_columns(path: Path, required: Sequence[str], what: str = "column") -> None:
    """InputError naming the first of `required` the file lacks, the file's real columns and the
    closest name."""
    present = file_columns(path)
    missing = [c for c in required if c not in present]
    if missing:
        raise InputError(missing_column_message(str(path), missing[0], present, what))


def _read_csv_header(path: Path | ObjectPath) -> list[str]:
    return pl.read_csv(_source(path), n_rows=0, **polars_options(path)).columns


def _reject_duplicated_header(path: Path) -> None:
    """polars renames a repeated CSV column (`a`, `a_duplicated_0`): say so instead of using one."""
    if _input_suffixes(path)[1]:  # compressed: polars reads the header line as a row
        row = pl.read_csv(_source(path), has_header=False, n_rows=1, **polars_options(path))
        header = [str(v) for v in row.row(0)] if row.height else []
    else:
        try:
            with path.open(newline="", encoding="utf-8", errors="replace") as handle:
                header = next(csv.reader(handle), [])
        except csv.Error:  # a header polars could read but the csv module cannot (a huge field)
            return
    seen: set[str] = set()
    for name in header:
        if name in seen:
            raise InputError(f"{path}: column {name[:60]!r} appears more than once in the header")
        seen.add(name)


class ResultFiles(Mapping[str, "pl.DataFrame | pl.LazyFrame"]):
    """Model name -> results, read when looked up: one model's rows in memory at a time.

    Parquet files come back as LazyFrames (scanned); CSV files are read on each lookup. Every file is
    checked (exists, has a known type, is not empty) when the mapping is made.
    """

    def __init__(
        self, files: Mapping[str, Path], columns: Sequence[str], numeric: Sequence[str] = ()
    ) -> None:
        for path in files.values():
            check_input_file(path)
        self.files = dict(files)
        self.columns = list(columns)
        self.numeric = list(numeric)

    def __getitem__(self, name: str) -> pl.DataFrame | pl.LazyFrame:
        return read_table(self.files[name], self.columns, self.numeric, lazy=True)

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


def read_results(
    files: Mapping[str, Path],
    columns: Sequence[str],
    numeric: Sequence[str] = (),
    model_col: str | None = None,
    required: Sequence[str] = (),
) -> tuple[Mapping[str, pl.DataFrame | pl.LazyFrame], dict[str, str]]:
    """Model name -> results frame, and model name -> source file (for messages).

    Files are read when their model is scored (see `ResultFiles`). With `model_col`, each file may
    hold several models in long format, named by that column, and is read at once. A file that
    lacks a `required` column is an InputError naming its real columns.
    """
    for path in files.values():
        if model_col is not None:
            require_columns(path, [model_col], "model column")
        require_columns(path, required)
    if model_col is None:
        return ResultFiles(files, columns, numeric), {name: str(path) for name, path in files.items()}
    frames: dict[str, pl.DataFrame | pl.LazyFrame] = {}
    sources: dict[str, str] = {}
    for path in files.values():
        frame = read_table(path, [*columns, model_col], numeric)
        assert isinstance(frame, pl.DataFrame)
        n_unnamed = frame.get_column(model_col).null_count()
        if n_unnamed:
            raise InputError(f"{path}: column {model_col!r} has {n_unnamed} rows with no model name")
        for (model,), part in frame.partition_by(model_col, as_dict=True, maintain_order=True).items():
            model = str(model)
            if model in frames:
                raise InputError(f"{path}: model {model!r} also appears in {sources[model]}")
            frames[model], sources[model] = part.drop(model_col), f"{path} (model {model})"
    return frames, sources


def check_output(out: Path, inputs: Iterable[Path]) -> None:
    """Fail before any work when `out` cannot be written: it or its sidecar is an input, its sidecar
    name holds a file kscore did not write, it is a folder, or its folder is missing or not
    writable."""
    target = out.resolve()
    inputs = [path.resolve() for path in inputs]
    if target in inputs:
        raise InputError(f"{out}: the output would overwrite an input; choose another -o")
    if FORMATS.get(out.suffix.lower()) in ("csv", "ndjson"):
        sidecar = sidecar_path(out)
        if sidecar.resolve() in inputs:
            raise InputError(
                f"{out}: its metadata file {sidecar.name} would overwrite an input; choose another -o"
            )
        _check_sidecar(sidecar)
    if target.is_dir():
        raise OutputError(f"{out}: the output is a folder; give a file name with -o")
    folder = target.parent
    if not folder.is_dir():
        raise OutputError(f"{out}: the output folder {out.parent} does not exist")
    if not os.access(folder, os.W_OK):
        try:
            read_only = os.statvfs(folder).f_flag & os.ST_RDONLY
        except OSError:
            read_only = False
        why = "is on a read-only file system" if read_only else "is not writable (permission denied)"
        raise OutputError(f"{out}: the output folder {out.parent} {why}; choose another -o")


# Temporary outputs are named `.<name>.kscore-<host>-<pid>-<start>-<random>.tmp` beside the output,
# so that a later run can tell its own stale ones (from a killed run) from those of a live run.
_TEMPORARY = re.compile(r"\.kscore-(?P<host>[^-]*)-(?P<pid>\d+)-(?P<start>\d+)-[0-9a-f]+\.tmp$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def _process_start(pid: int) -> str | None:
    """The process's start time (clock ticks after boot, Linux), or None where unknown or not running."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _run_tag() -> str:
    pid = os.getpid()
    start = _process_start(pid) or str(int(time.time()))
    return f"{_host()}-{pid}-{start}"


def temporary_path(out: Path) -> Path:
    """A fresh temporary name beside `out`, marked with this run's host, pid and start time."""
    return out.parent / f".{out.name}.kscore-{_run_tag()}-{secrets.token_hex(4)}.tmp"


def _is_alive(pid: int, start: str) -> bool:
    if Path("/proc/self/stat").exists():
        return _process_start(pid) == start  # a reused pid has another start time
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove kscore's temporary files and folders in `folder` left by runs on this host that are
    no longer alive (killed with SIGKILL, a power cut); never those of a live run or of others."""
    host = _host()
    return _remove_temporaries(
        folder, lambda found: found["host"] == host and not _is_alive(int(found["pid"]), found["start"])
    )


def _remove_temporaries(folder: Path, whose: Callable[[re.Match[str]], bool]) -> list[Path]:
    """Remove the temporary files and folders in `folder` whose name's match `whose` accepts."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.search(entry.name)
        if match is None or not whose(match):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


def check_temp_dir(folder: str | os.PathLike | None) -> None:
    """`--temp-dir` must be a writable folder, whether or not a run needs to spill."""
    if folder is None:
        return
    if not Path(folder).is_dir():
        raise InputError(f"--temp-dir {folder}: no such folder")
    if not os.access(folder, os.W_OK):
        raise InputError(f"--temp-dir {folder}: the folder is not writable; choose another --temp-dir")


def write_failure(
    out: Path, exc: BaseException, option: str = "-o", what: str = "cannot write"
) -> OutputError:
    """The one-line error for a write of `out` that failed with an OSError or a polars I/O error;
    `option` is the option that chooses another place."""
    code = getattr(exc, "errno", None)
    if code is None:
        found = re.search(r"os error (\d+)", str(exc))
        code = int(found.group(1)) if found else None
    reasons = {
        errno.ENOSPC: f"the disk is full; free some space or choose another {option}",
        errno.EDQUOT: f"the disk quota is exceeded; free some space or choose another {option}",
        errno.EROFS: f"read-only file system; choose another {option}",
        errno.EACCES: f"permission denied; choose a writable folder with {option}",
        errno.EPERM: f"permission denied; choose a writable folder with {option}",
        errno.EISDIR: f"the output is a folder; give a file name with {option}",
        errno.ENOENT: f"its folder is gone; choose another {option}",
    }
    reason = reasons.get(code) if code is not None else None
    if reason is None:
        reason = first_line(exc)
    return OutputError(f"{out}: {what}: {reason}")


# Folders where this process made temporary folders: swept once more at exit (`_sweep_own`).
_OWN_PLACES: set[Path] = set()


@contextlib.contextmanager
def temporary_folder(beside: Path) -> Iterator[Path]:
    """A fresh temporary folder named after `beside` (see `temporary_path`), removed at the end
    whatever happens; stale ones of dead runs in the same place are removed first."""
    remove_stale_temporaries(beside.parent)
    if not _OWN_PLACES:
        import atexit

        atexit.register(_sweep_own)
    _OWN_PLACES.add(beside.parent)
    folder = temporary_path(beside)
    folder.mkdir()
    try:
        yield folder
    finally:
        discard(folder)


def write_atomic(out: Path, write: Callable[[str], None], also: Sequence[tuple[str, Path]] = ()) -> None:
    """Call `write(path)` for a path inside a temporary folder beside `out`, then rename it to `out`
    (and each `also` file `write` put beside it, by name, to its place first: a sidecar).

    A failed or interrupted write leaves no temporary file and does not touch an existing `out`;
    an I/O failure (full disk, permissions) becomes an `OutputError`.

    The folder, not a bare temporary file, is what makes cleanup certain: a writer may still open
    its path after an interrupt reached Python (polars' sink opens it twice, from a worker thread),
    and once the folder is gone such a late open fails instead of creating a file again.
    """
    try:
        with temporary_folder(out) as folder:
            target = folder / out.name  # the same name: writers that look at the extension see it
            write(str(target))
            with publishing(out):
                for name, place in also:
                    os.replace(folder / name, place)
                os.replace(target, out)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise write_failure(out, exc) from None


def _sweep_own() -> None:
    """At exit, remove this process's temporary folders that came back after they were discarded:
    a failed query's sink can still be closing a file in its folder (a full disk), and recreate it."""
    host, pid, start = _run_tag().rsplit("-", 2)
    for place in _OWN_PLACES:
        _remove_temporaries(
            place, lambda found: (found["host"], found["pid"], found["start"]) == (host, pid, start)
        )


def discard(folder: Path) -> None:
    """Remove a temporary folder for good: renamed away first (so its old path no longer exists
    for a late writer), then deleted."""
    with signals_deferred():  # a Ctrl-C now would leave half of it behind
        gone = temporary_path(folder.parent / "discarded")
        try:
            folder.rename(gone)
        except OSError:
            gone = folder
        shutil.rmtree(gone, ignore_errors=True)


def _check_sidecar(sidecar: Path) -> None:
    """Refuse to replace a file at a sidecar's name unless it holds kscore's metadata (a JSON object
    naming the kscore version and command)."""
    if not sidecar.exists():
        return
    try:
        small = sidecar.stat().st_size <= 16 * 2**20  # kscore's metadata is a few kB
        data = json.loads(sidecar.read_text(encoding="utf-8")) if small else None
    except (OSError, ValueError):
        data = None
    if not (isinstance(data, dict) and "kscore_version" in data and "command" in data):
        raise OutputError(
            f"{sidecar}: this file was not written by kscore, and the output's metadata would replace "
            "it; move it away or choose another -o"
        )


def write_table_atomic(frame: pl.DataFrame | pl.LazyFrame, out: Path, metadata: Mapping[str, Any]) -> None:
    """Write a table atomically (see `write_atomic`) in the format `out`'s extension names: Parquet
    with kscore's metadata inside, CSV or NDJSON with it in a sidecar `NAME.kscore.json` (renamed
    into place just before the table). A LazyFrame is streamed by polars' sinks, never held whole."""
    fmt = output_format(out)
    if fmt == "parquet":
        tags = metadata_tags(metadata)
        if isinstance(frame, pl.LazyFrame):
            write_atomic(out, lambda temp: frame.sink_parquet(temp, metadata=tags))
        else:
            write_atomic(out, lambda temp: frame.write_parquet(temp, metadata=tags))
        return
    schema = frame.collect_schema() if isinstance(frame, pl.LazyFrame) else frame.schema
    nested = [name for name, dtype in schema.items() if dtype.is_nested()]
    if fmt == "csv" and nested:
        raise InputError(
            f"{out}: CSV cannot hold the list column {nested[0]!r}; write .parquet or .ndjson instead"
        )
    sidecar = sidecar_path(out)
    _check_sidecar(sidecar)

    def write(temp: str) -> None:
        if isinstance(frame, pl.LazyFrame):
            (frame.sink_csv if fmt == "csv" else frame.sink_ndjson)(temp)
        else:
            (frame.write_csv if fmt == "csv" else frame.write_ndjson)(temp)
        staged = Path(temp).parent / sidecar.name
        staged.write_text(json.dumps(metadata, default=str), encoding="utf-8")

    write_atomic(out, write, also=[(sidecar.name, sidecar)])


def dataset_parts(folder: Path) -> list[Path]:
    """The parts of a kscore dataset, in order."""
    return sorted(folder.glob(PART_GLOB))


def scan_output(path: Path) -> pl.LazyFrame:
    """An output kscore wrote (Parquet file or dataset, CSV, NDJSON), scanned lazily."""
    fmt = file_format(path)
    if fmt == "csv":
        return pl.scan_csv(_source(path), **polars_options(path))
    if fmt == "ndjson":
        return _scan_ndjson(path)
    return _scan_parquet(dataset_parts(path) if is_dataset(path) else path)


def wants_dataset(out: str | os.PathLike) -> bool:
    """Whether `-o` names a Parquet dataset: a trailing slash, or an existing folder (SPEC §8)."""
    text = os.fspath(out)
    return text.endswith(("/", os.sep)) or Path(text).is_dir()


def check_dataset_output(out: Path, inputs: Iterable[Path]) -> None:
    """Fail before any work when the dataset folder `out` cannot be written: an existing folder must
    be empty or hold a kscore dataset (which is then replaced whole); its parent must be writable."""
    target = out.resolve()
    for path in inputs:
        if target == path.resolve() or target in path.resolve().parents:
            raise InputError(f"{out}/: the output would overwrite an input; choose another -o")
    if out.exists():
        if not out.is_dir():
            raise OutputError(f"{out}/: exists and is not a folder; choose another -o")
        if any(True for _ in out.iterdir()) and not is_dataset(out):
            raise OutputError(
                f"{out}/: the folder holds files kscore did not write; choose a new or empty folder with -o"
            )
        foreign = sorted(p.name for p in out.iterdir() if not _written_by_kscore(p))
        if foreign:  # replacing the dataset would delete them (SPEC section 9)
            raise OutputError(
                f"{out}/: the dataset folder also holds {foreign[0]!r}, which kscore did not write; "
                "move it out, or choose another -o"
            )
    check_output(out.parent / f"{out.name}.parquet", [])


def write_dataset_atomic(out: Path, write_parts: Callable[[Path], None], metadata: Mapping[str, Any]) -> None:
    """Write a Parquet dataset: `write_parts(folder)` writes the `part-NNNNN.parquet` files, the
    manifest goes last, and the folder is renamed into place (an old dataset there is renamed away
    first and deleted). A failure leaves the old dataset, or nothing, at `out`."""
    try:
        with temporary_folder(out) as folder:
            target = folder / out.name
            target.mkdir()
            write_parts(target)
            (target / MANIFEST).write_text(json.dumps(metadata, default=str), encoding="utf-8")
            with publishing(out):  # an old dataset moves away and the new one in, or neither
                if out.exists():
                    out.rename(folder / "replaced")
                os.replace(target, out)
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise write_failure(out, exc) from None


_PART = re.compile(r"^part-\d{5,}\.parquet$")


def _written_by_kscore(path: Path) -> bool:
    """Whether `path`, in a dataset folder, is one of kscore's own files (a part or the manifest)."""
    return path.is_file() and (path.name == MANIFEST or bool(_PART.match(path.name)))


def part_name(number: int) -> str:
    return f"part-{number:05d}.parquet"


# Rows per part of a dataset written from memory (about 250 MB of scores).
PART_ROWS = 4_000_000


def table_slices(height: int) -> list[tuple[int, int]]:
    """The (start, length) of each part of a dataset of a table of `height` rows, `PART_ROWS` a
    part; a table without rows is one empty part."""
    return [(start, min(PART_ROWS, height - start)) for start in range(0, max(height, 1), PART_ROWS)]


def write_slices(table: pl.DataFrame, folder: Path, metadata: Mapping[str, Any]) -> None:
    """`table` as the parts of a dataset in `folder` (`table_slices`), each with the metadata."""
    for number, (start, length) in enumerate(table_slices(table.height)):
        table.slice(start, length).write_parquet(folder / part_name(number), metadata=metadata_tags(metadata))


def metadata_tags(metadata: Mapping[str, Any]) -> dict[str, str]:
    """kscore's metadata as Parquet key-value metadata."""
    return {METADATA_KEY: json.dumps(metadata, default=str)}


def read_kscore_metadata(path: str | os.PathLike | ObjectPath) -> dict[str, Any]:
    """The metadata kscore recorded with an output it wrote ({} if none): in a Parquet file, a
    dataset's manifest, or a CSV or NDJSON file's sidecar."""
    if not isinstance(path, Path | ObjectPath):
        from kscore.storage import as_path

        path = as_path(path)
    manifest = path / MANIFEST if is_dataset(path) else None
    if manifest is None and file_format(path) != "parquet":
        manifest = sidecar_path(path)
        if not manifest.is_file():
            return {}
    if manifest is not None:
        try:
            text = manifest.read_text(encoding="utf-8")
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise InputError(f"{path}: cannot read kscore's metadata {manifest.name}: {reason}") from None
        except ValueError:
            raise InputError(f"{path}: kscore's metadata {manifest.name} is not UTF-8 text") from None
        try:
            data = json.loads(text)
        except ValueError:
            raise InputError(f"{path}: kscore's metadata {manifest.name} is not valid JSON") from None
        return checked_metadata(data, f"{path}: kscore's metadata {manifest.name}")
    try:
        raw = pl.read_parquet_metadata(_source(path), **polars_options(path)).get(METADATA_KEY)
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise InputError(f"{path}: cannot read Parquet metadata: {str(exc).strip()[:200]}") from None
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise InputError(f"{path}: kscore's metadata in this file is not valid JSON") from None
    return checked_metadata(data, f"{path}: kscore's metadata in this file")


# What kscore reads back from the metadata it wrote, by key: the types a value must have. A file
# from another version, or edited by hand, is exit 2 naming the key (never a crash further on).
COMMANDS = ("difficulty", "embed-scores", "compare", "select")
_TEXT_LIST = "a list of strings"
METADATA_SCHEMA: dict[str, tuple[tuple[type, ...], str]] = {
    "kscore_version": ((str,), "a string"),
    "command": ((str,), "one of " + ", ".join(COMMANDS)),
    "standard": ((dict,), "an object"),
    "models": ((list,), _TEXT_LIST),
    "split_col": ((str,), "a string"),
    "train_values": ((list,), _TEXT_LIST),
    "parameters": ((dict,), "an object"),
    "baseline": ((str,), "a string"),
    "candidate": ((str,), "a string"),
    "margin": ((int, float), "a number"),
    "inputs": ((dict,), "an object"),
    "rows": ((dict,), "an object"),
    "scale": ((dict,), "an object"),
    "scale_from": ((str,), "a string"),
    "map": ((dict,), "an object"),
}
NESTED_SCHEMA: dict[tuple[str, str], tuple[tuple[type, ...], str]] = {
    ("standard", "id_column"): ((str,), "a string"),
    ("parameters", "strategy"): ((str,), "a string"),
    ("parameters", "by"): ((str,), "a string"),
}


def checked_metadata(data: Any, where: str) -> dict[str, Any]:
    """`data` (kscore's metadata, as decoded) checked against METADATA_SCHEMA: a JSON object
    whose known keys hold values of their types; exit 2 naming the first key that does not."""
    if not isinstance(data, dict):
        raise InputError(f"{where} is not a JSON object")

    def wrong(key: str, value: Any, what: str) -> InputError:
        return InputError(
            f"{where}: {key!r} is {json.dumps(value)[:60]}, not {what}; was it edited, or written by "
            "another program? Run the kscore command again to write it"
        )

    for key, (types, what) in METADATA_SCHEMA.items():
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, types) or isinstance(value, bool):
            raise wrong(key, value, what)
        if what == _TEXT_LIST and not all(isinstance(v, str) for v in value):
            raise wrong(key, value, what)
        if key == "command" and value not in COMMANDS:
            raise wrong(key, value, what)
    for (outer, key), (types, what) in NESTED_SCHEMA.items():
        inner = data.get(outer)
        value = inner.get(key) if isinstance(inner, dict) else None
        if value is not None and (not isinstance(value, types) or isinstance(value, bool)):
            raise wrong(f"{outer}.{key}", value, what)
    return data
