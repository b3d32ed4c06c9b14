"""Exceptions and warnings of kscore: the library raises these, the CLI turns them into exit codes."""

from __future__ import annotations

import reprlib
from collections.abc import Iterable, Sequence

# Values echoed in messages are cut to this: a message must never grow with its input.
_SHORT = reprlib.Repr()
_SHORT.maxlevel = 2
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 4
_SHORT.maxstring = _SHORT.maxother = 60
_SHORT.maxlong = 40


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of an error's text (its type's name if it has none), for a one-line message."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__


def short(value: object) -> str:
    """A bounded repr of `value` for messages: cheap however large or deeply shared the value is."""
    return _SHORT.repr(value)


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """`; did you mean 'x'?` naming the valid name closest to `name` (same but for case first), or ''."""
    import difflib

    valid = [v for v in valid if isinstance(v, str)]
    same = [v for v in valid if v.lower() == str(name).lower()]
    close = same or difflib.get_close_matches(str(name), valid, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def missing_column_message(label: str, name: str, present: Sequence[str], what: str = "column") -> str:
    """`FILE: missing column 'x'; did you mean 'y'? (columns: a, b, ...)`."""
    shown = ", ".join(present[:12]) + (", ..." if len(present) > 12 else "")
    return f"{label}: missing {what} {name!r}{did_you_mean(name, present)} (columns: {shown or 'none'})"


class KscoreError(Exception):
    """Base of every error kscore reports to a user as one line (exit code 2)."""

    exit_code = 2


class ConfigError(KscoreError):
    """The quality standard is missing, unreadable or invalid."""


class InputError(KscoreError):
    """An input file or table is missing, unreadable or holds bad values."""


class DuplicatedIds(InputError):
    """An id appears on more than one row of one model's results."""


class OutputError(KscoreError):
    """An output cannot be written: a folder, permissions, a read-only or full disk."""


class Interrupted(BaseException):
    """The run was stopped by SIGTERM (exit code 143). A BaseException, like KeyboardInterrupt, so
    that no `except Exception` swallows it; cleanup in `finally` blocks still runs."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class GateFailed(KscoreError):
    """A CI gate failed (exit code 1)."""

    exit_code = 1


class KscoreWarning(UserWarning):
    """Something worth a user's attention that does not stop a run (printed on stderr)."""

    def __init__(self, message: str, model: str | None = None) -> None:
        super().__init__(message)
        self.model = model
