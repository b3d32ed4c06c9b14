"""The CLI through its real entry point (`python -m kscore`)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from kscore.config import QualityStandard
from kscore.errors import Interrupted
from kscore.io import read_kscore_metadata
from kscore.jobs.difficulty import difficulty_scores

from .conftest import CONFIGS, SAMPLE, WORKED_EXAMPLE_YAML, run_kscore


def assert_clean_error(result, *fragments: str, code: int = 2) -> None:
    """Exit code, one `error:` line on stderr naming the culprit, no traceback."""
    assert result.returncode == code, result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.stderr


def test_difficulty_on_sample_data_matches_the_library(tmp_path: Path):
    out = tmp_path / "d.parquet"
    config = CONFIGS / "quality_standard.yaml"
    files = sorted(str(p) for p in SAMPLE.glob("results_*.csv"))
    result = run_kscore("difficulty", *files, "-c", str(config), "-o", str(out), "--json", "--top", "3")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert [m["name"] for m in summary["models"]] == ["forest", "knn", "logreg"]
    assert summary["n_datapoints"] == 719 and summary["output"] == str(out)

    standard = QualityStandard.from_yaml(config)
    expected = difficulty_scores({Path(f).stem[8:]: pl.read_csv(f) for f in files}, standard)
    written = pl.read_parquet(out)
    assert written.equals(expected)
    top = expected.sort(["difficulty_score", "id"], descending=[True, False]).head(3)
    assert [h["id"] for h in summary["hardest"]] == top["id"].to_list()
    assert [h["difficulty_score"] for h in summary["hardest"]] == pytest.approx(
        top["difficulty_score"].to_list()
    )
    meta = read_kscore_metadata(out)
    assert meta["models"] == ["forest", "knn", "logreg"]
    assert meta["standard"]["scope"] == "joint"  # the bundled standard follows the README's advice
    assert meta["kscore_version"]
    assert set(meta["inputs"]) == {"forest", "knn", "logreg"}


def test_difficulty_table_output_glob_and_config_discovery(workdir: Path):
    result = run_kscore("difficulty", "results_*", "--top", "2", "--explain", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "Difficulty by model" in result.stdout and "Hardest 2 datapoints" in result.stdout
    written = pl.read_parquet(workdir / "difficulty_scores.parquet")
    assert {"difficulty_score_a", "difficulty_score_b", "top_signal_a", "norm_f1_b"} <= set(written.columns)
    assert written["difficulty_score_a"].round(4).to_list() == [0.0244, 0.6260, 0.1382, 1.0, 0.3008]


def test_model_col_reads_long_files(tmp_path: Path):
    long = pl.DataFrame(
        {
            "id": [1, 2, 1, 2],
            "model": ["x", "x", "y", "y"],
            "f1": [0.1, 0.9, 0.5, 0.4],
            "latency_ms": [1, 2, 3, 4],
        }
    )
    long.write_csv(tmp_path / "all.csv")
    (tmp_path / "kscore.yaml").write_text(WORKED_EXAMPLE_YAML)
    result = run_kscore("difficulty", "all.csv", "--model-col", "model", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert [m["name"] for m in json.loads(result.stdout)["models"]] == ["x", "y"]


def test_warnings_go_to_stderr_and_the_summary(tmp_path: Path):
    pl.DataFrame({"id": [1, 2], "f1": [0.5, 0.5], "latency_ms": [1, 2]}).write_csv(tmp_path / "r.csv")
    (tmp_path / "kscore.yaml").write_text(WORKED_EXAMPLE_YAML)
    result = run_kscore("difficulty", "r.csv", "--json", cwd=tmp_path)
    assert result.returncode == 0
    assert "warning: model 'r': signal 'f1' is constant" in result.stderr
    assert json.loads(result.stdout)["models"][0]["warnings"] == [
        "model 'r': signal 'f1' is constant (-0.5); it normalizes to 0"
    ]


BAD_FILES = {
    "missing file": (None, "results_x.csv: file not found"),
    "empty file": ("", "results_x.csv: file is empty"),
    "malformed CSV": ("id,f1,latency_ms\n1,0.1,2\n2,0.2,3,4,5\n", "results_x.csv: cannot read CSV file"),
    "missing id column": ("key,f1,latency_ms\n1,0.1,2\n", "missing column 'id'"),
    "missing metric column": ("id,f1\n1,0.1\n", "missing column 'latency_ms'"),
    "non-numeric text": (
        "id,f1,latency_ms\n1,0.1,2\n2,abc,3\n3,x,4\n",
        "column 'f1' has 2 non-numeric values",
    ),
    "infinity": ("id,f1,latency_ms\n1,0.1,2\n2,0.2,inf\n3,0.3,-inf\n", "column 'latency_ms' has 2 infinite"),
    "duplicated id": (
        "id,f1,latency_ms\n1,0.1,2\n1,0.2,3\n2,0.3,4\n",
        "column 'id' has 2 rows with a duplicated id",
    ),
}


@pytest.mark.parametrize("case", BAD_FILES)
def test_bad_input_files_exit_2_and_leave_the_output_alone(workdir: Path, case: str):
    content, message = BAD_FILES[case]
    if content is not None:
        (workdir / "results_x.csv").write_text(content)
    out = workdir / "difficulty_scores.parquet"
    out.write_text("previous output")
    result = run_kscore("difficulty", "results_a.csv", "results_x.csv", cwd=workdir)
    assert_clean_error(result, message)
    if case != "missing file":
        assert "results_x.csv" in result.stderr
    assert out.read_text() == "previous output"
    assert sorted(p.name for p in workdir.iterdir() if p.name.startswith(".")) == []


BAD_CONFIGS = {
    "unreadable YAML": ("metrics:\n  - name: f1\n    direction: [HIB\n", "invalid YAML at line 4"),
    "unknown key": ("metrics: [{name: f1, direction: HIB}]\nscopes: joint\n", "unknown key 'scopes'"),
    "unknown direction": ("metrics: [{name: f1, direction: up}]\n", "unknown direction 'up'"),
    "negative weight": (
        "metrics: [{name: f1, direction: HIB, weight: -1}]\n",
        "weight must be finite and >= 0",
    ),
    "all-zero weights": ("metrics: [{name: f1, direction: HIB, weight: 0}]\n", "positive sum"),
    "no metric and no task": ("id_column: id\n", "at least one metric or a task"),
}


@pytest.mark.parametrize("case", BAD_CONFIGS)
def test_bad_configs_exit_2_naming_file_and_key(workdir: Path, case: str):
    text, message = BAD_CONFIGS[case]
    (workdir / "kscore.yaml").write_text(text)
    result = run_kscore("difficulty", "results_a.csv", cwd=workdir)
    assert_clean_error(result, "kscore.yaml", message)
    assert not (workdir / "difficulty_scores.parquet").exists()
    check = run_kscore("check-config", cwd=workdir)
    assert_clean_error(check, message)


def test_no_config_found_mentions_kscore_init(workdir: Path):
    (workdir / "kscore.yaml").unlink()
    result = run_kscore("difficulty", "results_a.csv", cwd=workdir)
    assert_clean_error(result, "no quality standard found", "kscore init")


def test_config_from_environment(workdir: Path):
    (workdir / "kscore.yaml").rename(workdir / "elsewhere.yaml")
    result = run_kscore(
        "difficulty", "results_a.csv", "--json", cwd=workdir, env={"KSCORE_CONFIG": "elsewhere.yaml"}
    )
    assert result.returncode == 0, result.stderr


def test_debug_shows_the_traceback(workdir: Path):
    result = run_kscore("--debug", "difficulty", "nope.csv", cwd=workdir)
    assert result.returncode != 0 and "Traceback" in result.stderr
    result = run_kscore("difficulty", "nope.csv", cwd=workdir, env={"KSCORE_DEBUG": "1"})
    assert "Traceback" in result.stderr


def test_output_may_not_overwrite_an_input(workdir: Path):
    before = (workdir / "results_b.parquet").read_bytes()
    result = run_kscore(
        "difficulty", "results_a.csv", "results_b.parquet", "-o", "results_b.parquet", cwd=workdir
    )
    assert_clean_error(result, "would overwrite an input")
    assert (workdir / "results_b.parquet").read_bytes() == before


def test_init_writes_a_valid_standard_and_never_overwrites(workdir: Path):
    result = run_kscore("init", "results_a.csv", "-o", "new.yaml", cwd=workdir)
    assert result.returncode == 0, result.stderr
    standard = QualityStandard.from_yaml(workdir / "new.yaml")
    assert [(m.name, m.direction) for m in standard.metrics] == [
        ("f1", "higher_is_better"),
        ("latency_ms", "lower_is_better"),
    ]
    again = run_kscore("init", "-o", "new.yaml", cwd=workdir)
    assert_clean_error(again, "new.yaml", "already exists", "--force")
    forced = run_kscore("init", "-o", "new.yaml", "--force", cwd=workdir)
    assert forced.returncode == 0 and "latency_ms" in (workdir / "new.yaml").read_text()


def test_check_config_prints_normalized_weights(workdir: Path):
    result = run_kscore("check-config", "--json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    resolved = json.loads(result.stdout)
    assert resolved["command"] == "check-config" and resolved["config"].endswith("kscore.yaml")
    assert resolved["standard"]["normalized_weights"] == pytest.approx({"f1": 2 / 3, "latency_ms": 1 / 3})
    table = run_kscore("check-config", "kscore.yaml", cwd=workdir)
    assert "0.6667" in table.stdout and "valid" in table.stdout


def test_help_does_not_import_heavy_libraries():
    heavy = "('polars', 'numpy', 'umap', 'sklearn', 'scipy', 'numba', 'matplotlib')"
    code = f"import sys, kscore.cli; print(sorted(m for m in {heavy} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_version():
    from kscore import __version__

    result = run_kscore("--version")
    assert result.returncode == 0 and result.stdout == f"kscore {__version__}\n"


def test_multiclass_config_with_datapoints_on_sample_data(tmp_path: Path):
    out = tmp_path / "mc.parquet"
    files = sorted(str(p) for p in SAMPLE.glob("results_*.csv"))
    result = run_kscore(
        "difficulty",
        *files,
        "-c",
        str(CONFIGS / "multiclass.yaml"),
        "--datapoints",
        str(SAMPLE / "datapoints.csv"),
        "-o",
        str(out),
        "--json",
    )
    assert result.returncode == 0, result.stderr
    table = pl.read_parquet(out)
    datapoints = pl.read_csv(SAMPLE / "datapoints.csv")
    assert table.height == datapoints.height and table["id"].equals(datapoints["id"])
    wrong = pl.concat(
        [pl.read_csv(f).select("id", (pl.col("label") != pl.col("predicted")).alias("w")) for f in files]
    )
    share = wrong.group_by("id").agg(pl.col("w").mean()).sort("id")
    scored = table.filter(pl.col("n_models") > 0).sort("id")
    assert scored["id"].equals(share["id"])
    assert scored["difficulty_score"].to_list() == pytest.approx(share["w"].to_list())


def test_binary_summary_reports_accuracy_at_the_threshold(tmp_path: Path):
    pl.DataFrame({"id": [1, 2, 3, 4], "y": [0, 1, 1, 0], "p": [0.2, 0.9, 0.4, 0.6]}).write_csv(
        tmp_path / "r.csv"
    )
    (tmp_path / "kscore.yaml").write_text(
        "task: {type: binary_classification, ground_truth: y, inference: p, threshold: 0.5}\n"
    )
    result = run_kscore("difficulty", "r.csv", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["models"][0]["accuracy"] == 0.5
    table = run_kscore("difficulty", "r.csv", cwd=tmp_path)
    assert "accuracy" in table.stdout and "0.5000" in table.stdout


TASK_ERRORS = {
    "binary score outside [0, 1]": (
        "task: {type: binary_classification, ground_truth: y, inference: p}\n",
        "id,y,p\n1,0,0.5\n2,1,1.5\n3,1,0.9\n",
        ["r.csv", "column 'p'", "1 scores outside [0, 1]"],
    ),
    "negative detection count": (
        "task: {type: object_detection}\n",
        "id,tp,fp,fn\n1,1,0,0\n2,1,-2,0\n3,0,1,-1\n",
        ["r.csv", "column 'fp'", "1 counts that are negative"],
    ),
    "ids missing from datapoints": (
        "task: {type: multiclass_classification, ground_truth: label, inference: pred}\n",
        "id,pred\n1,0\n2,1\n77,1\n",
        ["r.csv", "1 ids are missing from --datapoints", "77"],
    ),
    "ground truth disagrees": (
        "task: {type: multiclass_classification, ground_truth: label, inference: pred}\n",
        "id,label,pred\n1,0,0\n2,0,1\n3,1,1\n",
        ["r.csv", "ground truth 'label' disagrees with --datapoints on 1 rows"],
    ),
}


@pytest.mark.parametrize("case", TASK_ERRORS)
def test_task_bad_input_exits_2(tmp_path: Path, case: str):
    config, content, fragments = TASK_ERRORS[case]
    (tmp_path / "kscore.yaml").write_text(config)
    (tmp_path / "r.csv").write_text(content)
    pl.DataFrame({"id": [1, 2, 3], "label": [0, 1, 1]}).write_csv(tmp_path / "points.csv")
    result = run_kscore("difficulty", "r.csv", "--datapoints", "points.csv", cwd=tmp_path)
    assert_clean_error(result, *fragments)
    assert not (tmp_path / "difficulty_scores.parquet").exists()


# embed-scores ----------------------------------------------------------------------------------------


@pytest.mark.slow  # several seconds (CLI runs, an S3 server): CI's second pass
def test_embed_scores_cli_gives_what_the_library_gives(tmp_path: Path):
    from kscore.jobs.embed_scores import score_embeddings

    difficulty = tmp_path / "d.parquet"
    files = sorted(str(p) for p in SAMPLE.glob("results_*.csv"))
    assert (
        run_kscore(
            "difficulty", *files, "-c", str(CONFIGS / "quality_standard.yaml"), "-o", str(difficulty)
        ).returncode
        == 0
    )
    out = tmp_path / "e.parquet"
    result = run_kscore(
        "embed-scores",
        str(SAMPLE / "embeddings.parquet"),
        "--reducer",
        "pca",
        "--difficulty",
        str(difficulty),
        "-o",
        str(out),
        "--json",
        "--top",
        "5",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    expected, _ = score_embeddings(
        pl.read_parquet(SAMPLE / "embeddings.parquet"), reducer="pca", difficulty=pl.read_parquet(difficulty)
    )
    assert pl.read_parquet(out).equals(expected)
    assert summary["rows_per_split"] == {"train": 1078, "test": 360, "validation": 359}
    train = expected.drop_nulls("representation_score")
    assert [r["id"] for r in summary["least_represented"]] == train.sort("representation_score")["id"].head(
        5
    ).to_list()
    top = train.sort("potential_difficulty_score", descending=True)["id"].head(5).to_list()
    assert [r["id"] for r in summary["highest_potential"]] == top
    meta = read_kscore_metadata(out)
    assert meta["reducer"]["reducer"] == "pca" and len(meta["kernel_covariance"]) == 2
    assert {"numpy", "polars", "finufft"} <= set(meta["versions"])


def test_embed_scores_reads_the_standards_embeddings(tmp_path: Path):
    import shutil

    shutil.copy(SAMPLE / "embeddings.parquet", tmp_path / "emb.parquet")
    (tmp_path / "kscore.yaml").write_text(
        "metrics: [{name: correct, direction: HIB}]\nembeddings: emb.parquet\n"
    )
    result = run_kscore("embed-scores", "--split-col", "split", "--reducer", "pca", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # the note on the other scores goes to stderr, the results alone to stdout
    assert "note:" not in result.stdout and "--difficulty" in result.stderr
    assert pl.read_parquet(tmp_path / "embed_scores.parquet").height == 1797


@pytest.mark.slow
def test_embed_scores_umap_reruns_are_identical(tmp_path: Path):
    # a third of the sample, and a fit sample below it: the fit and the transform, at a third the cost
    pl.read_parquet(SAMPLE / "embeddings.parquet").head(600).write_parquet(tmp_path / "emb.parquet")
    outs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.parquet"
        result = run_kscore(
            "embed-scores", str(tmp_path / "emb.parquet"), "--fit-sample", "400", "-o", str(out)
        )
        assert result.returncode == 0, result.stderr
        outs.append(pl.read_parquet(out))
    assert outs[0].equals(outs[1])


EMBED_ERRORS = {
    "missing split column": (["--split-col", "fold"], "missing split column 'fold'"),
    "missing embedding column": (["--embedding-col", "vec"], "missing embedding column 'vec'"),
    "no train rows": (["--train-value", "nope"], "no train rows"),
    "bad seed": (["--seed", "abc"], "--seed must be an integer or 'none'"),
    "bad bandwidth": (["--bandwidth", "-1"], "--bandwidth must be scott, silverman or a positive number"),
    "bad reducer": (["--reducer", "tsne"], "reducer must be one of umap, pca, none"),
    "reducer none on 64-d": (["--reducer", "none"], "needs 2D embeddings; these have 64 dimensions"),
}


@pytest.mark.parametrize("case", EMBED_ERRORS)
def test_embed_scores_bad_input_exits_2(tmp_path: Path, case: str):
    args, message = EMBED_ERRORS[case]
    out = tmp_path / "e.parquet"
    result = run_kscore(
        "embed-scores", str(SAMPLE / "embeddings.parquet"), "--reducer", "pca", *args, "-o", str(out)
    )
    assert_clean_error(result, message)
    assert not out.exists()


def test_embed_scores_without_embeddings_file(tmp_path: Path):
    result = run_kscore("embed-scores", cwd=tmp_path)
    assert_clean_error(result, "no embeddings file")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "x.parquet", "--baseline", "a"], "error: name the two models to compare in one file"),
        (["difficulty", "--bogus"], "error: No such option: --bogus"),
        (["embed-scores", "--top", "x"], "error: Invalid value for '--top'"),
        (["nocmd"], "error: No such command 'nocmd'."),
    ],
)
def test_usage_errors_are_one_line_with_exit_2(args, message):
    result = run_kscore(*args)
    assert_clean_error(result, message)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
def test_background_summary_runs_at_low_priority_without_lowering_the_caller():
    import os
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from kscore.jobs.common import LOW_PRIORITY, at_low_priority

    def priorities() -> tuple[int, int]:
        """This thread's nice value, and that of a thread it starts (which inherits it)."""
        own = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        with ThreadPoolExecutor(1) as pool:
            child = pool.submit(lambda: os.getpriority(os.PRIO_PROCESS, threading.get_native_id())).result()
        return own, child

    before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    with ThreadPoolExecutor(1) as background:
        own, child = background.submit(at_low_priority, priorities).result()
    assert own == child == max(before, LOW_PRIORITY)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == before


def test_progress_is_one_line_per_stage_when_stderr_is_not_a_terminal(tmp_path: Path):
    import re

    out = tmp_path / "e.parquet"
    result = run_kscore(
        "embed-scores", str(SAMPLE / "embeddings.parquet"), "--reducer", "pca", "-o", str(out)
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("KDE scores")]
    assert len(lines) == 1 and re.fullmatch(r"KDE scores: done in \d+\.\d s", lines[0]), result.stderr
    assert re.search(r"^write: done in \d+\.\d s$", result.stderr, re.M), result.stderr


@pytest.fixture
def signal_state(monkeypatch: pytest.MonkeyPatch):
    """The CLI's signal handlers installed for the test, `os._exit` recorded instead of exiting;
    the process's handlers and unraisable hook restored after."""
    import os
    import signal

    from kscore.cli import signals

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    hook = sys.unraisablehook
    exits: list[int] = []
    monkeypatch.setattr(os, "_exit", exits.append)
    signals.install()
    yield exits
    for caught, handler in before.items():
        signal.signal(caught, handler)
    sys.unraisablehook = hook


def test_a_stop_waiting_for_a_block_is_dropped_once_the_outcome_is_said(signal_state, monkeypatch) -> None:
    """Ctrl-C while another thread's cleanup block runs: the stop waits for the block. The run then
    ends (its error line said) and the block ends during the exit handlers: the waiting stop must
    not raise there (it printed a traceback after the error line, and the exit code was -2)."""
    import atexit
    import threading

    from kscore import storage
    from kscore.cli import signals
    from kscore.cli.exit import exit_now

    inside, release = threading.Event(), threading.Event()
    raised: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_value))

    def cleanup_block() -> None:
        with storage.signals_deferred():
            inside.set()
            release.wait(10)

    worker = threading.Thread(target=cleanup_block)
    worker.start()
    assert inside.wait(10)
    signals.on_signal(__import__("signal").SIGINT, None)  # deferred: a block is running

    def block_ends() -> None:
        release.set()
        worker.join(10)

    monkeypatch.setattr(atexit, "_run_exitfuncs", block_ends)  # the exit handlers: only this one
    try:
        exit_now(130)
    finally:
        release.set()
        worker.join(10)
    assert signal_state == [130] and not raised


def test_a_signal_after_the_outcome_is_said_ends_the_process_with_its_code(signal_state) -> None:
    """Once the run's outcome is settled, a signal (while Ray's shutdown or a folder's removal runs
    in the exit handlers) ends the process at once with that outcome's code, raising nothing."""
    import signal

    from kscore.cli import signals

    signals.settle(0)
    signal.raise_signal(signal.SIGINT)
    signal.raise_signal(signal.SIGTERM)
    assert signal_state == [0, 0]


def test_a_ctrl_c_met_while_a_class_is_made_is_an_interrupt_not_an_internal_error(
    signal_state, monkeypatch, capsys
) -> None:
    """CI: SIGINT at 0.2 s, while a dataclass was made: Python raised the KeyboardInterrupt as a
    RuntimeError ('Error calling __set_name__ ...') and the run said 'internal error', exit 70. It
    is exit 130 with the interrupted line."""
    from kscore.cli.signals import interrupt_behind

    class Stops:
        def __set_name__(self, owner, name):
            raise KeyboardInterrupt

    def make_a_class(*args, **kwargs):
        type("Streams", (), {"notes": Stops()})

    try:
        make_a_class()
    except BaseException as exc:  # a RuntimeError before Python 3.12, the interrupt itself after
        assert isinstance(interrupt_behind(exc), KeyboardInterrupt)

    assert _run_with(monkeypatch, make_a_class) == 130
    assert capsys.readouterr().err.strip() == "error: interrupted (Ctrl-C); no output was written"


def _run_with(monkeypatch, app) -> int:
    """The exit code of the console script's `run()` with `app` for the command line (in this
    process: the exit raises SystemExit)."""
    from kscore.cli import exit as cli_exit

    def exit_now(code: int) -> None:
        raise SystemExit(code)

    monkeypatch.setattr(cli_exit, "app", app)
    monkeypatch.setattr(cli_exit, "exit_now", exit_now)
    with pytest.raises(SystemExit) as ended:
        cli_exit.run()
    return int(ended.value.code)


@pytest.mark.parametrize(
    ("stop", "line", "code"),
    [
        (KeyboardInterrupt(), "error: interrupted (Ctrl-C)", 130),
        (Interrupted("terminated (SIGTERM)", 143), "error: terminated (SIGTERM)", 143),
    ],
)
def test_an_interrupted_run_names_only_the_outputs_it_wrote_itself(
    signal_state, monkeypatch, capsys, tmp_path, stop, line, code
) -> None:
    """An output a library call wrote earlier in the same process is not this run's: a run stopped
    before writing says that no output was written (it named the earlier one when the tests that
    call the library ran first); one stopped after writing names its own."""
    from kscore import storage

    monkeypatch.setattr(storage, "PUBLISHED", [])
    with storage.publishing(tmp_path / "earlier.parquet"):  # as a library call in this process
        pass
    assert storage.PUBLISHED

    def stopped_run(*args, **kwargs):
        raise stop

    assert _run_with(monkeypatch, stopped_run) == code
    assert capsys.readouterr().err.strip() == f"{line}; no output was written"

    def written_then_stopped(*args, **kwargs):
        with storage.publishing(tmp_path / "out.parquet"):
            pass
        raise stop

    assert _run_with(monkeypatch, written_then_stopped) == code
    written = f"{line} after the output was written: {tmp_path / 'out.parquet'}"
    assert capsys.readouterr().err.strip() == written
