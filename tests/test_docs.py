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


def readme_ci_scripts() -> list[str]:
    section = (ROOT / "README.md").read_text().split("## In CI", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, re.S)


def test_the_readme_has_both_ci_recipes():
    scripts = readme_ci_scripts()
    assert len(scripts) == 2 and all("set -euo pipefail" in s for s in scripts)
    assert "--scale-from scores_main.parquet" in scripts[0]
    assert "kscore compare scores_main.parquet scores_branch.parquet" in scripts[0]


@pytest.mark.parametrize("recipe", [0, 1])
@pytest.mark.parametrize("regressed", [0, 150])
def test_the_readmes_ci_recipes_run_as_written_and_gate(tmp_path: Path, recipe: int, regressed: int):
    """Each bash block of the README's "In CI" section, run by bash as it stands (kscore on the
    path): main's model, and a branch whose f1 dropped on `regressed` datapoints."""
    import subprocess
    import sys

    import numpy as np
    import polars as pl

    rng = np.random.default_rng(1)
    main = pl.DataFrame({"id": np.arange(400), "f1": rng.random(400), "latency_ms": rng.random(400)})
    worse = main.with_columns(
        f1=pl.when(pl.col("id") < regressed).then(pl.col("f1") - 0.5).otherwise(pl.col("f1"))
    )
    main.write_parquet(tmp_path / "results_main.parquet")
    worse.write_parquet(tmp_path / "results_branch.parquet")
    (tmp_path / "kscore.yaml").write_text(
        "metrics: [{name: f1, direction: HIB, weight: 2}, {name: latency_ms, direction: LIB}]\nscope: joint\n"
    )
    (tmp_path / "ci.sh").write_text(readme_ci_scripts()[recipe])
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSCORE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    done = subprocess.run(
        ["bash", "ci.sh"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
    )
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if regressed:
        assert done.returncode == 1, done.stdout + done.stderr
        assert last == "kscore: too many regressions"
    else:
        assert done.returncode == 0, done.stdout + done.stderr
        assert last == "kscore: no more regressions than the gate allows"


@pytest.mark.slow
def test_the_readmes_labelling_rounds_run_as_written(tmp_path: Path):
    """The README's "Labelling rounds" block, run by bash on the sample split in two rounds: round 2
    places round 1's rows where round 1 had them, and selects around the labeled batch."""
    import subprocess
    import sys

    import polars as pl

    section = (ROOT / "README.md").read_text().split("## Labelling rounds", 1)[1].split("\n## ", 1)[0]
    (script,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    embeddings = pl.read_parquet(ROOT / "sample_data" / "embeddings.parquet")
    later = (pl.col("split") == "train") & (pl.col("id") % 3 == 0)  # train rows that arrive in round 2
    embeddings.filter(~later).write_parquet(tmp_path / "round1.parquet")
    embeddings.write_parquet(tmp_path / "round2.parquet")
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSCORE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    results = sorted(str(p) for p in (ROOT / "sample_data").glob("results_*.csv"))
    config = str(ROOT / "configs" / "quality_standard.yaml")
    subprocess.run(
        ["kscore", "difficulty", *results, "-c", config, "-o", "difficulty_scores.parquet", "-q"],
        cwd=tmp_path, env=env, check=True, timeout=300,
    )  # fmt: skip
    done = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    first = pl.read_parquet(tmp_path / "round1_scores.parquet").select("id", "map_x", "map_y")
    second = pl.read_parquet(tmp_path / "round2_scores.parquet").select("id", "map_x", "map_y")
    joined = first.join(second, on="id", suffix="_2")
    assert joined.height == first.height
    assert joined.select(
        ((pl.col("map_x") == pl.col("map_x_2")) & (pl.col("map_y") == pl.col("map_y_2"))).all()
    ).item()
    picks1 = set(pl.read_csv(tmp_path / "picks1.csv").get_column("id").to_list())
    picks2 = set(pl.read_csv(tmp_path / "picks2.csv").get_column("id").to_list())
    assert len(picks1) == len(picks2) == 50 and not picks1 & picks2
    assert (tmp_path / "round2.html").stat().st_size > 10_000
