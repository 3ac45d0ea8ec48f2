"""The ``xarray-om`` command line: info / convert / verify.

The console script (and ``python -m xarray_om.cli``) runs in subprocesses on
the shared fixtures and on deliberately damaged copies; broader checks call
``main()`` in-process. Oracles: the fixture manifest (written from the
reference reader: shapes, chunks, compression, LUT offsets), the fixture
``.npy`` arrays, and ``omfiles`` reading the files ``convert`` writes.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from xarray_om import cli

ENGINE = "xarray_om"

pytestmark = [
    pytest.mark.filterwarnings("ignore::xarray_om.backend.EngineNameClashWarning"),
    pytest.mark.filterwarnings("ignore:Found 2 entrypoints for the engine name om"),
]


def _script() -> list[str]:
    exe = Path(sys.executable).parent / "xarray-om"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("xarray-om")
    if found is None:
        pytest.skip("console script xarray-om not installed (run pip install -e .)")
    return [found]


def run(*args: str, cwd: Path | None = None, module: bool = False) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "xarray_om.cli"] if module else _script()
    return subprocess.run(
        [*cmd, *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def _files(manifest: dict) -> dict[str, dict]:
    return {f["file"]: f for f in manifest["files"]}


def _arrays(node: dict):
    if node["kind"] == "array":
        yield node
    for c in node.get("children", ()):
        yield from _arrays(c)


def _no_traceback(p: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in p.stderr, p.stderr
    assert "Traceback" not in p.stdout, p.stdout


# --------------------------------------------------------------------------- general


def test_console_script_help_version_and_module_form() -> None:
    p = run("--version")
    assert p.returncode == 0 and p.stdout.strip() == "xarray-om 0.1.0"
    p = run("--help", module=True)
    assert p.returncode == 0
    for word in ("info", "convert", "verify", "Exit codes"):
        assert word in p.stdout
    p = run()  # no command: usage error
    assert p.returncode == 2 and "required" in p.stderr


def test_human_size_and_storage_options() -> None:
    assert cli.human_size(0) == "0 B"
    assert cli.human_size(1023) == "1023 B"
    assert cli.human_size(1536) == "1.5 KiB"
    assert cli.human_size(5 * 1024**3) == "5.0 GiB"
    opts = cli.parse_storage_options(["anon=true", 'client_kwargs={"a": 1}', "key=abc", "n=3"])
    assert opts == {"anon": True, "client_kwargs": {"a": 1}, "key": "abc", "n": 3}
    with pytest.raises(cli.UsageError):
        cli.parse_storage_options(["novalue"])


# --------------------------------------------------------------------------- info


def test_info_text_like_ncdump(fixtures_dir: Path, manifest: dict) -> None:
    p = run("info", fixtures_dir / "hierarchy.om")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert out.startswith(f"om {fixtures_dir / 'hierarchy.om'} {{  // OM v3, 2.9 KiB")
    assert "float32 temperature_2m(lat: 6, lon: 8, time: 24) {" in out
    assert "// chunks (2, 3, 24), grid 3 x 3 x 1 = 9 chunks" in out
    assert "compression pfor_delta_2d_int16, om_scale_factor 20, om_add_offset 0" in out
    assert ':unit = "°C"' in out and ":height = 2 (int32)" in out
    assert "group scalars {" in out and ':string_unicode = "Zürich ☀ 東京"' in out
    # 4.5 KiB raw (6*8*24 float32), stored = sum of chunk sizes from the LUT
    root = _files(manifest)["hierarchy.om"]["root"]
    arr = next(a for a in _arrays(root) if a["name"] == "temperature_2m")
    stored = arr["container"]["data_end"] - arr["container"]["data_start"]
    ratio = 6 * 8 * 24 * 4 / stored
    assert f"// size 4.5 KiB raw, {cli.human_size(stored)} stored, ratio {ratio:.2f}x" in out
    arrays = list(_arrays(root))
    total_raw = sum(np.prod(a["shape"]) * np.dtype(a["dtype"]).itemsize for a in arrays)
    total_stored = sum(a["container"]["data_end"] - a["container"]["data_start"] for a in arrays)
    assert out.rstrip().splitlines()[-1] == (
        f"// 4 arrays: {cli.human_size(total_raw)} raw, {cli.human_size(total_stored)} in chunks "
        f"(ratio {total_raw / total_stored:.2f}x); file 2.9 KiB (2976 bytes)"
    )


def test_info_json_matches_manifest_for_every_fixture(fixtures_dir: Path, manifest: dict) -> None:
    """Shapes, chunks, compression, scaling and stored bytes agree with the reference's view."""
    for name, entry in _files(manifest).items():
        info = cli.file_info(str(fixtures_dir / name))
        assert info["size"] == entry["size"] == (fixtures_dir / name).stat().st_size
        assert not info["errors"]
        got = {a["path"]: a for a in _arrays_json(info["root"])}
        want = list(_arrays(entry["root"]))
        assert len(got) == len(want), name
        by_shape_name = {(a["name"], tuple(a["shape"])): a for a in got.values()}
        for w in want:
            g = by_shape_name[(w["name"], tuple(w["shape"]))]
            assert tuple(g["chunks"]) == tuple(w["chunks"])
            assert g["compression"] == w["compression"]
            assert g["dtype"] == w["dtype"]
            assert g["n_chunks"] == w["n_chunks"]
            assert g["scale_factor"] == pytest.approx(w["scale_factor"])
            assert g["add_offset"] == pytest.approx(w["add_offset"])
            assert g["raw_bytes"] == int(np.prod(w["shape"])) * np.dtype(w["dtype"]).itemsize
            lut = w.get("container", {}).get("lut")
            if lut is not None:
                assert g["stored_bytes"] == lut[-1] - lut[0]


def _arrays_json(node: dict):
    if node["kind"] == "array" and "shape" in node:
        yield node
    for c in node.get("children", ()):
        yield from _arrays_json(c)


def test_info_json_subprocess_and_names(fixtures_dir: Path) -> None:
    p = run("info", "--json", fixtures_dir / "openmeteo_run.om")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["version"] == 3 and info["layout"] == "run"
    root = info["root"]
    assert root["display_name"] == "openmeteo_run"
    assert root["dims"] == ["lat", "lon", "time"]
    assert root["attrs"] == {"forecast_reference_time": 1700000000, "created_at": 1700001234}
    assert [c["name"] for c in root["children"]] == ["time"]
    p = run("info", fixtures_dir / "legacy_v2_int16.om")
    assert p.returncode == 0
    assert "OM v2" in p.stdout and "layout: legacy" in p.stdout
    assert "(location: 21, time: 30)" in p.stdout


def test_info_fsspec_url(fixtures_dir: Path) -> None:
    url = "file://" + str(fixtures_dir / "shape_3d.om")
    p = run("info", url, "--storage-option", "auto_mkdir=false")
    assert p.returncode == 0, p.stderr
    assert "float64 data(dim_0: 9, dim_1: 11, dim_2: 13) {" in p.stdout


def test_info_errors(tmp_path: Path, fixtures_dir: Path) -> None:
    p = run("info", tmp_path / "missing.om")
    assert p.returncode == 2 and "no such file" in p.stderr
    bad = tmp_path / "not_om.om"
    bad.write_bytes(b"hello world, not an OM file at all" * 4)
    p = run("info", bad)
    assert p.returncode == 1
    assert "not an OM file" in p.stderr and str(bad) in p.stderr
    _no_traceback(p)


def test_info_and_verify_over_s3(s3, fixtures_dir: Path) -> None:
    s3.fs.put(str(fixtures_dir / "many_chunks.om"), f"{s3.bucket}/m.om")
    opts = [
        "-s", f"key={s3.storage_options['key']}",
        "-s", f"secret={s3.storage_options['secret']}",
        "-s", "client_kwargs=" + json.dumps(s3.storage_options["client_kwargs"]),
    ]  # fmt: skip
    p = run("info", s3.url("m.om"), *opts)
    assert p.returncode == 0, p.stderr
    assert "int16 a1d(dim_0: 3000)" in p.stdout and "1500 chunks" in p.stdout
    p = run("verify", s3.url("m.om"), *opts)
    assert p.returncode == 0, p.stderr
    assert "OK: 3725 of 3725 chunks in 3 arrays decoded" in p.stdout


# --------------------------------------------------------------------------- verify


def test_verify_every_fixture_is_clean(fixtures_dir: Path, manifest: dict) -> None:
    for name, entry in _files(manifest).items():
        res = cli.verify_file(str(fixtures_dir / name))
        assert not res["problems"], name
        reports = res["arrays"]
        assert sum(r.n_chunks for r in reports) == sum(
            a["n_chunks"] for a in _arrays(entry["root"])
        )
        assert all(not r.problems for r in reports), name
    p = run("verify", fixtures_dir / "streaming.om", module=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1].startswith("OK: 21 of 21 chunks in 2 arrays decoded")


def test_verify_small_read_budget_same_result(
    fixtures_dir: Path, manifest: dict, tmp_path: Path, monkeypatch
) -> None:
    """Batches split by bytes (tiny budget, non-contiguous reads) find the same chunk."""
    entry = _files(manifest)["shape_2d.om"]
    lut = entry["root"]["container"]["lut"]
    data = bytearray((fixtures_dir / "shape_2d.om").read_bytes())
    data[lut[17] : lut[18]] = b"\xff" * (lut[18] - lut[17])
    bad = tmp_path / "bad.om"
    bad.write_bytes(bytes(data))
    from xarray_om.cli import verify

    monkeypatch.setattr(verify, "_VERIFY_BATCH", 5)
    monkeypatch.setattr(verify, "_VERIFY_BATCH_BYTES", 300)
    (rep,) = cli.verify_file(str(bad))["arrays"]
    assert [(p.first, p.byte_range) for p in rep.problems] == [(17, (lut[17], lut[18]))]
    assert rep.stored_bytes == lut[-1] - lut[0]
    for name in ("many_chunks.om", "hierarchy.om"):
        res = cli.verify_file(str(fixtures_dir / name))
        assert all(not r.problems for r in res["arrays"]) and not res["problems"]


def _chunk_range(entry: dict, fixtures_dir: Path, index: int) -> tuple[int, int]:
    lut = entry["root"].get("container", {}).get("lut")
    if lut is not None:
        return lut[index], lut[index + 1]
    from xarray_om import OmFile  # legacy files: the manifest has no LUT

    with OmFile(fixtures_dir / entry["file"]) as f:
        s, e = f.root.chunk_ranges([index])
    return int(s[0]), int(e[0])


@pytest.mark.parametrize(
    "name",
    [
        "shape_2d.om",
        "dtype_float32__fpx_xor_2d.om",
        "dtype_float64__fpx_xor_2d.om",
        "dtype_int32__pfor_delta_2d.om",
        "dtype_float32__pfor_delta_2d_int16_logarithmic.om",
        "legacy_v2_fpx.om",
    ],
)
@pytest.mark.parametrize("fill", [b"\xff", b"\x00"])
def test_verify_names_the_damaged_chunk(
    name: str, fill: bytes, tmp_path: Path, fixtures_dir: Path, manifest: dict
) -> None:
    entry = _files(manifest)[name]
    a, b = _chunk_range(entry, fixtures_dir, 5)
    data = bytearray((fixtures_dir / name).read_bytes())
    data[a:b] = fill * (b - a)
    bad = tmp_path / name
    bad.write_bytes(bytes(data))
    res = cli.verify_file(str(bad))
    (rep,) = res["arrays"]
    assert [(p.first, p.last, p.byte_range) for p in rep.problems] == [(5, 5, (a, b))]
    assert rep.bad_chunks == 1
    if name == "shape_2d.om" and fill == b"\xff":  # one subprocess run per corruption kind
        p = run("verify", bad)
        assert p.returncode == 1
        _no_traceback(p)
        assert f"chunk 5 at (1, 1) bytes [{a}, {b}) ({b - a} bytes): OmCodecError" in p.stdout
        assert "BAD: 1 of 28 chunks" in p.stdout
        assert p.stdout.splitlines()[-1].startswith("FAILED: 27 of 28 chunks in 1 array decoded")
        p = run("verify", "--json", bad, module=True)
        assert p.returncode == 1
        doc = json.loads(p.stdout)
        assert doc["ok"] is False
        (prob,) = doc["arrays"][0]["problems"]
        assert prob["first_chunk"] == 5 and prob["chunk_coords"] == [1, 1]
        assert prob["byte_range"] == [a, b]


def test_verify_bad_lut_records_trailer(tmp_path: Path, fixtures_dir: Path, manifest: dict) -> None:
    entry = _files(manifest)["shape_2d.om"]
    c = entry["root"]["container"]
    rec0 = entry["root"]["record_offset"]
    orig = (fixtures_dir / "shape_2d.om").read_bytes()

    def damaged(tag: str, edit) -> Path:
        data = bytearray(orig)
        edit(data)
        p = tmp_path / f"{tag}.om"
        p.write_bytes(bytes(data))
        return p

    def lut(d):
        d[c["lut_offset"] : c["lut_offset"] + c["lut_size"]] = b"\xff" * c["lut_size"]

    def record(d):
        d[rec0 : rec0 + 8] = b"\xab" * 8

    res = cli.verify_file(str(damaged("lut", lut)))
    (rep,) = res["arrays"]
    assert rep.bad_chunks == 28
    (prob,) = rep.problems  # one broken LUT group -> one problem naming the chunk run
    assert (prob.first, prob.last) == (0, 27) and "look-up table" in prob.message

    res = cli.verify_file(str(damaged("record", record)))
    assert res["arrays"] == [] and len(res["problems"]) == 1
    assert "record" in str(res["problems"][0])

    trunc = tmp_path / "trunc.om"
    trunc.write_bytes(orig[:2000])
    for path, expect in ((trunc, "truncated"), (damaged("lut2", lut), "chunks 0..27")):
        p = run("verify", path)
        assert p.returncode == 1, p.stdout
        _no_traceback(p)
        assert expect in p.stdout
    p = run("verify", tmp_path / "nope.om")
    assert p.returncode == 2 and "no such file" in p.stderr


_FUZZ_DRIVER = textwrap.dedent(
    """
    import sys, json
    from xarray_om import cli
    codes = []
    for path in sys.argv[1:]:
        codes.append(cli.main(["verify", "--json", path]))
    print("CODES", json.dumps(codes))
    """
)


def test_verify_random_damage_never_crashes(tmp_path: Path, fixtures_dir: Path) -> None:
    """Random byte damage: verify exits 0 or 1 and reports, in a separate process."""
    rng = np.random.default_rng(1234)
    paths = []
    for name in ("many_chunks.om", "hierarchy.om", "shape_3d.om", "legacy_v2_log.om"):
        orig = (fixtures_dir / name).read_bytes()
        for k in range(8):
            data = bytearray(orig)
            start = int(rng.integers(0, len(data)))
            n = int(rng.integers(1, 64))
            data[start : start + n] = rng.integers(
                0, 256, min(n, len(data) - start), np.uint8
            ).tobytes()
            p = tmp_path / f"{k}_{name}"
            p.write_bytes(bytes(data))
            paths.append(str(p))
    proc = subprocess.run(
        [sys.executable, "-c", _FUZZ_DRIVER, *paths], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _no_traceback(proc)
    codes = json.loads(proc.stdout.rsplit("CODES", 1)[1])
    assert len(codes) == len(paths) and set(codes) <= {0, 1}
    assert 1 in codes


# --------------------------------------------------------------------------- convert


@pytest.fixture(scope="module")
def sample_nc(tmp_path_factory) -> tuple[Path, xr.Dataset]:
    """A small NetCDF file with realistic weather-like fields."""
    rng = np.random.default_rng(0)
    lat = np.linspace(50.0, 45.0, 11)
    lon = np.linspace(5.0, 15.0, 21)
    time = np.datetime64("2026-01-01T00") + np.arange(48).astype("timedelta64[h]")
    t2m = (10 + 5 * np.sin(np.arange(48) / 24 * 2 * np.pi)[None, None, :]
           + rng.normal(0, 1, (11, 21, 48))).astype("float32")  # fmt: skip
    precip = np.maximum(rng.gamma(0.3, 2.0, (11, 21, 48)) - 0.5, 0).astype("float32")
    ds = xr.Dataset(
        {
            "temperature_2m": (("lat", "lon", "time"), t2m, {"units": "degC"}),
            "precipitation": (("lat", "lon", "time"), precip, {"units": "mm"}),
            "station_id": (("lat", "lon"), np.arange(11 * 21, dtype="int32").reshape(11, 21)),
        },
        coords={"lat": lat, "lon": lon, "time": time},
        attrs={"title": "cli test"},
    )
    path = tmp_path_factory.mktemp("nc") / "sample.nc"
    ds.to_netcdf(path)
    return path, ds


def _omfiles_values(path: Path, name: str) -> np.ndarray:
    """What the reference reader returns for a named child of the root group."""
    import omfiles

    r = omfiles.OmFileReader.from_path(str(path))
    try:
        for i in range(r.num_children):
            c = r.get_child_by_index(i)
            if c.name == name:
                return c[...]
    finally:
        r.close()
    raise KeyError(name)


def test_convert_netcdf_to_om_lossy_and_lossless(sample_nc, tmp_path: Path) -> None:
    src, ds = sample_nc
    dst = tmp_path / "out.om"
    p = run(
        "convert", src, dst,
        "--scale-factor", "temperature_2m=20",
        "--compression", "temperature_2m=pfor_delta_2d_int16",
        "--chunks", "1,7,48", "--chunks", "station_id=11,21",
        "--progress",
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "100% Completed" in p.stderr
    assert f"{src} -> {dst} (om): 3 data variables" in p.stdout
    info = cli.file_info(str(dst))
    arrays = {a["name"]: a for a in _arrays_json(info["root"])}
    t = arrays["temperature_2m"]
    assert (t["compression"], t["scale_factor"], tuple(t["chunks"])) == (
        "pfor_delta_2d_int16",
        20.0,
        (1, 7, 48),
    )
    pr = arrays["precipitation"]
    assert (pr["compression"], tuple(pr["chunks"])) == ("fpx_xor_2d", (1, 7, 48))
    assert tuple(arrays["station_id"]["chunks"]) == (11, 21)
    with xr.open_dataset(dst, engine=ENGINE) as back:
        assert float(np.abs(back.temperature_2m - ds.temperature_2m).max()) <= 0.5 / 20 + 1e-6
        np.testing.assert_array_equal(back.precipitation.values, ds.precipitation.values)
        np.testing.assert_array_equal(back.station_id.values, ds.station_id.values)
        np.testing.assert_array_equal(back.time.values, ds.time.values)
        assert back.temperature_2m.attrs["units"] == "degC"
        ours = back.temperature_2m.values
    # the reference reads what convert wrote, value for value
    np.testing.assert_array_equal(_omfiles_values(dst, "temperature_2m"), ours)
    np.testing.assert_array_equal(_omfiles_values(dst, "precipitation"), ds.precipitation.values)


def test_convert_global_options_apply_to_float_data_variables(sample_nc, tmp_path: Path) -> None:
    src, _ = sample_nc
    dst = tmp_path / "g.om"
    assert cli.main(["convert", str(src), str(dst), "--scale-factor", "10"]) == 0
    arrays = {a["name"]: a for a in _arrays_json(cli.file_info(str(dst))["root"])}
    assert arrays["temperature_2m"]["scale_factor"] == arrays["precipitation"]["scale_factor"] == 10
    assert arrays["temperature_2m"]["compression"] == "pfor_delta_2d_int16"
    assert arrays["station_id"]["compression"] == "pfor_delta_2d"  # ints untouched
    assert arrays["lat"]["compression"] == "fpx_xor_2d"  # coordinates stay lossless


def test_convert_group_and_unnamed_attributes(fixtures_dir: Path, tmp_path: Path, capsys) -> None:
    src = fixtures_dir / "hierarchy.om"
    # the root group has a scalar named "" (legal in OM, not in NetCDF): dropped with a note
    assert cli.main(["convert", str(src), str(tmp_path / "root.nc")]) == 0
    assert "dropping global attribute with an empty name" in capsys.readouterr().err
    with xr.open_dataset(tmp_path / "root.nc") as got, xr.open_dataset(src, engine=ENGINE) as want:
        np.testing.assert_array_equal(got.temperature_2m.values, want.temperature_2m.values)
        assert "" not in got.attrs and got.attrs["title"] == want.attrs["title"]
    assert cli.main(["convert", str(src), str(tmp_path / "g.om"), "--group", "scalars"]) == 0
    with xr.open_dataset(tmp_path / "g.om", engine=ENGINE) as got:
        assert got.attrs["string_unicode"] == "Zürich ☀ 東京"
        assert got.attrs["uint64"] == np.uint64(18446744073709551615)


def test_convert_om_to_netcdf_and_zarr_round_trip(fixtures_dir: Path, tmp_path: Path) -> None:
    src = fixtures_dir / "openmeteo_run.om"
    nc = tmp_path / "run.nc"
    zarr_dir = tmp_path / "run.zarr"
    p = run("convert", src, nc, "--chunks", "1,5,24", "--compression", "zlib", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    p = run("convert", src, zarr_dir, "--progress", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "100% Completed" in p.stderr
    with xr.open_dataset(src, engine=ENGINE) as want:
        want = want.load()
    expected = np.load(fixtures_dir / "openmeteo_run.root.npy")
    np.testing.assert_array_equal(want["openmeteo_run"].values, expected)
    with xr.open_dataset(nc) as got:
        xr.testing.assert_identical(got.load(), want)
        assert got["openmeteo_run"].encoding["chunksizes"] == (1, 5, 24)
        assert got["openmeteo_run"].encoding["zlib"] is True
    with xr.open_zarr(zarr_dir) as got:
        xr.testing.assert_identical(got.load(), want)
        # one Zarr chunk per OM chunk
        assert got["openmeteo_run"].encoding["chunks"] == (1, 5, 24)
    # and back to OM: same values, same layout kept from the encoding
    back = tmp_path / "back.om"
    assert cli.main(["convert", str(zarr_dir), str(back), "--chunks", "1,5,24"]) == 0
    with xr.open_dataset(back, engine=ENGINE) as b:
        np.testing.assert_array_equal(b["openmeteo_run"].values, expected)


def test_convert_errors(sample_nc, fixtures_dir: Path, tmp_path: Path, capsys) -> None:
    src, _ = sample_nc

    def main(*args: object) -> tuple[int, str]:
        code = cli.main([str(a) for a in args])
        return code, capsys.readouterr().err

    code, err = main("convert", src, tmp_path / "x.txt")
    assert code == 2 and "cannot tell the output format" in err
    existing = tmp_path / "exists.om"
    existing.write_bytes(b"old")
    code, err = main("convert", src, existing, "--chunks", "nosuch=1,2")
    assert code == 2 and "exists" in err
    assert existing.read_bytes() == b"old"
    code, err = main("convert", src, existing, "--overwrite", "--chunks", "nosuch=1,2")
    assert code == 2 and "no variable 'nosuch'" in err
    code, err = main("convert", src, existing, "--overwrite", "--chunks", "precipitation=1,2")
    assert code == 2 and "precipitation has 3 dimensions" in err
    code, err = main("convert", src, existing, "--overwrite", "--compression", "bogus")
    assert code == 2 and "not an OM compression" in err
    code, err = main("convert", src, existing, "--overwrite", "--scale-factor", "x")
    assert code == 2 and "not a number" in err
    assert existing.read_bytes() == b"old"
    code, err = main("convert", src, tmp_path / "o.zarr", "--scale-factor", "20")
    assert code == 2 and "only apply to OM output" in err
    code, err = main("convert", tmp_path / "missing.nc", tmp_path / "m.om")
    assert code == 2 and "no such file" in err
    # an encoding the OM writer rejects (float compression on an int array): usage error 2
    code, err = main("convert", src, tmp_path / "r.om", "--compression", "station_id=fpx_xor_2d")
    assert code == 2 and "OmEncodingError" in err
    assert not (tmp_path / "r.om").exists()
    # damaged OM input: exit 1 with the file named, no traceback (in a subprocess)
    data = bytearray((fixtures_dir / "shape_2d.om").read_bytes())
    data[-24:] = b"\0" * 24
    bad = tmp_path / "bad.om"
    bad.write_bytes(bytes(data))
    p = run("convert", bad, tmp_path / "bad.nc")
    assert p.returncode == 1, p.stderr
    assert str(bad) in p.stderr
    _no_traceback(p)
    assert not (tmp_path / "bad.nc").exists()


def test_convert_to_s3_then_info(sample_nc, s3) -> None:
    src, ds = sample_nc
    opts = s3.storage_options
    flags = [f"key={opts['key']}", f"secret={opts['secret']}",
             "client_kwargs=" + json.dumps(opts["client_kwargs"])]  # fmt: skip
    url = s3.url("out.om")
    args = ["convert", str(src), url]
    for f in flags:
        args += ["-t", f]
    assert cli.main(args) == 0
    args = ["info", "--json", url]
    for f in flags:
        args += ["-s", f]
    p = run(*args)
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert {a["name"] for a in _arrays_json(info["root"])} >= {"temperature_2m", "precipitation"}
    with xr.open_dataset(url, engine=ENGINE, storage_options=opts) as back:
        np.testing.assert_array_equal(back.precipitation.values, ds.precipitation.values)
