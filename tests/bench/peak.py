"""Run a command and measure it as the README's figures are: wall time, and the peak of the summed
RSS of its process tree sampled every 50 ms (psutil)."""

from __future__ import annotations

import contextlib
import subprocess
import time
from typing import Any


def run_measured(command: list[str], **popen: Any) -> tuple[int, float, int]:
    """(exit code, wall seconds, peak bytes) of `command`."""
    import psutil

    start = time.perf_counter()
    process = subprocess.Popen(command, **popen)
    root = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]))
        time.sleep(0.05)
    return process.returncode, time.perf_counter() - start, peak
