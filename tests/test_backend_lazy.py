"""The backend's lazily indexed array (``OmLazilyIndexedArray``): the fast path dask's
per-block tasks take, and xarray's lazy-indexing semantics kept everywhere else."""

from __future__ import annotations

import pickle

import dask
import dask.core
import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_backend import T0, reference_read, smooth_field, write_run_file
from xarray.core import indexing

from xarray_om import backend
from xarray_om.backend import OmBackendArray, OmBackendEntrypoint, OmLazilyIndexedArray
from xarray_om.format.reader import OmArray, OmFile

ENGINE = OmBackendEntrypoint

pytestmark = [
    pytest.mark.filterwarnings("ignore::xarray_om.backend.EngineNameClashWarning"),
    pytest.mark.filterwarnings("ignore:Found 2 entrypoints for the engine name om"),
]

SHAPE = (12, 40, 48)  # lat, lon, time; OM chunks (2, 6, 16)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    path = tmp_path_factory.mktemp("lazy") / "temperature_2m.om"
    data = smooth_field(SHAPE, 11)
    write_run_file(path, data, T0 + 3600 * np.arange(SHAPE[2]), chunks=[2, 6, 16])
    return path, reference_read(path)


def open_om(path, **kw) -> xr.Dataset:
    return xr.open_dataset(path, engine=ENGINE, **kw)


@pytest.fixture
def reads(monkeypatch):
    """Keys passed to OmArray.read, in order."""
    keys: list = []
    orig = OmArray.read

    def read(self, key=..., **kw):
        keys.append(key)
        return orig(self, key, **kw)

    monkeypatch.setattr(OmArray, "read", read)
    return keys


def _inner(var: xr.Variable):
    """The backend's own object under xarray's CopyOnWriteArray / MemoryCachedArray."""
    data = var._data
    while not isinstance(data, OmLazilyIndexedArray):
        data = data.array
    return data


# --------------------------------------------------------------------------- slice composition

_SLICE = st.builds(
    slice,
    st.none() | st.integers(-60, 60),
    st.none() | st.integers(-60, 60),
    st.none() | st.integers(-7, 7).filter(lambda v: v != 0),
)


@settings(max_examples=400, deadline=None)
@given(size=st.integers(0, 50), first=_SLICE, second=_SLICE)
def test_compose_slices_is_numpy_slicing_twice(size, first, second):
    a = np.arange(size)
    (key,), (n,) = backend._compose_keys((first,), (second,), (size,))
    expected = a[first][second]
    np.testing.assert_array_equal(a[key], expected)
    assert n == expected.size
    # plain int members (what the reader and xarray's indexers expect)
    assert all(v is None or type(v) is int for v in (key.start, key.stop, key.step))


@st.composite
def _outer_member(draw, size: int, allow_int: bool = True):
    """One member of an outer key on an axis of ``size``: slice, int or int array."""
    kinds = ["slice", "array"] + (["int"] if allow_int and size else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "slice":
        return draw(_SLICE)
    if kind == "int":
        return draw(st.integers(-size, size - 1))
    if size == 0:
        return np.zeros(0, np.int64)
    return np.array(draw(st.lists(st.integers(-size, size - 1), max_size=6)), np.int64)


def _outer(a: np.ndarray, key: tuple) -> np.ndarray:
    """numpy's outer (orthogonal) indexing, one axis at a time."""
    axis = 0
    for k in key:
        if isinstance(k, (int, np.integer)):
            a = np.take(a, k, axis=axis)
        else:
            a = a[(slice(None),) * axis + (k,)]
            axis += 1
    return a


@settings(max_examples=300, deadline=None)
@given(data=st.data(), shape=st.lists(st.integers(0, 9), min_size=1, max_size=3))
def test_compose_keys_is_outer_indexing_twice(data, shape):
    a = np.arange(int(np.prod(shape))).reshape(shape)
    first = tuple(data.draw(_outer_member(n)) for n in shape)
    mid = _outer(a, first)
    second = tuple(data.draw(_outer_member(n)) for n in mid.shape)
    expected = _outer(mid, second)
    key, out_shape = backend._compose_keys(first, second, tuple(shape))
    np.testing.assert_array_equal(_outer(a, key), expected)
    assert out_shape == expected.shape


def test_compose_keys_empty_reverse_slice_from_before_the_start():
    # xarray 2026.9's normalize_slice maps this (nothing) to slice(-1, None, -1) (everything)
    (key,), (n,) = backend._compose_keys((slice(None),), (slice(-13, None, -1),), (12,))
    assert n == 0 and np.arange(12)[key].size == 0
    with pytest.raises(IndexError):
        backend._compose_keys((slice(2, 5),), (3,), (12,))


# --------------------------------------------------------------------------- the object itself


def test_variables_hold_the_fast_lazy_array(run):
    path, _ = run
    with open_om(path) as ds:
        lazy = _inner(ds["temperature_2m"].variable)
        assert type(lazy.array) is OmBackendArray
        assert lazy.shape == SHAPE and lazy.ndim == 3 and lazy.dtype == np.float32
        assert isinstance(lazy, indexing.LazilyIndexedArray)


def test_fast_path_objects_equal_xarrays(run):
    # What the fast path builds is what LazilyIndexedArray builds (same
    # selection, shape, dtype), and reads the same values.
    path, ref = run
    f = OmFile(path)
    ours = OmLazilyIndexedArray(OmBackendArray(f.root))
    stock = indexing.LazilyIndexedArray(OmBackendArray(f.root))
    steps = [
        indexing.OuterIndexer((slice(1, 11, 3), slice(None, None, -1), slice(4, 40))),
        indexing.BasicIndexer((slice(None, None, -1), slice(2, 30, 5), slice(-20, None, 2))),
        indexing.OuterIndexer((slice(0, 5), slice(None), slice(None, None, -3))),
    ]
    expected = ref
    for key in steps:
        ours = indexing.apply_indexer(ours, key)
        stock = indexing.apply_indexer(stock, key)
        expected = expected[key.tuple]
        assert type(ours) is OmLazilyIndexedArray
        assert ours.shape == stock.shape == expected.shape
        assert ours.ndim == len(expected.shape) and ours.dtype == stock.dtype
        got = ours.get_duck_array()
        assert type(got) is np.ndarray
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(stock.get_duck_array(), expected)
    f.close()


def test_other_keys_take_xarrays_way(run):
    path, ref = run
    f = OmFile(path)
    lazy = OmLazilyIndexedArray(OmBackendArray(f.root))
    # integers drop axes (a BasicIndexer with ints is not composed here)
    sub = lazy[indexing.BasicIndexer((3, slice(None), slice(2, 9)))]
    assert type(sub) is OmLazilyIndexedArray and sub.shape == (40, 7) and sub.ndim == 2
    np.testing.assert_array_equal(sub.get_duck_array(), ref[3, :, 2:9])
    # ... and later keys on it compose with xarray's code
    sub2 = sub.oindex[indexing.OuterIndexer((np.array([5, 0, 5]), slice(None, None, -2)))]
    assert sub2.shape == (3, 4)
    np.testing.assert_array_equal(sub2.get_duck_array(), ref[3][[5, 0, 5]][:, 2:9][:, ::-2])
    # outer arrays
    out = lazy.oindex[indexing.OuterIndexer((np.array([1, 0]), slice(3, 5), np.array([7])))]
    assert type(out) is OmLazilyIndexedArray and out.shape == (2, 2, 1)
    np.testing.assert_array_equal(out.get_duck_array(), ref[[1, 0]][:, 3:5][:, :, [7]])
    # vectorized keys and transposes: xarray's LazilyVectorizedIndexedArray
    vec = lazy.vindex[indexing.VectorizedIndexer((np.array([1, 2]), np.array([3, 4]), slice(0, 2)))]
    assert isinstance(vec, indexing.LazilyVectorizedIndexedArray)
    np.testing.assert_array_equal(vec.get_duck_array(), ref[[1, 2], [3, 4], 0:2])
    t = lazy.transpose((2, 0, 1))
    np.testing.assert_array_equal(t.get_duck_array(), ref.transpose(2, 0, 1))
    # xarray's own class unwraps ours as it unwraps itself
    plain = indexing.LazilyIndexedArray(sub)
    assert type(plain) is indexing.LazilyIndexedArray and plain.key is sub.key
    f.close()


def test_pickles_with_its_selection(run):
    path, ref = run
    with open_om(path) as ds:
        lazy = _inner(ds["temperature_2m"].variable)
        sub = lazy.oindex[indexing.OuterIndexer((slice(None, None, -5), slice(3, 9), slice(1, 2)))]
        back = pickle.loads(pickle.dumps(sub))
        assert type(back) is OmLazilyIndexedArray
        assert (back.shape, back.ndim, back.dtype) == (sub.shape, sub.ndim, sub.dtype)
        np.testing.assert_array_equal(back.get_duck_array(), ref[::-5, 3:9, 1:2])


# --------------------------------------------------------------------------- laziness


def test_no_read_until_values(run, reads):
    path, ref = run
    with open_om(path) as ds:
        reads.clear()  # opening reads the small time coordinate
        da = ds["temperature_2m"]
        sub = da.isel(lat=slice(2, 10, 2), time=slice(None, None, -1))
        sub = sub.isel(lat=slice(None, None, -1), lon=slice(5, 25))
        sub = sub.isel(lon=slice(None, None, 4))
        assert reads == []
        got = sub.values
        # one read with the composed selection
        assert reads == [(slice(8, 0, -2), slice(5, 25, 4), slice(47, None, -1))]
        np.testing.assert_array_equal(got, ref[2:10:2][::-1, 5:25][:, ::4, ::-1])


def test_point_load_reads_only_the_point(run, reads):
    path, ref = run
    with open_om(path) as ds:
        reads.clear()
        one = ds.isel(time=0, lat=3).load()
        assert reads == [(3, slice(None), 0)]
        np.testing.assert_array_equal(one["temperature_2m"].values, ref[3, :, 0])


# --------------------------------------------------------------------------- dask


def test_every_dask_task_takes_the_fast_path(run, monkeypatch):
    """dask blocks of an untouched variable are read with their own slices: no
    composition (ours or xarray's), one read per block with the block's key."""
    path, ref = run
    calls = {"compose": 0, "xarray": 0}
    fast, slow = backend._compose_keys, indexing.LazilyIndexedArray._updated_key

    def counted_fast(*a):
        calls["compose"] += 1
        return fast(*a)

    def counted_slow(self, key):
        calls["xarray"] += 1
        return slow(self, key)

    with open_om(path, chunks={}) as ds:
        da = ds["temperature_2m"]
        assert da.chunks == ((2,) * 6, (6,) * 6 + (4,), (16,) * 3)  # one block per OM chunk
        monkeypatch.setattr(backend, "_compose_keys", counted_fast)
        monkeypatch.setattr(indexing.LazilyIndexedArray, "_updated_key", counted_slow)
        keys = []
        orig = OmArray.read
        monkeypatch.setattr(
            OmArray, "read", lambda self, key=...: keys.append(key) or orig(self, key)
        )
        np.testing.assert_array_equal(da.compute(scheduler="sync").values, ref)
        assert calls == {"compose": 0, "xarray": 0}
        assert len(keys) == da.data.npartitions
        assert (slice(10, 12), slice(36, 40), slice(32, 48)) in keys


def test_dask_blocks_from_a_lazy_selection(run):
    # .chunk() after lazy isel: the per-block slices compose with a non-trivial base key
    path, ref = run
    with open_om(path) as ds:
        sub = ds["temperature_2m"].isel(lat=slice(None, None, -3), lon=slice(3, 38, 2))
        sub = sub.isel(time=slice(40, 2, -5)).chunk({"lat": 2, "lon": 5, "time": 3})
        assert sub.data.npartitions == 2 * 4 * 3
        with dask.config.set(scheduler="threads", num_workers=2):
            got = sub.values
        np.testing.assert_array_equal(got, ref[::-3, 3:38:2, 40:2:-5])


def test_graph_pickles_and_tasks_run_after_unpickling(run):
    path, ref = run
    with open_om(path, chunks={"lat": 4, "lon": 20, "time": 16}) as ds:
        arr = ds["temperature_2m"].data
        graph = pickle.loads(pickle.dumps(dict(arr.__dask_graph__())))
        keys = list(dask.core.flatten(arr.__dask_keys__()))
        blocks = dask.get(graph, keys)
        assert len(blocks) == arr.npartitions
        np.testing.assert_array_equal(blocks[0], ref[:4, :20, :16])


def _canonical(s: slice, n: int) -> slice:
    """``s`` with in-range bounds: dask 2026.11's ``normalize_slice`` (like xarray's)
    selects everything for a negative step starting before index 0, e.g. ``[-13::-1]``
    on 12 elements; the dask variant of the test is about our reads, not that."""
    r = range(n)[s]
    return slice(r.start, r.stop if r.stop >= 0 else None, r.step) if r else slice(0, 0)


@st.composite
def _selections(draw, canonical: bool = False):
    """A chain of isel steps (slices with steps, ints, lists) on (lat, lon, time)."""
    sizes = dict(zip(("lat", "lon", "time"), SHAPE, strict=True))
    steps = []
    for _ in range(draw(st.integers(1, 3))):
        step = {}
        for dim in list(sizes):
            n = sizes[dim]
            kind = draw(st.sampled_from(["none", "slice", "slice", "int", "list"]))
            if kind == "none" or n == 0:
                continue
            if kind == "int":
                step[dim] = draw(st.integers(-n, n - 1))
                del sizes[dim]
            elif kind == "list":
                step[dim] = draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=4))
                sizes[dim] = len(step[dim])
            else:
                s = draw(_SLICE)
                step[dim] = _canonical(s, n) if canonical else s
                sizes[dim] = len(range(n)[s])
        steps.append(step)
    return steps


def _numpy_chain(ref: np.ndarray, steps: list[dict]) -> np.ndarray:
    dims = ["lat", "lon", "time"]
    out = ref
    for step in steps:
        for dim, k in step.items():
            axis = dims.index(dim)
            out = (
                np.take(out, k, axis=axis)
                if isinstance(k, int)
                else out[(slice(None),) * axis + (k,)]
            )
            if isinstance(k, int):
                dims.remove(dim)
    return out


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), chunked=st.booleans())
def test_isel_chains_match_numpy(run, data, chunked):
    path, ref = run
    steps = data.draw(_selections(canonical=chunked))
    expected = _numpy_chain(ref, steps)
    with open_om(path, chunks={} if chunked else None) as ds:
        da = ds["temperature_2m"]
        for step in steps:
            da = da.isel(step)
        got = da.compute(scheduler="sync").values if chunked else da.values
    np.testing.assert_array_equal(got, expected)


def test_vectorized_selection_lazy_and_dask(run):
    path, ref = run
    pts = {"lat": xr.DataArray([1, 5, 9], dims="p"), "lon": xr.DataArray([2, 30, 3], dims="p")}
    for chunks in (None, {}):
        with open_om(path, chunks=chunks) as ds:
            got = ds["temperature_2m"].isel(time=slice(None, None, -7)).isel(pts).values
        np.testing.assert_array_equal(got, ref[[1, 5, 9], [2, 30, 3]][:, ::-7])


def test_transpose_lazy_and_dask(run):
    path, ref = run
    for chunks in (None, {}):
        with open_om(path, chunks=chunks) as ds:
            da = (
                ds["temperature_2m"].isel(lon=slice(None, None, -9)).transpose("time", "lat", "lon")
            )
            np.testing.assert_array_equal(da.values, ref[:, ::-9].transpose(2, 0, 1))
