"""``layout="data"``: ``data/<model>/<variable>/chunk_<N>.om`` and ``year_<YYYY>.om``.

Every variable is a series of files along time (:mod:`.timeline`); one probe
file per variable (the newest, v3 most likely) gives the geometry, the
others are opened on first read. Legacy files are reshaped with the grid of
a v3 file, ``grid=`` or the ``crs_wkt`` BBOX (:mod:`.legacy`).
"""

from __future__ import annotations

import posixpath
from typing import Any, NamedTuple

import numpy as np

from ..errors import OmFormatError
from ..format.reader import OmArray
from . import legacy, meta, paths, timeline
from .dataset import Built, Variables, dtype_for, grid_for, space_chunks
from .messages import short
from .pieces import MemberStack, Piece, TimeLastFile, Window
from .request import Request
from .series import SeriesArray
from .store import GUESS_PROBES, LazyFile, OpenFiles, Store
from .times import datetimes
from .variables import Members, resolve_variables, stored_names


class _Probe(NamedTuple):
    """The file of a variable read at open time for its geometry and encoding."""

    lazy: LazyFile
    array: OmArray
    is_chunk: bool  # a chunk_<N>.om file (its time length is chunk_time_length)

    @property
    def version(self) -> int:
        return self.lazy.get().version


def build(
    files: OpenFiles,
    req: Request,
    grid: tuple[int, int] | None,
    meta_override: dict[str, Any],
) -> Built:
    store, model = files.store, req.model
    model_dir = store.path("data", model)
    info, meta_path = meta.data_meta(store, model_dir, meta_override)
    folders = store.listdir(model_dir)
    listed = folders is not None
    if folders is None:
        if not info:
            parent = store.listdir(store.path("data")) or []
            raise FileNotFoundError(
                f"model folder {store.url(model_dir)} not found; models: {short(parent)}"
            )
        # An unlistable store (HTTP mirror): trust the names, derive paths from meta.json.
        folders = list(req.variables or [])
    if req.variables is None:
        raise ValueError(
            "layout='data' needs variables=...; variables of "
            f"{model!r}: {short([f for f in folders if f != 'static'])}"
        )
    dt = meta.time_resolution(info, store.url(meta_path))
    resolved = resolve_variables(req.variables, [f for f in folders if f != "static"], model_dir)

    guessed = None if listed else paths.guessed_chunks(store, meta_path, info, dt, req.t0, req.t1)
    listings = {name: _folders(store, model_dir, name, mem, guessed) for name, mem in resolved}
    probes = {name: _probe(files, name, per, listed) for name, per in listings.items()}
    ny, nx, ntime = _geometry(probes, info, grid, model)

    spans = {n: [timeline.spans(f, ntime, dt) for f in per] for n, per in listings.items()}
    every = [sp for lst in spans.values() for m in lst for sp in m]
    lo, hi = _steps(every, req, dt, sorted(listings))
    variables = Variables(grid_for(info.get("crs_wkt"), ny, nx, req.use_pyproj))
    for name, per in listings.items():
        probe = probes[name]
        array, members, preferred = _series(
            files, name, per, probe, spans[name], (lo, hi), (ny, nx), ntime, missing_ok=not listed
        )
        variables.add(name, array, probe.array, members, preferred)
    attrs = meta.data_attrs(info)
    if ntime is not None:
        attrs["chunk_time_length"] = ntime
    return Built(
        files=files,
        layout="data",
        model=model,
        source=store.url(model_dir),
        time_seconds=np.arange(lo, hi, dtype=np.int64) * dt,
        variables=variables,
        key=(int(lo), int(hi), tuple(sorted(sp.path for sp in every))),
        attrs=attrs,
    )


def _folders(
    store: Store, model_dir: str, name: str, members: Members | None, guessed: list[int] | None
) -> list[paths.Folder]:
    """The folders of one variable (one per member folder), listed or ``guessed`` chunks."""
    dirs = [(m, posixpath.join(model_dir, f)) for m, f in stored_names(name, members)]
    if guessed is None:
        per = [paths.list_folder(store, d, m) for m, d in dirs]
    else:
        per = [paths.derived_folder(d, m, guessed) for m, d in dirs]
    if not any(f.chunks or f.years for f in per):
        raise FileNotFoundError(
            f"no chunk_<N>.om or year_<YYYY>.om files in {store.url(dirs[0][1])}"
        )
    return per


def _steps(every: list[timeline.Span], req: Request, dt: int, names: list[str]) -> tuple[int, int]:
    """The time axis ``[lo, hi)`` in steps: the union of all files, cut to [start, end]."""
    model, t0, t1 = req.model, req.t0, req.t1
    if not every:
        raise ValueError(f"no usable files for {names} of {model!r}")
    ext_lo = min(sp.start for sp in every)
    ext_hi = max(sp.stop for sp in every)
    lo = ext_lo if t0 is None else max(ext_lo, -(-t0 // dt))  # first step at or after t0
    hi = ext_hi if t1 is None else min(ext_hi, t1 // dt + 1)
    if hi <= lo:
        raise ValueError(
            f"no chunk files of {model!r} between the requested start and end; files "
            f"cover {datetimes([ext_lo * dt])[0]} .. {datetimes([(ext_hi - 1) * dt])[0]}"
        )
    return lo, hi


def _probe(files: OpenFiles, name: str, per: list[paths.Folder], listed: bool) -> _Probe:
    """Open the newest file of a variable (chunk files first: v3 most likely)."""
    chunk_files = [(n, p) for f in per for n, p in f.chunks.items()]
    found = chunk_files or [(y, p) for f in per for y, p in f.years.items()]
    found.sort(key=lambda x: x[0], reverse=True)
    lazy = files.probe([p for _, p in found], listed=listed)
    if lazy is None:
        raise FileNotFoundError(
            f"none of the newest {GUESS_PROBES} chunk files of {name!r} exist "
            f"({files.store.url(found[0][1])} ...)"
        )
    root = lazy.get().root
    if root.kind != "array":
        raise OmFormatError("expected an array root (data/ file)", source=lazy.name)
    return _Probe(lazy, root, bool(chunk_files))  # type: ignore[arg-type]


def _geometry(
    probes: dict[str, _Probe], info: dict, grid: tuple[int, int] | None, model: str
) -> tuple[int, int, int | None]:
    """``(ny, nx, chunk_time_length)``: from v3 probes, ``grid=``, meta.json or legacy files."""
    ny = nx = None
    ntime = info.get("chunk_time_length")
    for p in probes.values():
        if legacy.is_legacy(p.lazy.get()):
            continue
        a = p.array
        if a.ndim not in (3, 4):
            raise OmFormatError(
                f"data/ arrays are [ny, nx, (members,) time]; found shape {a.shape}",
                source=p.lazy.name,
            )
        if ny is None:
            ny, nx = int(a.shape[0]), int(a.shape[1])
        if ntime is None and p.is_chunk:
            ntime = int(a.shape[-1])
    if ntime is None:  # only legacy chunk files: their time length is dim 1
        ntime = next((int(p.array.shape[1]) for p in probes.values() if p.is_chunk), None)
    if grid is not None:
        gy, gx = (int(v) for v in grid)
        if ny is not None and (gy, gx) != (ny, nx):
            raise ValueError(f"grid={grid} disagrees with the files' grid ({ny}, {nx})")
        ny, nx = gy, gx
    if ny is None or nx is None:
        nloc = int(next(iter(probes.values())).array.shape[0])
        ny, nx = legacy.grid_shape(info.get("crs_wkt"), nloc, model)
    return ny, nx, None if ntime is None else int(ntime)


def _series(
    files: OpenFiles,
    name: str,
    per: list[paths.Folder],
    probe: _Probe,
    spans: list[list[timeline.Span]],
    steps: tuple[int, int],
    grid: tuple[int, int],
    ntime: int | None,
    *,
    missing_ok: bool,
) -> tuple[SeriesArray, np.ndarray | None, tuple[Any, ...]]:
    """``(array, members, preferred chunks)`` of variable ``name`` over ``steps`` [lo, hi)."""
    ny, nx = grid
    nm_file = _members_in_file(probe, ny, nx, ntime if probe.is_chunk else None)
    dtype = dtype_for(probe.array)
    member_folders = per[0].member is not None
    if member_folders and nm_file is not None:
        raise ValueError(f"{name!r}: member folders holding 4-D ensemble files are not supported")
    expect = grid if nm_file is None else (ny, nx, nm_file)
    by_path: dict[str, TimeLastFile] = {}

    def piece_for(sp: timeline.Span) -> TimeLastFile:
        p = by_path.get(sp.path)
        if p is None:
            lazy = files.get(sp.path, missing_ok=missing_ok)
            p = by_path[sp.path] = TimeLastFile(lazy, expect, sp.length)
        return p

    pieces: list[Piece | None] = []
    lengths: list[int] = []
    offsets: list[int] = []
    for a, b, choice in timeline.segments(spans, *steps):
        lengths.append(b - a)
        if not member_folders:
            sp = choice[0]
            pieces.append(None if sp is None else piece_for(sp))
            offsets.append(0 if sp is None else a - sp.start)
            continue
        # Member folders may switch files at different steps: each member reads its window.
        stack: list[Piece | None] = [
            None if sp is None else Window(piece_for(sp), a - sp.start) for sp in choice
        ]
        pieces.append(None if all(p is None for p in stack) else MemberStack(stack, dtype))
        offsets.append(0)
    if member_folders:
        members = np.array([f.member for f in per], dtype=np.int64)
    elif nm_file is not None:
        members = np.arange(nm_file, dtype=np.int64)
    else:
        members = None
    spatial = grid if members is None else (ny, nx, len(members))
    array = SeriesArray(pieces, lengths, offsets, spatial, dtype)
    if legacy.is_legacy(probe.lazy.get()):
        space = legacy.preferred_space(probe.array, ny, nx)
    else:
        space = space_chunks(probe.array, ny, nx)
    preferred = (tuple(lengths), *space, *((1,) if members is not None else ()))
    return array, members, preferred


def _members_in_file(probe: _Probe, ny: int, nx: int, ntime: int | None) -> int | None:
    """Members of a 4-D (or flattened legacy) probe; None for plain (y, x, time) files."""
    arr, source = probe.array, probe.lazy.name
    if legacy.is_legacy(probe.lazy.get()):
        return legacy.members(int(arr.shape[0]), ny, nx, source)
    if arr.ndim not in (3, 4) or tuple(arr.shape[:2]) != (ny, nx):
        raise OmFormatError(f"array of shape {arr.shape}; the grid is ({ny}, {nx})", source=source)
    if ntime is not None and arr.shape[-1] != ntime:
        raise OmFormatError(
            f"{arr.shape[-1]} time steps per file, but chunk_time_length is {ntime}",
            source=source,
        )
    return int(arr.shape[2]) if arr.ndim == 4 else None
