"""Zarr v3 view of OM files: OmStore, the xarray_om.om codec, chunk manifests, VirtualiZarr.

Oracles: the reference reader's arrays (fixture ``.npy`` files) and LUTs
(``manifest.json``), this package's xarray backend (names, dims, attrs, values
must be identical), and the data written with our OmWriter.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import pickle
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

zarr = pytest.importorskip("zarr")

from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest  # noqa: E402
from zarr.core.buffer import cpu, default_buffer_prototype  # noqa: E402
from zarr.core.sync import _collect_aiterator, sync  # noqa: E402
from zarr.testing.store import StoreTests  # noqa: E402

from xarray_om import OmFile  # noqa: E402
from xarray_om.errors import OmCodecError, OmFormatError, OmReadOnlyError  # noqa: E402
from xarray_om.format.writer import OmWriter  # noqa: E402
from xarray_om.zarr import (  # noqa: E402
    CODEC_NAME,
    OmChunkCodec,
    OmParser,
    OmStore,
    om_manifest,
    om_references,
)
from xarray_om.zarr.codec import chunk_coords_from_key  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

FIXTURES = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures"


def _fixture_entries() -> list[dict]:
    path = FIXTURES / "manifest.json"
    if not path.exists():
        return []
    return json.loads(path.read_text())["files"]


ENTRIES = _fixture_entries()
FILES = [e["file"] for e in ENTRIES]


def _walk(node: dict):
    yield node
    for c in node.get("children", []):
        yield from _walk(c)


def _ref_arrays(entry: dict) -> dict[int, dict]:
    """Reference facts of every array of a fixture file, by record offset."""
    return {n["record_offset"]: n for n in _walk(entry["root"]) if n.get("kind") == "array"}


def open_backend(p: Any, **kw: Any) -> xr.Dataset:
    return xr.open_dataset(p, engine="xarray_om", **kw)


def zarr_array_for(store: OmStore, path: str) -> Any:
    return zarr.open_array(store, path=path, mode="r")


# --------------------------------------------------------------------------- fixtures: values


@pytest.mark.parametrize("name", FILES)
def test_values_match_reference_reader(name: str) -> None:
    """Every OM array read through zarr equals what the reference reader returns."""
    entry = next(e for e in ENTRIES if e["file"] == name)
    refs = _ref_arrays(entry)
    store = OmStore(FIXTURES / name)
    group = zarr.open_group(store, mode="r")
    checked = 0
    for path, node in store.view.arrays.items():
        if node.om is None:
            continue
        ref = refs[node.om.record_offset]
        expected = np.load(FIXTURES / ref["expected_npy"])
        got = group[path][...]
        assert got.shape == (1,) * node.lead + expected.shape
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got.reshape(expected.shape), expected)
        # Codec configuration carries the OM encoding; nothing CF-like in attributes.
        codec = group[path].metadata.codecs[0]
        assert isinstance(codec, OmChunkCodec)
        assert codec.compression == ref["compression"]
        assert np.float32(codec.scale_factor) == np.float32(ref["scale_factor"])
        assert not {"scale_factor", "add_offset"} & set(group[path].attrs)
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("name", FILES)
def test_open_zarr_identical_to_backend(name: str) -> None:
    p = FIXTURES / name
    expected = open_backend(p).load()
    # chunks=None: no dask (thousands of one-chunk tasks for many_chunks.om).
    got = xr.open_zarr(OmStore(p), chunks=None).load()
    xr.testing.assert_identical(got, expected)


@pytest.mark.parametrize("name", ["hierarchy.om", "openmeteo_spatial.om", "shape_4d.om"])
def test_open_zarr_dask_identical_to_backend(name: str) -> None:
    p = FIXTURES / name
    ds = xr.open_zarr(OmStore(p))
    var = next(v for v in ds.data_vars.values() if v.ndim >= 2)
    assert var.chunks is not None  # dask, one block per OM chunk
    xr.testing.assert_identical(ds.load(), open_backend(p).load())


@pytest.mark.parametrize("name", FILES)
def test_open_datatree_identical_to_backend(name: str) -> None:
    p = FIXTURES / name
    expected = xr.open_datatree(p, engine="xarray_om").load()
    got = xr.open_datatree(OmStore(p), engine="zarr").load()
    xr.testing.assert_identical(got, expected)


def test_hierarchy_names_and_metadata() -> None:
    store = OmStore(FIXTURES / "hierarchy.om")
    g = zarr.open_group(store, mode="r")
    assert sorted(g.array_keys()) == ["lat", "lon", "temperature_2m", "time"]
    assert sorted(g.group_keys()) == ["empty_group", "level1", "scalars"]
    t = g["temperature_2m"]
    assert t.metadata.dimension_names == ("lat", "lon", "time")
    assert t.chunks == tuple(OmFile(FIXTURES / "hierarchy.om")["temperature_2m"].chunks)
    assert g.attrs["title"] == "created by make_fixtures.py"
    assert "coordinates" not in t.attrs
    # Unix-seconds time gets CF units, so xarray decodes datetimes like the backend.
    assert g["time"].attrs["units"].startswith("seconds since 1970-01-01")
    doc = json.loads(store.view.docs["zarr.json"])
    assert doc["consolidated_metadata"]["kind"] == "inline"
    assert "level1/level2" in doc["consolidated_metadata"]["metadata"]


def test_open_zarr_reads_only_the_root_document() -> None:
    """Consolidated metadata: xr.open_zarr needs no metadata request besides zarr.json."""
    store = OmStore(FIXTURES / "hierarchy.om")
    seen: list[str] = []
    orig = store.get

    async def get(key, prototype=None, byte_range=None):
        seen.append(key)
        return await orig(key, prototype, byte_range)

    store.get = get  # type: ignore[method-assign]
    xr.open_zarr(store, chunks=None)
    # zarr also probes the v2 names (.zgroup...), answered "missing" from memory.
    assert [k for k in seen if k.endswith("zarr.json")] == ["zarr.json"]
    assert {k for k in seen if "/c/" not in k} <= {"zarr.json", ".zgroup", ".zattrs", ".zmetadata"}


def test_spatial_file_coordinates_from_metadata() -> None:
    """valid_time / forecast_reference_time become coordinates, as in the backend."""
    p = FIXTURES / "openmeteo_spatial.om"
    ds = xr.open_zarr(OmStore(p))
    assert "forecast_reference_time" in ds.coords
    assert ds["temperature_2m"].dims[0] == "time"
    assert ds["time"].dtype.kind == "M"
    g = zarr.open_group(OmStore(p), mode="r")
    # The OM root's "coordinates" string is a dimension list, never passed on.
    assert "crs_wkt" in g.attrs
    assert g.attrs["coordinates"] == "forecast_reference_time"


# --------------------------------------------------------------------------- edge chunks


def _write(path: Path, arrays: dict[str, tuple[np.ndarray, dict]], **scalars: Any) -> None:
    with OmWriter(path) as w:
        kids = [w.write_array(a, name=n, **kw) for n, (a, kw) in arrays.items()]
        kids += [w.write_scalar(v, name=k) for k, v in scalars.items()]
        w.close(w.write_group(name="", children=kids))


DTYPE_COMPRESSION = [
    ("float32", "fpx_xor_2d"),
    ("float64", "fpx_xor_2d"),
    ("int16", "pfor_delta_2d"),
    ("uint8", "pfor_delta_2d"),
    ("int64", "pfor_delta_2d"),
    ("float32", "pfor_delta_2d_int16"),
    ("float32", "pfor_delta_2d"),
]


@st.composite
def arrays_and_chunks(draw):
    ndim = draw(st.integers(1, 4))
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=ndim, max_size=ndim)))
    chunks = tuple(draw(st.integers(1, n)) for n in shape)
    dt, comp = draw(st.sampled_from(DTYPE_COMPRESSION))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if np.dtype(dt).kind == "f":
        data = (rng.standard_normal(shape) * 10).astype(dt)
    else:
        info = np.iinfo(dt)
        data = rng.integers(max(info.min, -1000), min(info.max, 1000), shape, dtype=dt)
    sel = tuple(
        slice(draw(st.integers(0, n - 1)), draw(st.integers(1, n) | st.none())) for n in shape
    )
    return data, chunks, comp, sel


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=arrays_and_chunks())
def test_edge_chunks_any_geometry(tmp_path: Path, case) -> None:
    """Clipped edge chunks decode correctly for any shape/chunking, full and partial reads."""
    data, chunks, comp, sel = case
    kw: dict[str, Any] = {"chunks": chunks, "compression": comp}
    if comp == "pfor_delta_2d_int16" or (comp == "pfor_delta_2d" and data.dtype.kind == "f"):
        kw["scale_factor"] = 100.0
    p = tmp_path / f"edge_{abs(hash((data.tobytes(), chunks, comp))) % 10**9}.om"
    _write(p, {"v": (data, kw)})
    with OmFile(p) as f:
        expected = f["v"][...]
    if kw.get("scale_factor") is None:
        np.testing.assert_array_equal(expected, data)  # lossless: the writer's input
    arr = zarr_array_for(OmStore(p), "v")
    assert arr.shape == data.shape and arr.chunks == chunks
    np.testing.assert_array_equal(arr[...], expected)
    np.testing.assert_array_equal(arr[sel], expected[sel])


def test_every_zarr_selection_kind() -> None:
    """Orthogonal, coordinate, mask, block and step selections across clipped edge chunks."""
    expected = np.load(FIXTURES / "shape_3d.data.npy")  # (9, 11, 13), chunks (4, 5, 6)
    arr = zarr_array_for(OmStore(FIXTURES / "shape_3d.om"), "data")
    rng = np.random.default_rng(3)
    i0, i1, i2 = ([2, 8, 0, 5], [10, 1, 6], [12, 0, 5, 6, 11])
    np.testing.assert_array_equal(arr.oindex[i0, i1, i2], expected[np.ix_(i0, i1, i2)])
    pts = tuple(rng.integers(0, n, 17) for n in expected.shape)
    np.testing.assert_array_equal(arr.vindex[pts], expected[pts])
    mask = rng.random(expected.shape) < 0.3
    np.testing.assert_array_equal(arr.vindex[mask], expected[mask])
    np.testing.assert_array_equal(arr.blocks[2, 2, 2], expected[8:, 10:, 12:])
    np.testing.assert_array_equal(arr[1, 3, ::4], expected[1, 3, ::4])
    np.testing.assert_array_equal(arr[7:, 9:, 11:], expected[7:, 9:, 11:])
    np.testing.assert_array_equal(arr[8, 10, 12], expected[8, 10, 12])


def test_unknown_position_fallback_pads_edge_chunks() -> None:
    """Without chunk coordinates the codec finds the extent and pads with the fill value."""
    p = FIXTURES / "shape_2d.om"
    expected = np.load(FIXTURES / "shape_2d.data.npy")
    store = OmStore(p)
    arr = zarr_array_for(store, "data")
    codec = arr.metadata.codecs[0]
    from zarr.core.array_spec import ArrayConfig, ArraySpec

    spec = ArraySpec(
        shape=arr.chunks,
        dtype=arr.metadata.data_type,
        fill_value=arr.metadata.fill_value,
        config=ArrayConfig.from_dict({}),
        prototype=default_buffer_prototype(),
    )
    grid = store.view.arrays["data"].chunk_grid
    keys = [f"data/c/{i}/{j}" for i in range(grid[0]) for j in range(grid[1])]
    raw = [store.get_sync(k) for k in keys]
    out = sync(codec.decode([(b, spec) for b in raw]))
    c0, c1 = arr.chunks
    for k, nd in zip(keys, out, strict=True):
        i, j = (int(x) for x in k.split("/")[-2:])
        block = nd.as_numpy_array()
        assert block.shape == arr.chunks
        want = expected[i * c0 : (i + 1) * c0, j * c1 : (j + 1) * c1]
        np.testing.assert_array_equal(block[: want.shape[0], : want.shape[1]], want)
        assert np.isnan(block[want.shape[0] :, :]).all()
        assert np.isnan(block[:, want.shape[1] :]).all()


def test_unknown_position_refuses_to_guess(monkeypatch) -> None:
    codec = OmChunkCodec(compression="fpx_xor_2d", array_shape=(5, 7))
    calls = []

    def fake(self, data, extent, dtype, where):
        # Every candidate extent "decodes exactly": the codec must not pick one.
        calls.append(extent)
        return np.zeros(extent, dtype)

    monkeypatch.setattr(OmChunkCodec, "_decode_values", fake)

    class Spec:
        shape = (4, 4)
        fill_value = np.float32("nan")

        class dtype:
            @staticmethod
            def to_native_dtype():
                return np.dtype("float32")

    with pytest.raises(OmCodecError, match="cannot tell which chunk"):
        codec._decode_unknown_position(np.zeros(3, np.uint8), Spec)
    assert sorted(calls) == [(1, 3), (1, 4), (4, 3), (4, 4)]


def test_extent_from_chunk_key() -> None:
    codec = OmChunkCodec(compression="fpx_xor_2d", array_shape=(5, 7))
    assert codec._extent_for("v/c/0/0", (4, 4)) == (4, 4)
    assert codec._extent_for("v/c/1/1", (4, 4)) == (1, 3)  # upper edge: clipped
    assert codec._extent_for("v/c.0.1", (4, 4)) == (4, 3)
    assert codec._extent_for(None, (4, 4)) is None
    assert codec._extent_for("v/zarr.json", (4, 4)) is None
    with pytest.raises(OmFormatError, match=r"v/c/2/0: chunk key lies outside the chunk grid"):
        codec._extent_for("v/c/2/0", (4, 4))


# --------------------------------------------------------------------------- codec


def test_codec_registered_through_entry_point() -> None:
    from importlib.metadata import entry_points

    from zarr.registry import get_codec_class

    eps = [e for e in entry_points(group="zarr.codecs") if e.name == CODEC_NAME]
    assert [e.value for e in eps] == ["xarray_om.zarr.codec:OmChunkCodec"]
    assert get_codec_class(CODEC_NAME) is OmChunkCodec


def test_codec_json_and_equality() -> None:
    c = OmChunkCodec(compression="pfor_delta_2d_int16", scale_factor=20, add_offset=0.5)
    d = c.to_dict()
    assert d == {
        "name": "xarray_om.om",
        "configuration": {
            "compression": "pfor_delta_2d_int16",
            "scale_factor": 20.0,
            "add_offset": 0.5,
        },
    }
    assert OmChunkCodec.from_dict(d) == c
    # The array shape zarr fills in is not configuration: files of different
    # lengths share one codec (VirtualiZarr concatenation needs equal codecs).
    assert c.evolve_from_array_spec(type("S", (), {"shape": (3, 4)})()) == c
    with pytest.raises(ValueError, match="unknown OM compression"):
        OmChunkCodec(compression="zstd")
    with pytest.raises(ValueError, match="unknown"):
        OmChunkCodec.from_dict(
            {"name": CODEC_NAME, "configuration": {"compression": "fpx_xor_2d", "x": 1}}
        )
    with pytest.raises(ValueError, match="finite"):
        OmChunkCodec(compression="fpx_xor_2d", scale_factor=float("nan"))


def test_codec_validates_dtype() -> None:
    from zarr.core.chunk_grids import RegularChunkGrid
    from zarr.dtype import parse_data_type

    c = OmChunkCodec(compression="fpx_xor_2d")
    grid = RegularChunkGrid(chunk_shape=(2,))
    c.validate(shape=(4,), dtype=parse_data_type("float32", zarr_format=3), chunk_grid=grid)
    with pytest.raises(ValueError, match="not valid"):
        c.validate(shape=(4,), dtype=parse_data_type("int16", zarr_format=3), chunk_grid=grid)
    with pytest.raises(ValueError, match="cannot hold"):
        c.validate(shape=(4,), dtype=parse_data_type("bool", zarr_format=3), chunk_grid=grid)


@pytest.mark.parametrize(
    ("key", "ndim", "coords"),
    [
        ("a/c/1/2", 2, (1, 2)),
        ("c/0", 1, (0,)),
        ("g/c/c/3/0/7", 3, (3, 0, 7)),
        ("a/c.1.2", 2, (1, 2)),
        ("x.y/c.10.0", 2, (10, 0)),
        ("a/1.2", 2, (1, 2)),
        ("a/c/01/2", 2, None),
        ("a/c/x/2", 2, None),
        ("a/c", 1, None),
    ],
)
def test_chunk_coords_from_key(key: str, ndim: int, coords) -> None:
    assert chunk_coords_from_key(key, ndim) == coords


def test_writes_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "w.om"
    _write(p, {"v": (np.arange(12, dtype=np.int32).reshape(3, 4), {"chunks": (2, 2)})})
    store = OmStore(p)
    arr = zarr.open_array(store, path="v", mode="r")
    with pytest.raises(OmReadOnlyError):
        arr[0, 0] = 5
    with pytest.raises(OmReadOnlyError):
        sync(store.set("v/c/0/0", cpu.Buffer.from_bytes(b"x")))
    with pytest.raises(OmReadOnlyError):
        OmStore(p, read_only=False)
    with pytest.raises((OmReadOnlyError, ValueError)):
        zarr.open_group(store, mode="w")
    with pytest.raises(OmReadOnlyError, match="only decodes"):
        sync(
            OmChunkCodec(compression="pfor_delta_2d")._encode_single(None, None)  # type: ignore[arg-type]
        )
    np.testing.assert_array_equal(arr[...], np.arange(12).reshape(3, 4))  # untouched


def test_copy_to_native_zarr(tmp_path: Path) -> None:
    """Copying to a Zarr store names the fix; with the encoding dropped the copy is exact."""
    ds = xr.open_zarr(OmStore(FIXTURES / "hierarchy.om"))
    with pytest.raises(OmReadOnlyError, match=r"encoding\.clear\(\)"):
        ds.to_zarr(tmp_path / "a.zarr", zarr_format=3)
    for v in ds.variables.values():
        v.encoding.clear()
    ds.to_zarr(tmp_path / "b.zarr", zarr_format=3)
    xr.testing.assert_identical(xr.open_zarr(tmp_path / "b.zarr").load(), ds.load())


# --------------------------------------------------------------------------- store behaviour


def test_chunk_keys_hold_exact_om_byte_ranges() -> None:
    entry = next(e for e in ENTRIES if e["file"] == "shape_2d.om")
    lut = entry["root"]["container"]["lut"]
    store = OmStore(FIXTURES / "shape_2d.om")
    raw = (FIXTURES / "shape_2d.om").read_bytes()
    grid = store.view.arrays["data"].chunk_grid
    for i in range(grid[0]):
        for j in range(grid[1]):
            k = i * grid[1] + j
            key = f"data/c/{i}/{j}"
            want = raw[lut[k] : lut[k + 1]]
            assert store.get_sync(key).to_bytes() == want
            assert sync(store.getsize(key)) == len(want)
    assert store.get_sync(f"data/c/{grid[0]}/0") is None
    assert store.get_sync("data/c/0") is None
    assert store.get_sync("data/c/0/0/0") is None
    assert store.get_sync("nope/zarr.json") is None


def test_concurrent_chunk_reads_are_coalesced() -> None:
    p = FIXTURES / "many_chunks.om"
    store = OmStore(p)
    node = store.view.arrays["a1d"]
    n = node.om.n_chunks
    assert n >= 100
    source = store.file.source
    calls: list[int] = []
    orig = source.read_ranges

    def counting(ranges):
        calls.append(len(ranges))
        return orig(ranges)

    source.read_ranges = counting  # type: ignore[method-assign]
    try:
        got = zarr.open_array(store, path="a1d", mode="r")[...]
        # zarr asks for chunks concurrently (async.concurrency at a time); requests
        # made together are fetched with one batched read.
        assert len(calls) * 4 <= n
        calls.clear()
        keys = [(f"a1d/c/{i}", None) for i in range(n)]
        bufs = sync(store.get_partial_values(default_buffer_prototype(), keys))
        assert len(calls) == 1 and calls[0] < n  # one batched call, neighbours merged
    finally:
        del source.read_ranges
    np.testing.assert_array_equal(got, np.load(FIXTURES / "many_chunks.a1d.npy"))
    assert [b.to_bytes() for b in bufs] == [store.get_sync(k).to_bytes() for k, _ in keys]


def test_listing() -> None:
    store = OmStore(FIXTURES / "hierarchy.om")
    keys = sync(_collect_aiterator(store.list()))
    assert "zarr.json" in keys and "level1/level2/zarr.json" in keys
    assert "temperature_2m/c/2/2/0" in keys and "lat/c/0" in keys
    assert len(keys) == len(set(keys))
    assert sorted(sync(_collect_aiterator(store.list_dir("")))) == sorted(
        ["zarr.json", "lat", "lon", "time", "temperature_2m", "empty_group", "level1", "scalars"]
    )
    assert sync(_collect_aiterator(store.list_dir("temperature_2m"))) == ("zarr.json", "c")
    assert sync(_collect_aiterator(store.list_dir("temperature_2m/c/"))) == ("0", "1", "2")
    assert sync(_collect_aiterator(store.list_dir("temperature_2m/c/1"))) == ("0", "1", "2")
    assert sync(_collect_aiterator(store.list_dir("temperature_2m/c/1/2"))) == ("0",)
    assert sync(_collect_aiterator(store.list_dir("temperature_2m/c/3"))) == ()
    assert sorted(sync(_collect_aiterator(store.list_prefix("temperature_2m/c/1/")))) == [
        "temperature_2m/c/1/0/0",
        "temperature_2m/c/1/1/0",
        "temperature_2m/c/1/2/0",
    ]
    assert sync(store.is_empty("empty_group")) is False  # its zarr.json
    assert sync(store.is_empty("nothing_here")) is True


def test_close_releases_the_file_and_reopens_on_use() -> None:
    store = OmStore(FIXTURES / "hierarchy.om")
    arr = zarr.open_array(store, path="lat", mode="r")
    first = arr[...]
    store.close()
    assert store.file.closed and not store._is_open
    np.testing.assert_array_equal(zarr.open_array(store, path="lat", mode="r")[...], first)
    assert not store.file.closed
    # A store over a caller's OmFile leaves it open.
    f = OmFile(FIXTURES / "hierarchy.om")
    with OmStore(f) as s:
        assert s.get_sync("lat/c/0") is not None
    assert not f.closed
    f.close()


def test_pickle_roundtrip() -> None:
    store = OmStore(FIXTURES / "hierarchy.om")
    store2 = pickle.loads(pickle.dumps(store))
    assert store2 == store and store2.read_only
    np.testing.assert_array_equal(
        zarr.open_array(store2, path="temperature_2m", mode="r")[...],
        np.load(FIXTURES / "hierarchy.temperature_2m.npy"),
    )


def test_corrupt_chunk_names_file_and_key(tmp_path: Path) -> None:
    p = tmp_path / "bad.om"
    _write(p, {"v": (np.arange(64, dtype=np.int32) * 7919 % 1000, {"chunks": (16,)})})
    with OmFile(p) as f:
        start, stop = (int(x[0]) for x in f["v"].chunk_ranges([1]))
    raw = bytearray(p.read_bytes())
    raw[start:stop] = b"\xff" * (stop - start)
    p.write_bytes(bytes(raw))
    arr = zarr_array_for(OmStore(p), "v")
    np.testing.assert_array_equal(arr[:16], np.arange(16) * 7919 % 1000)
    with pytest.raises(OmFormatError) as info:
        arr[16:32]
    assert "bad.om" in str(info.value) and "v/c/1" in str(info.value)


def test_groups_the_backend_cannot_open_are_still_presented(tmp_path: Path) -> None:
    """Conflicting explicit dimension sizes: the backend refuses the group, zarr shows it."""
    p = tmp_path / "conflict.om"
    a = np.arange(3, dtype=np.int32)
    b = np.arange(4, dtype=np.int32)
    with OmWriter(p) as w:
        kids = [
            w.write_array(
                a, chunks=(2,), name="a", children=[w.write_scalar("x", name="coordinates")]
            ),
            w.write_array(
                b, chunks=(2,), name="b", children=[w.write_scalar("x", name="coordinates")]
            ),
        ]
        w.close(w.write_group(name="", children=kids))
    with pytest.raises(ValueError):
        open_backend(p)
    with pytest.warns(RuntimeWarning, match="without the xarray naming rules"):
        store = OmStore(p)
        g = zarr.open_group(store, mode="r")
    np.testing.assert_array_equal(g["a"][...], a)
    np.testing.assert_array_equal(g["b"][...], b)
    assert g["a"].metadata.dimension_names == ("x",)


def test_variable_shadows_same_named_group(tmp_path: Path) -> None:
    p = tmp_path / "shadow.om"
    a = np.arange(6, dtype=np.int16)
    with OmWriter(p) as w:
        inner = w.write_array(a * 2, chunks=(4,), name="x")
        kids = [w.write_array(a, chunks=(4,), name="a"), w.write_group(name="a", children=[inner])]
        w.close(w.write_group(name="", children=kids))
    with pytest.warns(RuntimeWarning, match="left out of the Zarr view"):
        store = OmStore(p)
        g = zarr.open_group(store, mode="r")
    assert list(g.group_keys()) == []
    np.testing.assert_array_equal(g["a"][...], a)
    xr.testing.assert_identical(xr.open_zarr(store).load(), open_backend(p).load())


def test_not_an_om_file(tmp_path: Path) -> None:
    p = tmp_path / "x.om"
    p.write_bytes(b"hello world, not an OM file" * 3)
    with pytest.raises(OmFormatError, match="not an OM file"):
        OmStore(p)


# --------------------------------------------------------------------------- S3


def test_s3_store_matches_local(s3, tmp_path: Path) -> None:
    for name in ("hierarchy.om", "openmeteo_spatial.om", "shape_4d.om"):
        s3.fs.put(str(FIXTURES / name), f"{s3.bucket}/{name}")
        store = OmStore(s3.url(name), storage_options=s3.storage_options)
        got = xr.open_zarr(store).load()
        xr.testing.assert_identical(got, open_backend(FIXTURES / name).load())
    refs = om_references(OmStore(s3.url("hierarchy.om"), storage_options=s3.storage_options).file)
    assert refs["refs"]["lat/c/0"][0] == s3.url("hierarchy.om")
    _check_reference_fs(
        refs,
        FIXTURES / "hierarchy.om",
        remote_protocol="s3",
        remote_options={**s3.storage_options, "asynchronous": True},
    )


# --------------------------------------------------------------------------- manifests


def _check_reference_fs(refs: dict, original: Path, **fs_kw: Any) -> None:
    import fsspec
    from zarr.storage import FsspecStore

    fs = fsspec.filesystem("reference", fo=refs, asynchronous=True, **fs_kw)
    store = FsspecStore(fs, read_only=True, path="")
    got = xr.open_zarr(store, zarr_format=3, consolidated=True).load()
    xr.testing.assert_identical(got, open_backend(original).load())


@pytest.mark.parametrize("name", ["shape_2d.om", "lut_boundaries.om", "hierarchy.om"])
def test_manifest_offsets_match_lut(name: str) -> None:
    entry = next(e for e in ENTRIES if e["file"] == name)
    refs = _ref_arrays(entry)
    m = om_manifest(FIXTURES / name)
    checked = 0
    for path, arr in m["arrays"].items():
        meta = arr["metadata"]
        assert meta["codecs"][0]["name"] == CODEC_NAME
        om = OmStore(FIXTURES / name).view.arrays[path].om
        lut = refs[om.record_offset]["container"].get("lut")
        if lut is None:
            continue
        grid = om.chunk_grid
        for idx in np.ndindex(*grid):
            k = om.chunk_index(idx)
            ref = arr["manifest"][".".join(map(str, idx))]
            assert ref["path"] == "file://" + str(FIXTURES / name)
            assert (ref["offset"], ref["length"]) == (lut[k], lut[k + 1] - lut[k])
        checked += 1
    assert checked
    text = json.dumps(m)  # JSON-serialisable (NaN attributes as NaN tokens)
    assert json.dumps(json.loads(text)) == text


@pytest.mark.parametrize("name", ["hierarchy.om", "openmeteo_run.om", "shape_3d.om"])
def test_references_open_through_zarr(name: str, tmp_path: Path) -> None:
    # Copy first: references must read the file they point to, not the view.
    p = tmp_path / name
    shutil.copy(FIXTURES / name, p)
    refs = om_references(p)
    _check_reference_fs(refs, p)


# --------------------------------------------------------------------------- VirtualiZarr


def _registry():
    pytest.importorskip("virtualizarr")
    from obspec_utils.registry import ObjectStoreRegistry
    from obstore.store import LocalStore

    return ObjectStoreRegistry({"file://": LocalStore()})


@pytest.mark.parametrize("name", ["hierarchy.om", "shape_4d.om", "openmeteo_run.om"])
def test_virtualizarr_parser(name: str) -> None:
    reg = _registry()
    from virtualizarr import open_virtual_dataset
    from virtualizarr.manifests import ManifestArray

    p = FIXTURES / name
    url = "file://" + str(p)
    vds = open_virtual_dataset(url, registry=reg, parser=OmParser())
    expected = open_backend(p).load()
    assert set(vds.variables) == set(expected.variables)
    virtual = [k for k, v in vds.variables.items() if isinstance(v.data, ManifestArray)]
    assert virtual
    ms = OmParser()(url, reg)
    got = xr.open_zarr(ms, zarr_format=3, consolidated=False).load()
    xr.testing.assert_identical(got, expected)


def test_virtualizarr_parser_on_s3(s3) -> None:
    pytest.importorskip("virtualizarr")
    from obspec_utils.registry import ObjectStoreRegistry
    from obstore.store import S3Store
    from virtualizarr import open_virtual_dataset

    name = "openmeteo_run.om"
    s3.fs.put(str(FIXTURES / name), f"{s3.bucket}/{name}")
    opts = s3.storage_options
    store = S3Store(
        s3.bucket,
        endpoint=s3.endpoint_url,
        access_key_id=opts["key"],
        secret_access_key=opts["secret"],
        region="us-east-1",
        client_options={"allow_http": True},
    )
    reg = ObjectStoreRegistry({f"s3://{s3.bucket}": store})
    parser = OmParser(storage_options=opts)
    vds = open_virtual_dataset(s3.url(name), registry=reg, parser=parser)
    expected = open_backend(FIXTURES / name).load()
    assert set(vds.variables) == set(expected.variables)
    got = xr.open_zarr(parser(s3.url(name), reg), zarr_format=3, consolidated=False).load()
    xr.testing.assert_identical(got, expected)


def test_virtualizarr_combines_files_without_copying(tmp_path: Path) -> None:
    """Two files concatenated virtually along time read back like the two datasets joined."""
    reg = _registry()
    from virtualizarr import open_virtual_dataset
    from virtualizarr.manifests import ManifestGroup, ManifestStore

    rng = np.random.default_rng(7)
    paths = []
    for k in range(2):
        t = (np.arange(24) + 24 * k).astype(np.int64) * 3600 + 1_700_000_000
        data = rng.standard_normal((5, 7, 24)).astype(np.float32)
        p = tmp_path / f"part{k}.om"
        with OmWriter(p) as w:
            kids = [
                w.write_array(
                    data,
                    chunks=(2, 3, 24),
                    name="temperature_2m",
                    children=[w.write_scalar("lat lon time", name="coordinates")],
                ),
                w.write_array(t, chunks=(24,), name="time"),
            ]
            w.close(w.write_group(name="", children=kids))
        paths.append(p)
    vdss = [
        open_virtual_dataset("file://" + str(p), registry=reg, parser=OmParser()) for p in paths
    ]
    combined = xr.concat(vdss, dim="time", coords="minimal", compat="override")
    marr = combined["temperature_2m"].data
    assert marr.shape == (5, 7, 48)
    store = ManifestStore(ManifestGroup(arrays={"temperature_2m": marr}), registry=reg)
    got = zarr.open_array(store, path="temperature_2m", mode="r")[...]
    expected = np.concatenate([open_backend(p)["temperature_2m"].values for p in paths], axis=2)
    np.testing.assert_array_equal(got, expected)


# --------------------------------------------------------------------------- zarr's own store tests


def _run_async(fn):
    """Run one of zarr's async store tests without an asyncio pytest plugin."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return sync(fn(*args, **kwargs))

    return wrapper


READ_ONLY = "OmStore is a read-only view of an existing OM file"
STORE_FILE = FIXTURES / "hierarchy.om"


class _OmStoreTests(StoreTests[OmStore, cpu.Buffer]):
    """zarr.testing.store.StoreTests on OmStore.

    zarr's tests put arbitrary keys into the store first (``set``); a view of an
    existing OM file cannot hold arbitrary keys, so those tests are skipped by
    the ``set`` hook with that reason, and the read-side tests are re-run below
    on the file's real keys. Write tests are replaced by tests that the write is
    refused with zarr's read-only error.
    """

    store_cls = OmStore
    buffer_cls = cpu.Buffer

    async def set(self, store: OmStore, key: str, value: Any) -> None:
        pytest.skip(f"{READ_ONLY}: a test cannot insert arbitrary keys into it")

    async def get(self, store: OmStore, key: str) -> Any:
        # Bypasses the store: the file's bytes at the LUT range, via the format layer.
        hit = store.view.chunk(key)
        if hit is None:
            raise FileNotFoundError(key)
        arr, index = hit
        (a,), (b,) = arr.chunk_ranges([index])
        return cpu.Buffer.from_bytes(STORE_FILE.read_bytes()[int(a) : int(b)])

    @pytest.fixture
    def store_kwargs(self) -> dict[str, Any]:
        return {"source": str(STORE_FILE)}

    @pytest.fixture
    def store(self, open_kwargs: dict[str, Any]) -> OmStore:
        return sync(self.store_cls.open(**open_kwargs))

    @pytest.fixture
    def store_not_open(self, store_kwargs: dict[str, Any]) -> OmStore:
        return self.store_cls(**store_kwargs)

    # -- abstract in StoreTests

    def test_store_repr(self, store: OmStore) -> None:
        assert repr(store) == f"OmStore({str(STORE_FILE)!r})"

    def test_store_supports_writes(self, store: OmStore) -> None:
        assert not store.supports_writes

    def test_store_supports_listing(self, store: OmStore) -> None:
        assert store.supports_listing

    # -- read-only variants of tests that assume a writable store

    def test_store_read_only(self, store: OmStore) -> None:
        assert store.read_only
        with pytest.raises(AttributeError):
            store.read_only = False  # type: ignore[misc]

    @pytest.mark.parametrize("read_only", [True, False])
    async def test_store_open_read_only(self, open_kwargs: dict[str, Any], read_only: bool) -> None:
        open_kwargs["read_only"] = read_only
        if not read_only:
            with pytest.raises(OmReadOnlyError):
                await self.store_cls.open(**open_kwargs)
            return
        store = await self.store_cls.open(**open_kwargs)
        assert store._is_open and store.read_only

    async def test_with_read_only_store(self, open_kwargs: dict[str, Any]) -> None:
        store = await self.store_cls.open(**open_kwargs)
        reader = store.with_read_only(read_only=True)
        assert reader.read_only and reader == store and not reader._is_open
        with pytest.raises(ValueError, match="read-only mode and does not support writing"):
            store.with_read_only(read_only=False)

    async def test_serializable_store(self, store: OmStore) -> None:
        new_store = pickle.loads(pickle.dumps(store))
        assert new_store == store and new_store.read_only == store.read_only
        key = "temperature_2m/c/1/2/0"
        a = await store.get(key, prototype=default_buffer_prototype())
        b = await new_store.get(key, prototype=default_buffer_prototype())
        assert a.to_bytes() == b.to_bytes() == (await self.get(store, key)).to_bytes()

    @pytest.mark.parametrize("key", ["zarr.json", "c/0", "foo/c/0.0", "temperature_2m/c/0/0/0"])
    async def test_set(self, store: OmStore, key: str) -> None:
        with pytest.raises(ValueError, match="read-only mode and does not support writing"):
            await store.set(key, self.buffer_cls.from_bytes(b"\x01\x02"))

    async def test_set_not_open(self, store_not_open: OmStore) -> None:
        with pytest.raises(OmReadOnlyError):
            await store_not_open.set("c/0", self.buffer_cls.from_bytes(b"\x01"))

    async def test_set_many(self, store: OmStore) -> None:
        with pytest.raises(OmReadOnlyError):
            await store._set_many([("zarr.json", self.buffer_cls.from_bytes(b"{}"))])

    async def test_set_if_not_exists(self, store: OmStore) -> None:
        with pytest.raises(OmReadOnlyError):
            await store.set_if_not_exists("k", self.buffer_cls.from_bytes(b"0"))

    async def test_clear(self, store: OmStore) -> None:
        with pytest.raises(OmReadOnlyError):
            await store.clear()
        assert not await store.is_empty("")

    # -- read tests on the file's real keys

    @pytest.mark.parametrize("key", ["zarr.json", "level1/zarr.json", "temperature_2m/c/2/1/0"])
    @pytest.mark.parametrize(
        "byte_range",
        [
            None,
            RangeByteRequest(1, 4),
            OffsetByteRequest(1),
            SuffixByteRequest(1),
            RangeByteRequest(2, 10**6),
        ],
    )
    async def test_get_real_keys(self, store: OmStore, key: str, byte_range: Any) -> None:
        whole = await store.get(key, prototype=default_buffer_prototype())
        if not key.endswith("zarr.json"):
            assert whole.to_bytes() == (await self.get(store, key)).to_bytes()
        raw = whole.to_bytes()
        got = await store.get(key, prototype=default_buffer_prototype(), byte_range=byte_range)
        if byte_range is None:
            want = raw
        elif isinstance(byte_range, RangeByteRequest):
            want = raw[byte_range.start : byte_range.end]
        elif isinstance(byte_range, OffsetByteRequest):
            want = raw[byte_range.offset :]
        else:
            want = raw[-byte_range.suffix :]
        assert got.to_bytes() == want

    async def test_get_not_open(self, store_not_open: OmStore) -> None:
        assert not store_not_open._is_open
        doc = await store_not_open.get("zarr.json", prototype=default_buffer_prototype())
        assert json.loads(doc.to_bytes())["node_type"] == "group"

    async def test_get_raises(self, store: OmStore) -> None:
        with pytest.raises((ValueError, TypeError), match=r"Unexpected byte_range, got.*"):
            await store.get("zarr.json", prototype=default_buffer_prototype(), byte_range=(0, 2))  # type: ignore[arg-type]

    async def test_get_many(self, store: OmStore) -> None:
        keys = ["zarr.json", "lat/c/0", "temperature_2m/c/0/0/0", "missing/c/0"]
        got = await _collect_aiterator(
            store._get_many(zip(keys, [default_buffer_prototype()] * 4, [None] * 4, strict=True))
        )
        got = dict(got)
        assert got["missing/c/0"] is None
        assert got["lat/c/0"].to_bytes() == (await self.get(store, "lat/c/0")).to_bytes()

    async def test_getsize(self, store: OmStore) -> None:
        for key in ["zarr.json", "lat/c/0", "temperature_2m/c/2/2/0"]:
            b = await store.get(key, prototype=default_buffer_prototype())
            assert await store.getsize(key) == len(b)

    async def test_getsize_prefix(self, store: OmStore) -> None:
        keys = await _collect_aiterator(store.list_prefix("temperature_2m/"))
        sizes = [await store.getsize(k) for k in keys]
        assert await store.getsize_prefix("temperature_2m/") == sum(sizes)

    @pytest.mark.parametrize(
        "key_ranges",
        [
            [],
            [("zarr.json", RangeByteRequest(0, 2))],
            [("lat/c/0", RangeByteRequest(0, 2)), ("zarr.json", None)],
            [
                ("temperature_2m/c/0/0/0", RangeByteRequest(0, 2)),
                ("temperature_2m/c/0/1/0", SuffixByteRequest(2)),
                ("temperature_2m/c/0/2/0", OffsetByteRequest(2)),
                ("temperature_2m/c/1/0/0", None),
                ("nothing/c/0", None),
            ],
        ],
    )
    async def test_get_partial_values(self, store: OmStore, key_ranges: list) -> None:
        got = await store.get_partial_values(default_buffer_prototype(), key_ranges)
        for (key, br), buf in zip(key_ranges, got, strict=True):
            want = await store.get(key, prototype=default_buffer_prototype(), byte_range=br)
            assert (buf is None and want is None) or buf.to_bytes() == want.to_bytes()

    async def test_exists(self, store: OmStore) -> None:
        assert not await store.exists("foo")
        assert await store.exists("level1/zarr.json")
        assert await store.exists("temperature_2m/c/2/2/0")
        assert not await store.exists("temperature_2m/c/3/0/0")

    async def test_is_empty(self, store: OmStore) -> None:
        assert not await store.is_empty("")
        assert not await store.is_empty("level1")
        assert not await store.is_empty("level1/")
        assert await store.is_empty("leve")
        assert await store.is_empty("spam/")

    async def test_list(self, store: OmStore) -> None:
        keys = await _collect_aiterator(store.list())
        assert len(keys) == len(set(keys))
        assert {k for k in keys if k.endswith("zarr.json")} == set(store.view.docs)
        chunks = {k for k in keys if not k.endswith("zarr.json")}
        assert chunks == {f"temperature_2m/c/{i}/{j}/0" for i in range(3) for j in range(3)} | {
            "lat/c/0",
            "lon/c/0",
            "time/c/0",
        }

    async def test_list_prefix(self, store: OmStore) -> None:
        everything = await _collect_aiterator(store.list())
        for prefix in (
            "",
            "level1/",
            "level1/level2/",
            "temperature_2m/c/",
            "temperature_2m/c/2/",
            "la",
        ):
            got = sorted(await _collect_aiterator(store.list_prefix(prefix)))
            assert got == sorted(k for k in everything if k.startswith(prefix))

    async def test_list_empty_path(self, store: OmStore) -> None:
        assert sorted(await _collect_aiterator(store.list_prefix(""))) == sorted(
            await _collect_aiterator(store.list())
        )

    async def test_list_dir(self, store: OmStore) -> None:
        for root, expected in [
            ("level1", {"zarr.json", "level2"}),
            ("level1/level2", {"zarr.json", "level3"}),
            ("lat", {"zarr.json", "c"}),
            ("lat/c", {"0"}),
            ("nothing", set()),
        ]:
            assert set(await _collect_aiterator(store.list_dir(root))) == expected
            assert set(await _collect_aiterator(store.list_dir(root + "/"))) == expected

    async def test_get_bytes(self, store: OmStore) -> None:
        data = await store._get_bytes("zarr.json", prototype=default_buffer_prototype())
        assert json.loads(data)["zarr_format"] == 3
        with pytest.raises(FileNotFoundError):
            await store._get_bytes("nonexistent_key", prototype=default_buffer_prototype())

    def test_get_bytes_sync(self, store: OmStore) -> None:
        data = store._get_bytes_sync("lat/c/0", prototype=default_buffer_prototype())
        assert data == sync(self.get(store, "lat/c/0")).to_bytes()

    async def test_get_json(self, store: OmStore) -> None:
        doc = await store._get_json("level1/zarr.json", prototype=default_buffer_prototype())
        assert doc["node_type"] == "group"

    def test_get_json_sync(self, store: OmStore) -> None:
        doc = store._get_json_sync("lat/zarr.json", prototype=default_buffer_prototype())
        assert doc["node_type"] == "array" and doc["codecs"][0]["name"] == CODEC_NAME

    def test_get_sync_real_key(self, store: OmStore) -> None:
        assert (
            store.get_sync("temperature_2m/c/1/1/0").to_bytes()
            == sync(self.get(store, "temperature_2m/c/1/1/0")).to_bytes()
        )


class TestOmStoreConformance(_OmStoreTests):
    pass


# zarr's tests are coroutines meant for an asyncio pytest plugin; run them on
# zarr's own event loop instead (the plugin is not a dependency of this project).
for _name, _fn in inspect.getmembers(TestOmStoreConformance, inspect.iscoroutinefunction):
    if _name.startswith("test_"):
        setattr(TestOmStoreConformance, _name, _run_async(_fn))
del _name, _fn


def test_event_loop_independent() -> None:
    """The store serves callers on any event loop, not only zarr's."""
    store = OmStore(STORE_FILE)

    async def main():
        keys = ["lat/c/0", "lon/c/0", "temperature_2m/c/0/0/0"]
        return await asyncio.gather(*(store.get(k, default_buffer_prototype()) for k in keys))

    a = asyncio.run(main())
    b = asyncio.run(main())
    assert [x.to_bytes() for x in a] == [x.to_bytes() for x in b]
