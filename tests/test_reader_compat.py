"""Trees written by the reference writer (omfiles.OmFileWriter) read identically to
omfiles.OmFileReader: structure, metadata, scalar values and array data."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import omfiles
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xarray_om.format.reader import OmArray, OmFile, OmGroup, OmScalar

COMPRESSIONS = {
    "int8": ["pfor_delta_2d"],
    "uint8": ["pfor_delta_2d"],
    "int16": ["pfor_delta_2d"],
    "uint16": ["pfor_delta_2d"],
    "int32": ["pfor_delta_2d"],
    "uint32": ["pfor_delta_2d"],
    "int64": ["pfor_delta_2d"],
    "uint64": ["pfor_delta_2d"],
    "float32": [
        "pfor_delta_2d_int16",
        "fpx_xor_2d",
        "pfor_delta_2d",
        "pfor_delta_2d_int16_logarithmic",
    ],
    "float64": ["fpx_xor_2d", "pfor_delta_2d"],
}

names = st.one_of(
    st.sampled_from(["", "data", "t", "x", "unit", "coordinates", "Zürich ☀"]),
    st.text(min_size=0, max_size=12),
)


@st.composite
def array_spec(draw):
    dtype = draw(st.sampled_from(sorted(COMPRESSIONS)))
    compression = draw(st.sampled_from(COMPRESSIONS[dtype]))
    many = draw(st.integers(0, 9)) == 0
    if many:
        # > 1000 chunks: LUT with many groups
        ndim = draw(st.integers(1, 2))
        shape = [draw(st.integers(1001, 2500))] if ndim == 1 else [draw(st.integers(30, 45)), 37]
        chunks = [1] * ndim if ndim == 2 else [draw(st.integers(1, 2))]
    else:
        ndim = draw(st.integers(1, 4))
        budget = 4000
        shape = []
        for _ in range(ndim):
            d = draw(st.integers(1, max(1, min(40, budget))))
            budget = max(1, budget // d)
            shape.append(d)
        chunks = [draw(st.integers(1, d)) for d in shape]
    scale = draw(st.sampled_from([1.0, 20.0, 100.0])) if dtype.startswith("float") else 1.0
    offset = draw(st.sampled_from([0.0, 0.5])) if dtype.startswith("float") else 0.0
    seed = draw(st.integers(0, 2**32 - 1))
    kind = draw(st.sampled_from(["random", "smooth", "const"]))
    return {
        "dtype": dtype,
        "compression": compression,
        "shape": shape,
        "chunks": chunks,
        "scale": scale,
        "offset": offset,
        "seed": seed,
        "kind": kind,
    }


def make_data(spec) -> np.ndarray:
    rng = np.random.default_rng(spec["seed"])
    shape = tuple(spec["shape"])
    dt = np.dtype(spec["dtype"])
    if spec["kind"] == "const":
        base = np.full(shape, 3.0)
    elif spec["kind"] == "smooth":
        base = np.cumsum(rng.normal(size=shape), axis=-1)
    else:
        base = rng.normal(scale=30, size=shape)
    if dt.kind == "f":
        if spec["compression"] == "pfor_delta_2d_int16_logarithmic":
            base = np.abs(base)
        data = base.astype(dt)
        if data.size > 3 and spec["kind"] == "random":
            data.reshape(-1)[:: max(2, data.size // 5)] = np.nan
        return data
    info = np.iinfo(dt)
    if spec["kind"] == "random":
        return rng.integers(info.min, info.max, size=shape, dtype=dt, endpoint=True)
    return np.clip(np.round(base * 10), info.min, info.max).astype(dt)


scalar_values = st.one_of(
    st.integers(-128, 127).map(np.int8),
    st.integers(0, 255).map(np.uint8),
    st.integers(-(2**15), 2**15 - 1).map(np.int16),
    st.integers(0, 2**16 - 1).map(np.uint16),
    st.integers(-(2**31), 2**31 - 1).map(np.int32),
    st.integers(0, 2**32 - 1).map(np.uint32),
    st.integers(-(2**63), 2**63 - 1).map(np.int64),
    st.integers(0, 2**64 - 1).map(np.uint64),
    st.floats(width=32).map(np.float32),
    st.floats().map(np.float64),
    st.floats(allow_nan=False),
    st.integers(-(2**40), 2**40),
    st.text(max_size=20),
)


def tree(depth=0):
    leaf = st.one_of(
        st.tuples(st.just("scalar"), names, scalar_values, st.just(())),
        st.tuples(
            st.just("array"),
            names,
            array_spec(),
            st.lists(st.tuples(st.just("scalar"), names, scalar_values, st.just(())), max_size=3),
        ),
    )
    if depth >= 3:
        return leaf
    return st.one_of(
        leaf,
        st.tuples(
            st.just("group"),
            names,
            st.none(),
            st.lists(st.deferred(lambda: tree(depth + 1)), max_size=4),
        ),
        st.tuples(
            st.just("array"),
            names,
            array_spec(),
            st.lists(st.deferred(lambda: tree(depth + 1)), max_size=3),
        ),
    )


def write_tree(w, node):
    kind, name, payload, children = node
    kids = [write_tree(w, c) for c in children]
    kw = {"children": kids} if kids else {}
    if kind == "scalar":
        return w.write_scalar(payload, name=name, **kw)
    if kind == "group":
        return w.write_group(name, kids)
    data = make_data(payload)
    return w.write_array(
        data,
        chunks=payload["chunks"],
        scale_factor=payload["scale"],
        add_offset=payload["offset"],
        compression=payload["compression"],
        name=name,
        **kw,
    )


def compare(ours, ref, rng, depth=0):
    assert ours.name == ref.name
    assert ours.kind == ("array" if ref.is_array else "group" if ref.is_group else "scalar")
    assert len(ours.children) == ref.num_children
    if ref.is_array:
        assert isinstance(ours, OmArray)
        assert ours.shape == tuple(ref.shape)
        assert ours.chunks == tuple(ref.chunks)
        assert ours.dtype == ref.dtype
        assert ours.compression == ref.compression_name
        assert ours.scale_factor == ref.scale_factor
        assert ours.add_offset == ref.add_offset
        full = ref[...]
        got = ours[...]
        assert got.dtype == full.dtype
        np.testing.assert_array_equal(got, full, strict=True)
        for _ in range(3):
            # step-1 slices and integers: the keys the reference supports
            key = []
            for n in ref.shape:
                if rng.random() < 0.3:
                    key.append(int(rng.integers(0, n)))
                else:
                    a = int(rng.integers(0, n))
                    b = int(rng.integers(a + 1, n + 1))
                    key.append(slice(a, b))
            np.testing.assert_array_equal(ours[tuple(key)], ref[tuple(key)], strict=True)
            # other numpy keys against numpy indexing of the reference's full read
            key = []
            for n in ref.shape:
                r = rng.random()
                if r < 0.3:
                    key.append(slice(None, None, int(rng.choice([-3, -1, 2, 5]))))
                elif r < 0.5:
                    key.append(rng.integers(-n, n, size=int(rng.integers(0, 4))))
                else:
                    key.append(slice(None))
            exp = full
            for axis in reversed(range(len(key))):
                k = key[axis]
                exp = (
                    exp[(slice(None),) * axis + (k,)]
                    if isinstance(k, slice)
                    else np.take(exp, k, axis)
                )
            np.testing.assert_array_equal(ours[tuple(key)], exp, strict=True)
    elif ref.is_scalar:
        assert isinstance(ours, OmScalar)
        assert repr(ours.value) == repr(ref.read_scalar())
    else:
        assert isinstance(ours, OmGroup)
    for i, child in enumerate(ours.children):
        compare(child, ref.get_child_by_index(i), rng, depth + 1)


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory(prefix="om_compat_") as d:
        yield Path(d)


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(root=tree(), placement=st.sampled_from(["tail", "inline"]))
def test_reference_written_trees(workdir, root, placement):
    path = workdir / "tree.om"
    w = omfiles.OmFileWriter(str(path), metadata_placement=placement)
    w.close(write_tree(w, root))
    ref = omfiles.OmFileReader.from_path(str(path))
    rng = np.random.default_rng(len(repr(root)))
    with OmFile(path) as f:
        compare(f.root, ref, rng)
    ref.close()


@settings(max_examples=25, deadline=None)
@given(spec=array_spec())
def test_reference_written_arrays_streaming(workdir, spec):
    """write_array_streaming (chunk-by-chunk blocks) reads back like the reference reader."""
    data = make_data(spec)
    path = workdir / "stream.om"
    shape, chunks = spec["shape"], spec["chunks"]
    # blocks of one chunk along dim 0 and the full extent elsewhere (consecutive chunk runs)
    blocks = (data[i : i + chunks[0]] for i in range(0, shape[0], chunks[0]))
    w = omfiles.OmFileWriter(str(path))
    arr = w.write_array_streaming(
        shape,
        [chunks[0], *shape[1:]] if len(shape) > 1 else chunks,
        blocks,
        dtype=data.dtype,
        scale_factor=spec["scale"],
        add_offset=spec["offset"],
        compression=spec["compression"],
        name="s",
    )
    w.close(arr)
    ref = omfiles.OmFileReader.from_path(str(path))
    with OmFile(path) as f:
        compare(f.root, ref, np.random.default_rng(spec["seed"]))
    ref.close()
