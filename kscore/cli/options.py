"""Shared option definitions: each defined once, so that it means the same in every command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer


def conventional_help() -> None:
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
EmbedMemoryLimitOption = Annotated[
    Optional[str],
    typer.Option(
        "--memory-limit",
        metavar="SIZE",
        help="Memory to stay within, e.g. 4GiB (default: half the available memory); larger embeddings "
        "are read in batches into a temporary file and mapped batch by batch.",
    ),
]


TempDirOption = Annotated[
    Optional[Path],
    typer.Option(
        "--temp-dir", metavar="DIR", help="Folder for the spilled id ranges (default: the output's folder)."
    ),
]
EmbedTempDirOption = Annotated[
    Optional[Path],
    typer.Option(
        "--temp-dir",
        metavar="DIR",
        help="Folder for the embeddings spilled above --memory-limit (default: the output's folder).",
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


InputFormatOption = Annotated[
    Optional[str],
    typer.Option(
        "--input-format",
        metavar="csv|ndjson",
        help="The format of '-' (stdin); without it, sniffed (NDJSON if it starts with '{').",
    ),
]
OutputFormatOption = Annotated[
    Optional[str],
    typer.Option(
        "--output-format",
        metavar="csv|ndjson|parquet",
        help="The format of -o - (stdout): csv if not given, ndjson, or parquet (into a pipe only).",
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


def cap_top(value: int) -> int:
    return min(value, MAX_TOP)


def top_option(what: str) -> Any:
    return typer.Option("--top", metavar="N", min=0, callback=cap_top, help=f"How many {what} to list.")


def out_option() -> Any:
    return typer.Option(
        "--out",
        "-o",
        metavar="PATH",
        help="Output table, its format by extension: .parquet/.pq, .csv, .ndjson/.jsonl; DIR/ for a "
        "Parquet dataset; - for stdout.",
    )
