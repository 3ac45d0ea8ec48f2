"""xarray backend for OM files: ``xr.open_dataset(path, engine="xarray_om")``.

The backend opens an :class:`~xarray_om.format.reader.OmFile` (one tail read
usually returns the trailer and every metadata record), names dimensions,
coordinates and attributes with :mod:`xarray_om.conventions`, and wraps each
array in a lazy :class:`OmBackendArray` that only holds a picklable node
(source spec + record offset). Each variable's ``encoding["preferred_chunks"]``
is its OM chunk shape, so ``chunks={}`` makes one dask chunk per OM chunk and
``chunks="auto"`` whole multiples of it; a dask task reading a block fetches
its chunks' byte ranges in one coalesced request and decodes them with one
native call (:meth:`OmArray.read <xarray_om.format.reader.OmArray.read>`).

Opening is two steps: :func:`describe_groups` says, from metadata alone, what
each group becomes (variables with their node, dimensions, attributes and
encoding; coordinate names; group attributes), then each description is
turned into xarray variables and CF-decoded. The Zarr view
(:mod:`xarray_om.zarr`) presents the same descriptions.

Engine names
------------
The package registers the engine under two names: ``"om"`` and the
unambiguous alias ``"xarray_om"``. The reference package ``omfiles`` also
registers ``"om"``; when both are installed xarray picks one of them at
random in each process (and warns). This backend then emits one
:class:`EngineNameClashWarning` per process. Use ``engine="xarray_om"`` or
``engine=xarray_om.OmBackendEntrypoint`` to be sure to get this backend.
"""

from __future__ import annotations

import inspect
import math
import os
import threading
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from xarray import Dataset, DataTree, Variable
from xarray import conventions as xr_conventions
from xarray.backends.common import BackendArray, BackendEntrypoint
from xarray.core import indexing
from xarray.core.utils import emit_user_level_warning

from . import conventions as conv
from .errors import OmConventionError
from .format.reader import OmArray, OmFile, OmNode

__all__ = [
    "EngineNameClashWarning",
    "GroupDescription",
    "OmBackendArray",
    "OmBackendEntrypoint",
    "VariableDescription",
    "describe_groups",
]

#: 1-D coordinate variables up to this many elements are read at open time
#: (xarray builds pandas indexes from them anyway).
EAGER_COORDINATE_SIZE = 1 << 20
_TRAILER_MAGIC = b"OM\x03"


# --------------------------------------------------------------------------- engine name clash


class EngineNameClashWarning(RuntimeWarning):
    """Another installed package also registers the xarray engine name ``"om"``."""


_clash_lock = threading.Lock()
_clash_checked = False


def _other_om_entrypoints(entrypoints: Iterable[Any] | None = None) -> list[str]:
    """Values of ``xarray.backends`` entry points named ``om`` that are not this package."""
    if entrypoints is None:
        from importlib.metadata import entry_points

        entrypoints = entry_points(group="xarray.backends")
    return sorted(
        {
            ep.value
            for ep in entrypoints
            if ep.name == "om" and not ep.value.split(":")[0].startswith("xarray_om.")
        }
    )


def _warn_engine_clash_once() -> None:
    global _clash_checked
    with _clash_lock:
        if _clash_checked:
            return
        _clash_checked = True
    try:
        others = _other_om_entrypoints()
    except Exception:  # broken metadata must not break opening files
        return
    if others:
        emit_user_level_warning(
            f"The xarray engine name 'om' is also registered by {', '.join(others)}; xarray "
            "picks one of them at random in each process, so engine='om' may not use "
            "xarray-om. Use engine='xarray_om' (or engine=xarray_om.OmBackendEntrypoint) "
            "to select xarray-om unambiguously.",
            EngineNameClashWarning,
        )


# --------------------------------------------------------------------------- backend arrays


class _BasicKey(indexing.BasicIndexer):
    """A BasicIndexer of ints and slices with int/None members, built without re-validation."""

    __slots__ = ()

    def __init__(self, key: tuple) -> None:
        indexing.ExplicitIndexer.__init__(self, key)


class _OuterKey(indexing.OuterIndexer):
    """An OuterIndexer of ints, slices and 1-D int64 arrays, built without re-validation."""

    __slots__ = ()

    def __init__(self, key: tuple) -> None:
        indexing.ExplicitIndexer.__init__(self, key)


_NATIVE_KEYS = (indexing.BasicIndexer, indexing.OuterIndexer, _BasicKey, _OuterKey)


class OmBackendArray(BackendArray):
    """Lazy view of an OM array for xarray (outer indexing, any steps).

    Parameters
    ----------
    array
        The format-layer array node (pickles as source spec + record offset).
    leading_axes
        Number of length-1 axes put in front of the array's own axes (a
        spatial file's single valid time becomes a ``time`` dimension).
    """

    def __init__(self, array: OmArray, leading_axes: int = 0) -> None:
        self.array = array
        self.leading_axes = int(leading_axes)
        self.shape = (1,) * self.leading_axes + tuple(array.shape)
        self.dtype = np.dtype(array.dtype)

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        # The reader does basic (any step) and outer indexing natively: skip
        # xarray's decomposition for them (it costs more than decoding a
        # small chunk); only vectorized keys need it.
        if type(key) in _NATIVE_KEYS:
            return self._getitem(key.tuple)
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.OUTER, self._getitem
        )

    def _getitem(self, key: tuple) -> np.ndarray:
        n = self.leading_axes
        if not n:
            return self.array.read(key)
        lead, rest = key[:n], key[n:]
        data = self.array.read(rest)
        return data.reshape((1,) * n + data.shape)[(*lead, Ellipsis)]

    def __repr__(self) -> str:
        return f"OmBackendArray({self.array!r}, leading_axes={self.leading_axes})"


def _range_slice(r: range, n: int) -> slice:
    """The slice selecting exactly ``r`` of ``range(n)`` (the whole axis as ``slice(None)``,
    which the reader takes without arithmetic; a negative stop means "down to index 0")."""
    if r.step == 1 and r.start == 0 and r.stop == n:
        return _WHOLE
    if not r:
        return slice(0, 0, 1)
    stop = r.stop
    return slice(r.start, stop if stop >= 0 else None, r.step)


def _compose_keys(old: tuple, new: tuple, sizes: tuple[int, ...]) -> tuple[tuple, tuple[int, ...]]:
    """Outer key ``old`` (on an array of shape ``sizes``) then ``new`` (one member
    per axis ``old`` keeps) as one outer key, with the result's shape.

    Members are ints, slices (any steps) and 1-D integer arrays; the selection
    is numpy's ``a[old][new]`` axis by axis. Range arithmetic, not xarray's
    ``normalize_slice``: that one turns ``slice(-13, None, -1)`` on 12 elements
    (nothing) into ``slice(-1, None, -1)`` (everything) in xarray 2026.9.
    Out-of-range integers raise IndexError like numpy.
    """
    key: list[Any] = []
    shape: list[int] = []
    it = iter(new)
    for o, n in zip(old, sizes, strict=True):
        if isinstance(o, (int, np.integer)):
            key.append(int(o))
            continue
        k = next(it)
        if type(o) is slice:
            r = range(n) if o == _WHOLE else range(*o.indices(n))
            if type(k) is slice:
                r = r if k == _WHOLE else r[k]
                key.append(_range_slice(r, n))
                shape.append(len(r))
            elif isinstance(k, (int, np.integer)):
                key.append(r[int(k)])
            else:
                idx = np.arange(r.start, r.stop, r.step, dtype=np.int64)[np.asarray(k)]
                key.append(idx)
                shape.append(idx.size)
        else:  # a 1-D int array from an earlier outer key
            sub = o[k]
            if isinstance(sub, np.ndarray):
                key.append(sub.astype(np.int64, copy=False))
                shape.append(sub.size)
            else:
                key.append(int(sub))
    if next(it, None) is not None:
        raise IndexError(f"too many indices: {new!r} for a key of {len(shape)} axes")
    return tuple(key), tuple(shape)


_WHOLE = slice(None)


def _is_block(key: tuple, shape: tuple[int, ...]) -> bool:
    """``key`` is what dask asks of a block: ``slice(a, b)`` with ``0 <= a < b <= n``."""
    for k, n in zip(key, shape, strict=True):
        if type(k) is not slice or k.step is not None:
            return False
        a = k.start
        b = k.stop
        if type(a) is not int or type(b) is not int or not 0 <= a < b <= n:
            return False
    return True


class OmLazilyIndexedArray(indexing.LazilyIndexedArray):
    """xarray's :class:`~xarray.core.indexing.LazilyIndexedArray` with its own key composition.

    ``chunks=...`` makes dask call ``getter(adapter, slices)`` once per block;
    xarray's key composition (normalising, re-validating and re-building
    indexers through several layers) then costs several times decoding a small
    OM chunk. Basic and outer keys are composed here with plain range
    arithmetic (:func:`_compose_keys`), and reading goes straight to the
    backend array; vectorized keys, transposes and setting are xarray's own
    code, so the semantics are those of ``LazilyIndexedArray``.
    """

    # Plain attributes instead of the inherited properties: dask and xarray's
    # wrappers read them several times per task, through two more layers.
    __slots__ = ("_untouched", "dtype", "ndim", "shape")

    def __init__(self, array: Any, key: indexing.ExplicitIndexer | None = None) -> None:
        super().__init__(array, key)
        self.shape = self._shape
        self.ndim = len(self._shape)
        self.dtype = self.array.dtype
        # the key selects everything (as opened): dask blocks need no composition
        self._untouched = all(type(k) is slice and k == _WHOLE for k in self.key.tuple)

    def _compose(self, indexer: indexing.ExplicitIndexer) -> OmLazilyIndexedArray:
        new_key = indexer.tuple
        if len(new_key) != self.ndim:
            new_key = indexing.expanded_indexer(new_key, self.ndim)
        old = self.key.tuple
        if self._untouched and _is_block(new_key, self.shape):
            # a dask block of the untouched array: its slices are the key
            key = new_key
            shape = tuple([k.stop - k.start for k in new_key])
        else:
            key, shape = _compose_keys(old, new_key, self.array.shape)
        new = object.__new__(type(self))
        new.array = self.array
        basic = all(type(k) is not np.ndarray for k in key)
        new.key = _BasicKey(key) if basic else _OuterKey(key)
        new._shape = new.shape = shape
        new.ndim = len(shape)
        new.dtype = self.dtype
        new._untouched = False
        return new

    def _oindex_get(self, indexer: indexing.OuterIndexer) -> Any:
        return self._compose(indexer)

    def __getitem__(self, indexer: indexing.ExplicitIndexer) -> Any:
        if isinstance(indexer, indexing.BasicIndexer):
            return self._compose(indexer)
        return super().__getitem__(indexer)

    def get_duck_array(self) -> Any:
        array = self.array
        key = self.key
        if type(array) is OmBackendArray and type(key) in _NATIVE_KEYS:
            out = array._getitem(key.tuple)
            return out if type(out) is np.ndarray else np.asarray(out)
        if isinstance(array, BackendArray):
            out = array[self.key]
            return out if type(out) is np.ndarray else np.asarray(out)
        return super().get_duck_array()


class LegacyGridArray(BackendArray):
    """A legacy 2-D ``[ny*nx, time]`` array presented as ``[ny, nx, time]``.

    Reads map (row, column) selections to flat location indices; whole rows
    (or a run inside one row) become one location slice so that dask blocks
    of whole rows read contiguous chunk runs.
    """

    def __init__(self, array: OmArray, ny: int, nx: int) -> None:
        nloc, nt = array.shape
        if ny < 1 or nx < 1 or ny * nx != nloc:
            raise ValueError(
                f"{array.file.source_name}: legacy_grid=({ny}, {nx}) does not match the "
                f"{nloc} locations of the legacy file (need ny * nx == {nloc})"
            )
        self.array = array
        self.ny, self.nx = int(ny), int(nx)
        self.shape = (self.ny, self.nx, int(nt))
        self.dtype = np.dtype(array.dtype)

    def preferred_chunks(self) -> tuple[int, int, int]:
        """Rows per block such that a block covers whole OM location chunks."""
        c0, c1 = self.array.chunks
        rows = c0 // math.gcd(self.nx, c0)
        return min(rows, self.ny), self.nx, int(c1)

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.OUTER, self._getitem
        )

    def _getitem(self, key: tuple) -> np.ndarray:
        ky, kx, kt = key
        ys = np.atleast_1d(np.arange(self.ny)[ky])
        xs = np.atleast_1d(np.arange(self.nx)[kx])
        nx = self.nx
        if ys.size == 0 or xs.size == 0:
            tlen = np.arange(self.shape[2])[kt]
            out = np.empty((ys.size, xs.size, *np.shape(tlen)), self.dtype)
        else:
            loc: Any
            if _is_run(xs) and xs[0] == 0 and xs.size == nx and _is_run(ys):
                loc = slice(int(ys[0]) * nx, (int(ys[-1]) + 1) * nx)
            elif ys.size == 1 and _is_run(xs):
                base = int(ys[0]) * nx
                loc = slice(base + int(xs[0]), base + int(xs[-1]) + 1)
            else:
                loc = (ys[:, None] * nx + xs[None, :]).reshape(-1)
            flat = self.array.read((loc, kt))
            out = flat.reshape(ys.size, xs.size, *flat.shape[1:])
        drop = tuple(0 if _is_int(k) else slice(None) for k in (ky, kx))
        return out[drop]


def _is_int(k: Any) -> bool:
    return isinstance(k, (int, np.integer))


def _is_run(idx: np.ndarray) -> bool:
    return (
        idx.size > 0
        and int(idx[-1]) - int(idx[0]) == idx.size - 1
        and bool(np.all(np.diff(idx) == 1))
    )


# --------------------------------------------------------------------------- group descriptions


@dataclass(frozen=True)
class VariableDescription:
    """One variable of a group as the backend presents it, before CF decoding.

    Describing reads metadata only; ``values`` are small arrays made from
    metadata or a scalar record, never chunk data.

    Attributes
    ----------
    name, dims, shape
        Variable name, dimension names and shape (with ``lead`` and a legacy
        grid applied).
    attrs
        Attributes as handed to CF decoding: Unix-seconds variables carry the
        CF ``units``/``calendar`` of :func:`~xarray_om.conventions.unix_time_attrs`,
        a restored CF ``coordinates`` attribute is included.
    encoding
        The OM encoding of an array (:data:`~xarray_om.conventions.OM_ENCODING_KEYS`,
        ``chunks``/``preferred_chunks`` in ``dims`` order); ``{}`` otherwise.
    node
        Where the values live: an :class:`~xarray_om.format.reader.OmArray`
        (read lazily), the :class:`~xarray_om.format.reader.OmScalar` whose
        value ``values`` holds (0-d variables, valid / reference times), or
        None for values made up from metadata (regular-grid latitude and
        longitude, an ensemble rolling time axis).
    lead
        Length-1 axes in front of the array's own (a spatial file's valid time
        as a ``time`` dimension).
    values
        The values when ``node`` is not an array, else None.
    unix_time
        The values are Unix seconds (CF decoding makes them ``datetime64``).
    legacy_grid
        ``(ny, nx)`` when a legacy ``[ny*nx, time]`` array is presented as
        ``[ny, nx, time]``.
    """

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    attrs: dict[str, Any]
    encoding: dict[str, Any]
    node: OmNode | None = None
    lead: int = 0
    values: np.ndarray | None = None
    unix_time: bool = False
    legacy_grid: tuple[int, int] | None = None

    @property
    def ndim(self) -> int:
        return len(self.shape)


@dataclass(frozen=True)
class GroupDescription:
    """One group (or array) of an OM file as a dataset, before CF decoding.

    Attributes
    ----------
    path
        DataTree path: ``"/"`` for the base node, ``"/a/b"`` below it.
    node
        The group or array node the dataset is made of.
    variables
        ``{name: VariableDescription}`` in file order, derived coordinates last.
    coord_names
        Variables to make coordinates besides dimension coordinates and those
        that a CF ``coordinates`` attribute lists (valid / reference times,
        2-D latitude and longitude arrays).
    attrs
        Attributes of the dataset (a group's; empty for an array).
    problem
        With ``naming="auto"``: why this group is named by the conventions
        only (the backend's rules rejected it), else None.
    """

    path: str
    node: OmNode
    variables: dict[str, VariableDescription]
    coord_names: frozenset[str]
    attrs: dict[str, Any]
    problem: str | None = None


def describe_groups(
    file: OmFile,
    *,
    group: str | None = None,
    recursive: bool = True,
    source_name: str | None = None,
    variable_name: str | None = None,
    dimension_names: Sequence[str] | Mapping[str, Sequence[str]] | str | None = None,
    legacy_grid: tuple[int, int] | None = None,
    drop_variables: str | Iterable[str] | None = None,
    spatial_time: str = "dimension",
    decode_grid: bool = True,
    naming: str = "backend",
) -> list[GroupDescription]:
    """What the backend makes of each group of ``file``, without reading array data.

    The xarray backend and the Zarr view (:mod:`xarray_om.zarr.manifest`) are
    both built on this: same names, dimensions, attributes and coordinates.

    Parameters
    ----------
    file
        An opened :class:`~xarray_om.format.reader.OmFile`.
    group
        Base group or array path (default the root).
    recursive
        Also describe every group below the base (DataTree order; list
        attribute groups are attributes, not groups; duplicate names and names
        with ``/`` are skipped with a warning).
    source_name
        Path or URL used for layout detection and the name of an unnamed root
        array; default the file's own source name.
    variable_name, dimension_names, legacy_grid, drop_variables, spatial_time, decode_grid
        As in :meth:`OmBackendEntrypoint.open_dataset`; ``dimension_names``
        and ``legacy_grid`` apply to the base group only.
    naming
        ``"backend"``: the backend's rules (a group whose dimension sizes
        conflict raises ValueError); ``"conventions"``: each array named by
        :func:`~xarray_om.conventions.dimension_names` alone, no derived
        coordinates and no cross-array checks; ``"auto"``: the backend's rules,
        falling back to ``"conventions"`` for a group they reject (its
        :attr:`GroupDescription.problem` says why).

    Returns
    -------
    list of GroupDescription
        The base group first.
    """
    if naming not in ("backend", "conventions", "auto"):
        raise ValueError(f"naming must be 'backend', 'conventions' or 'auto', not {naming!r}")
    if spatial_time not in ("dimension", "scalar"):
        raise ValueError(f"spatial_time must be 'dimension' or 'scalar', not {spatial_time!r}")
    label = source_name if source_name is not None else _source_label(file, file)
    layout = conv.detect_layout(file.root, version=file.version, source_name=label)
    root_name = variable_name or conv.root_array_name(label)
    base = _node_chain(file, group)
    chains = _walk_groups(base, file.source_name) if recursive else [("/", base)]
    if legacy_grid is not None:
        ny, nx = (int(v) for v in legacy_grid)
        legacy_grid = (ny, nx)
    drop = _drop_set(drop_variables)
    out = []
    for path, chain in chains:
        if naming == "conventions":
            out.append(_plain_description(path, file, chain, layout, root_name, drop))
            continue
        builder = _Builder(
            file,
            chain,
            layout=layout,
            root_name=root_name,
            dimension_names=_normalize_override(dimension_names) if path == "/" else None,
            drop_variables=drop,
            legacy_grid=legacy_grid if path == "/" else None,
            spatial_time=spatial_time,
            decode_grid=decode_grid,
        )
        try:
            variables, attrs, coord_names = builder.describe()
        except ValueError as exc:
            if naming == "backend":
                raise
            out.append(
                _plain_description(path, file, chain, layout, root_name, drop, problem=str(exc))
            )
            continue
        out.append(GroupDescription(path, chain[-1], variables, frozenset(coord_names), attrs))
    return out


def _node_chain(f: OmFile, group: str | None) -> list[OmNode]:
    """Nodes from the root down to ``group`` (root first)."""
    chain = [f.root]
    if group in (None, "", "/"):
        return chain
    node: OmNode = f.root
    for part in str(group).strip("/").split("/"):
        try:
            node = node[part]
        except KeyError:
            raise KeyError(
                f"group {group!r} not found in {f.source_name}; available at the root: "
                f"{[c.name for c in f.root.children if c.kind != 'scalar']}"
            ) from None
        chain.append(node)
    if node.kind == "scalar":
        raise ValueError(f"{group!r} in {f.source_name} is a scalar, not a group or array")
    return chain


def _walk_groups(base: list[OmNode], source: str) -> list[tuple[str, list[OmNode]]]:
    """(DataTree path, node chain) for the base node and every group below it."""
    out: list[tuple[str, list[OmNode]]] = []

    def visit(chain: list[OmNode], path: str) -> None:
        out.append((path, chain))
        names: set[str] = set()
        for c in chain[-1].children:
            if c.kind != "group" or conv.list_attribute(c) is not None:
                continue
            name = c.name or f"unnamed_group_{len(names)}"
            if name in names or "/" in name:
                warnings.warn(
                    f"{source}: group {name!r} below {path!r} skipped (duplicate name or "
                    "'/' in name); open it with group=...",
                    RuntimeWarning,
                    stacklevel=5,
                )
                continue
            names.add(name)
            visit([*chain, c], f"{path.rstrip('/')}/{name}")

    visit(base, "/")
    return out


def _normalize_override(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(value.split())
    if isinstance(value, Mapping):
        return {k: (tuple(v.split()) if isinstance(v, str) else tuple(v)) for k, v in value.items()}
    return tuple(value)


class _Entry:
    """One array (or 0-d scalar variable) of the dataset being described."""

    __slots__ = ("ancestors", "dims", "file_dims", "name", "node", "rule")

    def __init__(self, node: OmNode, name: str, ancestors: list[OmNode]) -> None:
        self.node = node
        self.name = name
        self.ancestors = ancestors
        self.dims: tuple[str, ...] = ()
        self.file_dims: tuple[str, ...] = ()
        self.rule = ""


def _collect_entries(f: OmFile, chain: list[OmNode], root_name: str) -> list[_Entry]:
    """The arrays (and a group's 0-d variables) making up the dataset of ``chain[-1]``."""
    node = chain[-1]
    outer = list(reversed(chain[:-1]))  # enclosing nodes, nearest first
    if node.kind == "array":
        pairs = [(node, outer)]
        pairs += [(c, [node, *outer]) for c in node.children if c.kind == "array"]
    else:
        pairs = []
        inner = [node, *outer]
        for c in node.children:
            if c.kind == "scalar" and conv.is_scalar_variable(c):
                pairs.append((c, inner))  # a 0-d variable (to_om writes them so)
            if c.kind != "array":
                continue
            pairs.append((c, inner))
            pairs += [(g, [c, *inner]) for g in c.children if g.kind == "array"]
    out: list[_Entry] = []
    seen: dict[str, int] = {}
    for k, (arr, anc) in enumerate(pairs):
        name = arr.name
        if not name:
            name = root_name if arr is f.root else f"unnamed_{k}"
        offset = arr.record_offset
        if name in seen:
            if seen[name] != offset:
                warnings.warn(
                    f"{f.source_name}: several arrays named {name!r} in "
                    f"{node.path or '/'!r}; only the first is used",
                    RuntimeWarning,
                    stacklevel=5,
                )
            continue
        seen[name] = offset
        out.append(_Entry(arr, name, anc))
    return out


def _name_file_dims(
    entries: list[_Entry], layout: str, legacy_grid: tuple[int, int] | None
) -> None:
    """Set each entry's ``file_dims`` (and ``rule``) from the file's conventions."""
    known: set[str] = set()
    for e in entries:
        for n in (e.node, *e.ancestors):
            own, _ = conv.array_dimension_strings(n)
            if own is not None:
                known.update(own)
    for e in entries:
        if e.node.kind == "scalar":
            e.file_dims, e.rule = (), "scalar"
        elif e.node.ndim == 2 and legacy_grid is not None:
            e.file_dims, e.rule = ("lat", "lon", "time"), "legacy grid"
        else:
            e.file_dims, e.rule = conv.dimension_names(
                e.node, ancestors=e.ancestors, known_dims=known, layout=layout
            )


def _array_description(
    e: _Entry,
    dims: tuple[str, ...],
    attrs: dict[str, Any],
    *,
    lead: int = 0,
    legacy_grid: tuple[int, int] | None = None,
) -> VariableDescription:
    """An OM array's description: Unix-seconds CF attributes, chunks in ``dims`` order."""
    arr = e.node
    unix_time = conv.is_unix_time_array(arr)
    if unix_time:
        attrs = {**attrs, **conv.unix_time_attrs()}
    enc = conv.encoding_for(arr)
    if legacy_grid is not None:
        chunks: tuple[int, ...] = LegacyGridArray(arr, *legacy_grid).preferred_chunks()
        shape = (*legacy_grid, int(arr.shape[1]))
    else:
        chunks = (1,) * lead + tuple(int(c) for c in arr.chunks)
        shape = (1,) * lead + tuple(int(n) for n in arr.shape)
    enc[conv.ENCODING_CHUNKS] = chunks
    enc[conv.ENCODING_PREFERRED_CHUNKS] = dict(zip(dims, chunks, strict=True))
    return VariableDescription(
        e.name,
        dims,
        shape,
        attrs,
        enc,
        node=arr,
        lead=lead,
        unix_time=unix_time,
        legacy_grid=legacy_grid,
    )


def _scalar_description(e: _Entry) -> VariableDescription:
    node = e.node
    return VariableDescription(
        e.name, (), (), conv.variable_attrs(node), {}, node=node, values=np.asarray(node.value)
    )


def _plain_description(
    path: str,
    f: OmFile,
    chain: list[OmNode],
    layout: str,
    root_name: str,
    drop: set[str],
    problem: str | None = None,
) -> GroupDescription:
    """The conventions' names alone: no derived coordinates, no cross-array checks."""
    entries = [e for e in _collect_entries(f, chain, root_name) if e.name not in drop]
    _name_file_dims(entries, layout, None)
    variables = {}
    for e in entries:
        if e.node.kind == "scalar":
            variables[e.name] = _scalar_description(e)
        else:
            variables[e.name] = _array_description(e, e.file_dims, conv.variable_attrs(e.node))
    node = chain[-1]
    attrs = conv.variable_attrs(node) if node.kind == "group" else {}
    return GroupDescription(path, node, variables, frozenset(), attrs, problem)


def _first_attr_scalar(node: OmNode, name: str) -> OmNode | None:
    """The scalar record :func:`conv.variable_attrs` took attribute ``name`` from."""
    for c in node.children:
        if c.name != name:
            continue
        if c.kind == "scalar" and not (node.kind == "group" and conv.is_scalar_variable(c)):
            return c
        if c.kind == "group" and conv.list_attribute(c) is not None:
            return None
    return None


class _Builder:
    """Describes the (undecoded) variables and attributes of one group or array."""

    def __init__(
        self,
        f: OmFile,
        chain: list[OmNode],
        *,
        layout: str,
        root_name: str,
        dimension_names: Any,
        drop_variables: set[str],
        legacy_grid: tuple[int, int] | None,
        spatial_time: str,
        decode_grid: bool,
    ) -> None:
        self.f = f
        self.chain = chain
        self.node = chain[-1]
        self.outer = list(reversed(chain[:-1]))  # enclosing nodes, nearest first
        self.layout = layout
        self.root_name = root_name
        self.override = dimension_names
        self.drop = drop_variables
        self.legacy_grid = legacy_grid
        self.spatial_time = spatial_time
        self.decode_grid = decode_grid
        self.source = f.source_name

    def _bad(self, msg: str) -> ValueError:
        return ValueError(f"{self.source}: {msg}")

    # -- dimensions

    def _assign_dims(self, entries: list[_Entry]) -> None:
        override = self.override
        _name_file_dims(entries, self.layout, self.legacy_grid)
        # User override: per variable (mapping) or for every non-coordinate
        # array of matching rank (sequence); renamed dimensions follow everywhere.
        rename: dict[str, str] = {}
        explicit: dict[str, tuple[str, ...]] = {}
        if override is not None:
            for e in entries:
                if isinstance(override, Mapping):
                    names = override.get(e.name)
                    if names is None:
                        continue
                elif len(override) == len(e.file_dims) and e.rule != "coordinate variable":
                    names = override
                else:
                    continue
                if len(names) != len(e.file_dims):
                    raise self._bad(
                        f"dimension_names for {e.name!r} has {len(names)} names, the array "
                        f"has {len(e.file_dims)} dimensions"
                    )
                explicit[e.name] = tuple(names)
                for old, new in zip(e.file_dims, names, strict=True):
                    if rename.get(old, new) != new:
                        raise self._bad(
                            f"dimension_names renames {old!r} both to {rename[old]!r} and {new!r}"
                        )
                    rename[old] = new
            if isinstance(override, Mapping):
                unknown = set(override) - {e.name for e in entries}
                if unknown:
                    raise self._bad(f"dimension_names names unknown variables {sorted(unknown)}")
            elif not explicit:
                raise self._bad(
                    f"dimension_names {tuple(override)} fits no array (ranks: "
                    f"{sorted({len(e.file_dims) for e in entries})})"
                )
        for e in entries:
            if e.name in explicit:
                e.dims = explicit[e.name]
            elif isinstance(override, Mapping) and e.rule != "coordinate variable":
                # Per-variable names do not leak into other variables; only
                # coordinate variables follow a renamed dimension.
                e.dims = e.file_dims
            else:
                e.dims = tuple(rename.get(d, d) for d in e.file_dims)
                # A coordinate variable follows its renamed dimension.
                if e.file_dims == (e.name,) and e.dims[0] != e.name:
                    e.name = e.dims[0]
        sizes: dict[str, tuple[int, str]] = {}
        for e in entries:
            shape = self._shape(e)
            dims = list(e.dims)
            for i, (d, n) in enumerate(zip(dims, shape, strict=True)):
                prev = sizes.get(d)
                if prev is None or prev[0] == n:
                    sizes.setdefault(d, (n, e.name))
                    continue
                if e.rule == "default":
                    dims[i] = f"{e.name}_{d}"
                    sizes.setdefault(dims[i], (n, e.name))
                    continue
                # the file's own names contradict each other (or the file is damaged)
                raise OmConventionError(
                    f"dimension {d!r} has length {prev[0]} in {prev[1]!r} but {n} in "
                    f"{e.name!r} (group {self.node.path or '/'!r}); pass dimension_names=... "
                    "to rename, or open the arrays separately with group=...",
                    source=self.source,
                )
            e.dims = tuple(dims)

    def _shape(self, e: _Entry) -> tuple[int, ...]:
        if e.node.kind == "scalar":
            return ()
        if e.node.ndim == 2 and self.legacy_grid is not None:
            ny, nx = self.legacy_grid
            return (ny, nx, e.node.shape[1])
        return tuple(e.node.shape)

    # -- describe

    def describe(self) -> tuple[dict[str, VariableDescription], dict[str, Any], set[str]]:
        """Return (variables, dataset attrs, names to make coordinates); reads no data."""
        entries = _collect_entries(self.f, self.chain, self.root_name)
        if self.legacy_grid is not None and self.layout != conv.Layout.LEGACY:
            raise self._bad("legacy_grid= applies to legacy (v1/v2) files only")
        self._assign_dims(entries)
        node = self.node
        variables: dict[str, VariableDescription] = {}
        coord_names: set[str] = set()

        # Scalars of the dataset node: global attributes of a group; the root
        # array's own attributes otherwise. valid_time/forecast_reference_time
        # become coordinates.
        node_attrs = conv.variable_attrs(node)
        coord_scalars = {
            k: node_attrs.pop(k)
            for k in conv.COORDINATE_SCALARS
            if k in node_attrs and _is_number(node_attrs[k])
        }
        global_attrs = node_attrs if node.kind == "group" else {}

        all_dims = {d for e in entries for d in e.dims}
        expand_time = (
            conv.VALID_TIME in coord_scalars
            and self.spatial_time == "dimension"
            and conv.TIME not in all_dims
            and conv.TIME not in {e.name for e in entries}
        )
        for e in entries:
            if e.name in self.drop:
                continue
            arr = e.node
            if arr.kind == "scalar":
                variables[e.name] = _scalar_description(e)
                continue
            attrs = dict(node_attrs) if arr is node else conv.variable_attrs(arr)
            is_coord_var = e.dims == (e.name,)
            lead = 1 if expand_time and not is_coord_var else 0
            dims = (conv.TIME,) * lead + e.dims
            legacy = self.legacy_grid if arr.ndim == 2 else None
            variables[e.name] = _array_description(e, dims, attrs, lead=lead, legacy_grid=legacy)
            if e.name in ("lat", "lon", "latitude", "longitude") and not is_coord_var:
                if arr.ndim <= 2:
                    coord_names.add(e.name)

        # valid_time -> `time` (length-1 dimension or scalar), forecast_reference_time scalar.
        if conv.VALID_TIME in coord_scalars:
            value = coord_scalars[conv.VALID_TIME]
            name = conv.TIME if conv.TIME not in variables else conv.VALID_TIME
            attrs = {"standard_name": "time", "long_name": "valid time"}
            dims = (name,) if expand_time else ()
            values = np.array([value]) if expand_time else np.array(value)
            variables[name] = self._time(name, dims, values, attrs, conv.VALID_TIME)
            coord_names.add(name)
        if conv.FORECAST_REFERENCE_TIME in coord_scalars:
            name = conv.FORECAST_REFERENCE_TIME
            attrs = {"standard_name": "forecast_reference_time"}
            values = np.array(coord_scalars[name])
            variables[name] = self._time(name, (), values, attrs, name)
            coord_names.add(name)

        self._add_rolling_time(node, entries, variables)
        if self.decode_grid:
            self._add_grid(node, entries, variables)
        for name in self.drop:
            variables.pop(name, None)
        return variables, global_attrs, coord_names

    def _time(
        self, name: str, dims: tuple[str, ...], seconds: np.ndarray, attrs: dict, scalar: str
    ) -> VariableDescription:
        """A Unix-seconds variable made from the dataset node's scalar ``scalar``."""
        return VariableDescription(
            name,
            dims,
            seconds.shape,
            {**attrs, **conv.unix_time_attrs()},
            {},
            node=_first_attr_scalar(self.node, scalar),
            values=seconds,
            unix_time=True,
        )

    def _add_rolling_time(self, node: OmNode, entries: list[_Entry], variables: dict) -> None:
        if self.layout != conv.Layout.ROLLING or conv.TIME in variables or node.kind != "array":
            return
        entry = next((e for e in entries if e.node is node), None)
        if entry is None or not entry.dims or entry.dims[-1] != conv.TIME:
            return
        axis = conv.rolling_time_axis(node.attrs, node.shape[-1])
        if axis is not None:
            attrs = conv.unix_time_attrs()
            variables[conv.TIME] = VariableDescription(
                conv.TIME, (conv.TIME,), axis.shape, attrs, {}, values=axis, unix_time=True
            )

    def _add_grid(self, node: OmNode, entries: list[_Entry], variables: dict) -> None:
        crs = None
        for n in (node, *self.outer):
            crs = n.attrs.get("crs_wkt")
            if crs is not None:
                break
        if conv.regular_grid_bbox(crs) is None:
            return
        om_layout = self.layout != conv.Layout.GENERIC
        found: set[tuple[str, str, int, int]] = set()
        for e in entries:
            var = variables.get(e.name)
            if var is None:
                continue
            if var.ndim < 2:
                continue
            offset = var.ndim - len(e.dims)  # leading valid-time axis
            ydim, xdim = var.dims[offset], var.dims[offset + 1]
            if not om_layout and not (
                ydim in ("lat", "latitude", "y") and xdim in ("lon", "longitude", "x")
            ):
                continue
            found.add((ydim, xdim, var.shape[offset], var.shape[offset + 1]))
        if len(found) != 1:
            return
        ydim, xdim, ny, nx = found.pop()
        if ydim in variables or xdim in variables:
            return
        grid = conv.regular_grid_coordinates(crs, ny, nx)
        if grid is None:
            return
        lat, lon = grid
        for dim, values, attrs in (
            (ydim, lat, conv.LATITUDE_ATTRS),
            (xdim, lon, conv.LONGITUDE_ATTRS),
        ):
            variables[dim] = VariableDescription(
                dim, (dim,), values.shape, dict(attrs), {}, values=values
            )


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(
        v, (bool, np.bool_)
    )


# --------------------------------------------------------------------------- variables


def _variable(desc: VariableDescription, decode_unix_time: bool) -> Variable:
    """The xarray Variable of a description: lazy for arrays, small coordinates read now."""
    node = desc.node
    attrs, enc = dict(desc.attrs), dict(desc.encoding)
    if desc.values is not None:
        if desc.unix_time:
            return _time_variable(desc.dims, desc.values, attrs, enc, decode_unix_time)
        return Variable(desc.dims, desc.values, attrs, enc)
    assert isinstance(node, OmArray)
    data: Any
    if desc.legacy_grid is not None:
        data = OmLazilyIndexedArray(LegacyGridArray(node, *desc.legacy_grid))
    elif desc.dims == (desc.name,) and not desc.lead and node.size <= EAGER_COORDINATE_SIZE:
        # xarray builds a pandas index from it anyway; the OM chunking is kept
        # in "chunks" but does not chunk an in-memory index.
        enc.pop(conv.ENCODING_PREFERRED_CHUNKS, None)
        data = node.read(...)
        if desc.unix_time:
            return _time_variable(desc.dims, data, attrs, enc, decode_unix_time)
    else:
        data = OmLazilyIndexedArray(OmBackendArray(node, desc.lead))
    return Variable(desc.dims, data, attrs, encoding=enc)


def _time_variable(
    dims: tuple[str, ...], seconds: np.ndarray, attrs: dict, encoding: dict, decode: bool
) -> Variable:
    """A Unix-seconds variable (``attrs`` carry its CF units): decoded here or left to CF."""
    whole = seconds.dtype.kind in "iu" or (
        seconds.dtype.kind == "f" and bool(np.all(np.isfinite(seconds) & (seconds % 1 == 0)))
    )
    if not (decode and whole):
        return Variable(dims, seconds, attrs, encoding)
    # What xarray's CF decoding gives, without its per-variable cost
    # (~1 ms per file, the bulk of open time for many small files).
    cf = conv.unix_time_attrs()
    attrs = {k: v for k, v in attrs.items() if k not in cf}
    encoding = {**encoding, **cf, "dtype": seconds.dtype}
    # fastpath: the values already are datetime64[ns]; xarray's
    # normalisation would round-trip them through pandas.
    values = conv.unix_seconds_to_datetime64(seconds)
    if values.ndim == 1:
        # A ready pandas index is reused as the dimension's index.
        return Variable(dims, pd.DatetimeIndex(values), attrs, encoding)
    return Variable(dims, values, attrs, encoding, fastpath=True)


def _dataset_parts(
    desc: GroupDescription, decode_unix_time: bool
) -> tuple[dict[str, Variable], dict[str, Any], set[str]]:
    variables = {name: _variable(v, decode_unix_time) for name, v in desc.variables.items()}
    return variables, dict(desc.attrs), set(desc.coord_names)


# --------------------------------------------------------------------------- entrypoint


def _open_file(
    filename_or_obj: Any, storage_options: dict | None, io_size_max: int, io_size_merge: int
) -> OmFile:
    if isinstance(filename_or_obj, OmFile):
        return filename_or_obj
    if isinstance(filename_or_obj, str) and not conv_is_url(filename_or_obj):
        filename_or_obj = os.path.expanduser(filename_or_obj)
    return OmFile(
        filename_or_obj,
        storage_options=storage_options,
        io_size_max=io_size_max,
        io_size_merge=io_size_merge,
    )


def conv_is_url(s: str) -> bool:
    return "://" in s or "::" in s


def _source_label(filename_or_obj: Any, f: OmFile) -> str | None:
    if isinstance(filename_or_obj, (str, os.PathLike)):
        return os.fspath(filename_or_obj)
    name = getattr(filename_or_obj, "name", None) or getattr(filename_or_obj, "path", None)
    if isinstance(name, (str, os.PathLike)):
        return os.fspath(name)
    label = f.source_name
    return label if isinstance(label, str) and not label.startswith("<") else None


def _describe(filename_or_obj: Any) -> str:
    if isinstance(filename_or_obj, OmFile):
        return filename_or_obj.source_name
    if isinstance(filename_or_obj, (str, os.PathLike)):
        return os.fspath(filename_or_obj)
    return type(filename_or_obj).__name__


def _drop_set(drop_variables: str | Iterable[str] | None) -> set[str]:
    if drop_variables is None:
        return set()
    if isinstance(drop_variables, str):
        return {drop_variables}
    return set(drop_variables)


class OmBackendEntrypoint(BackendEntrypoint):
    """xarray backend for OM files (v3 and legacy v1/v2).

    Use ``xr.open_dataset(path, engine="xarray_om")``; ``engine="om"`` works
    too unless another package (``omfiles``) also registers that name.
    Also ``xr.open_mfdataset(..., engine="xarray_om")``,
    ``xr.open_datatree(..., engine="xarray_om")`` and ``xr.open_groups``.

    See :meth:`open_dataset` for the backend-specific keywords.
    """

    description = "Open-Meteo OM files (v3 and legacy) with xarray-om: lazy, chunk-aligned reads"
    url = "https://github.com/open-meteo/om-file-format"
    supports_groups = True

    def __init__(self) -> None:
        _warn_engine_clash_once()

    # -- detection

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """True for local files / file-likes with an OM trailer or legacy header, URLs ending in .om."""
        try:
            return _guess_can_open(filename_or_obj)
        except Exception:
            return False

    # -- open

    def open_dataset(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        mask_and_scale: bool | Mapping[str, bool] = True,
        decode_times: Any = True,
        concat_characters: bool | Mapping[str, bool] = True,
        decode_coords: bool | str = True,
        drop_variables: str | Iterable[str] | None = None,
        use_cftime: bool | Mapping[str, bool] | None = None,
        decode_timedelta: Any = None,
        group: str | None = None,
        storage_options: dict | None = None,
        dimension_names: Sequence[str] | Mapping[str, Sequence[str]] | str | None = None,
        legacy_grid: tuple[int, int] | None = None,
        variable_name: str | None = None,
        spatial_time: str = "dimension",
        decode_grid: bool = True,
        io_size_max: int = 65536,
        io_size_merge: int = 512,
    ) -> Dataset:
        """Open an OM file (or one of its groups) as a lazy :class:`xarray.Dataset`.

        Parameters
        ----------
        filename_or_obj
            Local path, fsspec URL (``s3://...``; with ``storage_options``),
            binary file-like object, ``bytes``, or an opened
            :class:`~xarray_om.format.reader.OmFile`.
        mask_and_scale, decode_times, concat_characters, decode_coords, use_cftime, decode_timedelta
            CF decoding options, as in :func:`xarray.open_dataset`. They act on
            CF attributes (scalar children such as ``_FillValue``, ``units``);
            the OM record's own scale factor and offset are applied while
            decoding chunks and are never CF attributes.
        drop_variables
            Variable names to leave out (no data is read for them).
        group
            Path of a group (``"a/b"``) or array to open instead of the root.
        storage_options
            fsspec options for URLs (e.g. ``{"anon": True}``).
        dimension_names
            Override: a sequence (or space-separated string) of names for every
            array of that rank (dimensions renamed this way are renamed in the
            other arrays too), or ``{variable: names}``.
        legacy_grid
            ``(ny, nx)``: present a legacy 2-D ``[ny*nx, time]`` file as
            ``(lat, lon, time)`` (needs ``ny * nx`` locations exactly).
        variable_name
            Name of an unnamed root array; by default the file stem
            (``temperature_2m.om``) or, for data/ files (``chunk_N.om``,
            ``year_YYYY.om``...), the parent folder; ``"data"`` without a path.
        spatial_time
            For files with a ``valid_time`` scalar (Open-Meteo spatial files):
            ``"dimension"`` (default) gives the variables a leading length-1
            ``time`` dimension so that ``open_mfdataset`` concatenates files
            along time; ``"scalar"`` makes ``time`` a scalar coordinate.
        decode_grid
            Build 1-D latitude/longitude coordinates from a regular-grid
            ``crs_wkt`` BBOX (default True).
        io_size_max, io_size_merge
            Read planning of the format layer: the largest merged read and the
            largest gap bridged between needed byte ranges.

        Notes
        -----
        Each variable's ``encoding`` holds ``preferred_chunks`` (OM chunk
        shape per dimension), ``chunks``, ``compression``,
        ``om_scale_factor`` and ``om_add_offset`` (see
        :mod:`xarray_om.conventions`). Only metadata and small 1-D coordinate
        arrays are read at open time.
        """
        # Every keyword of the signature, by name (xarray needs them spelled out there).
        return _open_groups(recursive=False, **locals())["/"]

    # -- groups

    def open_groups_as_dict(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        mask_and_scale: bool | Mapping[str, bool] = True,
        decode_times: Any = True,
        concat_characters: bool | Mapping[str, bool] = True,
        decode_coords: bool | str = True,
        drop_variables: str | Iterable[str] | None = None,
        use_cftime: bool | Mapping[str, bool] | None = None,
        decode_timedelta: Any = None,
        group: str | None = None,
        storage_options: dict | None = None,
        dimension_names: Sequence[str] | Mapping[str, Sequence[str]] | str | None = None,
        legacy_grid: tuple[int, int] | None = None,
        variable_name: str | None = None,
        spatial_time: str = "dimension",
        decode_grid: bool = True,
        io_size_max: int = 65536,
        io_size_merge: int = 512,
    ) -> dict[str, Dataset]:
        """Every group of the file (or below ``group``) as ``{"/path": Dataset}``.

        Each group's Dataset holds its arrays (and the arrays attached to
        them); groups are independent, so their dimensions need not align.
        Keywords as in :meth:`open_dataset`; ``dimension_names`` and
        ``legacy_grid`` apply to the base group only. Closing the root
        (``"/"``) Dataset closes the file.
        """
        return _open_groups(recursive=True, **locals())

    def open_datatree(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        mask_and_scale: bool | Mapping[str, bool] = True,
        decode_times: Any = True,
        concat_characters: bool | Mapping[str, bool] = True,
        decode_coords: bool | str = True,
        drop_variables: str | Iterable[str] | None = None,
        use_cftime: bool | Mapping[str, bool] | None = None,
        decode_timedelta: Any = None,
        group: str | None = None,
        storage_options: dict | None = None,
        dimension_names: Sequence[str] | Mapping[str, Sequence[str]] | str | None = None,
        legacy_grid: tuple[int, int] | None = None,
        variable_name: str | None = None,
        spatial_time: str = "dimension",
        decode_grid: bool = True,
        io_size_max: int = 65536,
        io_size_merge: int = 512,
    ) -> DataTree:
        """The file's group hierarchy as a :class:`xarray.DataTree`.

        Raises ValueError naming :func:`xarray.open_groups` when a group's
        dimensions or coordinates do not align with its parent's (DataTree
        requires that; ``open_groups`` does not).
        """
        groups = self.open_groups_as_dict(
            filename_or_obj,
            mask_and_scale=mask_and_scale,
            decode_times=decode_times,
            concat_characters=concat_characters,
            decode_coords=decode_coords,
            drop_variables=drop_variables,
            use_cftime=use_cftime,
            decode_timedelta=decode_timedelta,
            group=group,
            storage_options=storage_options,
            dimension_names=dimension_names,
            legacy_grid=legacy_grid,
            variable_name=variable_name,
            spatial_time=spatial_time,
            decode_grid=decode_grid,
            io_size_max=io_size_max,
            io_size_merge=io_size_merge,
        )
        try:
            tree = DataTree.from_dict(groups)
        except ValueError as exc:
            for ds in groups.values():
                ds.close()
            raise OmConventionError(
                f"its groups do not form a valid DataTree ({exc}). Open them independently "
                "with xr.open_groups(..., engine='xarray_om'), or one at a time with "
                "xr.open_dataset(..., group=...).",
                source=_describe(filename_or_obj),
            ) from exc
        tree.set_close(groups["/"]._close)
        return tree


# Spelled out once so that xarray does not inspect the signature on every open.
OmBackendEntrypoint.open_dataset_parameters = tuple(
    name
    for name in inspect.signature(OmBackendEntrypoint.open_dataset).parameters
    if name != "self"
)


# Keywords of the entrypoint's open_* methods, by the step that uses them.
_DESCRIBE_KEYWORDS = (
    "group",
    "variable_name",
    "dimension_names",
    "legacy_grid",
    "spatial_time",
    "decode_grid",
)
_DECODE_KEYWORDS = (
    "mask_and_scale",
    "decode_times",
    "concat_characters",
    "decode_coords",
    "drop_variables",
    "use_cftime",
    "decode_timedelta",
)


def _open_groups(
    filename_or_obj: Any,
    *,
    recursive: bool,
    storage_options: dict | None,
    io_size_max: int,
    io_size_merge: int,
    **kwargs: Any,
) -> dict[str, Dataset]:
    """Open, describe and CF-decode the base group (and with ``recursive`` every group).

    ``kwargs``: the keywords of :meth:`OmBackendEntrypoint.open_dataset` (and
    ``self``, ignored).
    """
    unknown = set(kwargs) - {"self", *_DESCRIBE_KEYWORDS, *_DECODE_KEYWORDS}
    if unknown:  # a keyword added to the signature but not here
        raise TypeError(f"unexpected keywords {sorted(unknown)}")
    describe = {k: kwargs[k] for k in _DESCRIBE_KEYWORDS}
    decode = {k: kwargs[k] for k in _DECODE_KEYWORDS}
    f = _open_file(filename_or_obj, storage_options, io_size_max, io_size_merge)
    try:
        descriptions = describe_groups(
            f,
            recursive=recursive,
            source_name=_source_label(filename_or_obj, f),
            drop_variables=_drop_set(decode["drop_variables"]),
            **describe,
        )
        unix = decode["decode_times"] is True and not decode["use_cftime"]
        out = {d.path: _decode(*_dataset_parts(d, unix), **decode) for d in descriptions}
    except BaseException:
        if f is not filename_or_obj:
            f.close()
        raise
    if f is not filename_or_obj:
        # Closing the base group's Dataset closes the file.
        out["/"].set_close(f.close)
    return out


def _decode(
    variables: dict[str, Variable],
    attrs: dict[str, Any],
    coords: set[str],
    *,
    mask_and_scale: Any,
    decode_times: Any,
    concat_characters: Any,
    decode_coords: Any,
    drop_variables: Any,
    use_cftime: Any,
    decode_timedelta: Any,
) -> Dataset:
    options = (mask_and_scale, decode_times, concat_characters, decode_timedelta, use_cftime)
    if _nothing_to_decode(variables, attrs, options):
        # What decode_cf_variables returns for such variables (checked against
        # it in the tests), without its ~40 us per file.
        for var in variables.values():
            if var.dtype.kind not in "Mm":
                var.encoding.setdefault("dtype", var.dtype)
        return _dataset(variables, set(coords), attrs)
    vars_, attrs_, coord_names = xr_conventions.decode_cf_variables(
        variables,
        attrs,
        mask_and_scale=mask_and_scale,
        decode_times=decode_times,
        concat_characters=concat_characters,
        decode_coords=decode_coords,
        drop_variables=drop_variables,
        use_cftime=use_cftime,
        decode_timedelta=decode_timedelta,
    )
    return _dataset(dict(vars_), set(coord_names) | coords, attrs_)


#: Attributes that CF decoding acts on (masking, scaling, times, strings,
#: booleans, coordinates and the ``decode_coords="all"`` references).
_CF_DECODED_ATTRS = frozenset(
    {
        "_FillValue",
        "missing_value",
        "scale_factor",
        "add_offset",
        "_Unsigned",
        "dtype",
        "calendar",
        "_Encoding",
        "coordinates",
        "grid_mapping",
        "bounds",
        "climatology",
        "cell_measures",
        "formula_terms",
        "ancillary_variables",
        "geometry",
        "node_coordinates",
    }
)
#: ``units`` values CF decoding may read as times or durations (any "since" too).
_TIME_UNIT_WORDS = frozenset(
    {
        "day",
        "days",
        "d",
        "hour",
        "hours",
        "h",
        "hr",
        "minute",
        "minutes",
        "min",
        "second",
        "seconds",
        "s",
        "sec",
        "millisecond",
        "milliseconds",
        "ms",
        "microsecond",
        "microseconds",
        "us",
        "nanosecond",
        "nanoseconds",
        "ns",
    }
)


def _nothing_to_decode(variables: dict[str, Variable], attrs: dict, options: tuple) -> bool:
    """True when CF decoding would leave every variable as it is (numbers, no CF attributes).

    Plain bool/None options only (mappings and coder objects go the general way),
    native-endian numeric or datetime data, no attribute CF decoding acts on and
    ``units`` that cannot be a time unit; no ``coordinates`` dataset attribute.
    """
    if any(o is not None and not isinstance(o, bool) for o in options):
        return False
    if options[-1] is not None:  # use_cftime: xarray warns about it; keep that
        return False
    if "coordinates" in attrs:
        return False
    for var in variables.values():
        dtype = var.dtype
        if dtype.kind in "Mm":
            continue
        if dtype.kind not in "iuf" or not dtype.isnative:
            return False
        a = var.attrs
        if not a:
            continue
        if not _CF_DECODED_ATTRS.isdisjoint(a):
            return False
        units = a.get("units")
        if units is not None:
            if not isinstance(units, str):
                return False
            u = units.strip().lower()
            if "since" in u or u in _TIME_UNIT_WORDS:
                return False
    return True


def _dataset(
    variables: dict[str, Variable], coord_names: set[str], attrs: dict, *, direct: bool = True
) -> Dataset:
    """A Dataset of decoded variables; dimension coordinates get their pandas index.

    The usual case (consistent sizes, dimension coordinates 1-D along their
    own dimension) skips ``Dataset.__init__``'s merge and alignment (~120 us
    per file, the largest part of opening a small file); the result is the
    same (the tests compare both).
    """
    construct = getattr(Dataset, "_construct_direct", None) if direct else None
    dims: dict[str, int] = {}
    ok = construct is not None
    if ok:
        for var in variables.values():
            for d, n in zip(var.dims, var.shape, strict=True):
                if dims.setdefault(d, n) != n:
                    ok = False
        for name in dims.keys() & variables.keys():
            if variables[name].dims != (name,) or variables[name].dtype.kind in "OSUc":
                ok = False
    if not ok:
        # Coordinates go in directly: Dataset.set_coords would copy the dataset.
        coord_vars = {k: v for k, v in variables.items() if k in coord_names}
        data_vars = {k: v for k, v in variables.items() if k not in coord_names}
        return Dataset(data_vars, coords=coord_vars, attrs=attrs)
    from xarray.core.indexes import PandasIndex

    indexes: dict[str, Any] = {}
    out: dict[str, Variable] = {}
    # Dataset() orders coordinates after data variables.
    names = [k for k in variables if k not in coord_names and k not in dims]
    names += [k for k in variables if k not in names]
    for name in names:
        var = variables[name]
        if name in dims:
            index = PandasIndex.from_variables({name: var}, options={})
            out.update(index.create_variables({name: var}))
            indexes[name] = index
        else:
            out[name] = var
    coords = {k for k in coord_names if k in out} | indexes.keys()
    return construct(out, coords, dims, attrs, indexes)


# --------------------------------------------------------------------------- guess_can_open


def _magic_ok(head: bytes, tail: bytes) -> bool:
    if len(tail) >= 24 and tail[-24:-21] == _TRAILER_MAGIC:
        return True
    return len(head) >= 3 and head[:2] == b"OM" and head[2] in (1, 2)


def _guess_can_open(obj: Any) -> bool:
    if isinstance(obj, OmFile):
        return True
    if isinstance(obj, (bytes, bytearray, memoryview)):
        b = bytes(obj[:3]) if not isinstance(obj, memoryview) else obj[:3].tobytes()
        t = bytes(obj[-24:]) if not isinstance(obj, memoryview) else obj[-24:].tobytes()
        return _magic_ok(b, t)
    if isinstance(obj, (str, os.PathLike)):
        path = os.fspath(obj)
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if conv_is_url(path) and not path.startswith("file://"):
            return path.split("?", 1)[0].rstrip("/").lower().endswith(".om")
        if path.startswith("file://"):
            path = path[len("file://") :]
        path = os.path.expanduser(path)
        if not os.path.isfile(path):
            return False
        with open(path, "rb") as fh:
            head = fh.read(3)
            size = fh.seek(0, os.SEEK_END)
            if size < 24:
                return _magic_ok(head, b"")
            fh.seek(size - 24)
            return _magic_ok(head, fh.read(24))
    if hasattr(obj, "read") and hasattr(obj, "seek"):
        pos = obj.tell()
        try:
            obj.seek(0)
            head = obj.read(3)
            size = obj.seek(0, os.SEEK_END)
            tail = b""
            if size >= 24:
                obj.seek(size - 24)
                tail = obj.read(24)
            return _magic_ok(bytes(head), bytes(tail))
        finally:
            obj.seek(pos)
    return False
