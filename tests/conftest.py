"""Shared fixtures: small result tables on disk and a runner for the real `kscore` entry point."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

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


def require(module: str):
    """`pytest.importorskip`, except under .ci/run (KSCORE_REQUIRE_EXTRAS=1), which installs every
    extra: there a missing package is a broken install, and the tests fail instead of vanishing."""
    import importlib

    if os.environ.get("KSCORE_REQUIRE_EXTRAS") == "1":
        return importlib.import_module(module)
    return pytest.importorskip(module)


def run_kscore(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, stdin: bytes | None = None
):
    """Run `python -m kscore ARGS` as a user would (`stdin`: the bytes piped into it); returns the
    CompletedProcess, its stdout and stderr as text."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("KSCORE_")}
    full_env.update({"NO_COLOR": "1", "COLUMNS": "200"})
    full_env.update(env or {})
    done = subprocess.run(
        [sys.executable, "-m", "kscore", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=stdin is None,  # piped bytes in: the output is read as bytes and decoded here
        input=stdin,
        timeout=300,
    )
    if stdin is not None:
        done.stdout = done.stdout.decode("utf-8", "replace")
        done.stderr = done.stderr.decode("utf-8", "replace")
    return done


@pytest.fixture
def tiny_overhead(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plan as if the interpreter took no memory and batches could be tiny: a limit of a few hundred
    KB then cuts 3000-row inputs into many id ranges and many batches, as 4 GiB cuts 100M rows."""
    import kscore.plan.difficulty as partitioned

    monkeypatch.setattr(partitioned, "BASE_BYTES", 0)
    monkeypatch.setattr(partitioned, "_MIN_BATCH", 100)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A folder with the worked example as two model files and its standard as kscore.yaml."""
    example = worked_example()
    example.write_csv(tmp_path / "results_a.csv")
    # Model b: the same datapoints in another order, with other values, as Parquet.
    example.with_columns(pl.col("f1").reverse()).reverse().write_parquet(tmp_path / "results_b.parquet")
    (tmp_path / "kscore.yaml").write_text(WORKED_EXAMPLE_YAML)
    return tmp_path


class S3:
    """An S3 stand-in (moto's server on 127.0.0.1, in a thread) and a bucket in it."""

    bucket = "kscore-test"
    # moto takes any credentials; kscore finds these where a user's would be (the environment)
    credentials: ClassVar[dict[str, str]] = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.options = {"aws_endpoint_url": endpoint, "aws_region": "us-east-1"}

    def url(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def filesystem(self):
        from pyarrow import fs

        host = self.endpoint.removeprefix("http://")
        return fs.S3FileSystem(
            endpoint_override=host, scheme="http", region="us-east-1", allow_bucket_creation=True
        )

    def upload(self, local: Path, key: str) -> str:
        with self.filesystem().open_output_stream(f"{self.bucket}/{key}") as sink:
            sink.write(local.read_bytes())
        return self.url(key)

    def keys(self, prefix: str) -> list[str]:
        from pyarrow import fs

        selector = fs.FileSelector(f"{self.bucket}/{prefix}", allow_not_found=True, recursive=True)
        infos = self.filesystem().get_file_info(selector)
        return sorted(i.path.removeprefix(f"{self.bucket}/") for i in infos if i.type == fs.FileType.File)


@pytest.fixture(scope="session")
def s3():
    """An S3 server on 127.0.0.1 for the session, stopped at its end; the credentials set in the
    environment meanwhile."""
    server_module = require("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # not a line per request
    require("pyarrow.fs")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    saved = {k: os.environ.get(k) for k in S3.credentials}
    os.environ.update(S3.credentials)
    try:
        host, port = server.get_host_and_port()
        store = S3(f"http://{host}:{port}")
        store.filesystem().create_dir(S3.bucket)
        yield store
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        server.stop()
