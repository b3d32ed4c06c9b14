"""Signals, from the first line of the command line on: SIGINT and SIGTERM stop a run with one
error line that says whether its output was written (SPEC section 9). Imports nothing heavy, so that
the console script installs them before it imports typer, polars or the commands."""

from __future__ import annotations

import os
import signal
import sys
from contextlib import suppress
from typing import Any, NoReturn

from kscore.errors import Interrupted
from kscore.storage import defer_while_publishing, drop_deferred


def interrupted(what: str) -> str:
    """The error line of a run stopped by a signal: whether its output was written (SPEC section 9:
    an output published under its final name stays)."""
    from kscore import storage  # the list itself (tests replace it)

    if storage.PUBLISHED:
        return f"error: {what} after the output was written: {', '.join(storage.PUBLISHED)}"
    return f"error: {what}; no output was written"


def on_signal(signum: int, frame: Any) -> None:
    """Stop the run with an exception, once: cleanup (`finally`, temporary files) then runs to the
    end, since a second Ctrl-C, or polars re-raising the interrupt it saw, is ignored from now on.
    While an output is being put in place, the exception waits until it is there."""
    for other in (signal.SIGINT, signal.SIGTERM):
        signal.signal(other, signal.SIG_IGN)

    def stop() -> None:
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise Interrupted("terminated (SIGTERM)", 143)

    if not defer_while_publishing(stop):
        stop()


def on_unraisable(hook: Any) -> None:
    """An interrupt raised where Python cannot raise it (a finalizer, a weakref callback) is not
    printed as 'Exception ignored': its signal is sent again, to stop the run at the next line."""
    if isinstance(hook.exc_value, KeyboardInterrupt | Interrupted):
        import threading

        signum = signal.SIGINT if isinstance(hook.exc_value, KeyboardInterrupt) else signal.SIGTERM
        signal.signal(signum, on_signal)
        # sent from another thread, after this hook returned: raised inside the hook, it would be
        # ignored again
        threading.Timer(0.01, os.kill, (os.getpid(), signum)).start()
        return
    sys.__unraisablehook__(hook)


def install() -> None:
    """Stop the run on SIGINT and SIGTERM (`on_signal`); not in the main thread: nothing."""
    with suppress(ValueError):
        for caught in (signal.SIGINT, signal.SIGTERM):
            signal.signal(caught, on_signal)
        sys.unraisablehook = on_unraisable


def settle(code: int) -> None:
    """The run's outcome is decided and said (its exit `code`): a stop that a signal left waiting
    for a block to end is dropped, an interrupt Python could not raise is no longer sent again, and
    a signal from now on (while the exit handlers run: Ray's shutdown, temporary folders) ends the
    process at once with `code`, so nothing is printed after the run's last line."""
    drop_deferred()
    sys.unraisablehook = sys.__unraisablehook__
    with suppress(ValueError):  # not in the main thread
        for caught in (signal.SIGINT, signal.SIGTERM):
            signal.signal(caught, lambda signum, frame: os._exit(code))


def interrupt_behind(exc: BaseException) -> BaseException | None:
    """The interrupt (KeyboardInterrupt, `Interrupted`) that `exc` stands for, if any: Python turns
    one raised where a class is made (a dataclass's fields, `__set_name__`) into a RuntimeError
    caused by it."""
    seen: set[int] = set()
    found: BaseException | None = exc
    while found is not None and id(found) not in seen:
        if isinstance(found, KeyboardInterrupt | Interrupted):
            return found
        seen.add(id(found))
        found = found.__cause__ or found.__context__
    return None


def interrupt_outcome(exc: BaseException) -> tuple[str, int]:
    """The error line and exit code of a run stopped by `exc`: an `Interrupted` (SIGTERM), else
    Ctrl-C (KeyboardInterrupt, or typer's Abort standing for it)."""
    if isinstance(exc, Interrupted):
        return interrupted(str(exc)), exc.exit_code
    return interrupted("interrupted (Ctrl-C)"), 130


def stopped(exc: BaseException) -> NoReturn:
    """A signal that stopped the command line before it could run (while it was imported)."""
    line, code = interrupt_outcome(exc)
    with suppress(OSError, ValueError):
        sys.stderr.write(line + "\n")
        sys.stderr.flush()
    os._exit(code)
