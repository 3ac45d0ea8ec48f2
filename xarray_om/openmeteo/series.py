"""The lazy array xarray sees: pieces end to end along time."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from xarray.backends.common import BackendArray
from xarray.core import indexing

from .keys import compact, is_int, key_lens
from .pieces import Piece

#: Files read concurrently by one lazy (non-dask) read touching several files.
READ_THREADS = 8

_POOL: ThreadPoolExecutor | None = None
_POOL_PID = -1
_POOL_LOCK = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _POOL, _POOL_PID
    with _POOL_LOCK:
        # A pool inherited through fork has no threads in the child: make a new one.
        if _POOL is None or _POOL_PID != os.getpid():
            _POOL = ThreadPoolExecutor(READ_THREADS, thread_name_prefix="xarray_om.openmeteo")
            _POOL_PID = os.getpid()
        return _POOL


class SeriesArray(BackendArray):
    """A variable made of pieces along time (leading axis), read lazily.

    Piece ``k`` covers output times ``[bounds[k], bounds[k+1])`` and its own
    local indices from ``offsets[k]``; a None piece is all NaN. Indexing is
    OUTER: only pieces that the time key touches are opened and read.
    """

    def __init__(
        self,
        pieces: Sequence[Piece | None],
        lengths: Sequence[int],
        offsets: Sequence[int],
        spatial_shape: tuple[int, ...],
        dtype: np.dtype,
    ) -> None:
        self.pieces = list(pieces)
        self.bounds = np.concatenate([[0], np.cumsum(np.asarray(lengths, dtype=np.int64))])
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.spatial_shape = tuple(int(v) for v in spatial_shape)
        self.shape = (int(self.bounds[-1]), *self.spatial_shape)
        self.dtype = np.dtype(dtype)

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.OUTER, self._getitem
        )

    def _getitem(self, key: tuple) -> np.ndarray:
        kt, *ks = key
        drop = tuple(0 if is_int(k) else slice(None) for k in key)
        # Keep every axis while assembling; integer keys are dropped at the end.
        skey = tuple(np.array([int(k)]) if is_int(k) else k for k in ks)
        sizes = key_lens(skey, self.spatial_shape)
        tidx = np.atleast_1d(np.arange(self.shape[0], dtype=np.int64)[kt])
        out = np.full((tidx.size, *sizes), np.nan, self.dtype)
        if tidx.size and all(sizes):
            which = np.searchsorted(self.bounds, tidx, side="right") - 1
            # Split into runs of the same piece (tidx is monotonic in practice).
            cuts = np.flatnonzero(np.diff(which)) + 1
            jobs = []
            for pos in np.split(np.arange(tidx.size), cuts):
                k = int(which[pos[0]])
                piece = self.pieces[k]
                if piece is not None:
                    local = tidx[pos] - self.bounds[k] + self.offsets[k]
                    jobs.append((slice(int(pos[0]), int(pos[-1]) + 1), piece, compact(local)))

            def run(job: tuple) -> None:
                where, piece, local = job
                out[where] = piece.read(skey, local, self.spatial_shape)

            if len(jobs) > 1:
                # Files are independent: overlap their round trips (remote stores).
                for f in [_pool().submit(run, j) for j in jobs]:
                    f.result()
            else:
                for j in jobs:
                    run(j)
        return out[drop] if any(is_int(k) for k in key) else out
