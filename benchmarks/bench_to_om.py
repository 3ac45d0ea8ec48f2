"""``ds.om.to_om`` throughput vs the reference's writers, from dask and from numpy.

Writers (same data, OM chunks, compression and scale factor for all):

* ``to_om (dask)``       - ``ds.om.to_om`` of a Dataset backed by a dask array
  (``da.from_array`` of the in-memory input, whole OM-chunk rows), 2 threads;
* ``to_om (dask, 1 thread)`` - the same with one encoding thread (how much the
  second thread gives on this machine at this moment);
* ``to_om (dask, misaligned)`` - the same with dask chunks that are not multiples
  of the OM chunks (omfiles refuses those; ours rechunks);
* ``omfiles.dask``       - ``omfiles.dask.write_dask_array`` of the same dask
  array, dask's threaded scheduler with 2 workers;
* ``... (file)``         - both again from a file-backed dask source: the same
  values in a lossless OM file opened with ``engine="xarray_om"`` in the same
  dask chunks, so every block is read and decoded when computed (a conversion);
* ``to_om (numpy)``      - ``ds.om.to_om`` of the numpy-backed Dataset, 2 threads;
* ``omfiles numpy``      - ``omfiles.OmFileWriter.write_array`` of the numpy array.

Times: medians (and minima, "best") over ``--reps`` repetitions of writing a
whole file (open to committed file; ours includes fsync + rename), all writers
interleaved in each repetition so that load changes hit all alike (the order
rotated each repetition; before every write, untimed, the previous output is
removed and ``os.sync()`` flushes dirty pages, so that no writer pays for the
background writeback of the previous one's unsynced file); CPU = process CPU
time (all threads, user + system) of the write; throughput =
input bytes / median wall time; "vs omfiles.dask" compares with omfiles.dask on
the same source (in-memory or file-backed). Peak RSS above start: the kernel's
peak-RSS mark is reset right before one write in a fresh process per (case,
writer) with the input already resident, then read back after the write. Set
BENCH_TMP to choose the output directory. ``--markdown`` is accepted for
symmetry with the other benchmarks (the output is always a markdown table).

Usage::

    python benchmarks/bench_to_om.py [--shape 360,720,96] [--reps 5] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

# omfiles also registers an engine named "om"; we always ask for "xarray_om".
warnings.filterwarnings("ignore", message=".*engine name 'om'")
warnings.filterwarnings("ignore", message="Found 2 entrypoints")

CASES = {
    "pfor_int16_sf20": {"compression": "pfor_delta_2d_int16", "scale_factor": 20.0},
    "fpx_xor_2d": {"compression": "fpx_xor_2d"},
}
WRITERS = [
    "to_om (dask)",
    "to_om (dask, 1 thread)",
    "to_om (dask, misaligned)",
    "omfiles.dask",
    "to_om (dask, file)",
    "omfiles.dask (file)",
    "to_om (numpy)",
    "omfiles numpy",
]
THREADS = 2


def smooth(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Smooth float32 field (temperature-like, [y, x, time]): waves plus small noise."""
    rng = np.random.default_rng(seed)
    ny, nx, nt = shape
    x = np.arange(nx, dtype=np.float32)[:, None]
    t = np.arange(nt, dtype=np.float32)[None, :]
    out = np.empty(shape, np.float32)
    for j in range(ny):  # one row at a time: generating never doubles the peak RSS
        f = 15 + 10 * np.sin(j / 40) + 8 * np.cos(x / 55) + 3 * np.sin(t / 6)
        out[j] = np.round(f + rng.normal(0, 0.3, (nx, nt)).astype(np.float32), 2)
    return out


def om_chunks(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """Open-Meteo style: one row, about 3072 values, whole time axis."""
    nt = shape[2]
    return (1, max(1, min(shape[1], 3072 // nt)), nt)


def dask_chunks(shape: tuple[int, ...], misaligned: bool) -> tuple[int, ...]:
    _, nx, nt = shape
    if misaligned:
        return (37, 250, nt)  # ~3.5 MB blocks cutting through OM chunks along x
    return (45, nx, nt)  # whole OM chunk rows, ~12 MB blocks (what omfiles.dask needs)


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark (Linux >= 4.0); returns the current RSS in KiB."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    return _status_kib("VmRSS")


def make_sources(data: np.ndarray, workdir: str) -> dict:
    """The input as numpy, in-memory dask (aligned / misaligned) and file-backed dask.

    The file-backed source is the same values stored losslessly (fpx) in an OM
    file and opened with the xarray backend in dask chunks: every block is read
    and decoded when computed, like a format conversion.
    """
    import dask.array as da
    import xarray as xr

    import xarray_om.accessor  # noqa: F401

    dims = ("y", "x", "time")
    out = {"numpy": data}
    out["ds numpy"] = xr.Dataset({"t": (dims, data)})
    for key, mis in (("dask", False), ("dask misaligned", True)):
        x = da.from_array(data, chunks=dask_chunks(data.shape, mis))
        out[key] = x
        out[f"ds {key}"] = xr.Dataset({"t": (dims, x)})
    src = os.path.join(workdir, "source.om")
    if not os.path.exists(src):
        out["ds numpy"].om.to_om(src, encoding={"t": {"chunks": om_chunks(data.shape)}})
    ds = xr.open_dataset(
        src, engine="xarray_om", chunks=dict(zip(dims, dask_chunks(data.shape, False), strict=True))
    )
    out["ds dask file"] = ds
    out["dask file"] = ds["t"].data
    return out


def settle(path: str) -> None:
    """Untimed, before every write: remove the last output and flush dirty pages.

    omfiles does not fsync, so without this the kernel would write its file back
    (and free the previous output) while the next writer runs, charging whichever
    writer comes next.
    """
    if os.path.exists(path):
        os.unlink(path)
    os.sync()


def write_once(sources: dict, case: str, writer: str, path: str) -> float:
    """Write one file; returns the wall time from the call to the committed file."""
    import dask
    import omfiles
    import omfiles.dask

    import xarray_om.accessor  # noqa: F401  (registers .om)

    kw = CASES[case]
    chunks = om_chunks(sources["numpy"].shape)
    if os.path.exists(path):
        os.unlink(path)
    enc = {"t": {"chunks": chunks, **kw}}
    t0 = time.perf_counter()
    if writer == "to_om (dask)":
        sources["ds dask"].om.to_om(path, encoding=enc, num_workers=THREADS, on_clamp="ignore")
    elif writer == "to_om (dask, 1 thread)":
        sources["ds dask"].om.to_om(path, encoding=enc, num_workers=1, on_clamp="ignore")
    elif writer == "to_om (dask, misaligned)":
        sources["ds dask misaligned"].om.to_om(
            path, encoding=enc, num_workers=THREADS, on_clamp="ignore"
        )
    elif writer == "to_om (dask, file)":
        sources["ds dask file"].om.to_om(path, encoding=enc, num_workers=THREADS, on_clamp="ignore")
    elif writer == "to_om (numpy)":
        sources["ds numpy"].om.to_om(path, encoding=enc, num_workers=THREADS, on_clamp="ignore")
    elif writer.startswith("omfiles.dask"):
        with dask.config.set(scheduler="threads", num_workers=THREADS):
            w = omfiles.OmFileWriter(path)
            v = omfiles.dask.write_dask_array(
                w,
                sources["dask file" if writer.endswith("(file)") else "dask"],
                chunks=list(chunks),
                compression=kw["compression"],
                scale_factor=kw.get("scale_factor", 1.0),
                name="t",
            )
            w.close(v)
    elif writer == "omfiles numpy":
        w = omfiles.OmFileWriter(path)
        v = w.write_array(
            sources["numpy"],
            chunks=list(chunks),
            name="t",
            compression=kw["compression"],
            scale_factor=kw.get("scale_factor", 1.0),
        )
        w.close(v)
    else:  # pragma: no cover
        raise ValueError(writer)
    return time.perf_counter() - t0


def rss_one(case: str, writer: str, shape: tuple[int, ...]) -> dict:
    """Peak-RSS increase of one write (run in a fresh process, input resident)."""
    import dask  # noqa: F401  (imported before the baseline)
    import omfiles.dask  # noqa: F401

    import xarray_om.accessor  # noqa: F401

    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        sources = make_sources(smooth(shape), d)
        os.mkdir(os.path.join(d, "warm"))
        warm = make_sources(smooth((4, 64, shape[2])), os.path.join(d, "warm"))
        write_once(warm, case, writer, os.path.join(d, "warm.om"))  # imports, pools
        settle(os.path.join(d, "out.om"))
        base = reset_peak_rss()
        write_once(sources, case, writer, os.path.join(d, "out.om"))
        peak = _status_kib("VmHWM")
    return {"case": case, "writer": writer, "rss_delta_mib": (peak - base) / 1024}


def check_same_values(sources: dict, case: str, d: str) -> None:
    """Both writers' files decode to the same values (sanity check of the setup)."""
    from xarray_om.format.reader import OmFile

    a, b = os.path.join(d, "a.om"), os.path.join(d, "b.om")
    write_once(sources, case, "to_om (dask, misaligned)", a)
    write_once(sources, case, "omfiles numpy", b)
    with OmFile(a) as fa, OmFile(b) as fb:
        np.testing.assert_array_equal(fa["t"][...], fb.root[...])  # omfiles: root array


def timings(shape: tuple[int, ...], reps: int) -> list[dict]:
    data = smooth(shape)
    times: dict = {(c, w): [] for c in CASES for w in WRITERS}
    cpu: dict = {(c, w): [] for c in CASES for w in WRITERS}
    sizes: dict = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        sources = make_sources(data, d)
        path = os.path.join(d, "out.om")
        for case in CASES:
            check_same_values(sources, case, d)
        for rep in range(reps):
            # Rotated each repetition: no writer always runs right after the same one.
            order = WRITERS[rep % len(WRITERS) :] + WRITERS[: rep % len(WRITERS)]
            for case in CASES:
                for writer in order:
                    settle(path)
                    c0 = time.process_time()
                    times[case, writer].append(write_once(sources, case, writer, path))
                    cpu[case, writer].append(time.process_time() - c0)
                    sizes[case, writer] = os.path.getsize(path)
    return [
        {
            "case": c,
            "writer": w,
            "wall": statistics.median(times[c, w]),
            "best": min(times[c, w]),
            "cpu": statistics.median(cpu[c, w]),
            "size": sizes[c, w],
            "nbytes": data.nbytes,
        }
        for c in CASES
        for w in WRITERS
    ]


def fmt_time(s: float) -> str:
    return f"{s * 1e3:.0f} ms" if s < 1 else f"{s:.2f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", default="360,720,96")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--rss-one", nargs=2, metavar=("CASE", "WRITER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    if args.rss_one:
        print(json.dumps(rss_one(args.rss_one[0], args.rss_one[1], shape)))
        return
    load = os.getloadavg()[0]
    rows = timings(shape, args.reps)
    rss = {}
    for c in CASES:
        for w in WRITERS:
            out = subprocess.run(
                [sys.executable, __file__, "--shape", args.shape, "--rss-one", c, w],
                check=True,
                capture_output=True,
                text=True,
            )
            rss[c, w] = json.loads(out.stdout.strip().splitlines()[-1])["rss_delta_mib"]
    nbytes = rows[0]["nbytes"]
    head = (
        f"Input: smooth float32 {shape} ({nbytes / 1e6:.0f} MB), OM chunks {om_chunks(shape)}, "
        f"dask chunks {dask_chunks(shape, False)} (misaligned: {dask_chunks(shape, True)}), "
        f"{THREADS} threads; median of {args.reps} interleaved writes; load average before "
        f"the run: {load:.1f} on {os.cpu_count()} cores."
    )
    print(head + "\n")
    ref = {(r["case"], r["writer"]): r["wall"] for r in rows}
    best = {(r["case"], r["writer"]): r["best"] for r in rows}
    print(
        "| case | writer | median wall | throughput | vs omfiles.dask | vs omfiles numpy "
        "| best wall | best vs omfiles.dask | best vs omfiles numpy | median CPU | file size "
        "| peak RSS above start |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        c, w = r["case"], r["writer"]
        od = "omfiles.dask (file)" if w.endswith("file)") else "omfiles.dask"  # same source
        print(
            f"| {c} | {w} | {fmt_time(r['wall'])} | {nbytes / r['wall'] / 1e6:.0f} MB/s "
            f"| {ref[c, od] / r['wall']:.2f}x | {ref[c, 'omfiles numpy'] / r['wall']:.2f}x "
            f"| {fmt_time(r['best'])} | {best[c, od] / r['best']:.2f}x "
            f"| {best[c, 'omfiles numpy'] / r['best']:.2f}x "
            f"| {fmt_time(r['cpu'])} | {r['size'] / 1e6:.2f} MB | {rss[c, w]:.0f} MiB |"
        )


if __name__ == "__main__":
    main()
