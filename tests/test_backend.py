"""xarray backend: engine registration, fixtures and omfiles-written files vs. the reference,
naming conventions, CF options, laziness and chunk alignment, indexing, groups, mfdataset,
remote (S3) and file-like sources."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from importlib.metadata import EntryPoint
from pathlib import Path

import dask
import numpy as np
import omfiles
import pandas as pd
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omfiles.xarray import OmXarrayEntrypoint

from xarray_om import conventions as conv
from xarray_om.backend import (
    LegacyGridArray,
    OmBackendArray,
    OmBackendEntrypoint,
    _other_om_entrypoints,
)
from xarray_om.errors import OmConventionError, OmFormatError
from xarray_om.format.reader import OmArray, OmFile

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT.parent / "shared" / "fixtures"
ENGINE = OmBackendEntrypoint

pytestmark = [
    pytest.mark.filterwarnings("ignore::xarray_om.backend.EngineNameClashWarning"),
    pytest.mark.filterwarnings("ignore:Found 2 entrypoints for the engine name om"),
]

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z


def open_om(path, **kw) -> xr.Dataset:
    return xr.open_dataset(path, engine=ENGINE, **kw)


# --------------------------------------------------------------------------- file writers


def _children(w, items: dict) -> list:
    return [w.write_scalar(v, name=k) for k, v in items.items()]


def write_run_file(
    path,
    data: np.ndarray,
    times: np.ndarray,
    *,
    chunks=None,
    crs: str | None = None,
    unit: str = "°C",
    coordinates: str | None = "lat lon time",
    scale_factor: float = 20.0,
    compression: str = "pfor_delta_2d_int16",
    frt: int = T0,
) -> None:
    """An Open-Meteo data_run-shaped file: unnamed root array + time array + scalars."""
    w = omfiles.OmFileWriter(str(path))
    kids = []
    if crs is not None:
        kids.append(w.write_scalar(crs, name="crs_wkt"))
    kids.append(w.write_scalar(unit, name="unit"))
    kids.append(w.write_scalar(np.int64(frt), name="forecast_reference_time"))
    kids.append(
        w.write_array(
            np.asarray(times, np.int64),
            chunks=[len(times)],
            compression="pfor_delta_2d",
            name="time",
        )
    )
    if coordinates is not None:
        kids.append(w.write_scalar(coordinates, name="coordinates"))
    kids.append(w.write_scalar(np.int64(T0 + 1234), name="created_at"))
    if chunks is None:
        chunks = [1, max(1, min(1024 // data.shape[-1], data.shape[1])), data.shape[-1]]
    root = w.write_array(
        data,
        chunks=list(chunks),
        scale_factor=scale_factor,
        compression=compression,
        name="",
        children=kids,
    )
    w.close(root)


def write_spatial_file(path, variables: dict, valid_time: int, *, crs: str, frt: int = T0):
    """An Open-Meteo data_spatial-shaped file: root group of 2-D arrays + root scalars."""
    w = omfiles.OmFileWriter(str(path))
    kids = []
    for name, (data, unit, scale) in variables.items():
        u = w.write_scalar(unit, name="unit")
        kids.append(
            w.write_array(
                data,
                chunks=[min(data.shape[0], 32), min(data.shape[1], 32)],
                scale_factor=scale,
                compression="pfor_delta_2d_int16",
                name=name,
                children=[u],
            )
        )
    kids += [
        w.write_scalar(crs, name="crs_wkt"),
        w.write_scalar(np.int64(frt), name="forecast_reference_time"),
        w.write_scalar(np.int64(valid_time), name="valid_time"),
        w.write_scalar("lat lon", name="coordinates"),
        w.write_scalar(np.int64(T0), name="created_at"),
    ]
    root = w.write_group(name="", children=kids)
    w.close(root)


def write_bare(path, data, chunks, *, compression="pfor_delta_2d_int16", scale=20.0, name=""):
    w = omfiles.OmFileWriter(str(path))
    root = w.write_array(
        data, chunks=list(chunks), scale_factor=scale, compression=compression, name=name
    )
    w.close(root)


def smooth_field(shape, seed=0, dtype=np.float32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = np.cumsum(rng.standard_normal(shape), axis=-1) + 10.0
    return a.astype(dtype)


def reference_read(path, key=...):
    r = omfiles.OmFileReader(str(path))
    try:
        return r[key]
    finally:
        r.close()


REGULAR_WKT = (
    'GEOGCRS["WGS 84",DATUM["World Geodetic System 1984",ELLIPSOID["WGS 84",6378137,'
    '298.257223563,LENGTHUNIT["metre",1]]],CS[ellipsoidal,2],AXIS["latitude",north],'
    'AXIS["longitude",east],ANGLEUNIT["degree",0.0174532925199433],'
    'USAGE[SCOPE["grid"],BBOX[{lat0},{lon0},{lat1},{lon1}]]]'
)


# --------------------------------------------------------------------------- engine names


def test_alias_and_class_export():
    import xarray_om

    assert xarray_om.OmBackendEntrypoint is OmBackendEntrypoint
    # the warning class, to filter it: warnings.simplefilter("ignore", xarray_om.EngineNameClashWarning)
    from xarray_om.backend import EngineNameClashWarning

    assert xarray_om.EngineNameClashWarning is EngineNameClashWarning
    assert "EngineNameClashWarning" in xarray_om.__all__
    engines = xr.backends.list_engines()
    assert isinstance(engines["xarray_om"], OmBackendEntrypoint)


def test_om_resolves_to_this_package_without_omfiles():
    # xarray's own resolution over the installed entry points minus omfiles'.
    from importlib.metadata import entry_points

    eps = [e for e in entry_points(group="xarray.backends") if not e.value.startswith("omfiles")]
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no "Found 2 entrypoints" now
        engines = xr.backends.plugins.build_engines(eps)
    assert isinstance(engines["om"], OmBackendEntrypoint)
    assert _other_om_entrypoints(eps) == []


def test_om_engine_in_environment_without_omfiles(tmp_path):
    # A fresh interpreter whose importlib.metadata hides omfiles' entry point:
    # engine="om" must open with this package, and no clash warning is emitted.
    code = textwrap.dedent(
        f"""
        import importlib.metadata as md, warnings
        _orig = md.entry_points
        def _filtered(**kw):
            eps = _orig(**kw)
            if kw.get("group") == "xarray.backends":
                return md.EntryPoints([e for e in eps if not e.value.startswith("omfiles")])
            return eps
        md.entry_points = _filtered
        import xarray as xr
        from xarray_om.backend import OmBackendEntrypoint, EngineNameClashWarning
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            ds = xr.open_dataset({str(FIXTURES / "openmeteo_run.om")!r}, engine="om")
        assert isinstance(xr.backends.plugins.get_backend("om"), OmBackendEntrypoint)
        assert not [w for w in rec if issubclass(w.category, (EngineNameClashWarning, RuntimeWarning))], [str(w.message) for w in rec]
        print(sorted(ds.data_vars), ds["openmeteo_run"].encoding["om_scale_factor"])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['openmeteo_run'] 20.0"


def test_clash_warning_names_alias_once(tmp_path):
    # Both packages installed (this environment): one warning per process, naming the alias.
    code = textwrap.dedent(
        f"""
        import warnings
        import xarray as xr
        from xarray_om.backend import EngineNameClashWarning
        with warnings.catch_warnings(record=True) as rec:
            warnings.simplefilter("always")
            for _ in range(3):
                xr.open_dataset({str(FIXTURES / "openmeteo_run.om")!r}, engine="xarray_om").close()
                xr.open_dataset({str(FIXTURES / "openmeteo_run.om")!r}, engine=__import__("xarray_om").OmBackendEntrypoint).close()
        msgs = [str(w.message) for w in rec if issubclass(w.category, EngineNameClashWarning)]
        print(len(msgs))
        print(msgs[0])
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    count, msg = out.stdout.split("\n", 1)
    assert count == "1"
    assert "engine='xarray_om'" in msg and "omfiles" in msg


def test_other_om_entrypoints_detection():
    ours = EntryPoint("om", "xarray_om.backend:OmBackendEntrypoint", "xarray.backends")
    alias = EntryPoint("xarray_om", "xarray_om.backend:OmBackendEntrypoint", "xarray.backends")
    theirs = EntryPoint("om", "omfiles.xarray:OmXarrayEntrypoint", "xarray.backends")
    other = EntryPoint("zarr", "zarr.x:Y", "xarray.backends")
    assert _other_om_entrypoints([ours, alias, other]) == []
    assert _other_om_entrypoints([ours, alias, theirs]) == ["omfiles.xarray:OmXarrayEntrypoint"]


def test_guess_can_open(tmp_path):
    be = OmBackendEntrypoint()
    assert be.guess_can_open(FIXTURES / "openmeteo_run.om")
    assert be.guess_can_open(str(FIXTURES / "legacy_v1.om"))
    assert be.guess_can_open(str(FIXTURES / "legacy_v2_fpx.om"))
    assert not be.guess_can_open(FIXTURES / "README.md")
    assert not be.guess_can_open(tmp_path / "missing.om")
    tiny = tmp_path / "tiny.om"
    tiny.write_bytes(b"OM")
    assert not be.guess_can_open(tiny)
    assert be.guess_can_open("s3://bucket/data_run/x/temperature_2m.om")
    assert be.guess_can_open("https://host/a/chunk_1.om?x=1")
    assert not be.guess_can_open("s3://bucket/file.nc")
    raw = (FIXTURES / "hierarchy.om").read_bytes()
    bio = io.BytesIO(raw)
    bio.seek(5)
    assert be.guess_can_open(bio)
    assert bio.tell() == 5
    assert not be.guess_can_open(io.BytesIO(b"CDF\x01" + b"\0" * 100))
    assert be.guess_can_open(raw)
    assert not be.guess_can_open(object())


# --------------------------------------------------------------------------- fixtures vs .npy


def _manifest_arrays():
    """(file, open kwargs, variable name, expected npy) for every array of every fixture."""
    if not (FIXTURES / "manifest.json").is_file():
        return []
    out = []
    for entry in json.loads((FIXTURES / "manifest.json").read_text())["files"]:
        stem = entry["file"][:-3]

        def walk(node, group_parts, parent_kind, is_root, entry=entry, stem=stem):
            if node["kind"] == "array":
                name = node["name"] or (stem if is_root else None)
                group = "/".join(group_parts) or None
                if node.get("expected_npy") and name:
                    out.append((entry["file"], group, name, node["expected_npy"]))
                for c in node.get("children", []):
                    if c["kind"] == "array":
                        walk(c, group_parts, "array", False)
            elif node["kind"] == "group":
                parts = [] if is_root else [*group_parts, node["name"]]
                for c in node.get("children", []):
                    walk(c, parts, "group", False)

        walk(entry["root"], [], None, True)
    return out


MANIFEST_ARRAYS = _manifest_arrays()


@pytest.mark.parametrize(
    ("fname", "group", "var", "npy"),
    MANIFEST_ARRAYS,
    ids=[f"{a[0]}:{a[1] or ''}/{a[2]}" for a in MANIFEST_ARRAYS],
)
def test_fixture_arrays_match_reference(fname, group, var, npy):
    expected = np.load(FIXTURES / npy)
    with open_om(FIXTURES / fname, group=group, decode_times=False, spatial_time="scalar") as ds:
        got = ds[var].values
        assert got.dtype == expected.dtype
        np.testing.assert_array_equal(got, expected)
        if ds[var].ndim and not ds[var].variable._in_memory:
            lazy = open_om(FIXTURES / fname, group=group, decode_times=False, chunks={})
            np.testing.assert_array_equal(lazy[var].values, expected)
            lazy.close()


def test_manifest_covers_everything():
    assert len(MANIFEST_ARRAYS) >= 40
    assert {a[0] for a in MANIFEST_ARRAYS} >= {
        "hierarchical.om",
        "legacy_v1.om",
        "openmeteo_run.om",
        "openmeteo_spatial.om",
        "shape_4d.om",
        "many_chunks.om",
    }


# --------------------------------------------------------------------------- Open-Meteo layouts


def test_data_run_layout(tmp_path):
    ny, nx, nt = 6, 7, 30
    data = smooth_field((ny, nx, nt))
    times = T0 + 3600 * np.arange(nt, dtype=np.int64)
    times[20:] = times[19] + 10800 * np.arange(1, 11)  # irregular, as in real files
    wkt = REGULAR_WKT.format(lat0=43.18, lon0=-3.94, lat1=43.28, lon1=-3.82)
    d = tmp_path / "data_run" / "dwd_icon_d2" / "2024" / "01" / "01" / "0000Z"
    d.mkdir(parents=True)
    path = d / "temperature_2m.om"
    write_run_file(path, data, times, crs=wkt)
    ref = reference_read(path)
    with xr.open_dataset(path, engine="xarray_om") as ds:
        assert list(ds.data_vars) == ["temperature_2m"]
        da = ds["temperature_2m"]
        assert da.dims == ("lat", "lon", "time")
        np.testing.assert_array_equal(da.values, ref)
        np.testing.assert_array_equal(
            ds["time"].values, times.astype("datetime64[s]").astype("datetime64[ns]")
        )
        assert ds["forecast_reference_time"].values == np.datetime64(T0, "s")
        assert "forecast_reference_time" in ds.coords
        np.testing.assert_allclose(ds["lat"].values, 43.18 + 0.02 * np.arange(ny), atol=1e-9)
        np.testing.assert_allclose(ds["lon"].values, -3.94 + 0.02 * np.arange(nx), atol=1e-9)
        assert ds["lat"].attrs["units"] == "degrees_north"
        assert da.attrs["units"] == "°C" and da.attrs["unit"] == "°C"
        assert da.attrs["crs_wkt"] == wkt
        for forbidden in ("coordinates", "scale_factor", "add_offset", "_ARRAY_DIMENSIONS"):
            assert forbidden not in da.attrs
            assert forbidden not in ds.attrs
        enc = da.encoding
        assert enc["om_scale_factor"] == 20.0 and enc["om_add_offset"] == 0.0
        assert enc["compression"] == "pfor_delta_2d_int16"
        assert enc["chunks"] == (1, 7, 30)
        assert enc["preferred_chunks"] == {"lat": 1, "lon": 7, "time": 30}
    # identical values to omfiles' own xarray backend
    with xr.open_dataset(path, engine=OmXarrayEntrypoint) as ref_ds:
        np.testing.assert_array_equal(ref_ds[""].values, data_ := ref)
        assert data_.shape == (ny, nx, nt)


def test_open_dataarray():
    da = xr.open_dataarray(FIXTURES / "openmeteo_run.om", engine="xarray_om")
    assert da.name == "openmeteo_run" and da.dims == ("lat", "lon", "time")
    np.testing.assert_array_equal(da.values, np.load(FIXTURES / "openmeteo_run.root.npy"))
    da.close()


def test_data_dir_layout_names_from_folder(tmp_path):
    d = tmp_path / "data" / "dwd_icon" / "wind_u_component_10m"
    d.mkdir(parents=True)
    data = smooth_field((5, 9, 24))
    write_bare(d / "chunk_1234.om", data, [1, 6, 24])
    write_bare(d / "year_2020.om", data, [1, 6, 24])
    for fname in ("chunk_1234.om", "year_2020.om"):
        with open_om(d / fname) as ds:
            assert list(ds.data_vars) == ["wind_u_component_10m"]
            da = ds["wind_u_component_10m"]
            assert da.dims == ("lat", "lon", "time")
            np.testing.assert_array_equal(da.values, reference_read(d / fname))
    # 4-D ensembles and 2-D static fields
    write_bare(tmp_path / "ens.om", smooth_field((3, 4, 2, 8)), [1, 2, 1, 8])
    with open_om(tmp_path / "ens.om") as ds:
        assert ds["ens"].dims == ("lat", "lon", "member", "time")
    write_bare(tmp_path / "HSURF.om", smooth_field((3, 4)), [3, 4])
    with open_om(tmp_path / "HSURF.om") as ds:
        assert ds["HSURF"].dims == ("lat", "lon")
    # without a path: "data", or variable_name=
    raw = (d / "chunk_1234.om").read_bytes()
    with open_om(io.BytesIO(raw)) as ds:
        assert list(ds.data_vars) == ["data"]
    with open_om(io.BytesIO(raw), variable_name="u10") as ds:
        assert list(ds.data_vars) == ["u10"]


def test_spatial_layout_time_dimension_and_grid(tmp_path):
    ny, nx = 40, 50
    t = smooth_field((ny, nx), 1)
    rh = (smooth_field((ny, nx), 2) * 3).round()
    # descending latitude, float32 print noise in the BBOX
    wkt = REGULAR_WKT.format(lat0=71.95, lon0=-25.0, lat1=68.049995, lon1=-20.099998)
    path = tmp_path / "2024-01-01T0100.om"
    write_spatial_file(
        path,
        {"temperature_2m": (t, "°C", 20.0), "relative_humidity_2m": (rh, "%", 1.0)},
        T0 + 3600,
        crs=wkt,
    )
    with open_om(path) as ds:
        assert ds["temperature_2m"].dims == ("time", "lat", "lon")
        assert ds.sizes == {"time": 1, "lat": ny, "lon": nx}
        assert ds["time"].values[0] == np.datetime64(T0 + 3600, "s")
        assert ds["temperature_2m"].encoding["preferred_chunks"] == {
            "time": 1,
            "lat": 32,
            "lon": 32,
        }
        np.testing.assert_array_equal(
            ds["temperature_2m"].values[0], reference_read_child(path, "temperature_2m")
        )
        lat = ds["lat"].values
        assert lat[0] == 71.95 and lat[-1] == pytest.approx(68.05, abs=1e-9)
        np.testing.assert_allclose(np.diff(lat), -0.1, atol=1e-9)
        np.testing.assert_allclose(ds["lon"].values, -25 + 0.1 * np.arange(nx), atol=1e-9)
        assert ds.attrs["crs_wkt"] == wkt
        assert "coordinates" not in ds.attrs and "valid_time" not in ds.attrs
        # indexing through the leading time axis
        np.testing.assert_array_equal(
            ds["temperature_2m"][0, 3:9:2, [1, 4]].values,
            ds["temperature_2m"].values[0, 3:9:2][:, [1, 4]],
        )
        assert ds["relative_humidity_2m"].attrs["units"] == "%"
    # valid_time written as a Python int is a float64 scalar: still a time
    w = omfiles.OmFileWriter(str(tmp_path / "f64.om"))
    arr = w.write_array(
        t, chunks=[32, 32], scale_factor=20, name="t2m", compression="pfor_delta_2d_int16"
    )
    vt = w.write_scalar(T0 + 7200, name="valid_time")
    w.close(
        w.write_group(name="", children=[arr, vt, w.write_scalar("lat lon", name="coordinates")])
    )
    with open_om(tmp_path / "f64.om") as ds:
        assert ds["time"].values[0] == np.datetime64(T0 + 7200, "s")
        assert ds["time"].encoding["dtype"] == np.float64
    with open_om(path, spatial_time="scalar") as ds:
        assert ds["temperature_2m"].dims == ("lat", "lon")
        assert ds["time"].ndim == 0 and "time" in ds.coords
    with open_om(path, decode_grid=False) as ds:
        assert "lat" not in ds.variables


def test_spatial_files_concatenate_over_time(tmp_path):
    wkt = REGULAR_WKT.format(lat0=40, lon0=0, lat1=41.9, lon1=2.4)
    paths, fields = [], []
    for h in range(4):
        f = smooth_field((20, 25), h)
        fields.append(f)
        p = tmp_path / f"t{h}.om"
        write_spatial_file(p, {"temperature_2m": (f, "°C", 20.0)}, T0 + 3600 * h, crs=wkt)
        paths.append(p)
    ds = xr.open_mfdataset(paths[::-1], engine=ENGINE, combine="by_coords")
    assert ds.sizes == {"time": 4, "lat": 20, "lon": 25}
    assert (np.diff(ds["time"].values) == np.timedelta64(3600, "s")).all()
    ref = np.stack([reference_read_child(p, "temperature_2m") for p in paths])
    np.testing.assert_array_equal(ds["temperature_2m"].values, ref)
    ds.close()


def reference_read_child(path, name):
    r = omfiles.OmFileReader(str(path))
    try:
        return r.get_child_by_name(name)[...]
    finally:
        r.close()


def test_rolling_time_axis(tmp_path):
    w = omfiles.OmFileWriter(str(tmp_path / "rolling.om"))
    kids = [
        w.write_scalar(np.int64(T0), name="time_start"),
        w.write_scalar(np.int64(T0 + 10 * 3600), name="time_end"),
        w.write_scalar(np.int64(3600), name="dt_seconds"),
    ]
    root = w.write_array(
        smooth_field((2, 3, 4, 10)),
        chunks=[1, 3, 1, 10],
        scale_factor=20,
        compression="pfor_delta_2d_int16",
        name="",
        children=kids,
    )
    w.close(root)
    d = tmp_path / "ens" / "temperature_2m"
    d.mkdir(parents=True)
    os.replace(tmp_path / "rolling.om", d / "rolling.om")
    with open_om(d / "rolling.om") as ds:
        assert ds["temperature_2m"].dims == ("lat", "lon", "member", "time")
        expected = (T0 + 3600 * np.arange(10)).astype("datetime64[s]").astype("datetime64[ns]")
        np.testing.assert_array_equal(ds["time"].values, expected)


def test_legacy_files(tmp_path):
    ref = np.load(FIXTURES / "legacy_v2_int16.root.npy")  # (21, 30), chunks (6, 7)
    with open_om(FIXTURES / "legacy_v2_int16.om") as ds:
        da = ds["legacy_v2_int16"]
        assert da.dims == ("location", "time")
        np.testing.assert_array_equal(da.values, ref)
    with open_om(FIXTURES / "legacy_v2_int16.om", legacy_grid=(3, 7), chunks={}) as ds:
        da = ds["legacy_v2_int16"]
        assert da.dims == ("lat", "lon", "time")
        grid = ref.reshape(3, 7, 30)
        # rows per block: 6 locations per OM chunk, 7 per row -> 6 rows (clipped to 3)
        assert da.chunks == ((3,), (7,), (7, 7, 7, 7, 2))
        np.testing.assert_array_equal(da.values, grid)
        np.testing.assert_array_equal(da[1:3, ::2, 5].values, grid[1:3, ::2, 5])
        np.testing.assert_array_equal(da[2, 3:6].values, grid[2, 3:6])
        np.testing.assert_array_equal(
            da.isel(lat=[2, 0], lon=[6, 1, 3]).values, grid[[2, 0]][:, [6, 1, 3]]
        )
        np.testing.assert_array_equal(da[:, ::-1, -1].values, grid[:, ::-1, -1])
        np.testing.assert_array_equal(da[1, 4, 7].values, grid[1, 4, 7])
    with pytest.raises(ValueError, match="legacy_grid"):
        open_om(FIXTURES / "legacy_v2_int16.om", legacy_grid=(4, 7))
    with pytest.raises(ValueError, match="legacy"):
        open_om(FIXTURES / "openmeteo_run.om", legacy_grid=(4, 5))


def test_legacy_grid_array_preferred_chunks():
    from xarray_om.format.reader import OmFile

    arr = OmFile(FIXTURES / "legacy_v2_int16.om").root
    lg = LegacyGridArray(arr, 3, 7)
    assert lg.preferred_chunks() == (3, 7, 7)
    assert lg.shape == (3, 7, 30)


# --------------------------------------------------------------------------- names


def _write_tree(path, build):
    w = omfiles.OmFileWriter(str(path))
    root = build(w)
    w.close(root)


def test_dimension_name_sources(tmp_path):
    a = np.arange(24, dtype=np.int32).reshape(2, 3, 4)
    b = np.arange(12, dtype=np.int32).reshape(3, 4)

    def build(w):
        own = w.write_array(
            a, chunks=[1, 3, 4], name="own", children=[w.write_scalar("x y z", name="coordinates")]
        )
        legacy = w.write_array(
            b,
            chunks=[3, 4],
            name="legacy",
            children=[w.write_scalar("y, z", name="_ARRAY_DIMENSIONS")],
        )
        inherits = w.write_array(b, chunks=[3, 4], name="inherits")
        plain = w.write_array(np.arange(5, dtype=np.int8), chunks=[5], name="plain")
        ycoord = w.write_array(np.arange(3, dtype=np.int32) * 10, chunks=[3], name="y")
        return w.write_group(
            name="",
            children=[
                own,
                legacy,
                inherits,
                plain,
                ycoord,
                w.write_scalar("y z", name="coordinates"),
            ],
        )

    path = tmp_path / "dims.om"
    _write_tree(path, build)
    with open_om(path) as ds:
        assert ds["own"].dims == ("x", "y", "z")
        assert ds["inherits"].dims == ("y", "z")  # from the group's coordinates
        assert ds["legacy"].dims == ("y", "z")  # group first, then _ARRAY_DIMENSIONS
        assert ds["plain"].dims == ("dim_0",)
        assert ds["y"].dims == ("y",) and "y" in ds.indexes
        assert ds.indexes["y"].tolist() == [0, 10, 20]
        for v in ds.variables.values():
            assert "coordinates" not in v.attrs and "_ARRAY_DIMENSIONS" not in v.attrs
        assert "coordinates" not in ds.attrs
    # user overrides: sequence by rank, string, mapping; the coordinate follows a rename
    with open_om(path, dimension_names=["p", "q"]) as ds:
        assert ds["inherits"].dims == ("p", "q") and ds["legacy"].dims == ("p", "q")
        assert ds["own"].dims == ("x", "p", "q")
        assert ds["p"].dims == ("p",)  # the "y" coordinate variable was renamed with its dim
    with open_om(path, dimension_names={"plain": "n"}) as ds:
        assert ds["plain"].dims == ("n",)
        assert ds["own"].dims == ("x", "y", "z")
    with pytest.raises(ValueError, match="unknown variables"):
        open_om(path, dimension_names={"nope": ["a"]})
    with pytest.raises(ValueError, match="fits no array"):
        open_om(path, dimension_names=["a", "b", "c", "d", "e"])


def test_legacy_array_dimensions_child(tmp_path):
    def build(w):
        return w.write_array(
            np.zeros((2, 3), np.float32),
            chunks=[2, 3],
            name="v",
            compression="fpx_xor_2d",
            children=[w.write_scalar("a,b", name="_ARRAY_DIMENSIONS")],
        )

    _write_tree(tmp_path / "f.om", build)
    with open_om(tmp_path / "f.om") as ds:
        assert ds["v"].dims == ("a", "b")
        assert ds["v"].attrs == {}


def test_conflicting_dimension_sizes(tmp_path):
    def build(w):
        a = w.write_array(
            np.zeros((2, 3), np.int16),
            chunks=[2, 3],
            name="a",
            children=[w.write_scalar("y x", name="coordinates")],
        )
        b = w.write_array(
            np.zeros((4, 3), np.int16),
            chunks=[2, 3],
            name="b",
            children=[w.write_scalar("y x", name="coordinates")],
        )
        return w.write_group(name="", children=[a, b])

    _write_tree(tmp_path / "f.om", build)
    # A file's own names clashing is an OmError naming the file (a damaged file can do
    # this too), and a ValueError as xarray raises for clashing dimension sizes.
    with pytest.raises(
        OmConventionError, match=r"dimension 'y' has length 2 in 'a' but 4 in 'b'"
    ) as info:
        open_om(tmp_path / "f.om")
    assert isinstance(info.value, ValueError)
    assert info.value.source == str(tmp_path / "f.om")
    assert str(info.value).startswith(f"{tmp_path / 'f.om'}: ")
    with open_om(tmp_path / "f.om", dimension_names={"b": ["y2", "x"]}) as ds:
        assert ds.sizes == {"y": 2, "x": 3, "y2": 4}
    # default names never conflict: they get the variable name as prefix
    with open_om(FIXTURES / "many_chunks.om") as ds:
        assert ds["a1d"].dims == ("dim_0",)
        assert ds["b2d"].dims[0] == "b2d_dim_0"


# --------------------------------------------------------------------------- CF options


def _cf_file(path):
    def build(w):
        counts = np.array([[1, -999, 3], [4, 5, -999]], np.int16)
        v = w.write_array(
            counts,
            chunks=[1, 3],
            name="counts",
            children=[
                w.write_scalar(np.int16(-999), name="_FillValue"),
                w.write_scalar("y x", name="coordinates"),
            ],
        )
        t = w.write_array(
            T0 + 3600 * np.arange(3, dtype=np.int64),
            chunks=[3],
            name="time",
            compression="pfor_delta_2d",
        )
        hours = w.write_array(
            np.array([0, 6, 12], np.int32),
            chunks=[3],
            name="lead",
            children=[
                w.write_scalar("hours", name="units"),
                w.write_scalar("x", name="coordinates"),
            ],
        )
        return w.write_group(name="", children=[v, t, hours])

    _write_tree(path, build)


def test_cf_options(tmp_path):
    path = tmp_path / "cf.om"
    _cf_file(path)
    with open_om(path) as ds:
        c = ds["counts"]
        assert c.dtype == np.float32
        assert np.isnan(c.values[0, 1]) and np.isnan(c.values[1, 2])
        assert c.encoding["_FillValue"] == -999
        assert ds["time"].dtype == "datetime64[ns]"
        assert ds["lead"].dtype == np.int32  # xarray no longer decodes timedeltas by default
    with open_om(path, decode_timedelta=True) as ds:
        assert ds["lead"].dtype.kind == "m"
        assert ds["lead"].values[1] == np.timedelta64(6, "h")
    with open_om(path, mask_and_scale=False, decode_timedelta=False) as ds:
        assert ds["counts"].dtype == np.int16
        assert ds["counts"].values[0, 1] == -999
        assert ds["lead"].dtype == np.int32
    with open_om(path, decode_times=False) as ds:
        assert ds["time"].dtype == np.int64
        assert ds["time"].attrs["units"] == conv.UNIX_TIME_UNITS
        assert ds["time"].values[1] == T0 + 3600
    with xr.open_dataset(path, engine=ENGINE, decode_cf=False) as ds:
        assert ds["counts"].dtype == np.int16 and ds["time"].dtype == np.int64
    coder = xr.coders.CFDatetimeCoder(use_cftime=True)
    with xr.open_dataset(path, engine=ENGINE, decode_times=coder) as ds:
        assert type(ds["time"].values[0]).__module__.startswith("cftime")


def _open_general_way(monkeypatch, path, **kw):
    """Open with the fast paths off: xarray's CF decoding and Dataset constructor."""
    from xarray_om import backend

    general = backend._dataset
    with monkeypatch.context() as m:
        m.setattr(backend, "_nothing_to_decode", lambda *a: False)
        m.setattr(backend, "_dataset", lambda v, c, a: general(v, c, a, direct=False))
        return backend.OmBackendEntrypoint().open_groups_as_dict(path, **kw)


def _assert_same_datasets(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for key in a:
        x, y = a[key], b[key]
        xr.testing.assert_identical(x, y)
        assert list(x.variables) == list(y.variables)
        assert list(x.data_vars) == list(y.data_vars)
        assert dict(x.sizes) == dict(y.sizes) and list(x.dims) == list(y.dims)
        assert list(x.xindexes) == list(y.xindexes)
        for name in x.variables:
            vx, vy = x.variables[name], y.variables[name]
            assert vx.encoding == vy.encoding, name
            assert type(vx) is type(vy) and type(vx._data) is type(vy._data), name


OPENABLE_FIXTURES = sorted({a[0] for a in MANIFEST_ARRAYS})


@pytest.mark.parametrize("fname", OPENABLE_FIXTURES)
def test_fast_open_path_equals_cf_decoding_and_dataset_init(fname, monkeypatch):
    # The open fast paths (no CF decoding when nothing is CF-encoded, Dataset
    # built without merge/alignment) must give exactly what xarray's way gives.
    from xarray_om import backend

    calls = []
    real = backend._nothing_to_decode
    monkeypatch.setattr(
        backend, "_nothing_to_decode", lambda *a: calls.append(real(*a)) or real(*a)
    )
    fast = ENGINE().open_groups_as_dict(FIXTURES / fname)
    monkeypatch.undo()
    assert calls and any(calls)  # the fast decode path was taken
    _assert_same_datasets(fast, _open_general_way(monkeypatch, FIXTURES / fname))
    for ds in fast.values():
        ds.close()


def test_fast_open_path_equals_general_with_cf_attributes(tmp_path, monkeypatch):
    path = tmp_path / "cf.om"
    _cf_file(path)
    for kw in (
        {},
        {"mask_and_scale": False},
        {"decode_times": False},
        {"decode_timedelta": True},
        {"decode_coords": "all"},
        {"drop_variables": ["lead"]},
    ):
        _assert_same_datasets(
            ENGINE().open_groups_as_dict(path, **kw), _open_general_way(monkeypatch, path, **kw)
        )
    run = tmp_path / "run" / "temperature_2m.om"
    run.parent.mkdir()
    write_run_file(run, smooth_field((4, 6, 5)), T0 + 3600 * np.arange(5))
    for kw in ({}, {"decode_times": False}, {"spatial_time": "scalar"}):
        _assert_same_datasets(
            ENGINE().open_groups_as_dict(run, **kw), _open_general_way(monkeypatch, run, **kw)
        )


@pytest.mark.parametrize(
    ("attrs", "dtype", "options", "expected"),
    [
        ({"units": "°C", "long_name": "t"}, np.float32, (True, True, True, None, None), True),
        ({}, np.int16, (True, True, True, None, None), True),
        ({}, np.dtype(">f4"), (True, True, True, None, None), False),  # endianness
        ({}, np.bool_, (True, True, True, None, None), False),
        ({}, "S1", (True, True, True, None, None), False),  # character arrays
        ({"_FillValue": -1}, np.int16, (True, True, True, None, None), False),
        ({"missing_value": -1}, np.int16, (False, True, True, None, None), False),
        ({"scale_factor": 0.1}, np.int16, (True, True, True, None, None), False),
        ({"units": "hours"}, np.int32, (True, True, True, None, None), False),
        ({"units": "days since 2000-01-01"}, np.int32, (True, True, True, None, None), False),
        ({"units": 3}, np.int32, (True, True, True, None, None), False),
        ({"coordinates": "x"}, np.float32, (True, True, True, None, None), False),
        ({"grid_mapping": "crs"}, np.float32, (True, True, True, None, None), False),
        ({"bounds": "tb"}, np.float32, (True, True, True, None, None), False),
        ({"dtype": "bool"}, np.int8, (True, True, True, None, None), False),
        ({}, np.float32, (True, True, True, None, True), False),  # use_cftime warns
        ({}, np.float32, ({"a": True}, True, True, None, None), False),  # per-variable
        ({}, np.float32, (True, xr.coders.CFDatetimeCoder(), True, None, None), False),
    ],
)
def test_nothing_to_decode_rules(attrs, dtype, options, expected):
    from xarray_om.backend import _nothing_to_decode

    var = xr.Variable(("x",), np.zeros(3, dtype), attrs)
    assert _nothing_to_decode({"a": var}, {}, options) is expected
    ok = xr.Variable(("x",), np.zeros(3, np.float32))
    assert _nothing_to_decode({"a": ok}, {"coordinates": "a"}, (True,) * 3 + (None, None)) is False


def test_om_scaling_is_not_cf_scaling(tmp_path):
    # OM scale_factor means stored = round(value * 20); exposing it as CF
    # scale_factor would multiply again. Values must equal the reference read.
    data = np.linspace(-5, 5, 60, dtype=np.float32).reshape(6, 10)
    write_bare(tmp_path / "s.om", data, [3, 5], scale=20.0, name="v")
    ref = reference_read(tmp_path / "s.om")
    for mask_and_scale in (True, False):
        with open_om(tmp_path / "s.om", mask_and_scale=mask_and_scale) as ds:
            np.testing.assert_array_equal(ds["v"].values, ref)
            assert "scale_factor" not in ds["v"].attrs
            assert ds["v"].encoding["om_scale_factor"] == 20.0
    np.testing.assert_allclose(ref, data, atol=0.5 / 20 + 1e-6)


def test_om_scaling_semantics_with_offset(tmp_path):
    # Codec spec 2.1 / 2.5 (documented in conventions): stored = round((v + ao) * sf),
    # read back as stored / sf - ao, in float32.
    sf, ao = np.float32(4.0), np.float32(-100.0)
    data = np.linspace(90, 110, 60, dtype=np.float32).reshape(6, 10)
    w = omfiles.OmFileWriter(str(tmp_path / "o.om"))
    root = w.write_array(
        data, chunks=[3, 5], scale_factor=sf, add_offset=ao, compression="pfor_delta_2d_int16"
    )
    w.close(root)
    scaled = (data + ao) * sf
    stored = np.sign(scaled) * np.floor(np.abs(scaled) + np.float32(0.5))
    expected = (stored / sf - ao).astype(np.float32)
    with open_om(tmp_path / "o.om") as ds:
        v = ds[next(iter(ds.data_vars))]
        np.testing.assert_array_equal(v.values, expected)
        assert (v.encoding["om_scale_factor"], v.encoding["om_add_offset"]) == (4.0, -100.0)
    # the CF reading (stored * sf + ao) would be far off
    assert not np.allclose(stored * sf + ao, data, atol=1)


def test_drop_variables(tmp_path, monkeypatch):
    path = tmp_path / "cf.om"
    _cf_file(path)
    reads = []
    orig = OmArray.read
    monkeypatch.setattr(
        OmArray, "read", lambda self, *a, **k: reads.append(self.name) or orig(self, *a, **k)
    )
    with open_om(path, drop_variables=["time", "lead"]) as ds:
        assert set(ds.variables) == {"counts"}
    assert reads == []
    with open_om(path, drop_variables="counts") as ds:
        assert "counts" not in ds.variables and "time" in ds.variables


# --------------------------------------------------------------------------- laziness, chunks


@pytest.fixture
def big_run(tmp_path):
    ny, nx, nt = 12, 40, 48
    data = smooth_field((ny, nx, nt), 7)
    times = T0 + 3600 * np.arange(nt, dtype=np.int64)
    path = tmp_path / "temperature_2m.om"
    write_run_file(path, data, times, chunks=[2, 6, 16])
    return path, reference_read(path)


def test_no_data_read_at_open(big_run, monkeypatch):
    path, _ = big_run
    reads = []
    orig = OmArray.read
    monkeypatch.setattr(
        OmArray, "read", lambda self, *a, **k: reads.append(self.name) or orig(self, *a, **k)
    )
    ds = open_om(path)
    assert reads == ["time"]  # only the small coordinate array
    ds2 = open_om(path, chunks={})
    assert reads == ["time", "time"]
    ds2["temperature_2m"].isel(lat=0, lon=0).load()
    assert reads[2:] == ["", "", ""]  # one read per dask chunk along time (3 OM chunks)
    ds.close()
    ds2.close()


def test_chunks_empty_is_one_dask_chunk_per_om_chunk(big_run):
    path, ref = big_run
    with open_om(path, chunks={}) as ds:
        da = ds["temperature_2m"]
        assert da.chunks == ((2,) * 6, (6,) * 6 + (4,), (16,) * 3)
        assert da.data.npartitions == 6 * 7 * 3
        np.testing.assert_array_equal(da.values, ref)


def test_chunks_auto_and_explicit_are_whole_multiples(big_run):
    path, ref = big_run
    om = (2, 6, 16)
    with dask.config.set({"array.chunk-size": "64KiB"}):
        with open_om(path, chunks="auto") as ds:
            chunks = ds["temperature_2m"].chunks
    assert len(chunks[1]) > 1 or len(chunks[0]) > 1  # really split
    for axis, sizes in enumerate(chunks):
        for s in sizes[:-1]:
            assert s % om[axis] == 0, (axis, sizes)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with open_om(path, chunks={"lat": 4, "lon": 12, "time": 48}) as ds:
            assert ds["temperature_2m"].chunks == ((4,) * 3, (12, 12, 12, 4), (48,))
            np.testing.assert_array_equal(ds["temperature_2m"].values, ref)
    # xarray warns when explicit sizes split OM chunks
    with pytest.warns(UserWarning, match="separate the stored chunks"):
        open_om(path, chunks={"lon": 5}).close()


def test_strided_and_outer_selection(big_run, monkeypatch):
    path, ref = big_run
    ds = open_om(path)
    da = ds["temperature_2m"]
    np.testing.assert_array_equal(da[1:11:3, ::7, 5:40:4].values, ref[1:11:3, ::7, 5:40:4])
    np.testing.assert_array_equal(da[::-2, 3, ::-5].values, ref[::-2, 3, ::-5])
    np.testing.assert_array_equal(da[-1, -1, -1].values, ref[-1, -1, -1])
    keys = []
    orig = OmArray.read
    monkeypatch.setattr(
        OmArray, "read", lambda self, key=..., **k: keys.append(key) or orig(self, key, **k)
    )
    # outer (orthogonal) selection: a point time series set without reading bounding boxes
    got = da.isel(lat=[0, 11], lon=[39, 0]).values
    np.testing.assert_array_equal(got, ref[[0, 11]][:, [39, 0]])
    (key,) = keys
    assert list(key[0]) == [0, 11] and sorted(key[1]) == [0, 39]
    # vectorized (pointwise) selection goes through the outer read as well
    keys.clear()
    pts = da.isel(lat=xr.DataArray([1, 5, 9], dims="p"), lon=xr.DataArray([2, 30, 3], dims="p"))
    np.testing.assert_array_equal(pts.values, ref[[1, 5, 9], [2, 30, 3]])
    assert len(keys) == 1 and not isinstance(keys[0][0], slice) and len(keys[0][0]) == 3
    # same through dask
    with open_om(path, chunks={}) as dds:
        got = dds["temperature_2m"].isel(lat=[3, 1], lon=slice(None, None, 9), time=[0, 47]).values
        np.testing.assert_array_equal(got, ref[[3, 1]][:, ::9][:, :, [0, 47]])
    ds.close()


def test_backend_array_indexing_directly(big_run):
    from xarray.core import indexing

    from xarray_om.format.reader import OmFile

    path, ref = big_run
    arr = OmFile(path).root
    ba = OmBackendArray(arr, leading_axes=1)
    assert ba.shape == (1, *ref.shape)
    got = ba[indexing.OuterIndexer((np.array([0, 0]), slice(2, 5), np.array([3, 1]), 7))]
    np.testing.assert_array_equal(got, ref[None][[0, 0]][:, 2:5][:, :, [3, 1]][..., 7])
    got = ba[indexing.BasicIndexer((0, 1, slice(None), slice(0, 4)))]
    np.testing.assert_array_equal(got, ref[1, :, 0:4])
    # outer keys go to the reader as they are: negative, unsorted, repeated indices
    got = ba[
        indexing.OuterIndexer((0, np.array([-1, 2, 2]), slice(None, None, -3), np.array([5, 1])))
    ]
    np.testing.assert_array_equal(got, ref[[-1, 2, 2]][:, ::-3][:, :, [5, 1]])
    # vectorized keys are decomposed by xarray (outer read + numpy)
    vec = indexing.VectorizedIndexer(
        (np.array([0, 0]), np.array([1, 3]), np.array([2, 0]), slice(4, 6))
    )
    np.testing.assert_array_equal(ba[vec], ref[[1, 3], [2, 0], 4:6])


@pytest.mark.parametrize("mapped", [True, False])
def test_one_fetch_and_one_decode_per_dask_task(big_run, monkeypatch, mapped):
    """One native decode per dask task; with pread, one fetch of its chunks' bytes;
    decoding in place from the file's map, no fetch at all."""
    from xarray_om import _native
    from xarray_om.format import source as source_mod
    from xarray_om.format.source import Source

    monkeypatch.setattr(source_mod, "MMAP_READS", mapped)
    monkeypatch.setattr(source_mod, "MAP_MIN_BYTES", 0)  # map at the first read, however small

    path, ref = big_run
    calls = {"fetch": 0, "decode": 0}
    orig_fetch, orig_decode = Source.read_into, _native.decode_select

    def fetch(self, *a, **k):
        calls["fetch"] += 1
        return orig_fetch(self, *a, **k)

    def decode(*a, **k):
        calls["decode"] += 1
        return orig_decode(*a, **k)

    with open_om(path, chunks={"lat": 6, "lon": 24, "time": 48}) as ds:
        da = ds["temperature_2m"]
        n = da.data.npartitions  # each block covers 3 x 4 x 3 = 36 OM chunks (or fewer at edges)
        assert n == 2 * 2
        monkeypatch.setattr(Source, "read_into", fetch)
        monkeypatch.setattr(_native, "decode_select", decode)
        np.testing.assert_array_equal(da.compute(scheduler="sync").values, ref)
    assert calls == {"fetch": 0 if mapped else n, "decode": n}


@pytest.mark.parametrize("spatial", [False, True])
def test_dask_blocks_are_the_decoded_buffers(tmp_path, monkeypatch, spatial):
    # No copy between the decoder and dask: every block a task returns is the
    # very array OmArray.read decoded into (also with the spatial files' leading
    # length-1 time axis, a view).
    import dask.core
    import dask.threaded

    if spatial:
        path = tmp_path / "s.om"
        field = smooth_field((64, 30), 2)
        write_spatial_file(
            path,
            {"t2m": (field, "C", 20.0)},
            T0,
            crs=REGULAR_WKT.format(lat0=-32, lon0=0, lat1=31, lon1=29),
        )
        name, chunks = "t2m", {"time": 1, "lat": 32, "lon": 30}  # OM chunks 32 x 30
    else:
        path, _ = big_run_file(tmp_path)
        name, chunks = "temperature_2m", {"lat": 6, "lon": 24, "time": 48}
    decoded = set()
    orig = OmArray.read

    def read(self, *a, **k):
        out = orig(self, *a, **k)
        base = out if out.base is None else out.base
        decoded.add(base.__array_interface__["data"][0])
        return out

    with open_om(path, chunks=chunks) as ds:
        arr = ds[name].data
        monkeypatch.setattr(OmArray, "read", read)
        blocks = dask.threaded.get(
            dict(arr.__dask_graph__()), list(dask.core.flatten(arr.__dask_keys__()))
        )
        assert len(blocks) == arr.npartitions > 1
        for b in blocks:
            base = b if b.base is None else b.base
            assert base.__array_interface__["data"][0] in decoded


def big_run_file(tmp_path):
    ny, nx, nt = 12, 40, 48
    path = tmp_path / "temperature_2m.om"
    write_run_file(
        path, smooth_field((ny, nx, nt), 7), T0 + 3600 * np.arange(nt), chunks=[2, 6, 16]
    )
    return path, None


_AXIS_KEY = st.one_of(
    st.integers(-12, 11),
    st.builds(
        slice,
        st.none() | st.integers(-14, 14),
        st.none() | st.integers(-14, 14),
        st.none() | st.integers(-5, 5).filter(lambda v: v != 0),
    ),
    st.lists(st.integers(-12, 11), min_size=1, max_size=5),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(keys=st.tuples(_AXIS_KEY, _AXIS_KEY, _AXIS_KEY), lead=st.booleans())
def test_outer_indexing_matches_numpy(keys, lead, big_run):
    from xarray.core import indexing

    path, ref = big_run
    fixed = []
    for k, n in zip(keys, ref.shape, strict=True):  # sizes 12, 40, 48
        if isinstance(k, int):
            k = k % n
        elif isinstance(k, list):
            k = np.array([v % n - (n if v < 0 else 0) for v in k])  # keep negative indices
        fixed.append(k)
    expected = ref
    axis = 0
    for k in fixed:
        if isinstance(k, int):
            expected = np.take(expected, k, axis=axis)
        else:
            expected = expected[(slice(None),) * axis + (k,)]
            axis += 1
    f = OmFile(path)
    arr = f.root
    ba = OmBackendArray(arr, leading_axes=int(lead))
    key = (0, *fixed) if lead else tuple(fixed)
    has_array = any(isinstance(k, np.ndarray) for k in key)
    indexer = (indexing.OuterIndexer if has_array else indexing.BasicIndexer)(key)
    np.testing.assert_array_equal(ba[indexer], expected)
    f.close()


# --------------------------------------------------------------------------- pickling, closing


def test_dataset_pickles_cheaply(big_run):
    path, ref = big_run
    with open_om(path, chunks={}) as ds:
        blob = pickle.dumps(ds)
        assert len(blob) < 64 * 1024, len(blob)  # graph + node descriptions, no data
        ds2 = pickle.loads(blob)
        np.testing.assert_array_equal(ds2["temperature_2m"].values, ref)
        var = ds["temperature_2m"].variable._data
        assert len(pickle.dumps(var)) < 4096
    with open_om(path) as ds:  # lazy, non-dask
        ba = pickle.loads(pickle.dumps(ds))
        np.testing.assert_array_equal(ba["temperature_2m"][3, 5].values, ref[3, 5])


def _open_fds() -> set[str]:
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            out.add(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return out


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_close_releases_file_handles(big_run):
    path, _ = big_run
    target = os.path.realpath(path)
    ds = open_om(path, chunks={})
    ds["temperature_2m"][0].load()
    assert target in _open_fds()
    ds.close()
    assert target not in _open_fds()
    with open_om(path) as ds:
        assert target in _open_fds()
    assert target not in _open_fds()
    tree = xr.open_datatree(path, engine=ENGINE)
    assert target in _open_fds()
    tree.close()
    assert target not in _open_fds()


# --------------------------------------------------------------------------- groups


def test_datatree_and_groups():
    path = FIXTURES / "hierarchical.om"
    tree = xr.open_datatree(path, engine=ENGINE)
    assert set(tree.groups) == {
        "/",
        "/child_0",
        "/child_0/child_0_0",
        "/child_0/child_0_1",
        "/all_types",
    }
    np.testing.assert_array_equal(
        tree["/child_0/child_0_0/child_0_0_1"].values,
        np.load(FIXTURES / "hierarchical.root.child_0.child_0_0.child_0_0_1.npy"),
    )
    assert tree["/all_types"].attrs["uint64_scalar"] == np.uint64(2**64 - 1)
    assert tree["/child_0/child_0_1"].attrs["child_0_1_0"] == 42.0
    tree.close()
    groups = xr.open_groups(path, engine=ENGINE)
    assert list(groups) == [
        "/",
        "/child_0",
        "/child_0/child_0_0",
        "/child_0/child_0_1",
        "/all_types",
    ]
    with open_om(path, group="/child_0/child_0_1") as ds:
        np.testing.assert_array_equal(
            ds["child_0_1_1"].values,
            np.load(FIXTURES / "hierarchical.root.child_0.child_0_1.child_0_1_1.npy"),
        )
    with pytest.raises(KeyError, match="nope"):
        open_om(path, group="child_0/nope")
    # sub-tree
    sub = xr.open_datatree(path, engine=ENGINE, group="child_0")
    assert set(sub.groups) == {"/", "/child_0_0", "/child_0_1"}


def test_datatree_misaligned_groups_error(tmp_path):
    def build(w):
        top = w.write_array(
            np.arange(3, dtype=np.int32),
            chunks=[3],
            name="x",
            children=[w.write_scalar("x", name="coordinates")],
        )
        inner = w.write_array(
            np.arange(5, dtype=np.int32),
            chunks=[5],
            name="x",
            children=[w.write_scalar("x", name="coordinates")],
        )
        g = w.write_group(name="sub", children=[inner])
        return w.write_group(name="", children=[top, g])

    _write_tree(tmp_path / "m.om", build)
    with pytest.raises(OmConventionError, match="open_groups") as info:
        xr.open_datatree(tmp_path / "m.om", engine=ENGINE)
    assert isinstance(info.value, ValueError)
    assert str(info.value).startswith(f"{tmp_path / 'm.om'}: its groups do not form")
    groups = xr.open_groups(tmp_path / "m.om", engine=ENGINE)
    assert groups["/"].sizes == {"x": 3} and groups["/sub"].sizes == {"x": 5}


# --------------------------------------------------------------------------- many files


def _write_day_files(tmp_path, n=24, ny=8, nx=10, nt=24):
    paths, blocks = [], []
    for i in range(n):
        data = smooth_field((ny, nx, nt), i)
        times = T0 + 3600 * (np.arange(nt, dtype=np.int64) + i * nt)
        p = tmp_path / f"day_{i:02d}" / "temperature_2m.om"
        p.parent.mkdir()
        write_run_file(p, data, times, chunks=[2, 5, nt])
        paths.append(p)
        blocks.append(reference_read(p))
    return paths, np.concatenate(blocks, axis=-1)


def test_open_mfdataset_24_files_parallel(tmp_path):
    paths, expected = _write_day_files(tmp_path)
    rng = np.random.default_rng(0)
    shuffled = [paths[i] for i in rng.permutation(len(paths))]
    with dask.config.set(scheduler="threads"):
        ds = xr.open_mfdataset(shuffled, engine=ENGINE, combine="by_coords", parallel=True)
        da = ds["temperature_2m"]
        assert da.dims == ("lat", "lon", "time") and da.shape == (8, 10, 24 * 24)
        assert ds.indexes["time"].is_monotonic_increasing
        assert da.chunks[2] == (24,) * 24 and da.chunks[0] == (2,) * 4
        np.testing.assert_array_equal(da.values, expected)
        np.testing.assert_array_equal(
            da.isel(time=slice(30, 500, 7)).values, expected[..., 30:500:7]
        )
        ds.close()


# --------------------------------------------------------------------------- sources


def test_file_like_objects(big_run):
    path, ref = big_run
    raw = Path(path).read_bytes()
    with open_om(io.BytesIO(raw)) as ds:
        np.testing.assert_array_equal(ds["data"].values, ref)
    with open(path, "rb") as fh:
        with open_om(fh) as ds:
            assert list(ds.data_vars) == ["temperature_2m"]  # named after fh.name
            np.testing.assert_array_equal(ds["temperature_2m"][2:5].values, ref[2:5])
        assert not fh.closed


def test_s3_remote(s3, big_run):
    path, ref = big_run
    key = "data_run/dwd_icon/2024/01/01/0000Z/temperature_2m.om"
    s3.fs.put(str(path), f"{s3.bucket}/{key}")
    url = s3.url(key)
    assert OmBackendEntrypoint().guess_can_open(url)
    with xr.open_dataset(url, engine=ENGINE, storage_options=s3.storage_options, chunks={}) as ds:
        da = ds["temperature_2m"]
        assert da.encoding["preferred_chunks"] == {"lat": 2, "lon": 6, "time": 16}
        np.testing.assert_array_equal(da.values, ref)
        np.testing.assert_array_equal(
            da.isel(lat=[1, 7], lon=[0, 33]).values, ref[[1, 7]][:, [0, 33]]
        )
        assert ds["time"].values[0] == np.datetime64(T0, "s")


def test_not_an_om_file(tmp_path):
    p = tmp_path / "x.om"
    p.write_bytes(b"this is not an OM file at all, just some bytes" * 3)
    with pytest.raises(OmFormatError, match=r"x\.om"):
        open_om(p)


def test_open_with_our_writer(tmp_path):
    from xarray_om.format.writer import OmWriter

    data = smooth_field((4, 6, 10))
    with OmWriter(tmp_path / "w.om") as w:
        coords = w.write_scalar("lat lon time", name="coordinates")
        unit = w.write_scalar("K", name="unit")
        t = w.write_array(T0 + 3600 * np.arange(10, dtype=np.int64), chunks=(10,), name="time")
        root = w.write_array(data, chunks=(1, 3, 10), name="t2m", children=[coords, unit, t])
        w.close(root)
    with open_om(tmp_path / "w.om") as ds:
        np.testing.assert_array_equal(ds["t2m"].values, data)  # fpx_xor_2d: lossless
        assert ds["t2m"].dims == ("lat", "lon", "time")
        assert ds["t2m"].attrs["units"] == "K"
        assert ds["time"].dtype == "datetime64[ns]"


# --------------------------------------------------------------------------- to_om round trip


def _round_trip_datasets() -> dict[str, xr.Dataset]:
    rng = np.random.default_rng(7)
    times = pd.date_range("2024-03-01", periods=5, freq="h")
    base = {
        "t": (("time", "y", "x"), rng.random((5, 3, 4)).astype("f4"), {"units": "K"}),
        "n": (("y", "x"), rng.integers(0, 9, (3, 4)).astype("i2")),
    }
    coords = {"time": times, "y": [10.0, 20.0, 30.0], "x": np.arange(4, dtype="i4")}
    lists = {
        "ints": np.array([1, -2, 3], "i8"),
        "f4": np.array([1.5, 2.25], "f4"),
        "u1": np.array([7], "u1"),
        "words": ["a", "bc", ""],
        "plain": "text",
    }
    with_lists = xr.Dataset(base, coords=coords, attrs={**lists, "title": "lists"})
    with_lists["t"].attrs.update(lists)
    zero_d = xr.Dataset(
        {
            **base,
            "total": ((), np.float64(12.5), {"units": "mm", "levels": np.array([1.0, 2.0])}),
            "count": ((), np.int32(-3)),
        },
        coords={**coords, "ref_time": ((), np.datetime64("2024-02-29T12:00", "ns"))},
    )
    non_dim = xr.Dataset(
        base,
        coords={
            **coords,
            "lat": (("y", "x"), rng.random((3, 4)), {"standard_name": "latitude"}),
            "station": (("x",), np.array([101, 102, 103, 104], "i8")),
            "level": ((), np.float32(2.0)),
            "other": (("z",), np.array([0.5, 1.5])),  # shares no data variable's dims
        },
    )
    datetimes = xr.Dataset(
        {"v": (("time",), np.arange(5.0)), "valid": (("time",), times + pd.Timedelta("1D"))},
        coords={"time": times, "start": ((), np.datetime64("2024-03-01", "ns"))},
    )
    return {"lists": with_lists, "zero_d": zero_d, "non_dim": non_dim, "datetimes": datetimes}


ROUND_TRIP = _round_trip_datasets()


@pytest.mark.parametrize("name", sorted(ROUND_TRIP))
def test_to_om_round_trip_is_identical(tmp_path, name):
    ds = ROUND_TRIP[name]
    p = tmp_path / f"{name}.om"
    ds.om.to_om(p)
    with xr.open_dataset(p, engine="xarray_om") as back:
        back.load()
        xr.testing.assert_identical(back, ds)
        assert list(back.coords) == list(ds.coords)
        for var in [back, *back.variables.values()]:
            assert "cf_coordinates" not in var.attrs
    # What the reference reader sees is unchanged: every array, every 0-d variable
    # as a root scalar, list attributes as groups.
    r = omfiles.OmFileReader(str(p))
    try:
        kids = {
            r.get_child_by_index(i).name: r.get_child_by_index(i) for i in range(r.num_children)
        }
        for key, var in ds.variables.items():
            node = kids[key]
            expected = var.values
            if expected.dtype.kind == "M":
                expected = expected.astype("datetime64[s]").astype("i8")
            if var.ndim:
                assert node.is_array
                np.testing.assert_array_equal(node[...], expected, strict=True)
            else:
                assert node.is_scalar and node.read_scalar() == expected
        for key in ds.attrs:
            assert key in kids
    finally:
        r.close()
    # ... and so does its xarray backend (0-d variables become global attributes there).
    with xr.open_dataset(p, engine=OmXarrayEntrypoint) as ref:
        for key, var in ds.data_vars.items():
            if var.ndim:
                np.testing.assert_array_equal(ref[key].values, var.values)


def test_to_om_list_attribute_types(tmp_path):
    ds = ROUND_TRIP["lists"]
    p = tmp_path / "l.om"
    ds.om.to_om(p)
    with open_om(p) as back:
        for attrs in (back.attrs, back["t"].attrs):
            assert isinstance(attrs["words"], list) and attrs["words"] == ["a", "bc", ""]
            for key in ("ints", "f4", "u1"):
                assert isinstance(attrs[key], np.ndarray)
                np.testing.assert_array_equal(attrs[key], ds.attrs[key], strict=True)
    # Python lists of numbers come back as arrays (like netCDF); no group in the tree.
    ds2 = xr.Dataset({"v": (("x",), [1.0, 2.0], {"l": [1, 2]})}, attrs={"g": [0.5]})
    ds2.om.to_om(p)
    with open_om(p) as back:
        np.testing.assert_array_equal(back["v"].attrs["l"], np.array([1, 2]), strict=True)
        np.testing.assert_array_equal(back.attrs["g"], np.array([0.5]), strict=True)
    tree = xr.open_datatree(p, engine=ENGINE)
    assert set(tree.groups) == {"/"}
    tree.close()


def test_to_om_coordinates_decode_options(tmp_path):
    ds = ROUND_TRIP["non_dim"]
    p = tmp_path / "c.om"
    ds.om.to_om(p)
    with open_om(p, decode_coords=False) as back:
        # (2-D lat/lon arrays are always coordinates)
        assert set(back.coords) == {"time", "y", "x", "lat"}
        assert set(back["t"].attrs["coordinates"].split()) == {"lat", "station", "level"}
        assert back.attrs["coordinates"] == "other"
    with open_om(p) as back:
        assert "coordinates" not in back["t"].attrs and "coordinates" not in back.attrs
        assert set(back["t"].encoding["coordinates"].split()) == {"lat", "station", "level"}


def test_to_om_zero_d_variables_in_groups_and_views(tmp_path):
    from xarray_om.zarr import OmStore

    ds = ROUND_TRIP["zero_d"]
    p = tmp_path / "z.om"
    ds.om.to_om(p)
    with open_om(p, drop_variables=["count"]) as back:
        assert "count" not in back and back["total"].attrs["units"] == "mm"
    with open_om(p, decode_times=False) as back:
        assert back["ref_time"].dtype == np.int64
        assert back["ref_time"].attrs["units"] == "seconds since 1970-01-01"
    # The Zarr view presents the same variables and attributes.
    with xr.open_zarr(OmStore(p), consolidated=True) as view, open_om(p) as back:
        xr.testing.assert_identical(view.load(), back.load())


def test_zero_d_variable_chunk_reference_is_the_scalar_value(tmp_path):
    from xarray_om.zarr import om_manifest

    p = tmp_path / "z.om"
    ROUND_TRIP["zero_d"].om.to_om(p)
    ref = om_manifest(p)["arrays"]["total"]["manifest"]["c"]
    raw = p.read_bytes()[ref["offset"] : ref["offset"] + ref["length"]]
    assert raw == np.float64(12.5).tobytes()


def test_describe_groups_reads_no_data(big_run, monkeypatch):
    from xarray_om.backend import describe_groups

    def no_read(self, *a, **k):
        raise AssertionError("data read while describing")

    monkeypatch.setattr(OmArray, "read", no_read)
    with OmFile(big_run[0]) as f:
        (g,) = describe_groups(f)
        assert g.path == "/" and g.problem is None
        assert set(g.variables) == {"temperature_2m", "time", "forecast_reference_time"}
        assert g.coord_names == {"forecast_reference_time"}
        v = g.variables["temperature_2m"]
        assert v.dims == ("lat", "lon", "time") and v.node.kind == "array" and v.values is None
        assert v.encoding["preferred_chunks"] == dict(zip(v.dims, v.node.chunks, strict=True))
        t = g.variables["time"]
        assert t.unix_time and t.attrs["units"] == conv.UNIX_TIME_UNITS
        frt = g.variables["forecast_reference_time"]
        assert frt.node.kind == "scalar" and frt.values == frt.node.value == T0


def test_describe_groups_naming_modes(tmp_path):
    from xarray_om.backend import describe_groups
    from xarray_om.format.writer import OmWriter

    p = tmp_path / "conflict.om"
    with OmWriter(p) as w:
        dims = [w.write_scalar("x", name="coordinates") for _ in range(2)]
        a = w.write_array(np.arange(3, dtype="i4"), chunks=(3,), name="a", children=[dims[0]])
        b = w.write_array(np.arange(4, dtype="i4"), chunks=(4,), name="b", children=[dims[1]])
        ok = w.write_array(np.arange(2, dtype="i4"), chunks=(2,), name="c")
        sub = w.write_group(name="sub", children=[ok])
        w.close(w.write_group(name="", children=[a, b, sub, w.write_scalar("t", name="title")]))
    with OmFile(p) as f:
        with pytest.raises(ValueError, match="dimension 'x' has length 3"):
            describe_groups(f)
        auto = describe_groups(f, naming="auto")
        assert [g.path for g in auto] == ["/", "/sub"]
        assert "has length 3" in auto[0].problem and auto[1].problem is None
        assert {n: v.dims for n, v in auto[0].variables.items()} == {"a": ("x",), "b": ("x",)}
        assert auto[0].attrs == {"title": "t"}
        plain = describe_groups(f, naming="conventions", drop_variables="b")
        assert list(plain[0].variables) == ["a"] and plain[0].problem is None
        (only,) = describe_groups(f, group="sub", recursive=False)
        assert only.path == "/" and only.variables["c"].dims == ("dim_0",)
        with pytest.raises(ValueError, match="naming"):
            describe_groups(f, naming="nope")


def test_list_attributes_and_scalar_variables_conventions(tmp_path):
    from xarray_om.format.writer import OmWriter

    p = tmp_path / "conv.om"
    with OmWriter(p) as w:

        def group(name, items):
            return w.write_group(name=name, children=[w.write_scalar(v, name=k) for k, v in items])

        kids = [
            group("ok", [("0", np.int16(4)), ("1", np.int16(5))]),
            group("mixed", [("0", "a"), ("1", np.int16(5))]),
            group("gap", [("0", np.int16(4)), ("2", np.int16(5))]),
            w.write_group(name="empty", children=[]),
            w.write_scalar(np.float32(1), name="var0"),
            w.write_scalar(
                np.float32(2), name="zero_d", children=[w.write_scalar("", name="coordinates")]
            ),
            w.write_scalar(
                np.float32(3), name="named", children=[w.write_scalar("x", name="coordinates")]
            ),
            w.write_scalar("s", name="text", children=[w.write_scalar("", name="coordinates")]),
            w.write_scalar("lat lon", name="cf_coordinates"),
        ]
        w.close(w.write_group(name="", children=kids))
    with OmFile(p) as f:
        nodes = {c.name: c for c in f.root.children}
        got = conv.list_attribute(nodes["ok"])
        np.testing.assert_array_equal(got, np.array([4, 5], "i2"), strict=True)
        for name in ("mixed", "gap", "empty", "var0", "zero_d"):
            assert conv.list_attribute(nodes[name]) is None
        assert conv.is_scalar_variable(nodes["zero_d"])
        for name in ("var0", "named", "text", "ok"):
            assert not conv.is_scalar_variable(nodes[name])
        attrs = conv.variable_attrs(f.root)
        assert set(attrs) == {"ok", "var0", "named", "text", "coordinates"}
        assert attrs["coordinates"] == "lat lon"
        # a scalar's own children are its attributes
        assert conv.variable_attrs(nodes["named"]) == {}
    tree = xr.open_datatree(p, engine=ENGINE)
    assert set(tree.groups) == {"/", "/mixed", "/gap", "/empty"}
    assert tree.ds["zero_d"].dims == () and tree.ds["zero_d"].dtype == np.float32
    tree.close()


# --------------------------------------------------------------------------- conventions


def test_conventions_root_array_name():
    f = conv.root_array_name
    assert f("/x/data_run/icon/2024/01/01/0000Z/temperature_2m.om") == "temperature_2m"
    assert f("s3://openmeteo/data/dwd_icon/temperature_2m/chunk_1234.om") == "temperature_2m"
    assert f("/d/era5/precipitation/year_2020.om") == "precipitation"
    assert f("/d/era5/precipitation/master_0.om") == "precipitation"
    assert f("/d/ens/t2m_member01/rolling.om") == "t2m_member01"
    assert f("https://h/data/m/v/linear_bias_seasonal.om?x=1") == "v"
    assert f("chunk_3.om") == "data"
    assert f(None) == "data" and f("<bytes>") == "data"
    assert f("C:\\x\\HSURF.om") == "HSURF"


def test_conventions_regular_grid():
    wkt = REGULAR_WKT.format(lat0=43.18, lon0=-3.94, lat1=58.08, lon1=20.339998)
    lat, lon = conv.regular_grid_coordinates(wkt, 746, 1215)
    assert lat[0] == 43.18 and lat[-1] == 58.08 and lat.size == 746
    assert lon[-1] == 20.34 and lon[1] == -3.92
    np.testing.assert_allclose(np.diff(lon), 0.02, atol=1e-9)
    # dwd_icon global
    lat, lon = conv.regular_grid_coordinates(
        REGULAR_WKT.format(lat0=-90, lon0=-180, lat1=90, lon1=179.75), 1441, 2879
    )
    assert lat[720] == 0.0 and lon[-1] == 179.75 and np.all(np.diff(lon) == 0.125)
    # descending (cams_europe)
    lat, _ = conv.regular_grid_coordinates(
        REGULAR_WKT.format(lat0=71.95, lon0=-25, lat1=30.049995, lon1=44.95), 420, 700
    )
    assert lat[0] == 71.95 and lat[-1] == 30.05 and np.all(np.diff(lat) < 0)
    # 1/30 degree step: no false snapping
    lat, _ = conv.regular_grid_coordinates(
        REGULAR_WKT.format(lat0=0, lon0=0, lat1=100 / 30, lon1=1), 101, 2
    )
    np.testing.assert_allclose(lat, np.arange(101) / 30, atol=2e-6)
    rotated = (
        'GEOGCRS["Rotated Lat/Lon",BASEGEOGCRS["WGS 84"],DERIVINGCONVERSION["x"],BBOX[1,2,3,4]]'
    )
    assert conv.regular_grid_bbox(rotated) is None
    assert conv.regular_grid_bbox('PROJCRS["LCC",BBOX[1,2,3,4]]') is None
    gauss = 'GEOGCRS["Reduced Gaussian Grid",REMARK["O1280"],BBOX[-90,-180,90,180]]'
    assert conv.regular_grid_bbox(gauss) is None
    assert conv.regular_grid_bbox('GEOGCRS["WGS 84"]') is None
    assert conv.regular_grid_bbox(None) is None


def test_conventions_time_helpers():
    secs = np.array([T0, T0 + 3600], np.int64)
    dt = conv.unix_seconds_to_datetime64(secs)
    assert dt.dtype == "datetime64[ns]"
    np.testing.assert_array_equal(conv.datetime64_to_unix_seconds(dt), secs)
    with pytest.raises(ValueError, match="sub-second"):
        conv.datetime64_to_unix_seconds(dt + np.timedelta64(1, "ms"))
    with pytest.raises(TypeError):
        conv.datetime64_to_unix_seconds(secs)
    axis = conv.rolling_time_axis({"time_start": np.int64(10), "dt_seconds": np.int64(5)}, 4)
    assert axis.tolist() == [10, 15, 20, 25]
    assert conv.rolling_time_axis({"time_start": 10, "dt_seconds": 5, "time_end": 99}, 4) is None
    assert conv.rolling_time_axis({"time_start": "x", "dt_seconds": 5}, 4) is None


def test_conventions_dimension_strings():
    assert conv.parse_dimension_string(" lat  lon\ttime ") == ("lat", "lon", "time")
    assert conv.parse_dimension_string("a, b", separator=",") == ("a", "b")
    assert conv.parse_dimension_string("a,,b", separator=",") is None
    assert conv.parse_dimension_string("") is None
    assert conv.parse_dimension_string(np.int64(3)) is None
    assert conv.default_dimension_names(3, conv.Layout.TIMESERIES) == ("lat", "lon", "time")
    assert conv.default_dimension_names(2, conv.Layout.LEGACY) == ("location", "time")
    assert conv.default_dimension_names(2) == ("dim_0", "dim_1")


def test_conventions_layout_detection():
    from xarray_om.format.reader import OmFile

    def layout(name, src=None):
        f = OmFile(FIXTURES / name)
        return conv.detect_layout(f.root, version=f.version, source_name=src or name)

    assert layout("openmeteo_spatial.om") == conv.Layout.SPATIAL
    assert layout("openmeteo_run.om") == conv.Layout.RUN
    assert layout("openmeteo_timeseries_chunk.om") == conv.Layout.TIMESERIES
    assert layout("legacy_v1.om") == conv.Layout.LEGACY
    assert layout("hierarchy.om") == conv.Layout.GENERIC
    assert layout("shape_3d.om") == conv.Layout.GENERIC
    assert layout("shape_3d.om", "/x/v/chunk_7.om") == conv.Layout.TIMESERIES


def test_conventions_attrs_and_encoding():
    from xarray_om.format.reader import OmFile

    f = OmFile(FIXTURES / "hierarchy.om")
    t = f["temperature_2m"]
    attrs = conv.variable_attrs(t)
    assert attrs == {
        "unit": "°C",
        "units": "°C",
        "long_name": "Temperature 2 metres above ground",
        "height": np.int32(2),
    }
    enc = conv.encoding_for(t, ("lat", "lon", "time"))
    assert enc == {
        "chunks": (2, 3, 24),
        "compression": "pfor_delta_2d_int16",
        "om_scale_factor": 20.0,
        "om_add_offset": 0.0,
        "preferred_chunks": {"lat": 2, "lon": 3, "time": 24},
    }
    assert set(enc) == set(conv.OM_ENCODING_KEYS)
    dims, rule = conv.dimension_names(t)
    assert (dims, rule) == (("lat", "lon", "time"), "coordinates")
    dims, rule = conv.dimension_names(f["lat"], known_dims={"lat"})
    assert (dims, rule) == (("lat",), "coordinate variable")
    with pytest.raises(ValueError, match="3 dimensions"):
        conv.dimension_names(t, override=("a", "b"))
