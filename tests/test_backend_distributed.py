"""The xarray backend on a dask.distributed LocalCluster with 2 worker processes:
workers reopen files from the pickled specs (local path and S3) and results equal the
single-process read."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import xarray as xr

distributed = pytest.importorskip("distributed")

from test_backend import T0, reference_read, smooth_field, write_run_file  # noqa: E402

from xarray_om.backend import OmBackendEntrypoint  # noqa: E402

ENGINE = OmBackendEntrypoint

pytestmark = [
    pytest.mark.filterwarnings("ignore::xarray_om.backend.EngineNameClashWarning"),
    pytest.mark.filterwarnings("ignore:Found 2 entrypoints for the engine name om"),
]


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.ERROR,
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    data = smooth_field((16, 30, 48), 3)
    path = d / "temperature_2m.om"
    write_run_file(path, data, T0 + 3600 * np.arange(48, dtype=np.int64), chunks=[2, 6, 24])
    return path, reference_read(path)


def _worker_files() -> list[str]:
    from xarray_om.format import reader

    return [core.name for core in list(reader._REGISTRY.values())]


def test_local_path_on_cluster(client, run_file):
    path, ref = run_file
    with xr.open_dataset(path, engine=ENGINE, chunks={}) as ds:
        da = ds["temperature_2m"]
        assert da.data.npartitions == 8 * 5 * 2
        loaded = da.compute()  # the client is the default scheduler
        np.testing.assert_array_equal(loaded.values, ref)
        total = da.sum().compute()
        single = da.sum().compute(scheduler="sync")
        assert float(total) == float(single)
        series = da.isel(lat=[1, 9], lon=[0, 29]).compute()
        np.testing.assert_array_equal(series.values, ref[[1, 9]][:, [0, 29]])
    # the workers opened the file themselves (from the pickled source spec)
    seen = client.run(_worker_files)
    assert any(str(path) in names for names in seen.values()), seen


def test_open_mfdataset_parallel_on_cluster(client, tmp_path):
    paths, blocks = [], []
    for i in range(6):
        p = tmp_path / f"d{i}" / "temperature_2m.om"
        p.parent.mkdir()
        times = T0 + 3600 * (np.arange(12, dtype=np.int64) + 12 * i)
        write_run_file(p, smooth_field((4, 9, 12), i), times, chunks=[1, 9, 12])
        paths.append(p)
        blocks.append(reference_read(p))
    ds = xr.open_mfdataset(paths[::-1], engine=ENGINE, combine="by_coords", parallel=True)
    assert ds.sizes == {"lat": 4, "lon": 9, "time": 72}
    np.testing.assert_array_equal(ds["temperature_2m"].values, np.concatenate(blocks, axis=-1))
    assert float(ds["temperature_2m"].sum().compute()) == float(
        ds["temperature_2m"].sum().compute(scheduler="sync")
    )
    ds.close()


def test_s3_on_cluster(client, s3, run_file):
    path, ref = run_file
    key = "data_run/m/2024/01/01/0000Z/temperature_2m.om"
    s3.fs.put(str(path), f"{s3.bucket}/{key}")
    url = s3.url(key)
    with xr.open_dataset(url, engine=ENGINE, storage_options=s3.storage_options, chunks={}) as ds:
        da = ds["temperature_2m"]
        np.testing.assert_array_equal(da.compute().values, ref)
        assert float(da.sum().compute()) == float(da.sum().compute(scheduler="sync"))
    seen = client.run(_worker_files)
    assert any(url in names for names in seen.values()), seen


def test_cluster_graph_ships_no_data(client, run_file):
    # What the client sends per task is a small node description, never array
    # data: the whole-array sum graph stays under 2 kB per task, and the graph
    # holds no numpy array larger than a coordinate.
    import pickle

    path, _ = run_file
    with xr.open_dataset(path, engine=ENGINE, chunks={"lat": 4}) as ds:
        da = ds["temperature_2m"]
        total = da.sum()
        graph = dict(total.__dask_graph__())
        assert len(pickle.dumps(graph)) / len(graph) < 2048
        found = []

        def walk(obj, depth=0):
            if depth > 12:
                return
            if isinstance(obj, np.ndarray):
                found.append(obj.nbytes)
            for attr in ("args", "kwargs", "value", "func", "array"):
                child = getattr(obj, attr, None)
                if child is not None and child is not obj:
                    walk(child, depth + 1)
            if isinstance(obj, (tuple, list)):
                for c in obj:
                    walk(c, depth + 1)
            if isinstance(obj, dict):
                for c in obj.values():
                    walk(c, depth + 1)

        for task in graph.values():
            walk(task)
        assert all(n <= 1024 for n in found), found
        assert float(client.compute(total).result()) == float(total.compute(scheduler="sync"))
