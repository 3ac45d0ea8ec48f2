"""``layout="spatial"``: ``data_spatial/<model>/<run>/<valid time>[_<realm>].om``.

One file per valid time holds every variable as a 2-D array; the files are
concatenated along ``time``. The first files are opened at open time to find
the arrays (step 0 lacks sums), the others on first read.
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
from .messages import warn
from .pieces import SpatialFile
from .request import Request
from .series import SeriesArray
from .store import LazyFile, OpenFiles, Store
from .times import datetimes
from .variables import Resolved, resolve_variables, stored_names

#: Files opened at most to find the arrays of variables=None.
_SPATIAL_PROBES = 3


def build(files: OpenFiles, req: Request, run: Any, realm: str | None) -> Built:
    store, model = files.store, req.model
    suffix = paths.realm_suffix(realm)
    base = store.path("data_spatial", model)
    folder, latest = paths.resolve_run(store, base, run, f"latest{suffix}.json")
    run_dir = posixpath.join(base, folder)
    where = store.url(run_dir)
    meta_path = posixpath.join(run_dir, f"meta{suffix}.json")
    info = meta.run_meta(store, meta_path, latest)
    by_time, listed = _valid_time_files(store, base, run_dir, realm, info, meta_path)
    found = np.array(sorted(by_time), dtype=np.int64)
    times = found[req.in_range(found)].tolist()
    if not times:
        raise FileNotFoundError(
            f"no data_spatial files{' for realm ' + realm if realm else ''} in "
            f"{where} within the requested time range"
        )
    lazies = [files.get(by_time[t], missing_ok=not listed) for t in times]
    lead = files.probe([by_time[t] for t in times], listed=listed)
    if lead is None:
        raise FileNotFoundError(f"no data_spatial file of {where} exists yet")
    first = lead.get().root
    if first.kind != "group":
        raise OmFormatError("data_spatial files have a group root", source=lead.name)
    available = info.get("variables") or [c.name for c in first.children if c.kind == "array"]
    resolved = resolve_variables(req.variables, list(available), where)
    probes, resolved = _probe_arrays(lazies, resolved, where, search_all=req.variables is not None)
    shapes = {tuple(a.shape) for a in probes.values()}
    if len(shapes) != 1 or len(next(iter(shapes))) != 2:
        raise OmFormatError(
            f"data_spatial arrays must share one 2-D shape, found {sorted(shapes)}", source=where
        )
    ny, nx = next(iter(shapes))
    reference = meta.reference_time(info, where)
    if reference is None:
        reference = first.attrs.get(conv.FORECAST_REFERENCE_TIME)
    crs_wkt = info.get("crs_wkt", first.attrs.get("crs_wkt"))
    variables = Variables(grid_for(crs_wkt, ny, nx, req.use_pyproj))
    for name, mem in resolved:
        names = [n for _, n in stored_names(name, mem)]
        probe = probes[names[0]]
        dtype = dtype_for(probe)
        pieces = [
            SpatialFile(lz, names, ny, nx, t, mem is not None, dtype)
            for lz, t in zip(lazies, times, strict=True)
        ]
        members = None if mem is None else np.array([n for n, _ in mem], dtype=np.int64)
        spatial = (ny, nx) if members is None else (ny, nx, len(members))
        array = SeriesArray(pieces, [1] * len(times), [0] * len(times), spatial, dtype)
        preferred = (1, *space_chunks(probe, ny, nx), *((1,) if members is not None else ()))
        variables.add(name, array, probe, members, preferred)
    attrs = {}
    if isinstance(info.get("completed"), bool):
        attrs["completed"] = int(info["completed"])
    return Built(
        files=files,
        layout="spatial",
        model=model,
        source=where,
        time_seconds=np.asarray(times, dtype=np.int64),
        variables=variables,
        key=(tuple(by_time[t] for t in times),),
        attrs=attrs,
        reference_time=None if reference is None else int(reference),
    )


def _valid_time_files(
    store: Store, base: str, run_dir: str, realm: str | None, info: dict, meta_path: str
) -> tuple[dict[int, str], bool]:
    """``{valid time: path}`` of a run and whether the folder was listed.

    Unlistable stores (HTTP mirrors) get the names of meta.json's valid
    times; a listed folder may lack the newest of them (run in progress).
    """
    expected = meta.valid_times(info, store.url(meta_path))
    names = store.listdir(run_dir)
    if names is None:
        if not expected:
            runs = store.listdir(base) or []
            raise FileNotFoundError(f"run folder {store.url(run_dir)} not found (in {runs})")
        return {
            vt: posixpath.join(run_dir, paths.spatial_name(vt, realm)) for vt in expected
        }, False
    found = {
        vt: posixpath.join(run_dir, fname)
        for vt, fname in paths.spatial_valid_times(names, realm).items()
    }
    missing = sorted(set(expected) - set(found))
    if missing:
        warn(
            f"{store.url(run_dir)}: {len(missing)} valid times of meta.json have no file "
            f"yet (first {datetimes(missing[:1])[0]}); they are left out"
        )
    return found, True


def _probe_arrays(
    lazies: list[LazyFile], resolved: Resolved, where: str, *, search_all: bool
) -> tuple[dict[str, OmArray], Resolved]:
    """One array per stored name, from the files in time order (step 0 lacks sums).

    Without ``search_all`` (variables=None) only the first few files are
    searched and variables not found there are left out with a warning.
    """
    stored = {n for name, mem in resolved for _, n in stored_names(name, mem)}
    probes: dict[str, OmArray] = {}
    for i, lazy in enumerate(lazies):
        if not search_all and i >= _SPATIAL_PROBES:
            break
        f = lazy.get_or_none()
        if f is None:
            continue
        for c in f.root.children:
            if c.kind == "array" and c.name in stored and c.name not in probes:
                probes[c.name] = c  # type: ignore[assignment]
        if len(probes) == len(stored):
            break
    missing = sorted(stored - set(probes))
    if not missing:
        return probes, resolved
    if search_all:
        raise FileNotFoundError(f"arrays {missing} are in no data_spatial file of {where}")
    warn(
        f"{where}: {missing} listed in meta.json but not in the first "
        f"{_SPATIAL_PROBES} files; left out (request them by name to search every file)"
    )
    kept = [
        (name, mem)
        for name, mem in resolved
        if all(n in probes for _, n in stored_names(name, mem))
    ]
    if not kept:
        raise FileNotFoundError(f"no variable of meta.json found in {where}")
    return probes, kept
