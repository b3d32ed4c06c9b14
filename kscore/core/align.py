"""Matching the rows of several models by datapoint id, fast.

Integer ids in a compact range are matched by direct addressing (row of id `i` goes to slot
`i - min_id`): one scatter per column, no sort, no hash. Other ids (strings, sparse integers) are
sorted per model; models with the same id set then line up directly, others are located by binary
search in the sorted union of all ids. Either way the output rows are sorted by id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import polars as pl

from kscore.columns import SCORE
from kscore.engines.local import parallel_map
from kscore.errors import DuplicatedIds, InputError

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


_INT64_MAX = (1 << 63) - 1
# Doubles hold every integer up to 2**53 exactly; a float id above that may stand for another id.
_EXACT_FLOAT_INT = 1 << 53


def normalize_ids(ids: pl.Series, label: str) -> pl.Series:
    """Ids ready to be compared by value across files (SPEC §4).

    Integral floats become Int64 (`1.0` is the id `1`); integers become Int64, or UInt64 above
    2**63 - 1. Null, NaN or infinite ids, fractional float ids, float ids beyond 2**53 (not exact)
    and integer ids wider than 64 bits are InputErrors naming `label`, the column and the count.
    """
    return with_id_type(ids, checked_id_type(IdFacts.of(ids), label))


@dataclass
class IdFacts:
    """What `normalize_ids` decides from, for one id column or several pieces of it added
    (`merged`, in row order): pieces read by separate tasks give the messages the whole column
    gives."""

    name: str
    dtype: pl.DataType
    nulls: int = 0
    not_finite: int = 0  # float ids
    fractional: int = 0
    fractional_examples: tuple[float, ...] = ()  # the first three
    largest_magnitude: float = 0.0
    low: int | None = None  # integer ids of types wider than Int64 holds
    high: int | None = None
    nan_texts: int = 0  # text ids

    @classmethod
    def of(cls, ids: pl.Series) -> IdFacts:
        facts = cls(ids.name, ids.dtype, nulls=ids.null_count())
        values = ids.drop_nulls()
        if not len(values):
            return facts
        dtype = ids.dtype
        if dtype.is_float():
            finite = values.is_finite()
            facts.not_finite = len(values) - int(finite.sum())
            values = values.filter(finite)
            fractional = values != values.floor()
            facts.fractional = int(fractional.sum())
            facts.fractional_examples = tuple(values.filter(fractional).head(3).to_list())
            facts.largest_magnitude = float(values.abs().max() or 0.0)  # type: ignore[arg-type]
        elif dtype.is_integer() and dtype not in _NARROW_INTEGERS:
            facts.low, facts.high = int(values.min()), int(values.max())  # type: ignore[arg-type]
        elif dtype in (pl.String, pl.Categorical, pl.Enum):
            text = values.cast(pl.String).str.strip_chars().str.to_lowercase()
            facts.nan_texts = int(text.is_in(["nan", "+nan", "-nan"]).sum())
        return facts

    def merged(self, other: IdFacts) -> IdFacts:
        """These facts and those of the rows after them."""
        lows = [v for v in (self.low, other.low) if v is not None]
        highs = [v for v in (self.high, other.high) if v is not None]
        return IdFacts(
            self.name,
            self.dtype,
            nulls=self.nulls + other.nulls,
            not_finite=self.not_finite + other.not_finite,
            fractional=self.fractional + other.fractional,
            fractional_examples=(self.fractional_examples + other.fractional_examples)[:3],
            largest_magnitude=max(self.largest_magnitude, other.largest_magnitude),
            low=min(lows) if lows else None,
            high=max(highs) if highs else None,
            nan_texts=self.nan_texts + other.nan_texts,
        )


_NARROW_INTEGERS = (pl.Int64, pl.Int32, pl.Int16, pl.Int8, pl.UInt32, pl.UInt16, pl.UInt8)


def checked_id_type(facts: IdFacts, label: str) -> pl.DataType | None:
    """The type `normalize_ids` gives ids of these facts (None: they stay as they are), or the
    InputError it raises."""
    name, dtype = facts.name, facts.dtype
    if facts.nulls:
        raise InputError(f"{label}: column {name!r} has {facts.nulls} null ids")
    if dtype.is_float():
        if facts.not_finite:
            raise InputError(f"{label}: column {name!r} has {facts.not_finite} NaN or infinite ids")
        if facts.fractional:
            raise InputError(
                f"{label}: column {name!r} has {facts.fractional} ids that are not whole numbers "
                f"(e.g. {list(facts.fractional_examples)}); ids must be integers or text"
            )
        if facts.largest_magnitude > _EXACT_FLOAT_INT:
            raise InputError(
                f"{label}: column {name!r} holds ids above 2**53 as floats, which cannot tell "
                "neighbouring ids apart; store them as integers or text"
            )
        return pl.Int64
    if dtype.is_integer():
        if dtype in _NARROW_INTEGERS or facts.low is None or facts.high is None:
            return pl.Int64
        low, high = facts.low, facts.high
        if low >= -_INT64_MAX - 1 and high <= _INT64_MAX:
            return pl.Int64
        if low >= 0 and high < 1 << 64:
            return pl.UInt64
        example = high if high > _INT64_MAX else low
        raise InputError(
            f"{label}: column {name!r} holds ids wider than 64 bits (e.g. {example}); store them as text"
        )
    if dtype in (pl.String, pl.Categorical, pl.Enum):
        if facts.nan_texts:
            raise InputError(f"{label}: column {name!r} has {facts.nan_texts} NaN ids")
        return pl.String
    if dtype == pl.Boolean or dtype.is_nested():
        raise InputError(f"{label}: column {name!r} is {dtype}; ids must be integers or text")
    return None


@dataclass
class DifficultyFacts:
    """What `--difficulty`'s checks decide from: a difficulty output's ids (`IdFacts`) and its
    scores outside [0, 1] (how many, the first three), for the whole file or its pieces added in
    row order (`merged`)."""

    ids: IdFacts
    outside: int = 0
    outside_examples: tuple[float, ...] = ()

    @classmethod
    def of(cls, ids: pl.Series, scores: pl.Series) -> DifficultyFacts:
        values = scores.cast(pl.Float64)
        outside = ~values.is_between(0.0, 1.0) & values.is_not_null() & ~values.is_nan()
        return cls(IdFacts.of(ids), int(outside.sum()), tuple(values.filter(outside).head(3).to_list()))

    def merged(self, other: DifficultyFacts) -> DifficultyFacts:
        """These facts and those of the rows after them."""
        examples = (self.outside_examples + other.outside_examples)[:3]
        return DifficultyFacts(self.ids.merged(other.ids), self.outside + other.outside, examples)


def checked_difficulty_columns(schema: Mapping[str, pl.DataType], id_col: str) -> None:
    """InputError unless a difficulty output's columns hold ids and numeric scores."""
    for column in (id_col, SCORE):
        if column not in schema:
            raise InputError(
                f"--difficulty: missing column {column!r} (is it the output of kscore difficulty?)"
            )
    dtype = schema[SCORE]
    if not (dtype.is_numeric() or dtype == pl.Null):
        raise InputError(f"--difficulty: column {SCORE!r} is {dtype}, not a number")


def checked_difficulty_values(facts: DifficultyFacts, duplicated: int, id_col: str) -> None:
    """InputError where a difficulty output repeats ids (`duplicated` rows) or holds scores outside
    [0, 1] (after its ids' own checks, `checked_id_type`)."""
    if duplicated:
        raise InputError(f"--difficulty: column {id_col!r} has {duplicated} rows with a duplicated id")
    if facts.outside:
        raise InputError(
            f"--difficulty: column {SCORE!r} has {facts.outside} values outside [0, 1] "
            f"(e.g. {list(facts.outside_examples)}); difficulty scores from kscore difficulty lie in [0, 1]"
        )


def split_masks(
    split: pl.Series, train_values: Sequence[str], reference_values: Sequence[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    """(the train rows, the reference rows) of a split column (as text): train rows have one of
    `train_values`; reference rows one of `reference_values`, or with None any other non-null
    value."""
    is_train = split.is_in(list(train_values)).fill_null(False).to_numpy()
    if reference_values is None:
        return is_train, ~is_train & split.is_not_null().to_numpy()
    return is_train, split.is_in(list(reference_values)).fill_null(False).to_numpy() & ~is_train


def joined_id_type(left: pl.DataType, right: pl.DataType) -> pl.DataType:
    """The type two files' normalized ids are compared in: theirs where they agree, text where
    either is text, else Int64 (an id that does not fit it matches nothing)."""
    if left == right:
        return left
    return pl.String if pl.String in (left, right) else pl.Int64


def with_id_type(ids: pl.Series, dtype: pl.DataType | None) -> pl.Series:
    """`ids` as `checked_id_type` typed them."""
    return ids if dtype is None or ids.dtype == dtype else ids.cast(dtype)


Derive = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class Placed:
    """One model's rows placed on the slots of the ids `low .. low + size - 1` (direct addressing),
    its frame no longer needed: what `place_dense` gives and `align_by_id` lines up.

    `columns` as in `Alignment`; `present` marks the slots holding a row, None where all do.
    """

    low: int
    size: int
    columns: dict[str, np.ndarray]
    present: np.ndarray | None
    id_dtype: pl.DataType
    rows: int

    def frame(self, id_col: str) -> pl.DataFrame:
        """The rows again, as a frame sorted by id."""
        if self.present is None:
            ids, columns = np.arange(self.low, self.low + self.size, dtype=np.int64), self.columns
        else:
            slots = np.flatnonzero(self.present)
            ids, columns = slots + self.low, {c: v[slots] for c, v in self.columns.items()}
        return pl.DataFrame(
            [pl.Series(id_col, ids).cast(self.id_dtype), *(pl.Series(c, v) for c, v in columns.items())]
        )


def place_dense(frame: pl.DataFrame, id_col: str, label: str, derive: Derive | None = None) -> Placed | None:
    """One model's rows on the slots of its own Int64 ids, where they are compact enough for direct
    addressing; else None (`align_by_id` then takes the frame).

    With `derive`, the placed columns are `derive(block)` of blocks of the frame's other columns
    (numpy, by name), computed while scattering: a score never needs a column of its own.
    A duplicated id raises InputError naming `label`.
    """
    ids = frame.get_column(id_col)
    if ids.dtype != pl.Int64 or not len(ids):
        return None
    low, high = int(ids.min()), int(ids.max())  # type: ignore[arg-type]
    if high - low + 1 > DENSE_SPAN_FACTOR * len(ids) + 1024:
        return None
    return _placed_rows(frame, ids, id_col, label, (low, high - low + 1), derive)


def align_by_id(
    frames: Mapping[str, pl.DataFrame | Placed], id_col: str, labels: Mapping[str, str] | None = None
) -> Alignment:
    """Place every non-id column of every frame on one row per distinct id (sorted by id).

    A frame may be `Placed` already. A duplicated id within one frame raises InputError naming
    `labels[model]` and the row count.
    """
    labels = {name: (labels or {}).get(name, f"model {name!r}") for name in frames}
    placed = {name: f for name, f in frames.items() if isinstance(f, Placed)}
    dtype = common_id_dtype(
        [f.id_dtype if isinstance(f, Placed) else f.schema[id_col] for f in frames.values()]
    )
    ids = {}
    for name, frame in frames.items():
        if isinstance(frame, Placed):
            continue
        column = frame.get_column(id_col)
        ids[name] = column.cast(dtype, strict=False)
        if ids[name].null_count():  # negative ids beside ids above 2**63 - 1
            raise InputError(
                f"{labels[name]}: column {id_col!r} holds ids that do not fit one 64-bit integer type "
                "with the other files' ids; store ids as text"
            )
    span = _dense_span(ids, placed.values()) if dtype.is_integer() else None
    if span is None:
        unplaced = {name: f.frame(id_col) if isinstance(f, Placed) else f for name, f in frames.items()}
        for name in placed:
            ids[name] = unplaced[name].get_column(id_col).cast(dtype)
        return _align_sorted(unplaced, ids, id_col, labels)
    for name, frame in frames.items():
        if not isinstance(frame, Placed):
            placed[name] = _placed_rows(frame, ids[name], id_col, labels[name], span)
    return _combined([placed[name] for name in frames], list(frames), span, dtype, id_col)


def _placed_rows(
    frame: pl.DataFrame,
    ids: pl.Series,
    id_col: str,
    label: str,
    span: tuple[int, int],
    derive: Derive | None = None,
) -> Placed:
    """Direct addressing: the row of id `i` goes to slot `i - low`; `span` is (low, slots). The
    rows are scattered in two halves on two threads."""
    low, size = span
    placement = _Placement.start(frame, ids, id_col, low, size, derive)
    parallel_map(placement.fill, [0, 1])
    parallel_map(placement.scatter, [0, 1])
    present = placement.finish(label)
    return Placed(low, size, placement.out, present, ids.dtype, len(ids))


def _combined(
    placed: list[Placed], names: list[str], span: tuple[int, int], dtype: pl.DataType, id_col: str
) -> Alignment:
    """The models' placed columns on the slots of `span`, less the slots no model has."""
    low, size = span
    presents = []
    columns = {}
    for name, one in zip(names, placed, strict=True):
        if (one.low, one.size) == span:
            columns[name], present = one.columns, one.present
        else:  # the model's own span lies within the common one
            at = slice(one.low - low, one.low - low + one.size)
            columns[name] = {}
            for c, values in one.columns.items():
                wide = np.empty(size, dtype=values.dtype)
                _mark_missing(wide, slice(None))
                wide[at] = values
                columns[name][c] = wide
            present = np.zeros(size, dtype=np.bool_)
            present[at] = True if one.present is None else one.present
        presents.append(present)
    slot_ids = pl.Series(id_col, np.arange(low, low + size, dtype=np.int64)).cast(dtype)
    if any(present is None for present in presents):  # a model has every id: no slot is empty
        return Alignment(slot_ids, columns)
    filled = np.logical_or.reduce(presents)
    if filled.all():
        return Alignment(slot_ids, columns)
    slots = np.flatnonzero(filled)  # drop the slots of ids that no model has
    return Alignment(
        slot_ids.gather(slots),
        {name: {c: v[slots] for c, v in cols.items()} for name, cols in columns.items()},
    )


# A signalling-NaN bit pattern that arithmetic never produces (the NaNs it makes are quiet ones).
# Being a NaN, it also reads as "missing" where it stays.
_UNWRITTEN = np.int64(0x7FF0_0000_0000_0BAD)
# Rows a `Derive` gets at once: their columns stay in the core's cache.
_BLOCK_ROWS = 1 << 16


@dataclass
class _Placement:
    """One model's columns being scattered onto the slots of its ids, chunk by chunk (no copies).

    The first Float64 column is scattered onto `_UNWRITTEN`, so the slots still holding it are the
    ones no row wrote: this spares a second pass of random writes just to mark the others (the
    slowest part of matching). Without such a column, or if it holds that bit pattern itself,
    a separate present-slot mask is scattered too. With `derive`, the placed columns are computed
    from blocks of the frame's (arithmetic never yields the marker).
    """

    model_ids: pl.Series
    where: list[np.ndarray]  # the slot of every row, chunk by chunk
    parts: dict[str, list[np.ndarray]]  # column -> its values, chunk by chunk
    out: dict[str, np.ndarray]
    marked: str | None  # the column scattered onto `_UNWRITTEN`
    present: np.ndarray | None  # the present-slot mask, where no column is marked
    derive: Derive | None

    @classmethod
    def start(
        cls, frame: pl.DataFrame, ids: pl.Series, id_col: str, low: int, size: int, derive: Derive | None
    ) -> _Placement:
        frame, ids = _same_chunks(frame, ids, id_col)
        where = [chunk.to_numpy() - low if low else chunk.to_numpy() for chunk in ids.get_chunks()]
        parts = {
            c: [_as_array(chunk) for chunk in frame.get_column(c).get_chunks()]
            for c in frame.columns
            if c != id_col
        }
        if derive is None:
            kinds = {c: chunks[0].dtype for c, chunks in parts.items()}
            floats = [c for c in parts if frame.schema[c] == pl.Float64]
        else:
            probe = derive({c: chunks[0][:0] for c, chunks in parts.items()})
            kinds = {c: v.dtype for c, v in probe.items()}
            floats = [c for c, kind in kinds.items() if kind == np.float64]
        out = {c: np.empty(size, dtype=kind) for c, kind in kinds.items()}
        marked = floats[0] if floats else None
        if (
            derive is None
            and marked is not None
            and any((part.view(np.int64) == _UNWRITTEN).any() for part in parts[marked])
        ):
            marked = None
        present = np.zeros(size, dtype=np.bool_) if marked is None else None
        return cls(ids, where, parts, out, marked, present, derive)

    def fill(self, half: int) -> None:
        """Write the marker into one half of the marked column's slots."""
        if self.marked is not None:
            slots = self.out[self.marked].view(np.int64)
            middle = len(slots) // 2
            (slots[:middle] if half == 0 else slots[middle:]).fill(_UNWRITTEN)

    def scatter(self, half: int) -> None:
        """Scatter one half of every chunk's rows (halves write disjoint slots)."""
        for i, slots in enumerate(self.where):
            middle = len(slots) // 2
            rows = range(0, middle) if half == 0 else range(middle, len(slots))
            if self.derive is None:
                self._put(
                    slots[rows.start : rows.stop],
                    {c: p[i][rows.start : rows.stop] for c, p in self.parts.items()},
                )
                continue
            for start in range(rows.start, rows.stop, _BLOCK_ROWS):
                stop = min(start + _BLOCK_ROWS, rows.stop)
                self._put(
                    slots[start:stop], self.derive({c: p[i][start:stop] for c, p in self.parts.items()})
                )

    def _put(self, slots: np.ndarray, values: dict[str, np.ndarray]) -> None:
        for c, v in values.items():
            self.out[c][slots] = v
        if self.present is not None:
            self.present[slots] = True

    def finish(self, label: str) -> np.ndarray | None:
        """Check for duplicated ids and fill the slots no row wrote; the present-slot mask, or None
        if the model has every id."""
        present = self.present if self.marked is None else self.out[self.marked].view(np.int64) != _UNWRITTEN
        n_present = int(np.count_nonzero(present))
        if n_present != len(self.model_ids):
            _raise_duplicates(self.model_ids, label)
        if n_present == len(present):
            return None
        holes = ~present
        for c, values in self.out.items():
            if c != self.marked:  # the marker is a NaN already
                _mark_missing(values, holes)
        return present


def _same_chunks(frame: pl.DataFrame, ids: pl.Series, id_col: str) -> tuple[pl.DataFrame, pl.Series]:
    """The frame and its ids chunked alike (so that chunks scatter without copies)."""
    lengths = ids.chunk_lengths()
    if all(frame.get_column(c).chunk_lengths() == lengths for c in frame.columns if c != id_col):
        return frame, ids
    return frame.rechunk(), ids.rechunk()


def _align_sorted(
    frames: Mapping[str, pl.DataFrame], ids: dict[str, pl.Series], id_col: str, labels: Mapping[str, str]
) -> Alignment:
    """Any ids: sort each model by id; models with the same id set then line up without a search."""

    def sort(name: str) -> tuple[np.ndarray, pl.Series]:
        order, ordered = _sort_with_order(ids[name])
        if (ordered.slice(1) == ordered.slice(0, len(ordered) - 1)).any():
            _raise_duplicates(ids[name], labels[name])
        return order, ordered

    sorted_ids = dict(zip(frames, parallel_map(sort, list(frames)), strict=True))
    first = next(iter(sorted_ids.values()))[1]
    same = all(ordered.equals(first) for _, ordered in sorted_ids.values())
    union = first if same else pl.concat([o for _, o in sorted_ids.values()]).unique().sort()

    def place(name: str) -> dict[str, np.ndarray]:
        order, ordered = sorted_ids[name]
        frame = frames[name]
        values = {c: _as_array(frame.get_column(c))[order] for c in frame.columns if c != id_col}
        if same:
            return values
        where = union.search_sorted(ordered).to_numpy()  # sorted queries: a cache-friendly search
        holes = np.ones(len(union), dtype=np.bool_)
        holes[where] = False
        return {c: _place(v, where, len(union), holes) for c, v in values.items()}

    columns = dict(zip(frames, parallel_map(place, list(frames)), strict=True))
    return Alignment(union.alias(id_col), columns)


def common_id_dtype(dtypes: list[pl.DataType]) -> pl.DataType:
    if len(set(dtypes)) == 1:
        return dtypes[0]
    if all(d.is_integer() for d in dtypes):
        return pl.UInt64() if pl.UInt64() in dtypes else pl.Int64()
    return pl.String()


def _dense_span(ids: Mapping[str, pl.Series], placed: Iterable[Placed] = ()) -> tuple[int, int] | None:
    """(smallest id, number of slots) if the ids, and those `placed` already, are compact enough
    for direct addressing, else None."""
    # Each model's min and max in one parallel pass.
    bounds = [
        s.to_frame().select(pl.all().min().alias("low"), pl.all().max().alias("high")).row(0)
        for s in ids.values()
    ]
    placed = list(placed)
    bounds += [(p.low, p.low + p.size - 1) for p in placed]
    low = min(int(b[0]) for b in bounds)
    high = max(int(b[1]) for b in bounds)
    if high > _INT64_MAX:  # slots are numbered in Int64
        return None
    largest = max([len(s) for s in ids.values()] + [p.rows for p in placed])
    return (low, high - low + 1) if high - low + 1 <= DENSE_SPAN_FACTOR * largest + 1024 else None


def _as_array(values: pl.Series) -> np.ndarray:
    """A column as numpy: floats with NaN for null, integers with -1 for null."""
    if values.dtype.is_float():
        return values.to_numpy()
    return values.fill_null(-1).cast(pl.Int64).to_numpy()


def _place(values: np.ndarray, where: np.ndarray, size: int, holes: np.ndarray | None) -> np.ndarray:
    out = np.empty(size, dtype=values.dtype)
    out[where] = values
    if holes is not None:
        _mark_missing(out, holes)
    return out


def _mark_missing(values: np.ndarray, holes: np.ndarray | slice) -> None:
    """Slots without a row: NaN in float columns, -1 in integer ones (see `Alignment`)."""
    values[holes] = np.nan if values.dtype.kind == "f" else -1


def _sort_with_order(ids: pl.Series) -> tuple[np.ndarray, pl.Series]:
    """The permutation that sorts `ids`, and the sorted ids.

    Integer ids whose span and row numbers fit in 63 bits together are sorted as one packed key
    `(id - min) << bits | row`: a plain integer sort, about twice as fast as an argsort.
    """
    n = len(ids)
    bits = max(int(n - 1).bit_length(), 1)
    if ids.dtype.is_integer() and n:
        low, high = int(ids.min()), int(ids.max())  # type: ignore[arg-type]
        if (high - low).bit_length() + bits <= 63 and high < 1 << 63:
            rows = pl.Series(np.arange(n, dtype=np.uint64))
            keys = ((ids.cast(pl.Int64) - low).cast(pl.UInt64) * (1 << bits) + rows).sort()
            order = (keys & ((1 << bits) - 1)).to_numpy().astype(np.int64)
            ordered = ((keys // (1 << bits)).cast(pl.Int64) + low).cast(ids.dtype)
            return order, ordered.alias(ids.name)
    order = ids.arg_sort().to_numpy().astype(np.int64)
    return order, ids.gather(order)


def _raise_duplicates(ids: pl.Series, label: str) -> None:
    duplicated = ids.is_duplicated()
    examples = ids.filter(duplicated).unique(maintain_order=True).head(3).to_list()
    raise DuplicatedIds(
        f"{label}: column {ids.name!r} has {int(duplicated.sum())} rows with a duplicated id "
        f"(e.g. {examples})"
    )
