"""Many threads reading the same file give the same results as one thread.

The native decoders release the GIL, so dask's threaded scheduler really runs
them in parallel; the reader shares lazily filled caches (records, LUT groups,
read plans, buffer pools) and, for file-like sources, one file position. These
tests hammer one :class:`OmFile` / one node / one dask-backed Dataset from many
threads at once, starting them together on a barrier, and compare every result
with numpy indexing of the values read single-threaded.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from xarray_om.format.reader import OmFile
from xarray_om.format.writer import OmWriter

THREADS = 12
ROUNDS = 25


def _write(path: Path) -> dict[str, np.ndarray]:
    """A file with several dtypes and compressions, many chunks and clipped edges."""
    rng = np.random.default_rng(7)
    arrays = {
        "f32": (
            np.cumsum(rng.normal(size=(37, 29, 11)), axis=0).astype(np.float32),
            dict(chunks=(5, 7, 4)),
        ),
        "f32_int16": (
            np.round(rng.normal(size=(50, 40)) * 10, 1).astype(np.float32),
            dict(chunks=(9, 6), scale_factor=10.0),
        ),
        "f64": (rng.normal(size=(300,)), dict(chunks=(17,))),
        "i16": (rng.integers(-500, 500, size=(23, 31), dtype=np.int16), dict(chunks=(4, 31))),
        "u64": (rng.integers(0, 2**63, size=(40, 6), dtype=np.uint64), dict(chunks=(3, 5))),
    }
    with OmWriter(path) as w:
        refs = [w.write_array(a, name=n, **kw) for n, (a, kw) in arrays.items()]
        w.close(w.write_group(name="", children=refs))
    with OmFile(path) as f:
        # Reference values: single-threaded whole reads.
        return {n: f[n][...] for n in arrays}


@pytest.fixture(scope="module")
def om_file(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path_factory.mktemp("conc") / "conc.om"
    return path, _write(path)


def _random_key(rng: np.random.Generator, shape: tuple[int, ...]) -> tuple:
    key = []
    for n in shape:
        kind = rng.integers(5)
        if kind == 0:
            key.append(slice(None))
        elif kind == 1:
            a, b = sorted(rng.integers(0, n + 1, 2))
            key.append(slice(int(a), int(b)))
        elif kind == 2:
            key.append(slice(None, None, int(rng.choice([-3, -1, 2, 5]))))
        elif kind == 3:
            key.append(int(rng.integers(n)))
        else:
            key.append(np.sort(rng.choice(n, size=min(n, 4), replace=False)))
    return tuple(key)


def _expected(a: np.ndarray, key: tuple) -> np.ndarray:
    # Outer (orthogonal) indexing, like the reader: one axis at a time.
    out = a
    axis = 0
    for k in key:
        if isinstance(k, int):
            out = np.take(out, k, axis=axis)
        else:
            out = out[(slice(None),) * axis + (k,)]
            axis += 1
    return out


def _hammer(work: Callable[[int], None], threads: int = THREADS) -> None:
    """Run work(i) in `threads` threads started together; re-raise the first error."""
    barrier = threading.Barrier(threads)

    def run(i: int) -> None:
        barrier.wait()
        work(i)

    with ThreadPoolExecutor(threads) as ex:
        for fut in [ex.submit(run, i) for i in range(threads)]:
            fut.result()


def _open(kind: str, path: Path) -> OmFile:
    if kind == "path":
        return OmFile(path)
    if kind == "fileobj":  # one shared file position: the source must serialize seek+read
        return OmFile(io.BytesIO(path.read_bytes()))
    if kind == "fsspec":
        import fsspec

        fs = fsspec.filesystem("memory")
        mpath = f"/conc/{path.name}"
        fs.pipe(mpath, path.read_bytes())
        return OmFile(f"memory://{mpath}")
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["path", "fileobj", "fsspec"])
def test_threads_random_reads_one_file(om_file, kind: str) -> None:
    """Random keys on shared node objects of one freshly opened file (cold caches)."""
    path, ref = om_file
    names = sorted(ref)
    errors: list[str] = []
    with _open(kind, path) as f:
        nodes = {n: f[n] for n in names}

        def work(i: int) -> None:
            rng = np.random.default_rng(1000 + i)
            for _ in range(ROUNDS):
                n = names[int(rng.integers(len(names)))]
                key = _random_key(rng, ref[n].shape)
                # Alternate shared node objects and fresh lookups through the file.
                node = nodes[n] if rng.integers(2) else f[n]
                got = node[key]
                exp = _expected(ref[n], key)
                if not np.array_equal(got, exp, equal_nan=True) or got.dtype != exp.dtype:
                    errors.append(f"{kind} {n}{key}: thread {i} read wrong values")

        _hammer(work)
    assert not errors, errors[:5]


def test_threads_random_reads_s3(om_file, s3) -> None:
    """The same over S3 (s3fs: one event loop thread shared by all reader threads)."""
    path, ref = om_file
    url = s3.url("conc.om")
    s3.fs.pipe(url, path.read_bytes())
    names = sorted(ref)
    errors: list[str] = []
    with OmFile(url, storage_options=s3.storage_options) as f:

        def work(i: int) -> None:
            rng = np.random.default_rng(2000 + i)
            for _ in range(ROUNDS // 5):
                n = names[int(rng.integers(len(names)))]
                key = _random_key(rng, ref[n].shape)
                got = f[n][key]
                if not np.array_equal(got, _expected(ref[n], key), equal_nan=True):
                    errors.append(f"s3 {n}{key}: thread {i} read wrong values")

        _hammer(work, threads=8)
    assert not errors, errors[:5]


def test_threads_first_touch_of_caches(om_file) -> None:
    """Every thread's first read is the file's first read: records and LUT groups
    are loaded concurrently, many times over."""
    path, ref = om_file
    for trial in range(8):
        with OmFile(path) as f:
            results: dict[int, dict[str, np.ndarray]] = {}

            def work(i: int, f=f, results=results, trial=trial) -> None:
                order = sorted(ref, key=lambda n: hash((n, i, trial)))
                results[i] = {n: f[n][...] for n in order}

            _hammer(work)
        for i, got in results.items():
            for n, a in got.items():
                np.testing.assert_array_equal(a, ref[n], err_msg=f"trial {trial} thread {i} {n}")


def test_threads_full_reads_fixtures(fixtures_dir: Path, manifest: dict) -> None:
    """The shared fixtures read concurrently equal the reference reader's .npy."""
    cases = []
    for entry in manifest["files"]:
        stack = [entry["root"]]
        while stack:
            node = stack.pop()
            stack += node.get("children", [])
            if node["kind"] == "array" and node.get("expected_npy"):
                # Manifest paths start with the root's name: "/root/a/b", "//a".
                path = "/".join(node["path"].split("/")[2:])
                cases.append((entry["file"], path, node["expected_npy"]))
    assert len(cases) > 30
    files = {name: OmFile(fixtures_dir / name) for name in {c[0] for c in cases}}
    errors: list[str] = []
    try:

        def work(i: int) -> None:
            for name, path, npy in cases[i::3] + cases[(i + 1) % 3 :: 3]:
                f = files[name]
                node = f[path] if path else f.root
                got = node[...]
                exp = np.load(fixtures_dir / npy)
                if not np.array_equal(got, exp, equal_nan=True):
                    errors.append(f"{name}:{path}")

        _hammer(work, threads=9)
    finally:
        for f in files.values():
            f.close()
    assert not errors, errors[:5]


def test_dask_dataset_concurrent_compute(om_file) -> None:
    """One dask-backed Dataset computed by many threads at once, each with the
    threaded scheduler (so decodes of the same chunks overlap)."""
    import dask
    import xarray as xr

    path, ref = om_file
    with xr.open_dataset(path, engine="xarray_om", chunks={}) as ds:
        names = [n for n in ref if n in ds.data_vars]
        assert names, list(ds.data_vars)
        assert all(ds[n].chunks for n in names)  # dask-backed
        errors: list[str] = []

        def work(i: int) -> None:
            rng = np.random.default_rng(i)
            with dask.config.set(scheduler="threads", num_workers=4):
                for _ in range(4):
                    n = names[int(rng.integers(len(names)))]
                    key = _random_key(rng, ref[n].shape)
                    # xarray's isel is orthogonal for 1-D integer arrays too.
                    sel = dict(zip(ds[n].dims, key, strict=True))
                    got = ds[n].isel(sel).values
                    if not np.array_equal(got, _expected(ref[n], key), equal_nan=True):
                        errors.append(f"{n}{key}")
                whole = ds.compute()
                for n in names:
                    if not np.array_equal(whole[n].values, ref[n], equal_nan=True):
                        errors.append(f"{n} whole")

        _hammer(work, threads=6)
    assert not errors, errors[:5]
