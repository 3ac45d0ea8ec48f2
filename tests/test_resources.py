"""No leaked file descriptors, threads or temporary files after many cycles.

Thousands of open/read/close cycles (and opens that fail on corrupt files,
files dropped without ``close()``, pickled nodes, xarray datasets, writers that
commit, abort or fail) must leave the process with the descriptors and threads
it started with. The one deliberate exception is the reader's per-process
registry of reopened files (pickled objects share one open file per process),
which is bounded by ``reader._REGISTRY_SIZE``.
"""

from __future__ import annotations

import gc
import os
import pickle
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from xarray_om.errors import OmError
from xarray_om.format import reader as reader_mod
from xarray_om.format.reader import OmFile
from xarray_om.format.writer import OmWriter

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/fd").is_dir(), reason="counts descriptors through /proc/self/fd"
)

CYCLES = int(os.environ.get("XARRAY_OM_RESOURCE_CYCLES", "1000"))


def n_fds() -> int:
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


def n_threads() -> int:
    """OS threads of the process (Python and native)."""
    import psutil

    return psutil.Process().num_threads()


def fd_targets() -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return sorted(out)


@pytest.fixture
def baseline():
    """Descriptor / thread counts before the test; checks them afterwards."""
    gc.collect()
    before_fds, before_targets = n_fds(), fd_targets()
    before_threads = threading.active_count()

    def check(extra_fds: int = 0) -> None:
        gc.collect()
        now = n_fds()
        leaked = [t for t in fd_targets() if t not in before_targets]
        assert now <= before_fds + extra_fds, (
            f"{now - before_fds} descriptors leaked: {leaked[:10]}"
        )
        assert threading.active_count() <= before_threads, [t.name for t in threading.enumerate()]

    return check


def _small_files(fixtures_dir: Path) -> list[Path]:
    return sorted(fixtures_dir.glob("*.om"))


def _read_all(f: OmFile) -> None:
    stack = [f.root]
    while stack:
        node = stack.pop()
        _ = node.attrs
        if node.kind == "array":
            node[...]
        stack.extend(node.children)


def test_open_read_close_cycles(fixtures_dir: Path, baseline) -> None:
    files = _small_files(fixtures_dir)
    for i in range(CYCLES):
        with OmFile(files[i % len(files)]) as f:
            _read_all(f)
    baseline()


def _copies(fixtures_dir: Path, tmp_path: Path, n: int) -> list[Path]:
    src = (fixtures_dir / "dtype_int16__pfor_delta_2d.om").read_bytes()
    paths = []
    for i in range(n):
        p = tmp_path / f"copy{i}.om"
        p.write_bytes(src)
        paths.append(p)
    return paths


def test_open_without_close(fixtures_dir: Path, tmp_path: Path, baseline) -> None:
    """Files dropped without close() stay open only while in the reader's bounded
    registry (at most _REGISTRY_SIZE), however many distinct files were opened."""
    paths = _copies(fixtures_dir, tmp_path, 3 * reader_mod._REGISTRY_SIZE)
    for i in range(CYCLES):
        f = OmFile(paths[i % len(paths)])
        f.root[0, 0]
        del f
    baseline(extra_fds=reader_mod._REGISTRY_SIZE)


def test_failing_opens_release_descriptors(fixtures_dir: Path, tmp_path: Path, baseline) -> None:
    """Opens that raise (truncated, corrupt, empty, not OM) close what they opened."""
    blob = (fixtures_dir / "hierarchy.om").read_bytes()
    legacy = (fixtures_dir / "legacy_v1.om").read_bytes()
    bad = {
        "empty.om": b"",
        "text.om": b"not an om file at all" * 10,
        "truncated.om": blob[: len(blob) // 2],
        "trailer_only.om": blob[:100] + blob[-24:],
        "legacy_short.om": legacy[:20],
        "bad_root.om": blob[:-24] + b"OM\x03" + bytes(5) + (2**60).to_bytes(8, "little") * 2,
    }
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    paths = sorted(tmp_path.iterdir())
    errors = 0
    for i in range(CYCLES):
        try:
            with OmFile(paths[i % len(paths)]) as f:
                _read_all(f)
        except OmError:
            errors += 1
    assert errors == CYCLES
    baseline()


def test_failing_reads_release_descriptors(fixtures_dir: Path, tmp_path: Path, baseline) -> None:
    """A file whose tree opens but whose chunks are damaged: reads raise, close still works."""
    blob = bytearray((fixtures_dir / "many_chunks.om").read_bytes())
    blob[100:400] = bytes(300)  # zero part of the chunk data
    p = tmp_path / "damaged.om"
    p.write_bytes(bytes(blob))
    failures = 0
    for _ in range(CYCLES // 4):
        with OmFile(p) as f:
            try:
                _read_all(f)
            except OmError:
                failures += 1
    assert failures > 0
    baseline()


def test_pickled_nodes_bounded_registry(fixtures_dir: Path, tmp_path: Path, baseline) -> None:
    """Unpickled nodes reopen their file lazily and share it through a registry of at
    most _REGISTRY_SIZE open files: many distinct files never pile up descriptors."""
    expected = np.load(fixtures_dir / "dtype_int16__pfor_delta_2d.data.npy")
    n_files = reader_mod._REGISTRY_SIZE * 3
    paths = _copies(fixtures_dir, tmp_path, n_files)
    for i in range(max(CYCLES // 2, 2 * n_files)):
        with OmFile(paths[i % n_files]) as f:
            blob = pickle.dumps(f.root)
        node = pickle.loads(blob)
        np.testing.assert_array_equal(node[...], expected)
        del node
    baseline(extra_fds=reader_mod._REGISTRY_SIZE)


def test_xarray_dataset_cycles(fixtures_dir: Path, baseline) -> None:
    import dask
    import xarray as xr

    names = [
        "hierarchy.om",
        "openmeteo_spatial.om",
        "many_chunks.om",
        "dtype_float32__fpx_xor_2d.om",
    ]
    with dask.config.set(scheduler="synchronous"):
        for i in range(CYCLES // 4):
            chunks = {} if i % 2 else None
            with xr.open_dataset(
                fixtures_dir / names[i % len(names)], engine="xarray_om", chunks=chunks
            ) as ds:
                ds.load()
    baseline()


def test_threaded_dask_reads_do_not_grow_threads(fixtures_dir: Path) -> None:
    """dask's pool is reused: thread count after many computes equals the count after one."""
    import dask
    import xarray as xr

    path = fixtures_dir / "dtype_float32__fpx_xor_2d.om"  # 16 chunks: 16 read tasks
    with dask.config.set(scheduler="threads", num_workers=4):
        with xr.open_dataset(path, engine="xarray_om", chunks={}) as ds:
            ds.load()
        gc.collect()
        fds0, threads0 = n_fds(), n_threads()
        for _ in range(CYCLES // 10):
            with xr.open_dataset(path, engine="xarray_om", chunks={}) as ds:
                ds.load()
    assert n_fds() <= fds0
    assert n_threads() <= threads0


def _write_small(path: Path, data: np.ndarray, **kw) -> None:
    with OmWriter(path) as w:
        w.close(w.write_array(data, chunks=(8, 8), name="a", **kw))


def test_writer_cycles_no_leaks(tmp_path: Path, baseline) -> None:
    """Committed, aborted and failed writes leave no descriptor, thread or temp file."""
    import psutil

    data = np.arange(24 * 30, dtype=np.float32).reshape(24, 30)
    threads0 = psutil.Process().num_threads()
    n = max(CYCLES // 5, 20)
    for i in range(n):
        target = tmp_path / f"out{i % 7}.om"
        mode = i % 4
        if mode == 0:  # committed, encoded in a thread pool
            _write_small(target, data, threads=2)
        elif mode == 1:  # explicit abort
            w = OmWriter(tmp_path / "aborted.om")
            w.write_array(data, chunks=(8, 8), name="a")
            w.abort()
        elif mode == 2:  # exception inside the with block
            with pytest.raises(RuntimeError), OmWriter(tmp_path / "raised.om") as w:
                w.write_array(data, chunks=(8, 8), name="a")
                raise RuntimeError("boom")
        else:  # invalid request raised by the writer itself
            with pytest.raises(OmError), OmWriter(tmp_path / "invalid.om") as w:
                w.write_array(data.astype(np.int32), chunks=(8, 8), compression="fpx_xor_2d")
    gc.collect()
    leftovers = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("out"))
    assert leftovers == [], f"temporary or aborted files left behind: {leftovers}"
    for p in tmp_path.iterdir():
        with OmFile(p) as f:
            np.testing.assert_array_equal(f.root[...], data)
    assert psutil.Process().num_threads() <= threads0
    baseline()


@pytest.mark.skipif(sys.platform != "linux", reason="Linux /proc")
def test_fsspec_memory_cycles(fixtures_dir: Path, baseline) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    blob = (fixtures_dir / "hierarchy.om").read_bytes()
    fs.pipe("/res/h.om", blob)
    try:
        for _ in range(CYCLES // 2):
            with OmFile("memory:///res/h.om") as f:
                _read_all(f)
    finally:
        fs.rm("/res/h.om")
    baseline()
