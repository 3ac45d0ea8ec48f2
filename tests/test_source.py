"""Byte sources: local, fsspec (memory://, (fs, path), S3), file-like, bytes; tail reads; pickling."""

from __future__ import annotations

import io
import multiprocessing
import os
import pickle

import fsspec
import numpy as np
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from xarray_om.errors import OmFormatError
from xarray_om.format.source import (
    DEFAULT_TAIL_SIZE,
    LOCAL_TAIL_SIZE,
    BytesSpec,
    FileObjSpec,
    FsspecSpec,
    LocalSpec,
    Source,
    UrlSpec,
    open_source,
)

PAYLOAD = bytes(range(256)) * 600  # 153600 bytes: larger than the 64 KiB tail


@pytest.fixture
def local_file(tmp_path):
    p = tmp_path / "data.bin"
    p.write_bytes(PAYLOAD)
    return p


@pytest.fixture
def mem_file():
    fs = MemoryFileSystem()
    path = f"/test_source/{os.getpid()}/data.bin"
    fs.pipe(path, PAYLOAD)
    yield fs, path
    fs.rm(path)


class CountingMemFS(MemoryFileSystem):
    """Memory filesystem that counts the requests a reader makes."""

    protocol = "countmem"
    calls: list = []  # noqa: RUF012  (shared on purpose: fsspec caches instances)

    def size(self, path):
        type(self).calls.append(("size", path))
        return super().size(path)

    def cat_file(self, path, start=None, end=None, **kw):
        type(self).calls.append(("cat_file", start, end))
        return super().cat_file(path, start=start, end=end, **kw)

    def cat_ranges(self, paths, starts, ends, **kw):
        type(self).calls.append(("cat_ranges", len(paths)))
        return [
            MemoryFileSystem.cat_file(self, p, start=s, end=e)
            for p, s, e in zip(paths, starts, ends, strict=True)
        ]


def _check_reads(src: Source) -> None:
    assert src.size == len(PAYLOAD)
    assert src.read_range(0, 10) == PAYLOAD[:10]
    assert src.read_range(5, 5) == b""
    assert src.read_range(len(PAYLOAD) - 7, len(PAYLOAD)) == PAYLOAD[-7:]
    ranges = [(0, 3), (1000, 5000), (100000, 100001), (len(PAYLOAD) - 100, len(PAYLOAD)), (7, 7)]
    assert src.read_ranges(ranges) == [PAYLOAD[a:b] for a, b in ranges]
    starts = np.array([a for a, _ in ranges], np.int64)
    stops = np.array([b for _, b in ranges], np.int64)
    buf = np.empty(int((stops - starts).sum()), np.uint8)
    src.read_into(starts, stops, buf)
    assert buf.tobytes() == b"".join(PAYLOAD[a:b] for a, b in ranges)
    for a, b in [(-1, 3), (5, 4), (0, len(PAYLOAD) + 1), (len(PAYLOAD) + 5, len(PAYLOAD) + 6)]:
        with pytest.raises(OmFormatError, match="outside the file"):
            src.read_range(a, b)
    with pytest.raises(OmFormatError, match="outside the file"):
        src.read_ranges([(0, 1), (0, len(PAYLOAD) + 1)])


def test_local(local_file):
    src = open_source(local_file)
    assert isinstance(src.spec, LocalSpec) and src.name == str(local_file)
    _check_reads(src)
    assert open_source(str(local_file)).spec.path == str(local_file)
    assert isinstance(open_source(f"file://{local_file}").spec, LocalSpec)
    assert isinstance(open_source((fsspec.filesystem("file"), str(local_file))).spec, LocalSpec)
    src.close()
    assert src.closed
    with pytest.raises(ValueError, match="closed"):
        src.read_range(0, 10)


def test_memory_url_and_fs_tuple(mem_file):
    fs, path = mem_file
    src = open_source(f"memory://{path}")
    assert isinstance(src.spec, UrlSpec)
    _check_reads(src)
    src = open_source((fs, path))
    assert isinstance(src.spec, FsspecSpec)
    assert src.name == f"memory://{path}"
    _check_reads(src)


def test_bytes_and_filelike():
    _check_reads(open_source(PAYLOAD))
    src = open_source(io.BytesIO(PAYLOAD))
    assert isinstance(src.spec, FileObjSpec)
    _check_reads(src)
    with pytest.raises(TypeError, match="file-like"):
        pickle.dumps(src)
    with pytest.raises(TypeError, match="file-like"):
        pickle.dumps(src.spec)
    # bytes pickle by value
    src2 = pickle.loads(pickle.dumps(open_source(PAYLOAD)))
    assert isinstance(src2.spec, BytesSpec)
    _check_reads(src2)


def test_bad_arguments(local_file):
    with pytest.raises(ValueError, match="storage_options"):
        open_source(local_file, storage_options={"anon": True})
    with pytest.raises(TypeError, match="cannot read an OM file"):
        open_source(12345)
    with pytest.raises(FileNotFoundError):
        open_source(local_file.parent / "missing.om")
    # an open source passes through
    src = open_source(local_file)
    assert open_source(src) is src


def test_tail_serves_reads_without_requests(local_file, mem_file):
    assert len(open_source(local_file)._tail) == LOCAL_TAIL_SIZE
    assert len(open_source(mem_file)._tail) == DEFAULT_TAIL_SIZE
    src = open_source(local_file, tail_size=DEFAULT_TAIL_SIZE)
    calls = []
    orig = src._fetch_ranges

    def counting(ranges):
        calls.append(list(ranges))
        return orig(ranges)

    src._fetch_ranges = counting
    tail0 = len(PAYLOAD) - DEFAULT_TAIL_SIZE
    assert src.read_range(tail0, tail0 + 100) == PAYLOAD[tail0 : tail0 + 100]
    assert src.read_ranges([(tail0 + 5, tail0 + 9), (len(PAYLOAD) - 1, len(PAYLOAD))]) == [
        PAYLOAD[tail0 + 5 : tail0 + 9],
        PAYLOAD[-1:],
    ]
    assert calls == []
    assert src.read_range(tail0 - 1, tail0 + 1) == PAYLOAD[tail0 - 1 : tail0 + 1]
    assert len(calls) == 1
    # tail disabled: every read is a request
    src = open_source(local_file, tail_size=0)
    assert src._tail == b""
    assert src.read_range(len(PAYLOAD) - 4, len(PAYLOAD)) == PAYLOAD[-4:]


def test_remote_open_costs_size_plus_one_request():
    fs = CountingMemFS()
    path = f"/counting/{os.getpid()}/x.bin"
    fs.pipe(path, PAYLOAD)
    CountingMemFS.calls.clear()
    src = open_source((fs, path))
    assert [c[0] for c in CountingMemFS.calls] == ["size", "cat_file"]
    CountingMemFS.calls.clear()
    src.read_ranges([(0, 10), (20, 30), (40, 50)])
    assert CountingMemFS.calls == [("cat_ranges", 3)]  # one batched request
    fs.rm(path)


def test_pickle_reconnects_lazily(local_file, mem_file):
    for source in (local_file, (mem_file[0], mem_file[1]), f"memory://{mem_file[1]}"):
        src = open_source(source)
        clone = pickle.loads(pickle.dumps(src))
        assert clone._size == -1 and clone._handle is None  # nothing opened yet
        _check_reads(clone)
        spec = pickle.loads(pickle.dumps(src.spec))
        assert spec.key == src.spec.key
        _check_reads(spec.open())


def _child_read(src, q):
    try:
        q.put(src.read_range(1000, 1010) == PAYLOAD[1000:1010] and src._generation >= 1)
    except Exception as e:  # pragma: no cover - reported through the queue
        q.put(repr(e))


@pytest.mark.parametrize("kind", ["local", "fs"])
def test_fork_reconnects(local_file, mem_file, kind):
    src = open_source(local_file if kind == "local" else mem_file, tail_size=0)
    src.read_range(0, 1)
    handle = src._handle
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_read, args=(src, q))
    p.start()
    result = q.get(timeout=30)
    p.join(30)
    assert result is True
    assert src.read_range(0, 4) == PAYLOAD[:4]  # the parent's handle is untouched
    assert src._handle is handle


def test_truncated_after_open(local_file):
    src = open_source(local_file)
    with open(local_file, "r+b") as f:
        f.truncate(1000)
    with pytest.raises(OmFormatError, match="truncated or changed"):
        src.read_range(500, 2000)
    buf = np.empty(1500, np.uint8)
    with pytest.raises(OmFormatError, match="truncated or changed"):
        src.read_into(np.array([500]), np.array([2000]), buf)


def _s3(request):
    try:
        return request.getfixturevalue("s3")
    except pytest.FixtureLookupError:
        pytest.skip("the `s3` fixture (SeaweedFS server) is not provided by tests/conftest.py yet")


def test_s3(request):
    s3 = _s3(request)
    import s3fs

    fs = s3fs.S3FileSystem(**s3.storage_options)
    path = f"{s3.bucket}/data.bin"
    fs.pipe(path, PAYLOAD)
    src = open_source(f"s3://{path}", storage_options=s3.storage_options)
    _check_reads(src)
    _check_reads(pickle.loads(pickle.dumps(src)))
    _check_reads(open_source((fs, path)))
