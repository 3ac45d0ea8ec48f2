"""``xarray-om verify``: decode every chunk of every array and report each failure."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import OmError
from ._common import (
    EXIT_BAD_DATA,
    EXIT_OK,
    _check_input,
    _plural,
    human_size,
    parse_storage_options,
)

# verify: chunks per batched read, and the byte budget of one batch.
_VERIFY_BATCH = 512
_VERIFY_BATCH_BYTES = 32 << 20


@dataclass
class Problem:
    """One thing ``verify`` found wrong: in an array's chunks ``first..last``, or elsewhere."""

    where: str
    message: str
    first: int | None = None
    last: int | None = None
    coords: tuple[int, ...] | None = None
    byte_range: tuple[int, int] | None = None

    @property
    def n_chunks(self) -> int:
        return 0 if self.first is None else self.last - self.first + 1  # type: ignore[operator]

    def describe(self, *, where: bool = True) -> str:
        parts = [self.where] if where else []
        if self.first is not None:
            if self.last == self.first:
                parts.append(f"chunk {self.first}")
            else:
                parts.append(f"chunks {self.first}..{self.last}")
        if self.coords is not None:
            parts.append(f"at {self.coords}")
        if self.byte_range is not None:
            a, b = self.byte_range
            parts.append(f"bytes [{a}, {b}) ({b - a} bytes)")
        return " ".join(parts) + f": {self.message}"

    def __str__(self) -> str:
        return self.describe()


@dataclass
class ArrayReport:
    path: str
    shape: tuple[int, ...]
    dtype: str
    n_chunks: int
    stored_bytes: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def bad_chunks(self) -> int:
        return sum(p.n_chunks for p in self.problems)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, OmError):
        return f"{type(exc).__name__}: {exc.reason}"
    return f"{type(exc).__name__}: {exc}"


def _chunk_ranges(arr: Any, idx: np.ndarray, where: str, rep: ArrayReport) -> dict[int, tuple]:
    """Byte ranges of chunks ``idx``; chunks whose LUT entries fail become problems."""
    try:
        starts, stops = arr.chunk_ranges(idx)
        return {int(i): (int(a), int(b)) for i, a, b in zip(idx, starts, stops, strict=True)}
    except Exception:
        pass
    # Narrow down chunk by chunk which look-up entries are bad; a run of chunks
    # failing for the same reason (one broken LUT group) is one problem.
    out: dict[int, tuple] = {}
    for i in idx.tolist():
        try:
            s, e = arr.chunk_ranges([i])
            out[i] = (int(s[0]), int(e[0]))
        except Exception as exc:
            msg = f"look-up table: {_error_text(exc)}"
            prev = rep.problems[-1] if rep.problems else None
            if prev is not None and prev.message == msg and prev.last == i - 1:
                prev.last = i
                prev.coords = None
            else:
                rep.problems.append(Problem(where, msg, i, i, arr.chunk_coords(i)))
    return out


def _batches(n: int) -> Iterator[np.ndarray]:
    for start in range(0, n, _VERIFY_BATCH):
        yield np.arange(start, min(start + _VERIFY_BATCH, n), dtype=np.int64)


def _byte_groups(order: list[int], ranges: dict[int, tuple]) -> Iterator[list[int]]:
    """Split chunks into groups spanning at most ``_VERIFY_BATCH_BYTES`` (memory bound)."""
    group: list[int] = []
    lo = hi = 0
    for i in order:
        a, b = ranges[i]
        if group and max(hi, b) - min(lo, a) > _VERIFY_BATCH_BYTES:
            yield group
            group = []
        lo, hi = (a, b) if not group else (min(lo, a), max(hi, b))
        group.append(i)
    if group:
        yield group


def _read_batch(source: Any, ranges: list[tuple[int, int]]) -> list[Any]:
    # One read when the chunks lie (nearly) back to back, the usual layout.
    lo = min(a for a, _ in ranges)
    hi = max(b for _, b in ranges)
    if hi - lo <= max(1 << 20, 2 * sum(b - a for a, b in ranges)):
        blob = memoryview(source.read_range(lo, hi))
        return [blob[a - lo : b - lo] for a, b in ranges]
    return source.read_ranges(ranges)


def verify_array(arr: Any, where: str) -> ArrayReport:
    """Decode every chunk of one array; failures are recorded, never raised."""
    rep = ArrayReport(where, tuple(arr.shape), str(arr.dtype), arr.n_chunks)
    source = arr.file.source
    for idx in _batches(arr.n_chunks):
        ranges = _chunk_ranges(arr, idx, where, rep)
        if not ranges:
            continue
        for group in _byte_groups(sorted(ranges), ranges):
            _verify_group(arr, where, rep, source, group, ranges)
    return rep


def _verify_group(
    arr: Any, where: str, rep: ArrayReport, source: Any, order: list[int], ranges: dict
) -> None:
    try:
        datas: list[Any] = _read_batch(source, [ranges[i] for i in order])
    except Exception:
        datas = []
        for i in order:
            try:
                datas.append(source.read_range(*ranges[i]))
            except Exception as exc:
                datas.append(exc)
    for i, data in zip(order, datas, strict=True):
        a, b = ranges[i]
        rep.stored_bytes += b - a
        try:
            if isinstance(data, BaseException):
                raise data
            arr.decode_chunk(i, data)
        except Exception as exc:
            rep.problems.append(Problem(where, _error_text(exc), i, i, arr.chunk_coords(i), (a, b)))


def _walk_verify(
    node: Any, where: str, reports: list[ArrayReport], problems: list[Problem], depth: int = 0
) -> None:
    try:
        if node.kind == "scalar":
            _ = node.value
            return
        if node.kind == "array":
            reports.append(verify_array(node, where))
        for c in node.children:
            child = f"{where.rstrip('/')}/{c.name}" if where != "/" else f"/{c.name}"
            _walk_verify(c, child, reports, problems, depth + 1)
    except Exception as exc:
        problems.append(Problem(where, f"record: {_error_text(exc)}"))


def verify_file(source: str, storage_options: dict | None = None) -> dict[str, Any]:
    """Check a whole file; returns ``{"file", "version", "size", "arrays", "problems"}``.

    ``arrays`` is a list of :class:`ArrayReport`, ``problems`` the problems
    outside arrays (unreadable records, a file that does not open).
    """
    from ..format.reader import OmFile

    reports: list[ArrayReport] = []
    problems: list[Problem] = []
    try:
        f = OmFile(source, storage_options=storage_options)
    except OmError as exc:
        problems.append(Problem("file", _error_text(exc)))
        return {
            "file": str(source),
            "version": None,
            "size": None,
            "arrays": [],
            "problems": problems,
        }
    with f:
        try:
            root = f.root
        except Exception as exc:
            problems.append(Problem("root record", _error_text(exc)))
        else:
            _walk_verify(root, "/", reports, problems)
        return {
            "file": f.source_name,
            "version": f.version,
            "size": f.size,
            "arrays": reports,
            "problems": problems,
        }


def _verify_json(result: dict[str, Any]) -> dict[str, Any]:
    def prob(p: Problem) -> dict[str, Any]:
        return {
            "where": p.where,
            "message": p.message,
            "first_chunk": p.first,
            "last_chunk": p.last,
            "chunk_coords": None if p.coords is None else list(p.coords),
            "byte_range": None if p.byte_range is None else list(p.byte_range),
        }

    return {
        "file": result["file"],
        "version": result["version"],
        "size": result["size"],
        "ok": result["ok"],
        "arrays": [
            {
                "path": r.path,
                "shape": list(r.shape),
                "dtype": r.dtype,
                "n_chunks": r.n_chunks,
                "bad_chunks": r.bad_chunks,
                "stored_bytes": r.stored_bytes,
                "problems": [prob(p) for p in r.problems],
            }
            for r in result["arrays"]
        ],
        "problems": [prob(p) for p in result["problems"]],
    }


def cmd_verify(args: argparse.Namespace) -> int:
    _check_input(args.file)
    t0 = time.perf_counter()
    result = verify_file(args.file, parse_storage_options(args.storage_option))
    elapsed = time.perf_counter() - t0
    reports: list[ArrayReport] = result["arrays"]
    total = sum(r.n_chunks for r in reports)
    bad = sum(r.bad_chunks for r in reports)
    bad_arrays = sum(1 for r in reports if r.problems)
    result["ok"] = ok = not bad and not result["problems"]
    if args.json:
        print(json.dumps(_verify_json(result), indent=2))
        return EXIT_OK if ok else EXIT_BAD_DATA
    if result["version"] is not None:
        print(f"verifying {result['file']} (OM v{result['version']}, {human_size(result['size'])})")
    for r in reports:
        status = "ok" if not r.problems else f"BAD: {r.bad_chunks} of {r.n_chunks} chunks"
        print(
            f"  {r.path}  {r.dtype}{list(r.shape)}  {_plural(r.n_chunks, 'chunk')}, "
            f"{human_size(r.stored_bytes)}: {status}"
        )
        shown = r.problems if args.max_report < 0 else r.problems[: args.max_report]
        for p in shown:
            print(f"    {p.describe(where=False)}")
        if len(shown) < len(r.problems):
            print(f"    ... and {len(r.problems) - len(shown)} more")
    for p in result["problems"]:
        print(f"  {p}")
    summary = (
        f"{total - bad} of {_plural(total, 'chunk')} in {_plural(len(reports), 'array')} decoded"
    )
    if bad:
        summary += f"; {_plural(bad, 'bad chunk')} in {_plural(bad_arrays, 'array')}"
    if result["problems"]:
        summary += f"; {_plural(len(result['problems']), 'other problem')}"
    print(f"{'OK' if ok else 'FAILED'}: {summary} ({elapsed:.2f} s)")
    return EXIT_OK if ok else EXIT_BAD_DATA
