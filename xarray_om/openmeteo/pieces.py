"""Pieces: the part of a variable one file (or one file per member) holds along time.

Every piece reads blocks ``(t, y, x[, member])`` for a spatial key and a key
on its own local time axis; :class:`~.series.SeriesArray` puts pieces end to
end. Files are opened on the first read (:class:`~.store.LazyFile`); a file
that does not exist (derived names on unlistable stores) reads as NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .. import conventions as conv
from ..errors import OmFormatError
from ..format.reader import OmArray
from . import legacy
from .keys import as_index, key_len, key_lens
from .store import LazyFile


class Piece:
    """Part of a variable along time."""

    def read(self, skey: tuple, tkey: Any, sshape: tuple[int, ...]) -> np.ndarray:
        """Block ``(t, *spatial)`` for ``skey`` on ``sshape`` and local times ``tkey``."""
        raise NotImplementedError


class TimeLastFile(Piece):
    """The root array of a data/ or data_run/ file: v3 ``[ny, nx, (nm,) T]`` or legacy.

    ``expect`` is the spatial shape ``(ny, nx[, nm])`` and ``ntime`` the
    time length every such file of the variable must have; a file that
    disagrees raises OmFormatError on its first read.
    """

    def __init__(self, lazy: LazyFile, expect: tuple[int, ...], ntime: int) -> None:
        self.lazy = lazy
        self.expect = tuple(int(v) for v in expect)
        self.ntime = int(ntime)
        self._checked: OmArray | None = None

    def array(self) -> OmArray | None:
        """The checked root array, None when the file does not exist."""
        if self._checked is not None:
            return self._checked
        f = self.lazy.get_or_none()
        if f is None:
            return None
        node = f.root
        if node.kind != "array":
            raise OmFormatError(
                f"expected an array at the root, found a {node.kind}", source=self.lazy.name
            )
        shape = tuple(node.shape)
        if legacy.is_legacy(f):
            flat = legacy.flat_shape(self.expect, self.ntime)
            if shape != flat:
                raise OmFormatError(
                    f"legacy array of shape {shape}; expected {flat} (grid "
                    f"{self.expect} flattened, {self.ntime} time steps) like the other files",
                    source=self.lazy.name,
                )
        elif shape != (*self.expect, self.ntime):
            raise OmFormatError(
                f"array of shape {shape}; expected {(*self.expect, self.ntime)} like the "
                "other files of this variable",
                source=self.lazy.name,
            )
        self._checked = node  # type: ignore[assignment]
        return node  # type: ignore[return-value]

    def read(self, skey: tuple, tkey: Any, sshape: tuple[int, ...]) -> np.ndarray:
        arr = self.array()
        if arr is None:
            sizes = key_lens(skey, self.expect)
            return np.full((key_len(tkey, self.ntime), *sizes), np.nan, np.float32)
        if arr.ndim == len(self.expect) + 1:
            return np.moveaxis(arr.read((*skey, tkey)), -1, 0)
        return legacy.read(arr, skey, tkey, self.expect, self.ntime)


class SpatialFile(Piece):
    """One data_spatial file: 2-D ``[ny, nx]`` arrays, one valid time.

    ``names`` has one array name, or one per member (``members``). Arrays
    missing from the file (e.g. sums at step 0) read as NaN.
    """

    def __init__(
        self,
        lazy: LazyFile,
        names: Sequence[str],
        ny: int,
        nx: int,
        valid_time: int,
        members: bool,
        dtype: np.dtype,
    ) -> None:
        self.lazy = lazy
        self.names = list(names)
        self.ny, self.nx = int(ny), int(nx)
        self.valid_time = int(valid_time)
        self.members = members
        self.dtype = dtype
        self._arrays: list[OmArray | None] | None = None

    def _resolve(self) -> list[OmArray | None]:
        if self._arrays is not None:
            return self._arrays
        f = self.lazy.get_or_none()
        if f is None:
            self._arrays = [None] * len(self.names)
            return self._arrays
        root = f.root
        vt = root.attrs.get(conv.VALID_TIME) if root.kind == "group" else None
        if vt is not None and int(vt) != self.valid_time:
            raise OmFormatError(
                f"valid_time {int(vt)} in the file, but its name says {self.valid_time}",
                source=self.lazy.name,
            )
        by_name = {c.name: c for c in root.children if c.kind == "array"}
        arrays = []
        for n in self.names:
            node = by_name.get(n)
            if node is not None and tuple(node.shape) != (self.ny, self.nx):
                raise OmFormatError(
                    f"array {n!r} has shape {tuple(node.shape)}, expected {(self.ny, self.nx)}",
                    source=self.lazy.name,
                )
            arrays.append(node)
        self._arrays = arrays  # type: ignore[assignment]
        return self._arrays  # type: ignore[return-value]

    def read(self, skey: tuple, tkey: Any, sshape: tuple[int, ...]) -> np.ndarray:
        nt = key_len(tkey, 1)
        ky, kx = skey[0], skey[1]
        shape2 = (key_len(ky, self.ny), key_len(kx, self.nx))
        arrays = self._resolve()
        if self.members:
            sel = as_index(skey[2], len(self.names))
            out = np.full((nt, *shape2, sel.size), np.nan, self.dtype)
            if nt:
                for j, m in enumerate(sel):
                    a = arrays[int(m)]
                    if a is not None:
                        out[0, :, :, j] = a.read((ky, kx))
            return out
        out = np.full((nt, *shape2), np.nan, self.dtype)
        if nt and arrays[0] is not None:
            out[0] = arrays[0].read((ky, kx))
        return out


class MemberStack(Piece):
    """Members stored in separate files (``<var>_memberNN``) stacked on the last axis."""

    def __init__(self, members: Sequence[Piece | None], dtype: np.dtype) -> None:
        self.members = list(members)
        self.dtype = dtype

    def read(self, skey: tuple, tkey: Any, sshape: tuple[int, ...]) -> np.ndarray:
        sel = as_index(skey[-1], len(self.members))
        inner = skey[:-1]
        # tkey is a bounded local key (slice with a stop, or indices): any large n fits.
        nt = key_len(tkey, 1 << 62)
        out = np.full((nt, *key_lens(inner, sshape[:-1]), sel.size), np.nan, self.dtype)
        for j, m in enumerate(sel):
            piece = self.members[int(m)]
            if piece is not None:
                out[..., j] = piece.read(inner, tkey, sshape[:-1])
        return out


class Window(Piece):
    """A piece read from local time ``start`` on (member files whose runs start elsewhere)."""

    def __init__(self, piece: Piece, start: int) -> None:
        self.piece = piece
        self.start = int(start)

    def read(self, skey: tuple, tkey: Any, sshape: tuple[int, ...]) -> np.ndarray:
        if isinstance(tkey, slice):
            tkey = slice(tkey.start + self.start, tkey.stop + self.start, tkey.step)
        else:
            tkey = np.asarray(tkey) + self.start
        return self.piece.read(skey, tkey, sshape)
