"""Reference chunk and LUT bytes, cut out of files written by ``omfiles``.

``omfiles`` (the reference implementation) is used here only as an oracle.
With the default "tail" metadata placement a file is
``"OM\\x03" | chunks | LUT | records | trailer``, so a single-chunk array's
chunk occupies ``[3, lut_offset)`` and the LUT ``[lut_offset, +lut_size)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import omfiles

from xarray_om.format.records import Record, parse_record, parse_trailer

COMPRESSION = {
    0: "pfor_delta_2d_int16",
    1: "fpx_xor_2d",
    2: "pfor_delta_2d",
    3: "pfor_delta_2d_int16_logarithmic",
}

# Every (numpy dtype, compression id) pair the format accepts (codec spec table 1).
VALID_PAIRS: list[tuple[str, int]] = [
    ("float32", 0),
    ("float32", 3),
    ("float32", 2),
    ("float64", 2),
    ("float32", 1),
    ("float64", 1),
    *[(t, 2) for t in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")],
]


@dataclass(frozen=True)
class RefFile:
    """A file written by the reference, with its array record."""

    data: bytes
    record: Record

    @property
    def lut(self) -> bytes:
        r = self.record
        return self.data[r.lut_offset : r.lut_offset + r.lut_size]

    @property
    def chunk_data(self) -> bytes:
        """All chunks of the (only) array: from the header to the LUT."""
        return self.data[3 : self.record.lut_offset]


def read_om(path: Path | str) -> RefFile:
    """Parse a v3 file whose root is an array."""
    data = Path(path).read_bytes()
    root = parse_trailer(data[-24:])
    assert root is not None, f"{path} is not a v3 OM file"
    offset, size = root
    return RefFile(data, parse_record(data[offset : offset + size], offset))


def write_ref(
    path: Path,
    array: np.ndarray,
    compression: int,
    scale_factor: float = 1.0,
    add_offset: float = 0.0,
    chunks: tuple[int, ...] | None = None,
) -> RefFile:
    """Write ``array`` with the reference writer (one chunk unless ``chunks``)."""
    writer = omfiles.OmFileWriter(str(path))
    var = writer.write_array(
        np.ascontiguousarray(array),
        chunks=list(array.shape if chunks is None else chunks),
        scale_factor=scale_factor,
        add_offset=add_offset,
        compression=COMPRESSION[compression],
    )
    writer.close(var)
    return read_om(path)


def ref_chunk(
    path: Path,
    array: np.ndarray,
    compression: int,
    scale_factor: float = 1.0,
    add_offset: float = 0.0,
) -> bytes:
    """The reference's bytes for ``array`` as one chunk."""
    return write_ref(path, array, compression, scale_factor, add_offset).chunk_data
