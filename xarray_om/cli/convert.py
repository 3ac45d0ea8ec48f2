"""``xarray-om convert``: anything xarray opens to OM, or OM to NetCDF / Zarr."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..format.records import COMPRESSION_IDS
from ._common import (
    EXIT_OK,
    UsageError,
    _check_input,
    _is_url,
    _plural,
    _quiet_engine_warnings,
    _ratio,
    human_size,
    parse_storage_options,
)

#: Destination suffixes of ``convert`` and the format each selects.
TARGET_FORMATS = {".om": "om", ".nc": "netcdf", ".nc4": "netcdf", ".zarr": "zarr"}


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
            from .. import accessor

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
