"""The fast read paths of OmArray.read: keys made only of ints and step-1 slices.

Every fast path (one chunk or one run of consecutive chunks: ``Lut.chunk_range`` /
``Lut.run_entries`` + ``Source.read_range_into`` + ``_native.decode_box``; other
boxes: ``Grid.box_chunks`` + ``plan_reads``/``plan_run``) must give
exactly what the general path (``normalize_key`` + index arrays) gives, raise
the same errors, and stay thread-safe (per-thread buffers and argument arrays).
"""

from __future__ import annotations

import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import fsspec
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xarray_om import _native
from xarray_om.errors import OmCodecError, OmFormatError
from xarray_om.format import layout
from xarray_om.format import reader as reader_mod
from xarray_om.format import source as source_mod
from xarray_om.format.layout import (
    THREAD_BUFFER_MAX,
    Grid,
    box_key,
    give_thread_buffer,
    normalize_key,
    plan_reads,
    plan_run,
    take_thread_buffer,
)
from xarray_om.format.reader import OmFile
from xarray_om.format.source import open_source
from xarray_om.format.writer import OmWriter

ARRAYS = {
    # name: (values, write options)
    "f32": (
        lambda rng: np.cumsum(rng.normal(size=(23, 17, 30)), axis=2).astype(np.float32),
        dict(chunks=(5, 4, 7)),
    ),
    "i16_run": (  # chunks split only the last dimension: columns are runs of chunks
        lambda rng: np.round(rng.normal(size=(6, 12, 50)) * 10, 1).astype(np.float32),
        dict(chunks=(1, 12, 8), scale_factor=10.0),
    ),
    "f64": (lambda rng: rng.normal(size=(33, 9)), dict(chunks=(33, 2))),
    "i64": (lambda rng: rng.integers(-(2**40), 2**40, size=(100,)), dict(chunks=(7,))),
    "u8_4d": (
        lambda rng: rng.integers(0, 255, size=(3, 4, 5, 6), dtype=np.uint8),
        dict(chunks=(2, 3, 2, 4)),
    ),
    "one_chunk": (lambda rng: rng.normal(size=(4, 5)).astype(np.float32), dict(chunks=(4, 5))),
}


@pytest.fixture(autouse=True)
def _pread_reads(monkeypatch):
    """This module is about the pread paths (read buffers, chunk prefixes, planning);
    local chunk data is decoded from a file map by default (tests/test_mapped_reads.py)."""
    monkeypatch.setattr(source_mod, "MMAP_READS", False)


@pytest.fixture(scope="module")
def om_file(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(11)
    path = tmp_path_factory.mktemp("fast") / "fast.om"
    data = {name: make(rng) for name, (make, _) in ARRAYS.items()}
    with OmWriter(path) as w:
        refs = [w.write_array(data[n], name=n, **kw) for n, (_, kw) in ARRAYS.items()]
        w.close(w.write_group(name="", children=refs))
    with OmFile(path) as f:
        ref = {n: f[n]._read_general(f[n]._read_ctx(), ..., None) for n in ARRAYS}
    for n in ARRAYS:  # lossless except the scaled int16 array
        if n != "i16_run":
            np.testing.assert_array_equal(ref[n], data[n])
    return path, ref


def _general(arr, key, out=None):
    return arr._read_general(arr._read_ctx(), key, out)


@st.composite
def box_keys(draw, shape: tuple[int, ...], valid_only: bool = False):
    """Keys the fast path takes (ints, step-1 slices, Ellipsis), plus some it does not."""
    items = []
    for n in shape:
        kind = draw(st.integers(0, 9))
        if kind <= 3:
            lo = -n if valid_only else -n - 2
            hi = n - 1 if valid_only else n + 1
            i = draw(st.integers(lo, hi))
            items.append(np.int64(i) if kind == 3 else i)
        elif kind <= 7:
            a = draw(st.none() | st.integers(-n - 3, n + 3))
            b = draw(st.none() | st.integers(-n - 3, n + 3))
            step = draw(st.sampled_from([None, 1])) if kind < 7 else draw(st.sampled_from([2, -1]))
            items.append(slice(a, b, step))
        elif kind == 8:
            items.append(slice(None))
        else:
            items.append(draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=3)))
    # drop trailing axes or replace a run of axes by an Ellipsis
    cut = draw(st.integers(0, 2))
    if cut == 1:
        items = items[: draw(st.integers(0, len(items)))]
    elif cut == 2:
        a = draw(st.integers(0, len(items)))
        b = draw(st.integers(a, len(items)))
        items = [*items[:a], Ellipsis, *items[b:]]
    return items[0] if len(items) == 1 and draw(st.booleans()) else tuple(items)


def _outcome(fn):
    try:
        return fn(), None
    except Exception as e:  # compared below
        return None, (type(e), str(e))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fast_path_matches_general_path(om_file, data):
    path, ref = om_file
    name = data.draw(st.sampled_from(sorted(ARRAYS)))
    key = data.draw(box_keys(ref[name].shape))
    with OmFile(path) as f:
        arr = f[name]
        got, err = _outcome(lambda: arr[key])
        exp, exp_err = _outcome(lambda: _general(arr, key))
    assert err == exp_err
    if err is None:
        assert got.dtype == exp.dtype and got.shape == exp.shape
        np.testing.assert_array_equal(got, exp)
        if not any(isinstance(k, list) for k in (key if isinstance(key, tuple) else (key,))):
            np.testing.assert_array_equal(got, ref[name][key])  # basic indexing


@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_fast_path_out_parameter(om_file, data):
    path, ref = om_file
    name = data.draw(st.sampled_from(sorted(ARRAYS)))
    key = data.draw(box_keys(ref[name].shape, valid_only=True))
    exp = ref[name][key] if not _has_list(key) else None
    with OmFile(path) as f:
        arr = f[name]
        if exp is None:
            exp = _general(arr, key)
        out = np.full(exp.shape, 7, exp.dtype)
        assert arr.read(key, out=out) is out
        np.testing.assert_array_equal(out, exp)
        if exp.ndim >= 2:  # a non-contiguous out: filled through a temporary
            big = np.zeros(exp.shape[::-1], exp.dtype)
            view = big.T
            assert arr.read(key, out=view) is view
            np.testing.assert_array_equal(view, exp)


def _has_list(key) -> bool:
    return any(isinstance(k, list) for k in (key if isinstance(key, tuple) else (key,)))


def test_fast_path_is_taken(om_file, monkeypatch):
    """Box keys never build index arrays; one chunk or one run of chunks (one byte
    range) is one read_range_into + one decode_box1 / decode_run; other boxes use
    read_into + decode_select (one each)."""
    path, ref = om_file
    calls = []

    def spy(mod, name):
        orig = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a, **k: calls.append(name) or orig(*a, **k))

    monkeypatch.setattr(
        "xarray_om.format.reader.normalize_key",
        lambda *a: calls.append("normalize_key") or normalize_key(*a),
    )
    spy(_native, "decode_select")
    spy(_native, "decode_box")
    spy(_native, "decode_box1")
    spy(_native, "decode_run")
    with OmFile(path) as f:
        spy(type(f.source), "read_into")
        spy(type(f.source), "read_range_into")
        a = f["f32"]
        np.testing.assert_array_equal(a[3, 2, 0:7], ref["f32"][3, 2, 0:7])  # one chunk
        assert calls == ["read_range_into", "decode_box1"]
        calls.clear()
        np.testing.assert_array_equal(a[3, 2, :], ref["f32"][3, 2, :])  # a run of 5 chunks
        assert calls == ["read_range_into", "decode_run"]  # point key: no box planning
        calls.clear()
        np.testing.assert_array_equal(a[3, 2, 1:], ref["f32"][3, 2, 1:])  # same run, a box
        assert calls == ["read_range_into", "decode_run"]
        calls.clear()
        np.testing.assert_array_equal(a[..., 5], ref["f32"][..., 5])  # scattered chunks
        assert calls == ["read_into", "decode_select"]
        calls.clear()
        np.testing.assert_array_equal(a[::2, 0, 0], ref["f32"][::2, 0, 0])  # general path
        assert calls == ["normalize_key", "read_into", "decode_select"]


def test_box_key_agrees_with_normalize_key():
    shape = (5, 6, 7)
    cases = [
        (1, 2, 3),
        (slice(None),),
        (Ellipsis, 3),
        (-1, Ellipsis),
        (slice(-3, None), np.int32(2)),
        (slice(1, 100), slice(-100, 2), slice(None, None, 1)),
        2,
        Ellipsis,
        (),
    ]
    for key in cases:
        box = box_key(key, shape)
        sel = normalize_key(key, shape)
        assert box is not None, key
        start, count, out_shape = box
        assert out_shape == sel.shape
        for s, c, idx in zip(start, count, sel.index, strict=True):
            assert list(range(s, s + c)) == idx.tolist()
    for key in [
        (slice(None, None, 2),),
        (slice(3, 1),),  # empty
        ([1, 2],),
        (np.array([1]),),
        (None,),
        (True,),
        (np.bool_(True),),
        (5,),  # out of bounds
        (-6,),
        (0, 0, 0, 0),  # too many
        (Ellipsis, Ellipsis),
        (0, 0, 0, Ellipsis, 0),
        (1.0,),
    ]:
        assert box_key(key, shape) is None, key


@settings(max_examples=200, deadline=None)
@given(
    shape=st.lists(st.integers(1, 40), min_size=1, max_size=4),
    data=st.data(),
)
def test_grid_box_chunks_and_run(shape, data):
    chunks = [data.draw(st.integers(1, n)) for n in shape]
    g = Grid(shape, chunks)
    start, count = [], []
    for n in shape:
        a = data.draw(st.integers(0, n - 1))
        b = data.draw(st.integers(a + 1, n))
        start.append(a)
        count.append(b - a)
    sel = normalize_key(tuple(slice(a, a + c) for a, c in zip(start, count, strict=True)), shape)
    exp = g.touched(sel)
    got = g.box_chunks(start, count)
    assert got.tolist() == exp.tolist()
    run = g.box_run(start, count)
    consecutive = bool(np.all(np.diff(exp) == 1))
    assert (run is not None) == consecutive
    if run is not None:
        assert list(range(run[0], run[1] + 1)) == exp.tolist()


@settings(max_examples=300, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 5000), min_size=1, max_size=80),
    first=st.integers(0, 10**6),
    io_max=st.integers(1, 20000),
)
def test_plan_run_equals_plan_reads(sizes, first, io_max):
    bounds = first + np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    exp = plan_reads(bounds[:-1], bounds[1:], io_size_merge=0, io_size_max=io_max)
    got = plan_run(bounds, io_size_max=io_max)
    assert got.read_starts == exp.read_starts
    assert got.read_stops == exp.read_stops
    assert got.read_pos == exp.read_pos
    assert got.nbytes == exp.nbytes
    assert got.chunk_off.dtype == np.uint64 and got.chunk_len.dtype == np.uint64
    assert got.chunk_off.tolist() == exp.chunk_off.tolist()
    assert got.chunk_len.tolist() == exp.chunk_len.tolist()


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 3000), min_size=2, max_size=120),
    gaps=st.lists(st.integers(0, 3000), min_size=120, max_size=120),
    merge=st.integers(0, 1000),
    io_max=st.integers(1, 10**5),
)
def test_plan_reads_without_merges_matches_small_plan(sizes, gaps, merge, io_max):
    """The vector path's shortcut (no gap small enough to bridge) against the loop."""
    n = len(sizes)
    g = np.array(gaps[: n - 1]) + merge + 1  # every gap too large to bridge
    starts = 5 + np.concatenate(([0], np.cumsum(np.array(sizes[:-1]) + g))).astype(np.int64)
    stops = starts + np.array(sizes)
    exp = layout._plan_small(starts, stops, merge, io_max, None)
    got = plan_reads(starts, stops, io_size_merge=merge, io_size_max=io_max)
    assert (got.read_starts, got.read_stops, got.read_pos, got.nbytes) == (
        exp.read_starts,
        exp.read_stops,
        exp.read_pos,
        exp.nbytes,
    )
    assert got.chunk_off.tolist() == exp.chunk_off.tolist()
    assert got.chunk_len.tolist() == exp.chunk_len.tolist()
    assert got.chunk_off.dtype == np.uint64 and got.chunk_len.dtype == np.uint64


def test_local_chunk_reads_are_not_split(many_chunks, monkeypatch):
    """Local files: a run of chunks is one system call whatever io_size_max says;
    remote sources keep the io_size_max split."""
    path, data = many_chunks
    calls = []
    orig = os.preadv
    monkeypatch.setattr(source_mod.os, "preadv", lambda *a: calls.append(a[2]) or orig(*a))
    with OmFile(path, io_size_max=1, io_size_merge=0) as f:
        a = f.root
        a._lut.load_all()
        calls.clear()
        np.testing.assert_array_equal(a[7, 3, :], data[7, 3, :])  # 10 consecutive chunks
        assert len(calls) == 1
        np.testing.assert_array_equal(a[...], data)
        assert len(calls) == 2
    ranges = []
    with OmFile(_memory_copy(path), io_size_max=1, io_size_merge=0) as f:
        src = f.source
        orig_fetch = src._fetch_ranges
        monkeypatch.setattr(src, "_fetch_ranges", lambda r: ranges.append(len(r)) or orig_fetch(r))
        f.root._lut.load_all()
        ranges.clear()
        np.testing.assert_array_equal(f.root[7, 3, :], data[7, 3, :])
        assert ranges == [10]


def test_plan_run_long_run_uses_searchsorted():
    sizes = np.random.default_rng(3).integers(1, 300, 5000)
    bounds = 77 + np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    exp = plan_reads(bounds[:-1], bounds[1:], io_size_merge=0, io_size_max=4096)
    got = plan_run(bounds, io_size_max=4096)
    assert (got.read_starts, got.read_stops, got.read_pos) == (
        exp.read_starts,
        exp.read_stops,
        exp.read_pos,
    )
    assert got.chunk_off.tolist() == exp.chunk_off.tolist()


@pytest.fixture(scope="module")
def many_chunks(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """3000 chunks: a LUT of 47 groups, read group by group with small io settings."""
    rng = np.random.default_rng(5)
    data = np.cumsum(rng.normal(size=(60, 50, 40)), axis=2).astype(np.float32)
    path = tmp_path_factory.mktemp("many") / "many.om"
    with OmWriter(path) as w:
        w.close(w.write_array(data, chunks=(2, 5, 4), name="x"))
    return path, data


def _memory_copy(path: Path) -> str:
    fs = fsspec.filesystem("memory")
    mpath = f"/fastpath/{os.getpid()}/{path.name}"
    fs.pipe(mpath, path.read_bytes())
    return f"memory://{mpath}"


@pytest.mark.parametrize("kind", ["local", "memory"])
@pytest.mark.parametrize("io", [(65536, 512), (300, 0), (1, 0)])
def test_partial_lut_loading_and_small_reads(many_chunks, io, kind):
    path, data = many_chunks
    reader_mod._SNAPSHOTS.clear()  # earlier opens of the same file would hand over a full LUT
    rng = np.random.default_rng(io[0])
    src = path if kind == "local" else _memory_copy(path)
    with OmFile(src, io_size_max=io[0], io_size_merge=io[1]) as f:
        a = f.root
        for r in range(40):
            i, j = int(rng.integers(60)), int(rng.integers(50))
            t0 = int(rng.integers(40))
            t1 = int(rng.integers(t0 + 1, 41))
            np.testing.assert_array_equal(a[i, j, t0:t1], data[i, j, t0:t1])  # run
            np.testing.assert_array_equal(a[i, j, t0], data[i, j, t0])  # one chunk
            if r == 3:  # LUT groups are still read on demand
                assert a._lut._complete == (io[0] == 65536)
            if r > 3:
                np.testing.assert_array_equal(a[i:, j, t0], data[i:, j, t0])  # strided chunks
        np.testing.assert_array_equal(a[...], data)


def _crafted(lut_values, chunk: bytes, n_chunks: int) -> bytes:
    from xarray_om.format.records import encode_array_record, encode_trailer

    body = bytearray(b"OM\x03")
    body += chunk * n_chunks
    lut_bytes, _ = _native.encode_lut(np.array(lut_values, np.uint64))
    lut_off = len(body)
    body += lut_bytes
    body += bytes(-len(body) % 8)
    rec = encode_array_record("a", 14, 2, len(lut_bytes), lut_off, 1.0, 0.0, (4 * n_chunks,), (4,))
    rec_off = len(body)
    body += rec + bytes(-len(rec) % 8)
    body += encode_trailer(rec_off, len(rec))
    return bytes(body)


def test_crafted_lut_errors_on_fast_paths():
    chunk = _native.encode_chunk(np.arange(4, dtype=np.int16), 2)
    n = len(chunk)
    good = [3 + k * n for k in range(4)]
    f = OmFile(_crafted(good, chunk, 3))
    np.testing.assert_array_equal(f.root[4:8], np.arange(4, dtype=np.int16))
    np.testing.assert_array_equal(f.root[2:10], np.r_[2:4, 0:4, 0:2].astype(np.int16))
    for lut, match in [
        ([3, 3 + n, 3 + n, 3 + 3 * n], "not increasing"),
        ([3, 3 + n, 10**6, 10**6 + 1], "past the end"),
    ]:
        for key in [slice(4, 8), slice(2, 10), 5, slice(None)]:
            with pytest.raises(OmFormatError, match=match):
                OmFile(_crafted(lut, chunk, 3)).root[key]
    # one byte too many / too few in a chunk's range: the decoder notices
    for key in [slice(0, 4), 1, slice(2, 6)]:
        with pytest.raises(OmCodecError):
            OmFile(_crafted([3, 3 + n + 1, 3 + 2 * n, 3 + 3 * n], chunk, 3)).root[key]


def test_chunk_range_and_run_entries_match_ranges(many_chunks):
    path, _ = many_chunks
    with OmFile(path, io_size_max=200, io_size_merge=0) as f:
        lut = f.root._lut
        starts, stops = lut.ranges(np.arange(lut.n_chunks, dtype=np.int64))
    for io_max in (200, 65536):
        with OmFile(path, io_size_max=io_max, io_size_merge=0) as f:
            lut = f.root._lut
            for i in [0, 63, 64, 1000, lut.n_chunks - 1]:
                assert lut.chunk_range(i) == (int(starts[i]), int(stops[i]))
            for first, last in [(0, 0), (62, 130), (500, 1999), (0, lut.n_chunks - 1)]:
                v = lut.run_entries(first, last)
                assert not v.flags.writeable
                assert v[:-1].tolist() == starts[first : last + 1].tolist()
                assert v[-1] == stops[last]


# --------------------------------------------------------------------------- native


def _encoded(tmp_path, data, **kw):
    path = tmp_path / "e.om"
    with OmWriter(path) as w:
        w.close(w.write_array(data, name="x", **kw))
    f = OmFile(path)
    a = f.root
    raw = path.read_bytes()
    lut = a._lut.load_all()
    return f, a, raw, lut


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_decode_box_matches_decode_select(tmp_path, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 1000)))
    values = np.cumsum(rng.normal(size=(9, 11, 13)), axis=1).astype(np.float32)
    f, a, raw, lut = _encoded(tmp_path, values, chunks=(4, 3, 5))
    try:
        start, count = [], []
        for n in values.shape:
            s = data.draw(st.integers(0, n - 1))
            start.append(s)
            count.append(data.draw(st.integers(1, n - s)))
        idx = a.grid.box_chunks(start, count)
        sel = [np.arange(s, s + c) for s, c in zip(start, count, strict=True)]
        exp = np.full(count, np.nan, np.float32)
        _native.decode_select(a.codec, exp, sel, idx, raw, lut[idx], lut[idx + 1] - lut[idx])
        box = values[tuple(slice(s, s + c) for s, c in zip(start, count, strict=True))]
        np.testing.assert_array_equal(exp, box)
        got = np.full(int(np.prod(count)), np.nan, np.float32)  # any shape with the right size
        if idx.size == 1:
            i = int(idx[0])
            _native.decode_box(
                a.codec, got, start, count, i, raw, int(lut[i]), int(lut[i + 1] - lut[i])
            )
        else:
            _native.decode_box(
                a.codec, got, start, count, idx, raw, lut[idx], lut[idx + 1] - lut[idx]
            )
        np.testing.assert_array_equal(got.reshape(count), exp)
    finally:
        f.close()


def test_decode_box_errors(tmp_path):
    values = np.arange(6 * 70000, dtype=np.float32).reshape(6, 70000)
    f, a, raw, lut = _encoded(tmp_path, values, chunks=(3, 20000))
    codec = a.codec
    out = np.empty((2, 5), np.float32)
    i = 1  # chunk (0, 1)
    args = (i, raw, int(lut[i]), int(lut[i + 1] - lut[i]))
    _native.decode_box(codec, out, [1, 20000], [2, 5], *args)
    np.testing.assert_array_equal(out, values[1:3, 20000:20005])
    # beyond the shared index run (65536): its own arange
    i = 3
    big = np.empty((1, 3), np.float32)
    _native.decode_box(
        codec, big, [0, 69990], [1, 3], i, raw, int(lut[i]), int(lut[i + 1] - lut[i])
    )
    np.testing.assert_array_equal(big, values[0:1, 69990:69993])
    with pytest.raises(ValueError, match="dtype"):
        _native.decode_box(codec, out.astype(np.float64), [1, 20000], [2, 5], *args)
    with pytest.raises(ValueError, match="dtype"):
        _native.decode_box(codec, np.empty((5, 2), np.float32).T, [1, 20000], [2, 5], *args)
    with pytest.raises(ValueError, match="outside dimension 1"):
        _native.decode_box(codec, out, [1, 69999], [2, 5], *args)
    with pytest.raises(ValueError, match="outside dimension 0"):
        _native.decode_box(codec, out, [-1, 0], [2, 5], *args)
    with pytest.raises(ValueError, match="outside dimension 0"):
        _native.decode_box(codec, np.empty(0, np.float32), [1, 0], [0, 5], *args)
    with pytest.raises(ValueError, match="elements"):
        _native.decode_box(codec, out, [1, 20000], [2, 4], *args)
    with pytest.raises(ValueError, match="one entry per dimension"):
        _native.decode_box(codec, out, [1], [2], *args)
    with pytest.raises(ValueError, match="differ in length"):
        _native.decode_box(codec, out, [1, 20000], [2, 5], np.array([1]), raw, lut[1:3], lut[1:2])
    n = int(lut[2] - lut[1])
    with pytest.raises(OmCodecError, match="chunk 1"):
        _native.decode_box(
            codec, out, [1, 20000], [2, 5], 1, raw, int(lut[1]), n - 1, source="x.om"
        )
    with pytest.raises(OmCodecError, match="chunk 1"):  # range beyond the data
        _native.decode_box(
            codec, out, [1, 20000], [2, 5], 1, raw[: int(lut[2]) - 1], int(lut[1]), n
        )
    # the per-thread argument arrays are back after errors
    _native.decode_box(codec, out, [1, 20000], [2, 5], *args)
    np.testing.assert_array_equal(out, values[1:3, 20000:20005])
    f.close()


def test_decode_box_index_run_grows_mid_call(tmp_path, monkeypatch):
    """Dimension 0 points into the shared run, dimension 1 makes it grow: the old run
    must stay alive until the native call returns."""
    import weakref

    values = np.arange(6 * 3000, dtype=np.float32).reshape(6, 3000)
    f, a, raw, lut = _encoded(tmp_path, values, chunks=(3, 1000))
    small = np.arange(16, dtype=np.int64)
    alive = weakref.ref(small)
    monkeypatch.setattr(_native, "_iota", (small, _native.ffi.from_buffer("int64_t[]", small)))
    del small
    real = _native.lib
    seen = []

    class Lib:
        def __getattr__(self, name):
            return getattr(real, name)

        def om_decode_select(self, *args):
            seen.append(alive() is not None)
            return real.om_decode_select(*args)

    monkeypatch.setattr(_native, "lib", Lib())
    out = np.empty((2, 5), np.float32)
    i = 2  # chunk (0, 2)
    _native.decode_box(
        a.codec, out, [1, 2990], [2, 5], i, raw, int(lut[i]), int(lut[i + 1] - lut[i])
    )
    np.testing.assert_array_equal(out, values[1:3, 2990:2995])
    assert seen == [True]
    assert _native._iota[0].size >= 3000
    assert alive() is None  # released after the call
    f.close()


def test_index_run():
    r = _native.index_run(5, 3)
    assert r.dtype == np.int64 and r.tolist() == [5, 6, 7] and not r.flags.writeable
    r = _native.index_run(70000, 4)  # past the shared run
    assert r.tolist() == list(range(70000, 70004)) and not r.flags.writeable


# --------------------------------------------------------------------------- sources


PAYLOAD = bytes(range(256)) * 200  # 51200 bytes


def _sources(tmp_path):
    p = tmp_path / "payload.bin"
    p.write_bytes(PAYLOAD)
    fs = fsspec.filesystem("memory")
    fs.pipe(f"/fast/{os.getpid()}.bin", PAYLOAD)
    return {
        "local": open_source(p),
        "local_no_tail": open_source(p, tail_size=0),
        "bytes": open_source(PAYLOAD),
        "fileobj": open_source(io.BytesIO(PAYLOAD)),
        "fsspec": open_source(f"memory:///fast/{os.getpid()}.bin", tail_size=0),
    }


def test_read_range_into(tmp_path):
    for name, src in _sources(tmp_path).items():
        for a, b in [
            (0, 10),
            (100, 5000),
            (len(PAYLOAD) - 7, len(PAYLOAD)),
            (40000, 50000),
            (9, 9),
        ]:
            for buf in (bytearray(b - a + 70), np.zeros(b - a + 70, np.uint8)):
                mv = memoryview(buf)
                src.read_range_into(a, b, mv if name != "bytes" else buf, 70)
                assert bytes(mv[70:]) == PAYLOAD[a:b], (name, a, b)
        with pytest.raises(OmFormatError, match="outside the file"):
            src.read_range_into(10, len(PAYLOAD) + 1, bytearray(len(PAYLOAD)))
        with pytest.raises(ValueError, match="too small"):
            src.read_range_into(0, 100, bytearray(99))
        with pytest.raises(ValueError, match="too small"):
            src.read_range_into(0, 100, bytearray(200), 101)
        src.close()
        with pytest.raises(ValueError, match="closed"):
            src.read_range_into(0, 10, bytearray(10))


def test_read_range_into_truncated_file(tmp_path):
    p = tmp_path / "t.bin"
    p.write_bytes(PAYLOAD)
    src = open_source(p, tail_size=0)
    with open(p, "r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(OmFormatError, match="truncated"):
        src.read_range_into(500, 2000, bytearray(1500))
    src.close()


def test_local_partial_reads_continue(tmp_path, monkeypatch):
    """preadv may return fewer bytes than asked (the kernel caps one call at ~2 GiB)."""
    p = tmp_path / "p.bin"
    p.write_bytes(PAYLOAD)
    src = open_source(p, tail_size=0)
    orig = os.preadv

    def short(fd, bufs, off):
        (mv,) = bufs
        return orig(fd, [mv[:1000]], off)

    monkeypatch.setattr(source_mod.os, "preadv", short)
    buf = bytearray(len(PAYLOAD))
    src.read_range_into(0, len(PAYLOAD), buf)
    assert bytes(buf) == PAYLOAD
    buf = np.zeros(len(PAYLOAD) + 64, np.uint8)
    src.read_into([0, 5000, 30000], [5000, 30000, 40000], buf, [64, 5064, 30064])
    assert bytes(buf[64 : 64 + 40000]) == PAYLOAD[:40000]
    src.close()


def test_read_into_merges_adjacent_local_ranges(tmp_path, monkeypatch):
    p = tmp_path / "m.bin"
    p.write_bytes(PAYLOAD)
    src = open_source(p, tail_size=0)
    calls = []
    orig = os.preadv
    monkeypatch.setattr(source_mod.os, "preadv", lambda *a: calls.append(a[2]) or orig(*a))
    buf = np.zeros(20000, np.uint8)
    # [100, 200) + [200, 300) adjacent in file and buffer: one call; then a gap in the
    # file ([400, 500)), then adjacent in the file but not in the buffer ([500, 600)).
    src.read_into([100, 200, 400, 500], [200, 300, 500, 600], buf, [0, 100, 300, 1000])
    assert calls == [100, 400, 500]
    assert bytes(buf[:200]) == PAYLOAD[100:300]
    assert bytes(buf[300:400]) == PAYLOAD[400:500]
    assert bytes(buf[1000:1100]) == PAYLOAD[500:600]
    src.close()


# --------------------------------------------------------------------------- threads


def test_thread_buffer_reuse_and_nesting():
    a = take_thread_buffer(1000)
    assert a.nbytes >= 1000 and a.format == "B"
    b = take_thread_buffer(10)  # nested: not the same memory
    assert b.obj is not a.obj
    give_thread_buffer(b)
    give_thread_buffer(a)
    assert take_thread_buffer(500).obj is a.obj  # the last one given back is reused
    give_thread_buffer(a)
    big = take_thread_buffer(a.nbytes + 1)  # larger than the thread's buffer: a new one
    assert big.obj is not a.obj and big.nbytes > a.nbytes
    give_thread_buffer(big)
    other = []
    th = threading.Thread(target=lambda: other.append(take_thread_buffer(100)))
    th.start()
    th.join()
    assert other[0].obj is not big.obj  # per thread
    huge = memoryview(np.empty(THREAD_BUFFER_MAX + 1, np.uint8))
    give_thread_buffer(huge)  # too large to keep
    assert take_thread_buffer(10).obj is not huge.obj


@pytest.fixture(scope="module")
def thread_file(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """Chunks from a few bytes to > THREAD_BUFFER_MAX (the pooled-buffer route)."""
    rng = np.random.default_rng(9)
    arrays = {
        "small": (np.cumsum(rng.normal(size=(40, 30, 24)), axis=2).astype(np.float32), (4, 5, 24)),
        "big": (rng.normal(size=(2, 300_000)), (1, 200_000)),
    }
    path = tmp_path_factory.mktemp("thr") / "thr.om"
    with OmWriter(path) as w:
        refs = [w.write_array(v, chunks=c, name=n) for n, (v, c) in arrays.items()]
        w.close(w.write_group(name="", children=refs))
    with OmFile(path) as f:
        starts, stops = f["big"].chunk_ranges([0])
        assert int(stops[0] - starts[0]) > THREAD_BUFFER_MAX
    return path, {n: v for n, (v, _) in arrays.items()}


def test_threads_fast_path(thread_file):
    path, ref = thread_file
    errors: list[str] = []
    barrier = threading.Barrier(8)
    with OmFile(path) as f:
        small, big = f["small"], f["big"]

        def work(seed: int) -> None:
            rng = np.random.default_rng(seed)
            barrier.wait()
            for r in range(60):
                i, j = int(rng.integers(40)), int(rng.integers(30))
                t = int(rng.integers(24))
                checks = [
                    (small[i, j, :], ref["small"][i, j, :]),
                    (small[i, j, t], ref["small"][i, j, t]),
                    (small[:, j, t], ref["small"][:, j, t]),
                ]
                if r % 10 == 0:
                    k = int(rng.integers(300_000 - 10))
                    checks.append((big[1, k : k + 10], ref["big"][1, k : k + 10]))
                for got, exp in checks:
                    if not np.array_equal(got, exp):
                        errors.append(f"thread {seed} round {r}: wrong values")

        with ThreadPoolExecutor(8) as ex:
            for fut in [ex.submit(work, s) for s in range(8)]:
                fut.result()
    assert not errors, errors[:3]


def test_buffers_released_after_errors(om_file, monkeypatch):
    """A failing read gives the thread's buffer back (the next read reuses it)."""
    path, ref = om_file
    with OmFile(path) as f:
        a = f["f32"]
        a[0, 0, 0]
        held = layout._THREAD.buf
        assert held is not None

        def boom(*args, **kw):
            raise OSError("disk on fire")

        monkeypatch.setattr(type(f.source), "read_range_into", boom)
        with pytest.raises(OSError, match="fire"):
            a[1, 1, 1]
        assert layout._THREAD.buf is held
        monkeypatch.undo()
        np.testing.assert_array_equal(a[1, 1, 1], ref["f32"][1, 1, 1])


# --------------------------------------------------------------------------- native preads


@pytest.mark.skipif(os.name != "posix", reason="the native pread loop is POSIX only")
@settings(max_examples=100, deadline=None)
@given(data=st.data())
def test_read_into_many_ranges_native(tmp_path_factory, data):
    """Eight or more ranges on a local file go through one native pread loop:
    same bytes as slicing the file, ranges in the tail still come from memory."""
    p = tmp_path_factory.mktemp("pr") / "r.bin"
    p.write_bytes(PAYLOAD)
    tail = data.draw(st.sampled_from([0, 4096]))
    src = open_source(p, tail_size=tail)
    n = data.draw(st.integers(1, 40))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(PAYLOAD)), min_size=2 * n, max_size=2 * n)))
    starts, stops = cuts[0::2], cuts[1::2]
    gaps = data.draw(st.lists(st.integers(0, 70), min_size=n, max_size=n))
    pos, p0 = [], 0
    for a, b, g in zip(starts, stops, gaps, strict=True):
        pos.append(p0 + g)
        p0 += g + b - a
    buf = np.zeros(p0 + 1, np.uint8)
    src.read_into(starts, stops, buf, pos)
    for a, b, q in zip(starts, stops, pos, strict=True):
        assert bytes(buf[q : q + b - a]) == PAYLOAD[a:b]
    src.close()


@pytest.mark.skipif(os.name != "posix", reason="the native pread loop is POSIX only")
def test_read_into_many_ranges_truncated(tmp_path):
    p = tmp_path / "t.bin"
    p.write_bytes(PAYLOAD)
    src = open_source(p, tail_size=0)
    with open(p, "r+b") as fh:
        fh.truncate(30000)
    starts = list(range(0, 40000, 4000))
    stops = [a + 100 for a in starts]
    buf = np.zeros(len(starts) * 100, np.uint8)
    with pytest.raises(OmFormatError, match=r"read of \[32000, 32100\).*truncated"):
        src.read_into(starts, stops, buf, [100 * k for k in range(len(starts))])
    src.close()
    with pytest.raises(ValueError, match="outside the buffer"):
        _native.pread_ranges(0, np.array([0]), np.array([10]), np.array([0]), bytearray(5))


# --------------------------------------------------------------------------- reopening


def test_reopen_adopts_tail_metadata(tmp_path):
    """A file opened again (same size, same tail bytes) takes over the records, LUT
    and array context parsed by the previous open; a changed tail does not."""
    data = np.cumsum(np.random.default_rng(3).normal(size=(30, 20, 50)), axis=2)
    data = data.astype(np.float32)
    path = tmp_path / "r.om"
    with OmWriter(path) as w:
        w.close(w.write_array(data, chunks=(3, 4, 10), name="x"))
    with OmFile(path) as f:
        np.testing.assert_array_equal(f.root[1, 2, :], data[1, 2, :])
    with OmFile(path) as f:
        core = f._core
        assert core.adopted is not None
        lut = f.root._lut
        assert lut.complete
        np.testing.assert_array_equal(f.root[...], data)
        np.testing.assert_array_equal(f.root[:, :, 7], data[:, :, 7])
    # same size, another name in the root record: the tail differs, nothing adopted
    with OmWriter(tmp_path / "o.om") as w:
        w.close(w.write_array(data, chunks=(3, 4, 10), name="y"))
    raw = (tmp_path / "o.om").read_bytes()
    assert len(raw) == path.stat().st_size
    path.write_bytes(raw)
    with OmFile(path) as f:
        assert f._core.adopted is None
        assert f.root.name == "y"
        np.testing.assert_array_equal(f.root[...], data)
    # another size: another identity
    other = (data[::-1] * 2).astype(np.float32)
    with OmWriter(path) as w:
        w.close(w.write_array(other[:, :, :40], chunks=(3, 4, 10), name="x"))
    with OmFile(path) as f:
        assert f._core.adopted is None
        np.testing.assert_array_equal(f.root[...], other[:, :, :40])


def test_point_reads_one_chunk(tmp_path, monkeypatch):
    """Keys of ints and whole axes that fit one chunk take the point-read path
    (decode_box1) and give what numpy gives; anything else falls through."""
    data = np.cumsum(np.random.default_rng(4).normal(size=(7, 9, 40)), axis=2).astype(np.float32)
    path = tmp_path / "p.om"
    with OmWriter(path) as w:
        w.close(w.write_array(data, chunks=(2, 3, 40), name="x"))
    calls = []
    real = _native.decode_box1
    monkeypatch.setattr(_native, "decode_box1", lambda *a: calls.append(a[4]) or real(*a))
    boxes = []  # keys that went on to box planning (box_key): not the point path
    real_box = reader_mod.box_key
    monkeypatch.setattr(reader_mod, "box_key", lambda *a: boxes.append(a[0]) or real_box(*a))
    with OmFile(path) as f:
        a = f.root
        for key in [(1, 2, slice(None)), (-1, -9, slice(None)), (6, 8, 39), (0, 0, -40)]:
            np.testing.assert_array_equal(a[key], data[key])
        assert len(calls) == 4 and boxes == []
        for key in [(slice(None), 2, 3), (1, slice(0, 3), 4), (np.int64(1), 2, 3), (1, 2)]:
            np.testing.assert_array_equal(a[key], data[key])
        assert len(boxes) == 4
        for key in [(7, 0, 0), (0, -10, 0), (0, 0, 40)]:
            with pytest.raises(IndexError):
                a[key]


@pytest.mark.parametrize("chunks", [(1, 9, 8), (2, 3, 8), (1, 1, 40), (7, 9, 8), (3, 9, 40)])
def test_point_reads_run_of_chunks(tmp_path, monkeypatch, chunks):
    """Keys of ints and whole axes whose chunks form one run of consecutive indices
    take the run path (decode_run, one read); ints on a split axis below a split
    whole axis do not. Same values as numpy either way, also on a reopen (shared
    complete LUT and its cached chunk lengths)."""
    data = np.cumsum(np.random.default_rng(5).normal(size=(7, 9, 40)), axis=2).astype(np.float32)
    path = tmp_path / "run.om"
    with OmWriter(path) as w:
        w.close(w.write_array(data, chunks=chunks, name="x"))
    calls = []
    real = _native.decode_run
    monkeypatch.setattr(_native, "decode_run", lambda *a: calls.append(a[4]) or real(*a))
    keys = [
        (1, 2, slice(None)),
        (-1, -9, slice(None)),
        (0, slice(None), slice(None)),
        (slice(None), 3, slice(None)),
        (slice(None), slice(None), 5),
        (slice(None), slice(None), slice(None)),
        (6, slice(None), -1),
    ]
    for _ in range(2):  # second round: a reopen that adopts the first open's metadata
        with OmFile(path) as f:
            a = f.root
            for key in keys:
                calls.clear()
                got = a[key]
                np.testing.assert_array_equal(got, data[key])
                assert got.shape == data[key].shape and got.dtype == data.dtype
                grid = [-(-n // c) for n, c in zip(data.shape, chunks, strict=True)]
                split = [isinstance(k, slice) and g > 1 for k, g in zip(key, grid, strict=True)]
                after = split.index(True) if any(split) else len(key)
                run = any(split) and all(
                    isinstance(k, slice) or g == 1
                    for k, g in zip(key[after:], grid[after:], strict=True)
                )
                assert len(calls) == int(run), (key, calls)


def test_decode_run_long_and_beyond_shared_indices(tmp_path, monkeypatch):
    """decode_run with chunk indices beyond the shared 0, 1, 2, ... run (capped)
    falls back to explicit indices and still decodes the right chunks."""
    data = np.arange(3 * 400, dtype=np.int32).reshape(3, 400)
    path = tmp_path / "long.om"
    with OmWriter(path) as w:
        w.close(w.write_array(data, chunks=(1, 1), name="x"))
    monkeypatch.setattr(_native, "_IOTA_CAP", 16)
    monkeypatch.setattr(_native, "_iota", (np.empty(0, np.int64), _native.ffi.NULL))
    with OmFile(path) as f:
        for i in (0, 2, -1):
            np.testing.assert_array_equal(f.root[i, :], data[i, :])


@pytest.mark.parametrize(
    "dtype,kw",
    [
        (np.float32, {}),  # fpx_xor_2d
        (np.float32, {"scale_factor": 100.0}),  # pfor_delta_2d_int16
        (np.int32, {}),  # pfor_delta_2d
        (np.float64, {}),  # fpx_xor_2d on float64: whole chunks (no prefix)
    ],
)
def test_point_reads_read_chunk_prefix(tmp_path, monkeypatch, dtype, kw):
    """Point reads of large chunks read only the prefix a partial decode needs;
    a prefix that proves too short (noisy first rows, constant later ones) is
    completed and decoded again. Every column equals numpy."""
    rng = np.random.default_rng(7)
    data = rng.normal(size=(12, 10, 300)) * 1000
    data[4:8] = 1.0  # the first chunk's later rows compress to nothing: estimates fall short
    if kw:
        data = data / 100  # within int16 at scale_factor 100
    data = (np.round(data) if dtype is np.int32 else np.round(data, 2)).astype(dtype)
    path = tmp_path / "prefix.om"
    with OmWriter(path) as w:
        w.close(w.write_array(data, chunks=(8, 10, 300), name="x", **kw))
    reads, decodes = [], []
    real_read = source_mod.Source.read_range_into
    real_decode = _native.decode_box1

    def spy_read(self, a, b, buf, pos=0):
        reads.append(b - a)
        return real_read(self, a, b, buf, pos)

    monkeypatch.setattr(source_mod.Source, "read_range_into", spy_read)
    monkeypatch.setattr(_native, "decode_box1", lambda *a: decodes.append(a[7]) or real_decode(*a))
    with OmFile(path) as f:
        a = f.root
        exp_all = a._read_general(a._read_ctx(), ..., None)
        if not kw:
            np.testing.assert_array_equal(exp_all, data)
        retried = partial = 0
        for i in range(12):
            for j in range(10):
                reads.clear()
                decodes.clear()
                got = a[i, j, :]
                np.testing.assert_array_equal(got, exp_all[i, j, :])
                chunk = len(reads) == 1 and len(decodes) == 1 and decodes[0] == reads[0]
                partial += sum(reads[:1]) < max(
                    a.chunk_ranges([i // 8])[1] - a.chunk_ranges([i // 8])[0]
                )
                retried += len(decodes) == 2
                assert chunk or len(decodes) == 2
        if dtype is np.float64:
            assert partial == 0 and retried == 0
        else:
            assert partial > 0 and retried > 0


def test_decode_box1_reused_arguments(tmp_path):
    """decode_box1 keeps the last counts and read buffer of the thread between calls:
    other counts, other decoders (decode_box / decode_run rewrite the counts) and
    new contents in the same buffer must all be taken into account."""
    rng = np.random.default_rng(9)
    data = rng.integers(-1000, 1000, size=(6, 5, 40)).astype(np.int32)
    path = tmp_path / "b1.om"
    with OmWriter(path) as w:
        w.close(w.write_array(data, chunks=(3, 5, 40), name="x"))
    with OmFile(path) as f:
        a = f.root
        for key in [
            (0, 1, slice(None)),
            (1, 1, slice(None)),  # same counts, another row
            (slice(None), 2, slice(None)),  # a run (decode_run rewrites the counts)
            (2, 4, slice(None)),
            (slice(0, 2), 1, slice(None)),  # a box in one chunk (decode_box)
            (5, 0, slice(None)),
            (4, slice(None), 3),  # other counts
            (5, 0, 7),
            (3, 3, slice(None)),
        ]:
            np.testing.assert_array_equal(a[key], data[key])
    int32 = _native.array_type_for(np.dtype(np.int32))
    codec = _native.ArrayCodec(int32, 2, (4,), (4,), 1.0, 0.0)  # pfor_delta_2d
    for values in ([1, 2, 3, 4], [9, -9, 0, 5]):
        enc = _native.encode_chunk(np.array(values, np.int32), 2)
        raw = bytes(enc)
        mv = take_thread_buffer(len(raw))
        try:
            mv[: len(raw)] = raw  # same buffer object, new contents
            out = np.empty(2, np.int32)
            _native.decode_box1(codec, out, [1], [2], 0, mv, 0, len(raw))
            assert out.tolist() == values[1:3]
        finally:
            give_thread_buffer(mv)
