"""OmWriter: stream arrays, scalars and groups into a new OM v3 file, atomically.

Layout (container spec 7.1, the reference's "inline" placement): the 3-byte
header, then for each array its chunks appended in chunk-index order as they
are encoded, immediately followed by its look-up table; every record (array
descriptor, scalar, group) is written, 8-byte aligned, as soon as its
``write_*`` call happens, so children must be written before their parents;
``close(root)`` appends the 8-aligned trailer and commits.

Nothing is visible at the target until ``close(root)`` succeeds (see
:mod:`xarray_om.format.commit`); ``abort()``, or any exception escaping a
``with OmWriter(...)`` block, discards the output and leaves the previous file
(or nothing) at the target.

Memory: a compressed array is never held in memory as a whole. ``write_array``
encodes blocks of whole chunks (about ``block_bytes`` of input each), and only
the look-up table (8 bytes per chunk) stays in memory until the array ends.

The writer is not thread-safe: drive it from one thread (``write_array``
encodes in a private thread pool; ``ArrayStream.append_encoded`` accepts bytes
encoded anywhere, e.g. by ``_native.encode_block`` on dask workers).
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import math
import os
import threading
import warnings
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from .. import _native
from ..errors import OmEncodingError
from .commit import DEFAULT_BUFFER_SIZE, Sink, open_sink
from .records import (
    ARRAY_DTYPES,
    COMPRESSION_IDS,
    COMPRESSION_NAMES,
    HEADER_V3,
    array_type_for,
    encode_array_record,
    encode_scalar_record,
    encode_trailer,
    scalar_type_for,
    uses_scale,
    valid_pair,
)

__all__ = [
    "ArrayStream",
    "EncodeBuffers",
    "NodeRef",
    "OmClampWarning",
    "OmWriter",
    "array_codec",
    "block_dimension",
    "clamp_message",
    "count_out_of_range",
    "plan_blocks",
    "resolve_compression",
]

OnClamp = Literal["warn", "raise", "ignore"]

DEFAULT_BLOCK_BYTES = 2 * 2**20
_PAD = bytes(8)
# Elements checked per numpy pass in count_out_of_range (keeps temporaries in cache).
_CHECK_SLICE = 1 << 18


class OmClampWarning(UserWarning):
    """Values do not survive a lossy compression: they clamp or read back as NaN."""


@dataclass(frozen=True)
class NodeRef:
    """Handle of a record already written: pass it as a child or as the root.

    Attributes
    ----------
    offset, size
        Byte range of the record in the file.
    kind
        ``"array"``, ``"scalar"`` or ``"group"``.
    name
        The record's name.
    """

    offset: int
    size: int
    kind: str
    name: str
    _owner: object = field(default=None, repr=False, compare=False)


# --------------------------------------------------------------------------- validation


def _array_dtype(dtype: Any) -> np.dtype:
    """Native-order storage dtype of an array; bool is stored as uint8."""
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return np.dtype(np.uint8)
    try:
        return ARRAY_DTYPES[array_type_for(dt)].newbyteorder("=")
    except KeyError:
        raise OmEncodingError(
            f"unsupported array dtype {dt}: OM arrays hold int8..int64, uint8..uint64, "
            "float32 or float64 (convert first, e.g. float16 -> float32)"
        ) from None


def resolve_compression(
    dtype: Any, compression: str | int | None, scale_factor: float | None
) -> int:
    """Compression id for an array of ``dtype``, applying the lossless-by-default rule.

    ``None`` gives ``fpx_xor_2d`` for floats (lossless) unless ``scale_factor``
    is given, then ``pfor_delta_2d_int16`` for float32 and ``pfor_delta_2d``
    (scaled to int64) for float64; integers get ``pfor_delta_2d`` (lossless).
    """
    dt = _array_dtype(dtype)
    data_type = array_type_for(dt)
    if compression is None:
        if dt.kind == "f":
            if scale_factor is None:
                return COMPRESSION_IDS["fpx_xor_2d"]
            return COMPRESSION_IDS["pfor_delta_2d_int16" if dt.itemsize == 4 else "pfor_delta_2d"]
        return COMPRESSION_IDS["pfor_delta_2d"]
    if isinstance(compression, str):
        if compression not in COMPRESSION_IDS:
            raise OmEncodingError(
                f"unknown compression {compression!r}; choose one of {sorted(COMPRESSION_IDS)} "
                "(OM has no uncompressed arrays)"
            )
        comp = COMPRESSION_IDS[compression]
    elif isinstance(compression, (int, np.integer)) and not isinstance(compression, bool):
        comp = int(compression)
        if comp not in COMPRESSION_NAMES:
            raise OmEncodingError(f"unknown compression id {comp}")
    else:
        raise OmEncodingError(f"compression must be a name or an id, not {compression!r}")
    if not valid_pair(data_type, comp):
        allowed = [n for i, n in COMPRESSION_NAMES.items() if valid_pair(data_type, i)]
        raise OmEncodingError(
            f"compression {COMPRESSION_NAMES[comp]} is not valid for {dt} arrays; valid: {allowed}"
        )
    return comp


def _float32_param(value: Any, what: str, *, must_be_finite: bool, nonzero: bool = False) -> float:
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise OmEncodingError(f"{what} must be a number, not {value!r}") from None
    with np.errstate(over="ignore"):
        f32 = float(np.float32(f))
    if must_be_finite and not math.isfinite(f32):
        raise OmEncodingError(
            f"{what}={value!r} is not a finite float32; every value would be lost"
        )
    if nonzero and f32 == 0.0:
        raise OmEncodingError(f"{what}=0 makes every value read back as NaN")
    return f32


def _geometry(shape: Any, chunks: Any) -> tuple[tuple[int, ...], tuple[int, ...]]:
    def ints(seq: Any, what: str) -> tuple[int, ...]:
        try:
            items = tuple(seq)
        except TypeError:
            raise OmEncodingError(f"{what} must be a sequence of integers, not {seq!r}") from None
        out = []
        for v in items:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                raise OmEncodingError(f"{what} must be integers, got {seq!r}")
            out.append(int(v))
        return tuple(out)

    dims = ints(shape, "shape")
    chunk_t = ints(chunks, "chunks")
    if not dims:
        raise OmEncodingError("OM arrays have at least one dimension; write a scalar instead")
    if len(dims) > 32:
        raise OmEncodingError(f"{len(dims)} dimensions (at most 32 are supported)")
    if len(chunk_t) != len(dims):
        raise OmEncodingError(f"chunks {chunk_t} do not match the {len(dims)} dimensions of {dims}")
    for i, (d, c) in enumerate(zip(dims, chunk_t, strict=True)):
        if d < 1:
            raise OmEncodingError(f"dimension {i} has length {d}; OM arrays cannot be empty")
        if not 1 <= c <= d:
            raise OmEncodingError(f"chunk length {c} of dimension {i} is outside 1..{d}")
    return dims, chunk_t


def _check_on_clamp(on_clamp: str) -> None:
    if on_clamp not in ("warn", "raise", "ignore"):
        raise ValueError(f"on_clamp must be 'warn', 'raise' or 'ignore', not {on_clamp!r}")


def array_codec(
    shape: Sequence[int],
    dtype: Any,
    chunks: Sequence[int],
    compression: str | int | None = None,
    scale_factor: float | None = None,
    add_offset: float = 0.0,
) -> _native.ArrayCodec:
    """Validated codec of an array to write, with the writer's defaults.

    Same rules as :meth:`OmWriter.write_array` (dtype, compression defaults,
    geometry, scale parameters); raises ``OmEncodingError``. The result equals
    ``OmWriter.begin_array(...).codec`` for the same arguments, so blocks can be
    encoded (``_native.encode_block``) before the array's stream is opened.
    """
    dims, chunk_t = _geometry(shape, chunks)
    dt = _array_dtype(dtype)
    comp = resolve_compression(dt, compression, scale_factor)
    scaled = uses_scale(dt, comp)
    sf = _float32_param(
        1.0 if scale_factor is None else scale_factor, "scale_factor",
        must_be_finite=scaled, nonzero=scaled,
    )  # fmt: skip
    ao = _float32_param(add_offset, "add_offset", must_be_finite=scaled)
    return _native.ArrayCodec(array_type_for(dt), comp, dims, chunk_t, sf, ao)


# --------------------------------------------------------------------------- lossy range check


def count_out_of_range(
    values: np.ndarray, compression: int, scale_factor: float, add_offset: float
) -> int:
    """Number of non-NaN values that a lossy compression cannot represent.

    Mirrors the value-domain step of codec spec 2.1-2.4 with numpy:

    * ``pfor_delta_2d_int16`` (float32): ``s = (v + add_offset) * scale_factor``
      (float32 arithmetic); ``s >= 32766.5`` rounds to the NaN sentinel 32767
      (the value reads back as NaN, K6), ``s < -32768.5`` clamps to -32768.
    * ``pfor_delta_2d_int16_logarithmic``: ``s = log10(1 + v) * scale_factor``;
      the same bounds, plus ``v < -1`` (NaN) and ``v == -1`` (-inf, clamps).
    * ``pfor_delta_2d`` on float32 / float64: ``s >= 2**31`` (``2**63``) wraps to
      the most negative integer on x86 (K5), smaller than ``-2**31`` (``-2**63``)
      clamps.

    ``+-inf`` inputs count as out of range; NaN inputs do not (they round-trip).
    Integer arrays and ``fpx_xor_2d`` always give 0. Values exactly on a
    rounding boundary may be judged differently from the C library's
    ``log10f`` by one ulp.
    """
    v = np.asarray(values)
    if v.dtype.kind != "f" or compression == COMPRESSION_IDS["fpx_xor_2d"]:
        return 0
    flat = v.reshape(-1)
    total = 0
    if compression == COMPRESSION_IDS["pfor_delta_2d"] and v.dtype.itemsize == 8:
        sf, ao = float(np.float32(scale_factor)), float(np.float32(add_offset))
        lo, hi = -(2.0**63), 2.0**63
    else:
        sf, ao = np.float32(scale_factor), np.float32(add_offset)
        if compression == COMPRESSION_IDS["pfor_delta_2d"]:
            lo, hi = np.float32(-(2.0**31)), np.float32(2.0**31)
        else:
            lo, hi = np.float32(-32768.5), np.float32(32766.5)
    log = compression == COMPRESSION_IDS["pfor_delta_2d_int16_logarithmic"]
    one = flat.dtype.type(1)
    if not log and flat.size and _extremes_in_range(flat, sf, ao, lo, hi):
        return 0
    with np.errstate(all="ignore"):
        for i in range(0, flat.size, _CHECK_SLICE):
            x = flat[i : i + _CHECK_SLICE]
            s = np.log10(x + one) if log else x + flat.dtype.type(ao)
            s *= flat.dtype.type(sf)
            # NaN s (from an in-range input) fails both comparisons: counted.
            ok = (s >= lo) & (s < hi)
            np.logical_or(ok, np.isnan(x), out=ok)
            total += ok.size - int(np.count_nonzero(ok))
    return total


def _extremes_in_range(flat: np.ndarray, sf: Any, ao: Any, lo: Any, hi: Any) -> bool:
    """True if every scaled value is in [lo, hi), judged from the smallest and largest input.

    ``(v + add_offset) * scale_factor`` with rounding after each step is monotonic
    in ``v`` (increasing or decreasing with the sign of the scale), so the scaled
    values lie between those of the extremes: two reductions instead of the full
    count (about 12x cheaper) when nothing is out of range, the usual case. NaN
    inputs are skipped by fmin/fmax; infinities and all-NaN input fail the test
    and fall back to the full count.
    """
    t = flat.dtype.type
    with np.errstate(all="ignore"):
        ends = np.array([np.fmin.reduce(flat), np.fmax.reduce(flat)], dtype=flat.dtype)
        s = (ends + t(ao)) * t(sf)
        return bool(np.all((s >= lo) & (s < hi)))


def clamp_message(n: int, compression: int, scale_factor: float, add_offset: float) -> str:
    """What :class:`OmClampWarning` / ``on_clamp="raise"`` say about ``n`` unstorable values.

    Parameters
    ----------
    n
        Number of values (:func:`count_out_of_range`).
    compression, scale_factor, add_offset
        The array's compression id and OM scaling.

    Returns
    -------
    str
        The count, the encoding, what happens to such values and how to avoid it.
    """
    what = (
        "read back as NaN or are clamped"
        if compression != COMPRESSION_IDS["pfor_delta_2d"]
        else "overflow the scaled integer range (they would read back wrapped or clamped)"
    )
    return (
        f"{n} value(s) cannot be stored with {COMPRESSION_NAMES[compression]} "
        f"(scale_factor={scale_factor}, add_offset={add_offset}): they would {what}; "
        "use a smaller scale_factor, another add_offset, or fpx_xor_2d (lossless)"
    )


# --------------------------------------------------------------------------- block planning


def block_dimension(
    shape: Sequence[int], chunks: Sequence[int], max_elements: int
) -> tuple[int, int]:
    """The dimension along which blocks of whole chunks are cut, and their unit size.

    Parameters
    ----------
    shape, chunks
        Array and OM chunk shape.
    max_elements
        Upper bound on the elements of one block.

    Returns
    -------
    (k, unit)
        ``k`` is the outermost dimension for which one chunk along dimensions
        ``0..k`` times the whole extent after ``k`` holds at most
        ``max_elements`` elements (the last dimension if none does); ``unit``
        is the element count of such a block one chunk long along ``k``.
    """
    ndim = len(shape)
    for j in range(ndim):
        unit = math.prod(chunks[: j + 1]) * math.prod(shape[j + 1 :])
        if unit <= max_elements:
            return j, unit
    return ndim - 1, math.prod(chunks)


def plan_blocks(
    shape: Sequence[int], chunks: Sequence[int], max_elements: int
) -> Iterator[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """Split an array into blocks of whole chunks, in chunk-index order.

    Each block is a run of chunks consecutive in chunk order (container spec
    7.3): whole rows of chunks along dimension 0 when such a row holds at most
    ``max_elements`` elements, otherwise the same one dimension further in.
    Yields ``(start, slices)`` with the block's first element and its slices.
    A single chunk larger than ``max_elements`` still forms one block.
    """
    dims, chunk_t = tuple(int(d) for d in shape), tuple(int(c) for c in chunks)
    grid = [-(-d // c) for d, c in zip(dims, chunk_t, strict=True)]
    k, unit = block_dimension(dims, chunk_t, max_elements)
    step = max(1, max_elements // unit)
    tail = tuple(slice(0, d) for d in dims[k + 1 :])
    for outer in itertools.product(*(range(g) for g in grid[:k])):
        head = tuple(
            slice(o * c, min((o + 1) * c, d)) for o, c, d in zip(outer, chunk_t, dims, strict=False)
        )
        for j in range(0, grid[k], step):
            sl = (*head, slice(j * chunk_t[k], min((j + step) * chunk_t[k], dims[k])), *tail)
            yield tuple(s.start for s in sl), sl


# --------------------------------------------------------------------------- encode buffers


class EncodeBuffers:
    """``_native.encode_block`` into recycled output buffers.

    A fresh multi-MiB buffer per block costs a page fault per 4 KiB written and
    an ``munmap`` that stalls every other thread's page faults: measured on 2
    threads, encoding 100 MB of float32 in 2 MiB blocks took 65 ms of CPU with
    recycled buffers and 115 ms with fresh ones. Buffers are handed back with
    :meth:`give` once their bytes are written; thread-safe.
    """

    def __init__(self) -> None:
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def _take(self, nbytes: int) -> np.ndarray:
        with self._lock:
            best = None
            for i, b in enumerate(self._free):
                if b.size >= nbytes and (best is None or b.size < self._free[best].size):
                    best = i
            if best is not None:
                return self._free.pop(best)
        return np.empty(nbytes, np.uint8)

    def give(self, buffer: np.ndarray | None) -> None:
        """Return a buffer from :meth:`encode` whose bytes are no longer needed."""
        if buffer is not None:
            with self._lock:
                self._free.append(buffer)

    def encode(
        self, codec: _native.ArrayCodec, block: np.ndarray, block_start: Sequence[int]
    ) -> tuple[memoryview, np.ndarray, np.ndarray]:
        """Like ``_native.encode_block``; also returns the buffer to :meth:`give` back."""
        if block.ndim != len(codec.dims):
            raise OmEncodingError(f"block has {block.ndim} dimensions, array has {len(codec.dims)}")
        out = self._take(_native.encode_block_bound(codec, block.shape))
        try:
            data, lengths = _native.encode_block(codec, block, block_start, out=out)
        except BaseException:
            self.give(out)
            raise
        return data, lengths, out


# --------------------------------------------------------------------------- array stream


class ArrayStream:
    """One array being written chunk by chunk, in chunk-index order.

    Obtained from :meth:`OmWriter.begin_array`. While a stream is open the
    writer accepts nothing else (the array's chunks must be contiguous).

    Attributes
    ----------
    codec : _native.ArrayCodec
        Data type, compression, geometry and scaling of the array; pass it to
        ``_native.encode_block`` to encode blocks elsewhere.
    shape, chunks, chunk_grid : tuple of int
        Array shape, OM chunk shape, chunks per dimension.
    n_chunks : int
        Total number of chunks.
    next_chunk : int
        Index of the next chunk the stream expects.
    """

    def __init__(self, writer: OmWriter, codec: _native.ArrayCodec, on_clamp: OnClamp) -> None:
        self._writer = writer
        self.codec = codec
        self.shape = codec.dims
        self.chunks = codec.chunks
        self.chunk_grid = tuple(-(-d // c) for d, c in zip(self.shape, self.chunks, strict=True))
        self.n_chunks = math.prod(self.chunk_grid)
        self.on_clamp = on_clamp
        self.next_chunk = 0
        self.clamped = 0
        # n_chunks + 1 absolute offsets: the only per-array state kept in memory.
        self._lut = np.empty(self.n_chunks + 1, np.uint64)
        self._lut[0] = writer.position
        self._state = "open"
        self._buffers = EncodeBuffers()

    # -- helpers

    @property
    def dtype(self) -> np.dtype:
        return self.codec.dtype

    def _check_open(self) -> None:
        if self._state != "open":
            raise OmEncodingError(f"array stream is {self._state}", source=self._writer.name)
        w = self._writer
        if w._state != "open" or w._failure is not None:
            raise OmEncodingError(
                f"writer is {w._state if w._state != 'open' else 'broken by an earlier failure'}",
                source=w.name,
            )

    def _as_block(self, block: Any) -> np.ndarray:
        block = np.asarray(block)
        dt = self.codec.dtype
        if block.dtype != dt:
            same = block.dtype.kind == dt.kind and block.dtype.itemsize == dt.itemsize
            if not (same or (block.dtype == np.bool_ and dt == np.uint8)):
                raise OmEncodingError(
                    f"block dtype {block.dtype} does not match the array dtype {dt}",
                    source=self._writer.name,
                )
            block = block.astype(dt)
        if block.ndim != len(self.shape):
            raise OmEncodingError(
                f"block has {block.ndim} dimensions, the array has {len(self.shape)}",
                source=self._writer.name,
            )
        return block

    def chunk_coords(self, index: int) -> tuple[int, ...]:
        """Grid coordinates of chunk ``index`` (row-major, last dimension fastest)."""
        coords = []
        for g in reversed(self.chunk_grid):
            index, r = divmod(index, g)
            coords.append(r)
        return tuple(reversed(coords))

    def next_block_start(self) -> tuple[int, ...]:
        """Element offset at which the next block must start."""
        return tuple(
            k * c for k, c in zip(self.chunk_coords(self.next_chunk), self.chunks, strict=True)
        )

    def _check_run(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Validate that a block of ``shape`` at the next position is a run of chunks."""
        if self.next_chunk >= self.n_chunks:
            raise OmEncodingError(
                f"all {self.n_chunks} chunks are already written; got another block",
                source=self._writer.name,
            )
        start = self.next_block_start()
        ends = []
        for d, (s, b, n, c) in enumerate(zip(start, shape, self.shape, self.chunks, strict=True)):
            if b < 1 or s + b > n:
                raise OmEncodingError(
                    f"block of shape {shape} at element offset {start} does not fit the "
                    f"array shape {self.shape} along dimension {d}",
                    source=self._writer.name,
                )
            if b % c and s + b != n:
                raise OmEncodingError(
                    f"block length {b} along dimension {d} is not a multiple of the chunk "
                    f"length {c} and does not reach the array edge {n}",
                    source=self._writer.name,
                )
            ends.append(s + b)
        partial = [d for d in range(len(shape)) if not (start[d] == 0 and ends[d] == self.shape[d])]
        k = partial[-1] if partial else 0
        for d in range(k):
            if shape[d] > self.chunks[d]:
                raise OmEncodingError(
                    f"block of shape {shape} at element offset {start} is not a run of "
                    f"consecutive chunks: it spans several chunks along dimension {d} but "
                    f"not the full extent along dimension {k} (container spec 7.3)",
                    source=self._writer.name,
                )
        return start

    def _check_clamp(self, block: np.ndarray) -> int:
        if self.on_clamp == "ignore":
            return 0
        c = self.codec
        n = count_out_of_range(block, c.compression, c.scale_factor, c.add_offset)
        if n and self.on_clamp == "raise":
            raise OmEncodingError(
                clamp_message(n, c.compression, c.scale_factor, c.add_offset),
                source=self._writer.name,
            )
        return n

    # -- public API

    def write_block(self, block: Any) -> None:
        """Encode and append a block of whole chunks (the next run in chunk order).

        The block starts at the next chunk (``next_block_start()``) and must be a
        run of chunks consecutive in chunk-index order (container spec 7.3): one
        chunk position along the leading dimensions, a contiguous range of
        chunks along one dimension ``k``, and the full array extent along the
        dimensions after ``k``. Lengths are multiples of the chunk lengths except
        at the array's upper edge. An invalid block raises ``OmEncodingError``
        and leaves the stream unchanged.
        """
        self._check_open()
        block = self._as_block(block)
        start = self._check_run(block.shape)
        n_bad = self._check_clamp(block)
        data, lengths, buf = self._buffers.encode(self.codec, block, start)
        self.clamped += n_bad
        self._append(data, lengths)
        del data
        self._buffers.give(buf)  # one buffer serves every block of the stream

    def append_encoded(self, data: Any, chunk_lengths: Any) -> None:
        """Append chunks encoded elsewhere (they must be the next chunks in order).

        Parameters
        ----------
        data
            Bytes-like: the chunks' compressed bytes back to back.
        chunk_lengths
            Length of each chunk in ``data`` (``data`` must be exactly their sum).
        """
        self._check_open()
        lengths = np.asarray(chunk_lengths)
        if lengths.ndim != 1 or (lengths.size and lengths.dtype.kind not in "ui"):
            raise OmEncodingError(
                "chunk_lengths must be a 1-D integer array", source=self._writer.name
            )
        if lengths.size and int(lengths.min()) < 1:
            raise OmEncodingError("every chunk is at least one byte long", source=self._writer.name)
        lengths = lengths.astype(np.uint64)
        nbytes = memoryview(data).nbytes
        if int(lengths.sum()) != nbytes:
            raise OmEncodingError(
                f"chunk lengths add up to {int(lengths.sum())} bytes, data has {nbytes}",
                source=self._writer.name,
            )
        if self.next_chunk + lengths.size > self.n_chunks:
            raise OmEncodingError(
                f"{lengths.size} chunks after chunk {self.next_chunk} exceed the array's "
                f"{self.n_chunks} chunks",
                source=self._writer.name,
            )
        self._append(data, lengths)

    def _append(self, data: Any, lengths: np.ndarray) -> None:
        if self.next_chunk + lengths.size > self.n_chunks:
            raise OmEncodingError("more chunks than the array has", source=self._writer.name)
        base = self._writer.position
        self._writer._write(data)
        i = self.next_chunk
        np.cumsum(lengths, out=self._lut[i + 1 : i + 1 + lengths.size])
        self._lut[i + 1 : i + 1 + lengths.size] += np.uint64(base)
        self.next_chunk += lengths.size

    def finish(self, name: str = "", children: Iterable[NodeRef] = ()) -> NodeRef:
        """Write the look-up table and the array record; returns the record's handle."""
        self._check_open()
        return self._finish(self._writer._name(name), self._writer._children(children))

    def _finish(self, raw_name: str, kids: list[tuple[int, int]]) -> NodeRef:
        w = self._writer
        if self.next_chunk != self.n_chunks:
            raise OmEncodingError(
                f"array incomplete: {self.next_chunk} of {self.n_chunks} chunks written",
                source=w.name,
            )
        lut_bytes, _stride = _native.encode_lut(self._lut)
        lut_offset = w.position
        w._write(lut_bytes)
        c = self.codec
        record = encode_array_record(
            raw_name, c.data_type, c.compression, len(lut_bytes), lut_offset,
            c.scale_factor, c.add_offset, c.dims, c.chunks, kids,
        )  # fmt: skip
        self._state = "finished"
        w._stream = None
        ref = w._write_record(record, "array", raw_name)
        if self.clamped and self.on_clamp == "warn":
            warnings.warn(
                f"{w.name}: array {raw_name!r}: "
                + clamp_message(self.clamped, c.compression, c.scale_factor, c.add_offset),
                OmClampWarning,
                stacklevel=3,
            )
        return ref

    def cancel(self) -> None:
        """Give up on this array; the writer accepts other items again.

        Chunks already appended stay in the file as unreachable bytes (valid per
        container spec 7.4). ``write_array`` and ``write_array_streaming`` call
        this when their input fails.
        """
        if self._state == "open":
            self._state = "cancelled"
            if self._writer._stream is self:
                self._writer._stream = None


# --------------------------------------------------------------------------- writer


class OmWriter:
    """Write a new OM v3 file: arrays, scalars and groups, committed atomically.

    Parameters
    ----------
    target
        Local path, fsspec URL (``s3://bucket/key.om``, ``memory://x.om``, ...)
        or a tuple ``(fs, path)`` with an fsspec filesystem.
    storage_options
        fsspec options when ``target`` is a URL.
    overwrite
        If False and the target exists, raise ``FileExistsError`` immediately.
    buffer_size
        Write buffer (local) or upload part size (remote, >= 5 MiB).

    Notes
    -----
    Use as a context manager; the block must call ``close(root)``::

        with OmWriter("out.om") as w:
            t = w.write_array(temp, chunks=(1, 64, 64), scale_factor=20)
            unit = w.write_scalar("C", name="unit")
            root = w.write_group(name="", children=[t, unit])
            w.close(root)

    Records are written immediately, so children come before their parents.
    Any exception escaping the block discards everything written; leaving the
    block without ``close`` discards too and raises ``OmEncodingError``.
    """

    def __init__(
        self,
        target: Any,
        *,
        storage_options: dict | None = None,
        overwrite: bool = True,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> None:
        self._sink: Sink = open_sink(
            target, storage_options=storage_options, overwrite=overwrite, buffer_size=buffer_size
        )
        self.name = self._sink.name
        self._stream: ArrayStream | None = None
        self._state = "open"
        self._failure: BaseException | None = None
        self._token = object()
        self._write(HEADER_V3)

    # -- state

    @property
    def position(self) -> int:
        """Number of bytes written so far (the offset of the next byte)."""
        return self._sink.position

    @property
    def closed(self) -> bool:
        """True once committed or aborted."""
        return self._state != "open"

    def __repr__(self) -> str:
        return f"<OmWriter {self.name!r} {self._state} at byte {self.position}>"

    def __enter__(self) -> OmWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.abort()
            return
        if self._state == "open":
            self.abort()
            raise OmEncodingError(
                "writer left without close(root); the output was discarded", source=self.name
            )

    def _check_ready(self) -> None:
        if self._state != "open":
            raise OmEncodingError(f"writer is {self._state}", source=self.name)
        if self._failure is not None:
            raise OmEncodingError(
                f"an earlier write failed ({self._failure!r}); only abort() is possible",
                source=self.name,
            )
        if self._stream is not None:
            raise OmEncodingError(
                "an array stream is open: finish() or cancel() it first", source=self.name
            )

    # -- low level

    def _write(self, data: Any) -> None:
        try:
            self._sink.write(data)
        except BaseException as e:
            # Unknown how much reached the output: the file can no longer be trusted.
            self._failure = e
            raise

    def _align8(self) -> None:
        # Like reference writers: records and the trailer start at multiples of 8 (spec 7).
        pad = -self.position % 8
        if pad:
            self._write(_PAD[:pad])

    def _write_record(self, record: bytes, kind: str, name: str) -> NodeRef:
        self._align8()
        offset = self.position
        self._write(record)
        return NodeRef(offset, len(record), kind, name, self._token)

    def _children(self, children: Iterable[NodeRef] | NodeRef) -> list[tuple[int, int]]:
        if isinstance(children, NodeRef):
            children = [children]
        out = []
        for ch in children:
            if not isinstance(ch, NodeRef):
                raise OmEncodingError(
                    f"children must be NodeRef handles returned by this writer, got {ch!r}",
                    source=self.name,
                )
            if ch._owner is not self._token:
                raise OmEncodingError(
                    f"child {ch.name!r} was written by another writer", source=self.name
                )
            out.append((ch.offset, ch.size))
        if len(out) >= 2**32:
            raise OmEncodingError("too many children", source=self.name)
        return out

    def _name(self, name: Any) -> str:
        if not isinstance(name, str):
            raise OmEncodingError(
                f"name must be a str, not {type(name).__name__}", source=self.name
            )
        if len(name.encode("utf-8")) > 0xFFFF:
            raise OmEncodingError(
                f"name longer than 65535 bytes: {name[:40]!r}...", source=self.name
            )
        return name

    # -- arrays

    def begin_array(
        self,
        *,
        shape: Sequence[int],
        dtype: Any,
        chunks: Sequence[int],
        compression: str | int | None = None,
        scale_factor: float | None = None,
        add_offset: float = 0.0,
        on_clamp: OnClamp = "warn",
    ) -> ArrayStream:
        """Start an array whose chunks arrive later, in chunk-index order.

        Parameters are those of :meth:`write_array`. Returns an
        :class:`ArrayStream`; call ``write_block`` / ``append_encoded`` until
        every chunk is written, then ``finish(name, children)``. Nothing is
        written before the first block. ``on_clamp`` applies to
        ``write_block`` only (``append_encoded`` bytes are taken as they are).
        """
        self._check_ready()
        _check_on_clamp(on_clamp)
        codec = array_codec(shape, dtype, chunks, compression, scale_factor, add_offset)
        self._stream = ArrayStream(self, codec, on_clamp)
        return self._stream

    def write_array(
        self,
        data: Any,
        *,
        chunks: Sequence[int],
        compression: str | int | None = None,
        scale_factor: float | None = None,
        add_offset: float = 0.0,
        name: str = "",
        children: Iterable[NodeRef] = (),
        on_clamp: OnClamp = "warn",
        threads: int | None = None,
        block_bytes: int = DEFAULT_BLOCK_BYTES,
    ) -> NodeRef:
        """Write an N-D array (numpy, or any object with shape, dtype and slicing).

        Parameters
        ----------
        data
            The values. dtypes: int8..int64, uint8..uint64, float32, float64;
            ``bool`` is stored as uint8 (reads back as uint8 0/1). Objects
            that are not numpy arrays (zarr, h5py, memmaps...) are read block by
            block through ``data[slices]``.
        chunks
            OM chunk shape, ``1 <= chunks[i] <= shape[i]``.
        compression
            ``"fpx_xor_2d"``, ``"pfor_delta_2d"``, ``"pfor_delta_2d_int16"``,
            ``"pfor_delta_2d_int16_logarithmic"`` (or their ids). Default:
            lossless -- ``fpx_xor_2d`` for floats, ``pfor_delta_2d`` for integers;
            for floats with a ``scale_factor``: ``pfor_delta_2d_int16`` (float32)
            or ``pfor_delta_2d`` (float64, scaled to int64).
        scale_factor, add_offset
            OM semantics (codec spec 2): stored ``round((v + add_offset) *
            scale_factor)``. Stored as float32 for every array; used only by
            the lossy float compressions, where they must be finite (and the
            scale non-zero).
        name, children
            Record name and already-written children (attributes are scalar
            children).
        on_clamp
            What to do about values a lossy float compression cannot represent
            (:func:`count_out_of_range`: they would read back as NaN, clamp or
            wrap): ``"warn"`` (default; one :class:`OmClampWarning` per array),
            ``"raise"`` (``OmEncodingError`` before any byte of the array is
            written; costs one extra pass over the data) or ``"ignore"``.
        threads
            Encoding threads (the native encoder releases the GIL). Default:
            ``min(4, os.cpu_count())``.
        block_bytes
            Approximate input bytes encoded per block (memory bound per thread).

        Returns
        -------
        NodeRef
        """
        self._check_ready()
        _check_on_clamp(on_clamp)
        if not (hasattr(data, "shape") and hasattr(data, "dtype") and hasattr(data, "__getitem__")):
            data = np.asarray(data)
        shape = tuple(data.shape)
        codec = array_codec(shape, data.dtype, chunks, compression, scale_factor, add_offset)
        kids = self._children(children)  # validate before writing anything
        raw_name = self._name(name)
        max_elems = max(1, block_bytes // codec.dtype.itemsize)
        check = on_clamp != "ignore" and uses_scale(codec.dtype, codec.compression)
        if check and on_clamp == "raise":
            bad = _count_all_out_of_range(data, codec, max_elems)
            if bad:
                raise OmEncodingError(
                    clamp_message(bad, codec.compression, codec.scale_factor, codec.add_offset),
                    source=self.name,
                )
            check = False

        buffers = EncodeBuffers()

        def encode(item: tuple[tuple[int, ...], tuple[slice, ...]]) -> tuple[Any, ...]:
            start, sl = item
            block = _load(data, sl, codec.dtype)
            n_bad = (
                count_out_of_range(block, codec.compression, codec.scale_factor, codec.add_offset)
                if check
                else 0
            )
            enc, lengths, buf = buffers.encode(codec, block, start)
            return enc, lengths, n_bad, buf

        stream = ArrayStream(self, codec, on_clamp)
        self._stream = stream
        try:
            plan = plan_blocks(codec.dims, codec.chunks, max_elems)
            n_threads = threads if threads is not None else min(4, os.cpu_count() or 1)
            # closing(): on an error, stop the encoder threads now, not at garbage collection
            with contextlib.closing(_ordered_map(encode, plan, n_threads)) as results:
                for enc, lengths, n_bad, buf in results:
                    stream.clamped += n_bad
                    stream._append(enc, lengths)
                    del enc
                    buffers.give(buf)  # written: reusable for a later block
            return stream._finish(raw_name, kids)
        except BaseException:
            stream.cancel()
            raise

    def write_array_streaming(
        self,
        blocks: Iterable[Any],
        *,
        shape: Sequence[int],
        dtype: Any,
        chunks: Sequence[int],
        compression: str | int | None = None,
        scale_factor: float | None = None,
        add_offset: float = 0.0,
        name: str = "",
        children: Iterable[NodeRef] = (),
        on_clamp: OnClamp = "warn",
    ) -> NodeRef:
        """Write an array from an iterator of numpy blocks in chunk order.

        Each block is a run of whole chunks consecutive in chunk-index order
        (container spec 7.3), e.g. one chunk at a time, or whole rows of chunks
        along dimension 0; see :meth:`ArrayStream.write_block`. Only one block
        is held at a time. Other parameters as in :meth:`write_array`
        (``on_clamp="raise"`` raises at the first offending block).

        If the iterator raises, or a block is invalid, the exception propagates
        and the chunks already appended stay as unreachable bytes; inside a
        ``with`` block the whole output is then discarded.
        """
        kids = self._children(children)
        raw_name = self._name(name)
        stream = self.begin_array(
            shape=shape, dtype=dtype, chunks=chunks, compression=compression,
            scale_factor=scale_factor, add_offset=add_offset, on_clamp=on_clamp,
        )  # fmt: skip
        try:
            for block in blocks:
                stream.write_block(block)
            return stream._finish(raw_name, kids)
        except BaseException:
            stream.cancel()
            raise

    # -- scalars and groups

    def write_scalar(self, value: Any, *, name: str, children: Iterable[NodeRef] = ()) -> NodeRef:
        """Write a scalar record (an attribute when used as a child).

        ``str`` -> string; numpy scalars (and 0-d arrays) keep their type;
        Python ``int``/``float`` -> float64 like the reference writer (an ``int``
        that float64 cannot represent exactly raises instead of losing digits:
        pass ``np.int64(v)``); ``bool`` -> uint8.
        """
        self._check_ready()
        kids = self._children(children)
        raw_name = self._name(name)
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value[()]
        if value is None:
            raise OmEncodingError(
                "a scalar needs a value; use write_group for groups", source=self.name
            )
        if isinstance(value, int) and not isinstance(value, (bool, np.integer)):
            try:
                exact = int(float(value)) == value
            except OverflowError:
                exact = False
            if not exact:
                raise OmEncodingError(
                    f"Python int {value} is not exactly representable as float64 (how the "
                    "reference stores Python ints); pass a numpy integer such as np.int64",
                    source=self.name,
                )
        try:
            scalar_type_for(value)
            record = encode_scalar_record(raw_name, value, kids)
        except (TypeError, ValueError) as e:
            raise OmEncodingError(
                f"cannot write scalar {raw_name!r} of type {type(value).__name__}: {e} "
                "(supported: str, numeric numpy scalars, int, float, bool)",
                source=self.name,
            ) from None
        return self._write_record(record, "scalar", raw_name)

    def write_group(self, *, name: str = "", children: Iterable[NodeRef] = ()) -> NodeRef:
        """Write a group record (no value) holding ``children``."""
        self._check_ready()
        kids = self._children(children)
        raw_name = self._name(name)
        return self._write_record(encode_scalar_record(raw_name, None, kids), "group", raw_name)

    # -- endings

    def close(self, root: NodeRef) -> None:
        """Write the trailer pointing at ``root`` and publish the file atomically."""
        self._check_ready()
        if not isinstance(root, NodeRef) or root._owner is not self._token:
            raise OmEncodingError(
                "root must be a NodeRef returned by this writer", source=self.name
            )
        self._align8()
        self._write(encode_trailer(root.offset, root.size))
        try:
            self._sink.commit()
        except BaseException as e:
            self._failure = e
            self._state = "aborted"
            raise
        self._state = "closed"

    def abort(self) -> None:
        """Discard everything written; the target is left as it was. Idempotent."""
        if self._stream is not None:
            self._stream.cancel()
        if self._state == "open":
            self._state = "aborted"
            self._sink.discard()


def _count_all_out_of_range(data: Any, codec: _native.ArrayCodec, max_elements: int) -> int:
    # on_clamp="raise" must fail before any byte of the array is written: one pass first.
    return sum(
        count_out_of_range(
            _load(data, sl, codec.dtype), codec.compression, codec.scale_factor, codec.add_offset
        )
        for _start, sl in plan_blocks(codec.dims, codec.chunks, max_elements)
    )


def _load(data: Any, sl: tuple[slice, ...], dtype: np.dtype) -> np.ndarray:
    block = np.asarray(data[sl])
    if block.dtype != dtype:
        block = block.astype(dtype)
    return np.ascontiguousarray(block)


def _ordered_map(fn: Any, items: Iterator[Any], threads: int) -> Iterator[Any]:
    """``map(fn, items)`` on a thread pool, results in order, a bounded window in flight."""
    first = list(itertools.islice(items, 2))
    if threads <= 1 or len(first) < 2:
        yield from map(fn, itertools.chain(first, items))
        return
    items = itertools.chain(first, items)
    window = threads + 1
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="om-encode")
    pending: collections.deque = collections.deque()
    try:
        for item in itertools.islice(items, window):
            pending.append(pool.submit(fn, item))
        while pending:
            result = pending.popleft().result()
            nxt = next(items, None)
            if nxt is not None:
                pending.append(pool.submit(fn, nxt))
            yield result
    finally:
        for f in pending:
            f.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
