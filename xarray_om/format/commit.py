"""Atomic output targets for the writer: bytes go to a temporary, commit publishes them.

A *sink* is an append-only byte stream with two endings: ``commit()`` makes the
complete file appear at the target in one step, ``discard()`` removes every
trace of it and leaves whatever was at the target before untouched.

* Local paths (also ``file://`` URLs and fsspec ``LocalFileSystem``): a
  temporary file in the target's directory (same filesystem, so the final
  ``os.replace`` is atomic), fsync'ed before the rename; the directory is
  fsync'ed after it.
* fsspec filesystems with deferred commit (s3fs, gcsfs, adlfs): the target is
  opened with ``autocommit=False``; nothing is visible until ``f.commit()``
  (s3fs: the multipart upload is completed only then, ``discard`` aborts it).
* Other fsspec filesystems: the bytes go to a hidden temporary key next to the
  target, which ``fs.mv`` moves into place on commit. This is weaker: ``mv``
  may be a copy plus delete, so a reader can briefly see a partial target on
  filesystems without atomic rename, and a crash can leave the temporary key
  behind (its name starts with ``.`` and ends with ``.om-tmp``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import tempfile
import threading
import uuid
import weakref
from typing import Any, BinaryIO

__all__ = ["DEFAULT_BUFFER_SIZE", "Sink", "open_sink"]

DEFAULT_BUFFER_SIZE = 8 * 2**20
# S3 multipart uploads need parts of at least 5 MiB (except the last).
_MIN_REMOTE_BLOCK = 5 * 2**20
# Filesystem classes whose files honour ``autocommit=False`` with commit()/discard().
_DEFERRED_COMMIT = {
    "s3fs.core.S3FileSystem",
    "gcsfs.core.GCSFileSystem",
    "adlfs.spec.AzureBlobFileSystem",
}
TEMP_SUFFIX = ".om-tmp"
_LOCAL_BUFFER = 2**20
# Local sinks start the disk writeback of every this many bytes as they are written,
# so that the fsync at commit waits for the tail only, not for the whole file.
_WRITEBACK_BYTES = 4 * 2**20


def _load_sync_file_range() -> Any:
    """libc's ``sync_file_range`` (Linux), or None where it is unavailable."""
    if not sys.platform.startswith("linux") or ctypes.sizeof(ctypes.c_void_p) != 8:
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):  # pragma: no cover - non-glibc / static builds
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _load_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2  # start writeback of dirty pages; do not wait


class Sink:
    """Append-only output with atomic publication.

    Subclasses open ``_file`` (where the bytes go), register ``_finalizer``
    (removes every trace of the output; also runs at garbage collection) and
    implement ``_commit``; this base class keeps the position and makes the
    endings idempotent.
    """

    name: str
    _file: Any
    _finalizer: weakref.finalize

    def __init__(self, name: str) -> None:
        self.name = name
        self.position = 0
        self.state = "open"  # -> "committed" | "discarded"

    def write(self, data: Any) -> None:
        """Append ``data`` (any bytes-like object)."""
        if self.state != "open":
            raise ValueError(f"{self.name}: output is already {self.state}")
        n = memoryview(data).nbytes
        if n:
            self._raw_write(data)
            self.position += n

    def commit(self) -> None:
        """Publish the bytes written so far as the complete target file."""
        if self.state != "open":
            raise ValueError(f"{self.name}: output is already {self.state}")
        try:
            self._commit()
        except BaseException:
            self.discard()
            raise
        self.state = "committed"

    def discard(self) -> None:
        """Drop the output; the target keeps its previous content (or stays absent)."""
        if self.state != "open":
            return
        self.state = "discarded"
        self._discard()

    def _raw_write(self, data: Any) -> None:
        self._file.write(data)

    def _commit(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _discard(self) -> None:
        self._finalizer()


_umask_lock = threading.Lock()


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    with _umask_lock:  # the only portable way to read it is to set it
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def _cleanup_file(fileobj: BinaryIO, path: str) -> None:
    # Runs when a sink is garbage-collected without commit/discard.
    with contextlib.suppress(OSError, ValueError):
        fileobj.close()
    with contextlib.suppress(OSError):
        os.unlink(path)


class LocalSink(Sink):
    """Temporary file in the target's directory, renamed over the target on commit."""

    def __init__(self, path: str, *, overwrite: bool, buffer_size: int) -> None:
        path = os.path.abspath(os.fspath(path))
        super().__init__(path)
        self.path = path
        self.overwrite = overwrite
        directory, base = os.path.split(path)
        if os.path.isdir(path):
            raise IsADirectoryError(f"{path}: target is a directory")
        if not overwrite and os.path.lexists(path):
            raise FileExistsError(f"{path}: file exists and overwrite=False")
        fd, self.temp_path = tempfile.mkstemp(prefix=f".{base}.", suffix=TEMP_SUFFIX, dir=directory)
        try:
            # mkstemp creates 0600; give the result the permissions open() would.
            os.fchmod(fd, 0o666 & ~_umask())
            # Large chunk runs bypass the buffer; it only gathers small records.
            self._file = os.fdopen(fd, "wb", buffering=min(buffer_size, _LOCAL_BUFFER))
        except BaseException:
            os.close(fd)
            os.unlink(self.temp_path)
            raise
        self._finalizer = weakref.finalize(self, _cleanup_file, self._file, self.temp_path)
        self._writeback_from = 0  # bytes before this offset have had their writeback started

    def _raw_write(self, data: Any) -> None:
        self._file.write(data)
        end = self.position + memoryview(data).nbytes  # position is updated after this call
        if _sync_file_range is not None and end - self._writeback_from >= _WRITEBACK_BYTES:
            self._start_writeback()

    def _start_writeback(self) -> None:
        # Only an optimisation (fsync at commit is what guarantees durability): the
        # kernel writes these pages out while encoding goes on. Bytes still in the
        # Python buffer are left for the next call.
        fd = self._file.fileno()
        end = os.lseek(fd, 0, os.SEEK_CUR)
        if end > self._writeback_from:
            _sync_file_range(
                fd, self._writeback_from, end - self._writeback_from, _SYNC_FILE_RANGE_WRITE
            )
            self._writeback_from = end

    def _commit(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        if self.overwrite:
            os.replace(self.temp_path, self.path)
        else:
            self._publish_no_clobber()
        self._finalizer.detach()
        with contextlib.suppress(OSError):  # durability of the rename; not fatal if unsupported
            dfd = os.open(os.path.dirname(self.path), os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def _publish_no_clobber(self) -> None:
        # link() fails if the target appeared meanwhile: atomic "create if absent".
        try:
            os.link(self.temp_path, self.path)
        except FileExistsError:
            raise FileExistsError(f"{self.path}: file exists and overwrite=False") from None
        except OSError:  # filesystem without hard links: check, then rename
            if os.path.lexists(self.path):
                raise FileExistsError(f"{self.path}: file exists and overwrite=False") from None
            os.replace(self.temp_path, self.path)
            return
        os.unlink(self.temp_path)


def _qualname(fs: Any) -> str:
    cls = type(fs)
    return f"{cls.__module__}.{cls.__qualname__}"


def _url(fs: Any, path: str) -> str:
    # Names the output in error messages.
    proto = fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol
    return f"{proto}://{path}"


def _abort_remote(f: Any) -> None:
    with contextlib.suppress(Exception):
        f.discard()  # s3fs: aborts the multipart upload
    # close() would flush the buffer and start a new upload that nobody commits:
    # mark the file closed instead.
    try:
        f.closed = True
    except Exception:
        with contextlib.suppress(Exception):
            f.close()


class DeferredSink(Sink):
    """fsspec file opened with ``autocommit=False``: invisible until ``commit()``."""

    def __init__(self, fs: Any, path: str, *, overwrite: bool, buffer_size: int) -> None:
        super().__init__(_url(fs, path))
        self.fs = fs
        self.path = path
        if not overwrite and fs.exists(path):
            raise FileExistsError(f"{self.name}: file exists and overwrite=False")
        self._file = fs.open(
            path, "wb", autocommit=False, block_size=max(buffer_size, _MIN_REMOTE_BLOCK)
        )
        if getattr(self._file, "autocommit", True) is not False:  # pragma: no cover - defensive
            self._file.close()
            raise RuntimeError(f"{self.name}: filesystem ignored autocommit=False")
        self._finalizer = weakref.finalize(self, _abort_remote, self._file)

    def _commit(self) -> None:
        self._file.close()  # uploads the last part; still invisible
        self._file.commit()
        self._finalizer.detach()


def _rm_quiet(fs: Any, path: str) -> None:
    with contextlib.suppress(Exception):
        fs.rm(path)


class MoveSink(Sink):
    """fsspec filesystem without deferred commit: temporary key, ``fs.mv`` on commit."""

    def __init__(self, fs: Any, path: str, *, overwrite: bool, buffer_size: int) -> None:
        super().__init__(_url(fs, path))
        self.fs = fs
        self.path = path
        self.overwrite = overwrite
        if not overwrite and fs.exists(path):
            raise FileExistsError(f"{self.name}: file exists and overwrite=False")
        parent, _, base = path.rpartition("/")
        tmp_base = f".{base}.{uuid.uuid4().hex[:12]}{TEMP_SUFFIX}"
        self.temp_path = f"{parent}/{tmp_base}" if parent else tmp_base
        self._file = fs.open(self.temp_path, "wb", block_size=max(buffer_size, _MIN_REMOTE_BLOCK))
        self._finalizer = weakref.finalize(self, MoveSink._cleanup, self._file, fs, self.temp_path)

    @staticmethod
    def _cleanup(f: Any, fs: Any, temp_path: str) -> None:
        with contextlib.suppress(Exception):
            f.close()
        _rm_quiet(fs, temp_path)

    def _commit(self) -> None:
        self._file.close()
        if not self.overwrite and self.fs.exists(self.path):
            raise FileExistsError(f"{self.name}: file exists and overwrite=False")
        self.fs.mv(self.temp_path, self.path)
        self._finalizer.detach()


def _is_local(fs: Any) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def open_sink(
    target: Any,
    *,
    storage_options: dict | None = None,
    overwrite: bool = True,
    buffer_size: int = DEFAULT_BUFFER_SIZE,
) -> Sink:
    """Open an atomic output for ``target``.

    Parameters
    ----------
    target
        Local path (str or PathLike), fsspec URL (``s3://...``, ``memory://...``,
        ``file://...``) or a tuple ``(fs, path)`` with an fsspec filesystem.
    storage_options
        Passed to fsspec when ``target`` is a URL.
    overwrite
        If False, raise ``FileExistsError`` now when the target exists (and,
        for local files, refuse to replace one that appears before commit).
    buffer_size
        Write buffer in bytes (local) or upload block size (remote, at least 5 MiB).
    """
    if isinstance(target, tuple):
        if len(target) != 2:
            raise TypeError("target tuple must be (fsspec filesystem, path)")
        fs, path = target
        path = fs._strip_protocol(path)
    elif isinstance(target, (str, os.PathLike)):
        text = os.fspath(target)
        if isinstance(text, bytes):
            text = os.fsdecode(text)
        if "://" not in text:
            return LocalSink(text, overwrite=overwrite, buffer_size=buffer_size)
        import fsspec.core

        fs, path = fsspec.core.url_to_fs(text, **(storage_options or {}))
    else:
        raise TypeError(
            f"unsupported target {type(target).__name__}: use a path, an fsspec URL or (fs, path)"
        )
    if _is_local(fs):
        return LocalSink(path, overwrite=overwrite, buffer_size=buffer_size)
    if _qualname(fs) in _DEFERRED_COMMIT:
        return DeferredSink(fs, path, overwrite=overwrite, buffer_size=buffer_size)
    return MoveSink(fs, path, overwrite=overwrite, buffer_size=buffer_size)
