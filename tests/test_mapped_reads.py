"""Local chunk data decoded in place from a memory map of the file.

The map is read only by the native decoder's guarded entry point: a file
truncated while mapped turns the next access past its new end into SIGBUS,
which the guard catches and reports as an OmFormatError naming the file; a
SIGBUS that does not come from a guarded decode still takes its usual course
(default action, or Python's faulthandler). The signal tests run in
subprocesses so that a failure of the guard fails the test, not the suite.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import omfiles
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xarray_om import _native
from xarray_om.format import source as source_mod
from xarray_om.format.reader import OmFile
from xarray_om.format.source import Source

pytestmark = pytest.mark.skipif(os.name != "posix", reason="file maps are made on POSIX only")

ARRAYS = {
    # name: (shape, dtype, write options)
    "f32_fpx": ((23, 17, 30), np.float32, dict(chunks=[5, 4, 7])),
    "f32_int16": ((6, 12, 50), np.float32, dict(chunks=[1, 12, 8], scale_factor=10.0)),
    "f64": ((33, 9), np.float64, dict(chunks=[33, 2])),
    "i64": ((100,), np.int64, dict(chunks=[7])),
    "u8": ((3, 4, 5, 6), np.uint8, dict(chunks=[2, 3, 2, 4])),
}


def _values(rng, shape, dtype):
    if np.issubdtype(dtype, np.floating):
        return np.cumsum(rng.normal(size=shape), axis=-1).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(max(info.min, -(2**40)), min(info.max, 2**40), size=shape, dtype=dtype)


@pytest.fixture(scope="module")
def ref_file(tmp_path_factory) -> tuple[Path, dict[str, np.ndarray]]:
    """Written by the reference writer; values as the reference reads them."""
    rng = np.random.default_rng(5)
    path = tmp_path_factory.mktemp("mapped") / "ref.om"
    w = omfiles.OmFileWriter(str(path))
    kids = [
        w.write_array(_values(rng, shape, dtype), name=name, **kw)
        for name, (shape, dtype, kw) in ARRAYS.items()
    ]
    w.close(w.write_group("", children=kids))
    r = omfiles.OmFileReader(str(path))
    ref = {name: np.asarray(r.get_child_by_name(name)[...]) for name in ARRAYS}
    r.close()
    return path, ref


@st.composite
def _key(draw, shape):
    """Per axis an int, a slice with any step, or an integer list (outer indexing)."""
    key = []
    for n in shape:
        kind = draw(st.sampled_from(["int", "slice", "slice", "list", "all"]))
        if kind == "int":
            key.append(draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            a = draw(st.none() | st.integers(-n - 2, n + 2))
            b = draw(st.none() | st.integers(-n - 2, n + 2))
            step = draw(st.none() | st.integers(-4, 4).filter(bool))
            key.append(slice(a, b, step))
        elif kind == "list":
            key.append(draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=5)))
        else:
            key.append(slice(None))
    return tuple(key)


def _outer(a: np.ndarray, key: tuple) -> np.ndarray:
    axis = 0
    for k in key:
        if isinstance(k, int):
            a = np.take(a, k, axis=axis)
        else:
            a = a[(slice(None),) * axis + (k,)]
            axis += 1
    return a


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), name=st.sampled_from(sorted(ARRAYS)))
def test_mapped_reads_equal_the_reference(ref_file, data, name):
    path, ref = ref_file
    key = data.draw(_key(ARRAYS[name][0]))
    expected = _outer(ref[name], key)
    with OmFile(path) as f:
        got = f[name][key]
        assert type(f.source.view()) is _native.FileMap
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == expected.dtype


def test_pread_and_mapped_reads_agree(ref_file, monkeypatch):
    path, ref = ref_file
    keys = [..., (0,), (slice(None, None, -1),), (slice(1, None, 3),)]
    for mmap in (True, False):
        monkeypatch.setattr(source_mod, "MMAP_READS", mmap)
        with OmFile(path) as f:
            assert (type(f.source.view()) is _native.FileMap) is mmap
            for name in ARRAYS:
                for key in keys:
                    np.testing.assert_array_equal(f[name][key], ref[name][key])


def test_mapped_reads_read_no_chunk_bytes_through_the_source(ref_file, monkeypatch):
    """Every read path (one chunk, a run of chunks, a box, outer keys) decodes from the
    map: after the metadata, the source reads nothing."""
    path, ref = ref_file
    calls: list[str] = []
    for meth in ("read_range_into", "read_into", "_fetch_ranges"):
        orig = getattr(Source, meth)

        def spy(self, *a, _orig=orig, _name=meth, **kw):
            calls.append(_name)
            return _orig(self, *a, **kw)

        monkeypatch.setattr(Source, meth, spy)
    with OmFile(path) as f:
        f.source.view()  # mapped now, not after a first small pread (view_for)
        arrays = {name: f[name] for name in ARRAYS}
        for a in arrays.values():
            a._read_ctx()[1].load_all()  # the LUTs: metadata, read through the source
        calls.clear()
        a = arrays["f32_int16"]
        np.testing.assert_array_equal(a[2, 5, 9], ref["f32_int16"][2, 5, 9])  # one chunk
        np.testing.assert_array_equal(a[2, 5, :], ref["f32_int16"][2, 5, :])  # run
        np.testing.assert_array_equal(a[1:4, 2:9, 3:30], ref["f32_int16"][1:4, 2:9, 3:30])
        np.testing.assert_array_equal(a[[0, 5], :, ::-3], ref["f32_int16"][[0, 5]][:, :, ::-3])
        np.testing.assert_array_equal(arrays["u8"][...], ref["u8"])
        assert calls == []


def test_closing_unmaps_and_keeps_one_descriptor(ref_file):
    path, ref = ref_file

    def maps() -> int:
        with open("/proc/self/maps") as fh:
            return sum(str(path) in line for line in fh)

    def fds() -> int:
        return sum(_target(fd) == str(path) for fd in os.listdir("/proc/self/fd"))

    if not os.path.exists("/proc/self/maps"):
        pytest.skip("needs /proc (Linux)")
    source_mod.release_maps()
    gc.collect()
    f = OmFile(path)
    assert type(f.source.view()) is _native.FileMap  # small reads alone would pread first
    np.testing.assert_array_equal(f["f64"][...], ref["f64"])
    assert maps() >= 1
    assert fds() == 1  # the map holds no descriptor of its own
    f.close()
    gc.collect()
    assert fds() == 0
    assert maps() >= 1  # kept for the next open of the same file
    source_mod.release_maps()
    gc.collect()
    assert maps() == 0


def test_reopens_share_one_map_and_replaced_files_get_a_new_one(tmp_path):
    path = tmp_path / "m.om"
    rng = np.random.default_rng(1)

    def write(data):
        from xarray_om.format.writer import OmWriter

        with OmWriter(path) as w:  # a new file renamed over the old one: a new inode
            w.close(w.write_array(data, chunks=(4, 50)))

    old = rng.normal(size=(40, 50)).astype(np.float32)
    write(old)
    source_mod.release_maps()
    views = []
    k = source_mod.MAP_AFTER_READS
    for _ in range(k + 1):  # open + one small read + close, again and again
        with OmFile(path) as f:
            np.testing.assert_array_equal(f.root[5, :], old[5])
            views.append(f.source._view)
    # the first small reads of a file are preads; the k-th maps it, later opens
    # reuse that map
    assert views[: k - 1] == [None] * (k - 1)
    assert type(views[k - 1]) is _native.FileMap and views[k] is views[k - 1]
    new = old + 1
    write(new)
    with OmFile(path) as f:
        view = f.source.view()
        assert type(view) is _native.FileMap and view is not views[k]
        np.testing.assert_array_equal(f.root[5, :], new[5])
        np.testing.assert_array_equal(f.root[...], new)
    assert sum(k[0] == str(path) for k in source_mod._MAPS) == 1  # the old map dropped
    source_mod.release_maps()


def test_a_large_first_read_maps_at_once(tmp_path, monkeypatch):
    from xarray_om.format.writer import OmWriter

    path = tmp_path / "big.om"
    data = np.arange(64 * 50, dtype=np.float32).reshape(64, 50)
    with OmWriter(path) as w:
        w.close(w.write_array(data, chunks=(4, 50)))
    source_mod.release_maps()
    with OmFile(path) as f:
        nbytes = f.size
    monkeypatch.setattr(source_mod, "MAP_MIN_BYTES", nbytes // 2)
    with OmFile(path) as f:
        np.testing.assert_array_equal(f.root[0, :], data[0])  # one small chunk: pread
        assert f.source._view is None
        np.testing.assert_array_equal(f.root[...], data)  # more than MAP_MIN_BYTES: mapped
        assert type(f.source._view) is _native.FileMap
    source_mod.release_maps()


def test_unpickled_sources_know_their_file(ref_file):
    """A source restored from a pickle (opened lazily) identifies its file like an
    opened one, so it shares the cached map."""
    import pickle

    path, _ = ref_file
    with OmFile(path) as f:
        m = f.source.view()
        back = pickle.loads(pickle.dumps(f.source))
        assert back.view_for(1) is m  # a small read: the cached map, found by identity
        assert back._ident == f.source._ident and back._ident is not None
        back.close()


def _target(fd: str) -> str:
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


def test_close_while_other_threads_read(ref_file):
    """Closing never pulls the map from under a running decode: readers either finish
    or get the closed-file ValueError."""
    path, ref = ref_file
    errors: list[BaseException] = []
    for _ in range(20):
        f = OmFile(path)
        a = f["f32_fpx"]
        go = threading.Event()

        def read(a=a, go=go):
            go.wait()
            for _ in range(30):
                try:
                    np.testing.assert_array_equal(a[...], ref["f32_fpx"])
                except ValueError as e:
                    if "closed" not in str(e):
                        errors.append(e)
                    return
                except BaseException as e:
                    errors.append(e)
                    return

        threads = [threading.Thread(target=read) for _ in range(3)]
        for t in threads:
            t.start()
        go.set()
        f.close()
        for t in threads:
            t.join()
    assert errors == []


# --------------------------------------------------------------------------- SIGBUS

_SCRIPT = """
import faulthandler, os, signal, sys
import numpy as np
from xarray_om import OmFile
from xarray_om.errors import OmFormatError
from xarray_om.format.writer import OmWriter

mode = sys.argv[1]
path = sys.argv[2]
data = np.random.default_rng(0).normal(size=(400, 1000)).astype(np.float32)
with OmWriter(path) as w:
    w.close(w.write_array(data, chunks=(8, 1000)))
f = OmFile(path)
a = f.root
f.source.view()  # mapped now (small reads alone would pread first)
assert (a[:8] == data[:8]).all()  # the guard is installed
if mode == "faulthandler-after":
    faulthandler.enable()  # replaces our SIGBUS handler: the next decode reinstalls it
if mode == "foreign":
    signal.raise_signal(signal.SIGBUS)  # not from a decode: the usual action applies
    print("survived a foreign SIGBUS")
    sys.exit(3)
os.truncate(path, os.path.getsize(path) // 3)
# the last chunk lies pages past the new end: its first access faults (SIGBUS)
for key in ((slice(-8, None),), (Ellipsis,)):
    try:
        a[key]
    except OmFormatError as e:
        print("error:", e)
    else:
        print("no error")
        sys.exit(2)
# the process is fine: later reads of the intact part work, and so do new files
assert (a[:8] == data[:8]).all()
print("ok")
"""


def _run(tmp_path: Path, mode: str, *opts: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *opts, "-c", textwrap.dedent(_SCRIPT), mode, str(tmp_path / "t.om")],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "XARRAY_OM_MMAP": "1"},
    )


@pytest.mark.parametrize(
    ("mode", "opts"),
    [("plain", ()), ("faulthandler-before", ("-X", "faulthandler")), ("faulthandler-after", ())],
)
def test_file_truncated_under_the_map_raises(tmp_path, mode, opts):
    r = _run(tmp_path, mode, *opts)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3, r.stdout
    # both name the file; the fault is caught as such, the whole read (whose first
    # damaged chunk reads zeros from the partial last page) is explained by the size
    assert all(str(tmp_path / "t.om") in line for line in lines[:2])
    assert "truncated while being read" in lines[0]
    assert "the file changed size from" in lines[1]
    assert r.stdout.rstrip().endswith("ok")
    assert "Fatal Python error" not in r.stderr


@pytest.mark.parametrize("opts", [(), ("-X", "faulthandler")])
def test_foreign_sigbus_keeps_its_default_action(tmp_path, opts):
    r = _run(tmp_path, "foreign", *opts)
    assert r.returncode == -signal.SIGBUS, r.stdout + r.stderr
    assert "survived" not in r.stdout
    if opts:  # faulthandler still reports it
        assert "Bus error" in r.stderr
