"""OmFile / nodes: fixtures vs. manifest and .npy, numpy keys, chunk API, I/O planning,
remote sources, pickling, and bad input."""

from __future__ import annotations

import io
import os
import pickle
import struct
import subprocess
import sys
import threading
from pathlib import Path

import fsspec
import numpy as np
import omfiles
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xarray_om import _native
from xarray_om.errors import OmCodecError, OmError, OmFormatError
from xarray_om.format import reader as reader_mod
from xarray_om.format.layout import Grid, normalize_key, plan_reads
from xarray_om.format.reader import MAX_DEPTH, OmArray, OmFile, OmGroup, OmScalar
from xarray_om.format.records import encode_array_record, encode_scalar_record, encode_trailer
from xarray_om.format.writer import OmWriter

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "fixtures"


def _manifest_entries():
    import json

    if not (FIXTURES / "manifest.json").is_file():
        return []
    return json.loads((FIXTURES / "manifest.json").read_text())["files"]


ENTRIES = _manifest_entries()
ENTRY_IDS = [e["file"] for e in ENTRIES]


def _rel(path: str) -> str:
    # manifest paths: "/" + names joined by "/" (root "" gives "/", children "//x")
    return "/".join(path.split("/")[2:])


def _walk_manifest(node):
    yield node
    for c in node.get("children", []):
        yield from _walk_manifest(c)


def _compare_tree(ours, ref, entry):
    assert ours.name == ref["name"]
    assert ours.kind == ref["kind"]
    assert ours.record_offset == ref["record_offset"]
    assert ours.record_size == ref["record_size"]
    if ref is not entry["root"]:
        assert ours.path == _rel(ref["path"])
    if ref["kind"] == "array":
        assert isinstance(ours, OmArray)
        assert str(ours.dtype) == ref["dtype"]
        assert ours.shape == tuple(ref["shape"])
        assert ours.chunks == tuple(ref["chunks"])
        assert ours.compression == ref["compression"]
        assert ours.scale_factor == ref["scale_factor"]
        assert ours.add_offset == ref["add_offset"]
        assert ours.n_chunks == ref["n_chunks"]
        assert ours.ndim == len(ref["shape"])
        assert ours.size == int(np.prod(ref["shape"]))
        assert ours.chunk_grid == tuple(
            -(-d // c) for d, c in zip(ref["shape"], ref["chunks"], strict=True)
        )
        cont = ref.get("container")
        if cont and "lut" in cont:
            starts, stops = ours.chunk_ranges(np.arange(ours.n_chunks))
            assert starts.dtype == np.uint64
            assert starts.tolist() == cont["lut"][:-1]
            assert stops.tolist() == cont["lut"][1:]
        if cont:
            assert ours.nbytes_compressed == cont["data_end"] - cont["data_start"]
            s, e = ours.chunk_ranges([0, ours.n_chunks - 1])
            assert [int(s[0]), int(e[0])] == cont["first_chunk_range"]
            assert [int(s[1]), int(e[1])] == cont["last_chunk_range"]
    elif ref["kind"] == "scalar":
        assert isinstance(ours, OmScalar)
        v = ours.value
        assert repr(v) == ref["value_repr"]
        assert (
            f"{type(v).__module__}.{type(v).__name__}".replace("builtins.", "")
            == ref["python_type"]
        )
        assert (ours.dtype is None) == (ref["dtype"] == "string")
    else:
        assert isinstance(ours, OmGroup)
    assert ours.child_names == [c["name"] for c in ref["children"]]
    for oc, rc in zip(ours.children, ref["children"], strict=True):
        _compare_tree(oc, rc, entry)
    expected_attrs = {}
    for c in ref["children"]:
        if c["kind"] == "scalar" and c["name"] not in expected_attrs:
            expected_attrs[c["name"]] = c["value_repr"]
    assert {k: repr(v) for k, v in ours.attrs.items()} == expected_attrs


def _expected(entry):
    out = {}
    for ref in _walk_manifest(entry["root"]):
        if ref["kind"] == "array":
            key = "" if ref is entry["root"] else _rel(ref["path"])
            out[key] = np.load(FIXTURES / ref["expected_npy"])
    return out


def _node(f, key):
    return f.root if key == "" else f[key]


def _assert_same(got, exp):
    assert got.dtype == exp.dtype
    assert got.shape == exp.shape
    np.testing.assert_array_equal(got, exp, strict=True)


# --------------------------------------------------------------------------- fixtures


@pytest.mark.parametrize("entry", ENTRIES, ids=ENTRY_IDS)
def test_fixture_tree(entry):
    with OmFile(FIXTURES / entry["file"]) as f:
        assert f.version == (3 if entry["format"] == "v3" else int(entry["format"][-1]))
        assert f.size == entry["size"]
        _compare_tree(f.root, entry["root"], entry)


@pytest.mark.parametrize("entry", ENTRIES, ids=ENTRY_IDS)
def test_fixture_data(entry):
    with OmFile(FIXTURES / entry["file"]) as f:
        for key, exp in _expected(entry).items():
            arr = _node(f, key)
            _assert_same(arr[...], exp)
            _assert_same(arr.read(), exp)
            _assert_same(np.asarray(arr), exp)
            # one chunk at a time through the low-level API
            starts, stops = arr.chunk_ranges(np.arange(arr.n_chunks))
            data = f.source.read_ranges(list(zip(starts.tolist(), stops.tolist(), strict=True)))
            for i, raw in enumerate(data):
                _assert_same(arr.decode_chunk(i, raw), exp[arr.chunk_slices(i)])


def test_fixture_data_remote_and_filelike():
    fs = MemoryFileSystem()
    base = f"/test_reader/{os.getpid()}"
    for entry in ENTRIES:
        raw = (FIXTURES / entry["file"]).read_bytes()
        fs.pipe(f"{base}/{entry['file']}", raw)
        sources = [f"memory://{base}/{entry['file']}", (fs, f"{base}/{entry['file']}"), raw]
        sources.append(io.BytesIO(raw))
        for src in sources:
            with OmFile(src) as f:
                _compare_tree(f.root, entry["root"], entry)
                for key, exp in _expected(entry).items():
                    _assert_same(_node(f, key)[...], exp)
    fs.rm(base, recursive=True)


def test_paths_and_lookup():
    with OmFile(FIXTURES / "hierarchy.om") as f:
        assert f[""] is f.root
        assert f["level1/level2/level3/leaf"].value == "leaf"
        assert f["/level1/level2/level3/leaf"].value == "leaf"
        assert f.root["level1"]["level2/level3"].path == "level1/level2/level3"
        t = f["temperature_2m"]
        assert t["unit"].value == "°C"
        assert t.attrs["coordinates"] == "lat lon time"
        assert t.file is f
        assert "temperature_2m" in f.root and "nope" not in f.root
        with pytest.raises(KeyError, match="nope"):
            f["scalars/nope"]
        with pytest.raises(KeyError):
            f.root["level1/nope/x"]
        assert f.root.attrs[""] == np.int16(7)
        assert f.root.attrs["title"] == "created by make_fixtures.py"
        assert "scalars" not in f.root.attrs  # groups are not attributes
    with OmFile(FIXTURES / "hierarchy_shared_child.om") as f:
        # a shared child appears under each parent, with its own path
        assert f["g1/a/shared_attr"].path == "g1/a/shared_attr"
        assert f["g2/shared_attr"].record_offset == f["g1/shared_attr"].record_offset


def test_legacy_root():
    for name in ("legacy_v1.om", "legacy_v2_fpx.om", "legacy_v2_int16.om", "legacy_v2_log.om"):
        with OmFile(FIXTURES / name) as f:
            r = f.root
            assert isinstance(r, OmArray) and r.name == "" and r.children == []
            assert r.dtype == np.float32 and r.add_offset == 0.0 and r.ndim == 2
            exp = np.load(FIXTURES / name.replace(".om", ".root.npy"))
            _assert_same(r[3:17, 5:29], exp[3:17, 5:29])


# --------------------------------------------------------------------------- indexing


def _numpy_outer(full, key_items):
    """Apply per-axis keys (int / slice / index list) to ``full`` with outer semantics."""
    out = full
    for axis in reversed(range(len(key_items))):
        k = key_items[axis]
        if isinstance(k, slice):
            out = out[(slice(None),) * axis + (k,)]
        else:
            k = np.asarray(k)
            if k.dtype == bool:
                k = np.flatnonzero(k)
            out = np.take(out, k.astype(np.int64) if k.ndim else k, axis=axis)
    return out


@st.composite
def _axis_key(draw, n):
    kind = draw(st.sampled_from(["int", "slice", "slice", "list", "mask", "full"]))
    if kind == "int":
        return draw(st.integers(-n, n - 1))
    if kind == "full":
        return slice(None)
    if kind == "slice":
        start = draw(st.one_of(st.none(), st.integers(-n - 2, n + 2)))
        stop = draw(st.one_of(st.none(), st.integers(-n - 2, n + 2)))
        step = draw(st.one_of(st.none(), st.sampled_from([1, 2, 3, 5, -1, -2, -4])))
        return slice(start, stop, step)
    if kind == "mask":
        return np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    return draw(st.lists(st.integers(-n, n - 1), min_size=0, max_size=6))


FULL_ARRAYS = [
    ("shape_1d.om", "", "shape_1d.data.npy"),
    ("shape_2d.om", "", "shape_2d.data.npy"),
    ("shape_3d.om", "", "shape_3d.data.npy"),
    ("shape_4d.om", "", "shape_4d.data.npy"),
    ("many_chunks.om", "b2d", "many_chunks.b2d.npy"),
    ("legacy_v2_fpx.om", "", "legacy_v2_fpx.root.npy"),
    ("dtype_int8__pfor_delta_2d.om", "", "dtype_int8__pfor_delta_2d.data.npy"),
    ("openmeteo_timeseries_chunk.om", "", "openmeteo_timeseries_chunk.root.npy"),
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), which=st.sampled_from(FULL_ARRAYS), ellipsis=st.booleans())
def test_random_keys_match_numpy(data, which, ellipsis):
    f = _open_cached(which[0])
    arr = _node(f, which[1])
    full = _full_cached(which)
    items = [data.draw(_axis_key(n)) for n in arr.shape]
    expected = _numpy_outer(full, items)
    key = tuple(items)
    if ellipsis:
        # replace trailing full slices by "..."
        k = len(items)
        while k > 0 and isinstance(items[k - 1], slice) and items[k - 1] == slice(None):
            k -= 1
        key = (*items[:k], Ellipsis)
    got = arr[key]
    assert isinstance(got, np.ndarray)
    _assert_same(got, expected)


_OPEN: dict = {}
_FULL: dict = {}


def _open_cached(name):
    if name not in _OPEN:
        _OPEN[name] = OmFile(FIXTURES / name)
    return _OPEN[name]


def _full_cached(which):
    if which not in _FULL:
        _FULL[which] = np.load(FIXTURES / which[2])
    return _FULL[which]


def test_key_forms_and_errors():
    f = OmFile(FIXTURES / "shape_3d.om")
    a = f.root
    full = np.load(FIXTURES / "shape_3d.data.npy")
    got = a[1, 2, 3]
    assert isinstance(got, np.ndarray) and got.shape == () and got == full[1, 2, 3]
    _assert_same(a[np.int64(-1)], full[-1])
    _assert_same(a[..., np.array(2)], full[..., 2])
    _assert_same(a[[0, 0, 8], ..., [1, -1]], full[[0, 0, 8]][:, :, [1, -1]])
    _assert_same(a[np.array([], np.int64)], full[:0])
    _assert_same(a[[]], full[:0])
    _assert_same(a[np.array([3, 1], np.uint16)], full[[3, 1]])
    _assert_same(a[5:2], full[5:2])
    _assert_same(a[::-1, ::-3, 1::4], full[::-1, ::-3, 1::4])
    for bad in [(0, 0, 0, 0), 9, -10, (slice(None), 11), [9], [-10], np.array([[1]])]:
        with pytest.raises(IndexError):
            a[bad]
    with pytest.raises(IndexError):
        a[..., ...]
    with pytest.raises(IndexError):
        a[None]
    with pytest.raises(IndexError):
        a[1.5]
    with pytest.raises(IndexError):
        a[np.array([True, False])]
    with pytest.raises(IndexError):
        a[np.array([0.5])]
    with pytest.raises(IndexError):
        a[np.array([10], np.uint8)]
    with pytest.raises(ValueError):
        a[::0]
    with pytest.raises(IndexError):
        a[object()]
    with pytest.raises(TypeError, match="name or path"):
        OmFile(FIXTURES / "hierarchy.om").root[0]


def test_out_parameter_and_empty_reads(monkeypatch):
    f = OmFile(FIXTURES / "shape_2d.om")
    a = f.root
    full = np.load(FIXTURES / "shape_2d.data.npy")
    out = np.zeros((3, full.shape[1]), full.dtype)
    assert a.read((slice(2, 5), ...), out=out) is out
    _assert_same(out, full[2:5])
    big = np.zeros((full.shape[1], 6), full.dtype)
    view = big.T[:3]  # not C-contiguous
    assert a.read((slice(2, 5), ...), out=view) is view
    _assert_same(big.T[:3].copy(), full[2:5])
    with pytest.raises(ValueError, match="out has shape"):
        a.read(..., out=np.zeros((2, 2), full.dtype))
    with pytest.raises(ValueError, match="out has shape"):
        a.read((slice(2, 5), ...), out=np.zeros((3, full.shape[1]), np.int8))

    def no_io(*args, **kw):
        raise AssertionError("I/O for an empty selection")

    monkeypatch.setattr(type(f.source), "read_into", no_io)
    monkeypatch.setattr(type(f.source), "read_ranges", no_io)
    assert a[3:3].shape == (0, full.shape[1])
    assert a[[], 2].shape == (0,)
    assert a[:, 5:1].dtype == full.dtype


def test_io_settings_do_not_change_results():
    exp = np.load(FIXTURES / "many_chunks.b2d.npy")
    for io_max, io_merge in [(1, 0), (100, 10), (10**9, 10**9), (65536, 512)]:
        with OmFile(FIXTURES / "many_chunks.om", io_size_max=io_max, io_size_merge=io_merge) as f:
            _assert_same(f["b2d"][...], exp)
            _assert_same(f["b2d"][::7, 3::11], exp[::7, 3::11])
    with pytest.raises(ValueError):
        OmFile(FIXTURES / "many_chunks.om", io_size_max=0)


def test_concurrent_reads_share_lut():
    f = OmFile(FIXTURES / "many_chunks.om", io_size_max=64)
    a = f["b2d"]
    exp = np.load(FIXTURES / "many_chunks.b2d.npy")
    errors = []

    def work(i):
        try:
            for j in range(20):
                r = (i * 7 + j * 13) % exp.shape[0]
                _assert_same(a[r, :], exp[r, :])
                _assert_same(a[:, r % exp.shape[1]], exp[:, r % exp.shape[1]])
        except Exception as e:  # pragma: no cover
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# --------------------------------------------------------------------------- layout


def test_grid_geometry():
    g = Grid((9, 11, 13), (4, 5, 6))
    assert g.grid == (3, 3, 3) and g.n_chunks == 27
    for i in range(27):
        c = g.chunk_coords(i)
        assert g.chunk_index(c) == i
        sl = g.chunk_slices(i)
        assert all(s.start == k * ch for s, k, ch in zip(sl, c, (4, 5, 6), strict=True))
        assert all(s.stop <= d for s, d in zip(sl, (9, 11, 13), strict=True))
    assert g.chunk_slices(26) == (slice(8, 9), slice(10, 11), slice(12, 13))
    assert g.chunk_shape(26) == (1, 1, 1)
    for bad in (-1, 27):
        with pytest.raises(IndexError):
            g.chunk_coords(bad)
    with pytest.raises(IndexError):
        g.chunk_index((3, 0, 0))
    with pytest.raises(IndexError):
        g.chunk_index((0, 0))
    sel = normalize_key((slice(3, 5), [10, 0, 10], 7), g.dims)
    assert sel.shape == (2, 3) and sel.full_shape == (2, 3, 1)
    got = g.touched(sel).tolist()
    want = sorted(g.chunk_index((a, b, c)) for a in range(0, 2) for b in (0, 2) for c in (1,))
    assert got == want


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 3000), min_size=1, max_size=60),
    gaps=st.data(),
    merge=st.integers(0, 2000),
    io_max=st.integers(1, 20000),
)
def test_plan_reads_properties(sizes, gaps, merge, io_max):
    g = gaps.draw(st.lists(st.integers(0, 3000), min_size=len(sizes), max_size=len(sizes)))
    starts, stops, pos = [], [], 3
    for s, gap in zip(sizes, g, strict=True):
        pos += gap
        starts.append(pos)
        pos += s
        stops.append(pos)
    starts = np.array(starts, np.int64)
    stops = np.array(stops, np.int64)
    plan = plan_reads(starts, stops, io_size_merge=merge, io_size_max=io_max)
    rs, re_, pos = (
        np.array(x, np.int64) for x in (plan.read_starts, plan.read_stops, plan.read_pos)
    )
    assert (rs[1:] >= re_[:-1]).all()
    lens = re_ - rs
    assert plan.fetched == int(lens.sum())
    # reads are laid out in order, without overlap, at the file offset's alignment
    assert (pos[1:] >= pos[:-1] + lens[:-1]).all() and pos[0] >= 0
    assert ((pos - rs) % 64 == 0).all()
    assert plan.nbytes == int(pos[-1] + lens[-1])
    # every chunk lands inside exactly one read, at its offset in the buffer
    for k in range(len(starts)):
        r = int(np.searchsorted(rs, starts[k], side="right")) - 1
        assert rs[r] <= starts[k] and stops[k] <= re_[r]
        assert int(plan.chunk_off[k]) == pos[r] + starts[k] - rs[r]
        assert int(plan.chunk_len[k]) == stops[k] - starts[k]
    # reads respect the limits: at most io_max unless a single range, gaps <= merge
    for r in range(len(rs)):
        inside = np.flatnonzero((starts >= rs[r]) & (stops <= re_[r]))
        if len(inside) > 1:
            assert re_[r] - rs[r] <= io_max
            assert (starts[inside[1:]] - stops[inside[:-1]] <= merge).all()
    # adjacent reads could not have been merged
    for r in range(len(rs) - 1):
        assert rs[r + 1] - re_[r] > merge or re_[r + 1] - rs[r] > io_max


@settings(max_examples=100, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 500), min_size=1, max_size=40),
    seed=st.integers(0, 2**32 - 1),
    merge=st.integers(0, 600),
    io_max=st.integers(1, 3000),
)
def test_plan_reads_small_and_vector_paths_agree(sizes, seed, merge, io_max):
    from xarray_om.format import layout

    rng = np.random.default_rng(seed)
    gaps = rng.integers(0, 700, size=len(sizes))
    stops = np.cumsum(np.array(sizes) + gaps) + 3
    starts = stops - np.array(sizes)
    small = plan_reads(starts, stops, io_size_merge=merge, io_size_max=io_max)
    saved = layout._SMALL_PLAN
    layout._SMALL_PLAN = 0
    try:
        vector = plan_reads(starts, stops, io_size_merge=merge, io_size_max=io_max)
    finally:
        layout._SMALL_PLAN = saved
    for attr in ("read_starts", "read_stops", "read_pos", "nbytes"):
        assert getattr(small, attr) == getattr(vector, attr)
    assert small.chunk_off.tolist() == vector.chunk_off.tolist()
    assert small.chunk_len.tolist() == vector.chunk_len.tolist()


def test_buffer_pool():
    from xarray_om.format.layout import BufferPool

    pool = BufferPool(max_buffers=2, max_bytes=8 << 20)
    with pool.borrow(1 << 20) as a:
        assert a.nbytes == 1 << 20 and a.ctypes.data % 64 == 0
        with pool.borrow(1 << 20) as b:  # concurrent borrows never share memory
            assert abs(a.ctypes.data - b.ctypes.data) >= 1 << 20
        addr = a.ctypes.data
    with pool.borrow((1 << 20) - 5) as c:  # reused, already faulted
        assert c.ctypes.data in (addr, b.ctypes.data)
    with pytest.raises(RuntimeError), pool.borrow(2 << 20):
        raise RuntimeError("a failed read gives its buffer back")
    assert len(pool._free) == 2 and all(x.nbytes <= 8 << 20 for x in pool._free)
    with pool.borrow(9 << 20) as big:  # above the cap: fresh, not kept
        assert big.nbytes == 9 << 20
    assert all(x.nbytes <= 8 << 20 for x in pool._free)
    with pool.borrow(100) as small:
        assert small.nbytes == 100
    pool.clear()
    assert pool._free == []


def test_plan_reads_rejects_overlap():
    with pytest.raises(OmFormatError, match="overlapping"):
        plan_reads(np.array([10, 15]), np.array([20, 30]), source="x.om")
    n = 100  # the vectorised path
    starts = np.arange(n) * 10
    stops = starts + 10
    stops[50] += 1
    with pytest.raises(OmFormatError, match="overlapping"):
        plan_reads(starts, stops, source="x.om")


def test_lut_groups_loaded_on_demand(tmp_path):
    path = tmp_path / "many.om"
    data = (np.arange(100_000) % 1000).astype(np.int16)
    w = omfiles.OmFileWriter(str(path))
    w.close(w.write_array(data, chunks=[10], compression="pfor_delta_2d", name="x"))
    f = OmFile(path, io_size_max=256, io_size_merge=0)
    a = f.root
    lut = f._core.lut(a._record)
    assert lut.n_groups == -(-10_001 // 64)
    _assert_same(a[5], data[5])
    assert int(lut._have.sum()) == 1
    # chunk 63 needs entry 64: the first entry of group 1
    _assert_same(a[635:640], data[635:640])
    assert lut._have[:2].all() and int(lut._have.sum()) == 2
    _assert_same(a[-3:], data[-3:])
    assert int(lut._have.sum()) == 3
    _assert_same(a[::997], data[::997])
    _assert_same(a[...], data)
    assert lut._complete


def test_legacy_many_chunks_partial_lut(tmp_path):
    """A legacy v2 file with 3000 chunks: LUT entries read on demand, reference-equal."""
    rng = np.random.default_rng(0)
    dims, chunks, sf = (300, 50), (1, 5), 20.0
    data = (rng.normal(size=dims) * 10).astype(np.float32)
    payload, ends = bytearray(), []
    for i in range(0, dims[0], chunks[0]):
        for j in range(0, dims[1], chunks[1]):
            payload += _native.encode_chunk(data[i : i + chunks[0], j : j + chunks[1]], 0, sf)
            ends.append(len(payload))
    header = b"OM\x02\x00" + struct.pack("<f", sf) + struct.pack("<QQQQ", *dims, *chunks)
    path = tmp_path / "legacy.om"
    path.write_bytes(header + np.array(ends, "<u8").tobytes() + bytes(payload) + bytes(128))
    ref = omfiles.OmFileReader.from_path(str(path))
    full = ref[...]
    f = OmFile(path, io_size_max=1024, io_size_merge=0)
    a = f.root
    lut = f._core.lut(a._record)
    _assert_same(a[7, 3:9], full[7, 3:9])  # chunks 71, 72: entries 70..72 only
    assert int(lut._have.sum()) in (1, 2) and not lut._complete
    _assert_same(a[299, :], full[299, :])
    _assert_same(a[:, 49], full[:, 49])
    _assert_same(a[...], full)
    assert lut._complete
    ref.close()


# --------------------------------------------------------------------------- remote


class CountingMemFS(MemoryFileSystem):
    protocol = "countmem2"
    calls: list = []  # noqa: RUF012

    def size(self, path):
        type(self).calls.append("size")
        return super().size(path)

    def cat_file(self, path, start=None, end=None, **kw):
        type(self).calls.append("cat_file")
        return super().cat_file(path, start=start, end=end, **kw)

    def cat_ranges(self, paths, starts, ends, **kw):
        type(self).calls.append("cat_ranges")
        return [
            MemoryFileSystem.cat_file(self, p, start=s, end=e)
            for p, s, e in zip(paths, starts, ends, strict=True)
        ]


def _big_file(tmp_path) -> tuple[Path, np.ndarray]:
    rng = np.random.default_rng(1)
    data = rng.normal(size=(40, 50, 48)).astype(np.float32)
    path = tmp_path / "big.om"
    w = omfiles.OmFileWriter(str(path))
    arr = w.write_array(data, chunks=[4, 5, 48], compression="fpx_xor_2d", name="t")
    unit = w.write_scalar("K", name="unit")
    w.close(w.write_group("", children=[arr, unit]))
    assert path.stat().st_size > 3 * 65536
    return path, data


def test_remote_request_counts(tmp_path):
    path, data = _big_file(tmp_path)
    fs = CountingMemFS()
    rpath = f"/counting/{os.getpid()}/big.om"
    fs.pipe(rpath, path.read_bytes())
    CountingMemFS.calls.clear()
    f = OmFile((fs, rpath))
    a = f["t"]
    assert a.shape == data.shape and f.root.attrs == {"unit": "K"}
    assert CountingMemFS.calls == ["size", "cat_file"]  # size + tail
    CountingMemFS.calls.clear()
    _assert_same(a[0, 0, :], data[0, 0, :])  # chunk 0 far from the tail
    assert CountingMemFS.calls == ["cat_file"]  # LUT is in the tail: one data request
    CountingMemFS.calls.clear()
    _assert_same(a[:, 7, 3], data[:, 7, 3])
    assert CountingMemFS.calls == ["cat_ranges"]  # several ranges, one batched call
    fs.rm(rpath)


def test_s3(request, tmp_path):
    try:
        s3 = request.getfixturevalue("s3")
    except pytest.FixtureLookupError:
        pytest.skip("the `s3` fixture (SeaweedFS server) is not provided by tests/conftest.py yet")
    import s3fs

    path, data = _big_file(tmp_path)
    fs = s3fs.S3FileSystem(**s3.storage_options)
    key = f"{s3.bucket}/big.om"
    fs.put(str(path), key)
    for src in (f"s3://{key}", (fs, key)):
        so = s3.storage_options if isinstance(src, str) else None
        with OmFile(src, storage_options=so) as f:
            a = f["t"]
            _assert_same(a[...], data)
            _assert_same(a[3, 4, :], data[3, 4, :])
            _assert_same(a[::3, [1, 40], 7], data[::3][:, [1, 40], 7])
            clone = pickle.loads(pickle.dumps(a))
            _assert_same(clone[5:9, 2], data[5:9, 2])
    # a partial upload (no trailer) is rejected
    fs.pipe(f"{s3.bucket}/partial.om", path.read_bytes()[:100_000])
    with pytest.raises(OmFormatError, match="trailer"):
        OmFile(f"s3://{s3.bucket}/partial.om", storage_options=s3.storage_options)


# --------------------------------------------------------------------------- pickling


def test_pickle_in_process():
    f = OmFile(FIXTURES / "hierarchy.om")
    t = f["temperature_2m"]
    exp = np.load(FIXTURES / "hierarchy.temperature_2m.npy")
    blob = pickle.dumps(t)
    assert len(blob) < 1000
    t2 = pickle.loads(blob)
    assert t2.path == "temperature_2m" and t2.shape == exp.shape
    _assert_same(t2[1:3], exp[1:3])
    assert t2.attrs["unit"] == "°C"
    f2 = pickle.loads(pickle.dumps(f))
    assert f2.root.child_names == f.root.child_names
    s = pickle.loads(pickle.dumps(f["scalars/string_unicode"]))
    assert s.value == "Zürich ☀ 東京"
    # copies restored in one process share one opened file (and its LUT cache)
    a = pickle.loads(pickle.dumps(t))
    b = pickle.loads(pickle.dumps(t))
    assert a.file._core is b.file._core
    # closing the original does not break restored copies
    f.close()
    with pytest.raises(ValueError, match="closed"):
        f.root  # noqa: B018
    _assert_same(a[...], exp)


def test_pickle_filelike_is_refused():
    f = OmFile(io.BytesIO((FIXTURES / "read_test.om").read_bytes()))
    with pytest.raises(TypeError, match="file-like"):
        pickle.dumps(f.root)


def test_dask_tokenize_deterministic():
    from dask.base import tokenize

    f1 = OmFile(FIXTURES / "hierarchy.om")
    f2 = OmFile(FIXTURES / "hierarchy.om")
    assert tokenize(f1) == tokenize(f2)
    assert tokenize(f1["lat"]) == tokenize(f2["lat"])
    assert tokenize(f1["lat"]) != tokenize(f1["lon"])
    assert tokenize(f1) != tokenize(OmFile(FIXTURES / "shape_1d.om"))
    # in-memory bytes: same bytes, same token; different bytes of the same size differ
    raw = (FIXTURES / "read_test.om").read_bytes()
    assert tokenize(OmFile(raw).root) == tokenize(OmFile(bytes(raw)).root)
    other = raw[:-30] + b"x" + raw[-29:]  # "data" -> "daxa": same size, other bytes
    assert tokenize(OmFile(raw).root) != tokenize(OmFile(other).root)


_CHILD = r"""
import pickle, sys
import numpy as np
from dask.base import tokenize
node = pickle.loads(sys.stdin.buffer.read())
out = {"token": tokenize(node), "data": node[...], "col": node[1, :, 2], "unit": node.attrs["unit"]}
sys.stdout.buffer.write(pickle.dumps(out))
"""


def test_pickle_round_trip_in_subprocess():
    from dask.base import tokenize

    f = OmFile(FIXTURES / "hierarchy.om")
    t = f["temperature_2m"]
    exp = np.load(FIXTURES / "hierarchy.temperature_2m.npy")
    r = subprocess.run(
        [sys.executable, "-c", _CHILD],
        input=pickle.dumps(t),
        capture_output=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert r.returncode == 0, r.stderr.decode()
    out = pickle.loads(r.stdout)
    assert out["token"] == tokenize(t)
    _assert_same(out["data"], exp)
    _assert_same(out["col"], exp[1, :, 2])
    assert out["unit"] == "°C"


def test_restored_file_detects_changes(tmp_path):
    p = tmp_path / "x.om"
    p.write_bytes((FIXTURES / "shape_2d.om").read_bytes())
    blob = pickle.dumps(OmFile(p).root)
    p.write_bytes((FIXTURES / "shape_3d.om").read_bytes())
    reader_mod._REGISTRY.clear()
    with pytest.raises(OmFormatError, match="changed since it was opened"):
        pickle.loads(blob)[0]


# --------------------------------------------------------------------------- bad input


def _consume(f, limit=3000):
    """Walk the tree (bounded) and read every array completely."""
    seen = 0
    stack = [f.root]
    while stack and seen < limit:
        n = stack.pop()
        seen += 1
        n.name  # noqa: B018
        if isinstance(n, OmArray):
            n[...]
            n.nbytes_compressed  # noqa: B018
        elif isinstance(n, OmScalar):
            n.value  # noqa: B018
        stack.extend(n.children)
        n.attrs  # noqa: B018


def _must_fail_cleanly(data: bytes, *, allow_success=False):
    try:
        with OmFile(data) as f:
            _consume(f)
    except OmError as e:
        assert e.source is not None
        return e
    if not allow_success:
        raise AssertionError("corrupt input was accepted")
    return None


@pytest.mark.parametrize(
    "name",
    [
        "hierarchy.om",
        "many_chunks.om",
        "shape_3d.om",
        "inline_metadata.om",
        "legacy_v2_fpx.om",
        "legacy_v1.om",
    ],
)
def test_truncated_files(name):
    raw = (FIXTURES / name).read_bytes()
    cuts = sorted(
        {0, 1, 2, 3, 10, 23, 24, 39, 40, 41, len(raw) - 25, len(raw) - 24, len(raw) - 1}
        | set(range(0, len(raw), max(1, len(raw) // 40)))
    )
    legacy = name.startswith("legacy")
    for cut in cuts:
        if 0 <= cut < len(raw):
            err = _must_fail_cleanly(raw[:cut], allow_success=legacy)
            if not legacy:
                assert isinstance(err, OmFormatError)


@pytest.mark.parametrize(
    "name",
    [
        "hierarchy.om",
        "many_chunks.om",
        "shape_4d.om",
        "hierarchical.om",
        "legacy_v2_int16.om",
        "openmeteo_run.om",
    ],
)
def test_random_corruption_never_crashes(name):
    raw = bytearray((FIXTURES / name).read_bytes())
    rng = np.random.default_rng(sum(raw[:64]) + len(raw))
    for trial in range(120):
        data = bytearray(raw)
        n_flips = 1 + trial % 4
        # bias towards the metadata at the end and the LUTs / headers
        for _ in range(n_flips):
            if trial % 3 == 0:
                pos = int(rng.integers(max(0, len(raw) - 400), len(raw)))
            else:
                pos = int(rng.integers(0, len(raw)))
            data[pos] = int(rng.integers(0, 256))
        _must_fail_cleanly(bytes(data), allow_success=True)


def _patched(name, offset, new: bytes) -> bytes:
    raw = bytearray((FIXTURES / name).read_bytes())
    raw[offset : offset + len(new)] = new
    return bytes(raw)


def test_targeted_bad_headers_and_trailers():
    raw = (FIXTURES / "read_test.om").read_bytes()  # 144 bytes, record at 40 (76 bytes)
    cases = {
        "empty": (b"", "empty"),
        "tiny": (b"OM", "not an OM file"),
        "magic": (b"XY" + raw[2:-24] + b"XY" + raw[-22:], "not an OM file"),
        "v3 no trailer": (raw[:-24] + bytes(24), "without a valid trailer"),
        "root outside": (raw[:-16] + struct.pack("<QQ", 140, 76), "outside the file"),
        "root size 0": (raw[:-8] + struct.pack("<Q", 0), "outside the file"),
        "bad version": (b"OM\x07" + bytes(60), "not an OM file"),
        "legacy too short": (b"OM\x02\x00" + bytes(20), "shorter than its header"),
    }
    for label, (data, msg) in cases.items():
        with pytest.raises(OmFormatError, match=msg) as ei:
            with OmFile(data) as f:
                _consume(f)
        assert ei.value.source == "<bytes>", label


def test_targeted_bad_records():
    rec = 40
    dims = rec + 40  # no children: dims right after the 40-byte fixed part
    cases = [
        # absurd dims: 2^40 x 2^40 with one chunk -> impossible element count
        (
            _patched("read_test.om", dims, struct.pack("<QQQQ", 2**40, 2**40, 2**40, 2**40)),
            "elements",
        ),
        # absurd chunk count: 2^31 x 2^31 chunks of 1
        (_patched("read_test.om", dims, struct.pack("<QQQQ", 2**30, 2**30, 1, 1)), "chunks"),
        # chunk larger than the dimension / zero
        (_patched("read_test.om", dims + 16, struct.pack("<Q", 6)), "chunk length"),
        (_patched("read_test.om", dims, struct.pack("<Q", 0)), "dimension 0 has length 0"),
        # dim_count huge, zero
        (_patched("read_test.om", rec + 24, struct.pack("<Q", 2**40)), "dimensions"),
        (_patched("read_test.om", rec + 24, struct.pack("<Q", 0)), "zero dimensions"),
        # LUT outside the file
        (_patched("read_test.om", rec + 16, struct.pack("<Q", 10**6)), "outside the file"),
        (_patched("read_test.om", rec + 8, struct.pack("<Q", 2**63)), "outside the file"),
        # LUT too small to hold its groups
        (_patched("read_test.om", rec + 8, struct.pack("<Q", 0)), "cannot hold"),
        # data type / compression
        (_patched("read_test.om", rec, b"\x40"), "unknown data type"),
        (_patched("read_test.om", rec + 1, b"\x04"), "invalid compression"),
        (_patched("read_test.om", rec, b"\x10"), "not valid for"),
        # name / child counts beyond the record
        (_patched("read_test.om", rec + 2, b"\xff\xff"), "needs"),
        (_patched("read_test.om", rec + 4, b"\xff\xff\xff\x00"), "needs"),
        # LUT content: all deltas zero -> empty chunks; first entry past the end
        (_patched("read_test.om", 32, b"\x03\x00\x00\x00\x00\x00"), "not increasing"),
        (_patched("read_test.om", 32, b"\x7f"), "past the end"),
    ]
    for data, msg in cases:
        with pytest.raises(OmFormatError, match=msg) as ei:
            with OmFile(data) as f:
                _consume(f)
        assert "<bytes>" in str(ei.value)


def test_lut_first_entry_inside_header_is_a_codec_error_or_garbage():
    # a LUT whose ranges are valid but point at the wrong bytes: never a crash
    _must_fail_cleanly(_patched("read_test.om", 32, b"\x00"), allow_success=True)


def _file_with_records(records: list[bytes], root_index: int = -1) -> tuple[bytes, list]:
    out = bytearray(b"OM\x03" + bytes(5))
    where = []
    for r in records:
        where.append((len(out), len(r)))
        out += r + bytes(-len(r) % 8)
    out += encode_trailer(*where[root_index])
    return bytes(out), where


def test_cycles_and_depth():
    # a group that lists itself as a child
    name = b"loop"
    size = 8 + 16 + len(name)
    self_ref = encode_scalar_record("loop", None, children=[(8, size)])
    data, _ = _file_with_records([self_ref])
    with pytest.raises(OmFormatError, match="own ancestor"):
        OmFile(data).root.children  # noqa: B018
    # two groups referencing each other: A at 8, B after it
    a_size = 8 + 16 + 1
    b_off = 8 + a_size + (-a_size % 8)
    a = encode_scalar_record("a", None, children=[(b_off, a_size)])
    b = encode_scalar_record("b", None, children=[(8, a_size)])
    data, where = _file_with_records([a, b], root_index=0)
    assert where[1][0] == b_off
    f = OmFile(data)
    with pytest.raises(OmFormatError, match="cycle"):
        f["b/a"].children  # noqa: B018
    # a chain deeper than the limit
    recs, pos = [], 8
    prev = None
    for i in range(MAX_DEPTH + 5):
        r = encode_scalar_record(f"g{i}", None, children=[prev] if prev else [])
        recs.append(r)
        prev = (pos, len(r))
        pos += len(r) + (-len(r) % 8)
    data, _ = _file_with_records(recs)
    node = OmFile(data).root
    with pytest.raises(OmFormatError, match="deeper than"):
        for _ in range(MAX_DEPTH + 5):
            node = node.children[0]
    # a child record outside the file
    bad = encode_scalar_record("x", None, children=[(10**6, 20)])
    data, _ = _file_with_records([bad])
    with pytest.raises(OmFormatError, match="outside the file"):
        OmFile(data).root  # noqa: B018


def test_exponential_dag_is_capped(monkeypatch):
    # 40 levels, each group lists the next level twice: 2^40 paths, 41 records
    recs, pos, prev = [], 8, None
    for i in range(40):
        r = encode_scalar_record(f"g{i}", None, children=[prev, prev] if prev else [])
        recs.append(r)
        prev = (pos, len(r))
        pos += len(r) + (-len(r) % 8)
    data, _ = _file_with_records(recs)
    monkeypatch.setattr(reader_mod, "MAX_NODES", 5000)
    f = OmFile(data)
    with pytest.raises(OmFormatError, match="more than 5000 nodes"):
        stack = [f.root]
        while stack:
            stack.extend(stack.pop().children)


def test_crafted_v3_lut_checks():
    """An array whose LUT (valid encoding) gives ranges outside the file or overlapping."""
    chunk = _native.encode_chunk(np.arange(4, dtype=np.int16), 2)

    def build(lut_values):
        body = bytearray(b"OM\x03")
        body += chunk * 2
        lut_bytes, _ = _native.encode_lut(np.array(lut_values, np.uint64))
        lut_off = len(body)
        body += lut_bytes
        body += bytes(-len(body) % 8)
        rec = encode_array_record("a", 14, 2, len(lut_bytes), lut_off, 1.0, 0.0, (8,), (4,))
        rec_off = len(body)
        body += rec + bytes(-len(rec) % 8)
        body += encode_trailer(rec_off, len(rec))
        return bytes(body)

    n = len(chunk)
    good = build([3, 3 + n, 3 + 2 * n])
    _assert_same(OmFile(good).root[...], np.tile(np.arange(4, dtype=np.int16), 2))
    with pytest.raises(OmFormatError, match="past the end"):
        OmFile(build([3, 3 + n, 10**6])).root[...]
    with pytest.raises(OmFormatError, match="not increasing"):
        OmFile(build([3, 3 + n, 3 + n])).root[...]
    # a chunk range one byte too long: the decoder must notice the size mismatch
    with pytest.raises(OmCodecError):
        OmFile(build([3, 3 + n + 1, 3 + 2 * n])).root[...]


def test_legacy_bad_lut():
    raw = bytearray((FIXTURES / "legacy_v2_int16.om").read_bytes())
    n_chunks = 4 * 5
    bad = bytearray(raw)
    bad[40 + 8 * 3 : 40 + 8 * 4] = struct.pack("<Q", 10**9)
    with pytest.raises(OmFormatError, match="past the end"):
        OmFile(bytes(bad)).root[...]
    bad = bytearray(raw)
    bad[40 + 8 * 3 : 40 + 8 * 4] = bad[40 + 8 * 2 : 40 + 8 * 3]
    with pytest.raises(OmFormatError, match="not increasing"):
        OmFile(bytes(bad)).root[...]
    # absurd geometry in the header: rejected before any allocation
    bad = bytearray(raw)
    bad[8:40] = struct.pack("<QQQQ", 2**40, 2**40, 1, 1)
    with pytest.raises(OmFormatError, match="chunks"):
        OmFile(bytes(bad)).root  # noqa: B018
    # LUT larger than the file
    bad = bytearray(raw[: 40 + 8 * n_chunks - 8])
    with pytest.raises(OmFormatError):
        OmFile(bytes(bad)).root[...]


def test_fsspec_open_errors():
    with pytest.raises(FileNotFoundError):
        OmFile(f"memory://does/not/exist/{os.getpid()}.om")
    fs = fsspec.filesystem("memory")
    fs.pipe(f"/bad/{os.getpid()}.om", b"hello world, this is not an OM file at all!")
    with pytest.raises(OmFormatError, match=f"memory:///bad/{os.getpid()}.om"):
        OmFile(f"memory:///bad/{os.getpid()}.om")


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
def test_local_source_descriptor_lifetime(tmp_path):
    """A local source owns one descriptor: released by close(), by dropping an
    unclosed source, and when the open fails after os.open (empty tail read)."""
    import gc

    from xarray_om.format.source import open_source

    path = tmp_path / "d.om"
    with OmWriter(path) as w:
        w.close(w.write_array(np.arange(10, dtype=np.int32), chunks=(4,), name="x"))

    def n_fds(target=path):  # descriptors open on target (others may come and go meanwhile)
        n = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                n += os.readlink(f"/proc/self/fd/{fd}") == str(target)
            except OSError:
                pass
        return n

    gc.collect()
    before = n_fds()
    src = open_source(path)
    assert n_fds() == before + 1
    src.close()
    assert n_fds() == before
    src = open_source(path)
    del src
    gc.collect()
    assert n_fds() == before
    for _ in range(20):
        with OmFile(path) as f:
            np.testing.assert_array_equal(f.root[1:3], [1, 2])
    assert n_fds() == before
    with pytest.raises(FileNotFoundError):
        open_source(tmp_path / "missing.om")
    # a directory opens (Linux) but its tail read fails: the descriptor is closed
    with pytest.raises(OSError):
        open_source(tmp_path)
    assert n_fds(tmp_path) == 0


def test_local_spec_cache_and_relative_paths(tmp_path, monkeypatch):
    """Absolute paths map to one cached spec; a relative path is resolved against
    the working directory of every call, never cached."""
    from xarray_om.format import source as source_mod

    for sub, value in (("a", 1), ("b", 2)):
        (tmp_path / sub).mkdir()
        with OmWriter(tmp_path / sub / "f.om") as w:
            w.close(w.write_array(np.full(3, value, np.int32), chunks=(3,), name="x"))
    absolute = str(tmp_path / "a" / "f.om")
    assert source_mod.spec_for(absolute) is source_mod.spec_for(absolute)
    with pytest.raises(ValueError, match="storage_options"):
        source_mod.spec_for(absolute, storage_options={"anon": True})
    for sub, value in (("a", 1), ("b", 2)):
        monkeypatch.chdir(tmp_path / sub)
        with OmFile("f.om") as f:
            assert f.source_name == str(tmp_path / sub / "f.om")
            assert f.root[0] == value
    assert "f.om" not in source_mod._LOCAL_SPECS
