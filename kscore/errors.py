"""Exceptions and warnings of kscore: the library raises these, the CLI turns them into exit codes."""

from __future__ import annotations


class KscoreError(Exception):
    """Base of every error kscore reports to a user as one line (exit code 2)."""

    exit_code = 2


class ConfigError(KscoreError):
    """The quality standard is missing, unreadable or invalid."""


class InputError(KscoreError):
    """An input file or table is missing, unreadable or holds bad values."""


class GateFailed(KscoreError):
    """A CI gate failed (exit code 1)."""

    exit_code = 1


class KscoreWarning(UserWarning):
    """Something worth a user's attention that does not stop a run (printed on stderr)."""

    def __init__(self, message: str, model: str | None = None) -> None:
        super().__init__(message)
        self.model = model
