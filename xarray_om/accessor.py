"""``Dataset.om`` / ``DataArray.om``: write xarray objects to OM files.

``ds.om.to_om(target)`` is the OM counterpart of ``to_zarr`` / ``to_netcdf``::

    import xarray_om.accessor  # registers the accessors (done by ``import xarray_om``)

    ds.om.to_om("out.om", encoding={"temperature_2m": {"scale_factor": 20}})
    ds.om.to_om("s3://bucket/out.om", storage_options={...})
    delayed = ds.om.to_om("out.om", compute=False)  # writes when computed

Pipeline (one direction, one layer per step):

1. **plan** (no I/O, no computation): every variable is checked and given its
   OM chunk shape, compression and scaling; attributes are validated. Anything
   that cannot be written raises here, before a byte exists.
2. **jobs**: each variable is cut into blocks that are runs of whole OM chunks,
   consecutive in chunk order (container spec 7.3). dask variables are
   rechunked to such blocks (block edges follow the source's chunk edges where
   possible, so a source chunk is rarely computed twice); numpy and lazily
   indexed variables are sliced.
3. **encode**: blocks are encoded in parallel, on threads or on the workers of
   an active ``distributed.Client`` (``_native.encode_block`` releases the GIL),
   with a bounded *window* of blocks in flight.
4. **write**: the driver appends the encoded chunks to an
   :class:`~xarray_om.format.writer.OmWriter` strictly in file order; the file
   appears at ``target`` only when complete (temporary + rename, or a deferred
   remote commit). Any error, invalid input or lost worker leaves the previous
   file (or nothing) at ``target``.

Peak memory is about ``window x job size`` (raw block, encoded bytes and the
source's own intermediates), whatever the array size. A job is one block of
about ``block_bytes``; for dask sources a job may hold up to 4 blocks' worth
when that lets a source chunk be computed once instead of once per block
(source chunks larger than that are read once per block: a partial read for
file-backed arrays, a recomputation otherwise).

File layout written (readable by ``omfiles`` >= 1.2 and this package)
---------------------------------------------------------------------
* The root is a group named ``""``. Its children are one record per variable
  (coordinates first, then data variables, in dataset order) followed by the
  global attributes.
* A variable with at least one dimension is an OM array named after it. Its
  children: a string scalar ``coordinates`` holding the dimension names
  separated by single spaces (the omfiles convention, container spec 11.2),
  then its attributes.
* A 0-d variable is a *scalar* record at the root, with the same children (its
  ``coordinates`` string is empty). Readers that know only the omfiles
  convention see it as a global attribute.
* Attributes: ``str`` -> string scalar; numpy scalars keep their type; Python
  ``int`` -> int64 (uint64 if too large), ``float`` -> float64, ``bool`` ->
  uint8. A list, tuple or 1-D array (of numbers, or of strings) is a **group**
  named after the attribute whose children are scalars named ``"0"``,
  ``"1"``, ... in order (numbers share one dtype). Readers that know only the
  omfiles convention skip such groups. Other types (None, dicts, dates,
  N-D arrays, objects) raise :class:`~xarray_om.errors.OmEncodingError`.
* CF: ``datetime64`` variables are stored as int64 with CF ``units`` (default
  ``"seconds since 1970-01-01"``, i.e. Unix seconds like Open-Meteo's ``time``
  arrays; a finer unit is chosen automatically when needed for numpy data) and
  ``calendar``; ``timedelta64`` as int64 with ``units``; ``bool`` as int8 with
  ``dtype="bool"`` (all three via xarray's own CF coders, so ``decode_cf``
  restores them). Non-dimension coordinates are listed, CF style, in an
  attribute named ``cf_coordinates`` (the name ``coordinates`` is taken by the
  dimension-name convention): on each data variable for the coordinates that
  share its dimensions, and globally for the others.

Encoding (per variable; ``encoding={name: {...}}``)
---------------------------------------------------
``chunks``
    OM chunk shape (tuple, or dict ``{dim: size}``; ``None``/``-1`` = whole
    dimension). Default: :func:`default_chunks` (about 3k values per chunk,
    long last dimension) -- *not* the dask chunks.
``compression``
    ``"fpx_xor_2d"`` (lossless floats), ``"pfor_delta_2d"`` (lossless
    integers; floats are rounded to scaled integers), ``"pfor_delta_2d_int16"``,
    ``"pfor_delta_2d_int16_logarithmic"`` (float32 only, lossy). Default:
    lossless -- ``fpx_xor_2d`` for floats without a scale factor,
    ``pfor_delta_2d`` for integers; floats with a ``scale_factor`` get
    ``pfor_delta_2d_int16`` (float32) or ``pfor_delta_2d`` (float64).
``scale_factor``, ``add_offset``
    **OM semantics, the inverse of CF**: stored integer
    ``= round((value + add_offset) * scale_factor)`` and read back as
    ``stored / scale_factor - add_offset``. So ``scale_factor=20`` keeps 0.05
    steps (CF would write ``scale_factor=0.05``). Values that the int16 range
    cannot hold read back as NaN or clamp; they are counted and reported
    (``on_clamp``). Also accepted as ``om_scale_factor`` / ``om_add_offset``.
``dtype``
    Cast before writing (explicit, possibly lossy, e.g. ``"float32"``).
``units``, ``calendar``
    For datetime / timedelta variables (CF time units).

From ``variable.encoding`` (e.g. a dataset opened with this backend) only
OM-specific values are honoured, so open -> modify -> ``to_om`` keeps the
file's layout: ``chunks`` / ``preferred_chunks`` (clipped to the new shape,
ignored if they do not fit), ``compression`` when it names an OM compression,
``om_scale_factor`` / ``om_add_offset`` and CF time ``units``/``calendar``.
CF packing (``scale_factor``, ``_FillValue``, ``dtype``...) from other formats is
ignored: values are written as they are in memory.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import itertools
import math
import os
import threading
import uuid
import warnings
from collections.abc import Generator, Hashable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import xarray as xr

from . import _native
from . import conventions as conv
from .errors import OmEncodingError
from .format.records import (
    COMPRESSION_IDS,
    array_type_for,
    uses_scale,
    valid_pair,
)
from .format.writer import (
    EncodeBuffers,
    OmClampWarning,
    OmWriter,
    array_codec,
    block_dimension,
    clamp_message,
    count_out_of_range,
    plan_blocks,
    resolve_compression,
)

__all__ = [
    "DEFAULT_BLOCK_BYTES",
    "OmDataArrayAccessor",
    "OmDatasetAccessor",
    "default_chunks",
    "to_om",
]

# --------------------------------------------------------------------------- names
# File and encoding names shared with the backend come from conventions.py; the
# ones below are what only the writer needs (requested for conventions.py).

DIMS_KEY = conv.COORDINATES  # per-array string child: dimension names, space separated
CF_COORDINATES_KEY = conv.CF_COORDINATES  # CF "coordinates" attribute, renamed
DEFAULT_TIME_UNITS = conv.UNIX_TIME_UNITS  # Unix seconds, like Open-Meteo's time arrays
ENC_CHUNKS = conv.ENCODING_CHUNKS
ENC_PREFERRED_CHUNKS = conv.ENCODING_PREFERRED_CHUNKS
ENC_COMPRESSION = conv.ENCODING_COMPRESSION
ENC_OM_SCALE_FACTOR = conv.ENCODING_SCALE_FACTOR
ENC_OM_ADD_OFFSET = conv.ENCODING_ADD_OFFSET
# Explicit to_om(encoding=...) also takes the short names, with OM semantics.
ENC_SCALE_FACTOR = "scale_factor"
ENC_ADD_OFFSET = "add_offset"
ENC_DTYPE = "dtype"
ENC_UNITS = "units"
ENC_CALENDAR = "calendar"
VALID_ENCODING = frozenset(
    {
        ENC_CHUNKS,
        ENC_PREFERRED_CHUNKS,
        ENC_COMPRESSION,
        ENC_SCALE_FACTOR,
        ENC_ADD_OFFSET,
        ENC_OM_SCALE_FACTOR,
        ENC_OM_ADD_OFFSET,
        ENC_DTYPE,
        ENC_UNITS,
        ENC_CALENDAR,
    }
)

# --------------------------------------------------------------------------- defaults

#: Approximate raw bytes of one encoded block (a run of whole OM chunks).
DEFAULT_BLOCK_BYTES = 8 * 2**20
_CHUNK_TARGET = 3072  # values per OM chunk (Open-Meteo: 3072 / T locations x T steps)
_CHUNK_MAX_LAST = 4096  # a last dimension up to this length stays whole
# A source chunk band up to this many blocks' worth stays one block; blocks sharing
# source chunks are computed together up to the same size.
_GROUP_BLOCKS = 4
# Raw bytes per encode call on local threads: small enough that both threads stay
# busy to the end (and the last block's tail is short), large enough that the
# per-call overhead is negligible.
_ENCODE_BYTES = 2 * 2**20

Mode = Literal["w", "w-"]
OnClamp = Literal["warn", "raise", "ignore"]


def default_chunks(shape: Sequence[int]) -> tuple[int, ...]:
    """OM chunk shape used when none is given.

    In the spirit of the format (1-4k values per chunk, a long last dimension,
    Open-Meteo's ``(1, 3072 // T, T)``): the last dimension stays whole up to
    4096 values (longer ones are cut into 3072), then the preceding dimensions,
    innermost first, take what remains of a budget of about 3072 values per
    chunk. Examples: ``(1441, 2879, 253) -> (1, 12, 253)``,
    ``(721, 1440) -> (2, 1440)``, ``(100_000,) -> (3072,)``, ``(5, 3) -> (5, 3)``.
    """
    shape = tuple(int(s) for s in shape)
    if not shape:
        return ()
    last = shape[-1] if shape[-1] <= _CHUNK_MAX_LAST else _CHUNK_TARGET
    chunks = [last]
    budget = max(1, _CHUNK_TARGET // last)
    for n in reversed(shape[:-1]):
        c = max(1, min(n, budget))
        chunks.append(c)
        budget = max(1, budget // c)
    return tuple(max(1, min(c, n)) for c, n in zip(reversed(chunks), shape, strict=True))


# --------------------------------------------------------------------------- plan


@dataclass
class _VarPlan:
    """One variable, validated and ready to encode."""

    name: str
    dims: tuple[str, ...]
    attrs: list[tuple[str, Any]]
    data: Any  # dask array, or an xarray Variable (numpy or lazily indexed); 0-d: the value
    codec: _native.ArrayCodec | None = None  # None for 0-d variables
    check_clamp: bool = False

    @property
    def is_array(self) -> bool:
        return self.codec is not None


@dataclass
class _Plan:
    variables: list[_VarPlan]
    global_attrs: list[tuple[str, Any]]


def _is_dask(data: Any) -> bool:
    try:
        import dask.array as da
    except ImportError:  # pragma: no cover - dask is a dependency
        return False
    return isinstance(data, da.Array)


def _check_name(name: Any, what: str) -> str:
    if not isinstance(name, str):
        raise OmEncodingError(f"{what} names must be str, got {name!r} ({type(name).__name__})")
    if not name:
        raise OmEncodingError(f"{what} names must not be empty")
    if "/" in name:
        raise OmEncodingError(
            f"{what} name {name!r} contains '/', which OM readers use as a path separator"
        )
    if len(name.encode("utf-8")) > 0xFFFF:
        raise OmEncodingError(f"{what} name {name[:40]!r}... is longer than 65535 bytes")
    return name


def _check_dim(dim: Hashable, var: str) -> str:
    if not isinstance(dim, str) or not dim or any(ch.isspace() for ch in dim):
        raise OmEncodingError(
            f"variable {var!r}: dimension name {dim!r} cannot be stored; the OM convention "
            "lists dimension names separated by spaces, so they must be non-empty str "
            "without whitespace"
        )
    return dim


def _attr_scalar(value: Any, where: str) -> Any:
    """A value ``OmWriter.write_scalar`` stores exactly, or raise."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return np.uint8(bool(value))
    if isinstance(value, np.generic):
        if value.dtype.kind in "iu" or value.dtype in (np.float32, np.float64):
            return value
        if value.dtype == np.float16:
            return np.float32(value)
        if value.dtype.kind in "SU":
            return str(value.item() if value.dtype.kind == "U" else value.item().decode("utf-8"))
    elif isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return np.int64(value)
        if 0 <= value < 2**64:
            return np.uint64(value)
        raise OmEncodingError(f"{where}: integer {value} does not fit 64 bits")
    elif isinstance(value, float):
        return np.float64(value)
    elif isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            pass
    raise OmEncodingError(
        f"{where}: cannot store a value of type {type(value).__name__} ({value!r:.60}); "
        "OM attributes are str, numbers, or lists / 1-D arrays of them"
    )


def _attr_value(value: Any, where: str) -> Any:
    """Normalise one attribute: a scalar, or a list of scalars (written as a group)."""
    if isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim >= 1):
        arr = np.asarray(value) if not isinstance(value, np.ndarray) else value
        if arr.ndim != 1:
            raise OmEncodingError(f"{where}: only 1-D arrays can be stored as attributes")
        if arr.dtype.kind in "iufb":
            if arr.dtype == np.float16:
                arr = arr.astype(np.float32)
            if arr.dtype == np.bool_:
                arr = arr.astype(np.uint8)
            return [arr.dtype.type(v) for v in arr]
        items = [_attr_scalar(v, where) for v in value]
        if items and not all(isinstance(v, str) for v in items):
            raise OmEncodingError(
                f"{where}: a list attribute holds numbers of one type or strings, not a mix"
            )
        return items
    return _attr_scalar(value, where)


def _attributes(attrs: Mapping[Any, Any], where: str) -> list[tuple[str, Any]]:
    out = []
    for key, value in attrs.items():
        name = _check_name(key, f"{where} attribute")
        out.append((name, _attr_value(value, f"{where} attribute {name!r}")))
    return out


def _chunks_from(
    value: Any, dims: tuple[str, ...], shape: tuple[int, ...], var: str
) -> tuple[int, ...]:
    """Normalise an explicit ``chunks`` encoding (tuple or ``{dim: size}``)."""
    if isinstance(value, Mapping):
        unknown = set(value) - set(dims)
        if unknown:
            raise OmEncodingError(
                f"variable {var!r}: chunks name unknown dimensions {sorted(unknown)}"
            )
        value = [value.get(d) for d in dims]
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = [value] * len(shape)
    try:
        items = list(value)
    except TypeError:
        raise OmEncodingError(
            f"variable {var!r}: chunks must be a tuple or a dict, not {value!r}"
        ) from None
    if len(items) != len(shape):
        raise OmEncodingError(
            f"variable {var!r}: chunks {tuple(items)} do not match its {len(shape)} dimensions {dims}"
        )
    out = []
    for c, n, d in zip(items, shape, dims, strict=True):
        if c is None or (isinstance(c, (int, np.integer)) and c == -1):
            out.append(n)
            continue
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)) or c < 1:
            raise OmEncodingError(
                f"variable {var!r}: chunk length {c!r} for dimension {d!r} is not a positive int"
            )
        out.append(min(int(c), n))
    return tuple(out)


def _stored_chunks(
    enc: Mapping[str, Any], dims: tuple[str, ...], shape: tuple[int, ...]
) -> tuple[int, ...] | None:
    """OM chunks remembered in ``variable.encoding``, clipped to the shape; None if unusable."""
    pref = enc.get(ENC_PREFERRED_CHUNKS)
    if isinstance(pref, Mapping) and set(dims) <= set(pref):
        cand: Any = [pref[d] for d in dims]
    else:
        cand = enc.get(ENC_CHUNKS)
    if cand is None:
        return None
    try:
        items = [int(c) for c in cand]
    except (TypeError, ValueError):
        return None
    if len(items) != len(shape) or any(c < 1 for c in items):
        return None
    return tuple(min(c, n) for c, n in zip(items, shape, strict=True))


def _encode_cf(var: xr.Variable, units: Any, calendar: Any, name: str) -> xr.Variable:
    """datetime64 / timedelta64 / bool -> integers with CF attributes (xarray's coders)."""
    from xarray.coding.times import CFDatetimeCoder, CFTimedeltaCoder
    from xarray.coding.variables import BooleanCoder

    kind = var.dtype.kind
    if kind not in "Mmb":
        return var
    var = var.copy(deep=False)
    var.encoding = {}
    try:
        if kind == "M":
            var.encoding = {"units": units or DEFAULT_TIME_UNITS, "dtype": np.dtype("int64")}
            if calendar is not None:
                var.encoding["calendar"] = calendar
            with warnings.catch_warnings():
                # xarray warns when it picks finer units than requested; that is wanted.
                warnings.simplefilter("ignore", UserWarning)
                return CFDatetimeCoder().encode(var, name=name)
        if kind == "m":
            var.encoding = {"units": units or "seconds", "dtype": np.dtype("int64")}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                return CFTimedeltaCoder().encode(var, name=name)
        return BooleanCoder().encode(var, name=name)
    except (ValueError, TypeError) as e:
        raise OmEncodingError(f"variable {name!r}: cannot encode {var.dtype} values: {e}") from e


def _check_encoding_keys(enc: Mapping[str, Any], name: str) -> None:
    bad = set(enc) - VALID_ENCODING
    if bad:
        raise OmEncodingError(
            f"variable {name!r}: unexpected encoding parameters {sorted(bad)}; "
            f"valid ones are {sorted(VALID_ENCODING)}"
        )


def _stored_layout(stored: Mapping[str, Any], dtype: np.dtype) -> tuple[Any, Any, Any]:
    """(compression, scale_factor, add_offset) kept in ``variable.encoding`` by an OM reader.

    Only an OM compression name that is valid for ``dtype`` counts, and the OM
    scale/offset only together with it (a stray ``om_scale_factor`` must never
    make a lossless default lossy).
    """
    comp = stored.get(ENC_COMPRESSION)
    if not (isinstance(comp, str) and comp in COMPRESSION_IDS):
        return None, None, None
    if not valid_pair(array_type_for(dtype), COMPRESSION_IDS[comp]):
        return None, None, None
    return comp, stored.get(ENC_OM_SCALE_FACTOR), stored.get(ENC_OM_ADD_OFFSET)


def _explicit(explicit: Mapping[str, Any], *keys: str) -> tuple[bool, Any]:
    for k in keys:
        if k in explicit:
            return True, explicit[k]
    return False, None


def _plan_variable(
    name: str, var: xr.Variable, explicit: Mapping[str, Any], on_clamp: OnClamp
) -> _VarPlan:
    _check_encoding_keys(explicit, name)
    stored = var.encoding or {}
    dims = tuple(_check_dim(d, name) for d in var.dims)

    kind = var.dtype.kind
    if kind not in "Mm" and (ENC_UNITS in explicit or ENC_CALENDAR in explicit):
        raise OmEncodingError(
            f"variable {name!r}: units/calendar encodings apply to datetime variables only"
        )
    units = explicit.get(ENC_UNITS, stored.get(ENC_UNITS)) if kind in "Mm" else None
    calendar = explicit.get(ENC_CALENDAR, stored.get(ENC_CALENDAR)) if kind == "M" else None
    var = _encode_cf(var, units, calendar, name)

    var, storage = _storage_dtype(var, explicit, name)
    attrs = _attributes(var.attrs, f"variable {name!r}")

    if not dims:
        layout_keys = (
            ENC_CHUNKS,
            ENC_PREFERRED_CHUNKS,
            ENC_COMPRESSION,
            ENC_SCALE_FACTOR,
            ENC_OM_SCALE_FACTOR,
        )
        if any(explicit.get(k) is not None for k in layout_keys):
            raise OmEncodingError(
                f"variable {name!r} is 0-d (written as a scalar record): chunks, compression "
                "and scale_factor do not apply"
            )
        return _VarPlan(name, dims, attrs, np.asarray(var.values).astype(storage)[()])

    if any(isinstance(n, float) and math.isnan(n) for n in var.shape):
        raise OmEncodingError(
            f"variable {name!r} has unknown dask chunk sizes; call compute_chunk_sizes() first"
        )
    shape = tuple(int(n) for n in var.shape)
    if 0 in shape:
        empty = [d for d, n in zip(dims, shape, strict=True) if n == 0]
        raise OmEncodingError(
            f"variable {name!r}: dimension(s) {empty} have length 0; OM arrays cannot be empty"
        )

    codec, lossy = _layout_codec(name, dims, shape, storage, stored, explicit)
    # Keep lazily indexed variables as Variables: ``.data`` would load them whole.
    data = var.data if var.chunks is not None else var
    return _VarPlan(name, dims, attrs, data, codec, check_clamp=lossy and on_clamp != "ignore")


def _storage_dtype(
    var: xr.Variable, explicit: Mapping[str, Any], name: str
) -> tuple[xr.Variable, np.dtype]:
    """``var`` cast to the ``dtype`` encoding (float16 widened), and its OM storage dtype."""
    if explicit.get(ENC_DTYPE) is not None:
        try:
            var = var.astype(np.dtype(explicit[ENC_DTYPE]))
        except TypeError as e:
            raise OmEncodingError(f"variable {name!r}: invalid dtype encoding: {e}") from None
    if var.dtype == np.float16:
        var = var.astype(np.float32)  # lossless widening; OM has no float16
    dtype = var.dtype
    if dtype.kind not in "iuf" or dtype.itemsize > 8:
        raise OmEncodingError(
            f"variable {name!r} has dtype {dtype}: OM stores int8..int64, uint8..uint64, float32 "
            "and float64 arrays (strings, objects and complex numbers cannot be written)"
        )
    return var, np.dtype(dtype).newbyteorder("=")


def _layout_codec(
    name: str,
    dims: tuple[str, ...],
    shape: tuple[int, ...],
    storage: np.dtype,
    stored: Mapping[str, Any],
    explicit: Mapping[str, Any],
) -> tuple[_native.ArrayCodec, bool]:
    """Codec from the explicit encoding, else the variable's stored encoding, else defaults."""
    given, value = _explicit(explicit, ENC_CHUNKS, ENC_PREFERRED_CHUNKS)
    if given:
        chunks = default_chunks(shape) if value is None else _chunks_from(value, dims, shape, name)
    else:
        chunks = _stored_chunks(stored, dims, shape) or default_chunks(shape)

    comp, sf, ao = _stored_layout(stored, storage)
    given, value = _explicit(explicit, ENC_COMPRESSION)
    if given:
        comp = value
    given, value = _explicit(explicit, ENC_SCALE_FACTOR, ENC_OM_SCALE_FACTOR)
    if given:
        sf = value
    given, value = _explicit(explicit, ENC_ADD_OFFSET, ENC_OM_ADD_OFFSET)
    if given:
        ao = value
    return _make_codec(name, storage, shape, chunks, comp, sf, ao)


def _make_codec(
    name: str,
    dtype: np.dtype,
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    compression: Any,
    scale_factor: Any,
    add_offset: Any,
) -> tuple[_native.ArrayCodec, bool]:
    """The codec the writer will record, built (and validated) up front.

    ``array_codec`` applies the writer's own rules, so the codec equals the one
    ``begin_array`` makes from the same arguments. Lossless arrays get the
    neutral scale 1 / offset 0 (scaling means nothing to them).
    """
    try:
        comp = resolve_compression(dtype, compression, scale_factor)
        lossy = uses_scale(dtype, comp)
        codec = array_codec(
            shape,
            dtype,
            chunks,
            comp,
            scale_factor if lossy else None,
            (0.0 if add_offset is None else add_offset) if lossy else 0.0,
        )
    except OmEncodingError as e:
        raise OmEncodingError(f"variable {name!r}: {e.reason}") from None
    return codec, lossy


def _cf_coordinates(ds: xr.Dataset) -> tuple[dict[str, list[str]], list[str]]:
    """Non-index coordinates per data variable (those within its dims) and the rest."""
    extra = [str(k) for k, v in ds.coords.items() if not (v.ndim == 1 and v.dims[0] == k)]
    per_var: dict[str, list[str]] = {}
    used: set[str] = set()
    for name, var in ds.data_vars.items():
        mine = [c for c in extra if set(ds[c].dims) <= set(var.dims)]
        if mine:
            per_var[str(name)] = mine
            used.update(mine)
    return per_var, [c for c in extra if c not in used]


def _merge_cf_attr(attrs: list[tuple[str, Any]], names: list[str]) -> list[tuple[str, Any]]:
    """Store CF coordinates under CF_COORDINATES_KEY (``coordinates`` names dimensions here)."""
    listed: list[str] = []
    out = []
    for key, value in attrs:
        if key in (DIMS_KEY, CF_COORDINATES_KEY) and isinstance(value, str):
            listed += value.split()
        else:
            out.append((key, value))
    listed += [n for n in names if n not in listed]
    if listed:
        out.append((CF_COORDINATES_KEY, " ".join(listed)))
    return out


def _plan_dataset(ds: xr.Dataset, encoding: Mapping[Any, Any] | None, on_clamp: OnClamp) -> _Plan:
    encoding = dict(encoding or {})
    unknown = set(encoding) - set(ds.variables)
    if unknown:
        raise OmEncodingError(
            f"encoding given for variables not in the dataset: {sorted(map(str, unknown))}"
        )
    per_var, leftover = _cf_coordinates(ds)
    names = [*ds.coords, *ds.data_vars]
    plans = []
    for key in names:
        name = _check_name(key, "variable")
        explicit = encoding.get(key) or {}
        if not isinstance(explicit, Mapping):
            raise OmEncodingError(f"encoding for {name!r} must be a dict, not {explicit!r}")
        var = ds.variables[key]
        if any(isinstance(getattr(var, "_data", None), t) for t in _multiindex_types()):
            raise OmEncodingError(f"variable {name!r} is a pandas MultiIndex; reset_index() first")
        plan = _plan_variable(name, var, explicit, on_clamp)
        plan.attrs = _merge_cf_attr(plan.attrs, per_var.get(name, []))
        plans.append(plan)
    gattrs = _merge_cf_attr(_attributes(ds.attrs, "global"), leftover)
    return _Plan(plans, gattrs)


def _multiindex_types() -> tuple[type, ...]:
    try:
        from xarray.core.indexing import PandasMultiIndexingAdapter

        return (PandasMultiIndexingAdapter,)
    except ImportError:  # pragma: no cover - depends on the xarray version
        return ()


# --------------------------------------------------------------------------- blocks


def _run_chunks(
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    source: tuple[tuple[int, ...], ...],
    max_elements: int,
    keep_elements: int | None = None,
) -> tuple[tuple[int, ...], ...]:
    """dask chunks whose blocks are runs of whole OM chunks consecutive in chunk order.

    Blocks hold one OM chunk along the dimensions before ``k``, a range of OM
    chunks along ``k`` and the whole extent after ``k`` (container spec 7.3),
    with ``k`` the outermost dimension for which that fits ``max_elements``.
    Along ``k`` the block edges are the source's chunk edges rounded down to OM
    chunk edges: a stretch between two such edges stays one block up to
    ``keep_elements`` (default ``max_elements``), longer ones are split evenly
    into blocks of at most ``max_elements``, and short neighbours are merged up
    to ``max_elements``. Source chunks are then rarely shared between blocks.
    """
    ndim = len(shape)
    k, unit = block_dimension(shape, chunks, max_elements)
    per_block = max(1, max_elements // unit) * chunks[k]  # length along k

    def om_grid(n: int, c: int) -> tuple[int, ...]:
        return (c,) * (n // c) + ((n % c,) if n % c else ())

    c, n = chunks[k], shape[k]
    per_chunks = per_block // c
    keep = max_elements if keep_elements is None else max(keep_elements, max_elements)
    row = unit // c  # elements per index along k
    edges = {n}
    pos = 0
    for s in source[k]:
        pos += s
        edges.add(min(n, (pos // c) * c))
    edges.discard(0)
    pieces: list[int] = []
    start = 0
    for end in sorted(edges):
        # Split [start, end) evenly into whole OM chunks, at most per_block long.
        n_chunks = -(-(end - start) // c)
        count = 1 if (end - start) * row <= keep else -(-n_chunks // per_chunks)
        base, extra = divmod(n_chunks, count)
        seg = [(base + (i < extra)) * c for i in range(count)]
        seg[-1] -= sum(seg) - (end - start)  # a partial OM chunk at the array's edge
        pieces += seg
        start = end
    merged: list[int] = []
    for p in pieces:
        if merged and merged[-1] + p <= per_block:
            merged[-1] += p
        else:
            merged.append(p)
    out = [om_grid(shape[j], chunks[j]) for j in range(k)]
    out.append(tuple(merged))
    out += [(shape[j],) for j in range(k + 1, ndim)]
    return tuple(out)


def _check_block(
    codec: _native.ArrayCodec,
    block: np.ndarray,
    start: Sequence[int],
    check: bool,
    on_clamp: str,
    var_name: str,
) -> int:
    """Values of ``block`` out of range for a lossy compression; raises for ``on_clamp="raise"``."""
    if not check:
        return 0
    n_bad = count_out_of_range(block, codec.compression, codec.scale_factor, codec.add_offset)
    if n_bad and on_clamp == "raise":
        raise OmEncodingError(
            f"variable {var_name!r}, block at {tuple(start)}: "
            + clamp_message(n_bad, codec.compression, codec.scale_factor, codec.add_offset)
        )
    return n_bad


def _encode(
    codec: _native.ArrayCodec,
    block: np.ndarray,
    start: Sequence[int],
    check: bool,
    on_clamp: str,
    compact: bool = False,
    var_name: str = "",
) -> tuple:
    """(encoded bytes, chunk lengths, values out of range) of one block of ``var_name``.

    ``compact`` copies the bytes out of encode_block's worst-case-sized buffer
    (for results that wait on a worker and travel to the client).
    """
    block = np.ascontiguousarray(block, dtype=codec.dtype)
    n_bad = _check_block(codec, block, start, check, on_clamp, var_name)
    data, lengths = _native.encode_block(codec, block, start)
    if compact:
        data = np.frombuffer(data, np.uint8).copy()
    return data, lengths, n_bad


def _encode_local(
    buffers: EncodeBuffers,
    codec: _native.ArrayCodec,
    block: np.ndarray,
    start: Sequence[int],
    check: bool,
    on_clamp: str,
    var_name: str,
) -> tuple:
    """(encoded bytes, chunk lengths, values out of range, buffer to give back)."""
    block = np.ascontiguousarray(block, dtype=codec.dtype)
    n_bad = _check_block(codec, block, start, check, on_clamp, var_name)
    data, lengths, buf = buffers.encode(codec, block, start)
    return data, lengths, n_bad, buf


def _encode_dask_block(
    block: np.ndarray,
    codec: _native.ArrayCodec,
    check: bool,
    on_clamp: str,
    compact: bool,
    var_name: str,
    block_info: Any = None,
) -> np.ndarray:
    """map_blocks body: encode one block; returns a 1-element object array."""
    start = [s for s, _ in block_info[0]["array-location"]]
    out = np.empty((1,) * block.ndim, dtype=object)
    out.flat[0] = _encode(codec, block, start, check, on_clamp, compact, var_name)
    return out


@dataclass(frozen=True)
class _Job:
    """One load job: one block of a variable, or consecutive dask blocks sharing source chunks.

    ``kind`` is ``"local"`` (a numpy / lazily indexed slice), ``"dask"`` (raw
    blocks of ``source`` computed on a local thread) or ``"remote"`` (dask
    collections of already-encoded blocks, computed on a distributed cluster).
    """

    var: int
    kind: str
    start: tuple[int, ...] = ()
    slices: tuple[slice, ...] = ()
    source: _DaskBlocks | None = None
    idx: tuple[tuple[int, ...], ...] = ()  # "dask": block indices in ``source``
    blocks: tuple[Any, ...] = ()  # "remote": collections computed together


class _DaskBlocks:
    """Raw blocks of a (rechunked) dask array, computed on the calling thread.

    The graph is optimised and materialised once per write; each job culls the
    tasks its blocks need and runs them with dask's synchronous scheduler.
    ``dask.compute(x.blocks[i])`` per job would build and optimise a graph per
    job and copy every single-chunk result (dask's ``finalize``); here a block
    of an in-memory source is the source's own buffer.
    """

    def __init__(self, x: Any) -> None:
        keys = x.__dask_keys__()
        dsk = x.__dask_graph__()
        optimize = getattr(x, "__dask_optimize__", None)
        if optimize is not None:
            dsk = optimize(dsk, keys)
        self.graph = dict(dsk)
        self.keys = keys  # nested lists of block keys, indexed like the block grid
        self.offsets = [np.concatenate(([0], np.cumsum(c))).astype(int).tolist() for c in x.chunks]

    def start(self, idx: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(self.offsets[d][i] for d, i in enumerate(idx))

    def compute(self, idxs: Sequence[tuple[int, ...]]) -> list[np.ndarray]:
        import dask.local
        from dask.optimization import cull

        keys = []
        for idx in idxs:
            k = self.keys
            for i in idx:
                k = k[i]
            keys.append(k)
        dsk, _ = cull(self.graph, keys)
        return list(dask.local.get_sync(dsk, keys))


def _group_blocks(
    block_chunks: tuple[tuple[int, ...], ...],
    source_chunks: tuple[tuple[int, ...], ...],
    max_elements: int,
) -> list[list[tuple[int, ...]]]:
    """Block indices in chunk order, grouped so that shared source chunks are computed once.

    A block joins the previous one's group when both read a common source
    chunk and the group stays within ``max_elements``: the group is then
    computed in one go. Blocks of a source chunk too large for that read it
    once each (for file-backed sources a partial read; otherwise a recompute).
    """

    def ranges(blocks: tuple[int, ...], source: tuple[int, ...]) -> list[tuple[int, int]]:
        s_edges = np.cumsum(source)
        out, pos = [], 0
        for b in blocks:
            lo = int(np.searchsorted(s_edges, pos, side="right"))
            hi = int(np.searchsorted(s_edges, pos + b - 1, side="right"))
            out.append((lo, hi))
            pos += b
        return out

    per_dim = [ranges(b, s) for b, s in zip(block_chunks, source_chunks, strict=True)]
    groups: list[list[tuple[int, ...]]] = []
    prev: list[tuple[int, int]] | None = None
    size = 0
    for idx in np.ndindex(*(len(b) for b in block_chunks)):
        rng = [per_dim[d][i] for d, i in enumerate(idx)]
        n = math.prod(block_chunks[d][i] for d, i in enumerate(idx))
        shares = prev is not None and all(
            lo <= p_hi and p_lo <= hi for (lo, hi), (p_lo, p_hi) in zip(rng, prev, strict=True)
        )
        if groups and shares and size + n <= max_elements:
            groups[-1].append(idx)
            size += n
        else:
            groups.append([idx])
            size = n
        prev = rng
    return groups


def _make_jobs(plan: _Plan, block_bytes: int, on_clamp: str, remote: bool) -> list[_Job]:
    jobs: list[_Job] = []
    for i, v in enumerate(plan.variables):
        if not v.is_array:
            continue
        codec = v.codec
        assert codec is not None
        max_elements = max(1, block_bytes // codec.dtype.itemsize)
        if _is_dask(v.data):
            x = v.data
            keep = _GROUP_BLOCKS * max_elements
            target = _run_chunks(codec.dims, codec.chunks, x.chunks, max_elements, keep)
            groups = _group_blocks(target, x.chunks, keep)
            if x.chunks != target:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # dask's PerformanceWarning on large blocks
                    x = x.rechunk(target)
            if not remote:
                src = _DaskBlocks(x)
                jobs += [_Job(i, "dask", source=src, idx=tuple(g)) for g in groups]
                continue
            enc = x.map_blocks(
                _encode_dask_block,
                codec=codec,
                check=v.check_clamp,
                on_clamp=on_clamp,
                compact=True,
                var_name=v.name,
                dtype=object,
                chunks=tuple((1,) * len(c) for c in x.chunks),
                meta=np.empty((0,) * x.ndim, dtype=object),
                name=f"om-encode-{v.name}-{uuid.uuid4().hex[:8]}",
            )
            for group in groups:
                jobs.append(_Job(i, "remote", blocks=tuple(enc.blocks[idx] for idx in group)))
        else:
            for start, sl in plan_blocks(codec.dims, codec.chunks, max_elements):
                jobs.append(_Job(i, "local", start=start, slices=sl))
    return jobs


def _load(data: Any, sl: tuple[slice, ...]) -> np.ndarray:
    # An xarray Variable (numpy-backed or lazily indexed): reads this block only.
    return np.asarray(data[sl].values)


# --------------------------------------------------------------------------- executors


class _PriorityPool:
    """Worker threads that always run the queued call with the smallest key.

    Keys are ``(job, part)``: the parts of earlier jobs (in file order) run
    before later ones, so the in-order writer rarely waits while threads work
    ahead, and a job's load (part -1) comes before its encodes.
    """

    def __init__(self, n_threads: int) -> None:
        self._heap: list = []
        self._cv = threading.Condition()
        self._closed = False
        self._seq = itertools.count()  # FIFO among equal keys; never compares callables
        self._threads = [
            threading.Thread(target=self._run, name=f"om-to_om_{i}", daemon=True)
            for i in range(n_threads)
        ]
        for t in self._threads:
            t.start()

    def submit(self, key: tuple[int, int], fn: Any, *args: Any) -> Future:
        fut: Future = Future()
        with self._cv:
            if self._closed:
                raise RuntimeError("the encoding pool is closed")
            heapq.heappush(self._heap, (key, next(self._seq), fut, fn, args))
            self._cv.notify()
        return fut

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._heap and not self._closed:
                    self._cv.wait()
                if not self._heap:
                    return
                _, _, fut, fn, args = heapq.heappop(self._heap)
            if fut.set_running_or_notify_cancel():
                try:
                    fut.set_result(fn(*args))
                except BaseException as e:  # handed to the waiting driver
                    fut.set_exception(e)
            del fut, fn, args  # release the block before waiting for the next call

    def close(self) -> None:
        """Cancel the queued calls, let the running ones finish, join the threads."""
        with self._cv:
            self._closed = True
            for item in self._heap:
                item[2].cancel()
            self._heap.clear()
            self._cv.notify_all()
        for t in self._threads:
            t.join()


class _LocalHandle:
    """A job on local threads: its load, then one encode per sub-block, in order."""

    def __init__(self, load: Future, buffers: EncodeBuffers) -> None:
        self._load = load
        self._buffers = buffers
        self._parts: list[Future] = []

    def results(self) -> Iterator[tuple]:
        self._parts = self._load.result()
        for f in self._parts:
            data, lengths, n_bad, buf = f.result()
            yield data, lengths, n_bad
            # Resumed: the consumer has written the bytes, the buffer is free again.
            del data
            self._buffers.give(buf)

    def cancel(self) -> None:
        self._load.cancel()
        for f in self._parts:
            f.cancel()


class _LocalExecutor:
    """Threads: a job's blocks are loaded (numpy slice, or dask with the sync scheduler)
    and then encoded in sub-blocks of about ``encode_bytes``, all on one priority pool,
    so that both threads stay busy whatever the source's chunking."""

    def __init__(self, num_workers: int, encode_bytes: int | None = None) -> None:
        self.num_workers = num_workers
        self.encode_bytes = _ENCODE_BYTES if encode_bytes is None else encode_bytes
        self._pool = _PriorityPool(num_workers)
        self._buffers = EncodeBuffers()

    def submit(self, order: int, job: _Job, plan: _Plan, on_clamp: str) -> _LocalHandle:
        load = self._pool.submit((order, -1), self._load, order, job, plan, on_clamp)
        return _LocalHandle(load, self._buffers)

    def _load(self, order: int, job: _Job, plan: _Plan, on_clamp: str) -> list[Future]:
        v = plan.variables[job.var]
        codec = v.codec
        assert codec is not None
        if job.kind == "dask":
            assert job.source is not None
            blocks = job.source.compute(job.idx)
            starts = [job.source.start(idx) for idx in job.idx]
        else:
            blocks, starts = [_load(v.data, job.slices)], [job.start]
        max_elements = max(1, self.encode_bytes // codec.dtype.itemsize)
        parts = []
        for start, block in zip(starts, blocks, strict=True):
            block = np.asarray(block)
            # The block starts on chunk edges, so its own chunk grid is the array's.
            chunks = tuple(min(c, n) for c, n in zip(codec.chunks, block.shape, strict=True))
            for sub, sl in plan_blocks(block.shape, chunks, max_elements):
                at = tuple(a + b for a, b in zip(start, sub, strict=True))
                args = (self._buffers, codec, block[sl], at, v.check_clamp, on_clamp, v.name)
                parts.append(self._pool.submit((order, len(parts)), _encode_local, *args))
        return parts

    def close(self) -> None:
        self._pool.close()


class _DistributedExecutor:
    """dask blocks become futures on the cluster; numpy blocks are encoded on local threads."""

    def __init__(self, client: Any, num_workers: int) -> None:
        self.client = client
        self.num_workers = num_workers
        self._local = _LocalExecutor(max(1, min(4, os.cpu_count() or 1)))

    def submit(self, order: int, job: _Job, plan: _Plan, on_clamp: str) -> Any:
        if job.kind == "remote":
            return _FutureGroup(self.client.compute(list(job.blocks)))
        return self._local.submit(order, job, plan, on_clamp)

    def close(self) -> None:
        self._local.close()


class _FutureGroup:
    """The futures of one job's blocks, resolved in order."""

    def __init__(self, futures: list) -> None:
        self.futures = futures

    def results(self) -> Iterator[tuple]:
        for f in self.futures:
            yield _unwrap(f.result())

    def cancel(self) -> None:
        for f in self.futures:
            f.cancel()


def _unwrap(result: Any) -> tuple:
    """(data, lengths, n_bad) of one block (dask returns it in a 1-element object array)."""
    if isinstance(result, np.ndarray) and result.dtype == object:
        return result.flat[0]
    return result


def _distributed_client() -> Any:
    """The distributed Client dask would use now, or None."""
    try:
        import dask
        import distributed
    except ImportError:  # pragma: no cover
        return None
    try:
        sched = dask.base.get_scheduler()
    except Exception:  # pragma: no cover - defensive: never fail a write over this
        return None
    client = getattr(sched, "__self__", None)
    return client if isinstance(client, distributed.Client) else None


def _default_workers() -> int:
    import dask

    n = dask.config.get("num_workers", None)
    return int(n) if n else max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def _executor(num_workers: int | None) -> Iterator[Any]:
    import dask

    sched = None
    with contextlib.suppress(Exception):
        sched = dask.base.get_scheduler()
    on_worker = False
    try:
        import distributed

        distributed.get_worker()
        on_worker = True
    except (ImportError, ValueError):
        pass
    if on_worker:
        # A to_om(compute=False) task running on a worker: submit blocks from here.
        with distributed.worker_client() as client:
            ex = _DistributedExecutor(client, num_workers or sum(client.nthreads().values()))
            try:
                yield ex
            finally:
                ex.close()
        return
    client = _distributed_client()
    if client is not None:
        ex: Any = _DistributedExecutor(
            client, num_workers or max(1, sum(client.nthreads().values()))
        )
    else:
        import dask.local

        if num_workers is None and sched is dask.local.get_sync:
            num_workers = 1
        ex = _LocalExecutor(num_workers or _default_workers())
    try:
        yield ex
    finally:
        ex.close()


# --------------------------------------------------------------------------- progress


class _Progress:
    """Drives dask's local callbacks (ProgressBar, Profiler...) with one task per block.

    The per-block computations run with the global callbacks taken away (as
    nested dask schedulers do), so a ``ProgressBar`` shows one bar for the whole
    write instead of one per block.
    """

    def __init__(self, callbacks: Any, n: int) -> None:
        from dask.callbacks import unpack_callbacks

        self._start, self._start_state, self._pre, self._post, self._finish = unpack_callbacks(
            callbacks
        )
        self.keys = [("om-write", i) for i in range(n)]
        self.dsk = dict.fromkeys(self.keys)
        self.state = {
            "cache": {},
            "dependencies": {k: set() for k in self.keys},
            "dependents": {k: set() for k in self.keys},
            "waiting": {},
            "waiting_data": {},
            "ready": set(self.keys),
            "running": set(),
            "finished": set(),
            "released": set(),
        }
        for f in self._start:
            f(self.dsk)
        for f in self._start_state:
            f(self.dsk, self.state)

    def started(self, i: int) -> None:
        key = self.keys[i]
        self.state["ready"].discard(key)
        self.state["running"].add(key)
        for f in self._pre:
            f(key, self.dsk, self.state)

    def done(self, i: int) -> None:
        key = self.keys[i]
        self.state["running"].discard(key)
        self.state["finished"].add(key)
        for f in self._post:
            f(key, None, self.dsk, self.state, threading.get_ident())

    def close(self, errored: bool) -> None:
        for f in self._finish:
            f(self.dsk, self.state, errored)


def _ordered_results(
    ex: Any, jobs: list[_Job], plan: _Plan, on_clamp: str, window: int, progress: _Progress
) -> Generator[Any, None, None]:
    """Encoded blocks in file order; at most ``window`` jobs submitted and not yet consumed.

    The first ``window`` jobs are submitted now, not at the first ``next()``, so
    that encoding overlaps opening the output and writing the first records;
    ``close()`` the result to cancel what is still pending.
    """
    gen = _ordered_gen(ex, jobs, plan, on_clamp, window, progress)
    next(gen)  # runs up to the priming yield: the first jobs are submitted
    return gen


def _ordered_gen(
    ex: Any, jobs: list[_Job], plan: _Plan, on_clamp: str, window: int, progress: _Progress
) -> Generator[Any, None, None]:
    pending: collections.deque = collections.deque()
    it = iter(enumerate(jobs))

    def submit_next() -> None:
        nxt = next(it, None)
        if nxt is not None:
            progress.started(nxt[0])
            pending.append((nxt[0], ex.submit(nxt[0], nxt[1], plan, on_clamp)))

    try:
        for _ in range(window):
            submit_next()
        yield None  # primed
        while pending:
            i, handle = pending[0]
            yield from handle.results()
            pending.popleft()
            progress.done(i)
            submit_next()
    finally:
        for _, handle in pending:
            handle.cancel()


# --------------------------------------------------------------------------- driver


def _write_plan(
    plan: _Plan,
    target: Any,
    *,
    storage_options: dict | None,
    mode: Mode,
    num_workers: int | None,
    window: int | None,
    block_bytes: int,
    on_clamp: OnClamp,
) -> None:
    from dask.callbacks import local_callbacks

    with _executor(num_workers) as ex, local_callbacks() as callbacks:
        jobs = _make_jobs(plan, block_bytes, on_clamp, remote=isinstance(ex, _DistributedExecutor))
        progress = _Progress(callbacks, len(jobs))
        errored = True
        try:
            w_size = window if window is not None else 2 * ex.num_workers
            results = _ordered_results(ex, jobs, plan, on_clamp, max(1, w_size), progress)
            try:
                with OmWriter(target, storage_options=storage_options, overwrite=mode == "w") as w:
                    _write_records(w, plan, results)
            finally:
                results.close()
            errored = False
        finally:
            progress.close(errored)


def _write_records(w: OmWriter, plan: _Plan, results: Iterator[tuple]) -> None:
    refs = []
    for v in plan.variables:
        kids = [w.write_scalar(" ".join(v.dims), name=DIMS_KEY)]
        kids += [_write_attr(w, k, val) for k, val in v.attrs]
        if not v.is_array:
            refs.append(w.write_scalar(v.data, name=v.name, children=kids))
            continue
        codec = v.codec
        assert codec is not None
        stream = w.begin_array(
            shape=codec.dims,
            dtype=codec.dtype,
            chunks=codec.chunks,
            compression=codec.compression,
            scale_factor=codec.scale_factor,
            add_offset=codec.add_offset,
            on_clamp="ignore",
        )
        if stream.codec != codec:  # pragma: no cover - the writer changed its rules
            raise OmEncodingError(
                f"variable {v.name!r}: writer codec {stream.codec} differs from planned {codec}"
            )
        n_bad = 0
        # Blocks may be split for encoding: consume until the array is complete.
        while stream.next_chunk < stream.n_chunks:
            item = next(results, None)
            if item is None:  # pragma: no cover - a planning bug, never a partial file
                raise OmEncodingError(f"variable {v.name!r}: encoded blocks ended early")
            data, lengths, bad = item
            n_bad += bad
            stream.append_encoded(data, lengths)
        refs.append(stream.finish(name=v.name, children=kids))
        if n_bad:
            warnings.warn(
                f"{w.name}: variable {v.name!r}: "
                + clamp_message(n_bad, codec.compression, codec.scale_factor, codec.add_offset),
                OmClampWarning,
                stacklevel=4,
            )
    refs += [_write_attr(w, k, val) for k, val in plan.global_attrs]
    w.close(w.write_group(name="", children=refs))


def _write_attr(w: OmWriter, name: str, value: Any) -> Any:
    if isinstance(value, list):
        items = [w.write_scalar(v, name=str(j)) for j, v in enumerate(value)]
        return w.write_group(name=name, children=items)
    return w.write_scalar(value, name=name)


# --------------------------------------------------------------------------- public entry


class _DelayedWrite:
    """The callable behind ``to_om(compute=False)``: a single task that writes the file.

    The plan's dask arrays are attributes, not task dependencies, so computing
    the Delayed never materialises them; the write streams them as usual.
    """

    def __init__(self, plan: _Plan, target: Any, kwargs: dict) -> None:
        self.plan, self.target, self.kwargs = plan, target, kwargs

    def __call__(self) -> None:
        _write_plan(self.plan, self.target, **self.kwargs)


def _target_exists(target: Any, storage_options: dict | None) -> bool:
    if isinstance(target, tuple):
        fs, path = target
        return bool(fs.exists(path))
    if isinstance(target, os.PathLike) or (isinstance(target, str) and "://" not in target):
        return os.path.exists(target)
    import fsspec

    fs, path = fsspec.core.url_to_fs(str(target), **(storage_options or {}))
    return bool(fs.exists(path))


def to_om(
    ds: xr.Dataset,
    target: Any,
    *,
    mode: Mode = "w",
    encoding: Mapping[Any, Mapping[str, Any]] | None = None,
    compute: bool = True,
    storage_options: dict | None = None,
    num_workers: int | None = None,
    window: int | None = None,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    on_clamp: OnClamp = "warn",
) -> Any:
    """Write a Dataset to an OM file; see :meth:`OmDatasetAccessor.to_om`."""
    if mode not in ("w", "w-"):
        raise ValueError(f"mode must be 'w' or 'w-', not {mode!r}")
    if on_clamp not in ("warn", "raise", "ignore"):
        raise ValueError(f"on_clamp must be 'warn', 'raise' or 'ignore', not {on_clamp!r}")
    if block_bytes < 1:
        raise ValueError("block_bytes must be positive")
    if window is not None and window < 1:
        raise ValueError("window must be >= 1")
    plan = _plan_dataset(ds, encoding, on_clamp)
    if mode == "w-" and _target_exists(target, storage_options):
        raise FileExistsError(f"{target} exists and mode='w-'")
    kwargs = dict(
        storage_options=storage_options, mode=mode, num_workers=num_workers,
        window=window, block_bytes=block_bytes, on_clamp=on_clamp,
    )  # fmt: skip
    if compute:
        _write_plan(plan, target, **kwargs)
        return None
    import dask

    return dask.delayed(_DelayedWrite(plan, target, kwargs), pure=False)(
        dask_key_name=f"to_om-{uuid.uuid4().hex}"
    )


_DOC_PARAMS = """
        Parameters
        ----------
        target : str, os.PathLike or (fsspec.AbstractFileSystem, str)
            Local path or fsspec URL (``s3://...``, ``memory://...``).
        mode : {"w", "w-"}
            ``"w"`` replaces an existing file (atomically); ``"w-"`` refuses to
            overwrite (``FileExistsError``).
        encoding : dict, optional
            ``{variable: {key: value}}`` with keys ``chunks``, ``compression``,
            ``scale_factor``, ``add_offset`` (**OM semantics, the inverse of
            CF**: stored = round((value + add_offset) * scale_factor)),
            ``dtype``, ``units``/``calendar`` (time variables). See
            :mod:`xarray_om.accessor`.
        compute : bool
            If False, return a ``dask.delayed.Delayed`` that writes the file
            when computed (nothing is written before).
        storage_options : dict, optional
            fsspec options for a URL target.
        num_workers : int, optional
            Encoding threads (default: dask's ``num_workers`` or the CPU count);
            with a distributed Client, used only to size the default window.
        window : int, optional
            Blocks in flight (submitted, not yet written); default
            ``2 * num_workers``. Peak memory ~ ``window * block_bytes`` (up to
            4x that for dask sources whose chunks are larger than a block).
        block_bytes : int
            Approximate raw size of one encoded block (a run of whole OM chunks),
            default 8 MiB.
        on_clamp : {"warn", "raise", "ignore"}
            Values that a lossy compression cannot represent (they would read
            back as NaN or clamped): warn (:class:`OmClampWarning`), raise
            (the write is abandoned, the target untouched) or ignore.

        Returns
        -------
        None, or a ``dask.delayed.Delayed`` when ``compute=False``.
"""


class _OmAccessor:
    def __init__(self, obj: Any) -> None:
        self._obj = obj


@xr.register_dataset_accessor("om")
class OmDatasetAccessor(_OmAccessor):
    """``ds.om``: OM-file methods for Datasets."""

    def to_om(self, target: Any, **kwargs: Any) -> Any:
        return to_om(self._obj, target, **kwargs)

    to_om.__doc__ = (
        """Write the Dataset to an OM file (data variables, coordinates, attributes).

        Streams dask-backed variables block by block (never materialised whole),
        encodes in parallel, and publishes the file atomically.
"""
        + _DOC_PARAMS
    )


@xr.register_dataarray_accessor("om")
class OmDataArrayAccessor(_OmAccessor):
    """``da.om``: OM-file methods for DataArrays."""

    def to_om(
        self, target: Any, *, encoding: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> Any:
        from xarray.backends.api import DATAARRAY_NAME, DATAARRAY_VARIABLE

        da = self._obj
        # Same naming as DataArray.to_netcdf, so xr.open_dataarray restores the name.
        if da.name is None:
            ds = da.to_dataset(name=DATAARRAY_VARIABLE)
        elif da.name in da.coords or da.name in da.dims:
            ds = da.to_dataset(name=DATAARRAY_VARIABLE)
            ds.attrs[DATAARRAY_NAME] = da.name
        else:
            ds = da.to_dataset()
        name = next(iter(ds.data_vars))
        if encoding and set(encoding) <= VALID_ENCODING:
            encoding = {name: encoding}
        return to_om(ds, target, encoding=encoding, **kwargs)

    to_om.__doc__ = (
        """Write the DataArray (and its coordinates) to an OM file.

        Named like ``DataArray.to_netcdf``: an unnamed array is stored as
        ``__xarray_dataarray_variable__`` so that ``xr.open_dataarray`` gives it
        back unnamed. ``encoding`` is either this array's own encoding dict or
        ``{variable: {...}}`` for it and its coordinates.
"""
        + _DOC_PARAMS
    )
