"""Embeddings kept outside one matrix, read back by row number: on disk, or in the input's chunks.

`embed-scores` above its memory limit writes the embeddings here once, batch by batch, and the UMAP
stage reads the rows it needs (the fit sample, then each transform batch) with `os.pread`. The
page cache holds what was read, not the process: resident memory stays bounded whatever the
matrix's size. Row hashes (for finding identical rows) are taken as the rows are written.

In memory, the embeddings of a Parquet file's row groups stay in their chunks (`ChunkedRows`):
joining them into one matrix copied every row (1.5 GB and 1.7 s at 1M x 384) for UMAP stages
that only ever read some rows at a time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from kscore.core.reduction import row_hashes


class SpilledRows:
    """A (rows x dim) matrix in a file; indexing with a slice or an array of row numbers reads
    those rows (in the order asked) as a numpy array, like indexing the matrix itself."""

    ndim = 2

    def __init__(self, path: Path, dim: int, dtype: Any = np.float32) -> None:
        self.path = path
        self.dim = dim
        self.dtype = np.dtype(dtype)
        self.row_bytes = dim * self.dtype.itemsize
        self.count = 0
        self._writer: Any = path.open("wb")
        self._hashes: list[np.ndarray] = []
        self.hashes: np.ndarray | None = None
        self._fd: int | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return (self.count, self.dim)

    def __len__(self) -> int:
        return self.count

    def append(self, rows: np.ndarray) -> None:
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        self._writer.write(rows.tobytes())
        self._hashes.append(row_hashes(rows))
        self.count += len(rows)

    def finish(self) -> SpilledRows:
        """Stop writing; the rows can be read from now on."""
        self._writer.close()
        self.hashes = np.concatenate(self._hashes) if self._hashes else np.empty(0, dtype=np.uint64)
        self._hashes = []
        self._fd = os.open(self.path, os.O_RDONLY)
        return self

    def close(self) -> None:
        if not self._writer.closed:
            self._writer.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, step = key.indices(self.count)
            return self.rows_at(np.arange(start, stop, step))
        return self.rows_at(np.asarray(key))

    def rows_at(self, index: np.ndarray) -> np.ndarray:
        """The rows `index` (row numbers, any order, repeats allowed), read in runs of neighbours."""
        assert self._fd is not None, "finish() the writing first"
        index = np.asarray(index, dtype=np.int64)
        out = np.empty((len(index), self.dim), dtype=self.dtype)
        if len(index) == 0:
            return out
        order = np.argsort(index, kind="stable")
        wanted = index[order]
        if wanted[0] < 0 or wanted[-1] >= self.count:
            raise IndexError("row number out of range")
        # Runs of consecutive (or repeated) row numbers are read with one call each.
        breaks = np.flatnonzero(np.diff(wanted) > 1) + 1
        for run in np.split(np.arange(len(wanted)), breaks):
            first, last = int(wanted[run[0]]), int(wanted[run[-1]])
            size = (last - first + 1) * self.row_bytes
            data = os.pread(self._fd, size, first * self.row_bytes)
            if len(data) != size:
                raise OSError(f"{self.path}: short read")
            block = np.frombuffer(data, dtype=self.dtype).reshape(-1, self.dim)
            out[order[run]] = block[wanted[run] - first]
        return out

    def subset(self, index: np.ndarray) -> RowSubset:
        return RowSubset(self, np.asarray(index, dtype=np.int64))


class ChunkedRows:
    """A (rows x dim) matrix given as consecutive blocks of rows (`chunks`, e.g. views of a column's
    chunks), never joined; indexed like `SpilledRows`, with every row's hash taken up front."""

    ndim = 2

    def __init__(self, chunks: list[np.ndarray]) -> None:
        self.chunks = chunks
        self.dim = chunks[0].shape[1]
        self.dtype = chunks[0].dtype
        self.starts = np.cumsum([0, *(len(chunk) for chunk in chunks)])
        self.count = int(self.starts[-1])
        self.hashes = np.concatenate([row_hashes(chunk) for chunk in chunks])

    @property
    def shape(self) -> tuple[int, int]:
        return (self.count, self.dim)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        if isinstance(key, slice):
            return self.rows_at(np.arange(*key.indices(self.count)))
        return self.rows_at(np.asarray(key))

    def rows_at(self, index: np.ndarray) -> np.ndarray:
        """The rows `index` (row numbers, any order, repeats allowed), in that order."""
        index = np.asarray(index, dtype=np.int64)
        if len(index) and (index.min() < 0 or index.max() >= self.count):
            raise IndexError("row number out of range")
        chunk_of = np.searchsorted(self.starts, index, side="right") - 1
        if len(index) and chunk_of[0] == chunk_of[-1] and (chunk_of == chunk_of[0]).all():
            return self.chunks[chunk_of[0]][index - self.starts[chunk_of[0]]]  # one chunk: one take
        out = np.empty((len(index), self.dim), dtype=self.dtype)
        for number in np.unique(chunk_of):
            places = np.flatnonzero(chunk_of == number)
            out[places] = self.chunks[number][index[places] - self.starts[number]]
        return out

    def subset(self, index: np.ndarray) -> RowSubset:
        return RowSubset(self, np.asarray(index, dtype=np.int64))


class RowSubset:
    """Some rows of a `SpilledRows` (or of rows read elsewhere with `rows_at` and `dim`): row i is
    the parent's row `index[i]`, indexed the same way (with its hash, where the parent has them)."""

    ndim = 2

    def __init__(self, parent: Any, index: np.ndarray) -> None:
        self.parent = parent
        self.index = index
        self.dtype = parent.dtype
        hashes = getattr(parent, "hashes", None)
        self.hashes = hashes[index] if hashes is not None else None

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.index), self.parent.dim)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        return self.parent.rows_at(self.index[key])

    def rows_at(self, index: np.ndarray) -> np.ndarray:
        return self.parent.rows_at(self.index[index])
