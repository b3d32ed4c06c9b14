"""Golden outputs: every command's results on the sample data and small generated inputs, as 0.6.3
wrote them, kept under tests/golden/ and compared exactly by tests/test_golden.py.

They are the oracle that does not come from the code under test: a change that moves every path's
output the same way (column order, dtypes, metadata, JSON keys or rounding, CSV float text, the
report's bytes) fails here. Regenerate them only on purpose, in a commit that says why:

    python -m tests.golden_cases

What is compared, per case: the `--json` summary on stdout, and every output file: a Parquet file as
its decoded table (schema and values, exactly) plus kscore's metadata; any other file byte for byte.
kscore's version is replaced by `{VERSION}` wherever it appears, so a version bump alone changes
nothing. Floats are compared exactly, with two exceptions that say why: the PCA map (LAPACK and FFTW
pick their kernels by CPU, so the last bits may differ on another machine: relative 1e-9), and the
UMAP map (numba compiles its fastmath loops for the host CPU, and its optimisation amplifies a last-
bit difference: exact on the CPU that wrote the goldens, structure only elsewhere). Select and report
read the stored UMAP output as their input, so their goldens are exact on every machine. `plot` has
no golden: a PNG's bytes belong to matplotlib and FreeType.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = ROOT / "tests" / "golden"
SAMPLE_FILES = [
    "sample_data/results_forest.csv",
    "sample_data/results_knn.csv",
    "sample_data/results_logreg.csv",
    "sample_data/datapoints.csv",
    "sample_data/embeddings.parquet",
    "sample_data/detection/results_accurate.csv",
    "sample_data/detection/results_fast.csv",
    "configs/quality_standard.yaml",
    "configs/multiclass.yaml",
    "configs/object_detection.yaml",
]
RESULTS = ["results_forest.csv", "results_knn.csv", "results_logreg.csv"]
UMAP_OUTPUT = "embed_umap.parquet"


@dataclass(frozen=True)
class Case:
    """One command run: its arguments (relative to a work folder holding the inputs) and outputs."""

    name: str
    args: list[str]
    outputs: list[str] = field(default_factory=list)
    float_rtol: float = 0.0
    machine_bound: bool = False
    needs: str | None = None  # the case whose output this one reads


def _rank_standard() -> str:
    return (
        "id_column: item\n"
        "normalization: rank\n"
        "metrics:\n"
        "  - {name: loss, direction: lower_is_better, weight: 3}\n"
        "  - {name: score, direction: higher_is_better}\n"
    )


def _binary_standard() -> str:
    return (
        "id_column: id\n"
        "task:\n"
        "  type: binary_classification\n"
        "  ground_truth: y\n"
        "  inference: p\n"
        "  threshold: 0.4\n"
        "metrics:\n"
        "  - {name: margin, direction: higher_is_better}\n"
    )


def write_generated_inputs(folder: Path) -> None:
    """Small inputs made here, so the goldens cover what the sample does not: a long file with
    several models, rank normalization, missing values, a binary task, 2D embeddings."""
    rng = np.random.default_rng(7)
    rows = []
    for model in ("alpha", "beta", "gamma"):
        for item in range(60):
            if model == "gamma" and item % 7 == 0:
                continue  # gamma skipped some items
            loss = round(float(rng.gamma(2.0, 0.5)), 6)
            score = None if item % 11 == 3 else round(float(rng.uniform()), 6)
            rows.append({"model": model, "item": f"it{item:03d}", "loss": loss, "score": score})
    pl.DataFrame(rows).write_csv(folder / "long.csv")
    (folder / "rank.yaml").write_text(_rank_standard())

    ids = np.arange(80)
    truth = (rng.uniform(size=80) < 0.4).astype(int)
    for model in ("m1", "m2"):
        prob = np.clip(truth * 0.6 + rng.normal(0.2, 0.25, size=80), 0.0, 1.0).round(6)
        margin = (rng.normal(size=80)).round(6)
        pl.DataFrame({"id": ids, "y": truth, "p": prob, "margin": margin}).write_csv(
            folder / f"binary_{model}.csv"
        )
    (folder / "binary.yaml").write_text(_binary_standard())

    centres = np.array([[0.0, 0.0], [3.0, 1.0], [-2.0, 2.5]])
    group = rng.integers(0, 3, size=300)
    points = (centres[group] + rng.normal(scale=0.6, size=(300, 2))).round(6)
    split = np.where(rng.uniform(size=300) < 0.3, "val", "train")
    pl.DataFrame(
        {"id": np.arange(300), "split": split, "e_0": points[:, 0], "e_1": points[:, 1]}
    ).write_parquet(folder / "points2d.parquet")
    pl.DataFrame({"id": [5, 17, 42]}).write_csv(folder / "labeled.csv")


CASES = [
    Case(
        "difficulty_explain_parquet",
        [
            "difficulty",
            *RESULTS,
            "-c",
            "quality_standard.yaml",
            "--explain",
            "--datapoints",
            "datapoints.csv",
            "-o",
            "difficulty.parquet",
            "--json",
        ],
        ["difficulty.parquet"],
    ),
    Case(
        "difficulty_csv",
        [
            "difficulty",
            *RESULTS,
            "-c",
            "quality_standard.yaml",
            "--explain",
            "-o",
            "difficulty.csv",
            "--json",
        ],
        ["difficulty.csv", "difficulty.csv.kscore.json"],
    ),
    Case(
        "difficulty_ndjson",
        [
            "difficulty",
            *RESULTS,
            "-c",
            "quality_standard.yaml",
            "--top",
            "3",
            "-o",
            "difficulty.ndjson",
            "--json",
        ],
        ["difficulty.ndjson", "difficulty.ndjson.kscore.json"],
    ),
    Case(
        "difficulty_multiclass",
        [
            "difficulty",
            *RESULTS,
            "-c",
            "multiclass.yaml",
            "--datapoints",
            "datapoints.csv",
            "-o",
            "multiclass.parquet",
            "--json",
        ],
        ["multiclass.parquet"],
    ),
    Case(
        "difficulty_detection",
        [
            "difficulty",
            "results_accurate.csv",
            "results_fast.csv",
            "-c",
            "object_detection.yaml",
            "--explain",
            "-o",
            "detection.parquet",
            "--json",
        ],
        ["detection.parquet"],
    ),
    Case(
        "difficulty_long_rank",
        [
            "difficulty",
            "long.csv",
            "--model-col",
            "model",
            "-c",
            "rank.yaml",
            "--explain",
            "-o",
            "long.parquet",
            "--json",
        ],
        ["long.parquet"],
    ),
    Case(
        "difficulty_binary",
        [
            "difficulty",
            "m1=binary_m1.csv",
            "m2=binary_m2.csv",
            "-c",
            "binary.yaml",
            "-o",
            "binary.csv",
            "--json",
        ],
        ["binary.csv", "binary.csv.kscore.json"],
    ),
    Case(
        "compare",
        [
            "compare",
            "difficulty.parquet",
            "--baseline",
            "knn",
            "--candidate",
            "logreg",
            "--margin",
            "0.05",
            "-o",
            "compare.parquet",
            "--json",
        ],
        ["compare.parquet"],
        needs="difficulty_explain_parquet",
    ),
    Case(
        "compare_csv",
        [
            "compare",
            "difficulty.csv",
            "--baseline",
            "forest",
            "--candidate",
            "knn",
            "-o",
            "compare.csv",
            "--json",
        ],
        ["compare.csv", "compare.csv.kscore.json"],
        needs="difficulty_csv",
    ),
    Case(
        "embed_none",
        [
            "embed-scores",
            "points2d.parquet",
            "--embedding-prefix",
            "e_",
            "--reducer",
            "none",
            "--train-value",
            "train",
            "-o",
            "embed_none.parquet",
            "--json",
        ],
        ["embed_none.parquet"],
        float_rtol=1e-9,
    ),
    Case(
        "embed_pca",
        [
            "embed-scores",
            "embeddings.parquet",
            "-c",
            "quality_standard.yaml",
            "--difficulty",
            "difficulty.parquet",
            "--reducer",
            "pca",
            "-o",
            "embed_pca.csv",
            "--json",
        ],
        ["embed_pca.csv", "embed_pca.csv.kscore.json"],
        float_rtol=1e-9,
        needs="difficulty_explain_parquet",
    ),
    Case(
        "embed_umap",
        [
            "embed-scores",
            "embeddings.parquet",
            "-c",
            "quality_standard.yaml",
            "--difficulty",
            "difficulty.parquet",
            "-o",
            UMAP_OUTPUT,
            "--json",
        ],
        [UMAP_OUTPUT],
        machine_bound=True,
        needs="difficulty_explain_parquet",
    ),
    *[
        Case(
            f"select_{strategy}",
            [
                "select",
                "golden_umap.parquet",
                "--budget",
                "25",
                "--strategy",
                strategy,
                "--labeled",
                "labeled.csv",
                "-o",
                f"picks_{strategy}.csv",
                "--json",
            ],
            [f"picks_{strategy}.csv", f"picks_{strategy}.csv.kscore.json"],
        )
        for strategy in ("balanced", "typical", "diverse", "top")
    ],
    Case(
        "select_representation",
        [
            "select",
            "golden_umap.parquet",
            "--budget",
            "10",
            "--by",
            "representation_score",
            "--ascending",
            "-o",
            "picks_repr.parquet",
            "--json",
        ],
        ["picks_repr.parquet"],
    ),
    Case(
        "report",
        [
            "report",
            "golden_umap.parquet",
            "difficulty.parquet",
            "--title",
            "golden",
            "-o",
            "report.html",
            "--json",
        ],
        ["report.html"],
        needs="difficulty_explain_parquet",
    ),
    Case("init", ["init", "results_forest.csv", "-o", "standard.yaml", "-q"], ["standard.yaml"]),
    Case("check_config", ["check-config", "quality_standard.yaml", "--json"]),
]


def prepare(work: Path) -> None:
    """Copy the inputs into WORK (flat, so every path a command records is short and relative)."""
    for name in SAMPLE_FILES:
        shutil.copy(ROOT / name, work / Path(name).name)
    # The standard names its embeddings beside the sample; here they sit in the same folder.
    text = (work / "quality_standard.yaml").read_text()
    (work / "quality_standard.yaml").write_text(
        text.replace("../sample_data/embeddings.parquet", "embeddings.parquet")
    )
    write_generated_inputs(work)
    stored = GOLDEN / "embed_umap" / UMAP_OUTPUT
    if stored.exists():
        use_map(stored, work)


def use_map(stored: Path, work: Path) -> None:
    """The stored UMAP output as select's and report's input; the version it records is masked too
    (the report's inputs table shows it)."""
    from kscore.io import read_kscore_metadata

    shutil.copy(stored, work / "golden_umap.parquet")
    MASKED_VERSIONS.add(read_kscore_metadata(stored)["kscore_version"])


def run(case: Case, work: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KSCORE_", "RAY_"))}
    env.update({"NO_COLOR": "1", "COLUMNS": "200", "SOURCE_DATE_EPOCH": "1700000000"})
    return subprocess.run(
        [sys.executable, "-m", "kscore", *case.args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


# Versions masked besides the running kscore's: that of the stored map select and report read.
MASKED_VERSIONS: set[str] = set()
# embed-scores records the versions of its libraries: the environment's, not the computation's.
LIBRARY_VERSIONS = re.compile(r'"versions": \{[^{}]*\}')


def without_version(text: str, version: str) -> str:
    """TEXT with kscore's versions masked, and the library versions embed-scores records."""
    text = LIBRARY_VERSIONS.sub('"versions": "(the environment)"', text)
    for masked in {version, *MASKED_VERSIONS}:
        text = re.sub(rf"(?<![\d.]){re.escape(masked)}(?![\d])", "{VERSION}", text)
    return text


def parquet_metadata(path: Path, version: str) -> dict[str, Any]:
    from kscore.io import read_kscore_metadata

    meta = read_kscore_metadata(path)
    return json.loads(without_version(json.dumps(meta, sort_keys=True), version))


def masked_stdout(case: Case, work: Path, result: subprocess.CompletedProcess, version: str) -> str:
    """The `--json` summary with kscore's versions masked, and an output file's `bytes` counted in
    that file with its versions masked too (the count would otherwise move with the version's
    length: 0.8.9 to 0.8.10 added 3 bytes to the report)."""
    stdout = without_version(result.stdout, version)
    written = [name for name in case.outputs if not name.endswith((".parquet", ".pq"))]
    if written and '"bytes": ' in stdout:
        masked = without_version((work / written[0]).read_text(encoding="utf-8"), version)
        stdout = re.sub(r'"bytes": \d+', f'"bytes": {len(masked.encode())}', stdout, count=1)
    return stdout


def record(case: Case, work: Path, result: subprocess.CompletedProcess, version: str, into: Path) -> None:
    """Write CASE's observed outputs into INTO, in the form compare() reads."""
    into.mkdir(parents=True, exist_ok=True)
    (into / "stdout.txt").write_text(masked_stdout(case, work, result, version))
    for name in case.outputs:
        path = work / name
        if name.endswith((".parquet", ".pq")):
            # one chunk: the same values give the same bytes however the output was cut into row groups
            pl.read_parquet(path).rechunk().write_parquet(into / f"{name}.table.parquet")
            meta = parquet_metadata(path, version)
            (into / f"{name}.meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
        else:
            (into / name).write_bytes(without_version(path.read_text(encoding="utf-8"), version).encode())
    if case.name == "embed_umap":
        shutil.copy(work / UMAP_OUTPUT, into / UMAP_OUTPUT)
        (into / "cpu.json").write_text(json.dumps(host_cpu()) + "\n")


def host_cpu() -> dict[str, str]:
    """What numba compiles for: the goldens of machine-bound cases are exact only on this CPU."""
    from llvmlite import binding

    return {"name": binding.get_host_cpu_name(), "features": binding.get_host_cpu_features().flatten()}


def _floats_close(left: pl.Series, right: pl.Series, rtol: float) -> bool:
    a = left.to_numpy().astype(float)
    b = right.to_numpy().astype(float)
    return bool(np.array_equal(np.isnan(a), np.isnan(b))) and bool(
        np.allclose(a, b, rtol=rtol, atol=0.0, equal_nan=True)
    )


def assert_tables_match(got: pl.DataFrame, want: pl.DataFrame, rtol: float, what: str) -> None:
    assert got.schema == want.schema, f"{what}: schema {got.schema} != {want.schema}"
    assert got.height == want.height, f"{what}: {got.height} rows, golden {want.height}"
    for name in want.columns:
        if rtol and want[name].dtype.is_float():
            assert _floats_close(got[name], want[name], rtol), f"{what}: column {name} differs"
        elif rtol is None:
            continue
        else:
            assert got[name].equals(want[name], check_dtypes=True), f"{what}: column {name} differs"


def _numbers_close(got: Any, want: Any, rtol: float) -> bool:
    if isinstance(want, dict):
        return (
            isinstance(got, dict)
            and got.keys() == want.keys()
            and all(_numbers_close(got[k], want[k], rtol) for k in want)
        )
    if isinstance(want, list):
        return (
            isinstance(got, list)
            and len(got) == len(want)
            and all(_numbers_close(g, w, rtol) for g, w in zip(got, want, strict=True))
        )
    if isinstance(want, float) and isinstance(got, (int, float)):
        return math.isclose(got, want, rel_tol=rtol, abs_tol=1e-6)  # summaries round to 6 places
    return got == want


def assert_text_matches(got: str, want: str, rtol: float, what: str) -> None:
    if not rtol:
        assert got == want, f"{what} differs from its golden"
        return
    if what.endswith((".json", "stdout.txt")):
        assert _numbers_close(json.loads(got), json.loads(want), rtol), f"{what} differs beyond {rtol}"
        return
    got_rows, want_rows = got.splitlines(), want.splitlines()
    assert len(got_rows) == len(want_rows) and got_rows[0] == want_rows[0], f"{what}: rows or header differ"
    for got_row, want_row in zip(got_rows, want_rows, strict=True):
        for a, b in zip(got_row.split(","), want_row.split(","), strict=True):
            if a != b:
                assert math.isclose(float(a), float(b), rel_tol=rtol), f"{what}: {a} != {b}"


def compare(case: Case, work: Path, result: subprocess.CompletedProcess, version: str) -> None:
    """Assert that CASE's outputs in WORK equal its goldens."""
    stored = GOLDEN / case.name
    rtol: float | None = case.float_rtol
    if case.machine_bound and json.loads((stored / "cpu.json").read_text()) != host_cpu():
        rtol = None  # another CPU: the layout may differ; compare the structure only
    stdout = masked_stdout(case, work, result, version)
    if rtol is None:
        assert json.loads(stdout).keys() == json.loads((stored / "stdout.txt").read_text()).keys()
    else:
        assert_text_matches(stdout, (stored / "stdout.txt").read_text(), rtol, f"{case.name} stdout.txt")
    for name in case.outputs:
        path = work / name
        what = f"{case.name}: {name}"
        if name.endswith((".parquet", ".pq")):
            want = pl.read_parquet(stored / f"{name}.table.parquet")
            assert_tables_match(pl.read_parquet(path), want, rtol, what)
            meta = json.loads((stored / f"{name}.meta.json").read_text())
            got_meta = parquet_metadata(path, version)
            if rtol is None:
                assert got_meta.keys() == meta.keys(), what
            else:
                assert _numbers_close(got_meta, meta, rtol), f"{what}: kscore metadata differs"
        else:
            got = without_version(path.read_text(encoding="utf-8"), version)
            if rtol is not None:
                assert_text_matches(got, (stored / name).read_text(encoding="utf-8"), rtol, what)


def main() -> None:
    """Regenerate every golden from the kscore installed in this environment."""
    import tempfile

    from kscore import __version__

    with tempfile.TemporaryDirectory() as temp:
        work = Path(temp)
        shutil.rmtree(GOLDEN, ignore_errors=True)
        GOLDEN.mkdir(parents=True)
        prepare(work)
        for case in CASES:
            if case.name.startswith(("select", "report")) and not (work / "golden_umap.parquet").exists():
                use_map(GOLDEN / "embed_umap" / UMAP_OUTPUT, work)
            result = run(case, work)
            if result.returncode != 0:
                raise SystemExit(f"{case.name}: exit {result.returncode}\n{result.stderr}")
            record(case, work, result, __version__, GOLDEN / case.name)
            print(f"{case.name}: ok")


if __name__ == "__main__":
    main()
