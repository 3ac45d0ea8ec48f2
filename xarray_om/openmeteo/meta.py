"""The ``meta.json`` / ``latest.json`` sidecars: the values the layouts take from them."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from typing import Any

import numpy as np

from .store import Store
from .times import parse_iso

#: Keys of ``static/meta.json`` copied into the Dataset attributes (data/ layout).
_DATA_META_ATTRS = (
    "temporal_resolution_seconds",
    "chunk_time_length",
    "update_interval_seconds",
    "last_run_initialisation_time",
    "last_run_modification_time",
    "last_run_availability_time",
    "data_end_time",
)


def data_meta(store: Store, model_dir: str, override: Mapping[str, Any]) -> tuple[dict, str]:
    """``static/meta.json`` of a data/ model updated with ``meta=``, and its path."""
    path = posixpath.join(model_dir, "static", "meta.json")
    meta = store.read_json(path) or {}
    meta.update(override)
    return meta, path


def time_resolution(meta: Mapping[str, Any], where: str) -> int:
    """``temporal_resolution_seconds`` (the data/ time step), validated."""
    dt = meta.get("temporal_resolution_seconds")
    if not isinstance(dt, (int, np.integer)) or int(dt) <= 0:
        raise ValueError(
            f"temporal_resolution_seconds missing or invalid in {where} "
            f"({dt!r}); pass meta={{'temporal_resolution_seconds': ...}}"
        )
    return int(dt)


def data_attrs(meta: Mapping[str, Any]) -> dict[str, Any]:
    """The scalar values of ``static/meta.json`` kept as Dataset attributes."""
    attrs = {}
    for k in _DATA_META_ATTRS:
        v = meta.get(k)
        # bool is an int subclass but no meaningful value of these keys.
        if isinstance(v, (int, float, str, np.integer, np.floating)) and not isinstance(v, bool):
            attrs[k] = v
    return attrs


def run_meta(store: Store, path: str, latest: dict | None) -> dict:
    """A run's ``meta.json``; the latest.json content (same keys) when it is missing."""
    return store.read_json(path) or latest or {}


def reference_time(meta: Mapping[str, Any], where: str) -> int | None:
    """``reference_time`` (the run's initialisation) in Unix seconds, None when absent."""
    ref = meta.get("reference_time")
    return None if ref is None else parse_iso(ref, where)


def valid_times(meta: Mapping[str, Any], where: str) -> list[int]:
    """``valid_times`` of a data_spatial run (empty when absent)."""
    return [parse_iso(v, where) for v in meta.get("valid_times") or []]
