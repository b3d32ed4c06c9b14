"""Matching the rows of several models by datapoint id, fast.

Integer ids in a compact range are matched by direct addressing (row of id `i` goes to slot
`i - min_id`): one scatter per column, no sort, no hash. Other ids are located by binary search in
the sorted union of all ids. Either way the output rows are sorted by id.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import polars as pl

from kscore.errors import InputError

# Direct addressing is used while the id span is at most this many times the largest model's rows.
DENSE_SPAN_FACTOR = 4
_T = TypeVar("_T")
_R = TypeVar("_R")


@dataclass
class Alignment:
    """`ids[k]` is the id of output row k; `columns[model][name][k]` that model's value there.

    Float columns hold NaN where a model has no row (or a null); integer columns hold -1.
    """

    ids: pl.Series
    columns: dict[str, dict[str, np.ndarray]]


def parallel_map(func: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """`map` over threads, one per core: numpy's scatter and polars release the GIL."""
    workers = min(len(items), os.cpu_count() or 1)
    if workers <= 1:
        return [func(item) for item in items]
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(func, items))


def align_by_id(
    frames: Mapping[str, pl.DataFrame], id_col: str, labels: Mapping[str, str] | None = None
) -> Alignment:
    """Place every non-id column of every frame on one row per distinct id (sorted by id).

    A duplicated id within one frame raises InputError naming `labels[model]` and the row count.
    """
    labels = labels or {}
    dtype = _common_id_dtype([f.schema[id_col] for f in frames.values()])
    ids = {name: f.get_column(id_col).cast(dtype) for name, f in frames.items()}
    low = _dense_low(ids) if dtype.is_integer() else None

    if low is not None:
        size = int(max(s.max() for s in ids.values())) - low + 1  # type: ignore[arg-type]
        union = None

        def positions(name: str) -> np.ndarray:
            values = ids[name].to_numpy()
            return values - low if low else values

    else:
        union = pl.concat(list(ids.values())).unique().sort()
        size = len(union)

        def positions(name: str) -> np.ndarray:
            return union.search_sorted(ids[name]).to_numpy()

    def place(name: str) -> tuple[dict[str, np.ndarray], np.ndarray]:
        frame, where = frames[name], positions(name)
        present = np.zeros(size, dtype=np.bool_)
        present[where] = True
        if np.count_nonzero(present) != len(where):
            _raise_duplicates(ids[name], labels.get(name, f"model {name!r}"))
        # A model that has every id writes every slot: no pass to mark the missing ones.
        holes = None if len(where) == size else ~present
        placed = {c: _scatter(frame.get_column(c), where, size, holes) for c in frame.columns if c != id_col}
        return placed, present

    placed = dict(zip(frames, parallel_map(place, list(frames)), strict=True))
    if union is not None:  # the union holds exactly the ids: every slot is filled
        return Alignment(union.alias(id_col), {name: cols for name, (cols, _) in placed.items()})
    filled = np.logical_or.reduce([present for _, present in placed.values()])
    slot_ids = pl.Series(id_col, np.arange(low, low + size, dtype=np.int64)).cast(dtype)
    if filled.all():
        return Alignment(slot_ids, {name: cols for name, (cols, _) in placed.items()})
    slots = np.flatnonzero(filled)  # drop the slots of ids that no model has
    return Alignment(
        slot_ids.gather(slots),
        {name: {c: v[slots] for c, v in cols.items()} for name, (cols, _) in placed.items()},
    )


def _common_id_dtype(dtypes: list[pl.DataType]) -> pl.DataType:
    if len(set(dtypes)) == 1:
        return dtypes[0]
    if all(d.is_integer() for d in dtypes):
        return pl.Int64()
    return pl.String()


def _dense_low(ids: Mapping[str, pl.Series]) -> int | None:
    """The smallest id if the ids are compact enough for direct addressing, else None."""
    low = min(int(s.min()) for s in ids.values())  # type: ignore[arg-type]
    high = max(int(s.max()) for s in ids.values())  # type: ignore[arg-type]
    largest = max(len(s) for s in ids.values())
    return low if high - low + 1 <= DENSE_SPAN_FACTOR * largest + 1024 else None


def _scatter(values: pl.Series, where: np.ndarray, size: int, holes: np.ndarray | None) -> np.ndarray:
    """`out[where] = values`; slots in `holes` get NaN (floats) or -1 (integers)."""
    if values.dtype.is_float():
        out = np.empty(size)
        out[where] = values.to_numpy()
        missing: float = np.nan
    else:
        out = np.empty(size, dtype=np.int64)
        out[where] = values.fill_null(-1).to_numpy()
        missing = -1
    if holes is not None:
        out[holes] = missing
    return out


def _raise_duplicates(ids: pl.Series, label: str) -> None:
    duplicated = ids.is_duplicated()
    examples = ids.filter(duplicated).unique(maintain_order=True).head(3).to_list()
    raise InputError(
        f"{label}: column {ids.name!r} has {int(duplicated.sum())} rows with a duplicated id "
        f"(e.g. {examples})"
    )
