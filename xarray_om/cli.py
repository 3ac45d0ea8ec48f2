"""The ``xarray-om`` command line: ``info``, ``convert`` and ``verify``.

Usage
-----
``xarray-om info FILE|URL``
    Print the record tree like ``ncdump -h``: groups, arrays with dimension
    names, shapes, OM chunks, compression, OM scaling, attributes, raw and
    stored sizes and the compression ratio. ``--json`` prints the same as JSON.
``xarray-om convert SRC DST``
    Convert anything xarray opens to OM (``DST`` ending in ``.om``), or an OM
    file (or anything else) to NetCDF (``.nc``) or Zarr (``.zarr``). The
    direction follows the destination suffix. Encoding options:
    ``--compression``, ``--scale-factor``, ``--add-offset``, ``--chunks``
    (each ``[VAR=]VALUE``; without ``VAR=`` it applies to every floating-point
    data variable, or for ``--chunks`` to every data variable of that rank),
    ``--progress`` shows a dask progress bar.
``xarray-om verify FILE|URL``
    Decode every chunk of every array and report each one that fails, with
    its index, chunk coordinates and byte range.

``FILE|URL`` is a local path or an fsspec URL (``s3://``, ``https://``...);
``--storage-option KEY=VALUE`` (repeatable; VALUE parsed as JSON when
possible) passes fsspec options. ``python -m xarray_om.cli`` works too.

Exit codes
----------
0
    Success (``verify``: every record and chunk decoded).
1
    The input is damaged or not an OM file: ``verify`` found a bad chunk or
    record, or ``info`` / ``convert`` could not read it (an
    :class:`~xarray_om.errors.OmFormatError` / ``OmCodecError``).
2
    Usage or environment error: bad arguments, a missing input, an existing
    destination without ``--overwrite``, an unsupported suffix, an encoding the
    writer rejects, an I/O error.

Limits
------
OM files carry no checksums: ``verify`` finds structural damage (look-up
table, records, chunks that do not decode or do not use exactly their byte
range), not bit flips that still decode to (wrong) numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import OmEncodingError, OmError
from .format.records import COMPRESSION_IDS, uses_scale

__all__ = ["EXIT_BAD_DATA", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_BAD_DATA = 1
EXIT_USAGE = 2

#: Destination suffixes of ``convert`` and the format each selects.
TARGET_FORMATS = {".om": "om", ".nc": "netcdf", ".nc4": "netcdf", ".zarr": "zarr"}

# verify: chunks per batched read, and the byte budget of one batch.
_VERIFY_BATCH = 512
_VERIFY_BATCH_BYTES = 32 << 20


class UsageError(Exception):
    """A problem with the command line (exit code 2)."""


# --------------------------------------------------------------------------- helpers


def human_size(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"`` (binary units; bytes without decimals)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _ratio(raw: float, stored: float) -> str:
    return f"{raw / stored:.2f}x" if stored > 0 and raw > 0 else "n/a"


def parse_storage_options(items: Sequence[str] | None) -> dict[str, Any] | None:
    """``["anon=true", "client_kwargs={...}"]`` -> dict (JSON values, else strings)."""
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"storage option {item!r} is not KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _is_url(s: str) -> bool:
    return "://" in s


def _json_value(v: Any) -> Any:
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return repr(v)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


def _attr_text(v: Any, dtype: str) -> str:
    if dtype == "string":
        return json.dumps(v, ensure_ascii=False)
    return f"{v} ({dtype})"


def _name_text(name: str) -> str:
    return name if name.isidentifier() else json.dumps(name, ensure_ascii=False)


def _quiet_engine_warnings() -> None:
    # The CLI always names its engine; the omfiles clash warnings would only confuse.
    warnings.filterwarnings("ignore", message=r"Found \d+ entrypoints for the engine name")
    warnings.filterwarnings("ignore", message=r"The xarray engine name 'om' is also registered")
    # xarray writes consolidated metadata into Zarr v3 stores (read by xarray, zarr-python).
    warnings.filterwarnings("ignore", message=r"Consolidated metadata is currently not part")


def _check_input(path: str) -> None:
    if not _is_url(path) and not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")


# --------------------------------------------------------------------------- info


def _known_dims(root: Any) -> set[str]:
    """Dimension names declared by any ``coordinates`` string in the tree."""
    from . import conventions as conv

    names: set[str] = set()
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen or node.kind == "scalar":
            continue
        seen.add(id(node))
        for c in node.children:
            if c.kind == "scalar" and c.name == conv.COORDINATES:
                parsed = conv.parse_dimension_string(c.value)
                names.update(parsed or ())
            else:
                stack.append(c)
    return names


@dataclass
class _InfoContext:
    layout: str
    known_dims: set[str]
    root_name: str
    errors: list[str] = field(default_factory=list)


def _describe(node: Any, ancestors: list[Any], ctx: _InfoContext) -> dict[str, Any]:
    """One node of the tree as a JSON-ready dict (arrays with geometry and sizes)."""
    from . import conventions as conv

    out: dict[str, Any] = {"kind": node.kind, "name": node.name, "path": node.path}
    try:
        if node.kind == "scalar":
            out["value"] = _json_value(node.value)
            out["dtype"] = "string" if node.dtype is None else str(node.dtype)
            return out
        children = node.children
        attrs, types = {}, {}
        for c in children:
            if c.kind == "scalar" and c.name not in conv.RESERVED_NAMES and c.name not in attrs:
                attrs[c.name] = _json_value(c.value)
                types[c.name] = "string" if c.dtype is None else str(c.dtype)
        out["attrs"] = attrs
        out["attr_dtypes"] = types
        if node.kind == "array":
            if not ancestors and not node.name:
                out["display_name"] = ctx.root_name
            dims, rule = conv.dimension_names(
                node, ancestors=ancestors[::-1], known_dims=ctx.known_dims, layout=ctx.layout
            )
            raw = node.size * node.dtype.itemsize
            stored = node.nbytes_compressed if node.n_chunks else 0
            out.update(
                dtype=str(node.dtype),
                dims=list(dims),
                dims_from=rule,
                shape=list(node.shape),
                chunks=list(node.chunks),
                chunk_grid=list(node.chunk_grid),
                n_chunks=node.n_chunks,
                compression=node.compression,
                scale_factor=float(node.scale_factor),
                add_offset=float(node.add_offset),
                raw_bytes=raw,
                stored_bytes=stored,
                ratio=(raw / stored) if stored else None,
            )
        out["children"] = [
            _describe(c, [*ancestors, node], ctx) for c in children if c.kind != "scalar"
        ]
    except OmError as exc:
        out["error"] = str(exc)
        ctx.errors.append(f"{node.path or '/'}: {exc}")
    return out


def file_info(source: str, storage_options: dict | None = None) -> dict[str, Any]:
    """The description ``xarray-om info`` prints, as a dict (see ``--json``)."""
    from . import conventions as conv
    from .format.reader import OmFile

    with OmFile(source, storage_options=storage_options) as f:
        root = f.root
        layout = conv.detect_layout(root, version=f.version, source_name=f.source_name)
        ctx = _InfoContext(
            layout=layout,
            known_dims=_known_dims(root) if f.version == 3 else set(),
            root_name=conv.root_array_name(f.source_name),
        )
        tree = _describe(root, [], ctx)
        arrays = list(_arrays_of(tree))
        raw = sum(a["raw_bytes"] for a in arrays)
        stored = sum(a["stored_bytes"] for a in arrays)
        return {
            "file": f.source_name,
            "version": f.version,
            "size": f.size,
            "layout": layout,
            "n_arrays": len(arrays),
            "raw_bytes": raw,
            "stored_bytes": stored,
            "ratio": (raw / stored) if stored else None,
            "file_ratio": (raw / f.size) if f.size else None,
            "root": tree,
            "errors": ctx.errors,
        }


def _arrays_of(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if node["kind"] == "array" and "raw_bytes" in node:
        yield node
    for c in node.get("children", ()):
        yield from _arrays_of(c)


def _render_node(node: dict[str, Any], depth: int, lines: list[str]) -> None:
    pad = "    " * depth
    label = _name_text(node["name"])
    if node["kind"] == "scalar":
        lines.append(f"{pad}scalar {label} = {_attr_text(node['value'], node['dtype'])}")
        return
    if node["kind"] == "group":
        lines.append(f"{pad}group {label} {{")
    elif "dims" in node:
        dims = ", ".join(f"{d}: {n}" for d, n in zip(node["dims"], node["shape"], strict=True))
        note = ""
        if "display_name" in node:
            note = f"  // unnamed root array, opened as {node['display_name']!r}"
        sep = " " if label.startswith('"') else ""
        lines.append(f"{pad}{node['dtype']} {label}{sep}({dims}) {{{note}")
        inner = pad + "    "
        grid = " x ".join(str(g) for g in node["chunk_grid"])
        lines.append(
            f"{inner}// chunks {tuple(node['chunks'])}, grid {grid} = {_plural(node['n_chunks'], 'chunk')}"
        )
        comp = f"{inner}// compression {node['compression']}"
        if uses_scale(np.dtype(node["dtype"]), COMPRESSION_IDS[node["compression"]]):
            comp += (
                f", om_scale_factor {node['scale_factor']:g}, om_add_offset "
                f"{node['add_offset']:g} (stored = round((value + add_offset) * scale_factor))"
            )
        lines.append(comp)
        lines.append(
            f"{inner}// size {human_size(node['raw_bytes'])} raw, "
            f"{human_size(node['stored_bytes'])} stored, "
            f"ratio {_ratio(node['raw_bytes'], node['stored_bytes'])}"
        )
    else:  # an array whose record could not be read
        lines.append(f"{pad}array {label} {{")
    inner = pad + "    "
    types = node.get("attr_dtypes", {})
    for k, v in node.get("attrs", {}).items():
        lines.append(f"{inner}:{_name_text(k)} = {_attr_text(v, types.get(k, ''))}")
    if "error" in node:
        lines.append(f"{inner}!! error: {node['error']}")
    for c in node.get("children", ()):
        _render_node(c, depth + 1, lines)
    lines.append(f"{pad}}}")


def render_info(info: dict[str, Any]) -> str:
    """Text form of :func:`file_info` (``ncdump -h`` style)."""
    lines = [
        f"om {info['file']} {{  // OM v{info['version']}, {human_size(info['size'])}, "
        f"layout: {info['layout']}"
    ]
    _render_node(info["root"], 1, lines)
    lines.append("}")
    ratio = _ratio(info["raw_bytes"], info["stored_bytes"])
    lines.append(
        f"// {_plural(info['n_arrays'], 'array')}: {human_size(info['raw_bytes'])} raw, "
        f"{human_size(info['stored_bytes'])} in chunks (ratio {ratio}); file "
        f"{human_size(info['size'])} ({info['size']} bytes)"
    )
    for e in info["errors"]:
        lines.append(f"// error: {e}")
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    _check_input(args.file)
    info = file_info(args.file, parse_storage_options(args.storage_option))
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
    else:
        print(render_info(info))
    return EXIT_BAD_DATA if info["errors"] else EXIT_OK


# --------------------------------------------------------------------------- verify


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
    from .format.reader import OmFile

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


# --------------------------------------------------------------------------- convert


def _parse_keyed(items: Sequence[str] | None, what: str) -> tuple[str | None, dict[str, str]]:
    """``["20", "t2m=10"]`` -> (global value, {var: value})."""
    glob: str | None = None
    per: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.rpartition("=")
        if sep and key:
            per[key] = value
        elif glob is not None:
            raise UsageError(f"{what} given twice without a variable name")
        else:
            glob = value if sep else item
    return glob, per


def _parse_float(value: str, what: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise UsageError(f"{what} {value!r} is not a number") from None
    if not math.isfinite(v):
        raise UsageError(f"{what} {value!r} is not finite")
    return v


def _parse_chunks(value: str) -> tuple[int, ...]:
    try:
        chunks = tuple(int(v) for v in value.split(","))
    except ValueError:
        raise UsageError(f"chunks {value!r} must be comma-separated integers") from None
    if any(c == 0 or c < -1 for c in chunks):
        raise UsageError(f"chunks {value!r}: sizes must be positive (-1 = whole dimension)")
    return chunks


def _is_om_path(src: str) -> bool:
    if src.lower().endswith(".om"):
        return True
    if _is_url(src) or not os.path.isfile(src):
        return False
    with open(src, "rb") as fh:
        return fh.read(3) in (b"OM\x01", b"OM\x02", b"OM\x03")


def _target_format(dst: str) -> str:
    suffix = Path(dst.rstrip("/")).suffix.lower()
    fmt = TARGET_FORMATS.get(suffix)
    if fmt is None:
        raise UsageError(
            f"cannot tell the output format of {dst!r}: use a name ending in "
            + ", ".join(TARGET_FORMATS)
        )
    return fmt


def _exists(path: str, storage_options: dict | None) -> bool:
    if not _is_url(path):
        return os.path.exists(path)
    import fsspec

    fs, p = fsspec.core.url_to_fs(path, **(storage_options or {}))
    return bool(fs.exists(p))


def _open_input(
    src: str, engine: str | None, storage_options: dict | None, chunks: Any, group: str | None
) -> tuple[Any, Any]:
    """(Dataset, closer) for ``src`` with any engine xarray has."""
    import xarray as xr

    kwargs: dict[str, Any] = {"chunks": chunks}
    if group:
        kwargs["group"] = group
    if engine is None:
        if _is_om_path(src):
            engine = "xarray_om"
        elif src.rstrip("/").lower().endswith(".zarr"):
            engine = "zarr"
    if engine in ("xarray_om", "om", "zarr"):
        if engine == "om":
            engine = "xarray_om"
        if storage_options:
            kwargs["storage_options"] = storage_options
        return xr.open_dataset(src, engine=engine, **kwargs), None
    if _is_url(src):
        import fsspec

        fh = fsspec.open(src, mode="rb", **(storage_options or {})).open()
        ds = xr.open_dataset(fh, engine=engine, **kwargs)
        return ds, fh
    return xr.open_dataset(src, engine=engine, **kwargs), None


def _drop_unnamed_attrs(ds: Any) -> Any:
    """Attributes with empty names (legal in OM) cannot be written to OM, NetCDF or Zarr."""
    for obj in [ds, *ds.variables.values()]:
        if "" in obj.attrs:
            label = "global" if obj is ds else "a variable"
            print(
                f"xarray-om convert: dropping {label} attribute with an empty name", file=sys.stderr
            )
            obj.attrs = {k: v for k, v in obj.attrs.items() if k != ""}
    return ds


def _float_data_vars(ds: Any) -> list[str]:
    return [str(k) for k, v in ds.data_vars.items() if v.dtype.kind == "f"]


def _check_names(ds: Any, names: Sequence[str], what: str) -> None:
    missing = [n for n in names if n not in ds.variables]
    if missing:
        raise UsageError(
            f"{what}: no variable {', '.join(map(repr, missing))} in the input "
            f"(variables: {', '.join(map(str, ds.variables))})"
        )


def _chunk_plan(ds: Any, items: Sequence[str] | None) -> dict[str, tuple[int, ...]]:
    glob, per = _parse_keyed(items, "--chunks")
    _check_names(ds, list(per), "--chunks")
    plan: dict[str, tuple[int, ...]] = {}
    if glob is not None:
        chunks = _parse_chunks(glob)
        for name, v in ds.data_vars.items():
            if v.ndim == len(chunks):
                plan[str(name)] = chunks
        if not plan:
            raise UsageError(f"--chunks {glob}: no data variable has {len(chunks)} dimensions")
    for name, value in per.items():
        chunks = _parse_chunks(value)
        if len(chunks) != ds[name].ndim:
            raise UsageError(
                f"--chunks {name}={value}: {name} has {ds[name].ndim} dimensions {ds[name].dims}"
            )
        plan[name] = chunks
    return plan


def om_encoding(ds: Any, args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """The ``to_om`` encoding the command-line options ask for."""
    enc: dict[str, dict[str, Any]] = {}
    floats = _float_data_vars(ds)
    for opt, key, parse in (
        ("compression", "compression", str),
        ("scale_factor", "scale_factor", _parse_float),
        ("add_offset", "add_offset", _parse_float),
    ):
        flag = "--" + opt.replace("_", "-")
        glob, per = _parse_keyed(getattr(args, opt), flag)
        _check_names(ds, list(per), flag)
        values = {n: glob for n in floats} if glob is not None else {}
        values.update(per)
        for name, raw in values.items():
            if key == "compression":
                if raw not in COMPRESSION_IDS:
                    raise UsageError(
                        f"{flag} {raw!r}: not an OM compression (one of "
                        + ", ".join(COMPRESSION_IDS)
                        + ")"
                    )
                value: Any = raw
            else:
                value = parse(raw, flag)  # type: ignore[call-arg]
            enc.setdefault(name, {})[key] = value
    for name, chunks in _chunk_plan(ds, args.chunks).items():
        enc.setdefault(name, {})["chunks"] = tuple(None if c == -1 else c for c in chunks)
    return enc


def _plain_encoding(ds: Any) -> Any:
    """Drop OM / source-format encodings that NetCDF and Zarr writers would misread.

    Only CF time encodings survive: a leftover ``dtype`` without its packing
    attributes would truncate floats, and OM ``chunks`` rarely suit the target.
    """
    ds = ds.copy()
    for v in ds.variables.values():
        keep = {}
        if v.dtype.kind in "mM":
            keep = {k: v.encoding[k] for k in ("units", "calendar", "dtype") if k in v.encoding}
        v.encoding = keep
    return ds


def _apply_target_chunks(ds: Any, plan: dict[str, tuple[int, ...]], key: str) -> Any:
    for name, chunks in plan.items():
        var = ds[name]
        sizes = tuple(n if c == -1 else min(c, n) for c, n in zip(chunks, var.shape, strict=True))
        if key == "chunks":  # zarr: dask chunks must line up with the zarr chunks
            ds[name] = var.chunk(dict(zip(var.dims, sizes, strict=True)))
        ds[name].encoding[key] = sizes
    return ds


def _tree_size(path: str, storage_options: dict | None) -> int:
    if _is_url(path):
        import fsspec

        fs, p = fsspec.core.url_to_fs(path, **(storage_options or {}))
        return int(fs.du(p)) if fs.isdir(p) else int(fs.size(p))
    if os.path.isdir(path):
        return sum(
            os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files
        )
    return os.path.getsize(path)


def _remove(path: str, storage_options: dict | None) -> None:
    import shutil

    if _is_url(path):
        import fsspec

        fs, p = fsspec.core.url_to_fs(path, **(storage_options or {}))
        fs.rm(p, recursive=True)
    elif os.path.isdir(path):
        shutil.rmtree(path)
    else:
        os.remove(path)


def cmd_convert(args: argparse.Namespace) -> int:
    _quiet_engine_warnings()
    fmt = _target_format(args.dst)
    src_opts = parse_storage_options(args.storage_option)
    dst_opts = parse_storage_options(args.target_option)
    om_only = [
        f"--{o.replace('_', '-')}" for o in ("scale_factor", "add_offset") if getattr(args, o)
    ]
    if fmt != "om" and om_only:
        raise UsageError(f"{', '.join(om_only)} only apply to OM output (DST ending in .om)")
    if fmt == "zarr" and args.compression:
        raise UsageError(
            "--compression is not supported for Zarr output (zarr's default codecs are used)"
        )
    if fmt == "netcdf" and args.compression and set(args.compression) - {"zlib", "none"}:
        raise UsageError("--compression for NetCDF output is 'zlib' or 'none'")
    if fmt == "netcdf" and _is_url(args.dst):
        raise UsageError("NetCDF output must be a local path")
    _check_input(args.src)
    if _exists(args.dst, dst_opts):
        if not args.overwrite:
            raise FileExistsError(f"{args.dst} exists (use --overwrite to replace it)")
        if fmt == "netcdf":
            _remove(args.dst, dst_opts)

    # dask chunks: OM and NetCDF targets re-block anyway ("auto" keeps tasks few and
    # aligned to the source's chunks); a Zarr target takes the source's own chunks.
    chunks = {} if fmt == "zarr" else "auto"
    ds, closer = _open_input(args.src, args.engine, src_opts, chunks, args.group)
    t0 = time.perf_counter()
    try:
        ds = _drop_unnamed_attrs(ds)
        raw = sum(int(v.nbytes) for v in ds.variables.values())
        progress = contextlib.nullcontext()
        if args.progress:
            from dask.diagnostics import ProgressBar

            progress = ProgressBar(out=sys.stderr)  # type: ignore[assignment]
        if fmt == "om":
            from . import accessor

            encoding = om_encoding(ds, args)
            with progress:
                accessor.to_om(ds, args.dst, encoding=encoding, storage_options=dst_opts, mode="w")
        else:
            plan = _chunk_plan(ds, args.chunks)
            out = _plain_encoding(ds)
            if fmt == "zarr":
                out = _apply_target_chunks(out, plan, "chunks")
                with progress:
                    out.to_zarr(args.dst, mode="w", storage_options=dst_opts)
            else:
                out = _apply_target_chunks(out, plan, "chunksizes")
                if args.compression and args.compression[-1] == "zlib":
                    for name in out.data_vars:
                        out[name].encoding.update(zlib=True, complevel=4)
                with progress:
                    out.to_netcdf(args.dst)
    finally:
        ds.close()
        if closer is not None:
            closer.close()
    elapsed = time.perf_counter() - t0
    size = _tree_size(args.dst, dst_opts)
    print(
        f"{args.src} -> {args.dst} ({fmt}): {_plural(len(ds.data_vars), 'data variable')}, "
        f"{human_size(raw)} in memory, {human_size(size)} written (ratio {_ratio(raw, size)}) "
        f"in {elapsed:.2f} s"
    )
    return EXIT_OK


# --------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xarray-om",
        description="Inspect, convert and verify Open-Meteo OM files.",
        epilog="Exit codes: 0 success; 1 damaged input (bad chunk/record, not an OM file); "
        "2 usage or I/O error.",
    )
    p.add_argument("--version", action="version", version=f"xarray-om {__version__}")
    p.add_argument("--traceback", action="store_true", help="show the full traceback of an error")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    so_help = "fsspec option for a URL input, KEY=VALUE (VALUE parsed as JSON if possible)"
    info = sub.add_parser(
        "info",
        help="print the record tree (like ncdump -h)",
        description="Print groups, arrays (dimension names, shape, OM chunks, compression, "
        "OM scale factor and offset, raw/stored sizes, compression ratio) and attributes.",
    )
    info.add_argument("file", metavar="FILE|URL")
    info.add_argument("--storage-option", "-s", action="append", metavar="KEY=VALUE", help=so_help)
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(func=cmd_info)

    conv = sub.add_parser(
        "convert",
        help="convert to OM (.om) or from OM to NetCDF (.nc) / Zarr (.zarr)",
        description="Convert SRC (anything xarray opens) to DST; the format follows DST's "
        "suffix: .om (ds.om.to_om), .nc/.nc4 (to_netcdf), .zarr (to_zarr). Encoding options "
        "take [VAR=]VALUE; without VAR= they apply to every floating-point data variable "
        "(--chunks: every data variable of that rank).",
    )
    conv.add_argument("src", metavar="SRC")
    conv.add_argument("dst", metavar="DST")
    conv.add_argument("--group", help="convert this group of SRC (default: the root)")
    conv.add_argument("--engine", help="xarray engine for SRC (default: guessed; OM -> xarray_om)")
    conv.add_argument(
        "--compression",
        action="append",
        metavar="[VAR=]NAME",
        help="OM: pfor_delta_2d_int16, fpx_xor_2d, pfor_delta_2d, "
        "pfor_delta_2d_int16_logarithmic; NetCDF: zlib or none",
    )
    conv.add_argument(
        "--scale-factor",
        action="append",
        metavar="[VAR=]X",
        help="OM scale factor: stored = round((value + add_offset) * X), e.g. 20 keeps 0.05 steps",
    )
    conv.add_argument(
        "--add-offset", action="append", metavar="[VAR=]X", help="OM add offset (OM semantics)"
    )
    conv.add_argument(
        "--chunks",
        action="append",
        metavar="[VAR=]N,N,...",
        help="chunk shape in the variable's dimension order (-1 = whole dimension)",
    )
    conv.add_argument("--progress", action="store_true", help="show a dask progress bar (stderr)")
    conv.add_argument("--overwrite", action="store_true", help="replace an existing DST")
    conv.add_argument("--storage-option", "-s", action="append", metavar="KEY=VALUE", help=so_help)
    conv.add_argument(
        "--target-option", "-t", action="append", metavar="KEY=VALUE",
        help="fsspec option for a URL destination",
    )  # fmt: skip
    conv.set_defaults(func=cmd_convert)

    ver = sub.add_parser(
        "verify",
        help="decode every chunk; exit 1 naming each bad chunk",
        description="Decode every chunk of every array and report failures (chunk index, "
        "chunk coordinates, byte range). OM has no checksums: damage that still decodes "
        "cannot be seen.",
    )
    ver.add_argument("file", metavar="FILE|URL")
    ver.add_argument("--storage-option", "-s", action="append", metavar="KEY=VALUE", help=so_help)
    ver.add_argument(
        "--max-report", type=int, default=20, metavar="N",
        help="problems listed per array (default 20; -1 = all)",
    )  # fmt: skip
    ver.add_argument("--json", action="store_true", help="print JSON instead of text")
    ver.set_defaults(func=cmd_verify)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():  # filters set by a command stay inside main()
            return int(args.func(args))
    except UsageError as exc:
        print(f"xarray-om {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly, like other Unix tools.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print("xarray-om: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.traceback:
            raise
        if isinstance(exc, OmEncodingError):
            code = EXIT_USAGE
        elif isinstance(exc, OmError):
            code = EXIT_BAD_DATA
        else:
            code = EXIT_USAGE
        print(f"xarray-om {args.command}: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return code


if __name__ == "__main__":
    sys.exit(main())
