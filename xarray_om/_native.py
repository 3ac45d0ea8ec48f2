"""The only module that touches cffi: numpy <-> C buffers, error codes -> exceptions.

Every function here releases the GIL while the C code runs (cffi's API mode
does so for every call), so dask threads decode and encode in parallel.
Buffers are passed without copies (``ffi.from_buffer``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ._om_native import ffi, lib
from .errors import OmCodecError, OmEncodingError, OmFormatError
from .format.records import ARRAY_DTYPES, COMPRESSION_NAMES, array_type_for

__all__ = [
    "ArrayCodec",
    "FileMap",
    "decode_box",
    "decode_chunk",
    "decode_lut",
    "decode_run",
    "decode_select",
    "encode_block",
    "encode_chunk",
    "encode_lut",
    "index_run",
    "pread_ranges",
]

_MESSAGES = {
    lib.OM_E_TRUNCATED: "compressed stream is truncated",
    lib.OM_E_CORRUPT: "compressed stream is corrupt",
    lib.OM_E_OUTPUT: "output buffer too small",
    lib.OM_E_INVALID: "unsupported data type / compression",
    lib.OM_E_SIZE_MISMATCH: "chunk does not use exactly its byte range",
    lib.OM_E_NOMEM: "out of memory",
    lib.OM_E_GEOMETRY: "inconsistent geometry or selection",
}


def _message(code: int) -> str:
    return _MESSAGES.get(code, f"native error {code}")


class FileMap:
    """A read-only memory map of a local file, for decoding chunks in place.

    Only the decoders read it, through the native entry point that turns a
    fault (the file truncated under the map: SIGBUS) into an error. Unmapped
    when the last reference goes, so a decode running in another thread keeps
    it valid. Holds no file descriptor. ``None`` from :meth:`open` where
    mapping is not possible (not POSIX, or the file system refuses).
    """

    __slots__ = ("__weakref__", "ptr", "size")

    def __init__(self, ptr: object, size: int) -> None:
        self.ptr = ptr
        self.size = size

    @classmethod
    def open(cls, fd: int, size: int) -> FileMap | None:
        """Map the first ``size`` bytes of ``fd`` (an open file's descriptor)."""
        if size <= 0:
            return None
        p = lib.om_map_file(fd, size)
        if p == ffi.NULL:
            return None
        return cls(ffi.gc(p, lambda q: lib.om_unmap_file(q, size), size), size)

    def __repr__(self) -> str:
        return f"<FileMap of {self.size} bytes>"


def _data(data: object) -> tuple[object, int, object]:
    """(pointer, length, decode function) of a chunk data argument."""
    if type(data) is FileMap:
        return data.ptr, data.size, lib.om_decode_select_mapped
    buf = ffi.from_buffer("uint8_t[]", data)
    return buf, len(buf), lib.om_decode_select


def _decode_error(r: int, where: str, source: object) -> OmFormatError:
    """The exception for a failed decode_select-family call."""
    if r == lib.OM_E_MAPPING:
        # not the chunk's fault: the file shrank under the memory map while being read
        return OmFormatError(
            "the file was truncated while being read, or its storage failed (SIGBUS on a "
            "mapped page)",
            source=source,
        )
    return OmCodecError(f"cannot decode {where}: {_message(r)}", source=source)


@dataclass(frozen=True)
class ArrayCodec:
    """What the native code needs to know about one OM array."""

    data_type: int
    compression: int
    dims: tuple[int, ...]
    chunks: tuple[int, ...]
    scale_factor: float = 1.0
    add_offset: float = 0.0
    x86_lanes: bool = False  # fpx float64: x86 reference V64 lane order (codec spec K3)

    def __post_init__(self) -> None:
        if lib.om_check_pair(self.data_type, self.compression) != 0:
            dt = ARRAY_DTYPES.get(self.data_type, self.data_type)
            comp = COMPRESSION_NAMES.get(self.compression, self.compression)
            raise OmEncodingError(f"compression {comp} is not valid for {dt} arrays")
        if len(self.dims) != len(self.chunks) or not 1 <= len(self.dims) <= lib.OM_MAX_DIMS:
            raise OmEncodingError(f"invalid geometry dims={self.dims} chunks={self.chunks}")

    @property
    def dtype(self) -> np.dtype:
        dt = self.__dict__.get("_dtype")
        if dt is None:
            dt = self.__dict__["_dtype"] = ARRAY_DTYPES[self.data_type].newbyteorder("=")
        return dt

    @property
    def flags(self) -> int:
        return lib.OM_FLAG_X86_LANES if self.x86_lanes else 0

    def _c(self, keep: list | None = None) -> object:
        """The ``om_array_t`` of this codec, built once and cached (hot path of reads)."""
        cached = self.__dict__.get("_c_struct")
        if cached is None:
            dims = ffi.new("uint64_t[]", list(self.dims))
            chunks = ffi.new("uint64_t[]", list(self.chunks))
            struct = ffi.new(
                "om_array_t *",
                {
                    "dtype": self.data_type,
                    "compression": self.compression,
                    "scale_factor": self.scale_factor,
                    "add_offset": self.add_offset,
                    "flags": self.flags,
                    "ndim": len(self.dims),
                    "dims": dims,
                    "chunks": chunks,
                },
            )
            cached = (struct, dims, chunks)  # the arrays must live as long as the struct
            # frozen dataclass: bypass __setattr__ for this derived, unpicklable cache
            self.__dict__["_c_struct"] = cached
        return cached[0]

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)


_TYPE_IDS: dict[object, int] = {}


def _type_id(dtype: object) -> int:
    """Record data type id of a dtype (cached: this sits on per-chunk paths)."""
    tid = _TYPE_IDS.get(dtype)
    if tid is None:
        tid = _TYPE_IDS[dtype] = array_type_for(np.dtype(dtype))
    return tid


def _u64(a: object) -> np.ndarray:
    if type(a) is np.ndarray and a.dtype == np.uint64 and a.flags.c_contiguous:
        return a
    return np.ascontiguousarray(a, dtype=np.uint64)


def encode_chunk(
    values: np.ndarray,
    compression: int,
    scale_factor: float = 1.0,
    add_offset: float = 0.0,
    *,
    row_len: int | None = None,
    x86_lanes: bool = False,
) -> bytes:
    """Compressed bytes of one chunk.

    ``values`` are the chunk's elements in row-major order of its clipped
    extent; ``row_len`` is the clipped length of its last dimension (default:
    ``values.shape[-1]``, i.e. pass the chunk as an N-D array).
    """
    values = np.ascontiguousarray(values)
    data_type = array_type_for(values.dtype)
    n = values.size
    if n == 0:
        raise OmEncodingError("a chunk holds at least one value")
    row_len = values.shape[-1] if row_len is None else row_len
    if row_len < 1 or n % row_len:
        raise OmEncodingError(f"row length {row_len} does not divide {n} values")
    cap = lib.om_chunk_bound(data_type, compression, n)
    out = bytearray(cap)
    scratch = np.empty(lib.om_chunk_scratch(data_type, compression, n), np.uint8)
    flags = lib.OM_FLAG_X86_LANES if x86_lanes else 0
    r = lib.om_encode_chunk(
        data_type,
        compression,
        scale_factor,
        add_offset,
        flags,
        ffi.from_buffer(values),
        n,
        row_len,
        ffi.from_buffer(out),
        cap,
        ffi.from_buffer(scratch),
        scratch.nbytes,
    )
    if r < 0:
        raise OmEncodingError(f"cannot encode chunk: {_message(r)}")
    return bytes(out[:r])


def decode_chunk(
    data: bytes | memoryview | np.ndarray,
    dtype: np.dtype | str,
    compression: int,
    n: int,
    row_len: int,
    scale_factor: float = 1.0,
    add_offset: float = 0.0,
    *,
    x86_lanes: bool = False,
    source: object = None,
) -> tuple[np.ndarray, int]:
    """Decode one chunk of ``n`` values; returns (1-D values, bytes consumed)."""
    data_type = _type_id(dtype)
    out = np.empty(n, dtype)
    # Only the int16 codecs stage integers outside ``out`` (2 bytes per value, 64-aligned).
    if compression in (0, 3):
        scratch_arr = np.empty(2 * n + 64, np.uint8)
        scratch, scratch_len = ffi.from_buffer(scratch_arr), scratch_arr.nbytes
    else:
        scratch, scratch_len = ffi.NULL, 0
    buf = ffi.from_buffer("uint8_t[]", data)
    flags = lib.OM_FLAG_X86_LANES if x86_lanes else 0
    r = lib.om_decode_chunk(
        data_type,
        compression,
        scale_factor,
        add_offset,
        flags,
        buf,
        len(buf),
        n,
        row_len,
        ffi.from_buffer(out),
        scratch,
        scratch_len,
    )
    if r < 0:
        raise OmCodecError(f"cannot decode chunk: {_message(r)}", source=source)
    return out, int(r)


def encode_lut(lut: np.ndarray) -> tuple[bytes, int]:
    """Encode look-up table entries (absolute offsets); returns (bytes, stride)."""
    lut = np.ascontiguousarray(lut, dtype=np.uint64)
    cap = lib.om_lut_bound(lut.size)
    out = bytearray(cap)
    stride = ffi.new("uint64_t *")
    r = lib.om_lut_encode(
        ffi.from_buffer("uint64_t[]", lut), lut.size, ffi.from_buffer(out), cap, stride
    )
    if r < 0:
        raise OmEncodingError(f"cannot encode look-up table: {_message(r)}")
    return bytes(out[:r]), int(stride[0])


def decode_lut(
    data: bytes | memoryview, n_entries: int, stride: int, *, source: object = None
) -> np.ndarray:
    """Decode ``n_entries`` LUT entries from whole groups starting at a group boundary."""
    out = np.empty(n_entries, np.uint64)
    buf = ffi.from_buffer("uint8_t[]", data)
    r = lib.om_lut_decode(buf, len(buf), n_entries, stride, ffi.from_buffer("uint64_t[]", out))
    if r < 0:
        raise OmCodecError(f"cannot decode look-up table: {_message(r)}", source=source)
    return out


def decode_select(
    codec: ArrayCodec,
    out: np.ndarray,
    sel: Sequence[np.ndarray],
    chunk_idx: np.ndarray,
    data: bytes | memoryview | np.ndarray,
    chunk_off: np.ndarray,
    chunk_len: np.ndarray,
    *,
    source: object = None,
) -> None:
    """Decode chunks and scatter the selected elements into ``out`` in one call.

    ``out`` (C-contiguous, dtype ``codec.dtype``) has shape ``[len(s) for s in sel]``
    and receives ``array[np.ix_(*sel)]`` for the elements inside the listed chunks.
    Chunk ``k`` (linear index ``chunk_idx[k]``) occupies
    ``data[chunk_off[k]:chunk_off[k] + chunk_len[k]]``; ``data`` is a bytes-like
    object or a :class:`FileMap` (offsets into the whole file).
    """
    if not out.flags.c_contiguous or out.dtype != codec.dtype:
        raise ValueError("out must be C-contiguous with the array's dtype")
    a = codec._c()
    ndim = len(sel)
    if ndim != out.ndim:
        raise ValueError("selection does not match the output shape")
    sel = [
        s
        if type(s) is np.ndarray and s.dtype == np.int64 and s.flags.c_contiguous
        else np.ascontiguousarray(s, dtype=np.int64)
        for s in sel
    ]
    sel_len = ffi.new("uint64_t[]", ndim)
    sel_ptrs = ffi.new("int64_t *[]", ndim)
    for d, s in enumerate(sel):
        if s.shape[0] != out.shape[d]:
            raise ValueError("selection does not match the output shape")
        sel_len[d] = s.shape[0]
        sel_ptrs[d] = ffi.from_buffer("int64_t[]", s)
    chunk_idx = _u64(chunk_idx)
    chunk_off = _u64(chunk_off)
    chunk_len = _u64(chunk_len)
    n = chunk_idx.size
    if chunk_off.size != n or chunk_len.size != n:
        raise ValueError("chunk_idx, chunk_off and chunk_len differ in length")
    buf, n_buf, decode = _data(data)
    bad = ffi.new("size_t *")
    r = decode(
        a,
        sel_ptrs,
        sel_len,
        ffi.from_buffer(out),
        n,
        ffi.from_buffer("uint64_t[]", chunk_idx),
        buf,
        n_buf,
        ffi.from_buffer("uint64_t[]", chunk_off),
        ffi.from_buffer("uint64_t[]", chunk_len),
        bad,
    )
    if r < 0:
        where = f"chunk {int(chunk_idx[bad[0]])}" if n and bad[0] < n else "selection"
        raise _decode_error(r, where, source)


# -- decode_box: the hot path of small reads ---------------------------------------------

# 0, 1, 2, ... shared by every box read: dimension d selects ``iota[start:start + count]``
# by pointer arithmetic instead of building an index array per read. Grown on demand
# (never shrunk) up to the cap; longer selections get their own ``np.arange``.
_IOTA_CAP = 1 << 16
_iota: tuple[np.ndarray, object] = (np.empty(0, np.int64), ffi.NULL)
_iota_lock = threading.Lock()


def _iota_upto(n: int) -> tuple[np.ndarray, object]:
    global _iota
    arr, ptr = _iota
    n = min(n, _IOTA_CAP)
    if arr.size >= n:
        return arr, ptr
    with _iota_lock:
        arr, ptr = _iota
        if arr.size < n:
            arr = np.arange(max(1024, 1 << (n - 1).bit_length()), dtype=np.int64)
            arr.flags.writeable = False  # views of it are handed out as index arrays
            # The cdata keeps ``arr`` alive; callers hold the pair while C runs, so a
            # concurrent growth never frees memory in use.
            ptr = ffi.from_buffer("int64_t[]", arr)
            _iota = (arr, ptr)
    return _iota


class _BoxArgs:
    """Argument arrays of one decode_box call (one set per thread, reused)."""

    __slots__ = (
        "bad",
        "chunk_idx",
        "chunk_len",
        "chunk_off",
        "count",
        "data",
        "data_c",
        "data_len",
        "sel_len",
        "sel_ptrs",
    )

    def __init__(self) -> None:
        self.sel_ptrs = ffi.new("int64_t *[]", lib.OM_MAX_DIMS)
        self.sel_len = ffi.new("uint64_t[]", lib.OM_MAX_DIMS)
        self.chunk_idx = ffi.new("uint64_t[]", 1)
        self.chunk_off = ffi.new("uint64_t[]", 1)
        self.chunk_len = ffi.new("uint64_t[]", 1)
        self.bad = ffi.new("size_t *")
        # decode_box1: the counts now in sel_len (None: unknown) and the last
        # read buffer with its cdata (the reader's per-thread buffer, reused)
        self.count: list[int] | None = None
        self.data: object = None
        self.data_c: object = None
        self.data_len = 0


def index_run(start: int, count: int) -> np.ndarray:
    """``np.arange(start, start + count)`` (int64, read-only), usually a view of a shared array."""
    arr = _iota_upto(start + count)[0]
    if start + count <= arr.size:
        return arr[start : start + count]
    run = np.arange(start, start + count, dtype=np.int64)
    run.flags.writeable = False
    return run


# decode_box1 keeps the cdata of read buffers up to this size between calls.
_DATA_CACHE_MAX = 1 << 20


class _BoxTls(threading.local):
    args: _BoxArgs | None = None


_box_tls = _BoxTls()


def decode_box(
    codec: ArrayCodec,
    out: np.ndarray,
    start: Sequence[int],
    count: Sequence[int],
    chunk_idx: int | np.ndarray,
    data: bytes | memoryview | np.ndarray,
    chunk_off: int | np.ndarray,
    chunk_len: int | np.ndarray,
    *,
    source: object = None,
) -> None:
    """:func:`decode_select` for a box ``array[start[0]:start[0] + count[0], ...]``.

    Same native call, cheaper marshalling (no index arrays, per-thread argument
    arrays): meant for small reads where the call overhead matters. ``out`` is
    C-contiguous with ``prod(count)`` elements of ``codec.dtype`` (any shape, e.g.
    with the integer-indexed axes dropped). ``start`` and ``count`` hold Python
    ints; ``chunk_idx``, ``chunk_off`` and ``chunk_len`` are either ints (one
    chunk) or equally long arrays.
    """
    if type(out) is not np.ndarray or not out.flags.c_contiguous or out.dtype != codec.dtype:
        raise ValueError("out must be a C-contiguous numpy array with the array's dtype")
    dims = codec.dims
    ndim = len(dims)
    if len(start) != ndim or len(count) != ndim:
        raise ValueError("start and count need one entry per dimension")
    args = _box_tls.args
    if args is None:
        args = _BoxArgs()
    else:
        # Taken out while in use: a re-entrant call on this thread (signal handler,
        # finaliser) gets its own set instead of overwriting ours.
        _box_tls.args = None
    keep = []
    try:
        iota_arr, iota = _iota
        n_iota = iota_arr.size
        ptrs = args.sel_ptrs
        n_out = 1
        for d in range(ndim):
            s = start[d]
            c = count[d]
            e = s + c
            if not (0 <= s and 0 < c and e <= dims[d]):
                raise ValueError(f"box [{s}, +{c}) outside dimension {d} of size {dims[d]}")
            if e > n_iota and e <= _IOTA_CAP:
                keep.append(iota)  # earlier dimensions point into the old run
                iota_arr, iota = _iota_upto(max(dims))
                n_iota = iota_arr.size
            if e <= n_iota:
                ptrs[d] = iota + s
            else:
                ix = np.arange(s, e, dtype=np.int64)
                keep.append(ix)
                ptrs[d] = ffi.from_buffer("int64_t[]", ix)
            n_out *= c
        if out.size != n_out:
            raise ValueError(f"out has {out.size} elements, the box {n_out}")
        lens = args.sel_len
        lens[0:ndim] = count
        args.count = None
        if type(chunk_idx) is int:
            n = 1
            p_idx, p_off, p_len = args.chunk_idx, args.chunk_off, args.chunk_len
            p_idx[0] = chunk_idx
            p_off[0] = chunk_off
            p_len[0] = chunk_len
        else:
            idx, off, ln = _u64(chunk_idx), _u64(chunk_off), _u64(chunk_len)
            n = idx.size
            if off.size != n or ln.size != n:
                raise ValueError("chunk_idx, chunk_off and chunk_len differ in length")
            keep.append((idx, off, ln))
            p_idx = ffi.from_buffer("uint64_t[]", idx)
            p_off = ffi.from_buffer("uint64_t[]", off)
            p_len = ffi.from_buffer("uint64_t[]", ln)
        buf, n_buf, decode = _data(data)
        bad = args.bad
        r = decode(
            codec._c(),
            ptrs,
            lens,
            ffi.from_buffer(out),
            n,
            p_idx,
            buf,
            n_buf,
            p_off,
            p_len,
            bad,
        )
        if r < 0:
            where = f"chunk {int(p_idx[bad[0]])}" if bad[0] < n else "selection"
            raise _decode_error(r, where, source)
    finally:
        _box_tls.args = args


def pread_ranges(
    fd: int, starts: np.ndarray, stops: np.ndarray, positions: np.ndarray, buf: object
) -> tuple[int, int]:
    """Read file ranges ``[starts[k], stops[k])`` of ``fd`` into ``buf`` at ``positions[k]``
    in one native call (one ``pread`` per range, the GIL released).

    Returns ``(-1, 0)`` on success, else ``(k, errno)`` for the first range that
    failed (``errno`` 0: the file ended early). POSIX only.
    """
    starts, stops, positions = _u64(starts), _u64(stops), _u64(positions)
    n = starts.size
    if stops.size != n or positions.size != n:
        raise ValueError("starts, stops and positions differ in length")
    err = ffi.new("int *")
    b = ffi.from_buffer("uint8_t[]", buf, require_writable=True)
    r = lib.om_pread_ranges(
        fd,
        n,
        ffi.from_buffer("uint64_t[]", starts),
        ffi.from_buffer("uint64_t[]", stops),
        ffi.from_buffer("uint64_t[]", positions),
        b,
        len(b),
        err,
    )
    if r == 0:
        return -1, 0
    if r <= -1000:
        return int(-r - 1000), int(err[0])
    raise ValueError(f"cannot read ranges: {_message(r)} (ranges outside the buffer?)")


def decode_box1(
    codec: ArrayCodec,
    out: np.ndarray,
    start: list[int],
    count: list[int],
    chunk_idx: int,
    data: memoryview,
    chunk_off: int,
    chunk_len: int,
    source: object = None,
) -> None:
    """:func:`decode_box` for one chunk, for callers that built ``start``/``count``
    from a validated key and ``out`` with ``np.empty`` (the reader's point reads):
    no argument checks beyond the native ones."""
    args = _box_tls.args
    if args is None:
        args = _BoxArgs()
    else:
        _box_tls.args = None
    try:
        iota_arr, iota = _iota
        n_iota = iota_arr.size
        ptrs = args.sel_ptrs
        ndim = len(start)
        for d in range(ndim):
            s = start[d]
            e = s + count[d]
            if e <= n_iota:
                ptrs[d] = iota + s
            else:  # rare: beyond the shared run; decode_box handles growth and long runs
                _box_tls.args = args
                args = None
                decode_box(
                    codec, out, start, count, chunk_idx, data, chunk_off, chunk_len, source=source
                )
                return
        lens = args.sel_len
        if count != args.count:  # point reads repeat the same counts
            lens[0:ndim] = count
            args.count = count[:]
        p_idx = args.chunk_idx
        p_idx[0] = chunk_idx
        args.chunk_off[0] = chunk_off
        args.chunk_len[0] = chunk_len
        decode = lib.om_decode_select
        if data is args.data:
            buf = args.data_c
            n_buf = args.data_len
        elif type(data) is FileMap:
            buf, n_buf, decode = data.ptr, data.size, lib.om_decode_select_mapped
        else:
            buf = ffi.from_buffer("uint8_t[]", data)
            n_buf = len(buf)
            if n_buf <= _DATA_CACHE_MAX:  # keeps the buffer alive: small ones only
                args.data, args.data_c, args.data_len = data, buf, n_buf
        bad = args.bad
        r = decode(
            codec._c(),
            ptrs,
            lens,
            ffi.from_buffer(out),
            1,
            p_idx,
            buf,
            n_buf,
            args.chunk_off,
            args.chunk_len,
            bad,
        )
        if r < 0:
            where = f"chunk {chunk_idx}" if bad[0] < 1 else "selection"
            raise _decode_error(r, where, source)
    finally:
        if args is not None:
            _box_tls.args = args


def decode_run(
    codec: ArrayCodec,
    out: np.ndarray,
    start: list[int],
    count: list[int],
    first: int,
    data: memoryview,
    chunk_off: np.ndarray,
    chunk_len: np.ndarray,
    source: object = None,
) -> None:
    """:func:`decode_box1` for the consecutive chunks ``first, first + 1, ...`` (one per
    entry of ``chunk_off``/``chunk_len``, uint64 C-contiguous arrays), e.g. a time
    series through chunks that split the last dimension: the chunk indices point
    into the shared ``0, 1, 2, ...`` run, no argument checks beyond the native ones."""
    n = chunk_off.size
    iota_arr, iota = _iota
    if first + n > iota_arr.size:
        if first + n > _IOTA_CAP:
            idx = np.arange(first, first + n, dtype=np.uint64)
            decode_box(codec, out, start, count, idx, data, chunk_off, chunk_len, source=source)
            return
        iota_arr, iota = _iota_upto(first + n)
    args = _box_tls.args
    if args is None:
        args = _BoxArgs()
    else:
        _box_tls.args = None
    try:
        n_iota = iota_arr.size
        ptrs = args.sel_ptrs
        ndim = len(start)
        for d in range(ndim):
            s = start[d]
            if s + count[d] <= n_iota:
                ptrs[d] = iota + s
            else:  # rare: beyond the shared run; decode_box handles growth and long runs
                _box_tls.args = args
                args = None
                idx = np.arange(first, first + n, dtype=np.uint64)
                decode_box(codec, out, start, count, idx, data, chunk_off, chunk_len, source=source)
                return
        lens = args.sel_len
        lens[0:ndim] = count
        args.count = None
        buf, n_buf, decode = _data(data)
        bad = args.bad
        p_idx = ffi.cast("uint64_t *", iota + first)  # non-negative int64 = same uint64
        r = decode(
            codec._c(),
            ptrs,
            lens,
            ffi.from_buffer(out),
            n,
            p_idx,
            buf,
            n_buf,
            ffi.from_buffer("uint64_t[]", chunk_off),
            ffi.from_buffer("uint64_t[]", chunk_len),
            bad,
        )
        if r < 0:
            where = f"chunk {first + bad[0]}" if bad[0] < n else "selection"
            raise _decode_error(r, where, source)
    finally:
        if args is not None:
            _box_tls.args = args


def encode_block_bound(codec: ArrayCodec, shape: Sequence[int]) -> int:
    """Bytes an output buffer needs to hold the encoded chunks of a block of ``shape``."""
    return int(
        lib.om_encode_block_bound(codec._c(), ffi.new("uint64_t[]", [int(s) for s in shape]))
    )


def encode_block(
    codec: ArrayCodec,
    block: np.ndarray,
    block_start: Sequence[int],
    *,
    out: np.ndarray | None = None,
) -> tuple[memoryview, np.ndarray]:
    """Encode every chunk of a chunk-aligned block.

    Returns (concatenated chunk bytes, length of each chunk) in block-local
    row-major chunk order. ``out`` is an optional uint8 buffer of at least
    :func:`encode_block_bound` bytes to encode into (the returned bytes are a
    view of it); recycling buffers saves the page faults of fresh multi-MiB
    allocations.
    """
    block = np.ascontiguousarray(block, dtype=codec.dtype)
    a = codec._c()
    if block.ndim != len(codec.dims):
        raise OmEncodingError(f"block has {block.ndim} dimensions, array has {len(codec.dims)}")
    start = ffi.new("uint64_t[]", [int(s) for s in block_start])
    shape = ffi.new("uint64_t[]", list(block.shape))
    n_chunks = 1
    for s, c in zip(block.shape, codec.chunks, strict=True):
        n_chunks *= -(-s // c)
    cap = lib.om_encode_block_bound(a, shape)
    if out is None:
        out = np.empty(cap, np.uint8)
    elif out.dtype != np.uint8 or out.ndim != 1 or not out.flags.c_contiguous or out.size < cap:
        raise ValueError(f"out must be a contiguous 1-D uint8 array of at least {cap} bytes")
    lengths = np.empty(n_chunks, np.uint64)
    r = lib.om_encode_block(
        a,
        ffi.from_buffer(block),
        start,
        shape,
        ffi.from_buffer(out),
        out.size,
        ffi.from_buffer("uint64_t[]", lengths),
        n_chunks,
    )
    if r < 0:
        raise OmEncodingError(f"cannot encode block at {tuple(block_start)}: {_message(r)}")
    return memoryview(out)[:r], lengths
