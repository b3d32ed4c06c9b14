from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

import kscore
from kscore.core.comparison import compare_models
from kscore.errors import InputError
from kscore.io import write_table_atomic
from kscore.summaries import compare_summary

from .conftest import run_kscore


def two_models() -> pl.DataFrame:
    """Hand-made: ids 1-3 worse in b, 4 better, 5 equal, 6 within the margin, 7 only a, 8 only b."""
    a = [0.1, 0.2, 0.0, 0.9, 0.5, 0.50, 0.3, None]
    b = [0.6, 0.9, 0.95, 0.1, 0.5, 0.55, None, 0.7]
    mean = [
        (x + y) / 2 if x is not None and y is not None else (x if y is None else y)
        for x, y in zip(a, b, strict=True)
    ]
    return pl.DataFrame(
        {
            "id": list(range(1, 9)),
            "difficulty_score": mean,  # 0.35, 0.55, 0.475, 0.5, 0.5, 0.525, 0.3, 0.7
            "n_models": [2, 2, 2, 2, 2, 2, 1, 1],
            "difficulty_score_a": a,
            "difficulty_score_b": b,
        }
    )


def test_counts_on_a_hand_made_file():
    result = compare_models(two_models(), "a", "b", margin=0.1)
    assert result.counts == {
        "regression": 3,
        "improvement": 1,
        "unchanged": 2,
        "only_baseline": 1,
        "only_candidate": 1,
    }
    assert result.common_failures == 0
    assert compare_models(two_models(), "a", "b", common_failure_threshold=0.5).common_failures == 3
    assert result.top_regressions(2)["id"].to_list() == [3, 2]
    statuses = dict(result.table.select("id", "status").iter_rows())
    assert statuses[6] == "unchanged" and statuses[7] == "only_baseline" and statuses[8] == "only_candidate"


def test_margin_zero_counts_any_increase():
    result = compare_models(two_models(), "a", "b")
    assert result.regressions == 4 and result.improvements == 1  # id 6 (+0.05) now counts


def test_unknown_model_lists_the_models():
    with pytest.raises(InputError, match=r"unknown model 'c' \(this file holds: a, b\)"):
        compare_models(two_models(), "a", "c")


@pytest.fixture
def difficulty_file(tmp_path: Path) -> Path:
    path = tmp_path / "d.parquet"
    write_table_atomic(two_models(), path, {"standard": {"id_column": "id", "scope": "joint"}})
    return path


def compare_ab(difficulty_file: Path, *args: str):
    """`kscore compare FILE --baseline a --candidate b ARGS`."""
    return run_kscore("compare", str(difficulty_file), "--baseline", "a", "--candidate", "b", *args)


@pytest.mark.parametrize(("limit", "code"), [(4, 0), (5, 0), (3, 1)])  # at, below (more room), above
def test_regression_gate(difficulty_file: Path, limit: int, code: int):
    result = compare_ab(
        difficulty_file,
        "--max-regressions",
        str(limit),
        "--json",
    )
    assert result.returncode == code, result.stderr
    gate = json.loads(result.stdout)["gates"][0]
    assert gate == {"name": "regressions", "limit": limit, "value": 4, "passed": code == 0}
    if code:
        assert "gate failed: regressions 4 > max 3 (over by 1)" in result.stderr


@pytest.mark.parametrize(("limit", "code"), [(3, 0), (4, 0), (2, 1)])  # at, below, above
def test_common_failure_gate(difficulty_file: Path, limit: int, code: int):
    result = compare_ab(
        difficulty_file, "--common-failure-threshold", "0.5", "--max-common-failures", str(limit)
    )
    assert result.returncode == code, result.stderr
    if code:
        assert "gate failed: common_failures 3 > max 2 (over by 1)" in result.stderr


def test_no_gate_exits_0_and_json_equals_the_library(difficulty_file: Path, tmp_path: Path):
    out = tmp_path / "cmp.parquet"
    result = compare_ab(
        difficulty_file,
        "--margin",
        "0.1",
        "--json",
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    expected = compare_summary(compare_models(two_models(), "a", "b", margin=0.1), top=20)
    printed = json.loads(result.stdout)
    assert {k: printed.pop(k) for k in ("kscore_version", "command", "output")} == {
        "kscore_version": kscore.__version__,
        "command": "compare",
        "output": str(out),
    }
    assert printed == json.loads(json.dumps({**expected, "warnings": [], "notes": []}))
    written = pl.read_parquet(out)
    assert written.columns == ["id", "baseline", "candidate", "delta", "status"] and written.height == 8
    assert "note:" not in result.stderr  # scope: joint


def test_unknown_model_exits_2(difficulty_file: Path):
    result = run_kscore("compare", str(difficulty_file), "--baseline", "a", "--candidate", "zz")
    assert result.returncode == 2
    assert result.stderr.strip() == (f"error: {difficulty_file}: unknown model 'zz' (this file holds: a, b)")


def test_ci_shell_script_branches_on_the_exit_code(workdir: Path):
    """difficulty, then compare with a gate, as a CI job would run them."""
    (workdir / "kscore.yaml").write_text(
        "metrics: [{name: f1, direction: HIB, weight: 2}, {name: latency_ms, direction: LIB}]\nscope: joint\n"
    )
    script = workdir / "ci.sh"
    script.write_text(
        f"""set -u
kscore() {{ "{sys.executable}" -m kscore "$@"; }}
kscore difficulty results_a.csv results_b.parquet -o scores.parquet --json > /dev/null || exit 10
kscore compare scores.parquet --baseline a --candidate b --max-regressions 0 > /dev/null 2> gate.txt
case $? in
  0) echo "gate passed" ;;
  1) echo "gate failed: $(cat gate.txt)" ;;
  *) echo "usage error"; exit 2 ;;
esac
kscore compare scores.parquet --baseline a --candidate b --max-regressions 100 > /dev/null \
  && echo "loose gate passed"
"""
    )
    result = subprocess.run(["bash", str(script)], cwd=workdir, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("gate failed: error: gate failed: regressions")
    assert lines[1] == "loose gate passed"


def test_per_model_scope_prints_the_note(workdir: Path):
    assert (
        run_kscore(
            "difficulty", "results_a.csv", "results_b.parquet", "-o", "s.parquet", cwd=workdir
        ).returncode
        == 0
    )
    result = run_kscore("compare", "s.parquet", "--baseline", "a", "--candidate", "b", "--json", cwd=workdir)
    assert result.returncode == 0
    assert "note: this file was made with scope: per_model" in result.stderr
    assert "scope: joint" in json.loads(result.stdout)["notes"][0]
