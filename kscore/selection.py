"""The top k of a large array without sorting or copying it (the hardest datapoints of a summary)."""

from __future__ import annotations

import numpy as np


def top_k_candidates(values: np.ndarray, k: int, block: int = 4096) -> np.ndarray:
    """Indices of a small superset of the `k` largest non-NaN values (all ties with the k-th included).

    The array is cut into blocks; the k largest values lie in the blocks with the k largest block
    maxima, so only those blocks are searched.
    """
    n = len(values)
    if k <= 0 or n == 0:
        return np.empty(0, dtype=np.int64)
    missing = np.isnan(values)
    filled = np.where(missing, -np.inf, values) if missing.any() else values
    if n <= k * block:
        candidates = np.arange(n)
    else:
        whole = n - n % block
        maxima = filled[:whole].reshape(-1, block).max(axis=1)
        # Ties among block maxima: keep every block whose maximum reaches the k-th largest maximum.
        cut = np.partition(maxima, len(maxima) - k)[len(maxima) - k]
        blocks = np.flatnonzero(maxima >= cut)
        candidates = (blocks[:, None] * block + np.arange(block)).ravel()
        candidates = np.concatenate([candidates, np.arange(whole, n)])
    chosen = filled[candidates]
    valid = chosen > -np.inf
    candidates, chosen = candidates[valid], chosen[valid]
    if len(chosen) <= k:
        return candidates
    threshold = np.partition(chosen, len(chosen) - k)[len(chosen) - k]
    return candidates[chosen >= threshold]
