"""A saved scale (`difficulty --scale-from`): a later run normalized with an earlier output's
statistics, on both plans; the earlier scores reproduced bitwise; values beyond the range clamped and
counted; a scale that does not fit is exit 2 naming why."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from kscore.config import QualityStandard
from kscore.errors import InputError
from kscore.io import read_kscore_metadata
from kscore.jobs.difficulty import write_difficulty_scores
from tests.conftest import run_kscore
from tests.test_partitioned import MODELS, _model_frame, _standard, _write_inputs

PLANS = {"memory": "64GiB", "partitioned": 300_000}


def _table_bits(path: Path) -> pl.DataFrame:
    """The output's columns, floats as their bits: equal frames are bitwise the same numbers."""
    table = pl.read_parquet(path)
    return table.with_columns(pl.col(pl.Float64).fill_null(0.0).cast(pl.Float64).reinterpret(signed=True))


def _scale_run(paths, standard, out: Path, plan: str, scale_from: Path | None = None, **options):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        write_difficulty_scores(
            paths, standard, out, memory_limit=PLANS[plan], scale_from=scale_from, **options
        )  # fmt: skip
    return [str(w.message) for w in caught]


@pytest.mark.parametrize("plan", PLANS)
@pytest.mark.parametrize("scope", ["joint", "per_model"])
@pytest.mark.parametrize("task", [False, True])
def test_a_saved_scale_reproduces_the_saving_runs_scores_bitwise(
    tmp_path: Path, tiny_overhead, plan: str, scope: str, task: bool
) -> None:
    paths = _write_inputs(tmp_path, "dense")
    standard = _standard("minmax", scope, task)
    first, again = tmp_path / "first.parquet", tmp_path / "again.parquet"
    _scale_run(paths, standard, first, plan, explain=True)
    messages = _scale_run(paths, standard, again, plan, scale_from=first, explain=True)
    assert not [m for m in messages if "clamped" in m]
    assert _table_bits(first).equals(_table_bits(again))
    saved, reused = read_kscore_metadata(first), read_kscore_metadata(again)
    assert saved["scale"] == reused["scale"]
    assert reused["scale_from"] == str(first)
    keys = ["joint"] if scope == "joint" else ["models"]
    assert list(saved["scale"]) == keys


def test_both_plans_record_the_same_scale(tmp_path: Path, tiny_overhead) -> None:
    paths = _write_inputs(tmp_path, "mixed")
    for scope in ("joint", "per_model"):
        standard = _standard("minmax", scope, True)
        records = []
        for plan in PLANS:
            out = tmp_path / f"{plan}-{scope}.parquet"
            _scale_run(paths, standard, out, plan)
            records.append(read_kscore_metadata(out)["scale"])
        assert records[0] == records[1]


def _oracle(frame: pl.DataFrame, stored: dict, standard: QualityStandard) -> np.ndarray:
    """The reference definition on a stored scale: each signal oriented, (v - min) / (max - min) with
    the stored bounds, clipped to [0, 1], weighted over the signals a row has."""
    total = np.zeros(frame.height)
    present = np.zeros(frame.height)
    for signal in standard.signals:
        low, high, _ = stored[signal.name]
        values = frame.get_column(signal.name).cast(pl.Float64).fill_nan(None).to_numpy()
        normalized = np.clip((values - low) / (high - low), 0.0, 1.0)
        if signal.higher_is_better:
            normalized = 1.0 - normalized
        here = ~np.isnan(normalized)
        total[here] += signal.weight * normalized[here]
        present[here] += signal.weight
    return total / present


@pytest.mark.parametrize("plan", PLANS)
def test_values_beyond_the_stored_range_are_clamped_and_counted_once_per_signal(
    tmp_path: Path, tiny_overhead, plan: str
) -> None:
    standard = _standard("minmax", "joint", False)
    paths = _write_inputs(tmp_path, "dense")
    first = tmp_path / "first.parquet"
    _scale_run(paths, standard, first, "memory")
    stored = read_kscore_metadata(first)["scale"]["joint"]
    # The next round: model a's latencies doubled (beyond the stored max) and b's recall shifted.
    later = tmp_path / "later"
    later.mkdir()
    frames = {name: _model_frame("dense", number) for number, name in enumerate(MODELS)}
    frames["a"] = frames["a"].with_columns(pl.col("latency_ms") * 2)
    frames["b"] = frames["b"].with_columns(pl.col("recall") - 0.5)
    new_paths = {}
    for name, frame in frames.items():
        new_paths[name] = later / f"results_{name}.parquet"
        frame.write_parquet(new_paths[name])
    out = tmp_path / f"later-{plan}.parquet"
    messages = _scale_run(new_paths, standard, out, plan, scale_from=first)
    clamped = [m for m in messages if "clamped" in m]
    expected = {}
    for signal in ("latency_ms", "recall", "loss"):
        low, high, _ = stored[signal]
        values = pl.concat([f.get_column(signal) for f in frames.values()]).fill_nan(None).drop_nulls()
        expected[signal] = int(((values < low) | (values > high)).sum())
    assert expected["latency_ms"] > 0 and expected["recall"] > 0 and expected["loss"] == 0
    assert len(clamped) == 2
    for signal in ("latency_ms", "recall"):
        assert [m for m in clamped if f"signal {signal!r}: {expected[signal]:,} value" in m], clamped
    table = pl.read_parquet(out)
    for name, frame in frames.items():
        got = table.select("id", f"difficulty_score_{name}").join(frame, on="id")
        want = _oracle(got, stored, standard)
        np.testing.assert_allclose(got.get_column(f"difficulty_score_{name}").to_numpy(), want, atol=1e-12)
    assert read_kscore_metadata(out)["scale"] == {"joint": stored}


def test_the_plans_agree_on_a_clamped_run(tmp_path: Path, tiny_overhead) -> None:
    standard = _standard("minmax", "per_model", True)
    paths = _write_inputs(tmp_path, "sparse")
    first = tmp_path / "first.parquet"
    _scale_run(paths, standard, first, "memory")
    later = tmp_path / "later"
    later.mkdir()
    new_paths = {}
    for number, name in enumerate(MODELS):
        frame = _model_frame("sparse", number).with_columns(pl.col("loss") * 3)
        new_paths[name] = later / f"results_{name}.parquet"
        frame.write_parquet(new_paths[name])
    outs = {plan: tmp_path / f"{plan}.parquet" for plan in PLANS}
    messages = {plan: _scale_run(new_paths, standard, outs[plan], plan, scale_from=first) for plan in PLANS}
    assert messages["memory"] == messages["partitioned"]
    assert [m for m in messages["memory"] if "'loss'" in m and "clamped" in m]
    assert _table_bits(outs["memory"]).equals(_table_bits(outs["partitioned"]))


def _sample_args(*extra: str) -> list[str]:
    root = Path(__file__).resolve().parent.parent
    return [
        "difficulty",
        *(str(p) for p in sorted((root / "sample_data").glob("results_*.csv"))),
        *extra,
    ]


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, Path]:
    """The sample scored once, and its standard copied beside it (to be edited)."""
    root = Path(__file__).resolve().parent.parent
    config = tmp_path / "standard.yaml"
    config.write_text((root / "configs" / "quality_standard.yaml").read_text().replace("embeddings:", "#"))
    out = tmp_path / "main.parquet"
    done = run_kscore(*_sample_args("-c", str(config), "-o", str(out), "-q"))
    assert done.returncode == 0, done.stderr
    return out, config


def test_a_results_file_given_as_the_scale_is_exit_2(tmp_path: Path, saved) -> None:
    _, config = saved
    root = Path(__file__).resolve().parent.parent
    results = root / "sample_data" / "results_knn.csv"
    out = tmp_path / "o.parquet"
    done = run_kscore(*_sample_args("-c", str(config), "-o", str(out), "--scale-from", str(results)))
    assert done.returncode == 2
    assert "no kscore output, not of kscore difficulty" in done.stderr


def test_a_per_model_scale_names_a_model_it_does_not_hold(tmp_path: Path) -> None:
    standard = _standard("minmax", "per_model", False)
    paths = _write_inputs(tmp_path, "dense")
    first = tmp_path / "first.parquet"
    _scale_run(paths, standard, first, "memory")
    renamed = {"a": paths["a"], "z": paths["b"]}
    with pytest.raises(InputError, match=r"model 'z' has no scale in .*first.parquet \(it holds: a, b, c\)"):
        write_difficulty_scores(renamed, standard, tmp_path / "o.parquet", scale_from=first)
    assert not (tmp_path / "o.parquet").exists()


def test_a_signal_without_values_in_the_stored_run_has_no_scale(tmp_path: Path) -> None:
    standard = _standard("minmax", "joint", False)
    paths = _write_inputs(tmp_path, "dense")
    empty = tmp_path / "empty"
    empty.mkdir()
    first_paths = {}
    for number, name in enumerate(MODELS):
        first_paths[name] = empty / f"{name}.parquet"
        _model_frame("dense", number).with_columns(pl.lit(None, pl.Float64).alias("loss")).write_parquet(
            first_paths[name]
        )
    first = tmp_path / "first.parquet"
    _scale_run(first_paths, standard, first, "memory")
    assert read_kscore_metadata(first)["scale"]["joint"]["loss"] == [None, None, 0]
    with pytest.raises(InputError, match="signal 'loss' has values, but had none in"):
        write_difficulty_scores(paths, standard, tmp_path / "o.parquet", scale_from=first)


def test_the_scale_file_is_an_input_never_overwritten(tmp_path: Path, saved) -> None:
    out, config = saved
    before = out.read_bytes()
    done = run_kscore(*_sample_args("-c", str(config), "-o", str(out), "--scale-from", str(out)))
    assert done.returncode == 2
    assert out.read_bytes() == before


# -- compare OLD NEW: two outputs on one scale ------------------------------------------------------
def _sample_results() -> dict[str, Path]:
    root = Path(__file__).resolve().parent.parent / "sample_data"
    return {name: root / f"results_{name}.csv" for name in ("forest", "knn", "logreg")}


def _sample_standard(scope: str = "joint") -> QualityStandard:
    root = Path(__file__).resolve().parent.parent
    from kscore.config import load_standard

    standard = load_standard(root / "configs" / "quality_standard.yaml")
    data = {**standard.to_dict(), "scope": scope}
    data.pop("normalized_weights")
    data.pop("embeddings", None)
    return QualityStandard.from_dict(data)


def test_compare_across_files_equals_one_file_compare_of_both_models_scored_together(tmp_path: Path) -> None:
    import kscore

    results, standard = _sample_results(), _sample_standard()
    together = tmp_path / "together.parquet"
    kscore.difficulty({"main": results["forest"], "branch": results["knn"]}, standard, together)
    old, new = tmp_path / "old.parquet", tmp_path / "new.parquet"
    kscore.difficulty({"model": results["forest"]}, standard, old, scale_from=together)
    kscore.difficulty({"model": results["knn"]}, standard, new, scale_from=together)
    one_file = kscore.compare(together, "main", "branch", margin=0.02)
    across = kscore.compare([old, new], margin=0.02)
    columns = ["id", "baseline", "candidate", "delta", "status"]
    assert across.get_column("model").unique().to_list() == ["model"]
    assert across.select(columns).sort("id").equals(one_file.select(columns).sort("id"))
    summaries = [
        kscore.compare(together, "main", "branch", tmp_path / "one.csv", margin=0.02),
        kscore.compare([old, new], out=tmp_path / "two.csv", margin=0.02),
    ]
    for key in ("regressions", "improvements", "unchanged", "only_in_one"):
        assert summaries[0][key] == summaries[1][key], key
    assert summaries[0]["regressions"] > 0 and summaries[0]["improvements"] > 0


def test_compare_across_files_compares_every_model_in_both(tmp_path: Path) -> None:
    import kscore

    results, standard = _sample_results(), _sample_standard("per_model")
    old, new = tmp_path / "old.parquet", tmp_path / "new.parquet"
    kscore.difficulty({"a": results["forest"], "b": results["knn"]}, standard, old)
    # The next run: a and b got each other's results; a model c has no per_model scale in OLD.
    with pytest.raises(InputError, match="model 'c' has no scale in"):
        kscore.difficulty({"a": results["knn"], "c": results["logreg"]}, standard, new, scale_from=old)
    kscore.difficulty({"b": results["forest"], "a": results["knn"]}, standard, new, scale_from=old)
    table = kscore.compare([old, new])
    assert sorted(table.get_column("model").unique().to_list()) == ["a", "b"]
    old_table, new_table = pl.read_parquet(old), pl.read_parquet(new)
    for name in ("a", "b"):
        part = table.filter(pl.col("model") == name).sort("id")
        want = old_table.select("id", pl.col(f"difficulty_score_{name}").alias("baseline")).join(
            new_table.select("id", pl.col(f"difficulty_score_{name}").alias("candidate")), on="id"
        )
        assert part.select("id", "baseline", "candidate").equals(want.sort("id"))
    summary = kscore.compare([old, new], out=tmp_path / "c.parquet", max_regressions=0)
    assert summary["regressions"] == int((table.get_column("status") == "regression").sum()) > 0
    assert summary["gates"][0]["passed"] is False
    assert {r["model"] for r in summary["largest_regressions"]} <= {"a", "b"}


@pytest.fixture
def two_runs(tmp_path: Path) -> dict[str, Path]:
    """main's output; a branch scored on main's scale; a branch scored on its own scale."""
    import kscore

    results, standard = _sample_results(), _sample_standard()
    runs = {name: tmp_path / f"{name}.parquet" for name in ("main", "scaled", "own")}
    kscore.difficulty({"m": results["forest"]}, standard, runs["main"])
    kscore.difficulty({"m": results["knn"]}, standard, runs["scaled"], scale_from=runs["main"])
    kscore.difficulty({"m": results["knn"]}, standard, runs["own"])
    return runs


def _error(done) -> str:
    lines = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    return lines[0]


def test_compare_cli_across_files_passes_and_fails_its_gates(tmp_path: Path, two_runs) -> None:
    done = run_kscore("compare", str(two_runs["main"]), str(two_runs["scaled"]), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["old"] == str(two_runs["main"]) and summary["regressions"] > 0
    gated = run_kscore(
        "compare", str(two_runs["main"]), str(two_runs["scaled"]), "--max-regressions", "0", "-q"
    )
    assert gated.returncode == 1


def test_compare_refuses_files_not_on_one_scale(tmp_path: Path, two_runs) -> None:
    error = _error(run_kscore("compare", str(two_runs["main"]), str(two_runs["own"])))
    assert "are not on one scale" in error and f"--scale-from {two_runs['main']}" in error


def test_compare_refuses_files_of_different_standards(tmp_path: Path, two_runs) -> None:
    import kscore

    data = _sample_standard().to_dict()
    data.pop("normalized_weights")
    data["metrics"][0]["weight"] = 5
    other = tmp_path / "other.parquet"
    kscore.difficulty({"m": _sample_results()["knn"]}, QualityStandard.from_dict(data), other)
    error = _error(run_kscore("compare", str(two_runs["main"]), str(other)))
    assert "were scored with different standards" in error and "'correct' weighs" in error


@pytest.mark.parametrize(
    "args, named",
    [
        (["--baseline", "m"], "name both models (--baseline from OLD, --candidate from NEW) or neither"),
        (["--baseline", "m", "--candidate", "x"], "unknown model 'x'"),
    ],
)
def test_compare_across_files_names_a_wrong_model_choice(two_runs, args, named) -> None:
    error = _error(run_kscore("compare", str(two_runs["main"]), str(two_runs["scaled"]), *args))
    assert named in error


def test_compare_across_files_needs_their_metadata_and_a_model_in_both(tmp_path: Path, two_runs) -> None:
    import kscore

    bare = tmp_path / "bare.csv"
    pl.read_parquet(two_runs["scaled"]).write_csv(bare)  # no sidecar: no scale
    assert "has no kscore metadata" in _error(run_kscore("compare", str(two_runs["main"]), str(bare)))
    renamed = tmp_path / "renamed.parquet"
    knn = _sample_results()["knn"]
    kscore.difficulty({"z": knn}, _sample_standard(), renamed, scale_from=two_runs["main"])
    error = _error(run_kscore("compare", str(two_runs["main"]), str(renamed)))
    assert "no model is in both files" in error and "--baseline (OLD's) and --candidate (NEW's)" in error
    done = run_kscore("compare", str(two_runs["main"]), str(renamed), "--baseline", "m", "--candidate", "z")
    assert done.returncode == 0, done.stderr
    before = two_runs["main"].read_bytes()
    main, scaled = str(two_runs["main"]), str(two_runs["scaled"])
    assert "would overwrite an input" in _error(run_kscore("compare", main, scaled, "-o", main))
    assert two_runs["main"].read_bytes() == before


def test_compare_across_files_row_by_row_equals_the_join_and_handles_new_and_dropped_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files listing the same ids compare row by row (no join); the join gives the same table.
    Rows dropped from NEW or new in it are `only_baseline` / `only_candidate`."""
    import kscore
    import kscore.core.comparison as comparison

    results, standard = _sample_results(), _sample_standard()
    old, new, changed = (tmp_path / f"{n}.parquet" for n in ("old", "new", "changed"))
    kscore.difficulty({"m": results["forest"]}, standard, old)
    kscore.difficulty({"m": results["knn"]}, standard, new, scale_from=old)
    assert comparison.same_ids(pl.scan_parquet(old), pl.scan_parquet(new), "id")
    row_by_row = kscore.compare([old, new], margin=0.01)
    monkeypatch.setattr(comparison, "same_ids", lambda *args: False)
    joined = kscore.compare([old, new], margin=0.01)
    assert row_by_row.equals(joined)
    monkeypatch.undo()
    knn = pl.read_csv(results["knn"])
    shifted = knn.filter(pl.col("id") % 10 != 0).with_columns(
        pl.when(pl.col("id") % 7 == 0).then(pl.col("id") + 100_000).otherwise(pl.col("id")).alias("id")
    )
    shifted.write_csv(tmp_path / "shifted.csv")
    kscore.difficulty({"m": tmp_path / "shifted.csv"}, standard, changed, scale_from=old)
    assert not comparison.same_ids(pl.scan_parquet(old), pl.scan_parquet(changed), "id")
    table = kscore.compare([old, changed])
    counts = dict(table.group_by("status").len().iter_rows())
    old_ids = set(pl.read_parquet(old).get_column("id").to_list())
    new_ids = set(pl.read_parquet(changed).get_column("id").to_list())
    assert counts["only_baseline"] == len(old_ids - new_ids) > 0
    assert counts["only_candidate"] == len(new_ids - old_ids) > 0
    assert table.height == len(old_ids | new_ids)
