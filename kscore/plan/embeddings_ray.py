"""Embeddings read by Ray tasks: the rows of a Parquet input's embedding column stay on the nodes.

`TaskRows` stands where `SpilledRows` stands on one machine. UMAP's stage asks it for the rows
whose hashes are equal, for the rows equal to a saved map's fit rows, to compare rows exactly,
and for its transform batches with the fit sample; the driver holds none of the rows' hashes, and
of the rows only the fit sample. Tasks read the input part by part with the job's reader (`read_part`: the
same float32 matrix the local engine reads), twice in all where no rows repeat, and

- hash every row (the reader checks it) and find a saved map's fit rows, and send each hash to the
  task of its range of hashes, which finds the rows whose hash an earlier row has: `hash_rows`,
  `equal_hash_pairs`, `fit_rows`;
- compare the rows whose hashes are equal, a block of pairs a task (`equal_rows`): the driver gets
  one bool a pair, and holds the repeated rows' numbers and their first rows' (16 bytes a repeat);
- route each row of a transform batch into the object store (`route`), where the actor that
  transforms the batch gathers it (`RoutedBatch`), and send the driver the fit sample from the
  same pass: a batch holds the same rows in the same order as on one machine, so the map is
  bitwise the same;
- assemble each part's coordinates from the batches' results, left in the object store, and the
  fit sample's (`placed`, then `with_repeats` for the rows that repeat an earlier one), and cut
  them into the KDE's train and reference points (`kde_points_by_tasks`): the KDE's tasks and
  the parts' writers read those pieces there, and the driver never holds the map.

Ray keeps the routed rows in its object store and spills them to the nodes' disks beyond it.

Where the output is a dataset the tasks write, the input's other columns stay on the nodes too:
tasks read each part's ids and splits (`split_by_tasks`: the ids' facts added in row order give
the checks of one machine; tasks of ranges of the ids' hashes count the repeated ones), join the
`--difficulty` scores by the same ranges (`difficulty_by_tasks`, or `scanned_difficulty_by_tasks`
where tasks read the difficulty file as well), and write the parts (`write_parts_by_tasks`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kscore.columns import embed_score_columns
from kscore.core.order_stats import KeyRequest, key_counts, quantiles_by_counting
from kscore.core.reduction import (
    Complement,
    RestBatches,
    equal_halves,
    equal_hash_pairs,
    match_fit_rows,
    row_hashes,
)
from kscore.core.spilled_rows import RowSubset
from kscore.engines import Pieces
from kscore.engines.ray import (
    cancel_running,
    fetched,
    from_store,
    gathered,
    node_name,
    ray_module,
    stage_done,
    to_store,
)
from kscore.errors import InputError, OutputError, first_line
from kscore.io import part_name, table_slices
from kscore.storage import polars_options, using

# Embedding bytes a part holds at most (where the input's row groups allow): a task holds its part
# about twice (the decoded column and the matrix).
PART_BYTES = 128 * 1024**2
# Hashes (and their rows' numbers) a task of one range of hash values holds at most, 16 bytes a row:
# 1B rows take 60 ranges.
RANGE_BYTES = 256 * 1024**2


@dataclass(frozen=True)
class EmbeddingPart:
    """Rows `offset` to `offset + length` of the input; `groups`: the Parquet row groups that hold
    exactly them (None: read as a slice)."""

    offset: int
    length: int
    groups: tuple[int, ...] | None = None


def parts_of_groups(group_rows: Sequence[int], dim: int, itemsize: int = 4) -> list[EmbeddingPart]:
    """Runs of consecutive row groups of at most `PART_BYTES` of embeddings each (a larger row group
    is a part alone: a row group is read whole)."""
    parts: list[EmbeddingPart] = []
    groups: list[int] = []
    offset = length = 0
    for group, rows in enumerate(group_rows):
        if groups and (length + rows) * dim * itemsize > PART_BYTES:
            parts.append(EmbeddingPart(offset, length, tuple(groups)))
            offset, length, groups = offset + length, 0, []
        groups.append(group)
        length += rows
    if groups:
        parts.append(EmbeddingPart(offset, length, tuple(groups)))
    return [part for part in parts if part.length]


def parts_of_slices(rows: int, dim: int, itemsize: int = 4) -> list[EmbeddingPart]:
    """Slices of `rows` rows of at most `PART_BYTES` of embeddings each."""
    step = max(1024, PART_BYTES // max(dim * itemsize, 1))
    return [EmbeddingPart(start, min(step, rows - start)) for start in range(0, rows, step)]


class TaskRows:
    """The (rows x dim) embedding matrix of an input, read by Ray tasks part by part. Indexing reads
    the rows asked for, in that order, as a numpy array (like indexing the matrix itself)."""

    ndim = 2
    # Pairs compared by one task where equal hashes are checked exactly (`equal_rows`): the task
    # holds both rows of each, 131,072 pairs of 384 float32 are 400 MB.
    compare_block = 131_072

    def __init__(
        self,
        read_part: Callable[[EmbeddingPart], np.ndarray],
        parts: list[EmbeddingPart],
        dim: int,
        fit_vectors: np.ndarray | None = None,
    ) -> None:
        """`fit_vectors`: a saved map's fit sample, whose rows `hash_rows` finds as it hashes."""
        self.read_part = read_part
        self.fit_vectors = fit_vectors
        self._fit_rows: tuple[np.ndarray, np.ndarray] | None = None
        self.parts = parts
        self.dim = dim
        self.dtype = np.dtype(np.float32)
        self.starts = np.cumsum([0, *(part.length for part in parts)])
        self.count = int(self.starts[-1])
        self.ranges = 1
        self._pieces: list[list[Any]] = []  # [part][range]: the part's hashes in that range (`hash_rows`)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.count, self.dim)

    def __len__(self) -> int:
        return self.count

    def hash_rows(self, progress: Callable[[str, int, int], None] | None = None) -> TaskRows:
        """Read every part once in the tasks, each row's hash (`row_hashes`) sent to the object store
        by range of hash values (`equal_hash_pairs` reads them there), and the rows equal to one of
        `fit_vectors` found (`fit_rows`); a reader's error (a bad value, an unreadable file) reaches
        the caller as itself."""
        ray = ray_module()
        self.ranges = max(1, -(-self.count * 16 // RANGE_BYTES))
        task = ray.remote(num_cpus=1)(_hash_part)
        fit = None if self.fit_vectors is None else ray.put(self.fit_vectors)
        firsts: list[Any] = []  # each task's first result, small: waited for here, not its pieces
        self._pieces = []
        for part in self.parts:
            returns = self.ranges + 1
            first, *pieces = task.options(num_returns=returns).remote(self.read_part, part, self.ranges, fit)
            firsts.append(first)
            self._pieces.append(pieces)
        found = gathered(ray, firsts, stage_done(progress, "read embeddings (ray)"))
        if self.fit_vectors is not None:
            self._fit_rows = _placed(self.starts, [f[1:] for f in found])
        return self

    def fit_rows(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(the rows equal to one of a map's fit sample `vectors`, ascending; which one), found as
        the rows were hashed where these were the `fit_vectors`, else by tasks reading every part."""
        hashed = self.fit_vectors
        if self._fit_rows is not None and hashed is not None and np.array_equal(hashed, vectors):
            return self._fit_rows
        ray = ray_module()
        task = ray.remote(num_cpus=1)(_fit_rows_of_part)
        fit = ray.put(vectors)
        return _placed(self.starts, gathered(ray, [task.remote(self.read_part, p, fit) for p in self.parts]))

    def equal_hash_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(each row whose hash an earlier row has, ascending; the first row with that hash), found
        by one task per range of hash values: the driver gets these rows, not the hashes. The
        hashes are then let go."""
        ray = ray_module()
        task = ray.remote(num_cpus=1)(_equal_hashes_in_range)
        starts = self.starts[:-1]
        pieces = self._taken_pieces()
        refs = [task.remote(starts, *(p[r] for p in pieces)) for r in range(self.ranges)]
        del pieces  # the tasks hold them now, and Ray frees them as each one ends
        found = gathered(ray, refs)
        followers, firsts = (np.concatenate([f[k] for f in found]) for k in range(2))
        order = np.argsort(followers, kind="stable")
        return followers[order], firsts[order]

    def all_hashes(self) -> np.ndarray:
        """Every row's hash, here (only for a map saved by kscore 0.8.7 or earlier, whose batches
        follow the order of the hashes). The hashes are then let go."""
        ray = ray_module()
        out = np.empty(self.count, dtype=np.uint64)
        for start, pieces in zip(self.starts[:-1], self._taken_pieces(), strict=True):
            for hashes, rows in gathered(ray, pieces):
                out[start + rows] = hashes
        return out

    def _taken_pieces(self) -> list[list[Any]]:
        """The hashes' pieces `hash_rows` left in the object store, taken: they are read once."""
        if len(self._pieces) != len(self.parts):
            raise RuntimeError("the rows' hashes were read already, or never made (hash_rows)")
        pieces, self._pieces = self._pieces, []
        return pieces

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        if isinstance(key, slice):
            return self.rows_at(np.arange(*key.indices(self.count)))
        return self.rows_at(np.asarray(key))

    def _by_part(self, index: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        """(part number, the positions in `index` of its rows) for each part `index` touches."""
        part_of = np.searchsorted(self.starts, index, side="right") - 1
        order = np.argsort(part_of, kind="stable")
        bounds = np.searchsorted(part_of[order], np.arange(len(self.parts) + 1))
        for number in range(len(self.parts)):
            places = order[bounds[number] : bounds[number + 1]]
            if len(places):
                yield number, places

    def rows_at(self, index: np.ndarray) -> np.ndarray:
        """The rows `index` (row numbers, any order, repeats allowed), each part's read by a task."""
        index = np.asarray(index, dtype=np.int64)
        out = np.empty((len(index), self.dim), dtype=self.dtype)
        if len(index) == 0:
            return out
        if index.min() < 0 or index.max() >= self.count:
            raise IndexError("row number out of range")
        ray = ray_module()
        task = ray.remote(num_cpus=1)(_rows_of_part)
        places, refs = [], []
        for number, where in self._by_part(index):
            places.append(where)
            refs.append(task.remote(self.read_part, self.parts[number], index[where] - self.starts[number]))
        for where, rows in zip(places, gathered(ray, refs), strict=True):
            out[where] = rows
        return out

    def subset(self, index: np.ndarray | Complement) -> TaskRowSubset:
        """These rows at `index` (row numbers, or a `Complement` of some: kept as it is)."""
        kept = index if isinstance(index, Complement) else np.asarray(index, dtype=np.int64)
        return TaskRowSubset(self, kept)

    def equal_rows(self, rows: np.ndarray, others: np.ndarray) -> np.ndarray:
        """Whether each of `rows` equals the row at the same place of `others` (-0.0 == 0.0), compared
        by tasks in blocks of `compare_block` pairs: each part's task reads the block's rows in it,
        and the block's task compares them. The driver gets one bool a pair, never a row."""
        ray = ray_module()
        reader = ray.remote(num_cpus=1)(_rows_of_part)
        compare = ray.remote(num_cpus=1)(_equal_pairs)
        refs = []
        for start in range(0, len(rows), self.compare_block):
            stop = start + self.compare_block
            wanted = np.concatenate([rows[start:stop], others[start:stop]])
            places, read = [], []
            for number, where in self._by_part(wanted):
                places.append(where)
                local = wanted[where] - self.starts[number]
                read.append(reader.remote(self.read_part, self.parts[number], local))
            refs.append(compare.remote(len(wanted), self.dim, places, *read))
        found = gathered(ray, refs)
        return np.concatenate(found) if found else np.empty(0, dtype=bool)

    def route(
        self,
        chunks: Sequence[np.ndarray],
        progress: Callable[[str, int, int], None] | None = None,
        also: np.ndarray | None = None,
    ) -> tuple[list[RoutedBatch], np.ndarray | None]:
        """Each chunk of row numbers as a batch its transform actor gathers from the object store,
        and the rows `also` (e.g. the fit sample) here, from the same pass: one task a part reads
        the part once and sends each of its rows to its batch (Ray spills what its store does not
        hold). All are routed before the first batch is handed out: the actors then hold the
        cluster's CPUs, which the routing tasks would wait for."""
        wanted = np.empty(0, dtype=np.int64) if also is None else np.asarray(also, dtype=np.int64)
        wanted_by_part = dict(self._by_part(wanted))
        ray = ray_module()
        task = ray.remote(num_cpus=1)(_route_part)
        pieces: list[list[tuple[Any, np.ndarray | slice]]] = [[] for _ in chunks]
        counts: list[Any] = []  # each task's first result, small: waited for here, not its pieces
        also_refs: list[tuple[np.ndarray, Any]] = []
        for number, (local, bounds, touched, slots) in enumerate(self._routes(chunks)):
            places = wanted_by_part.get(number)
            if not len(local) and places is None:
                continue
            extra = None if places is None else wanted[places] - self.starts[number]
            count, *out = task.options(num_returns=len(touched) + 1 + (places is not None)).remote(
                self.read_part, self.parts[number], local, bounds, extra
            )
            counts.append(count)
            if places is not None:
                also_refs.append((places, out.pop()))
            for ref, b, at in zip(out, touched, slots, strict=True):
                pieces[b].append((ref, at))
        gathered(ray, counts, stage_done(progress, "route embeddings (ray)"))
        rows = None
        if also is not None:
            rows = np.empty((len(wanted), self.dim), dtype=self.dtype)
            values = gathered(ray, [ref for _, ref in also_refs])
            for (places, _), value in zip(also_refs, values, strict=True):
                rows[places] = value
        batches = [
            RoutedBatch(len(chunk), self.dim, self.dtype, piece)
            for chunk, piece in zip(chunks, pieces, strict=True)
        ]
        return batches, rows

    def placed(
        self, chunks: Sequence[np.ndarray], results: Sequence[Any], also: np.ndarray, also_values: np.ndarray
    ) -> Pieces:
        """The rows' 2D coordinates in pieces, one a part, each assembled by a task from the results
        of the transform batches (`chunks` of row numbers, as routed; `results`, their (rows x 2)
        coordinates in the object store) and the rows `also` (their `also_values` given here):
        the inverse of `route`. A row of neither is NaN. The pieces stay in the object store."""
        ray = ray_module()
        task = ray.remote(num_cpus=1)(_placed_part)
        also = np.asarray(also, dtype=np.int64)
        also_by_part = dict(self._by_part(also))
        counts, pieces = [], []
        for number, (local, bounds, touched, slots) in enumerate(self._routes(chunks)):
            places = also_by_part.get(number)
            extra = None if places is None else (also[places] - self.starts[number], also_values[places])
            count, piece = task.options(num_returns=2).remote(
                self.parts[number].length, local, bounds, slots, extra, *(results[b] for b in touched)
            )
            counts.append(count)
            pieces.append(piece)
        gathered(ray, counts)
        return Pieces(tuple(pieces), tuple(part.length for part in self.parts), fetched)

    def with_repeats(self, placed: Pieces, followers: np.ndarray, firsts: np.ndarray) -> Pieces:
        """`placed` (coordinates of the first rows, NaN at `followers`) with each of `followers`
        (ascending) given the coordinates of the row `firsts` names. A task a part reads its first
        rows' values and sends them to the parts of the rows that repeat them, whose tasks put them
        in: the values go from task to task, not through here."""
        ray = ray_module()
        parts = len(self.parts)
        follower_part = np.searchsorted(self.starts, followers, side="right") - 1
        first_part = np.searchsorted(self.starts, firsts, side="right") - 1
        order = np.lexsort((follower_part, first_part))  # by the first row's part, then the follower's
        key = first_part[order] * parts + follower_part[order]
        del follower_part, first_part
        bounds = np.concatenate([[0], np.flatnonzero(np.diff(key)) + 1, [len(key)]])
        # (first rows' part, followers' part, their pairs' run in `order`), grouped by the first
        runs = [
            (int(key[a] // parts), int(key[a] % parts), int(a), int(b)) for a, b in itertools.pairwise(bounds)
        ]
        reader = ray.remote(num_cpus=1)(_values_at)
        sent: dict[int, list[Any]] = {}  # a followers' part: (its rows, their values' ref), ...
        counts = []
        for number, group in itertools.groupby(runs, key=lambda run: run[0]):
            group = list(group)
            start, stop = group[0][2], group[-1][3]
            cuts = np.array([a - start for _, _, a, _ in group] + [stop - start])
            count, *values = reader.options(num_returns=len(group) + 1).remote(
                placed.items[number], firsts[order[start:stop]] - self.starts[number], cuts
            )
            counts.append(count)
            for (_, to, a, b), value in zip(group, values, strict=True):
                sent.setdefault(to, []).extend([followers[order[a:b]] - self.starts[to], value])
        filler = ray.remote(num_cpus=1)(_filled_part).options(num_returns=2)
        items = list(placed.items)
        for number, pairs in sent.items():
            count, items[number] = filler.remote(placed.items[number], *pairs)
            counts.append(count)
        gathered(ray, counts)
        return Pieces(tuple(items), placed.lengths, fetched)

    def _routes(
        self, chunks: Sequence[np.ndarray]
    ) -> Iterator[tuple[np.ndarray | _BatchRuns, np.ndarray, np.ndarray, list[np.ndarray | slice]]]:
        """For each part: its rows that `chunks` hold (counted from the part's start, batch by
        batch), where each batch's run of them ends (`bounds`, from 0), those batches, and the
        batches' slots they fill.

        Where the chunks are ascending, as a run of the input cut in the input's order always is,
        each part's rows in a batch are one run of its slots: found by binary search in the chunks,
        with no array the input's length here (at 1B rows the other way holds 8 GB). Where they are
        the batches outside a fit sample (`RestBatches`), a part's rows go to its tasks as those
        runs (`_BatchRuns`), which the tasks make into row numbers: none passes through here.
        Otherwise each row's batch and slot are looked up."""
        if not _ascending(chunks):
            yield from self._scattered_routes(chunks)
            return
        kept = ray_module().put(chunks) if _made_on_demand(chunks) else None
        used = [k for k, chunk in enumerate(chunks) if len(chunk)]
        firsts = np.array([chunks[k][0] for k in used], dtype=np.int64)
        lasts = np.array([chunks[k][-1] for k in used], dtype=np.int64)
        for start, stop in itertools.pairwise(self.starts.tolist()):
            local, touched, slots, bounds = [], [], [], [0]
            for k in range(np.searchsorted(lasts, start), np.searchsorted(firsts, stop)):
                chunk = chunks[used[k]]
                a, b = np.searchsorted(chunk, [start, stop])
                if a == b:  # the chunk runs past this part without a row in it
                    continue
                if kept is None:
                    local.append(chunk[a:b] - start)
                touched.append(used[k])
                slots.append(slice(int(a), int(b)))
                bounds.append(bounds[-1] + int(b - a))
            if kept is not None:
                runs = tuple((b, s.start, s.stop) for b, s in zip(touched, slots, strict=True))
                rows: Any = _BatchRuns(kept, runs, start)
            else:
                rows = np.concatenate(local) if local else np.empty(0, dtype=np.int64)
            yield rows, np.array(bounds), np.array(touched, dtype=np.int64), slots

    def _scattered_routes(
        self, chunks: Sequence[np.ndarray]
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray | slice]]]:
        """`_routes` for chunks in any order (a map saved by kscore 0.8.7 or earlier took the
        rows in the order of their hashes): each row's batch and slot, 8 bytes a row here."""
        batch_of = np.full(self.count, -1, dtype=np.int32)
        slot_of = np.empty(self.count, dtype=np.int32)
        for number, chunk in enumerate(chunks):
            batch_of[chunk] = number
            slot_of[chunk] = np.arange(len(chunk), dtype=np.int32)
        for start, stop in itertools.pairwise(self.starts.tolist()):
            local = np.flatnonzero(batch_of[start:stop] >= 0)
            batch = batch_of[start:stop][local]
            order = np.argsort(batch, kind="stable")
            local, batch = local[order], batch[order]
            touched, bounds = np.unique(batch, return_index=True)
            bounds = np.append(bounds, len(batch))
            slots = [slot_of[start + local[a:b]] for a, b in itertools.pairwise(bounds)]
            yield local, bounds, touched, slots


@dataclass(frozen=True)
class _BatchRuns:
    """A part's rows that transform batches hold, as runs of those batches (batch k's slots a to
    b, from the part's `start`): the task given them makes the row numbers from the batches
    (`RestBatches`, in the object store), so the driver never holds them."""

    batches: Any  # the `RestBatches`' object ref
    runs: tuple[tuple[int, int, int], ...]
    start: int

    def __len__(self) -> int:
        return sum(b - a for _, a, b in self.runs)

    def rows(self) -> np.ndarray:
        if not self.runs:
            return np.empty(0, dtype=np.int64)
        batches = fetched([self.batches])[0]
        return np.concatenate([batches[k][a:b] - self.start for k, a, b in self.runs])


def _local_rows(rows: np.ndarray | _BatchRuns) -> np.ndarray:
    """A part's row numbers, as `_routes` gave them (made here from runs of batches)."""
    return rows.rows() if isinstance(rows, _BatchRuns) else rows


def _made_on_demand(chunks: Sequence[np.ndarray]) -> bool:
    """Whether `chunks` are made batch by batch from arrays much shorter than their rows
    (`RestBatches`, or those of the first rows of repeated ones): then the tasks make them."""
    if isinstance(chunks, _Mapped):
        return isinstance(chunks.index, Complement) and _made_on_demand(chunks.chunks)
    return isinstance(chunks, RestBatches)


def _ascending(chunks: Sequence[np.ndarray]) -> bool:
    """Whether the row numbers of `chunks`, taken in order, only ever grow."""
    last = -1
    for chunk in chunks:
        if not len(chunk):
            continue
        if chunk[0] <= last or not np.all(chunk[1:] > chunk[:-1]):
            return False
        last = chunk[-1]
    return True


class TaskRowSubset(RowSubset):
    """Some rows of a `TaskRows` (row i is the parent's row `index[i]`), used the same way."""

    def route(
        self,
        chunks: Sequence[np.ndarray],
        progress: Callable[[str, int, int], None] | None = None,
        also: np.ndarray | None = None,
    ) -> tuple[list[RoutedBatch], np.ndarray | None]:
        mapped = _Mapped(chunks, self.index)
        return self.parent.route(mapped, progress, None if also is None else self.index[also])

    def placed(
        self, chunks: Sequence[np.ndarray], results: Sequence[Any], also: np.ndarray, also_values: np.ndarray
    ) -> Pieces:
        """`TaskRows.placed` of these rows, in the parent's parts (its other rows NaN)."""
        return self.parent.placed(_Mapped(chunks, self.index), results, self.index[also], also_values)


class _Mapped(Sequence[np.ndarray]):
    """Chunks of row numbers of a subset, as the parent's row numbers, each mapped when asked for
    (a list of them all would hold 8 bytes a row)."""

    def __init__(self, chunks: Sequence[np.ndarray], index: np.ndarray) -> None:
        self.chunks = chunks
        self.index = index

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, k: Any) -> Any:
        if isinstance(k, slice):
            return [self[i] for i in range(*k.indices(len(self)))]
        return self.index[self.chunks[k]]


@dataclass
class RoutedBatch:
    """A transform batch whose rows wait in the object store, in pieces (one a part): the ray
    engine fetches `object_refs` to the actor that transforms it, and `with_values` puts each
    piece's rows at its slots there."""

    size: int
    dim: int
    dtype: np.dtype
    pieces: list[tuple[Any, np.ndarray | slice]]  # (a piece in the object store, the slots it fills)

    @property
    def object_refs(self) -> list[Any]:
        """The pieces in the object store: the ray engine has them fetched before the batch runs."""
        return [ref for ref, _ in self.pieces]

    def with_values(self, values: Sequence[np.ndarray]) -> np.ndarray:
        """The batch's rows, from its pieces' values (in the order of `object_refs`)."""
        out = np.empty((self.size, self.dim), dtype=self.dtype)
        for (_, slots), value in zip(self.pieces, values, strict=True):
            out[slots] = value
        return out


def _read(read_part: Callable[[EmbeddingPart], np.ndarray], part: EmbeddingPart) -> np.ndarray:
    matrix = read_part(part)
    if len(matrix) != part.length:
        raise InputError(
            f"the embeddings' rows {part.offset}..{part.offset + part.length - 1} read as {len(matrix)} rows "
            "(did the input change while it was read?)"
        )
    return matrix


def _hash_part(
    read_part: Callable[[EmbeddingPart], np.ndarray], part: EmbeddingPart, ranges: int, fit: np.ndarray | None
) -> Any:
    """(how many rows, and the rows equal to one of `fit` with which one, where given), then for each
    range of hash values the part's hashes in it and their rows (in the part's order)."""
    matrix = _read(read_part, part)
    hashes = row_hashes(matrix)
    found = _fit_matches(matrix, hashes, fit) if fit is not None else ()
    # The top 32 bits times `ranges`, shifted back: range r holds the r-th of `ranges` equal spans.
    range_of = ((hashes >> np.uint64(32)) * np.uint64(ranges)) >> np.uint64(32)
    order = np.argsort(range_of, kind="stable")
    bounds = np.searchsorted(range_of[order], np.arange(ranges + 1))
    rows = order.astype(np.int32)
    pieces = [(hashes[rows[a:b]], rows[a:b]) for a, b in itertools.pairwise(bounds)]
    return ((len(hashes), *found), *pieces)


def _fit_rows_of_part(
    read_part: Callable[[EmbeddingPart], np.ndarray], part: EmbeddingPart, fit: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    matrix = _read(read_part, part)
    return _fit_matches(matrix, row_hashes(matrix), fit)


def _fit_matches(matrix: np.ndarray, hashes: np.ndarray, fit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the part's rows equal to a row of `fit`, which row of `fit`)."""
    found = match_fit_rows(matrix, hashes, fit)
    rows = np.flatnonzero(found >= 0)
    return rows, found[rows]


def _placed(starts: np.ndarray, found: Sequence[Sequence[np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Each part's (rows, fit rows) joined, the rows counted from the input's start."""
    rows = [start + np.asarray(f[0], dtype=np.int64) for start, f in zip(starts[:-1], found, strict=True)]
    fit_index = [np.asarray(f[1], dtype=np.int64) for f in found]
    empty = np.empty(0, dtype=np.int64)
    return (np.concatenate(rows) if rows else empty), (np.concatenate(fit_index) if fit_index else empty)


def _equal_hashes_in_range(starts: np.ndarray, *pieces: Any) -> tuple[np.ndarray, np.ndarray]:
    """`TaskRows.equal_hash_pairs` of one range of hash values, from every part's `pieces` in it
    (in the parts' order, each in its rows' order: the rows come out ascending)."""
    hashes = np.concatenate([h for h, _ in pieces])
    rows = np.concatenate([start + r.astype(np.int64) for start, (_, r) in zip(starts, pieces, strict=True)])
    followers, firsts = equal_hash_pairs(hashes)
    return rows[followers], rows[firsts]


def _rows_of_part(
    read_part: Callable[[EmbeddingPart], np.ndarray], part: EmbeddingPart, rows: np.ndarray
) -> np.ndarray:
    return _read(read_part, part)[rows]


def _route_part(
    read_part: Callable[[EmbeddingPart], np.ndarray],
    part: EmbeddingPart,
    rows: np.ndarray | _BatchRuns,
    bounds: np.ndarray,
    also: np.ndarray | None = None,
) -> Any:
    """How many rows, then the part's `rows` cut at `bounds` (one piece a batch, as the caller
    sorted them), then its rows `also` where asked for."""
    matrix = _read(read_part, part)
    rows = _local_rows(rows)
    pieces = [matrix[rows[bounds[k] : bounds[k + 1]]] for k in range(len(bounds) - 1)]
    if also is not None:
        pieces.append(matrix[also])
    return (len(rows), *pieces)


def _placed_part(
    length: int,
    rows: np.ndarray | _BatchRuns,
    bounds: np.ndarray,
    slots: list[np.ndarray | slice],
    also: tuple[np.ndarray, np.ndarray] | None,
    *batches: np.ndarray,
) -> tuple[int, tuple[np.ndarray, np.ndarray]]:
    """A part's coordinates (x, y, NaN where none is given), from the batches' results: batch k's
    `slots` hold the part's `rows[bounds[k]:bounds[k + 1]]` (`_route_part`'s pieces, inverted);
    `also`: more rows and their coordinates. How many rows were placed comes first."""
    x, y = np.full(length, np.nan), np.full(length, np.nan)
    placed = 0
    rows = _local_rows(rows)
    for k, (slot, batch) in enumerate(zip(slots, batches, strict=True)):
        where = rows[bounds[k] : bounds[k + 1]]
        values = batch[slot]
        x[where], y[where] = values[:, 0], values[:, 1]
        placed += len(where)
    if also is not None:
        where, values = also
        x[where], y[where] = values[:, 0], values[:, 1]
        placed += len(where)
    return placed, (x, y)


def _values_at(piece: tuple[np.ndarray, np.ndarray], rows: np.ndarray, cuts: np.ndarray) -> Any:
    """How many rows, then the coordinates of a part's `rows`, as (rows x 2), cut at `cuts`."""
    values = np.column_stack([piece[0][rows], piece[1][rows]])
    return (len(rows), *(values[a:b] for a, b in itertools.pairwise(cuts)))


def _filled_part(
    piece: tuple[np.ndarray, np.ndarray], *pairs: np.ndarray
) -> tuple[int, tuple[np.ndarray, np.ndarray]]:
    """How many rows were set, and a part's coordinates with each of `pairs`' rows (row numbers,
    then their (rows x 2) values, and so on) set to their values."""
    x, y = piece[0].copy(), piece[1].copy()
    count = 0
    for rows, values in zip(pairs[::2], pairs[1::2], strict=True):
        x[rows], y[rows] = values[:, 0], values[:, 1]
        count += len(rows)
    return count, (x, y)


def _equal_pairs(count: int, dim: int, places: list[np.ndarray], *rows: np.ndarray) -> np.ndarray:
    """`equal_halves` of the block of `count` rows whose `places` each part's `rows` fill."""
    block = np.empty((count, dim), dtype=np.float32)
    for where, values in zip(places, rows, strict=True):
        block[where] = values
    return equal_halves(block)


# Ids a task of one range of id hashes holds at most, at about 32 bytes an id.
ID_RANGE_BYTES = 256 * 1024**2

PartReader = Callable[[list[str], EmbeddingPart], Any]  # (columns, part) -> a polars frame


@dataclass
class SplitRows:
    """Each row's split, found by tasks reading the id and split columns part by part
    (`split_by_tasks`): the masks stay in the object store, and the driver gets counts."""

    masks: Pieces  # each part's (is_train, is_reference)
    train_counts: tuple[int, ...]  # each part's train rows
    reference_counts: tuple[int, ...]
    split_values: list[str]  # the first 8 distinct split values, sorted (for error messages)
    id_type: Any  # the ids' type once normalized (`checked_id_type`; None: as read)
    duplicated: int  # rows whose id another row has


def split_by_tasks(
    read: PartReader,
    parts: Sequence[EmbeddingPart],
    id_col: str,
    split_col: str,
    id_dtype: Any,
    train_values: Sequence[str],
    reference_values: Sequence[str] | None,
    source: str,
    progress: Callable[[str, int, int], None] | None = None,
) -> SplitRows:
    """The split of every row and the check of its id, each part's read by a task: the ids' facts
    added up in row order give `normalize_ids`' errors (InputError), and tasks of ranges of the
    ids' hashes count the repeated ids. `id_dtype`: the id column's type (for an input of no
    rows)."""
    from kscore.core.align import IdFacts, checked_id_type

    ray = ray_module()
    task = ray.remote(num_cpus=1)(_split_part).options(num_returns=2)
    pairs = [task.remote(read, p, id_col, split_col, list(train_values), reference_values) for p in parts]
    found = gathered(ray, [small for small, _ in pairs], stage_done(progress, "read ids and splits (ray)"))
    facts = IdFacts(id_col, id_dtype)
    if found:
        facts = found[0][0]
        for part_facts, *_ in found[1:]:
            facts = facts.merged(part_facts)
    id_type = checked_id_type(facts, source)
    masks = Pieces(tuple(m for _, m in pairs), tuple(part.length for part in parts), fetched)
    values = sorted(set().union(*(f[3] for f in found)))[:8]
    duplicated = _duplicated_ids(read, parts, id_col, id_type)
    counts = [tuple(f[k] for f in found) for k in (1, 2)]
    return SplitRows(masks, *counts, values, id_type, duplicated)


def _read_columns(read: PartReader, columns: list[str], part: EmbeddingPart) -> Any:
    frame = read(columns, part)
    if frame.height != part.length:
        raise InputError(
            f"the ids' rows {part.offset}..{part.offset + part.length - 1} read as {frame.height} rows "
            "(did the input change while it was read?)"
        )
    return frame


def _split_part(
    read: PartReader,
    part: EmbeddingPart,
    id_col: str,
    split_col: str,
    train_values: list[str],
    reference_values: list[str] | None,
) -> tuple[tuple[Any, int, int, list[str]], tuple[np.ndarray, np.ndarray]]:
    """One part's id facts, train and reference rows, and first 8 distinct split values; then its
    train and reference masks (left in the object store)."""
    import polars as pl

    from kscore.core.align import IdFacts, split_masks

    frame = _read_columns(read, [id_col, split_col], part)
    split = frame.get_column(split_col).cast(pl.String)
    is_train, is_reference = split_masks(split, train_values, reference_values)
    values = split.unique().drop_nulls().sort().head(8).to_list()
    counts = (int(is_train.sum()), int(is_reference.sum()))
    return (IdFacts.of(frame.get_column(id_col)), *counts, values), (is_train, is_reference)


def _duplicated_ids(read: PartReader, parts: Sequence[EmbeddingPart], id_col: str, id_type: Any) -> int:
    """How many rows have an id another row has: each part's ids sent by range of their hashes to
    the task of that range, which counts them."""
    ray = ray_module()
    ranges = _id_ranges(sum(part.length for part in parts))
    pieces = _cut_ids(read, parts, id_col, id_type, id_type, ranges)
    counter = ray.remote(num_cpus=1)(_duplicated_in_range)
    refs = [counter.remote(id_col, *(p[r] for p in pieces)) for r in range(ranges)]
    del pieces
    return sum(gathered(ray, refs))


def _id_ranges(rows: int) -> int:
    """Ranges of id hashes for `rows` ids: a range's task holds `ID_RANGE_BYTES` of them at most."""
    return max(1, -(-rows * 32 // ID_RANGE_BYTES))


def _cut_ids(
    read: PartReader, parts: Sequence[EmbeddingPart], id_col: str, id_type: Any, common: Any, ranges: int
) -> list[list[Any]]:
    """[part][range]: the part's ids (checked as `id_type`, compared as `common`) in that range of
    their hashes, each with its row in the part, in the object store."""
    ray = ray_module()
    task = ray.remote(num_cpus=1)(_id_pieces)
    pieces = [
        task.options(num_returns=ranges).remote(read, p, id_col, id_type, common, ranges) for p in parts
    ]
    return [p if ranges > 1 else [p] for p in pieces]


def _range_of(ids: Any, ranges: int) -> np.ndarray:
    """Each id's range of hash values (`ranges` equal spans of the top 32 bits of polars' hash)."""
    hashes = ids.hash(seed=0).to_numpy()
    return (((hashes >> np.uint64(32)) * np.uint64(ranges)) >> np.uint64(32)).astype(np.int64)


def _by_range(frame: Any, ids: Any, ranges: int) -> tuple[Any, ...]:
    """The rows of `frame` by the range of `ids` (its id column), each range's in their order."""
    if ranges == 1:
        return (frame,)
    range_of = _range_of(ids, ranges)
    order = np.argsort(range_of, kind="stable")
    bounds = np.searchsorted(range_of[order], np.arange(ranges + 1))
    return tuple(frame[order[a:b]] for a, b in itertools.pairwise(bounds))


def _id_pieces(
    read: PartReader, part: EmbeddingPart, id_col: str, id_type: Any, common: Any, ranges: int
) -> Any:
    """The part's ids (normalized as `id_type`, then cast to `common` to be compared with another
    file's) and their rows in the part, cut by range of their hashes (one piece a range)."""
    import polars as pl

    from kscore.core.align import with_id_type

    ids = with_id_type(_read_columns(read, [id_col], part).get_column(id_col), id_type)
    if common is not None and ids.dtype != common:
        ids = ids.cast(common, strict=False)
    frame = pl.DataFrame([ids, pl.Series(_ROW, np.arange(len(ids), dtype=np.int64))])
    pieces = _by_range(frame, ids, ranges)
    return pieces[0] if ranges == 1 else pieces


_ROW = "__row"


def _duplicated_in_range(id_col: str, *pieces: Any) -> int:
    import polars as pl

    return int(pl.concat(pieces).get_column(id_col).is_duplicated().sum()) if pieces else 0


def difficulty_by_tasks(
    read: PartReader,
    parts: Sequence[EmbeddingPart],
    id_col: str,
    id_type: Any,
    scores: Any,
    masks: Pieces,
) -> JoinedDifficulty:
    """Each row's difficulty score (NaN where `scores`, checked, has none), in pieces, and how many
    of the scores' ids were found. Each part's ids go by range of their hashes to the task of that
    range, with the scores of that range (cut here): no task holds all the scores or all the ids.
    A task of each part then puts its rows' values in order, and counts its reference rows
    (`masks`) without a score."""
    import polars as pl

    from kscore.core.align import joined_id_type

    ray = ray_module()
    common = joined_id_type(id_type, scores.schema[id_col])
    scores = scores.with_columns(pl.col(id_col).alias(_KEY), pl.col(id_col).cast(common, strict=False))
    ranges = _id_ranges(sum(part.length for part in parts) + scores.height)
    by_range = [[ray.put(piece)] for piece in _by_range(scores, scores.get_column(id_col), ranges)]
    return _joined_by_ranges(read, parts, id_col, id_type, common, by_range, masks)


# Rows of a difficulty file a task reads at once (`scanned_difficulty_by_tasks`).
DIFFICULTY_ROWS = 4_000_000


def scanned_difficulty_by_tasks(
    read: PartReader,
    parts: Sequence[EmbeddingPart],
    id_col: str,
    id_type: Any,
    scan: Any,
    rows: int,
    masks: Pieces,
) -> JoinedDifficulty:
    """`difficulty_by_tasks` of a difficulty file (`scan`: its id and score columns, `rows` rows)
    that tasks read, slice by slice: the slices' facts, added in row order, give `--difficulty`'s
    errors as on one machine (InputError), and each slice's scores go by range of their ids'
    hashes to the tasks that join them. This process reads none of its rows."""
    from kscore.core.align import DifficultyFacts, checked_difficulty_values, checked_id_type, joined_id_type

    ray = ray_module()
    slices = [(start, min(DIFFICULTY_ROWS, rows - start)) for start in range(0, rows, DIFFICULTY_ROWS)]
    task = ray.remote(num_cpus=1)(_difficulty_facts)
    found: list[DifficultyFacts] = gathered(ray, [task.remote(scan, id_col, *piece) for piece in slices])
    facts = found[0]
    for more in found[1:]:
        facts = facts.merged(more)
    score_type = checked_id_type(facts.ids, "--difficulty")
    common = joined_id_type(id_type, score_type or facts.ids.dtype)
    ranges = _id_ranges(sum(part.length for part in parts) + rows)
    cut = ray.remote(num_cpus=1)(_difficulty_pieces).options(num_returns=ranges)
    pieces = [cut.remote(scan, id_col, *piece, score_type, common, ranges) for piece in slices]
    pieces = [p if ranges > 1 else [p] for p in pieces]
    by_range = [[p[r] for p in pieces] for r in range(ranges)]
    del pieces
    joined = _joined_by_ranges(read, parts, id_col, id_type, common, by_range, masks)
    checked_difficulty_values(facts, joined.duplicated, id_col)
    return joined


def _difficulty_slice(scan: Any, id_col: str, start: int, length: int) -> Any:
    """Rows `start`... of a difficulty file's id and score columns, read by a task."""
    import polars as pl

    from kscore.columns import SCORE

    try:
        frame = scan.slice(start, length).collect()
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise InputError(f"--difficulty: cannot read on node {node_name()}: {first_line(exc)}") from None
    if frame.height != length:
        raise InputError(
            f"--difficulty: rows {start}..{start + length - 1} read as {frame.height} rows "
            "(did the file change while it was read?)"
        )
    return frame.get_column(id_col), frame.get_column(SCORE).cast(pl.Float64)


def _difficulty_facts(scan: Any, id_col: str, start: int, length: int) -> Any:
    from kscore.core.align import DifficultyFacts

    return DifficultyFacts.of(*_difficulty_slice(scan, id_col, start, length))


def _difficulty_pieces(
    scan: Any, id_col: str, start: int, length: int, score_type: Any, common: Any, ranges: int
) -> Any:
    """A slice's ids (normalized as `score_type`, `_KEY`; cast to `common` to be compared with the
    embeddings') and scores (`__difficulty`), cut by range of the hashes of the compared ids."""
    import polars as pl

    from kscore.core.align import with_id_type

    ids, values = _difficulty_slice(scan, id_col, start, length)
    ids = with_id_type(ids, score_type)
    compared = ids.cast(common, strict=False) if ids.dtype != common else ids
    frame = pl.DataFrame([compared, ids.alias(_KEY), values.alias("__difficulty")])
    pieces = _by_range(frame, compared, ranges)
    return pieces[0] if ranges == 1 else pieces


_KEY = "__normalized_id"  # a difficulty file's ids as checked, for its repeated ids


@dataclass(frozen=True)
class JoinedDifficulty:
    """Each row's difficulty score joined by tasks (`values`: `Pieces` of each part's, NaN where
    none), how many of the scores were found, the scores' rows whose id another has (then no
    values), and of the reference rows, how many have no score and the sum of their scores."""

    values: Pieces | None
    matched: int
    duplicated: int
    reference_missing: int = 0
    reference_sum: float = 0.0


def _joined_by_ranges(
    read: PartReader,
    parts: Sequence[EmbeddingPart],
    id_col: str,
    id_type: Any,
    common: Any,
    scores_by_range: list[list[Any]],
    masks: Pieces,
) -> JoinedDifficulty:
    """Each part's ids sent by range of their hashes to the task of that range, which joins them
    with its pieces of the scores; a task of each part puts its values back in row order (left in
    the object store) and counts its reference rows (`masks`, each part's) without a score."""
    ray = ray_module()
    ranges = len(scores_by_range)
    id_pieces = _cut_ids(read, parts, id_col, id_type, common, ranges)
    join = ray.remote(num_cpus=1)(_join_range).options(num_returns=len(parts) + 1)
    counts, joined = [], []
    for r, scores in enumerate(scores_by_range):
        count, *by_part = join.remote(id_col, len(scores), *scores, *(p[r] for p in id_pieces))
        counts.append(count)
        joined.append(by_part)
    del id_pieces
    place = ray.remote(num_cpus=1)(_placed_values).options(num_returns=2)
    pairs = [
        place.remote(part.length, masks.items[k], *(j[k] for j in joined)) for k, part in enumerate(parts)
    ]
    del joined
    found = gathered(ray, counts)
    matched, duplicated = sum(f[0] for f in found), sum(f[1] for f in found)
    if duplicated:  # the join is not one score a row: the caller raises
        cancel_running(ray, [small for small, _ in pairs])
        return JoinedDifficulty(None, matched, duplicated)
    facts = gathered(ray, [small for small, _ in pairs])
    values = Pieces(tuple(v for _, v in pairs), tuple(part.length for part in parts), fetched)
    missing, total = sum(f[0] for f in facts), sum(f[1] for f in facts)  # in part order
    return JoinedDifficulty(values, matched, 0, missing, total)


def _join_range(id_col: str, score_count: int, *pieces: Any) -> Any:
    """(the range's scores found, its scores' rows whose id another has), then for each part's
    piece of ids (in the parts' order) its rows and their scores (NaN where none). `pieces`: the
    range's `score_count` pieces of scores, then the parts' pieces of ids."""
    import polars as pl

    scores = pl.concat(pieces[:score_count])
    ids_pieces = pieces[score_count:]
    key = scores.get_column(_KEY if _KEY in scores.columns else id_col)
    duplicated = int(key.is_duplicated().sum())
    if duplicated:
        return ((0, duplicated), *((np.empty(0, np.int64), np.empty(0)) for _ in ids_pieces))
    ids = pl.concat([piece.select(id_col) for piece in ids_pieces])
    marked = scores.select(id_col, "__difficulty").with_columns(pl.lit(True).alias("__found"))
    joined = ids.join(marked, on=id_col, how="left", maintain_order="left")
    values = joined.get_column("__difficulty").fill_nan(None).to_numpy().astype(np.float64)
    out: list[Any] = [(int(joined.get_column("__found").sum()), 0)]
    start = 0
    for piece in ids_pieces:
        out.append((piece.get_column(_ROW).to_numpy(), values[start : start + piece.height]))
        start += piece.height
    return tuple(out)


def _placed_values(
    length: int, masks: tuple[np.ndarray, np.ndarray], *pieces: tuple[np.ndarray, np.ndarray]
) -> tuple[tuple[int, float], tuple[np.ndarray]]:
    """A part's values in its rows' order, from each range's (rows, values): first its reference
    rows without a value and the sum of those with one, then the values (a piece)."""
    out = np.full(length, np.nan)
    for rows, values in pieces:
        out[rows] = values
    reference = out[masks[1]]
    return (int(np.isnan(reference).sum()), float(np.nansum(reference))), (out,)


def kde_points_by_tasks(
    coordinates: Pieces, masks: Pieces, difficulty: Pieces | None
) -> tuple[Pieces, Pieces]:
    """The KDE's train points (x, y) and reference points (x, y, difficulty or None), in pieces:
    a task a part takes its rows of each from the part's coordinates, masks and difficulty, which
    stay in the store (all three cut at the input's parts)."""
    ray = ray_module()
    task = ray.remote(num_cpus=1)(_kde_points_of_part).options(num_returns=3)
    counts, train, reference = [], [], []
    for k, item in enumerate(coordinates.items):
        part_difficulty = None if difficulty is None else difficulty.items[k]
        count, train_piece, reference_piece = task.remote(item, masks.items[k], part_difficulty)
        counts.append(count)
        train.append(train_piece)
        reference.append(reference_piece)
    found = gathered(ray, counts)
    train_lengths, reference_lengths = (tuple(int(f[k]) for f in found) for k in range(2))
    return Pieces(tuple(train), train_lengths, fetched), Pieces(tuple(reference), reference_lengths, fetched)


def _kde_points_of_part(
    piece: tuple[np.ndarray, np.ndarray],
    masks: tuple[np.ndarray, np.ndarray],
    difficulty: tuple[np.ndarray] | None,
) -> tuple[tuple[int, int], tuple[np.ndarray, ...], tuple[np.ndarray | None, ...]]:
    """A part's (train rows, reference rows), its train points and its reference points."""
    (x, y), (is_train, is_reference) = piece, masks
    reference_difficulty = None if difficulty is None else difficulty[0][is_reference]
    train = (x[is_train], y[is_train])
    return (
        (len(train[0]), int(is_reference.sum())),
        train,
        (x[is_reference], y[is_reference], reference_difficulty),
    )


@dataclass
class ScoredPieces:
    """What the tasks writing the parts make the output's rows of, where the map and the scores
    stay on the cluster: the coordinates, the masks (is_train, is_reference) and the difficulty
    (or None), each `Pieces` one a part of the input, with each part's train rows; and the train
    rows' scores (`Pieces` of the representation, potential and local difficulty, in the train
    rows' order)."""

    coordinates: Pieces
    masks: Pieces
    train_counts: tuple[int, ...]
    difficulty: Pieces | None
    scores: Pieces


def write_parts_by_tasks(
    table: Any,
    folder: str,
    tags: dict[str, str],
    storage_options: dict[str, str] | None = None,
    columns_from: ColumnsFrom | None = None,
    ranked: Any = None,
) -> list[Any]:
    """`table` (a polars frame) as the parts of a dataset under `folder` (a folder every node sees,
    or an object-storage prefix), one Ray task writing each part: the parts `kscore.io.write_slices`
    writes on one machine (`table_slices`). Each slice reaches its task through the object store as
    Arrow. `columns_from`: each task reads its slice of the input's other columns itself and puts
    them in the output's order. The paths written come back, in order; with `ranked` (an empty
    `EmbedSummary`), each with its part's `ranked` chunk of the summary.

    `scored` (`columns_from.scored`, a `ScoredPieces`): no table; each task makes its part's map
    and scores from the pieces the cluster holds."""
    ray = ray_module()
    task = ray.remote(num_cpus=1)(_write_part)
    scored = columns_from.scored if columns_from is not None else None
    rows = table.height if scored is None else scored.masks.count
    refs = []
    for number, (start, length) in enumerate(table_slices(rows)):
        rows_of = to_store(table.slice(start, length)) if scored is None else length
        path = f"{folder.rstrip('/')}/{part_name(number)}"
        refs.append(task.remote(rows_of, path, tags, storage_options, columns_from, start, ranked))
    return gathered(ray, refs)


@dataclass(frozen=True)
class ColumnsFrom:
    """The input's columns the tasks writing the parts read: `scan` (those columns), the output's
    column order, the input's name, and the id column with the type its ids are given (None: as
    read); where the map and scores stay on the cluster, their pieces (`Pieces`: the coordinates,
    one a part of the input; the train rows' scores, in their order)."""

    scan: Any
    order: list[str]
    source: str
    id_col: str | None = None
    id_type: Any = None
    scored: ScoredPieces | None = None


def _made_part(scored: ScoredPieces, start: int, length: int) -> Any:
    """A part's map and score columns, from the pieces: its rows' coordinates and difficulty, and
    its train rows' scores put in their rows (null elsewhere), found from how many train rows come
    before it (each part of the input's count, and the masks of the one it starts in)."""
    import polars as pl

    lengths = scored.masks.lengths
    ends = np.cumsum(lengths)
    first = int(np.searchsorted(ends, start, side="right"))  # the input's part this one starts in
    first_start = int(ends[first] - lengths[first]) if first < len(lengths) else start
    is_train = scored.masks.rows(slice(first_start, start + length))[0]
    assert is_train is not None
    train_start = sum(scored.train_counts[:first]) + int(is_train[: start - first_start].sum())
    is_train = is_train[start - first_start :]
    x, y = scored.coordinates.rows(slice(start, start + length))
    scores = scored.scores.rows(slice(train_start, train_start + int(is_train.sum())))
    difficulty = (
        None if scored.difficulty is None else scored.difficulty.rows(slice(start, start + length))[0]
    )
    return pl.DataFrame(embed_score_columns(x, y, is_train, scores, difficulty))


def _write_part(
    arrow: Any,
    path: str,
    tags: dict[str, str],
    storage_options: dict[str, str] | None,
    columns_from: ColumnsFrom | None = None,
    start: int = 0,
    ranked: Any = None,
) -> Any:
    """One part: its rows (Arrow; or a row count, the rows made from the pieces of
    `columns_from.scored`: `_made_part`), and its slice of the input's other columns where asked
    for; its path, with its `ranked` chunk of the summary where `ranked` is given."""
    import polars as pl

    from kscore.core.align import with_id_type

    made = isinstance(arrow, int)
    if made:
        assert columns_from is not None and columns_from.scored is not None
        part = _made_part(columns_from.scored, start, arrow)
    else:
        part = from_store(arrow)
    with using(storage_options):
        if columns_from is not None:
            source = columns_from.source
            try:
                others = columns_from.scan.slice(start, part.height).collect()
            except (OSError, pl.exceptions.PolarsError) as exc:
                raise InputError(f"{source}: cannot read on node {node_name()}: {first_line(exc)}") from None
            if others.height != part.height:
                raise InputError(
                    f"{source}: rows {start}..{start + part.height - 1} read as {others.height} rows "
                    "(did the input change while it was read?)"
                )
            if columns_from.id_col is not None:
                ids = with_id_type(others.get_column(columns_from.id_col), columns_from.id_type)
                others = others.with_columns(ids)
            part = part.hstack(others.get_columns()).select(columns_from.order)
        try:
            part.write_parquet(path, metadata=tags, **polars_options(path))
        except OSError as exc:
            raise OutputError(f"{path}: cannot write on node {node_name()}: {exc.strerror or exc}") from None
        except pl.exceptions.PolarsError as exc:  # object storage's failures come as polars errors
            raise OutputError(f"{path}: cannot write on node {node_name()}: {first_line(exc)}") from None
    if ranked is None:
        return path
    return (path, ranked.ranked(part))


def quantiles_of_pieces(
    pieces: Pieces, fields: Sequence[int], qs: Sequence[float]
) -> list[list[float | None]]:
    """`quantiles_by_counting` of `fields` of pieces left in the object store (NaN left out): each
    round a task a piece counts its values, and only the counts, and the last few values, come
    here. Exactly `exact_quantiles` of each field's values joined."""
    ray = ray_module()
    task = ray.remote(num_cpus=1)(key_counts)
    items = [item for item, length in zip(pieces.items, pieces.lengths, strict=True) if length]

    def count(requests: list[KeyRequest]) -> list[list[Any]]:
        return gathered(ray, [task.remote(item, requests) for item in items])

    return quantiles_by_counting(count, fields, qs)
