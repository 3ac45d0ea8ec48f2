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

Modules, from the bottom up: ``store`` (fsspec root, lazy OM files),
``paths`` (file names per layout), ``meta`` (``meta.json`` sidecars),
``variables`` (member grouping), ``times``, ``messages`` (warnings);
``keys``, ``pieces``, ``legacy`` and ``series`` (the lazy arrays);
``timeline`` (which data/ file holds which step); ``data``, ``spatial`` and
``run`` (one per layout) build a ``dataset.Built`` from a ``request.Request``;
``api.open_openmeteo`` hands it to xarray.
"""

from .api import LAYOUTS, open_openmeteo

__all__ = ["LAYOUTS", "open_openmeteo"]
