"""The `kscore` command line, the only layer that imports typer or rich.

`commands.py` the commands (parse, one library call, print), `options.py` the shared options,
`console.py` the two consoles and progress, `tables.py` the terminal tables, `exit.py` the exit
codes and signals. `run` is the console script's entry point.
"""

from __future__ import annotations

import os

# numpy asks the kernel for transparent huge pages on large arrays; where the kernel then compacts
# memory synchronously (THP defrag "madvise", common on cloud VMs) that stalls kscore's large,
# short-lived arrays (10-15% of a 10M-row run here). A user's own setting wins.
os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")

from kscore.cli.commands import app
from kscore.cli.exit import run

__all__ = ["app", "run"]
