"""A read-only Zarr v3 store presenting one OM file as a Zarr hierarchy, without copying.

Keys
----
``zarr.json`` documents are generated from the OM record tree (groups, arrays,
their scalar children as attributes, dimension names) with the same naming
rules as the xarray backend (see :mod:`xarray_om.zarr.manifest`). The root
document carries the whole hierarchy as inline consolidated metadata, so
``xr.open_zarr`` / ``zarr.open_group`` need no request besides the one for
``zarr.json``.

A chunk key ``<array>/c/<i>/<j>/...`` holds exactly the bytes of OM chunk
``(i, j, ...)``, i.e. ``[LUT[k], LUT[k+1])`` of the file; the registered codec
(:class:`~xarray_om.zarr.codec.OmChunkCodec`) decodes them. Concurrent ``get``
calls made by zarr in the same event-loop turn are served together: their LUT
groups and byte ranges are fetched in one batched, coalesced request, like a
read through :class:`~xarray_om.format.reader.OmFile`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.core.buffer import Buffer, BufferPrototype, default_buffer_prototype

from ..errors import OmReadOnlyError
from ..format.reader import OmArray, OmFile
from ..format.source import BytesSpec, LocalSpec
from .manifest import ZarrView, build_view

__all__ = ["OmStore", "OmStoreReadOnlyError"]


class OmStoreReadOnlyError(OmReadOnlyError, ValueError):
    """A write through :class:`OmStore`.

    Also a ``ValueError`` with zarr's own read-only message, so code that
    handles zarr's read-only stores handles this one too.
    """


@dataclass
class _Pending:
    array: OmArray
    index: int
    future: asyncio.Future


class OmStore(Store):
    """Read-only ``zarr.abc.store.Store`` view of an OM file.

    Parameters
    ----------
    source
        Local path, fsspec URL (``s3://...``), ``(fs, path)`` tuple, binary
        file-like object, or an opened :class:`~xarray_om.format.reader.OmFile`.
    storage_options
        fsspec options for a URL.
    read_only
        Must be True (the default): the view cannot be written.
    io_size_max, io_size_merge
        Read planning for batched chunk reads (see :class:`OmFile`); the
        defaults of the file are used when not given.

    Examples
    --------
    >>> import xarray as xr, zarr  # doctest: +SKIP
    >>> ds = xr.open_zarr(OmStore("s3://bucket/era5.om", storage_options={"anon": True}))
    >>> grp = zarr.open_group(OmStore("era5.om"), mode="r")
    """

    supports_writes = False
    supports_deletes = False
    supports_listing = True

    def __init__(
        self,
        source: Any,
        *,
        storage_options: dict | None = None,
        read_only: bool = True,
        io_size_max: int | None = None,
        io_size_merge: int | None = None,
    ) -> None:
        if not read_only:
            raise OmReadOnlyError(
                "OmStore is a read-only view of an OM file (read_only=False is not possible)",
                source=getattr(source, "source_name", source),
            )
        super().__init__(read_only=True)
        if isinstance(source, OmFile):
            if storage_options:
                raise ValueError("storage_options cannot be combined with an opened OmFile")
            self._file = source
            self._owns_file = False
        else:
            kw: dict[str, Any] = {}
            if io_size_max is not None:
                kw["io_size_max"] = io_size_max
            if io_size_merge is not None:
                kw["io_size_merge"] = io_size_merge
            self._file = OmFile(source, storage_options=storage_options, **kw)
            self._owns_file = True
        self._io_size_max = int(io_size_max or self._file.io_size_max)
        self._io_size_merge = int(
            self._file.io_size_merge if io_size_merge is None else io_size_merge
        )
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._ident: tuple | None = None
        self._view: ZarrView | None = None
        self._view_lock = threading.Lock()
        self._pending: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        spec = self._file.spec
        # Local files and bytes are read on the event loop (a pread is cheaper than
        # a thread hop); remote sources block, so they are read in a worker thread.
        self._blocking_io = not isinstance(spec, (LocalSpec, BytesSpec))

    # -- identity, pickling

    @property
    def file(self) -> OmFile:
        """The :class:`~xarray_om.format.reader.OmFile` the store presents."""
        return self._file

    def _identity(self) -> tuple:
        ident = self._ident
        if ident is None:
            self._get_view()  # reopens a closed file
            f = self._file
            root = f.root
            ident = (f.source_name, f.size, f.version, root.record_offset, root.record_size)
            self._ident = ident
        return ident

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, OmStore):
            return NotImplemented
        return self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __getstate__(self) -> dict:
        return {
            "file": self._file,
            "io": (self._io_size_max, self._io_size_merge),
            "is_open": self._is_open,
        }

    def __setstate__(self, state: dict) -> None:
        self._file = state["file"]
        self._owns_file = True
        self._io_size_max, self._io_size_merge = state["io"]
        self._read_only = True
        self._is_open = state["is_open"]
        self._init_runtime()

    def __repr__(self) -> str:
        return f"OmStore({self._file.source_name!r})"

    def __str__(self) -> str:
        return f"om://{self._file.source_name}"

    def with_read_only(self, read_only: bool = False) -> OmStore:
        """A new store over the same file; only ``read_only=True`` is possible."""
        if not read_only:
            raise OmStoreReadOnlyError(
                "store was opened in read-only mode and does not support writing: an OM "
                "file cannot be written through OmStore",
                source=self._file.source_name,
            )
        store = OmStore(
            self._file, io_size_max=self._io_size_max, io_size_merge=self._io_size_merge
        )
        return store

    def close(self) -> None:
        """Close the store and, if the store opened it, the OM file.

        Like other zarr stores it reopens on next use.
        """
        super().close()
        if self._owns_file:
            with self._view_lock:
                self._file.close()
                self._view = None

    # -- the view

    def _get_view(self) -> ZarrView:
        view = self._view
        if view is None:
            with self._view_lock:
                view = self._view
                if view is None:
                    if self._file.closed and self._owns_file:
                        self._file = OmFile(
                            self._file.spec,
                            io_size_max=self._io_size_max,
                            io_size_merge=self._io_size_merge,
                        )
                    view = self._view = build_view(self._file)
        return view

    async def _view_async(self) -> ZarrView:
        if self._view is not None:
            return self._view
        if self._blocking_io:
            return await asyncio.to_thread(self._get_view)
        return self._get_view()

    @property
    def view(self) -> ZarrView:
        """The Zarr hierarchy: metadata documents and chunk-key mapping."""
        return self._get_view()

    # -- reading

    def _read_only_error(self) -> OmStoreReadOnlyError:
        return OmStoreReadOnlyError(
            "store was opened in read-only mode and does not support writing: OmStore is a "
            "read-only view of an OM file",
            source=self._file.source_name,
        )

    async def get(
        self,
        key: str,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        if prototype is None:
            prototype = default_buffer_prototype()
        _check_byte_range(byte_range)
        await self._ensure_open()
        view = await self._view_async()
        doc = view.docs.get(key)
        if doc is not None:
            return prototype.buffer.from_bytes(_slice(doc, byte_range))
        hit = view.chunk(key)
        if hit is None:
            return None
        arr, index = hit
        if byte_range is not None:
            data = await self._run_io(self._read_chunk_part, arr, index, byte_range)
            return prototype.buffer.from_bytes(data)
        return prototype.buffer.from_array_like(await self._batched_chunk(arr, index))

    def get_sync(
        self,
        key: str,
        *,
        prototype: BufferPrototype | None = None,
        byte_range: ByteRequest | None = None,
    ) -> Buffer | None:
        """Synchronous :meth:`get` (zarr's ``SupportsGetSync``)."""
        if prototype is None:
            prototype = default_buffer_prototype()
        _check_byte_range(byte_range)
        view = self._get_view()
        doc = view.docs.get(key)
        if doc is not None:
            return prototype.buffer.from_bytes(_slice(doc, byte_range))
        hit = view.chunk(key)
        if hit is None:
            return None
        if byte_range is not None:
            return prototype.buffer.from_bytes(self._read_chunk_part(*hit, byte_range))
        data = self._read_chunks([hit], return_exceptions=False)[0]
        return prototype.buffer.from_array_like(data)

    async def get_partial_values(
        self,
        prototype: BufferPrototype,
        key_ranges: Iterable[tuple[str, ByteRequest | None]],
    ) -> list[Buffer | None]:
        key_ranges = list(key_ranges)
        for _, br in key_ranges:
            _check_byte_range(br)
        await self._ensure_open()
        view = await self._view_async()
        out: list[Buffer | None] = [None] * len(key_ranges)
        whole: list[tuple[int, OmArray, int]] = []
        parts: list[tuple[int, OmArray, int, ByteRequest]] = []
        for i, (key, br) in enumerate(key_ranges):
            doc = view.docs.get(key)
            if doc is not None:
                out[i] = prototype.buffer.from_bytes(_slice(doc, br))
                continue
            hit = view.chunk(key)
            if hit is None:
                continue
            if br is None:
                whole.append((i, *hit))
            else:
                parts.append((i, *hit, br))
        if whole:
            datas = await self._run_io(
                self._read_chunks, [(a, k) for _, a, k in whole], return_exceptions=False
            )
            for (i, _, _), data in zip(whole, datas, strict=True):
                out[i] = prototype.buffer.from_array_like(data)
        for i, arr, index, br in parts:
            out[i] = prototype.buffer.from_bytes(
                await self._run_io(self._read_chunk_part, arr, index, br)
            )
        return out

    async def exists(self, key: str) -> bool:
        view = await self._view_async()
        return key in view.docs or view.chunk(key) is not None

    async def getsize(self, key: str) -> int:
        view = await self._view_async()
        doc = view.docs.get(key)
        if doc is not None:
            return len(doc)
        hit = view.chunk(key)
        if hit is None:
            raise FileNotFoundError(key)
        arr, index = hit
        starts, stops = await self._run_io(arr.chunk_ranges, [index])
        return int(stops[0] - starts[0])

    async def getsize_prefix(self, prefix: str) -> int:
        view = await self._view_async()
        total = sum(len(v) for k, v in view.docs.items() if k.startswith(prefix))
        for arr, _ in view.arrays_under(prefix):
            total += await self._run_io(lambda a=arr: a.nbytes_compressed)
        return total

    # -- writing: refused

    async def set(self, key: str, value: Buffer) -> None:
        raise self._read_only_error()

    async def set_if_not_exists(self, key: str, value: Buffer) -> None:
        raise self._read_only_error()

    async def _set_many(self, values: Iterable[tuple[str, Buffer]]) -> None:
        raise self._read_only_error()

    async def delete(self, key: str) -> None:
        raise self._read_only_error()

    async def delete_dir(self, prefix: str) -> None:
        raise self._read_only_error()

    async def clear(self) -> None:
        raise self._read_only_error()

    # -- listing

    async def list(self) -> AsyncIterator[str]:
        view = await self._view_async()
        for key in view.iter_keys(""):
            yield key

    async def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        view = await self._view_async()
        for key in view.iter_keys(prefix):
            yield key

    async def list_dir(self, prefix: str) -> AsyncIterator[str]:
        view = await self._view_async()
        for name in view.list_dir(prefix):
            yield name

    async def is_empty(self, prefix: str) -> bool:
        view = await self._view_async()
        if prefix != "" and not prefix.endswith("/"):
            prefix += "/"
        for _ in view.iter_keys(prefix):
            return False
        return True

    # -- I/O helpers

    async def _run_io(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self._blocking_io:
            return await asyncio.to_thread(fn, *args, **kwargs)
        return fn(*args, **kwargs)

    def _read_chunk_part(self, arr: OmArray, index: int, byte_range: ByteRequest) -> bytes:
        starts, stops = arr.chunk_ranges([index])
        a, b = int(starts[0]), int(stops[0])
        lo, hi = _resolve_range(b - a, byte_range)
        return self._file.source.read_range(a + lo, a + hi)

    def _read_chunks(
        self, items: list[tuple[OmArray, int]], *, return_exceptions: bool = True
    ) -> list[Any]:
        """Bytes (uint8 arrays) of whole chunks, fetched with as few requests as possible.

        With ``return_exceptions`` an error of one array (bad LUT...) becomes that
        array's results instead of failing the chunks of other arrays.
        """
        if len(items) == 1:
            # The common case of one dask task reading one chunk: no planning.
            arr, index = items[0]
            try:
                (a,), (b,) = arr.chunk_ranges([index])
                data = self._file.source.read_range(int(a), int(b))
            except Exception as exc:
                if not return_exceptions:
                    raise
                return [exc]
            return [np.frombuffer(data, np.uint8)]
        out: list[Any] = [None] * len(items)
        by_array: dict[int, tuple[OmArray, list[int]]] = {}
        for i, (arr, _) in enumerate(items):
            by_array.setdefault(id(arr), (arr, []))[1].append(i)
        starts_l, stops_l, owners = [], [], []
        for arr, idxs in by_array.values():
            try:
                s, e = arr.chunk_ranges([items[i][1] for i in idxs])
            except Exception as exc:
                if not return_exceptions:
                    raise
                for i in idxs:
                    out[i] = exc
                continue
            starts_l.append(s.astype(np.int64))
            stops_l.append(e.astype(np.int64))
            owners.append(np.asarray(idxs, np.int64))
        if not owners:
            return out
        starts = np.concatenate(starts_l)
        stops = np.concatenate(stops_l)
        owner = np.concatenate(owners)
        # One fetch per distinct chunk range (zarr may ask for a chunk twice), with
        # neighbouring ranges merged into one read.
        uniq, inverse = np.unique(np.stack([starts, stops], axis=1), axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        reads, where = _coalesce(uniq, self._io_size_merge, self._io_size_max)
        datas = self._file.source.read_ranges(reads)
        views = [memoryview(d) for d in datas]
        bufs = [np.frombuffer(views[r][lo:hi], np.uint8) for r, lo, hi in where]
        for j, i in enumerate(owner.tolist()):
            out[i] = bufs[int(inverse[j])]
        return out

    async def _batched_chunk(self, arr: OmArray, index: int) -> np.ndarray:
        """One chunk's bytes; requests made in the same event-loop turn share one fetch."""
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        batch = self._pending.get(loop)
        if batch is None:
            batch = self._pending[loop] = []
            # Two hops: every task that zarr started together reaches its get() first.
            loop.call_soon(loop.call_soon, self._dispatch, loop)
        batch.append(_Pending(arr, index, fut))
        return await fut

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        batch = self._pending.pop(loop, [])
        if batch:
            loop.create_task(self._serve(batch))

    async def _serve(self, batch: list[_Pending]) -> None:
        try:
            results = await self._run_io(self._read_chunks, [(p.array, p.index) for p in batch])
        except BaseException as exc:
            for p in batch:
                if not p.future.done():
                    p.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for p, r in zip(batch, results, strict=True):
            if p.future.done():
                continue
            if isinstance(r, BaseException):
                p.future.set_exception(r)
            else:
                p.future.set_result(r)


# --------------------------------------------------------------------------- byte ranges


def _coalesce(
    ranges: np.ndarray, merge: int, size_max: int
) -> tuple[list[tuple[int, int]], list[tuple[int, int, int]]]:
    """Merge sorted ``[start, stop)`` ranges into reads.

    A range joins the current read when the gap to it is at most ``merge``
    bytes and the read stays within ``size_max`` bytes (a read always takes its
    first range). Overlapping ranges (only in crafted files: two arrays sharing
    bytes) simply join the read that covers them. Returns the reads and, per
    range, ``(read number, start, stop)`` inside that read's bytes.
    """
    reads: list[tuple[int, int]] = []
    where: list[tuple[int, int, int]] = []
    cur_a = cur_b = -1
    for a, b in ranges.tolist():
        if reads and a - cur_b <= merge and max(b, cur_b) - cur_a <= size_max:
            cur_b = max(cur_b, b)
            reads[-1] = (cur_a, cur_b)
        else:
            cur_a, cur_b = a, b
            reads.append((a, b))
        where.append((len(reads) - 1, a - cur_a, b - cur_a))
    return reads, where


def _check_byte_range(byte_range: Any) -> None:
    if byte_range is not None and not isinstance(
        byte_range, (RangeByteRequest, OffsetByteRequest, SuffixByteRequest)
    ):
        raise TypeError(f"Unexpected byte_range, got {byte_range}")


def _resolve_range(size: int, byte_range: ByteRequest | None) -> tuple[int, int]:
    """``[lo, hi)`` of an object of ``size`` bytes, with zarr's clipping rules."""
    if byte_range is None:
        return 0, size
    if isinstance(byte_range, RangeByteRequest):
        lo = min(max(byte_range.start, 0), size)
        return lo, max(lo, min(byte_range.end, size))
    if isinstance(byte_range, OffsetByteRequest):
        return min(max(byte_range.offset, 0), size), size
    if isinstance(byte_range, SuffixByteRequest):
        return max(size - byte_range.suffix, 0), size
    raise TypeError(f"Unexpected byte_range, got {byte_range}")


def _slice(data: bytes, byte_range: ByteRequest | None) -> bytes:
    if byte_range is None:
        return data
    lo, hi = _resolve_range(len(data), byte_range)
    return data[lo:hi]
