"""Generate the example notebooks from the cell sources below (outputs stay empty).

Run ``python notebooks/make_notebooks.py`` after editing; commit the script and
the ``.ipynb`` files together. ``tests/test_notebooks.py`` executes every
notebook and checks that the committed files have no outputs and match this
script.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent

# Shared by the notebooks: a weather-like synthetic dataset (no downloads).
SAMPLE_DATA = '''
def weather_noise(rng, ny, nx, nt, cells=6.0, hours=30.0):
    """Smooth random anomalies ~`cells` grid cells wide that live ~`hours` hours (std 1)."""
    spectrum = np.fft.rfftn(rng.standard_normal((ny, nx, nt)))
    ky = np.fft.fftfreq(ny)[:, None, None]
    kx = np.fft.fftfreq(nx)[None, :, None]
    kt = np.fft.rfftfreq(nt)[None, None, :]
    spectrum *= np.exp(-2 * np.pi**2 * ((ky * cells) ** 2 + (kx * cells) ** 2 + (kt * hours) ** 2))
    field = np.fft.irfftn(spectrum, s=(ny, nx, nt), axes=(0, 1, 2))
    return field / field.std()


def sample_dataset(start="2026-01-01", days=10, step_deg=2.0, seed=0):
    """Hourly 2 m temperature and precipitation on a global regular grid."""
    rng = np.random.default_rng(seed)
    lat = np.arange(90 - step_deg / 2, -90, -step_deg)
    lon = np.arange(-180 + step_deg / 2, 180, step_deg)
    time = pd.date_range(start, periods=24 * days, freq="h")
    ny, nx, nt = lat.size, lon.size, time.size
    # made-up continents: warmer or colder patches with a strong diurnal cycle
    relief = weather_noise(rng, ny, nx, 2, cells=8 / step_deg * 2)[:, :, 0]
    land = (relief > 0.4).astype(float)
    climate = 27 - 32 * np.sin(np.deg2rad(lat + 10))[:, None] ** 2 + 3 * relief
    # diurnal cycle: warmest around 15:00 local solar time, larger over land
    local_hour = (time.hour.values[None, :] + lon[:, None] / 15) % 24
    amplitude = (1.0 + 5.0 * land) * np.cos(np.deg2rad(lat))[:, None]
    diurnal = amplitude[:, :, None] * np.cos(2 * np.pi * (local_hour - 15) / 24)[None, :, :]
    weather = 3 * weather_noise(rng, ny, nx, nt) + 0.6 * weather_noise(rng, ny, nx, nt, cells=1, hours=3)
    t2m = climate[:, :, None] + diurnal + weather
    rain = 0.4 * np.maximum(2.5 * weather_noise(rng, ny, nx, nt, cells=2, hours=5) - 2.0, 0) ** 2
    ds = xr.Dataset(
        {
            "temperature_2m": (("lat", "lon", "time"), t2m.astype("float32"),
                               {"units": "degC", "long_name": "2 m temperature"}),
            "precipitation": (("lat", "lon", "time"), np.round(rain, 1).astype("float32"),
                              {"units": "mm", "long_name": "hourly precipitation"}),
        },
        coords={"lat": ("lat", lat, {"units": "degrees_north"}),
                "lon": ("lon", lon, {"units": "degrees_east"}),
                "time": time},
        attrs={"title": "synthetic weather sample for xarray-om", "source": "notebooks"},
    )
    return ds
'''.strip()


def md(text: str):
    return new_markdown_cell(textwrap.dedent(text).strip())


def code(text: str):
    return new_code_cell(textwrap.dedent(text).strip())


# --------------------------------------------------------------------------- 1: quickstart

QUICKSTART = [
    md(
        """
        # xarray-om quickstart

        [OM](https://github.com/open-meteo/om-file-format) is Open-Meteo's file format for
        weather and climate data: n-dimensional arrays cut into small chunks, each compressed
        on its own (lossy 16-bit integers or lossless floats), with a look-up table of chunk
        offsets at the end of the file. It is built for *fast time series reads from cloud
        storage*.

        **xarray-om** makes OM files first-class citizens of the Pangeo stack. In this notebook:

        1. write a realistic dataset with `ds.om.to_om(...)`,
        2. open it lazily with `xr.open_dataset(..., engine="xarray_om")`,
        3. select a map and a time series and plot them,
        4. look at the chunks and the encoding.

        Everything runs offline on a laptop in well under a minute; the data are synthetic.

        > **Engine name.** Use `engine="xarray_om"`. The short name `"om"` is also claimed by
        > the `omfiles` package; when both are installed xarray picks one of them at random.
        """
    ),
    code(
        """
        import sys
        import time
        import warnings
        from pathlib import Path

        import matplotlib.pyplot as plt
        import numpy as np
        import pandas as pd
        import xarray as xr

        import xarray_om
        import xarray_om.accessor  # registers ds.om / da.om

        # omfiles, when installed, also registers the engine name "om". These notebooks always
        # say engine="xarray_om", so xarray's and xarray-om's clash warnings are only noise here.
        warnings.filterwarnings("ignore", message="Found 2 entrypoints for the engine name om")
        warnings.filterwarnings("ignore", message="The xarray engine name 'om' is also registered")

        workdir = Path("xarray-om-quickstart")
        workdir.mkdir(exist_ok=True)
        print("xarray-om", xarray_om.__version__, "| xarray", xr.__version__)
        """
    ),
    md(
        "## 1. A realistic dataset\n\nTen days of hourly 2 m temperature and precipitation on a global 2° grid."
    ),
    code(SAMPLE_DATA),
    code(
        """
        ds = sample_dataset()
        ds
        """
    ),
    md(
        """
        ## 2. Write it to OM

        The encoding is per variable, like `to_netcdf` / `to_zarr`:

        * `chunks`: the **OM chunk shape**. Open-Meteo stores one latitude row, a few
          longitudes and the whole time axis in a chunk, so that a time series at one place
          is a single small read.
        * `compression`: `"pfor_delta_2d_int16"` (lossy, 16-bit integers) or
          `"fpx_xor_2d"` (lossless floats, the default for floats).
        * `scale_factor` (and `add_offset`) with **OM semantics, the inverse of CF**:
          `stored = round((value + add_offset) * scale_factor)`. `scale_factor=20` keeps steps of
          0.05 °C (CF would write `scale_factor=0.05`).
        """
    ),
    code(
        """
        path = workdir / "sample.om"
        encoding = {
            "temperature_2m": {"compression": "pfor_delta_2d_int16", "scale_factor": 20, "chunks": (1, 6, 240)},
            "precipitation": {"compression": "pfor_delta_2d_int16", "scale_factor": 10, "chunks": (1, 6, 240)},
        }
        t0 = time.perf_counter()
        ds.om.to_om(path, encoding=encoding)
        raw = sum(v.nbytes for v in ds.variables.values())
        size = path.stat().st_size
        print(f"wrote {path}: {size / 1e6:.2f} MB for {raw / 1e6:.1f} MB in memory "
              f"(ratio {raw / size:.1f}x) in {time.perf_counter() - t0:.2f} s")
        """
    ),
    md(
        """
        The `xarray-om` command line shows what is inside (`info`, like `ncdump -h`),
        converts between formats (`convert`) and checks every chunk (`verify`):
        """
    ),
    code(
        """
        !{sys.executable} -m xarray_om.cli info {path}
        """
    ),
    md(
        """
        ## 3. Open lazily

        Opening reads the file tail (records and attributes) and the small coordinate arrays,
        nothing else. Without `chunks=` the variables are lazy arrays that read exactly the
        OM chunks a selection touches.
        """
    ),
    code(
        """
        om = xr.open_dataset(path, engine="xarray_om")
        om
        """
    ),
    md(
        """
        ### A map

        One time step needs one value from *every* chunk (each chunk holds the whole time axis
        of a few grid points): the layout favours time series, yet a global map still reads fast.
        """
    ),
    code(
        """
        t0 = time.perf_counter()
        snapshot = om["temperature_2m"].sel(time="2026-01-05T12:00").load()
        print(f"map read in {time.perf_counter() - t0:.3f} s")

        fig, ax = plt.subplots(figsize=(9, 4.2))
        snapshot.plot(ax=ax, cmap="RdYlBu_r", vmin=-35, vmax=35)
        ax.set_title("2 m temperature, 2026-01-05 12:00 UTC")
        plt.show()
        """
    ),
    md("### Time series\n\nA time series at one place is one chunk: one small read, one decode."),
    code(
        """
        places = {"Zurich": (47.4, 8.5), "Singapore": (1.3, 103.8), "Sydney": (-33.9, 151.2)}
        fig, axes = plt.subplots(2, 1, figsize=(9, 5), sharex=True)
        t0 = time.perf_counter()
        for name, (la, lo) in places.items():
            point = om.sel(lat=la, lon=lo, method="nearest").load()
            point["temperature_2m"].plot(ax=axes[0], label=name)
            point["precipitation"].plot(ax=axes[1], label=name)
        print(f"3 time series of 2 variables read in {time.perf_counter() - t0:.3f} s")
        axes[0].legend()
        axes[0].set_xlabel("")
        axes[0].set_title("nearest grid point")
        axes[1].set_title("")
        plt.tight_layout()
        plt.show()
        """
    ),
    md(
        """
        ### How close is the lossy encoding?

        `scale_factor=20` rounds to 0.05 °C, so the error is at most half a step, 0.025 °C;
        precipitation was rounded to 0.1 mm before writing, so `scale_factor=10` keeps it exactly.
        """
    ),
    code(
        """
        back = om.load()
        err = back["temperature_2m"] - ds["temperature_2m"]
        print(f"temperature: max |error| = {float(abs(err).max()):.4f} degC (bound 0.025)")
        print("precipitation identical:", bool((back["precipitation"] == ds["precipitation"]).all()))

        fig, ax = plt.subplots(figsize=(6, 2.8))
        ax.hist(err.values.ravel(), bins=61)
        ax.set_xlabel("decoded - original (degC)")
        ax.set_title("quantisation error of pfor_delta_2d_int16, scale_factor=20")
        plt.show()
        """
    ),
    md(
        """
        ## 4. Chunks and encoding

        The OM encoding travels in `.encoding`, never as attributes (CF decoding would otherwise
        apply the scale factor the wrong way round). `to_om` reads the same keys back, so
        open -> modify -> `to_om` keeps the layout.
        """
    ),
    code(
        """
        om["temperature_2m"].encoding
        """
    ),
    md(
        """
        With `chunks={}` dask gets **one chunk per OM chunk** (`preferred_chunks`); with
        `chunks="auto"` it gets bigger blocks that are whole multiples of the OM chunks, so no
        OM chunk is ever decoded by two tasks.
        """
    ),
    code(
        """
        per_chunk = xr.open_dataset(path, engine="xarray_om", chunks={})
        auto = xr.open_dataset(path, engine="xarray_om", chunks="auto")
        for name, d in [('chunks={}', per_chunk), ('chunks="auto"', auto)]:
            data = d["temperature_2m"].data
            print(f"{name:14s} dask chunk {tuple(c[0] for c in data.chunks)}, {data.npartitions} tasks")
        per_chunk["temperature_2m"].data
        """
    ),
    code(
        """
        t0 = time.perf_counter()
        daily = auto.resample(time="1D").mean().compute()
        print(f"daily means of both variables in {time.perf_counter() - t0:.2f} s")
        daily["temperature_2m"].mean(["lat", "lon"]).to_series().round(2)
        """
    ),
    md(
        """
        ## 5. The format layer

        Under the xarray backend, `xarray_om.OmFile` gives the raw record tree and numpy
        indexing, plus the chunk geometry: which chunk covers what, and where its bytes are.
        """
    ),
    code(
        """
        with xarray_om.OmFile(path) as f:
            arr = f["temperature_2m"]
            print(arr)
            print("chunk grid", arr.chunk_grid, "=", arr.n_chunks, "chunks,",
                  f"{arr.nbytes_compressed / 1e6:.2f} MB compressed")
            starts, stops = arr.chunk_ranges([0, 1, 2])
            for i, (a, b) in enumerate(zip(starts, stops)):
                print(f"chunk {i} covers {arr.chunk_slices(i)} -> bytes [{a}, {b}), {b - a} bytes")
            print("numpy indexing:", arr[45, 90, :5])
        """
    ),
    code(
        """
        !{sys.executable} -m xarray_om.cli verify {path}
        """
    ),
    md(
        """
        **Next:** `02_scale_out.ipynb` (dask.distributed, many files, climatologies) and
        `03_interop.ipynb` (Zarr view, virtual references, NetCDF/Zarr conversions).
        """
    ),
]

# --------------------------------------------------------------------------- 2: scale out

SCALE_OUT = [
    md(
        """
        # Scaling out: many OM files on a dask cluster

        This notebook runs a small `dask.distributed.LocalCluster` (2 worker processes) and:

        1. writes a collection of OM files in parallel (each file encoded on a worker);
        2. opens them as one dataset with `xr.open_mfdataset(..., chunks="auto")`;
        3. computes an hourly climatology and anomalies, watching the progress;
        4. explains why dask chunks map one-to-one (or many-to-one) onto OM chunks.

        The same code runs unchanged on a real cluster and on files in S3
        (`storage_options=...`): every task reopens the file from a small picklable
        description and reads only its own byte ranges.
        """
    ),
    code(
        """
        import time
        import warnings
        from pathlib import Path

        import matplotlib.pyplot as plt
        import numpy as np
        import pandas as pd
        import xarray as xr
        from distributed import Client, LocalCluster, get_task_stream, progress

        import xarray_om
        import xarray_om.accessor  # registers ds.om

        def quiet_engine_warnings():
            # omfiles, when installed, also registers the engine name "om". We always say
            # engine="xarray_om", so xarray's and xarray-om's clash warnings are only noise here.
            warnings.filterwarnings("ignore", message="Found 2 entrypoints for the engine name om")
            warnings.filterwarnings("ignore", message="The xarray engine name 'om' is also registered")


        quiet_engine_warnings()
        workdir = Path("xarray-om-scale-out")
        workdir.mkdir(exist_ok=True)
        """
    ),
    md(
        """
        ## A local cluster

        `dashboard_address=":0"` picks a free port. The dashboard needs `bokeh`; without it the
        link shows an install hint, and the progress bar and task stream below still work.
        """
    ),
    code(
        """
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                               dashboard_address=":0")
        client = Client(cluster)
        client.run(quiet_engine_warnings)  # the workers open files too (open_mfdataset(parallel=True))
        print(client)
        print("dashboard:", client.dashboard_link)
        """
    ),
    md(
        """
        ## Many files

        24 days of hourly data cut into eight files of three days (think: one file per model
        run or per week). With a `distributed.Client` active, `to_om` encodes blocks of OM
        chunks on the workers and streams them, in order, into the file; the file appears
        only when complete.
        """
    ),
    code(SAMPLE_DATA),
    code(
        """
        full = sample_dataset(days=24, step_deg=3.0)
        encoding = {
            "temperature_2m": {"compression": "pfor_delta_2d_int16", "scale_factor": 20, "chunks": (1, 15, 72)},
            "precipitation": {"compression": "pfor_delta_2d_int16", "scale_factor": 10, "chunks": (1, 15, 72)},
        }
        t0 = time.perf_counter()
        paths = []
        for k in range(8):
            part = full.isel(time=slice(72 * k, 72 * (k + 1)))
            p = workdir / f"sample_{pd.Timestamp(part.time.values[0]):%Y%m%d}.om"
            part.om.to_om(p, encoding=encoding)  # encoded on the workers
            paths.append(p)
        total = sum(p.stat().st_size for p in paths)
        print(f"{len(paths)} files, {total / 1e6:.1f} MB "
              f"({full.nbytes / total:.1f}x smaller than in memory), written in {time.perf_counter() - t0:.2f} s")
        """
    ),
    md(
        """
        ## One dataset from many files

        `open_mfdataset` opens every file (in parallel on the cluster with `parallel=True`) and
        concatenates them along time. Only metadata is read now.
        """
    ),
    code(
        """
        ds = xr.open_mfdataset(sorted(paths), engine="xarray_om", chunks="auto", parallel=True)
        ds
        """
    ),
    md(
        """
        ## The chunk mapping

        Each OM chunk is an independent compressed block with its own byte range in the file's
        look-up table. The backend reports the OM chunk shape as `preferred_chunks`, and:

        * `chunks={}` gives **one dask chunk per OM chunk**: a task is one byte-range read plus
          one decode;
        * `chunks="auto"` gives dask chunks that are **whole multiples of OM chunks**, sized to
          dask's target: fewer, bigger tasks, and still no OM chunk decoded twice.

        A dask chunk that cut through an OM chunk would make two tasks fetch and decode the same
        bytes; xarray-om never asks for that.
        """
    ),
    code(
        """
        t2m = ds["temperature_2m"]
        om_chunks = t2m.encoding["preferred_chunks"]
        print("OM chunk:", om_chunks)
        print("dask chunks per dim:", {d: sorted(set(c)) for d, c in zip(t2m.dims, t2m.data.chunks)})
        for dim, sizes in zip(t2m.dims, t2m.data.chunks):
            edges = np.cumsum(sizes)[:-1]
            if dim != "time":  # along time each file is its own array
                assert np.all(edges % om_chunks[dim] == 0), dim
        with xarray_om.OmFile(paths[0]) as f:
            a = f["temperature_2m"]
            n_om = a.n_chunks * len(paths)
            s, e = a.chunk_ranges(range(3))
            print("first chunks of", paths[0].name, "at bytes", [(int(x), int(y)) for x, y in zip(s, e)])
        print("every dask chunk boundary is an OM chunk boundary:",
              t2m.data.npartitions, "dask chunks cover", n_om, "OM chunks")
        """
    ),
    md(
        """
        ## Climatology and anomalies

        The mean diurnal cycle at every grid point (an hourly climatology), the anomaly of each
        hour against it, and the area-weighted global mean anomaly. Folding time into
        `(day, hour)` with `coarsen(...).construct(...)` keeps the graph small: one task per
        file-sized block instead of one per hour of the day. `progress` shows the tasks
        as they finish (the dashboard shows the same, graphically).
        """
    ),
    code(
        """
        # hourly data, days aligned with the files: fold time into (day, hour of day)
        days = t2m.coarsen(time=24).construct(time=("day", "hour"))
        clim = days.mean("day")  # mean diurnal cycle at every grid point (hours in UTC)
        anomaly = days - clim
        weights = np.cos(np.deg2rad(ds["lat"]))
        global_anomaly = anomaly.weighted(weights).mean(["lat", "lon"])
        amplitude = clim.max("hour") - clim.min("hour")

        with get_task_stream() as ts:
            futures = client.compute([global_anomaly, amplitude])
            progress(futures, notebook=False, interval="0.5s")
            global_anomaly, amplitude = client.gather(futures)
        global_anomaly = xr.DataArray(global_anomaly.values.ravel(), coords={"time": ds["time"].values},
                                      attrs={"units": "degC"})
        print(f"\\n{len(ts.data)} tasks ran on {len({t['worker'] for t in ts.data})} workers")
        """
    ),
    code(
        """
        fig, axes = plt.subplots(1, 2, figsize=(12, 3.8), gridspec_kw={"width_ratios": [1.3, 1]})
        amplitude.plot(ax=axes[0], cmap="magma", cbar_kwargs={"label": "degC"})
        axes[0].set_title("mean diurnal temperature range")
        global_anomaly.plot(ax=axes[1])
        axes[1].axhline(0, color="k", lw=0.5)
        axes[1].set_ylabel("anomaly [degC]")
        axes[1].set_title("global mean anomaly vs. hourly climatology")
        plt.tight_layout()
        plt.show()
        """
    ),
    md(
        """
        ### The task stream

        Without bokeh, the task stream recorded above (what the dashboard's *Task Stream* shows)
        can be drawn with matplotlib: one row per worker, one bar per task.
        """
    ),
    code(
        """
        tasks = pd.DataFrame([
            {"worker": t["worker"], "name": t["key"][0] if isinstance(t["key"], tuple) else t["key"],
             "start": s["start"], "stop": s["stop"]}
            for t in ts.data for s in t["startstops"] if s["action"] == "compute"
        ])
        t_min = tasks["start"].min()
        workers = sorted(tasks["worker"].unique())
        kinds = sorted(tasks["name"].str.rsplit("-", n=1).str[0].unique())
        colors = {k: plt.cm.tab20(i % 20) for i, k in enumerate(kinds)}
        fig, ax = plt.subplots(figsize=(10, 2.2))
        for _, t in tasks.iterrows():
            kind = t["name"].rsplit("-", 1)[0]
            ax.barh(workers.index(t["worker"]), t["stop"] - t["start"], left=t["start"] - t_min,
                    color=colors[kind], height=0.8)
        ax.set_yticks(range(len(workers)), [w.rsplit(":", 1)[-1] for w in workers])
        ax.set_xlabel("seconds")
        ax.set_ylabel("worker")
        ax.set_title(f"task stream: {len(tasks)} tasks, {len(kinds)} kinds")
        plt.show()
        """
    ),
    md(
        """
        ## Clean up

        Close the dataset before the cluster so that no task holds a file open.
        """
    ),
    code(
        """
        ds.close()
        client.close()
        cluster.close()
        """
    ),
]

# --------------------------------------------------------------------------- 3: interop

INTEROP = [
    md(
        """
        # Interoperability: Zarr, virtual references, NetCDF

        OM files do not live alone. This notebook shows:

        1. the **Zarr v3 view** of an OM file (`OmStore`): `xr.open_zarr` and `zarr` read it
           in place, no copy;
        2. **virtual references**: chunk manifests (`path`, `offset`, `length` per chunk) that
           kerchunk-style readers and VirtualiZarr use to combine files without copying bytes;
        3. **conversions** NetCDF -> OM -> NetCDF / Zarr with `to_om` and the `xarray-om`
           command line, comparing file sizes and errors.
        """
    ),
    code(
        """
        import json
        import sys
        import warnings
        from pathlib import Path

        import fsspec
        import matplotlib.pyplot as plt
        import numpy as np
        import pandas as pd
        import xarray as xr
        import zarr

        import xarray_om
        import xarray_om.accessor  # registers ds.om
        from xarray_om.zarr import OmParser, OmStore, om_manifest, om_references

        # omfiles, when installed, also registers the engine name "om". These notebooks always
        # say engine="xarray_om", so xarray's and xarray-om's clash warnings are only noise here.
        warnings.filterwarnings("ignore", message="Found 2 entrypoints for the engine name om")
        warnings.filterwarnings("ignore", message="The xarray engine name 'om' is also registered")

        workdir = Path("xarray-om-interop").resolve()
        workdir.mkdir(exist_ok=True)
        """
    ),
    code(SAMPLE_DATA),
    code(
        """
        ds = sample_dataset(days=4, step_deg=2.0)
        om_path = workdir / "sample.om"
        encoding = {
            "temperature_2m": {"scale_factor": 20, "chunks": (1, 10, 96)},
            "precipitation": {"scale_factor": 10, "chunks": (1, 10, 96)},
        }
        ds.om.to_om(om_path, encoding=encoding)
        reference = xr.open_dataset(om_path, engine="xarray_om").load()
        print(f"{om_path.name}: {om_path.stat().st_size / 1e6:.2f} MB")
        """
    ),
    md(
        """
        ## 1. The Zarr view

        `OmStore` is a read-only Zarr v3 store. Its `zarr.json` documents are generated from the
        OM record tree; a chunk key `temperature_2m/c/i/j/k` holds exactly the bytes of OM chunk
        `(i, j, k)`, decoded by the registered codec `xarray_om.om`. Zarr chunks are OM chunks.
        """
    ),
    code(
        """
        store = OmStore(om_path)
        group = zarr.open_group(store, mode="r")
        arr = group["temperature_2m"]
        print(arr.metadata.chunk_grid, arr.metadata.codecs)
        print(group.tree())
        """
    ),
    code(
        """
        via_zarr = xr.open_zarr(store)
        xr.testing.assert_identical(via_zarr.load(), reference)
        print("xr.open_zarr(OmStore(...)) == xr.open_dataset(..., engine='xarray_om')")
        via_zarr["temperature_2m"]
        """
    ),
    md(
        """
        ## 2. Virtual references

        `om_manifest` describes every chunk as a reference into the original file. Each chunk
        is independently compressed, so a reference plus the codec is all a reader needs.
        """
    ),
    code(
        """
        manifest = om_manifest(om_path)
        entry = manifest["arrays"]["temperature_2m"]
        print("codec:", entry["metadata"]["codecs"])
        first = dict(list(entry["manifest"].items())[:3])
        print(json.dumps(first, indent=1))

        with xarray_om.OmFile(om_path) as f:
            s, e = f["temperature_2m"].chunk_ranges([0, 1, 2])
        print("OmFile chunk_ranges:", [(int(a), int(b - a)) for a, b in zip(s, e)])
        """
    ),
    md(
        """
        `om_references` writes the same information kerchunk-style (`{"version": 1, "refs": ...}`).
        fsspec's reference filesystem turns it into a Zarr store that reads the original file:
        """
    ),
    code(
        """
        refs = om_references(om_path)
        refs_path = workdir / "sample.refs.json"
        refs_path.write_text(json.dumps(refs))
        print(f"{len(refs['refs'])} references, {refs_path.stat().st_size / 1e3:.1f} kB of JSON "
              f"for a {om_path.stat().st_size / 1e6:.2f} MB file")

        fs = fsspec.filesystem("reference", fo=str(refs_path), asynchronous=True)
        ref_store = zarr.storage.FsspecStore(fs, read_only=True, path="")
        via_refs = xr.open_zarr(ref_store, zarr_format=3, consolidated=True)
        xr.testing.assert_identical(via_refs.load(), reference)
        print("identical through the reference filesystem")
        """
    ),
    md(
        """
        ### VirtualiZarr

        `xarray_om.zarr.OmParser` is a VirtualiZarr parser. Two OM files opened
        virtually and concatenated along time form one array whose chunks point into both
        files; nothing is copied.
        """
    ),
    code(
        """
        try:
            from obspec_utils.registry import ObjectStoreRegistry
            from obstore.store import LocalStore
            from virtualizarr import open_virtual_dataset
            from virtualizarr.manifests import ManifestGroup, ManifestStore
        except ImportError as exc:  # optional dependency
            print("VirtualiZarr not installed, skipping:", exc)
        else:
            parts = []
            for k, start in enumerate(["2026-02-01", "2026-02-03"]):
                p = workdir / f"part{k}.om"
                sample_dataset(start=start, days=2, step_deg=4.0, seed=k).om.to_om(
                    p, encoding={"temperature_2m": {"chunks": (1, 10, 48)}})
                parts.append(p)
            registry = ObjectStoreRegistry({"file://": LocalStore()})
            vds = [open_virtual_dataset(f"file://{p}", registry=registry, parser=OmParser())
                   for p in parts]
            combined = xr.concat(vds, dim="time", coords="minimal", compat="override")
            marr = combined["temperature_2m"].data
            print(type(marr).__name__, marr.shape, "chunks", marr.chunks)
            mstore = ManifestStore(ManifestGroup(arrays={"temperature_2m": marr}), registry=registry)
            values = zarr.open_array(mstore, path="temperature_2m", mode="r")[...]
            direct = xr.concat([xr.open_dataset(p, engine="xarray_om")["temperature_2m"]
                                for p in parts], dim="time")
            np.testing.assert_array_equal(values, direct.values)
            print("virtual concatenation reads the same values as the two files")
        """
    ),
    md(
        """
        ## 3. Converting: NetCDF, Zarr, OM

        Start from a NetCDF file and write the same data as uncompressed and zlib NetCDF, Zarr
        (zarr's default zstd), lossless OM (`fpx_xor_2d`) and Open-Meteo-style lossy OM
        (16-bit integers: 0.05 °C, 0.1 mm). The command line does the same:
        `xarray-om convert SRC DST --scale-factor 20`.
        """
    ),
    code(
        """
        nc = workdir / "sample.nc"
        ds.to_netcdf(nc)
        !{sys.executable} -m xarray_om.cli convert {nc} {workdir / "cli.om"} --overwrite --scale-factor temperature_2m=20 --scale-factor precipitation=10 --chunks 1,10,96
        !{sys.executable} -m xarray_om.cli convert {workdir / "cli.om"} {workdir / "cli_back.nc"} --overwrite
        """
    ),
    code(
        """
        def tree_size(p):
            p = Path(p)
            return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size

        src = xr.open_dataset(nc).load()
        outputs = {
            "NetCDF": nc,
            "NetCDF zlib": workdir / "zlib.nc",
            "Zarr (zstd)": workdir / "sample.zarr",
            "OM lossless": workdir / "lossless.om",
            "OM int16 (CLI)": workdir / "cli.om",
        }
        src.to_netcdf(outputs["NetCDF zlib"], encoding={v: {"zlib": True, "complevel": 4} for v in src.data_vars})
        src.to_zarr(outputs["Zarr (zstd)"], mode="w", zarr_format=3, consolidated=False)
        src.om.to_om(outputs["OM lossless"], encoding={v: {"chunks": (1, 10, 96)} for v in src.data_vars})

        def open_any(p):
            if p.suffix == ".om":
                return xr.open_dataset(p, engine="xarray_om")
            if p.suffix == ".zarr":
                return xr.open_zarr(p, consolidated=False)
            return xr.open_dataset(p)

        rows = []
        for label, p in outputs.items():
            with open_any(p) as got:
                got = got.load()
                err_t = np.abs(got["temperature_2m"] - src["temperature_2m"])
                err_p = np.abs(got["precipitation"] - src["precipitation"])
            rows.append({"format": label, "MB": tree_size(p) / 1e6,
                         "max |err| T (degC)": float(err_t.max()), "max |err| P (mm)": float(err_p.max())})
        table = pd.DataFrame(rows).set_index("format")
        table["ratio"] = table.loc["NetCDF", "MB"] / table["MB"]
        table.round(4)
        """
    ),
    code(
        """
        fig, ax = plt.subplots(figsize=(7, 3))
        table["MB"].plot.barh(ax=ax, color=["0.6", "0.45", "tab:blue", "tab:orange", "tab:red"])
        for i, (mb, r) in enumerate(zip(table["MB"], table["ratio"])):
            ax.text(mb, i, f" {mb:.1f} MB ({r:.1f}x)", va="center")
        ax.set_xlabel("size on disk (MB)")
        ax.set_xlim(0, table["MB"].max() * 1.35)
        ax.invert_yaxis()
        ax.set_title("same data, five encodings")
        plt.tight_layout()
        plt.show()
        """
    ),
    md(
        """
        What does the lossy encoding do to one time series? Every value is within half a
        quantisation step (0.025 °C) of the original, the error looks like noise:
        """
    ),
    code(
        """
        with xr.open_dataset(workdir / "cli.om", engine="xarray_om") as lossy:
            point = dict(lat=47.0, lon=9.0, method="nearest")
            got = lossy["temperature_2m"].sel(**point).load()
        want = src["temperature_2m"].sel(**point)
        fig, axes = plt.subplots(2, 1, figsize=(9, 4.5), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
        want.plot(ax=axes[0], label="original float32", lw=2.5, alpha=0.5)
        got.plot(ax=axes[0], label="OM int16, scale_factor 20", lw=1)
        axes[0].legend()
        axes[0].set_title(f"2 m temperature at {float(want.lat):.0f}N {float(want.lon):.0f}E")
        axes[0].set_xlabel("")
        (got - want).plot(ax=axes[1], lw=0.8)
        axes[1].axhline(0.025, color="r", ls="--", lw=0.8)
        axes[1].axhline(-0.025, color="r", ls="--", lw=0.8)
        axes[1].set_ylabel("error [degC]")
        axes[1].set_title("")
        plt.tight_layout()
        plt.show()
        """
    ),
    md(
        """
        The lossy OM file is the smallest at a guaranteed error of half a quantisation step;
        the lossless encodings return the data bit for bit. Converting OM back to NetCDF keeps
        the decoded values exactly:
        """
    ),
    code(
        """
        with xr.open_dataset(workdir / "cli_back.nc") as back, xr.open_dataset(workdir / "cli.om", engine="xarray_om") as om:
            xr.testing.assert_equal(back.load(), om.load())
        print("cli.om -> cli_back.nc: identical values, coordinates and attributes")
        """
    ),
]


NOTEBOOKS = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_scale_out.ipynb": SCALE_OUT,
    "03_interop.ipynb": INTEROP,
}


def build(cells: list) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    # Stable ids keep the generated files byte-identical between runs.
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    return nb


def render(name: str) -> str:
    return nbformat.writes(build(NOTEBOOKS[name])) + "\n"


def main(argv: list[str]) -> int:
    out = Path(argv[1]) if len(argv) > 1 else HERE
    for name in NOTEBOOKS:
        (out / name).write_text(render(name))
        print("wrote", out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
