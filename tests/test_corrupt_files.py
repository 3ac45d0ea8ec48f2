"""Corrupted and truncated OM files never crash, hang or blow up memory.

Every fixture of /work/shared/fixtures is damaged in many ways (every
truncation point; cuts of the body with the trailer kept; every byte of the
header and tail regions set to 0xFF/bit-flipped; random byte, bit and
64-bit field corruptions, biased to the metadata at the tail) and then
opened with :class:`xarray_om.format.reader.OmFile`, its whole tree walked
(names, attributes, scalar values) and its arrays read (whole when small,
corners otherwise); smaller sets go through ``xr.open_dataset`` + ``load`` and
through the Zarr v3 view (``OmStore`` + zarr-python). Each case must either succeed or raise an
:class:`xarray_om.errors.OmError`; truncated files that still read must give
exactly the original values.

The cases run in a subprocess (this file run as a script) so that a crash or a
hang fails the test cleanly and names the case. Per case: a 5 s alarm, and
the peak of Python/numpy allocations (tracemalloc) must stay below a bound
derived from the file size; the process's peak RSS is bounded too, and an
``out of memory`` error from the native layer counts as a failure (a corrupt
file must be rejected before any allocation can fail).

Environment: ``XARRAY_OM_CORRUPT_FLIPS`` random corruptions per fixture
(default 100; 5000 for a long run), ``XARRAY_OM_CORRUPT_CUT_STEP`` (cut every
k-th body position, default 6; 1 for all), ``XARRAY_OM_CORRUPT_SEED``
(default 0), ``XARRAY_OM_CORRUPT_BYTES_HEAD`` / ``_TAIL`` (bytes at the start
/ end of each file set to 0xFF and bit-flipped; default 40 / 64, a
large value covers whole files), ``XARRAY_OM_CORRUPT_BACKEND_FLIPS`` (cases per fixture through the
xarray backend, default 20), ``XARRAY_OM_CORRUPT_ZARR_FLIPS`` (through the Zarr
view, default 3). On failure the case and a command reproducing it
are printed.
"""

from __future__ import annotations

import io
import json
import os
import random
import signal
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve()
FLIPS = int(os.environ.get("XARRAY_OM_CORRUPT_FLIPS", "100"))
CUT_STEP = int(os.environ.get("XARRAY_OM_CORRUPT_CUT_STEP", "6"))
BACKEND_FLIPS = int(os.environ.get("XARRAY_OM_CORRUPT_BACKEND_FLIPS", "20"))
ZARR_FLIPS = int(os.environ.get("XARRAY_OM_CORRUPT_ZARR_FLIPS", "3"))
# Systematic single-byte damage: the first HEAD and last TAIL bytes of every file
# (legacy header + LUT at the front; v3 trailer, root and child records at the end).
BYTES_HEAD = int(os.environ.get("XARRAY_OM_CORRUPT_BYTES_HEAD", "40"))
BYTES_TAIL = int(os.environ.get("XARRAY_OM_CORRUPT_BYTES_TAIL", "64"))
SEED = int(os.environ.get("XARRAY_OM_CORRUPT_SEED", "0"))
TRAILER = 24
CASE_SECONDS = 5
# zarr-python schedules one task per chunk: whole reads of arrays with thousands
# of chunks take seconds on a loaded machine.
CASE_SECONDS_ZARR = 30
MAX_NODES = 2000  # nodes visited per case (a crafted DAG can have very many paths)
READ_CAP = 1 << 20  # bytes: arrays up to this size are read whole
# Allocation bound per case: fixed slack + a multiple of the file size. The
# legitimate worst case is decoding a chunk of constant values (about 1 byte
# per 128 values) into 8-byte elements, plus scratch.
MEM_FIXED = 16 << 20
MEM_PER_BYTE = 4096
# Through zarr-python a whole-array read costs about 1 KB per chunk, and a read
# that fails keeps one exception with its traceback per chunk (about 23 KB).
# The reader bounds the chunk count by the file size (layout.check_plausible),
# so this is still a bound linear in the file size.
MEM_PER_BYTE_ZARR = 32768
RSS_GROWTH_MAX = 768 << 20


# ----------------------------------------------------------------------------- cases


def _interesting_u64(size: int) -> list[int]:
    return [
        0,
        1,
        2**31,
        2**32 - 1,
        2**32,
        2**63 - 1,
        2**63,
        2**64 - 1,
        size,
        size - 1,
        size + 1,
        size - TRAILER,
        2**40,
    ]


def flip_case(blob: bytes, rng: random.Random) -> bytes:
    """One random corruption; half of them in the tail, where records/LUT/trailer live."""
    b = bytearray(blob)
    n = len(b)
    tail = max(64, n * 3 // 10)

    def pos(width: int = 1) -> int:
        lo = max(0, n - tail) if rng.random() < 0.5 else 0
        return rng.randrange(lo, max(lo + 1, n - width + 1))

    kind = rng.randrange(4)
    if kind == 0:  # random bytes
        for _ in range(rng.randint(1, 4)):
            b[pos()] = rng.randrange(256)
    elif kind == 1:  # bit flips
        for _ in range(rng.randint(1, 3)):
            b[pos()] ^= 1 << rng.randrange(8)
    elif kind == 2:  # a 64-bit field (offsets, sizes, dims are u64) to an extreme value
        p = pos(8)
        if rng.random() < 0.7:
            p -= p % 8  # records are 8-byte aligned
        v = rng.choice(_interesting_u64(n)) % 2**64
        b[p : p + 8] = struct.pack("<Q", v)[: n - p]
    else:  # 16/32-bit field (counts, lengths, dtype and compression ids)
        p = pos(4)
        width = rng.choice((1, 2, 4))
        v = rng.choice((0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF, 3, 22, 64))
        b[p : p + width] = (v % 2 ** (8 * width)).to_bytes(width, "little")[: n - p]
    return bytes(b)


def cases(family: str, blob: bytes, name: str, seed: int) -> Iterator[tuple[str, bytes]]:
    """(case id, bytes) of one family for one fixture."""
    n = len(blob)
    if family == "truncate":
        for k in range(n):
            yield f"truncate:{k}", blob[:k]
    elif family == "cut_keep_trailer":
        # The body cut at k, the trailer kept: offsets now point past the end.
        if blob[:3] == b"OM\x03":
            for k in range(0, n - TRAILER, CUT_STEP):
                yield f"cut:{k}", blob[:k] + blob[-TRAILER:]
    elif family == "bytes":
        positions = sorted({*range(min(n, BYTES_HEAD)), *range(max(0, n - BYTES_TAIL), n)})
        for p in positions:
            for v in sorted({0xFF, blob[p] ^ 0x01, blob[p] ^ 0x80} - {blob[p]}):
                yield f"byte:{p}={v}", blob[:p] + bytes([v]) + blob[p + 1 :]
    elif family == "flip":
        for i in range(FLIPS):
            rng = random.Random(f"{seed}/{name}/{i}")
            yield f"flip:{i}", flip_case(blob, rng)
    elif family in ("backend", "zarr"):
        for i in range(BACKEND_FLIPS if family == "backend" else ZARR_FLIPS):
            rng = random.Random(f"{seed}/{family}/{name}/{i}")
            yield f"{family}:{i}", flip_case(blob, rng)
    else:
        raise ValueError(family)


def case_bytes(family: str, blob: bytes, name: str, seed: int, case_id: str) -> bytes:
    for cid, data in cases(family, blob, name, seed):
        if cid == case_id:
            return data
    raise KeyError(case_id)


# ----------------------------------------------------------------------------- exercise


class CaseTimeout(Exception):
    pass


def _on_alarm(signum, frame):
    raise CaseTimeout("case exceeded its time limit")


def exercise(data: bytes) -> dict[str, bytes]:
    """Open, walk and read everything; returns {array path: bytes of whole reads}."""
    from xarray_om.format.reader import OmFile

    values: dict[str, bytes] = {}
    with OmFile(io.BytesIO(data)) as f:
        stack = [f.root]
        seen = 0
        while stack and seen < MAX_NODES:
            node = stack.pop()
            seen += 1
            _ = (node.name, node.path, node.kind)
            attrs = node.attrs
            assert isinstance(attrs, dict)
            if node.kind == "scalar":
                _ = (node.value, node.dtype)
            elif node.kind == "array":
                shape = node.shape
                _ = (node.dtype, node.chunks, node.compression, node.n_chunks)
                if node.size * node.dtype.itemsize <= READ_CAP:
                    a = node[...]
                    assert a.shape == shape and a.dtype == node.dtype
                    values[node.path] = a.tobytes()
                    if node.ndim and shape[0] > 1:
                        np.testing.assert_array_equal(node[::-2], a[::-2])
                else:
                    node[(0,) * node.ndim]
                    node[tuple(s - 1 for s in shape)]
            stack.extend(reversed(node.children))
    return values


def exercise_backend(data: bytes, scratch: Path) -> dict[str, bytes]:
    """The same through the xarray backend: open_dataset + load (CF decoding included)."""
    import warnings

    import xarray as xr

    scratch.write_bytes(data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with xr.open_dataset(scratch, engine="xarray_om") as ds:
            ds.load()
    return {}


def exercise_zarr(data: bytes) -> dict[str, bytes]:
    """The same through the read-only Zarr v3 view (``OmStore``) and zarr-python."""
    import zarr

    from xarray_om.zarr import OmStore

    group = zarr.open_group(OmStore(io.BytesIO(data)), mode="r")
    dict(group.attrs)
    for _, member in group.members(max_depth=None):
        dict(member.attrs)
        if isinstance(member, zarr.Array):
            if member.nbytes <= READ_CAP:
                member[...]
            else:
                member[(0,) * member.ndim]
    return {}


def run_worker(job: dict) -> dict:
    """Run every case of ``job``; returns a summary (used in the subprocess)."""
    import resource
    import tracemalloc

    from xarray_om.errors import OmError

    signal.signal(signal.SIGALRM, _on_alarm)
    progress = open(job["progress"], "w", buffering=1)
    failures: list[dict] = []
    counts = {"cases": 0, "ok": 0, "om_errors": 0}
    scratch = Path(job["progress"]).with_suffix(".om")
    # Imports and first-use caches of xarray/pandas/zarr are not the file's doing.
    for path in job["files"]:
        if "backend" in job["families"]:
            exercise_backend(Path(path).read_bytes(), scratch)
        if "zarr" in job["families"]:
            exercise_zarr(Path(path).read_bytes())
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    t0 = time.monotonic()
    for path in job["files"]:
        blob = Path(path).read_bytes()
        name = Path(path).name
        reference = exercise(blob)  # the intact file must read without error
        for family in job["families"]:
            per_byte = MEM_PER_BYTE_ZARR if family == "zarr" else MEM_PER_BYTE
            bound = MEM_FIXED + per_byte * len(blob)
            seconds = CASE_SECONDS_ZARR if family == "zarr" else CASE_SECONDS
            for case_id, data in cases(family, blob, name, job["seed"]):
                progress.write(f"{name} {family} {case_id}\n")
                counts["cases"] += 1
                tracemalloc.reset_peak()
                signal.setitimer(signal.ITIMER_REAL, seconds)
                problem = None
                try:
                    if family == "backend":
                        got = exercise_backend(data, scratch)
                    elif family == "zarr":
                        got = exercise_zarr(data)
                    else:
                        got = exercise(data)
                except OmError as e:
                    counts["om_errors"] += 1
                    if "out of memory" in str(e):
                        problem = f"allocation failed instead of rejecting the file: {e}"
                except CaseTimeout as e:
                    problem = str(e)
                except BaseException as e:
                    problem = "".join(traceback.format_exception(e)[-6:])
                else:
                    counts["ok"] += 1
                    if family == "truncate":
                        for p, v in got.items():
                            if reference.get(p) != v:
                                problem = f"truncated file read wrong values for {p!r}"
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
                peak = tracemalloc.get_traced_memory()[1]
                if peak > bound:
                    problem = (problem or "") + f" peak allocation {peak} > bound {bound}"
                if problem:
                    failures.append(
                        {"file": name, "family": family, "case": case_id, "problem": problem}
                    )
                    if len(failures) >= 20:
                        break
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if rss - rss0 > RSS_GROWTH_MAX:
        failures.append({"problem": f"peak RSS grew by {(rss - rss0) >> 20} MiB"})
    progress.close()
    return {**counts, "seconds": time.monotonic() - t0, "failures": failures}


# ----------------------------------------------------------------------------- tests


def _run(fixtures_dir: Path, families: list[str], tmp_path: Path, timeout: float) -> dict:
    files = sorted(str(p) for p in fixtures_dir.glob("*.om"))
    assert files, "no fixtures"
    progress = tmp_path / "progress.txt"
    job = {"files": files, "families": families, "seed": SEED, "progress": str(progress)}
    try:
        r = subprocess.run(
            [sys.executable, str(HERE), "worker", json.dumps(job)],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=HERE.parent.parent,
        )
    except subprocess.TimeoutExpired:
        last = progress.read_text().splitlines()[-1:] if progress.exists() else []
        pytest.fail(
            f"corruption worker hung after {timeout} s; last case: {last}\n"
            f"reproduce: {_repro(last, fixtures_dir)}"
        )
    if r.returncode != 0:
        last = progress.read_text().splitlines()[-1:] if progress.exists() else []
        pytest.fail(
            f"corruption worker died (exit {r.returncode}) at case {last}\n"
            f"reproduce: {_repro(last, fixtures_dir)}\n{r.stderr[-4000:]}"
        )
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    print(
        f"{families}: {summary['cases']} cases, {summary['ok']} read, "
        f"{summary['om_errors']} OmError, {summary['seconds']:.1f} s"
    )
    return summary


def _repro(last: list[str], fixtures_dir: Path) -> str:
    if not last:
        return "(no case started)"
    name, family, case_id = last[0].split()
    # every setting that decides which cases exist and what they are
    env = " ".join(
        f"XARRAY_OM_CORRUPT_{k}={v}"
        for k, v in (
            ("SEED", SEED),
            ("FLIPS", FLIPS),
            ("CUT_STEP", CUT_STEP),
            ("BACKEND_FLIPS", BACKEND_FLIPS),
            ("ZARR_FLIPS", ZARR_FLIPS),
            ("BYTES_HEAD", BYTES_HEAD),
            ("BYTES_TAIL", BYTES_TAIL),
        )
    )
    return f"{env} python {HERE} reproduce {fixtures_dir / name} {family} {case_id}"


def _check(summary: dict, fixtures_dir: Path) -> None:
    fails = summary["failures"]
    if fails:
        lines = []
        for f in fails[:10]:
            where = f"{f.get('file')} {f.get('family')} {f.get('case')}"
            lines.append(
                f"{where}: {f['problem']}\n  reproduce: "
                f"{_repro([where], fixtures_dir) if f.get('file') else ''}"
            )
        pytest.fail(f"{len(fails)} corrupt-file cases misbehaved:\n" + "\n".join(lines))


def test_truncated_files(fixtures_dir: Path, tmp_path: Path) -> None:
    """Every prefix of every fixture: an OmError, or exactly the original values."""
    summary = _run(fixtures_dir, ["truncate"], tmp_path, timeout=600)
    _check(summary, fixtures_dir)
    assert summary["cases"] == sum(p.stat().st_size for p in fixtures_dir.glob("*.om"))
    assert summary["om_errors"] > 0.9 * summary["cases"]


def test_cut_body_with_trailer(fixtures_dir: Path, tmp_path: Path) -> None:
    """Cuts of every v3 body with the trailer kept (offsets now point past the end)."""
    summary = _run(fixtures_dir, ["cut_keep_trailer"], tmp_path, timeout=600)
    _check(summary, fixtures_dir)
    assert summary["cases"] > 10000 // CUT_STEP


def test_every_metadata_byte(fixtures_dir: Path, tmp_path: Path) -> None:
    """Each of the first 40 and last 64 bytes of every fixture set to 0xFF and with
    its low / high bit flipped (legacy header, trailer, root record, LUT ends)."""
    summary = _run(fixtures_dir, ["bytes"], tmp_path, timeout=600)
    _check(summary, fixtures_dir)
    assert summary["cases"] > 2 * len(list(fixtures_dir.glob("*.om"))) * BYTES_TAIL
    assert summary["om_errors"] > 0.1 * summary["cases"]


def test_random_corruptions(fixtures_dir: Path, tmp_path: Path) -> None:
    """Random byte/bit/field corruptions of every fixture."""
    summary = _run(fixtures_dir, ["flip"], tmp_path, timeout=max(600, FLIPS))
    _check(summary, fixtures_dir)
    n_files = len(list(fixtures_dir.glob("*.om")))
    assert summary["cases"] == FLIPS * n_files
    # Both outcomes occur: the corruptions are neither all harmless nor all fatal.
    assert summary["om_errors"] > 0.1 * summary["cases"]
    assert summary["ok"] > 0.05 * summary["cases"]


def test_random_corruptions_xarray_backend(fixtures_dir: Path, tmp_path: Path) -> None:
    """Corrupt files through ``xr.open_dataset(engine="xarray_om")`` and ``load()``:
    names, dimensions, attributes and CF decoding see the damage too."""
    summary = _run(fixtures_dir, ["backend"], tmp_path, timeout=max(600, 10 * BACKEND_FLIPS))
    _check(summary, fixtures_dir)
    assert summary["cases"] == BACKEND_FLIPS * len(list(fixtures_dir.glob("*.om")))
    assert summary["om_errors"] > 0.1 * summary["cases"]


def test_random_corruptions_zarr_view(fixtures_dir: Path, tmp_path: Path) -> None:
    """Corrupt files through the Zarr v3 view (``OmStore`` + zarr-python)."""
    summary = _run(fixtures_dir, ["zarr"], tmp_path, timeout=max(600, 30 * ZARR_FLIPS))
    assert summary["cases"] == ZARR_FLIPS * len(list(fixtures_dir.glob("*.om")))
    _check(summary, fixtures_dir)
    assert summary["om_errors"] > 0.1 * summary["cases"]


@pytest.mark.parametrize("field", ["scale_factor", "add_offset"])
@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nonfinite_scaling_in_every_adapter(tmp_path: Path, field: str, value: float) -> None:
    """Regression (found by the corruption sweep): a record whose scale_factor or
    add_offset is not finite made the Zarr view raise a plain ValueError. The
    reference accepts such files (values read back as NaN/garbage), so the reader
    reads them; adapters either read them too or raise an OmError."""
    import warnings

    from xarray_om.errors import OmError
    from xarray_om.format.writer import OmWriter

    path = tmp_path / "scaled.om"
    a = np.arange(24, dtype=np.float32).reshape(4, 6)
    with OmWriter(path) as w:
        ref = w.write_array(a, chunks=(2, 3), scale_factor=10.0, add_offset=1.0, name="a")
        w.close(ref)
    blob = bytearray(path.read_bytes())
    # Array record: scale_factor and add_offset are the float32s at bytes 32..39.
    at = ref.offset + (32 if field == "scale_factor" else 36)
    assert struct.unpack_from("<f", blob, at)[0] == (10.0 if field == "scale_factor" else 1.0)
    struct.pack_into("<f", blob, at, value)
    data = bytes(blob)
    exercise(data)  # the reader reads it, like the reference
    for adapter in (lambda: exercise_backend(data, tmp_path / "x.om"), lambda: exercise_zarr(data)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                adapter()
            except OmError:
                pass


def _main(argv: list[str]) -> None:
    if argv[:1] == ["worker"]:
        print(json.dumps(run_worker(json.loads(argv[1]))))
    elif argv[:1] == ["reproduce"]:
        path, family, case_id = argv[1:4]
        data = case_bytes(family, Path(path).read_bytes(), Path(path).name, SEED, case_id)
        out = Path(f"corrupt-{Path(path).stem}-{case_id.replace(':', '-')}.om")
        out.write_bytes(data)
        print(f"wrote {out}; exercising it in-process")
        if family == "backend":
            exercise_backend(data, out)
        elif family == "zarr":
            exercise_zarr(data)
        else:
            exercise(data)
    else:
        sys.exit(
            f"usage: {argv[0] if argv else 'test_corrupt_files.py'} worker JOB | "
            "reproduce FIXTURE FAMILY CASE"
        )


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent.parent))
    _main(sys.argv[1:])
