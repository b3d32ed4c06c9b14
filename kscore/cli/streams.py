"""`-` as an input and `-o -`: a shell pipeline into and out of kscore.

The library reads and writes files; the command line turns the standard streams into files around
it. stdin is copied into a temporary file (its format from `--input-format`, else sniffed), and an
output for stdout is written to a temporary file and then copied to stdout, so that every command
keeps its checks, its bounded memory and its atomic writes. The temporary folder goes with the run,
whatever its end. kscore's metadata has no place on stdout: it is dropped, and one note says so.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from kscore.errors import InputError, KscoreError

STDIN = "-"
INPUT_FORMATS = ("csv", "ndjson")
OUTPUT_FORMATS = ("csv", "ndjson", "parquet")
_CHUNK = 1 << 20
METADATA_NOTE = "kscore's metadata is not written to stdout (no place for it there); -o FILE keeps it"


@dataclass
class Streams:
    """What a command reads and writes instead of `-`: `inputs` with stdin's file in place of
    `-` (or `NAME=-`), `out` a file whose bytes go to stdout after the run (None: not `-o -`)."""

    inputs: list[str]
    out: str | None
    stdin_file: Path | None = None
    stdout_file: Path | None = None  # `-o -`: the file whose bytes go to stdout
    notes: list[str] = field(default_factory=list)


def _sniffed(head: bytes) -> str:
    """stdin's format from its first bytes: NDJSON if the first non-blank byte opens an object."""
    if head.startswith(b"PAR1"):
        raise InputError("stdin: Parquet cannot be read from stdin (it is read from its end); give a file")
    if head.startswith(b"\x1f\x8b") or head.startswith(b"\x28\xb5\x2f\xfd"):
        raise InputError(
            "stdin: compressed data; decompress it into the pipe (zcat, zstdcat) or give the file"
        )
    return "ndjson" if head.lstrip()[:1] == b"{" else "csv"


def _spool_stdin(folder: Path, input_format: str | None) -> Path:
    """stdin copied into `folder`, named by its format."""
    source = sys.stdin.buffer
    head = source.read(_CHUNK)
    if not head:
        raise InputError("stdin: no data (an empty pipe)")
    fmt = input_format or _sniffed(head)
    path = folder / f"stdin.{fmt}"
    with path.open("wb") as sink:
        sink.write(head)
        shutil.copyfileobj(source, sink, _CHUNK)
    return path


def _check_formats(input_format: str | None, output_format: str | None, out: str | None) -> None:
    if input_format is not None and input_format not in INPUT_FORMATS:
        raise InputError(f"--input-format must be one of {', '.join(INPUT_FORMATS)}, not {input_format!r}")
    if output_format is not None and output_format not in OUTPUT_FORMATS:
        raise InputError(f"--output-format must be one of {', '.join(OUTPUT_FORMATS)}, not {output_format!r}")
    if output_format is not None and out != STDIN:
        raise InputError("--output-format is for -o - (stdout); a file's format comes from its extension")
    if out == STDIN and (output_format or "csv") == "parquet" and sys.stdout.isatty():
        raise InputError(
            "-o - --output-format parquet: stdout is a terminal; pipe it or give -o FILE.parquet"
        )


@contextmanager
def standard_streams(
    inputs: list[str],
    out: str | None,
    *,
    input_format: str | None = None,
    output_format: str | None = None,
    temp_dir: str | os.PathLike | None = None,
) -> Iterator[Streams]:
    """The files a command reads and writes in place of `-` (stdin, once) and `-o -` (stdout);
    after the body, the output's bytes go to stdout. Errors that name the temporary files name
    stdin and stdout instead."""
    _check_formats(input_format, output_format, out)
    reading = [i for i in inputs if i == STDIN or i.endswith("=" + STDIN)]
    if len(reading) > 1:
        raise InputError("stdin can be read once: give '-' as one input at most")
    if not reading and out != STDIN:
        yield Streams(list(inputs), out)
        return
    with tempfile.TemporaryDirectory(prefix=".kscore-streams-", dir=temp_dir) as name:
        folder = Path(name)
        streams = Streams(list(inputs), out)
        try:
            if reading:
                streams.stdin_file = _spool_stdin(folder, input_format)
                streams.inputs = [
                    i[: -len(STDIN)] + str(streams.stdin_file) if i in reading else i for i in inputs
                ]
            if out == STDIN:
                from kscore.cli.console import results_on_stderr

                streams.stdout_file = folder / f"stdout.{output_format or 'csv'}"
                streams.out = str(streams.stdout_file)
                streams.notes.append(METADATA_NOTE)
                results_on_stderr()
            yield streams
        except KscoreError as exc:
            exc.args = (_named(str(exc), streams),)
            raise
        if streams.stdout_file is not None:
            _to_stdout(streams.stdout_file)


def _to_stdout(path: Path) -> None:
    from kscore.cli.console import stdout_closed

    try:
        with path.open("rb") as result:
            shutil.copyfileobj(result, sys.stdout.buffer, _CHUNK)
        sys.stdout.buffer.flush()
    except BrokenPipeError:  # `kscore ... -o - | head`: the reader has what it wanted
        stdout_closed()


def _named(message: str, streams: Streams) -> str:
    """`message` with the temporary files named as the user gave them: stdin and stdout."""
    if streams.stdin_file is not None:
        message = message.replace(str(streams.stdin_file), "stdin")
    if streams.stdout_file is not None:
        message = message.replace(str(streams.stdout_file), "stdout")
    return message


def streamed(summary: dict, streams: Streams) -> dict:
    """A command's summary as the user sees it: its output `-` (stdout), stdin named, the note on
    the dropped metadata among its notes."""
    if streams.stdout_file is not None and summary.get("output") == str(streams.stdout_file):
        summary["output"] = STDIN
    summary = _renamed(summary, streams)
    summary["notes"] = [*summary.get("notes", []), *streams.notes]
    return summary


def _renamed(value: object, streams: Streams) -> object:
    if isinstance(value, str):
        return _named(value, streams)
    if isinstance(value, dict):
        return {k: _renamed(v, streams) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, streams) for v in value]
    return value
