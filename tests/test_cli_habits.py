"""The command line as its users expect it (issue 13): formats by extension, messages that suggest
the fix, streams, pipes, help, JSON shape and the README's CI snippet, each through the real entry
point."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

import kscore
from kscore.io import read_kscore_metadata

from .conftest import CONFIGS, SAMPLE, run_kscore

SAMPLE_RESULTS = sorted(str(p) for p in SAMPLE.glob("results_*.csv"))
STANDARD = str(CONFIGS / "quality_standard.yaml")


@pytest.fixture(scope="module")
def sample_scores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`kscore difficulty` on the sample with the bundled standard, as Parquet."""
    out = tmp_path_factory.mktemp("sample") / "d.parquet"
    result = run_kscore("difficulty", *SAMPLE_RESULTS, "-c", STANDARD, "-o", str(out))
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def explained_scores(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same with `--explain`: the reference every output format is read against, made once."""
    out = tmp_path_factory.mktemp("explained") / "d.parquet"
    result = run_kscore("difficulty", *SAMPLE_RESULTS, "-c", STANDARD, "-o", str(out), "--explain")
    assert result.returncode == 0, result.stderr
    return out


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, stderr
    return lines[0]


# 1. the first error a newcomer meets


def test_a_missing_metric_names_the_files_real_columns(tmp_path: Path):
    assert run_kscore("init", cwd=tmp_path).returncode == 0
    result = run_kscore("difficulty", str(SAMPLE / "results_forest.csv"), "-c", "kscore.yaml", cwd=tmp_path)
    assert result.returncode == 2
    assert error_line(result.stderr).endswith(
        "results_forest.csv: missing column 'accuracy' (columns: id, label, predicted, correct, "
        "true_class_prob, log_loss)"
    )
    (tmp_path / "typo.yaml").write_text(
        "metrics: [{name: Correct, direction: HIB}, {name: log_los, direction: LIB}]"
    )
    for path in (str(SAMPLE / "results_forest.csv"), str(tmp_path / "forest.parquet")):
        pl.read_csv(SAMPLE / "results_forest.csv").write_parquet(tmp_path / "forest.parquet")
        result = run_kscore("difficulty", path, "-c", "typo.yaml", "-o", "x.parquet", cwd=tmp_path)
        assert result.returncode == 2
        assert "missing column 'Correct'; did you mean 'correct'? (columns: id, label," in result.stderr
    assert not (tmp_path / "x.parquet").exists()


# 2. outputs follow their extension


@pytest.mark.parametrize("name", ["d.csv", "d.ndjson", "d.jsonl", "d.pq"])
def test_difficulty_writes_the_format_its_extension_names(tmp_path: Path, explained_scores: Path, name: str):
    out = tmp_path / name
    result = run_kscore("difficulty", *SAMPLE_RESULTS, "-c", STANDARD, "-o", str(out), "--explain")
    assert result.returncode == 0, result.stderr
    expected = pl.read_parquet(explained_scores)
    readers = {
        ".csv": pl.read_csv,
        ".ndjson": pl.read_ndjson,
        ".jsonl": pl.read_ndjson,
        ".pq": pl.read_parquet,
    }
    written = readers[out.suffix](out)
    assert written.columns == expected.columns and written.height == expected.height
    for column in expected.columns:  # floats round-trip exactly through text
        assert written.get_column(column).cast(expected.schema[column]).equals(expected.get_column(column)), (
            column
        )
    metadata = read_kscore_metadata(out)
    assert metadata == read_kscore_metadata(explained_scores) | {"inputs": metadata["inputs"]}
    sidecar = tmp_path / f"{name}.kscore.json"
    assert sidecar.is_file() == (out.suffix != ".pq")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("d.")) == sorted(
        [name, *([sidecar.name] if out.suffix != ".pq" else [])]
    )


@pytest.mark.slow
def test_compare_and_plot_read_every_format_the_scoring_commands_write(tmp_path: Path):
    jsons = []
    for name in ("d.parquet", "d.csv", "d.ndjson"):
        assert (
            run_kscore("difficulty", *SAMPLE_RESULTS, "-c", STANDARD, "-o", str(tmp_path / name)).returncode
            == 0
        )
        result = run_kscore(
            "compare", str(tmp_path / name), "--baseline", "forest", "--candidate", "knn", "--json"
        )
        assert result.returncode == 0, result.stderr
        jsons.append({k: v for k, v in json.loads(result.stdout).items() if k != "output"})
    assert jsons[0] == jsons[1] == jsons[2]
    embeddings = tmp_path / "emb.parquet"
    pl.read_parquet(SAMPLE / "embeddings.parquet").head(400).write_parquet(embeddings)
    for name in ("e.csv", "e.ndjson"):
        result = run_kscore(
            "embed-scores", str(embeddings), "--reducer", "pca", "--difficulty", str(tmp_path / "d.csv"),
            "-o", str(tmp_path / name),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert read_kscore_metadata(tmp_path / name)["command"] == "embed-scores"
        picture = tmp_path / f"{name}.png"
        result = run_kscore(
            "plot", str(tmp_path / name), "--color", "potential_difficulty_score", "-o", str(picture)
        )
        assert result.returncode == 0, result.stderr
        assert picture.read_bytes()[:4] == b"\x89PNG"


def test_compare_writes_csv_with_its_sidecar(tmp_path: Path, sample_scores: Path):
    out = tmp_path / "cmp.csv"
    result = run_kscore(
        "compare", str(sample_scores), "--baseline", "forest", "--candidate", "knn", "-o", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert pl.read_csv(out).columns == ["id", "baseline", "candidate", "delta", "status"]
    assert read_kscore_metadata(out)["command"] == "compare"


@pytest.mark.parametrize(
    ("command", "name"),
    [
        ("difficulty", "scores.txt"),
        ("difficulty", "scores"),
        ("embed-scores", "e.xlsx"),
        ("compare", "c.json"),
    ],
)
def test_an_unknown_output_extension_is_exit_2_listing_the_supported_ones(
    tmp_path: Path, sample_scores: Path, command: str, name: str
):
    args = {
        "difficulty": [*SAMPLE_RESULTS, "-c", STANDARD],
        "embed-scores": [str(SAMPLE / "embeddings.parquet"), "--reducer", "pca"],
        "compare": [str(sample_scores), "--baseline", "forest", "--candidate", "knn"],
    }[command]
    result = run_kscore(command, *args, "-o", name, cwd=tmp_path)
    assert result.returncode == 2
    suffix = Path(name).suffix or "(none)"
    assert error_line(result.stderr) == (
        f"error: {name}: unsupported output type {suffix!r}; name it .parquet, .pq, .csv, .ndjson or "
        ".jsonl, or DIR/ for a Parquet dataset"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_list_column_cannot_go_to_csv(tmp_path: Path):
    result = run_kscore(
        "embed-scores", str(SAMPLE / "embeddings.parquet"), "--reducer", "pca", "--keep-embedding",
        "-o", str(tmp_path / "e.csv"),
    )  # fmt: skip
    assert result.returncode == 2
    assert "CSV cannot hold the embedding lists --keep-embedding keeps; write .parquet or .ndjson" in (
        result.stderr
    )
    assert list(tmp_path.iterdir()) == []


def test_the_partitioned_path_streams_csv_and_ndjson_like_the_in_memory_one(tmp_path: Path):
    rng = np.random.default_rng(5)
    files = []
    for model in ("a", "b"):
        ids = rng.permutation(30_000)
        frame = pl.DataFrame({"id": ids, "f1": rng.random(30_000), "latency_ms": rng.random(30_000) * 100})
        frame.write_parquet(tmp_path / f"results_{model}.parquet")
        files.append(str(tmp_path / f"results_{model}.parquet"))
    (tmp_path / "kscore.yaml").write_text(
        "metrics: [{name: f1, direction: HIB}, {name: latency_ms, direction: LIB}]\nscope: joint\n"
    )
    for suffix in (".csv", ".ndjson"):
        small = tmp_path / f"small{suffix}"
        whole = tmp_path / f"whole{suffix}"
        for out, limit in ((small, "280MB"), (whole, "8GiB")):
            result = run_kscore("difficulty", *files, "-o", str(out), "--memory-limit", limit, cwd=tmp_path)
            assert result.returncode == 0, result.stderr
        assert small.read_bytes() == whole.read_bytes()
        assert read_kscore_metadata(small) == read_kscore_metadata(whole)


# 3. a closed pipe


def shell(script: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSCORE_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run(
        ["bash", "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("json_flag", ["", "--json"])
def test_a_closed_pipe_keeps_the_exit_code_the_work_decided(
    tmp_path: Path, sample_scores: Path, json_flag: str
):
    shutil.copy(sample_scores, tmp_path / "d.parquet")
    compare = f"kscore compare d.parquet --baseline forest --candidate knn --top 500 {json_flag}"
    result = shell(
        f'{compare} | head -3; echo "rc=${{PIPESTATUS[0]}}"\n'
        f'{compare} --max-regressions 0 2>gate.txt | head -1 > /dev/null; echo "rc=${{PIPESTATUS[0]}}"',
        tmp_path,
    )
    lines = result.stdout.splitlines()
    assert lines[3] == "rc=0" and lines[4] == "rc=1", result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "error" not in result.stderr
    assert error_line((tmp_path / "gate.txt").read_text()).startswith("error: gate failed: regressions")


# 4. streams and --quiet; 6. --debug after the subcommand


@pytest.mark.slow  # several seconds: run by .ci/run's second pass (the default run stays under 5 min)
def test_results_go_to_stdout_and_everything_else_to_stderr(tmp_path: Path):
    embeddings = tmp_path / "emb.parquet"
    pl.read_parquet(SAMPLE / "embeddings.parquet").head(300).write_parquet(embeddings)
    result = run_kscore("embed-scores", str(embeddings), "--reducer", "pca", "-o", "e.parquet", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "note:" not in result.stdout and "wrote" not in result.stdout and "Rows per split" in result.stdout
    assert "note: potential_difficulty_score and local_difficulty need difficulty scores" in result.stderr
    assert "wrote e.parquet" in result.stderr.splitlines()
    result = run_kscore(
        "difficulty", *SAMPLE_RESULTS, "-c", STANDARD, "-o", "d.parquet", "--plot", "h.svg", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-2:] == ["wrote d.parquet", "wrote h.svg"]
    assert "wrote" not in result.stdout


def test_quiet_silences_notes_warnings_and_progress_before_or_after_the_subcommand(tmp_path: Path):
    frame = pl.DataFrame({"id": [1, 2, 3], "f1": [0.5, 0.5, 0.5]})  # constant: a warning
    frame.write_csv(tmp_path / "r.csv")
    (tmp_path / "kscore.yaml").write_text("metrics: [{name: f1, direction: HIB}]\n")
    loud = run_kscore("difficulty", "r.csv", cwd=tmp_path)
    assert loud.returncode == 0 and "warning: " in loud.stderr and "wrote" in loud.stderr
    for args in (["--quiet", "difficulty", "r.csv"], ["difficulty", "r.csv", "-q"]):
        quiet = run_kscore(*args, cwd=tmp_path)
        assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
        assert quiet.stdout == loud.stdout
    failed = run_kscore("difficulty", "nope.csv", "-q", cwd=tmp_path)
    assert failed.returncode == 2 and failed.stderr == "error: nope.csv: file not found\n"


def test_debug_after_the_subcommand_shows_the_traceback(tmp_path: Path):
    result = run_kscore("difficulty", "nope.csv", "-c", STANDARD, "--debug", cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" in result.stderr
    assert error_line(result.stderr) == "error: nope.csv: file not found"


# 5. progress in a terminal


def run_in_a_terminal(args: list[str], cwd: Path) -> str:
    """Run kscore with its stderr a terminal (a pty); what it showed there, without escape codes."""
    import pty
    import select

    primary, secondary = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KSCORE_")} | {
        "COLUMNS": "150",
        "TERM": "xterm",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "kscore", *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=secondary
    )
    os.close(secondary)
    seen = b""
    while True:
        ready, _, _ = select.select([primary], [], [], 120)
        try:
            chunk = os.read(primary, 65536) if ready else b""
        except OSError:  # the child closed the terminal
            chunk = b""
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    assert process.wait(timeout=120) == 0
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", seen.decode(errors="replace"))


def test_progress_in_a_terminal_shows_bars_with_counts_and_an_estimate(tmp_path: Path):
    rng = np.random.default_rng(2)
    for model in ("a", "b"):
        frame = pl.DataFrame({"id": rng.permutation(200_000), "f1": rng.random(200_000)})
        frame.write_parquet(tmp_path / f"results_{model}.parquet")
    (tmp_path / "kscore.yaml").write_text("metrics: [{name: f1, direction: HIB}]\n")
    text = run_in_a_terminal(
        ["difficulty", "results_a.parquet", "results_b.parquet", "--memory-limit", "261MiB"], tmp_path
    )
    assert re.search(r"score id ranges .*━ \d+/\d+ +\d:\d\d:\d\d eta \d:\d\d:\d\d", text), text[-3000:]
    assert "wrote difficulty_scores.parquet" in text


# 6. help


def test_help_reads_like_other_tools():
    result = run_kscore("difficulty", "--help")
    assert result.returncode == 0
    text = result.stdout
    assert "Usage: kscore difficulty [OPTIONS] FILES..." in text and "{files}" not in text
    assert "<bool>" not in text and "<str>" not in text and "<path>" not in text
    assert "kscore[plot]" in text and "kscore[ray]" in text
    assert re.search(r"--json\s+Print one JSON object", text)
    assert re.search(r"--out\s+-o\s+PATH", text) and re.search(r"--debug\s+Show the traceback", text)
    compare = run_kscore("compare", "--help").stdout
    assert compare.count("default") == compare.count("[default:"), compare
    assert "Usage: kscore compare [OPTIONS] DIFFICULTY_FILE" in compare


# 8. the bundled standard and the template follow the README's advice


def test_the_bundled_standard_and_the_template_use_joint_scope(tmp_path: Path, sample_scores: Path):
    assert read_kscore_metadata(sample_scores)["standard"]["scope"] == "joint"
    result = run_kscore("compare", str(sample_scores), "--baseline", "forest", "--candidate", "knn")
    assert result.returncode == 0 and "note:" not in result.stderr
    assert run_kscore("init", cwd=tmp_path).returncode == 0
    assert re.search(r"^scope: joint\b", (tmp_path / "kscore.yaml").read_text(), re.M)
    assert "scope: joint" in (CONFIGS / "quality_standard.yaml").read_text()


# 9. the README's CI snippets: run by tests/test_docs.py


# 10. compare on the wrong file, or a model against itself


def test_compare_on_a_file_that_is_not_a_difficulty_output_says_what_it_lacks(tmp_path: Path):
    pl.read_parquet(SAMPLE / "embeddings.parquet").head(5).drop("embedding").write_csv(tmp_path / "e.csv")
    result = run_kscore("compare", "e.csv", "--baseline", "a", "--candidate", "b", cwd=tmp_path)
    assert result.returncode == 2
    assert error_line(result.stderr).startswith(
        "error: e.csv: not an output of `kscore difficulty`: it has no difficulty_score_<model> column"
    )


def test_a_model_compared_with_itself_is_exit_2(sample_scores: Path):
    result = run_kscore("compare", str(sample_scores), "--baseline", "knn", "--candidate", "knn")
    assert result.returncode == 2
    assert error_line(result.stderr) == (
        "error: --baseline and --candidate are both 'knn': name two different models "
        "(this file holds: forest, knn, logreg)"
    )
    typo = run_kscore("compare", str(sample_scores), "--baseline", "forrest", "--candidate", "knn")
    assert "unknown model 'forrest'; did you mean 'forest'?" in typo.stderr


# 11. --explain in the table and the JSON; --top 0


def test_explain_shows_each_hardest_datapoints_top_signal(tmp_path: Path):
    args = ["difficulty", *SAMPLE_RESULTS, "-c", STANDARD, "-o", str(tmp_path / "d.parquet"), "--explain"]
    summary = json.loads(run_kscore(*args, "--json", "--top", "4").stdout)
    table = pl.read_parquet(tmp_path / "d.parquet")
    for row in summary["hardest"]:
        expected = table.filter(pl.col("id") == row["id"]).row(0, named=True)
        assert row["top_signal"] == {m: expected[f"top_signal_{m}"] for m in ("forest", "knn", "logreg")}
    printed = run_kscore(*args, "--top", "4").stdout
    first = summary["hardest"][0]
    assert re.search(rf"{first['id']} .*{first['top_signal']['forest']}", printed) and "top signal" in printed
    plain = json.loads(run_kscore(*args[:-1], "--json").stdout)
    assert all("top_signal" not in row for row in plain["hardest"])


def test_top_0_prints_no_hardest_table(tmp_path: Path):
    result = run_kscore(
        "difficulty", *SAMPLE_RESULTS, "-c", STANDARD, "-o", str(tmp_path / "d.parquet"), "--top", "0"
    )
    assert (
        result.returncode == 0 and "Hardest" not in result.stdout and "Difficulty by model" in result.stdout
    )
    summary = run_kscore(
        "difficulty",
        *SAMPLE_RESULTS,
        "-c",
        STANDARD,
        "-o",
        str(tmp_path / "d.parquet"),
        "--top",
        "0",
        "--json",
    )
    assert json.loads(summary.stdout)["hardest"] == []


# 12. one JSON shape


@pytest.mark.slow  # several seconds: run by .ci/run's second pass (the default run stays under 5 min)
def test_every_commands_json_has_one_shape(tmp_path: Path, sample_scores: Path):
    embeddings = tmp_path / "emb.parquet"
    pl.read_parquet(SAMPLE / "embeddings.parquet").head(300).write_parquet(embeddings)
    runs = {
        "difficulty": ["difficulty", *SAMPLE_RESULTS, "-c", STANDARD, "-o", str(tmp_path / "d.parquet")],
        "embed-scores": [
            "embed-scores",
            str(embeddings),
            "--reducer",
            "pca",
            "-o",
            str(tmp_path / "e.parquet"),
        ],
        "compare": ["compare", str(sample_scores), "--baseline", "forest", "--candidate", "knn"],
        "check-config": ["check-config", STANDARD],
    }
    for command, args in runs.items():
        result = run_kscore(*args, "--json")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert list(data)[:3] == ["kscore_version", "command", "output"], command
        assert data["kscore_version"] == kscore.__version__ and data["command"] == command
        assert isinstance(data["warnings"], list) and isinstance(data["notes"], list)
        for key, value in data.items():  # every list of datapoints keys them by "id"
            if (
                isinstance(value, list)
                and value
                and isinstance(value[0], dict)
                and key not in ("models", "gates")
            ):
                assert all("id" in row for row in value), key
        floats = re.findall(r"-?\d+\.\d+(?:e-?\d+)?", result.stdout)
        assert all(len(f.split(".")[1].split("e")[0]) <= 6 for f in floats if "e" not in f), command
        assert "NaN" not in result.stdout and "Infinity" not in result.stdout
    assert json.loads(run_kscore(*runs["compare"], "--json").stdout)["output"] is None


# 13. messages that suggest the fix


def test_a_long_file_without_model_col_suggests_it(tmp_path: Path):
    frames = [
        pl.read_csv(SAMPLE / f"results_{m}.csv").with_columns(model=pl.lit(m)) for m in ("forest", "knn")
    ]
    pl.concat(frames).write_csv(tmp_path / "long.csv")
    result = run_kscore("difficulty", "long.csv", "-c", STANDARD, cwd=tmp_path)
    assert result.returncode == 2
    assert error_line(result.stderr).endswith(
        "is this a long file, one row per model? name the model column with --model-col"
    )
    assert (
        run_kscore("difficulty", "long.csv", "-c", STANDARD, "--model-col", "model", cwd=tmp_path).returncode
        == 0
    )


def test_an_unknown_key_suggests_the_closest(tmp_path: Path):
    (tmp_path / "kscore.yaml").write_text("metric: [{name: f1, direction: HIB}]\n")
    result = run_kscore("check-config", cwd=tmp_path)
    assert result.returncode == 2
    assert "unknown key 'metric'; did you mean 'metrics'? (valid keys:" in result.stderr


def test_init_on_detection_counts_proposes_the_object_detection_task(tmp_path: Path):
    detections = sorted((SAMPLE / "detection").glob("*.csv"))
    result = run_kscore("init", str(detections[0]), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "object_detection" in result.stderr
    text = (tmp_path / "kscore.yaml").read_text()
    assert re.search(r"^task:.*\n  type: object_detection\n  tp: tp\n  fp: fp\n  fn: fn$", text, re.M)
    assert run_kscore("difficulty", *map(str, detections), cwd=tmp_path).returncode == 0


def test_init_on_the_sample_proposes_a_multiclass_task_for_label_and_predicted(tmp_path: Path):
    """The sample's results hold the true and the predicted class: a task, not two metrics whose
    direction nobody can guess; the standard it writes scores the sample as written."""
    result = run_kscore("init", SAMPLE_RESULTS[0], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "label and predicted read as the true and the predicted class" in result.stderr
    standard = yaml.safe_load((tmp_path / "kscore.yaml").read_text())
    assert [m["name"] for m in standard["metrics"]] == ["correct", "true_class_prob", "log_loss"]
    assert standard["task"] == {
        "type": "multiclass_classification",
        "ground_truth": "label",
        "inference": "predicted",
        "weight": 1,
    }
    assert "README" not in (tmp_path / "kscore.yaml").read_text()  # pip users have no README
    scored = run_kscore("difficulty", *SAMPLE_RESULTS, "--json", cwd=tmp_path)
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["n_scored"] == pl.read_csv(SAMPLE_RESULTS[0]).height


# Smaller findings of a newcomer's first hour, each through the real entry point.


def test_kscore_alone_prints_its_help_and_says_why_it_failed():
    result = run_kscore()
    assert result.returncode == 2
    assert "Usage: kscore" in result.stdout
    assert error_line(result.stderr) == (
        "error: no command given: run `kscore COMMAND ...` (the commands are listed above)"
    )


def test_a_plain_folder_and_an_empty_standard_say_what_they_are(tmp_path: Path):
    (tmp_path / "results").mkdir()
    folder = run_kscore("difficulty", "results", "-c", STANDARD, cwd=tmp_path)
    assert folder.returncode == 2
    assert "results: is a folder, and not a dataset kscore wrote" in error_line(folder.stderr)
    (tmp_path / "empty.yaml").write_text("")
    empty = run_kscore("difficulty", *SAMPLE_RESULTS, "-c", "empty.yaml", cwd=tmp_path)
    assert empty.returncode == 2
    assert "empty.yaml: the quality standard is empty; it needs id_column and metrics" in error_line(
        empty.stderr
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.yaml", "results"]


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--split-col", "splt", "missing split column 'splt'; did you mean 'split'?"),
        ("--embedding-col", "embeding", "missing embedding column 'embeding'; did you mean 'embedding'?"),
    ],
)
def test_embed_scores_suggests_the_column_meant(tmp_path: Path, option: str, value: str, said: str):
    embeddings = str(SAMPLE / "embeddings.parquet")
    result = run_kscore("embed-scores", embeddings, option, value, "--reducer", "pca", cwd=tmp_path)
    assert result.returncode == 2 and said in error_line(result.stderr)


def test_embed_scores_refuses_a_kept_embedding_in_csv_before_any_work(tmp_path: Path):
    """--keep-embedding -o x.csv cannot be written: said before the map is fitted (no progress line
    of any stage), not after."""
    embeddings = str(SAMPLE / "embeddings.parquet")
    result = run_kscore("embed-scores", embeddings, "--keep-embedding", "-o", "x.csv", cwd=tmp_path)
    assert result.returncode == 2
    assert "x.csv: CSV cannot hold the embedding lists --keep-embedding keeps" in error_line(result.stderr)
    assert "UMAP" not in result.stderr and "read" not in result.stderr.replace(error_line(result.stderr), "")
    assert list(tmp_path.iterdir()) == []


def test_embed_scores_reads_a_wrong_difficulty_file_before_the_map(tmp_path: Path):
    pl.DataFrame({"id": [f"x{i}" for i in range(10)], "difficulty_score": [0.5] * 10}).write_parquet(
        tmp_path / "d.parquet"
    )
    embeddings = str(SAMPLE / "embeddings.parquet")
    result = run_kscore(
        "embed-scores", embeddings, "--difficulty", "d.parquet", "-o", "e.parquet", cwd=tmp_path
    )
    assert result.returncode == 2 and "--difficulty" in error_line(result.stderr)
    assert "UMAP" not in result.stderr


@pytest.mark.slow  # several seconds: run by .ci/run's second pass (the default run stays under 5 min)
def test_select_top_0_prints_no_empty_table(tmp_path: Path, sample_scores: Path):
    embeddings = str(SAMPLE / "embeddings.parquet")
    made = run_kscore("embed-scores", embeddings, "--reducer", "pca", "-o", "e.parquet", "-q", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    result = run_kscore("select", "e.parquet", "--budget", "3", "--top", "0", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "picks (" not in result.stdout and "Summary" in result.stdout


def test_the_reports_line_is_one_line_in_a_narrow_pipe(tmp_path: Path, sample_scores: Path):
    result = run_kscore("report", str(sample_scores), "-o", "r.html", cwd=tmp_path, env={"COLUMNS": "40"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("r.html: ")


def test_help_texts_say_what_each_command_does():
    embed = run_kscore("embed-scores", "--help", env={"COLUMNS": "200"}).stdout
    assert "embeddings spilled above --memory-limit" in embed and "id ranges" not in embed
    assert "[FILES...]" in run_kscore("report", "--help", env={"COLUMNS": "200"}).stdout
    assert "Parquet, CSV or NDJSON" in run_kscore("difficulty", "--help", env={"COLUMNS": "200"}).stdout


def zstd_frame(data: bytes) -> bytes:
    """`data` as one zstd frame of raw (stored) blocks: what `zstd` writes for data it cannot
    shrink, made here so that no zstd module or binary is needed."""
    frame = bytearray(b"\x28\xb5\x2f\xfd")  # magic number
    frame.append(0x00)  # frame header: no content size, no checksum, a window descriptor follows
    frame.append(0x58)  # window descriptor: a 16 MiB window (exponent 11), enough for any block
    blocks = [data[i : i + 128 * 1024] for i in range(0, len(data), 128 * 1024)] or [b""]
    for number, block in enumerate(blocks):
        last = number == len(blocks) - 1
        header = (len(block) << 3) | int(last)  # block type 0: raw
        frame += header.to_bytes(3, "little") + block
    return bytes(frame)


def test_compressed_csv_and_ndjson_inputs_give_the_scores_of_the_plain_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """`.csv.gz`, `.csv.zst` and `.ndjson.gz` are read as they are (the model named as for `.csv`),
    in memory and by the partitioned plan, and score exactly as the uncompressed files."""
    import gzip

    import kscore.plan.difficulty as plan
    from kscore.config import load_standard
    from kscore.jobs.difficulty import write_difficulty_scores

    config = str(CONFIGS / "quality_standard.yaml")
    plain = [str(SAMPLE / f"results_{m}.csv") for m in ("forest", "knn", "logreg")]
    assert (
        run_kscore("difficulty", *plain, "-c", config, "-o", "plain.parquet", "-q", cwd=tmp_path).returncode
        == 0
    )
    forest = (SAMPLE / "results_forest.csv").read_bytes()
    (tmp_path / "results_forest.csv.gz").write_bytes(gzip.compress(forest, mtime=0))
    (tmp_path / "results_knn.csv.zst").write_bytes(zstd_frame((SAMPLE / "results_knn.csv").read_bytes()))
    ndjson = pl.read_csv(SAMPLE / "results_logreg.csv").write_ndjson().encode()
    (tmp_path / "results_logreg.ndjson.gz").write_bytes(gzip.compress(ndjson, mtime=0))
    compressed = ["results_forest.csv.gz", "results_knn.csv.zst", "results_logreg.ndjson.gz"]
    want = pl.read_parquet(tmp_path / "plain.parquet")
    result = run_kscore("difficulty", *compressed, "-c", config, "-o", "memory.parquet", "-q", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert pl.read_parquet(tmp_path / "memory.parquet").equals(want)  # same columns: the same model names
    assert read_kscore_metadata(tmp_path / "memory.parquet")["inputs"] == {
        "forest": "results_forest.csv.gz",
        "knn": "results_knn.csv.zst",
        "logreg": "results_logreg.ndjson.gz",
    }
    # the partitioned plan, as a few hundred KB cut these 719 rows into several id ranges
    monkeypatch.setattr(plan, "BASE_BYTES", 0)
    monkeypatch.setattr(plan, "_MIN_BATCH", 100)
    ranges: list[int] = []
    files = {name.split(".")[0].removeprefix("results_"): tmp_path / name for name in compressed}
    write_difficulty_scores(
        files,
        load_standard(config),
        tmp_path / "parts.parquet",
        memory_limit=60_000,
        progress=lambda stage, done, total: ranges.append(total) if stage == "score id ranges" else None,
    )
    assert ranges and ranges[-1] > 2
    assert pl.read_parquet(tmp_path / "parts.parquet").equals(want)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("results_b.csv.gz", lambda: __import__("gzip").compress(b"id,f1\n1,0.5\n2,0.7\n")[:20],
         "results_b.csv.gz: cannot read CSV file: unexpected end of file"),
        ("results_b.parquet.gz", lambda: b"x", "results_b.parquet.gz: unsupported file type '.parquet.gz'"),
        ("results_b.csv.bz2", lambda: b"x", "results_b.csv.bz2: unsupported file type '.bz2'"),
    ],
)  # fmt: skip
def test_a_broken_or_unknown_compressed_input_is_exit_2_naming_it(tmp_path: Path, name, content, message):
    (tmp_path / name).write_bytes(content())
    good = str(SAMPLE / "results_forest.csv")
    config = str(CONFIGS / "quality_standard.yaml")
    result = run_kscore("difficulty", good, name, "-c", config, "-o", "o.parquet", cwd=tmp_path)
    assert result.returncode == 2
    assert error_line(result.stderr).startswith(f"error: {message}"), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # nothing written, nothing left


# ten processes in a shell pipeline: 10 s, run with the slow tests
@pytest.mark.slow
def test_a_pipeline_through_stdin_and_stdout_gives_the_files_tables(tmp_path: Path):
    """`-` (stdin: CSV, or NDJSON sniffed) and `-o -` (stdout: CSV, NDJSON, Parquet into a pipe)
    give the same table as files, for difficulty, embed-scores, select and compare. The result
    tables go to stderr with one note on the dropped metadata; no temporary is left."""
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {"TMPDIR": str(temp)}
    config = str(CONFIGS / "quality_standard.yaml")
    forest, knn = str(SAMPLE / "results_forest.csv"), SAMPLE / "results_knn.csv"
    ndjson = pl.read_csv(knn).write_ndjson().encode()

    def piped(*args: str, stdin: bytes) -> str:
        result = run_kscore(*args, cwd=tmp_path, env=env, stdin=stdin)
        assert result.returncode == 0, result.stderr
        assert result.stderr.count("kscore's metadata is not written to stdout") == 1, result.stderr
        assert list(temp.iterdir()) == []
        return result.stdout

    def filed(*args: str, out: str) -> bytes:
        assert run_kscore(*args, "-o", out, "-q", cwd=tmp_path, env=env).returncode == 0
        return (tmp_path / out).read_bytes()

    want = filed("difficulty", f"forest={forest}", f"knn={knn}", "-c", config, out="d.csv")
    got = piped("difficulty", f"forest={forest}", "knn=-", "-c", config, "-o", "-", stdin=knn.read_bytes())
    assert got.encode() == want
    got = piped("difficulty", f"forest={forest}", "knn=-", "-c", config, "-o", "-", stdin=ndjson)  # sniffed
    assert got.encode() == want
    as_ndjson = filed("difficulty", f"forest={forest}", f"knn={knn}", "-c", config, out="d.ndjson")
    got = piped(
        "difficulty", f"forest={forest}", "knn=-", "-c", config, "-o", "-", "--output-format", "ndjson",
        stdin=knn.read_bytes(),
    )  # fmt: skip
    assert got.encode() == as_ndjson
    parquet = run_kscore(
        "difficulty", f"forest={forest}", "knn=-", "-c", config, "-o", "-", "--output-format", "parquet",
        cwd=tmp_path, env=env, stdin=knn.read_bytes(),
    )  # fmt: skip
    assert parquet.returncode == 0
    # embed-scores from NDJSON on stdin, select and compare from CSV on stdin
    embeddings = pl.read_parquet(SAMPLE / "embeddings.parquet")
    embeddings.write_ndjson(tmp_path / "emb.ndjson")
    want = filed("embed-scores", "emb.ndjson", "--reducer", "pca", "--difficulty", "d.csv", out="e.csv")
    stdin = (tmp_path / "emb.ndjson").read_bytes()
    got = piped("embed-scores", "-", "--reducer", "pca", "--difficulty", "d.csv", "-o", "-", stdin=stdin)
    assert got.encode() == want
    want = filed("select", "e.csv", "--budget", "7", out="p.csv")
    assert (
        piped("select", "-", "--budget", "7", "-o", "-", stdin=(tmp_path / "e.csv").read_bytes())
        == want.decode()
    )
    want = filed("compare", "d.csv", "--baseline", "forest", "--candidate", "knn", out="c.csv")
    got = piped(
        "compare",
        "-",
        "--baseline",
        "forest",
        "--candidate",
        "knn",
        "-o",
        "-",
        stdin=(tmp_path / "d.csv").read_bytes(),
    )
    assert got == want.decode()


def test_parquet_is_not_written_into_a_terminal(tmp_path: Path):
    """`-o - --output-format parquet` with stdout a terminal: exit 2 before any work, the terminal
    spared the bytes."""
    import pty

    leader, follower = pty.openpty()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "kscore", "difficulty", str(SAMPLE / "results_knn.csv"), "-c",
             str(CONFIGS / "quality_standard.yaml"), "-o", "-", "--output-format", "parquet"],
            stdout=follower, stderr=subprocess.PIPE, cwd=tmp_path, timeout=120, text=True,
        )  # fmt: skip
    finally:
        os.close(follower)
        os.close(leader)
    assert done.returncode == 2
    assert error_line(done.stderr) == (
        "error: -o - --output-format parquet: stdout is a terminal; pipe it or give -o FILE.parquet"
    )
