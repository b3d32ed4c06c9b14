"""Every command's outputs against the goldens 0.6.3 wrote (tests/golden_cases.py says what and how)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kscore import __version__
from tests.golden_cases import CASES, Case, compare, prepare, run

BY_NAME = {case.name: case for case in CASES}


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("golden")
    prepare(folder)
    return folder


@pytest.fixture(scope="module")
def outcomes() -> dict[str, subprocess.CompletedProcess]:
    return {}


def outcome(case: Case, work: Path, outcomes: dict) -> subprocess.CompletedProcess:
    """Run CASE once (after the case whose output it reads)."""
    if case.needs:
        outcome(BY_NAME[case.needs], work, outcomes)
    if case.name not in outcomes:
        outcomes[case.name] = run(case, work)
    return outcomes[case.name]


@pytest.mark.parametrize(
    "case",
    [pytest.param(case, marks=[pytest.mark.slow] if case.machine_bound else []) for case in CASES],
    ids=lambda case: case.name,
)
def test_outputs_equal_the_goldens(case: Case, work: Path, outcomes: dict):
    result = outcome(case, work, outcomes)
    assert result.returncode == 0, result.stderr
    compare(case, work, result, __version__)


def test_a_changed_output_fails_the_comparison(work: Path, outcomes: dict):
    case = BY_NAME["difficulty_csv"]
    result = outcome(case, work, outcomes)
    output = work / "difficulty.csv"
    original = output.read_text()
    try:
        output.write_text(original.replace("0.5", "0.50000001", 1))
        with pytest.raises(AssertionError, match="differs"):
            compare(case, work, result, __version__)
    finally:
        output.write_text(original)
