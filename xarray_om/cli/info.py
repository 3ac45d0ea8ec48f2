"""``xarray-om info``: the record tree of a file, as text (like ``ncdump -h``) or JSON."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import OmError
from ..format.records import COMPRESSION_IDS, uses_scale
from ._common import (
    EXIT_BAD_DATA,
    EXIT_OK,
    _attr_text,
    _check_input,
    _json_value,
    _name_text,
    _plural,
    _ratio,
    human_size,
    parse_storage_options,
)


def _known_dims(root: Any) -> set[str]:
    """Dimension names declared by any ``coordinates`` string in the tree."""
    from .. import conventions as conv

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
    from .. import conventions as conv

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
    from .. import conventions as conv
    from ..format.reader import OmFile

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
