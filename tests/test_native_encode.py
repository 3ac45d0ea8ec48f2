"""Native encoders against the codec spec's worked examples and the reference.

Reference bytes come from files written by ``omfiles`` (tests/_refbytes.py);
the reference leaves padding bits of bit-packed areas uninitialised (quirk
K1), so comparisons mask exactly the padding bits found by walking the stream
structure (tests/_padding.py) and additionally require ours to be zero there.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from _padding import FPX, PFOR, block_modes, lut_padding_bits, mask_bytes, padding_bits
from _refbytes import VALID_PAIRS, read_om, write_ref
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xarray_om._native import (
    ArrayCodec,
    decode_chunk,
    decode_lut,
    encode_block,
    encode_chunk,
    encode_lut,
)
from xarray_om._om_native import ffi, lib
from xarray_om.errors import OmEncodingError
from xarray_om.format.records import array_type_for, encode_array_record, encode_trailer

SETTINGS = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# --------------------------------------------------------------------------- helpers


def stream_kind(dtype: np.dtype, compression: int) -> tuple[str, int, bool]:
    """(walker kind, coder width W, vertical full blocks) per codec spec table 1."""
    dtype = np.dtype(dtype)
    if compression == 1:
        return FPX, dtype.itemsize * 8, True
    if compression in (0, 3):
        return PFOR, 16, True
    width = dtype.itemsize * 8
    return PFOR, width, width in (16, 32)


def assert_same_stream(ours: bytes, ref: bytes, n: int, dtype, compression: int) -> None:
    """Equal length, equal bytes outside padding bits, and our padding bits zero."""
    assert len(ours) == len(ref), f"length {len(ours)} != reference {len(ref)}"
    kind, width, v128 = stream_kind(dtype, compression)
    pad = padding_bits(ref, n, width, kind, v128=v128)
    assert padding_bits(ours, n, width, kind, v128=v128) == pad
    assert mask_bytes(ours, pad) == mask_bytes(ref, pad)
    assert not any((ours[b >> 3] >> (b & 7)) & 1 for b in pad), "non-zero padding bit"


def split_shape(n: int, ndim: int, rng: np.random.Generator) -> tuple[int, ...]:
    """A random ndim-D shape with n elements (leading dims are divisors of n)."""
    shape = []
    rest = n
    for _ in range(ndim - 1):
        divisors = [d for d in range(1, min(rest, 64) + 1) if rest % d == 0]
        d = int(rng.choice(divisors))
        shape.append(d)
        rest //= d
    shape.append(rest)
    return tuple(shape)


FLOAT_KINDS = ["smooth", "noisy", "constant", "extreme", "nan", "small_ints", "precip"]
INT_KINDS = ["smooth", "noisy", "constant", "extreme", "outliers", "ramp"]


def make_data(dtype, n: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """n values of one of the data families the reference was checked on."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        fi = np.finfo(dtype)
        if kind == "smooth":
            a = 15 + np.cumsum(rng.normal(0, 0.2, n))
        elif kind == "noisy":
            a = rng.normal(0, 10.0 ** rng.integers(-3, 6), n)
        elif kind == "constant":
            a = np.full(n, rng.normal(0, 100))
        elif kind == "extreme":
            pool = [
                0.0,
                -0.0,
                1.0,
                -1.0,
                fi.max,
                fi.min,
                fi.tiny,
                fi.smallest_subnormal,
                1e30,
                -1e30,
                np.inf,
                -np.inf,
                np.nan,
                0.5,
                -0.5,
                2.5,
                -2.5,
                0.49999997,
                1e9,
                2.0**31,
                -(2.0**31),
                2.0**63,
                32766.5,
                -32768.5,
            ]
            a = rng.choice(np.array(pool, dtype), n)
        elif kind == "nan":
            a = np.round(np.cumsum(rng.normal(0, 0.3, n)), 1)
            a[rng.random(n) < 0.2] = np.nan
            a[rng.random(n) < 0.01] = rng.choice([np.inf, -np.inf])
        elif kind == "small_ints":  # few mantissa bits: fpx float64 hits the V64/K3 path
            a = (np.arange(n) % rng.integers(2, 20)).astype(float)
        else:  # precipitation-like: mostly zero, bursts, -1/-2 markers
            a = np.where(rng.random(n) < 0.8, 0.0, rng.gamma(0.5, 3.0, n))
            a[rng.random(n) < 0.01] = rng.choice([-1.0, -2.0])
        with np.errstate(over="ignore", invalid="ignore"):
            return np.asarray(a).astype(dtype)
    ii = np.iinfo(dtype)
    if kind == "smooth":
        start = int(rng.integers(ii.min // 2, ii.max // 2, endpoint=True))
        a = start + np.cumsum(rng.integers(-3, 4, n))
        return np.clip(a, ii.min, ii.max).astype(dtype)
    if kind == "noisy":
        return rng.integers(ii.min, ii.max, n, dtype=dtype, endpoint=True)
    if kind == "constant":
        return np.full(n, rng.integers(ii.min, ii.max, dtype=dtype, endpoint=True), dtype)
    if kind == "extreme":
        return rng.choice(np.array([ii.min, ii.max, 0, 1], dtype), n)
    if kind == "outliers":
        a = rng.integers(0, 10, n).astype(dtype)
        k = rng.random(n) < 0.03
        a[k] = rng.integers(ii.min, ii.max, int(k.sum()), dtype=dtype, endpoint=True)
        return a
    step = int(rng.integers(-1000, 1000))
    return (np.arange(n, dtype=np.int64) * step).astype(dtype)  # wraps like the W-bit ramp


@st.composite
def chunk_case(draw, dtype: str, compression: int):
    """(array, scale_factor, add_offset): sizes 1..100k, mostly small, 1-D..4-D."""
    sel = draw(st.integers(0, 99))
    if sel < 70:
        n = draw(st.integers(1, 300))
    elif sel < 96:
        n = draw(st.sampled_from([127, 128, 129, 255, 256, 257, 383, 384, 385, 1000, 4096]))
    else:
        n = draw(st.sampled_from([20_000, 100_000]))
    ndim = draw(st.integers(1, 4))
    kinds = FLOAT_KINDS if np.dtype(dtype).kind == "f" else INT_KINDS
    kind = draw(st.sampled_from(kinds))
    seed = draw(st.integers(0, 2**32 - 1))
    sf = draw(
        st.one_of(
            st.sampled_from([1.0, 10.0, 20.0, 100.0, 1000.0, 0.5, 1e6, 3.3, 0.0, -10.0, np.nan]),
            st.floats(0.0009765625, 65536.0, width=32),
        )
    )
    ao = draw(st.one_of(st.sampled_from([0.0, 5.5, -273.15, 1e-3]), st.floats(-1e4, 1e4, width=32)))
    rng = np.random.default_rng(seed)
    shape = split_shape(n, ndim, rng)
    return make_data(dtype, n, kind, rng).reshape(shape), float(sf), float(ao)


# --------------------------------------------------------------------------- spec section 12


def _h(s: str) -> bytes:
    return bytes.fromhex(s)


def _example_12_2() -> np.ndarray:
    a = np.array([1000 + i % 5 for i in range(130)], np.int32)
    a[40] = 1_000_000
    return a


def _example_12_6() -> np.ndarray:
    d = np.array([i % 4 for i in range(128)])
    d[10], d[77] = 1000, 1200
    return np.concatenate([[0], np.cumsum(d)]).astype(np.uint16)


SPEC_EXAMPLES = {
    "12.1": (np.array([100, 102, 101, 105, 90], np.int16), 2, 1.0, "64 05 24 a0 0e"),
    "12.2": (
        _example_12_2(),
        2,
        1.0,
        "83 e8 43 02 ba 24 5d 52 d2 25 e9 92 92 2e 49 97 92 74 49 82 2f 49 97 a4"
        "74 49 ba 24 a4 4b d2 25 24 5d 92 2e 4b d2 25 e9 5d 92 2e 49 e9 92 74 49"
        "49 97 a4 4b f4 e4 8e f4 e4 8e 27 28 c2 02",
    ),
    "12.3-equal": (np.full(200, 7, np.int16), 2, 1.0, "07 00 00"),
    "12.3-ramp": (np.arange(0, 1000, 5, dtype=np.int16), 2, 1.0, "00 c4 0a c4 0a"),
    "12.3-uint64": (np.full(3, 2**63 + 5, np.uint64), 2, 1.0, "ff 05 00 00 00 00 00 00 80 00"),
    "12.4": (
        np.array([[1.0, 1.1, np.nan, 1.3], [1.5, 1.4, 1.3, -0.05]], np.float32),
        0,
        10.0,
        "0a 84 0c 66 fe ef ff fe cf ff 82 f3 93 08",
    ),
    "12.5-1d": (np.array([1.0, 2.0, 3.0]), 1, 1.0, "01 0c fe f7 7f 00 08"),
    "12.5-2d": (
        np.array([[1.0, 2.0, 3.0], [1.5, 2.5, 3.5]]),
        1,
        1.0,
        "01 8d 1e 0c 00 00 f0 3f 00 00 fc 0f fe e7 ff 00 a0 ff f3 ff 01 10",
    ),
    "12.5-f32": (
        np.array([[1, 2, 3], [1.5, 2.5, 3.5]], np.float32),
        1,
        1.0,
        "01 0a fe fc 03 50 00 00 03 00",
    ),
    "12.6": (
        _example_12_6(),
        2,
        1.0,
        "00 42 02 00 00 55 55 a2 aa ff ff 00 00 55 55 aa aa ff ff"
        "00 00 55 55 aa aa ff ff 00 00 51 55 aa aa ff ff b1 49 b1 7b 0a 4d",
    ),
    "12.7": (
        np.array([0, 1, 0, -1, 0, 120, 0, 1, 2, 1], np.int8),
        2,
        1.0,
        "00 82 06 30 00 fc 0e 96 ac 01",
    ),
    "12.8": (
        np.array([0.0, 0.1, 1.0, 10.0, np.nan, -1.0], np.float32),
        3,
        1000.0,
        "00 10 52 00 08 02 c8 05 dc f7 02 00",
    ),
}


@pytest.mark.parametrize("name", sorted(SPEC_EXAMPLES))
def test_spec_worked_example(name):
    values, compression, sf, expected = SPEC_EXAMPLES[name]
    assert encode_chunk(values, compression, sf, x86_lanes=True) == _h(expected)


def test_container_lut_example():
    # container spec 6.5 (read_test.om): 10 entries, one group, stride 6
    data, stride = encode_lut(np.array([3, 7, 11, 14, 18, 22, 25, 28, 31, 32]))
    assert (data, stride) == (_h("03 03 e4 c8 6d 01"), 6)


# --------------------------------------------------------------------------- reference identity


@pytest.mark.parametrize(("dtype", "compression"), VALID_PAIRS)
@settings(SETTINGS, max_examples=150)
@given(data=st.data())
def test_chunk_matches_reference(tmp_path, dtype, compression, data):
    values, sf, ao = data.draw(chunk_case(dtype, compression))
    ref = write_ref(tmp_path / "ref.om", values, compression, sf, ao).chunk_data
    ours = encode_chunk(values, compression, sf, ao, x86_lanes=True)
    assert_same_stream(ours, ref, values.size, values.dtype, compression)


# Crafted PFor streams: blocks built from chosen base widths, exception
# fractions and exception widths, so that every block mode (plain, bitmap, vb,
# vb raw fallback, constant) occurs for every width and layout.

INT_DTYPES = ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64"]


def crafted_values(dtype, rng: np.random.Generator) -> np.ndarray:
    """Values whose coded deltas (zigzag for signed types) are crafted block by block."""
    dtype = np.dtype(dtype)
    width = dtype.itemsize * 8
    blocks = []
    for _ in range(int(rng.integers(1, 4))):
        blocks.append(128)
    blocks.append(int(rng.integers(0, 128)))
    codes = []
    for m in blocks:
        base = int(rng.integers(0, width + 1))
        style = rng.integers(0, 4)
        if style == 0:  # constant block
            v = np.full(
                m, int(rng.integers(0, 2**base, dtype=np.uint64, endpoint=False)) if base else 0
            )
            codes += [int(x) for x in v]
            continue
        vals = [
            int(x) for x in rng.integers(0, 2**base if base < 64 else 2**63, m, dtype=np.uint64)
        ]
        if base == 64:
            vals = [x | (int(rng.integers(0, 2)) << 63) for x in vals]
        frac = [0.0, 1 / 128, 0.03, 0.2, 0.6][int(rng.integers(0, 5))]
        for i in range(m):
            if rng.random() < frac:
                low = max(base, 1) if rng.random() < 0.5 else max(base, width - 8, 1)
                ex = int(rng.integers(low, width + 1))
                vals[i] = int(
                    rng.integers(2 ** (ex - 1), 2**ex - 1, dtype=np.uint64, endpoint=True)
                )
        codes += vals
    mod = 2**width
    start = int(rng.integers(0, 2**63, dtype=np.uint64)) % mod
    out = [start]
    for c in codes:
        d = (c >> 1) ^ (-(c & 1)) if dtype.kind == "i" else c  # undo zigzag
        out.append((out[-1] + d) % mod)
    return np.array(out, dtype=f"u{dtype.itemsize}").view(dtype)


def _modes(values: np.ndarray, data: bytes) -> set[tuple[str, bool]]:
    _, width, v128 = stream_kind(values.dtype, 2)
    return {(m, v) for m, _, v in block_modes(data, values.size, width, PFOR, v128=v128)}


@pytest.mark.parametrize("dtype", INT_DTYPES)
@settings(SETTINGS, max_examples=60)
@given(seed=st.integers(0, 2**63))
def test_crafted_streams_match_reference(tmp_path, dtype, seed):
    values = crafted_values(dtype, np.random.default_rng(seed))
    ref = write_ref(tmp_path / "x.om", values, 2).chunk_data
    assert_same_stream(encode_chunk(values, 2), ref, values.size, values.dtype, 2)


@pytest.mark.parametrize("dtype", INT_DTYPES)
def test_crafted_streams_cover_all_modes(tmp_path, dtype):
    """The crafted family reaches every mode; each stream is checked as well."""
    rng = np.random.default_rng(1234)
    seen: set[tuple[str, bool]] = set()
    widths64 = set()
    for _ in range(150):
        values = crafted_values(dtype, rng)
        ref = write_ref(tmp_path / "x.om", values, 2).chunk_data
        ours = encode_chunk(values, 2)
        assert_same_stream(ours, ref, values.size, values.dtype, 2)
        seen |= _modes(values, ours)
        if values.itemsize == 8:
            widths64 |= {b for _, b, _ in block_modes(ours, values.size, 64, PFOR)}
    width = np.dtype(dtype).itemsize * 8
    vertical = width in (16, 32)
    want = {("plain", False), ("bitmap", False), ("constant", False)}
    if vertical:
        want |= {("plain", True), ("bitmap", True), ("constant", True), ("vb", True)}
    if width > 8:
        want |= {("vb", False), ("vb-raw", vertical)}
    assert want <= seen, f"modes never produced: {want - seen}"
    if width == 64:
        assert 64 in widths64


# Value-step corner cases (codec spec 2.1-2.6), each against the reference.
F32_CORNERS = np.array(
    [
        0.5,
        -0.5,
        1.5,
        -1.5,
        2.5,
        -2.5,
        0.49999997,
        -0.49999997,
        3276.65,
        -3276.85,
        32766.5,
        32767.0,
        -32768.5,
        -32769.0,
        np.inf,
        -np.inf,
        np.nan,
        -0.0,
        2.0**31,
        -(2.0**31),
        2147483520.0,
        -2147483520.0,
        2.0**30 + 64,
        8388607.5,
        -8388607.5,
        4194303.5,
        -1.0,
        -1.5,
        -0.999,
        1e-45,
        3.4e38,
        -3.4e38,
    ],
    np.float32,
)


@pytest.mark.parametrize("compression", [0, 2, 3])
@pytest.mark.parametrize(
    ("sf", "ao"),
    [
        (1.0, 0.0),
        (10.0, 0.0),
        (0.1, 0.0),
        (1.0, 0.5),
        (1000.0, -0.25),
        (0.0, 0.0),
        (np.nan, 0.0),
        (-3.0, 1.0),
        (np.inf, 0.0),
    ],
)
def test_value_step_corners_float32(tmp_path, compression, sf, ao):
    ref = write_ref(tmp_path / "c.om", F32_CORNERS, compression, sf, ao).chunk_data
    ours = encode_chunk(F32_CORNERS, compression, sf, ao)
    assert_same_stream(ours, ref, F32_CORNERS.size, np.float32, compression)


@pytest.mark.parametrize(("sf", "ao"), [(1.0, 0.0), (10.0, 0.5), (1e-3, -273.15), (np.nan, 0.0)])
def test_value_step_corners_float64(tmp_path, sf, ao):
    a = np.concatenate(
        [
            F32_CORNERS.astype(np.float64),
            [2.0**63, -(2.0**63), 9.2e18, -9.2e18, 2.0**52 + 0.5, 4503599627370495.5, 1e300],
        ]
    )
    ref = write_ref(tmp_path / "c.om", a, 2, sf, ao).chunk_data
    assert_same_stream(encode_chunk(a, 2, sf, ao), ref, a.size, np.float64, 2)


def test_integer_dtypes_ignore_scale(tmp_path):
    a = np.arange(-50, 50, dtype=np.int32).reshape(4, 25)
    ref = write_ref(tmp_path / "i.om", a, 2, 7.0, 3.0).chunk_data
    ours = encode_chunk(a, 2, 7.0, 3.0)
    assert ours == encode_chunk(a, 2)
    assert_same_stream(ours, ref, a.size, a.dtype, 2)


# --------------------------------------------------------------------------- multi-chunk files


@st.composite
def block_case(draw):
    dtype, compression = draw(st.sampled_from(VALID_PAIRS))
    ndim = draw(st.integers(1, 4))
    limit = {1: 3000, 2: 60, 3: 16, 4: 8}[ndim]
    shape = tuple(draw(st.integers(1, limit)) for _ in range(ndim))
    chunks = tuple(draw(st.integers(1, s)) for s in shape)
    kinds = FLOAT_KINDS if np.dtype(dtype).kind == "f" else INT_KINDS
    kind = draw(st.sampled_from(kinds))
    sf = draw(st.sampled_from([1.0, 10.0, 100.0, 0.5]))
    ao = draw(st.sampled_from([0.0, 2.5]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    values = make_data(dtype, int(np.prod(shape)), kind, rng).reshape(shape)
    return values, compression, chunks, sf, ao


def assert_chunks_match(ref_data: bytes, ours: bytes, lengths, codec: ArrayCodec) -> None:
    """Every chunk of ``ours`` (split by ``lengths``) equals the reference's."""
    assert len(ours) == len(ref_data)
    grid = [-(-d // c) for d, c in zip(codec.dims, codec.chunks, strict=True)]
    pos = 0
    for idx, length in enumerate(np.asarray(lengths).tolist()):
        k = np.unravel_index(idx, grid)
        ext = [min(c, d - ki * c) for ki, c, d in zip(k, codec.chunks, codec.dims, strict=True)]
        seg = slice(pos, pos + length)
        assert_same_stream(
            ours[seg], ref_data[seg], int(np.prod(ext)), codec.dtype, codec.compression
        )
        pos += length


@settings(SETTINGS, max_examples=200)
@given(case=block_case())
def test_block_and_lut_match_reference(tmp_path, case):
    values, compression, chunks, sf, ao = case
    ref = write_ref(tmp_path / "b.om", values, compression, sf, ao, chunks=chunks)
    codec = ArrayCodec(
        array_type_for(values.dtype), compression, values.shape, chunks, sf, ao, x86_lanes=True
    )
    data, lengths = encode_block(codec, values, (0,) * values.ndim)
    assert_chunks_match(ref.chunk_data, bytes(data), lengths, codec)
    # the LUT: absolute offsets of the chunks, data starting after the 3-byte header
    lut = 3 + np.concatenate([[0], np.cumsum(lengths)]).astype(np.uint64)
    lut_bytes, stride = encode_lut(lut)
    assert stride * -(-lut.size // 64) == ref.record.lut_size
    pad = lut_padding_bits(ref.lut, lut.size, stride)
    assert mask_bytes(lut_bytes, pad) == mask_bytes(ref.lut, pad)
    assert not any((lut_bytes[b >> 3] >> (b & 7)) & 1 for b in pad)


def _records(node: dict):
    yield node
    for child in node.get("children", []):
        yield from _records(child)


def _fixture_arrays(manifest: dict):
    for entry in manifest["files"]:
        if entry.get("origin") != "reference-writer" or entry.get("format") != "v3":
            continue
        for rec in _records(entry["root"]):
            if rec.get("kind") == "array" and "lut" in rec.get("container", {}):
                yield entry["file"], rec


def test_fixture_luts(fixtures_dir, manifest):
    checked = 0
    for file, rec in _fixture_arrays(manifest):
        c = rec["container"]
        lut = np.array(c["lut"], np.uint64)
        ours, stride = encode_lut(lut)
        raw = (fixtures_dir / file).read_bytes()[c["lut_offset"] : c["lut_offset"] + c["lut_size"]]
        assert stride == c["lut_stride"], file
        pad = lut_padding_bits(raw, lut.size, stride)
        assert mask_bytes(ours, pad) == mask_bytes(raw, pad), (file, rec["path"])
        checked += 1
    assert checked >= 20


def test_fixture_chunks(fixtures_dir, manifest):
    """All chunks of the reference-written fixture arrays, via one encode_block each."""
    codes = {
        "pfor_delta_2d_int16": 0,
        "fpx_xor_2d": 1,
        "pfor_delta_2d": 2,
        "pfor_delta_2d_int16_logarithmic": 3,
    }
    checked = 0
    for file, rec in _fixture_arrays(manifest):
        values = np.load(fixtures_dir / rec["expected_npy"])
        if rec["compression"] != "fpx_xor_2d" and values.dtype.kind == "f":
            continue  # lossy: the stored file holds the quantised values, not these
        c = rec["container"]
        codec = ArrayCodec(
            array_type_for(values.dtype),
            codes[rec["compression"]],
            tuple(rec["shape"]),
            tuple(rec["chunks"]),
            rec["scale_factor"],
            rec["add_offset"],
            x86_lanes=True,
        )
        data, lengths = encode_block(codec, values, (0,) * values.ndim)
        raw = (fixtures_dir / file).read_bytes()[c["lut"][0] : c["lut"][-1]]
        assert np.array_equal(lengths, np.diff(c["lut"])), (file, rec["path"])
        assert_chunks_match(raw, bytes(data), lengths, codec)
        checked += 1
    assert checked >= 10


# --------------------------------------------------------------------------- block == chunks


@st.composite
def sub_block_case(draw):
    dtype, compression = draw(st.sampled_from(VALID_PAIRS))
    ndim = draw(st.integers(1, 4))
    limit = {1: 2000, 2: 50, 3: 14, 4: 7}[ndim]
    dims = tuple(draw(st.integers(1, limit)) for _ in range(ndim))
    chunks = tuple(draw(st.integers(1, d)) for d in dims)
    # a chunk-aligned block: [k0*c, min(k1*c, dim)) along every dimension
    start, stop = [], []
    for d, c in zip(dims, chunks, strict=True):
        nb = -(-d // c)
        k0 = draw(st.integers(0, nb - 1))
        k1 = draw(st.integers(k0 + 1, nb))
        start.append(k0 * c)
        stop.append(min(k1 * c, d))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kinds = FLOAT_KINDS if np.dtype(dtype).kind == "f" else INT_KINDS
    values = make_data(dtype, int(np.prod(dims)), draw(st.sampled_from(kinds)), rng)
    return values.reshape(dims), compression, chunks, tuple(start), tuple(stop)


@settings(SETTINGS, max_examples=200)
@given(case=sub_block_case(), x86=st.booleans())
def test_block_equals_chunks(case, x86):
    array, compression, chunks, start, stop = case
    codec = ArrayCodec(
        array_type_for(array.dtype), compression, array.shape, chunks, 20.0, 1.5, x86_lanes=x86
    )
    block = array[tuple(slice(a, b) for a, b in zip(start, stop, strict=True))]
    data, lengths = encode_block(codec, block, start)
    # reference result: each chunk cut out with numpy, encoded on its own
    expected = []
    ranges = [range(a, b, c) for a, b, c in zip(start, stop, chunks, strict=True)]
    for origin in np.ndindex(*[len(r) for r in ranges]):
        lo = [r[i] for r, i in zip(ranges, origin, strict=True)]
        sl = tuple(slice(x, min(x + c, d)) for x, c, d in zip(lo, chunks, array.shape, strict=True))
        expected.append(encode_chunk(array[sl], compression, 20.0, 1.5, x86_lanes=x86))
    assert [len(e) for e in expected] == lengths.tolist()
    assert bytes(data) == b"".join(expected)


def test_block_non_contiguous_input():
    # a strided view is made contiguous by the wrapper; a sub-block of a larger
    # array exercises the gather with partial rows
    a = np.arange(40 * 30, dtype=np.float32).reshape(40, 30)[5:25, 3:23]
    codec = ArrayCodec(20, 2, (20, 20), (6, 7), 1.0, 0.0)
    data, lengths = encode_block(codec, a, (0, 0))
    exp = [
        encode_chunk(a[i : i + 6, j : j + 7], 2) for i in range(0, 20, 6) for j in range(0, 20, 7)
    ]
    assert bytes(data) == b"".join(exp)
    assert lengths.tolist() == [len(e) for e in exp]


# --------------------------------------------------------------------------- lane order (K3)


def test_v64_natural_lane_order():
    """x86_lanes=False writes lanes (0,1,2,3); True the reference's (2,3,0,1)."""
    a = (np.arange(129) % 7).astype(np.float64)  # group 0: 128 values, plain b <= 32
    x86 = encode_chunk(a, 1, x86_lanes=True)
    nat = encode_chunk(a, 1, x86_lanes=False)
    hb, header = x86[0], x86[1]
    assert header & 0xC0 == 0 and 0 < header <= 32  # plain block, V32 layout
    body = x86[2 : 2 + 16 * header]
    swapped = b"".join(body[i + 8 : i + 16] + body[i : i + 8] for i in range(0, len(body), 16))
    assert nat[:2] == bytes([hb, header])
    assert nat[2 : 2 + 16 * header] == swapped
    assert nat[2 + 16 * header :] == x86[2 + 16 * header :]


def _om_file_from_chunks(array: np.ndarray, compression: int, chunk_bytes: bytes) -> bytes:
    """A minimal v3 file (one chunk, tail metadata) around our own chunk bytes."""
    lut, _ = encode_lut(np.array([3, 3 + len(chunk_bytes)], np.uint64))
    head = b"OM\x03" + chunk_bytes
    lut_offset = len(head)
    body = head + lut
    body += bytes(-len(body) % 8)
    rec = encode_array_record(
        name="data",
        data_type=array_type_for(array.dtype),
        compression=compression,
        lut_size=len(lut),
        lut_offset=lut_offset,
        scale_factor=1.0,
        add_offset=0.0,
        dims=array.shape,
        chunks=array.shape,
    )
    rec_offset = len(body)
    body += rec + bytes(-len(rec) % 8)
    return body + encode_trailer(rec_offset, len(rec))


def test_natural_lane_order_readable_by_reference(tmp_path):
    """The reference reader decodes our natural-order V64 blocks correctly (in a
    subprocess: the reference must never see unproven bytes in-process)."""
    a = (np.arange(300) % 7).astype(np.float64)
    path = tmp_path / "nat.om"
    path.write_bytes(_om_file_from_chunks(a, 1, encode_chunk(a, 1, x86_lanes=False)))
    code = (
        "import sys, numpy as np, omfiles\n"
        "r = omfiles.OmFileReader(sys.argv[1])\n"
        "np.save(sys.argv[2], r[...])\n"
    )
    out = tmp_path / "back.npy"
    subprocess.run([sys.executable, "-c", code, str(path), str(out)], check=True, timeout=60)
    np.testing.assert_array_equal(np.load(out), a)


# --------------------------------------------------------------------------- round trips

LOSSLESS_PAIRS = [(t, c) for t, c in VALID_PAIRS if c == 1 or not t.startswith("float")]


@pytest.mark.parametrize(("dtype", "compression"), LOSSLESS_PAIRS)
@settings(SETTINGS, max_examples=50)
@given(data=st.data(), x86=st.booleans())
def test_lossless_round_trip(dtype, compression, data, x86):
    """decode(encode(x)) == x bit for bit, consuming exactly the encoded bytes."""
    values, _, _ = data.draw(chunk_case(dtype, compression))
    enc = encode_chunk(values, compression, x86_lanes=x86)
    back, used = decode_chunk(
        enc, values.dtype, compression, values.size, values.shape[-1], x86_lanes=x86
    )
    assert used == len(enc)
    assert (
        back.view(f"u{values.itemsize}").tolist()
        == values.ravel().view(f"u{values.itemsize}").tolist()
    )


def test_lut_round_trip():
    rng = np.random.default_rng(3)
    for n in [1, 2, 63, 64, 65, 127, 128, 129, 1000]:
        lut = 3 + np.concatenate([[0], np.cumsum(rng.integers(1, 10**6, n - 1))]).astype(np.uint64)
        data, stride = encode_lut(lut)
        assert len(data) == stride * -(-n // 64)
        assert decode_lut(data, n, stride).tolist() == lut.tolist()


# --------------------------------------------------------------------------- errors


def test_invalid_pairs_rejected():
    for dtype, compression in [(np.int16, 0), (np.float64, 0), (np.int32, 1), (np.float64, 3)]:
        with pytest.raises(OmEncodingError):
            encode_chunk(np.zeros(4, dtype), compression)
    assert lib.om_encode_chunk(20, 4, 1.0, 0.0, 0, ffi.NULL, 1, 1, ffi.NULL, 0, ffi.NULL, 0) < 0


def test_bad_row_len():
    with pytest.raises(OmEncodingError):
        encode_chunk(np.zeros(10, np.int16), 2, row_len=3)


@given(n=st.integers(1, 600), kind=st.sampled_from(INT_KINDS), seed=st.integers(0, 2**31))
@settings(deadline=None, max_examples=60)
def test_small_capacity_never_overflows(n, kind, seed):
    """Every cap below the needed size returns OM_E_OUTPUT and writes nothing past it."""
    rng = np.random.default_rng(seed)
    for dtype, width in [(np.uint8, 8), (np.int16, 16), (np.int32, 32), (np.uint64, 64)]:
        a = make_data(dtype, n, kind, rng)
        full = encode_chunk(a, 2)
        scratch = bytearray(lib.om_chunk_scratch(array_type_for(a.dtype), 2, n))
        for cap in sorted({0, 1, len(full) // 2, len(full) - 1} - {len(full)}):
            if cap < 0:
                continue
            out = bytearray(b"\xaa" * (cap + 16))
            r = lib.om_encode_chunk(
                array_type_for(a.dtype),
                2,
                1.0,
                0.0,
                0,
                ffi.from_buffer(a),
                n,
                n,
                ffi.from_buffer(out),
                cap,
                ffi.from_buffer(scratch),
                len(scratch),
            )
            assert r == lib.OM_E_OUTPUT
            assert out[cap:] == b"\xaa" * 16, f"wrote past cap={cap} (W={width})"


def test_fpx_small_capacity():
    a = np.random.default_rng(1).normal(size=300)
    full = encode_chunk(a, 1)
    for cap in range(0, len(full), 37):
        out = bytearray(b"\x55" * (cap + 16))
        r = lib.om_fpx_encode64(
            ffi.cast("uint64_t *", ffi.from_buffer(a)), a.size, 0, ffi.from_buffer(out), cap
        )
        assert r == lib.OM_E_OUTPUT
        assert out[cap:] == b"\x55" * 16


def test_lut_small_capacity():
    lut = np.cumsum(np.arange(1, 200, dtype=np.uint64)) + 3
    full, _ = encode_lut(lut)
    out = bytearray(len(full) - 1)
    stride = ffi.new("uint64_t *")
    r = lib.om_lut_encode(
        ffi.from_buffer("uint64_t[]", lut), lut.size, ffi.from_buffer(out), len(out), stride
    )
    assert r == lib.OM_E_OUTPUT


@pytest.mark.parametrize(
    ("dims", "chunks", "start", "shape"),
    [
        ((10,), (3,), (1,), (3,)),  # start not on a chunk boundary
        ((10,), (3,), (3,), (4,)),  # end neither on a boundary nor at dims
        ((10,), (3,), (9,), (2,)),  # past the array end
        ((10, 4), (3, 5), (0, 0), (3, 4)),  # chunk longer than the dimension
        ((10, 4), (0, 2), (0, 0), (3, 4)),  # zero chunk length
    ],
)
def test_block_geometry_errors(dims, chunks, start, shape):
    a_dims = ffi.new("uint64_t[]", list(dims))
    a_chunks = ffi.new("uint64_t[]", list(chunks))
    arr = ffi.new(
        "om_array_t *",
        {
            "dtype": 16,
            "compression": 2,
            "scale_factor": 1.0,
            "add_offset": 0.0,
            "flags": 0,
            "ndim": len(dims),
            "dims": a_dims,
            "chunks": a_chunks,
        },
    )
    block = np.zeros(shape, np.int32)
    out = bytearray(4096)
    lengths = np.zeros(64, np.uint64)
    r = lib.om_encode_block(
        arr,
        ffi.from_buffer(block),
        ffi.new("uint64_t[]", list(start)),
        ffi.new("uint64_t[]", list(shape)),
        ffi.from_buffer(out),
        len(out),
        ffi.from_buffer("uint64_t[]", lengths),
        64,
    )
    assert r == lib.OM_E_GEOMETRY


def test_block_too_many_chunks_for_output():
    codec = ArrayCodec(16, 2, (100,), (10,))
    keep: list = []
    arr = codec._c(keep)
    block = np.arange(100, dtype=np.int32)
    out = bytearray(4096)
    lengths = np.zeros(5, np.uint64)
    r = lib.om_encode_block(
        arr,
        ffi.from_buffer(block),
        ffi.new("uint64_t[]", [0]),
        ffi.new("uint64_t[]", [100]),
        ffi.from_buffer(out),
        len(out),
        ffi.from_buffer("uint64_t[]", lengths),
        5,
    )
    assert r == lib.OM_E_GEOMETRY


def test_block_bound_is_enough():
    rng = np.random.default_rng(5)
    a = rng.integers(-(2**63), 2**63 - 1, (37, 41), dtype=np.int64)  # incompressible
    codec = ArrayCodec(18, 2, a.shape, (5, 41))
    keep: list = []
    bound = lib.om_encode_block_bound(codec._c(keep), ffi.new("uint64_t[]", list(a.shape)))
    data, lengths = encode_block(codec, a, (0, 0))
    assert len(data) == int(lengths.sum()) <= bound


def test_manifest_is_json(fixtures_dir):
    # guards the fixture-based tests above against a silently empty manifest
    m = json.loads((fixtures_dir / "manifest.json").read_text())
    assert len(m["files"]) > 20
    assert read_om(fixtures_dir / "dtype_int8__pfor_delta_2d.om").record.dims


_PORTABLE_SCRIPT = """
import hashlib, sys
import numpy as np
sys.path.insert(0, {tests!r})
from _refbytes import VALID_PAIRS
from test_native_encode import make_data
from xarray_om._native import encode_chunk
rng = np.random.default_rng(7)
for dtype, comp in VALID_PAIRS:
    for kind in ("smooth", "noisy", "extreme"):
        for n in (1, 7, 256, 1000, 4099):
            v = make_data(np.dtype(dtype), n, kind, rng).reshape(-1, n if n < 100 else 1)
            print(dtype, comp, kind, n, hashlib.sha1(encode_chunk(v, comp, 20.0, 0.5)).hexdigest())
"""


def test_portable_coders_write_the_same_bytes():
    # The coders have an AVX2 build picked at load time; OM_NATIVE_NO_SIMD=1 keeps
    # the portable one. Both must write the same bytes for every pair.
    import os
    from pathlib import Path

    script = _PORTABLE_SCRIPT.format(tests=str(Path(__file__).parent))
    outs = []
    for flag in ("1", ""):
        env = {**os.environ, "OM_NATIVE_NO_SIMD": flag}
        r = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
        )
        assert r.returncode == 0, r.stderr
        outs.append(r.stdout.splitlines())
    assert len(outs[0]) == len(VALID_PAIRS) * 15
    assert outs[0] == outs[1]
