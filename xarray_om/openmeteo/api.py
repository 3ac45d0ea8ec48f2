"""The public entry point: arguments checked, the layout's builder called, xarray opens."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import xarray as xr

from . import data, spatial
from . import run as run_layout
from .dataset import BuiltEntrypoint
from .request import Request
from .store import OpenFiles, Store

#: Layouts :func:`open_openmeteo` understands (``layout=``).
LAYOUTS = ("data", "spatial", "run")


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
    store = Store.create(root, storage_options, filesystem)
    req = Request.create(model, variables, start, end, use_pyproj)
    files = OpenFiles(store)
    try:
        if layout == "data":
            built = data.build(files, req, grid, dict(meta or {}))
        elif layout == "spatial":
            built = spatial.build(files, req, run, realm)
        else:
            built = run_layout.build(files, req, run)
        return xr.open_dataset(built, engine=BuiltEntrypoint, chunks=chunks)
    except BaseException:
        files.close()  # the probe files opened so far
        raise
