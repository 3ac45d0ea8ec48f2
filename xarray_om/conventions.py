"""Naming rules for OM files: dimensions, coordinates, attributes, encodings.

The OM format has no built-in attributes, dimension names or coordinates; the
conventions layered on its record tree (container spec section 11 and
``openmeteo-data.md``) live here, in one place, shared by the xarray backend,
the Zarr store view and the ``to_om`` writer.

Everything in this module is a pure function over format-layer nodes
(:class:`~xarray_om.format.reader.OmArray` and friends) or plain values; it
does not import xarray, dask or zarr.

Summary of the rules
--------------------
Dimension names of an array, first match wins (:func:`dimension_names`):

1. a user override;
2. the array's own ``coordinates`` string child (names split on whitespace);
3. a 1-D array named like a dimension declared elsewhere in the file is that
   dimension's coordinate variable;
4. the ``coordinates`` string of the enclosing array/group, nearest first, up
   to the root (Open-Meteo spatial files put ``"lat lon"`` on the root group);
5. the older ``_ARRAY_DIMENSIONS`` child (comma separated);
6. Open-Meteo defaults for a recognised layout (:data:`LAYOUT_DEFAULT_DIMS`);
7. ``dim_0``, ``dim_1``, ...

Names in a ``coordinates`` or ``_ARRAY_DIMENSIONS`` string are only used when
their count equals the array's rank.

Attributes (:func:`variable_attrs`): an array's (or group's) direct scalar
children, minus :data:`RESERVED_NAMES`; an OM ``unit`` also gives CF
``units`` (the original is kept). A child *group* whose children are scalars
named ``"0"``, ``"1"``, ... in order is a list attribute (the ``to_om``
writer's form, :func:`list_attribute`): a 1-D numpy array, or a list of
``str``. The CF ``coordinates`` attribute is stored as
:data:`CF_COORDINATES` (``coordinates`` names dimensions here) and read back
as CF ``coordinates``, so CF decoding makes the listed variables coordinates.

0-d variables (:func:`is_scalar_variable`): a numeric scalar child of a group
that has its own ``coordinates`` string child naming no dimension (empty) is
a 0-d variable, its other children being its attributes; ``to_om`` writes 0-d
variables that way. Scalars without that child are attributes.

The OM record fields ``scale_factor`` and ``add_offset`` are *never*
attributes: OM stores ``round((value + add_offset) * scale_factor)`` and
reads ``stored / scale_factor - add_offset`` (codec spec 2.1 and 2.5), the
inverse of CF's ``value = stored * scale_factor + add_offset``, so CF
decoding would corrupt the data. They travel in ``encoding`` under
:data:`ENCODING_SCALE_FACTOR` / :data:`ENCODING_ADD_OFFSET` together with
:data:`ENCODING_COMPRESSION` and :data:`ENCODING_CHUNKS`
(:func:`encoding_for`); the ``to_om`` writer reads exactly these keys back.

Time: integer arrays named ``time`` and the scalars ``valid_time``,
``forecast_reference_time`` hold Unix seconds; they get the CF attributes
:func:`unix_time_attrs` so that CF time decoding gives ``datetime64``.
"""

from __future__ import annotations

import math
import posixpath
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "ARRAY_DIMENSIONS",
    "CF_COORDINATES",
    "COORDINATES",
    "COORDINATE_SCALARS",
    "ENCODING_ADD_OFFSET",
    "ENCODING_CHUNKS",
    "ENCODING_COMPRESSION",
    "ENCODING_PREFERRED_CHUNKS",
    "ENCODING_SCALE_FACTOR",
    "FORECAST_REFERENCE_TIME",
    "LATITUDE_ATTRS",
    "LAYOUT_DEFAULT_DIMS",
    "LONGITUDE_ATTRS",
    "OM_ENCODING_KEYS",
    "RESERVED_NAMES",
    "ROLLING_TIME_SCALARS",
    "TIME",
    "UNIT",
    "UNITS",
    "UNIX_TIME_CALENDAR",
    "UNIX_TIME_UNITS",
    "VALID_TIME",
    "Layout",
    "array_dimension_strings",
    "datetime64_to_unix_seconds",
    "default_dimension_names",
    "detect_layout",
    "dimension_names",
    "encoding_for",
    "is_scalar_variable",
    "is_unix_time_array",
    "list_attribute",
    "parse_dimension_string",
    "regular_grid_bbox",
    "regular_grid_coordinates",
    "rolling_time_axis",
    "root_array_name",
    "unix_seconds_to_datetime64",
    "unix_time_attrs",
    "variable_attrs",
]

# --------------------------------------------------------------------------- reserved names

#: String child holding whitespace-separated dimension names (omfiles >= 1.2, Open-Meteo).
#: It is *not* CF's ``coordinates`` attribute and is never passed on as one.
COORDINATES = "coordinates"
#: Older form of the dimension names (comma separated), written for omfiles < 1.2.
ARRAY_DIMENSIONS = "_ARRAY_DIMENSIONS"
#: Scalar children that are structure, not attributes.
RESERVED_NAMES = frozenset({COORDINATES, ARRAY_DIMENSIONS})
#: Where the CF ``coordinates`` attribute (non-dimension coordinates of a
#: variable) is stored: the name ``coordinates`` already holds dimension names.
CF_COORDINATES = "cf_coordinates"
# CF's own attribute name, given back on read.
_CF_COORDINATES_ATTR = "coordinates"

#: Open-Meteo's unit attribute (``"°C"``) and its CF counterpart.
UNIT = "unit"
UNITS = "units"

#: Names with Unix-seconds meaning in Open-Meteo files.
TIME = "time"
VALID_TIME = "valid_time"
FORECAST_REFERENCE_TIME = "forecast_reference_time"
#: Scalars that become coordinates instead of attributes.
COORDINATE_SCALARS = (VALID_TIME, FORECAST_REFERENCE_TIME)
#: Scalars of an ensemble ``rolling.om`` file describing its time axis.
ROLLING_TIME_SCALARS = ("time_start", "time_end", "dt_seconds")

#: CF units/calendar attached to Unix-seconds integers so that CF decoding yields datetimes.
UNIX_TIME_UNITS = "seconds since 1970-01-01 00:00:00"
UNIX_TIME_CALENDAR = "proleptic_gregorian"

# --------------------------------------------------------------------------- encoding keys

#: OM scale factor of the array record. OM meaning (codec spec 2.1 / 2.5):
#: stored = round((value + add_offset) * scale_factor),
#: value = stored / scale_factor - add_offset; *not* CF ``scale_factor``.
ENCODING_SCALE_FACTOR = "om_scale_factor"
#: OM add offset of the array record (same OM meaning: added *before* scaling on
#: write, subtracted after dividing on read); *not* CF ``add_offset``.
ENCODING_ADD_OFFSET = "om_add_offset"
#: OM compression name, e.g. ``"pfor_delta_2d_int16"`` (see ``records.COMPRESSION_NAMES``).
ENCODING_COMPRESSION = "compression"
#: OM chunk shape, a tuple of ints in the variable's dimension order.
ENCODING_CHUNKS = "chunks"
#: xarray's key: ``{dim: OM chunk length}``; ``chunks={}`` gives one dask chunk per OM chunk.
ENCODING_PREFERRED_CHUNKS = "preferred_chunks"
#: Every key :func:`encoding_for` sets and the ``to_om`` writer understands.
OM_ENCODING_KEYS = (
    ENCODING_CHUNKS,
    ENCODING_COMPRESSION,
    ENCODING_SCALE_FACTOR,
    ENCODING_ADD_OFFSET,
    ENCODING_PREFERRED_CHUNKS,
)


# --------------------------------------------------------------------------- layouts


class Layout:
    """Names of the file layouts :func:`detect_layout` recognises (plain strings)."""

    #: ``data_spatial/...``: root group of 2-D ``[ny, nx]`` arrays, root ``coordinates``.
    SPATIAL = "spatial"
    #: ``data_run/...``: root array ``[ny, nx, (members,) time]`` with a ``time`` array child.
    RUN = "run"
    #: ensemble ``rolling.om``: root array with ``time_start``/``dt_seconds`` scalars.
    ROLLING = "rolling"
    #: ``data/.../chunk_N.om``, ``year_YYYY.om``, static fields: bare unnamed root array.
    TIMESERIES = "timeseries"
    #: legacy v1/v2 2-D ``[locations, time]`` file.
    LEGACY = "legacy"
    #: anything else (files written by omfiles or other tools).
    GENERIC = "generic"


#: Open-Meteo default dimension names per layout and rank (openmeteo-data.md).
LAYOUT_DEFAULT_DIMS: dict[str, dict[int, tuple[str, ...]]] = {
    Layout.SPATIAL: {2: ("lat", "lon")},
    Layout.RUN: {2: ("lat", "lon"), 3: ("lat", "lon", "time"), 4: ("lat", "lon", "member", "time")},
    Layout.ROLLING: {3: ("lat", "lon", "time"), 4: ("lat", "lon", "member", "time")},
    Layout.TIMESERIES: {
        2: ("lat", "lon"),
        3: ("lat", "lon", "time"),
        4: ("lat", "lon", "member", "time"),
    },
    Layout.LEGACY: {2: ("location", "time")},
    Layout.GENERIC: {},
}

# data/ layout file names whose variable name is the parent folder.
_FOLDER_NAMED = re.compile(
    r"^(chunk_-?\d+|year_\d+|master_\d+|rolling|linear_bias_seasonal)(\.om)?$", re.IGNORECASE
)


def _scalar_child(node: Any, name: str) -> Any:
    """Value of the first scalar child called ``name``, or None."""
    for c in node.children:
        if c.kind == "scalar" and c.name == name:
            return c.value
    return None


def _has_array_child(node: Any, name: str) -> bool:
    return any(c.kind == "array" and c.name == name for c in node.children)


def detect_layout(root: Any, *, version: int = 3, source_name: str | None = None) -> str:
    """Recognise which Open-Meteo layout a file follows (a :class:`Layout` value).

    Parameters
    ----------
    root
        The file's root node.
    version
        Container generation (1 and 2 are legacy).
    source_name
        Path or URL of the file (only the base name is used), or None.

    Notes
    -----
    Rules from openmeteo-data.md, "What the backend must honour": group root
    with ``coordinates`` -> spatial; array root with a ``time`` array child ->
    run; with a ``time_start`` scalar -> rolling; an unnamed root array with no
    children, or a data/ file name (``chunk_N``, ``year_YYYY``...) ->
    timeseries; legacy header -> legacy.
    """
    if version in (1, 2):
        return Layout.LEGACY
    if root.kind == "group":
        if _scalar_child(root, COORDINATES) is not None and any(
            c.kind == "array" for c in root.children
        ):
            return Layout.SPATIAL
        return Layout.GENERIC
    if root.kind != "array":
        return Layout.GENERIC
    if _has_array_child(root, TIME):
        return Layout.RUN
    if _scalar_child(root, "time_start") is not None:
        return Layout.ROLLING
    base = posixpath.basename(str(source_name or "").rstrip("/"))
    if (root.name == "" and not root.children) or _FOLDER_NAMED.match(base):
        return Layout.TIMESERIES
    return Layout.GENERIC


def root_array_name(source_name: str | None, default: str = "data") -> str:
    """Variable name for an unnamed root array, from the file's path or URL.

    ``.../data_run/.../temperature_2m.om`` -> ``temperature_2m`` (the file
    stem); ``.../data/dwd_icon/temperature_2m/chunk_1234.om`` (also
    ``year_YYYY``, ``master_N``, ``rolling``, ``linear_bias_seasonal``) ->
    ``temperature_2m`` (the parent folder). Without a usable path (bytes,
    anonymous file objects) ``default`` is returned.
    """
    if not source_name:
        return default
    path = str(source_name)
    if "://" in path:
        path = path.split("://", 1)[1]
    path = path.split("?", 1)[0].split("#", 1)[0].replace("\\", "/").rstrip("/")
    base = posixpath.basename(path)
    if not base or base.startswith("<"):
        return default
    if _FOLDER_NAMED.match(base):
        parent = posixpath.basename(posixpath.dirname(path))
        return parent or default
    stem = base[:-3] if base.lower().endswith(".om") else base
    return stem or default


# --------------------------------------------------------------------------- dimensions


def parse_dimension_string(value: Any, *, separator: str | None = None) -> tuple[str, ...] | None:
    """Split a dimension-name string; None if ``value`` is not a usable string.

    ``separator=None`` splits on runs of whitespace (the ``coordinates``
    form); ``","`` splits on commas and strips blanks (``_ARRAY_DIMENSIONS``).
    """
    if not isinstance(value, str):
        return None
    if separator is None:
        parts = value.split()
    else:
        parts = [p.strip() for p in value.split(separator)]
        if any(not p for p in parts):
            return None
    return tuple(parts) or None


def array_dimension_strings(node: Any) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None]:
    """The node's own ``(coordinates, _ARRAY_DIMENSIONS)`` names, each None when absent."""
    coords = parse_dimension_string(_scalar_child(node, COORDINATES))
    legacy = parse_dimension_string(_scalar_child(node, ARRAY_DIMENSIONS), separator=",")
    return coords, legacy


def default_dimension_names(ndim: int, layout: str = Layout.GENERIC) -> tuple[str, ...]:
    """Open-Meteo defaults for ``layout`` and rank, else ``dim_0 .. dim_{ndim-1}``."""
    dims = LAYOUT_DEFAULT_DIMS.get(layout, {}).get(ndim)
    if dims is not None:
        return dims
    return tuple(f"dim_{i}" for i in range(ndim))


def dimension_names(
    node: Any,
    *,
    ancestors: Sequence[Any] = (),
    known_dims: Iterable[str] = (),
    layout: str = Layout.GENERIC,
    override: Sequence[str] | None = None,
) -> tuple[tuple[str, ...], str]:
    """Dimension names of an array node, and which rule gave them.

    Parameters
    ----------
    node
        An array node.
    ancestors
        Enclosing nodes, nearest first (the array an attached coordinate
        array hangs from, its group, ..., the root).
    known_dims
        Dimension names declared explicitly anywhere in the dataset (by
        ``coordinates`` strings or an override); a 1-D array with one of these
        names is that dimension's coordinate variable.
    layout
        The file's :class:`Layout`, for the Open-Meteo defaults.
    override
        User-given names; must have one name per dimension.

    Returns
    -------
    (names, rule)
        ``rule`` is one of ``"override"``, ``"coordinates"``,
        ``"coordinate variable"``, ``"parent coordinates"``,
        ``"_ARRAY_DIMENSIONS"``, ``"layout default"``, ``"default"``.
    """
    ndim = len(node.shape)
    if override is not None:
        names = tuple(override)
        if len(names) != ndim:
            raise ValueError(
                f"dimension_names override {names} has {len(names)} names, but array "
                f"{node.path or node.name!r} has {ndim} dimensions"
            )
        return names, "override"
    own, legacy = array_dimension_strings(node)
    if own is not None and len(own) == ndim:
        return own, "coordinates"
    if ndim == 1 and node.name and node.name in set(known_dims):
        return (node.name,), "coordinate variable"
    for anc in ancestors:
        names = parse_dimension_string(_scalar_child(anc, COORDINATES))
        if names is not None and len(names) == ndim:
            return names, "parent coordinates"
    if legacy is not None and len(legacy) == ndim:
        return legacy, "_ARRAY_DIMENSIONS"
    defaults = LAYOUT_DEFAULT_DIMS.get(layout, {}).get(ndim)
    if defaults is not None:
        return defaults, "layout default"
    return default_dimension_names(ndim), "default"


# --------------------------------------------------------------------------- attributes


def list_attribute(node: Any) -> np.ndarray | list[str] | None:
    """The value of a list attribute stored as a group, or None if ``node`` is not one.

    The ``to_om`` writer stores a list / 1-D array attribute as a group whose
    children are scalars named ``"0"``, ``"1"``, ... in order (and nothing
    else). Strings give a ``list`` of ``str``; numbers a 1-D numpy array (one
    dtype when the items share it, as ``to_om`` writes them). Empty groups and
    groups mixing strings and numbers are not list attributes.
    """
    if node.kind != "group":
        return None
    items = node.children
    if not items:
        return None
    values = []
    for i, c in enumerate(items):
        if c.kind != "scalar" or c.name != str(i) or c.children:
            return None
        values.append(c.value)
    n_str = sum(isinstance(v, str) for v in values)
    if n_str == len(values):
        return values
    if n_str:
        return None
    return np.array(values)


def is_scalar_variable(node: Any) -> bool:
    """True for a numeric scalar record that is a 0-d variable, not an attribute.

    ``to_om`` writes a 0-d variable as a scalar whose children are an empty
    ``coordinates`` string (no dimensions) followed by its attributes; plain
    attribute scalars have no ``coordinates`` child. Only meaningful for the
    children of a group (see :func:`variable_attrs`).
    """
    if node.kind != "scalar" or isinstance(node.value, str):
        return False
    dims = _scalar_child(node, COORDINATES)
    return isinstance(dims, str) and not dims.split()


def variable_attrs(node: Any) -> dict[str, Any]:
    """Attributes of an array, group or 0-d variable: its scalar children and list groups.

    ``coordinates`` and ``_ARRAY_DIMENSIONS`` (dimension names, not CF
    attributes) are left out, and so are a group's 0-d variables
    (:func:`is_scalar_variable`). Child groups holding a list attribute
    (:func:`list_attribute`) give arrays / lists of ``str``; other groups are
    not attributes. :data:`CF_COORDINATES` is given back as CF
    ``coordinates``. An OM ``unit`` is also given as CF ``units`` unless the
    node has its own ``units``. Values are numpy scalars, ``str``, 1-D numpy
    arrays or lists of ``str``; on duplicate names the first child wins.
    """
    attrs: dict[str, Any] = {}
    in_group = node.kind == "group"
    for c in node.children:
        name = c.name
        if name in RESERVED_NAMES or name in attrs:
            continue
        if c.kind == "scalar":
            if in_group and is_scalar_variable(c):
                continue
            value = c.value
        else:
            value = list_attribute(c)
            if value is None:
                continue
        if name == CF_COORDINATES and isinstance(value, str):
            attrs.setdefault(_CF_COORDINATES_ATTR, value)
            continue
        attrs[name] = value
    if UNIT in attrs and UNITS not in attrs and isinstance(attrs[UNIT], str):
        attrs[UNITS] = attrs[UNIT]
    return attrs


def encoding_for(arr: Any, dims: Sequence[str] | None = None) -> dict[str, Any]:
    """The OM encoding of an array node (keys :data:`OM_ENCODING_KEYS`).

    ``chunks`` is the OM chunk shape, ``compression`` its name,
    ``om_scale_factor``/``om_add_offset`` the record's OM scaling (see the
    module docstring: not CF). With ``dims``, ``preferred_chunks`` maps each
    dimension to its OM chunk length.
    """
    chunks = tuple(int(c) for c in arr.chunks)
    enc: dict[str, Any] = {
        ENCODING_CHUNKS: chunks,
        ENCODING_COMPRESSION: arr.compression,
        ENCODING_SCALE_FACTOR: float(arr.scale_factor),
        ENCODING_ADD_OFFSET: float(arr.add_offset),
    }
    if dims is not None:
        enc[ENCODING_PREFERRED_CHUNKS] = dict(zip(dims, chunks, strict=True))
    return enc


# --------------------------------------------------------------------------- time


def is_unix_time_array(node: Any) -> bool:
    """True for an integer array named ``time`` without its own ``units``.

    Open-Meteo's ``time`` arrays hold Unix seconds and carry no units.
    """
    if node.kind != "array" or node.name != TIME:
        return False
    if np.dtype(node.dtype).kind not in "iu":
        return False
    return _scalar_child(node, UNITS) is None


def unix_time_attrs() -> dict[str, str]:
    """CF attributes that make CF decoding read integers as Unix seconds."""
    return {UNITS: UNIX_TIME_UNITS, "calendar": UNIX_TIME_CALENDAR}


def unix_seconds_to_datetime64(values: Any) -> np.ndarray:
    """Unix seconds (ints) -> ``datetime64[ns]``."""
    return np.asarray(values, dtype=np.int64).astype("datetime64[s]").astype("datetime64[ns]")


def datetime64_to_unix_seconds(values: Any) -> np.ndarray:
    """``datetime64`` values -> int64 Unix seconds (sub-second parts must be zero)."""
    arr = np.asarray(values)
    if arr.dtype.kind != "M":
        raise TypeError(f"expected datetime64 values, got {arr.dtype}")
    if np.isnat(arr).any():
        raise ValueError("NaT cannot be stored as Unix seconds")
    secs = arr.astype("datetime64[s]")
    if not np.array_equal(secs.astype(arr.dtype), arr):
        raise ValueError("times with sub-second parts cannot be stored as Unix seconds")
    return secs.astype(np.int64)


def rolling_time_axis(attrs: Mapping[str, Any], n: int) -> np.ndarray | None:
    """Unix seconds of an ensemble ``rolling.om`` time axis of length ``n``.

    Built from the ``time_start`` and ``dt_seconds`` scalars; None if they are
    missing or not integers, or if ``time_end`` (when present, exclusive or
    inclusive) disagrees with the length.
    """
    start, dt = attrs.get("time_start"), attrs.get("dt_seconds")
    if not (_is_integer(start) and _is_integer(dt)) or int(dt) <= 0:
        return None
    axis = int(start) + np.arange(n, dtype=np.int64) * int(dt)
    end = attrs.get("time_end")
    if _is_integer(end) and n and int(end) not in (int(axis[-1]), int(axis[-1]) + int(dt)):
        return None
    return axis


def _is_integer(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


# --------------------------------------------------------------------------- grids

_BBOX = re.compile(
    r"BBOX\s*\[\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*,\s*([-+0-9.eE]+)\s*\]"
)
# Markers of non-regular geographic grids (their BBOX is not a linspace grid).
_NOT_REGULAR = ("DERIVINGCONVERSION", "ROTATED", "GAUSSIAN", "OB_TRAN")


def regular_grid_bbox(crs_wkt: Any) -> tuple[float, float, float, float] | None:
    """``(lat0, lon0, lat1, lon1)`` of a regular lat/lon grid's WKT2, else None.

    Only a plain ``GEOGCRS`` (no deriving conversion, not rotated, not
    reduced Gaussian) with a ``BBOX`` qualifies. Open-Meteo writes the first
    and last grid point into the BBOX (``RegularGrid.crsWkt2``).
    """
    if not isinstance(crs_wkt, str):
        return None
    text = crs_wkt.strip()
    if not text.upper().startswith("GEOGCRS"):
        return None
    upper = text.upper()
    if any(m in upper for m in _NOT_REGULAR):
        return None
    found = _BBOX.findall(text)
    if len(found) != 1:
        return None
    try:
        lat0, lon0, lat1, lon1 = (float(v) for v in found[0])
    except ValueError:
        return None
    if not all(math.isfinite(v) for v in (lat0, lon0, lat1, lon1)):
        return None
    if not (-90.0 <= min(lat0, lat1) and max(lat0, lat1) <= 90.0):
        return None
    return lat0, lon0, lat1, lon1


def _axis(first: float, last: float, n: int) -> np.ndarray:
    if n == 1:
        return np.array([first], dtype=np.float64)
    raw = (last - first) / (n - 1)
    # The BBOX is printed from float32 (20.339998 for 20.34). Snap the step to
    # the shortest decimal that still reaches ``last`` within float32 precision,
    # so a 0.02 grid gets exact multiples of 0.02 and 1/30 keeps its own step.
    tol = max(abs(first), abs(last), 1.0) * 1.2e-7
    values = first + np.arange(n, dtype=np.float64) * raw
    for digits in (3, 4, 5, 6):
        step = float(f"{raw:.{digits}g}")
        if abs(first + (n - 1) * step - last) <= tol:
            values = first + np.arange(n, dtype=np.float64) * step
            break
    # Remove float noise from the multiplication (6 decimals ~ 0.1 m).
    return np.round(values, 6)


def regular_grid_coordinates(
    crs_wkt: Any, ny: int, nx: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """1-D latitude and longitude of a regular grid of ``ny`` x ``nx`` points.

    ``crs_wkt`` must describe a regular lat/lon grid (:func:`regular_grid_bbox`);
    latitudes may be descending. Values are ``linspace(first, last, n)`` with
    the float32 print noise of the BBOX rounded off. Returns None when the
    WKT is not a regular grid.
    """
    bbox = regular_grid_bbox(crs_wkt)
    if bbox is None or ny < 1 or nx < 1:
        return None
    lat0, lon0, lat1, lon1 = bbox
    return _axis(lat0, lat1, int(ny)), _axis(lon0, lon1, int(nx))


#: CF attributes of synthesised grid coordinates.
LATITUDE_ATTRS = {"standard_name": "latitude", "long_name": "latitude", UNITS: "degrees_north"}
LONGITUDE_ATTRS = {"standard_name": "longitude", "long_name": "longitude", UNITS: "degrees_east"}
