"""End-to-end example on sample data generated on the spot.

Writes a realistic hourly temperature/precipitation dataset to OM with
``ds.om.to_om``, reopens it lazily with the ``xarray_om`` engine (one dask
chunk per OM chunk), computes a daily climatology in parallel, checks the
round trip against the source and prints what happened.

Run: ``python examples/quickstart.py [OUTDIR]``
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

import xarray_om  # noqa: F401  (registers the ds.om accessor)


def sample_dataset(ny: int = 90, nx: int = 180, nt: int = 24 * 30) -> xr.Dataset:
    """A month of hourly fields on a 2-degree global grid with a diurnal cycle."""
    rng = np.random.default_rng(42)
    lat = np.linspace(89.0, -89.0, ny)
    lon = np.linspace(-179.0, 179.0, nx)
    time_ = pd.date_range("2026-01-01", periods=nt, freq="h")
    hours = np.arange(nt)
    base = 25.0 - 40.0 * np.abs(np.sin(np.deg2rad(lat)))[:, None, None]
    diurnal = 5.0 * np.sin(2 * np.pi * (hours[None, None, :] / 24.0 + lon[None, :, None] / 360.0))
    temperature = (base + diurnal + rng.normal(0, 0.5, (ny, nx, nt))).astype("float32")
    precipitation = np.maximum(rng.gamma(0.3, 2.0, (ny, nx, nt)) - 0.5, 0).astype("float32")
    ds = xr.Dataset(
        {
            "temperature_2m": (("lat", "lon", "time"), temperature, {"units": "degC"}),
            "precipitation": (("lat", "lon", "time"), precipitation, {"units": "mm"}),
        },
        coords={"lat": lat, "lon": lon, "time": time_},
        attrs={"title": "xarray-om quickstart sample", "source": "synthetic"},
    )
    return ds


def main(outdir: Path) -> None:
    ds = sample_dataset()
    path = outdir / "quickstart.om"
    encoding = {
        # Open-Meteo style: lossy int16 with 0.05 degC resolution, 1x6x720 chunks ...
        "temperature_2m": {
            "compression": "pfor_delta_2d_int16",
            "scale_factor": 20.0,
            "chunks": (1, 6, 720),
        },
        # ... and lossless fpx for precipitation (the default for floats).
        "precipitation": {"chunks": (1, 6, 720)},
    }
    t0 = time.perf_counter()
    ds.chunk({"lat": 30}).om.to_om(path, encoding=encoding)
    t_write = time.perf_counter() - t0
    raw = sum(v.nbytes for v in ds.data_vars.values())
    print(
        f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB, raw {raw / 1e6:.1f} MB, "
        f"ratio {raw / path.stat().st_size:.1f}x) in {t_write:.2f} s"
    )

    with xr.open_dataset(path, engine="xarray_om", chunks={}) as back:
        t2m = back["temperature_2m"]
        print(
            f"opened lazily: {t2m.dims} {t2m.shape}, OM chunks {t2m.encoding['preferred_chunks']}, "
            f"{t2m.data.npartitions} dask chunks"
        )
        point = back["temperature_2m"].sel(lat=47.0, lon=8.0, method="nearest").load()

    # chunks="auto" makes dask chunks that are whole multiples of the OM chunks: far
    # fewer tasks for whole-array computations.
    with xr.open_dataset(path, engine="xarray_om", chunks="auto") as back:
        print(f"chunks='auto': {back['temperature_2m'].data.npartitions} dask chunks")
        t0 = time.perf_counter()
        days = back.coarsen(time=24).construct(time=("day", "hour"))
        clim = days.mean("day").compute()
        print(
            f"diurnal climatology of {len(back.data_vars)} variables in "
            f"{time.perf_counter() - t0:.2f} s"
        )
        print(
            f"temperature at 47N 8E: min {float(point.min()):.2f} max {float(point.max()):.2f} degC"
        )
        back = back.load()

    err = float(np.abs(back["temperature_2m"] - ds["temperature_2m"]).max())
    assert err <= 0.5 / 20.0 + 1e-5, err
    assert np.array_equal(back["precipitation"].values, ds["precipitation"].values)
    print(f"round trip: temperature within {err:.4f} degC (bound 0.025), precipitation exact")
    print(
        f"hour-of-day mean at 47N 8E: "
        f"{np.round(clim['temperature_2m'].sel(lat=47.0, lon=8.0, method='nearest').values[:6], 2)}"
        " ..."
    )


if __name__ == "__main__":
    if len(sys.argv) > 1:
        out = Path(sys.argv[1])
        out.mkdir(parents=True, exist_ok=True)
        main(out)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(Path(tmp))
