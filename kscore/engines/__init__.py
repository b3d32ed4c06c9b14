"""Where work runs, behind one interface (`Executor`); the engines know nothing of scores.

- `local` (`engines/local.py`): this machine's threads and loky worker processes.
- `ray` (`engines/ray.py`): tasks and actors on a Ray cluster, tables in its object store.

A job makes one executor from `--engine/--jobs/--ray-address` (`make_executor`), opens its
`session()` and passes it down; the math calls `keep`, `map_chunks` and `map_with_shared` and never asks
which engine it has. A new engine is a module here with a class of this shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np

_T = TypeVar("_T")
_R = TypeVar("_R")

ENGINES = ("local", "ray")


class Executor(Protocol):
    """How a piece of math runs its parts."""

    #: the workers share this machine's memory (the memory limit caps how many run at once)
    on_this_machine: bool

    @property
    def workers(self) -> int:
        """How many parts run at once."""
        ...

    def keep(self, value: Any) -> Any:
        """`value` where the chunks read it (the value itself here; in the object store on Ray): a
        `map_chunks` call's `shared`, or an item of its tuple, then costs no copy per call."""
        ...

    def map_chunks(self, func: Callable[[Any, slice], _R], shared: Any, parts: Sequence[slice]) -> list[_R]:
        """`func(shared, part)` for every part, in order; `shared` (or each item of a tuple) may be
        a value `keep` returned, which `func` receives as the value."""
        ...

    def map_with_shared(
        self, func: Callable[[Any, _T], _R], items: Iterable[_T], shared: Any, most: int, kept: bool = False
    ) -> Iterator[Any]:
        """`func(shared, item)` for every item, in order, `shared` loaded once per worker; at most
        `most` workers where they share this machine. `kept`: each result where the engine left
        it (the value here; an object ref on Ray), once it is made."""
        ...

    def started(self, shared: Any, most: int) -> AbstractContextManager[None]:
        """For the block: the workers of the next `map_with_shared` with this `shared` (the same
        object) and `most` start now, while the caller does other work (where that saves their
        start), and stop at its end if that map never ran."""
        ...

    def session(self) -> AbstractContextManager[Any]:
        """The engine's resources for the length of a job."""
        ...


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


def check_engine(engine: str) -> None:
    """InputError for an engine kscore does not have."""
    from kscore.errors import InputError

    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}; use one of: {', '.join(ENGINES)}")


def make_executor(engine: str = "local", jobs: int | None = None, address: str | None = None) -> Executor:
    """The executor of `engine`: `jobs` threads and processes here, or the Ray cluster at `address`
    (default `$RAY_ADDRESS`, else a local instance). Ray is imported only when asked for."""
    check_engine(engine)
    if engine == "ray":
        from kscore.engines.ray import RayExecutor

        return RayExecutor(address)
    from kscore.engines.local import LocalExecutor

    return LocalExecutor(jobs)
