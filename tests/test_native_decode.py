"""Decode side of the native codec core against the reference (``omfiles``).

Reference chunk bytes come from one-chunk files written by ``omfiles.OmFileWriter``
(tail metadata: the chunk is ``[3, lut_offset)``); the reference's values come from
``omfiles.OmFileReader``. Comparisons are bitwise (NaN payloads included).
Corrupted input is only ever given to our decoder, never to the reference.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xarray_om import _native
from xarray_om.errors import OmCodecError
from xarray_om.format.records import (
    COMPRESSION_IDS,
    LEGACY_HEADER_SIZE,
    parse_legacy_header,
    parse_record,
    parse_trailer,
)

omfiles = pytest.importorskip("omfiles")
lib = _native.lib

PAIRS = [
    ("float32", "pfor_delta_2d_int16"),
    ("float32", "pfor_delta_2d_int16_logarithmic"),
    ("float32", "pfor_delta_2d"),
    ("float64", "pfor_delta_2d"),
    ("float32", "fpx_xor_2d"),
    ("float64", "fpx_xor_2d"),
] + [
    (t, "pfor_delta_2d")
    for t in ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64")
]

SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


# ---------------------------------------------------------------------------
# helpers


def exact(data) -> np.ndarray:
    """A private copy of the bytes in a buffer of exactly that size (its own
    malloc block), so that AddressSanitizer sees any read past its end."""
    return np.frombuffer(bytes(data), np.uint8).copy()


def bits(a: np.ndarray) -> np.ndarray:
    """Bit patterns of an array (exact comparison incl. NaN payloads and -0.0)."""
    a = np.ascontiguousarray(a)
    return a.view(f"u{a.dtype.itemsize}")


def assert_bitwise(got: np.ndarray, want: np.ndarray) -> None:
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape
    diff = np.flatnonzero(bits(got).ravel() != bits(want).ravel())
    assert diff.size == 0, (
        f"{diff.size} elements differ, first at {diff[:5]}: "
        f"{got.ravel()[diff[:5]]} != {want.ravel()[diff[:5]]}"
    )


def write_reference(path: Path, a: np.ndarray, compression: str, sf=1.0, ao=0.0, chunks=None):
    w = omfiles.OmFileWriter(str(path))
    v = w.write_array(
        a, chunks=list(chunks or a.shape), scale_factor=sf, add_offset=ao, compression=compression
    )
    w.close(v)
    raw = path.read_bytes()
    root_off, root_size = parse_trailer(raw[-24:])
    rec = parse_record(raw[root_off : root_off + root_size], root_off)
    ref = omfiles.OmFileReader(str(path))[...]
    return raw, rec, ref


def reference_chunk(path: Path, a: np.ndarray, compression: str, sf=1.0, ao=0.0):
    """(chunk bytes, record, reference values) of a one-chunk array."""
    raw, rec, ref = write_reference(path, a, compression, sf, ao)
    return raw[3 : rec.lut_offset], rec, ref


def decode_ref_chunk(chunk: bytes, rec, shape, **kw):
    n = int(np.prod(shape))
    return _native.decode_chunk(
        exact(chunk),
        rec.dtype,
        rec.compression,
        n,
        shape[-1],
        rec.scale_factor,
        rec.add_offset,
        **kw,
    )


@pytest.fixture
def simd_levels():
    """All SIMD levels this CPU supports; restores the best level afterwards."""
    best = lib.om_set_simd_level(-1)
    yield list(range(best + 1))
    lib.om_set_simd_level(-1)


# ---------------------------------------------------------------------------
# data generation


def make_data(
    rng: np.random.Generator, dtype: str, shape: tuple[int, ...], kind: int
) -> np.ndarray:
    dt = np.dtype(dtype)
    n = int(np.prod(shape))
    if dt.kind == "f":
        k = kind % 6
        if k == 0:  # smooth, weather-like
            a = np.cumsum(rng.normal(size=n)) * 0.3 + 15
        elif k == 1:  # noisy, wide range
            a = rng.normal(size=n) * 10.0 ** rng.integers(-3, 6)
        elif k == 2:  # constant
            a = np.full(n, rng.normal() * 100)
        elif k == 3:  # extremes
            fi = np.finfo(dt)
            pool = np.array(
                [
                    np.inf,
                    -np.inf,
                    np.nan,
                    fi.max,
                    -fi.max,
                    fi.tiny,
                    fi.smallest_subnormal,
                    -0.0,
                    0.0,
                    1e30,
                    -1.0,
                    -2.0,
                    0.5,
                    -0.5,
                    32766.5,
                    1e9,
                ],
                dtype=dt,
            )
            a = rng.choice(pool, size=n)
        elif k == 4:  # smooth with 20 % NaN
            a = np.cumsum(rng.normal(size=n)).astype(dt)
            a[rng.random(n) < 0.2] = np.nan
        else:  # arbitrary bit patterns: NaN payloads, denormals, everything
            a = rng.integers(0, 2 ** (8 * dt.itemsize), size=n, dtype=f"u{dt.itemsize}").view(dt)
        return np.asarray(a).astype(dt).reshape(shape)
    info = np.iinfo(dt)
    k = kind % 5
    if k == 0:
        a = rng.integers(info.min, info.max, size=n, dtype=dt, endpoint=True)
    elif k == 1:
        a = np.cumsum(rng.integers(-3, 4, size=n)).astype(dt)
    elif k == 2:
        a = np.full(n, [info.min, info.max, 0, 1][int(rng.integers(4))], dtype=dt)
    elif k == 3:
        a = rng.integers(0, 3, size=n).astype(dt)
        a[rng.random(n) < 0.05] = info.max
        a[rng.random(n) < 0.05] = info.min
    else:
        a = (np.arange(n) * rng.integers(1, 1000)).astype(dt)
    return a.reshape(shape)


@st.composite
def cases(draw):
    dtype, comp = draw(st.sampled_from(PAIRS))
    ndim = draw(st.integers(1, 4))
    cap = draw(st.sampled_from([8, 64, 300, 300, 3000, 3000, 20000, 100_000]))
    shape = []
    left = cap
    for _ in range(ndim):
        d = draw(st.integers(1, max(1, min(left, 400 if ndim > 1 else cap))))
        shape.append(d)
        left = max(1, left // d)
    kind = draw(st.integers(0, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    if np.dtype(dtype).kind == "f":
        sf = float(
            np.float32(draw(st.sampled_from([1.0, 10.0, 20.0, 100.0, 1000.0, 0.5, 3.7, 1e4])))
        )
        ao = float(np.float32(draw(st.sampled_from([0.0, 0.0, -273.15, 5.5, 1.25]))))
    else:
        sf, ao = 1.0, 0.0
    return dtype, comp, tuple(shape), kind, seed, sf, ao


# ---------------------------------------------------------------------------
# 1. reference bytes decode to the reference's values


@settings(SETTINGS, max_examples=250)
@given(case=cases())
def test_decode_matches_reference(tmp_path_factory, case):
    dtype, comp, shape, kind, seed, sf, ao = case
    a = make_data(np.random.default_rng(seed), dtype, shape, kind)
    path = tmp_path_factory.mktemp("ref") / "a.om"
    chunk, rec, ref = reference_chunk(path, a, comp, sf, ao)
    values, used = decode_ref_chunk(chunk, rec, shape)
    assert used == len(chunk)
    assert_bitwise(values.reshape(shape), ref)


@pytest.mark.parametrize(("dtype", "comp"), PAIRS)
@pytest.mark.parametrize(
    "shape", [(1,), (2,), (127,), (128,), (129,), (257,), (3, 129), (5, 4, 7), (2, 3, 4, 65)]
)
def test_decode_matches_reference_grid(tmp_path, dtype, comp, shape):
    """Every pair on the block-boundary sizes, with every data kind."""
    rng = np.random.default_rng(hash((dtype, comp, shape)) % 2**32)
    for kind in range(6):
        a = make_data(rng, dtype, shape, kind)
        chunk, rec, ref = reference_chunk(tmp_path / f"k{kind}.om", a, comp, 20.0, 0.5)
        values, used = decode_ref_chunk(chunk, rec, shape)
        assert used == len(chunk)
        assert_bitwise(values.reshape(shape), ref)


def test_fpx64_x86_lane_order(tmp_path):
    """Quirk K3: the reference reader returns the natural-lane-order values;
    the x86 lane order recovers what the x86 writer was given."""
    a = (np.arange(300) % 7).astype(np.float64)
    chunk, rec, ref = reference_chunk(tmp_path / "k3.om", a, "fpx_xor_2d")
    natural, used = decode_ref_chunk(chunk, rec, a.shape)
    assert used == len(chunk)
    assert_bitwise(natural, ref)
    assert not np.array_equal(ref, a)  # the reference really is affected
    permuted, used = decode_ref_chunk(chunk, rec, a.shape, x86_lanes=True)
    assert used == len(chunk)
    assert_bitwise(permuted, a)


# ---------------------------------------------------------------------------
# 2. fixtures


def _arrays(node, out):
    if node.get("kind") == "array":
        out.append(node)
    for child in node.get("children", []):
        _arrays(child, out)
    return out


def _fixture_arrays():
    manifest = (
        Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "manifest.json"
    )
    if not manifest.exists():
        return []
    entries = json.loads(manifest.read_text())["files"]
    return [
        pytest.param(e, arr, id=f"{e['file']}:{arr['path']}")
        for e in entries
        for arr in _arrays(e["root"], [])
        if arr.get("expected_npy")
    ]


def _chunk_ranges(entry, arr, raw):
    """(absolute start, length) of every chunk, from the file's look-up table."""
    n_chunks = arr["n_chunks"]
    if entry["format"].startswith("legacy"):
        hdr = parse_legacy_header(raw[:LEGACY_HEADER_SIZE])
        assert hdr.n_chunks == n_chunks
        ends = np.frombuffer(raw, "<u8", n_chunks, LEGACY_HEADER_SIZE).astype(np.uint64)
        data_start = LEGACY_HEADER_SIZE + 8 * n_chunks
        starts = np.concatenate([[0], ends[:-1]]).astype(np.uint64) + np.uint64(data_start)
        return starts, ends + np.uint64(data_start) - starts
    c = arr["container"]
    n_groups = -(-(n_chunks + 1) // 64)
    stride = c["lut_size"] // n_groups
    assert stride == c["lut_stride"]
    lut = _native.decode_lut(
        raw[c["lut_offset"] : c["lut_offset"] + c["lut_size"]], n_chunks + 1, stride
    )
    if "lut" in c:
        assert lut.tolist() == c["lut"]
    assert int(lut[0]) == c["data_start"] and int(lut[-1]) == c["data_end"]
    return lut[:-1], np.diff(lut)


@pytest.mark.parametrize(("entry", "arr"), _fixture_arrays())
def test_fixture_decodes_to_npy(fixtures_dir, entry, arr):
    raw = (fixtures_dir / entry["file"]).read_bytes()
    expected = np.load(fixtures_dir / arr["expected_npy"])
    starts, lengths = _chunk_ranges(entry, arr, raw)
    codec = _native.ArrayCodec(
        data_type={v: k for k, v in _DT.items()}[arr["dtype"]],
        compression=COMPRESSION_IDS[arr["compression"]],
        dims=tuple(arr["shape"]),
        chunks=tuple(arr["chunks"]),
        scale_factor=arr["scale_factor"],
        add_offset=arr["add_offset"],
    )
    out = np.empty(tuple(arr["shape"]), codec.dtype)
    sel = [np.arange(d) for d in arr["shape"]]
    idx = np.arange(arr["n_chunks"], dtype=np.uint64)
    _native.decode_select(codec, out, sel, idx, exact(raw), starts, lengths)
    assert_bitwise(out, expected.astype(codec.dtype))


_DT = {12: "int8", 13: "uint8", 14: "int16", 15: "uint16", 16: "int32", 17: "uint32",
       18: "int64", 19: "uint64", 20: "float32", 21: "float64"}  # fmt: skip


def test_lut_worked_example():
    """Container spec 6.5 (read_test.om)."""
    lut = _native.decode_lut(bytes.fromhex("0303e4c86d01"), 10, 6)
    assert lut.tolist() == [3, 7, 11, 14, 18, 22, 25, 28, 31, 32]


def test_lut_groups_must_fit_their_stride():
    one = bytes.fromhex("0303e4c86d01")
    # two groups of 64 entries need 2 * stride bytes
    with pytest.raises(OmCodecError):
        _native.decode_lut(one, 65, 6)
    with pytest.raises(OmCodecError):  # the group's bytes run past its stride
        _native.decode_lut(one + bytes(10), 10, 5)
    with pytest.raises(OmCodecError):
        _native.decode_lut(one, 10, 0)
    assert _native.decode_lut(b"", 0, 6).size == 0


# ---------------------------------------------------------------------------
# 3. worked examples of the codec spec (section 12)


def _h(s: str) -> bytes:
    return bytes.fromhex(s.replace("\n", " "))


def _ex_12_2():
    a = 1000 + (np.arange(130) % 5)
    a[40] = 1_000_000
    return a.astype(np.int32)


def _ex_12_6():
    d = np.arange(128) % 4
    d[10], d[77] = 1000, 1200
    return np.concatenate([[0], np.cumsum(d)]).astype(np.uint16)


WORKED = [
    ("64 05 24 a0 0e", "int16", 2, (5,), 1.0, np.array([100, 102, 101, 105, 90], np.int16)),
    ("83 e8 43 02 ba 24 5d 52 d2 25 e9 92 92 2e 49 97 92 74 49 82 2f 49 97 a4 74 49 ba 24 a4 4b"
     " d2 25 24 5d 92 2e 4b d2 25 e9 5d 92 2e 49 e9 92 74 49 49 97 a4 4b f4 e4 8e f4 e4 8e 27 28"
     " c2 02", "int32", 2, (130,), 1.0, _ex_12_2()),
    ("07 00 00", "int16", 2, (200,), 1.0, np.full(200, 7, np.int16)),
    ("00 c4 0a c4 0a", "int16", 2, (200,), 1.0, (np.arange(200) * 5).astype(np.int16)),
    ("ff 05 00 00 00 00 00 00 80 00", "uint64", 2, (3,), 1.0, np.full(3, 2**63 + 5, np.uint64)),
    ("0a 84 0c 66 fe ef ff fe cf ff 82 f3 93 08", "float32", 0, (2, 4), 10.0,
     np.array([[1.0, 1.1, np.nan, 1.3], [1.5, 1.4, 1.3, -0.1]], np.float32)),
    ("01 0c fe f7 7f 00 08", "float64", 1, (3,), 1.0, np.array([1.0, 2.0, 3.0])),
    ("01 8d 1e 0c 00 00 f0 3f 00 00 fc 0f fe e7 ff 00 a0 ff f3 ff 01 10", "float64", 1, (2, 3),
     1.0, np.array([[1.0, 2.0, 3.0], [1.5, 2.5, 3.5]])),
    ("01 0a fe fc 03 50 00 00 03 00", "float32", 1, (2, 3), 1.0,
     np.array([[1, 2, 3], [1.5, 2.5, 3.5]], np.float32)),
    ("00 42 02 00 00 55 55 a2 aa ff ff 00 00 55 55 aa aa ff ff 00 00 55 55 aa aa ff ff 00 00 51 55"
     " aa aa ff ff b1 49 b1 7b 0a 4d", "uint16", 2, (129,), 1.0, _ex_12_6()),
    ("00 82 06 30 00 fc 0e 96 ac 01", "int8", 2, (10,), 1.0,
     np.array([0, 1, 0, -1, 0, 120, 0, 1, 2, 1], np.int8)),
    ("00 10 52 00 08 02 c8 05 dc f7 02 00", "float32", 3, (6,), 1000.0,
     np.array([0, 0.09900582, 0.99986184, 9.990059, np.nan, -1.0], np.float32)),
]  # fmt: skip


@pytest.mark.parametrize(("hexbytes", "dtype", "comp", "shape", "sf", "expected"), WORKED)
def test_worked_examples(hexbytes, dtype, comp, shape, sf, expected):
    data = _h(hexbytes)
    values, used = _native.decode_chunk(
        exact(data), dtype, comp, int(np.prod(shape)), shape[-1], sf
    )
    assert used == len(data)
    np.testing.assert_array_equal(values.reshape(shape), expected)


def test_worked_example_12_5_quirk_k2():
    """float64 xor2d works on 32-bit words: value 2 becomes 0x400800003FF00000."""
    data = _h("01 8d 1e 0c 00 00 f0 3f 00 00 fc 0f fe e7 ff 00 a0 ff f3 ff 01 10")
    # decode the fpx stream alone (1-D view: no filter) to see the filtered doubles
    values, _ = _native.decode_chunk(exact(data), "float64", 1, 6, 6)
    assert int(bits(values)[2]) == 0x400800003FF00000


# ---------------------------------------------------------------------------
# 4. corrupt input: values or OmCodecError, never a crash (runs in this process)


def _valid_chunks(tmp_path):
    rng = np.random.default_rng(7)
    out = []
    for i, (dtype, comp) in enumerate(PAIRS):
        for kind, shape in ((0, (3, 300)), (3, (700,)), (1, (9, 40))):
            a = make_data(rng, dtype, shape, kind)
            chunk, rec, _ = reference_chunk(tmp_path / f"c{i}_{kind}.om", a, comp, 20.0, 0.0)
            out.append((chunk, rec, shape))
    return out


def _try_decode(data, rec, shape, **kw):
    try:
        values, used = decode_ref_chunk(data, rec, shape, **kw)
    except OmCodecError:
        return None
    assert 0 < used <= len(data)
    assert values.size == int(np.prod(shape))
    return used


def test_truncated_chunks_raise(tmp_path):
    for chunk, rec, shape in _valid_chunks(tmp_path):
        for cut in sorted(
            {0, 1, 2, len(chunk) // 3, len(chunk) // 2, len(chunk) - 2, len(chunk) - 1}
        ):
            if 0 <= cut < len(chunk):
                with pytest.raises(OmCodecError):
                    decode_ref_chunk(chunk[:cut], rec, shape)


def test_random_corruption_never_crashes(tmp_path):
    rng = np.random.default_rng(11)
    for chunk, rec, shape in _valid_chunks(tmp_path):
        for _ in range(60):
            b = bytearray(chunk)
            for _ in range(int(rng.integers(1, 6))):
                b[int(rng.integers(len(b)))] = int(rng.integers(256))
            cut = len(b) if rng.random() < 0.7 else int(rng.integers(len(b) + 1))
            _try_decode(bytes(b[:cut]), rec, shape, x86_lanes=bool(rng.random() < 0.5))
        for _ in range(10):  # arbitrary bytes
            _try_decode(rng.bytes(int(rng.integers(0, 3 * len(chunk)))), rec, shape)


@settings(SETTINGS, max_examples=300)
@given(
    data=st.binary(min_size=0, max_size=600),
    pair=st.sampled_from(PAIRS),
    n=st.integers(1, 700),
    rows=st.integers(1, 4),
)
def test_fuzz_decode_chunk(data, pair, n, rows):
    dtype, comp = pair
    try:
        values, used = _native.decode_chunk(
            exact(data), dtype, COMPRESSION_IDS[comp], n * rows, n, 3.0, 1.0
        )
    except OmCodecError:
        return
    assert 0 < used <= len(data) and values.size == n * rows


def test_fuzz_decode_lut():
    rng = np.random.default_rng(3)
    for _ in range(2000):
        data = rng.bytes(int(rng.integers(0, 200)))
        try:
            out = _native.decode_lut(
                exact(data), int(rng.integers(1, 200)), int(rng.integers(1, 40))
            )
        except OmCodecError:
            continue
        assert out.dtype == np.uint64


BAD_STREAMS = [
    ("int16", 2, "00 11 ff ff ff ff"),  # plain b = 17 > 16
    ("int8", 2, "00 09 ff ff"),  # plain b = 9 > 8
    ("int32", 2, "00 21" + " ff" * 8),  # plain b = 33 > 32
    ("int16", 2, "00 82 00 01 00 00"),  # bitmap bx = 0
    ("int16", 2, "00 82 11 01 00 00 00 00"),  # bitmap bx = 17 > 16
    ("int16", 2, "00 42 03 00 00 00 00 00 00 00"),  # vb xn = 3 > m = 1
    ("int16", 2, "00 42 01 00 05 05"),  # vb position 5 >= m = 1 (n = 2)
    ("int16", 2, "00 42 01 00 f9 01 02 03 00"),  # vb long form (3 bytes) wider than 16 bits
    ("int8", 2, "00 41 01 00 05 00"),  # vb mode does not exist for W = 8
    ("int16", 2, "00 d1 ff ff ff"),  # constant b = 17
]


@pytest.mark.parametrize(("dtype", "comp", "hexbytes"), BAD_STREAMS)
def test_invalid_fields_are_rejected(dtype, comp, hexbytes):
    with pytest.raises(OmCodecError):
        _native.decode_chunk(exact(_h(hexbytes)), dtype, comp, 2, 2)


def test_valid_minimal_streams():
    """The counterparts of the rejected streams with legal fields decode."""
    assert _native.decode_chunk(_h("05 10 01 00"), "int16", 2, 2, 2)[0].tolist() == [5, 5 + -1]
    v, used = _native.decode_chunk(_h("00 42 01 00 04 00"), "uint16", 2, 2, 2)  # b=2, high 4 at 0
    assert used == 6 and v.tolist() == [0, 16]
    v, used = _native.decode_chunk(
        _h("00 3f 01 00 00 00 00 00 00 80"), "uint64", 2, 2, 2
    )  # b 63=64
    assert used == 10 and v.tolist() == [0, 2**63 + 1]


@pytest.mark.parametrize(
    ("dtype", "hexbytes", "n", "expected"),
    [
        # fpx: a width field hb >= W means "all XORs zero" (quirk K4), whatever else
        ("float32", "ff 00", 3, [0, 0, 0]),
        ("float32", "21 00", 2, [0, 0]),
        ("float64", "40 00", 2, [0, 0]),
        ("float64", "c8 00", 1, [0]),
        # the first group sets a value, the all-zero second group repeats it
        ("float32", "00 20" + " 00 00 80 3f" * 128 + " ff 00", 130, None),
    ],
)
def test_fpx_zero_groups(dtype, hexbytes, n, expected):
    data = _h(hexbytes)
    values, used = _native.decode_chunk(exact(data), dtype, 1, n, n)
    assert used == len(data)
    if expected is not None:
        assert bits(values).tolist() == expected
    else:  # 128 raw words rbit'ed and XOR-chained, then the last value twice more
        assert bits(values)[128] == bits(values)[127] == bits(values)[129]


def test_fuzz_decode_select():
    """Garbage chunk bytes and ranges through the many-chunk path: values or
    OmCodecError, never a crash."""
    rng = np.random.default_rng(21)
    for i in range(300):
        dtype, comp = PAIRS[i % len(PAIRS)]
        ndim = int(rng.integers(1, 4))
        dims = tuple(int(rng.integers(1, 30)) for _ in range(ndim))
        chunks = tuple(int(rng.integers(1, d + 1)) for d in dims)
        codec = _native.ArrayCodec(
            {v: k for k, v in _DT.items()}[dtype], COMPRESSION_IDS[comp], dims, chunks, 7.0, 1.0
        )
        n_chunks = int(np.prod([-(-d // c) for d, c in zip(dims, chunks, strict=True)]))
        data = exact(rng.bytes(int(rng.integers(0, 400))))
        k = int(rng.integers(1, n_chunks + 1))
        idx = rng.choice(n_chunks, size=k, replace=False).astype(np.uint64)
        off = rng.integers(0, len(data) + 1, size=k).astype(np.uint64)
        ln = np.minimum(rng.integers(0, 80, size=k), len(data) - off).astype(np.uint64)
        sel = [_random_index(rng, d) for d in dims]
        out = np.zeros([len(s) for s in sel], codec.dtype)
        try:
            _native.decode_select(codec, out, sel, idx, data, off, ln)
        except OmCodecError:
            pass
        # Elements of chunks not listed are never written, whatever the bytes.
        grid = [-(-d // c) for d, c in zip(dims, chunks, strict=True)]
        coords = np.meshgrid(
            *[s // c for s, c in zip(sel, chunks, strict=True)], indexing="ij", sparse=True
        )
        listed = np.isin(np.ravel_multi_index(coords, grid), idx.astype(np.int64))
        assert not out.view(f"u{out.itemsize}")[~listed].any()


def test_geometry_errors():
    with pytest.raises(OmCodecError):
        _native.decode_chunk(b"\x00", "int16", 2, 5, 2)  # 5 values are not rows of 2


# ---------------------------------------------------------------------------
# 5. SIMD and portable paths agree


def test_simd_levels_identical(tmp_path, simd_levels):
    rng = np.random.default_rng(5)
    cases_ = []
    for i, (dtype, comp) in enumerate(PAIRS):
        for kind, shape in (
            (0, (40, 300)),
            (1, (3, 7, 129)),
            (3, (5000,)),
            (5, (300, 17)),
            (4, (64, 65)),
            (0, (400, 3)),  # short rows: the vector kernels must not filter
            (1, (300, 6)),
            (0, (150, 12)),
        ):
            a = make_data(rng, dtype, shape, kind)
            chunk, rec, ref = reference_chunk(tmp_path / f"s{i}_{kind}.om", a, comp, 20.0, 0.25)
            cases_.append((chunk, rec, shape, ref))
    # an fpx float64 chunk with V64 blocks of b <= 32, both lane orders
    a = (np.arange(3000) % 11).astype(np.float64).reshape(30, 100)
    chunk, rec, ref = reference_chunk(tmp_path / "k3.om", a, "fpx_xor_2d")
    cases_.append((chunk, rec, a.shape, ref))
    lanes_at_0 = {}
    for level in simd_levels:
        assert lib.om_set_simd_level(level) == level
        for k, (chunk, rec, shape, ref) in enumerate(cases_):
            values, used = decode_ref_chunk(chunk, rec, shape)
            assert used == len(chunk)
            assert_bitwise(values.reshape(shape), ref)
            if rec.compression == 1 and rec.data_type == 21:
                lanes, _ = decode_ref_chunk(chunk, rec, shape, x86_lanes=True)
                assert_bitwise(lanes, lanes_at_0.setdefault(k, lanes))


# ---------------------------------------------------------------------------
# 6. decode_select


def _multichunk(tmp_path, rng, dtype, comp, shape, chunks):
    a = make_data(rng, dtype, shape, int(rng.integers(0, 5)))
    raw, rec, ref = write_reference(tmp_path / "m.om", a, comp, 10.0, 0.0, chunks)
    n_chunks = int(np.prod([-(-d // c) for d, c in zip(shape, chunks, strict=True)]))
    stride = rec.lut_size // -(-(n_chunks + 1) // 64)
    lut = _native.decode_lut(
        raw[rec.lut_offset : rec.lut_offset + rec.lut_size], n_chunks + 1, stride
    )
    codec = _native.ArrayCodec(
        rec.data_type,
        rec.compression,
        tuple(shape),
        tuple(chunks),
        rec.scale_factor,
        rec.add_offset,
    )
    return raw, codec, lut, ref


def _random_index(rng, d):
    k = rng.integers(0, 5)
    if k == 0:
        return np.arange(d)
    if k == 1:  # slice with a step, maybe reversed
        step = int(rng.integers(1, 4)) * (1 if rng.random() < 0.5 else -1)
        return np.arange(d)[slice(int(rng.integers(0, d)), None, step)]
    if k == 2:  # integer array with repeats
        return rng.integers(0, d, size=int(rng.integers(1, 2 * d + 1)))
    if k == 3:
        return np.array([int(rng.integers(0, d))])
    return np.arange(d)[int(rng.integers(0, d)) :: -1]


@settings(SETTINGS, max_examples=60)
@given(seed=st.integers(0, 2**32 - 1))
def test_decode_select_matches_numpy(tmp_path_factory, seed):
    rng = np.random.default_rng(seed)
    dtype, comp = PAIRS[int(rng.integers(len(PAIRS)))]
    ndim = int(rng.integers(1, 5))
    shape = tuple(int(rng.integers(1, [500, 40, 14, 8][ndim - 1] + 1)) for _ in range(ndim))
    chunks = tuple(int(rng.integers(1, d + 1)) for d in shape)
    raw, codec, lut, ref = _multichunk(
        tmp_path_factory.mktemp("sel"), rng, dtype, comp, shape, chunks
    )
    sel = [_random_index(rng, d) for d in shape]
    out = np.empty([len(s) for s in sel], codec.dtype)
    idx = np.arange(lut.size - 1, dtype=np.uint64)
    rng.shuffle(idx)  # any order
    _native.decode_select(codec, out, sel, idx, exact(raw), lut[idx], lut[idx + 1] - lut[idx])
    assert_bitwise(out, ref[np.ix_(*sel)])


@pytest.mark.parametrize(
    ("dtype", "comp", "shape", "chunks"),
    [
        ("float32", "pfor_delta_2d_int16", (60, 70), (7, 20)),
        ("float32", "pfor_delta_2d_int16_logarithmic", (9, 300), (4, 128)),
        ("float32", "pfor_delta_2d", (3, 40, 50), (2, 9, 25)),
        ("float64", "pfor_delta_2d", (5, 6, 7, 40), (2, 3, 4, 17)),
        ("float32", "fpx_xor_2d", (33, 64), (8, 16)),
        ("int16", "pfor_delta_2d", (3000,), (1,)),
    ],
)
def test_decode_select_paths(tmp_path, dtype, comp, shape, chunks):
    """Whole chunks decoded in one piece, row by row into the output, or via
    scatter; chunk ranges from the table or from binary search."""
    rng = np.random.default_rng(len(shape))
    raw, codec, lut, ref = _multichunk(tmp_path, rng, dtype, comp, shape, chunks)
    idx = np.arange(lut.size - 1, dtype=np.uint64)
    selections = [
        [np.arange(d) for d in shape],  # everything
        [np.arange(d)[1:-1] for d in shape],  # edge chunks partly
        [np.arange(d)[::-1] for d in shape],  # reversed
        [np.array([0, d - 1, d // 2, d - 1]) for d in shape],  # sparse, far apart
    ]
    for sel in selections:
        out = np.empty([len(s) for s in sel], codec.dtype)
        _native.decode_select(codec, out, sel, idx, exact(raw), lut[:-1], np.diff(lut))
        assert_bitwise(out, ref[np.ix_(*sel)])


def test_decode_select_only_listed_chunks(tmp_path):
    rng = np.random.default_rng(1)
    raw, codec, lut, ref = _multichunk(tmp_path, rng, "int32", "pfor_delta_2d", (10, 9), (4, 4))
    # chunk grid 3 x 3; list only the centre chunk (rows 4..7, cols 4..7)
    out = np.full((10, 9), -12345, np.int32)
    sel = [np.arange(10), np.arange(9)]
    _native.decode_select(codec, out, sel, np.array([4]), raw, lut[4:5], lut[5:6] - lut[4:5])
    mask = np.zeros((10, 9), bool)
    mask[4:8, 4:8] = True
    assert (out[mask] == ref[mask]).all() and (out[~mask] == -12345).all()


def test_decode_select_errors(tmp_path):
    rng = np.random.default_rng(2)
    raw, codec, lut, _ = _multichunk(
        tmp_path, rng, "float32", "pfor_delta_2d_int16", (50, 30), (20, 7)
    )
    out = np.empty((50, 30), np.float32)
    sel = [np.arange(50), np.arange(30)]
    idx = np.arange(lut.size - 1, dtype=np.uint64)
    off, ln = lut[:-1], np.diff(lut)
    with pytest.raises(OmCodecError, match="chunk 3"):  # one byte too many
        bigger = ln.copy()
        bigger[3] += 1
        _native.decode_select(codec, out, sel, idx, raw, off, bigger)
    with pytest.raises(OmCodecError, match="chunk 0"):  # truncated
        shorter = ln.copy()
        shorter[0] -= 1
        _native.decode_select(codec, out, sel, idx, raw, off, shorter)
    with pytest.raises(OmCodecError):  # range outside the data
        _native.decode_select(codec, out, sel, idx, raw[:100], off, ln)
    with pytest.raises(OmCodecError):  # chunk index out of range
        _native.decode_select(codec, out, sel, idx + np.uint64(1), raw, off, ln)
    with pytest.raises(OmCodecError):  # selection outside the array
        _native.decode_select(codec, out, [np.arange(50), np.arange(1, 31)], idx, raw, off, ln)
    with pytest.raises(OmCodecError):
        _native.decode_select(codec, out, [np.arange(-1, 49), np.arange(30)], idx, raw, off, ln)


def test_decode_select_huge_claimed_chunk_is_rejected():
    """A record claiming giant chunks must not make the decoder allocate them."""
    codec = _native.ArrayCodec(14, 2, (2**40, 2**20), (2**40, 2**20))
    out = np.empty((1, 1), np.int16)
    with pytest.raises(OmCodecError):
        _native.decode_select(
            codec, out, [np.array([0]), np.array([0])], np.array([0]), b"\x00" * 16,
            np.array([0]), np.array([16]),
        )  # fmt: skip


@settings(SETTINGS, max_examples=80)
@given(seed=st.integers(0, 2**32 - 1))
def test_decode_select_partial_chunks_match_reference(tmp_path_factory, seed):
    """Small boxes inside multi-row chunks: the decoder stops after the last row
    holding a selected element and converts only the selected integers; values
    must equal the reference reader's read of the same box."""
    rng = np.random.default_rng(seed)
    dtype, comp = PAIRS[int(rng.integers(len(PAIRS)))]
    ndim = int(rng.integers(1, 5))
    shape = tuple(int(rng.integers(2, [700, 40, 14, 8][ndim - 1] + 1)) for _ in range(ndim))
    chunks = tuple(int(rng.integers(1, d + 1)) for d in shape)
    path = tmp_path_factory.mktemp("part") / "m.om"
    raw, codec, lut, ref = _multichunk(path.parent, rng, dtype, comp, shape, chunks)
    box = []
    for d in shape:
        a = int(rng.integers(0, d))
        box.append(slice(a, min(d, a + int(rng.integers(1, 4)))))
    sel = [np.arange(s.start, s.stop) for s in box]
    out = np.empty([len(s) for s in sel], codec.dtype)
    idx = np.arange(lut.size - 1, dtype=np.uint64)
    _native.decode_select(codec, out, sel, idx, exact(raw), lut[:-1], np.diff(lut))
    want = omfiles.OmFileReader(str(path))[tuple(box)]
    assert_bitwise(out, np.asarray(want).reshape(out.shape))
    assert_bitwise(out, ref[tuple(box)])


def test_decode_select_partial_chunk_stops_early(tmp_path):
    """Only the rows up to the last selected one are decoded: a chunk whose bytes
    end early still serves its first rows, and the whole chunk is still checked
    when every row is needed."""
    rng = np.random.default_rng(5)
    for dtype, comp in [("float32", "pfor_delta_2d_int16"), ("float32", "fpx_xor_2d")]:
        raw, codec, lut, ref = _multichunk(tmp_path, rng, dtype, comp, (64, 300), (64, 300))
        cut = exact(raw[: int(lut[0]) + (int(lut[1]) - int(lut[0])) // 2])
        half = int(np.diff(lut)[0]) // 2
        out = np.empty((1, 300), codec.dtype)
        sel = [np.array([0]), np.arange(300)]
        _native.decode_select(codec, out, sel, np.array([0]), cut, lut[:1], np.array([half]))
        assert_bitwise(out, ref[:1])
        with pytest.raises(OmCodecError):
            sel = [np.array([63]), np.arange(300)]
            _native.decode_select(codec, out, sel, np.array([0]), cut, lut[:1], np.array([half]))


@settings(SETTINGS, max_examples=80)
@given(seed=st.integers(0, 2**32 - 1))
def test_decode_select_sparse_columns_match_reference(tmp_path_factory, seed):
    """A few columns of long chunk rows (a time step through time-major chunks):
    the decoder sums the stream between wanted positions and filters down those
    columns only; values must equal the reference reader's."""
    rng = np.random.default_rng(seed)
    dtype, comp = PAIRS[int(rng.integers(len(PAIRS)))]
    ndim = int(rng.integers(1, 4))
    nt = int(rng.integers(16, 900))
    shape = (*[int(rng.integers(1, 12)) for _ in range(ndim - 1)], nt)
    chunks = (*[int(rng.integers(1, d + 1)) for d in shape[:-1]], int(rng.integers(8, nt + 1)))
    raw, codec, lut, ref = _multichunk(
        tmp_path_factory.mktemp("sparse"), rng, dtype, comp, shape, chunks
    )
    sel = [_random_index(rng, d) for d in shape[:-1]]
    k = int(rng.integers(1, 5))
    last = rng.integers(0, shape[-1], size=k)  # unsorted, maybe repeated columns
    if rng.random() < 0.5:
        last = np.sort(last)
    sel.append(last)
    out = np.empty([len(s) for s in sel], codec.dtype)
    idx = np.arange(lut.size - 1, dtype=np.uint64)
    _native.decode_select(codec, out, sel, idx, exact(raw), lut[:-1], np.diff(lut))
    assert_bitwise(out, ref[np.ix_(*sel)])


def test_decode_select_sparse_columns_check_sizes(tmp_path):
    """Sparse columns keep the checks: a chunk needed to its last row must use
    exactly its byte range, a truncated one fails where its bytes are needed."""
    rng = np.random.default_rng(7)
    for dtype, comp in [("float32", "pfor_delta_2d_int16"), ("float32", "fpx_xor_2d")]:
        raw, codec, lut, ref = _multichunk(tmp_path, rng, dtype, comp, (64, 300), (64, 300))
        ln = int(np.diff(lut)[0])
        sel = [np.arange(64), np.array([5])]
        out = np.empty((64, 1), codec.dtype)
        _native.decode_select(codec, out, sel, np.array([0]), exact(raw), lut[:1], np.array([ln]))
        assert_bitwise(out, ref[:, 5:6])
        with pytest.raises(OmCodecError, match="chunk 0"):
            _native.decode_select(
                codec, out, sel, np.array([0]), exact(raw + b"\0"), lut[:1], np.array([ln + 1])
            )
        cut = exact(raw[: int(lut[0]) + ln // 2])
        first = [np.array([0, 1]), np.array([5])]
        out2 = np.empty((2, 1), codec.dtype)
        _native.decode_select(codec, out2, first, np.array([0]), cut, lut[:1], np.array([ln // 2]))
        assert_bitwise(out2, ref[:2, 5:6])
        with pytest.raises(OmCodecError):
            _native.decode_select(codec, out, sel, np.array([0]), cut, lut[:1], np.array([ln // 2]))


def test_fuzz_decode_select_partial_and_sparse(tmp_path):
    """Valid chunks with flipped bytes or cut short, read through the partial-row
    and sparse-column paths: values or OmCodecError, never a crash or a write
    outside the selection."""
    rng = np.random.default_rng(33)
    for i in range(120):
        dtype, comp = PAIRS[i % len(PAIRS)]
        shape = (int(rng.integers(2, 6)), int(rng.integers(16, 300)))
        chunks = (int(rng.integers(2, shape[0] + 1)), int(rng.integers(16, shape[1] + 1)))
        raw, codec, lut, _ = _multichunk(tmp_path, rng, dtype, comp, shape, chunks)
        buf = bytearray(raw)
        for _ in range(int(rng.integers(1, 6))):
            p = int(rng.integers(int(lut[0]), int(lut[-1])))
            buf[p] ^= 1 << int(rng.integers(8))
        ln = np.diff(lut)
        if rng.random() < 0.3:
            ln = np.maximum(ln // 2, 1)
        k = int(rng.integers(1, 4))
        sel = [np.array([int(rng.integers(shape[0]))]), rng.integers(0, shape[1], size=k)]
        if rng.random() < 0.5:
            sel[1] = np.arange(int(rng.integers(0, shape[1] - 3)), shape[1])
        out = np.zeros([len(s) for s in sel], codec.dtype)
        idx = np.arange(lut.size - 1, dtype=np.uint64)
        try:
            _native.decode_select(codec, out, sel, idx, exact(bytes(buf)), lut[:-1], ln)
        except OmCodecError:
            pass


# ---------------------------------------------------------------------------
# 7. decode_select: a few rows of many (time series through chunks of many series)


def _rowsel_case(rng, dtype, comp):
    """Chunks of many rows; a selection of 1..4 rows (maybe repeated, any order)
    and more than 1 in 8 of the columns, so the row-selection path runs."""
    nrow = int(rng.integers(2, 40))
    L = int(rng.integers(1, 400)) if rng.random() < 0.8 else int(rng.integers(1, 9))
    lead = int(rng.integers(1, 5))
    shape = (lead, nrow, L)
    chunks = (int(rng.integers(1, lead + 1)), int(rng.integers(2, nrow + 1)), L)
    k = int(rng.integers(1, 5))
    sel = [
        rng.integers(0, lead, size=int(rng.integers(1, 3))),
        rng.integers(0, nrow, size=k),
        np.arange(L) if rng.random() < 0.7 else np.arange(L)[int(rng.integers(0, L)) :],
    ]
    return shape, chunks, sel


@settings(SETTINGS, max_examples=80)
@given(seed=st.integers(0, 2**32 - 1))
def test_decode_select_few_rows_match_reference(tmp_path_factory, seed):
    """The row-selection path (accumulate each column's deltas, one scan per
    selected row) gives the reference reader's values, at every SIMD level."""
    rng = np.random.default_rng(seed)
    dtype, comp = PAIRS[int(rng.integers(len(PAIRS)))]
    shape, chunks, sel = _rowsel_case(rng, dtype, comp)
    path = tmp_path_factory.mktemp("rows")
    raw, codec, lut, ref = _multichunk(path, rng, dtype, comp, shape, chunks)
    idx = np.arange(lut.size - 1, dtype=np.uint64)
    want = ref[np.ix_(*sel)]
    best = lib.om_set_simd_level(-1)
    try:
        for level in range(best + 1):
            lib.om_set_simd_level(level)
            out = np.empty([len(s) for s in sel], codec.dtype)
            _native.decode_select(codec, out, sel, idx, exact(raw), lut[:-1], np.diff(lut))
            assert_bitwise(out, want)
    finally:
        lib.om_set_simd_level(-1)


@pytest.mark.parametrize(("dtype", "comp"), PAIRS)
def test_decode_select_last_row_of_big_chunk(tmp_path, dtype, comp):
    """One whole row (first, middle, last) of 64-row chunks whose rows are not a
    multiple of the 128-value blocks, against the reference's own point read."""
    rng = np.random.default_rng(11)
    shape, chunks = (8, 8, 301), (8, 8, 301)
    raw, codec, lut, ref = _multichunk(tmp_path, rng, dtype, comp, shape, chunks)
    reader = omfiles.OmFileReader(str(tmp_path / "m.om"))
    for i, j in [(0, 0), (3, 4), (7, 7), (7, 0)]:
        out = np.empty((1, 1, 301), codec.dtype)
        sel = [np.array([i]), np.array([j]), np.arange(301)]
        _native.decode_select(
            codec, out, sel, np.array([0]), exact(raw), lut[:1], lut[1:2] - lut[:1]
        )
        assert_bitwise(out, np.asarray(reader[i : i + 1, j : j + 1, :]))
        assert_bitwise(out, ref[i : i + 1, j : j + 1, :])


def test_decode_select_few_rows_check_sizes(tmp_path):
    """The row-selection path keeps the checks of the partial decode: the last
    row needs exactly the chunk's bytes; a cut chunk serves its first rows and
    fails for later ones; flipped bytes give values or OmCodecError."""
    rng = np.random.default_rng(9)
    for dtype, comp in [("float32", "pfor_delta_2d_int16"), ("float32", "fpx_xor_2d"),
                        ("int32", "pfor_delta_2d"), ("float64", "pfor_delta_2d")]:  # fmt: skip
        raw, codec, lut, ref = _multichunk(tmp_path, rng, dtype, comp, (64, 300), (64, 300))
        ln = int(np.diff(lut)[0])
        out = np.empty((1, 300), codec.dtype)
        last = [np.array([63]), np.arange(300)]
        _native.decode_select(codec, out, last, np.array([0]), exact(raw), lut[:1], np.array([ln]))
        assert_bitwise(out, ref[63:64])
        with pytest.raises(OmCodecError, match="chunk 0"):
            _native.decode_select(
                codec, out, last, np.array([0]), exact(raw + b"\0"), lut[:1], np.array([ln + 1])
            )
        # one byte short: only the last block (row 63) lacks bytes
        cut = exact(raw[: int(lut[0]) + ln - 1])
        out2 = np.empty((2, 300), codec.dtype)
        first = [np.array([3, 1]), np.arange(300)]
        _native.decode_select(codec, out2, first, np.array([0]), cut, lut[:1], np.array([ln - 1]))
        assert_bitwise(out2, ref[[3, 1]])
        with pytest.raises(OmCodecError):
            _native.decode_select(codec, out, last, np.array([0]), cut, lut[:1], np.array([ln - 1]))
        for _ in range(30):
            buf = bytearray(raw)
            for _ in range(int(rng.integers(1, 4))):
                buf[int(rng.integers(int(lut[0]), int(lut[1])))] ^= 1 << int(rng.integers(8))
            try:
                _native.decode_select(
                    codec, out, last, np.array([0]), exact(bytes(buf)), lut[:1], np.array([ln])
                )
            except OmCodecError:
                pass


_NO_SIMD_SCRIPT = """
import hashlib, sys
import numpy as np
sys.path.insert(0, {tests!r})
import test_native_decode as t
from xarray_om import _native
from pathlib import Path
tmp = Path({tmp!r})
rng = np.random.default_rng(3)
print(_native.lib.om_simd_level())
for i, (dtype, comp) in enumerate(t.PAIRS):
    for shape, chunks in (((8, 8, 301), (8, 8, 301)), ((3, 40, 129), (2, 17, 129)),
                          ((5000,), (1000,)), ((64, 65), (64, 65))):
        d = tmp / f"{{i}}_{{len(shape)}}_{{shape[-1]}}"
        d.mkdir(exist_ok=True)
        raw, codec, lut, ref = t._multichunk(d, rng, dtype, comp, shape, chunks)
        idx = np.arange(lut.size - 1, dtype=np.uint64)
        sels = [[np.arange(s) for s in shape], [np.array([s - 1]) for s in shape[:-1]]
                + [np.arange(shape[-1])], [np.arange(s)[::3] for s in shape]]
        for sel in sels:
            out = np.empty([len(s) for s in sel], codec.dtype)
            _native.decode_select(codec, out, sel, idx, t.exact(raw), lut[:-1], np.diff(lut))
            t.assert_bitwise(out, ref[np.ix_(*sel)])
            print(dtype, comp, shape, hashlib.sha1(out.tobytes()).hexdigest())
"""


def test_portable_decoders_read_the_same_values(tmp_path):
    """OM_NATIVE_NO_SIMD=1 (portable decoders, chosen at load time) and the
    best SIMD build decode every pair to the same bytes (whole chunks, a last
    row, strided selections)."""
    import os
    import subprocess
    import sys

    outs = []
    for flag in ("1", ""):
        sub = tmp_path / (flag or "simd")
        sub.mkdir()
        script = _NO_SIMD_SCRIPT.format(tests=str(Path(__file__).parent), tmp=str(sub))
        env = {**os.environ, "OM_NATIVE_NO_SIMD": flag}
        r = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
        )
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout.splitlines())
    assert outs[0][0] == "0" and outs[1][0] != "0"  # the flag took effect
    assert len(outs[0]) == 1 + len(PAIRS) * 4 * 3
    assert outs[0][1:] == outs[1][1:]
