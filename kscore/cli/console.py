"""The two consoles: results on stdout (rich tables or one JSON object), everything else on stderr
(notes, warnings, progress, wrote-lines, the error line)."""

from __future__ import annotations

import json
import math
import os
import sys
import traceback
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import typer

from kscore.errors import KscoreError, KscoreWarning

state = {"debug": False, "quiet": False, "results_on_stderr": False}


def results_on_stderr() -> None:
    """stdout carries the output table (`-o -`): results (tables, JSON) go to stderr instead."""
    state["results_on_stderr"] = True


def _results_stream() -> Any:
    return sys.stderr if state["results_on_stderr"] else sys.stdout


def debug_enabled() -> bool:
    return state["debug"] or os.environ.get("KSCORE_DEBUG", "") not in ("", "0")


def common_options(debug: bool, quiet: bool) -> None:
    """The options every command takes after its name as well as before it."""
    state["debug"] = state["debug"] or debug
    state["quiet"] = state["quiet"] or quiet


def stderr_line(line: str) -> None:
    sys.stderr.write(line.rstrip("\n") + "\n")


def note(line: str) -> None:
    """A note, a wrote-line or a progress line on stderr (silenced by --quiet)."""
    if not state["quiet"]:
        stderr_line(line)


@contextmanager
def reported_errors() -> Iterator[dict[str | None, list[str]]]:
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
                        note(f"warning: {item.message}")
    except KscoreError as exc:
        if debug_enabled():
            traceback.print_exc()
        stderr_line(f"error: {exc}")
        raise typer.Exit(exc.exit_code) from None


def stdout_closed() -> None:
    """stdout's reader went away (`kscore ... | head`): drop the rest of the output quietly.

    Not an error of kscore's: the exit code stays what the work decided (a failed gate is still 1).
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    with suppress(OSError, ValueError):
        os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def output_console() -> Any:
    """rich's console for stdout, with a closed stdout (`kscore ... | head`) dropping the rest of
    the output quietly: rich's own reaction is to exit with code 1, the gate-failed code."""
    from rich.console import Console

    class OutputConsole(Console):
        def on_broken_pipe(self) -> None:
            self.quiet = True
            stdout_closed()

    return OutputConsole(file=_results_stream())


def print_result(renderables: list[Any] | Any) -> None:
    console = output_console()
    try:
        for renderable in renderables if isinstance(renderables, list) else [renderables]:
            console.print(renderable)
        _results_stream().flush()
    except BrokenPipeError:
        stdout_closed()


def print_line(text: str) -> None:
    """One line of text on stdout, as it is: never wrapped at the terminal's (or a pipe's 80) columns."""
    try:
        _results_stream().write(text + "\n")
        _results_stream().flush()
    except BrokenPipeError:
        stdout_closed()


def print_json(data: Any) -> None:
    """One JSON object on stdout: floats NaN and +/-inf as null (JSON has no such numbers)."""
    text = json.dumps(json_safe(data), indent=2, default=str, allow_nan=False)
    try:
        _results_stream().write(text + "\n")
        _results_stream().flush()
    except BrokenPipeError:
        stdout_closed()


def json_safe(value: Any) -> Any:
    """`value` with NaN and +/-inf as null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def wrote(summary: dict[str, Any]) -> None:
    """The summary's notes, then a wrote-line for its output and its picture."""
    for line in summary.get("notes", []):
        note(f"note: {line}")
    for key in ("output", "map", "plot"):
        if summary.get(key) not in (None, "-"):  # `-o -`: the output went to stdout
            note(f"wrote {summary[key]}")


@contextmanager
def progress_bar() -> Iterator[Any]:
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
    terminal = console.is_terminal and not state["quiet"]
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
            note(f"{stage}: {counts}done in {time.perf_counter() - started[stage]:.1f} s")

    try:
        yield update
    finally:
        if tasks:
            bar.stop()
