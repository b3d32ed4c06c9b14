"""A saved scale (SPEC §2): the statistics a difficulty run normalized its signals with.

A difficulty output records them in its metadata (`scale`); `difficulty --scale-from FILE` scores a
later run with them, so that the two runs' scores are on one scale: min-max normalization with the
stored minimum and maximum, values beyond them clamped to 0 or 1. The stored counts are the earlier
run's; a run always uses its own counts (which rows have which signal).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import polars as pl

from kscore.config import QualityStandard, Signal
from kscore.errors import InputError, KscoreWarning

Stats = dict[str, tuple[float | None, float | None, int]]  # signal -> (min, max, non-null count)
# Model name -> its statistics (per_model scope), or None -> all models' (joint scope).
Scale = dict[str | None, Stats]


def merge_stats(a: Stats, b: Stats) -> Stats:
    """Statistics of two sets of rows from those of each (exact: min, max and counts)."""
    out = dict(a)
    for name, (low, high, count) in b.items():
        if name not in out or out[name][2] == 0:
            out[name] = (low, high, count)
        elif count:
            old_low, old_high, old_count = out[name]
            out[name] = (min(old_low, low), max(old_high, high), old_count + count)  # type: ignore[type-var]
    return out


def scale_record(scale: Scale) -> dict[str, Any]:
    """The scale as kscore's metadata holds it: `{"joint": stats}` or `{"models": {name: stats}}`,
    each signal's statistics as `[min, max, count]` (floats round-trip JSON exactly)."""
    if None in scale:
        return {"joint": {k: list(v) for k, v in scale[None].items()}}
    return {"models": {name: {k: list(v) for k, v in stats.items()} for name, stats in scale.items()}}


def read_scale(data: Any, standard: QualityStandard, where: str) -> Scale:
    """The scale recorded in a difficulty output's metadata (`data`: its `scale` value), checked:
    one entry per model (or `joint`), every signal of `standard` as [min, max, count]."""
    key = "joint" if standard.scope == "joint" else "models"
    if not isinstance(data, dict) or set(data) != {key}:
        raise InputError(f"{where}: 'scale' is not a {standard.scope} scale ({{{key!r}: ...}}); score again")
    if key == "joint":
        return {None: _read_stats(data[key], standard.signals, where, "scale.joint")}
    models = data[key]
    if not isinstance(models, dict) or not models:
        raise InputError(f"{where}: 'scale.models' is not an object of models; score it again")
    return {
        str(name): _read_stats(stats, standard.signals, where, f"scale.models.{name}")
        for name, stats in models.items()
    }


def _read_stats(data: Any, signals: Iterable[Signal], where: str, key: str) -> Stats:
    if not isinstance(data, dict):
        raise InputError(f"{where}: {key!r} is not an object of signals; score it again")
    out: Stats = {}
    for signal in signals:
        value = data.get(signal.name)
        if not _valid_stats(value):
            shown = "missing" if value is None else str(value)[:60]
            raise InputError(
                f"{where}: '{key}.{signal.name}' is {shown}, not [min, max, count]; was it edited? "
                "score it again"
            )
        low, high, count = value
        out[signal.name] = (None if low is None else float(low), None if high is None else float(high), count)
    return out


def _valid_stats(value: Any) -> bool:
    if not isinstance(value, list) or len(value) != 3:
        return False
    low, high, count = value
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        return False
    if count == 0:
        return low is None and high is None
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (low, high))
    return numbers and math.isfinite(low) and math.isfinite(high) and low <= high


def scaled(own: Stats, stored: Stats, signals: Iterable[Signal], where: str, source: str) -> Stats:
    """The statistics a run normalizes with on a stored scale: the stored min and max, and its own
    counts. A signal that has values now but had none in the stored run has no scale: exit 2."""
    out: Stats = {}
    for signal in signals:
        low, high, stored_count = stored[signal.name]
        count = own[signal.name][2]
        if count and not stored_count:
            raise InputError(
                f"{where}: signal {signal.name!r} has values, but had none in {source}: there is no scale "
                "to put them on; score without --scale-from"
            )
        out[signal.name] = (low, high, count)
    return out


def beyond(own: Stats, stored: Stats) -> list[str]:
    """The signals with a value beyond the stored range (from the run's own min and max)."""
    out = []
    for name, (low, high, count) in own.items():
        stored_low, stored_high, stored_count = stored[name]
        if count and stored_count and (low < stored_low or high > stored_high):  # type: ignore[operator]
            out.append(name)
    return out


def clamped_counts(frame: pl.DataFrame, stored: Stats, names: Iterable[str]) -> dict[str, int]:
    """Per signal of `names`, how many of `frame`'s values lie beyond the stored range."""
    exprs = [
        ((pl.col(n) < stored[n][0]) | (pl.col(n) > stored[n][1])).sum().alias(n)
        for n in names
        if stored[n][2]
    ]
    if not exprs:
        return {}
    return {k: int(v) for k, v in frame.select(exprs).row(0, named=True).items()}


def add_counts(total: dict[str, int], more: Mapping[str, int]) -> None:
    for name, count in more.items():
        total[name] = total.get(name, 0) + count


def warn_clamped(counts: Mapping[str, int], source: str) -> None:
    """One warning per signal with values beyond the stored scale's range."""
    for name, count in counts.items():
        if count:
            warnings.warn(
                KscoreWarning(
                    f"signal {name!r}: {count:,} value{'s' if count != 1 else ''} beyond the range of the "
                    f"scale from {source} clamped to 0 or 1"
                ),
                stacklevel=2,
            )


def standard_difference(stored: Mapping[str, Any], mine: Mapping[str, Any]) -> str | None:
    """How a standard (`QualityStandard.to_dict()`) differs from another's as a difficulty output's
    metadata holds it, in what scores depend on: metrics, directions, weights, task, normalization
    and scope; None where they agree."""
    for key in ("normalization", "scope"):
        if stored.get(key) != mine.get(key):
            return f"{key} is {stored.get(key)!r} there, {mine.get(key)!r} here"
    metrics = stored.get("metrics")
    theirs = {m.get("name"): m for m in metrics if isinstance(m, dict)} if isinstance(metrics, list) else {}
    ours = {m["name"]: m for m in mine.get("metrics") or []}
    for name in [*ours, *theirs]:
        if name not in theirs:
            return f"metric {name!r} is not in it"
        if name not in ours:
            return f"its metric {name!r} is not in this standard"
        if theirs[name].get("direction") != ours[name]["direction"]:
            return f"metric {name!r} is {theirs[name].get('direction')} there, {ours[name]['direction']} here"
    # Weights count as normalized (2, 1, 1 and 4, 2, 2 give the same scores).
    their_weights = stored.get("normalized_weights") or {}
    for name, weight in (mine.get("normalized_weights") or {}).items():
        if not isinstance(their_weights, dict) or their_weights.get(name) != weight:
            there = their_weights.get(name) if isinstance(their_weights, dict) else None
            return f"signal {name!r} weighs {there!r} there (normalized), {weight!r} here"
    if stored.get("task") != mine.get("task"):
        return f"its task is {stored.get('task')!r}, this standard's {mine.get('task')!r}"
    return None
