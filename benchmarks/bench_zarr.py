"""Zarr view throughput: ``xr.open_zarr(OmStore(p)).load()`` vs a native Zarr v3 store.

For each chunk layout the same float32 field is written twice, in one run:

* as an OM file (our ``OmWriter``), read through :class:`xarray_om.OmStore`
  (chunks decoded by the ``xarray_om.om`` codec);
* as a native Zarr v3 ``LocalStore`` with the same chunking and the codec
  ``zarr`` users pick for such data (``bytes`` + ``zstd`` level 3; also
  ``blosc`` lz4 + byte shuffle with ``--blosc``).

Both are read from the page cache in the same process, alternating call by
call (the machine may be shared), and timed over repetitions (the table gives
the minimum, the least disturbed by other processes, and the median):

* ``xr.open_zarr(...).load()`` -- open + dask-parallel load (one task per chunk);
* ``zarr a[...]`` -- ``zarr.open_array(...)[...]`` without xarray/dask.

``ratio`` = native time / OM time of the minima (> 1: the OM view is faster).

Usage::

    python benchmarks/bench_zarr.py [--shape 96,128,744] [--reps 5] [--blosc] [--markdown]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import warnings

import numpy as np


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


OM_CASES = {
    "om pfor_int16 sf20": {"compression": "pfor_delta_2d_int16", "scale_factor": 20.0},
    "om fpx_xor_2d": {"compression": "fpx_xor_2d"},
}


def layouts(shape: tuple[int, int, int]) -> dict[str, tuple[int, int, int]]:
    nt = shape[2]
    return {
        "(1,16,T)": (1, 16, nt),
        "(32,32,24)": (32, 32, 24),
        "(8,8,T)": (8, 8, nt),
    }


def write_om(path: str, data: np.ndarray, chunks: tuple[int, ...], kw: dict) -> None:
    from xarray_om.format.writer import OmWriter

    with OmWriter(path) as w:
        arr = w.write_array(
            data,
            chunks=chunks,
            name="temperature_2m",
            **kw,
            children=[w.write_scalar("lat lon time", name="coordinates")],
        )
        w.close(w.write_group(name="", children=[arr]))


def write_zarr(path: str, data: np.ndarray, chunks: tuple[int, ...], codec: str) -> None:
    import zarr
    from zarr.codecs import BloscCodec, ZstdCodec

    compressors = (
        [ZstdCodec(level=3)]
        if codec == "zstd"
        else [BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")]
    )
    g = zarr.open_group(zarr.storage.LocalStore(path), mode="w", zarr_format=3)
    a = g.create_array(
        "temperature_2m",
        shape=data.shape,
        chunks=chunks,
        dtype=data.dtype,
        compressors=compressors,
        dimension_names=("lat", "lon", "time"),
    )
    a[...] = data
    zarr.consolidate_metadata(g.store)


def dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def timed(fn, reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="96,128,744")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--blosc", action="store_true", help="also compare with blosc lz4")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    import xarray as xr
    import zarr

    from xarray_om import OmStore

    shape = tuple(int(s) for s in args.shape.split(","))
    data = smooth(shape)
    mb = data.nbytes / 1e6
    native_codecs = ["zstd", "blosc"] if args.blosc else ["zstd"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for lname, chunks in layouts(shape).items():
            n_chunks = int(np.prod([-(-s // c) for s, c in zip(shape, chunks, strict=True)]))
            native = {}
            for codec in native_codecs:
                zp = os.path.join(tmp, f"{lname}-{codec}.zarr")
                write_zarr(zp, data, chunks, codec)
                native[codec] = zp
            for oname, kw in OM_CASES.items():
                op = os.path.join(tmp, f"{lname}-{oname}.om".replace(" ", "_"))
                write_om(op, data, chunks, kw)
                for codec, zp in native.items():

                    def om_xr(op=op):
                        xr.open_zarr(OmStore(op)).load()

                    def nat_xr(zp=zp):
                        xr.open_zarr(zarr.storage.LocalStore(zp, read_only=True)).load()

                    def om_z(op=op):
                        zarr.open_array(OmStore(op), path="temperature_2m", mode="r")[...]

                    def nat_z(zp=zp):
                        zarr.open_array(
                            zarr.storage.LocalStore(zp, read_only=True),
                            path="temperature_2m",
                            mode="r",
                        )[...]

                    # Same values through both paths (OM int16 is lossy: compare to the OM file).
                    from xarray_om import OmFile

                    with OmFile(op) as f:
                        want = f["temperature_2m"][...]
                    got = xr.open_zarr(OmStore(op))["temperature_2m"].values
                    assert np.array_equal(got, want, equal_nan=True)
                    for what, a, b in (
                        ("xr.open_zarr().load()", om_xr, nat_xr),
                        ("zarr a[...]", om_z, nat_z),
                    ):
                        a(), b()  # warm up (page cache, imports)
                        ta, tb = [], []
                        for _ in range(args.reps):
                            ta += timed(a, 1)
                            tb += timed(b, 1)
                        t_om, t_nat = min(ta), min(tb)
                        med_om, med_nat = statistics.median(ta), statistics.median(tb)
                        rows.append(
                            {
                                "layout": lname,
                                "chunks": n_chunks,
                                "om": oname,
                                "om_MB": os.path.getsize(op) / 1e6,
                                "native": f"zarr {codec}",
                                "native_MB": dir_size(zp) / 1e6,
                                "what": what,
                                "t_om": t_om,
                                "t_native": t_nat,
                                "om_MBps": mb / t_om,
                                "native_MBps": mb / t_nat,
                                "ratio": t_nat / t_om,
                                "med_om": med_om,
                                "med_native": med_nat,
                            }
                        )
                        print(
                            f"{lname:11s} {oname:19s} vs zarr {codec:5s} {what:22s} "
                            f"om {t_om * 1e3:8.1f} ms  native {t_nat * 1e3:8.1f} ms  "
                            f"ratio {t_nat / t_om:5.2f} (medians {med_om * 1e3:.0f} / "
                            f"{med_nat * 1e3:.0f} ms)",
                            flush=True,
                        )
    if args.markdown:
        print()
        print(
            f"shape {shape} float32 ({mb:.1f} MB), best (median) of {args.reps}, page cache "
            f"warm, {os.cpu_count()} cores"
        )
        print()
        print(
            "| layout | chunks | OM codec (file MB) | native (store MB) | read | OM ms | native ms "
            "| OM MB/s | native MB/s | ratio |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        # ms columns: best (median)
        for r in rows:
            print(
                f"| {r['layout']} | {r['chunks']} | {r['om']} ({r['om_MB']:.1f}) | "
                f"{r['native']} ({r['native_MB']:.1f}) | {r['what']} | "
                f"{r['t_om'] * 1e3:.0f} ({r['med_om'] * 1e3:.0f}) | "
                f"{r['t_native'] * 1e3:.0f} ({r['med_native'] * 1e3:.0f}) | "
                f"{r['om_MBps']:.0f} | {r['native_MBps']:.0f} | "
                f"{r['ratio']:.2f}x |"
            )


if __name__ == "__main__":
    main()
