"""Open-Meteo's public archives as one lazy xarray Dataset.

:func:`open_openmeteo` lists the files of one model under a bucket-like root
(a local folder, ``s3://openmeteo``, any fsspec URL), reads the sidecar
``meta.json`` files and returns one Dataset with dimensions ``(time,
latitude, longitude)`` (``(time, latitude, longitude, member)`` for
ensembles; ``rlat``/``rlon`` or ``y``/``x`` on rotated and projected grids)
for three layouts (``openmeteo-data.md``):

``layout="data"``
    ``data/<model>/<variable>/chunk_<N>.om`` time-series archives. Chunk
    ``N`` holds ``chunk_time_length`` steps from ``N * chunk_time_length *
    temporal_resolution_seconds`` (Unix seconds); ``start``/``end`` pick the
    chunk indices, other files are never opened. v3 files are ``[ny, nx,
    (members,) T]``; legacy v1/v2 files ``[ny * nx * (members), T]`` are
    reshaped with the grid size (from a v3 sibling, ``grid=`` or the
    ``crs_wkt`` BBOX). ``year_<YYYY>.om`` files (merged reanalysis years,
    starting YYYY-01-01T00Z) join the same time axis; where a chunk file
    overlaps a year file, the chunk file wins. Missing files and
    not-yet-written steps are NaN. (``master_N.om``, ``rolling.om`` and bias
    files are not used.)
``layout="spatial"``
    ``data_spatial/<model>/<YYYY>/<MM>/<DD>/<HHMM>Z/<valid time>.om``: one
    file per valid time holding every variable, concatenated along ``time``;
    ``forecast_reference_time`` is a scalar coordinate.
``layout="run"``
    ``data_run/<model>/<YYYY>/<MM>/<DD>/<HHMM>Z/<variable>.om``: one file per
    variable with the run's (possibly irregular) ``time`` array.

Laziness: opening reads ``meta.json``, lists directories and opens one
*probe* file per variable (data/, spatial) or the variable files (run) for
their metadata. Every other file is opened on the first read that touches
it, and a read fetches only the OM chunks it needs (a point time series over
a month reads one OM chunk from each file overlapping the month). ``chunks=``
gives dask arrays with one dask chunk per file along time by default.

Grids come from ``crs_wkt`` via :mod:`xarray_om.grids` (2-D
latitude/longitude for projected grids when pyproj is installed).
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import os
import posixpath
import re
import threading
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends.common import BackendArray, BackendEntrypoint
from xarray.core import indexing

from .. import conventions as conv
from .. import grids
from ..errors import OmFormatError
from ..format.reader import OmArray, OmFile

__all__ = ["LAYOUTS", "open_openmeteo"]

#: Layouts :func:`open_openmeteo` understands (``layout=``).
LAYOUTS = ("data", "spatial", "run")

_CHUNK_FILE = re.compile(r"^chunk_(-?\d+)\.om$")
_YEAR_FILE = re.compile(r"^year_(\d{4})\.om$")
_MEMBER_SUFFIX = re.compile(r"^(?P<base>.+)_member(?P<n>\d+)$")
_SPATIAL_FILE = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2})(\d{2})(?:_(?P<realm>[^.]+))?\.om$")
_RUN_DIR = re.compile(r"^\d{4}/\d{2}/\d{2}/\d{4}Z$")
#: Newest derived chunk paths tried to find a probe file on unlistable stores.
_GUESS_PROBES = 8
#: Most chunk files derived for one unlisted open (about 10 years of daily files).
_MAX_GUESSED = 4000
#: data_spatial files opened at most to find the arrays of variables=None.
_SPATIAL_PROBES = 3
_DATE_ONLY = re.compile(r"^\s*\d{4}(-\d{2}(-\d{2})?)?\s*$")

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


# --------------------------------------------------------------------------- public API


def open_openmeteo(
    root: str | os.PathLike,
    model: str,
    variables: str | Sequence[str] | None = None,
    *,
    layout: str = "data",
    start: Any = None,
    end: Any = None,
    run: Any = "latest",
    realm: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    filesystem: Any = None,
    chunks: Any = None,
    grid: tuple[int, int] | None = None,
    meta: Mapping[str, Any] | None = None,
    use_pyproj: bool | None = None,
) -> xr.Dataset:
    """Open one model of an Open-Meteo bucket as a single lazy Dataset.

    Parameters
    ----------
    root
        Bucket root holding ``data/``, ``data_spatial/``, ``data_run/``: a
        local folder, ``s3://openmeteo`` (pass ``storage_options={"anon":
        True}``) or any fsspec URL. Stores that cannot list folders (plain
        HTTP mirrors such as ``https://openmeteo.s3.amazonaws.com``) work
        from the ``meta.json`` files: file names are derived (data/ then
        needs ``start``), and derived files that do not exist read as NaN.
    model
        Model folder name, e.g. ``"dwd_icon"``, ``"ecmwf_ifs025"``.
    variables
        One name or a list (``"temperature_2m"``). Names whose members are
        stored as ``<name>_memberNN`` (folders, spatial arrays, run files)
        are stacked along a ``member`` dimension (``<name>`` itself, when
        present, is member 0). None: every variable listed in the run's
        ``meta.json`` (spatial, run); required for ``layout="data"``.
    layout
        ``"data"`` (time-series ``chunk_N.om`` and ``year_YYYY.om`` files),
        ``"spatial"`` (one file per valid time) or ``"run"`` (one file per
        variable and run).
    start, end
        Time range to open (inclusive; anything ``pandas.Timestamp``
        accepts; naive means UTC; a date-only ``end`` such as ``"2024-01-31"``
        means the end of that day). Only files overlapping the range are
        used. Default: everything available.
    run
        spatial/run layouts: ``"latest"`` (read ``latest.json``), a time
        (``"2024-06-01T12:00"``, datetime...) or a run folder
        ``"2024/06/01/1200Z"``.
    realm
        spatial layout: the ``_<realm>`` suffix of files and meta files.
    storage_options
        fsspec options for ``root`` (ignored with ``filesystem``).
    filesystem
        An fsspec filesystem to use; ``root`` is then a path inside it.
    chunks
        None (default): lazy arrays without dask; a read fetches only the
        OM chunks it touches. ``{}``: dask, one chunk per file along time
        and per OM chunk in space (large grids: pass sizes, e.g.
        ``{"time": -1, "latitude": 64, "longitude": 64}``); other values as
        in :func:`xarray.open_dataset`.
    grid
        ``(ny, nx)`` of the grid, for legacy data/ files when no v3 file of
        the model is available and the BBOX of ``crs_wkt`` is ambiguous.
    meta
        Values overriding / completing ``static/meta.json`` (data/ layout),
        e.g. ``{"temporal_resolution_seconds": 3600, "chunk_time_length":
        121, "crs_wkt": ...}``.
    use_pyproj
        2-D latitude/longitude for rotated/projected grids: None (when pyproj
        is installed), True (require it) or False.

    Returns
    -------
    xarray.Dataset
        Data variables ``(time, <y>, <x>[, member])`` (float32, NaN where no
        data), coordinates ``time`` (datetime64[ns]), the grid coordinates,
        ``member`` for ensembles, ``forecast_reference_time`` (spatial/run)
        and the CF grid mapping ``crs`` (carrying ``crs_wkt``; data variables
        name it in their ``grid_mapping`` attribute). Attributes name the
        model, the layout and the ``meta.json`` values.

    Raises
    ------
    FileNotFoundError
        Missing model/variable/run folders or meta files (the message lists
        what exists).
    ValueError
        Inconsistent arguments or files that disagree with each other.
    xarray_om.errors.OmFormatError
        A file is not a readable OM file (raised when it is read).

    Examples
    --------
    >>> ds = open_openmeteo(  # doctest: +SKIP
    ...     "s3://openmeteo", "dwd_icon", "temperature_2m",
    ...     start="2025-01-01", end="2025-01-31", storage_options={"anon": True})
    >>> ds.temperature_2m.sel(latitude=47.5, longitude=8.5, method="nearest").load()  # doctest: +SKIP
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    store = _Store.create(root, storage_options, filesystem)
    names = _as_names(variables)
    t0 = _to_unix(start) if start is not None else None
    t1 = _to_unix(end, end=True) if end is not None else None
    if t0 is not None and t1 is not None and t1 < t0:
        raise ValueError(f"end ({end!r}) is before start ({start!r})")
    if layout == "data":
        built = _build_data(store, model, names, t0, t1, grid, dict(meta or {}), use_pyproj)
    elif layout == "spatial":
        built = _build_spatial(store, model, names, t0, t1, run, realm, use_pyproj)
    else:
        built = _build_run(store, model, names, t0, t1, run, use_pyproj)
    return xr.open_dataset(built, engine=_BuiltEntrypoint, chunks=chunks)


# --------------------------------------------------------------------------- storage


@dataclass
class _Store:
    """The filesystem and root path of a bucket."""

    fs: Any
    root: str
    label: str

    @classmethod
    def create(cls, root: Any, storage_options: Mapping | None, filesystem: Any) -> _Store:
        import fsspec

        label = os.fspath(root) if isinstance(root, os.PathLike) else str(root)
        if filesystem is not None:
            fs = filesystem
            path = label
            if "://" in path:
                path = fs._strip_protocol(path) if hasattr(fs, "_strip_protocol") else path
        else:
            if "://" not in label and "::" not in label:
                label = os.path.abspath(os.path.expanduser(label))
            fs, path = fsspec.core.url_to_fs(label, **dict(storage_options or {}))
        return cls(fs, str(path).rstrip("/"), label.rstrip("/"))

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts) if self.root else posixpath.join(*parts)

    def url(self, path: str) -> str:
        """Human-readable location of ``path`` for messages."""
        rel = path[len(self.root) :].lstrip("/") if path.startswith(self.root) else path
        return f"{self.label}/{rel}"

    def listdir(self, path: str) -> list[str] | None:
        """Base names in a folder; None when it does not exist or cannot be listed.

        Plain HTTP mirrors cannot list folders; callers then derive file
        names from ``meta.json`` instead.
        """
        try:
            entries = self.fs.ls(path, detail=False)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except Exception:  # not listable (HTTP servers without index pages, ...)
            return None
        names = []
        for e in entries:
            name = posixpath.basename(str(e).rstrip("/"))
            if name:
                names.append(name)
        if not names and not self._isdir(path):
            return None
        return sorted(set(names))

    def _isdir(self, path: str) -> bool:
        try:
            return bool(self.fs.isdir(path))
        except Exception:
            return False

    def read_json(self, path: str) -> dict | None:
        """Parsed JSON file, None when missing."""
        try:
            raw = self.fs.cat_file(path)
        except FileNotFoundError:
            return None
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"{self.url(path)}: not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise ValueError(f"{self.url(path)}: expected a JSON object")
        return value

    def open(self, path: str) -> OmFile:
        return OmFile((self.fs, path))


# --------------------------------------------------------------------------- time helpers


def _to_unix(value: Any, *, end: bool = False) -> int:
    """Unix seconds of a time-like value (naive = UTC)."""
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


def _datetimes(seconds: Any) -> np.ndarray:
    return conv.unix_seconds_to_datetime64(np.asarray(seconds, dtype=np.int64))


def _run_folder(seconds: int) -> str:
    d = np.datetime64(int(seconds), "s").astype(object)
    return f"{d.year:04d}/{d.month:02d}/{d.day:02d}/{d.hour:02d}{d.minute:02d}Z"


def _parse_iso(value: Any, what: str) -> int:
    if not isinstance(value, str):
        raise ValueError(f"{what}: expected an ISO-8601 time string, got {value!r}")
    return _to_unix(value)


# --------------------------------------------------------------------------- lazy pieces


def _is_int(k: Any) -> bool:
    return isinstance(k, (int, np.integer))


def _key_len(k: Any, n: int) -> int:
    if isinstance(k, slice):
        return len(range(*k.indices(n)))
    return int(np.asarray(k).size)


def _as_index(k: Any, n: int) -> np.ndarray:
    """Indices (int64) selected by a slice or integer array."""
    if isinstance(k, slice):
        return np.arange(*k.indices(n), dtype=np.int64)
    return np.asarray(k, dtype=np.int64).reshape(-1)


def _compact(idx: np.ndarray) -> Any:
    """A slice when the indices are an increasing arithmetic run, else the array."""
    if idx.size == 0:
        return slice(0, 0)
    if idx.size == 1:
        return slice(int(idx[0]), int(idx[0]) + 1)
    step = int(idx[1] - idx[0])
    if step > 0 and np.all(np.diff(idx) == step):
        return slice(int(idx[0]), int(idx[-1]) + 1, step)
    return idx


class _Piece:
    """Part of a variable along time; ``read`` returns ``(t, y, x[, m])``."""

    def read(self, skey: tuple, tkey: Any, sshape: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _LazyFile:
    """An OM file opened on first use (thread-safe), or handed over already open."""

    def __init__(
        self, store: _Store, path: str, opened: OmFile | None = None, *, missing_ok: bool = False
    ) -> None:
        self.store = store
        self.path = path
        self._file = opened
        self._lock = threading.Lock()
        self._closed = False
        # Paths derived from meta.json (unlisted stores) may not exist: read them as NaN.
        self.missing_ok = missing_ok
        self._missing = False

    @property
    def name(self) -> str:
        return self.store.url(self.path)

    def get(self) -> OmFile:
        f = self._file
        if f is None:
            with self._lock:
                f = self._file
                if f is None:
                    if self._closed:
                        raise ValueError(f"{self.name}: the dataset was closed")
                    f = self._file = self.store.open(self.path)
        return f

    def get_or_none(self) -> OmFile | None:
        """The file, or None when it does not exist and ``missing_ok`` is set."""
        if self._missing:
            return None
        try:
            return self.get()
        except FileNotFoundError:
            if not self.missing_ok:
                raise
            self._missing = True
            return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            f, self._file = self._file, None
        if f is not None:
            f.close()

    def __getstate__(self) -> dict:
        state = {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_file")}
        state.update(_file=None, _closed=False)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


class _TimeLastFile(_Piece):
    """A ``[ny, nx, (nm,) T]`` v3 array, or a legacy ``[ny*nx*(nm), T]`` one.

    ``expect`` is the spatial shape ``(ny, nx[, nm])`` and ``ntime`` the
    time length every such file of the variable must have.
    """

    def __init__(
        self, lazy: _LazyFile, expect: tuple[int, ...], ntime: int, array_path: str = ""
    ) -> None:
        self.lazy = lazy
        self.expect = tuple(int(v) for v in expect)
        self.ntime = int(ntime)
        self.array_path = array_path
        self._checked: OmArray | None = None

    def array(self) -> OmArray | None:
        arr = self._checked
        if arr is not None:
            return arr
        f = self.lazy.get_or_none()
        if f is None:
            return None
        node = f[self.array_path] if self.array_path else f.root
        if node.kind != "array":
            raise OmFormatError(
                f"expected an array at {self.array_path or 'the root'}, found a {node.kind}",
                source=self.lazy.name,
            )
        shape = tuple(node.shape)
        full = (*self.expect, self.ntime)
        flat = (math.prod(self.expect), self.ntime)
        if f.version in (1, 2):
            if shape != flat:
                raise OmFormatError(
                    f"legacy array of shape {shape}; expected {flat} (grid "
                    f"{self.expect} flattened, {self.ntime} time steps) like the other files",
                    source=self.lazy.name,
                )
        elif shape != full:
            raise OmFormatError(
                f"array of shape {shape}; expected {full} like the other files of this variable",
                source=self.lazy.name,
            )
        self._checked = node  # type: ignore[assignment]
        return node  # type: ignore[return-value]

    def read(self, skey: tuple, tkey: Any, sshape: tuple[int, ...]) -> np.ndarray:
        arr = self.array()
        if arr is None:
            sizes = [_key_len(k, n) for k, n in zip(skey, self.expect, strict=True)]
            return np.full((_key_len(tkey, self.ntime), *sizes), np.nan, np.float32)
        if arr.ndim == len(self.expect) + 1:
            block = arr.read((*skey, tkey))
            return np.moveaxis(block, -1, 0)
        # Legacy: locations are the grid (y, x[, member]) flattened in C order.
        idx = [_as_index(k, n) for k, n in zip(skey, self.expect, strict=True)]
        sizes = [i.size for i in idx]
        nt = _key_len(tkey, self.ntime)
        if 0 in sizes or nt == 0:
            return np.empty((nt, *sizes), arr.dtype)
        loc = np.ravel_multi_index(np.ix_(*idx), self.expect).reshape(-1)
        block = arr.read((_compact(loc), tkey))
        return np.moveaxis(block.reshape(*sizes, nt), -1, 0)

    def close(self) -> None:
        self.lazy.close()


class _SpatialFile(_Piece):
    """One data_spatial file: 2-D ``[ny, nx]`` arrays, one valid time.

    ``names`` has one array name, or one per member (None: member absent).
    Arrays missing from the file (e.g. step 0 of sums) read as NaN.
    """

    def __init__(
        self,
        lazy: _LazyFile,
        names: Sequence[str | None],
        ny: int,
        nx: int,
        valid_time: int,
        members: bool,
        dtype: np.dtype,
    ) -> None:
        self.lazy = lazy
        self.names = list(names)
        self.ny, self.nx = int(ny), int(nx)
        self.valid_time = int(valid_time)
        self.members = members
        self.dtype = dtype
        self._arrays: list[OmArray | None] | None = None

    def _resolve(self) -> list[OmArray | None]:
        arrays = self._arrays
        if arrays is not None:
            return arrays
        f = self.lazy.get_or_none()
        if f is None:
            self._arrays = [None] * len(self.names)
            return self._arrays
        root = f.root
        vt = root.attrs.get(conv.VALID_TIME) if root.kind == "group" else None
        if vt is not None and int(vt) != self.valid_time:
            raise OmFormatError(
                f"valid_time {int(vt)} in the file, but its name says {self.valid_time}",
                source=self.lazy.name,
            )
        by_name = {c.name: c for c in root.children if c.kind == "array"}
        arrays = []
        for n in self.names:
            node = by_name.get(n) if n is not None else None
            if node is not None and tuple(node.shape) != (self.ny, self.nx):
                raise OmFormatError(
                    f"array {n!r} has shape {tuple(node.shape)}, expected {(self.ny, self.nx)}",
                    source=self.lazy.name,
                )
            arrays.append(node)  # type: ignore[arg-type]
        self._arrays = arrays
        return arrays

    def read(self, skey: tuple, tkey: Any, sshape: tuple[int, ...]) -> np.ndarray:
        nt = _key_len(tkey, 1)
        ky, kx = skey[0], skey[1]
        shape2 = (_key_len(ky, self.ny), _key_len(kx, self.nx))
        arrays = self._resolve()
        if self.members:
            sel = _as_index(skey[2], len(self.names))
            out = np.full((nt, *shape2, sel.size), np.nan, self.dtype)
            if nt:
                for j, m in enumerate(sel):
                    a = arrays[int(m)]
                    if a is not None:
                        out[0, :, :, j] = a.read((ky, kx))
            return out
        out = np.full((nt, *shape2), np.nan, self.dtype)
        if nt and arrays[0] is not None:
            out[0] = arrays[0].read((ky, kx))
        return out

    def close(self) -> None:
        self.lazy.close()


class _MemberStack(_Piece):
    """Members stored in separate files (``<var>_memberNN``) stacked on the last axis."""

    def __init__(self, members: Sequence[_Piece | None], dtype: np.dtype) -> None:
        self.members = list(members)
        self.dtype = dtype

    def read(self, skey: tuple, tkey: Any, sshape: tuple[int, ...]) -> np.ndarray:
        sel = _as_index(skey[-1], len(self.members))
        inner = skey[:-1]
        nt = _key_len(tkey, 1 << 62)
        sizes = [_key_len(k, n) for k, n in zip(inner, sshape[:-1], strict=True)]
        out = np.full((nt, *sizes, sel.size), np.nan, self.dtype)
        for j, m in enumerate(sel):
            piece = self.members[int(m)]
            if piece is not None:
                out[..., j] = piece.read(inner, tkey, sshape[:-1])
        return out

    def close(self) -> None:
        for p in self.members:
            if p is not None:
                p.close()


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()
#: Files read concurrently by one lazy (non-dask) read touching several files.
READ_THREADS = 8


_POOL_PID = -1


def _pool() -> ThreadPoolExecutor:
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        # A pool inherited through fork has no threads in the child: make a new one.
        if _POOL is None or _POOL_PID != os.getpid():
            _POOL = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="xarray_om.openmeteo")
            _POOL_PID = os.getpid()
        return _POOL


class _SeriesArray(BackendArray):
    """A variable made of pieces along time (leading axis), read lazily.

    Piece ``k`` covers output times ``[bounds[k], bounds[k+1])`` and its own
    local indices from ``offsets[k]``; a None piece is all NaN. Indexing is
    OUTER: only pieces that the time key touches are opened and read.
    """

    def __init__(
        self,
        pieces: Sequence[_Piece | None],
        lengths: Sequence[int],
        offsets: Sequence[int],
        spatial_shape: tuple[int, ...],
        dtype: np.dtype,
    ) -> None:
        self.pieces = list(pieces)
        self.bounds = np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64))])
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.spatial_shape = tuple(int(v) for v in spatial_shape)
        self.shape = (int(self.bounds[-1]), *self.spatial_shape)
        self.dtype = np.dtype(dtype)

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.OUTER, self._getitem
        )

    def _getitem(self, key: tuple) -> np.ndarray:
        kt, *ks = key
        drop = tuple(0 if _is_int(k) else slice(None) for k in key)
        skey = tuple(
            np.array([int(k)]) if _is_int(k) else k for k in ks
        )  # keep every axis while assembling
        sizes = [_key_len(k, n) for k, n in zip(skey, self.spatial_shape, strict=True)]
        tidx = np.atleast_1d(np.arange(self.shape[0], dtype=np.int64)[kt])
        out = np.full((tidx.size, *sizes), np.nan, self.dtype)
        if tidx.size and all(sizes):
            which = np.searchsorted(self.bounds, tidx, side="right") - 1
            # Split into runs of the same piece (tidx is monotonic in practice).
            cuts = np.flatnonzero(np.diff(which)) + 1
            jobs = []
            for pos in np.split(np.arange(tidx.size), cuts):
                k = int(which[pos[0]])
                piece = self.pieces[k]
                if piece is not None:
                    local = tidx[pos] - self.bounds[k] + self.offsets[k]
                    jobs.append((slice(int(pos[0]), int(pos[-1]) + 1), piece, _compact(local)))

            def run(job: tuple) -> None:
                where, piece, local = job
                out[where] = piece.read(skey, local, self.spatial_shape)

            if len(jobs) > 1:
                # Files are independent: overlap their round trips (remote stores).
                for f in [_pool().submit(run, j) for j in jobs]:
                    f.result()
            else:
                for j in jobs:
                    run(j)
        return out[drop] if any(_is_int(k) for k in key) else out

    def close(self) -> None:
        for p in self.pieces:
            if p is not None:
                p.close()


# --------------------------------------------------------------------------- dataset assembly


@dataclass
class _VarSpec:
    name: str
    array: _SeriesArray
    attrs: dict[str, Any]
    encoding: dict[str, Any]
    has_member: bool


class _Built:
    """Everything :func:`open_openmeteo` found, handed to xarray as one "file"."""

    def __init__(
        self,
        *,
        label: str,
        token: tuple,
        time_seconds: np.ndarray,
        grid: grids.GridCoords,
        variables: list[_VarSpec],
        members: np.ndarray | None,
        attrs: dict[str, Any],
        scalar_coords: dict[str, xr.Variable],
        closers: list[Callable[[], None]],
    ) -> None:
        self.label = label
        self.token = token
        self.time_seconds = time_seconds
        self.grid = grid
        self.variables = variables
        self.members = members
        self.attrs = attrs
        self.scalar_coords = scalar_coords
        self.closers = closers

    def __dask_tokenize__(self) -> tuple:
        return ("xarray_om.open_openmeteo", *self.token)

    def dataset(self) -> xr.Dataset:
        ydim, xdim = self.grid.dims
        data_vars: dict[Hashable, xr.Variable] = {}
        coords: dict[Hashable, xr.Variable] = {}
        time_attrs = {"standard_name": "time", "long_name": "time"}
        coords[conv.TIME] = xr.Variable((conv.TIME,), _datetimes(self.time_seconds), time_attrs)
        for name, (dims, values, attrs) in self.grid.coords.items():
            coords[name] = xr.Variable(dims, values, attrs)
        mapping = self.grid.grid_mapping
        if mapping is not None:
            coords[mapping[0]] = xr.Variable((), np.int32(0), mapping[1])
        if self.members is not None:
            coords["member"] = xr.Variable(("member",), self.members, {"long_name": "member"})
        coords.update(self.scalar_coords)
        for v in self.variables:
            dims = (conv.TIME, ydim, xdim, *(("member",) if v.has_member else ()))
            attrs = dict(v.attrs)
            if mapping is not None:
                attrs["grid_mapping"] = mapping[0]
            data = indexing.LazilyIndexedArray(v.array)
            data_vars[v.name] = xr.Variable(dims, data, attrs, encoding=dict(v.encoding))
        ds = xr.Dataset(data_vars, coords=coords, attrs=self.attrs)
        ds.set_close(self.close)
        return ds

    def close(self) -> None:
        for c in self.closers:
            c()


class _BuiltEntrypoint(BackendEntrypoint):
    """Hands a prepared :class:`_Built` to xarray (chunking, caching, closing)."""

    description = "Open-Meteo bucket layouts (xarray_om.open_openmeteo)"

    def open_dataset(  # type: ignore[override]
        self, filename_or_obj: Any, *, drop_variables: Iterable[str] | None = None
    ) -> xr.Dataset:
        ds = filename_or_obj.dataset()
        if drop_variables:
            ds = ds.drop_vars(list(drop_variables), errors="ignore")
        return ds

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        return isinstance(filename_or_obj, _Built)


def _as_names(variables: str | Sequence[str] | None) -> list[str] | None:
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


def _group_members(available: Iterable[str]) -> dict[str, list[tuple[int, str]]]:
    """``{base: [(member number, stored name), ...]}`` for ``<base>_memberNN`` names.

    The plain ``<base>`` (when present next to member names) is member 0.
    """
    avail = set(available)
    groups: dict[str, list[tuple[int, str]]] = {}
    for name in avail:
        m = _MEMBER_SUFFIX.match(name)
        if m:
            groups.setdefault(m.group("base"), []).append((int(m.group("n")), name))
    for base, lst in groups.items():
        if base in avail and all(n != 0 for n, _ in lst):
            lst.append((0, base))
        lst.sort()
    return groups


def _resolve_variables(
    requested: list[str] | None, available: Sequence[str], where: str
) -> list[tuple[str, list[tuple[int, str]] | None]]:
    """``[(output name, None | [(member, stored name)])]`` for the requested names."""
    groups = _group_members(available)
    avail = set(available)
    if requested is None:
        member_names = {n for lst in groups.values() for _, n in lst}
        out: list[tuple[str, list[tuple[int, str]] | None]] = []
        for base in sorted(groups):
            out.append((base, groups[base]))
        for name in sorted(avail - member_names):
            out.append((name, None))
        return out
    out = []
    for name in requested:
        if name in groups:
            out.append((name, groups[name]))
        elif name in avail:
            out.append((name, None))
        else:
            raise FileNotFoundError(
                f"variable {name!r} not found in {where}; available: {_short(sorted(avail))}"
            )
    return out


def _short(names: list[str], limit: int = 40) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f", ... ({len(names)} in all)"


def _dtype_for(arr: OmArray) -> np.dtype:
    dt = np.dtype(arr.dtype)
    # NaN marks missing data: integer arrays are promoted to float64.
    return dt if dt.kind == "f" else np.dtype(np.float64)


def _var_attrs(node: Any) -> dict[str, Any]:
    attrs = conv.variable_attrs(node)
    for k in (conv.COORDINATES, "crs_wkt", "created_at", conv.FORECAST_REFERENCE_TIME):
        attrs.pop(k, None)
    attrs.pop(conv.TIME, None)
    return attrs


def _encoding(arr: OmArray, dims: tuple[str, ...], preferred: tuple[Any, ...]) -> dict[str, Any]:
    enc = {
        conv.ENCODING_COMPRESSION: arr.compression,
        conv.ENCODING_SCALE_FACTOR: float(arr.scale_factor),
        conv.ENCODING_ADD_OFFSET: float(arr.add_offset),
        conv.ENCODING_PREFERRED_CHUNKS: dict(zip(dims, preferred, strict=True)),
    }
    if all(isinstance(p, int) for p in preferred):
        enc[conv.ENCODING_CHUNKS] = tuple(preferred)
    return enc


def _grid_for(crs_wkt: Any, ny: int, nx: int, use_pyproj: bool | None) -> grids.GridCoords:
    g = grids.grid_coordinates(crs_wkt, ny, nx, use_pyproj=use_pyproj)
    for note in g.notes:
        warnings.warn(note, RuntimeWarning, stacklevel=4)
    return g


# --------------------------------------------------------------------------- layout: data/


@dataclass(frozen=True)
class _Span:
    """Steps ``[start, stop)`` (global step index = Unix seconds / dt) held by one file."""

    start: int
    stop: int
    path: str
    priority: int  # chunk files (rewritten every run) win over yearly merges

    @property
    def length(self) -> int:
        return self.stop - self.start


@dataclass
class _Folder:
    """The archive files of one variable (or one member folder)."""

    member: int | None
    chunks: dict[int, str]
    years: dict[int, str]


def _list_folder(store: _Store, d: str, member: int | None) -> _Folder:
    chunks: dict[int, str] = {}
    years: dict[int, str] = {}
    for fname in store.listdir(d) or []:
        m = _CHUNK_FILE.match(fname)
        if m:
            chunks[int(m.group(1))] = posixpath.join(d, fname)
            continue
        m = _YEAR_FILE.match(fname)
        if m:
            years[int(m.group(1))] = posixpath.join(d, fname)
    return _Folder(member, chunks, years)


def _year_span(year: int, dt: int) -> tuple[int, int] | None:
    """Global step range of ``year_YYYY.om`` (it starts at YYYY-01-01T00Z), None if off-grid."""
    a = _to_unix(f"{year:04d}-01-01")
    b = _to_unix(f"{year + 1:04d}-01-01")
    if a % dt or b % dt:
        return None
    return a // dt, b // dt


def _spans(folder: _Folder, ntime: int | None, dt: int) -> list[_Span]:
    out = []
    if ntime is not None:
        for n, path in folder.chunks.items():
            out.append(_Span(n * ntime, (n + 1) * ntime, path, 1))
    for y, path in folder.years.items():
        rng = _year_span(y, dt)
        if rng is not None:
            out.append(_Span(rng[0], rng[1], path, 0))
    return out


def _segments(
    per_member: list[list[_Span]], lo: int, hi: int
) -> list[tuple[int, int, tuple[_Span | None, ...]]]:
    """Split ``[lo, hi)`` into runs read from the same file per member (None: no file).

    Where files overlap, the higher priority (chunk files) wins. Adjacent
    runs from the same files are merged.
    """
    edges = {lo, hi}
    for spans in per_member:
        for sp in spans:
            if lo < sp.start < hi:
                edges.add(sp.start)
            if lo < sp.stop < hi:
                edges.add(sp.stop)
    cuts = sorted(edges)
    # Spans of one kind never overlap each other: find the covering one by bisection.
    classes = []
    for spans in per_member:
        by_prio: dict[int, list[_Span]] = {}
        for sp in spans:
            by_prio.setdefault(sp.priority, []).append(sp)
        lst = []
        for prio in sorted(by_prio, reverse=True):
            ordered = sorted(by_prio[prio], key=lambda sp: sp.start)
            lst.append((ordered, [sp.start for sp in ordered]))
        classes.append(lst)
    out: list[tuple[int, int, tuple[_Span | None, ...]]] = []
    for a, b in itertools.pairwise(cuts):
        choice: list[_Span | None] = []
        for lst in classes:
            best = None
            for ordered, starts in lst:  # highest priority first
                i = bisect.bisect_right(starts, a) - 1
                if i >= 0 and ordered[i].start <= a and b <= ordered[i].stop:
                    best = ordered[i]
                    break
            choice.append(best)
        ch = tuple(choice)
        if out and out[-1][2] == ch and out[-1][1] == a:
            out[-1] = (out[-1][0], b, ch)
        else:
            out.append((a, b, ch))
    return out


class _Window(_Piece):
    """A piece read from ``start`` on (member files whose runs start elsewhere)."""

    def __init__(self, piece: _Piece, start: int) -> None:
        self.piece = piece
        self.start = int(start)

    def read(self, skey: tuple, tkey: Any, sshape: tuple[int, ...]) -> np.ndarray:
        if isinstance(tkey, slice):
            tkey = slice(tkey.start + self.start, tkey.stop + self.start, tkey.step)
        else:
            tkey = np.asarray(tkey) + self.start
        return self.piece.read(skey, tkey, sshape)

    def close(self) -> None:
        self.piece.close()


def _build_data(
    store: _Store,
    model: str,
    requested: list[str] | None,
    t0: int | None,
    t1: int | None,
    grid: tuple[int, int] | None,
    meta_override: dict[str, Any],
    use_pyproj: bool | None,
) -> _Built:
    model_dir = store.path("data", model)
    meta_path = posixpath.join(model_dir, "static", "meta.json")
    meta = store.read_json(meta_path) or {}
    meta.update(meta_override)
    folders = store.listdir(model_dir)
    listed = folders is not None
    if folders is None:
        if not meta:
            parent = store.listdir(store.path("data")) or []
            raise FileNotFoundError(
                f"model folder {store.url(model_dir)} not found; models: {_short(parent)}"
            )
        # An unlistable store (HTTP mirror): trust the names, derive paths from meta.json.
        folders = list(requested or [])
    if requested is None:
        raise ValueError(
            "layout='data' needs variables=...; variables of "
            f"{model!r}: {_short([f for f in folders if f != 'static'])}"
        )
    dt = meta.get("temporal_resolution_seconds")
    if not isinstance(dt, (int, np.integer)) or int(dt) <= 0:
        raise ValueError(
            f"temporal_resolution_seconds missing or invalid in {store.url(meta_path)} "
            f"({dt!r}); pass meta={{'temporal_resolution_seconds': ...}}"
        )
    dt = int(dt)
    resolved = _resolve_variables(requested, [f for f in folders if f != "static"], model_dir)

    # List every folder once.
    listings: dict[str, list[_Folder]] = {}
    guessed = None if listed else _guessed_chunks(store, meta_path, meta, dt, t0, t1)
    for name, members in resolved:
        entries = members if members is not None else [(None, name)]
        if guessed is None:
            per = [_list_folder(store, posixpath.join(model_dir, f), m) for m, f in entries]
        else:
            per = [
                _Folder(m, {n: posixpath.join(model_dir, f, f"chunk_{n}.om") for n in guessed}, {})
                for m, f in entries
            ]
        if not any(f.chunks or f.years for f in per):
            raise FileNotFoundError(
                "no chunk_<N>.om or year_<YYYY>.om files in "
                f"{store.url(posixpath.join(model_dir, entries[0][1]))}"
            )
        listings[name] = per

    # Probe the newest file of each variable (v3 most likely) for the geometry.
    closers: list[Callable[[], None]] = []
    probes: dict[str, tuple[_LazyFile, OmArray, bool]] = {}
    try:
        for name, per in listings.items():
            chunk_files = [(n, p) for f in per for n, p in f.chunks.items()]
            is_chunk = bool(chunk_files)
            files = chunk_files or [(y, p) for f in per for y, p in f.years.items()]
            files.sort(key=lambda x: x[0], reverse=True)
            lazy = None
            for _, path in files[: 1 if listed else _GUESS_PROBES]:
                candidate = _LazyFile(store, path, missing_ok=not listed)
                closers.append(candidate.close)
                if candidate.get_or_none() is not None:
                    lazy = candidate
                    break
            if lazy is None:
                raise FileNotFoundError(
                    f"none of the newest {_GUESS_PROBES} chunk files of {name!r} exist "
                    f"({store.url(files[0][1])} ...)"
                )
            root = lazy.get().root
            if root.kind != "array":
                raise OmFormatError("expected an array root (data/ file)", source=lazy.name)
            probes[name] = (lazy, root, is_chunk)  # type: ignore[assignment]
        return _assemble_data(
            store,
            model,
            listings,
            probes,
            meta,
            dt,
            t0,
            t1,
            grid,
            use_pyproj,
            closers,
            missing_ok=not listed,
        )
    except BaseException:
        for c in closers:
            c()
        raise


def _assemble_data(
    store: _Store,
    model: str,
    listings: dict[str, list[_Folder]],
    probes: dict[str, tuple[_LazyFile, OmArray, bool]],
    meta: dict[str, Any],
    dt: int,
    t0: int | None,
    t1: int | None,
    grid: tuple[int, int] | None,
    use_pyproj: bool | None,
    closers: list[Callable[[], None]],
    *,
    missing_ok: bool = False,
) -> _Built:
    crs_wkt = meta.get("crs_wkt")
    # Geometry: a v3 probe gives (ny, nx[, nm]); legacy probes need (ny, nx) from elsewhere.
    ny = nx = None
    ntime = meta.get("chunk_time_length")
    for lazy, a, is_chunk in probes.values():
        if lazy.get().version != 3:
            continue
        if a.ndim not in (3, 4):
            raise OmFormatError(
                f"data/ arrays are [ny, nx, (members,) time]; found shape {a.shape}",
                source=lazy.name,
            )
        if ny is None:
            ny, nx = int(a.shape[0]), int(a.shape[1])
        if ntime is None and is_chunk:
            ntime = int(a.shape[-1])
    if ntime is None:  # only legacy chunk files: their time length is dim1
        ntime = next((int(a.shape[1]) for _, a, c in probes.values() if c), None)
    if grid is not None:
        gy, gx = (int(v) for v in grid)
        if ny is not None and (gy, gx) != (ny, nx):
            raise ValueError(f"grid={grid} disagrees with the files' grid ({ny}, {nx})")
        ny, nx = gy, gx
    if ny is None:
        a = next(iter(probes.values()))[1]
        shape = grids.infer_regular_shape(crs_wkt, int(a.shape[0]))
        if shape is None:
            raise ValueError(
                f"cannot tell the grid size of the legacy files of {model!r} ({a.shape[0]} "
                "locations): no v3 file to copy it from and crs_wkt does not fix it; "
                "pass grid=(ny, nx)"
            )
        ny, nx = shape
    ntime = None if ntime is None else int(ntime)

    # Time axis: the union of all files, cut to [start, end].
    spans = {name: [_spans(f, ntime, dt) for f in per] for name, per in listings.items()}
    every = [sp for lst in spans.values() for m in lst for sp in m]
    if not every:
        raise ValueError(f"no usable files for {sorted(listings)} of {model!r}")
    ext_lo = min(sp.start for sp in every)
    ext_hi = max(sp.stop for sp in every)
    lo = ext_lo if t0 is None else max(ext_lo, -(-t0 // dt))
    hi = ext_hi if t1 is None else min(ext_hi, t1 // dt + 1)
    if hi <= lo:
        raise ValueError(
            f"no chunk files of {model!r} between the requested start and end; files "
            f"cover {_datetimes([ext_lo * dt])[0]} .. {_datetimes([(ext_hi - 1) * dt])[0]}"
        )
    time_seconds = np.arange(lo, hi, dtype=np.int64) * dt

    gridc = _grid_for(crs_wkt, ny, nx, use_pyproj)
    ydim, xdim = gridc.dims
    variables: list[_VarSpec] = []
    members_all: np.ndarray | None = None
    for name, per in listings.items():
        lazy, probe, _ = probes[name]
        nm_file = _members_in_file(lazy, probe, ny, nx, ntime if probes[name][2] else None)
        dtype = _dtype_for(probe)
        member_folders = per[0].member is not None
        if member_folders and nm_file is not None:
            raise ValueError(
                f"{name!r}: member folders holding 4-D ensemble files are not supported"
            )
        expect = (ny, nx) if nm_file is None else (ny, nx, nm_file)
        files: dict[str, _TimeLastFile] = {}

        def piece_for(sp: _Span, expect=expect, lazy=lazy, files=files) -> _TimeLastFile:
            p = files.get(sp.path)
            if p is None:
                lz = _reuse(lazy, store, sp.path, missing_ok)
                p = files[sp.path] = _TimeLastFile(lz, expect, sp.length)
            return p

        pieces: list[_Piece | None] = []
        lengths: list[int] = []
        offsets: list[int] = []
        for a, b, choice in _segments(spans[name], lo, hi):
            lengths.append(b - a)
            if not member_folders:
                sp = choice[0]
                pieces.append(None if sp is None else piece_for(sp))
                offsets.append(0 if sp is None else a - sp.start)
                continue
            stack: list[_Piece | None] = [
                None if sp is None else _Window(piece_for(sp), a - sp.start) for sp in choice
            ]
            pieces.append(None if all(p is None for p in stack) else _MemberStack(stack, dtype))
            offsets.append(0)
        has_member = member_folders or nm_file is not None
        if member_folders:
            members = np.array([f.member for f in per], dtype=np.int64)
        elif nm_file is not None:
            members = np.arange(nm_file, dtype=np.int64)
        else:
            members = None
        if members is not None:
            if members_all is not None and not np.array_equal(members_all, members):
                raise ValueError(
                    f"{name!r} has members {members.tolist()}, another variable "
                    f"{members_all.tolist()}: open them separately"
                )
            members_all = members
        spatial = (ny, nx, len(members)) if members is not None else (ny, nx)
        array = _SeriesArray(pieces, lengths, offsets, spatial, dtype)
        closers.append(array.close)
        dims = (conv.TIME, ydim, xdim, *(("member",) if has_member else ()))
        preferred = (tuple(lengths), *_preferred_space(probe, ny, nx, lazy.get().version))
        if has_member:
            preferred = (*preferred, 1)
        variables.append(
            _VarSpec(name, array, _var_attrs(probe), _encoding(probe, dims, preferred), has_member)
        )
    attrs: dict[str, Any] = {
        "source": store.url(store.path("data", model)),
        "model": model,
        "openmeteo_layout": "data",
    }
    for k in _DATA_META_ATTRS:
        v = meta.get(k)
        if isinstance(v, (int, float, str, np.integer, np.floating)) and not isinstance(v, bool):
            attrs[k] = v
    if ntime is not None:
        attrs["chunk_time_length"] = ntime
    token = (
        store.label,
        "data",
        model,
        tuple(v.name for v in variables),
        int(lo),
        int(hi),
        tuple(sorted(sp.path for sp in every)),
    )
    return _Built(
        label=store.label,
        token=token,
        time_seconds=time_seconds,
        grid=gridc,
        variables=variables,
        members=members_all,
        attrs=attrs,
        scalar_coords={},
        closers=closers,
    )


def _members_in_file(
    lazy: _LazyFile, probe: OmArray, ny: int, nx: int, ntime: int | None
) -> int | None:
    """Members of a 4-D (or flattened legacy) probe; None for plain (y, x, time) files."""
    if lazy.get().version == 3:
        if probe.ndim not in (3, 4) or tuple(probe.shape[:2]) != (ny, nx):
            raise OmFormatError(
                f"array of shape {probe.shape}; the grid is ({ny}, {nx})", source=lazy.name
            )
        if ntime is not None and probe.shape[-1] != ntime:
            raise OmFormatError(
                f"{probe.shape[-1]} time steps per file, but chunk_time_length is {ntime}",
                source=lazy.name,
            )
        return int(probe.shape[2]) if probe.ndim == 4 else None
    nloc = int(probe.shape[0])
    if nloc % (ny * nx):
        raise OmFormatError(
            f"legacy file with {nloc} locations: not a multiple of the grid {ny} x {nx}",
            source=lazy.name,
        )
    return nloc // (ny * nx) if nloc != ny * nx else None


def _reuse(probe: _LazyFile, store: _Store, path: str, missing_ok: bool) -> _LazyFile:
    """The probe's already-open file for its own path, else a new lazy file."""
    return probe if probe.path == path else _LazyFile(store, path, missing_ok=missing_ok)


def _guessed_chunks(
    store: _Store, meta_path: str, meta: dict, dt: int, t0: int | None, t1: int | None
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


def _preferred_space(arr: OmArray, ny: int, nx: int, version: int) -> tuple[int, int]:
    """Block sizes along (y, x) that cover whole OM chunks of the file."""
    if version == 3:
        return min(int(arr.chunks[0]), ny), min(int(arr.chunks[1]), nx)
    # Legacy chunks are runs of flattened locations: whole rows keep blocks aligned.
    c0 = int(arr.chunks[0])
    rows = max(1, c0 // math.gcd(nx, c0))
    return min(rows, ny), nx


# --------------------------------------------------------------------------- layout: data_spatial/


def _resolve_run(store: _Store, base: str, run: Any, latest_name: str) -> tuple[str, dict | None]:
    """Run folder (``YYYY/MM/DD/HHMMZ``) and the latest.json content when used."""
    if isinstance(run, str) and run.strip().lower() == "latest":
        path = posixpath.join(base, latest_name)
        latest = store.read_json(path)
        if latest is None:
            raise FileNotFoundError(f"{store.url(path)} not found: pass run=<time>")
        ref = _parse_iso(latest.get("reference_time"), store.url(path))
        return _run_folder(ref), latest
    if isinstance(run, str) and _RUN_DIR.match(run.strip()):
        return run.strip(), None
    if run is None:
        raise ValueError("run= is required for this layout ('latest' or a time)")
    return _run_folder(_to_unix(run)), None


def _build_spatial(
    store: _Store,
    model: str,
    requested: list[str] | None,
    t0: int | None,
    t1: int | None,
    run: Any,
    realm: str | None,
    use_pyproj: bool | None,
) -> _Built:
    suffix = f"_{realm}" if realm else ""
    base = store.path("data_spatial", model)
    folder, latest = _resolve_run(store, base, run, f"latest{suffix}.json")
    run_dir = posixpath.join(base, folder)
    meta_path = posixpath.join(run_dir, f"meta{suffix}.json")
    meta = store.read_json(meta_path) or latest or {}
    names = store.listdir(run_dir)
    listed = names is not None
    files: dict[int, str] = {}
    if names is None:
        if not meta.get("valid_times"):
            runs = store.listdir(base) or []
            raise FileNotFoundError(f"run folder {store.url(run_dir)} not found (in {runs})")
        # Unlistable store (HTTP mirror): file names from meta.json's valid times.
        for v in meta["valid_times"]:
            vt = _parse_iso(v, store.url(meta_path))
            stamp = np.datetime64(vt, "s").astype(object)
            files[vt] = posixpath.join(run_dir, f"{stamp:%Y-%m-%dT%H%M}{suffix}.om")
    else:
        for fname in names:
            m = _SPATIAL_FILE.match(fname)
            if not m or (m.group("realm") or None) != (realm or None):
                continue
            vt = _to_unix(f"{m.group(1)}T{m.group(2)}:{m.group(3)}")
            files[vt] = posixpath.join(run_dir, fname)
    if listed and meta.get("valid_times"):
        expected = {_parse_iso(v, store.url(meta_path)) for v in meta["valid_times"]}
        missing = sorted(expected - set(files))
        if missing:
            warnings.warn(
                f"{store.url(run_dir)}: {len(missing)} valid times of meta.json have no file "
                f"yet (first {_datetimes(missing[:1])[0]}); they are left out",
                RuntimeWarning,
                stacklevel=3,
            )
    times = sorted(t for t in files if (t0 is None or t >= t0) and (t1 is None or t <= t1))
    if not times:
        raise FileNotFoundError(
            f"no data_spatial files{' for realm ' + realm if realm else ''} in "
            f"{store.url(run_dir)} within the requested time range"
        )
    closers: list[Callable[[], None]] = []
    try:
        return _assemble_spatial(
            store, model, requested, times, files, meta, run_dir, use_pyproj, closers, listed
        )
    except BaseException:
        for c in closers:
            c()
        raise


def _assemble_spatial(
    store: _Store,
    model: str,
    requested: list[str] | None,
    times: list[int],
    files: dict[int, str],
    meta: dict,
    run_dir: str,
    use_pyproj: bool | None,
    closers: list[Callable[[], None]],
    listed: bool,
) -> _Built:
    lazies = {t: _LazyFile(store, files[t], missing_ok=not listed) for t in times}
    closers.extend(lz.close for lz in lazies.values())
    # Derived names (unlisted stores) may not exist yet: the first existing file leads.
    present = [
        t for t in times[: 1 if listed else _GUESS_PROBES] if lazies[t].get_or_none() is not None
    ]
    if not present:
        raise FileNotFoundError(f"no data_spatial file of {store.url(run_dir)} exists yet")
    first = lazies[present[0]].get().root
    if first.kind != "group":
        raise OmFormatError("data_spatial files have a group root", source=lazies[present[0]].name)
    available = meta.get("variables") or [c.name for c in first.children if c.kind == "array"]
    resolved = _resolve_variables(requested, list(available), store.url(run_dir))
    stored = {n for name, mem in resolved for n in ([name] if mem is None else [s for _, s in mem])}
    # Probe files in time order until every stored array is seen (step 0 lacks sums).
    # Without an explicit request, give up after a few files and leave the rest out.
    probes: dict[str, OmArray] = {}
    for i, t in enumerate(times):
        if requested is None and i >= _SPATIAL_PROBES:
            break
        f = lazies[t].get_or_none()
        if f is None:
            continue
        root = f.root
        for c in root.children:
            if c.kind == "array" and c.name in stored and c.name not in probes:
                probes[c.name] = c  # type: ignore[assignment]
        if len(probes) == len(stored):
            break
    missing = sorted(stored - set(probes))
    if missing and requested is not None:
        raise FileNotFoundError(
            f"arrays {missing} are in no data_spatial file of {store.url(run_dir)}"
        )
    if missing:
        warnings.warn(
            f"{store.url(run_dir)}: {missing} listed in meta.json but not in the first "
            f"{_SPATIAL_PROBES} files; left out (request them by name to search every file)",
            RuntimeWarning,
            stacklevel=4,
        )
        resolved = [
            (name, mem)
            for name, mem in resolved
            if all(n in probes for n in ([name] if mem is None else [s for _, s in mem]))
        ]
        if not resolved:
            raise FileNotFoundError(f"no variable of meta.json found in {store.url(run_dir)}")
    shapes = {tuple(a.shape) for a in probes.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise OmFormatError(
            f"data_spatial arrays must share one 2-D shape, found {sorted(shapes)}",
            source=store.url(run_dir),
        )
    ny, nx = next(iter(shapes))
    root_attrs = first.attrs
    crs_wkt = meta.get("crs_wkt", root_attrs.get("crs_wkt"))
    ref = meta.get("reference_time")
    ref_s = (
        _parse_iso(ref, store.url(run_dir))
        if ref is not None
        else root_attrs.get(conv.FORECAST_REFERENCE_TIME)
    )
    gridc = _grid_for(crs_wkt, ny, nx, use_pyproj)
    ydim, xdim = gridc.dims
    variables: list[_VarSpec] = []
    members_all: np.ndarray | None = None
    for name, mem in resolved:
        stored_names = [name] if mem is None else [s for _, s in mem]
        probe = probes[stored_names[0]]
        dtype = _dtype_for(probe)
        pieces: list[_Piece | None] = [
            _SpatialFile(lazies[t], stored_names, ny, nx, t, mem is not None, dtype) for t in times
        ]
        if mem is not None:
            members = np.array([n for n, _ in mem], dtype=np.int64)
            if members_all is not None and not np.array_equal(members_all, members):
                raise ValueError(
                    f"{name!r} has members {members.tolist()}, another variable "
                    f"{members_all.tolist()}: open them separately"
                )
            members_all = members
        spatial = (ny, nx) if mem is None else (ny, nx, len(mem))
        array = _SeriesArray(pieces, [1] * len(times), [0] * len(times), spatial, dtype)
        dims = (conv.TIME, ydim, xdim, *(("member",) if mem is not None else ()))
        preferred: tuple[Any, ...] = (
            1,
            *(min(int(c), s) for c, s in zip(probe.chunks, (ny, nx), strict=True)),
        )
        if mem is not None:
            preferred = (*preferred, 1)
        variables.append(
            _VarSpec(
                name, array, _var_attrs(probe), _encoding(probe, dims, preferred), mem is not None
            )
        )
    scalar: dict[str, xr.Variable] = {}
    if ref_s is not None:
        scalar[conv.FORECAST_REFERENCE_TIME] = xr.Variable(
            (), _datetimes([int(ref_s)])[0], {"standard_name": "forecast_reference_time"}
        )
    attrs = {
        "source": store.url(run_dir),
        "model": model,
        "openmeteo_layout": "spatial",
    }
    if isinstance(meta.get("completed"), bool):
        attrs["completed"] = int(meta["completed"])
    token = (
        store.label,
        "spatial",
        model,
        tuple(v.name for v in variables),
        tuple(files[t] for t in times),
    )
    return _Built(
        label=store.label,
        token=token,
        time_seconds=np.asarray(times, dtype=np.int64),
        grid=gridc,
        variables=variables,
        members=members_all,
        attrs=attrs,
        scalar_coords=scalar,
        closers=closers,
    )


# --------------------------------------------------------------------------- layout: data_run/


def _build_run(
    store: _Store,
    model: str,
    requested: list[str] | None,
    t0: int | None,
    t1: int | None,
    run: Any,
    use_pyproj: bool | None,
) -> _Built:
    base = store.path("data_run", model)
    folder, latest = _resolve_run(store, base, run, "latest.json")
    run_dir = posixpath.join(base, folder)
    meta = store.read_json(posixpath.join(run_dir, "meta.json")) or latest or {}
    names = store.listdir(run_dir)
    if names is not None:
        on_disk = [n[:-3] for n in names if n.endswith(".om")]
    elif meta.get("variables"):  # unlistable store: the variables of meta.json
        on_disk = [str(v) for v in meta["variables"]]
    else:
        raise FileNotFoundError(f"run folder {store.url(run_dir)} not found")
    resolved = _resolve_variables(requested, on_disk, store.url(run_dir))
    closers: list[Callable[[], None]] = []
    try:
        return _assemble_run(store, model, resolved, t0, t1, meta, run_dir, use_pyproj, closers)
    except BaseException:
        for c in closers:
            c()
        raise


def _run_file_info(lazy: _LazyFile) -> tuple[OmArray, tuple[str, ...], np.ndarray]:
    f = lazy.get()
    root = f.root
    if root.kind != "array":
        raise OmFormatError("data_run files have an array root", source=lazy.name)
    dims, _ = conv.dimension_names(root, layout=conv.Layout.RUN)
    time_node = next((c for c in root.children if c.kind == "array" and c.name == conv.TIME), None)
    if time_node is None or time_node.ndim != 1:
        raise OmFormatError("no 1-D 'time' array below the root array", source=lazy.name)
    if dims[-1] != conv.TIME or root.shape[-1] != time_node.shape[0]:
        raise OmFormatError(
            f"dimensions {dims} of shape {root.shape} do not end with time "
            f"({time_node.shape[0]} values)",
            source=lazy.name,
        )
    return root, dims, np.asarray(time_node.read(...), dtype=np.int64)  # type: ignore[return-value]


def _assemble_run(
    store: _Store,
    model: str,
    resolved: list[tuple[str, list[tuple[int, str]] | None]],
    t0: int | None,
    t1: int | None,
    meta: dict,
    run_dir: str,
    use_pyproj: bool | None,
    closers: list[Callable[[], None]],
) -> _Built:
    time_all: np.ndarray | None = None
    geometry: tuple[int, int] | None = None
    crs_wkt = meta.get("crs_wkt")
    ref_s: int | None = None
    if meta.get("reference_time") is not None:
        ref_s = _parse_iso(meta["reference_time"], store.url(run_dir))
    infos: list[tuple[str, list[tuple[int | None, _LazyFile, OmArray]]]] = []
    for name, mem in resolved:
        entries = mem if mem is not None else [(None, name)]
        opened = []
        for number, stored in entries:
            lazy = _LazyFile(store, posixpath.join(run_dir, stored + ".om"))
            closers.append(lazy.close)
            root, dims, times = _run_file_info(lazy)
            if time_all is None:
                time_all = times
            elif not np.array_equal(time_all, times):
                raise OmFormatError(
                    "its time array differs from the other variables of the run",
                    source=lazy.name,
                )
            if geometry is None:
                geometry = (int(root.shape[0]), int(root.shape[1]))
            elif (int(root.shape[0]), int(root.shape[1])) != geometry:
                raise OmFormatError(
                    f"grid {tuple(root.shape[:2])} differs from {geometry}", source=lazy.name
                )
            attrs = root.attrs
            crs_wkt = crs_wkt if crs_wkt is not None else attrs.get("crs_wkt")
            if ref_s is None and attrs.get(conv.FORECAST_REFERENCE_TIME) is not None:
                ref_s = int(attrs[conv.FORECAST_REFERENCE_TIME])
            opened.append((number, lazy, root))
        infos.append((name, opened))
    assert time_all is not None and geometry is not None
    keep = np.ones(time_all.size, dtype=bool)
    if t0 is not None:
        keep &= time_all >= t0
    if t1 is not None:
        keep &= time_all <= t1
    sel = np.flatnonzero(keep)
    if sel.size == 0:
        raise ValueError(f"no time step of the run {store.url(run_dir)} in the requested range")
    if sel.size != sel[-1] - sel[0] + 1:
        raise ValueError("the run's time axis is not sorted")
    lo, n = int(sel[0]), int(sel.size)
    ny, nx = geometry
    gridc = _grid_for(crs_wkt, ny, nx, use_pyproj)
    ydim, xdim = gridc.dims
    ntime = int(time_all.size)
    variables: list[_VarSpec] = []
    members_all: np.ndarray | None = None
    for name, opened in infos:
        probe = opened[0][2]
        dtype = _dtype_for(probe)
        if len(opened) > 1 or opened[0][0] is not None:  # member files
            if any(a.ndim != 3 for _, _, a in opened):
                raise ValueError(f"{name!r}: member files must be 3-D [lat, lon, time]")
            members = np.array([m for m, _, _ in opened], dtype=np.int64)
            piece: _Piece = _MemberStack(
                [_TimeLastFile(lz, (ny, nx), ntime) for _, lz, _ in opened], dtype
            )
        else:
            a = probe
            members = np.arange(a.shape[2], dtype=np.int64) if a.ndim == 4 else None
            piece = _TimeLastFile(opened[0][1], tuple(a.shape[:-1]), ntime)
        if members is not None:
            if members_all is not None and not np.array_equal(members_all, members):
                raise ValueError(
                    f"{name!r} has members {members.tolist()}, another variable "
                    f"{members_all.tolist()}: open them separately"
                )
            members_all = members
        has_member = members is not None
        spatial = (ny, nx, len(members)) if members is not None else (ny, nx)
        array = _SeriesArray([piece], [n], [lo], spatial, dtype)
        dims = (conv.TIME, ydim, xdim, *(("member",) if has_member else ()))
        ch = probe.chunks
        preferred: tuple[Any, ...] = (n, min(int(ch[0]), ny), min(int(ch[1]), nx))
        if has_member:
            preferred = (*preferred, 1 if probe.ndim == 3 else min(int(ch[2]), len(members)))
        variables.append(
            _VarSpec(name, array, _var_attrs(probe), _encoding(probe, dims, preferred), has_member)
        )
    scalar: dict[str, xr.Variable] = {}
    if ref_s is not None:
        scalar[conv.FORECAST_REFERENCE_TIME] = xr.Variable(
            (), _datetimes([ref_s])[0], {"standard_name": "forecast_reference_time"}
        )
    attrs: dict[str, Any] = {
        "source": store.url(run_dir),
        "model": model,
        "openmeteo_layout": "run",
    }
    if isinstance(meta.get("temporal_resolution_seconds"), int):
        attrs["temporal_resolution_seconds"] = meta["temporal_resolution_seconds"]
    token = (store.label, "run", model, tuple(v.name for v in variables), lo, n)
    return _Built(
        label=store.label,
        token=token,
        time_seconds=time_all[lo : lo + n],
        grid=gridc,
        variables=variables,
        members=members_all,
        attrs=attrs,
        scalar_coords=scalar,
        closers=closers,
    )
