"""``to_om`` on a ``distributed`` cluster (2 worker processes, one per module).

Blocks are encoded on the workers, the bytes come back to the client, which
appends them in chunk order: the file must be identical to a sequential local
write, and a failing or killed worker must leave the target untouched.
"""

from __future__ import annotations

import os

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import xarray as xr

import xarray_om.accessor  # noqa: F401  (registers .om)
from xarray_om.format.reader import OmFile

distributed = pytest.importorskip("distributed")

ENCODING = {"temperature": {"chunks": (4, 5, 16)}, "precip": {"scale_factor": 100}}


@pytest.fixture(scope="module")
def client():
    # One retry only, so that the killed-worker test gives up quickly.
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        cluster = distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address="127.0.0.1:0",
            host="127.0.0.1",
        )
        c = distributed.Client(cluster, set_as_default=False)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


@pytest.fixture
def as_default(client):
    """Make the module's client the one dask uses (what ``Client(...)`` does for users)."""
    with client.as_current():
        yield client
    client.wait_for_workers(2, timeout=60)


def dataset(seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    shape = (24, 15, 40)
    return xr.Dataset(
        {
            "temperature": (("time", "y", "x"), rng.standard_normal(shape).astype("f4")),
            "precip": (("time", "y", "x"), rng.gamma(0.5, 2.0, shape).astype("f4")),
            "mask": (("y", "x"), rng.integers(0, 2, shape[1:]).astype("u1")),
        },
        coords={
            "time": pd.date_range("2024-01-01", periods=shape[0], freq="h"),
            "y": np.arange(shape[1], dtype="f8"),
            "x": np.arange(shape[2], dtype="f8"),
        },
        attrs={"title": "distributed"},
    )


def local_bytes(tmp_path, ds: xr.Dataset) -> bytes:
    p = tmp_path / "local.om"
    with dask.config.set(scheduler="synchronous"):
        ds.om.to_om(p, encoding=ENCODING, num_workers=1, window=1)
    return p.read_bytes()


def test_cluster_write_is_identical_to_a_sequential_write(tmp_path, as_default):
    ds = dataset()
    lazy = ds.chunk({"time": 5, "y": 7, "x": 13})  # not OM-chunk multiples
    p = tmp_path / "cluster.om"
    with distributed.get_task_stream(as_default) as ts:
        lazy.om.to_om(p, encoding=ENCODING, block_bytes=4096)
    assert p.read_bytes() == local_bytes(tmp_path, ds.compute())
    # the blocks were encoded on the workers
    encode_tasks = [t for t in ts.data if "om-encode" in str(t["key"])]
    assert encode_tasks
    assert {t["worker"] for t in encode_tasks} <= set(as_default.scheduler_info()["workers"])
    with OmFile(str(p)) as f:
        np.testing.assert_array_equal(f["temperature"][...], ds["temperature"].values)
        assert f["temperature"].attrs["coordinates"] == "time y x"


def test_compute_false_runs_on_a_worker(tmp_path, client):
    ds = dataset(1)
    p = tmp_path / "delayed.om"
    d = ds.chunk({"time": 6}).om.to_om(p, encoding=ENCODING, compute=False, block_bytes=8192)
    assert not p.exists()
    fut = client.compute(d)
    assert fut.result(timeout=60) is None
    assert p.read_bytes() == local_bytes(tmp_path, ds)


class Boom(RuntimeError):
    pass


def test_raising_block_on_a_worker_leaves_target_untouched(tmp_path, as_default):
    ds = dataset(2).chunk({"time": 4})

    def fail_late(block, block_info=None):
        if block_info[0]["array-location"][0][0] >= 16:
            raise Boom("worker block failed")
        return block

    ds["precip"] = ds["precip"].copy(data=ds["precip"].data.map_blocks(fail_late, dtype="f4"))
    p = tmp_path / "t.om"
    p.write_bytes(b"previous")
    with pytest.raises(Boom, match="worker block failed"):
        ds.om.to_om(p, encoding=ENCODING, block_bytes=4096)
    assert p.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["t.om"]


def test_killed_worker_leaves_target_untouched(tmp_path, as_default):
    ds = dataset(3).chunk({"time": 4})

    def die(block):
        if block.size:  # not when dask probes the function with an empty array
            os._exit(1)  # the worker process dies mid-write, every time it is tried
        return block

    ds["temperature"] = ds["temperature"].copy(
        data=ds["temperature"].data.map_blocks(die, meta=np.empty((0, 0, 0), "f4"))
    )
    p = tmp_path / "k.om"
    with pytest.raises(distributed.scheduler.KilledWorker):
        ds.om.to_om(p, encoding=ENCODING, block_bytes=4096)
    assert os.listdir(tmp_path) == []


def test_cluster_write_to_s3(s3, tmp_path, as_default):
    ds = dataset(4)
    url = s3.url("cluster/out.om")
    ds.chunk({"time": 7}).om.to_om(
        url, encoding=ENCODING, storage_options=s3.storage_options, block_bytes=4096
    )
    assert s3.fs.cat_file(url) == local_bytes(tmp_path, ds)


def test_numpy_variables_with_a_client_are_encoded_locally(tmp_path, as_default):
    ds = dataset(5)  # no dask arrays at all
    p = tmp_path / "np.om"
    with distributed.get_task_stream(as_default) as ts:
        ds.om.to_om(p, encoding=ENCODING)
    assert not [t for t in ts.data if "om-encode" in str(t["key"])]
    assert p.read_bytes() == local_bytes(tmp_path, ds)


def test_large_dask_array_streams_through_the_cluster(tmp_path, as_default):
    x = da.random.default_rng(7).standard_normal((400, 300, 24), chunks=(50, 100, 24))
    ds = xr.Dataset({"v": (("a", "b", "t"), x.astype("f4"))})
    p = tmp_path / "big.om"
    ds.om.to_om(p, block_bytes=256 * 1024, window=3)
    with OmFile(str(p)) as f:
        got = f["v"][...]
    np.testing.assert_array_equal(got, ds["v"].values)
