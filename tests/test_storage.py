"""Object storage: `kscore difficulty` reading from and writing to s3:// (a moto server on 127.0.0.1)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from kscore.errors import OutputError
from kscore.io import MANIFEST, read_kscore_metadata
from kscore.storage import ObjectPath, parse_storage_options, publish, using
from tests.conftest import run_kscore
from tests.test_partitioned import _with_config, _write_inputs

CONFIG = "id_column: id\nmetrics:\n  - {name: recall, direction: higher_is_better, weight: 2}\n" + (
    "  - {name: latency_ms, direction: lower_is_better}\n  - {name: loss, direction: lower_is_better}\n"
)


def _inputs_in_s3(s3, tmp_path: Path, prefix: str, fmt: str = "parquet") -> list[str]:
    paths = _write_inputs(tmp_path, "dense", fmt=fmt)
    (tmp_path / "k.yaml").write_text(CONFIG)
    return [s3.upload(path, f"{prefix}/{path.name}") for path in paths.values()]


def _read_dataset(s3, prefix: str) -> tuple[pl.DataFrame, dict]:
    parts = [s3.url(k) for k in s3.keys(prefix) if k.endswith(".parquet")]
    options = {**s3.options, "aws_allow_http": "true"}
    frame = pl.read_parquet(parts, storage_options=options)
    with s3.filesystem().open_input_stream(f"{s3.bucket}/{prefix}/{MANIFEST}") as stream:
        manifest = json.loads(stream.read())
    return frame, manifest


def _same_values(a: pl.DataFrame, b: pl.DataFrame) -> None:
    assert a.schema == b.schema and a.height == b.height
    for name in a.columns:
        x, y = a[name], b[name]
        if x.dtype.is_float():
            bits = [s.fill_null(0.0).to_numpy().view(np.int64) for s in (x, y)]
            assert np.array_equal(*bits), name
        else:
            assert x.equals(y), name


@pytest.mark.slow  # several seconds (CLI runs, an S3 server): CI's second pass
@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_difficulty_round_trip_through_s3_equals_the_local_run(s3, tmp_path: Path, fmt: str) -> None:
    urls = _inputs_in_s3(s3, tmp_path, f"in-{fmt}", fmt)
    local = run_kscore(
        "difficulty", *(Path(u).name for u in urls), "-c", "k.yaml", "-o", "local.parquet", cwd=tmp_path
    )
    assert local.returncode == 0, local.stderr
    out = s3.url(f"scores-{fmt}/")
    option = f"aws_endpoint_url={s3.endpoint}"
    remote = run_kscore(
        "difficulty", *urls, "-c", "k.yaml", "-o", out, "--storage-option", option, "--json", cwd=tmp_path
    )
    assert remote.returncode == 0, remote.stderr
    assert json.loads(remote.stdout)["output"] == out
    assert s3.keys(f"scores-{fmt}") == [f"scores-{fmt}/{MANIFEST}", f"scores-{fmt}/part-00000.parquet"]
    frame, manifest = _read_dataset(s3, f"scores-{fmt}")
    _same_values(pl.read_parquet(tmp_path / "local.parquet"), frame)
    expected = read_kscore_metadata(tmp_path / "local.parquet")
    assert manifest["inputs"] == dict(zip(("a", "b", "c"), urls, strict=True))
    assert {k: v for k, v in manifest.items() if k != "inputs"} == {
        k: v for k, v in expected.items() if k != "inputs"
    }


def test_a_failed_job_leaves_nothing_at_the_output_prefix(s3, tmp_path: Path) -> None:
    urls = _inputs_in_s3(s3, tmp_path, "in-bad")
    frame = pl.read_parquet(tmp_path / "results_b.parquet")
    bad = frame.with_columns(
        pl.when(pl.col("id") == 7).then(float("inf")).otherwise(pl.col("recall")).alias("recall")
    )
    bad.write_parquet(tmp_path / "bad.parquet")
    urls[1] = s3.upload(tmp_path / "bad.parquet", "in-bad/results_b.parquet")
    option = f"aws_endpoint_url={s3.endpoint}"
    result = run_kscore(
        "difficulty", *urls, "-c", "k.yaml", "-o", s3.url("failed/"), "--storage-option", option, cwd=tmp_path
    )
    assert result.returncode == 2
    assert "results_b.parquet" in result.stderr and "infinite" in result.stderr
    assert s3.keys("failed") == []


@pytest.mark.parametrize(
    ("failure", "expected"),
    [(OSError("connection reset by peer"), OutputError), (KeyboardInterrupt(), KeyboardInterrupt)],
)
def test_an_upload_cut_midway_removes_what_it_uploaded(
    s3, tmp_path: Path, monkeypatch, failure: BaseException, expected: type[BaseException]
) -> None:
    """A network failure, or Ctrl-C, before the manifest is uploaded."""
    folder = tmp_path / "dataset"
    folder.mkdir()
    for number in range(3):
        pl.DataFrame({"id": [number]}).write_parquet(folder / f"part-{number:05d}.parquet")
    (folder / MANIFEST).write_text("{}")
    import kscore.storage as storage

    real = storage.filesystem

    class FailsOnTheManifest:
        def __init__(self, system):
            self.system = system

        def __getattr__(self, name):
            return getattr(self.system, name)

        def open_output_stream(self, path):
            if path.endswith(MANIFEST):
                raise failure
            return self.system.open_output_stream(path)

    monkeypatch.setattr(storage, "filesystem", lambda url: (FailsOnTheManifest(real(url)[0]), real(url)[1]))
    prefix = f"midway-{type(failure).__name__}"
    with using(s3.options), pytest.raises(expected):
        publish(folder, ObjectPath(s3.url(prefix)), MANIFEST)
    assert s3.keys(prefix) == []


@pytest.mark.slow  # several seconds (CLI runs, an S3 server): CI's second pass
def test_a_second_run_replaces_the_dataset_and_foreign_objects_are_refused(s3, tmp_path: Path) -> None:
    urls = _inputs_in_s3(s3, tmp_path, "in-twice")
    option = f"aws_endpoint_url={s3.endpoint}"
    args = ["difficulty", *urls, "-c", "k.yaml", "--storage-option", option]
    for _ in range(2):
        result = run_kscore(*args, "-o", s3.url("twice/"), cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert s3.keys("twice") == [f"twice/{MANIFEST}", "twice/part-00000.parquet"]
    s3.upload(tmp_path / "k.yaml", "foreign/notes.yaml")
    refused = run_kscore(*args, "-o", s3.url("foreign/"), cwd=tmp_path)
    assert refused.returncode == 2
    assert "holds objects kscore did not write" in refused.stderr
    assert s3.keys("foreign") == ["foreign/notes.yaml"]


def test_a_missing_object_and_a_bad_storage_option_are_exit_2(s3, tmp_path: Path) -> None:
    _with_config(tmp_path)
    option = f"aws_endpoint_url={s3.endpoint}"
    missing = run_kscore(
        "difficulty", s3.url("nowhere/a.parquet"), s3.url("nowhere/b.parquet"), "-c", "k.yaml",
        "--storage-option", option, cwd=tmp_path,
    )  # fmt: skip
    assert missing.returncode == 2
    assert "s3://kscore-test/nowhere/a.parquet: file not found" in missing.stderr
    bad = run_kscore(
        "difficulty", s3.url("a.parquet"), "-c", "k.yaml", "--storage-option", "region", cwd=tmp_path
    )
    assert bad.returncode == 2 and "expected KEY=VALUE" in bad.stderr
    assert parse_storage_options(["AWS_Region=eu-west-1"]) == {"aws_region": "eu-west-1"}


def test_object_paths_keep_their_double_slash_and_parts() -> None:
    path = ObjectPath("s3://bucket/results/model_a.parquet")
    assert str(path) == "s3://bucket/results/model_a.parquet"
    assert (path.name, path.suffix) == ("model_a.parquet", ".parquet")
    assert [str(p) for p in path.parents] == ["s3://bucket/results", "s3://bucket"]
    assert path.parent / "x.csv" == ObjectPath("s3://bucket/results/x.csv")
    assert path.resolve() == path != Path("s3:/bucket/results/model_a.parquet")


@pytest.mark.slow  # several seconds (CLI runs, an S3 server): CI's second pass
def test_s3_inputs_to_a_local_file_and_a_local_dataset(s3, tmp_path: Path) -> None:
    urls = _inputs_in_s3(s3, tmp_path, "in-local-out")
    option = f"aws_endpoint_url={s3.endpoint}"
    names = [Path(u).name for u in urls]
    assert (
        run_kscore("difficulty", *names, "-c", "k.yaml", "-o", "local.parquet", cwd=tmp_path).returncode == 0
    )
    for out in ("from_s3.parquet", "from_s3_dataset/"):
        result = run_kscore(
            "difficulty", *urls, "-c", "k.yaml", "-o", out, "--storage-option", option, cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr
    expected = pl.read_parquet(tmp_path / "local.parquet")
    _same_values(expected, pl.read_parquet(tmp_path / "from_s3.parquet"))
    _same_values(expected, pl.read_parquet(sorted((tmp_path / "from_s3_dataset").glob("part-*.parquet"))))


@pytest.mark.usefixtures("tiny_overhead")
def test_s3_inputs_scored_by_the_partitioned_plan_equal_the_in_memory_run(s3, tmp_path: Path) -> None:
    from kscore.jobs.difficulty import write_difficulty_scores
    from tests.test_partitioned import _standard

    urls = _inputs_in_s3(s3, tmp_path, "in-partitioned")
    names = dict(zip(("a", "b", "c"), urls, strict=True))
    standard = _standard("rank", "joint", True)
    local = {name: tmp_path / Path(url).name for name, url in names.items()}
    write_difficulty_scores(local, standard, tmp_path / "memory.parquet", memory_limit="64GiB")
    ranges = []
    write_difficulty_scores(
        names,
        standard,
        tmp_path / "partitioned.parquet",
        memory_limit=300_000,
        storage_options=s3.options,
        progress=lambda stage, done, total: ranges.append(total) if stage == "score id ranges" else None,
    )
    assert ranges and ranges[-1] > 1  # it did run by id ranges
    _same_values(
        pl.read_parquet(tmp_path / "memory.parquet"), pl.read_parquet(tmp_path / "partitioned.parquet")
    )


@pytest.mark.slow  # several seconds (CLI runs, an S3 server): CI's second pass
def test_embed_scores_reads_and_writes_s3_like_local_paths(s3, tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    rows = 600
    table = pl.DataFrame(
        {
            "id": np.arange(rows),
            "split": np.where(rng.random(rows) < 0.6, "train", "val"),
            "embedding": pl.Series(rng.normal(0, 1, (rows, 2))).reshape((rows, 2)),
        }
    )
    table.write_parquet(tmp_path / "emb.parquet")
    val = table.filter(pl.col("split") == "val")
    val.select("id", pl.Series("difficulty_score", rng.random(val.height))).write_parquet(
        tmp_path / "difficulty.parquet"
    )
    emb = s3.upload(tmp_path / "emb.parquet", "embed-in/emb.parquet")
    diff = s3.upload(tmp_path / "difficulty.parquet", "embed-in/difficulty.parquet")
    option = f"aws_endpoint_url={s3.endpoint}"
    common = ["--reducer", "none"]
    local = run_kscore(
        "embed-scores", "emb.parquet", "--difficulty", "difficulty.parquet", "-o", "local.parquet", *common,
        cwd=tmp_path,
    )  # fmt: skip
    assert local.returncode == 0, local.stderr
    remote = run_kscore(
        "embed-scores", emb, "--difficulty", diff, "-o", s3.url("embed-out/"), "--storage-option", option,
        *common, cwd=tmp_path,
    )  # fmt: skip
    assert remote.returncode == 0, remote.stderr
    assert s3.keys("embed-out") == [f"embed-out/{MANIFEST}", "embed-out/part-00000.parquet"]
    frame, manifest = _read_dataset(s3, "embed-out")
    _same_values(pl.read_parquet(tmp_path / "local.parquet"), frame)
    assert manifest["command"] == "embed-scores"
    assert manifest["inputs"] == {"embeddings": emb, "difficulty": diff}


# UMAP fits through moto: 8 s, run with the slow tests
@pytest.mark.slow
def test_a_map_saved_to_and_read_from_s3_equals_the_local_round_trip(s3, tmp_path: Path) -> None:
    embeddings = str(Path(__file__).resolve().parents[1] / "sample_data" / "embeddings.parquet")
    option = f"aws_endpoint_url={s3.endpoint}"
    local = run_kscore(
        "embed-scores", embeddings, "-o", "a.parquet", "--save-map", "map.parquet", cwd=tmp_path
    )
    assert local.returncode == 0, local.stderr
    remote_map = s3.url("maps/map.parquet")
    saved = run_kscore(
        "embed-scores", embeddings, "-o", "b.parquet", "--save-map", remote_map, "--storage-option", option,
        cwd=tmp_path,
    )  # fmt: skip
    assert saved.returncode == 0, saved.stderr
    assert s3.keys("maps") == ["maps/map.parquet"]  # no temporary object left beside it
    used = run_kscore(
        "embed-scores", embeddings, "-o", "c.parquet", "--map", remote_map, "--storage-option", option,
        cwd=tmp_path,
    )  # fmt: skip
    assert used.returncode == 0, used.stderr
    first = pl.read_parquet(tmp_path / "a.parquet")
    assert first.equals(pl.read_parquet(tmp_path / "b.parquet"))
    assert first.equals(pl.read_parquet(tmp_path / "c.parquet"))


@pytest.mark.slow  # several seconds: run by .ci/run's second pass (the default run stays under 5 min)
@pytest.mark.parametrize("name", ["scores.csv", "scores.parquet"])
def test_an_object_name_with_a_table_extension_is_one_object_that_compare_reads(
    s3, tmp_path: Path, name: str
) -> None:
    """`-o s3://b/scores.csv` is one CSV (and its sidecar), not a dataset prefix; no temporary object
    is left beside it; `compare` reads it back from object storage like the local file."""
    urls = _inputs_in_s3(s3, tmp_path, f"in-one-{name}")
    option = f"aws_endpoint_url={s3.endpoint}"
    local = run_kscore(
        "difficulty", *urls, "-c", "k.yaml", "-o", name, "--storage-option", option, cwd=tmp_path
    )
    assert local.returncode == 0, local.stderr
    out = s3.url(f"one-{name}/{name}")
    remote = run_kscore(
        "difficulty", *urls, "-c", "k.yaml", "-o", out, "--storage-option", option, "--json", cwd=tmp_path
    )
    assert remote.returncode == 0, remote.stderr
    assert json.loads(remote.stdout)["output"] == out
    sidecar = [f"one-{name}/{name}.kscore.json"] if name.endswith(".csv") else []
    assert s3.keys(f"one-{name}") == sorted([f"one-{name}/{name}", *sidecar])
    with s3.filesystem().open_input_stream(f"{s3.bucket}/one-{name}/{name}") as stream:
        assert stream.read() == (tmp_path / name).read_bytes()
    compare = ["--baseline", "a", "--candidate", "b", "--json"]
    expected = json.loads(run_kscore("compare", name, *compare, cwd=tmp_path).stdout)
    got = run_kscore("compare", out, *compare, "--storage-option", option, cwd=tmp_path)
    assert got.returncode == 0, got.stderr
    assert json.loads(got.stdout) == expected


@pytest.mark.slow  # several seconds: run by .ci/run's second pass (the default run stays under 5 min)
def test_select_reads_its_inputs_from_object_storage(s3, tmp_path: Path) -> None:
    """`kscore select` takes object paths for the scores and the labeled ids, like the local files."""
    from tests.conftest import SAMPLE

    table = pl.read_parquet(SAMPLE / "embeddings.parquet").drop("embedding")
    rng = np.random.default_rng(0)
    scores = table.with_columns(
        map_x=pl.Series(rng.normal(size=table.height)),
        map_y=pl.Series(rng.normal(size=table.height)),
        potential_difficulty_score=pl.Series(rng.random(table.height)),
    )
    scores.write_parquet(tmp_path / "e.parquet")
    pl.DataFrame({"id": scores.get_column("id").head(20)}).write_csv(tmp_path / "labeled.csv")
    urls = [s3.upload(tmp_path / name, f"select/{name}") for name in ("e.parquet", "labeled.csv")]
    option = f"aws_endpoint_url={s3.endpoint}"
    args = ["--budget", "12", "--json"]
    local = run_kscore("select", "e.parquet", "--labeled", "labeled.csv", *args, cwd=tmp_path)
    remote = run_kscore(
        "select", urls[0], "--labeled", urls[1], *args, "--storage-option", option, cwd=tmp_path
    )
    assert remote.returncode == 0, remote.stderr
    assert json.loads(remote.stdout)["picks"] == json.loads(local.stdout)["picks"]


@pytest.mark.slow  # several seconds (CLI runs, an S3 server): CI's second pass
def test_report_reads_its_inputs_from_object_storage(s3, tmp_path: Path) -> None:
    """`kscore report --storage-option`: outputs in S3 give the page their local copies give."""
    from tests.conftest import CONFIGS, SAMPLE

    results = sorted(str(p) for p in SAMPLE.glob("results_*.csv"))
    config = str(CONFIGS / "quality_standard.yaml")
    assert run_kscore("difficulty", *results, "-c", config, "-o", "d.parquet", cwd=tmp_path).returncode == 0
    url = s3.upload(tmp_path / "d.parquet", "report/d.parquet")
    option = f"aws_endpoint_url={s3.endpoint}"
    local = run_kscore("report", "d.parquet", "-o", "local.html", cwd=tmp_path)
    remote = run_kscore(
        "report", url, "-o", "remote.html", "--storage-option", option, "--json", cwd=tmp_path
    )
    assert local.returncode == 0 and remote.returncode == 0, remote.stderr
    assert json.loads(remote.stdout)["inputs"] == {"difficulty": url}
    assert (tmp_path / "remote.html").read_bytes() == (tmp_path / "local.html").read_bytes()
