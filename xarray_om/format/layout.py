"""Chunk-grid geometry, look-up tables and byte-range planning.

Pure numpy over small index arrays; the only I/O is the LUT group reads,
done through a :class:`~xarray_om.format.source.Source`. Container spec
sections 4 (geometry), 6 (LUT), 8 (reading) and 9.2 (legacy LUT).
"""

from __future__ import annotations

import operator
import threading
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import reduce
from typing import Any

import numpy as np

from .. import _native
from ..errors import OmFormatError
from .source import Source

__all__ = [
    "LUT_GROUP",
    "MAX_ELEMENTS_PER_BYTE",
    "READ_BUFFERS",
    "THREAD_BUFFER_MAX",
    "BufferPool",
    "Grid",
    "LegacyLut",
    "Lut",
    "ReadPlan",
    "Selection",
    "V3Lut",
    "aligned_buffer",
    "box_key",
    "check_plausible",
    "give_thread_buffer",
    "normalize_key",
    "plan_reads",
    "plan_run",
    "take_thread_buffer",
]

LUT_GROUP = 64  # entries per LUT group, fixed by the format (container spec 6.2)

# The codecs spend at least one byte per 128 values (one PFor block header), so
# a file cannot hold more than ~128 elements per byte. The cap, with margin,
# rejects crafted geometry before it turns into giant allocations.
MAX_ELEMENTS_PER_BYTE = 512


def _prod(values: Sequence[int]) -> int:
    return reduce(operator.mul, values, 1)


def aligned_buffer(nbytes: int) -> np.ndarray:
    """An uninitialised uint8 array of ``nbytes`` whose first byte is 64-byte aligned.

    Small buffers skip the alignment (it only pays off for large copies).
    """
    if nbytes < _ALIGN_MIN:
        return np.empty(nbytes, np.uint8)
    raw = np.empty(nbytes + _ALIGN, np.uint8)
    skip = -raw.ctypes.data % _ALIGN
    return raw[skip : skip + nbytes]


class BufferPool:
    """A few large, already-faulted read buffers reused across reads.

    Reading into fresh memory makes the kernel fault in every page during the
    copy, which costs as much as the copy itself or more; a buffer that has
    been used before is free. At most ``max_buffers`` buffers of at most
    ``max_bytes`` each are kept; larger requests get a fresh buffer.
    """

    def __init__(self, max_buffers: int = 2, max_bytes: int = 32 << 20) -> None:
        self.max_buffers = max_buffers
        self.max_bytes = max_bytes
        self._free: list[np.ndarray] = []
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(64-byte aligned uint8 view of ``nbytes``, token for :meth:`give`)."""
        need = nbytes + _ALIGN
        if nbytes < _ALIGN_MIN or need > self.max_bytes:
            return aligned_buffer(nbytes), None
        raw = None
        with self._lock:
            for i, b in enumerate(self._free):
                if b.nbytes >= need:
                    raw = self._free.pop(i)
                    break
        if raw is None:
            # Round up so that slightly larger reads later reuse it.
            raw = np.empty(min(self.max_bytes, -(-need // (1 << 20)) << 20), np.uint8)
        skip = -raw.ctypes.data % _ALIGN
        return raw[skip : skip + nbytes], raw

    def give(self, token: np.ndarray | None) -> None:
        """Return a buffer obtained from :meth:`take` (no-op for unpooled ones)."""
        if token is None:
            return
        with self._lock:
            self._free.append(token)
            if len(self._free) > self.max_buffers:
                self._free.sort(key=lambda b: b.nbytes)
                del self._free[0]

    @contextmanager
    def borrow(self, nbytes: int) -> Iterator[np.ndarray]:
        """A 64-byte aligned uint8 view of ``nbytes`` bytes for the ``with`` block."""
        buf, token = self.take(nbytes)
        try:
            yield buf
        finally:
            self.give(token)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()


READ_BUFFERS = BufferPool()

# Small reads (a chunk or a few) use one reused buffer per thread: no lock, no
# allocation, pages already faulted in. Larger ones go through READ_BUFFERS.
THREAD_BUFFER_MAX = 1 << 20


class _ThreadSlot(threading.local):
    buf: memoryview | None = None


_THREAD = _ThreadSlot()


def take_thread_buffer(nbytes: int) -> memoryview:
    """This thread's read buffer: a 64-byte aligned ``memoryview`` of at least ``nbytes``.

    ``nbytes`` must be at most :data:`THREAD_BUFFER_MAX`. Hand it back with
    :func:`give_thread_buffer`; until then a nested call on the same thread
    gets a new buffer instead of this one.
    """
    mv = _THREAD.buf
    if mv is None or mv.nbytes < nbytes:
        size = max(1 << 16, 1 << (max(nbytes, 1) - 1).bit_length())
        raw = np.empty(size + _ALIGN, np.uint8)
        skip = -raw.ctypes.data % _ALIGN
        return memoryview(raw[skip : skip + size])
    _THREAD.buf = None
    return mv


def give_thread_buffer(mv: memoryview) -> None:
    """Return a buffer from :func:`take_thread_buffer` for the thread's next read."""
    if mv.nbytes <= THREAD_BUFFER_MAX:
        _THREAD.buf = mv


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

    def __init__(self, dims: Sequence[int], chunks: Sequence[int], *, _ints: bool = False) -> None:
        # _ints: tuples of Python ints already (parsed records, on every first open)
        if not _ints:
            dims = tuple(map(int, dims))
            chunks = tuple(map(int, chunks))
        if len(dims) != len(chunks):
            raise ValueError(f"dims {dims} and chunks {chunks} differ in length")
        self.dims = dims
        self.chunks = chunks
        n = len(dims)
        grid = [0] * n
        strides = [0] * n
        s = 1
        for i in range(n - 1, -1, -1):
            g = -(-dims[i] // chunks[i])
            grid[i] = g
            strides[i] = s
            s *= g
        self.grid = tuple(grid)
        self.n_chunks = s
        self.strides = tuple(strides)

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
        """Sorted linear indices (int64) of every chunk holding a selected element."""
        base = 0
        multi: list[np.ndarray] = []
        for s, b, c, stride in zip(sel.index, sel.bounds, self.chunks, self.strides, strict=True):
            if b is not None:
                lo, hi = b[0] // c, b[1] // c
                if lo == hi:
                    base += lo * stride
                    continue
                coords = np.arange(lo, hi + 1, dtype=np.int64)
            else:
                coords = np.unique(s // c)
                if coords.size == 1:
                    base += int(coords[0]) * stride
                    continue
            multi.append(coords * stride)
        if not multi:
            return np.array([base], dtype=np.int64)
        # Sums of per-dimension sorted offsets, outer-combined with the slowest
        # dimension first: already in ascending chunk order.
        idx = multi[0] + base if base else multi[0]
        for m in multi[1:]:
            idx = np.add.outer(idx, m).ravel()
        return idx

    def box_run(self, start: Sequence[int], count: Sequence[int]) -> tuple[int, int] | None:
        """``(first, last)`` chunk index when the chunks of a box form one run of
        consecutive indices (e.g. a time series through chunks that only split the
        last dimension), else None."""
        first = last = 0
        varying = False
        for s, n, c, g, stride in zip(
            start, count, self.chunks, self.grid, self.strides, strict=True
        ):
            lo = s // c
            hi = (s + n - 1) // c
            if varying:
                if lo != 0 or hi != g - 1:
                    return None
            elif lo != hi:
                varying = True
            first += lo * stride
            last += hi * stride
        return first, last

    def box_chunks(self, start: Sequence[int], count: Sequence[int]) -> np.ndarray:
        """:meth:`touched` for the box ``start[d] <= i < start[d] + count[d]`` (ints)."""
        base = 0
        multi: list[np.ndarray] = []
        for s, n, c, stride in zip(start, count, self.chunks, self.strides, strict=True):
            lo = s // c
            hi = (s + n - 1) // c
            if lo == hi:
                base += lo * stride
            else:
                multi.append(np.arange(lo * stride, (hi + 1) * stride, stride, dtype=np.int64))
        if not multi:
            return np.array([base], dtype=np.int64)
        idx = multi[0] + base if base else multi[0]
        for m in multi[1:]:
            idx = np.add.outer(idx, m).ravel()
        return idx


# --------------------------------------------------------------------------- keys


class Selection:
    """An outer (orthogonal) selection: one int64 index array per dimension.

    Attributes
    ----------
    index
        Global indices along each dimension (int64 arrays, any order, repeats allowed).
    bounds
        ``(first, last)`` for dimensions selected by an ascending step-1 run (or
        an integer), else None: lets the planner skip ``np.unique``.
    drop
        Dimensions indexed by an integer: dropped from the result.
    """

    __slots__ = ("bounds", "drop", "full_shape", "index", "shape", "size")

    def __init__(
        self,
        index: tuple[np.ndarray, ...],
        bounds: tuple[tuple[int, int] | None, ...],
        drop: tuple[bool, ...],
    ) -> None:
        self.index = index
        self.bounds = bounds
        self.drop = drop
        full = tuple([len(s) for s in index])
        self.full_shape = full
        self.shape = tuple([n for n, d in zip(full, drop) if not d])  # noqa: B905
        size = 1
        for n in full:
            size *= n
        self.size = size

    @property
    def contiguous(self) -> tuple[bool, ...]:
        return tuple(b is not None for b in self.bounds)


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
    if type(key) is not tuple:
        key = (key,)
    n_ellipsis = 0
    for k in key:
        if k is Ellipsis:
            n_ellipsis += 1
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
    if len(key) < ndim:
        key = key + (slice(None),) * (ndim - len(key))
    index = []
    bounds: list[tuple[int, int] | None] = []
    drop = []
    for axis in range(ndim):
        k = key[axis]
        n = shape[axis]
        tk = type(k)
        if tk is int or (isinstance(k, np.integer) and tk is not np.bool_):
            i = int(k)
            if i < 0:
                i += n
            if not 0 <= i < n:
                raise IndexError(f"index {int(k)} is out of bounds for axis {axis} with size {n}")
            index.append(np.array((i,), dtype=np.int64))
            bounds.append((i, i))
            drop.append(True)
            continue
        if tk is slice:
            start, stop, step = k.indices(n)
            index.append(np.arange(start, stop, step, dtype=np.int64))
            bounds.append((start, stop - 1) if step == 1 and stop > start else None)
            drop.append(False)
            continue
        arr, b, d = _array_key(k, n, axis)
        index.append(arr)
        bounds.append(b)
        drop.append(d)
    return Selection(tuple(index), tuple(bounds), tuple(drop))


def box_key(key: Any, shape: Sequence[int]) -> tuple[list[int], list[int], tuple[int, ...]] | None:
    """``(start, count, result_shape)`` of a key made only of ints, step-1 slices and
    at most one Ellipsis, selecting at least one element; None for any other key.

    The fast path of :func:`normalize_key`: no index arrays. None also for keys
    that are invalid (out of bounds, too many indices), so that the general path
    raises its usual errors.
    """
    if type(key) is not tuple:
        key = (key,)
    ndim = len(shape)
    start: list[int] = []
    count: list[int] = []
    out: list[int] = []
    d = 0
    ellipsis = False
    for k in key:
        tk = type(k)
        if tk is slice:
            if d >= ndim:
                return None
            n = shape[d]
            if k.start is None and k.stop is None and k.step is None:
                a, b = 0, n
            else:
                a, b, step = k.indices(n)
                if step != 1:
                    return None
            if b <= a:
                return None
            start.append(a)
            count.append(b - a)
            out.append(b - a)
            d += 1
            continue
        if tk is not int:
            if k is Ellipsis:
                fill = ndim - (len(key) - 1)
                if ellipsis or fill < 0:
                    return None
                ellipsis = True
                for _ in range(fill):
                    n = shape[d]
                    if n < 1:
                        return None
                    start.append(0)
                    count.append(n)
                    out.append(n)
                    d += 1
                continue
            if not isinstance(k, np.integer):
                return None
            k = int(k)
        if d >= ndim:
            return None
        n = shape[d]
        i = k + n if k < 0 else k
        if not 0 <= i < n:
            return None
        start.append(i)
        count.append(1)
        d += 1
    while d < ndim:
        n = shape[d]
        if n < 1:
            return None
        start.append(0)
        count.append(n)
        out.append(n)
        d += 1
    return start, count, tuple(out)


def _array_key(k: Any, n: int, axis: int) -> tuple[np.ndarray, tuple[int, int] | None, bool]:
    """Index array, bounds and drop flag of one non-int, non-slice key item."""
    if k is None:
        raise IndexError("np.newaxis / None is not supported in OM array indexing")
    if isinstance(k, (bool, np.bool_)):
        raise IndexError("boolean scalar indices are not supported")
    arr = np.asarray(k)
    if arr.ndim == 0 and arr.dtype.kind in "iu":
        i = _int_index(int(arr), n, axis)
        return np.array((i,), dtype=np.int64), (i, i), True
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
        return np.flatnonzero(arr).astype(np.int64), None, False
    if arr.size == 0:
        return np.empty(0, np.int64), None, False
    if arr.dtype.kind not in "iu":
        raise IndexError(
            f"arrays used as indices must be of integer or boolean type, got {arr.dtype}"
        )
    if arr.dtype.kind == "u" and int(arr.max()) >= n:
        raise IndexError(f"index {int(arr.max())} is out of bounds for axis {axis} with size {n}")
    arr = arr.astype(np.int64, copy=True)
    neg = arr < 0
    if neg.any():
        arr[neg] += n
    if int(arr.min()) < 0 or int(arr.max()) >= n:
        bad = int(np.asarray(k)[(arr < 0) | (arr >= n)][0])
        raise IndexError(f"index {bad} is out of bounds for axis {axis} with size {n}")
    return arr, None, False


# --------------------------------------------------------------------------- LUT


# Decoded whole look-up tables by content (see V3Lut._cache_key): small tables only,
# so the cache stays below a few tens of MB however many files a process opens.
_LUT_CACHE_BYTES = 16384
_LUT_CACHE_MAX = 256
_LUTS: dict[tuple, np.ndarray] = {}


class Lut:
    """The ``n_chunks + 1`` chunk boundary offsets of one array, read on demand.

    A table of at most ``io_size_max`` bytes is read, decoded and checked as a
    whole on first use (its entries array is then set once and never written).
    Larger ones keep their entries in one array allocated with ``np.zeros``
    (pages are only touched when a group is stored); groups are fetched the
    first time a chunk needs them and kept for the life of the object.
    Concurrent readers may decode the same group (or small table) twice; both
    store identical values.
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
        # allocated by _partial() for tables loaded group by group; a small table's
        # entries are its decoded values, set by _load_whole()
        self._entries: np.ndarray | None = None
        self._have: np.ndarray | None = None
        self._complete = False
        self._lens: np.ndarray | None = None  # chunk lengths, once complete (run_lengths)

    def _partial(self) -> None:
        """Subclasses call this once ``nbytes`` is known: large tables load by group."""
        if self.nbytes > self.io_size_max:
            self._entries = np.zeros(self.n_entries, np.int64)
            self._have = np.zeros(self.n_groups, bool)

    # subclasses: byte size of the LUT, byte range of a run of groups, decoding
    nbytes: int
    group_bytes: int

    def _run_range(self, g0: int, g1: int) -> tuple[int, int]:
        raise NotImplementedError

    def _decode_run(self, g0: int, g1: int, data: bytes) -> np.ndarray:
        raise NotImplementedError

    def _bad(self, msg: str) -> OmFormatError:
        return OmFormatError(f"{self.what}: look-up table {msg}", source=self.source.name)

    def _cache_key(self, data: bytes) -> tuple | None:
        """Key of a whole table's bytes in the process-wide cache (None: not cached)."""
        return None

    def _store(self, g0: int, g1: int, values: np.ndarray) -> None:
        self._check_values(g0, g1, values)
        e0 = LUT_GROUP * g0
        # Entries are <= the file size (checked), so int64 holds them.
        self._entries[e0 : e0 + values.size] = values.view(np.int64)
        self._have[g0:g1] = True

    def _check_values(self, g0: int, g1: int, values: np.ndarray) -> None:
        """Entries of groups ``g0..g1 - 1``: increasing and inside the file."""
        size = self.source.size
        n = values.size
        # Increasing (the usual case) makes the last entry the largest: two cheap
        # checks; anything else takes the detailed path below for its message.
        if n > 1 and values.item(-1) <= size and not np.count_nonzero(values[1:] <= values[:-1]):
            pass
        elif n:
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

    def load_groups(self, groups: np.ndarray) -> None:
        """Make sure the given (sorted, unique) groups are decoded."""
        if self._complete:
            return
        if self._have is None:
            # Small LUT: one read of the whole table (the first load; it completes).
            self._load_whole()
            return
        whole = [(0, self.n_groups)]
        gb = self.group_bytes
        if (missing := groups[~self._have[groups]]).size == 0:
            return
        elif missing.size * gb * 2 >= self.nbytes:
            # Most of it needed: one read of the whole table.
            runs = whole
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
        ck = self._cache_key(datas[0]) if runs is whole else None
        if ck is not None:
            entries = _LUTS.get(ck)
            if entries is not None:
                # into the existing array: callers hold references to it
                self._entries[:] = entries
                self._have[:] = True
                self._complete = True
                return
        for (g0, g1), data in zip(runs, datas, strict=True):
            self._store(g0, g1, self._decode_run(g0, g1, data))
        if runs is whole:
            self._complete = True  # one run: _store checked every join
            if ck is not None:
                if len(_LUTS) >= _LUT_CACHE_MAX:
                    _LUTS.clear()
                _LUTS[ck] = self._entries.copy()
        elif self._have.all():
            # Runs were checked one by one; check the joins once so that ranges()
            # can skip its per-call check from now on.
            e = self._entries
            bad = e[1:] <= e[:-1]
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise self._bad(
                    f"entries are not increasing at chunk {i} ({int(e[i])} -> "
                    f"{int(e[i + 1])}): empty or negative chunk range"
                )
            self._complete = True

    def _load_whole(self) -> None:
        """Read, decode and check a small table at once (its first use)."""
        g1 = self.n_groups
        a, b = self._run_range(0, g1)
        data = self.source.read_range(a, b)
        ck = self._cache_key(data)
        entries = None if ck is None else _LUTS.get(ck)
        if entries is None:
            values = self._decode_run(0, g1, data)
            if values.size != self.n_entries:
                raise self._bad(f"decoded to {values.size} entries, expected {self.n_entries}")
            self._check_values(0, g1, values)
            # <= the file size (checked), so int64 holds them; never written again
            entries = values.view(np.int64)
            entries.flags.writeable = False
            if ck is not None:
                if len(_LUTS) >= _LUT_CACHE_MAX:
                    _LUTS.clear()
                _LUTS[ck] = entries
        # the entries before the flag: a reader that sees the flag sees the entries
        self._entries = entries
        self._complete = True

    @property
    def complete(self) -> bool:
        """Whether every entry is loaded (the object is then never written again)."""
        return self._complete

    @property
    def entries(self) -> np.ndarray:
        """The ``n_chunks + 1`` entries (only meaningful once :attr:`complete`)."""
        e = self._entries
        return np.zeros(self.n_entries, np.int64) if e is None else e

    def load_all(self) -> np.ndarray:
        """All ``n_chunks + 1`` entries (reads the whole LUT once)."""
        if not self._complete:
            self.load_groups(np.arange(self.n_groups, dtype=np.int64))
        return self._entries  # type: ignore[return-value]

    def chunk_range(self, i: int) -> tuple[int, int]:
        """:meth:`ranges` of the single chunk ``i`` (an int in ``0..n_chunks - 1``), as ints."""
        if not self._complete:
            have = self._have
            if have is None:
                self._load_whole()
            else:
                g = i >> 6
                g_next = (i + 1) >> 6
                if not (have[g] and have[g_next]):
                    self.load_groups(np.array((g,) if g == g_next else (g, g_next), np.int64))
        e = self._entries
        a = e.item(i)
        b = e.item(i + 1)
        if b <= a:
            raise self._bad(f"gives chunk {i} the empty or negative byte range [{a}, {b})")
        return a, b

    def run_lengths(self, first: int, last: int, bounds: np.ndarray) -> np.ndarray:
        """Byte lengths (uint64, read-only) of chunks ``first..last`` whose
        :meth:`run_entries` are ``bounds``: a view of all lengths, computed once,
        for a complete table (the hot path of time-series reads)."""
        if not self._complete:
            return np.diff(bounds).view(np.uint64)
        lens = self._lens
        if lens is None:
            # positive: complete tables are checked to be increasing
            lens = np.diff(self._entries).view(np.uint64)
            lens.flags.writeable = False
            self._lens = lens
        return lens[first : last + 1]

    def run_entries(self, first: int, last: int) -> np.ndarray:
        """Entries ``first .. last + 1`` (int64): the byte boundaries of chunks ``first..last``.

        A read-only view; checked to be increasing.
        """
        if not self._complete and self._have is None:
            self._load_whole()
        if self._complete:
            v = self._entries[first : last + 2]
        else:
            g0 = first >> 6
            g1 = ((last + 1) >> 6) + 1
            if not self._have[g0:g1].all():
                self.load_groups(np.arange(g0, g1, dtype=np.int64))
            v = self._entries[first : last + 2]
            bad = v[1:] <= v[:-1]
            if bad.any():
                k = int(np.flatnonzero(bad)[0])
                raise self._bad(
                    f"gives chunk {first + k} the empty or negative byte range "
                    f"[{int(v[k])}, {int(v[k + 1])})"
                )
        v = v.view()
        v.flags.writeable = False
        return v

    def ranges(self, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(starts, stops) byte ranges (int64) of the chunks ``idx`` (sorted, unique)."""
        if not self._complete and self._have is None:
            self._load_whole()
        if self._complete:
            e = self._entries
            return e[idx], e[idx + 1]
        g = idx >> 6
        g_next = (idx + 1) >> 6
        if idx.size == 1:
            groups = g if g[0] == g_next[0] else np.concatenate((g, g_next))
        else:
            groups = np.union1d(g, g_next)
        self.load_groups(groups)
        e = self._entries
        starts = e[idx]
        stops = e[idx + 1]
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
        self._partial()

    @classmethod
    def complete_from(
        cls, source: Source, lut_offset: int, lut_size: int, entries: np.ndarray, **kw: Any
    ) -> V3Lut:
        """A complete table with ``entries`` already decoded and checked (shared,
        never written: complete tables are not loaded again)."""
        self = cls.__new__(cls)
        self.source = source
        self.n_chunks = entries.size - 1
        self.n_entries = entries.size
        self.n_groups = -(-self.n_entries // LUT_GROUP)
        self.what = kw.get("what", "")
        self.io_size_max = kw.get("io_size_max", 65536)
        self.io_size_merge = kw.get("io_size_merge", 512)
        self._entries = entries
        self._have = np.ones(self.n_groups, bool)
        self._complete = True
        self._lens = None
        self.lut_offset = lut_offset
        self.nbytes = lut_size
        self.stride = lut_size // self.n_groups
        self.group_bytes = self.stride
        return self

    def _run_range(self, g0: int, g1: int) -> tuple[int, int]:
        return (self.lut_offset + g0 * self.stride, self.lut_offset + g1 * self.stride)

    def _cache_key(self, data: bytes) -> tuple | None:
        # Same bytes, entry count and stride decode to the same entries, checked
        # against the same file size: a reopened file skips decoding and checks.
        if len(data) > _LUT_CACHE_BYTES:
            return None
        return (data, self.n_entries, self.stride, self.source.size)

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
        self._partial()

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


# Reads land in the buffer at the same offset modulo 64 as in the file: the
# kernel copies page-cache data several times faster when source and
# destination are equally aligned.
_ALIGN = 64
_ALIGN_MIN = 1 << 18


class ReadPlan:
    """Coalesced reads for a set of chunks and where each chunk lands in the buffer.

    Attributes
    ----------
    read_starts, read_stops
        Absolute byte range of each read (lists of int).
    read_pos
        Offset of each read inside the buffer (list of int).
    chunk_off, chunk_len
        uint64 offset / length of each chunk inside the buffer.
    nbytes
        Buffer size (fetched bytes plus alignment padding).
    """

    __slots__ = ("chunk_len", "chunk_off", "nbytes", "read_pos", "read_starts", "read_stops")

    def __init__(self, read_starts, read_stops, read_pos, chunk_off, chunk_len, nbytes) -> None:
        self.read_starts = read_starts
        self.read_stops = read_stops
        self.read_pos = read_pos
        self.chunk_off = chunk_off
        self.chunk_len = chunk_len
        self.nbytes = nbytes

    @property
    def fetched(self) -> int:
        """Bytes fetched from the source."""
        return sum(b - a for a, b in zip(self.read_starts, self.read_stops, strict=True))


# Below this many chunks a plain loop beats ~35 numpy calls of fixed overhead.
_SMALL_PLAN = 48


def _overlap(a0: int, b0: int, a1: int, b1: int, source: object) -> OmFormatError:
    return OmFormatError(
        f"look-up table gives overlapping chunk byte ranges [{a0}, {b0}) and [{a1}, {b1})",
        source=source,
    )


def _plan_small(
    starts: np.ndarray, stops: np.ndarray, merge: int, io_max: int, source: object
) -> ReadPlan:
    sl = starts.tolist()
    el = stops.tolist()
    rs = sl[0]
    re_ = el[0]
    p = rs % _ALIGN
    read_starts = [rs]
    read_stops = [re_]
    read_pos = [p]
    offs = [p]
    prev_stop = re_
    for k in range(1, len(sl)):
        a = sl[k]
        b = el[k]
        if a < prev_stop:
            raise _overlap(sl[k - 1], prev_stop, a, b, source)
        prev_stop = b
        if a - re_ <= merge and b - rs <= io_max:
            offs.append(p + a - rs)
            re_ = b
            read_stops[-1] = b
        else:
            # the buffer end is congruent to re_ (mod 64): pad up to a's alignment
            p = p + (re_ - rs) + (a - re_) % _ALIGN
            rs, re_ = a, b
            read_starts.append(a)
            read_stops.append(b)
            read_pos.append(p)
            offs.append(p)
    return ReadPlan(
        read_starts,
        read_stops,
        read_pos,
        np.array(offs, np.uint64),
        (stops - starts).astype(np.uint64),
        p + re_ - rs,
    )


def plan_run(bounds: np.ndarray, *, io_size_max: int = 65536) -> ReadPlan:
    """:func:`plan_reads` for chunks that are back to back in the file.

    ``bounds`` holds the ``n + 1`` increasing byte boundaries of ``n``
    consecutive chunks (LUT entries ``first .. last + 1``). Without gaps the
    merge distance never splits a read: reads only break where one would
    exceed ``io_size_max``, so the plan is computed per read, not per chunk,
    and the reads land back to back in the buffer.
    """
    a = bounds.item(0)
    b = bounds.item(-1)
    pad = a % _ALIGN
    head = bounds[:-1]
    # int64 differences of increasing offsets: non-negative, reinterpreted in place
    chunk_off = (head - (a - pad)).view(np.uint64)
    chunk_len = (bounds[1:] - head).view(np.uint64)
    if b - a <= io_size_max:
        return ReadPlan([a], [b], [pad], chunk_off, chunk_len, pad + b - a)
    ends = bounds[1:]
    n = ends.size
    small = n <= 4096
    if small:
        ends = ends.tolist()
    read_starts = []
    read_stops = []
    k = 0
    start = a
    while k < n:
        # the read takes chunk k and every following chunk that ends within the limit
        limit = start + io_size_max
        k1 = bisect_right(ends, limit) if small else int(ends.searchsorted(limit, "right"))
        if k1 <= k:
            k1 = k + 1
        stop = int(ends[k1 - 1])
        read_starts.append(start)
        read_stops.append(stop)
        start = stop
        k = k1
    read_pos = [pad + r - a for r in read_starts]
    return ReadPlan(read_starts, read_stops, read_pos, chunk_off, chunk_len, pad + b - a)


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
    if n == 1:
        a, b = int(starts[0]), int(stops[0])
        pad = a % _ALIGN
        return ReadPlan(
            [a], [b], [pad], np.array([pad], np.uint64), np.array([b - a], np.uint64), pad + b - a
        )
    if n == 0:
        z = np.zeros(0, np.uint64)
        return ReadPlan([], [], [], z, z, 0)
    if n <= _SMALL_PLAN:
        return _plan_small(starts, stops, io_size_merge, io_size_max, source)
    gaps = starts[1:] - stops[:-1]
    if gaps.min() > io_size_merge:
        # Nothing to merge (scattered chunks, e.g. one time step through
        # time-major chunks): each chunk is one read, padded to its alignment.
        lens = stops - starts
        sizes = np.empty_like(lens)
        sizes[0] = starts[0] % _ALIGN
        np.remainder(gaps, _ALIGN, out=sizes[1:])
        sizes += lens
        ends = np.cumsum(sizes)
        pos = ends - lens
        return ReadPlan(
            starts.tolist(),
            stops.tolist(),
            pos.tolist(),
            pos.astype(np.uint64),
            lens.astype(np.uint64),
            int(ends[-1]),
        )
    if (gaps < 0).any():
        k = int(np.flatnonzero(gaps < 0)[0])
        raise _overlap(int(starts[k]), int(stops[k]), int(starts[k + 1]), int(stops[k + 1]), source)
    brk = np.empty(n, bool)
    brk[0] = True
    np.greater(gaps, io_size_merge, out=brk[1:])
    firsts = np.flatnonzero(brk)
    lasts = np.append(firsts[1:] - 1, n - 1)
    seg_size = stops[lasts] - starts[firsts]
    big = np.flatnonzero(seg_size > io_size_max)
    if big.size:
        starts_l = starts.tolist()
        stops_l = stops.tolist()
        for s in big.tolist():
            a, b = int(firsts[s]), int(lasts[s]) + 1
            cur = a
            while cur < b:
                brk[cur] = True
                limit = starts_l[cur] + io_size_max
                k = cur + 1
                while k < b and stops_l[k] <= limit:
                    k += 1
                cur = k
        firsts = np.flatnonzero(brk)
        lasts = np.append(firsts[1:] - 1, n - 1)
    read_id = np.cumsum(brk) - 1
    read_starts = starts[firsts]
    read_stops = stops[lasts]
    lens = read_stops - read_starts
    pads = np.empty_like(lens)
    pads[0] = read_starts[0] % _ALIGN
    if lens.size > 1:
        pads[1:] = (read_starts[1:] - read_stops[:-1]) % _ALIGN
    ends = np.cumsum(lens + pads)
    pos = ends - lens
    chunk_off = (pos[read_id] + (starts - read_starts[read_id])).astype(np.uint64)
    chunk_len = (stops - starts).astype(np.uint64)
    return ReadPlan(
        read_starts.tolist(), read_stops.tolist(), pos.tolist(), chunk_off, chunk_len, int(ends[-1])
    )
