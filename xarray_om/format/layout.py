"""Chunk-grid geometry, look-up tables and byte-range planning.

Pure numpy over small index arrays; the only I/O is the LUT group reads,
done through a :class:`~xarray_om.format.source.Source`. Container spec
sections 4 (geometry), 6 (LUT), 8 (reading) and 9.2 (legacy LUT).
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

import numpy as np

from .. import _native
from ..errors import OmFormatError
from .source import Source

__all__ = [
    "LUT_GROUP",
    "MAX_ELEMENTS_PER_BYTE",
    "Grid",
    "LegacyLut",
    "Lut",
    "ReadPlan",
    "Selection",
    "V3Lut",
    "check_plausible",
    "normalize_key",
    "plan_reads",
]

LUT_GROUP = 64  # entries per LUT group, fixed by the format (container spec 6.2)

# The codecs spend at least one byte per 128 values (one PFor block header), so
# a file cannot hold more than ~128 elements per byte. The cap, with margin,
# rejects crafted geometry before it turns into giant allocations.
MAX_ELEMENTS_PER_BYTE = 512


def _prod(values: Sequence[int]) -> int:
    return reduce(operator.mul, values, 1)


def check_plausible(
    dims: Sequence[int], chunks: Sequence[int], file_size: int, what: str, source: object
) -> None:
    """Reject geometry that the file cannot possibly hold (before any allocation)."""
    n_chunks = _prod(-(-d // c) for d, c in zip(dims, chunks, strict=True))
    if n_chunks > file_size:
        raise OmFormatError(
            f"{what} has {n_chunks} chunks, more than the {file_size} bytes of the file "
            "(every chunk takes at least one byte)",
            source=source,
        )
    n = _prod(dims)
    if n > MAX_ELEMENTS_PER_BYTE * max(file_size, 1):
        raise OmFormatError(
            f"{what} claims {n} elements, impossible for a file of {file_size} bytes",
            source=source,
        )


# --------------------------------------------------------------------------- grid


class Grid:
    """Chunk grid of an array: chunk index <-> grid coordinates <-> element slices."""

    __slots__ = ("chunks", "dims", "grid", "n_chunks", "strides")

    def __init__(self, dims: Sequence[int], chunks: Sequence[int]) -> None:
        self.dims = tuple(int(d) for d in dims)
        self.chunks = tuple(int(c) for c in chunks)
        self.grid = tuple(-(-d // c) for d, c in zip(self.dims, self.chunks, strict=True))
        self.n_chunks = _prod(self.grid)
        strides = []
        s = 1
        for n in reversed(self.grid):
            strides.append(s)
            s *= n
        self.strides = tuple(reversed(strides))

    def chunk_index(self, coords: Sequence[int]) -> int:
        """Linear (row-major) index of the chunk at grid ``coords``."""
        if len(coords) != len(self.grid):
            raise IndexError(f"expected {len(self.grid)} chunk coordinates, got {len(coords)}")
        index = 0
        for k, n, s in zip(coords, self.grid, self.strides, strict=True):
            k = int(k)
            if not 0 <= k < n:
                raise IndexError(f"chunk coordinate {k} outside 0..{n - 1}")
            index += k * s
        return index

    def chunk_coords(self, index: int) -> tuple[int, ...]:
        """Grid coordinates of chunk ``index``."""
        index = int(index)
        if not 0 <= index < self.n_chunks:
            raise IndexError(f"chunk index {index} outside 0..{self.n_chunks - 1}")
        return tuple((index // s) % n for n, s in zip(self.grid, self.strides, strict=True))

    def chunk_slices(self, index: int) -> tuple[slice, ...]:
        """Element extent of chunk ``index`` (clipped at the array edge)."""
        return tuple(
            slice(k * c, min((k + 1) * c, d))
            for k, c, d in zip(self.chunk_coords(index), self.chunks, self.dims, strict=True)
        )

    def chunk_shape(self, index: int) -> tuple[int, ...]:
        """Clipped shape of chunk ``index``."""
        return tuple(s.stop - s.start for s in self.chunk_slices(index))

    def touched(self, sel: Selection) -> np.ndarray:
        """Sorted linear indices of every chunk holding a selected element."""
        per_dim = []
        for s, c, contiguous in zip(sel.index, self.chunks, sel.contiguous, strict=True):
            if contiguous:
                per_dim.append(np.arange(int(s[0]) // c, int(s[-1]) // c + 1, dtype=np.int64))
            elif s.size == 1:
                per_dim.append(s // c)
            else:
                per_dim.append(np.unique(s // c))
        # The product of per-dimension sorted coordinates, linearised row-major, is
        # already sorted.
        idx = per_dim[0]
        for coords, n in zip(per_dim[1:], self.grid[1:], strict=True):
            idx = np.add.outer(idx * n, coords).ravel()
        return idx


# --------------------------------------------------------------------------- keys


@dataclass(frozen=True, slots=True)
class Selection:
    """An outer (orthogonal) selection: one int64 index array per dimension."""

    index: tuple[np.ndarray, ...]  # global indices along each dimension
    contiguous: tuple[bool, ...]  # index[d] is an ascending step-1 run
    drop: tuple[bool, ...]  # dimension indexed by an integer: dropped from the result

    @property
    def full_shape(self) -> tuple[int, ...]:
        return tuple(len(s) for s in self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(s) for s, d in zip(self.index, self.drop, strict=True) if not d)

    @property
    def size(self) -> int:
        return _prod(self.full_shape)


def _int_index(i: int, n: int, axis: int) -> int:
    if i < 0:
        i += n
    if not 0 <= i < n:
        raise IndexError(f"index {i} is out of bounds for axis {axis} with size {n}")
    return i


def normalize_key(key: Any, shape: Sequence[int]) -> Selection:
    """Turn a numpy-style key into an outer :class:`Selection`.

    Supported per axis: integers (the axis is dropped), slices with any step,
    ``Ellipsis``, and 1-D integer or boolean arrays/lists (orthogonal indexing:
    each array selects along its own axis).
    """
    ndim = len(shape)
    if not isinstance(key, tuple):
        key = (key,)
    n_ellipsis = sum(1 for k in key if k is Ellipsis)
    if n_ellipsis > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    if n_ellipsis:
        i = next(j for j, k in enumerate(key) if k is Ellipsis)
        fill = ndim - (len(key) - 1)
        if fill < 0:
            raise IndexError(
                f"too many indices for array: array is {ndim}-dimensional, "
                f"but {len(key) - 1} were indexed"
            )
        key = key[:i] + (slice(None),) * fill + key[i + 1 :]
    if len(key) > ndim:
        raise IndexError(
            f"too many indices for array: array is {ndim}-dimensional, but {len(key)} were indexed"
        )
    key = key + (slice(None),) * (ndim - len(key))
    index = []
    contiguous = []
    drop = []
    for axis, (k, n) in enumerate(zip(key, shape, strict=True)):
        if isinstance(k, slice):
            start, stop, step = k.indices(n)
            arr = np.arange(start, stop, step, dtype=np.int64)
            index.append(arr)
            contiguous.append(step == 1 and arr.size > 0)
            drop.append(False)
            continue
        if k is None:
            raise IndexError("np.newaxis / None is not supported in OM array indexing")
        if isinstance(k, (bool, np.bool_)):
            raise IndexError("boolean scalar indices are not supported")
        if isinstance(k, (int, np.integer)):
            i = _int_index(int(k), n, axis)
            index.append(np.array([i], dtype=np.int64))
            contiguous.append(True)
            drop.append(True)
            continue
        arr = np.asarray(k)
        if arr.ndim == 0 and arr.dtype.kind in "iu":
            i = _int_index(int(arr), n, axis)
            index.append(np.array([i], dtype=np.int64))
            contiguous.append(True)
            drop.append(True)
            continue
        if arr.ndim != 1:
            raise IndexError(
                f"only 1-D index arrays are supported (outer indexing); axis {axis} got "
                f"an array of shape {arr.shape}"
            )
        if arr.dtype.kind == "b":
            if arr.size != n:
                raise IndexError(
                    f"boolean index of length {arr.size} does not match axis {axis} of size {n}"
                )
            arr = np.flatnonzero(arr).astype(np.int64)
        elif arr.size == 0:
            arr = np.empty(0, np.int64)
        elif arr.dtype.kind in "iu":
            if arr.dtype.kind == "u" and arr.size and int(arr.max()) >= n:
                raise IndexError(
                    f"index {int(arr.max())} is out of bounds for axis {axis} with size {n}"
                )
            arr = arr.astype(np.int64, copy=True)
            neg = arr < 0
            if neg.any():
                arr[neg] += n
            if arr.size and (int(arr.min()) < 0 or int(arr.max()) >= n):
                bad = int(np.asarray(k)[(arr < 0) | (arr >= n)][0])
                raise IndexError(f"index {bad} is out of bounds for axis {axis} with size {n}")
        else:
            raise IndexError(
                f"arrays used as indices must be of integer or boolean type, got {arr.dtype}"
            )
        index.append(arr)
        contiguous.append(False)
        drop.append(False)
    return Selection(tuple(index), tuple(contiguous), tuple(drop))


# --------------------------------------------------------------------------- LUT


class Lut:
    """The ``n_chunks + 1`` chunk boundary offsets of one array, read on demand.

    Entries live in one array allocated with ``np.zeros`` (pages are only
    touched when a group is stored), groups are fetched the first time a chunk
    needs them and kept for the life of the object. Concurrent readers may
    decode the same group twice; both store identical values.
    """

    def __init__(
        self,
        source: Source,
        n_chunks: int,
        *,
        what: str,
        io_size_max: int = 65536,
        io_size_merge: int = 512,
    ) -> None:
        self.source = source
        self.n_chunks = n_chunks
        self.n_entries = n_chunks + 1
        self.n_groups = -(-self.n_entries // LUT_GROUP)
        self.what = what
        self.io_size_max = io_size_max
        self.io_size_merge = io_size_merge
        self._entries = np.zeros(self.n_entries, np.uint64)
        self._have = np.zeros(self.n_groups, bool)
        self._complete = False

    # subclasses: byte size of the LUT, byte range of a run of groups, decoding
    nbytes: int
    group_bytes: int

    def _run_range(self, g0: int, g1: int) -> tuple[int, int]:
        raise NotImplementedError

    def _decode_run(self, g0: int, g1: int, data: bytes) -> np.ndarray:
        raise NotImplementedError

    def _bad(self, msg: str) -> OmFormatError:
        return OmFormatError(f"{self.what}: look-up table {msg}", source=self.source.name)

    def _store(self, g0: int, g1: int, values: np.ndarray) -> None:
        size = self.source.size
        if values.size:
            if int(values.max()) > size:
                raise self._bad(
                    f"entry {int(values.max())} (groups {g0}..{g1 - 1}) points past the end "
                    f"of the file ({size} bytes)"
                )
            if values.size > 1:
                d = values[1:] <= values[:-1]
                if d.any():
                    i = LUT_GROUP * g0 + int(np.flatnonzero(d)[0])
                    raise self._bad(
                        f"entries are not increasing at chunk {i} "
                        f"({int(values[i - LUT_GROUP * g0])} -> "
                        f"{int(values[i - LUT_GROUP * g0 + 1])}): empty or negative chunk range"
                    )
        e0 = LUT_GROUP * g0
        self._entries[e0 : e0 + values.size] = values
        self._have[g0:g1] = True

    def load_groups(self, groups: np.ndarray) -> None:
        """Make sure the given (sorted, unique) groups are decoded."""
        if self._complete:
            return
        missing = groups[~self._have[groups]]
        if missing.size == 0:
            return
        gb = self.group_bytes
        if self.nbytes <= self.io_size_max or missing.size * gb * 2 >= self.nbytes:
            # Small LUT or most of it needed: one read of the whole table.
            runs = [(0, self.n_groups)]
        else:
            gap = max(self.io_size_merge // max(gb, 1), 0)
            breaks = np.flatnonzero(np.diff(missing) > gap + 1) + 1
            firsts = np.concatenate(([0], breaks))
            lasts = np.concatenate((breaks - 1, [missing.size - 1]))
            runs = [
                (int(missing[a]), int(missing[b]) + 1)
                for a, b in zip(firsts.tolist(), lasts.tolist(), strict=True)
            ]
        datas = self.source.read_ranges([self._run_range(g0, g1) for g0, g1 in runs])
        for (g0, g1), data in zip(runs, datas, strict=True):
            self._store(g0, g1, self._decode_run(g0, g1, data))
        if self._have.all():
            self._complete = True

    def load_all(self) -> np.ndarray:
        """All ``n_chunks + 1`` entries (reads the whole LUT once)."""
        if not self._complete:
            self.load_groups(np.arange(self.n_groups, dtype=np.int64))
        return self._entries

    def ranges(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(starts, stops) byte ranges (int64) of the chunks ``idx`` (sorted, unique)."""
        if not self._complete:
            g = idx >> 6
            g_next = (idx + 1) >> 6
            if idx.size <= 2:
                groups = np.unique(np.concatenate((g, g_next)))
            else:
                groups = np.union1d(g, g_next)
            self.load_groups(groups)
        e = self._entries
        starts = e[idx].astype(np.int64)
        stops = e[idx + 1].astype(np.int64)
        bad = stops <= starts
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise self._bad(
                f"gives chunk {int(idx[k])} the empty or negative byte range "
                f"[{int(starts[k])}, {int(stops[k])})"
            )
        return starts, stops


class V3Lut(Lut):
    """A v3 LUT: groups of 64 p4nd64-coded absolute offsets, ``stride`` bytes apart."""

    def __init__(
        self, source: Source, n_chunks: int, lut_offset: int, lut_size: int, **kw: Any
    ) -> None:
        super().__init__(source, n_chunks, **kw)
        self.lut_offset = lut_offset
        self.nbytes = lut_size
        self.stride = lut_size // self.n_groups
        self.group_bytes = self.stride
        if self.stride < 1:
            raise self._bad(f"of {lut_size} bytes cannot hold {self.n_groups} groups")
        if lut_offset + lut_size > source.size:
            raise self._bad(
                f"[{lut_offset}, {lut_offset + lut_size}) lies outside the file "
                f"({source.size} bytes)"
            )

    def _run_range(self, g0: int, g1: int) -> tuple[int, int]:
        return (self.lut_offset + g0 * self.stride, self.lut_offset + g1 * self.stride)

    def _decode_run(self, g0: int, g1: int, data: bytes) -> np.ndarray:
        n = min(LUT_GROUP * g1, self.n_entries) - LUT_GROUP * g0
        return _native.decode_lut(data, n, self.stride, source=self.source.name)


class LegacyLut(Lut):
    """A legacy v1/v2 LUT: ``n_chunks`` raw u64 chunk END offsets relative to the data.

    Exposed as the v3-style ``n_chunks + 1`` absolute offsets (container spec 9.2).
    """

    HEADER = 40

    def __init__(self, source: Source, n_chunks: int, **kw: Any) -> None:
        super().__init__(source, n_chunks, **kw)
        self.nbytes = 8 * n_chunks
        self.group_bytes = 8 * LUT_GROUP
        self.data_start = self.HEADER + 8 * n_chunks
        if self.data_start > source.size:
            raise self._bad(f"of {n_chunks} entries does not fit in the file ({source.size} bytes)")

    def _raw_span(self, g0: int, g1: int) -> tuple[int, int]:
        return max(LUT_GROUP * g0 - 1, 0), min(LUT_GROUP * g1, self.n_entries) - 1

    def _run_range(self, g0: int, g1: int) -> tuple[int, int]:
        r0, r1 = self._raw_span(g0, g1)
        return (self.HEADER + 8 * r0, self.HEADER + 8 * r1)

    def _decode_run(self, g0: int, g1: int, data: bytes) -> np.ndarray:
        raw = np.frombuffer(data, "<u8").astype(np.uint64)
        limit = self.source.size - self.data_start
        if raw.size and int(raw.max()) > limit:
            raise self._bad(
                f"entry {int(raw.max())} points past the end of the file "
                f"({self.source.size} bytes, data start {self.data_start})"
            )
        values = raw + np.uint64(self.data_start)
        if g0 == 0:
            values = np.concatenate((np.array([self.data_start], np.uint64), values))
        return values


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """Coalesced reads for a set of chunks and where each chunk lands in the buffer."""

    read_starts: np.ndarray  # int64 absolute offsets of each read
    read_stops: np.ndarray
    chunk_off: np.ndarray  # uint64 offset of each chunk inside the concatenated reads
    chunk_len: np.ndarray  # uint64 byte length of each chunk
    nbytes: int  # total bytes fetched


def plan_reads(
    starts: np.ndarray,
    stops: np.ndarray,
    *,
    io_size_merge: int = 512,
    io_size_max: int = 65536,
    source: object = None,
) -> ReadPlan:
    """Coalesce the byte ranges of chunks (sorted by chunk index) into few reads.

    Two ranges are fetched by one read when the gap between them is at most
    ``io_size_merge`` bytes and the read stays within ``io_size_max`` bytes (a
    read always takes its first range, however large). This is the policy of
    container spec 8.3 with the merge distance measured as the bridged gap.
    """
    n = starts.size
    if n == 0:
        z = np.zeros(0, np.int64)
        return ReadPlan(z, z, z.astype(np.uint64), z.astype(np.uint64), 0)
    if n > 1:
        gaps = starts[1:] - stops[:-1]
        if (gaps < 0).any():
            k = int(np.flatnonzero(gaps < 0)[0])
            raise OmFormatError(
                f"look-up table gives overlapping chunk byte ranges [{int(starts[k])}, "
                f"{int(stops[k])}) and [{int(starts[k + 1])}, {int(stops[k + 1])})",
                source=source,
            )
        brk = np.empty(n, bool)
        brk[0] = True
        np.greater(gaps, io_size_merge, out=brk[1:])
        firsts = np.flatnonzero(brk)
        lasts = np.append(firsts[1:] - 1, n - 1)
        seg_size = stops[lasts] - starts[firsts]
        big = np.flatnonzero(seg_size > io_size_max)
        if big.size:
            for s in big.tolist():
                a, b = int(firsts[s]), int(lasts[s]) + 1
                cur = a
                while cur < b:
                    brk[cur] = True
                    limit = int(starts[cur]) + io_size_max
                    k = int(np.searchsorted(stops[cur:b], limit, side="right"))
                    cur += max(k, 1)
            firsts = np.flatnonzero(brk)
        read_id = np.cumsum(brk) - 1
        lasts = np.append(firsts[1:] - 1, n - 1)
        read_starts = starts[firsts]
        read_stops = stops[lasts]
    else:
        read_id = np.zeros(1, np.int64)
        read_starts = starts[:1]
        read_stops = stops[:1]
    lens = read_stops - read_starts
    pos = np.cumsum(lens) - lens
    chunk_off = (pos[read_id] + (starts - read_starts[read_id])).astype(np.uint64)
    chunk_len = (stops - starts).astype(np.uint64)
    return ReadPlan(read_starts, read_stops, chunk_off, chunk_len, int(lens.sum()))
