"""Seed corpora for the fuzz harnesses (fuzz/run.sh calls this).

    python fuzz/make_seeds.py OUTDIR [--fixtures DIR]

Writes OUTDIR/{chunk,pfor,lut,select}/ with inputs in each harness's layout
(see the comment at the top of every fuzz_*.c):

* chunk payloads of every array of the shared fixtures (v3 files; the chunk
  byte ranges come from the LUT: the manifest's decoded table, or the LUT bytes
  decoded with ``_native.decode_lut``), wrapped with their pair / geometry /
  scale header;
* the same payloads as bare PFor / fpx streams;
* every LUT of the fixtures;
* whole small arrays (geometry + full or sliced selection + all chunks) for
  ``om_decode_select``;
* synthetic chunks from the project's encoder (``_native.encode_chunk``) with
  more than 128 values, so that full vertical blocks, exceptions and every
  block mode are in the corpus (the fixture chunks are small);
* hand-made streams at the limits of the block format (widths above W, the
  W = 64 width code 63, bitmap/vb exception parameters out of range, exception
  counts and positions past the block, every vbx/vb length form, fpx widths
  >= W) and LUT strides that overflow.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import struct
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_FIXTURES = ROOT.parent / "shared" / "fixtures"

# Same order as FZ_PAIRS in fuzz_common.h.
PAIRS = [
    ("int8", "pfor_delta_2d"),
    ("uint8", "pfor_delta_2d"),
    ("int16", "pfor_delta_2d"),
    ("uint16", "pfor_delta_2d"),
    ("int32", "pfor_delta_2d"),
    ("uint32", "pfor_delta_2d"),
    ("int64", "pfor_delta_2d"),
    ("uint64", "pfor_delta_2d"),
    ("float32", "pfor_delta_2d"),
    ("float64", "pfor_delta_2d"),
    ("float32", "pfor_delta_2d_int16"),
    ("float32", "pfor_delta_2d_int16_logarithmic"),
    ("float32", "fpx_xor_2d"),
    ("float64", "fpx_xor_2d"),
]
COMPRESSION_IDS = {
    "pfor_delta_2d_int16": 0,
    "fpx_xor_2d": 1,
    "pfor_delta_2d": 2,
    "pfor_delta_2d_int16_logarithmic": 3,
}


def stream_coder(dtype: str, compression: str) -> tuple[int, int]:
    """(coder selector of fuzz_pfor.c, zigzag) for the stream inside a chunk."""
    if compression == "fpx_xor_2d":
        return (4 if dtype == "float32" else 5), 0
    if compression != "pfor_delta_2d":
        return 1, 1  # int16 coder, signed
    width = {
        "int8": 0,
        "uint8": 0,
        "int16": 1,
        "uint16": 1,
        "int32": 2,
        "uint32": 2,
        "int64": 3,
        "uint64": 3,
        "float32": 2,
        "float64": 3,
    }[dtype]
    signed = not dtype.startswith("uint")
    return width, int(signed)


class Writer:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.count: dict[str, int] = {}

    def add(self, harness: str, data: bytes) -> None:
        d = self.out / harness
        d.mkdir(parents=True, exist_ok=True)
        name = hashlib.sha1(data).hexdigest()[:16]
        (d / name).write_bytes(data)
        self.count[harness] = self.count.get(harness, 0) + 1


def chunk_header(pair: int, flags: int, row_len: int, rows: int, sf: float, ao: float) -> bytes:
    return struct.pack("<BBHHff", pair, flags, row_len - 1, rows - 1, sf, ao)


def add_chunk(
    w: Writer, dtype: str, comp: str, payload: bytes, n: int, row_len: int, sf: float, ao: float
) -> None:
    pair = PAIRS.index((dtype, comp))
    rows = n // row_len
    if row_len <= 256 and rows <= 256:
        w.add("chunk", chunk_header(pair, 0, row_len, rows, sf, ao) + payload)
        if (dtype, comp) == ("float64", "fpx_xor_2d"):
            w.add("chunk", chunk_header(pair, 1, row_len, rows, sf, ao) + payload)
    coder, zz = stream_coder(dtype, comp)
    if n <= 65536:
        w.add("pfor", struct.pack("<BH", coder | zz << 3, n - 1) + payload)


def chunk_shape(shape: list[int], chunks: list[int], index: int) -> list[int]:
    grid = [math.ceil(s / c) for s, c in zip(shape, chunks, strict=True)]
    coords = np.unravel_index(index, grid)
    return [min(c, s - i * c) for s, c, i in zip(shape, chunks, coords, strict=True)]


def lut_of(node: dict, blob: bytes) -> list[int] | None:
    c = node["container"]
    if "lut" in c:
        return c["lut"]
    try:
        sys.path.insert(0, str(ROOT))
        from xarray_om import _native
    except ImportError:
        return None
    raw = blob[c["lut_offset"] : c["lut_offset"] + c["lut_size"]]
    return [int(v) for v in _native.decode_lut(raw, node["n_chunks"] + 1, c["lut_stride"])]


def select_seed(
    pair: int,
    flags: int,
    sf: float,
    ao: float,
    shape: list[int],
    chunks: list[int],
    modes: bytes,
    lut: list[int],
    blob: bytes,
) -> bytes:
    base = lut[0]
    head = struct.pack("<BBffB", pair, flags, sf, ao, len(shape) - 1)
    for s, c in zip(shape, chunks, strict=True):
        head += struct.pack("<HH", s - 1, c - 1)
    head += modes
    n = len(lut) - 1
    head += struct.pack("<H", n)
    for k in range(n):
        head += struct.pack("<III", k, lut[k] - base, lut[k + 1] - lut[k])
    return head + blob[base : lut[-1]]


def walk(node: dict):
    yield node
    for child in node.get("children", []):
        yield from walk(child)


def from_fixtures(w: Writer, fixtures: Path) -> None:
    manifest = json.loads((fixtures / "manifest.json").read_text())
    for entry in manifest["files"]:
        blob = (fixtures / entry["file"]).read_bytes()
        for node in walk(entry["root"]):
            if node["kind"] != "array" or "container" not in node:
                continue
            lut = lut_of(node, blob)
            if lut is None:
                continue
            dtype, comp = node["dtype"], node["compression"]
            sf, ao = node["scale_factor"], node["add_offset"]
            shape, chunks = node["shape"], node["chunks"]
            n_chunks = node["n_chunks"]
            # Every chunk of small arrays, a sample of big ones.
            picks = (
                range(n_chunks)
                if n_chunks <= 40
                else sorted(
                    {*range(8), *range(n_chunks - 4, n_chunks), *range(0, n_chunks, n_chunks // 16)}
                )
            )
            for k in picks:
                cs = chunk_shape(shape, chunks, k)
                add_chunk(w, dtype, comp, blob[lut[k] : lut[k + 1]], math.prod(cs), cs[-1], sf, ao)
            c = node["container"]
            lut_raw = blob[c["lut_offset"] : c["lut_offset"] + c["lut_size"]]
            w.add("lut", struct.pack("<HIBB", n_chunks, c["lut_stride"], 0, 0) + lut_raw)
            if len(shape) <= 4 and max(shape) <= 65536 and n_chunks <= 64:
                pair = PAIRS.index((dtype, comp))
                nd = len(shape)
                w.add("select", select_seed(pair, 0, sf, ao, shape, chunks, bytes(nd), lut, blob))
                # A strided, reversed slice along the last dimension.
                modes = bytes(nd - 1) + struct.pack("<BHHb", 1, shape[-1] - 1, shape[-1], -2)
                w.add("select", select_seed(pair, 0, sf, ao, shape, chunks, modes, lut, blob))


def synthetic(w: Writer) -> None:
    """Bigger chunks from the project's own encoder (full 128-value blocks)."""
    try:
        sys.path.insert(0, str(ROOT))
        from xarray_om import _native
    except ImportError as e:
        print(f"make_seeds: no synthetic seeds ({e})", file=sys.stderr)
        return
    rng = np.random.default_rng(42)
    for dtype, comp in PAIRS:
        dt = np.dtype(dtype)
        for n, row_len in ((129, 129), (300, 30), (1000, 100), (4096, 64)):
            if dt.kind == "f":
                base = np.cumsum(rng.normal(0, 1, n)).astype(dt)
                datasets = [base, np.round(base, 1), np.full(n, 3.5, dt)]
                with_nan = base.copy()
                with_nan[::17] = np.nan
                datasets.append(with_nan)
            else:
                info = np.iinfo(dt)
                small = rng.integers(
                    max(info.min, -50), min(info.max, 50), n, endpoint=True
                ).astype(dt)
                outl = small.copy()
                outl[::37] = info.max
                datasets = [
                    small,
                    outl,
                    rng.integers(info.min, info.max, n, dtype=dt, endpoint=True),
                    np.arange(n).astype(dt),
                ]
            cid = COMPRESSION_IDS[comp]
            sf = 100.0 if comp != "fpx_xor_2d" and dt.kind == "f" else 1.0
            for values in datasets:
                payload = _native.encode_chunk(values.reshape(-1, row_len), cid, sf, 0.0)
                add_chunk(w, dtype, comp, payload, n, row_len, sf, 0.0)
    # LUT with several groups.
    offsets = np.cumsum(rng.integers(0, 5000, 300)).astype(np.uint64)
    raw, stride = _native.encode_lut(offsets)
    w.add("lut", struct.pack("<HIBB", offsets.size - 1, stride, 0, 0) + raw)


def _edge_blocks(W: int, m: int) -> list[bytes]:
    """Block headers at the limits of every mode (codec spec 6.1/6.4), with payload."""
    pad = bytes(range(256)) * 8  # enough bytes for any block of 128 values
    wide = 63 if W == 64 else W
    out = []
    for b in sorted({0, 1, W - 1, wide, min(W + 1, 62), 62, 63}):
        out.append(bytes([b]) + pad)  # plain, incl. widths above W
        out.append(bytes([0xC0 | b]) + b"\xff" * 9)  # constant
        for bx in sorted({0, 1, W - b if W > b else 1, W, W + 1, 255}):
            bitmap = b"\xff" * ((m + 7) // 8)  # every value an exception, bits past m set
            out.append(bytes([0x80 | b, bx]) + bitmap + pad)
        if W >= 16:
            for xn in sorted({0, 1, m, m + 1, 255}):
                positions = bytes([m - 1, m, 127, 128, 255] * 52)[:xn]
                # vb list: raw fallback, then the longest forms (nb > W/8 is corrupt)
                for vb in (b"\xff" + pad[: xn * W // 8], bytes([255] * xn), bytes([249] * xn)):
                    low = pad[: (m * b + 7) // 8] if b <= W else pad[:16]
                    out.append(bytes([0x40 | b, xn]) + low + vb + positions + pad[:64])
    return out


def edge_cases(w: Writer) -> None:
    """Hand-made streams at the limits of the block format, for every coder."""
    vbx_forms = [
        b"\x00",
        b"\x7f",
        b"\xbf\xff",
        b"\xf7" + b"\xff" * 4,
        b"\xfe" + b"\xff" * 7,
        b"\xff" + b"\xff" * 8,
    ]
    for coder, W in ((0, 8), (1, 16), (2, 32), (3, 64), (4, 32), (5, 64)):
        for n in (2, 129):
            m = min(128, n - 1) if coder < 4 else min(128, n)
            for k, block in enumerate(_edge_blocks(W, m)):
                if coder < 4:
                    head = vbx_forms[k % len(vbx_forms)]
                    for zz in (0, 1):
                        w.add("pfor", struct.pack("<BH", coder | zz << 3, n - 1) + head + block)
                else:
                    for hb in (0, W - 1, W, 255):
                        for lanes in (0, 1) if coder == 5 else (0,):
                            w.add(
                                "pfor",
                                struct.pack("<BH", coder | lanes << 4, n - 1) + bytes([hb]) + block,
                            )
    # LUT: strides that overflow g * stride, zero, and tiny.
    for stride in (0, 1, 2**32 - 1):
        for hi in (0, 0x80, 0xFF):
            w.add(
                "lut", struct.pack("<HIBB", 200, stride, 1 if hi else 0, hi) + bytes(range(256)) * 4
            )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("outdir", type=Path)
    p.add_argument("--fixtures", type=Path, default=DEFAULT_FIXTURES)
    args = p.parse_args()
    w = Writer(args.outdir)
    if (args.fixtures / "manifest.json").is_file():
        from_fixtures(w, args.fixtures)
    else:
        print(f"make_seeds: no fixtures at {args.fixtures}", file=sys.stderr)
    synthetic(w)
    edge_cases(w)
    args.outdir.mkdir(parents=True, exist_ok=True)
    args.outdir.touch()
    print(
        "make_seeds: " + ", ".join(f"{h}={n}" for h, n in sorted(w.count.items())), file=sys.stderr
    )


if __name__ == "__main__":
    main()
