"""The README cannot drift from the CLI: every command and option must appear in it."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import typer.main

from kscore.cli import app

from .conftest import ROOT


def test_every_command_and_option_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    group = typer.main.get_command(app)
    missing = []
    for name, command in group.commands.items():  # type: ignore[attr-defined]
        if f"kscore {name}" not in readme:
            missing.append(f"command {name}")
        for param in command.params:
            for option in param.opts:
                if option.startswith("-") and option not in readme:
                    missing.append(f"{name} {option}")
    assert missing == []


def test_readme_starts_with_the_two_quick_start_commands():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "kscore difficulty sample_data/" in quick
    assert "pytest" in quick


@pytest.mark.slow
def test_readme_library_example_runs(monkeypatch, tmp_path: Path):
    import shutil

    import polars as pl

    readme = (ROOT / "README.md").read_text()
    start = readme.index("```python\nimport polars as pl\nimport kscore")
    code = readme[start + len("```python\n") :]
    code = code[: code.index("```")]
    for folder in ("sample_data", "configs"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["enriched"].height == 1797
    assert namespace["summary"]["command"] == "difficulty"
    written = pl.read_parquet(tmp_path / "difficulty_scores.parquet")
    assert written["difficulty_score"].equals(namespace["table"]["difficulty_score"])
    assert namespace["picks"].height == 20 and not set(namespace["picks"]["id"]) & {0, 1, 2}
    assert namespace["page"]["output"] == "report.html" and (tmp_path / "report.html").is_file()
    assert namespace["log_density"].shape == namespace["local"].shape


@pytest.mark.slow
def test_the_readmes_map_commands_make_the_bundled_picture(tmp_path: Path):
    """The README's picture is the sample's: its own commands, run as they stand, make a picture
    of the same size (the bundled one is regenerated with them)."""
    import shutil
    import struct
    import subprocess
    import sys

    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    (block,) = [b for b in blocks if "sample_data/map.png" in b]
    shutil.copytree(ROOT / "sample_data", tmp_path / "sample_data")
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    (tmp_path / "sample_data" / "map.png").unlink()
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr

    def size(path: Path) -> tuple[int, int]:
        return struct.unpack(">II", path.read_bytes()[16:24])

    assert size(tmp_path / "sample_data" / "map.png") == size(ROOT / "sample_data" / "map.png") == (1000, 750)


@pytest.mark.slow
def test_the_quick_starts_report_commands_write_the_report(tmp_path: Path):
    """The quick start's road to a first report, run as it stands (the opening command left out:
    no desktop here)."""
    import json
    import shutil
    import subprocess
    import sys

    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    (block,) = [b for b in blocks if "kscore report && xdg-open" in b]
    block = block.replace("&& xdg-open report.html", "--json > summary.json")
    shutil.copytree(ROOT / "sample_data", tmp_path / "sample_data")
    shutil.copytree(ROOT / "configs", tmp_path / "configs")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["points_total"] == 1797 and summary["bytes"] <= 2_000_000  # the sample's <= 2 MB
    assert summary["sections"][:3] == ["summary", "map", "hardest"]


def test_the_readme_is_for_users_short_and_without_the_projects_own_words():
    """At most about 450 lines, and no word of how the project is run (issues, sessions, the spec):
    measurement notes and their history live in tests/bench/README.md and the CHANGELOG."""
    readme = (ROOT / "README.md").read_text()
    assert readme.count("\n") <= 450, f"{readme.count(chr(10))} lines"
    found = re.findall(r"\b(issues?|sessions?|spec|SPEC)\b", readme, re.I)
    assert found == [], found


def test_the_readme_says_what_each_score_means():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## What each score means", 1)[1].split("\n## ", 1)[0]
    for column in (
        "difficulty_score",
        "representation_score",
        "potential_difficulty_score",
        "local_difficulty",
    ):
        assert f"`{column}`" in section
    for peer in ("Kolena", "FiftyOne", "cleanlab"):
        assert peer in section
