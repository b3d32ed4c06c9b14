"""The quality standard: YAML -> validated, frozen objects (SPEC §1)."""

from __future__ import annotations

import math
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from kscore.errors import ConfigError, did_you_mean, short

Direction = Literal["higher_is_better", "lower_is_better"]
TaskType = Literal["binary_classification", "regression", "multiclass_classification", "object_detection"]

DIRECTION_ALIASES: dict[str, Direction] = {
    "higher_is_better": "higher_is_better",
    "hib": "higher_is_better",
    "higher": "higher_is_better",
    "lower_is_better": "lower_is_better",
    "lib": "lower_is_better",
    "lower": "lower_is_better",
}
NORMALIZATIONS = ("minmax", "rank")
SCOPES = ("per_model", "joint")
TASK_TYPES: tuple[TaskType, ...] = (
    "binary_classification",
    "regression",
    "multiclass_classification",
    "object_detection",
)
DETECTION_SIGNALS = ("f1", "recall", "precision")
# The name of the derived task signal wherever signals are listed.
TASK_SIGNAL = "task_error"

TOP_LEVEL_KEYS = ("id_column", "metrics", "task", "normalization", "scope", "embeddings")
METRIC_KEYS = ("name", "direction", "weight")
# Keys a task block may hold, by task type ("type" and "weight" are always allowed).
TASK_KEYS: dict[str, tuple[str, ...]] = {
    "binary_classification": ("ground_truth", "inference", "positive_label", "threshold"),
    "regression": ("ground_truth", "inference"),
    "multiclass_classification": ("ground_truth", "inference"),
    "object_detection": ("tp", "fp", "fn", "signal"),
}
CONFIG_ENV = "KSCORE_CONFIG"
# A standard is a few dozen lines: anything far larger or deeper is a mistake or an attack.
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_DEPTH = 32
DEFAULT_CONFIG_NAME = "kscore.yaml"


@dataclass(frozen=True)
class Metric:
    """One metric column of the result files."""

    name: str
    direction: Direction
    weight: float = 1.0

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "higher_is_better"


@dataclass(frozen=True)
class Task:
    """The task block: how to derive a per-datapoint error signal from ground truth and inference."""

    type: TaskType
    ground_truth: str | None = None
    inference: str | None = None
    weight: float = 1.0
    positive_label: str | int | float | bool | None = None
    threshold: float = 0.5
    tp: str = "tp"
    fp: str = "fp"
    fn: str = "fn"
    signal: str = "f1"

    @property
    def result_columns(self) -> tuple[str, ...]:
        """Columns this task reads (ground truth may come from a datapoints file instead)."""
        if self.type == "object_detection":
            return (self.tp, self.fp, self.fn)
        return (self.ground_truth, self.inference)  # type: ignore[return-value]


@dataclass(frozen=True)
class Signal:
    """One column that enters the difficulty score, with its normalized weight."""

    name: str
    higher_is_better: bool
    weight: float
    # A task error lies in a known range [0, 1]; a constant one keeps its value (SPEC §2).
    natural_range: bool = False


@dataclass(frozen=True)
class QualityStandard:
    """A validated quality standard. Build it with `from_yaml` or `from_dict`."""

    metrics: tuple[Metric, ...] = ()
    task: Task | None = None
    id_column: str = "id"
    normalization: Literal["minmax", "rank"] = "minmax"
    scope: Literal["per_model", "joint"] = "per_model"
    embeddings: str | None = None
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.metrics and self.task is None:
            raise ConfigError(f"{self._where}: the standard needs at least one metric or a task")
        names = [m.name for m in self.metrics]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise ConfigError(f"{self._where}: metric {short(duplicated[0])} is listed twice")
        if self.task is not None and TASK_SIGNAL in names:
            raise ConfigError(f"{self._where}: metric name {TASK_SIGNAL!r} is reserved for the task")
        columns = [*names, *(c for c in (self.task.result_columns if self.task else ()) if c)]
        if self.id_column in columns:
            raise ConfigError(
                f"{self._where}: column {short(self.id_column)} is the id column; it cannot also be a "
                "metric or task column"
            )
        total = sum(w for _, w in self._raw_weights())
        if not total > 0:
            raise ConfigError(f"{self._where}: weights must have a positive sum (got {total:g})")
        if not math.isfinite(total):
            raise ConfigError(
                f"{self._where}: weights sum to more than a float can hold; use smaller weights"
            )

    @property
    def _where(self) -> str:
        return self.source or "quality standard"

    def _raw_weights(self) -> list[tuple[str, float]]:
        pairs = [(m.name, m.weight) for m in self.metrics]
        if self.task is not None:
            pairs.append((TASK_SIGNAL, self.task.weight))
        return pairs

    @property
    def signals(self) -> tuple[Signal, ...]:
        """Every signal of the score with weights divided by their sum."""
        total = sum(w for _, w in self._raw_weights())
        signals = [Signal(m.name, m.higher_is_better, m.weight / total) for m in self.metrics]
        if self.task is not None:
            # Every task error but regression's lies on [0, 1] by construction.
            natural = self.task.type != "regression"
            signals.append(Signal(TASK_SIGNAL, False, self.task.weight / total, natural_range=natural))
        return tuple(signals)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str]) -> QualityStandard:
        """Read and validate a standard from a YAML file (safe loader; duplicated keys, deep nesting
        and files over 1 MiB are errors)."""
        path = Path(path)
        try:
            if path.is_dir():
                raise ConfigError(f"{path}: is a folder, not a config file")
            with path.open("rb") as handle:
                raw = handle.read(MAX_CONFIG_BYTES + 1)
            if len(raw) > MAX_CONFIG_BYTES:
                raise ConfigError(f"{path}: config file is larger than {MAX_CONFIG_BYTES // 1024} KiB")
            text = raw.decode("utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
            raise ConfigError(f"{path}: cannot read config file ({reason})") from None
        return cls.from_dict(parse_yaml(text, str(path)), source=str(path))

    @classmethod
    def from_dict(cls, data: Any, source: str | None = None) -> QualityStandard:
        """Validate a parsed standard; every problem names its key."""
        where = source or "quality standard"
        if data is None:
            raise ConfigError(
                f"{where}: the quality standard is empty; it needs id_column and metrics at least "
                "(`kscore init RESULTS_FILE` writes one to start from)"
            )
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected a mapping of keys, got {type(data).__name__}")
        _reject_unknown(data, TOP_LEVEL_KEYS, where)
        metrics_data = data.get("metrics") or []
        if not isinstance(metrics_data, list):
            raise ConfigError(f"{where}: 'metrics' must be a list")
        metrics = tuple(_parse_metric(item, f"{where}: metrics[{i}]") for i, item in enumerate(metrics_data))
        task_data = data.get("task")
        task = _parse_task(task_data, f"{where}: task") if task_data is not None else None
        normalization = _choice(data.get("normalization", "minmax"), NORMALIZATIONS, where, "normalization")
        scope = _choice(data.get("scope", "per_model"), SCOPES, where, "scope")
        id_column = data.get("id_column", "id")
        if not isinstance(id_column, str) or not id_column:
            raise ConfigError(f"{where}: 'id_column' must be a non-empty string, got {short(id_column)}")
        embeddings = data.get("embeddings")
        if embeddings is not None and not isinstance(embeddings, str):
            raise ConfigError(f"{where}: 'embeddings' must be a path")
        return cls(
            metrics=metrics,
            task=task,
            id_column=id_column,
            normalization=normalization,  # type: ignore[arg-type]
            scope=scope,  # type: ignore[arg-type]
            embeddings=embeddings,
            source=source,
        )

    def to_dict(self) -> dict[str, Any]:
        """The resolved standard as plain data (weights as written, plus normalized weights)."""
        out: dict[str, Any] = {
            "id_column": self.id_column,
            "metrics": [asdict(m) for m in self.metrics],
            "normalization": self.normalization,
            "scope": self.scope,
        }
        if self.task is not None:
            out["task"] = _task_to_dict(self.task)
        if self.embeddings is not None:
            out["embeddings"] = self.embeddings
        out["normalized_weights"] = {s.name: s.weight for s in self.signals}
        return out


def parse_yaml(text: str, where: str) -> Any:
    """YAML with the safe loader, refusing duplicated keys and nesting deeper than MAX_CONFIG_DEPTH."""
    import yaml

    class StrictLoader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            self.depth += 1
            try:
                if self.depth > MAX_CONFIG_DEPTH:
                    mark = self.peek_event().start_mark
                    raise ConfigError(
                        f"{where}: nested deeper than {MAX_CONFIG_DEPTH} levels at line {mark.line + 1}"
                    )
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                try:
                    duplicated = key in seen
                    seen.add(key)
                except TypeError:  # an unhashable key: the constructor below reports it
                    continue
                if duplicated:
                    raise ConfigError(
                        f"{where}: key {short(key)} appears twice at line {key_node.start_mark.line + 1}"
                    )
            return super().construct_mapping(node, deep=deep)

    try:
        return yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{where}: invalid YAML{line}: {short(problem)[1:-1]}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply") from None


def find_config(explicit: str | os.PathLike[str] | None = None, required: bool = True) -> Path | None:
    """Config discovery: an explicit path, else $KSCORE_CONFIG, else ./kscore.yaml."""
    if explicit is not None:
        return Path(explicit)
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env)
    default = Path(DEFAULT_CONFIG_NAME)
    if default.is_file():
        return default
    if not required:
        return None
    raise ConfigError(
        f"no quality standard found: pass --config PATH, set ${CONFIG_ENV}, "
        f"or create ./{DEFAULT_CONFIG_NAME} with `kscore init`"
    )


def load_standard(explicit: str | os.PathLike[str] | None = None) -> QualityStandard:
    """Find and read the quality standard (see `find_config`)."""
    path = find_config(explicit)
    assert path is not None
    return QualityStandard.from_yaml(path)


def _task_to_dict(task: Task) -> dict[str, Any]:
    keys = ("type", "weight", *TASK_KEYS[task.type])
    return {k: getattr(task, k) for k in keys}


def _reject_unknown(data: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in data:
        if key not in allowed:
            hint = did_you_mean(key, allowed) if isinstance(key, str) else ""
            raise ConfigError(f"{where}: unknown key {short(key)}{hint} (valid keys: {', '.join(allowed)})")


def _choice(value: Any, valid: tuple[str, ...], where: str, key: str) -> str:
    if not isinstance(value, str) or value not in valid:
        raise ConfigError(f"{where}: {key} {short(value)} is not one of: {', '.join(valid)}")
    return value


def _weight(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: weight must be a number, got {short(value)}")
    if not math.isfinite(value) or value < 0:
        raise ConfigError(f"{where}: weight must be finite and >= 0, got {short(value)}")
    return float(value)


def _column_name(value: Any, where: str, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {key!r} must name a column, got {short(value)}")
    return value


def _parse_metric(item: Any, where: str) -> Metric:
    if isinstance(item, str):
        raise ConfigError(f"{where}: write a metric as a mapping with 'name' and 'direction'")
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(item).__name__}")
    _reject_unknown(item, METRIC_KEYS, where)
    if "name" not in item:
        raise ConfigError(f"{where}: missing key 'name'")
    name = _column_name(item["name"], where, "name")
    where = f"{where} ({short(name)})"
    if "direction" not in item:
        raise ConfigError(f"{where}: missing key 'direction'")
    raw = item["direction"]
    direction = DIRECTION_ALIASES.get(raw.strip().lower()) if isinstance(raw, str) else None
    if direction is None:
        raise ConfigError(f"{where}: unknown direction {short(raw)} (valid: {', '.join(DIRECTION_ALIASES)})")
    return Metric(name=name, direction=direction, weight=_weight(item.get("weight", 1), where))


def _parse_task(item: Any, where: str) -> Task:
    if not isinstance(item, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(item).__name__}")
    task_type = _choice(item.get("type"), TASK_TYPES, where, "type")
    _reject_unknown(item, ("type", "weight", *TASK_KEYS[task_type]), f"{where} ({task_type})")
    kwargs: dict[str, Any] = {"type": task_type, "weight": _weight(item.get("weight", 1), where)}
    if task_type == "object_detection":
        for key in ("tp", "fp", "fn"):
            kwargs[key] = _column_name(item.get(key, key), where, key)
        kwargs["signal"] = _choice(item.get("signal", "f1"), DETECTION_SIGNALS, where, "signal")
        return Task(**kwargs)
    for key in ("ground_truth", "inference"):
        if key not in item:
            raise ConfigError(f"{where}: missing key {key!r}")
        kwargs[key] = _column_name(item[key], where, key)
    if task_type == "binary_classification":
        label = item.get("positive_label")
        if label is not None and not isinstance(label, (str, int, float, bool)):
            raise ConfigError(f"{where}: positive_label must be one label, got {short(label)}")
        kwargs["positive_label"] = label
        threshold = item.get("threshold", 0.5)
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 <= threshold <= 1:
            raise ConfigError(f"{where}: threshold must be a number in [0, 1], got {short(threshold)}")
        kwargs["threshold"] = float(threshold)
    return Task(**kwargs)


_HIGHER_WORDS = (
    "accuracy",
    "acc",
    "recall",
    "precision",
    "f1",
    "iou",
    "map",
    "auc",
    "bleu",
    "rouge",
    "meteor",
    "correct",
    "confidence",
    "conf",
    "prob",
    "probability",
    "similarity",
    "r2",
    "ndcg",
    "mrr",
    "hit",
    "hits",
    "dice",
    "sensitivity",
    "specificity",
)
_LOWER_WORDS = (
    "cost",
    "latency",
    "time",
    "loss",
    "error",
    "err",
    "wer",
    "cer",
    "mae",
    "mse",
    "rmse",
    "perplexity",
    "ppl",
    "duration",
    "ms",
    "seconds",
    "memory",
    "distance",
    "brier",
    "nll",
    "wrong",
    "miss",
)


def guess_direction(column: str) -> Direction | None:
    """A metric's direction guessed from its name's words, or None where the name says nothing."""
    raw = [w for w in re.split(r"[^a-z0-9]+", column.lower()) if w]
    words = set(raw) | {w.rstrip("0123456789") for w in raw}  # rouge1 -> rouge, but keep f1
    if words & set(_LOWER_WORDS):
        return "lower_is_better"
    if words & set(_HIGHER_WORDS):
        return "higher_is_better"
    return None


def yaml_scalar(value: str) -> str:
    """`value` as one line of YAML: plain where that reads back the same, else double-quoted by the
    YAML library (escaping `#`, `:`, quotes, newlines and control characters)."""
    import yaml

    if _PLAIN_NAME.fullmatch(value) and yaml.safe_load(value) == value:
        return value
    dumped = yaml.safe_dump(value, default_style='"', width=float("inf"), allow_unicode=True)
    return dumped.strip().removesuffix("...").strip()


_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


DETECTION_COUNTS = ("tp", "fp", "fn")


# Column names that hold a datapoint's true class and a model's predicted class (lower case).
GROUND_TRUTH_NAMES = (
    "label",
    "labels",
    "target",
    "y",
    "y_true",
    "truth",
    "ground_truth",
    "true_label",
    "class",
)
INFERENCE_NAMES = ("predicted", "prediction", "pred", "y_pred", "predicted_label", "predicted_class")


def class_columns(columns: list[str]) -> tuple[str, str] | None:
    """The (ground truth, inference) pair of class columns among `columns`, by their names, if one of
    each is there: `kscore init` proposes a multiclass task for them instead of two metrics."""
    by_name = {c.lower(): c for c in columns}
    truth = next((by_name[n] for n in GROUND_TRUTH_NAMES if n in by_name), None)
    inference = next((by_name[n] for n in INFERENCE_NAMES if n in by_name), None)
    return (truth, inference) if truth is not None and inference is not None else None


def starter_yaml(
    id_column: str = "id", numeric_columns: list[str] | None = None, classes: tuple[str, str] | None = None
) -> str:
    """A commented starter standard; with result columns, one metric per column, direction guessed,
    an object-detection task where the columns hold `tp`, `fp` and `fn` counts, and a multiclass
    task where `classes` names the true and the predicted class columns.

    Column names are written through the YAML library, so any name reads back as itself.
    """
    lines = [
        "# kscore quality standard: which per-datapoint signals measure a model's quality.",
        "# Each metric: a column of the results files, which way is better, and its weight (weights",
        "# are divided by their sum). An optional task turns ground truth and a prediction into an",
        "# error signal. Validate this file with `kscore check-config`.",
        f"id_column: {yaml_scalar(id_column)}   # unique datapoint key, present in every result file",
    ]
    if classes is not None and numeric_columns is not None:
        numeric_columns = [c for c in numeric_columns if c not in classes]
    counts = {c.lower(): c for c in numeric_columns or []}
    detection = numeric_columns is not None and all(c in counts for c in DETECTION_COUNTS)
    if detection:
        numeric_columns = [c for c in numeric_columns or [] if c.lower() not in DETECTION_COUNTS]
    if numeric_columns is None:
        lines += [
            "metrics:                      # columns of the model-result files",
            "  - name: accuracy",
            "    direction: higher_is_better   # aliases: HIB, higher; or lower_is_better (LIB, lower)",
            "    weight: 1                     # optional, >= 0; weights are divided by their sum",
            "  - name: latency_ms",
            "    direction: lower_is_better",
        ]
    elif numeric_columns or not detection:
        lines.append("metrics:                      # columns of the model-result files")
        unknown = []
        for column in numeric_columns:
            direction = guess_direction(column)
            if direction is None:
                unknown.append(column)
                continue
            lines += [f"  - name: {yaml_scalar(column)}", f"    direction: {direction}", "    weight: 1"]
        for column in unknown:
            lines += [
                f"  # kscore could not guess the direction of {yaml_scalar(column)}: set it and uncomment",
                f"  # - name: {yaml_scalar(column)}",
                "  #   direction: higher_is_better",
            ]
        if len(unknown) == len(numeric_columns) and not detection and classes is None:
            lines.append("  []                            # no metric guessed: add one, or a task below")
    if detection:
        lines += [
            "task:                          # the tp, fp and fn columns: per-datapoint detection counts",
            "  type: object_detection",
            *(f"  {key}: {yaml_scalar(counts[key])}" for key in DETECTION_COUNTS),
            "  signal: f1                    # f1 (default) | recall | precision",
            "  weight: 1",
        ]
    elif classes is not None:
        lines += [
            "task:                          # 1 where the predicted class is not the true one, else 0",
            "  type: multiclass_classification",
            f"  ground_truth: {yaml_scalar(classes[0])}",
            f"  inference: {yaml_scalar(classes[1])}",
            "  weight: 1",
        ]
    else:
        lines += [
            "# task:                        # optional: an error signal from ground truth and inference",
            "#   type: binary_classification  # regression | multiclass_classification | object_detection",
            "#   ground_truth: label",
            "#   inference: score",
            "#   weight: 1",
        ]
    lines += [
        "normalization: minmax          # minmax (default) | rank (percentile rank, robust to outliers)",
        "# joint: every model normalized on the same scale, so a datapoint's scores compare across",
        "# models (what `kscore compare` and CI gates need); per_model (the default when this key is",
        "# left out) ranks each datapoint within each model only.",
        "scope: joint",
        "# embeddings: data/embeddings.parquet   # default input of `kscore embed-scores`",
        "",
    ]
    return "\n".join(lines)
