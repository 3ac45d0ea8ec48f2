"""Where the files of a bucket live and how they are opened.

:class:`Store` wraps the fsspec filesystem and root (listing, JSON sidecars,
opening OM files); :class:`LazyFile` is an OM file of the store opened on
first use; :class:`OpenFiles` keeps the lazy files of one
:func:`~xarray_om.open_openmeteo` call so that they close together.
"""

from __future__ import annotations

import json
import os
import posixpath
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..format.reader import OmFile


@dataclass
class Store:
    """The filesystem and root path of a bucket (``label``: the root as given, for messages)."""

    fs: Any
    root: str
    label: str

    @classmethod
    def create(cls, root: Any, storage_options: Mapping | None, filesystem: Any) -> Store:
        import fsspec

        label = os.fspath(root) if isinstance(root, os.PathLike) else str(root)
        if filesystem is not None:
            fs = filesystem
            path = label
            if "://" in path:
                path = fs._strip_protocol(path) if hasattr(fs, "_strip_protocol") else path
        else:
            if "://" not in label and "::" not in label:
                label = os.path.abspath(os.path.expanduser(label))
            fs, path = fsspec.core.url_to_fs(label, **dict(storage_options or {}))
        return cls(fs, str(path).rstrip("/"), label.rstrip("/"))

    def path(self, *parts: str) -> str:
        return posixpath.join(self.root, *parts) if self.root else posixpath.join(*parts)

    def url(self, path: str) -> str:
        """Human-readable location of ``path`` for messages."""
        rel = path[len(self.root) :].lstrip("/") if path.startswith(self.root) else path
        return f"{self.label}/{rel}"

    def listdir(self, path: str) -> list[str] | None:
        """Base names in a folder; None when it does not exist or cannot be listed.

        Plain HTTP mirrors cannot list folders; callers then derive file
        names from ``meta.json`` instead.
        """
        try:
            entries = self.fs.ls(path, detail=False)
        except (FileNotFoundError, NotImplementedError):
            # Missing, or a filesystem that cannot list (HTTP without index pages).
            # Anything else (permissions, network) is a real error and propagates.
            return None
        names = [posixpath.basename(str(e).rstrip("/")) for e in entries]
        names = [n for n in names if n]
        if not names and not self._isdir(path):
            return None
        return sorted(set(names))

    def _isdir(self, path: str) -> bool:
        try:
            return bool(self.fs.isdir(path))
        except (FileNotFoundError, NotImplementedError):
            return False

    def read_json(self, path: str) -> dict | None:
        """Parsed JSON object, None when the file is missing."""
        try:
            raw = self.fs.cat_file(path)
        except FileNotFoundError:
            return None
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"{self.url(path)}: not valid JSON ({exc})") from None
        if not isinstance(value, dict):
            raise ValueError(f"{self.url(path)}: expected a JSON object")
        return value

    def open(self, path: str) -> OmFile:
        return OmFile((self.fs, path))


class LazyFile:
    """An OM file of a store, opened on first use (thread-safe) and picklable.

    With ``missing_ok`` a file that does not exist reads as absent (None)
    instead of raising: paths derived from ``meta.json`` on unlistable
    stores may not have been written yet.
    """

    def __init__(self, store: Store, path: str, *, missing_ok: bool = False) -> None:
        self.store = store
        self.path = path
        self.missing_ok = missing_ok
        self._file: OmFile | None = None
        self._lock = threading.Lock()
        self._closed = False
        self._missing = False

    @property
    def name(self) -> str:
        return self.store.url(self.path)

    def get(self) -> OmFile:
        f = self._file
        if f is None:
            with self._lock:
                f = self._file
                if f is None:
                    if self._closed:
                        raise ValueError(f"{self.name}: the dataset was closed")
                    f = self._file = self.store.open(self.path)
        return f

    def get_or_none(self) -> OmFile | None:
        """The file, or None when it does not exist and ``missing_ok`` is set."""
        if self._missing:
            return None
        try:
            return self.get()
        except FileNotFoundError:
            if not self.missing_ok:
                raise
            self._missing = True
            return None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            f, self._file = self._file, None
        if f is not None:
            f.close()

    def __getstate__(self) -> dict:
        # A copy (dask worker, pickle) reopens the file on its own first read.
        state = {k: v for k, v in self.__dict__.items() if k not in ("_lock", "_file")}
        state.update(_file=None, _closed=False)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()


#: Derived paths (unlistable stores) tried to find one existing file to probe.
GUESS_PROBES = 8


class OpenFiles:
    """The lazy files of one open: one :class:`LazyFile` per path, closed together."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._files: dict[str, LazyFile] = {}

    def get(self, path: str, *, missing_ok: bool = False) -> LazyFile:
        """The lazy file of ``path`` (the first call for a path sets ``missing_ok``)."""
        lazy = self._files.get(path)
        if lazy is None:
            lazy = self._files[path] = LazyFile(self.store, path, missing_ok=missing_ok)
        return lazy

    def probe(self, paths: Sequence[str], *, listed: bool) -> LazyFile | None:
        """The first existing file of ``paths``, opened; None when none exists.

        Listed paths exist, so only the first is tried. Derived ones may not
        have been written yet: up to :data:`GUESS_PROBES` are tried.
        """
        for path in paths[: 1 if listed else GUESS_PROBES]:
            lazy = self.get(path, missing_ok=not listed)
            if lazy.get_or_none() is not None:
                return lazy
        return None

    def close(self) -> None:
        for lazy in self._files.values():
            lazy.close()
