"""The `kscore` command line, the only layer that imports typer or rich.

`commands.py` the commands (parse, one library call, print), `options.py` the shared options,
`console.py` the two consoles and progress, `tables.py` the terminal tables, `exit.py` the exit
codes, `signals.py` the signals. `main` is the console script's entry point: it handles signals
before it imports the rest (typer, polars), which `app` and `run` load on first use.
"""

from __future__ import annotations

import os

# numpy asks the kernel for transparent huge pages on large arrays; where the kernel then compacts
# memory synchronously (THP defrag "madvise", common on cloud VMs) that stalls kscore's large,
# short-lived arrays (10-15% of a 10M-row run here). A user's own setting wins.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

from typing import Any

__all__ = ["app", "main", "run"]


def main() -> None:
    """`kscore`: signals handled from here on, then the command line (`run`)."""
    from kscore.cli.signals import install, interrupt_behind, stopped
    from kscore.errors import Interrupted

    install()
    try:
        from kscore.cli.exit import run
    except (KeyboardInterrupt, Interrupted) as exc:  # stopped while importing
        stopped(exc)
    except Exception as exc:
        behind = interrupt_behind(exc)  # stopped while a class was made
        if behind is None:
            raise
        stopped(behind)
    run()


def __getattr__(name: str) -> Any:
    if name == "app":
        from kscore.cli.commands import app

        return app
    if name == "run":
        from kscore.cli.exit import run

        return run
    raise AttributeError(f"module 'kscore.cli' has no attribute {name!r}")
