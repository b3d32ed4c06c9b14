"""Where work runs, behind one interface (`Executor`); the engines know nothing of scores.

- `local` (`engines/local.py`): this machine's threads and loky worker processes.
- `ray` (`engines/ray.py`): tasks and actors on a Ray cluster, tables in its object store.
- `Pieces` (`engines/pieces.py`): rows an engine keeps in pieces where its tasks left them (the
  object store on Ray), each chunk reading only the pieces it overlaps.

A job makes one executor from `--engine/--jobs/--ray-address` (`make_executor`), opens its
`session()` and passes it down; the math calls `keep`, `map_chunks` and `map_with_shared` and never asks
which engine it has. A new engine is a module here with a class of this shape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from kscore.engines.pieces import Pieces

__all__ = ["ENGINES", "Executor", "Pieces", "check_engine", "make_executor"]

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

    def map_chunks(
        self, func: Callable[[Any, slice], Any], shared: Any, parts: Sequence[slice], kept: bool = False
    ) -> list[Any]:
        """`func(shared, part)` for every part, in order; `shared` (or each item of a tuple) may be
        a value `keep` returned, which `func` receives as the value. `kept`: `func` returns (small,
        large), and the large stays where the engine keeps it (the value here; an object ref on
        Ray): (small, kept large) come back, to be read as `pieces`."""
        ...

    def pieces(self, items: Sequence[Any], lengths: Sequence[int]) -> Pieces:
        """`Pieces` of results this executor kept (`map_chunks(kept=True)`), read where a chunk
        needs them."""
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
