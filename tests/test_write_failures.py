"""Writes that fail half-way never leave a truncated file behind.

Failures injected: a full disk (a real 1 MiB tmpfs when this process may mount
one, ``RLIMIT_FSIZE`` in a subprocess, and an fsspec filesystem whose writes
fail with ENOSPC after N bytes), an iterator of blocks that raises or yields
an invalid block, an S3 upload aborted by the writer, and the S3 server killed
in the middle of a multipart upload (a private SeaweedFS server, restarted
afterwards to inspect the bucket). In every case: the exception is clear (the
original error, or an OSError naming the cause), the previous file at the
target (or its absence) is untouched, and no temporary file, key or pending
multipart upload is left behind where the storage is reachable.

A killed *distributed worker* is covered by
tests/test_accessor_distributed.py::test_killed_worker_leaves_target_untouched.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from xarray_om.errors import OmError
from xarray_om.format.reader import OmFile
from xarray_om.format.writer import OmWriter

ROWS, COLS, CHUNK_ROWS = 512, 512, 16


def _data(seed: int = 0) -> np.ndarray:
    # Random float32 does not compress: the file is about as big as the array (1 MiB).
    return np.random.default_rng(seed).normal(size=(ROWS, COLS)).astype(np.float32)


def _write_old(target, **kw) -> np.ndarray:
    old = np.arange(64, dtype=np.int32).reshape(8, 8)
    with OmWriter(target, **kw) as w:
        w.close(w.write_array(old, chunks=(4, 4), name="old"))
    return old


def _blocks(data: np.ndarray, fail_at: int | None = None, bad_at: int | None = None):
    for i, start in enumerate(range(0, data.shape[0], 4 * CHUNK_ROWS)):
        if i == fail_at:
            raise _SourceFailed(f"source failed at block {i}")
        block = data[start : start + 4 * CHUNK_ROWS]
        yield block[:, :-1] if i == bad_at else block


class _SourceFailed(Exception):
    pass


def _write_stream(target, data, *, fail_at=None, bad_at=None, **kw) -> None:
    with OmWriter(target, **kw) as w:
        ref = w.write_array_streaming(
            _blocks(data, fail_at, bad_at),
            shape=data.shape,
            dtype=data.dtype,
            chunks=(CHUNK_ROWS, COLS),
            name="new",
        )
        w.close(ref)


def _assert_old(target, old: np.ndarray, **kw) -> None:
    with OmFile(target, **kw) as f:
        np.testing.assert_array_equal(f.root[...], old)
        assert f.root.name == "old"


# ----------------------------------------------------------------------------- local disk full


@pytest.fixture
def tiny_tmpfs(tmp_path: Path):
    """A 1 MiB tmpfs, if this process may mount one (root in a container usually can)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if sys.platform != "linux" or os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root on Linux; disk full is covered by the others")
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()}); covered by the others")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_tmpfs(tiny_tmpfs: Path) -> None:
    target = tiny_tmpfs / "out.om"
    old = _write_old(target)
    used_before = _used(tiny_tmpfs)
    with pytest.raises(OSError) as info:
        _write_stream(target, _data())
    assert info.value.errno == errno.ENOSPC, info.value
    _assert_old(target, old)
    assert sorted(p.name for p in tiny_tmpfs.iterdir()) == ["out.om"]
    assert _used(tiny_tmpfs) == used_before  # the partial temporary's space is freed


def test_disk_full_tmpfs_accessor(tiny_tmpfs: Path) -> None:
    """``to_om`` with parallel encoding onto a full disk: same guarantees."""
    import xarray as xr

    import xarray_om.accessor  # noqa: F401 - registers Dataset.om

    target = tiny_tmpfs / "ds.om"
    old = _write_old(target)
    ds = xr.Dataset({"v": (("y", "x"), _data(1))}).chunk({"y": 64})
    with pytest.raises(OSError) as info:
        ds.om.to_om(target, num_workers=2, block_bytes=64 * 1024)
    assert info.value.errno == errno.ENOSPC, info.value
    _assert_old(target, old)
    assert sorted(p.name for p in tiny_tmpfs.iterdir()) == ["ds.om"]


def _used(mnt: Path) -> int:
    st = os.statvfs(mnt)
    return (st.f_blocks - st.f_bfree) * st.f_frsize


FSIZE_SCRIPT = textwrap.dedent(
    """
    import errno, json, os, resource, signal, sys
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    from test_write_failures import _data, _write_stream
    # Writes past the limit fail with EFBIG instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
    try:
        _write_stream(sys.argv[1], _data())
    except OSError as e:
        print(json.dumps({"errno": e.errno, "message": str(e)}))
    else:
        print(json.dumps({"errno": None}))
    """
)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX resource limits")
def test_file_size_limit_subprocess(tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes the write fail like a full disk (EFBIG) on any POSIX system."""
    target = tmp_path / "out.om"
    old = _write_old(target)
    r = subprocess.run(
        [sys.executable, "-c", FSIZE_SCRIPT, str(target), str(Path(__file__).parent)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(__file__).parent.parent,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["errno"] == errno.EFBIG, result
    _assert_old(target, old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.om"]


class _FullMemoryFS:
    """Factory of an fsspec memory filesystem whose files fail with ENOSPC after N bytes."""

    @staticmethod
    def make(limit: int):
        from fsspec.implementations.memory import MemoryFile, MemoryFileSystem

        class FullFile(MemoryFile):
            written = 0

            def write(self, data):
                n = memoryview(data).nbytes
                if FullFile.written + n > limit:
                    raise OSError(errno.ENOSPC, "No space left on device (simulated)")
                FullFile.written += n
                return super().write(data)

        class FullMemoryFileSystem(MemoryFileSystem):
            protocol = ("fullmem",)
            store: dict = {}  # noqa: RUF012 - fsspec's class-level store, kept separate
            pseudo_dirs: list = [""]  # noqa: RUF012

            def _open(self, path, mode="rb", **kwargs):
                f = super()._open(path, mode, **kwargs)
                if "w" in mode or "a" in mode:
                    f.__class__ = FullFile
                return f

        return FullMemoryFileSystem(skip_instance_cache=True), FullFile


def test_fsspec_write_fails_after_n_bytes() -> None:
    """Remote-style target without atomic rename (temporary key + move)."""
    fs, full_file = _FullMemoryFS.make(limit=300_000)
    old = _write_old((fs, "/bucket/out.om"))
    full_file.written = 0
    with pytest.raises(OSError) as info:
        _write_stream((fs, "/bucket/out.om"), _data())
    assert info.value.errno == errno.ENOSPC
    assert fs.ls("/bucket", detail=False) == ["/bucket/out.om"]  # no temporary key left
    _assert_old((fs, "/bucket/out.om"), old)


def test_fsspec_write_fails_accessor() -> None:
    import xarray as xr

    import xarray_om.accessor  # noqa: F401 - registers Dataset.om

    fs, full_file = _FullMemoryFS.make(limit=300_000)
    full_file.written = 0
    ds = xr.Dataset({"v": (("y", "x"), _data(2))})
    with pytest.raises(OSError):
        ds.om.to_om((fs, "/bucket/ds.om"), num_workers=2, block_bytes=64 * 1024)
    assert not fs.exists("/bucket/ds.om")
    assert fs.find("/bucket") == []


# ----------------------------------------------------------------------------- failing sources


def test_failing_iterator_keeps_old_file(tmp_path: Path) -> None:
    target = tmp_path / "out.om"
    old = _write_old(target)
    with pytest.raises(_SourceFailed, match="block 3"):
        _write_stream(target, _data(), fail_at=3)
    _assert_old(target, old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.om"]


def test_failing_iterator_new_target(tmp_path: Path) -> None:
    with pytest.raises(_SourceFailed):
        _write_stream(tmp_path / "new.om", _data(), fail_at=0)
    assert list(tmp_path.iterdir()) == []


def test_invalid_block_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "out.om"
    old = _write_old(target)
    with pytest.raises((OmError, ValueError)) as info:
        _write_stream(target, _data(), bad_at=2)
    msg = str(info.value)
    assert "shape" in msg or "block" in msg, msg
    _assert_old(target, old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.om"]


def test_exception_after_all_blocks_before_close(tmp_path: Path) -> None:
    """Everything written but close() never called: nothing is published."""
    target = tmp_path / "out.om"
    old = _write_old(target)
    with pytest.raises(KeyboardInterrupt), OmWriter(target) as w:
        w.write_array(_data(), chunks=(CHUNK_ROWS, COLS), name="new")
        raise KeyboardInterrupt
    _assert_old(target, old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.om"]


# ----------------------------------------------------------------------------- S3


def _pending_uploads(fs, bucket: str) -> list[dict]:
    from fsspec.asyn import sync

    resp = sync(fs.loop, fs._call_s3, "list_multipart_uploads", Bucket=bucket)
    return resp.get("Uploads", [])


def _big_data(mib: int, seed: int = 3) -> np.ndarray:
    """Incompressible float32, ``mib`` MiB: several 5 MiB multipart parts."""
    return np.random.default_rng(seed).normal(size=(mib * 512, 512)).astype(np.float32)


def test_s3_failing_source_aborts_multipart_upload(s3) -> None:
    """Parts already uploaded are discarded with the multipart upload."""
    url = s3.url("out.om")
    old = _write_old(url, storage_options=s3.storage_options)
    data = _big_data(12)
    with pytest.raises(_SourceFailed):
        # Fails after ~10 MiB: at least one 5 MiB part is on the server by then.
        _write_stream(url, data, fail_at=10 * 512 // (4 * CHUNK_ROWS),
                      storage_options=s3.storage_options)  # fmt: skip
    s3.fs.invalidate_cache()
    assert s3.fs.ls(s3.bucket, detail=False) == [f"{s3.bucket}/out.om"]
    _assert_old(url, old, storage_options=s3.storage_options)
    assert _pending_uploads(s3.fs, s3.bucket) == []


@pytest.fixture
def private_s3(tmp_path: Path):
    """A SeaweedFS server of our own (the test kills it)."""
    from _s3server import start_server

    server = start_server(tmp_path / "s3")
    yield server
    server.stop()


def _restart(server, workdir: Path):
    """Start the killed server again on the same ports and data directory."""
    from _s3server import S3Server

    log = workdir / "weed-restart.log"
    proc = subprocess.Popen(
        server.process.args,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    again = S3Server(server.endpoint_url, proc, log)
    deadline = time.monotonic() + 120
    while True:
        try:
            again.filesystem().ls("")
            return again
        except Exception:
            if proc.poll() is not None or time.monotonic() > deadline:
                again.stop()
                pytest.skip(f"could not restart the S3 server to inspect it; see {log}")
            time.sleep(0.5)


def test_s3_server_killed_mid_upload(private_s3, tmp_path: Path) -> None:
    server = private_s3
    fs = server.filesystem()
    fs.mkdir("kill")
    url = "s3://kill/out.om"
    old = _write_old(url, storage_options=server.storage_options)

    # Our own filesystem with few retries and short timeouts: a dead server must
    # surface as an error in seconds, not minutes.
    import s3fs

    wfs = s3fs.S3FileSystem(
        skip_instance_cache=True,
        config_kwargs={"retries": {"max_attempts": 1}, "connect_timeout": 2, "read_timeout": 5},
        **server.storage_options,
    )
    wfs.retries = 1
    data = _big_data(16)
    killed = {}

    def blocks():
        for i, block in enumerate(_blocks(data)):
            if i == 10 * 512 // (4 * CHUNK_ROWS):  # ~10 MiB produced: one part is uploaded
                os.killpg(server.process.pid, signal.SIGKILL)
                server.process.wait(10)
                killed["at"] = time.monotonic()
            yield block

    with pytest.raises(Exception) as info, OmWriter((wfs, "kill/out.om")) as w:
        ref = w.write_array_streaming(
            blocks(), shape=data.shape, dtype=data.dtype, chunks=(CHUNK_ROWS, COLS), name="new"
        )
        w.close(ref)
    assert "at" in killed, "the server was never killed: the write failed earlier"
    elapsed = time.monotonic() - killed["at"]
    assert elapsed < 120, f"the dead server was noticed only after {elapsed:.0f} s"
    # A clear error: the connection failure, not an unrelated secondary one.
    chain, e = [], info.value
    while e is not None:
        chain.append(f"{type(e).__name__}: {e}")
        e = e.__cause__ or e.__context__
    text = " | ".join(chain)
    assert any(w in text.lower() for w in ("connect", "endpoint", "refused")), text
    print(f"error after {elapsed:.1f} s: {text[:300]}")

    server = _restart(server, tmp_path / "s3")
    try:
        fs = server.filesystem()
        assert fs.ls("kill", detail=False) == ["kill/out.om"]
        _assert_old(url, old, storage_options=server.storage_options)
        # The writer could not abort its multipart upload while the server was
        # down: at most that one upload may be pending, and it is invisible.
        pending = _pending_uploads(fs, "kill")
        assert len(pending) <= 1, pending
        print(f"pending multipart uploads after the crash: {len(pending)}")
    finally:
        server.stop()
