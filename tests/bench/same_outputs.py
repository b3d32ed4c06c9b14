"""Do two kscore versions write the same outputs? The refactor's check (issue: one layered package).

Runs every golden case (tests/golden_cases.py) plus larger ones with the kscore of this checkout and
with an older one, side by side on this machine, and compares what they wrote: decoded tables and
kscore's metadata exactly, every other file byte for byte, the `--json` summaries exactly, kscore's
version masked. The larger cases: a 1M-row partitioned `difficulty` (`--memory-limit 356MiB`, CSV
and Parquet outputs), `embed-scores` with UMAP on 6,000 rows (the transform path beyond the fit
sample's 4,096-row batches), and, with `--ray-address`, both commands with `--engine ray`.

The old version is installed in a virtual environment of its own (not editable: an editable install
of this checkout would win over PYTHONPATH, and worker processes import kscore afresh):

    git worktree add /tmp/kscore-old 53cdd5d          # 0.6.3
    python -m venv /tmp/old-venv && /tmp/old-venv/bin/pip install /tmp/kscore-old "ray[data]"
    python tests/bench/same_outputs.py --old-python /tmp/old-venv/bin/python \
        [--ray-address ADDR|local|two-node]

A cluster's workers import the kscore they were started with, so to compare versions on Ray give
`local` (each run starts a Ray instance of its own), `two-node` (each version's runs go to a
two-node `ray.cluster_utils.Cluster` started with that version's interpreter, on this machine), or
run the script once per version against a cluster started with that version.
"""

from __future__ import annotations

import argparse
import contextlib
import filecmp
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests.golden_cases import CASES, UMAP_OUTPUT, Case, prepare, record, use_map

ROOT = Path(__file__).resolve().parents[2]


def larger_cases(work: Path, ray_address: str | None) -> list[Case]:
    """Write the larger inputs into WORK and list their cases."""
    subprocess.run(
        [
            sys.executable,
            str(ROOT / "tests/bench/make_difficulty_data.py"),
            str(work / "big"),
            "--rows",
            "1000000",
            "--models",
            "3",
            "--format",
            "parquet",
        ],
        check=True,
    )
    rng = np.random.default_rng(3)
    centres = rng.normal(scale=4.0, size=(6, 16))
    vectors = centres[rng.integers(0, 6, 6000)] + rng.normal(size=(6000, 16))
    pl.DataFrame(
        {
            "id": np.arange(6000),
            "split": np.where(rng.uniform(size=6000) < 0.25, "val", "train"),
            "embedding": vectors.astype(np.float32),
        }
    ).write_parquet(work / "vectors.parquet")
    big = [
        "big/results_model0.parquet",
        "big/results_model1.parquet",
        "big/results_model2.parquet",
        "-c",
        "big/kscore.yaml",
    ]
    cases = [
        Case(
            "big_difficulty_parquet",
            ["difficulty", *big, "--explain", "--memory-limit", "356MiB", "-o", "big.parquet", "--json"],
            ["big.parquet"],
        ),
        Case(
            "big_difficulty_csv",
            ["difficulty", *big, "--memory-limit", "356MiB", "-o", "big.csv", "--json"],
            ["big.csv", "big.csv.kscore.json"],
        ),
        Case(
            "embed_6000",
            [
                "embed-scores",
                "vectors.parquet",
                "--embedding-col",
                "embedding",
                "--fit-sample",
                "2000",
                "-o",
                "vectors_scores.parquet",
                "--json",
            ],
            ["vectors_scores.parquet"],
        ),
    ]
    if ray_address:
        ray = ["--engine", "ray", *(["--ray-address", RAY_ADDRESS] if ray_address != "local" else [])]
        cases += [
            Case(
                "ray_difficulty", ["difficulty", *big, *ray, "-o", "ray.parquet", "--json"], ["ray.parquet"]
            ),
            Case(
                "ray_embed",
                [
                    "embed-scores",
                    "vectors.parquet",
                    "--embedding-col",
                    "embedding",
                    "--fit-sample",
                    "2000",
                    *ray,
                    "-o",
                    "ray_scores.parquet",
                    "--json",
                ],
                ["ray_scores.parquet"],
            ),
        ]
    return cases


RAY_ADDRESS = "{ray-address}"  # in a case's arguments: the cluster of the version that runs it

TWO_NODES = """
from ray.cluster_utils import Cluster
cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
cluster.add_node(num_cpus=1)
cluster.wait_for_nodes()
print(cluster.address, flush=True)
input()
cluster.shutdown()
"""


@contextlib.contextmanager
def two_node_cluster(python: str) -> Iterator[str]:
    """A two-node Ray cluster on this machine whose workers run `python` (and its kscore)."""
    process = subprocess.Popen(
        [python, "-c", TWO_NODES], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd="/"
    )
    try:
        address = process.stdout.readline().strip()  # type: ignore[union-attr]
        print(f"{python}: a two-node cluster at {address}")
        yield address
    finally:
        process.communicate("\n", timeout=120)


def run_with(python: str, case: Case, work: Path, address: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KSCORE_", "RAY_", "PYTHON"))}
    env.update({"NO_COLOR": "1", "COLUMNS": "200", "SOURCE_DATE_EPOCH": "1700000000"})
    args = [address if a == RAY_ADDRESS and address else a for a in case.args]
    return subprocess.run(
        [python, "-m", "kscore", *args], cwd=work, env=env, capture_output=True, text=True, timeout=3600
    )


def version_of(python: str) -> str:
    """The kscore version `python` imports, saying from where (a check that it is the one meant)."""
    code = "import kscore; print(kscore.__version__, kscore.__file__)"
    found = subprocess.run([python, "-c", code], capture_output=True, text=True, check=True, cwd="/")
    version, where = found.stdout.split()
    print(f"{python}: kscore {version} from {where}")
    return version


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old-python", required=True, help="an interpreter with the older kscore installed")
    parser.add_argument(
        "--ray-address",
        help="also compare --engine ray runs on this cluster; 'local': each run starts its own Ray "
        "instance, whose workers then import that run's kscore; 'two-node': each version's runs go to "
        "a two-node cluster started with its interpreter",
    )
    parser.add_argument("--keep", type=Path, help="keep the recorded outputs here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR", "/tmp")) as temp:
        base = Path(temp)
        template = base / "inputs"
        template.mkdir()
        prepare(template)
        cases = [*CASES, *larger_cases(template, args.ray_address)]
        failures = []
        for label, python in (("old", args.old_python), ("new", sys.executable)):
            version = version_of(python)
            work = base / label
            shutil.copytree(template, work)
            cluster = two_node_cluster(python) if args.ray_address == "two-node" else None
            address = cluster.__enter__() if cluster else args.ray_address
            for case in cases:
                if case.name.startswith(("select", "report")):
                    # Both read the same map: the one the old version wrote in this run.
                    use_map(base / "old" / UMAP_OUTPUT, work)
                result = run_with(python, case, work, address)
                if result.returncode != 0:
                    failures.append(f"{label} {case.name}: exit {result.returncode}: {result.stderr[-500:]}")
                    continue
                record(case, work, result, version, base / f"{label}-out" / case.name)
            if cluster:
                cluster.__exit__(None, None, None)
            print(f"{label} ({version}): ran {len(cases)} cases")
        differ = []
        for case in cases:
            # The raw UMAP output carries the version; its table and metadata are compared instead.
            compared = filecmp.dircmp(
                base / "old-out" / case.name, base / "new-out" / case.name, ignore=[UMAP_OUTPUT]
            )
            files = compared.common_files
            _, mismatch, errors = filecmp.cmpfiles(compared.left, compared.right, files, shallow=False)
            missing = compared.left_only + compared.right_only
            if mismatch or errors or missing:
                differ.append(f"{case.name}: differ {mismatch + errors}, only on one side {missing}")
        if args.keep:
            shutil.copytree(base, args.keep, dirs_exist_ok=True)
        for line in failures + differ:
            print(line)
        print(f"{len(cases) - len(differ)} of {len(cases)} cases give the same outputs")
        raise SystemExit(1 if failures or differ else 0)


if __name__ == "__main__":
    main()
