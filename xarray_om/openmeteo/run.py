"""``layout="run"``: ``data_run/<model>/<run>/<variable>.om``.

One file per variable holds the whole run ``[ny, nx, (members,) time]``
with its own (possibly irregular) ``time`` array; every file of the run is
opened at open time to check that they agree.
"""

from __future__ import annotations

import posixpath
from typing import Any

import numpy as np

from .. import conventions as conv
from ..errors import OmFormatError
from ..format.reader import OmArray
from . import meta, paths
from .dataset import Built, Variables, dtype_for, grid_for, space_chunks
from .pieces import MemberStack, Piece, TimeLastFile
from .request import Request
from .series import SeriesArray
from .store import LazyFile, OpenFiles
from .variables import Resolved, resolve_variables, stored_names


def build(files: OpenFiles, req: Request, run: Any) -> Built:
    store, model = files.store, req.model
    base = store.path("data_run", model)
    folder, latest = paths.resolve_run(store, base, run, "latest.json")
    run_dir = posixpath.join(base, folder)
    where = store.url(run_dir)
    info = meta.run_meta(store, posixpath.join(run_dir, "meta.json"), latest)
    names = store.listdir(run_dir)
    if names is not None:
        on_disk = [n[:-3] for n in names if n.endswith(".om")]
    elif info.get("variables"):  # unlistable store: the variables of meta.json
        on_disk = [str(v) for v in info["variables"]]
    else:
        raise FileNotFoundError(f"run folder {where} not found")
    resolved = resolve_variables(req.variables, on_disk, where)

    opened, time_all, (ny, nx) = _open_files(files, run_dir, resolved)
    roots = [root for _, _, entries in opened for _, _, root in entries]
    crs_wkt = info.get("crs_wkt")
    if crs_wkt is None:
        crs_wkt = _first_attr(roots, "crs_wkt")
    reference = meta.reference_time(info, where)
    if reference is None:
        reference = _first_attr(roots, conv.FORECAST_REFERENCE_TIME)

    sel = np.flatnonzero(req.in_range(time_all))
    if sel.size == 0:
        raise ValueError(f"no time step of the run {where} in the requested range")
    if sel.size != sel[-1] - sel[0] + 1:
        raise ValueError("the run's time axis is not sorted")
    lo, n = int(sel[0]), int(sel.size)
    variables = Variables(grid_for(crs_wkt, ny, nx, req.use_pyproj))
    for name, member_files, entries in opened:
        array, members = _series(name, member_files, entries, (ny, nx), int(time_all.size), lo, n)
        probe = entries[0][2]
        preferred: tuple[int, ...] = (n, *space_chunks(probe, ny, nx))
        if members is not None:
            # One file per member: one member per chunk; 4-D files: their member chunks.
            nm = 1 if member_files else min(int(probe.chunks[2]), len(members))
            preferred = (*preferred, nm)
        variables.add(name, array, probe, members, preferred)
    attrs = {}
    if isinstance(info.get("temporal_resolution_seconds"), int):
        attrs["temporal_resolution_seconds"] = info["temporal_resolution_seconds"]
    return Built(
        files=files,
        layout="run",
        model=model,
        source=where,
        time_seconds=time_all[lo : lo + n],
        variables=variables,
        key=(lo, n),
        attrs=attrs,
        reference_time=None if reference is None else int(reference),
    )


#: ``(member number or None, lazy file, root array)`` of each file of a variable.
_Entries = list[tuple[int | None, LazyFile, OmArray]]


def _open_files(
    files: OpenFiles, run_dir: str, resolved: Resolved
) -> tuple[list[tuple[str, bool, _Entries]], np.ndarray, tuple[int, int]]:
    """Open every file of the run: they must share the time axis and the grid.

    Returns ``[(name, member files?, entries)]``, the time axis and (ny, nx).
    """
    time_all: np.ndarray | None = None
    geometry: tuple[int, int] | None = None
    opened = []
    for name, mem in resolved:
        entries: _Entries = []
        for number, stored in stored_names(name, mem):
            lazy = files.get(posixpath.join(run_dir, stored + ".om"))
            root, times = _run_file(lazy)
            if time_all is None:
                time_all = times
            elif not np.array_equal(time_all, times):
                raise OmFormatError(
                    "its time array differs from the other variables of the run",
                    source=lazy.name,
                )
            yx = (int(root.shape[0]), int(root.shape[1]))
            if geometry is None:
                geometry = yx
            elif yx != geometry:
                raise OmFormatError(f"grid {yx} differs from {geometry}", source=lazy.name)
            entries.append((number, lazy, root))
        opened.append((name, mem is not None, entries))
    assert time_all is not None and geometry is not None  # resolve_variables returns some
    return opened, time_all, geometry


def _first_attr(roots: list[OmArray], key: str) -> Any:
    """``key`` of the first root array that has it (None: none has)."""
    return next((r.attrs[key] for r in roots if r.attrs.get(key) is not None), None)


def _series(
    name: str,
    member_files: bool,
    entries: _Entries,
    grid: tuple[int, int],
    ntime: int,
    lo: int,
    n: int,
) -> tuple[SeriesArray, np.ndarray | None]:
    """The array of a variable (steps ``[lo, lo + n)`` of ``ntime``) and its members."""
    probe = entries[0][2]
    dtype = dtype_for(probe)
    piece: Piece
    if member_files:
        if any(a.ndim != 3 for _, _, a in entries):
            raise ValueError(f"{name!r}: member files must be 3-D [lat, lon, time]")
        members = np.array([m for m, _, _ in entries], dtype=np.int64)
        piece = MemberStack([TimeLastFile(lz, grid, ntime) for _, lz, _ in entries], dtype)
    else:
        members = np.arange(probe.shape[2], dtype=np.int64) if probe.ndim == 4 else None
        piece = TimeLastFile(entries[0][1], tuple(probe.shape[:-1]), ntime)
    spatial = grid if members is None else (*grid, len(members))
    return SeriesArray([piece], [n], [lo], spatial, dtype), members


def _run_file(lazy: LazyFile) -> tuple[OmArray, np.ndarray]:
    """The root array of a data_run file and its ``time`` values (Unix seconds)."""
    root = lazy.get().root
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
    return root, np.asarray(time_node.read(...), dtype=np.int64)  # type: ignore[return-value]
