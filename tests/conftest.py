"""Shared fixtures: small result tables on disk and a runner for the real `kscore` entry point."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
CONFIGS = ROOT / "configs"

WORKED_EXAMPLE_YAML = """\
id_column: id
metrics:
  - {name: f1, direction: higher_is_better, weight: 2}
  - {name: latency_ms, direction: lower_is_better}
"""


def worked_example() -> pl.DataFrame:
    """The SPEC §2 worked example (one model)."""
    return pl.DataFrame(
        {
            "id": [10, 11, 12, 13, 14],
            "f1": [0.92, 0.40, 0.75, 0.10, 0.66],
            "latency_ms": [120, 340, 90, 500, 200],
        }
    )


def run_kscore(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None):
    """Run `python -m kscore ARGS` as a user would; returns the CompletedProcess."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KSCORE_")}
    full_env.update({"NO_COLOR": "1", "COLUMNS": "200"})
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "kscore", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with the worked example as two model files and its standard as kscore.yaml."""
    example = worked_example()
    example.write_csv(tmp_path / "results_a.csv")
    # Model b: the same datapoints in another order, with other values, as Parquet.
    example.with_columns(pl.col("f1").reverse()).reverse().write_parquet(tmp_path / "results_b.parquet")
    (tmp_path / "kscore.yaml").write_text(WORKED_EXAMPLE_YAML)
    return tmp_path
