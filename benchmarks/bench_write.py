"""Write throughput: xarray_om OmWriter.write_array vs omfiles OmFileWriter.write_array.

Same numpy input, same chunks and compression. Times are medians over repetitions
of writing a whole file, from opening the writer to the committed file (ours
includes fsync + rename; omfiles does no fsync), with all writers interleaved in
each repetition. The peak-RSS delta (kernel peak-RSS mark, reset just before one write,
minus the RSS at that moment; the input is already in memory) is measured in a fresh process per (case, writer).
Set BENCH_TMP to choose the output directory (default: the system temp dir).

Usage::

    python benchmarks/bench_write.py [--reps 5] [--shape 48,360,720] [--markdown]
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

import numpy as np

CASES = {
    "fpx_xor_2d": {"compression": "fpx_xor_2d"},
    "pfor_int16_sf20": {"compression": "pfor_delta_2d_int16", "scale_factor": 20.0},
    "pfor_delta_2d_sf20": {"compression": "pfor_delta_2d", "scale_factor": 20.0},
}
WRITERS = ["xarray_om", "xarray_om_1thread", "omfiles"]
CHUNKS = (4, 32, 64)


def smooth(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Smooth float32 field (temperature-like): low-frequency waves plus small noise.

    Filled one time step at a time so that generating it does not raise the
    process's peak RSS above the array itself.
    """
    rng = np.random.default_rng(seed)
    nt, ny, nx = shape
    y = np.arange(ny, dtype=np.float32)[:, None]
    x = np.arange(nx, dtype=np.float32)[None, :]
    plane = 15 + 10 * np.sin(y / 40) + 8 * np.cos(x / 55)
    out = np.empty(shape, np.float32)
    for t in range(nt):
        f = plane + 3 * np.sin(t / 6) + rng.normal(0, 0.3, (ny, nx)).astype(np.float32)
        out[t] = np.round(f, 2)
    return out


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


def peak_rss_kib() -> int:
    return _status_kib("VmHWM")


def write_once(data: np.ndarray, case: str, writer: str, path: str) -> float:
    """Write one file; returns the wall time from opening the writer to the committed file."""
    import omfiles

    from xarray_om.format.writer import OmWriter

    kw = CASES[case]
    if os.path.exists(path):
        os.unlink(path)
    t0 = time.perf_counter()
    if writer.startswith("xarray_om"):
        threads = 1 if writer.endswith("1thread") else None
        with OmWriter(path) as w:
            w.close(
                w.write_array(
                    data, chunks=CHUNKS, name="t", threads=threads, on_clamp="ignore", **kw
                )
            )
    else:
        w = omfiles.OmFileWriter(path)
        v = w.write_array(
            data,
            chunks=list(CHUNKS),
            name="t",
            compression=kw["compression"],
            scale_factor=kw.get("scale_factor", 1.0),
        )
        w.close(v)
    return time.perf_counter() - t0


def rss_one(case: str, writer: str, shape: tuple[int, ...]) -> dict:
    """Peak-RSS increase of one write (run in a fresh process)."""
    import omfiles  # noqa: F401  (imported before the baseline)

    import xarray_om.format.writer  # noqa: F401

    data = smooth(shape)
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        base = reset_peak_rss()
        write_once(data, case, writer, os.path.join(d, "out.om"))
        peak = peak_rss_kib()
    return {"case": case, "writer": writer, "rss_delta_mib": (peak - base) / 1024}


def timings(shape: tuple[int, ...], reps: int) -> list[dict]:
    """Median times; writers interleaved in every repetition so load changes hit all alike."""
    data = smooth(shape)
    times: dict = {(c, w): [] for c in CASES for w in WRITERS}
    cpu: dict = {(c, w): [] for c in CASES for w in WRITERS}
    sizes: dict = {}
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as d:
        path = os.path.join(d, "out.om")
        for case in CASES:  # warm-up (imports, page cache)
            write_once(data, case, "xarray_om", path)
            write_once(data, case, "omfiles", path)
        for _ in range(reps):
            for case in CASES:
                for writer in WRITERS:
                    c0 = time.process_time()
                    t = write_once(data, case, writer, path)
                    times[case, writer].append(t)
                    cpu[case, writer].append(time.process_time() - c0)
                    sizes[case, writer] = os.path.getsize(path)
    return [
        {
            "case": c,
            "writer": w,
            "median_s": statistics.median(times[c, w]),
            "times": times[c, w],
            "cpu_s": statistics.median(cpu[c, w]),
            "cpu_per_wall": statistics.median(
                a / b for a, b in zip(cpu[c, w], times[c, w], strict=True)
            ),
            "mb_in": data.nbytes / 1e6,
            "file_mb": sizes[c, w] / 1e6,
        }
        for c in CASES
        for w in WRITERS
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--shape", default="96,720,720")
    ap.add_argument("--markdown", action="store_true")
    ap.add_argument("--one", nargs=2, metavar=("CASE", "WRITER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    if args.one:
        print(json.dumps(rss_one(*args.one, shape)))
        return
    load = os.getloadavg()[0]
    rows = timings(shape, args.reps)
    for r in rows:
        out = subprocess.run(
            [sys.executable, __file__, "--one", r["case"], r["writer"], "--shape", args.shape],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        r["rss_delta_mib"] = json.loads(out.stdout.strip().splitlines()[-1])["rss_delta_mib"]
        print(
            f"{r['case']:20s} {r['writer']:18s} {r['median_s'] * 1e3:8.1f} ms "
            f"{r['mb_in'] / r['median_s']:7.0f} MB/s  file {r['file_mb']:6.1f} MB  "
            f"rss +{r['rss_delta_mib']:.0f} MiB  cpu/wall {r['cpu_per_wall']:.2f}",
            file=sys.stderr,
        )
    if args.markdown:
        print(markdown(rows, shape, args.reps, load))


def markdown(rows: list[dict], shape: tuple[int, ...], reps: int, load: float) -> str:
    by = {(r["case"], r["writer"]): r for r in rows}
    mb_in = rows[0]["mb_in"]
    lines = [
        f"Input: smooth float32 {shape} ({mb_in:.0f} MB), chunks {CHUNKS}; median of {reps} "
        "interleaved writes of a whole file each; peak-RSS delta of one write in a fresh "
        "process per row; CPU = process CPU time of the write (all threads); "
        f"load average before the run: {load:.1f} on {os.cpu_count()} cores.",
        "",
        "| case | writer | median wall | throughput (input) | vs omfiles | median CPU | cpu/wall "
        "| file size | peak RSS delta |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case in CASES:
        ref = by[(case, "omfiles")]["median_s"]
        for writer in WRITERS:
            r = by[(case, writer)]
            lines.append(
                f"| {case} | {writer} | {r['median_s'] * 1e3:.0f} ms | "
                f"{r['mb_in'] / r['median_s']:.0f} MB/s | {ref / r['median_s']:.2f}x | "
                f"{r['cpu_s'] * 1e3:.0f} ms | {r['cpu_per_wall']:.2f} | "
                f"{r['file_mb']:.2f} MB | {r['rss_delta_mib']:.0f} MiB |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
