"""OmWriter: files we write are read identically by the reference, atomically committed.

``omfiles`` (the reference implementation) is used only as an oracle: it reads
our files, and writes the same trees for comparison.
"""

from __future__ import annotations

import gc
import itertools
import os
import pickle
import stat
import warnings
from pathlib import Path

import fsspec
import numpy as np
import omfiles
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xarray_om import _native
from xarray_om.errors import OmEncodingError
from xarray_om.format import records
from xarray_om.format.commit import TEMP_SUFFIX
from xarray_om.format.writer import (
    OmClampWarning,
    OmWriter,
    array_codec,
    block_dimension,
    count_out_of_range,
    plan_blocks,
    resolve_compression,
)

NAMES = {v: k for k, v in records.COMPRESSION_IDS.items()}
VALID_PAIRS = [
    (np.dtype(dt).name, comp)
    for t, dt in records.ARRAY_DTYPES.items()
    for comp in records.COMPRESSION_NAMES
    if records.valid_pair(t, comp)
]
LOSSY = {0, 3}


# --------------------------------------------------------------------------- helpers


def ref_node(node) -> dict:
    """Everything the reference reader reports about a node, recursively."""
    out: dict = {"name": node.name, "n": node.num_children}
    if node.is_array:
        out.update(
            kind="array",
            dtype=np.dtype(node.dtype),
            shape=tuple(node.shape),
            chunks=tuple(node.chunks),
            compression=node.compression_name,
            scale_factor=np.float32(node.scale_factor),
            add_offset=np.float32(node.add_offset),
            data=node[...],
        )
    elif node.is_scalar:
        out.update(kind="scalar", value=node.read_scalar())
    else:
        out.update(kind="group")
    out["children"] = [ref_node(node.get_child_by_index(i)) for i in range(node.num_children)]
    return out


def read_ref(path) -> dict:
    r = omfiles.OmFileReader(str(path))
    try:
        return ref_node(r)
    finally:
        r.close()


def same_value(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return type(a) is type(b) and a == b
    if type(a) is not type(b):
        return False
    return np.asarray(a).tobytes() == np.asarray(b).tobytes()


def assert_same_tree(ours: dict, ref: dict, path: str = "") -> None:
    """Two reference-reader views are identical (array values bit-exact)."""
    where = path + "/" + ours["name"]
    for key in ("name", "kind", "n"):
        assert ours[key] == ref[key], (where, key)
    if ours["kind"] == "array":
        for key in ("dtype", "shape", "chunks", "compression"):
            assert ours[key] == ref[key], (where, key)
        assert same_value(ours["scale_factor"], ref["scale_factor"]), where
        assert same_value(ours["add_offset"], ref["add_offset"]), where
        assert ours["data"].dtype == ref["data"].dtype
        np.testing.assert_array_equal(
            ours["data"].view(f"u{ours['data'].itemsize}"),
            ref["data"].view(f"u{ref['data'].itemsize}"),
            err_msg=where,
        )
    elif ours["kind"] == "scalar":
        assert same_value(ours["value"], ref["value"]), (where, ours["value"], ref["value"])
    for a, b in zip(ours["children"], ref["children"], strict=True):
        assert_same_tree(a, b, where)


def walk_records(data: bytes) -> list[records.Record]:
    """Every reachable record of a file, checking the writer's layout rules."""
    assert data[:3] == b"OM\x03"
    assert len(data) % 8 == 0
    root = records.parse_trailer(data[-24:])
    assert root is not None
    assert data[-24:-16] == b"OM\x03" + bytes(5)
    seen: list[records.Record] = []

    def visit(off: int, size: int) -> None:
        assert off % 8 == 0, "records start 8-aligned"
        rec = records.parse_record(data[off : off + size], off, file_size=len(data))
        seen.append(rec)
        for c_off, c_size in rec.children:
            assert c_off < off, "children are written before their parent"
            visit(c_off, c_size)

    visit(*root)
    assert seen[0].offset + seen[0].size <= len(data) - 24
    return seen


def decoded_lut(data: bytes, rec: records.Record) -> np.ndarray:
    n_chunks = 1
    for d, c in zip(rec.dims, rec.chunks, strict=True):
        n_chunks *= -(-d // c)
    n_groups = -(-(n_chunks + 1) // 64)
    assert rec.lut_size % n_groups == 0
    stride = rec.lut_size // n_groups
    raw = data[rec.lut_offset : rec.lut_offset + rec.lut_size]
    return _native.decode_lut(raw, n_chunks + 1, stride)


def no_temp_files(directory: Path) -> bool:
    return not [p for p in os.listdir(directory) if p.endswith(TEMP_SUFFIX)]


def sample(dtype: np.dtype, comp: int, shape, rng, *, specials=True) -> np.ndarray:
    """Smooth-ish data with some noise, plus special values for lossless floats."""
    n = int(np.prod(shape))
    if dtype.kind == "f":
        base = np.cumsum(rng.normal(0, 1, n)).reshape(shape)
        if comp in LOSSY or comp == 2:
            x = (base * 3).astype(dtype)
        else:
            x = (base * 10.0 ** rng.integers(-3, 6)).astype(dtype)
        if specials and n > 4:
            idx = rng.choice(n, size=min(n // 3, 5), replace=False)
            x.reshape(-1)[idx] = rng.choice(
                np.array([np.nan, np.inf, -np.inf, -0.0, 1e-40], dtype=dtype)
                if comp == 1
                else np.array([np.nan], dtype=dtype),
                size=idx.size,
            )
        return x
    info = np.iinfo(dtype)
    if rng.random() < 0.5:
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    # smooth: a random walk, wrapped into the type's range by the integer cast
    walk = np.cumsum(rng.integers(-3, 4, size=n)) + int(rng.integers(-1000, 1000))
    return walk.astype(np.int64).astype(dtype).reshape(shape)


# --------------------------------------------------------------------------- tree strategy

SCALAR_TYPES = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"]


@st.composite
def scalar_values(draw):
    kind = draw(st.sampled_from(["int", "float32", "float64", "str", "pyfloat", "pyint"]))
    if kind == "int":
        dt = np.dtype(draw(st.sampled_from(SCALAR_TYPES)))
        info = np.iinfo(dt)
        return dt.type(draw(st.integers(int(info.min), int(info.max))))
    if kind in ("float32", "float64"):
        width = 32 if kind == "float32" else 64
        return np.dtype(kind).type(draw(st.floats(width=width, allow_nan=True)))
    if kind == "str":
        return draw(st.text(max_size=12))
    if kind == "pyint":
        return draw(st.integers(-(2**53), 2**53))
    return draw(st.floats())


@st.composite
def array_specs(draw):
    dtype, comp = draw(st.sampled_from(VALID_PAIRS))
    ndim = draw(st.integers(1, 4))
    max_dim = {1: 2000, 2: 40, 3: 12, 4: 6}[ndim]
    shape = tuple(draw(st.integers(1, max_dim)) for _ in range(ndim))
    if draw(st.integers(0, 4)) == 0:  # tiny chunks: up to 2000 chunks, many LUT groups
        chunks = tuple(draw(st.integers(1, 2)) for d in shape)
        chunks = tuple(min(c, d) for c, d in zip(chunks, shape, strict=True))
    else:
        chunks = tuple(draw(st.integers(1, d)) for d in shape)
    sf = draw(st.sampled_from([1.0, 10.0, 20.0, 0.5, 100.0]))
    ao = draw(st.sampled_from([0.0, 5.5, -3.0])) if comp in (0, 2) else 0.0
    default = draw(st.booleans()) and comp == (1 if np.dtype(dtype).kind == "f" else 2)
    return {
        "dtype": np.dtype(dtype),
        "comp": comp,
        "shape": shape,
        "chunks": chunks,
        "sf": sf if comp != 1 else 1.0,
        "ao": ao,
        "default_comp": default,
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def tree_nodes(depth: int):
    leaf = st.one_of(
        st.tuples(st.just("scalar"), st.text(max_size=6), scalar_values()),
        st.tuples(
            st.just("array"),
            st.text(max_size=6),
            array_specs(),
            st.lists(st.tuples(st.text(max_size=6), scalar_values()), max_size=3),
        ),
    )
    if depth == 0:
        return leaf
    return st.one_of(
        leaf,
        st.tuples(
            st.just("group"), st.text(max_size=6), st.lists(tree_nodes(depth - 1), max_size=4)
        ),
    )


def emit(node, ours: OmWriter, ref: omfiles.OmFileWriter):
    """Write one node (children first) with both writers, same calls in the same order."""
    kind, name = node[0], node[1]
    if kind == "scalar":
        return ours.write_scalar(node[2], name=name), ref.write_scalar(node[2], name=name)
    if kind == "group":
        kids = [emit(c, ours, ref) for c in node[2]]
        return (
            ours.write_group(name=name, children=[k[0] for k in kids]),
            ref.write_group(name=name, children=[k[1] for k in kids]),
        )
    spec, attrs = node[2], node[3]
    kids = [(ours.write_scalar(v, name=n), ref.write_scalar(v, name=n)) for n, v in attrs]
    rng = np.random.default_rng(spec["seed"])
    data = sample(spec["dtype"], spec["comp"], spec["shape"], rng)
    scaled = spec["dtype"].kind == "f" and spec["comp"] != 1
    a = ours.write_array(
        data,
        chunks=spec["chunks"],
        compression=None if spec["default_comp"] else NAMES[spec["comp"]],
        scale_factor=spec["sf"] if scaled else None,
        add_offset=spec["ao"],
        name=name,
        children=[k[0] for k in kids],
        on_clamp="ignore",
    )
    b = ref.write_array(
        data,
        chunks=list(spec["chunks"]),
        scale_factor=spec["sf"] if scaled else 1.0,
        add_offset=spec["ao"],
        compression=NAMES[spec["comp"]],
        name=name,
        children=[k[1] for k in kids],
    )
    return a, b


# --------------------------------------------------------------------------- reference equality


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    root=st.tuples(
        st.just("group"), st.text(max_size=6), st.lists(tree_nodes(2), min_size=1, max_size=6)
    )
)
def test_random_trees_match_reference(tmp_path_factory, root):
    d = tmp_path_factory.mktemp("tree")
    ours_path, ref_path = d / "ours.om", d / "ref.om"
    ref = omfiles.OmFileWriter(str(ref_path), metadata_placement="inline")
    with OmWriter(ours_path) as w:
        a, b = emit(root, w, ref)
        w.close(a)
    ref.close(b)
    ours_tree, ref_tree = read_ref(ours_path), read_ref(ref_path)
    assert_same_tree(ours_tree, ref_tree)
    data = ours_path.read_bytes()
    recs = walk_records(data)
    for rec in recs:
        if rec.kind == "array":
            lut = decoded_lut(data, rec)
            assert lut[-1] == rec.lut_offset, "the LUT follows its data immediately"
            assert np.all(np.diff(lut.astype(np.int64)) > 0)
    # Same calls, inline placement: the container layout is the reference's,
    # byte for byte, whenever the chunk bytes have the same lengths.
    ref_data = ref_path.read_bytes()
    assert len(data) == len(ref_data)
    assert data[-24:] == ref_data[-24:]


def _write_both(tmp_path, arrays, *, names=None):
    """Write a flat list of (data, kwargs) arrays under a root group with both writers."""
    ours_path, ref_path = tmp_path / "ours.om", tmp_path / "ref.om"
    ref = omfiles.OmFileWriter(str(ref_path), metadata_placement="inline")
    with OmWriter(ours_path) as w:
        ra, rb = [], []
        for i, (data, kw) in enumerate(arrays):
            name = names[i] if names else f"v{i}"
            ra.append(w.write_array(data, name=name, on_clamp="ignore", **kw))
            rb.append(
                ref.write_array(
                    data,
                    chunks=list(kw["chunks"]),
                    compression=kw["compression"],
                    scale_factor=kw.get("scale_factor") or 1.0,
                    add_offset=kw.get("add_offset", 0.0),
                    name=name,
                )
            )
        w.close(w.write_group(name="", children=ra))
    ref.close(ref.write_group(name="", children=rb))
    return ours_path, ref_path


@pytest.mark.parametrize("dtype,comp", VALID_PAIRS)
def test_bytes_match_reference(tmp_path, dtype, comp):
    """Inline placement, same calls: identical files except uninitialised padding bits."""
    rng = np.random.default_rng(comp * 100 + len(dtype))
    dt = np.dtype(dtype)
    arrays = []
    for shape, chunks in [((50,), (7,)), ((21, 33), (4, 10)), ((5, 6, 70), (2, 5, 64))]:
        kw = {"chunks": chunks, "compression": NAMES[comp]}
        if dt.kind == "f" and comp != 1:
            kw["scale_factor"] = 20.0
        arrays.append((sample(dt, comp, shape, rng, specials=comp == 1), kw))
    ours_path, ref_path = _write_both(tmp_path, arrays)
    ours, ref = ours_path.read_bytes(), ref_path.read_bytes()
    assert_same_tree(read_ref(ours_path), read_ref(ref_path))
    assert len(ours) == len(ref)
    recs_o, recs_r = walk_records(ours), walk_records(ref)
    assert [(r.offset, r.size) for r in recs_o] == [(r.offset, r.size) for r in recs_r]
    for ro, rr in zip(recs_o, recs_r, strict=True):
        # records (incl. LUT offsets/sizes) and LUT bytes are identical
        assert ours[ro.offset : ro.offset + ro.size] == ref[rr.offset : rr.offset + rr.size]
        if ro.kind != "array":
            continue
        lut = decoded_lut(ours, ro)
        np.testing.assert_array_equal(lut, decoded_lut(ref, rr))
        # chunk bytes: equal, or (K1) differing only where the reference left
        # garbage padding bits, or (K3) float64 fpx lane order: decoded values checked above
        if dt == np.float64 and comp == 1:
            continue
        differ = [
            i for i in range(lut.size - 1) if ours[lut[i] : lut[i + 1]] != ref[lut[i] : lut[i + 1]]
        ]
        _assert_padding_only(ours, ref, lut, differ, ro)


def _assert_padding_only(ours, ref, lut, differ, rec) -> None:
    if not differ:
        return
    pad_mod = pytest.importorskip("_padding", reason="padding walker (tests/_padding.py) missing")
    for i in differ:
        a, b = ours[lut[i] : lut[i + 1]], ref[lut[i] : lut[i + 1]]
        n = _chunk_count(rec, i)
        w = 8 * np.dtype(records.ARRAY_DTYPES[rec.data_type]).itemsize
        width = 16 if rec.compression in (0, 3) else 32 if rec.data_type == 20 else w
        kind = pad_mod.FPX if rec.compression == 1 else pad_mod.PFOR
        pad = pad_mod.padding_bits(a, n, width, kind, v128=width in (16, 32))
        assert pad_mod.mask_bytes(a, pad) == pad_mod.mask_bytes(b, pad), f"chunk {i}"


def _chunk_count(rec, index):
    grid = [-(-d // c) for d, c in zip(rec.dims, rec.chunks, strict=True)]
    coords = np.unravel_index(index, grid)
    lens = [min(c, d - k * c) for k, c, d in zip(coords, rec.chunks, rec.dims, strict=True)]
    return int(np.prod(lens))


def test_many_chunks_and_lut_boundaries(tmp_path):
    """> 1000 chunks (all LUT block forms) and LUT group boundaries, against the reference."""
    rng = np.random.default_rng(7)
    arrays = []
    # 2100 chunks of varying size (outliers -> exception blocks), constant runs
    x = rng.integers(0, 4, (42, 50)).astype(np.int32)
    x[5:9] = rng.integers(-(2**30), 2**30, (4, 50))
    x[20:30] = 3
    arrays.append((x, {"chunks": (1, 1), "compression": "pfor_delta_2d"}))
    for n in (63, 64, 65, 127, 128, 129):
        arrays.append(
            (
                rng.normal(size=n * 3).astype(np.float32),
                {"chunks": (3,), "compression": "fpx_xor_2d"},
            )
        )
    ours_path, ref_path = _write_both(tmp_path, arrays)
    assert_same_tree(read_ref(ours_path), read_ref(ref_path))
    ours, ref = ours_path.read_bytes(), ref_path.read_bytes()
    for ro, rr in zip(walk_records(ours), walk_records(ref), strict=True):
        if ro.kind == "array":
            np.testing.assert_array_equal(decoded_lut(ours, ro), decoded_lut(ref, rr))
            assert ro.lut_size == rr.lut_size


def test_layout(tmp_path):
    """Header, chunks from offset 3, LUT right after, 8-aligned records and trailer."""
    p = tmp_path / "x.om"
    a = np.arange(10, dtype=np.int16)
    with OmWriter(p) as w:
        s = w.write_scalar("m", name="unit")
        assert s.offset == 8 and s.kind == "scalar"  # 5 zero bytes after the header
        r = w.write_array(a, chunks=(4,), name="a", children=[s])
        w.close(r)
    data = p.read_bytes()
    assert data[3:8] == bytes(5)
    rec = records.parse_record(data[r.offset : r.offset + r.size], r.offset)
    lut = decoded_lut(data, rec)
    assert lut[0] == s.offset + s.size  # the array's data starts right after the record
    assert lut[-1] == rec.lut_offset
    assert r.offset % 8 == 0 and r.offset >= rec.lut_offset + rec.lut_size
    assert records.parse_trailer(data[-24:]) == (r.offset, r.size)
    np.testing.assert_array_equal(omfiles.OmFileReader(str(p))[...], a)


# --------------------------------------------------------------------------- streaming


def _blocks_rows(x, chunks):
    for i in range(0, x.shape[0], chunks[0]):
        yield x[i : i + chunks[0]]


def _blocks_single(x, chunks):
    grid = [-(-d // c) for d, c in zip(x.shape, chunks, strict=True)]
    for k in np.ndindex(*grid):
        yield x[tuple(slice(i * c, (i + 1) * c) for i, c in zip(k, chunks, strict=True))]


@pytest.mark.parametrize(
    "dtype,comp,sf",
    [("float32", 0, 20.0), ("float32", 1, None), ("int32", 2, None), ("float64", 2, 100.0)],
)
def test_streaming_equals_write_array(tmp_path, dtype, comp, sf):
    rng = np.random.default_rng(3)
    shape, chunks = (13, 9, 20), (4, 2, 7)
    x = sample(np.dtype(dtype), comp, shape, rng)
    kw = {"chunks": chunks, "compression": NAMES[comp], "scale_factor": sf, "name": "x"}
    outputs = []

    def write(fn):
        p = tmp_path / f"{len(outputs)}.om"
        with OmWriter(p) as w:
            w.close(fn(w))
        outputs.append(p.read_bytes())

    write(lambda w: w.write_array(x, threads=1, **kw))
    write(lambda w: w.write_array(x, threads=2, block_bytes=1, **kw))  # one chunk per block
    write(lambda w: w.write_array(x, threads=3, block_bytes=5000, **kw))
    for gen in (_blocks_rows, _blocks_single):
        write(
            lambda w, gen=gen: w.write_array_streaming(
                gen(x, chunks), shape=shape, dtype=x.dtype, **kw
            )
        )

    # as a dask worker would: encode with a pickled codec before the stream exists
    codec = pickle.loads(pickle.dumps(array_codec(shape, dtype, chunks, comp, sf)))
    encoded = [
        (start, *_native.encode_block(codec, x[sl], start))
        for start, sl in plan_blocks(shape, chunks, 300)
    ]

    def encoded_elsewhere(w):
        s = w.begin_array(
            shape=shape, dtype=dtype, chunks=chunks, compression=comp, scale_factor=sf
        )
        assert s.codec == codec
        for start, data, lengths in encoded:
            assert start == s.next_block_start()
            s.append_encoded(bytes(data), lengths)
        return s.finish("x")

    write(encoded_elsewhere)
    assert all(o == outputs[0] for o in outputs[1:])
    ref = omfiles.OmFileReader(str(tmp_path / "0.om"))[...]
    if comp == 1:
        np.testing.assert_array_equal(ref.view(f"u{x.itemsize}"), x.view(f"u{x.itemsize}"))


def test_plan_blocks_are_chunk_runs():
    for shape, chunks, m in [
        ((10, 7, 5), (3, 2, 5), 1),
        ((10, 7, 5), (3, 2, 5), 30),
        ((10, 7, 5), (3, 2, 5), 10**6),
        ((9,), (2,), 3),
        ((4, 4, 4, 4), (1, 3, 2, 4), 40),
    ]:
        covered = np.zeros(shape, int)
        prev = -1
        for start, sl in plan_blocks(shape, chunks, m):
            covered[sl] += 1
            first = np.ravel_multi_index(
                [s // c for s, c in zip(start, chunks, strict=True)],
                [-(-d // c) for d, c in zip(shape, chunks, strict=True)],
            )
            assert first > prev
            prev = first
        assert (covered == 1).all()


def test_uses_scale_exactly_for_lossy_float_compressions():
    for t, dt in records.ARRAY_DTYPES.items():
        for comp in records.COMPRESSION_NAMES:
            if not records.valid_pair(t, comp):
                continue
            want = dt.kind == "f" and comp != records.COMPRESSION_IDS["fpx_xor_2d"]
            assert records.uses_scale(dt, comp) is want, (dt, comp)
    assert records.uses_scale(np.dtype("float32"), 0)
    assert records.uses_scale(np.dtype("float64"), 2)
    assert not records.uses_scale(np.dtype("float64"), 1)
    assert not records.uses_scale(np.dtype("int16"), 2)


def test_block_dimension():
    # Outermost dimension whose one-chunk-thick slab (whole extent after it) fits.
    assert block_dimension((10, 7, 5), (3, 2, 5), 10**6) == (0, 3 * 7 * 5)
    assert block_dimension((10, 7, 5), (3, 2, 5), 30) == (1, 3 * 2 * 5)
    assert block_dimension((10, 7, 5), (3, 2, 5), 105) == (0, 105)
    assert block_dimension((10, 7, 5), (3, 2, 5), 104) == (1, 30)
    # Nothing fits: the last dimension, one chunk per unit.
    assert block_dimension((10, 7, 5), (3, 2, 5), 1) == (2, 30)
    assert block_dimension((9,), (2,), 1) == (0, 2)


# --------------------------------------------------------------------------- validation


def test_invalid_arrays_write_nothing(tmp_path):
    p = tmp_path / "x.om"
    with OmWriter(p) as w:
        pos = w.position
        bad = [
            (np.zeros(4, np.float16), {"chunks": (2,)}),
            (np.zeros(4, np.complex64), {"chunks": (2,)}),
            (np.array(["a", "b"]), {"chunks": (1,)}),
            (np.zeros(4, "M8[s]"), {"chunks": (2,)}),
            (np.float32(3), {"chunks": ()}),
            (np.zeros((0, 3), np.float32), {"chunks": (1, 1)}),
            (np.zeros(4, np.float32), {"chunks": (0,)}),
            (np.zeros(4, np.float32), {"chunks": (5,)}),
            (np.zeros(4, np.float32), {"chunks": (2, 2)}),
            (np.zeros(4, np.float32), {"chunks": (2.0,)}),
            (np.zeros(4, np.float64), {"chunks": (2,), "compression": "pfor_delta_2d_int16"}),
            (np.zeros(4, np.int32), {"chunks": (2,), "compression": "fpx_xor_2d"}),
            (np.zeros(4, np.float32), {"chunks": (2,), "compression": "none"}),
            (np.zeros(4, np.float32), {"chunks": (2,), "compression": 4}),
            (np.zeros(4, np.float32), {"chunks": (2,), "scale_factor": 0.0}),
            (np.zeros(4, np.float32), {"chunks": (2,), "scale_factor": float("nan")}),
            (np.zeros(4, np.float32), {"chunks": (2,), "scale_factor": 1e300}),
            (np.zeros(4, np.float32), {"chunks": (2,), "scale_factor": 10, "add_offset": np.inf}),
            (np.zeros(4, np.float32), {"chunks": (2,), "name": "x" * 70000}),
        ]
        for data, kw in bad:
            with pytest.raises(OmEncodingError):
                w.write_array(data, **kw)
            assert w.position == pos, kw
        other = OmWriter(tmp_path / "other.om")
        foreign = other.write_scalar(np.int8(1), name="x")
        other.abort()
        with pytest.raises(OmEncodingError, match="another writer"):
            w.write_array(np.zeros(4, np.int8), chunks=(2,), children=[foreign])
        with pytest.raises(OmEncodingError):
            w.write_group(children=[(8, 12)])
        assert w.position == pos
        w.close(w.write_array(np.zeros(4, np.int8), chunks=(2,)))
    assert omfiles.OmFileReader(str(p))[...].tolist() == [0, 0, 0, 0]


def test_default_compressions():
    assert NAMES[resolve_compression(np.float32, None, None)] == "fpx_xor_2d"
    assert NAMES[resolve_compression(np.float64, None, None)] == "fpx_xor_2d"
    assert NAMES[resolve_compression(np.float32, None, 20)] == "pfor_delta_2d_int16"
    assert NAMES[resolve_compression(np.float64, None, 20)] == "pfor_delta_2d"
    for t in [*SCALAR_TYPES, "bool"]:
        assert NAMES[resolve_compression(np.dtype(t), None, None)] == "pfor_delta_2d"


def test_bool_array_stored_as_uint8(tmp_path):
    p = tmp_path / "b.om"
    x = np.array([[True, False, True], [False, False, True]])
    with OmWriter(p) as w:
        w.close(w.write_array(x, chunks=(1, 2), name="b"))
    r = omfiles.OmFileReader(str(p))
    assert r.dtype == np.uint8 and r.compression_name == "pfor_delta_2d"
    np.testing.assert_array_equal(r[...], x.astype(np.uint8))


def test_big_endian_and_noncontiguous_input(tmp_path):
    p = tmp_path / "e.om"
    x = np.arange(60, dtype=">i4").reshape(6, 10)[:, ::2]
    with OmWriter(p) as w:
        w.close(w.write_array(x, chunks=(4, 3), name="e"))
    r = omfiles.OmFileReader(str(p))
    assert r.dtype == np.int32
    np.testing.assert_array_equal(r[...], x)


def test_stream_block_validation(tmp_path):
    shape, chunks = (6, 8, 5), (2, 3, 5)
    x = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    with OmWriter(tmp_path / "s.om") as w:
        s = w.begin_array(shape=shape, dtype=np.int16, chunks=chunks)
        with pytest.raises(OmEncodingError, match="an array stream is open"):
            w.write_scalar(np.int8(1), name="a")
        pos = w.position
        bad_blocks = [
            x[:2, :6, :4],  # not the full extent of the last dimension
            x[:4, :3],  # several chunks along dim 0 but not the full extent of dim 1
            x[:2, :4],  # not a multiple of the chunk length, not at the edge
            x[:1],  # shorter than a chunk, not at the edge
            x[:2, :3].astype(np.int32),  # wrong dtype
            x[:2, :3, :, None],  # wrong ndim
            x[:2, :3].astype(np.float32),
        ]
        for b in bad_blocks:
            with pytest.raises(OmEncodingError):
                s.write_block(b)
            assert w.position == pos and s.next_chunk == 0
        s.write_block(x[:2, :6])  # chunks 0, 1
        s.write_block(x[:2, 6:])  # chunk 2 (edge, clipped)
        assert s.next_chunk == 3 and s.next_block_start() == (2, 0, 0)
        s.write_block(x[2:4, :3])  # chunk 3
        s.write_block(x[2:4, 3:])  # chunks 4, 5 (5 is clipped)
        s.write_block(x[4:])  # chunks 6..8: a whole row of chunks
        with pytest.raises(OmEncodingError, match="already written"):
            s.write_block(x[:2, :3])
        with pytest.raises(OmEncodingError):
            s.append_encoded(b"\x00", [1])
        ref = s.finish("x")
        w.close(ref)
    np.testing.assert_array_equal(omfiles.OmFileReader(str(tmp_path / "s.om"))[...], x)


def test_append_encoded_validation(tmp_path):
    with OmWriter(tmp_path / "a.om") as w:
        s = w.begin_array(shape=(4,), dtype=np.int8, chunks=(2,))
        for data, lengths in [
            (b"abc", [1, 1]),  # sum mismatch
            (b"ab", [2, 0]),  # empty chunk
            (b"abc", [1, 1, 1]),  # more chunks than the array has
            (b"ab", [[1, 1]]),
        ]:
            with pytest.raises(OmEncodingError):
                s.append_encoded(data, np.array(lengths))
        with pytest.raises(OmEncodingError, match="incomplete"):
            s.finish("x")
        s.cancel()
        w.close(w.write_scalar("after cancel", name="s"))
    assert omfiles.OmFileReader(str(tmp_path / "a.om")).read_scalar() == "after cancel"


# --------------------------------------------------------------------------- scalars


def test_scalars_every_type(tmp_path):
    p = tmp_path / "s.om"
    values = [
        np.dtype(t).type(v)
        for t, v in zip(
            SCALAR_TYPES, [-8, 255, -16, 65535, -32, 2**32 - 1, -(2**63), 2**64 - 1], strict=True
        )
    ]
    values += [
        np.float32(-3.14),
        np.float64(np.pi),
        np.float32("nan"),
        "",
        "héllo wörld ☃",
        42,
        2.5,
        2**53,
    ]
    values += [np.array(7, dtype=np.uint16), True]
    with OmWriter(p) as w:
        refs = [w.write_scalar(v, name=f"s{i}") for i, v in enumerate(values)]
        w.close(w.write_group(name="root", children=refs))
    r = omfiles.OmFileReader(str(p))
    assert r.num_children == len(values)
    for i, v in enumerate(values):
        c = r.get_child_by_index(i)
        got = c.read_scalar()
        assert c.name == f"s{i}"
        if isinstance(v, bool):
            assert got == np.uint8(1) and type(got) is np.uint8
        elif isinstance(v, (int, float)) and not isinstance(v, np.generic):
            assert type(got) is np.float64 and got == v  # like the reference
        elif isinstance(v, np.ndarray):
            assert type(got) is np.uint16 and got == 7
        else:
            assert same_value(got, v), (i, got, v)


def test_invalid_scalars(tmp_path):
    with OmWriter(tmp_path / "s.om") as w:
        pos = w.position
        for v in [
            None,
            b"bytes",
            2**53 + 1,
            10**400,
            np.float16(1),
            np.datetime64(1, "s"),
            [1, 2],
            np.zeros(2),
        ]:
            with pytest.raises(OmEncodingError):
                w.write_scalar(v, name="x")
            assert w.position == pos
        w.abort()


# --------------------------------------------------------------------------- lossy range check


def test_clamp_detection_matches_reference_decode(tmp_path):
    v = np.array(
        [0, 3276.0, 3276.7, 5000, -3276.8, -4000, np.inf, -np.inf, np.nan, 1.2], np.float32
    )
    assert count_out_of_range(v, 0, 10.0, 0.0) == 5
    p = tmp_path / "c.om"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with OmWriter(p) as w:
            w.close(w.write_array(v, chunks=(10,), scale_factor=10.0, name="c"))
    assert [c.category for c in caught] == [OmClampWarning]
    assert "5 value(s)" in str(caught[0].message)
    got = omfiles.OmFileReader(str(p))[...]
    ok = (got == np.round(v * 10) / 10) | (np.isnan(got) & np.isnan(v))
    # exactly the 5 flagged values come back wrong
    assert (~ok).sum() == 5
    assert np.isnan(got[[2, 3, 6]]).all()
    assert (got[[5, 7]] == np.float32(-3276.8)).all()


@pytest.mark.parametrize(
    "comp,dtype,sf,ao,values,expected",
    [
        (3, "float32", 1000.0, 0.0, [0.0, -1.0, -2.0, 1e33, 1e30, 5.0, np.nan], 3),
        (2, "float32", 1000.0, 0.0, [0.0, 2.2e6, -2.2e6, 2.1e6, np.inf], 3),
        (2, "float64", 1e10, 0.0, [0.0, 1e9, -1e9, 9e8, np.nan], 2),
        (1, "float32", 1.0, 0.0, [np.inf, 1e38], 0),
        (2, "int8", 1.0, 0.0, [127, -128], 0),
    ],
)
def test_count_out_of_range(comp, dtype, sf, ao, values, expected):
    assert count_out_of_range(np.array(values, dtype), comp, sf, ao) == expected


def _full_count(values, comp, sf, ao):
    """count_out_of_range without its min/max shortcut (the elementwise definition)."""
    from xarray_om.format import writer

    real = writer._extremes_in_range
    try:
        writer._extremes_in_range = lambda *a: False
        return count_out_of_range(values, comp, sf, ao)
    finally:
        writer._extremes_in_range = real


@settings(max_examples=300, deadline=None)
@given(
    comp=st.sampled_from([0, 2]),
    dtype=st.sampled_from(["float32", "float64"]),
    sf=st.sampled_from([20.0, -20.0, 1000.0, 0.5, 1e-3, 3.0e4]),
    ao=st.sampled_from([0.0, 5.0, -1600.0, 1e6]),
    values=st.lists(
        st.one_of(
            st.floats(width=32, allow_nan=True, allow_infinity=True),
            st.floats(min_value=-2000, max_value=2000, width=32),
            st.sampled_from([1638.3, 1638.325, -1638.4, -1638.425, 1638.35, 1.0e8]),
        ),
        min_size=1,
        max_size=40,
    ),
)
def test_count_out_of_range_shortcut_agrees(comp, dtype, sf, ao, values):
    if comp == 0 and dtype == "float64":
        comp = 2
    v = np.array(values, dtype)
    assert count_out_of_range(v, comp, sf, ao) == _full_count(v, comp, sf, ao)


def test_on_clamp_modes(tmp_path):
    v = np.full((20, 20), 1e6, np.float32)
    with OmWriter(tmp_path / "x.om") as w:
        pos = w.position
        with pytest.raises(OmEncodingError, match="400 value"):
            w.write_array(v, chunks=(3, 3), scale_factor=10, on_clamp="raise", block_bytes=100)
        assert w.position == pos
        s = w.begin_array(
            shape=v.shape, dtype=v.dtype, chunks=(3, 20), scale_factor=10, on_clamp="raise"
        )
        with pytest.raises(OmEncodingError):
            s.write_block(v[:3])
        assert s.next_chunk == 0
        s.cancel()
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            r = w.write_array(v, chunks=(3, 3), scale_factor=10, on_clamp="ignore")
            w.write_array(v, chunks=(3, 3), name="lossless")  # fpx: never warns
        with pytest.warns(OmClampWarning):
            w.write_array_streaming(
                _blocks_rows(v, (3, 20)),
                shape=v.shape,
                dtype=v.dtype,
                chunks=(3, 20),
                scale_factor=10,
            )
        with pytest.raises(ValueError):
            w.write_array(v, chunks=(3, 3), on_clamp="maybe")
        w.close(r)


# --------------------------------------------------------------------------- atomicity


def _failing_blocks(x, n_ok, exc):
    for i, b in enumerate(_blocks_rows(x, (2,))):
        if i == n_ok:
            raise exc
        yield b


@pytest.mark.parametrize("old", [False, True])
@pytest.mark.parametrize(
    "failure", ["iterator", "keyboard", "invalid_block", "no_close", "abort", "bad_root"]
)
def test_failed_write_leaves_target_untouched(tmp_path, old, failure):
    p = tmp_path / "x.om"
    if old:
        p.write_bytes(b"old content")
    x = np.arange(200, dtype=np.float32).reshape(20, 10)
    expected = {
        "iterator": RuntimeError,
        "keyboard": KeyboardInterrupt,
        "invalid_block": OmEncodingError,
        "no_close": OmEncodingError,
        "abort": None,
        "bad_root": OmEncodingError,
    }[failure]

    def run():
        with OmWriter(p) as w:
            w.write_scalar("attr", name="a")
            kw = {"shape": x.shape, "dtype": x.dtype, "chunks": (2, 10), "name": "x"}
            if failure == "iterator":
                w.write_array_streaming(_failing_blocks(x, 3, RuntimeError("boom")), **kw)
            elif failure == "keyboard":
                w.write_array_streaming(_failing_blocks(x, 3, KeyboardInterrupt()), **kw)
            elif failure == "invalid_block":
                w.write_array_streaming(iter([x[:2], x[2:3]]), **kw)
            elif failure == "no_close":
                w.write_array(x, chunks=(2, 10))
            elif failure == "abort":
                w.write_array(x, chunks=(2, 10))
                w.abort()
            elif failure == "bad_root":
                w.close("not a node")

    if expected is None:
        run()
    else:
        with pytest.raises(expected):
            run()
    if old:
        assert p.read_bytes() == b"old content"
    else:
        assert not p.exists()
    assert no_temp_files(tmp_path)


def test_unclosed_writer_is_cleaned_up_on_gc(tmp_path):
    w = OmWriter(tmp_path / "x.om")
    w.write_scalar("x", name="x")
    assert not no_temp_files(tmp_path)
    del w
    gc.collect()
    assert no_temp_files(tmp_path) and not (tmp_path / "x.om").exists()


def test_overwrite(tmp_path):
    p = tmp_path / "x.om"
    p.write_bytes(b"old")
    with pytest.raises(FileExistsError):
        OmWriter(p, overwrite=False)
    assert p.read_bytes() == b"old" and no_temp_files(tmp_path)
    with OmWriter(p) as w:  # overwrite=True is the default
        w.close(w.write_scalar(np.int8(1), name="x"))
    assert omfiles.OmFileReader(str(p)).read_scalar() == 1
    # a file that appears while writing is not clobbered with overwrite=False
    q = tmp_path / "y.om"
    w = OmWriter(q, overwrite=False)
    ref = w.write_scalar(np.int8(2), name="y")
    q.write_bytes(b"intruder")
    with pytest.raises(FileExistsError):
        w.close(ref)
    assert q.read_bytes() == b"intruder" and no_temp_files(tmp_path)
    # a new file gets the permissions open() would give it
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask


def test_closed_writer_rejects_calls(tmp_path):
    w = OmWriter(tmp_path / "x.om")
    w.close(w.write_scalar(np.int8(1), name="x"))
    assert w.closed
    for call in (
        lambda: w.write_scalar(np.int8(1), name="y"),
        lambda: w.write_group(name="g"),
        lambda: w.write_array(np.zeros(3, np.int8), chunks=(3,)),
        lambda: w.close(None),
    ):
        with pytest.raises(OmEncodingError):
            call()
    w.abort()  # no-op after commit
    assert (tmp_path / "x.om").exists()


# --------------------------------------------------------------------------- remote targets


def _read_fs(fs, path) -> dict:
    r = omfiles.OmFileReader.from_fsspec(fs, path)
    try:
        return ref_node(r)
    finally:
        r.close()


def test_memory_target(tmp_path):
    fs = fsspec.filesystem("memory")
    x = np.random.default_rng(0).integers(0, 1000, (30, 40), dtype=np.uint16)
    with OmWriter("memory://wtest/a.om") as w:
        w.close(w.write_array(x, chunks=(7, 8), name="x"))
    with OmWriter((fs, "/wtest/b.om"), overwrite=False) as w:
        w.close(w.write_array(x, chunks=(7, 8), name="x"))
    assert fs.cat_file("/wtest/a.om") == fs.cat_file("/wtest/b.om")
    np.testing.assert_array_equal(_read_fs(fs, "/wtest/a.om")["data"], x)
    with pytest.raises(FileExistsError):
        OmWriter("memory://wtest/a.om", overwrite=False)
    with pytest.raises(RuntimeError):
        with OmWriter("memory://wtest/a.om") as w:
            w.write_array_streaming(
                _failing_blocks(x, 2, RuntimeError("x")),
                shape=x.shape,
                dtype=x.dtype,
                chunks=(2, 40),
            )
    with pytest.raises(RuntimeError):
        with OmWriter("memory://wtest/new.om") as w:
            w.write_array_streaming(
                _failing_blocks(x, 2, RuntimeError("x")),
                shape=x.shape,
                dtype=x.dtype,
                chunks=(2, 40),
            )
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls("/wtest", detail=False)) == ["a.om", "b.om"]
    np.testing.assert_array_equal(_read_fs(fs, "/wtest/a.om")["data"], x)
    fs.rm("/wtest", recursive=True)


def test_s3_target(s3):
    import s3fs

    fs = s3fs.S3FileSystem(**s3.storage_options)
    b = s3.bucket
    rng = np.random.default_rng(5)
    # > 2 upload parts: incompressible data, 5 MiB parts
    x = rng.integers(0, 2**32, (1400, 2000), dtype=np.uint32)
    url = f"s3://{b}/dir/x.om"
    with OmWriter(url, storage_options=s3.storage_options, buffer_size=5 * 2**20) as w:
        unit = w.write_scalar("K", name="unit")
        w.close(w.write_array(x, chunks=(100, 500), name="x", children=[unit]))
    tree = _read_fs(fs, f"{b}/dir/x.om")
    np.testing.assert_array_equal(tree["data"], x)
    assert tree["children"][0]["value"] == "K"
    old = fs.cat_file(f"{b}/dir/x.om")

    with pytest.raises(FileExistsError):
        OmWriter(url, storage_options=s3.storage_options, overwrite=False)
    for target in (url, f"s3://{b}/dir/new.om"):
        for n_ok in (1, 400):  # before and after the first part was uploaded
            with pytest.raises(RuntimeError):
                with OmWriter(
                    target, storage_options=s3.storage_options, buffer_size=5 * 2**20
                ) as w:
                    w.write_array_streaming(
                        _failing_blocks(x, n_ok, RuntimeError("x")),
                        shape=x.shape, dtype=x.dtype, chunks=(2, 2000),
                    )  # fmt: skip
    fs.invalidate_cache()
    assert fs.ls(f"{b}/dir", detail=False) == [f"{b}/dir/x.om"]
    assert fs.cat_file(f"{b}/dir/x.om") == old
    assert fs.list_multipart_uploads(b) == []


class _LazyArray:
    """Array-like that is not numpy: the writer must slice it block by block."""

    def __init__(self, x):
        self.x, self.shape, self.dtype, self.requests = x, x.shape, x.dtype, []

    def __getitem__(self, key):
        self.requests.append(key)
        return self.x[key]


def test_array_like_is_read_block_by_block(tmp_path):
    x = np.random.default_rng(2).normal(size=(40, 30, 20)).astype(np.float32)
    lazy = _LazyArray(x)
    with OmWriter(tmp_path / "a.om") as w:
        w.close(w.write_array(lazy, chunks=(3, 7, 20), name="a", block_bytes=30 * 20 * 4 * 3))
    with OmWriter(tmp_path / "b.om") as w:
        w.close(w.write_array(x, chunks=(3, 7, 20), name="a"))
    assert (tmp_path / "a.om").read_bytes() == (tmp_path / "b.om").read_bytes()
    assert len(lazy.requests) == 14  # one row of chunks (3 x 30 x 20) per request
    assert max(x[k].size for k in lazy.requests) == 3 * 30 * 20


class _FailingArray(_LazyArray):
    def __getitem__(self, key):
        if len(self.requests) == 5:
            raise OSError("source went away")
        return super().__getitem__(key)


@pytest.mark.parametrize("threads", [1, 2])
def test_failing_source_in_encoder_threads(tmp_path, threads):
    x = np.ones((40, 30), np.float32)
    with pytest.raises(OSError, match="went away"):
        with OmWriter(tmp_path / "x.om") as w:
            w.write_array(_FailingArray(x), chunks=(1, 30), threads=threads, block_bytes=1)
    assert not (tmp_path / "x.om").exists() and no_temp_files(tmp_path)


def test_our_reader_reads_our_files(tmp_path):
    from xarray_om.format.reader import OmFile

    rng = np.random.default_rng(11)
    x = rng.normal(size=(17, 23, 5)).astype(np.float32)
    i = rng.integers(-(2**40), 2**40, (300,), dtype=np.int64)
    with OmWriter(tmp_path / "x.om") as w:
        unit = w.write_scalar("K", name="unit")
        a = w.write_array(x, chunks=(4, 5, 5), name="x", children=[unit])
        b = w.write_array(i, chunks=(64,), name="i", scale_factor=3.0)
        g = w.write_group(name="g", children=[b, w.write_scalar(np.uint16(7), name="n")])
        w.close(w.write_group(name="", children=[a, g]))
    with OmFile(tmp_path / "x.om") as f:
        assert f.version == 3 and f.root.child_names == ["x", "g"]
        np.testing.assert_array_equal(f["x"][...], x)
        assert f["x"].attrs == {"unit": "K"} and f["x"].compression == "fpx_xor_2d"
        np.testing.assert_array_equal(f["g/i"][...], i)
        assert f["g/i"].scale_factor == 3.0 and f["g"].attrs["n"] == 7


def test_file_url_and_local_fs_tuple_are_atomic_local_writes(tmp_path):
    from fsspec.implementations.local import LocalFileSystem

    for target in (f"file://{tmp_path}/u.om", (LocalFileSystem(), str(tmp_path / "t.om"))):
        w = OmWriter(target)
        assert not no_temp_files(tmp_path)  # the temporary lives next to the target
        w.close(w.write_scalar("v", name="x"))
    assert (tmp_path / "u.om").read_bytes() == (tmp_path / "t.om").read_bytes()
    assert no_temp_files(tmp_path)


def test_io_error_poisons_writer(tmp_path, monkeypatch):
    w = OmWriter(tmp_path / "x.om")
    s = w.begin_array(shape=(8, 4), dtype=np.int32, chunks=(2, 4))
    s.write_block(np.zeros((2, 4), np.int32))

    def disk_full(data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(w._sink, "_raw_write", disk_full)
    with pytest.raises(OSError):
        s.write_block(np.zeros((2, 4), np.int32))
    with pytest.raises(OmEncodingError, match="earlier failure"):
        s.write_block(np.zeros((2, 4), np.int32))
    s.cancel()
    with pytest.raises(OmEncodingError, match="earlier write failed"):
        w.write_scalar("x", name="x")
    w.abort()
    assert not (tmp_path / "x.om").exists() and no_temp_files(tmp_path)


def test_local_writeback_is_started_while_writing(tmp_path, monkeypatch):
    """Local sinks hand finished ranges to the kernel (sync_file_range) as they go:
    every byte once, in order, and the file is the same as without it."""
    from xarray_om.format import commit

    data = np.random.default_rng(3).normal(size=(64, 50, 40)).astype(np.float32)
    ref = tmp_path / "ref.om"
    monkeypatch.setattr(commit, "_sync_file_range", None)
    with OmWriter(ref) as w:
        w.close(w.write_array(data, chunks=(1, 10, 40), threads=1))
    ranges = []

    def record(fd, offset, nbytes, flags):
        ranges.append((offset, nbytes, flags))
        return 0

    monkeypatch.setattr(commit, "_sync_file_range", record)
    monkeypatch.setattr(commit, "_WRITEBACK_BYTES", 4096)
    out = tmp_path / "out.om"
    with OmWriter(out, buffer_size=1024) as w:
        w.close(w.write_array(data, chunks=(1, 10, 40), threads=2, block_bytes=20_000))
    assert out.read_bytes() == ref.read_bytes()
    assert len(ranges) > 3
    assert all(flags == commit._SYNC_FILE_RANGE_WRITE for _, _, flags in ranges)
    assert ranges[0][0] == 0
    for (o1, n1, _), (o2, _, _) in itertools.pairwise(ranges):
        assert o1 + n1 == o2  # contiguous, never twice
    assert ranges[-1][0] + ranges[-1][1] <= out.stat().st_size


def test_sync_file_range_is_found_on_linux():
    import sys

    from xarray_om.format import commit

    assert (commit._sync_file_range is not None) == sys.platform.startswith("linux")


def test_encode_buffers_match_encode_block_and_recycle():
    from xarray_om.format.writer import EncodeBuffers, array_codec

    data = np.random.default_rng(5).normal(size=(6, 30, 20)).astype(np.float32)
    for comp, sf in (("fpx_xor_2d", None), ("pfor_delta_2d_int16", 50.0)):
        codec = array_codec(data.shape, data.dtype, (2, 7, 20), comp, sf)
        bufs = EncodeBuffers()
        got, lengths, buf = bufs.encode(codec, data[2:4], (2, 0, 0))
        want, want_lengths = _native.encode_block(codec, data[2:4], (2, 0, 0))
        assert bytes(got) == bytes(want)
        np.testing.assert_array_equal(lengths, want_lengths)
        del got
        bufs.give(buf)
        # the freed buffer is reused for a block that fits in it
        got2, _, buf2 = bufs.encode(codec, data[4:6], (4, 0, 0))
        assert buf2 is buf
        assert bytes(got2) == bytes(_native.encode_block(codec, data[4:6], (4, 0, 0))[0])
        with pytest.raises(OmEncodingError, match="cannot encode block"):
            bufs.encode(codec, data[1:3], (1, 0, 0))  # not on a chunk edge
        with pytest.raises(OmEncodingError, match="dimensions"):
            bufs.encode(codec, data[0], (0, 0))
