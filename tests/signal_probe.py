"""The Ctrl-C probe: SIGINT and SIGTERM at seeded moments of a partitioned `kscore difficulty` run.

Each probe starts the run (`--quiet`, a memory limit that forces the partitioned plan), sends the
signal after a seeded delay drawn over the run's measured length, and records what it left: the exit
code, stderr's lines, whether the output is complete (every row, and kscore's metadata), absent, or
anything else, and any temporary file. `tests/test_partitioned.py` runs a few moments; the bench
(`tests/bench/signal_probe.py`) runs the issue's 20 moments at 3M rows, for each output kind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

CONFIG = "id_column: id\nmetrics:\n  - {name: recall, direction: higher_is_better}\n"
OUTPUTS = {"parquet": "out.parquet", "csv": "out.csv", "dataset": "out/"}


@dataclass
class Probe:
    """What one interrupted run left."""

    output: str  # parquet, csv or dataset
    signal: str  # SIGINT or SIGTERM
    delay: float  # seconds after the start
    code: int
    stderr: list[str]
    state: str  # complete, absent, or what else was found
    temporaries: list[str]

    def problems(self) -> list[str]:
        """How this probe breaks the rule (none: it holds): exit 0, 130 or 143; at most one stderr
        line, the `error:` line; the output complete (exit 0, or a line saying it was written) or
        absent (and the line saying so); never a temporary."""
        found = []
        expected = {"SIGINT": 130, "SIGTERM": 143}[self.signal]
        if self.code not in (0, expected):
            found.append(f"exit {self.code}")
        if len(self.stderr) > 1 or any(not line.startswith("error:") for line in self.stderr):
            found.append(f"stderr {self.stderr}")
        written = any("after the output was written" in line for line in self.stderr)
        if self.state == "complete" and self.code != 0 and not written:
            found.append("complete output, but the error line does not say it was written")
        if self.state == "absent" and (self.code == 0 or written):
            found.append("no output, but exit 0 or a line saying it was written")
        if self.state not in ("complete", "absent"):
            found.append(f"output {self.state}")
        if self.temporaries:
            found.append(f"temporaries {self.temporaries}")
        return found


def make_inputs(folder: Path, rows: int, models: int = 3) -> list[str]:
    """`models` results files of `rows` rows (ids shuffled per model) and the standard, in `folder`."""
    rng = np.random.default_rng(11)
    names = []
    for m in range(models):
        frame = pl.DataFrame({"id": rng.permutation(rows), "recall": rng.random(rows)})
        frame.write_parquet(folder / f"results_m{m}.parquet")
        names.append(f"results_m{m}.parquet")
    (folder / "k.yaml").write_text(CONFIG)
    return names


def command(names: list[str], output: str, memory_limit: str) -> list[str]:
    out = OUTPUTS[output]
    return [sys.executable, "-m", "kscore", "difficulty", *names, "-c", "k.yaml", "-o", out, "--quiet",
            "--memory-limit", memory_limit]  # fmt: skip


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("KSCORE_")}


def _clean(folder: Path) -> None:
    for name in ("out.parquet", "out.csv", "out.csv.kscore.json"):
        (folder / name).unlink(missing_ok=True)
    if (folder / "out").exists():
        import shutil

        shutil.rmtree(folder / "out")


def run_length(folder: Path, names: list[str], output: str, memory_limit: str) -> float:
    """Seconds an uninterrupted run takes (it must succeed)."""
    _clean(folder)
    started = time.perf_counter()
    subprocess.run(
        command(names, output, memory_limit), cwd=folder, env=_env(), check=True, stdout=subprocess.DEVNULL
    )
    return time.perf_counter() - started


def state_of(folder: Path, output: str, rows: int) -> str:
    """complete, absent, or a description of what else the run left."""
    from kscore.io import read_kscore_metadata, scan_output

    path = folder / OUTPUTS[output].rstrip("/")
    sidecar = folder / "out.csv.kscore.json"
    if not path.exists():
        return "absent" if not sidecar.exists() else "a sidecar without its table"
    try:
        metadata = read_kscore_metadata(path)
        height = scan_output(path).select(pl.len()).collect().item()
    except Exception as exc:
        return f"unreadable ({type(exc).__name__})"
    if metadata.get("command") != "difficulty":
        return "without kscore's metadata"
    return "complete" if height == rows else f"{height} of {rows} rows"


def probe(folder: Path, names: list[str], output: str, number: int, delay: float, rows: int,
          memory_limit: str) -> Probe:  # fmt: skip
    """One run of `output` stopped by SIGINT (even `number`) or SIGTERM (odd) after `delay` s."""
    _clean(folder)
    which = signal.SIGINT if number % 2 == 0 else signal.SIGTERM
    process = subprocess.Popen(
        command(names, output, memory_limit), cwd=folder, env=_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(which)
    _, stderr = process.communicate(timeout=300)
    temporaries = sorted(p.name for p in folder.rglob("*") if ".kscore-" in p.name)
    return Probe(
        output, which.name, round(delay, 3), process.returncode, stderr.splitlines(),
        state_of(folder, output, rows), temporaries,
    )  # fmt: skip


def moments(length: float, count: int, seed: int) -> list[float]:
    """`count` seeded delays spread over a run of `length` seconds (and a little past its end)."""
    rng = np.random.default_rng(seed)
    return sorted(rng.uniform(0.05 * length, 1.05 * length, count).tolist())
