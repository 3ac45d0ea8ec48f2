"""Byte layouts of the OM container: trailer, v3 records, legacy header.

Pure functions between ``bytes`` and small immutable objects (container spec
sections 2, 3 and 9). No I/O happens here; callers fetch the bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ..errors import OmFormatError

__all__ = [
    "ARRAY_DTYPES",
    "COMPRESSION_IDS",
    "COMPRESSION_NAMES",
    "LEGACY_HEADER_SIZE",
    "MAX_DIMS",
    "SCALAR_DTYPES",
    "TRAILER_SIZE",
    "LegacyHeader",
    "Record",
    "array_type_for",
    "encode_array_record",
    "encode_scalar_record",
    "encode_trailer",
    "parse_legacy_header",
    "parse_record",
    "parse_trailer",
    "scalar_type_for",
    "uses_scale",
    "valid_pair",
]

TRAILER_SIZE = 24
LEGACY_HEADER_SIZE = 40
MAGIC = b"OM"
HEADER_V3 = b"OM\x03"
# The format sets no limit; a cap keeps crafted records from asking for absurd work.
MAX_DIMS = 32

DT_NONE = 0
DT_STRING = 11

SCALAR_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<i1"),
    2: np.dtype("<u1"),
    3: np.dtype("<i2"),
    4: np.dtype("<u2"),
    5: np.dtype("<i4"),
    6: np.dtype("<u4"),
    7: np.dtype("<i8"),
    8: np.dtype("<u8"),
    9: np.dtype("<f4"),
    10: np.dtype("<f8"),
}
ARRAY_DTYPES: dict[int, np.dtype] = {k + 11: v for k, v in SCALAR_DTYPES.items()}
_ARRAY_TYPE_OF: dict[np.dtype, int] = {v.newbyteorder("="): k for k, v in ARRAY_DTYPES.items()}

COMPRESSION_NAMES: dict[int, str] = {
    0: "pfor_delta_2d_int16",
    1: "fpx_xor_2d",
    2: "pfor_delta_2d",
    3: "pfor_delta_2d_int16_logarithmic",
}
COMPRESSION_IDS: dict[str, int] = {v: k for k, v in COMPRESSION_NAMES.items()}
COMPRESSION_NONE = 4


def valid_pair(data_type: int, compression: int) -> bool:
    """Whether an array of ``data_type`` may use ``compression`` (codec spec table 1)."""
    if data_type not in ARRAY_DTYPES:
        return False
    if compression == 2:
        return True
    if compression in (0, 3):
        return data_type == 20
    if compression == 1:
        return data_type in (20, 21)
    return False


def uses_scale(dtype: np.dtype, compression: int) -> bool:
    """Whether ``scale_factor`` / ``add_offset`` take part in an array's encoding.

    Parameters
    ----------
    dtype
        The array's numpy dtype.
    compression
        Compression id (:data:`COMPRESSION_IDS`).

    Returns
    -------
    bool
        True for the lossy float compressions (codec spec 2): fpx and integer
        arrays never look at the scale or offset.
    """
    return np.dtype(dtype).kind == "f" and compression != COMPRESSION_IDS["fpx_xor_2d"]


def array_type_for(dtype: np.dtype) -> int:
    """Record data type id of a numpy dtype (raises ``KeyError`` if unsupported)."""
    return _ARRAY_TYPE_OF[np.dtype(dtype).newbyteorder("=")]


class Record(NamedTuple):
    """One decoded record: a group, a scalar or an array descriptor.

    Immutable (shared by every file whose bytes parse to it); a named tuple
    because building one sits on the path of every first open.
    """

    offset: int
    size: int
    data_type: int
    compression: int
    name: str
    children: tuple[tuple[int, int], ...]  # (offset, size) of each child, in order
    value: object = None  # scalar value: numpy scalar or str; None for groups/arrays
    lut_size: int = 0
    lut_offset: int = 0
    scale_factor: float = 1.0
    add_offset: float = 0.0
    dims: tuple[int, ...] = ()
    chunks: tuple[int, ...] = ()

    @property
    def kind(self) -> str:
        if self.data_type in ARRAY_DTYPES:
            return "array"
        if self.data_type == DT_NONE:
            return "group"
        return "scalar"

    @property
    def dtype(self) -> np.dtype | None:
        if self.data_type in ARRAY_DTYPES:
            return ARRAY_DTYPES[self.data_type].newbyteorder("=")
        if self.data_type in SCALAR_DTYPES:
            return SCALAR_DTYPES[self.data_type].newbyteorder("=")
        return None


def _decode_name(raw: bytes) -> str:
    # The reference bindings fall back to "" on invalid UTF-8.
    try:
        return str(raw, "utf-8")
    except UnicodeDecodeError:
        return ""


# Fixed part of an array record (container spec 3.5): type, compression, name
# length, child count, LUT size and offset, dimension count, scale, offset.
_ARRAY_HEAD = struct.Struct("<BBHIQQQff")
_PREFIX = struct.Struct("<BBHI")
# "<nQ" unpackers for small counts (dimensions, few children): struct beats numpy there.
_U64_STRUCTS: dict[int, struct.Struct] = {}
_U64_STRUCT_MAX = 2 * MAX_DIMS


def _u64s(buf: bytes, count: int, start: int) -> tuple[int, ...]:
    """``count`` little-endian u64 values at ``buf[start:]`` as a tuple of ints."""
    if count > _U64_STRUCT_MAX:
        return tuple(np.frombuffer(buf, "<u8", count, start).tolist())
    st = _U64_STRUCTS.get(count)
    if st is None:
        st = _U64_STRUCTS[count] = struct.Struct(f"<{count}Q")
    return st.unpack_from(buf, start)


def _children(
    buf: bytes,
    start: int,
    count: int,
    file_size: int | None,
    bad: Callable[[str], OmFormatError],
) -> tuple[tuple[int, int], ...]:
    """``(offset, size)`` of each child, checked to lie inside the file when its size is known."""
    if count == 0:
        return ()
    sizes = _u64s(buf, count, start)
    offsets = _u64s(buf, count, start + 8 * count)
    children = tuple(zip(offsets, sizes, strict=True))
    if file_size is not None:
        for off, sz in children:
            if off > file_size or sz > file_size - off:
                raise bad(f"child record [{off}, +{sz}) lies outside the file")
    return children


def parse_record(
    buf: bytes, offset: int, source: object = None, file_size: int | None = None
) -> Record:
    """Decode the record whose ``len(buf)`` bytes were read at ``offset``.

    Applies the reference's checks (container spec 3.8) and the recommended
    stricter ones: overflow-safe sizes, known data types, valid array
    compression, geometry (4.1), offsets inside the file.
    """
    size = len(buf)

    def bad(msg: str) -> OmFormatError:
        return OmFormatError(f"record at offset {offset} (size {size}): {msg}", source=source)

    if size < 8:
        raise bad("record is shorter than its 8-byte prefix")
    data_type = buf[0]
    if data_type > 21:
        raise bad(f"unknown data type {data_type}")
    if data_type in ARRAY_DTYPES:
        return _parse_array_record(buf, offset, file_size, bad)
    return _parse_scalar_record(buf, offset, file_size, bad)


def _parse_array_record(
    buf: bytes, offset: int, file_size: int | None, bad: Callable[[str], OmFormatError]
) -> Record:
    size = len(buf)
    if size < 40:
        raise bad("array record is shorter than 40 bytes")
    (
        data_type,
        compression,
        name_len,
        child_count,
        lut_size,
        lut_offset,
        dim_count,
        scale_factor,
        add_offset,
    ) = _ARRAY_HEAD.unpack_from(buf, 0)
    if dim_count == 0:
        raise bad("array has zero dimensions")
    if dim_count > MAX_DIMS:
        raise bad(f"array has {dim_count} dimensions (limit {MAX_DIMS})")
    need = 40 + 16 * child_count + 16 * dim_count + name_len
    if need > size:
        raise bad(f"array record needs {need} bytes")
    if compression not in COMPRESSION_NAMES:
        raise bad(f"invalid compression {compression} for an array")
    if not valid_pair(data_type, compression):
        raise bad(
            f"compression {COMPRESSION_NAMES[compression]} is not valid for "
            f"{ARRAY_DTYPES[data_type]} arrays"
        )
    p = 40 + 16 * child_count
    geometry = _u64s(buf, 2 * dim_count, p)
    dims = geometry[:dim_count]
    chunks = geometry[dim_count:]
    n_chunks = 1
    for i in range(dim_count):
        d = dims[i]
        c = chunks[i]
        if d < 1:
            raise bad(f"dimension {i} has length {d}")
        if not 1 <= c <= d:
            raise bad(f"chunk length {c} of dimension {i} is outside 1..{d}")
        n_chunks *= -(-d // c)
    if n_chunks >= 2**62:
        raise bad("chunk count overflows 64 bits")
    if file_size is not None and (lut_offset > file_size or lut_size > file_size - lut_offset):
        raise bad(f"look-up table [{lut_offset}, +{lut_size}) lies outside the file")
    q = p + 16 * dim_count
    name = _decode_name(buf[q : q + name_len]) if name_len else ""
    return Record(
        offset,
        size,
        data_type,
        compression,
        name,
        _children(buf, 40, child_count, file_size, bad) if child_count else (),
        None,
        lut_size,
        lut_offset,
        scale_factor,
        add_offset,
        dims,
        chunks,
    )


def _parse_scalar_record(
    buf: bytes, offset: int, file_size: int | None, bad: Callable[[str], OmFormatError]
) -> Record:
    size = len(buf)
    data_type, compression, name_len, child_count = _PREFIX.unpack_from(buf, 0)
    if data_type == 22:
        raise bad("string arrays (type 22) are not part of the format")
    p = 8 + 16 * child_count
    if data_type == DT_STRING:
        if p + 8 > size:
            raise bad("string record too short for its length field")
        (slen,) = struct.unpack_from("<Q", buf, p)
        value_size = 8 + slen
    elif data_type == DT_NONE:
        value_size = 0
    else:
        value_size = SCALAR_DTYPES[data_type].itemsize
    need = p + value_size + name_len
    if need > size:
        raise bad(f"record needs {need} bytes")
    if data_type == DT_STRING:
        value: object = bytes(buf[p + 8 : p + value_size]).decode("utf-8", errors="replace")
    elif data_type == DT_NONE:
        value = None
    else:
        value = np.frombuffer(buf, SCALAR_DTYPES[data_type], 1, p)[0].astype(
            SCALAR_DTYPES[data_type].newbyteorder("=")
        )
    name = _decode_name(bytes(buf[p + value_size : p + value_size + name_len]))
    return Record(
        offset=offset,
        size=size,
        data_type=data_type,
        compression=compression,
        name=name,
        children=_children(buf, 8, child_count, file_size, bad),
        value=value,
    )


def _pack_children(children: list[tuple[int, int]] | tuple[tuple[int, int], ...]) -> bytes:
    sizes = np.array([s for _, s in children], dtype="<u8")
    offsets = np.array([o for o, _ in children], dtype="<u8")
    return sizes.tobytes() + offsets.tobytes()


def _encode_name(name: str) -> bytes:
    raw = name.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError(f"name is longer than 65535 bytes: {name[:40]!r}...")
    return raw


def scalar_type_for(value: object) -> tuple[int, bytes]:
    """Data type id and value bytes of a scalar to write.

    ``str`` -> string; ``bool`` -> uint8; Python ``int``/``float`` -> float64 as
    the reference writer does (container spec 11.4); numpy scalars keep their
    type. ``None`` -> a group-like record with no value.
    """
    if value is None:
        return DT_NONE, b""
    if isinstance(value, str):
        raw = value.encode("utf-8")
        return DT_STRING, struct.pack("<Q", len(raw)) + raw
    if isinstance(value, (bool, np.bool_)):
        return 2, struct.pack("<B", int(value))
    if isinstance(value, np.generic):
        dt = value.dtype.newbyteorder("=")
        for k, v in SCALAR_DTYPES.items():
            if v.newbyteorder("=") == dt:
                return k, np.asarray(value, dtype=v).tobytes()
        raise TypeError(f"unsupported scalar type {value.dtype}")
    if isinstance(value, (int, float)):
        return 10, struct.pack("<d", float(value))
    raise TypeError(f"unsupported scalar type {type(value).__name__}")


def encode_scalar_record(
    name: str, value: object, children: list[tuple[int, int]] | tuple = ()
) -> bytes:
    """Bytes of a scalar record (``value=None`` gives a group record)."""
    data_type, value_bytes = scalar_type_for(value)
    raw_name = _encode_name(name)
    prefix = struct.pack("<BBHI", data_type, COMPRESSION_NONE, len(raw_name), len(children))
    return prefix + _pack_children(children) + value_bytes + raw_name


def encode_array_record(
    name: str,
    data_type: int,
    compression: int,
    lut_size: int,
    lut_offset: int,
    scale_factor: float,
    add_offset: float,
    dims: tuple[int, ...] | list[int],
    chunks: tuple[int, ...] | list[int],
    children: list[tuple[int, int]] | tuple = (),
) -> bytes:
    """Bytes of an array record (container spec 3.5)."""
    raw_name = _encode_name(name)
    head = struct.pack(
        "<BBHIQQQff",
        data_type,
        compression,
        len(raw_name),
        len(children),
        lut_size,
        lut_offset,
        len(dims),
        scale_factor,
        add_offset,
    )
    geometry = np.array(list(dims) + list(chunks), dtype="<u8").tobytes()
    return head + _pack_children(children) + geometry + raw_name


def encode_trailer(root_offset: int, root_size: int) -> bytes:
    """The 24-byte v3 trailer: magic, reserved, root offset then size."""
    return HEADER_V3 + bytes(5) + struct.pack("<QQ", root_offset, root_size)


def parse_trailer(buf: bytes) -> tuple[int, int] | None:
    """(root_offset, root_size) if ``buf`` (the last 24 bytes) is a v3 trailer, else None."""
    if len(buf) != TRAILER_SIZE or bytes(buf[:3]) != HEADER_V3:
        return None
    return struct.unpack_from("<QQ", buf, 8)


@dataclass(frozen=True, slots=True)
class LegacyHeader:
    """Header of a legacy v1/v2 file: one 2-D float32 array."""

    version: int
    compression: int
    scale_factor: float
    dims: tuple[int, int]
    chunks: tuple[int, int]

    @property
    def n_chunks(self) -> int:
        return -(-self.dims[0] // self.chunks[0]) * -(-self.dims[1] // self.chunks[1])


def parse_legacy_header(buf: bytes, source: object = None) -> LegacyHeader | None:
    """Decode the 40-byte legacy header; None if the magic/version do not match."""
    if len(buf) < LEGACY_HEADER_SIZE or bytes(buf[:2]) != MAGIC or buf[2] not in (1, 2):
        return None
    version, compression = buf[2], buf[3]
    (sf,) = struct.unpack_from("<f", buf, 4)
    d0, d1, c0, c1 = struct.unpack_from("<QQQQ", buf, 8)
    if version == 1:
        compression = 0  # v1 writers stored a wrong byte here; it is always int16
    if compression not in COMPRESSION_NAMES or not valid_pair(20, compression):
        raise OmFormatError(f"legacy header has invalid compression {compression}", source=source)
    for i, (d, c) in enumerate(((d0, c0), (d1, c1))):
        if d < 1:
            raise OmFormatError(f"legacy header: dimension {i} has length {d}", source=source)
        if not 1 <= c <= d:
            raise OmFormatError(
                f"legacy header: chunk length {c} of dimension {i} is outside 1..{d}",
                source=source,
            )
    return LegacyHeader(version, compression, float(sf), (d0, d1), (c0, c1))
