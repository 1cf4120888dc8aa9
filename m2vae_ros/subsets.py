"""Subsets of modalities as bitmasks, and their names.

Bit i of a subset stands for modality i in `ModelSpec.modalities`, so subsets of N
modalities are the integers 1 … 2^N − 1. A subset's name joins its modality names in
configuration order with '+' (``camera+lidar``); topics, metrics and the dataset
summary all use these names.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def all_subsets(n: int) -> list[int]:
    """Every non-empty subset of n modalities, ordered by size then by bits."""
    return sorted(range(1, 1 << n), key=lambda s: (s.bit_count(), s))


def members(subset: int) -> list[int]:
    """Modality indices in a subset, ascending."""
    return [i for i in range(subset.bit_length()) if subset >> i & 1]


def subset_name(subset: int, names: Sequence[str]) -> str:
    return "+".join(names[i] for i in members(subset))


def parse_subset(text: str, names: Sequence[str]) -> int:
    """Inverse of `subset_name`; accepts members in any order."""
    if not text:
        raise ValueError(f"empty subset: name at least one of {list(names)}")
    subset = 0
    for part in text.split("+"):
        if part not in names:
            raise ValueError(f"unknown modality {part!r} in subset {text!r}; known: {list(names)}")
        subset |= 1 << names.index(part)
    return subset


def from_indices(indices: Iterable[int]) -> int:
    subset = 0
    for i in indices:
        subset |= 1 << i
    return subset


def row_subsets(available: np.ndarray) -> np.ndarray:
    """The subset each row of an availability mask [N, n_modalities] (bool) holds → int64 [N]."""
    return available.astype(np.int64) @ (1 << np.arange(available.shape[1], dtype=np.int64))


def unheld(available: np.ndarray, subsets: Iterable[int]) -> list[int]:
    """The subsets no row of an availability mask holds whole: their encoders learn from no sample."""
    patterns = set(row_subsets(available).tolist())
    return [s for s in subsets if not any(p & s == s for p in patterns)]


def children(subset: int) -> list[int]:
    """The non-empty subsets with exactly one modality fewer (|A| = |B| − 1, A ⊂ B)."""
    if subset.bit_count() < 2:
        return []
    return [subset & ~(1 << i) for i in members(subset)]
