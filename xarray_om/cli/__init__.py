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
import os
import sys
import warnings
from collections.abc import Sequence

from .. import __version__
from ..errors import OmEncodingError, OmError
from ._common import (
    EXIT_BAD_DATA,
    EXIT_OK,
    EXIT_USAGE,
    UsageError,
    human_size,
    parse_storage_options,
)
from .convert import cmd_convert
from .info import cmd_info, file_info, render_info
from .verify import cmd_verify, verify_file

__all__ = [
    "EXIT_BAD_DATA",
    "EXIT_OK",
    "EXIT_USAGE",
    "UsageError",
    "build_parser",
    "file_info",
    "human_size",
    "main",
    "parse_storage_options",
    "render_info",
    "verify_file",
]


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
