"""Legacy (v1/v2) data/ files: the grid flattened to ``[ny * nx * (members), time]``.

Locations run over ``(y, x[, member])`` in C order. The files do not store
the grid size: it comes from a v3 file of the model, ``grid=`` or the
``crs_wkt`` BBOX (:func:`grid_shape`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import grids
from ..errors import OmFormatError
from ..format.reader import OmArray, OmFile
from .keys import as_index, compact, key_len


def is_legacy(f: OmFile) -> bool:
    return f.version != 3


def flat_shape(spatial: tuple[int, ...], ntime: int) -> tuple[int, int]:
    """Shape of a legacy file holding ``spatial`` (y, x[, member]) and ``ntime`` steps."""
    return math.prod(spatial), ntime


def read(arr: OmArray, skey: tuple, tkey: Any, spatial: tuple[int, ...], ntime: int) -> np.ndarray:
    """Block ``(t, y, x[, member])`` of a legacy array, ``skey`` indexing ``spatial``."""
    idx = [as_index(k, n) for k, n in zip(skey, spatial, strict=True)]
    sizes = [i.size for i in idx]
    nt = key_len(tkey, ntime)
    if 0 in sizes or nt == 0:
        return np.empty((nt, *sizes), arr.dtype)
    loc = np.ravel_multi_index(np.ix_(*idx), spatial).reshape(-1)
    block = arr.read((compact(loc), tkey))
    return np.moveaxis(block.reshape(*sizes, nt), -1, 0)


def members(nloc: int, ny: int, nx: int, source: str) -> int | None:
    """Members in a file of ``nloc`` locations on an (ny, nx) grid (None: one, no axis)."""
    if nloc % (ny * nx):
        raise OmFormatError(
            f"legacy file with {nloc} locations: not a multiple of the grid {ny} x {nx}",
            source=source,
        )
    return nloc // (ny * nx) if nloc != ny * nx else None


def preferred_space(arr: OmArray, ny: int, nx: int) -> tuple[int, int]:
    """Block sizes along (y, x) covering whole OM chunks of a legacy array.

    Legacy chunks are runs of flattened locations: whole rows keep blocks
    aligned, and ``c0 / gcd(nx, c0)`` rows hold a whole number of chunks.
    """
    c0 = int(arr.chunks[0])
    rows = max(1, c0 // math.gcd(nx, c0))
    return min(rows, ny), nx


def grid_shape(crs_wkt: Any, nloc: int, model: str) -> tuple[int, int]:
    """(ny, nx) of ``nloc`` locations from the BBOX of ``crs_wkt`` (the last resort)."""
    shape = grids.infer_regular_shape(crs_wkt, nloc)
    if shape is None:
        raise ValueError(
            f"cannot tell the grid size of the legacy files of {model!r} ({nloc} "
            "locations): no v3 file to copy it from and crs_wkt does not fix it; "
            "pass grid=(ny, nx)"
        )
    return shape
