"""Task error signals, against tables worked by hand."""

from __future__ import annotations

import polars as pl
import pytest

from kscore.config import QualityStandard
from kscore.core.tasks import threshold_accuracy
from kscore.errors import InputError
from kscore.jobs.difficulty import difficulty_scores


def task_standard(metrics=(), **task) -> QualityStandard:
    return QualityStandard.from_dict({"metrics": list(metrics), "task": task})


def explain(frame: pl.DataFrame, standard: QualityStandard, **kwargs) -> pl.DataFrame:
    return difficulty_scores({"m": frame}, standard, explain=True, **kwargs)


def test_binary_with_string_labels_and_positive_label():
    frame = pl.DataFrame({"id": [1, 2, 3, 4], "y": ["cat", "dog", "dog", "cat"], "p": [0.2, 0.9, 0.4, 0.6]})
    standard = task_standard(
        type="binary_classification", ground_truth="y", inference="p", positive_label="dog"
    )
    out = explain(frame, standard)
    # truth 0, 1, 1, 0 -> errors 0.2, 0.1, 0.6, 0.6 -> min-max over [0.1, 0.6]
    assert out["norm_task_error_m"].to_list() == pytest.approx([0.2, 0.0, 1.0, 1.0])
    assert out["top_signal_m"].to_list() == ["task_error"] * 4
    # at threshold 0.5 the predictions are 0, 1, 0, 1: two of four right
    assert threshold_accuracy(frame, standard.task, "id", "r.csv") == 0.5


def test_binary_with_booleans_and_zero_one_labels_agree():
    scores = [0.1, 0.8, 0.3, 0.4]
    as_bool = pl.DataFrame({"id": [1, 2, 3, 4], "y": [False, True, True, False], "p": scores})
    as_int = as_bool.with_columns(pl.col("y").cast(pl.Int64))
    as_text = as_bool.with_columns(pl.col("y").cast(pl.String))
    standard = task_standard(type="binary_classification", ground_truth="y", inference="p")
    expected = explain(as_int, standard)["norm_task_error_m"].to_list()
    # errors 0.1, 0.2, 0.7, 0.4 -> (e - 0.1) / 0.6
    assert expected == pytest.approx([0.0, 1 / 6, 1.0, 0.5])
    assert explain(as_bool, standard)["norm_task_error_m"].to_list() == pytest.approx(expected)
    assert explain(as_text, standard)["norm_task_error_m"].to_list() == pytest.approx(expected)


@pytest.mark.parametrize(
    ("y", "p", "message"),
    [
        ([0, 1, 1], [0.5, 1.5, -0.2], "column 'p' has 2 scores outside [0, 1]"),
        ([0, 1, 2], [0.5, 0.5, 0.5], "column 'y' has 1 binary labels that are not 0 or 1"),
        (["a", "b", "a"], [0.5, 0.5, 0.5], "set task.positive_label"),
    ],
)
def test_binary_bad_input(y, p, message):
    frame = pl.DataFrame({"id": [1, 2, 3], "y": y, "p": p})
    standard = task_standard(type="binary_classification", ground_truth="y", inference="p")
    with pytest.raises(InputError, match=r"r\.csv: ") as info:
        difficulty_scores({"m": frame}, standard, sources={"m": "r.csv"})
    assert message in str(info.value)


def test_regression_absolute_error():
    frame = pl.DataFrame({"id": [1, 2, 3], "y": [1.0, 2.0, 3.0], "yhat": [1.5, 2.0, 0.0]})
    out = explain(frame, task_standard(type="regression", ground_truth="y", inference="yhat"))
    assert out["norm_task_error_m"].to_list() == pytest.approx([0.5 / 3, 0.0, 1.0])


def test_multiclass_score_is_the_share_of_models_that_got_it_wrong():
    truth = ["a", "b", "c", "a", "b"]
    predictions = {
        "m1": ["a", "b", "c", "b", "c"],  # wrong on 4, 5
        "m2": ["a", "c", "c", "b", "b"],  # wrong on 2, 4
        "m3": ["a", "b", "a", "b", "a"],  # wrong on 3, 4, 5
    }
    frames = {m: pl.DataFrame({"id": [1, 2, 3, 4, 5], "y": truth, "pred": p}) for m, p in predictions.items()}
    out = difficulty_scores(
        frames, task_standard(type="multiclass_classification", ground_truth="y", inference="pred")
    )
    assert out["difficulty_score"].to_list() == pytest.approx([0, 1 / 3, 1 / 3, 1, 2 / 3])


def test_multiclass_integer_labels_and_a_constant_task_error_keeps_its_value():
    frame = pl.DataFrame({"id": [1, 2, 3], "y": [0, 1, 2]})
    standard = task_standard(type="multiclass_classification", ground_truth="y", inference="pred")
    all_wrong = frame.with_columns(pred=pl.Series([1, 2, 0]))
    all_right = frame.with_columns(pred=pl.col("y"))
    out = difficulty_scores({"wrong": all_wrong, "right": all_right}, standard)
    assert out["difficulty_score_wrong"].to_list() == [1.0, 1.0, 1.0]
    assert out["difficulty_score_right"].to_list() == [0.0, 0.0, 0.0]
    assert out["difficulty_score"].to_list() == [0.5, 0.5, 0.5]


# (tp, fp, fn) -> f1, recall, precision, worked by hand; zero denominators score 1.
DETECTION_ROWS = [
    ((0, 0, 0), (1.0, 1.0, 1.0)),  # nothing to find, nothing found
    ((2, 1, 1), (4 / 6, 2 / 3, 2 / 3)),
    ((0, 2, 0), (0.0, 1.0, 0.0)),  # recall: nothing to find
    ((0, 0, 3), (0.0, 0.0, 1.0)),  # precision: nothing predicted
    ((3, 0, 1), (6 / 7, 3 / 4, 1.0)),
]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_object_detection_signals_with_zero_denominators(index):
    signal = ("f1", "recall", "precision")[index]
    counts = [row for row, _ in DETECTION_ROWS]
    frame = pl.DataFrame(
        {
            "id": list(range(5)),
            "tp": [c[0] for c in counts],
            "fp": [c[1] for c in counts],
            "fn": [c[2] for c in counts],
        }
    )
    standard = task_standard(type="object_detection", signal=signal)
    out = explain(frame, standard)
    error = [1 - metrics[index] for _, metrics in DETECTION_ROWS]
    low, high = min(error), max(error)
    assert out["norm_task_error_m"].to_list() == pytest.approx([(e - low) / (high - low) for e in error])


def test_detection_custom_columns_and_bad_counts():
    frame = pl.DataFrame(
        {"id": [1, 2, 3], "hits": [1, 2, 0], "false_alarms": [0, -1, 0], "misses": [0.5, 0, 1]}
    )
    standard = task_standard(type="object_detection", tp="hits", fp="false_alarms", fn="misses")
    with pytest.raises(InputError, match=r"r\.csv: column 'false_alarms' has 1 counts that are negative"):
        difficulty_scores({"m": frame}, standard, sources={"m": "r.csv"})
    fixed = frame.with_columns(pl.Series("false_alarms", [0, 1, 0]))
    with pytest.raises(InputError, match="column 'misses' has 1 counts that are negative or not whole"):
        difficulty_scores({"m": fixed}, standard, sources={"m": "r.csv"})


def test_task_and_metrics_combine_by_weight():
    frame = pl.DataFrame({"id": [1, 2, 3], "y": [1, 0, 1], "pred": [1, 1, 0], "latency": [10.0, 20.0, 30.0]})
    standard = task_standard(
        [{"name": "latency", "direction": "LIB", "weight": 1}],
        type="multiclass_classification",
        ground_truth="y",
        inference="pred",
        weight=3,
    )
    out = explain(frame, standard)
    # task errors 0, 1, 1 (weight 3/4); latency 0, 0.5, 1 (weight 1/4)
    assert out["difficulty_score"].to_list() == pytest.approx([0.0, 0.75 + 0.125, 1.0])


def test_ground_truth_from_datapoints_enriches_that_table():
    datapoints = pl.DataFrame({"id": [3, 1, 2, 4], "label": [1, 0, 1, 0], "split": ["a", "b", "c", "d"]})
    frame = pl.DataFrame({"id": [1, 2, 3], "pred": [0, 0, 1]})
    standard = task_standard(type="multiclass_classification", ground_truth="label", inference="pred")
    out = difficulty_scores({"m": frame}, standard, datapoints=datapoints)
    assert out.columns[:3] == ["id", "label", "split"]
    assert out["id"].to_list() == [3, 1, 2, 4]  # the datapoints' order
    assert out["difficulty_score"].to_list() == [0.0, 0.0, 1.0, None]  # 4 was not scored


def test_ground_truth_disagreeing_with_datapoints_or_ids_missing_there():
    datapoints = pl.DataFrame({"id": [1, 2, 3], "label": [0, 1, 1]})
    standard = task_standard(type="multiclass_classification", ground_truth="label", inference="pred")
    disagree = pl.DataFrame({"id": [1, 2, 3], "label": [0, 0, 0], "pred": [0, 1, 1]})
    with pytest.raises(
        InputError, match=r"r\.csv: ground truth 'label' disagrees with --datapoints on 2 rows"
    ):
        difficulty_scores({"m": disagree}, standard, datapoints=datapoints, sources={"m": "r.csv"})
    extra = pl.DataFrame({"id": [1, 2, 9, 8], "pred": [0, 1, 1, 0]})
    with pytest.raises(InputError, match=r"r\.csv: 2 ids are missing from --datapoints \(e\.g\. \[9, 8\]\)"):
        difficulty_scores({"m": extra}, standard, datapoints=datapoints, sources={"m": "r.csv"})
