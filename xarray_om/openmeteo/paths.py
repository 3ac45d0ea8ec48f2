"""File and folder names of the three layouts: listed, parsed, or derived from meta.json.

Stores that cannot list folders (plain HTTP mirrors) get their names derived
from ``meta.json`` instead of listed; such derived files may not exist.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from .store import Store
from .times import parse_iso, to_unix

_CHUNK_FILE = re.compile(r"^chunk_(-?\d+)\.om$")
_YEAR_FILE = re.compile(r"^year_(\d{4})\.om$")
_SPATIAL_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2})(\d{2})(?:_(?P<realm>[^.]+))?\.om$")
_RUN_DIR = re.compile(r"^\d{4}/\d{2}/\d{2}/\d{4}Z$")
#: Most chunk files derived for one unlisted open (about 10 years of daily files).
_MAX_GUESSED = 4000


# --------------------------------------------------------------------------- data/


@dataclass
class Folder:
    """The archive files of one variable (or one member folder) of data/."""

    member: int | None
    chunks: dict[int, str]  # chunk index -> path of chunk_<N>.om
    years: dict[int, str]  # year -> path of year_<YYYY>.om


def list_folder(store: Store, path: str, member: int | None) -> Folder:
    chunks: dict[int, str] = {}
    years: dict[int, str] = {}
    for fname in store.listdir(path) or []:
        if m := _CHUNK_FILE.match(fname):
            chunks[int(m.group(1))] = posixpath.join(path, fname)
        elif m := _YEAR_FILE.match(fname):
            years[int(m.group(1))] = posixpath.join(path, fname)
    return Folder(member, chunks, years)


def derived_folder(path: str, member: int | None, indices: list[int]) -> Folder:
    """The chunk files ``indices`` of a folder that cannot be listed."""
    return Folder(member, {n: posixpath.join(path, f"chunk_{n}.om") for n in indices}, {})


def guessed_chunks(
    store: Store, meta_path: str, meta: dict, dt: int, t0: int | None, t1: int | None
) -> list[int]:
    """Chunk indices covering [t0, t1] when folders cannot be listed (HTTP mirrors)."""
    ntime = meta.get("chunk_time_length")
    if not isinstance(ntime, (int, np.integer)) or int(ntime) <= 0:
        raise FileNotFoundError(
            f"cannot list the folders of {store.url(posixpath.dirname(meta_path))} and "
            f"{store.url(meta_path)} has no chunk_time_length to derive file names; pass "
            "meta={'chunk_time_length': ...} or use a listable store (s3://...)"
        )
    if t1 is None:
        end = meta.get("data_end_time")
        if not isinstance(end, (int, np.integer)):
            raise ValueError("this store cannot be listed: pass end=... (and start=...)")
        t1 = int(end) - 1  # data_end_time is exclusive
    if t0 is None:
        raise ValueError("this store cannot be listed: pass start=... to pick the chunk files")
    span = int(ntime) * dt
    first, last = t0 // span, t1 // span
    if last - first > _MAX_GUESSED:
        raise ValueError(f"{last - first + 1} chunk files between start and end: too many")
    return list(range(first, last + 1))


# --------------------------------------------------------------------------- data_spatial/, data_run/


def resolve_run(store: Store, base: str, run: Any, latest_name: str) -> tuple[str, dict | None]:
    """Run folder (``YYYY/MM/DD/HHMMZ``) below ``base`` and the latest.json content when used."""
    if isinstance(run, str) and run.strip().lower() == "latest":
        path = posixpath.join(base, latest_name)
        latest = store.read_json(path)
        if latest is None:
            raise FileNotFoundError(f"{store.url(path)} not found: pass run=<time>")
        ref = parse_iso(latest.get("reference_time"), store.url(path))
        return _run_folder(ref), latest
    if isinstance(run, str) and _RUN_DIR.match(run.strip()):
        return run.strip(), None
    if run is None:
        raise ValueError("run= is required for this layout ('latest' or a time)")
    return _run_folder(to_unix(run)), None


def _run_folder(seconds: int) -> str:
    d = np.datetime64(int(seconds), "s").astype(object)
    return f"{d.year:04d}/{d.month:02d}/{d.day:02d}/{d.hour:02d}{d.minute:02d}Z"


def spatial_valid_times(names: list[str], realm: str | None) -> dict[int, str]:
    """``{valid time: file name}`` of the data_spatial files of ``realm`` among ``names``."""
    out = {}
    for fname in names:
        m = _SPATIAL_FILE.match(fname)
        if m and (m.group("realm") or None) == (realm or None):
            out[to_unix(f"{m.group(1)}T{m.group(2)}:{m.group(3)}")] = fname
    return out


def spatial_name(valid_time: int, realm: str | None) -> str:
    """File name of the data_spatial file of ``valid_time`` (``2024-06-01T1200[_realm].om``)."""
    stamp = np.datetime64(int(valid_time), "s").astype(object)
    return f"{stamp:%Y-%m-%dT%H%M}{realm_suffix(realm)}.om"


def realm_suffix(realm: str | None) -> str:
    """``_<realm>`` of data_spatial file and meta names, empty without realm."""
    return f"_{realm}" if realm else ""
