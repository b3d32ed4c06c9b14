from __future__ import annotations

from pathlib import Path

import pytest

from kscore.config import (
    QualityStandard,
    find_config,
    guess_direction,
    load_standard,
    starter_yaml,
)
from kscore.errors import ConfigError

from .conftest import CONFIGS


def standard(**data) -> QualityStandard:
    return QualityStandard.from_dict(data, source="test.yaml")


def test_weights_are_divided_by_their_sum():
    s = standard(
        metrics=[
            {"name": "f1", "direction": "HIB", "weight": 2},
            {"name": "latency", "direction": "lower"},
        ]
    )
    assert [(x.name, x.higher_is_better, round(x.weight, 6)) for x in s.signals] == [
        ("f1", True, 0.666667),
        ("latency", False, 0.333333),
    ]


@pytest.mark.parametrize(
    ("alias", "higher"),
    [
        ("higher_is_better", True),
        ("HIB", True),
        ("higher", True),
        ("lower_is_better", False),
        ("LIB", False),
        ("lower", False),
    ],
)
def test_direction_aliases(alias, higher):
    s = standard(metrics=[{"name": "m", "direction": alias}])
    assert s.metrics[0].higher_is_better is higher


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"metrics": [{"name": "m", "direction": "up"}]}, "unknown direction 'up'"),
        ({"metrics": [{"name": "m", "direction": "HIB", "weight": -1}]}, "weight must be finite and >= 0"),
        ({"metrics": [{"name": "m", "direction": "HIB", "weight": float("inf")}]}, "finite"),
        ({"metrics": [{"name": "m", "direction": "HIB", "weight": "2"}]}, "weight must be a number"),
        ({"metrics": [{"name": "m", "direction": "HIB", "weight": 0}]}, "positive sum"),
        ({"metrics": []}, "at least one metric or a task"),
        ({}, "at least one metric or a task"),
        ({"metrics": [{"name": "m", "direction": "HIB"}], "metrix": []}, "unknown key 'metrix'"),
        ({"metrics": [{"name": "m", "direction": "HIB", "wieght": 1}]}, "unknown key 'wieght'"),
        ({"metrics": [{"name": "m"}]}, "missing key 'direction'"),
        ({"metrics": [{"name": "m", "direction": "HIB"}] * 2}, "listed twice"),
        ({"metrics": [{"name": "m", "direction": "HIB"}], "normalization": "zscore"}, "minmax, rank"),
        ({"metrics": [{"name": "m", "direction": "HIB"}], "scope": "global"}, "per_model, joint"),
        ({"task": {"type": "ranking", "ground_truth": "y", "inference": "p"}}, "type 'ranking'"),
        ({"task": {"type": "regression", "ground_truth": "y"}}, "missing key 'inference'"),
        (
            {"task": {"type": "regression", "ground_truth": "y", "inference": "p", "tp": "x"}},
            "unknown key 'tp'",
        ),
        ({"task": {"type": "object_detection", "signal": "map"}}, "signal 'map'"),
    ],
)
def test_invalid_standards_name_the_culprit(data, message):
    with pytest.raises(ConfigError, match=r"test\.yaml") as info:
        standard(**data)
    assert message in str(info.value)


def test_a_task_alone_is_a_standard():
    s = standard(
        task={"type": "multiclass_classification", "ground_truth": "y", "inference": "p", "weight": 3}
    )
    (signal,) = s.signals
    assert (signal.name, signal.weight, signal.natural_range) == ("task_error", 1.0, True)


def test_yaml_syntax_error_names_the_line(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text("id_column: id\nmetrics:\n  - name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML at line \d+"):
        QualityStandard.from_yaml(path)


def test_yaml_is_read_with_a_safe_loader(tmp_path: Path):
    path = tmp_path / "evil.yaml"
    path.write_text("metrics: !!python/object/apply:os.system ['true']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        QualityStandard.from_yaml(path)


def test_discovery_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KSCORE_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="kscore init"):
        find_config()
    (tmp_path / "kscore.yaml").write_text("metrics: [{name: m, direction: HIB}]\n")
    assert find_config() == Path("kscore.yaml")
    monkeypatch.setenv("KSCORE_CONFIG", str(tmp_path / "env.yaml"))
    assert find_config() == tmp_path / "env.yaml"
    assert find_config("explicit.yaml") == Path("explicit.yaml")


def test_bundled_configs_are_valid():
    for path in CONFIGS.glob("*.yaml"):
        assert load_standard(path).signals


@pytest.mark.parametrize(
    ("column", "direction"),
    [
        ("accuracy", "higher_is_better"),
        ("rouge1", "higher_is_better"),
        ("f1_macro", "higher_is_better"),
        ("latency_ms", "lower_is_better"),
        ("log_loss", "lower_is_better"),
        ("wer", "lower_is_better"),
        ("inference_time", "lower_is_better"),
        ("temperature", None),
    ],
)
def test_guess_direction(column, direction):
    assert guess_direction(column) == direction


def test_starter_yaml_round_trips_and_flags_unknown_columns(tmp_path: Path):
    path = tmp_path / "k.yaml"
    path.write_text(starter_yaml("id", ["accuracy", "latency_ms", "temperature"]))
    s = QualityStandard.from_yaml(path)
    assert [m.name for m in s.metrics] == ["accuracy", "latency_ms"]
    assert "could not guess the direction of temperature:" in path.read_text()
    path.write_text(starter_yaml())
    assert QualityStandard.from_yaml(path).metrics


def _alias_bomb(levels: int = 9) -> str:
    items = ["&a0 [" + ", ".join(["x"] * 9) + "]"]
    items += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


@pytest.mark.parametrize("key", ["direction", "weight", "name"])
def test_an_alias_bomb_is_rejected_at_once_with_a_short_message(tmp_path: Path, key: str):
    import time

    metric = {"name": "f1", "direction": "higher", "weight": "1"}
    metric[key] = _alias_bomb()
    body = ", ".join(f"{k}: {v}" for k, v in metric.items())
    path = tmp_path / "bomb.yaml"
    path.write_text(f"metrics:\n  - {{{body}}}\n")
    assert path.stat().st_size < 600
    start = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        QualityStandard.from_yaml(path)
    assert time.perf_counter() - start < 2.0
    assert len(str(caught.value)) < 400


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "id_column: a\nid_column: b\nmetrics: [{name: x, direction: lower}]\n",
            "key 'id_column' appears twice at line 2",
        ),
        ("metrics: [{name: x, direction: lower, name: y}]\n", "key 'name' appears twice"),
        ("metrics: " + "[" * 33 + "]" * 33 + "\n", "nested deeper than 32 levels"),
        ("metrics: " + "[" * 20000 + "]" * 20000 + "\n", "nested deeper than 32 levels"),
    ],
)
def test_duplicated_keys_and_deep_nesting_are_errors(tmp_path: Path, text: str, message: str):
    path = tmp_path / "k.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        QualityStandard.from_yaml(path)


def test_nesting_up_to_the_limit_is_fine():
    from kscore.config import parse_yaml

    assert parse_yaml("a: " + "[" * 30 + "]" * 30, "x") is not None


@pytest.mark.parametrize(
    "name",
    ["error #1", "time: total", "multi\nline", "quote'd", 'dq"x', "- dash", "null", "1e3", "tab\there"],
)
def test_starter_yaml_writes_any_column_name_so_that_it_reads_back(tmp_path: Path, name: str):
    path = tmp_path / "k.yaml"
    path.write_text(starter_yaml("my id", [f"{name} loss"]))
    standard = QualityStandard.from_yaml(path)
    assert standard.id_column == "my id"
    assert [m.name for m in standard.metrics] == [f"{name} loss"]
