"""Shared pieces of the command line: exit codes, usage errors, formatting, options."""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

EXIT_OK = 0
EXIT_BAD_DATA = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """A problem with the command line (exit code 2)."""


def human_size(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"`` (binary units; bytes without decimals)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _ratio(raw: float, stored: float) -> str:
    return f"{raw / stored:.2f}x" if stored > 0 and raw > 0 else "n/a"


def parse_storage_options(items: Sequence[str] | None) -> dict[str, Any] | None:
    """``["anon=true", "client_kwargs={...}"]`` -> dict (JSON values, else strings)."""
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"storage option {item!r} is not KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _is_url(s: str) -> bool:
    return "://" in s


def _json_value(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


def _attr_text(v: Any, dtype: str) -> str:
    if dtype == "string":
        return json.dumps(v, ensure_ascii=False)
    return f"{v} ({dtype})"


def _name_text(name: str) -> str:
    return name if name.isidentifier() else json.dumps(name, ensure_ascii=False)


def _quiet_engine_warnings() -> None:
    # The CLI always names its engine; the omfiles clash warnings would only confuse.
    warnings.filterwarnings("ignore", message=r"Found \d+ entrypoints for the engine name")
    warnings.filterwarnings("ignore", message=r"The xarray engine name 'om' is also registered")
    # xarray writes consolidated metadata into Zarr v3 stores (read by xarray, zarr-python).
    warnings.filterwarnings("ignore", message=r"Consolidated metadata is currently not part")


def _check_input(path: str) -> None:
    if not _is_url(path) and not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
