"""open_openmeteo: Open-Meteo bucket layouts as one Dataset (xarray_om.openmeteo, xarray_om.grids).

Miniature buckets with Open-Meteo's paths, meta.json files and file anatomy
(openmeteo-data.md) are written with this package's OmWriter; legacy v1/v2
chunk files come from the shared fixtures and from a small legacy writer
below (v3-encoded chunks re-wrapped in the legacy header + LUT, container
spec 9). Expected values are what OmFile reads from each single file (our
reader is checked against the reference elsewhere) or the fixtures' .npy.
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import pickle
import shutil
import struct
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import xarray_om
from xarray_om import OmFile, OmWriter, grids
from xarray_om.errors import OmFormatError
from xarray_om.openmeteo import open_openmeteo

HOUR = 3600


# --------------------------------------------------------------------------- WKT strings


def regular_wkt(lat0: float, lon0: float, lat1: float, lon1: float) -> str:
    # Open-Meteo's exact text, including the missing comma before USAGE.
    return (
        'GEOGCRS["WGS 84",\n    DATUM["World Geodetic System 1984",\n'
        '        ELLIPSOID["WGS 84",6378137,298.257223563]],\n    CS[ellipsoidal,2],\n'
        '        AXIS["latitude",north],\n        AXIS["longitude",east],\n'
        '        ANGLEUNIT["degree",0.0174532925199433]\n    USAGE[\n        SCOPE["grid"],\n'
        f"        BBOX[{lat0},{lon0},{lat1},{lon1}]]]"
    )


HRDPS_WKT = (
    'GEOGCRS["Rotated Lat/Lon",BASEGEOGCRS["GCS_Sphere",DATUM["D_Sphere",'
    'ELLIPSOID["Sphere",6371229.0,0.0]]],DERIVINGCONVERSION["Rotated Lat/Lon",'
    'METHOD["PROJ ob_tran o_proj=longlat"],PARAMETER["o_lon_p",0],PARAMETER["o_lat_p",36.0885],'
    'PARAMETER["lon_0",245.305]]CS[ellipsoidal,2],AXIS["latitude",north],'
    'AXIS["longitude",east],ANGLEUNIT["degree",0.0174532925199433],'
    'USAGE[SCOPE["grid"],BBOX[39.626034,-133.62952,47.87646,-40.708527]]]'
)
DMI_WKT = """PROJCRS["Lambert Conic Conformal",
    BASEGEOGCRS["GCS_Sphere",
        DATUM["D_Sphere",
            ELLIPSOID["Sphere",6371229.0,0.0]]],
    CONVERSION["Lambert Conic Conformal",
        METHOD["Lambert Conic Conformal (2SP)"],
        PARAMETER["Latitude of 1st standard parallel",55.5],
        PARAMETER["Latitude of 2nd standard parallel",55.5],
        PARAMETER["Latitude of false origin",55.5],
        PARAMETER["Longitude of false origin",352.0]],
    CS[Cartesian,2],
        AXIS["easting",east],
        AXIS["northing",north],
        LENGTHUNIT["metre",1],
    USAGE[
        SCOPE["grid"],
        BBOX[39.670998,-25.421997,62.667618,40.069855]]]"""
GEM_REGIONAL_WKT = """PROJCRS["Stereographic",
    BASEGEOGCRS["GCS_Sphere",
        DATUM["D_Sphere",
            ELLIPSOID["Sphere",6371229.0,0.0]]],
    CONVERSION["Stereographic",
        METHOD["Stereographic"],
        PARAMETER["Latitude of natural origin", 90.0],
        PARAMETER["Longitude of natural origin", 249.0],
        PARAMETER["Scale factor at natural origin", 1.0],
        PARAMETER["False easting", 0.0],
        PARAMETER["False northing", 0.0]],
    CS[Cartesian,2],
        AXIS["easting",east],
        AXIS["northing",north],
        LENGTHUNIT["metre",1.0],
    USAGE[
        SCOPE["grid"],
        BBOX[18.145027,-142.89252,45.40545,-10.174438]]]"""
UKV_WKT = """PROJCRS["Lambert Azimuthal Equal-Area",
    BASEGEOGCRS["GCS_Sphere",
        DATUM["D_Sphere",
            ELLIPSOID["Sphere",6371229.0,0.0]]],
    CONVERSION["Lambert Azimuthal Equal-Area",
        METHOD["Lambert Azimuthal Equal-Area"],
        PARAMETER["Latitude of natural origin", 54.9],
        PARAMETER["Longitude of natural origin", -2.5],
        PARAMETER["False easting", 0.0],
        PARAMETER["False northing", 0.0]],
    CS[Cartesian,2],
        AXIS["easting",east],
        AXIS["northing",north],
        LENGTHUNIT["metre",1.0],
    USAGE[
        SCOPE["grid"],
        BBOX[44.508755,-17.152863,61.92511,15.352753]]]"""
GAUSSIAN_WKT = """GEOGCRS["Reduced Gaussian Grid",
    DATUM["World Geodetic System 1984",
        ELLIPSOID["WGS 84",6378137,298.257223563]],
    CS[ellipsoidal,2],
        AXIS["latitude",north],
        AXIS["longitude",east],
        ANGLEUNIT["degree",0.0174532925199433],
    REMARK["Reduced Gaussian Grid O1280 (ECMWF)"],
    USAGE[
        SCOPE["grid"],
        BBOX[-90,-180.0,90,180]]]"""

# (wkt, ny, nx, grid step in the CRS's own units): published model resolutions.
PROJECTED_DOMAINS = {
    "cmc_gem_hrdps": (HRDPS_WKT, 1290, 2540, 0.0225),
    "dmi_harmonie_arome_europe": (DMI_WKT, 1606, 1906, 2000.0),
    "ukmo_uk_deterministic_2km": (UKV_WKT, 970, 1042, 2000.0),
    "cmc_gem_rdps": (GEM_REGIONAL_WKT, 824, 935, None),
}


# --------------------------------------------------------------------------- file writers


def write_v3(path: Path, data: np.ndarray, chunks, *, children_fn=None, **kw) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with OmWriter(str(path)) as w:
        kids = children_fn(w) if children_fn else ()
        w.close(w.write_array(data, chunks=chunks, children=kids, **kw))


_LEGACY_COMPRESSION = {
    "pfor_delta_2d_int16": 0,
    "fpx_xor_2d": 1,
    "pfor_delta_2d_int16_logarithmic": 3,
}


def write_legacy(
    path: Path,
    data2d: np.ndarray,
    chunks: tuple[int, int],
    *,
    version: int = 2,
    compression: str = "pfor_delta_2d_int16",
    scale_factor: float = 20.0,
) -> None:
    """A legacy v1/v2 file (container spec 9): v3-encoded chunks under a legacy header + LUT."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".v3tmp")
    sf = None if compression == "fpx_xor_2d" else scale_factor
    write_v3(tmp, data2d.astype(np.float32), chunks, compression=compression, scale_factor=sf)
    with OmFile(str(tmp)) as f:
        arr = f.root
        starts, stops = arr.chunk_ranges(np.arange(arr.n_chunks))
    raw = tmp.read_bytes()
    tmp.unlink()
    assert np.array_equal(starts[1:], stops[:-1])  # the writer stores chunks back to back
    payload = raw[int(starts[0]) : int(stops[-1])]
    ends = (stops - starts[0]).astype("<u8")
    header = struct.pack(
        "<BBBBfQQQQ",
        0x4F,
        0x4D,
        version,
        _LEGACY_COMPRESSION[compression],
        1.0 if sf is None else sf,
        *data2d.shape,
        *chunks,
    )
    path.write_bytes(header + ends.tobytes() + payload + bytes(128))


def read_back(path: Path) -> np.ndarray:
    with OmFile(str(path)) as f:
        return f.root[...]


def write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, sort_keys=True))


def om_chunks(ny: int, nx: int, t: int) -> tuple[int, int, int]:
    """Open-Meteo's data/ chunking: [1, max(6, 3072 / T), T] (clipped to nx)."""
    return (1, min(nx, max(6, 3072 // t)), t)


# --------------------------------------------------------------------------- counting filesystem


class CountingFS:
    """Delegates to an fsspec filesystem and records every call that moves bytes."""

    def __init__(self, fs) -> None:
        self.fs = fs
        self.calls: list[tuple] = []
        self.lock = threading.Lock()

    def __getattr__(self, name):
        if name in ("fs", "calls", "lock") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.fs, name)

    def __getstate__(self):
        return {"fs": self.fs, "calls": [], "lock": None}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.lock = threading.Lock()

    def _log(self, *entry) -> None:
        with self.lock:
            self.calls.append(entry)

    def cat_file(self, path, start=None, end=None, **kw):
        self._log("range", str(path), start, end)
        return self.fs.cat_file(path, start=start, end=end, **kw)

    def cat_ranges(self, paths, starts, ends, **kw):
        for p, s, e in zip(paths, starts, ends, strict=True):
            self._log("range", str(p), s, e)
        return self.fs.cat_ranges(paths, starts, ends, **kw)

    def cat(self, path, *a, **kw):
        self._log("cat", str(path), None, None)
        return self.fs.cat(path, *a, **kw)

    def open(self, path, *a, **kw):
        self._log("open", str(path), None, None)
        return self.fs.open(path, *a, **kw)

    def ls(self, path, *a, **kw):
        self._log("ls", str(path), None, None)
        return self.fs.ls(path, *a, **kw)

    def size(self, path):
        self._log("size", str(path), None, None)
        return self.fs.size(path)

    def reset(self) -> list[tuple]:
        with self.lock:
            out, self.calls = self.calls, []
        return out


def files_read(calls) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for kind, path, s, e in calls:
        if kind in ("range", "cat", "open"):
            out.setdefault(os.path.basename(path), []).append((s, e))
    return out


# --------------------------------------------------------------------------- bucket builders


def build_data_model(
    root: Path,
    model: str,
    var: str,
    *,
    ny: int,
    nx: int,
    ntime: int,
    dt: int,
    chunk_ns,
    wkt: str | None,
    seed: int = 0,
    nan_tail: int = 0,
    members: int | None = None,
    meta_extra: dict | None = None,
    write_meta: bool = True,
) -> dict[int, np.ndarray]:
    """v3 chunk files ``[ny, nx, (members,) T]``; returns {N: values as read back}."""
    rng = np.random.default_rng(seed)
    if write_meta:
        meta = {
            "temporal_resolution_seconds": dt,
            "chunk_time_length": ntime,
            "last_run_initialisation_time": 1704067200,
            "update_interval_seconds": 10800,
            "data_end_time": 1704067200 + 86400,
        }
        if wkt is not None:
            meta["crs_wkt"] = wkt
        meta.update(meta_extra or {})
        write_json(root / "data" / model / "static" / "meta.json", meta)
    out = {}
    newest = max(chunk_ns)
    for n in chunk_ns:
        shape = (ny, nx, ntime) if members is None else (ny, nx, members, ntime)
        a = (rng.standard_normal(shape) * 5 + 10).astype(np.float32)
        if n == newest and nan_tail:
            a[..., ntime - nan_tail :] = np.nan  # not yet written future steps
        ch = om_chunks(ny, nx, ntime)
        chunks = ch if members is None else (1, ch[1], 1, ntime)
        path = root / "data" / model / var / f"chunk_{n}.om"
        write_v3(path, a, chunks)
        out[n] = read_back(path)
    return out


def expected_series(files: dict[int, np.ndarray], ns, ntime: int, spatial) -> np.ndarray:
    """(time, y, x[, m]) for chunk indices ``ns`` (missing files are NaN)."""
    parts = []
    for n in ns:
        if n in files:
            parts.append(np.moveaxis(files[n], -1, 0))
        else:
            parts.append(np.full((ntime, *spatial), np.nan, np.float32))
    return np.concatenate(parts)


# --------------------------------------------------------------------------- grids: WKT


def test_parse_wkt_tolerates_open_meteo_syntax_and_round_trips():
    tree = grids.parse_wkt(regular_wkt(-90.0, -180.0, 90.0, 179.75))
    assert tree.keyword == "GEOGCRS" and tree.name == "WGS 84"
    assert tree.find("BBOX").args == [-90.0, -180.0, 90.0, 179.75]
    assert tree.find("ELLIPSOID").args == ["WGS 84", 6378137.0, 298.257223563]
    text = grids.format_wkt(tree)
    assert "]," in text and "]USAGE" not in text  # the missing comma is restored
    assert grids.parse_wkt(text) == tree
    for wkt in (HRDPS_WKT, DMI_WKT, GEM_REGIONAL_WKT, UKV_WKT, GAUSSIAN_WKT):
        t = grids.parse_wkt(wkt)
        assert grids.parse_wkt(grids.format_wkt(t)) == t


@pytest.mark.parametrize(
    "bad", ["", "GEOGCRS", "GEOGCRS[", 'GEOGCRS["a"]]', "[1,2]", 'X["unterminated]', "A[" * 100]
)
def test_parse_wkt_rejects_garbage_with_valueerror(bad):
    with pytest.raises(ValueError):
        grids.parse_wkt(bad)
    # Grid building never fails on a bad WKT: plain y/x without coordinates.
    g = grids.grid_coordinates(bad, 3, 4)
    assert g.kind == "unknown" and g.dims == ("y", "x") and g.coords == {}


_names = st.text(alphabet='abcXYZ "_-/ ', max_size=8)


def _trees():
    from xarray_om.grids import WktNode, _Word

    leaf = st.one_of(
        _names,
        st.floats(allow_nan=False, allow_infinity=False, width=32).map(float),
        st.sampled_from(["north", "east", "Cartesian"]).map(_Word),
    )
    kw = st.sampled_from(["GEOGCRS", "BBOX", "PARAMETER", "USAGE", "ID"])
    return st.recursive(
        st.builds(WktNode, kw, st.lists(leaf, max_size=4)),
        lambda kids: st.builds(WktNode, kw, st.lists(st.one_of(leaf, kids), max_size=4)),
        max_leaves=12,
    )


@settings(max_examples=150, deadline=None)
@given(_trees())
def test_format_then_parse_is_identity(tree):
    assert grids.parse_wkt(grids.format_wkt(tree)) == tree


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet='GEOCRS[](),"0123456789.-e abc', max_size=60))
def test_parse_wkt_random_text_only_raises_valueerror(text):
    try:
        grids.parse_wkt(text)
    except ValueError:
        pass


# --------------------------------------------------------------------------- grids: coordinates


def test_regular_grid_coordinates_from_bbox_first_and_last_point():
    g = grids.grid_coordinates(regular_wkt(43.18, -3.94, 58.08, 20.339998), 746, 1215)
    lat = g.coords["latitude"][1]
    lon = g.coords["longitude"][1]
    assert g.kind == "regular" and g.dims == ("latitude", "longitude")
    assert lat[0] == 43.18 and lat[-1] == 58.08 and lon[0] == -3.94
    np.testing.assert_allclose(np.diff(lon), 0.02, atol=1e-9)  # float32 print noise snapped
    assert lon[-1] == pytest.approx(20.34, abs=1e-9)
    assert g.grid_mapping[1]["grid_mapping_name"] == "latitude_longitude"
    # cams_europe: descending latitudes
    g = grids.grid_coordinates(regular_wkt(71.95, -24.95, 30.049995, 44.95), 420, 700)
    lat = g.coords["latitude"][1]
    assert lat[0] == 71.95 and lat[-1] == pytest.approx(30.05) and np.all(np.diff(lat) < 0)
    np.testing.assert_allclose(np.diff(lat), -0.1, atol=1e-9)


@pytest.mark.parametrize("domain", sorted(PROJECTED_DOMAINS))
def test_projected_grids_without_pyproj(domain, monkeypatch):
    """No pyproj: 1-D x/y (or rlat/rlon) from our own spherical formulas + a CF grid mapping."""
    monkeypatch.setattr(grids, "pyproj_module", lambda: None)
    wkt, ny, nx, step = PROJECTED_DOMAINS[domain]
    g = grids.grid_coordinates(wkt, ny, nx)
    assert "latitude" not in g.coords and "longitude" not in g.coords
    ydim, xdim = g.dims
    y, x = g.coords[ydim][1], g.coords[xdim][1]
    assert y.shape == (ny,) and x.shape == (nx,)
    dy, dx = np.diff(y), np.diff(x)
    # Square cells of the model's published resolution: only true if the BBOX is read as
    # the first/last grid point and the projection formulas are right.
    assert dy.min() == pytest.approx(dx.max(), rel=2e-4)
    if step is not None:
        assert dx[0] == pytest.approx(step, rel=2e-4)
    name, attrs = g.grid_mapping
    assert name == "crs"
    assert grids.parse_wkt(attrs["crs_wkt"]) == grids.parse_wkt(wkt)
    assert attrs["earth_radius"] == 6371229.0
    expected = {
        "cmc_gem_hrdps": "rotated_latitude_longitude",
        "dmi_harmonie_arome_europe": "lambert_conformal_conic",
        "ukmo_uk_deterministic_2km": "lambert_azimuthal_equal_area",
        "cmc_gem_rdps": "polar_stereographic",
    }[domain]
    assert attrs["grid_mapping_name"] == expected
    with pytest.raises(ImportError, match="pyproj"):
        grids.grid_coordinates(wkt, ny, nx, use_pyproj=True)


def test_incomplete_wkt_gives_no_partial_cf_mapping():
    # Without the origin latitude the CF mapping cannot be complete: keep only crs_wkt.
    wkt = UKV_WKT.replace('        PARAMETER["Latitude of natural origin", 54.9],\n', "")
    assert wkt != UKV_WKT
    g = grids.grid_coordinates(wkt, 100, 100, use_pyproj=False)
    name, attrs = g.grid_mapping
    assert name == "crs"
    assert attrs == {"crs_wkt": attrs["crs_wkt"], "earth_radius": 6371229.0}
    assert grids.parse_wkt(attrs["crs_wkt"]) == grids.parse_wkt(wkt)
    assert g.notes == ["no x/y coordinates: 'latitude of natural origin'"]


def test_rotated_pole_cf_parameters():
    attrs = grids.grid_coordinates(HRDPS_WKT, 1290, 2540, use_pyproj=False).grid_mapping[1]
    # PROJ ob_tran lon_0 = 180 + grid_north_pole_longitude
    assert attrs["grid_north_pole_latitude"] == 36.0885
    assert attrs["grid_north_pole_longitude"] == pytest.approx(65.305)
    # The centre of the rotated grid lies near rotated (0, 0) -> geographic (lat ~54, lon_0).
    rlon, rlat = grids.project(HRDPS_WKT, 90 - 36.0885, 245.305)
    assert float(rlat) == pytest.approx(0.0, abs=1e-9) and float(rlon) == pytest.approx(
        0.0, abs=1e-9
    )


def test_gaussian_and_unknown_grids_have_plain_dims():
    g = grids.grid_coordinates(GAUSSIAN_WKT, 1, 6599680)
    assert g.kind == "gaussian" and g.dims == ("y", "x") and g.coords == {}
    assert g.notes and "Gaussian" in g.notes[0]
    assert g.grid_mapping[0] == "crs"
    g = grids.grid_coordinates(None, 2, 3)
    assert g.dims == ("y", "x") and g.grid_mapping is None


@pytest.mark.parametrize(
    "wkt,n,expected",
    [
        (regular_wkt(-90, -180, 90, 179.75), 721 * 1440, (721, 1440)),  # ecmwf_ifs025 legacy
        (regular_wkt(-90, -180, 90, 179.75), 1441 * 2879, (1441, 2879)),  # dwd_icon
        (regular_wkt(43.18, -3.94, 58.08, 20.339998), 746 * 1215, (746, 1215)),  # icon-d2
        (regular_wkt(50, 10, 51, 13), 21, (3, 7)),
        (regular_wkt(50, 10, 51, 13), 22, None),
        (HRDPS_WKT, 100, None),
    ],
)
def test_infer_regular_shape(wkt, n, expected):
    assert grids.infer_regular_shape(wkt, n) == expected


def test_projected_grids_with_pyproj():
    pyproj = pytest.importorskip(
        "pyproj", reason="pyproj is an optional extra (2-D lat/lon of projected grids)"
    )
    for domain, (wkt, ny, nx, _) in PROJECTED_DOMAINS.items():
        g = grids.grid_coordinates(wkt, ny, nx)
        ydim, xdim = g.dims
        lat, lon = g.coords["latitude"][1], g.coords["longitude"][1]
        assert g.coords["latitude"][0] == (ydim, xdim) and lat.shape == (ny, nx)
        bbox = grids.parse_wkt(wkt).find("BBOX").args
        # The corners come back to the BBOX points: our forward formulas match PROJ's inverse.
        assert lat[0, 0] == pytest.approx(bbox[0], abs=1e-5), domain
        assert lon[0, 0] == pytest.approx(bbox[1], abs=1e-5), domain
        assert lat[-1, -1] == pytest.approx(bbox[2], abs=1e-5), domain
        assert lon[-1, -1] == pytest.approx(bbox[3], abs=1e-5), domain
        # And PROJ's forward transform agrees with ours in the interior of the grid.
        crs = pyproj.CRS.from_wkt(g.grid_mapping[1]["crs_wkt"])
        i, j = ny // 3, nx // 2
        if g.kind == "projected":
            tr = pyproj.Transformer.from_crs(crs.geodetic_crs, crs, always_xy=True)
            x, y = tr.transform(lon[i, j], lat[i, j])
            assert x == pytest.approx(g.coords[xdim][1][j], abs=0.01)
            assert y == pytest.approx(g.coords[ydim][1][i], abs=0.01)
        ox, oy = grids.project(wkt, lat[i, j], lon[i, j])
        assert float(ox) == pytest.approx(g.coords[xdim][1][j], abs=1e-6 * max(1.0, abs(ox)))
        assert float(oy) == pytest.approx(g.coords[ydim][1][i], abs=1e-6 * max(1.0, abs(oy)))


# --------------------------------------------------------------------------- data/: v3 chunks

NY, NX, NT = 6, 8, 24
N0 = 19723  # 2024-01-01 with 24 hourly steps per file
DATA_WKT = regular_wkt(45.0, 5.0, 47.5, 8.5)


@pytest.fixture
def data_bucket(tmp_path):
    ns = [N0, N0 + 1, N0 + 2, N0 + 4, N0 + 5]  # N0+3 missing
    files = build_data_model(
        tmp_path,
        "icon_mini",
        "temperature_2m",
        ny=NY,
        nx=NX,
        ntime=NT,
        dt=HOUR,
        chunk_ns=ns,
        wkt=DATA_WKT,
        nan_tail=10,
    )
    return tmp_path, files


def test_data_layout_values_coordinates_gaps_and_future_nans(data_bucket):
    root, files = data_bucket
    ds = open_openmeteo(root, "icon_mini", "temperature_2m")
    da = ds["temperature_2m"]
    assert da.dims == ("time", "latitude", "longitude")
    assert da.shape == (6 * NT, NY, NX) and da.dtype == np.float32
    t = ds["time"].values
    assert t[0] == np.datetime64("2024-01-01T00:00") and t[-1] == np.datetime64("2024-01-06T23:00")
    assert np.all(np.diff(t) == np.timedelta64(1, "h"))
    np.testing.assert_array_equal(ds["latitude"].values, np.linspace(45, 47.5, NY))
    np.testing.assert_array_equal(ds["longitude"].values, np.linspace(5, 8.5, NX))
    got = da.values
    want = expected_series(files, range(N0, N0 + 6), NT, (NY, NX))
    np.testing.assert_array_equal(got, want)  # NaN == NaN for assert_array_equal
    assert np.isnan(got[3 * NT : 4 * NT]).all()  # missing chunk file
    assert np.isnan(got[-10:]).all() and not np.isnan(got[-11]).any()  # future steps
    assert ds.attrs["temporal_resolution_seconds"] == HOUR
    assert ds.attrs["chunk_time_length"] == NT and ds.attrs["model"] == "icon_mini"
    assert ds["crs"].attrs["grid_mapping_name"] == "latitude_longitude"
    assert da.attrs["grid_mapping"] == "crs"
    assert da.encoding["compression"] == "fpx_xor_2d"
    assert da.encoding["preferred_chunks"]["time"] == (NT,) * 6
    # Outer/strided/negative/int keys go through the lazy array.
    sub = da.isel(time=slice(100, 3, -7), latitude=[5, 0, 2], longitude=3).values
    np.testing.assert_array_equal(sub, want[100:3:-7][:, [5, 0, 2], 3])
    assert float(da.isel(time=30, latitude=1, longitude=2)) == want[30, 1, 2]
    ds.close()


def test_data_layout_start_end_selects_chunk_files(data_bucket):
    root, files = data_bucket
    fs = CountingFS(__import__("fsspec").filesystem("file"))
    ds = open_openmeteo(
        str(root),
        "icon_mini",
        ["temperature_2m"],
        start="2024-01-02T05:00",
        end="2024-01-03",
        filesystem=fs,
    )
    opened = files_read(fs.reset())
    # meta.json and the probe (the newest file, for the geometry) only
    assert set(opened) == {"meta.json", f"chunk_{N0 + 5}.om"}
    t = ds["time"].values
    assert t[0] == np.datetime64("2024-01-02T05:00")
    assert t[-1] == np.datetime64("2024-01-03T23:00")  # date-only end = end of that day
    got = ds["temperature_2m"].values
    want = expected_series(files, range(N0, N0 + 6), NT, (NY, NX))[NT + 5 : 3 * NT]
    np.testing.assert_array_equal(got, want)
    assert set(files_read(fs.reset())) == {f"chunk_{N0 + 1}.om", f"chunk_{N0 + 2}.om"}
    # A single timestamp
    one = open_openmeteo(
        root, "icon_mini", "temperature_2m", start="2024-01-05T07:00", end="2024-01-05T07:00"
    )
    assert one.sizes["time"] == 1
    np.testing.assert_array_equal(one["temperature_2m"].values[0], files[N0 + 4][..., 7])
    # Out of range
    with pytest.raises(ValueError, match="no chunk files"):
        open_openmeteo(root, "icon_mini", "temperature_2m", start="2030-01-01")
    with pytest.raises(ValueError, match="before start"):
        open_openmeteo(root, "icon_mini", "temperature_2m", start="2024-01-03", end="2024-01-02")


def test_failed_open_closes_the_files_it_opened(data_bucket, monkeypatch):
    from xarray_om.openmeteo import api

    root, _ = data_bucket
    closed = []
    real_close = api.OpenFiles.close
    monkeypatch.setattr(api.OpenFiles, "close", lambda self: closed.append(real_close(self)))

    def broken_open_dataset(*args, **kwargs):
        raise RuntimeError("xarray failed")

    monkeypatch.setattr(api.xr, "open_dataset", broken_open_dataset)
    with pytest.raises(RuntimeError, match="xarray failed"):
        open_openmeteo(root, "icon_mini", "temperature_2m")
    assert len(closed) == 1


def test_data_layout_dask_chunks_one_per_file(data_bucket):
    root, files = data_bucket
    ds = open_openmeteo(root, "icon_mini", "temperature_2m", start="2024-01-01T12:00", chunks={})
    da = ds["temperature_2m"]
    assert da.chunks[0] == (12, NT, NT, NT, NT, NT)
    assert da.chunks[1] == (1,) * NY
    want = expected_series(files, range(N0, N0 + 6), NT, (NY, NX))[12:]
    np.testing.assert_array_equal(da.values, want)
    big = open_openmeteo(
        root, "icon_mini", "temperature_2m", chunks={"time": -1, "latitude": 3, "longitude": -1}
    )
    assert big["temperature_2m"].chunks == ((6 * NT,), (3, 3), (NX,))
    np.testing.assert_array_equal(
        big["temperature_2m"].mean("time").values,
        np.nanmean(expected_series(files, range(N0, N0 + 6), NT, (NY, NX)), axis=0),
    )


def test_data_layout_dataset_pickles_and_computes_elsewhere(data_bucket):
    root, files = data_bucket
    ds = open_openmeteo(root, "icon_mini", "temperature_2m", chunks={"time": NT})
    ds2 = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(
        ds2["temperature_2m"].isel(latitude=4, longitude=5).values,
        expected_series(files, range(N0, N0 + 6), NT, (NY, NX))[:, 4, 5],
    )


def test_data_layout_ensemble_files_and_member_folders(tmp_path):
    ens = build_data_model(
        tmp_path,
        "ens",
        "temperature_2m",
        ny=3,
        nx=4,
        ntime=12,
        dt=HOUR,
        chunk_ns=[40000, 40001],
        wkt=regular_wkt(0, 0, 1, 1.5),
        members=5,
    )
    ds = open_openmeteo(tmp_path, "ens", "temperature_2m")
    da = ds["temperature_2m"]
    assert da.dims == ("time", "latitude", "longitude", "member")
    np.testing.assert_array_equal(ds["member"].values, np.arange(5))
    want = np.concatenate([np.moveaxis(ens[n], -1, 0) for n in (40000, 40001)])
    np.testing.assert_array_equal(da.values, want)
    np.testing.assert_array_equal(
        da.isel(member=[4, 1], latitude=2).values, want[:, 2][..., [4, 1]]
    )

    # Members as folders: <var> (member 0), <var>_member01, <var>_member02 (one chunk missing)
    root = tmp_path / "b2"
    per = {}
    for m, folder in enumerate(
        ["precipitation", "precipitation_member01", "precipitation_member02"]
    ):
        ns = [40000, 40001] if m != 2 else [40001]
        per[m] = build_data_model(
            root,
            "ens",
            folder,
            ny=3,
            nx=4,
            ntime=12,
            dt=HOUR,
            chunk_ns=ns,
            wkt=regular_wkt(0, 0, 1, 1.5),
            seed=m,
        )
    ds = open_openmeteo(root, "ens", "precipitation", chunks={})
    da = ds["precipitation"]
    assert da.dims == ("time", "latitude", "longitude", "member")
    np.testing.assert_array_equal(ds["member"].values, [0, 1, 2])
    got = da.values
    for m in range(3):
        want_m = expected_series(per[m], [40000, 40001], 12, (3, 4))
        np.testing.assert_array_equal(got[..., m], want_m)
    assert np.isnan(got[:12, :, :, 2]).all()


# --------------------------------------------------------------------------- data/: legacy files

LEGACY_FIXTURES = ["legacy_v2_int16.om", "legacy_v1.om", "legacy_v2_fpx.om", "legacy_v2_log.om"]


def test_legacy_fixture_chunks_reshaped_with_grid_from_bbox(tmp_path, fixtures_dir):
    """The shared legacy fixtures are [21 locations, 30 steps]: a 3 x 7 grid from the BBOX."""
    model_dir = tmp_path / "data" / "legacy_model"
    write_json(
        model_dir / "static" / "meta.json",
        {
            "temporal_resolution_seconds": 3 * HOUR,
            "crs_wkt": regular_wkt(50, 10, 51, 13),
        },
    )  # no chunk_time_length: taken from the files
    for i, name in enumerate(LEGACY_FIXTURES):
        dst = model_dir / "temperature_2m" / f"chunk_{1000 + i}.om"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(fixtures_dir / name, dst)
    ds = open_openmeteo(tmp_path, "legacy_model", "temperature_2m")
    da = ds["temperature_2m"]
    assert da.dims == ("time", "latitude", "longitude") and da.shape == (120, 3, 7)
    np.testing.assert_array_equal(ds["latitude"].values, [50, 50.5, 51])
    assert ds["time"].values[0] == np.datetime64(1000 * 30 * 3 * HOUR, "s")
    want = np.concatenate(
        [
            np.moveaxis(
                np.load(fixtures_dir / name.replace(".om", ".root.npy")).reshape(3, 7, 30), -1, 0
            )
            for name in LEGACY_FIXTURES
        ]
    )
    np.testing.assert_array_equal(da.values, want)
    # Point and row selections map to flat locations.
    np.testing.assert_array_equal(da.isel(latitude=1, longitude=5).values, want[:, 1, 5])
    np.testing.assert_array_equal(
        da.isel(latitude=[2, 0], longitude=slice(1, 6, 2)).values, want[:, [2, 0]][:, :, 1:6:2]
    )
    np.testing.assert_array_equal(
        open_openmeteo(tmp_path, "legacy_model", "temperature_2m", chunks={}).temperature_2m.values,
        want,
    )


def test_legacy_and_v3_chunks_in_one_series(tmp_path):
    """Before ~2025 chunks are legacy [ny*nx, T], newer ones v3 [ny, nx, T]: one time axis."""
    ny, nx, nt = 5, 6, 48
    v3 = build_data_model(
        tmp_path,
        "era5_mini",
        "temperature_2m",
        ny=ny,
        nx=nx,
        ntime=nt,
        dt=HOUR,
        chunk_ns=[502, 503],
        wkt=regular_wkt(10, 20, 12, 22.5),
    )
    rng = np.random.default_rng(3)
    legacy = {}
    for n, comp, version in [(500, "pfor_delta_2d_int16", 2), (501, "fpx_xor_2d", 2)]:
        a = (rng.standard_normal((ny * nx, nt)) * 3).astype(np.float32)
        p = tmp_path / "data" / "era5_mini" / "temperature_2m" / f"chunk_{n}.om"
        write_legacy(p, a, (7, nt), version=version, compression=comp)
        with OmFile(str(p)) as f:
            assert f.version == version
            legacy[n] = f.root[...].reshape(ny, nx, nt)
    files = {**legacy, **v3}
    ds = open_openmeteo(tmp_path, "era5_mini", "temperature_2m")
    np.testing.assert_array_equal(
        ds["temperature_2m"].values, expected_series(files, range(500, 504), nt, (ny, nx))
    )
    pt = ds["temperature_2m"].isel(latitude=3, longitude=4).values
    np.testing.assert_array_equal(pt[:nt], legacy[500][3, 4])
    # Only legacy files in range: the grid still comes from the newest (v3) file.
    t_end = np.datetime64(502 * nt * HOUR - HOUR, "s")
    ds = open_openmeteo(tmp_path, "era5_mini", "temperature_2m", end=t_end)
    assert ds.sizes["time"] == 2 * nt and ds.sizes["latitude"] == ny
    np.testing.assert_array_equal(
        ds["temperature_2m"].values, expected_series(files, range(500, 502), nt, (ny, nx))
    )
    # grid= must agree with the files
    with pytest.raises(ValueError, match="disagrees"):
        open_openmeteo(tmp_path, "era5_mini", "temperature_2m", grid=(nx, ny))


def test_legacy_only_needs_grid_when_bbox_is_ambiguous(tmp_path):
    ny, nx, nt = 4, 4, 10
    a = np.arange(ny * nx * nt, dtype=np.float32).reshape(ny * nx, nt) / 10
    p = tmp_path / "data" / "m" / "v" / "chunk_7.om"
    write_legacy(p, a, (5, nt))
    # rectangular BBOX with non-square cells: BBOX inference refuses
    write_json(
        tmp_path / "data" / "m" / "static" / "meta.json",
        {"temporal_resolution_seconds": HOUR, "crs_wkt": regular_wkt(0, 0, 3, 1)},
    )
    with pytest.raises(ValueError, match="grid=\\(ny, nx\\)"):
        open_openmeteo(tmp_path, "m", "v")
    ds = open_openmeteo(tmp_path, "m", "v", grid=(ny, nx))
    want = np.moveaxis(read_back(p).reshape(ny, nx, nt), -1, 0)
    np.testing.assert_array_equal(ds["v"].values, want)
    np.testing.assert_array_equal(ds["latitude"].values, [0, 1, 2, 3])
    # Legacy ensemble: [ny*nx*members, T] flattened in (y, x, member) order
    m = 3
    b = np.arange(ny * nx * m * nt, dtype=np.float32).reshape(ny * nx * m, nt) / 10
    p2 = tmp_path / "data" / "m" / "w" / "chunk_7.om"
    write_legacy(p2, b, (8, nt))
    ds = open_openmeteo(tmp_path, "m", "w", grid=(ny, nx))
    assert ds["w"].dims == ("time", "latitude", "longitude", "member")
    want = np.moveaxis(read_back(p2).reshape(ny, nx, m, nt), -1, 0)
    np.testing.assert_array_equal(ds["w"].values, want)
    np.testing.assert_array_equal(ds["w"].isel(member=2, latitude=3).values, want[:, 3, :, 2])


def test_yearly_and_chunk_files_in_one_series(tmp_path):
    """ERA5-style archives: year_YYYY.om (merged) plus newer chunk_N.om; chunk files win."""
    import fsspec

    dt, nt, ny, nx = 6 * HOUR, 56, 2, 3  # two-week chunk files at 6-hourly steps
    d = tmp_path / "data" / "era5_mini" / "temperature_2m"
    write_json(
        tmp_path / "data" / "era5_mini" / "static" / "meta.json",
        {"temporal_resolution_seconds": dt, "chunk_time_length": nt, "crs_wkt": DATA_WKT},
    )
    rng = np.random.default_rng(5)
    truth: dict[int, float] = {}  # global step -> value at (1, 2), filled by priority
    arrays = {}
    for year in (2020, 2022, 2023):  # 2021 missing
        a0 = np.datetime64(f"{year}-01-01", "s").astype(np.int64) // dt
        a1 = np.datetime64(f"{year + 1}-01-01", "s").astype(np.int64) // dt
        a = rng.standard_normal((ny, nx, a1 - a0)).astype(np.float32)
        write_v3(d / f"year_{year}.om", a, (1, min(6, nx), 504))
        arrays[("y", year)] = (a0, read_back(d / f"year_{year}.om"))
    first_n = int(np.datetime64("2023-12-10", "s").astype(np.int64) // dt) // nt
    for n in (first_n, first_n + 1, first_n + 2):  # overlaps the end of 2023, runs into 2024
        a = rng.standard_normal((ny, nx, nt)).astype(np.float32)
        write_v3(d / f"chunk_{n}.om", a, om_chunks(ny, nx, nt))
        arrays[("c", n)] = (n * nt, read_back(d / f"chunk_{n}.om"))
    for kind in ("y", "c"):  # chunk files written last: they win
        for (k, _), (a0, a) in arrays.items():
            if k == kind:
                for i in range(a.shape[-1]):
                    truth[a0 + i] = a[1, 2, i]
    ds = open_openmeteo(tmp_path, "era5_mini", "temperature_2m", chunks={})
    t = ds["time"].values
    g0 = np.datetime64("2020-01-01", "s").astype(np.int64) // dt
    assert t[0] == np.datetime64("2020-01-01T00:00")
    assert t[-1] == np.datetime64((first_n + 3) * nt * dt - dt, "s")
    got = ds["temperature_2m"].isel(latitude=1, longitude=2).values
    want = np.array([truth.get(g0 + i, np.nan) for i in range(t.size)], dtype=np.float32)
    np.testing.assert_array_equal(got, want)
    assert np.isnan(ds["temperature_2m"].sel(time="2021-06-01").values).all()
    # one dask chunk per file run: 2020, the 2021 gap, 2022, 2023 up to the chunks, 3 chunks
    assert len(ds["temperature_2m"].chunks[0]) == 7
    # A range inside 2022 reads only year_2022.om
    fs = CountingFS(fsspec.filesystem("file"))
    one = open_openmeteo(
        tmp_path,
        "era5_mini",
        "temperature_2m",
        start="2022-03-01",
        end="2022-03-31",
        filesystem=fs,
    )
    fs.reset()
    vals = one["temperature_2m"].isel(latitude=1, longitude=2).values
    assert set(files_read(fs.reset())) == {"year_2022.om"}
    s0 = np.datetime64("2022-03-01", "s").astype(np.int64) // dt - g0
    np.testing.assert_array_equal(vals, want[s0 : s0 + 31 * 4])


def test_member_folders_with_different_file_kinds(tmp_path):
    """Member 0 from chunk files, member 1 from a yearly file: per-member windows."""
    dt, nt = 12 * HOUR, 20
    write_json(
        tmp_path / "data" / "m" / "static" / "meta.json",
        {"temporal_resolution_seconds": dt, "chunk_time_length": nt, "crs_wkt": DATA_WKT},
    )
    rng = np.random.default_rng(9)
    n0 = int(np.datetime64("2024-02-01", "s").astype(np.int64) // dt) // nt
    base = tmp_path / "data" / "m"
    c = rng.standard_normal((NY, NX, nt)).astype(np.float32)
    write_v3(base / "v" / f"chunk_{n0}.om", c, om_chunks(NY, NX, nt))
    y = rng.standard_normal((NY, NX, 366 * 2)).astype(np.float32)
    write_v3(base / "v_member01" / "year_2024.om", y, (1, 6, 504))
    ds = open_openmeteo(tmp_path, "m", "v", start=np.datetime64(n0 * nt * dt, "s"), chunks={})
    da = ds["v"]
    assert da.dims == ("time", "latitude", "longitude", "member")
    got = da.values
    np.testing.assert_array_equal(
        got[:nt, ..., 0], np.moveaxis(read_back(base / "v" / f"chunk_{n0}.om"), -1, 0)
    )
    assert np.isnan(got[nt:, ..., 0]).all()
    off = n0 * nt - np.datetime64("2024-01-01", "s").astype(np.int64) // dt
    yb = np.moveaxis(read_back(base / "v_member01" / "year_2024.om"), -1, 0)
    np.testing.assert_array_equal(got[..., 1], yb[off:])


# --------------------------------------------------------------------------- data/: performance


def _perf_bucket(root: Path):
    ny, nx, nt = 24, 32, 168  # one week per file, chunks [1, 18, 168]
    ns = list(range(2815, 2827))  # 2023-12-14 .. 2024-03-07
    files = build_data_model(
        root,
        "weekly",
        "temperature_2m",
        ny=ny,
        nx=nx,
        ntime=nt,
        dt=HOUR,
        chunk_ns=ns,
        wkt=regular_wkt(40, 0, 51.5, 15.5),
    )
    return files, ns, (ny, nx, nt)


def _month_point_reads(fs_wrapped, root, files, ns, geom):
    ny, nx, nt = geom
    ds = open_openmeteo(root, "weekly", "temperature_2m", filesystem=fs_wrapped)
    at_open = files_read(fs_wrapped.reset())
    assert set(at_open) == {"meta.json", f"chunk_{ns[-1]}.om"}, at_open
    da = ds["temperature_2m"].sel(latitude=40.0, longitude=1.0, method="nearest")
    got = da.sel(time=slice("2024-01-01", "2024-01-31")).values
    reads = files_read(fs_wrapped.reset())
    # January 2024 lies in weekly chunks 2817..2821 (2023-12-28 .. 2024-02-01).
    need = {f"chunk_{n}.om" for n in range(2817, 2822)}
    assert set(reads) == need, sorted(reads)
    series = expected_series(files, ns, nt, (ny, nx))[:, 0, 2]
    first = (1704067200 - ns[0] * nt * HOUR) // HOUR
    np.testing.assert_array_equal(got, series[first : first + 31 * 24])
    one_chunk = 18 * nt * 4  # uncompressed bytes of one OM chunk: fpx stores at most that + a bit
    for name, ranges in reads.items():
        # the tail (trailer, records, LUT) + the one OM chunk holding the point
        assert len(ranges) <= 3, (name, ranges)
        fetched = sum(e - s for s, e in ranges if e is not None)
        assert fetched <= 65536 + 2 * one_chunk, (name, fetched)
    total = (
        sum(os.path.getsize(root / "data" / "weekly" / "temperature_2m" / n) for n in need)
        if isinstance(root, Path)
        else None
    )
    return reads, total


def test_point_over_a_month_reads_only_needed_chunks_local(tmp_path):
    import fsspec

    files, ns, geom = _perf_bucket(tmp_path)
    fs = CountingFS(fsspec.filesystem("file"))
    reads, total = _month_point_reads(fs, tmp_path, files, ns, geom)
    fetched = sum(e - s for r in reads.values() for s, e in r)
    assert fetched < total / 2  # far from reading the five files


# --------------------------------------------------------------------------- data/: errors


def test_data_layout_errors(data_bucket, tmp_path):
    root, _ = data_bucket
    with pytest.raises(FileNotFoundError, match="icon_mini"):
        open_openmeteo(root, "nope", "temperature_2m")
    with pytest.raises(FileNotFoundError, match="available: temperature_2m"):
        open_openmeteo(root, "icon_mini", "temperature_3m")
    with pytest.raises(ValueError, match=r"variables=.*temperature_2m"):
        open_openmeteo(root, "icon_mini")
    with pytest.raises(ValueError, match="layout"):
        open_openmeteo(root, "icon_mini", "temperature_2m", layout="nope")
    with pytest.raises(ValueError, match="temporal_resolution_seconds"):
        open_openmeteo(root, "icon_mini", "temperature_2m", meta={"temporal_resolution_seconds": 0})

    # A chunk file of the wrong shape and a partially uploaded one fail when read, naming the file.
    d = root / "data" / "icon_mini" / "temperature_2m"
    write_v3(d / f"chunk_{N0 + 3}.om", np.zeros((NY, NX + 1, NT), np.float32), (1, 4, NT))
    ds = open_openmeteo(root, "icon_mini", "temperature_2m")
    with pytest.raises(OmFormatError, match=f"chunk_{N0 + 3}.om.*expected"):
        _ = ds["temperature_2m"].isel(time=3 * NT).values
    np.testing.assert_equal(
        ds["temperature_2m"].isel(time=0, latitude=0, longitude=0).values.shape, ()
    )
    good = (d / f"chunk_{N0 + 1}.om").read_bytes()
    (d / f"chunk_{N0 + 1}.om").write_bytes(good[: len(good) // 2])
    ds = open_openmeteo(root, "icon_mini", "temperature_2m")
    with pytest.raises(OmFormatError, match=f"chunk_{N0 + 1}.om"):
        _ = ds["temperature_2m"].isel(time=NT + 1).values

    # Legacy file whose location count does not fit the grid
    write_legacy(d / f"chunk_{N0 - 1}.om", np.zeros((NY * NX - 1, NT), np.float32), (5, NT))
    ds = open_openmeteo(root, "icon_mini", "temperature_2m", end="2023-12-31")
    with pytest.raises(OmFormatError, match="legacy"):
        _ = ds["temperature_2m"].values


# --------------------------------------------------------------------------- data_spatial/

SP_REF = 1717243200  # 2024-06-01T12:00Z


def build_spatial_run(
    root: Path,
    model: str,
    *,
    ny=5,
    nx=7,
    steps=(0, 1, 2, 3),
    realm=None,
    members=0,
    wkt=None,
    write_latest=True,
    seed=1,
):
    """data_spatial files: group root, 2-D arrays with `unit`, root scalars (openmeteo-data.md)."""
    rng = np.random.default_rng(seed)
    wkt = wkt or regular_wkt(30.0, -10.0, 32.0, -7.0)
    run_dir = root / "data_spatial" / model / "2024" / "06" / "01" / "1200Z"
    suffix = f"_{realm}" if realm else ""
    truth: dict[tuple[str, int], np.ndarray] = {}
    names = ["temperature_2m", "precipitation"]
    names += [f"temperature_2m_member{m:02d}" for m in range(1, members + 1)]
    valid = []
    for s in steps:
        vt = SP_REF + s * HOUR
        valid.append(vt)
        stamp = np.datetime64(vt, "s").astype(object)
        fname = f"{stamp:%Y-%m-%dT%H%M}{suffix}.om"
        path = run_dir / fname
        path.parent.mkdir(parents=True, exist_ok=True)
        with OmWriter(str(path)) as w:
            kids = []
            for name in names:
                if name == "precipitation" and s == 0:
                    continue  # backward sums lack step 0
                a = (rng.standard_normal((ny, nx)) * 4).astype(np.float32)
                unit = w.write_scalar("mm" if name == "precipitation" else "°C", name="unit")
                kids.append(
                    w.write_array(
                        a,
                        chunks=(min(ny, 32), min(nx, 32)),
                        scale_factor=20.0,
                        name=name,
                        children=[unit],
                    )
                )
            kids.append(w.write_scalar(wkt, name="crs_wkt"))
            kids.append(w.write_scalar(np.int64(SP_REF), name="forecast_reference_time"))
            kids.append(w.write_scalar(np.int64(vt), name="valid_time"))
            kids.append(w.write_scalar("lat lon", name="coordinates"))
            kids.append(w.write_scalar(np.int64(SP_REF + 5000), name="created_at"))
            w.close(w.write_group(name="", children=kids))
        with OmFile(str(path)) as f:
            for c in f.root.children:
                if c.kind == "array":
                    truth[(c.name, vt)] = c[...]
    iso = [f"{np.datetime64(v, 's').astype(object):%Y-%m-%dT%H:%M}Z" for v in valid]
    meta = {
        "reference_time": "2024-06-01T12:00:00Z",
        "last_modified_time": "2024-06-01T14:00:00Z",
        "completed": True,
        "valid_times": iso,
        "variables": sorted(names),
        "crs_wkt": wkt,
    }
    write_json(run_dir / f"meta{suffix}.json", meta)
    if write_latest:
        write_json(root / "data_spatial" / model / f"latest{suffix}.json", meta)
    return truth, valid


def test_spatial_layout_concatenates_valid_times(tmp_path):
    truth, valid = build_spatial_run(tmp_path, "dwd_mini")
    ds = open_openmeteo(tmp_path, "dwd_mini", layout="spatial")  # run="latest", all variables
    assert set(ds.data_vars) == {"temperature_2m", "precipitation"}
    assert ds["temperature_2m"].dims == ("time", "latitude", "longitude")
    np.testing.assert_array_equal(ds["time"].values, np.array(valid, dtype="datetime64[s]"))
    assert ds["forecast_reference_time"].values == np.datetime64("2024-06-01T12:00")
    assert ds["forecast_reference_time"].dims == ()
    np.testing.assert_array_equal(ds["latitude"].values, np.linspace(30, 32, 5))
    for name in ("temperature_2m", "precipitation"):
        got = ds[name].values
        for i, vt in enumerate(valid):
            if (name, vt) in truth:
                np.testing.assert_array_equal(got[i], truth[(name, vt)])
            else:
                assert np.isnan(got[i]).all()  # precipitation step 0
    assert ds["precipitation"].attrs["units"] == "mm" and ds["precipitation"].attrs["unit"] == "mm"
    assert ds["temperature_2m"].attrs["units"] == "°C"
    assert ds["temperature_2m"].encoding["compression"] == "pfor_delta_2d_int16"
    assert ds["temperature_2m"].encoding["om_scale_factor"] == 20.0
    # start/end and an explicit run, one variable; only the needed files are read
    import fsspec

    fs = CountingFS(fsspec.filesystem("file"))
    one = open_openmeteo(
        tmp_path,
        "dwd_mini",
        "precipitation",
        layout="spatial",
        run="2024-06-01T12:00",
        start="2024-06-01T14:00",
        filesystem=fs,
    )
    np.testing.assert_array_equal(one["time"].values, np.array(valid[2:], dtype="datetime64[s]"))
    assert set(files_read(fs.reset())) == {"meta.json", "2024-06-01T1400.om"}
    np.testing.assert_array_equal(
        one["precipitation"].values[1], truth[("precipitation", valid[3])]
    )
    assert set(files_read(fs.reset())) == {"2024-06-01T1500.om"}
    same = open_openmeteo(
        tmp_path, "dwd_mini", "precipitation", layout="spatial", run="2024/06/01/1200Z", chunks={}
    )
    assert same["precipitation"].chunks[0] == (1, 1, 1, 1)
    np.testing.assert_array_equal(same["precipitation"].values[1:], ds["precipitation"].values[1:])


def test_spatial_layout_members_realm_and_errors(tmp_path):
    truth, valid = build_spatial_run(tmp_path, "ens_mini", members=3, realm="ensemble")
    with pytest.raises(FileNotFoundError, match=r"latest\.json"):
        open_openmeteo(tmp_path, "ens_mini", layout="spatial")
    ds = open_openmeteo(tmp_path, "ens_mini", "temperature_2m", layout="spatial", realm="ensemble")
    da = ds["temperature_2m"]
    assert da.dims == ("time", "latitude", "longitude", "member")
    np.testing.assert_array_equal(ds["member"].values, [0, 1, 2, 3])
    got = da.values
    for i, vt in enumerate(valid):
        np.testing.assert_array_equal(got[i, ..., 0], truth[("temperature_2m", vt)])
        for m in (1, 2, 3):
            np.testing.assert_array_equal(
                got[i, ..., m], truth[(f"temperature_2m_member{m:02d}", vt)]
            )
    np.testing.assert_array_equal(da.isel(member=2, time=1, longitude=4).values, got[1, :, 4, 2])
    with pytest.raises(FileNotFoundError, match="available"):
        open_openmeteo(tmp_path, "ens_mini", "wind", layout="spatial", realm="ensemble")
    # meta.json lists an array no file holds: an explicit request fails, variables=None warns
    run_dir = tmp_path / "data_spatial" / "ens_mini" / "2024" / "06" / "01" / "1200Z"
    meta = json.loads((run_dir / "meta_ensemble.json").read_text())
    meta["variables"].append("snow_depth")
    write_json(run_dir / "meta_ensemble.json", meta)
    with pytest.raises(FileNotFoundError, match="snow_depth"):
        open_openmeteo(tmp_path, "ens_mini", "snow_depth", layout="spatial", realm="ensemble")
    with pytest.warns(RuntimeWarning, match="snow_depth"):
        ds = open_openmeteo(tmp_path, "ens_mini", layout="spatial", realm="ensemble")
    assert set(ds.data_vars) == {"temperature_2m", "precipitation"}
    with pytest.raises(FileNotFoundError, match="run folder"):
        open_openmeteo(tmp_path, "ens_mini", layout="spatial", run="2024-06-02T00:00")
    # A file whose valid_time scalar disagrees with its name
    run_dir = tmp_path / "data_spatial" / "ens_mini" / "2024" / "06" / "01" / "1200Z"
    shutil.copy(run_dir / "2024-06-01T1200_ensemble.om", run_dir / "2024-06-01T1300_ensemble.om")
    ds = open_openmeteo(tmp_path, "ens_mini", "precipitation", layout="spatial", realm="ensemble")
    with pytest.raises(OmFormatError, match="valid_time"):
        _ = ds["precipitation"].isel(time=1).values


# --------------------------------------------------------------------------- data_run/

RUN_TIMES = np.array([0, 1, 2, 3, 6, 9, 12], dtype=np.int64) * HOUR + SP_REF  # hourly then 3-hourly


def build_run(
    root: Path,
    model: str,
    *,
    wkt,
    ny=4,
    nx=6,
    members=None,
    seed=2,
    variables=("temperature_2m", "wind_u_component_10m"),
):
    """data_run files: root array [ny, nx, (m,) nTime] with time/crs_wkt/unit children."""
    rng = np.random.default_rng(seed)
    run_dir = root / "data_run" / model / "2024" / "06" / "01" / "1200Z"
    nt = RUN_TIMES.size
    truth = {}
    for var in variables:
        shape = (ny, nx, nt) if members is None else (ny, nx, members, nt)
        a = (rng.standard_normal(shape) * 3).astype(np.float32)
        cl = max(1, min(1024 // nt // (members or 1), nx))
        chunks = (1, cl, nt) if members is None else (1, 1, min(cl, members), nt)
        coords = "lat lon time" if members is None else "lat lon member time"

        def kids(w, coords=coords, var=var):
            t = w.write_array(RUN_TIMES, chunks=(nt,), compression="pfor_delta_2d", name="time")
            out = [
                w.write_scalar(wkt, name="crs_wkt") if wkt else None,
                w.write_scalar("m/s" if "wind" in var else "°C", name="unit"),
                w.write_scalar(np.int64(SP_REF), name="forecast_reference_time"),
                t,
                w.write_scalar(coords, name="coordinates"),
                w.write_scalar(np.int64(SP_REF + 100), name="created_at"),
            ]
            return [k for k in out if k is not None]

        path = run_dir / f"{var}.om"
        write_v3(path, a, chunks, children_fn=kids, scale_factor=20.0)
        truth[var] = read_back(path)
    meta = {
        "reference_time": "2024-06-01T12:00:00Z",
        "created_at": "2024-06-01T13:00:00Z",
        "variables": list(variables),
        "temporal_resolution_seconds": HOUR,
        "valid_times": [str(np.datetime64(int(t), "s")) + "Z" for t in RUN_TIMES],
    }
    if wkt:
        meta["crs_wkt"] = wkt
    write_json(run_dir / "meta.json", meta)
    write_json(root / "data_run" / model / "latest.json", meta)
    return truth


def test_run_layout_irregular_time_and_start_end(tmp_path):
    truth = build_run(tmp_path, "icon_run", wkt=regular_wkt(40, 0, 41.5, 2.5))
    ds = open_openmeteo(tmp_path, "icon_run", layout="run")
    assert set(ds.data_vars) == {"temperature_2m", "wind_u_component_10m"}
    np.testing.assert_array_equal(ds["time"].values, RUN_TIMES.astype("datetime64[s]"))
    assert ds["forecast_reference_time"].values == np.datetime64("2024-06-01T12:00")
    for var, a in truth.items():
        np.testing.assert_array_equal(ds[var].values, np.moveaxis(a, -1, 0))
    assert ds["wind_u_component_10m"].attrs["units"] == "m/s"
    sub = open_openmeteo(
        tmp_path,
        "icon_run",
        "temperature_2m",
        layout="run",
        start="2024-06-01T14:00",
        end="2024-06-01T21:00",
        chunks={},
    )
    np.testing.assert_array_equal(sub["time"].values, RUN_TIMES[2:6].astype("datetime64[s]"))
    np.testing.assert_array_equal(
        sub["temperature_2m"].values, np.moveaxis(truth["temperature_2m"], -1, 0)[2:6]
    )
    with pytest.raises(ValueError, match="no time step"):
        open_openmeteo(tmp_path, "icon_run", layout="run", start="2024-06-05")


def test_run_layout_reference_written_fixture(tmp_path, fixtures_dir):
    """openmeteo_run.om (written by the reference package) as data_run/<model>/<run>/<var>.om."""
    run_dir = tmp_path / "data_run" / "fx" / "2023" / "11" / "14" / "2200Z"
    run_dir.mkdir(parents=True)
    shutil.copy(fixtures_dir / "openmeteo_run.om", run_dir / "temperature_2m.om")
    ds = open_openmeteo(tmp_path, "fx", "temperature_2m", layout="run", run="2023-11-14T22:00")
    want = np.load(fixtures_dir / "openmeteo_run.root.npy")
    times = np.load(fixtures_dir / "openmeteo_run.time.npy")
    np.testing.assert_array_equal(ds["temperature_2m"].values, np.moveaxis(want, -1, 0))
    np.testing.assert_array_equal(ds["time"].values, times.astype("datetime64[s]"))
    assert ds["forecast_reference_time"].values == np.datetime64(1700000000, "s")
    assert ds["temperature_2m"].dims == ("time", "y", "x")  # no crs_wkt: plain grid dims


def test_run_layout_ensemble_file(tmp_path):
    truth = build_run(
        tmp_path,
        "ens_run",
        wkt=regular_wkt(40, 0, 41.5, 2.5),
        members=3,
        variables=("temperature_2m",),
    )
    ds = open_openmeteo(tmp_path, "ens_run", "temperature_2m", layout="run")
    da = ds["temperature_2m"]
    assert da.dims == ("time", "latitude", "longitude", "member")
    np.testing.assert_array_equal(da.values, np.moveaxis(truth["temperature_2m"], -1, 0))
    # Members as separate files: <var>.om (member 0), <var>_member01.om, <var>_member02.om
    root = tmp_path / "b2"
    per = build_run(
        root,
        "ens_run",
        wkt=regular_wkt(40, 0, 41.5, 2.5),
        variables=("precip", "precip_member01", "precip_member02"),
    )
    ds = open_openmeteo(root, "ens_run", layout="run", chunks={})
    assert list(ds.data_vars) == ["precip"]
    np.testing.assert_array_equal(ds["member"].values, [0, 1, 2])
    got = ds["precip"].values
    for m, name in enumerate(("precip", "precip_member01", "precip_member02")):
        np.testing.assert_array_equal(got[..., m], np.moveaxis(per[name], -1, 0))


def test_run_layout_projected_grid_without_pyproj(tmp_path, monkeypatch):
    monkeypatch.setattr(grids, "pyproj_module", lambda: None)
    # A 4 x 6 corner of the DMI Lambert grid: corners consistent with 2 km cells.
    xs = -1527524.681512781 + np.arange(6) * 2000.0
    ys = -1588681.2658573734 + np.arange(4) * 2000.0
    truth = build_run(
        tmp_path, "dmi_mini", wkt=_dmi_corner_wkt(xs, ys), ny=4, nx=6, variables=("temperature_2m",)
    )
    ds = open_openmeteo(tmp_path, "dmi_mini", "temperature_2m", layout="run")
    da = ds["temperature_2m"]
    assert da.dims == ("time", "y", "x")
    np.testing.assert_allclose(ds["x"].values, xs, atol=0.05)
    np.testing.assert_allclose(ds["y"].values, ys, atol=0.05)
    assert "latitude" not in ds.coords
    assert ds["crs"].attrs["grid_mapping_name"] == "lambert_conformal_conic"
    assert da.attrs["grid_mapping"] == "crs"
    assert "Lambert Conic Conformal (2SP)" in ds["crs"].attrs["crs_wkt"]
    np.testing.assert_array_equal(da.values, np.moveaxis(truth["temperature_2m"], -1, 0))


def test_run_layout_projected_grid_with_pyproj(tmp_path):
    pytest.importorskip("pyproj", reason="pyproj is an optional extra (2-D lat/lon)")
    xs = -1527524.681512781 + np.arange(6) * 2000.0
    ys = -1588681.2658573734 + np.arange(4) * 2000.0
    build_run(
        tmp_path, "dmi_mini", wkt=_dmi_corner_wkt(xs, ys), ny=4, nx=6, variables=("temperature_2m",)
    )
    ds = open_openmeteo(tmp_path, "dmi_mini", "temperature_2m", layout="run")
    assert ds["latitude"].dims == ("y", "x") and ds["longitude"].dims == ("y", "x")
    assert ds["latitude"].values[0, 0] == pytest.approx(39.670998, abs=1e-5)
    assert ds["longitude"].values[0, 0] == pytest.approx(-25.421997, abs=1e-5)


def _dmi_corner_wkt(xs, ys) -> str:
    """The DMI WKT with a BBOX of the given corner points (from our own inverse by bisection)."""
    lat1, lon1 = _inverse_by_search(DMI_WKT, xs[-1], ys[-1])
    lat0, lon0 = 39.670998, -25.421997
    return DMI_WKT.replace(
        "BBOX[39.670998,-25.421997,62.667618,40.069855]",
        f"BBOX[{lat0},{lon0},{float(lat1)!r},{float(lon1)!r}]",
    )


def _inverse_by_search(wkt, x, y):
    """lat/lon of projected (x, y) by Newton iteration on our forward transform."""
    lat, lon = 40.0, -25.0
    for _ in range(50):
        fx, fy = (float(v) for v in grids.project(wkt, lat, lon))
        e = 1e-6
        ax, ay = (float(v) for v in grids.project(wkt, lat + e, lon))
        bx, by = (float(v) for v in grids.project(wkt, lat, lon + e))
        j = np.array([[(ax - fx) / e, (bx - fx) / e], [(ay - fy) / e, (by - fy) / e]])
        d = np.linalg.solve(j, [x - fx, y - fy])
        lat, lon = lat + d[0], lon + d[1]
    return lat, lon


# --------------------------------------------------------------------------- S3 (SeaweedFS)


def test_all_layouts_on_s3(tmp_path, s3):
    local = tmp_path / "bucket"
    files = build_data_model(
        local,
        "icon_mini",
        "temperature_2m",
        ny=NY,
        nx=NX,
        ntime=NT,
        dt=HOUR,
        chunk_ns=[N0, N0 + 2],
        wkt=DATA_WKT,
    )
    truth_sp, valid = build_spatial_run(local, "dwd_mini", steps=(0, 1))
    truth_run = build_run(local, "icon_run", wkt=regular_wkt(40, 0, 41.5, 2.5))
    s3.fs.put(str(local) + "/", f"{s3.bucket}/", recursive=True)
    root = f"s3://{s3.bucket}"
    ds = open_openmeteo(root, "icon_mini", "temperature_2m", storage_options=s3.storage_options)
    np.testing.assert_array_equal(
        ds["temperature_2m"].values, expected_series(files, range(N0, N0 + 3), NT, (NY, NX))
    )
    sp = open_openmeteo(
        root,
        "dwd_mini",
        "temperature_2m",
        layout="spatial",
        storage_options=s3.storage_options,
        chunks={},
    )
    for i, vt in enumerate(valid):
        np.testing.assert_array_equal(
            sp["temperature_2m"].values[i], truth_sp[("temperature_2m", vt)]
        )
    run = open_openmeteo(
        root, "icon_run", "wind_u_component_10m", layout="run", storage_options=s3.storage_options
    )
    np.testing.assert_array_equal(
        run["wind_u_component_10m"].values, np.moveaxis(truth_run["wind_u_component_10m"], -1, 0)
    )
    assert ds.attrs["source"] == f"{root}/data/icon_mini"


def test_point_over_a_month_reads_only_needed_chunks_s3(tmp_path, s3):
    local = tmp_path / "bucket"
    files, ns, geom = _perf_bucket(local)
    s3.fs.put(str(local) + "/", f"{s3.bucket}/", recursive=True)
    fs = CountingFS(s3.fs)
    reads, _ = _month_point_reads(fs, s3.bucket, files, ns, geom)
    fetched = sum(e - s for r in reads.values() for s, e in r)
    on_s3 = sum(s3.fs.size(f"{s3.bucket}/data/weekly/temperature_2m/{n}") for n in reads)
    assert fetched < on_s3 / 2


# --------------------------------------------------------------------------- HTTP mirror


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files with byte ranges; folders are not listable (like an S3 website mirror)."""

    def log_message(self, *args):  # keep the test output clean
        pass

    def send_head(self):
        path = self.translate_path(self.path)
        if not os.path.isfile(path):  # folders too: no listings
            self.send_error(404, "not found")
            return None
        size = os.path.getsize(path)
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            a, _, b = rng[6:].partition("-")
            start = int(a) if a else size - int(b)
            stop = min(size - 1, int(b)) if a and b else size - 1
            with open(path, "rb") as f:
                f.seek(start)
                data = f.read(stop - start + 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{stop}/{size}")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            return io.BytesIO(data)
        self.send_response(200)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        return open(path, "rb")  # the base class closes it after sending


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "mirror"
    root.mkdir()
    handler = functools.partial(_RangeHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_mirror_without_listings(http_root):
    """Plain HTTP (e.g. data-spatial.open-meteo.com): file names come from meta.json."""
    local, url = http_root
    files = build_data_model(
        local,
        "icon_mini",
        "temperature_2m",
        ny=NY,
        nx=NX,
        ntime=NT,
        dt=HOUR,
        chunk_ns=[N0, N0 + 1, N0 + 3],
        wkt=DATA_WKT,
    )
    truth_sp, valid = build_spatial_run(local, "dwd_mini", steps=(0, 1, 2))
    truth_run = build_run(local, "icon_run", wkt=regular_wkt(40, 0, 41.5, 2.5))
    # data/: start is required, end defaults to data_end_time; N0+2 is absent -> NaN
    with pytest.raises(ValueError, match="start="):
        open_openmeteo(url, "icon_mini", "temperature_2m")
    ds = open_openmeteo(url, "icon_mini", "temperature_2m", start="2024-01-01", end="2024-01-04")
    np.testing.assert_array_equal(
        ds["temperature_2m"].values, expected_series(files, range(N0, N0 + 4), NT, (NY, NX))
    )
    # spatial: valid times of latest.json/meta.json; a file not uploaded yet reads as NaN
    (local / "data_spatial/dwd_mini/2024/06/01/1200Z/2024-06-01T1400.om").unlink()
    sp = open_openmeteo(url, "dwd_mini", "temperature_2m", layout="spatial")
    got = sp["temperature_2m"].values
    np.testing.assert_array_equal(got[0], truth_sp[("temperature_2m", valid[0])])
    np.testing.assert_array_equal(got[1], truth_sp[("temperature_2m", valid[1])])
    assert np.isnan(got[2]).all()
    # run: the variables of meta.json
    run = open_openmeteo(url, "icon_run", layout="run")
    assert set(run.data_vars) == set(truth_run)
    np.testing.assert_array_equal(
        run["temperature_2m"].values, np.moveaxis(truth_run["temperature_2m"], -1, 0)
    )
    # Without listings, only derived (missing) files are NaN: a listed store raises instead.
    (local / f"data/icon_mini/temperature_2m/chunk_{N0 + 1}.om").unlink()
    ds = open_openmeteo(url, "icon_mini", "temperature_2m", start="2024-01-01", end="2024-01-02")
    assert np.isnan(ds["temperature_2m"].values[NT:]).all()


# --------------------------------------------------------------------------- misc


def test_lazy_export_and_time_parsing():
    assert xarray_om.open_openmeteo is open_openmeteo
    from xarray_om.openmeteo.times import to_unix as _to_unix

    assert _to_unix("2024-01-01") == 1704067200
    assert _to_unix("2024-01-01T00:00Z") == 1704067200
    assert _to_unix("2024-01-01T01:00+01:00") == 1704067200
    assert _to_unix(np.datetime64("2024-01-01T00:00")) == 1704067200
    assert _to_unix("2024-01-31", end=True) == 1706745599
    assert _to_unix("2024-02", end=True) == 1709251199


def _dead_s3_options() -> dict:
    """storage_options for an S3 endpoint on 127.0.0.1 where nothing listens."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return {
        "key": "k",
        "secret": "s",
        "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"},
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1},
    }


def test_unreachable_store_raises_instead_of_reading_as_empty():
    # A folder that cannot be listed because the network fails is not a missing
    # folder: reading it as absent would turn every file into NaN silently.
    pytest.importorskip("s3fs")
    from botocore.exceptions import EndpointConnectionError

    from xarray_om.openmeteo.store import Store

    store = Store.create("s3://bucket", _dead_s3_options(), None)
    with pytest.raises(EndpointConnectionError):
        store.listdir(store.path("data", "icon_mini", "temperature_2m"))
    with pytest.raises(EndpointConnectionError):
        store._isdir(store.path("data"))
    meta = {
        "temporal_resolution_seconds": HOUR,
        "chunk_time_length": NT,
        "data_end_time": 1704067200 + 86400,
        "crs_wkt": DATA_WKT,
    }
    with pytest.raises(EndpointConnectionError):
        open_openmeteo(
            "s3://bucket",
            "icon_mini",
            "temperature_2m",
            storage_options=_dead_s3_options(),
            meta=meta,
            start="2024-01-01",
            end="2024-01-02",
        )


def test_missing_local_folder_still_reads_as_absent(tmp_path):
    from xarray_om.openmeteo.store import Store

    store = Store.create(tmp_path, None, None)
    assert store.listdir(store.path("no", "such", "folder")) is None
    assert store._isdir(store.path("no")) is False
