"""Codec throughput: xarray_om's native decoder/encoder vs omfiles, per (dtype, compression).

For every valid pair one array of ``--shape`` (default 1000 x 1000 = 1M values)
is stored as a single chunk (chunks == shape), so both sides do exactly one
chunk's work:

* decode, reference: ``omfiles.OmFileReader(path)[...]`` on the one-chunk file
  (opened once; page cache);
* decode, ours (codec): ``_native.decode_chunk`` on that chunk's bytes;
* decode, ours (file): ``OmFile(path)`` (opened once) ``[...]``, the full-file
  path through the format layer;
* encode, reference: writing the one-chunk file with ``omfiles.OmFileWriter``;
* encode, ours (codec): ``_native.encode_chunk``;
* encode, ours (file): writing the same file with ``OmWriter``.

Our decode output is checked bitwise against the reference's, and the file our
writer produces is read back by the reference before anything is timed.

Times are medians of ``--reps`` (>= 7) repetitions, the two implementations
alternating call by call, measured as the calling thread's CPU time (both sides
run on the calling thread; CPU time is the fairer figure on a loaded, shared
machine). Wall-clock medians are reported for the codec paths as well.
``ratio`` = omfiles time / our time (> 1: we are faster).

Usage::

    python benchmarks/bench_codec.py [--shape 1000,1000] [--reps 9] [--write-results]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import omfiles

from xarray_om import _native
from xarray_om.format.records import COMPRESSION_IDS, parse_record, parse_trailer

try:  # the full-file paths exist once the format layer has landed
    from xarray_om.format.reader import OmFile
    from xarray_om.format.writer import OmWriter
except ImportError:  # pragma: no cover - early checkouts
    OmFile = OmWriter = None

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"

# (dtype, compression, scale_factor, add_offset, data kind)
PAIRS = [
    ("float32", "pfor_delta_2d_int16", 20.0, 0.0, "temperature"),
    ("float32", "pfor_delta_2d_int16_logarithmic", 1000.0, 0.0, "precipitation"),
    ("float32", "pfor_delta_2d", 100.0, 0.0, "temperature"),
    ("float64", "pfor_delta_2d", 1000.0, 0.0, "temperature"),
    ("float32", "fpx_xor_2d", 1.0, 0.0, "temperature"),
    ("float64", "fpx_xor_2d", 1.0, 0.0, "temperature"),
    ("int8", "pfor_delta_2d", 1.0, 0.0, "walk"),
    ("uint8", "pfor_delta_2d", 1.0, 0.0, "walk"),
    ("int16", "pfor_delta_2d", 1.0, 0.0, "walk"),
    ("uint16", "pfor_delta_2d", 1.0, 0.0, "walk"),
    ("int32", "pfor_delta_2d", 1.0, 0.0, "walk"),
    ("uint32", "pfor_delta_2d", 1.0, 0.0, "walk"),
    ("int64", "pfor_delta_2d", 1.0, 0.0, "time"),
    ("uint64", "pfor_delta_2d", 1.0, 0.0, "walk"),
]


def make_data(dtype: str, kind: str, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Weather-like test data: smooth fields with noise, precipitation, walks, timestamps."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    y = np.arange(ny, dtype=np.float64)[:, None]
    x = np.arange(nx, dtype=np.float64)[None, :]
    if kind == "temperature":
        f = 15 + 10 * np.sin(y / 40) + 8 * np.cos(x / 55) + rng.normal(0, 0.3, shape)
        return f.astype(dtype)
    if kind == "precipitation":
        f = np.maximum(0, rng.gamma(0.3, 2.0, shape) - 0.5) * (rng.random(shape) < 0.3)
        return f.astype(dtype)
    if kind == "time":
        return (1_700_000_000 + 3600 * (y * nx + x)).astype(dtype)
    info = np.iinfo(dtype)
    steps = rng.integers(-2, 3, shape)
    walk = np.cumsum(steps, axis=1) + (info.min + info.max) // 2
    return np.clip(walk, info.min, info.max).astype(dtype)


def one_chunk_file(path: str, a: np.ndarray, comp: str, sf: float, ao: float) -> None:
    w = omfiles.OmFileWriter(path)
    v = w.write_array(a, chunks=list(a.shape), scale_factor=sf, add_offset=ao, compression=comp)
    w.close(v)


def chunk_bytes(path: str) -> tuple[bytes, object]:
    raw = Path(path).read_bytes()
    root_off, root_size = parse_trailer(raw[-24:])
    rec = parse_record(raw[root_off : root_off + root_size], root_off)
    return raw[3 : rec.lut_offset], rec


def paired(fns: dict[str, object], reps: int) -> dict[str, tuple[float, float]]:
    """Median (cpu, wall) seconds per function, calls alternating."""
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    wall: dict[str, list[float]] = {k: [] for k in fns}
    for f in fns.values():  # warm-up
        f()
    for _ in range(reps):
        for name, f in fns.items():
            c0, t0 = time.thread_time(), time.perf_counter()
            f()
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.thread_time() - c0)
    return {k: (statistics.median(cpu[k]), statistics.median(wall[k])) for k in fns}


def bench_pair(tmp: str, dtype, comp, sf, ao, kind, shape, reps) -> dict:
    a = make_data(dtype, kind, shape)
    ref_path = os.path.join(tmp, f"ref_{dtype}_{comp}.om")
    one_chunk_file(ref_path, a, comp, sf, ao)
    chunk, rec = chunk_bytes(ref_path)
    reader = omfiles.OmFileReader(ref_path)
    ref_values = reader[...]
    n, row = a.size, shape[-1]
    cid = COMPRESSION_IDS[comp]

    def dec_ref():
        return reader[...]

    def dec_codec():
        return _native.decode_chunk(chunk, dtype, cid, n, row, rec.scale_factor, rec.add_offset)

    ours, used = dec_codec()
    assert used == len(chunk)
    assert (ours.reshape(shape).view(f"u{a.itemsize}") == ref_values.view(f"u{a.itemsize}")).all()

    dec = {"ref": dec_ref, "codec": dec_codec}
    enc_path = os.path.join(tmp, f"enc_{dtype}_{comp}.om")
    ours_path = os.path.join(tmp, f"ours_{dtype}_{comp}.om")

    def enc_ref():
        one_chunk_file(enc_path, a, comp, sf, ao)

    def enc_codec():
        return _native.encode_chunk(a, cid, sf, ao)

    enc = {"ref": enc_ref, "codec": enc_codec}
    if OmFile is not None:
        fobj = OmFile(ref_path)
        arr = fobj.root
        assert (arr[...].view(f"u{a.itemsize}") == ref_values.view(f"u{a.itemsize}")).all()
        dec["file"] = lambda: arr[...]

        def enc_file():
            with OmWriter(ours_path) as w:
                node = w.write_array(
                    a, chunks=shape, compression=comp, scale_factor=sf, add_offset=ao
                )
                w.close(node)

        enc_file()
        back = omfiles.OmFileReader(ours_path)[...]  # our file, read by the reference
        assert (back.view(f"u{a.itemsize}") == ref_values.view(f"u{a.itemsize}")).all()
        enc["file"] = enc_file
    # our codec output must decode like the reference's chunk
    again, _ = _native.decode_chunk(
        enc_codec(), dtype, cid, n, row, rec.scale_factor, rec.add_offset
    )
    assert (again.view(f"u{a.itemsize}") == ours.view(f"u{a.itemsize}")).all()

    return {
        "pair": f"{dtype} / {comp}",
        "mb": a.nbytes / 1e6,
        "ratio_size": a.nbytes / len(chunk),
        "dec": paired(dec, reps),
        "enc": paired(enc, reps),
    }


def fmt_ms(s: float) -> str:
    return f"{s * 1e3:.3f}"


def table(results: list[dict], shape, reps: int) -> str:
    has_file = "file" in results[0]["dec"]
    lines = [
        "## Codec",
        "",
        f"`python benchmarks/bench_codec.py --shape {shape[0]},{shape[1]} --reps {reps} "
        "--write-results`",
        "",
        f"One chunk of {shape[0]} x {shape[1]} values per (dtype, compression), weather-like data "
        "(smooth temperature field with noise, precipitation, random walks, hourly timestamps). "
        f"Medians of {reps} alternating repetitions of the calling thread's CPU time in ms; "
        "**ratio = omfiles / ours** (> 1: xarray_om is faster). "
        "Reference: `omfiles.OmFileReader(f)[...]` / writing the one-chunk file with "
        "`omfiles.OmFileWriter`. Ours, codec path: `_native.decode_chunk` / "
        "`_native.encode_chunk` on the same chunk"
        + (
            "; file path: `OmFile(f)[...]` / writing the file with `OmWriter` "
            "(format layer, one chunk)."
            if has_file
            else ". (Format layer not available: codec path only.)"
        ),
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared with other jobs, load "
        f"average {os.getloadavg()[0]:.1f} at the end of the run), "
        f"Python {platform.python_version()}, numpy {np.__version__}, omfiles "
        f"{getattr(omfiles, '__version__', '1.2.0')}; native SIMD level "
        f"{_native.lib.om_simd_level()} (3 = AVX2, 4 = AVX2 + GFNI).",
        "",
    ]
    head = "| dtype / compression | MB | comp. ratio | dec omfiles | dec ours (codec) | ratio |"
    sep = "|---|---:|---:|---:|---:|---:|"
    if has_file:
        head += " dec ours (file) | ratio |"
        sep += "---:|---:|"
    head += " enc omfiles | enc ours (codec) | ratio |"
    sep += "---:|---:|---:|"
    if has_file:
        head += " enc ours (file) | ratio |"
        sep += "---:|---:|"
    lines += [head, sep]
    for r in results:
        d, e = r["dec"], r["enc"]
        row = (
            f"| {r['pair']} | {r['mb']:.1f} | {r['ratio_size']:.2f} | {fmt_ms(d['ref'][0])} | "
            f"{fmt_ms(d['codec'][0])} | **{d['ref'][0] / d['codec'][0]:.2f}** |"
        )
        if has_file:
            row += f" {fmt_ms(d['file'][0])} | {d['ref'][0] / d['file'][0]:.2f} |"
        row += (
            f" {fmt_ms(e['ref'][0])} | {fmt_ms(e['codec'][0])} | "
            f"**{e['ref'][0] / e['codec'][0]:.2f}** |"
        )
        if has_file:
            row += f" {fmt_ms(e['file'][0])} | {e['ref'][0] / e['file'][0]:.2f} |"
        lines.append(row)
    lines += [
        "",
        "Notes: every decode allocates a fresh output array on both sides (`decode_chunk` also "
        "allocates its scratch). The file-path columns add the format layer's own work (reading "
        "the chunk bytes from the page cache, planning, the LUT) to the same native decoder, "
        "and for encode the writer's I/O and commit; the codec columns isolate the codec. "
        "Decoded values are checked bitwise against omfiles before timing, and the file our "
        "writer produces is read back by omfiles.",
        "",
        "Wall-clock medians (ms) of the codec paths, same runs:",
        "",
        "| dtype / compression | dec omfiles | dec ours | ratio | enc omfiles | enc ours | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        d, e = r["dec"], r["enc"]
        lines.append(
            f"| {r['pair']} | {fmt_ms(d['ref'][1])} | {fmt_ms(d['codec'][1])} | "
            f"{d['ref'][1] / d['codec'][1]:.2f} | {fmt_ms(e['ref'][1])} | "
            f"{fmt_ms(e['codec'][1])} | {e['ref'][1] / e['codec'][1]:.2f} |"
        )
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    """Replace (or append) the '## Codec' section of RESULTS.md, keeping the others."""
    old = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    lines = old.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if ln.strip() == "## Codec"), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + text
    else:
        end = next(
            (i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines)
        )
        tail = "".join(lines[end:])
        new = "".join(lines[:start]) + text + ("\n" + tail if tail else "")
    RESULTS.write_text(new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", default="1000,1000", help="chunk shape ny,nx")
    ap.add_argument("--reps", type=int, default=9)
    ap.add_argument("--only", default="", help="substring filter on 'dtype / compression'")
    ap.add_argument("--write-results", action="store_true", help="update benchmarks/RESULTS.md")
    args = ap.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    if len(shape) != 2 or args.reps < 7:
        sys.exit("--shape takes two numbers and --reps must be >= 7")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for dtype, comp, sf, ao, kind in PAIRS:
            if args.only and args.only not in f"{dtype} / {comp}":
                continue
            r = bench_pair(tmp, dtype, comp, sf, ao, kind, shape, args.reps)
            d, e = r["dec"], r["enc"]
            print(
                f"{r['pair']:42s} dec {fmt_ms(d['ref'][0])} / {fmt_ms(d['codec'][0])} ms "
                f"= {d['ref'][0] / d['codec'][0]:.2f}x   enc {fmt_ms(e['ref'][0])} / "
                f"{fmt_ms(e['codec'][0])} ms = {e['ref'][0] / e['codec'][0]:.2f}x",
                flush=True,
            )
            results.append(r)
    text = table(results, shape, args.reps)
    print()
    print(text)
    if args.write_results:
        write_section(text)


if __name__ == "__main__":
    main()
