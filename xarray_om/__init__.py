"""xarray-om: Open-Meteo OM files for xarray, dask and zarr.

Public API
----------
OmFile
    Read an OM file (v3 or legacy v1/v2) from a path, fsspec URL or file-like object.
OmWriter
    Stream arrays, scalars and groups into a new OM v3 file, atomically.
OmBackendEntrypoint
    The xarray backend (``engine="om"`` or the unambiguous alias ``engine="xarray_om"``).
OmStore
    A read-only Zarr v3 store presenting an OM file without copying data.
"""

from __future__ import annotations

import importlib

from . import accessor  # noqa: F401  (registers the ds.om / da.om accessors with xarray)
from .errors import (
    OmCodecError,
    OmConventionError,
    OmEncodingError,
    OmError,
    OmFormatError,
    OmReadOnlyError,
)

__version__ = "0.1.0"

# Heavy or optional layers load on first use so that ``import xarray_om`` stays cheap
# and works without zarr installed.
_LAZY = {
    "OmFile": ".format.reader",
    "OmArray": ".format.reader",
    "OmGroup": ".format.reader",
    "OmScalar": ".format.reader",
    "OmWriter": ".format.writer",
    "OmClampWarning": ".format.writer",
    "NodeRef": ".format.writer",
    "ArrayStream": ".format.writer",
    "OmBackendEntrypoint": ".backend",
    "EngineNameClashWarning": ".backend",
    "OmStore": ".zarr.store",
    "OmChunkCodec": ".zarr.codec",
    "OmParser": ".zarr.manifest",
    "om_manifest": ".zarr.manifest",
    "om_references": ".zarr.manifest",
    "open_openmeteo": ".openmeteo",
}

__all__ = [
    "OmCodecError",
    "OmConventionError",
    "OmEncodingError",
    "OmError",
    "OmFormatError",
    "OmReadOnlyError",
    *_LAZY,
]


def __getattr__(name: str):
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name], __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
