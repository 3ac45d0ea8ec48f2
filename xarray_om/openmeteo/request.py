"""What :func:`~xarray_om.open_openmeteo` was asked for, checked once for every layout."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .times import to_unix


@dataclass(frozen=True)
class Request:
    """The arguments every layout takes, normalised."""

    model: str
    variables: list[str] | None  # None: all the run has (spatial, run)
    t0: int | None  # start, Unix seconds (inclusive); None: from the first file
    t1: int | None  # end, Unix seconds (inclusive); None: to the last file
    use_pyproj: bool | None

    @classmethod
    def create(
        cls,
        model: str,
        variables: str | Sequence[str] | None,
        start: Any,
        end: Any,
        use_pyproj: bool | None,
    ) -> Request:
        names = _as_names(variables)
        t0 = to_unix(start) if start is not None else None
        t1 = to_unix(end, end=True) if end is not None else None
        if t0 is not None and t1 is not None and t1 < t0:
            raise ValueError(f"end ({end!r}) is before start ({start!r})")
        return cls(model, names, t0, t1, use_pyproj)

    def in_range(self, seconds: np.ndarray) -> np.ndarray:
        """Which of ``seconds`` (Unix seconds) lie within [start, end]."""
        keep = np.ones(seconds.shape, dtype=bool)
        if self.t0 is not None:
            keep &= seconds >= self.t0
        if self.t1 is not None:
            keep &= seconds <= self.t1
        return keep


def _as_names(variables: str | Sequence[str] | None) -> list[str] | None:
    """The ``variables=`` argument as a list of names (None: all)."""
    if variables is None:
        return None
    if isinstance(variables, str):
        return [variables]
    names = [str(v) for v in variables]
    if not names:
        raise ValueError("variables is empty")
    if len(set(names)) != len(names):
        raise ValueError(f"variables has duplicates: {names}")
    return names
