"""Object storage paths (`s3://`, `gs://`, `az://`): reading through polars, listing, uploading and
deleting through pyarrow's file systems.

Credentials come from the standard environment variables (`AWS_ACCESS_KEY_ID`, ...); anything else (an
endpoint, a region) from `--storage-option KEY=VALUE`, in polars' names (`aws_endpoint_url`,
`aws_region`, ...), which are also given to pyarrow where it has them. An output to object storage
is published only when complete: a prefix is a Parquet dataset of parts, uploaded first, with the
manifest last, and a run that fails deletes the parts it uploaded (`publish`); a name with a table
extension (`s3://b/x.csv`) is one object, uploaded under a temporary name and then moved (a
server-side copy) to its own (`publish_file`).
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import posixpath
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from kscore.errors import InputError, OutputError, first_line

SCHEMES = ("s3", "gs", "gcs", "az", "abfs", "abfss")
_options: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar(
    "storage_options", default=None
)
# polars' (object_store's) names of the S3 settings -> pyarrow.fs.S3FileSystem's
_S3_KEYS = {
    "aws_access_key_id": "access_key",
    "access_key_id": "access_key",
    "aws_secret_access_key": "secret_key",
    "secret_access_key": "secret_key",
    "aws_session_token": "session_token",
    "session_token": "session_token",
    "aws_region": "region",
    "region": "region",
}
_S3_ENDPOINTS = ("aws_endpoint_url", "aws_endpoint", "endpoint_url", "endpoint")


def is_remote(path: object) -> bool:
    """Whether `path` names an object in object storage (`s3://...`)."""
    text = str(path)
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.lower() in SCHEMES


def parse_storage_options(items: Sequence[str]) -> dict[str, str]:
    """`KEY=VALUE` arguments as a dict; anything else is an InputError."""
    options: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--storage-option {item!r}: expected KEY=VALUE (e.g. aws_region=eu-west-1)")
        options[key.strip().lower()] = value
    return options


@contextlib.contextmanager
def using(options: Mapping[str, str] | None) -> Iterator[None]:
    """Use these storage options for the object paths read and written in the block (None: keep
    the ones in use)."""
    token = _options.set(dict(options)) if options is not None else None
    try:
        yield
    finally:
        if token is not None:
            _options.reset(token)


def options_in_use() -> dict[str, str] | None:
    """The storage options of the running block (`using`), for work that runs elsewhere (Ray's
    tasks), which does not see this process's context."""
    options = _options.get()
    return dict(options) if options is not None else None


def polars_options(path: object) -> dict[str, Any]:
    """Keyword arguments that give polars the storage options, for an object path ({} otherwise)."""
    if not is_remote(path):
        return {}
    options = dict(_options.get() or {})
    endpoint = next((options[k] for k in _S3_ENDPOINTS if k in options), None)
    if endpoint and endpoint.startswith("http://"):
        options.setdefault("aws_allow_http", "true")
    return {"storage_options": options or None}


class ObjectPath:
    """An object in object storage, with the parts of `pathlib.Path`'s interface kscore uses on
    inputs; `str()` and `os.fspath()` give the URL."""

    def __init__(self, url: str) -> None:
        scheme, _, rest = url.partition("://")
        self.scheme = scheme.lower()
        self.key = rest.rstrip("/")
        self.url = f"{self.scheme}://{self.key}"

    def __str__(self) -> str:
        return self.url

    def __fspath__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"ObjectPath({self.url!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectPath) and other.url == self.url

    def __hash__(self) -> int:
        return hash(self.url)

    def __lt__(self, other: ObjectPath) -> bool:
        return self.url < other.url

    def __truediv__(self, name: str) -> ObjectPath:
        return ObjectPath(f"{self.url}/{name}")

    @property
    def name(self) -> str:
        return posixpath.basename(self.key)

    @property
    def suffix(self) -> str:
        return posixpath.splitext(self.name)[1]

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(f"{self.scheme}://{posixpath.dirname(self.key)}")

    @property
    def parents(self) -> list[ObjectPath]:
        """The prefixes above this object, nearest first (never a local folder)."""
        keys = []
        key = posixpath.dirname(self.key)
        while key:
            keys.append(ObjectPath(f"{self.scheme}://{key}"))
            key = posixpath.dirname(key)
        return keys

    def resolve(self) -> ObjectPath:
        return self

    absolute = resolve

    def _info(self) -> Any:
        system, path = filesystem(self.url)
        try:
            return system.get_file_info(path)
        except OSError as exc:
            raise InputError(f"{self}: cannot reach the object: {first_line(exc)}") from None

    def exists(self) -> bool:
        fs = _pyarrow_fs()
        return self._info().type != fs.FileType.NotFound

    def is_file(self) -> bool:
        fs = _pyarrow_fs()
        return self._info().type == fs.FileType.File

    def is_dir(self) -> bool:
        """A prefix holding objects (object stores have no folders)."""
        fs = _pyarrow_fs()
        return self._info().type == fs.FileType.Directory

    def stat(self) -> Any:
        info = self._info()

        class _Stat:
            st_size = info.size or 0

        return _Stat()

    def listing(self) -> list[ObjectPath]:
        """The objects under this prefix, sorted."""
        fs = _pyarrow_fs()
        system, path = filesystem(self.url)
        try:
            infos = system.get_file_info(fs.FileSelector(path, allow_not_found=True, recursive=True))
        except OSError as exc:
            raise InputError(f"{self}: cannot list the objects: {first_line(exc)}") from None
        return sorted(
            (ObjectPath(f"{self.scheme}://{i.path}") for i in infos if i.type == fs.FileType.File),
            key=str,
        )

    def glob(self, pattern: str) -> list[ObjectPath]:
        import fnmatch

        return [p for p in self.listing() if p.parent == self and fnmatch.fnmatch(p.name, pattern)]

    def read_text(self, encoding: str = "utf-8") -> str:
        with self.open(encoding=encoding) as handle:
            return handle.read()

    def open(
        self, mode: str = "r", newline: str | None = None, encoding: str = "utf-8", errors: str = "strict"
    ):
        system, path = filesystem(self.url)
        stream = system.open_input_stream(path)
        if "b" in mode:
            return stream
        return io.TextIOWrapper(io.BufferedReader(stream), encoding=encoding, errors=errors, newline=newline)


def as_path(text: str | Path) -> Path | ObjectPath:
    """A local path or an object path, from an argument."""
    return ObjectPath(str(text)) if is_remote(text) else Path(text)


def _pyarrow_fs() -> Any:
    """pyarrow's file systems module (imported when object storage is used)."""
    from pyarrow import fs

    return fs


def filesystem(url: str) -> tuple[Any, str]:
    """pyarrow's file system for `url` with the storage options, and the path within it."""
    from pyarrow import fs

    scheme, _, rest = url.partition("://")
    options = _options.get() or {}
    if scheme.lower() == "s3":
        kwargs: dict[str, Any] = {_S3_KEYS[k]: v for k, v in options.items() if k in _S3_KEYS}
        endpoint = next((options[k] for k in _S3_ENDPOINTS if k in options), None)
        if endpoint:
            scheme_part, sep, host = endpoint.partition("://")
            kwargs["endpoint_override"] = host if sep else endpoint
            if sep:
                kwargs["scheme"] = scheme_part
        return fs.S3FileSystem(**kwargs), rest
    try:
        return fs.FileSystem.from_uri(url)
    except (OSError, ValueError) as exc:
        raise InputError(f"{url}: {first_line(exc)}") from None


def check_remote_output(out: ObjectPath, manifest: str) -> None:
    """Fail before any work when the dataset prefix `out` holds objects kscore did not write."""
    objects = out.listing()
    if objects and not any(p.name == manifest and p.parent == out for p in objects):
        raise OutputError(
            f"{out}/: the prefix holds objects kscore did not write; choose a new or empty prefix with -o"
        )


PUBLISHED: list[str] = []  # the outputs this process put in place under their final names, in order
_publishing_depth = 0
_deferred: list[Callable[[], None]] = []


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """A block a signal must not cut in two (an output put in place, a temporary folder deleted): a
    signal handler that calls `defer_while_publishing` waits until the block is done."""
    global _publishing_depth
    _publishing_depth += 1
    try:
        yield
    finally:
        _publishing_depth -= 1
        if not _publishing_depth and _deferred:
            actions = list(_deferred)
            _deferred.clear()
            for action in actions:
                action()  # a signal's handler: it raises


@contextlib.contextmanager
def publishing(out: Path | str) -> Iterator[None]:
    """Put an output in place inside this block (a rename, an old dataset moved away, a manifest
    uploaded): a signal waits until it is done and `PUBLISHED` names the output, so it never lands
    between two steps of one publication and the CLI can say truthfully that the output was
    written."""
    with signals_deferred():
        yield
        PUBLISHED.append(str(out))


def drop_deferred() -> None:
    """Forget the actions `defer_while_publishing` holds (a signal's stop, once the run's outcome is
    settled and it can stop nothing)."""
    _deferred.clear()


def defer_while_publishing(action: Callable[[], None]) -> bool:
    """Run `action` when the block of `signals_deferred` (or `publishing`) that is running ends
    (True), or now, if none is (False: the caller runs it)."""
    if _publishing_depth:
        _deferred.append(action)
        return True
    return False


def publish(folder: Path, out: ObjectPath, manifest: str) -> None:
    """Upload the local dataset `folder` to the prefix `out`: an old dataset there is unpublished
    (its manifest deleted, then its parts), the parts are uploaded, the manifest last. A failure
    (or Ctrl-C) deletes what this run uploaded, so no half-written dataset is left at `out`."""
    system, prefix = filesystem(out.url)
    uploaded: list[str] = []
    published = False
    try:
        _unpublish(system, out, manifest)
        parts = sorted(p for p in folder.iterdir() if p.name != manifest)
        for local in parts:
            uploaded.append(f"{prefix}/{local.name}")
            _upload(system, local, uploaded[-1])
        with publishing(f"{out}/"):  # the manifest, last, publishes the dataset
            uploaded.append(f"{prefix}/{manifest}")
            _upload(system, folder / manifest, uploaded[-1])
            published = True  # a signal held until now leaves the dataset: it is complete
    except BaseException as exc:
        for target in [] if published else reversed(uploaded):
            with contextlib.suppress(Exception):
                system.delete_file(target)
        if isinstance(exc, OSError):
            raise OutputError(f"{out}/: cannot write to object storage: {first_line(exc)}") from None
        raise


def publish_written(
    out: ObjectPath, manifest: str, write_parts: Callable[[str], None], text: Callable[[], str]
) -> None:
    """Publish a dataset whose parts others write straight under the prefix `out` (Ray's tasks):
    an old dataset there is unpublished (its manifest deleted, then its parts), `write_parts(url)`
    writes the new parts, and the manifest (`text()`, once they are written) goes last. A failure
    (or Ctrl-C) deletes every object then under the prefix, so no half-written dataset is left at
    `out` (the prefix held only a kscore dataset, `check_remote_output`)."""
    system, prefix = filesystem(out.url)
    published = False
    try:
        _unpublish(system, out, manifest)
        write_parts(out.url)
        with publishing(f"{out}/"):  # the manifest, last, publishes the dataset
            with system.open_output_stream(f"{prefix}/{manifest}") as sink:
                sink.write(text().encode("utf-8"))
            published = True
    except BaseException as exc:
        if not published:
            with contextlib.suppress(Exception):
                for item in out.listing():
                    with contextlib.suppress(Exception):
                        system.delete_file(item.key)
        if isinstance(exc, OSError):
            raise OutputError(f"{out}/: cannot write to object storage: {first_line(exc)}") from None
        raise


def _unpublish(system: Any, out: ObjectPath, manifest: str) -> None:
    """Delete the dataset under the prefix `out`: its manifest first, so that it is never seen
    without some of its parts."""
    old = out.listing()
    old_manifest = [p for p in old if p.name == manifest and p.parent == out]
    for item in [*old_manifest, *(p for p in old if p not in old_manifest)]:
        system.delete_file(item.key)


def _upload(system: Any, local: Path, key: str) -> None:
    with system.open_output_stream(key) as sink, local.open("rb") as source:
        while chunk := source.read(16 * 2**20):
            sink.write(chunk)


def publish_file(local: Path, out: ObjectPath) -> None:
    """Upload the local file `local` as the object `out`: under a temporary name beside it first,
    then moved into place, so that `out` is either the old object or the whole new one; the
    temporary object is deleted whatever happens."""
    import secrets

    system, key = filesystem(out.url)
    temporary = f"{posixpath.dirname(key)}/.{posixpath.basename(key)}.kscore-{secrets.token_hex(4)}.tmp"
    try:
        _upload(system, local, temporary)
        with publishing(out):
            system.move(temporary, key)
    except OSError as exc:
        raise OutputError(f"{out}: cannot write to object storage: {first_line(exc)}") from None
    finally:
        with contextlib.suppress(Exception):
            if system.get_file_info(temporary).type != _pyarrow_fs().FileType.NotFound:
                system.delete_file(temporary)
