"""An OM file described in Zarr v3 terms: metadata documents and chunk references.

This module holds what the store view (:mod:`xarray_om.zarr.store`) and the
virtual-reference exports share:

* :func:`zarr_nodes` -- the Zarr hierarchy of an OM file: which groups and
  arrays exist, their names, dimension names and attributes, as the xarray
  backend describes them (:func:`xarray_om.backend.describe_groups`);
* :class:`ZarrView` / :func:`build_view` -- ``zarr.json`` documents (the root
  one with inline consolidated metadata) and the chunk-key -> OM chunk mapping;
* :func:`chunk_manifest`, :func:`om_manifest`, :func:`om_references` -- chunk
  references ``(path, offset, length)`` per chunk plus the codec, so that
  VirtualiZarr-style tools combine OM files without copying bytes;
* :class:`OmParser` -- a VirtualiZarr parser (``open_virtual_dataset(url,
  registry=..., parser=OmParser())``).

Every array is exposed with the single codec ``xarray_om.om``
(:class:`~xarray_om.zarr.codec.OmChunkCodec`), its chunk grid is the OM chunk
shape and a chunk key holds exactly the OM chunk's byte range, so a chunk
reference and the store view read the same bytes.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from zarr.core.buffer import default_buffer_prototype
from zarr.core.group import ConsolidatedMetadata, GroupMetadata
from zarr.core.metadata.v3 import ArrayV3Metadata
from zarr.dtype import parse_data_type

from ..backend import GroupDescription, VariableDescription, describe_groups
from ..errors import OmFormatError
from ..format.reader import OmArray, OmFile, OmGroup, OmScalar
from .codec import OmChunkCodec

__all__ = [
    "ArrayNode",
    "GroupNode",
    "OmParser",
    "ZarrView",
    "build_view",
    "chunk_manifest",
    "om_manifest",
    "om_references",
    "zarr_nodes",
]

# --------------------------------------------------------------------------- hierarchy


@dataclass
class GroupNode:
    """A Zarr group of the view."""

    path: str
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass
class ArrayNode:
    """A Zarr array of the view: an OM array, or small values made up from the file.

    Exactly one of ``om`` (an OM array, chunks read from the file) and
    ``values`` (e.g. a coordinate built from the file's metadata, stored
    uncompressed as one chunk) is set. ``scalar`` is the scalar record whose
    value ``values`` holds, when there is one: its bytes in the file are then
    the array's only chunk (little-endian, no compression), which lets chunk
    references point to it.
    """

    path: str
    dimension_names: tuple[str, ...]
    attributes: dict[str, Any]
    om: OmArray | None = None
    lead: int = 0  # leading length-1 axes in front of the OM array's own
    values: np.ndarray | None = None
    scalar: OmScalar | None = None

    def scalar_range(self) -> tuple[int, int] | None:
        """Byte range ``[start, stop)`` of ``scalar``'s value in the file (spec 3.4)."""
        sc = self.scalar
        if sc is None:
            return None
        start = sc.record_offset + 8 + 16 * len(sc.children)
        return start, start + self.values.dtype.itemsize

    @property
    def shape(self) -> tuple[int, ...]:
        if self.om is not None:
            return (1,) * self.lead + tuple(self.om.shape)
        return tuple(self.values.shape)

    @property
    def chunks(self) -> tuple[int, ...]:
        if self.om is not None:
            return (1,) * self.lead + tuple(self.om.chunks)
        return tuple(max(s, 1) for s in self.values.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.om.dtype if self.om is not None else self.values.dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def chunk_grid(self) -> tuple[int, ...]:
        """Number of chunks along each dimension."""
        if self.om is not None:
            return (1,) * self.lead + tuple(self.om.chunk_grid)
        return (1,) * self.values.ndim


def _join(parent: str, name: str) -> str:
    return f"{parent}/{name}" if parent else name


def _array_node(gpath: str, var: VariableDescription) -> ArrayNode:
    path = _join(gpath, var.name)
    attrs = dict(var.attrs)
    if isinstance(var.node, OmArray):
        return ArrayNode(path, var.dims, attrs, om=var.node, lead=var.lead)
    # Made from metadata or a scalar record: served from memory; chunk
    # references point to the scalar record's value bytes when there is one.
    scalar = var.node if isinstance(var.node, OmScalar) else None
    return ArrayNode(path, var.dims, attrs, values=np.asarray(var.values), scalar=scalar)


def _group_nodes(group: GroupDescription) -> tuple[GroupNode, list[ArrayNode]]:
    gpath = group.path.strip("/")
    arrays = [_array_node(gpath, v) for v in group.variables.values()]
    attrs = dict(group.attrs)
    # Coordinates that are not dimension coordinates (scalar times, 2-D lat/lon)
    # are marked the CF way; xarray's decoding pops this attribute again.
    extra = sorted(
        n for n, v in group.variables.items() if n in group.coord_names and v.dims != (n,)
    )
    listed = str(attrs.get("coordinates", "")).split()
    listed += [n for n in extra if n not in listed]
    if listed:
        attrs["coordinates"] = " ".join(listed)
    return GroupNode(gpath, attrs), arrays


def zarr_nodes(file: OmFile) -> tuple[list[GroupNode], list[ArrayNode]]:
    """The Zarr groups and arrays presenting ``file``.

    The hierarchy is the one ``xr.open_datatree(p, engine="xarray_om")`` gives
    (from :func:`~xarray_om.backend.describe_groups`): one Zarr group per OM
    group (the root is always a group; an array root's variable sits in it),
    holding the variables the backend makes of that group -- same names,
    dimension names, attributes (before CF decoding, so xarray's decoding of
    the Zarr view gives the same result) and the coordinates the backend
    derives from metadata (valid time, regular-grid latitude/longitude), which
    the view serves from memory. Arrays read from the file use the
    ``xarray_om.om`` codec and chunk keys map to OM chunks; the OM
    ``scale_factor``/``add_offset`` are applied by the codec and never become
    attributes. Non-dimension coordinates are listed in the group's
    ``coordinates`` attribute. A group whose dimension sizes the backend
    rejects is still presented, named by the conventions alone (with a
    warning).
    """
    root = file.root
    if not isinstance(root, (OmArray, OmGroup)):
        raise OmFormatError(
            "the root record is a scalar: the file holds no array or group to present",
            source=file.source_name,
        )
    described = describe_groups(file, naming="auto")
    groups: list[GroupNode] = []
    arrays: list[ArrayNode] = []
    for group in described:
        if group.problem is not None:
            warnings.warn(
                f"{file.source_name}: group {group.path!r} presented without the xarray "
                f"naming rules ({group.problem})",
                RuntimeWarning,
                stacklevel=2,
            )
        g, a = _group_nodes(group)
        groups.append(g)
        arrays.extend(a)
    return _drop_shadowed_groups(file, groups, arrays)


def _drop_shadowed_groups(
    file: OmFile, groups: list[GroupNode], arrays: list[ArrayNode]
) -> tuple[list[GroupNode], list[ArrayNode]]:
    """A Zarr path is either an array or a group: a variable wins over a same-named group."""
    taken = {a.path for a in arrays}
    shadowed = [g.path for g in groups if g.path in taken]
    if not shadowed:
        return groups, arrays
    warnings.warn(
        f"{file.source_name}: groups {shadowed} are left out of the Zarr view: a variable "
        "of their parent group has the same name",
        RuntimeWarning,
        stacklevel=3,
    )

    def below(path: str) -> bool:
        return any(path.startswith(s + "/") for s in shadowed)

    groups = [g for g in groups if g.path not in shadowed and not below(g.path)]
    arrays = [a for a in arrays if not below(a.path)]
    return groups, arrays


# --------------------------------------------------------------------------- metadata


def _json_value(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, dict):
        return {k: _json_value(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_value(x) for x in v]
    return v


def codec_for(arr: OmArray) -> OmChunkCodec:
    """The codec that decodes the chunks of ``arr``.

    Raises OmFormatError for a non-finite scale_factor/add_offset: the format
    accepts them (every value then decodes to NaN or garbage) but JSON cannot
    carry them, so such a file cannot be described to zarr.
    """
    sf, ao = float(arr.scale_factor), float(arr.add_offset)
    if not (np.isfinite(sf) and np.isfinite(ao)):
        raise OmFormatError(
            f"array {arr.path!r} has a non-finite scale_factor/add_offset ({sf}, {ao}); "
            "the Zarr view cannot describe it",
            source=arr.file.source_name,
        )
    return OmChunkCodec(
        compression=arr.compression,
        scale_factor=float(arr.scale_factor),
        add_offset=float(arr.add_offset),
    )


def _fill_value(dtype: np.dtype) -> Any:
    # Every chunk exists, so the fill value is never used for data; NaN for floats
    # matches what OM uses for missing values.
    return float("nan") if dtype.kind == "f" else 0


def array_metadata(node: ArrayNode) -> ArrayV3Metadata:
    """Zarr v3 metadata of one array of the view."""
    dtype = np.dtype(node.dtype).newbyteorder("<") if node.dtype.itemsize > 1 else node.dtype
    if node.om is not None:
        codecs = [codec_for(node.om).to_dict()]
    else:
        codecs = [{"name": "bytes", "configuration": {"endian": "little"}}]
    return ArrayV3Metadata(
        shape=node.shape,
        data_type=parse_data_type(dtype, zarr_format=3),
        chunk_grid={"name": "regular", "configuration": {"chunk_shape": node.chunks}},
        chunk_key_encoding={"name": "default", "configuration": {"separator": "/"}},
        fill_value=_fill_value(np.dtype(node.dtype)),
        codecs=codecs,
        attributes=_json_value(node.attributes),
        dimension_names=node.dimension_names,
    )


def _doc(meta: ArrayV3Metadata | GroupMetadata) -> bytes:
    raw = meta.to_buffer_dict(default_buffer_prototype())["zarr.json"].to_bytes()
    # zarr pretty-prints; the view serves the same document compactly.
    return json.dumps(json.loads(raw), separators=(",", ":"), allow_nan=True).encode()


# --------------------------------------------------------------------------- view


_CHUNK_TAIL = re.compile(r"/c(?:/(?:0|[1-9][0-9]*))+$")
_DIGITS = re.compile(r"^(?:0|[1-9][0-9]*)$")


class ZarrView:
    """``zarr.json`` documents and the chunk keys of an OM file's Zarr hierarchy."""

    def __init__(self, groups: list[GroupNode], arrays: list[ArrayNode]) -> None:
        self.groups = {g.path: g for g in groups}
        self.arrays = {a.path: a for a in arrays}
        self.metadata: dict[str, ArrayV3Metadata | GroupMetadata] = {}
        for a in arrays:
            self.metadata[a.path] = array_metadata(a)
        # Groups bottom-up, each carrying its members' metadata (nested, as zarr
        # keeps consolidated metadata in memory).
        children: dict[str, dict[str, Any]] = {p: {} for p in self.groups}
        for a in arrays:
            parent, _, name = a.path.rpartition("/")
            children[parent][name] = self.metadata[a.path]
        for path in sorted(self.groups, key=lambda p: -p.count("/") if p else 1):
            meta = GroupMetadata(
                attributes=_json_value(self.groups[path].attributes),
                consolidated_metadata=ConsolidatedMetadata(metadata=children[path]),
            )
            self.metadata[path] = meta
            if path:
                parent, _, name = path.rpartition("/")
                children[parent][name] = meta
        self.docs: dict[str, bytes] = {
            _join(path, "zarr.json"): _doc(meta) for path, meta in self.metadata.items()
        }
        self._values_chunks: dict[str, bytes] = {}
        for a in arrays:
            if a.values is not None:
                key = _join(a.path, "c" + "/0" * a.values.ndim)
                self._values_chunks[key] = np.ascontiguousarray(
                    a.values, dtype=np.dtype(a.dtype).newbyteorder("<")
                ).tobytes()
        self.docs.update(self._values_chunks)

    # -- keys

    def chunk(self, key: str) -> tuple[OmArray, int] | None:
        """(OM array, chunk index) of an OM chunk key, or None."""
        m = _CHUNK_TAIL.search(key)
        if m is None:
            return None
        node = self.arrays.get(key[: m.start()])
        if node is None or node.om is None:
            return None
        coords = tuple(int(p) for p in key[m.start() + 3 :].split("/"))
        grid = node.chunk_grid
        if len(coords) != len(grid) or any(k >= n for k, n in zip(coords, grid, strict=True)):
            return None
        return node.om, node.om.chunk_index(coords[node.lead :])

    def _chunk_keys(self, node: ArrayNode, under: tuple[int, ...] = ()) -> Iterator[str]:
        if node.om is None:
            return
        base = _join(node.path, "c")
        lead = "".join(f"/{k}" for k in under)
        for idx in np.ndindex(*node.chunk_grid[len(under) :]):
            yield base + lead + "".join(f"/{k}" for k in idx)

    def iter_keys(self, prefix: str = "") -> Iterator[str]:
        """Every key starting with ``prefix`` (documents first, then chunk keys)."""
        for k in self.docs:
            if k.startswith(prefix):
                yield k
        for node in self.arrays.values():
            if node.om is None:
                continue
            base = _join(node.path, "c/")
            if base.startswith(prefix):
                yield from self._chunk_keys(node)
            elif prefix.startswith(base):
                # Only the chunk keys below the complete indices given in the prefix.
                parts = prefix[len(base) :].split("/")[:-1]
                if len(parts) < node.ndim and all(_DIGITS.match(p) for p in parts):
                    under = tuple(int(p) for p in parts)
                    for k in self._chunk_keys(node, under):
                        if k.startswith(prefix):
                            yield k

    def list_dir(self, prefix: str) -> list[str]:
        """Names directly below ``prefix`` (a group, an array or a chunk directory)."""
        p = prefix.rstrip("/")
        if p in self.groups:
            out = ["zarr.json"]
            for path in [*self.groups, *self.arrays]:
                if path and path.rpartition("/")[0] == p:
                    out.append(path.rpartition("/")[2])
            return out
        if p in self.arrays:
            return ["zarr.json", "c"]
        # <array>/c[/i[/j...]]: the next level of chunk indices.
        pieces = p.split("/")
        for cut in range(len(pieces) - 1, 0, -1):
            node = self.arrays.get("/".join(pieces[:cut]))
            if node is None or pieces[cut] != "c":
                continue
            coords = pieces[cut + 1 :]
            grid = node.chunk_grid
            if not all(_DIGITS.match(c) for c in coords) or len(coords) >= len(grid):
                return []
            if any(int(c) >= n for c, n in zip(coords, grid, strict=False)):
                return []
            return [str(i) for i in range(grid[len(coords)])]
        return []

    def arrays_under(self, prefix: str) -> Iterator[tuple[OmArray, str]]:
        """OM arrays whose chunk keys all start with ``prefix``."""
        for node in self.arrays.values():
            if node.om is not None and _join(node.path, "c/").startswith(prefix):
                yield node.om, node.path


def build_view(file: OmFile) -> ZarrView:
    """The :class:`ZarrView` of an opened OM file."""
    groups, arrays = zarr_nodes(file)
    return ZarrView(groups, arrays)


# --------------------------------------------------------------------------- references


def chunk_manifest(arr: OmArray) -> tuple[np.ndarray, np.ndarray]:
    """Byte offsets and lengths (uint64 arrays shaped like the chunk grid) of every chunk.

    Reads the array's whole look-up table once.
    """
    n = arr.n_chunks
    starts, stops = arr.chunk_ranges(np.arange(n, dtype=np.int64))
    grid = tuple(arr.chunk_grid)
    return starts.reshape(grid), (stops - starts).reshape(grid)


def _node_manifest(node: ArrayNode) -> tuple[np.ndarray, np.ndarray] | None:
    """Offsets and lengths shaped like the node's chunk grid; None without bytes in the file."""
    if node.om is not None:
        offsets, lengths = chunk_manifest(node.om)
        return offsets.reshape(node.chunk_grid), lengths.reshape(node.chunk_grid)
    rng = node.scalar_range()
    if rng is None:
        return None
    grid = node.chunk_grid
    return (
        np.full(grid, rng[0], dtype=np.uint64),
        np.full(grid, rng[1] - rng[0], dtype=np.uint64),
    )


def _manifest_key(idx: tuple[int, ...]) -> str:
    return ".".join(map(str, idx)) if idx else "c"


def _url_of(file: OmFile, url: str | None) -> str:
    if url is not None:
        return url
    name = file.source_name
    if "://" in name:
        return name
    if name.startswith("/"):
        return "file://" + name
    raise ValueError(
        f"cannot tell the URL of {name!r}: pass url=... (the path chunk references point to)"
    )


def om_manifest(
    source: Any, *, storage_options: dict | None = None, url: str | None = None
) -> dict[str, Any]:
    """Describe an OM file's arrays as chunk manifests (JSON-serialisable).

    Parameters
    ----------
    source
        Path, URL, ``(fs, path)`` or opened :class:`OmFile`.
    storage_options
        fsspec options for a URL.
    url
        The location written into every chunk reference; default: the file's
        URL (``file://`` + absolute path for local files).

    Returns
    -------
    dict
        ``{"zarr.json": <root group document with consolidated metadata>,
        "groups": {path: attributes}, "arrays": {path: {"metadata": <array
        zarr.json>, "manifest": {"0.0": {"path": url, "offset": int, "length":
        int}, ...}}}}``. Chunk keys use ``.`` between indices, as VirtualiZarr's
        ``ChunkManifest`` does.
    """
    file, own = _open(source, storage_options)
    try:
        view = build_view(file)
        target = _url_of(file, url)
        arrays: dict[str, Any] = {}
        for path, node in view.arrays.items():
            entry: dict[str, Any] = {"metadata": json.loads(view.docs[_join(path, "zarr.json")])}
            refs = _node_manifest(node)
            if refs is not None:
                offsets, lengths = refs
                entry["manifest"] = {
                    _manifest_key(idx): {
                        "path": target,
                        "offset": int(offsets[idx]),
                        "length": int(lengths[idx]),
                    }
                    for idx in np.ndindex(*offsets.shape)
                }
            else:
                entry["inline"] = node.values.tolist()
            arrays[path] = entry
        return {
            "zarr.json": json.loads(view.docs["zarr.json"]),
            "groups": {p: _json_value(g.attributes) for p, g in view.groups.items()},
            "arrays": arrays,
        }
    finally:
        if own:
            file.close()


def om_references(
    source: Any, *, storage_options: dict | None = None, url: str | None = None
) -> dict[str, Any]:
    """Kerchunk-style references (``{"version": 1, "refs": {...}}``) to a Zarr v3 view.

    ``refs`` maps every ``zarr.json`` key to its document and every chunk key
    to ``[url, offset, length]``. Open them with fsspec's reference filesystem::

        fs = fsspec.filesystem("reference", fo=refs, remote_protocol="s3",
                               remote_options=...)
        store = zarr.storage.FsspecStore(fs, read_only=True)
        ds = xr.open_zarr(store, zarr_format=3)

    Several files' references can be merged by renaming their chunk keys, which
    is what VirtualiZarr does with :class:`OmParser`.
    """
    file, own = _open(source, storage_options)
    try:
        view = build_view(file)
        target = _url_of(file, url)
        refs: dict[str, Any] = {}
        for key, doc in view.docs.items():
            if key.endswith("zarr.json"):
                refs[key] = doc.decode()
            else:  # chunks of coordinates made up from metadata are inlined
                refs[key] = "base64:" + _b64(doc)
        for path, node in view.arrays.items():
            found = _node_manifest(node)
            if found is None:
                continue
            offsets, lengths = found
            base = _join(path, "c")
            for idx in np.ndindex(*offsets.shape):
                key = base + "".join(f"/{k}" for k in idx)
                refs[key] = [target, int(offsets[idx]), int(lengths[idx])]
        return {"version": 1, "refs": refs}
    finally:
        if own:
            file.close()


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def _open(source: Any, storage_options: dict | None) -> tuple[OmFile, bool]:
    if isinstance(source, OmFile):
        return source, False
    return OmFile(source, storage_options=storage_options), True


# --------------------------------------------------------------------------- VirtualiZarr


class OmParser:
    """VirtualiZarr parser for OM files.

    Parameters
    ----------
    storage_options
        fsspec options used to read the OM file's metadata and look-up tables
        (the chunk bytes themselves are later read by VirtualiZarr through the
        object store registry).
    skip_variables
        Array paths to leave out.

    Examples
    --------
    >>> from obstore.store import LocalStore  # doctest: +SKIP
    >>> from obspec_utils.registry import ObjectStoreRegistry
    >>> from virtualizarr import open_virtual_dataset
    >>> registry = ObjectStoreRegistry({"file://": LocalStore()})
    >>> vds = open_virtual_dataset("file:///data/t2m.om", registry=registry,
    ...                            parser=OmParser())

    Notes
    -----
    OM arrays and the coordinates made of scalar records (``valid_time``,
    ``forecast_reference_time``: their value bytes in the file are the chunk)
    become virtual arrays. Latitude/longitude computed from a ``crs_wkt`` have
    no bytes in the file and are left out; add them after combining files.
    """

    def __init__(self, *, storage_options: dict | None = None, skip_variables: Any = None) -> None:
        self.storage_options = storage_options
        self.skip_variables = set(skip_variables or ())

    def __call__(self, url: str, registry: Any) -> Any:
        from virtualizarr.manifests import (
            ChunkManifest,
            ManifestArray,
            ManifestGroup,
            ManifestStore,
        )

        source = url[len("file://") :] if url.startswith("file://") else url
        opts = self.storage_options if "://" in source else None
        with OmFile(source, storage_options=opts) as file:
            view = build_view(file)
            target = url if "://" in url else _url_of(file, None)
            members: dict[str, dict[str, Any]] = {p: {} for p in view.groups}
            for path, node in view.arrays.items():
                if path in self.skip_variables:
                    continue
                found = _node_manifest(node)
                if found is None:
                    # VirtualiZarr arrays are chunk references only; coordinates
                    # computed from metadata (a grid from crs_wkt) have no bytes
                    # in the file to point to.
                    continue
                offsets, lengths = found
                paths = np.full(offsets.shape, target, dtype=np.dtypes.StringDType())
                manifest = ChunkManifest.from_arrays(
                    paths=paths,
                    offsets=offsets.astype(np.uint64),
                    lengths=lengths.astype(np.uint64),
                    validate_paths=False,
                )
                meta = view.metadata[path]
                parent, _, name = path.rpartition("/")
                members[parent][name] = ManifestArray(metadata=meta, chunkmanifest=manifest)

            def group(path: str) -> Any:
                arrays = {
                    k: v for k, v in members[path].items() if not isinstance(v, ManifestGroup)
                }
                subgroups = {
                    p.rpartition("/")[2]: group(p)
                    for p in view.groups
                    if p and p.rpartition("/")[0] == path
                }
                return ManifestGroup(
                    arrays=arrays,
                    groups=subgroups,
                    attributes=_json_value(view.groups[path].attributes),
                )

            return ManifestStore(group=group(""), registry=registry)
