"""Exit codes: every outcome of a run becomes one (SPEC §4, §8), with one error line, and signals
stop it cleanly."""

from __future__ import annotations

import os
import sys
import traceback
from contextlib import suppress
from typing import NoReturn

import typer

from kscore import storage
from kscore.cli.commands import app
from kscore.cli.console import debug_enabled, stderr_line, stdout_closed
from kscore.cli.signals import install, interrupt_behind, interrupt_outcome, interrupted, settle
from kscore.errors import Interrupted, KscoreError


def usage_error() -> type[Exception]:
    """click's UsageError: typer vendors click from 0.20 on, older typer uses click itself."""
    import importlib

    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            return importlib.import_module(module).UsageError
        except (ImportError, AttributeError):
            continue
    raise ImportError("neither typer's nor click's UsageError found")  # pragma: no cover


def fail(message: str, code: int) -> NoReturn:
    if debug_enabled():
        traceback.print_exc()
    stderr_line(message)
    exit_now(code)


def run() -> None:
    """Console-script entry point: every outcome becomes an exit code (SPEC §4, §8).

    0 done; 1 a CI gate failed; 2 bad usage, bad input or an environment fault (a path, permissions,
    a full disk, memory), with one `error:` line; 130 Ctrl-C; 143 SIGTERM; 70 a bug (an unexpected
    exception), with one `internal error:` line. Cleanup (temporary files) runs in every case.
    """
    install()
    del storage.PUBLISHED[:]  # this run's outputs alone (the library may have written before, here)
    try:
        code = app(standalone_mode=False, prog_name="kscore")
    except usage_error() as exc:
        command = exc.ctx.command.name if exc.ctx is not None else None
        hint = f" (see 'kscore {command} --help')" if command and command != "kscore" else ""
        message = exc.format_message()
        if message:
            stderr_line(f"error: {message}{hint}")
        else:  # `kscore` alone: its help went to stdout; a script still reads why it failed
            stderr_line("error: no command given: run `kscore COMMAND ...` (the commands are listed above)")
        exit_now(2)
    except (typer.Abort, KeyboardInterrupt, Interrupted) as exc:
        fail(*interrupt_outcome(exc))
    except KscoreError as exc:
        fail(f"error: {exc}", exc.exit_code)
    except BrokenPipeError:
        stdout_closed()
        code = 0
    except MemoryError:
        fail("error: out of memory; use a machine with more memory or a smaller input", 2)
    except OSError as exc:  # an environment fault kscore did not anticipate
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        fail(f"error: {where}{exc.strerror or exc}", 2)
    except Exception as exc:
        behind = interrupt_behind(exc)  # a signal met while a class was made
        if behind is not None:
            fail(*interrupt_outcome(behind))
        text = str(exc).strip().splitlines()
        detail = f": {text[0][:200]}" if text else ""
        fail(
            f"internal error: {type(exc).__name__}{detail} (a bug in kscore; rerun with --debug "
            "for the traceback and report it)",
            70,
        )
    if code == 130:  # typer turns KeyboardInterrupt into Exit(130) itself
        stderr_line(interrupted("interrupted (Ctrl-C)"))
    exit_now(code if isinstance(code, int) else 0)


def exit_now(code: int) -> NoReturn:
    """End the process once the work is done and written: flush the streams, run the exit handlers
    (Ray's shutdown, logging's), then skip the interpreter's teardown of every module, which after a
    UMAP run (numba's compiled code, scikit-learn, scipy) takes about a second of nothing."""
    import atexit

    settle(code)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        stdout_closed()
    except (OSError, ValueError):
        pass
    with suppress(OSError, ValueError):
        sys.stderr.flush()
    atexit._run_exitfuncs()
    with suppress(OSError, ValueError):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)
