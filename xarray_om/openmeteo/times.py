"""Times as Unix seconds: user arguments, ISO strings of meta.json, datetime64 output."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from .. import conventions as conv

_DATE_ONLY = re.compile(r"^\s*\d{4}(-\d{2}(-\d{2})?)?\s*$")


def to_unix(value: Any, *, end: bool = False) -> int:
    """Unix seconds of a time-like value (naive = UTC).

    With ``end=True`` a date-only string (``"2024-01-31"``, ``"2024-02"``)
    means the last second of that period, so that ``end=`` is inclusive.
    """
    import pandas as pd

    if end and isinstance(value, str) and _DATE_ONLY.match(value):
        ts = pd.Period(value.strip()).end_time
    else:
        if isinstance(value, str):
            value = value.strip()
            if value.endswith("Z"):
                value = value[:-1]
        ts = pd.Timestamp(value)
    if ts.tzinfo is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    return int(np.datetime64(ts.to_datetime64(), "s").astype(np.int64))


def parse_iso(value: Any, where: str) -> int:
    """Unix seconds of an ISO-8601 string read from ``where`` (a JSON file)."""
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected an ISO-8601 time string, got {value!r}")
    return to_unix(value)


def datetimes(seconds: Any) -> np.ndarray:
    """datetime64[ns] of Unix seconds."""
    return conv.unix_seconds_to_datetime64(np.asarray(seconds, dtype=np.int64))
