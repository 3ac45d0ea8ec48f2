"""Exception hierarchy of xarray-om.

Every error raised because of a file's bytes names the file (``source``) and
what is wrong, so that a failure on a cluster worker can be traced back to
one object in a bucket.
"""

from __future__ import annotations

__all__ = [
    "OmCodecError",
    "OmConventionError",
    "OmEncodingError",
    "OmError",
    "OmFormatError",
    "OmReadOnlyError",
]


class OmError(Exception):
    """Base class of every exception raised by xarray-om."""

    def __init__(self, message: str, *, source: object = None) -> None:
        self.source = source
        self.reason = message
        super().__init__(f"{source}: {message}" if source is not None else message)


class OmFormatError(OmError, ValueError):
    """The file is not a valid OM file: bad magic, trailer, record, LUT or geometry."""


class OmCodecError(OmFormatError):
    """The compressed bytes of a chunk (or LUT group) cannot be decoded."""


class OmConventionError(OmError, ValueError):
    """The file's arrays contradict each other as a dataset or tree: one dimension name
    with two lengths (from ``coordinates`` strings or ``_ARRAY_DIMENSIONS``), or groups
    that do not align as a DataTree."""


class OmEncodingError(OmError, ValueError):
    """Invalid request when writing: unsupported dtype/compression, bad chunks, attribute type."""


class OmReadOnlyError(OmError, PermissionError):
    """A write was attempted on a read-only view of an OM file."""
