"""Read latency/throughput: xarray_om OmFile vs omfiles OmFileReader on the same files.

Files are written once by the reference writer (omfiles) for every
(compression, chunk layout) case; both readers then read them from the page
cache in the same process, alternating, with the file opened once:

* ``whole``  - the whole array (``a[...]``),
* ``column`` - one ``(i, j, :)`` time series (random i, j per repetition),
* ``slab``   - one time step ``(:, :, t)`` (random t per repetition),
* ``cold``   - open the file + one column + close (a loop of point queries, each
  opening the file; the file was opened before in this process, so xarray_om
  takes over the metadata its last open parsed from the file's tail when the
  tail is byte-identical, and the file map its last open made),
* ``first``  - ``cold`` with xarray_om's per-process caches (parsed metadata,
  file maps) emptied before every call, untimed (the first open of a file in a
  process).

Times are medians over repetitions, the two readers alternating call by call;
wall time and the calling thread's CPU time (both readers decode on the calling
thread, so CPU time is the fairer figure on a shared, loaded machine).
``speedup`` = omfiles time / xarray_om time.

Usage::

    python benchmarks/bench_read.py [--shape 96,128,744] [--reps 7] [--point-reps 300] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np

CASES = {
    "pfor_int16_sf20": {"compression": "pfor_delta_2d_int16", "scale_factor": 20.0},
    "fpx_xor_2d": {"compression": "fpx_xor_2d"},
}


def layouts(shape: tuple[int, int, int]) -> dict[str, tuple[int, int, int]]:
    _, nx, nt = shape
    return {
        "(1,nx,24)": (1, nx, 24),
        "(32,32,24)": (32, 32, 24),
        "(8,8,T)": (8, 8, nt),
    }


def smooth(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Smooth float32 field (temperature-like): low-frequency waves plus small noise."""
    rng = np.random.default_rng(seed)
    y, x, t = (np.arange(n, dtype=np.float32) for n in shape)
    f = (
        15
        + 10 * np.sin(y / 40)[:, None, None]
        + 8 * np.cos(x / 55)[None, :, None]
        + 3 * np.sin(t / 6)[None, None, :]
    )
    f = f + rng.normal(0, 0.3, shape).astype(np.float32)
    return np.round(f, 2).astype(np.float32)


def write_reference(path: str, data: np.ndarray, chunks, kw: dict) -> None:
    import omfiles

    w = omfiles.OmFileWriter(path)
    w.close(w.write_array(data, chunks=list(chunks), name="t", **kw))


def paired_medians(f_ours, f_ref, reps: int, setup_ours=None) -> tuple[float, float, float, float]:
    """Median wall and CPU (this thread) times of both readers, alternating call by
    call so that drift in machine load hits both: (ours, ref, ours_cpu, ref_cpu).
    ``setup_ours`` runs untimed before every call of ``f_ours``."""
    acc: dict[str, list[float]] = {"ours": [], "ref": [], "ours_cpu": [], "ref_cpu": []}
    for r in range(reps):
        order = (("ref", f_ref), ("ours", f_ours)) if r % 2 else (("ours", f_ours), ("ref", f_ref))
        for name, fn in order:
            if name == "ours" and setup_ours is not None:
                setup_ours()
            c0 = time.thread_time()
            t0 = time.perf_counter()
            fn(r)
            acc[name].append(time.perf_counter() - t0)
            acc[name + "_cpu"].append(time.thread_time() - c0)
    return tuple(statistics.median(acc[k]) for k in ("ours", "ref", "ours_cpu", "ref_cpu"))


def forget_caches() -> None:
    """Empty xarray_om's per-process metadata caches (those this version has)."""
    from xarray_om.format import layout, reader, source

    for mod, names in (
        (reader, ("_SNAPSHOTS", "_RECORDS", "_ARRAY_CTX", "_PLAUSIBLE", "_STATES")),
        (layout, ("_LUTS",)),
        (source, ("_MAPS", "_SEEN")),
    ):
        for name in names:
            cache = getattr(mod, name, None)
            if cache is not None:
                cache.clear()


def bench_file(path: str, shape, reps: int, point_reps: int) -> dict[str, tuple[float, float]]:
    import omfiles

    from xarray_om.format.reader import OmFile

    ny, nx, nt = shape
    rng = np.random.default_rng(42)
    cols = [(int(rng.integers(ny)), int(rng.integers(nx))) for _ in range(point_reps)]
    steps = [int(rng.integers(nt)) for _ in range(point_reps)]

    ours_f = OmFile(path)
    ours = ours_f.root
    ref = omfiles.OmFileReader.from_path(path)
    # same values (sanity) and warm caches for both
    np.testing.assert_array_equal(ours[...], ref[...])

    def cold_ours(r):
        i, j = cols[r]
        with OmFile(path) as f:
            f.root[i, j, :]

    def cold_ref(r):
        i, j = cols[r]
        rr = omfiles.OmFileReader.from_path(path)
        rr[i, j, :]
        rr.close()

    ops = {
        "whole": (lambda r: ours[...], lambda r: ref[...], reps),
        "column": (
            lambda r: ours[cols[r][0], cols[r][1], :],
            lambda r: ref[cols[r][0], cols[r][1], :],
            point_reps,
        ),
        "slab": (
            lambda r: ours[:, :, steps[r]],
            lambda r: ref[:, :, steps[r]],
            max(reps, point_reps // 10),
        ),
        "cold": (cold_ours, cold_ref, point_reps),
        "first": (cold_ours, cold_ref, point_reps),
    }
    out = {}
    for name, (f_ours, f_ref, n) in ops.items():
        setup = forget_caches if name == "first" else None
        out[name] = paired_medians(f_ours, f_ref, n, setup)
    ours_f.close()
    ref.close()
    return out


def fmt_time(s: float) -> str:
    if s >= 0.1:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.0f} µs"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--shape", default="96,128,744", help="ny,nx,nt (default 96,128,744)")
    ap.add_argument("--reps", type=int, default=7, help="repetitions for whole reads")
    ap.add_argument("--point-reps", type=int, default=300, help="repetitions for point reads")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table")
    args = ap.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    data = smooth(shape)
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        for case, kw in CASES.items():
            for lname, chunks in layouts(shape).items():
                path = os.path.join(d, f"{case}_{lname}.om")
                write_reference(path, data, chunks, kw)
                size = os.path.getsize(path)
                res = bench_file(path, shape, args.reps, args.point_reps)
                for op, (ours, ref, ours_c, ref_c) in res.items():
                    rows.append((case, lname, size, op, ours, ref, ours_c, ref_c))
                    if not args.markdown:
                        print(
                            f"{case:16s} {lname:11s} {op:7s} xarray_om {fmt_time(ours):>10s}  "
                            f"omfiles {fmt_time(ref):>10s}  speedup {ref / ours:5.2f}x  "
                            f"(cpu {fmt_time(ours_c)} vs {fmt_time(ref_c)}: {ref_c / ours_c:5.2f}x)",
                            flush=True,
                        )
    if args.markdown:
        mb = np.prod(shape) * 4 / 1e6
        print(f"Array float32 {shape} ({mb:.1f} MB decoded), files written by omfiles.\n")
        print(
            "| compression | chunks | file | read | xarray_om | omfiles | speedup "
            "| CPU xarray_om | CPU omfiles | CPU speedup |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for case, lname, size, op, ours, ref, ours_c, ref_c in rows:
            print(
                f"| {case} | {lname} | {size / 1e6:.1f} MB | {op} | {fmt_time(ours)} | "
                f"{fmt_time(ref)} | {ref / ours:.2f}x | {fmt_time(ours_c)} | {fmt_time(ref_c)} "
                f"| {ref_c / ours_c:.2f}x |"
            )


if __name__ == "__main__":
    main()
