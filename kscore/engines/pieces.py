"""Rows kept in pieces where an engine left them (`Pieces`): no process needs them all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Pieces:
    """Rows kept in pieces, in row order (a table's parts): each piece a tuple of fields, arrays of
    its rows (or None, the same field None in every piece). `items` are the pieces themselves, or
    where an engine left them (Ray's object refs), read by `fetch` where a chunk needs them: a
    chunk of rows (`rows`) reads only the pieces it overlaps, so no process holds them all."""

    items: tuple[Any, ...]
    lengths: tuple[int, ...]
    fetch: Callable[[list[Any]], list[Any]] | None = None

    @property
    def count(self) -> int:
        return sum(self.lengths)

    def rows(self, part: slice) -> tuple[np.ndarray | None, ...]:
        """Each field's rows `part` (a slice of rows with a start and stop), in order."""
        ends = np.cumsum(self.lengths)
        starts = ends - np.asarray(self.lengths, dtype=ends.dtype)
        start, stop = int(part.start), int(part.stop)
        first = int(np.searchsorted(ends, start, side="right"))
        last = int(np.searchsorted(starts, stop, side="left"))
        chosen = [i for i in range(first, last) if self.lengths[i]]
        wanted = [self.items[i] for i in chosen]
        values = self.fetch(wanted) if self.fetch is not None and wanted else wanted
        if not values:  # no rows: the fields of an empty piece
            values = [self.fetch([self.items[0]])[0] if self.fetch is not None else self.items[0]]
            chosen, start, stop = [0], int(starts[0]), int(starts[0])
        cuts = [
            slice(max(start - int(starts[i]), 0), min(stop, int(ends[i])) - int(starts[i])) for i in chosen
        ]
        fields = []
        for f in range(len(values[0])):
            if values[0][f] is None:
                fields.append(None)
                continue
            taken = [value[f][cut] for value, cut in zip(values, cuts, strict=True)]
            fields.append(taken[0] if len(taken) == 1 else np.concatenate(taken))
        return tuple(fields)
