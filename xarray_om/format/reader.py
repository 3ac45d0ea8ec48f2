"""Reading OM files: :class:`OmFile` and the nodes of its record tree.

Opening costs the file size and one tail read (records are usually inside
it). The tree is decoded lazily, one record at a time. Array reads plan
which chunks a numpy key touches, fetch their LUT groups and byte ranges
with as few requests as the merge policy allows, and decode every chunk
straight into the output with one native call.

Everything pickles cheaply (source spec + record offsets). In the receiving
process the file is reopened on first use and shared, per process, by every
object restored from the same file, so LUT groups are read once per process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import _native
from ..errors import OmCodecError, OmFormatError
from .layout import (
    _THREAD,
    MAX_ELEMENTS_PER_BYTE,
    READ_BUFFERS,
    THREAD_BUFFER_MAX,
    Grid,
    LegacyLut,
    Lut,
    ReadPlan,
    V3Lut,
    box_key,
    check_plausible,
    give_thread_buffer,
    normalize_key,
    plan_reads,
    plan_run,
    take_thread_buffer,
)
from .records import (
    ARRAY_DTYPES,
    COMPRESSION_NAMES,
    LEGACY_HEADER_SIZE,
    TRAILER_SIZE,
    LegacyHeader,
    Record,
    parse_legacy_header,
    parse_record,
    parse_trailer,
)
from .source import FileObjSpec, LocalSpec, Source, SourceSpec, open_source

__all__ = ["MAX_DEPTH", "MAX_NODES", "OmArray", "OmFile", "OmGroup", "OmNode", "OmScalar"]

# Reference writers never nest deeply; the cap stops crafted chains of records.
MAX_DEPTH = 256
# Shared children make the tree a DAG: a crafted file can repeat a record
# exponentially often along distinct paths. Cap the nodes one OmFile creates.
MAX_NODES = 1_000_000
_REGISTRY_SIZE = 64
# io_size_max of chunk reads from local files / bytes: a read there is a system
# call or a copy, not a request, so reads are only split by gaps, not by size.
_UNCAPPED = 1 << 62
# Point reads of chunks at least this large read only the prefix a decode needs.
_PREFIX_MIN = 4096
_FPX_XOR = 1  # compression id of fpx_xor_2d


# --------------------------------------------------------------------------- file core

# Content-addressed caches shared by every file of the process. The same record
# bytes (at the same offset of a file of the same size) always parse to the same
# Record, and the same array parameters give the same codec and grid, so a file
# that is opened again (a new dask task, a cold read) skips the parsing. The bytes
# themselves are still read on every open: a changed file never gets stale metadata.
_CACHE_MAX = 4096
_CACHED_RECORD_MAX = 4096  # bytes: larger records (huge groups) are parsed every time
_RECORDS: dict[tuple, Record] = {}
_ARRAY_CTX: dict[tuple, tuple] = {}
_STATES: dict[tuple, _FileState] = {}  # local files only (see _Core.__init__)


def _cache_put(cache: dict, key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_MAX:
        cache.clear()  # rare: thousands of distinct records; clearing keeps it O(1)
    cache[key] = value


@dataclass(frozen=True, slots=True)
class _FileState:
    """What identifies an opened file across processes (pickled with every object)."""

    spec: SourceSpec
    size: int
    version: int
    root_offset: int
    root_size: int
    # registry / snapshot key, computed once (looked up several times per open)
    key: tuple = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        key = (self.spec.key, self.size, self.version, self.root_offset, self.root_size)
        object.__setattr__(self, "key", key)


class _Core:
    """Per-process state of one opened file: source, parsed records, LUT caches."""

    def __init__(self, source: Source, io_size_max: int, io_size_merge: int) -> None:
        self.source = source
        self.name = source.name
        self.io_size_max = io_size_max
        self.io_size_merge = io_size_merge
        self.records: dict[tuple[int, int], Record] = {}
        self.luts: dict[tuple[int, int], Lut] = {}
        self.ctxs: dict[tuple[int, int], tuple] = {}
        self.checked: set[tuple[int, int]] = set()
        self.shared = False
        self.registered = False  # in _REGISTRY (see OmFile.__reduce__)
        self.legacy: LegacyHeader | None = None
        self.adopted: _Snapshot | None = None
        self.version, self.root_offset, self.root_size = self._detect()
        spec = source.spec
        if type(spec) is LocalSpec:
            # the same (immutable) state for every open of an unchanged local file
            key = (spec, source.size, self.version, self.root_offset, self.root_size)
            state = _STATES.get(key)
            if state is None:
                state = _FileState(*key)
                _cache_put(_STATES, key, state)
            self.state = state
        else:
            self.state = _FileState(
                spec, source.size, self.version, self.root_offset, self.root_size
            )
        # The read settings too: a file opened with other ones loads its LUT its own way.
        self.snap_key = (*self.state.key, io_size_max, io_size_merge)
        self._adopt()

    def _adopt(self) -> None:
        """Reuse what an earlier open of the same file parsed from its tail.

        Same size and a byte-identical tail (the bytes just read) mean the same
        records and look-up tables wherever they lie inside the tail: those
        Records, complete LUT entries and array contexts are taken over instead
        of being parsed and built again. Anything outside the tail is read and
        parsed as usual. Snapshots are taken when a file is closed (see
        :meth:`snapshot`) and hold no source or descriptor.
        """
        snap = _SNAPSHOTS.get(self.snap_key)
        if snap is None or self.legacy is not None:
            return
        t0, tail = self.source.tail_view()
        if snap.tail_start != t0 or snap.tail != tail:
            return
        self.records.update(snap.records)
        self.checked.update(snap.checked)
        self.adopted = snap
        # Complete LUTs are never written again and only name their (identical)
        # source in errors: the earlier open's objects are shared as they are.
        self.luts.update(snap.luts)
        self.ctxs.update(snap.arrays)

    def snapshot(self) -> None:
        """Keep what was parsed from the tail for the next open of the file (_adopt)."""
        if self.legacy is not None:
            return
        key = self.snap_key
        snap = self.adopted
        if (
            snap is not None
            and _SNAPSHOTS.get(key) is snap
            and len(self.records) == len(snap.records)
            and len(self.ctxs) == len(snap.arrays)
        ):
            return  # nothing parsed beyond what the snapshot already holds
        t0, tail = self.source.tail_view()
        if not tail:
            return
        # copies: another thread may still be parsing through this core
        records = {k: r for k, r in self.records.copy().items() if k[0] >= t0}
        arrays = {}
        luts = {}
        for k, ctx in self.ctxs.copy().items():
            lut = ctx[0]
            if (
                k[0] >= t0
                and type(lut) is V3Lut
                and lut._complete
                and lut.lut_offset >= t0
                and k in records
            ):
                arrays[k] = ctx
                luts[k] = lut
        checked = {k for k in self.checked.copy() if k[0] >= t0}
        if len(_SNAPSHOTS) >= _SNAPSHOTS_MAX and key not in _SNAPSHOTS:
            _SNAPSHOTS.clear()
        _SNAPSHOTS[key] = _Snapshot(t0, tail, records, checked, arrays, luts)

    def _bad(self, msg: str) -> OmFormatError:
        return OmFormatError(msg, source=self.name)

    def _detect(self) -> tuple[int, int, int]:
        # Container spec 1: the trailer first (a v3 file also starts with "OM").
        src = self.source
        size = src.size
        if size == 0:
            raise self._bad("not an OM file: the file is empty")
        if size >= TRAILER_SIZE:
            tail = src.tail_view()[1]
            if len(tail) < TRAILER_SIZE:
                tail = src.read_range(size - TRAILER_SIZE, size)
            trailer = parse_trailer(tail[-TRAILER_SIZE:])
            if trailer is not None:
                off, sz = trailer
                if sz == 0 or off > size or sz > size - off:
                    raise self._bad(
                        f"trailer points to a root record [{off}, +{sz}) outside the file "
                        f"of {size} bytes"
                    )
                return 3, off, sz
        head = src.read_range(0, min(size, LEGACY_HEADER_SIZE))
        if head[:3] == b"OM\x03":
            raise self._bad(
                "OM v3 file without a valid trailer: truncated, or not completely written/uploaded"
            )
        if head[:2] == b"OM" and len(head) >= 3 and head[2] in (1, 2):
            if size < LEGACY_HEADER_SIZE:
                raise self._bad(f"legacy OM file of {size} bytes is shorter than its header")
            header = parse_legacy_header(head, source=self.name)
            assert header is not None
            self.legacy = header
            return header.version, 0, LEGACY_HEADER_SIZE
        raise self._bad("not an OM file (no OM v3 trailer and no legacy OM header)")

    def record(self, offset: int, size: int) -> Record:
        key = (offset, size)
        rec = self.records.get(key)
        if rec is not None:
            return rec
        if self.legacy is not None:
            h = self.legacy
            if key != (0, LEGACY_HEADER_SIZE):
                raise self._bad(f"legacy files have no record at {offset}")
            n = h.n_chunks
            rec = Record(
                offset=0,
                size=LEGACY_HEADER_SIZE,
                data_type=20,
                compression=h.compression,
                name="",
                children=(),
                lut_size=8 * n,
                lut_offset=LEGACY_HEADER_SIZE,
                scale_factor=h.scale_factor,
                add_offset=0.0,
                dims=h.dims,
                chunks=h.chunks,
            )
        else:
            fsize = self.source.size
            if size == 0 or offset > fsize or size > fsize - offset:
                raise self._bad(
                    f"record [{offset}, +{size}) lies outside the file of {fsize} bytes"
                )
            buf = self.source.read_range(offset, offset + size)
            if size <= _CACHED_RECORD_MAX:
                ck = (buf, offset, fsize)
                rec = _RECORDS.get(ck)
                if rec is None:
                    rec = self._parse(buf, offset, fsize)
                    _cache_put(_RECORDS, ck, rec)
            else:
                rec = self._parse(buf, offset, fsize)
            if rec.data_type in ARRAY_DTYPES:
                # _parse checked the geometry against this file size (the cache key's)
                self.checked.add(key)
        self.records[key] = rec
        return rec

    def _parse(self, buf: bytes, offset: int, fsize: int) -> Record:
        rec = parse_record(buf, offset, source=self.name, file_size=fsize)
        if rec.data_type in ARRAY_DTYPES:
            # check_plausible, inlined for the (passing) common case
            n_chunks = n = 1
            for d, c in zip(rec.dims, rec.chunks):  # noqa: B905 (same length)
                n_chunks *= -(-d // c)
                n *= d
            if n_chunks > fsize or n > MAX_ELEMENTS_PER_BYTE * max(fsize, 1):
                self._check_plausible(rec)
        return rec

    def _check_plausible(self, rec: Record) -> None:
        check_plausible(
            rec.dims,
            rec.chunks,
            self.source.size,
            f"array {rec.name!r} (record at {rec.offset})",
            self.name,
        )

    def array_ctx(self, rec: Record) -> tuple:
        """(lut, grid, codec, dtype, dims, chunks, strides, chunk grid, prefix reads) of
        an array record, built once per process (shared by reopens: no core inside)."""
        key = (rec.offset, rec.size)
        ctx = self.ctxs.get(key)
        if ctx is None:
            params = (
                rec.data_type,
                rec.compression,
                rec.dims,
                rec.chunks,
                rec.scale_factor,
                rec.add_offset,
            )
            shared = _ARRAY_CTX.get(params)
            if shared is None:
                codec = _native.ArrayCodec(*params)
                codec._c()  # build the C struct once, not on the first read of every file
                shared = (Grid(rec.dims, rec.chunks, _ints=True), codec)
                _cache_put(_ARRAY_CTX, params, shared)
            grid, codec = shared
            dtype = codec.dtype
            # Partial decodes read only a prefix of the chunk: all codecs but
            # fpx_xor_2d on float64 (its filter runs over the whole chunk).
            prefix = not (rec.compression == _FPX_XOR and dtype.itemsize != 4)
            ctx = (
                self.lut(rec),
                grid,
                codec,
                dtype,
                rec.dims,
                grid.chunks,
                grid.strides,
                grid.grid,
                prefix,
            )
            self.ctxs[key] = ctx
        return ctx

    def check_array(self, rec: Record) -> None:
        """Plausibility of an array's geometry against the file size (once per record)."""
        key = (rec.offset, rec.size)
        if key not in self.checked:
            self._check_plausible(rec)
            self.checked.add(key)

    def lut(self, rec: Record) -> Lut:
        key = (rec.offset, rec.size)
        lut = self.luts.get(key)
        if lut is None:
            n_chunks = 1
            for d, c in zip(rec.dims, rec.chunks):  # noqa: B905 (same length)
                n_chunks *= -(-d // c)
            what = f"array {rec.name!r} (record at {rec.offset})"
            if self.legacy is not None:
                lut = LegacyLut(
                    self.source,
                    n_chunks,
                    what=what,
                    io_size_max=self.io_size_max,
                    io_size_merge=self.io_size_merge,
                )
            else:
                lut = V3Lut(
                    self.source,
                    n_chunks,
                    rec.lut_offset,
                    rec.lut_size,
                    what=what,
                    io_size_max=self.io_size_max,
                    io_size_merge=self.io_size_merge,
                )
            self.luts[key] = lut
        return lut


class _Snapshot:
    """What a closed file had parsed from its tail (see _Core.snapshot); never modified."""

    __slots__ = ("arrays", "checked", "luts", "records", "tail", "tail_start")

    def __init__(
        self, tail_start: int, tail: bytes, records: dict, checked: set, arrays: dict, luts: dict
    ) -> None:
        self.tail_start = tail_start
        self.tail = tail
        self.records = records
        self.checked = checked
        # record key -> array context (complete V3Lut, Grid, ArrayCodec, dtype, dims)
        self.arrays = arrays
        self.luts = luts  # record key -> its complete V3Lut (the contexts' first items)


# Per file identity (source key, size, root record) and read settings, bounded; no
# descriptors held.
_SNAPSHOTS: dict[tuple, _Snapshot] = {}
_SNAPSHOTS_MAX = 64


_REGISTRY: OrderedDict[tuple, _Core] = OrderedDict()
_REGISTRY_LOCK = threading.Lock()


def _register(core: _Core) -> None:
    with _REGISTRY_LOCK:
        core.registered = True
        _REGISTRY[core.state.key] = core
        _REGISTRY.move_to_end(core.state.key)
        while len(_REGISTRY) > _REGISTRY_SIZE:
            _REGISTRY.popitem(last=False)


def _core_for(state: _FileState, io_size_max: int, io_size_merge: int) -> _Core:
    key = state.key
    with _REGISTRY_LOCK:
        core = _REGISTRY.get(key)
        if core is not None and not core.source.closed:
            _REGISTRY.move_to_end(key)
            core.shared = True
            return core
    source = state.spec.open()
    if source.size != state.size:
        raise OmFormatError(
            f"the file changed since it was opened: now {source.size} bytes, was {state.size}",
            source=source.name,
        )
    core = _Core(source, io_size_max, io_size_merge)
    if core.state.key != key:
        raise OmFormatError(
            "the file changed since it was opened: its root record moved", source=source.name
        )
    with _REGISTRY_LOCK:
        existing = _REGISTRY.get(key)
        if existing is not None and not existing.source.closed:
            existing.shared = True
            source.close()
            return existing
        core.shared = True
        core.registered = True
        _REGISTRY[key] = core
        while len(_REGISTRY) > _REGISTRY_SIZE:
            _REGISTRY.popitem(last=False)
    return core


# --------------------------------------------------------------------------- OmFile


class OmFile:
    """An OM file (v3, or legacy v1/v2 exposed as a root float32 array named "").

    Parameters
    ----------
    source
        Local path, fsspec URL, ``(fs, path)`` tuple, ``bytes``, binary
        file-like object, or an opened :class:`~xarray_om.format.source.Source`.
    storage_options
        fsspec options for a URL.
    io_size_max, io_size_merge
        Read planning: a read is at most ``io_size_max`` bytes (unless a single
        chunk is larger) and bridges gaps of at most ``io_size_merge`` bytes
        between needed ranges (container spec 8.3). Chunk reads from local
        files and ``bytes`` are not capped by ``io_size_max`` (a read there
        costs a system call, not a request); look-up table reads always are.

    Examples
    --------
    >>> with OmFile("era5.om") as f:  # doctest: +SKIP
    ...     t = f["temperature_2m"][10, 20, :]
    """

    def __init__(
        self,
        source: Any,
        *,
        storage_options: dict | None = None,
        io_size_max: int = 65536,
        io_size_merge: int = 512,
    ) -> None:
        if io_size_max < 1 or io_size_merge < 0:
            raise ValueError("io_size_max must be >= 1 and io_size_merge >= 0")
        src = open_source(source, storage_options=storage_options)
        try:
            core = _Core(src, int(io_size_max), int(io_size_merge))
        except BaseException:
            if not isinstance(source, Source):
                src.close()
            raise
        self._state = core.state
        self._core_obj: _Core | None = core
        self._io = (int(io_size_max), int(io_size_merge))
        self._closed = False
        self._root: OmNode | None = None
        self._n_nodes = 0

    @classmethod
    def _restore(cls, state: _FileState, io: tuple[int, int]) -> OmFile:
        self = cls.__new__(cls)
        self._state = state
        self._core_obj = None
        self._io = io
        self._closed = False
        self._root = None
        self._n_nodes = 0
        return self

    def __reduce__(self):
        # Copies restored in this process share the open file's core through the
        # registry; registering here (not at open) keeps plain opens cheaper.
        core = self._core_obj
        if core is not None and not core.registered and not self._closed:
            if not isinstance(self._state.spec, FileObjSpec):
                _register(core)
        return (OmFile._restore, (self._state, self._io))

    @property
    def _core(self) -> _Core:
        core = self._core_obj
        if core is None:
            if self._closed:
                raise ValueError(f"I/O operation on a closed OmFile ({self.source_name})")
            core = _core_for(self._state, *self._io)
            self._core_obj = core
        elif self._closed:
            raise ValueError(f"I/O operation on a closed OmFile ({self.source_name})")
        return core

    # -- public API

    @property
    def source_name(self) -> str:
        """Path / URL of the file, as used in error messages."""
        return self._state.spec.name

    @property
    def version(self) -> int:
        """Container generation: 1, 2 (legacy) or 3."""
        return self._state.version

    @property
    def size(self) -> int:
        """File size in bytes."""
        return self._state.size

    @property
    def source(self) -> Source:
        """The :class:`~xarray_om.format.source.Source` the file reads from."""
        return self._core.source

    @property
    def spec(self) -> SourceSpec:
        """Picklable description of where the file lives."""
        return self._state.spec

    @property
    def io_size_max(self) -> int:
        return self._io[0]

    @property
    def io_size_merge(self) -> int:
        return self._io[1]

    @property
    def root(self) -> OmNode:
        """The root node (group, array or scalar)."""
        root = self._root
        if root is None:
            st = self._state
            rec = self._core.record(st.root_offset, st.root_size)
            root = _make_node(self, rec, "", ())
            self._root = root
        return root

    def __getitem__(self, path: str) -> OmNode:
        if path in ("", "/"):
            return self.root
        return self.root[path]

    def close(self) -> None:
        """Close the file (idempotent). Pickled copies elsewhere are unaffected."""
        if self._closed:
            return
        self._closed = True
        core = self._core_obj
        self._core_obj = None
        self._root = None
        if core is None:
            return
        shared = core.shared
        if shared or core.registered:
            with _REGISTRY_LOCK:
                if _REGISTRY.get(core.state.key) is core and not core.shared:
                    del _REGISTRY[core.state.key]
                shared = core.shared
        if not shared:
            try:
                core.snapshot()
            finally:
                core.source.close()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self) -> OmFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __dask_tokenize__(self) -> tuple:
        st = self._state
        return (
            "xarray_om.OmFile",
            st.spec.name,
            st.spec.key,
            st.size,
            st.root_offset,
            st.root_size,
            st.version,
        )

    def __repr__(self) -> str:
        return f"<OmFile {self.source_name!r} v{self.version} size={self.size}>"


def _take_buffer(nbytes: int) -> tuple[memoryview, np.ndarray | None]:
    """(read buffer of at least ``nbytes``, token): the thread's own buffer for small
    reads, a pooled one (token not None) for large ones."""
    if nbytes <= THREAD_BUFFER_MAX:
        return take_thread_buffer(nbytes), None
    arr, token = READ_BUFFERS.take(nbytes)
    return memoryview(arr), token


def _give_buffer(buf: memoryview, token: np.ndarray | None) -> None:
    if token is not None:
        READ_BUFFERS.give(token)
    else:  # the thread's buffer (an unpooled large one is too big to be kept)
        give_thread_buffer(buf)


# --------------------------------------------------------------------------- nodes


def _make_node(file: OmFile, rec: Record, path: str, ancestors: tuple[int, ...]) -> OmNode:
    kind = rec.kind
    cls: type[OmNode] = OmArray if kind == "array" else OmScalar if kind == "scalar" else OmGroup
    node = cls.__new__(cls)
    node._init(file, rec.offset, rec.size, path, ancestors, rec)
    return node


def _restore_node(
    cls: type, file: OmFile, offset: int, size: int, path: str, ancestors: tuple[int, ...]
) -> OmNode:
    node = cls.__new__(cls)
    node._init(file, offset, size, path, ancestors, None)
    return node


class OmNode:
    """A record of the tree: base of :class:`OmGroup`, :class:`OmArray`, :class:`OmScalar`."""

    kind = "node"
    __slots__ = (
        "__weakref__",
        "_ancestors",
        "_children",
        "_file",
        "_offset",
        "_path",
        "_rec",
        "_size",
    )

    def _init(
        self,
        file: OmFile,
        offset: int,
        size: int,
        path: str,
        ancestors: tuple[int, ...],
        rec: Record | None,
    ) -> None:
        self._file = file
        self._offset = offset
        self._size = size
        self._path = path
        self._ancestors = ancestors
        self._rec = rec
        self._children: list[OmNode] | None = None
        if rec is not None:
            self._validate(rec)

    def _validate(self, rec: Record) -> None:
        """Checks beyond the record layout (overridden by arrays)."""

    @property
    def _record(self) -> Record:
        rec = self._rec
        if rec is None:
            rec = self._file._core.record(self._offset, self._size)
            self._validate(rec)
            self._rec = rec
        return rec

    def __reduce__(self):
        return (
            _restore_node,
            (type(self), self._file, self._offset, self._size, self._path, self._ancestors),
        )

    def __dask_tokenize__(self) -> tuple:
        return (
            f"xarray_om.{type(self).__name__}",
            self._file.__dask_tokenize__(),
            self._offset,
            self._size,
            self._path,
        )

    # -- tree

    @property
    def name(self) -> str:
        """The record's name (may be empty)."""
        return self._record.name

    @property
    def path(self) -> str:
        """Names from the root's children down to this node joined by "/" ("" for the root)."""
        return self._path

    @property
    def file(self) -> OmFile:
        return self._file

    @property
    def record_offset(self) -> int:
        return self._offset

    @property
    def record_size(self) -> int:
        return self._size

    @property
    def children(self) -> list[OmNode]:
        """Child nodes in file order."""
        children = self._children
        if children is None:
            rec = self._record
            chain = (*self._ancestors, self._offset)
            if rec.children and len(chain) > MAX_DEPTH:
                raise OmFormatError(
                    f"record tree deeper than {MAX_DEPTH} levels at {self._path!r}",
                    source=self._file.source_name,
                )
            file = self._file
            core = file._core
            file._n_nodes += len(rec.children)
            if file._n_nodes > MAX_NODES:
                raise OmFormatError(
                    f"record tree has more than {MAX_NODES} nodes (shared records repeated "
                    "along many paths?)",
                    source=file.source_name,
                )
            children = []
            for off, sz in rec.children:
                if off in chain:
                    raise OmFormatError(
                        f"record at {off} is its own ancestor (cycle below {self._path!r})",
                        source=self._file.source_name,
                    )
                child = core.record(off, sz)
                path = f"{self._path}/{child.name}" if self._ancestors or self._path else child.name
                children.append(_make_node(self._file, child, path, chain))
            self._children = children
        return children

    @property
    def child_names(self) -> list[str]:
        return [c.name for c in self.children]

    def _child(self, name: str) -> OmNode:
        for c in self.children:
            if c.name == name:
                return c
        raise KeyError(f"{name!r} not found in {self._path or '/'!r} of {self._file.source_name}")

    def __getitem__(self, key: str) -> OmNode:
        if not isinstance(key, str):
            raise TypeError(f"child lookup needs a name or path, not {type(key).__name__}")
        # An exact name first: names may contain "/".
        for c in self.children:
            if c.name == key:
                return c
        node: OmNode = self
        for part in key.strip("/").split("/"):
            node = node._child(part)
        return node

    def __contains__(self, key: str) -> bool:
        try:
            self[key]
        except (KeyError, TypeError):
            return False
        return True

    @property
    def attrs(self) -> dict[str, Any]:
        """Direct scalar children as ``{name: value}`` (first one wins on duplicates)."""
        out: dict[str, Any] = {}
        for c in self.children:
            if isinstance(c, OmScalar) and c.name not in out:
                out[c.name] = c.value
        return out

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._path or '/'!r}>"


class OmGroup(OmNode):
    """A group record: a named container of children."""

    kind = "group"
    __slots__ = ()


class OmScalar(OmNode):
    """A scalar record (an attribute when its parent is a group or array)."""

    kind = "scalar"
    __slots__ = ()

    @property
    def value(self) -> Any:
        """The value: a numpy scalar of the stored type, or ``str``."""
        return self._record.value

    @property
    def dtype(self) -> np.dtype | None:
        """numpy dtype of the value, None for strings."""
        return self._record.dtype


class OmArray(OmNode):
    """An array record: n-D, chunked and compressed."""

    kind = "array"
    __slots__ = ("_codec", "_grid", "_rd")

    def _init(self, *args: Any) -> None:
        self._codec: _native.ArrayCodec | None = None
        self._grid: Grid | None = None
        self._rd: tuple | None = None
        super()._init(*args)

    def _validate(self, rec: Record) -> None:
        self._file._core.check_array(rec)

    # -- metadata

    @property
    def shape(self) -> tuple[int, ...]:
        return self._record.dims

    @property
    def chunks(self) -> tuple[int, ...]:
        """OM chunk shape."""
        return self._record.chunks

    @property
    def dtype(self) -> np.dtype:
        return ARRAY_DTYPES[self._record.data_type].newbyteorder("=")

    @property
    def ndim(self) -> int:
        return len(self._record.dims)

    @property
    def size(self) -> int:
        n = 1
        for d in self._record.dims:
            n *= d
        return n

    @property
    def compression(self) -> str:
        return COMPRESSION_NAMES[self._record.compression]

    @property
    def compression_id(self) -> int:
        return self._record.compression

    @property
    def scale_factor(self) -> float:
        return self._record.scale_factor

    @property
    def add_offset(self) -> float:
        return self._record.add_offset

    @property
    def grid(self) -> Grid:
        g = self._grid
        if g is None:
            g = self._grid = self._file._core.array_ctx(self._record)[1]
        return g

    @property
    def chunk_grid(self) -> tuple[int, ...]:
        """Number of chunks along each dimension."""
        return self.grid.grid

    @property
    def n_chunks(self) -> int:
        return self.grid.n_chunks

    @property
    def codec(self) -> _native.ArrayCodec:
        c = self._codec
        if c is None:
            c = self._codec = self._file._core.array_ctx(self._record)[2]
        return c

    @property
    def _lut(self) -> Lut:
        return self._file._core.lut(self._record)

    @property
    def nbytes_compressed(self) -> int:
        """Sum of the compressed chunk sizes."""
        starts, stops = self.chunk_ranges([0, self.n_chunks - 1])
        return int(stops[-1] - starts[0])

    # -- chunks

    def chunk_index(self, coords: Any) -> int:
        return self.grid.chunk_index(tuple(coords))

    def chunk_coords(self, index: int) -> tuple[int, ...]:
        return self.grid.chunk_coords(index)

    def chunk_slices(self, index: int) -> tuple[slice, ...]:
        return self.grid.chunk_slices(index)

    def chunk_ranges(self, indices: Any) -> tuple[np.ndarray, np.ndarray]:
        """Absolute byte ranges ``(starts, stops)`` (uint64) of chunks ``indices``."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = self.n_chunks
        if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
            raise IndexError(f"chunk index outside 0..{n - 1}")
        uniq, inverse = np.unique(idx, return_inverse=True)
        starts, stops = self._lut.ranges(uniq)
        return starts[inverse].astype(np.uint64), stops[inverse].astype(np.uint64)

    def decode_chunk(self, index: int, data: Any) -> np.ndarray:
        """Decode the compressed bytes of chunk ``index`` to its clipped shape."""
        shape = self.grid.chunk_shape(index)
        n = 1
        for s in shape:
            n *= s
        rec = self._record
        values, used = _native.decode_chunk(
            data,
            self.dtype,
            rec.compression,
            n,
            shape[-1],
            rec.scale_factor,
            rec.add_offset,
            source=self._file.source_name,
        )
        nbytes = memoryview(data).nbytes
        if used != nbytes:
            raise OmFormatError(
                f"chunk {index} of {self._path or '/'!r} decoded from {used} of its {nbytes} bytes",
                source=self._file.source_name,
            )
        return values.reshape(shape)

    # -- data

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return super().__getitem__(key)
        return self.read(key)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.read(...)
        return a if dtype is None else a.astype(dtype, copy=False)

    def read(self, key: Any = ..., out: np.ndarray | None = None) -> np.ndarray:
        """Read ``self[key]`` (numpy basic indexing plus outer integer arrays).

        Parameters
        ----------
        key
            Integers (drop the axis), slices with any step, ``Ellipsis`` and
            1-D integer/boolean arrays; several arrays index orthogonally.
        out
            Optional preallocated output of the result's shape and dtype.
        """
        try:
            return self._read(key, out)
        except OmCodecError as e:
            # Damaged bytes, or a file rewritten in place under us: say which.
            core = self._file._core_obj
            why = None if core is None else core.source.changed()
            if why is None:
                raise
            raise OmFormatError(f"{why} while being read ({e.reason})", source=e.source) from e

    def _read(self, key: Any, out: np.ndarray | None) -> np.ndarray:
        file = self._file
        if file._closed:
            raise ValueError(f"I/O operation on a closed OmFile ({file.source_name})")
        ctx = self._rd
        if ctx is None:
            ctx = self._read_ctx()
        dims = ctx[5]
        if out is None and type(key) is tuple and len(key) == len(dims):
            # Point reads (ints and whole axes that fit in one chunk): one chunk,
            # no key normalisation, no planning.
            start: list[int] = []
            count: list[int] = []
            shape: list[int] = []
            idx = 0
            # Whole axes split into several chunks: with only whole axes (or ints on
            # axes of one chunk) after the first of them, the chunks are one run of
            # consecutive indices ``idx .. idx + span`` (e.g. a time series).
            span = 0
            chunks = ctx[6]
            strides = ctx[7]
            # flat position of the last selected element inside its chunk, and the
            # chunk's (clipped) element count: how much of the chunk a decode needs
            last = 0
            total = 1
            for d, k in enumerate(key):
                n = dims[d]
                if type(k) is int:
                    i = k + n if k < 0 else k
                    c = chunks[d]
                    if not 0 <= i < n or (span and n > c):
                        break
                    start.append(i)
                    count.append(1)
                    q = i // c
                    idx += q * strides[d]
                    lo = q * c
                    ext = n - lo if n - lo < c else c
                    last = last * ext + i - lo
                    total *= ext
                elif type(k) is slice and k.start is None and k.stop is None and k.step is None:
                    start.append(0)
                    count.append(n)
                    shape.append(n)
                    if n > chunks[d]:
                        span += (ctx[8][d] - 1) * strides[d]
                    last = last * n + n - 1
                    total *= n
                else:
                    break
            else:
                if span:
                    return self._read_run(ctx, start, count, shape, idx, idx + span)
                core = ctx[0]
                lut = ctx[1]
                src = core.source
                if lut._complete:  # Lut.chunk_range inlined
                    e = lut._entries  # after the flag (see Lut._load_whole)
                    a = e.item(idx)
                    b = e.item(idx + 1)
                    if b <= a:
                        lut.chunk_range(idx)  # raises its error
                else:
                    a, b = lut.chunk_range(idx)
                n = b - a
                view = src._view
                if view is None:
                    view = src.view_for(n)
                if view:
                    # decoded in place: only the pages the decode touches are read
                    target = np.empty(shape, ctx[4])
                    _native.decode_box1(ctx[3], target, start, count, idx, view, a, n, core.name)
                    return target
                pad = a & 63
                # this thread's read buffer (layout.take_thread_buffer, inlined)
                tls = _THREAD
                buf = tls.buf
                if buf is not None and buf.nbytes >= pad + n:
                    tls.buf = None
                    token = None
                else:
                    buf, token = _take_buffer(pad + n)
                # The streams are sequential and a decode stops after the last row it
                # needs: read about that much of the chunk (estimated from the
                # position, with a margin). A prefix too short fails the decode; the
                # rest is then read and the chunk decoded again from all its bytes.
                m = n
                if last + 1 < total and n >= _PREFIX_MIN and ctx[9]:
                    est = n * (last + 1) // total
                    est += (est >> 2) + 1024
                    if est < n - (n >> 3):
                        m = est
                try:
                    src.read_range_into(a, a + m, buf, pad)
                    target = np.empty(shape, ctx[4])
                    if m == n:
                        _native.decode_box1(
                            ctx[3], target, start, count, idx, buf, pad, n, core.name
                        )
                    else:
                        try:
                            _native.decode_box1(
                                ctx[3], target, start, count, idx, buf, pad, m, core.name
                            )
                        except OmCodecError:
                            src.read_range_into(a + m, b, buf, pad + m)
                            _native.decode_box1(
                                ctx[3], target, start, count, idx, buf, pad, n, core.name
                            )
                finally:
                    _give_buffer(buf, token)
                return target
        box = box_key(key, dims)
        if box is None:
            return self._read_general(ctx, key, out)
        # Fast path: ints and step-1 slices (the common keys), no index arrays.
        start, count, shape = box
        dtype = ctx[4]
        if out is not None:
            if out.shape != shape or out.dtype != dtype:
                raise ValueError(
                    f"out has shape {out.shape} and dtype {out.dtype}, the read gives "
                    f"{shape} {dtype}"
                )
            if not out.flags.c_contiguous:
                return self._read_general(ctx, key, out)
        chunks = ctx[6]
        strides = ctx[7]
        idx = 0
        for d in range(len(dims)):
            c = chunks[d]
            s = start[d]
            lo = s // c
            if (s + count[d] - 1) // c != lo:
                return self._read_box(ctx, start, count, shape, out)
            idx += lo * strides[d]
        # One chunk: one pread into this thread's buffer (or the file's map), one
        # native call.
        core = ctx[0]
        a, b = ctx[1].chunk_range(idx)
        n = b - a
        view = core.source.view_for(n)
        # box_key validated start/count and ``out`` matches them: the unchecked call
        if view:
            target = np.empty(shape, dtype) if out is None else out
            _native.decode_box1(ctx[3], target, start, count, idx, view, a, n, core.name)
            return target
        pad = a & 63
        buf, token = _take_buffer(pad + n)
        try:
            core.source.read_range_into(a, b, buf, pad)
            target = np.empty(shape, dtype) if out is None else out
            _native.decode_box1(ctx[3], target, start, count, idx, buf, pad, n, core.name)
        finally:
            _give_buffer(buf, token)
        return target

    def _read_ctx(self) -> tuple:
        # Everything a read needs, resolved once per node object (and built once
        # per process and record by the file core): the core, then its array_ctx.
        core = self._file._core
        ctx = (core, *core.array_ctx(self._record))
        self._rd = ctx
        return ctx

    def _read_run(
        self,
        ctx: tuple,
        start: list[int],
        count: list[int],
        shape: list[int],
        first: int,
        last: int,
    ) -> np.ndarray:
        """A box whose chunks are the run ``first..last`` (consecutive in the file)."""
        core = ctx[0]
        src = core.source
        if not src.local:  # remote: reads are planned (split at io_size_max)
            return self._read_box(ctx, start, count, tuple(shape), None)
        bounds = ctx[1].run_entries(first, last)
        target = np.empty(shape, ctx[4])
        self._decode_run(ctx, target, start, count, first, last, bounds)
        return target

    def _decode_run(
        self,
        ctx: tuple,
        target: np.ndarray,
        start: list[int],
        count: list[int],
        first: int,
        last: int,
        bounds: np.ndarray,
    ) -> None:
        """Decode the run of chunks ``first..last`` (file offsets ``bounds``) into
        ``target``: in place from the source's view, else read in one range."""
        core = ctx[0]
        src = core.source
        chunk_len = ctx[1].run_lengths(first, last, bounds)
        a = bounds.item(0)
        b = bounds.item(-1)
        view = src.view_for(b - a)
        if view:
            # offsets into the whole file: increasing, non-negative int64 reinterpreted
            _native.decode_run(
                ctx[3],
                target,
                start,
                count,
                first,
                view,
                bounds[:-1].view(np.uint64),
                chunk_len,
                core.name,
            )
            return
        pad = a & 63
        # differences of increasing int64 offsets: non-negative, reinterpreted
        chunk_off = (bounds[:-1] - (a - pad)).view(np.uint64)
        buf, token = _take_buffer(pad + b - a)
        try:
            src.read_range_into(a, b, buf, pad)
            _native.decode_run(
                ctx[3], target, start, count, first, buf, chunk_off, chunk_len, core.name
            )
        finally:
            _give_buffer(buf, token)

    def _read_box(
        self,
        ctx: tuple,
        start: list[int],
        count: list[int],
        shape: tuple[int, ...],
        out: np.ndarray | None,
    ) -> np.ndarray:
        """A box touching several chunks (``out``, if given, is C-contiguous)."""
        core, lut, grid = ctx[0], ctx[1], ctx[2]
        io_max, io_merge = self._data_io(core)
        run = grid.box_run(start, count)
        if run is not None:
            # Consecutive chunks are back to back in the file: no gaps to plan around.
            first, last = run
            bounds = lut.run_entries(first, last)
            if bounds.item(-1) - bounds.item(0) <= io_max:  # always for local files
                target = np.empty(shape, dtype=ctx[4]) if out is None else out
                self._decode_run(ctx, target, start, count, first, last, bounds)
                return target
            idx = _native.index_run(first, last - first + 1)
            plan = plan_run(bounds, io_size_max=io_max)
        else:
            idx = grid.box_chunks(start, count)
            starts, stops = lut.ranges(idx)
            sel = tuple([_native.index_run(s, c) for s, c in zip(start, count, strict=True)])
            target = np.empty(shape, dtype=ctx[4]) if out is None else out
            if self._decode_in_place(ctx, idx, starts, stops, sel, target.reshape(count)):
                return target
            plan = plan_reads(
                starts, stops, io_size_merge=io_merge, io_size_max=io_max, source=core.name
            )
            self._fetch_decode(ctx, plan, idx, sel, target.reshape(count))
            return target
        sel = tuple([_native.index_run(s, c) for s, c in zip(start, count, strict=True)])
        target = np.empty(shape, dtype=ctx[4]) if out is None else out
        self._fetch_decode(ctx, plan, idx, sel, target.reshape(count))
        return target

    def _data_io(self, core: _Core) -> tuple[int, int]:
        """(io_size_max, io_size_merge) for chunk reads: no size cap for local sources."""
        io_max, io_merge = self._file._io
        return (_UNCAPPED if core.source.local else io_max), io_merge

    def _decode_in_place(
        self,
        ctx: tuple,
        idx: np.ndarray,
        starts: np.ndarray,
        stops: np.ndarray,
        sel: tuple,
        target: np.ndarray,
    ) -> bool:
        """Decode the chunks ``idx`` (bytes ``[starts, stops)``) in place from the
        source's view (file map or bytes) into ``target`` (one native call); False
        if the source has none."""
        core = ctx[0]
        view = core.source.view_for(stops.item(-1) - starts.item(0) if starts.size else 0)
        if not view:
            return False
        _native.decode_select(
            ctx[3],
            target,
            sel,
            idx.view(np.uint64),
            view,
            starts.view(np.uint64),
            (stops - starts).view(np.uint64),
            source=core.name,
        )
        return True

    def _fetch_decode(
        self, ctx: tuple, plan: ReadPlan, idx: np.ndarray, sel: tuple, target: np.ndarray
    ) -> None:
        """Fetch the planned ranges and decode every chunk into ``target`` (one native call)."""
        core = ctx[0]
        buf, token = _take_buffer(plan.nbytes)
        try:
            core.source.read_into(plan.read_starts, plan.read_stops, buf, plan.read_pos)
            _native.decode_select(
                ctx[3],
                target,
                sel,
                idx.view(np.uint64),
                buf,
                plan.chunk_off,
                plan.chunk_len,
                source=core.name,
            )
        finally:
            _give_buffer(buf, token)

    def _read_general(self, ctx: tuple, key: Any, out: np.ndarray | None) -> np.ndarray:
        """Any key: outer selection through index arrays."""
        core, lut, grid, _, dtype, dims = ctx[:6]
        sel = normalize_key(key, dims)
        shape = sel.shape
        if out is not None and (out.shape != shape or out.dtype != dtype):
            raise ValueError(
                f"out has shape {out.shape} and dtype {out.dtype}, the read gives {shape} {dtype}"
            )
        if sel.size == 0:
            return out if out is not None else np.empty(shape, dtype)
        idx = grid.touched(sel)
        starts, stops = lut.ranges(idx)
        if out is not None and out.flags.c_contiguous:
            target = out
        else:
            target = np.empty(shape, dtype)
        full = target.reshape(sel.full_shape)
        if not self._decode_in_place(ctx, idx, starts, stops, sel.index, full):
            io_max, io_merge = self._data_io(core)
            plan = plan_reads(
                starts, stops, io_size_merge=io_merge, io_size_max=io_max, source=core.name
            )
            self._fetch_decode(ctx, plan, idx, sel.index, full)
        if out is not None and target is not out:
            out[...] = target
            return out
        return target

    def __repr__(self) -> str:
        rec = self._record
        return (
            f"<OmArray {self._path or '/'!r} shape={rec.dims} chunks={rec.chunks} "
            f"dtype={self.dtype} compression={self.compression}>"
        )
