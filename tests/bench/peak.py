"""Run a command and measure it as the README's figures are: wall time, and the peak of the summed
RSS of its process tree sampled every 50 ms (psutil)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from typing import Any


def run_measured(command: list[str], root_only: bool = False, **popen: Any) -> tuple[int, float, int]:
    """(exit code, wall seconds, peak bytes) of `command`; with `root_only`, the peak of its own
    process alone (a Ray driver, the cluster's workers apart)."""
    import psutil

    start = time.perf_counter()
    process = subprocess.Popen(command, **popen)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        with contextlib.suppress(psutil.Error):
            tree = [root] if root_only else [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree))
        time.sleep(0.05)
    return process.returncode, time.perf_counter() - start, peak
