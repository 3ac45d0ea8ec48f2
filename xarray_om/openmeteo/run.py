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
from .series import SeriesArray
from .store import LazyFile, OpenFiles
from .variables import resolve_variables, stored_names


def build(
    files: OpenFiles,
    model: str,
    requested: list[str] | None,
    t0: int | None,
    t1: int | None,
    run: Any,
    use_pyproj: bool | None,
) -> Built:
    store = files.store
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
    resolved = resolve_variables(requested, on_disk, where)

    # Open every file: they must share the time axis and the grid.
    time_all: np.ndarray | None = None
    geometry: tuple[int, int] | None = None
    crs_wkt = info.get("crs_wkt")
    reference = meta.reference_time(info, where)
    opened: list[tuple[str, bool, list[tuple[int | None, LazyFile, OmArray]]]] = []
    for name, mem in resolved:
        entries = []
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
            attrs = root.attrs
            if crs_wkt is None:
                crs_wkt = attrs.get("crs_wkt")
            if reference is None and attrs.get(conv.FORECAST_REFERENCE_TIME) is not None:
                reference = int(attrs[conv.FORECAST_REFERENCE_TIME])
            entries.append((number, lazy, root))
        opened.append((name, mem is not None, entries))
    assert time_all is not None and geometry is not None

    keep = np.ones(time_all.size, dtype=bool)
    if t0 is not None:
        keep &= time_all >= t0
    if t1 is not None:
        keep &= time_all <= t1
    sel = np.flatnonzero(keep)
    if sel.size == 0:
        raise ValueError(f"no time step of the run {where} in the requested range")
    if sel.size != sel[-1] - sel[0] + 1:
        raise ValueError("the run's time axis is not sorted")
    lo, n = int(sel[0]), int(sel.size)
    ny, nx = geometry
    ntime = int(time_all.size)
    variables = Variables(grid_for(crs_wkt, ny, nx, use_pyproj))
    for name, member_files, entries in opened:
        probe = entries[0][2]
        dtype = dtype_for(probe)
        piece: Piece
        if member_files:
            if any(a.ndim != 3 for _, _, a in entries):
                raise ValueError(f"{name!r}: member files must be 3-D [lat, lon, time]")
            members = np.array([m for m, _, _ in entries], dtype=np.int64)
            piece = MemberStack([TimeLastFile(lz, (ny, nx), ntime) for _, lz, _ in entries], dtype)
        else:
            members = np.arange(probe.shape[2], dtype=np.int64) if probe.ndim == 4 else None
            piece = TimeLastFile(entries[0][1], tuple(probe.shape[:-1]), ntime)
        spatial = (ny, nx) if members is None else (ny, nx, len(members))
        array = SeriesArray([piece], [n], [lo], spatial, dtype)
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
        reference_time=reference,
    )


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
