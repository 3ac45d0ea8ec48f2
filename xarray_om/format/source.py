"""Where the bytes of an OM file come from.

A :class:`Source` serves byte ranges of one immutable file: a local path
(``os.pread`` on a kept-open descriptor), an fsspec URL or ``(fs, path)``
(``fs.cat_ranges``: one batched request for many ranges), a binary file-like
object (seek/read) or a ``bytes`` object.

Chunk data of a local file is decoded straight from a read-only memory map of
it (:meth:`Source.view`): no copy and no system call per read, the pages a
decode never touches are never read. A file truncated under the map is caught
by the native decoder's guard (see ``native/om_mapped.c``) and reported as an
:class:`~xarray_om.errors.OmFormatError`, never a crash. Set
``XARRAY_OM_MMAP=0`` in the environment (or :data:`MMAP_READS` to False) to
read with ``pread`` instead.

Every source fetches the last ``min(size, 64 KiB)`` bytes once when it is
opened and serves later reads that fall inside that *tail* from memory:
default writers put the trailer and all metadata records at the end of the
file, so opening a remote file and walking its tree costs about two requests
(size + tail).

A source is described by a small picklable :class:`SourceSpec`;
``spec.open()`` opens the same bytes again in another process. Sources
themselves pickle as their spec and reconnect lazily (after unpickling and in
a forked child) on the first read.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import OmFormatError

__all__ = [
    "DEFAULT_TAIL_SIZE",
    "BytesSpec",
    "FileObjSpec",
    "FsspecSpec",
    "LocalSpec",
    "Source",
    "SourceSpec",
    "UrlSpec",
    "open_source",
]

DEFAULT_TAIL_SIZE = 64 * 1024
# read_into() with at least this many ranges on a local file reads them in one
# native call (POSIX pread loop) instead of one Python call per range.
_NATIVE_PREADS = 8
_POSIX = os.name == "posix"
# Local reads cost a system call each, not a round trip: a small tail is enough.
LOCAL_TAIL_SIZE = 16 * 1024

# Decode local chunk data from a memory map (see the module docstring); read
# when a source first needs its data, so tests and users can switch it.
MMAP_READS = os.environ.get("XARRAY_OM_MMAP", "1").strip().lower() not in ("0", "false", "no")
# Reads of a local file below this many bytes are preads until the file has been
# read MAP_AFTER_READS times: mapping and unmapping (and the page faults) cost more
# than copying that much once, and a file opened for a point read or two is common.
MAP_MIN_BYTES = 128 * 1024
# Maps of the most recently mapped local files, by file identity (device, inode,
# size, mtime): reopening one (a loop of open + point read + close, a dask task)
# reuses its map instead of mapping, faulting in and unmapping again. A map holds
# no descriptor, but it does keep a deleted file's blocks until it is dropped
# (evicted, or :func:`release_maps`).
MAP_CACHE_SIZE = 32
_MAPS: dict[tuple, Any] = {}
# Small reads of a local file without a map, by identity: the file is mapped at
# its MAP_AFTER_READS-th (opened again and again: the map is kept and pays off).
MAP_AFTER_READS = 3
_SEEN: dict[tuple, int] = {}
_MAPS_LOCK = threading.Lock()


def release_maps() -> None:
    """Drop the cached maps of local files (each goes once no read uses it)."""
    with _MAPS_LOCK:
        _MAPS.clear()
        _SEEN.clear()


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)

# Bumped in every forked child: descriptors, sockets and event loops inherited
# from the parent are not reused (fsspec's async loops do not survive a fork).
_FORK_GENERATION = 0


def _after_fork() -> None:
    global _FORK_GENERATION
    _FORK_GENERATION += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


# --------------------------------------------------------------------------- specs


class SourceSpec(ABC):
    """Picklable description of a source; ``open()`` gives a new :class:`Source`."""

    name: str

    @abstractmethod
    def _connect(self) -> Any:
        """Return the handle the source reads through (fd, filesystem, object)."""

    default_tail_size = DEFAULT_TAIL_SIZE

    def open(self, tail_size: int | None = None, *, lazy: bool = False) -> Source:
        """Open the described bytes: gets the size and reads the tail.

        ``tail_size`` defaults to 64 KiB (16 KiB for local files). With
        ``lazy=True`` nothing happens until the first read.
        """
        if tail_size is None:
            tail_size = self.default_tail_size
        return Source(self, tail_size=tail_size, lazy=lazy)

    @property
    def key(self) -> str:
        """Identity of the described bytes' location (for per-process caches)."""
        cached = getattr(self, "_key_cache", None)
        if cached is None:
            cached = f"{type(self).__name__}:{self._key()}"
            object.__setattr__(self, "_key_cache", cached)
        return cached

    def _key(self) -> str:
        try:
            raw = pickle.dumps(self, protocol=4)
        except Exception:  # unpicklable (file-like): identity of the object
            return str(id(self))
        return hashlib.sha1(raw).hexdigest()

    def __getstate__(self) -> dict:
        state = {k: getattr(self, k) for k in self.__dataclass_fields__}  # type: ignore[attr-defined]
        return state

    def __setstate__(self, state: dict) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, v)


@dataclass(frozen=True, eq=False)
class LocalSpec(SourceSpec):
    """A local file, read with ``os.pread``."""

    path: str

    default_tail_size = LOCAL_TAIL_SIZE

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.path

    def _key(self) -> str:
        return self.path

    def _connect(self) -> Any:
        return os.open(self.path, _OPEN_FLAGS)


@dataclass(frozen=True, eq=False)
class UrlSpec(SourceSpec):
    """An fsspec URL plus storage options; the filesystem is rebuilt on connect."""

    url: str
    storage_options: dict = field(default_factory=dict)

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.url

    def _connect(self) -> Any:
        import fsspec.core

        fs, path = fsspec.core.url_to_fs(self.url, **self.storage_options)
        return fs, path


@dataclass(frozen=True, eq=False)
class FsspecSpec(SourceSpec):
    """A path on a given fsspec filesystem (the filesystem object pickles itself)."""

    fs: Any
    path: str

    @property
    def name(self) -> str:  # type: ignore[override]
        try:
            return str(self.fs.unstrip_protocol(self.path))
        except Exception:
            return self.path

    def _connect(self) -> Any:
        return self.fs, self.path


@dataclass(frozen=True, eq=False)
class BytesSpec(SourceSpec):
    """Bytes held in memory (pickles by value)."""

    data: bytes
    label: str = "<bytes>"

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.label

    def _key(self) -> str:
        return hashlib.sha1(self.data).hexdigest()

    def _connect(self) -> Any:
        return memoryview(self.data)


@dataclass(frozen=True, eq=False)
class FileObjSpec(SourceSpec):
    """A binary file-like object; only usable in this process."""

    fileobj: Any

    @property
    def name(self) -> str:  # type: ignore[override]
        label = getattr(self.fileobj, "name", None)
        return str(label) if isinstance(label, (str, os.PathLike)) else repr(self.fileobj)

    def _connect(self) -> Any:
        return self.fileobj

    def __reduce__(self):
        raise TypeError(
            f"cannot pickle an OM file opened from a file-like object ({self.name}); "
            "open it from a path, URL or (fs, path) to use it in other processes"
        )

    def __getstate__(self) -> dict:
        self.__reduce__()
        return {}


# --------------------------------------------------------------------------- source


class Source:
    """Byte ranges of one immutable file.

    Use :func:`open_source` to create one. Thread-safe. Connects lazily when
    restored from a pickle and reconnects in forked children.
    """

    def __init__(
        self, spec: SourceSpec, *, tail_size: int | None = None, lazy: bool = False
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self._lock = threading.RLock()
        self._handle: Any = None
        self._generation = -1
        self._closed = False
        # descriptor this object owns (closed by _drop_handle / __del__), -1 if none
        self._fd = -1
        self._tail_start = 0
        self._tail = b""
        self._tail_size = int(spec.default_tail_size if tail_size is None else tail_size)
        self._size = -1
        # the whole file to decode chunks in place (a FileMap, or a bytes source's
        # memoryview) once made; None: not tried yet, False: none (remote, file-like,
        # maps disabled)
        self._view: Any = None
        self._ident: tuple | None = None  # (path, device, inode, size, mtime) of a local file
        # Reads cost a system call or a memory copy, not a request: splitting
        # them (io_size_max) buys nothing, adjacent ranges are read at once.
        local = type(spec) is LocalSpec
        self.local = local or isinstance(spec, (LocalSpec, BytesSpec))
        if not lazy:
            if local:
                self._open_local()
            else:
                self._open()

    def _open_local(self) -> None:
        # _open for a local file: the hot path of every (cold) open, three
        # system calls (open, fstat, pread of the tail) and no Python layers.
        fd = self.spec._connect()
        self._fd = fd
        self._handle = fd
        self._generation = _FORK_GENERATION
        try:
            st = os.fstat(fd)
            size = st.st_size
            self._ident = (self.spec.path, st.st_dev, st.st_ino, size, st.st_mtime_ns)
            n = self._tail_size
            if n > 0 and size > 0:
                start = size - n if size > n else 0
                tail = os.pread(fd, size - start, start)
                if len(tail) != size - start:
                    raise OmFormatError(
                        f"reading the last {size - start} bytes returned {len(tail)}: the "
                        "file is truncated or changed while open",
                        source=self.name,
                    )
                self._tail, self._tail_start = tail, start
        except BaseException:
            self._drop_handle()
            raise
        self._size = size

    def __del__(self) -> None:
        # The descriptor's owner is this object (weakref.finalize costs more per open).
        fd = getattr(self, "_fd", -1)
        if fd >= 0:
            self._fd = -1
            _close_fd(fd)

    def _open(self) -> None:
        with self._lock:
            if self._size >= 0:
                return
            size = self._fetch_size()
            if self._tail_size > 0 and size > 0:
                start = max(0, size - self._tail_size)
                tail = self._fetch_ranges([(start, size)])[0]
                if len(tail) != size - start:
                    raise OmFormatError(
                        f"reading the last {size - start} bytes returned {len(tail)}: the "
                        "file is truncated or changed while open",
                        source=self.name,
                    )
                self._tail, self._tail_start = tail, start
            self._size = size

    def tail_view(self) -> tuple[int, bytes]:
        """``(start, bytes)`` of the file's tail held in memory (``b""`` if none)."""
        if self._size < 0:
            self._open()
        return self._tail_start, self._tail

    @property
    def size(self) -> int:
        """File size in bytes."""
        if self._size < 0:
            self._open()
        return self._size

    # -- connection management

    def _conn(self) -> Any:
        if self._generation == _FORK_GENERATION and self._handle is not None:
            return self._handle
        if self._closed:
            raise ValueError(f"I/O operation on a closed OM source ({self.name})")
        with self._lock:
            if self._generation != _FORK_GENERATION or self._handle is None:
                forked = self._generation != -1
                self._drop_handle()
                handle = self.spec._connect()
                if forked and isinstance(self.spec, FsspecSpec):
                    # A filesystem inherited through fork holds the parent's event
                    # loop / sockets: rebuild it from its pickle.
                    fs, path = handle
                    handle = (pickle.loads(pickle.dumps(fs)), path)
                if isinstance(handle, int):
                    self._fd = handle
                self._handle = handle
                self._generation = _FORK_GENERATION
        return self._handle

    def _drop_handle(self) -> None:
        # An fd inherited by a forked child is the child's own copy: closing it there
        # does not affect the parent.
        fd = self._fd
        if fd >= 0:
            self._fd = -1
            _close_fd(fd)
        self._handle = None

    def close(self) -> None:
        """Release the descriptor / connection. Further reads raise ``ValueError``."""
        with self._lock:
            self._closed = True
            self._drop_handle()
            self._tail = b""
            # a decode running in another thread keeps the map alive until it ends
            self._view = False

    def _local_map(self, size: int) -> Any:
        """The cached map of this local file, or a new one (cached); False if none."""
        ident = self._ident
        m = None if ident is None else _MAPS.get(ident)
        if m is not None:
            return m
        from .. import _native

        m = _native.FileMap.open(self._conn(), size)
        if m is None:
            return False
        if ident is not None:
            with _MAPS_LOCK:
                # a file replaced or rewritten under the same path: its old map goes
                for k in [k for k in _MAPS if k[0] == ident[0]]:
                    del _MAPS[k]
                while len(_MAPS) >= MAP_CACHE_SIZE:
                    del _MAPS[next(iter(_MAPS))]  # the oldest
                _MAPS[ident] = m
        return m

    def changed(self) -> str | None:
        """What changed about an open local file since it was opened (its size), or None."""
        fd = self._fd
        if fd < 0 or self._size < 0:
            return None
        try:
            size = os.fstat(fd).st_size
        except OSError:
            return None
        if size == self._size:
            return None
        return f"the file changed size from {self._size} to {size} bytes"

    def view(self) -> Any:
        """The whole file as one object to decode chunks in place, or None.

        Local files (POSIX): a :class:`~xarray_om._native.FileMap` of the size
        seen at open (only the native decoders read it, under a guard against
        the file being truncated meanwhile). Byte sources: their bytes. Remote
        and file-like sources: None (ranges are read into a buffer instead).
        """
        v = self._view
        if v is None:
            v = self._make_view()
        return v or None

    def view_for(self, nbytes: int) -> Any:
        """:meth:`view` for a read of about ``nbytes`` chunk bytes.

        None (read them with pread) when mapping would not pay: the first small
        reads of a local file that is not mapped yet, so that a file opened for a
        point read or two is never mapped. A file read again and again (its
        :data:`MAP_AFTER_READS`-th small read, over any number of opens) is mapped
        and the map kept for later opens (see :data:`MAP_CACHE_SIZE`).
        """
        v = self._view
        if v is None:
            if self._size < 0:
                self._open()  # a lazily opened source learns its identity here
            ident = self._ident
            if ident is not None and MMAP_READS:
                m = _MAPS.get(ident)
                if m is not None:
                    self._view = m
                    return m
                if nbytes < MAP_MIN_BYTES:
                    seen = _SEEN.get(ident, 0) + 1
                    if seen < MAP_AFTER_READS:
                        if len(_SEEN) >= 4 * MAP_CACHE_SIZE:
                            _SEEN.clear()
                        _SEEN[ident] = seen
                        return None
            v = self._make_view()
        return v or None

    def _make_view(self) -> Any:
        with self._lock:
            if self._view is not None:
                return self._view
            if self._closed:
                raise ValueError(f"I/O operation on a closed OM source ({self.name})")
            view: Any = False
            spec = self.spec
            size = self.size
            if type(spec) is BytesSpec:
                view = self._conn()
            elif type(spec) is LocalSpec and MMAP_READS and _POSIX:
                view = self._local_map(size)
            self._view = view
            return view

    @property
    def closed(self) -> bool:
        return self._closed

    def __reduce__(self):
        return (_reopen, (self.spec, self._tail_size))

    def __repr__(self) -> str:
        return f"<Source {self.name!r}>"

    # -- backend primitives

    def _fetch_size(self) -> int:
        h = self._conn()
        if isinstance(h, int):
            st = os.fstat(h)
            if type(self.spec) is LocalSpec:  # a lazily (re)opened local file: as _open_local
                self._ident = (self.spec.path, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
            return st.st_size
        if isinstance(h, memoryview):
            return h.nbytes
        if isinstance(h, tuple):
            fs, path = h
            size = fs.size(path)
            if size is None:
                raise OmFormatError("the server does not report the file size", source=self.name)
            return int(size)
        with self._lock:
            pos = h.seek(0, io.SEEK_END)
        return int(pos)

    def _fetch_ranges(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        h = self._conn()
        if isinstance(h, int):
            return [os.pread(h, b - a, a) for a, b in ranges]
        if isinstance(h, memoryview):
            return [bytes(h[a:b]) for a, b in ranges]
        if isinstance(h, tuple):
            fs, path = h
            if len(ranges) == 1:
                a, b = ranges[0]
                return [fs.cat_file(path, start=a, end=b)]
            return fs.cat_ranges(
                [path] * len(ranges),
                [a for a, _ in ranges],
                [b for _, b in ranges],
                on_error="raise",
            )
        out = []
        with self._lock:
            for a, b in ranges:
                h.seek(a)
                out.append(_read_exact(h, b - a))
        return out

    # -- public API

    def _check(self, start: int, stop: int) -> None:
        if not 0 <= start <= stop <= self.size:
            raise OmFormatError(
                f"byte range [{start}, {stop}) lies outside the file of {self.size} bytes",
                source=self.name,
            )

    def _got(self, data: bytes, start: int, stop: int) -> bytes:
        if len(data) != stop - start:
            raise OmFormatError(
                f"read of [{start}, {stop}) returned {len(data)} bytes: the file is "
                "truncated or changed while open",
                source=self.name,
            )
        return data

    def read_range(self, start: int, stop: int) -> bytes:
        """Bytes ``[start, stop)`` of the file."""
        start, stop = int(start), int(stop)
        self._check(start, stop)
        if self._tail and start >= self._tail_start:
            return self._tail[start - self._tail_start : stop - self._tail_start]
        if start == stop:
            return b""
        return self._got(self._fetch_ranges([(start, stop)])[0], start, stop)

    def read_ranges(self, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Bytes of several ranges, fetched in one batched request where possible."""
        ranges = [(int(a), int(b)) for a, b in ranges]
        out: list[bytes | None] = [None] * len(ranges)
        todo: list[int] = []
        for i, (a, b) in enumerate(ranges):
            self._check(a, b)
            if a == b:
                out[i] = b""
            elif self._tail and a >= self._tail_start:
                out[i] = self._tail[a - self._tail_start : b - self._tail_start]
            else:
                todo.append(i)
        if todo:
            got = self._fetch_ranges([ranges[i] for i in todo])
            for i, data in zip(todo, got, strict=True):
                out[i] = self._got(data, *ranges[i])
        return out  # type: ignore[return-value]

    def _short(self, a: int, b: int, got: int) -> OmFormatError:
        return OmFormatError(
            f"read of [{a}, {b}) returned {got} bytes: the file is truncated or changed while open",
            source=self.name,
        )

    def _pread(self, fd: int, mv: memoryview, a: int, b: int, p: int, done: int = 0) -> None:
        """Read ``[a, b)`` to ``mv[p:]``, of which ``done`` bytes are already there."""
        # The kernel returns at most ~2 GiB per call: continue partial reads;
        # only end of file (0 bytes) means the file shrank.
        while a + done < b:
            got = os.preadv(fd, [mv[p + done : p + b - a]], a + done)
            if got <= 0:
                raise self._short(a, b, done)
            done += got

    def read_range_into(self, start: int, stop: int, buf: Any, pos: int = 0) -> None:
        """Read bytes ``[start, stop)`` into ``buf[pos:]`` (the hot path of point reads).

        :meth:`read_into` for one range, without its per-call list handling.
        ``buf`` is a writable byte buffer (a ``memoryview`` of format ``"B"`` is
        the cheapest); ``start`` and ``stop`` are ints.
        """
        fd = self._fd
        n = stop - start
        if (
            fd >= 0
            and type(buf) is memoryview
            and 0 <= start < stop <= self._size
            and (start < self._tail_start or not self._tail)
            and 0 <= pos
            and pos + n <= buf.nbytes
            and self._generation == _FORK_GENERATION
            and buf.ndim == 1
            and buf.format == "B"
        ):
            # An open local file, outside the tail, a plain byte buffer: one pread.
            got = os.preadv(fd, [buf[pos : pos + n]], start)
            if got != n:  # continue a partial read; end of file: the file shrank
                self._pread(fd, buf, start, stop, pos, max(got, 0))
            return
        size = self._size if self._size >= 0 else self.size
        if not 0 <= start <= stop <= size:
            self._check(start, stop)
        mv = buf if type(buf) is memoryview else memoryview(buf)
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
        n = stop - start
        if pos < 0 or pos + n > mv.nbytes:
            raise ValueError("buffer too small for the range")
        if n == 0:
            return
        tail = self._tail
        if tail and start >= self._tail_start:
            t0 = self._tail_start
            mv[pos : pos + n] = tail[start - t0 : stop - t0]
            return
        h = self._conn()
        if type(h) is int:
            self._pread(h, mv, start, stop, pos)
            return
        mv[pos : pos + n] = self._got(self._fetch_ranges([(start, stop)])[0], start, stop)

    def read_into(
        self,
        starts: Sequence[int],
        stops: Sequence[int],
        buf: np.ndarray,
        positions: Sequence[int] | None = None,
    ) -> None:
        """Read ranges into the uint8 array ``buf``.

        Range ``k`` lands at ``buf[positions[k]:]`` (default: back to back from
        0). Local files are read straight into ``buf`` (no intermediate copy);
        remote ranges are fetched with one batched request.
        """
        if isinstance(starts, np.ndarray):
            starts = starts.tolist()
        if isinstance(stops, np.ndarray):
            stops = stops.tolist()
        if positions is None:
            positions = []
            p = 0
            for a, b in zip(starts, stops, strict=True):
                positions.append(p)
                p += b - a
        size = self._size if self._size >= 0 else self.size
        end = 0
        last_a = 0
        for a, b, p in zip(starts, stops, positions, strict=True):
            if not 0 <= a <= b <= size:
                self._check(a, b)
            if p + b - a > end:
                end = p + b - a
            if a > last_a:
                last_a = a
        if end > buf.nbytes:
            raise ValueError("buffer too small for the ranges")
        mv = memoryview(buf)
        if mv.format != "B" or mv.ndim != 1:
            mv = mv.cast("B")
        tail = self._tail
        tail_start = self._tail_start if tail else size + 1
        h = self._conn()
        remote: list[tuple[int, int, int]] = []
        if type(h) is int and len(starts) >= _NATIVE_PREADS and _POSIX and last_a < tail_start:
            # Many ranges (scattered chunks): one native call, no Python per read.
            from .. import _native

            k, err = _native.pread_ranges(h, starts, stops, positions, mv)
            if k >= 0:
                if err:
                    raise OSError(err, os.strerror(err), self.name)
                raise self._short(starts[k], stops[k], 0)
            return
        if type(h) is int:
            # Ranges adjacent both in the file and in the buffer (a run split at
            # io_size_max) cost one system call.
            preadv = os.preadv
            run_a = run_b = run_p = 0
            for a, b, p in zip(starts, stops, positions, strict=True):
                if a >= tail_start:
                    mv[p : p + b - a] = tail[a - tail_start : b - tail_start]
                elif a == run_b and p == run_p + (run_b - run_a) and run_b > run_a:
                    run_b = b
                else:
                    if run_b > run_a:
                        n = run_b - run_a
                        got = preadv(h, [mv[run_p : run_p + n]], run_a)
                        if got != n:
                            self._pread(h, mv, run_a, run_b, run_p, max(got, 0))
                    run_a, run_b, run_p = a, b, p
            if run_b > run_a:
                self._pread(h, mv, run_a, run_b, run_p)
            return
        for a, b, p in zip(starts, stops, positions, strict=True):
            n = b - a
            if n == 0:
                continue
            if a >= tail_start:
                mv[p : p + n] = tail[a - tail_start : b - tail_start]
            else:
                remote.append((p, a, b))
        if remote:
            datas = self._fetch_ranges([(a, b) for _, a, b in remote])
            for (p, a, b), data in zip(remote, datas, strict=True):
                mv[p : p + b - a] = self._got(data, a, b)


def _close_fd(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _read_exact(f: Any, n: int) -> bytes:
    parts = []
    while n > 0:
        chunk = f.read(n)
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _reopen(spec: SourceSpec, tail_size: int) -> Source:
    return Source(spec, tail_size=tail_size, lazy=True)


# --------------------------------------------------------------------------- factory


def _is_url(s: str) -> bool:
    return "://" in s or "::" in s


def _local_path_of(fs: Any, path: str) -> str | None:
    try:
        from fsspec.implementations.local import LocalFileSystem
    except ImportError:  # pragma: no cover
        return None
    if isinstance(fs, LocalFileSystem):
        return fs._strip_protocol(path)
    return None


# LocalSpec per absolute path as given (specs are immutable): a reopen of the same
# path skips normalising it and building the spec (and its cache key) again.
_LOCAL_SPECS: dict[str, LocalSpec] = {}
_LOCAL_SPECS_MAX = 1024


def _local_spec(path: str) -> LocalSpec:
    spec = _LOCAL_SPECS.get(path)
    if spec is None:
        spec = LocalSpec(os.path.abspath(path))
        if os.path.isabs(path):  # a relative path depends on the working directory
            if len(_LOCAL_SPECS) >= _LOCAL_SPECS_MAX:
                _LOCAL_SPECS.clear()
            _LOCAL_SPECS[path] = spec
    return spec


def spec_for(source: Any, *, storage_options: dict | None = None) -> SourceSpec:
    """The :class:`SourceSpec` for anything :func:`open_source` accepts."""
    if type(source) is str and not storage_options:
        spec = _LOCAL_SPECS.get(source)
        if spec is not None:
            return spec
    if isinstance(source, SourceSpec):
        return source
    if isinstance(source, Source):
        return source.spec
    if storage_options and not (isinstance(source, str) and _is_url(source)):
        raise ValueError("storage_options are only accepted together with an fsspec URL")
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if isinstance(source, bytes) and not isinstance(source, (bytearray, memoryview)):
        return BytesSpec(bytes(source))
    if isinstance(source, (bytearray, memoryview)):
        return BytesSpec(bytes(source))
    if isinstance(source, str):
        if _is_url(source):
            if source.startswith("file://") and "::" not in source:
                return LocalSpec(source[len("file://") :])
            return UrlSpec(source, dict(storage_options or {}))
        return _local_spec(source)
    if isinstance(source, tuple) and len(source) == 2:
        fs, path = source
        if not hasattr(fs, "cat_file"):
            raise TypeError("a (fs, path) source needs an fsspec filesystem as first item")
        local = _local_path_of(fs, str(path))
        if local is not None:
            return LocalSpec(local)
        return FsspecSpec(fs, str(path))
    if hasattr(source, "read") and hasattr(source, "seek"):
        return FileObjSpec(source)
    raise TypeError(
        f"cannot read an OM file from {type(source).__name__}: expected a path, an fsspec "
        "URL, an (fs, path) tuple, bytes or a binary file-like object"
    )


def open_source(
    source: Any, *, storage_options: dict | None = None, tail_size: int | None = None
) -> Source:
    """Open ``source`` for reading byte ranges.

    Parameters
    ----------
    source
        A local path (str or PathLike), an fsspec URL (``s3://``, ``memory://``,
        ``https://``, chained ``simplecache::s3://``...), a tuple ``(fs, path)``
        with an fsspec filesystem, ``bytes``, a binary file-like object with
        ``seek``/``read``, an already opened :class:`Source` (returned as is) or
        a :class:`SourceSpec`.
    storage_options
        fsspec options, only together with a URL.
    tail_size
        How many bytes at the end of the file to fetch at open and serve
        metadata reads from (default 64 KiB, 16 KiB for local files; 0
        disables the tail buffer).
    """
    if isinstance(source, Source):
        return source
    return spec_for(source, storage_options=storage_options).open(tail_size=tail_size)
