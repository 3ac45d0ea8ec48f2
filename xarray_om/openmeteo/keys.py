"""Per-axis keys of outer indexing (an int, a slice or an integer array)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def is_int(k: Any) -> bool:
    return isinstance(k, (int, np.integer))


def key_len(k: Any, n: int) -> int:
    """Number of positions ``k`` selects on an axis of length ``n``."""
    if isinstance(k, slice):
        return len(range(*k.indices(n)))
    return int(np.asarray(k).size)


def key_lens(keys: Sequence[Any], shape: Sequence[int]) -> list[int]:
    """:func:`key_len` of each key against its axis."""
    return [key_len(k, n) for k, n in zip(keys, shape, strict=True)]


def as_index(k: Any, n: int) -> np.ndarray:
    """Indices (int64) selected by a slice or integer array."""
    if isinstance(k, slice):
        return np.arange(*k.indices(n), dtype=np.int64)
    return np.asarray(k, dtype=np.int64).reshape(-1)


def compact(idx: np.ndarray) -> Any:
    """A slice when the indices are an increasing arithmetic run, else the array."""
    if idx.size == 0:
        return slice(0, 0)
    if idx.size == 1:
        return slice(int(idx[0]), int(idx[0]) + 1)
    step = int(idx[1] - idx[0])
    if step > 0 and np.all(np.diff(idx) == step):
        return slice(int(idx[0]), int(idx[-1]) + 1, step)
    return idx
