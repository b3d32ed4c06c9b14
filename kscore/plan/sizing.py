"""What a plan needs whatever the command: memory sizes and the cutting of the id space into ranges.

A command runs in memory when its estimate fits the memory limit; otherwise it cuts the ids into
ranges (partitions) small enough to score one at a time, spills each range's rows to a temporary
folder, and writes the ranges' results one after another. Ranges are cut on the ids after
`normalize_ids` (an integral float and an integer are one id), in the order the output is sorted
by, so the partitions' results concatenated are the in-memory result.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np
import polars as pl

from kscore.errors import InputError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^\s*(?P<number>\d+(?:\.\d*)?|\.\d+)\s*(?P<unit>[a-zA-Z]*)\s*$")
# The default memory limit: this share of the memory that is available when the run starts.
DEFAULT_SHARE = 0.5
# What a run holds besides its data: the interpreter, polars, numpy and kscore (about 105 MB
# resident with the test and ray extras installed), and the buffers polars' streaming engine keeps
# on its own. With 200 MiB here, a 5 x 2M-row run under --memory-limit 400MiB peaked at 378-420 MiB
# (0.6.3 at 391-411): the summed RSS went over the limit; with 256 MiB, 319-391 MiB (2026-12-05).
BASE_BYTES = 256 * 1024**2


def parse_size(text: str) -> int:
    """'4GiB', '500MB', '2g' or '1073741824' -> bytes (k/M/G are powers of 1000, KiB/MiB/GiB of 1024)."""
    match = _SIZE.match(str(text))
    unit = match["unit"].lower() if match else ""
    if match is None or unit not in _UNITS:
        raise InputError(
            f"--memory-limit: cannot read {str(text)[:40]!r} as a size; write e.g. 4GiB or 500MB"
        )
    size = int(float(match["number"]) * _UNITS[unit])
    if size < 1:
        raise InputError(f"--memory-limit must be positive, not {text!r}")
    return size


def format_size(size: float) -> str:
    """Bytes as a short human size: '3.2 GiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def available_memory() -> int:
    """Bytes of memory available to new work now (Linux: MemAvailable), else the physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


def resolve_memory_limit(limit: int | str | None) -> int:
    """The memory limit in bytes: `limit` (bytes or a size text), or a share of the available memory."""
    if limit is None:
        return int(available_memory() * DEFAULT_SHARE)
    if isinstance(limit, str):
        return parse_size(limit)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InputError(f"memory_limit must be a positive number of bytes, not {limit!r}")
    return limit


@dataclass(frozen=True)
class IdRanges:
    """Partition k holds the ids `bounds[k-1] <= id < bounds[k]` (open at both ends), in id order.

    Integer ranges of one width from `low` (`width` set) are found by arithmetic, others by a
    binary search in the bounds.
    """

    bounds: pl.Series
    low: int = 0
    width: int = 0

    @property
    def count(self) -> int:
        return len(self.bounds) + 1

    def of(self, ids: pl.Series) -> np.ndarray:
        """The partition of every id (ids of the bounds' dtype), as small integers."""
        if len(self.bounds) == 0:
            return np.zeros(len(ids), dtype=np.uint16)
        if self.width:
            values = ids.to_numpy()  # an id below `low` (a footer that claimed too high a minimum): 0
            return np.clip((values - self.low) // self.width, 0, self.count - 1).astype(np.uint16)
        if ids.dtype.is_integer():
            return np.searchsorted(self.bounds.to_numpy(), ids.to_numpy(), side="right").astype(np.uint16)
        return self.bounds.search_sorted(ids, side="right").to_numpy().astype(np.uint16)

    def expr(self, ids: pl.Expr) -> pl.Expr:
        """The partition of every id, as a polars expression (UInt16), the same as `of`."""
        if len(self.bounds) == 0:
            return pl.lit(0, dtype=pl.UInt16)
        if self.width:
            return ((ids - self.low) // self.width).clip(0, self.count - 1).cast(pl.UInt16)
        return pl.lit(self.bounds).search_sorted(ids, side="right").cast(pl.UInt16)


# Partitions are numbered in 16 bits (a radix sort groups the rows of a batch by partition).
MAX_PARTS = 65_535


def dense_ranges(low: int, high: int, parts: int, dtype: pl.DataType) -> IdRanges:
    """About `parts` ranges of one width over the integers low..high."""
    parts = max(1, min(parts, high - low + 1, MAX_PARTS))
    width = -(-(high - low + 1) // parts)
    cuts = [low + width * k for k in range(1, parts) if low + width * k <= high]
    if dtype == pl.UInt64 or high > (1 << 63) - 1:  # bounds past Int64: search, not arithmetic
        return IdRanges(pl.Series("bounds", cuts, dtype=pl.UInt64))
    return IdRanges(pl.Series("bounds", cuts, dtype=pl.Int64).cast(dtype), low=low, width=width)


def sampled_ranges(sample: pl.Series, parts: int) -> IdRanges:
    """About `parts` ranges holding equal shares of the ids, cut at quantiles of a sample of them."""
    ordered = sample.unique().sort()
    parts = min(parts, MAX_PARTS)
    if parts <= 1 or len(ordered) < 2:
        return IdRanges(ordered.slice(0, 0))
    picks = sorted({int(len(ordered) * k / parts) for k in range(1, parts)} - {0})
    return IdRanges(ordered.gather(picks))
