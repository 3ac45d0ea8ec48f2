"""Padding-bit positions of OM chunk streams, found by walking their structure.

The reference encoder leaves the unused high bits of the last byte of every
horizontally packed area uninitialised (codec spec 4.3, quirk K1), so byte
comparisons against it must ignore exactly those bits. This walker is written
independently of the native code (pure Python, from codec spec sections 5-8)
so that a bug in the C encoder cannot hide itself by masking the wrong bits.
"""

from __future__ import annotations

PFOR = "pfor"  # p4nz / p4nd stream (spec 7)
FPX = "fpx"  # fpxenc32 / fpxenc64 stream (spec 8)


class WalkError(ValueError):
    """The bytes do not have the structure of the stream kind."""


def _ceil8(bits: int) -> int:
    return (bits + 7) // 8


class _Walker:
    def __init__(self, data: bytes, width: int) -> None:
        self.data = bytes(data)
        self.width = width
        self.p = 0
        self.pad: set[int] = set()
        self.blocks: list[tuple[str, int, bool]] = []  # (mode, b, vertical) per block

    def take(self, k: int) -> bytes:
        if self.p + k > len(self.data):
            raise WalkError(f"stream ends at {len(self.data)}, needs {self.p + k}")
        out = self.data[self.p : self.p + k]
        self.p += k
        return out

    def hpack(self, count: int, b: int) -> None:
        """A horizontally packed area: its padding bits are count*b .. end of byte."""
        bits = count * b
        start = 8 * self.p
        self.take(_ceil8(bits))
        self.pad.update(range(start + bits, start + 8 * _ceil8(bits)))

    def pack(self, m: int, b: int, vertical: bool) -> None:
        if vertical:
            self.take(16 * b)  # V16/V32/V64: always whole words, no padding
        else:
            self.hpack(m, b)

    def vbx(self) -> None:
        if self.width == 8:
            self.take(1)
            return
        c = self.take(1)[0]
        if c < 0x80:
            extra = 0
        elif c < 0xC0:
            extra = 1
        elif c < 0xE0:
            extra = 2
        elif c < 0xF0:
            extra = 3
        elif self.width <= 32:
            extra = 4
        elif c < 0xF8:
            extra = 4
        elif c < 0xFC:
            extra = 5
        elif c < 0xFE:
            extra = 6
        elif c == 0xFE:
            extra = 7
        else:
            extra = 8
        self.take(extra)

    def vb_list(self, xn: int) -> bool:
        """Skip a vb exception list; True if it used the raw fallback."""
        if xn == 0:
            raise WalkError("vb mode without exceptions")
        if self.data[self.p : self.p + 1] == b"\xff":
            self.take(1 + xn * self.width // 8)
            return True
        for _ in range(xn):
            c = self.take(1)[0]
            if c < 177:
                continue
            if c < 241:
                self.take(1)
            elif c < 249:
                self.take(2)
            else:
                self.take(c - 246)
        return False

    def block(self, m: int, vertical: bool) -> None:
        w = self.width
        h = self.take(1)[0]
        b = h & 0x3F
        mode = h & 0xC0
        if w == 64 and b == 63 and mode in (0x00, 0xC0):
            b = 64
        if b > w:
            raise WalkError(f"width {b} > {w}")
        if mode == 0xC0:  # constant: value bytes, masked to b bits by the writer
            self.take(_ceil8(b))
            self.blocks.append(("constant", b, vertical))
        elif mode == 0x00:
            self.pack(m, b, vertical)
            self.blocks.append(("plain", b, vertical))
        elif mode == 0x80:
            bx = self.take(1)[0]
            if not 1 <= bx <= w:
                raise WalkError(f"bitmap exception width {bx}")
            bitmap = self.take(_ceil8(m))
            xn = sum(bin(x).count("1") for x in bitmap)
            self.hpack(xn, bx)
            self.pack(m, b, vertical)
            self.blocks.append(("bitmap", b, vertical))
        else:
            if w == 8:
                raise WalkError("vb exception mode in an 8-bit stream")
            xn = self.take(1)[0]
            if not 1 <= xn <= m:
                raise WalkError(f"{xn} exceptions in a block of {m}")
            self.pack(m, b, vertical)
            raw = self.vb_list(xn)
            self.take(xn)
            self.blocks.append(("vb-raw" if raw else "vb", b, vertical))


def _walk(data: bytes, n: int, width: int, kind: str, v128: bool) -> _Walker:
    """Walk one chunk stream of ``n`` values; raises WalkError on a malformed one."""
    if kind == PFOR:
        wk = _Walker(data, width)
        wk.vbx()
        full, rest = divmod(n - 1, 128)
        for _ in range(full):
            wk.block(128, v128)
        if rest:
            wk.block(rest, False)
    elif kind == FPX:
        wk = _Walker(data, width)
        done = 0
        while done < n:
            m = min(128, n - done)
            wk.take(1)  # hb
            wk.block(m, m == 128)
            done += m
    else:
        raise ValueError(f"unknown stream kind {kind!r}")
    if wk.p != len(data):
        raise WalkError(f"stream of {n} values uses {wk.p} of {len(data)} bytes")
    return wk


def padding_bits(
    data: bytes, n: int, width: int, kind: str = PFOR, *, v128: bool = False
) -> set[int]:
    """Bit positions (``8*byte + bit``) of all padding bits of one chunk stream.

    Parameters
    ----------
    data
        The stream's bytes; they must be consumed exactly.
    n
        Number of values coded.
    width
        Coder width W (8, 16, 32 or 64).
    kind
        ``PFOR`` (p4nz/p4nd, spec 7) or ``FPX`` (spec 8).
    v128
        PFOR only: full blocks use the vertical layout (the 16/32-bit coders).
    """
    return _walk(data, n, width, kind, v128).pad


def block_modes(
    data: bytes, n: int, width: int, kind: str = PFOR, *, v128: bool = False
) -> list[tuple[str, int, bool]]:
    """(mode, b, vertical) of every block of one chunk stream, in order."""
    return _walk(data, n, width, kind, v128).blocks


def lut_padding_bits(data: bytes, n_entries: int, stride: int) -> set[int]:
    """Padding bits of an encoded look-up table (groups of 64 p4nd64 streams)."""
    pad: set[int] = set()
    n_groups = -(-n_entries // 64)
    if len(data) != n_groups * stride:
        raise WalkError(f"LUT of {len(data)} bytes is not {n_groups} x {stride}")
    for g in range(n_groups):
        m = min(64, n_entries - 64 * g)
        wk = _Walker(data[g * stride : (g + 1) * stride], 64)
        wk.vbx()
        if m > 1:
            wk.block(m - 1, False)
        # the group's zero fill up to the stride is significant (must be zero)
        pad.update(8 * g * stride + bit for bit in wk.pad)
    return pad


def mask_bytes(data: bytes, pad: set[int]) -> bytes:
    """``data`` with every padding bit cleared."""
    out = bytearray(data)
    for bit in pad:
        out[bit >> 3] &= ~(1 << (bit & 7)) & 0xFF
    return bytes(out)
