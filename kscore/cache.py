"""kscore's cache folder, and numba's compiled functions kept in it."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """kscore's cache folder: $KSCORE_CACHE_DIR, else $XDG_CACHE_HOME/kscore, else ~/.cache/kscore."""
    explicit = os.environ.get("KSCORE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "kscore"


def use_numba_cache() -> None:
    """Keep numba's compiled functions in kscore's cache folder, so later runs skip compiling.

    Must run before numba is imported; a NUMBA_CACHE_DIR the user set wins.
    """
    folder = cache_dir() / "numba"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # an unwritable home: numba then compiles in memory, as without a cache
    os.environ.setdefault("NUMBA_CACHE_DIR", str(folder))
