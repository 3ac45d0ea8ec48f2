"""Zarr v3 adapters: a read-only store view of OM files, the OM chunk codec, chunk manifests.

``OmStore`` presents an OM file as a Zarr hierarchy; ``OmChunkCodec`` (registered
under the name ``"xarray_om.om"`` through the ``zarr.codecs`` entry point)
decodes its chunks; ``om_manifest`` / ``om_references`` / ``OmParser`` describe
the chunks as references into the file for VirtualiZarr-style workflows.
"""

from __future__ import annotations

from .codec import CODEC_NAME, OmChunkCodec
from .manifest import OmParser, chunk_manifest, om_manifest, om_references
from .store import OmStore, OmStoreReadOnlyError

__all__ = [
    "CODEC_NAME",
    "OmChunkCodec",
    "OmParser",
    "OmStore",
    "OmStoreReadOnlyError",
    "chunk_manifest",
    "om_manifest",
    "om_references",
]
