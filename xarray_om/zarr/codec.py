"""The Zarr v3 codec ``"xarray_om.om"``: one OM chunk's bytes -> its values, in native code.

Design: how the codec learns the clipped extent of edge chunks
--------------------------------------------------------------
OM stores an edge chunk with only its clipped extent (container spec 4.3), and
the filters run over that clipped extent (4.5), so decoding needs the chunk's
*position*. zarr-python hands plain codecs only the chunk spec (full chunk
shape), never the coordinates. This codec therefore:

1. knows the **array shape**: zarr calls ``evolve_from_array_spec`` with the
   array's metadata when it opens the array; the shape is kept on the instance
   but is *not* part of the JSON configuration. The configuration holds only
   what identifies the encoding (compression, scale_factor, add_offset), so the
   same codec JSON is valid for every file of a variable and VirtualiZarr can
   concatenate many OM files (it requires identical codecs); after a concat the
   shape comes from the combined array, which is exactly what decides whether a
   chunk is on an upper edge.
2. implements zarr's **partial-decode** interface (the one ``sharding_indexed``
   uses): zarr then gives the codec the chunk's ``ByteGetter`` instead of its
   bytes. The getter's path is the chunk key (``.../c/2/0/7`` or ``...c.2.0.7``)
   whatever store is used (:class:`~xarray_om.zarr.store.OmStore`, VirtualiZarr's
   ``ManifestStore``, an fsspec reference filesystem...), so the codec reads the
   chunk coordinates from it, computes the clipped extent, fetches the bytes and
   returns the selected part of the chunk.
3. when zarr calls the plain ``decode`` path (another codec pipeline
   implementation, or a bytes-to-bytes codec appended by a user), it has no
   coordinates: it tries each possible extent (full or clipped per dimension)
   and accepts the one whose decoding consumes exactly the chunk's bytes
   (container spec 5.2 makes that true of the right extent). If more than one
   extent qualifies the codec raises instead of guessing. The result is padded
   to the full chunk shape with the fill value.

The bytes a chunk key holds are exactly the OM chunk's bytes ``[LUT[i], LUT[i+1])``,
so a virtual reference ``(path, offset, length)`` and the store view agree.
Values are fully decoded here (PFor, 2-D filter, scale_factor/add_offset,
NaN sentinels), so the arrays carry no CF scale attributes.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.abc.codec import ArrayBytesCodec, ArrayBytesCodecPartialDecodeMixin
from zarr.core.common import parse_named_configuration
from zarr.registry import register_codec

from .. import _native
from ..errors import OmCodecError, OmFormatError, OmReadOnlyError
from ..format.records import COMPRESSION_IDS, array_type_for, valid_pair

if TYPE_CHECKING:
    from typing import Self

    from zarr.abc.store import ByteGetter
    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer
    from zarr.core.chunk_grids import ChunkGrid
    from zarr.core.indexing import SelectorTuple

__all__ = ["CODEC_NAME", "OmChunkCodec", "chunk_coords_from_key"]

#: The codec's name in ``zarr.json`` and in the ``zarr.codecs`` entry point.
CODEC_NAME = "xarray_om.om"

# Chunks with at most this many values are decoded on the event loop: a thread
# hop costs more than decoding them. Larger ones go to a worker thread (the
# native decoder releases the GIL, so chunks decode in parallel).
_INLINE_MAX_VALUES = 1 << 14

_DIGITS = re.compile(r"^(?:0|[1-9][0-9]*)$")


def chunk_coords_from_key(key: str, ndim: int) -> tuple[int, ...] | None:
    """Chunk grid coordinates encoded at the end of a chunk key, or None.

    Understands zarr's ``default`` encoding with either separator (``a/c/1/2``,
    ``a/c.1.2``) and the ``v2`` encoding (``a/1.2``, ``a/1/2``).
    """
    if ndim < 1:
        return None
    last = key.rsplit("/", 1)[-1]
    if "." in last:
        parts = last.split(".")
        if parts[0] == "c":
            parts = parts[1:]
    else:
        parts = key.split("/")
    if len(parts) < ndim:
        return None
    parts = parts[len(parts) - ndim :]
    if not all(_DIGITS.match(p) for p in parts):
        return None
    return tuple(int(p) for p in parts)


def _clipped_extent(
    coords: tuple[int, ...], shape: tuple[int, ...], chunks: tuple[int, ...]
) -> tuple[int, ...] | None:
    out = []
    for k, n, c in zip(coords, shape, chunks, strict=True):
        start = k * c
        if start >= n:
            return None
        out.append(min(c, n - start))
    return tuple(out)


@dataclass(frozen=True)
class OmChunkCodec(ArrayBytesCodecPartialDecodeMixin, ArrayBytesCodec):
    """Decode one OM chunk (the full OM chain) to values.

    Parameters
    ----------
    compression
        OM compression name: ``"pfor_delta_2d_int16"``, ``"fpx_xor_2d"``,
        ``"pfor_delta_2d"`` or ``"pfor_delta_2d_int16_logarithmic"``.
    scale_factor, add_offset
        The OM array's scale and offset (applied by the codec; the values the
        array returns are the decoded physical values).

    Notes
    -----
    JSON form in ``zarr.json``::

        {"name": "xarray_om.om",
         "configuration": {"compression": "pfor_delta_2d_int16",
                           "scale_factor": 20.0, "add_offset": 0.0}}

    The codec is read-only: encoding raises
    :class:`~xarray_om.errors.OmReadOnlyError`.
    """

    is_fixed_size = False

    compression: str
    scale_factor: float = 1.0
    add_offset: float = 0.0
    # Array shape, filled in by zarr through ``evolve_from_array_spec``; not part
    # of the configuration (see the module docstring).
    array_shape: tuple[int, ...] | None = field(default=None, compare=False, repr=False)

    def __init__(
        self,
        *,
        compression: str,
        scale_factor: float = 1.0,
        add_offset: float = 0.0,
        array_shape: tuple[int, ...] | None = None,
    ) -> None:
        if compression not in COMPRESSION_IDS:
            raise ValueError(
                f"unknown OM compression {compression!r}; expected one of {sorted(COMPRESSION_IDS)}"
            )
        scale_factor = float(scale_factor)
        add_offset = float(add_offset)
        if not (np.isfinite(scale_factor) and np.isfinite(add_offset)):
            raise ValueError("scale_factor and add_offset must be finite numbers")
        object.__setattr__(self, "compression", compression)
        object.__setattr__(self, "scale_factor", scale_factor)
        object.__setattr__(self, "add_offset", add_offset)
        object.__setattr__(
            self, "array_shape", None if array_shape is None else tuple(int(s) for s in array_shape)
        )

    # -- metadata

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        _, config = parse_named_configuration(data, CODEC_NAME)
        unknown = set(config) - {"compression", "scale_factor", "add_offset"}
        if unknown:
            raise ValueError(f"unknown {CODEC_NAME} codec configuration keys: {sorted(unknown)}")
        return cls(**config)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": CODEC_NAME,
            "configuration": {
                "compression": self.compression,
                "scale_factor": self.scale_factor,
                "add_offset": self.add_offset,
            },
        }

    def evolve_from_array_spec(self, array_spec: ArraySpec) -> Self:
        return replace(self, array_shape=tuple(array_spec.shape))

    def validate(self, *, shape: tuple[int, ...], dtype: Any, chunk_grid: ChunkGrid) -> None:
        from zarr.core.chunk_grids import RegularChunkGrid

        np_dtype = dtype.to_native_dtype()
        try:
            data_type = array_type_for(np_dtype)
        except KeyError:
            raise ValueError(f"the {CODEC_NAME} codec cannot hold {np_dtype} arrays") from None
        if not valid_pair(data_type, COMPRESSION_IDS[self.compression]):
            raise ValueError(f"OM compression {self.compression} is not valid for {np_dtype}")
        if not isinstance(chunk_grid, RegularChunkGrid):
            raise ValueError(f"the {CODEC_NAME} codec needs a regular chunk grid")
        if len(shape) == 0:
            raise ValueError(f"the {CODEC_NAME} codec needs at least one dimension")

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError  # variable-size output

    # -- decoding

    def _decode_values(
        self, data: Any, extent: tuple[int, ...], dtype: np.dtype, where: object
    ) -> np.ndarray:
        n = math.prod(extent)
        nbytes = memoryview(data).nbytes
        values, used = _native.decode_chunk(
            data,
            dtype,
            COMPRESSION_IDS[self.compression],
            n,
            extent[-1],
            self.scale_factor,
            self.add_offset,
            source=where,
        )
        if used != nbytes:
            raise OmFormatError(
                f"chunk of extent {extent} decoded from {used} of its {nbytes} bytes", source=where
            )
        return values.reshape(extent)

    def _extent_for(self, key: str | None, chunk_shape: tuple[int, ...]) -> tuple[int, ...] | None:
        shape = self.array_shape
        if key is None or shape is None or len(shape) != len(chunk_shape):
            return None
        coords = chunk_coords_from_key(key, len(shape))
        if coords is None:
            return None
        extent = _clipped_extent(coords, shape, chunk_shape)
        if extent is None:
            raise OmFormatError(
                f"chunk key lies outside the chunk grid of an array of shape {shape} "
                f"with chunks {chunk_shape}",
                source=key,
            )
        return extent

    def _candidate_extents(self, chunk_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
        shape = self.array_shape
        if shape is None or len(shape) != len(chunk_shape):
            return [chunk_shape]
        options = []
        for n, c in zip(shape, chunk_shape, strict=True):
            rem = n % c
            if n < c:
                options.append((n,))
            elif rem:
                options.append((c, rem))
            else:
                options.append((c,))
        return list(itertools.product(*options))

    def _decode_unknown_position(self, data: Any, chunk_spec: ArraySpec) -> np.ndarray:
        """Decode without the chunk's coordinates (see the module docstring, point 3)."""
        dtype = chunk_spec.dtype.to_native_dtype()
        chunk_shape = tuple(chunk_spec.shape)
        candidates = self._candidate_extents(chunk_shape)
        if len(candidates) == 1:
            extent_values = self._decode_values(data, candidates[0], dtype, CODEC_NAME)
        else:
            found = []
            for extent in candidates:
                try:
                    found.append(self._decode_values(data, extent, dtype, CODEC_NAME))
                except OmFormatError:
                    continue
            if len(found) != 1:
                raise OmCodecError(
                    f"cannot tell which chunk these {memoryview(data).nbytes} bytes belong to: "
                    f"{len(found)} of the possible edge-chunk extents {candidates} decode them "
                    "exactly. Read through zarr's partial-decode path (the default "
                    "BatchedCodecPipeline without extra codecs), which passes the chunk key.",
                    source=CODEC_NAME,
                )
            extent_values = found[0]
        if extent_values.shape == chunk_shape:
            return extent_values
        out = np.full(chunk_shape, chunk_spec.fill_value, dtype=dtype)
        out[tuple(slice(0, s) for s in extent_values.shape)] = extent_values
        return out

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        data = chunk_bytes.as_numpy_array()
        if data.size > _INLINE_MAX_VALUES:
            values = await asyncio.to_thread(self._decode_unknown_position, data, chunk_spec)
        else:
            values = self._decode_unknown_position(data, chunk_spec)
        return chunk_spec.prototype.nd_buffer.from_numpy_array(values)

    def _decode_selection(
        self,
        data: np.ndarray,
        extent: tuple[int, ...],
        selection: SelectorTuple,
        chunk_spec: ArraySpec,
        where: object,
    ) -> np.ndarray:
        values = self._decode_values(data, extent, chunk_spec.dtype.to_native_dtype(), where)
        return values[selection]

    async def _decode_partial_single(
        self, byte_getter: ByteGetter, selection: SelectorTuple, chunk_spec: ArraySpec
    ) -> NDBuffer | None:
        key = getattr(byte_getter, "path", None)
        chunk_shape = tuple(chunk_spec.shape)
        extent = self._extent_for(key, chunk_shape)
        chunk_bytes = await byte_getter.get(prototype=chunk_spec.prototype)
        if chunk_bytes is None:
            return None
        data = chunk_bytes.as_numpy_array()
        if extent is None:
            values = self._decode_unknown_position(data, chunk_spec)[selection]
        else:
            where = byte_getter  # formatted only if an error names it
            if math.prod(extent) > _INLINE_MAX_VALUES:
                values = await asyncio.to_thread(
                    self._decode_selection, data, extent, selection, chunk_spec, where
                )
            else:
                values = self._decode_selection(data, extent, selection, chunk_spec, where)
        return chunk_spec.prototype.nd_buffer.from_numpy_array(np.asarray(values))

    async def decode_partial(
        self, batch_info: Iterable[tuple[ByteGetter, SelectorTuple, ArraySpec]]
    ) -> Iterable[NDBuffer | None]:
        # zarr's default wraps every chunk in its own task under a semaphore; the
        # batch is usually one chunk, so run it directly (the store batches
        # concurrent fetches across zarr's tasks anyway).
        batch = list(batch_info)
        if len(batch) == 1:
            return [await self._decode_partial_single(*batch[0])]
        return await asyncio.gather(*(self._decode_partial_single(*b) for b in batch))

    # -- encoding: not supported

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        raise OmReadOnlyError(
            f"the {CODEC_NAME} codec only decodes. To copy data read from an OM file into "
            "a Zarr store, drop the OM codec from the encoding first (e.g. "
            "`for v in ds.variables.values(): v.encoding.clear()` before `ds.to_zarr(...)`); "
            "to write OM files use ds.om.to_om(...) or xarray_om.OmWriter"
        )


register_codec(CODEC_NAME, OmChunkCodec)
