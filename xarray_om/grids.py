"""Grid coordinates of Open-Meteo domains from their ``crs_wkt`` (OGC WKT2).

Open-Meteo writes a WKT2 string for every domain (in spatial and run files and
in every ``meta.json``). Its ``BBOX[lat0, lon0, lat1, lon1]`` holds the
WGS84 latitude/longitude of the **first and last grid point** (the corners of
the ``[ny, nx]`` grid), not a minimum/maximum box. The grid is regular in the
CRS's own coordinates, so:

* regular lat/lon (plain ``GEOGCRS``): 1-D ``latitude``/``longitude`` are
  ``linspace`` between the BBOX values (:func:`xarray_om.conventions.regular_grid_coordinates`);
* rotated lat/lon (``GEOGCRS`` with a ``PROJ ob_tran`` deriving conversion):
  both corners are rotated, 1-D ``rlat``/``rlon`` are ``linspace`` between them;
* projected (``PROJCRS``: Lambert conformal conic, stereographic, Lambert
  azimuthal equal-area): both corners are projected, 1-D ``x``/``y`` (metres)
  are ``linspace`` between them.

The forward formulas for the spherical earths Open-Meteo uses are implemented
here with numpy (no dependency). When ``pyproj`` is installed, 2-D
``latitude``/``longitude`` of every grid point are added (inverse transform to
the CRS's own geographic base, so no datum shift is applied). Reduced Gaussian
grids and unknown projections get plain ``y``/``x`` dimensions without
coordinate values. Every non-regular grid carries a CF ``grid_mapping``
variable with the (normalised) WKT in ``crs_wkt``.

Open-Meteo's WKT has small syntax slips (no comma before ``USAGE``/``CS``
after a closing bracket); :func:`parse_wkt` accepts elements separated by
commas and/or whitespace and :func:`format_wkt` writes standard WKT back.

This module depends on numpy only (pyproj is imported on demand).
"""

from __future__ import annotations

import importlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import conventions as conv

__all__ = [
    "GridCoords",
    "WktNode",
    "format_wkt",
    "grid_coordinates",
    "grid_kind",
    "infer_regular_shape",
    "parse_wkt",
    "project",
    "pyproj_module",
]

# --------------------------------------------------------------------------- WKT parsing


@dataclass
class WktNode:
    """One ``KEYWORD[arg, ...]`` element. Args are str, float, bare words or nodes."""

    keyword: str
    args: list[Any] = field(default_factory=list)

    def children(self, keyword: str) -> Iterator[WktNode]:
        """Direct child nodes with this keyword (case-insensitive)."""
        k = keyword.upper()
        return (a for a in self.args if isinstance(a, WktNode) and a.keyword.upper() == k)

    def child(self, keyword: str) -> WktNode | None:
        return next(self.children(keyword), None)

    def find(self, keyword: str) -> WktNode | None:
        """First node with this keyword anywhere below (depth first), or None."""
        k = keyword.upper()
        for a in self.args:
            if isinstance(a, WktNode):
                if a.keyword.upper() == k:
                    return a
                hit = a.find(keyword)
                if hit is not None:
                    return hit
        return None

    @property
    def name(self) -> str | None:
        """The first argument when it is a quoted string (the element's name)."""
        a = self.args[0] if self.args else None
        return a if isinstance(a, str) and not isinstance(a, _Word) else None


class _Word(str):
    """A bare (unquoted) WKT word such as ``north`` or ``Cartesian``."""


_TOKEN = re.compile(
    r"""\s*(?:
        (?P<open>[\[(]) | (?P<close>[\])]) | (?P<comma>,) |
        (?P<str>"(?:[^"]|"")*") |
        (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?) |
        (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
    )""",
    re.VERBOSE,
)
_MAX_DEPTH = 64


def parse_wkt(text: str) -> WktNode:
    """Parse one WKT (1 or 2) element into a :class:`WktNode` tree.

    Commas between elements are optional (Open-Meteo omits some); both
    ``[]`` and ``()`` brackets are accepted. Raises ValueError on text that is
    not a single bracketed element.
    """
    if not isinstance(text, str):
        raise ValueError(f"crs_wkt must be a string, not {type(text).__name__}")
    tokens: list[tuple[str, str]] = []
    pos, n = 0, len(text)
    while pos < n:
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise ValueError(f"invalid WKT near {text[pos : pos + 20]!r}")
        kind = m.lastgroup
        if kind is None:  # only whitespace matched
            break
        tokens.append((kind, m.group(kind)))
        pos = m.end()

    i = 0

    def element(depth: int) -> WktNode:
        nonlocal i
        if depth > _MAX_DEPTH:
            raise ValueError("WKT nested too deeply")
        kind, value = tokens[i]
        if kind != "word" or i + 1 >= len(tokens) or tokens[i + 1][0] != "open":
            raise ValueError(f"expected KEYWORD[ in WKT, got {value!r}")
        node = WktNode(value.upper())
        i += 2
        while True:
            if i >= len(tokens):
                raise ValueError(f"unterminated {node.keyword}[ in WKT")
            kind, value = tokens[i]
            if kind == "close":
                i += 1
                return node
            if kind == "comma":
                i += 1
            elif kind == "str":
                node.args.append(value[1:-1].replace('""', '"'))
                i += 1
            elif kind == "num":
                node.args.append(float(value))
                i += 1
            elif kind == "word":
                if i + 1 < len(tokens) and tokens[i + 1][0] == "open":
                    node.args.append(element(depth + 1))
                else:
                    node.args.append(_Word(value))
                    i += 1
            else:
                raise ValueError(f"unexpected {value!r} in WKT element {node.keyword}")

    if not tokens:
        raise ValueError("empty WKT")
    root = element(0)
    if i != len(tokens):
        raise ValueError("trailing text after the WKT element")
    return root


def format_wkt(node: WktNode) -> str:
    """Standard single-line WKT of a parsed tree (commas everywhere, quotes escaped)."""

    def fmt(a: Any) -> str:
        if isinstance(a, WktNode):
            return format_wkt(a)
        if isinstance(a, _Word):
            return str(a)
        if isinstance(a, str):
            return '"' + a.replace('"', '""') + '"'
        f = float(a)
        return str(int(f)) if f.is_integer() and abs(f) < 1e15 else repr(f)

    return f"{node.keyword}[{','.join(fmt(a) for a in node.args)}]"


# --------------------------------------------------------------------------- CRS description


@dataclass
class _Crs:
    kind: str  # "regular", "rotated", "projected", "gaussian", "unknown"
    tree: WktNode | None
    bbox: tuple[float, float, float, float] | None
    method: str = ""
    params: dict[str, float] = field(default_factory=dict)
    radius: float | None = None  # sphere radius (m); None for ellipsoids


def _params(conversion: WktNode | None) -> dict[str, float]:
    out: dict[str, float] = {}
    if conversion is None:
        return out
    for p in conversion.children("PARAMETER"):
        if len(p.args) >= 2 and isinstance(p.args[0], str) and isinstance(p.args[1], float):
            out[_norm(p.args[0])] = p.args[1]
    return out


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()


def _bbox(tree: WktNode) -> tuple[float, float, float, float] | None:
    node = tree.find("BBOX")
    if node is None or len(node.args) != 4:
        return None
    vals = node.args
    if not all(isinstance(v, float) and math.isfinite(v) for v in vals):
        return None
    return (vals[0], vals[1], vals[2], vals[3])


def _sphere_radius(tree: WktNode) -> float | None:
    ell = tree.find("ELLIPSOID") or tree.find("SPHEROID")
    if ell is None:
        return None
    nums = [a for a in ell.args if isinstance(a, float)]
    if len(nums) >= 2 and nums[1] == 0.0 and nums[0] > 0:
        return nums[0]
    return None


def _describe(crs_wkt: Any) -> _Crs:
    if not isinstance(crs_wkt, str) or not crs_wkt.strip():
        return _Crs("unknown", None, None)
    try:
        tree = parse_wkt(crs_wkt)
    except ValueError:
        return _Crs("unknown", None, None)
    bbox = _bbox(tree)
    radius = _sphere_radius(tree)
    kw = tree.keyword
    if kw in ("GEOGCRS", "GEODCRS", "GEOGRAPHICCRS"):
        deriving = tree.child("DERIVINGCONVERSION")
        if deriving is not None:
            method = deriving.child("METHOD")
            mname = (method.name or "") if method is not None else ""
            if "ob_tran" in mname.lower() or "rotat" in mname.lower():
                return _Crs("rotated", tree, bbox, "rotated", _params(deriving), radius)
            return _Crs("unknown", tree, bbox, mname, _params(deriving), radius)
        text = crs_wkt.upper()
        if "GAUSSIAN" in text:
            return _Crs("gaussian", tree, bbox)
        if conv.regular_grid_bbox(crs_wkt) is not None:
            return _Crs("regular", tree, bbox)
        return _Crs("unknown", tree, bbox)
    if kw in ("PROJCRS", "PROJECTEDCRS"):
        conversion = tree.child("CONVERSION")
        method = conversion.child("METHOD") if conversion is not None else None
        mname = (method.name or "") if method is not None else ""
        return _Crs("projected", tree, bbox, _method_key(mname), _params(conversion), radius)
    return _Crs("unknown", tree, bbox)


def _method_key(name: str) -> str:
    n = _norm(name)
    if "lambert" in n and "conic" in n:
        return "lcc_1sp" if "1sp" in n else "lcc"
    if "azimuthal" in n and "equal" in n:
        return "laea"
    if "polar stereographic" in n:
        return "polar_stereo_b" if "variant b" in n else "stereo"
    if "stereographic" in n:
        return "stereo"
    return n


def grid_kind(crs_wkt: Any) -> str:
    """``"regular"``, ``"rotated"``, ``"projected"``, ``"gaussian"`` or ``"unknown"``."""
    return _describe(crs_wkt).kind


# --------------------------------------------------------------------------- projections


def _p(params: dict[str, float], *names: str, default: float | None = None) -> float:
    for n in names:
        if n in params:
            return params[n]
    if default is None:
        raise KeyError(names[0])
    return default


def _wrap(dlon: np.ndarray) -> np.ndarray:
    """Longitude difference (degrees) into [-180, 180)."""
    return (dlon + 180.0) % 360.0 - 180.0


def _rotate(crs: _Crs, lat: Any, lon: Any) -> tuple[np.ndarray, np.ndarray]:
    """Geographic -> rotated (rlat, rlon) in degrees, CF rotated_latitude_longitude.

    PROJ ``ob_tran o_proj=longlat`` with ``o_lon_p = 0`` puts the rotated
    north pole at latitude ``o_lat_p`` and longitude ``lon_0 - 180``; rotated
    longitude 0 is the meridian ``lon_0`` (the domain's centre line).
    """
    pole_lat = math.radians(_p(crs.params, "o lat p"))
    pole_lon = _p(crs.params, "lon 0", default=0.0) - 180.0
    o_lon_p = _p(crs.params, "o lon p", default=0.0)
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    dl = np.radians(_wrap(np.asarray(lon, dtype=np.float64) - pole_lon))
    x = np.cos(phi) * np.cos(dl)
    y = np.cos(phi) * np.sin(dl)
    z = np.sin(phi)
    # Rotate about the y axis so that the pole becomes the z axis, then turn
    # by 180 degrees so that rotated longitude 0 faces away from the pole.
    xr = -(x * math.sin(pole_lat) - z * math.cos(pole_lat))
    zr = x * math.cos(pole_lat) + z * math.sin(pole_lat)
    rlat = np.degrees(np.arcsin(np.clip(zr, -1.0, 1.0)))
    rlon = np.degrees(np.arctan2(-y, xr)) - o_lon_p
    return rlat, _wrap(rlon)


def _project(crs: _Crs, lat: Any, lon: Any) -> tuple[np.ndarray, np.ndarray]:
    """Spherical forward projection (x, y in metres) for the methods Open-Meteo uses."""
    if crs.radius is None:
        raise NotImplementedError("only spherical earths are projected without pyproj")
    r = crs.radius
    p = crs.params
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    lam = np.asarray(lon, dtype=np.float64)
    fe = _p(p, "false easting", "easting at false origin", default=0.0)
    fn = _p(p, "false northing", "northing at false origin", default=0.0)
    m = crs.method
    if m in ("lcc", "lcc_1sp"):
        if m == "lcc":
            phi0 = math.radians(_p(p, "latitude of false origin"))
            lam0 = _p(p, "longitude of false origin")
            phi1 = math.radians(_p(p, "latitude of 1st standard parallel"))
            phi2 = math.radians(_p(p, "latitude of 2nd standard parallel", default=math.nan))
            if math.isnan(phi2):
                phi2 = phi1
            k0 = 1.0
        else:
            phi0 = math.radians(_p(p, "latitude of natural origin"))
            lam0 = _p(p, "longitude of natural origin")
            phi1 = phi2 = phi0
            k0 = _p(p, "scale factor at natural origin", default=1.0)

        def t(a: Any) -> Any:
            return np.tan(np.pi / 4 + np.asarray(a) / 2)

        if abs(phi1 - phi2) < 1e-12:
            n = math.sin(phi1)
        else:
            n = math.log(math.cos(phi1) / math.cos(phi2)) / math.log(t(phi2) / t(phi1))
        f = math.cos(phi1) * t(phi1) ** n / n
        rho = r * k0 * f / t(phi) ** n
        rho0 = r * k0 * f / t(phi0) ** n
        theta = n * np.radians(_wrap(lam - lam0))
        return rho * np.sin(theta) + fe, rho0 - rho * np.cos(theta) + fn
    if m in ("stereo", "polar_stereo_b"):
        if m == "polar_stereo_b":
            phic = math.radians(_p(p, "latitude of standard parallel"))
            phi0 = math.copysign(math.pi / 2, phic)
            lam0 = _p(p, "longitude of origin", "longitude of natural origin", default=0.0)
            k0 = (1 + math.sin(abs(phic))) / 2
        else:
            phi0 = math.radians(_p(p, "latitude of natural origin", "latitude of origin"))
            lam0 = _p(p, "longitude of natural origin", "longitude of origin", default=0.0)
            k0 = _p(p, "scale factor at natural origin", default=1.0)
        dl = np.radians(_wrap(lam - lam0))
        c = 1 + math.sin(phi0) * np.sin(phi) + math.cos(phi0) * np.cos(phi) * np.cos(dl)
        k = 2 * k0 / c
        x = r * k * np.cos(phi) * np.sin(dl)
        y = r * k * (math.cos(phi0) * np.sin(phi) - math.sin(phi0) * np.cos(phi) * np.cos(dl))
        return x + fe, y + fn
    if m == "laea":
        phi0 = math.radians(_p(p, "latitude of natural origin", "latitude of origin"))
        lam0 = _p(p, "longitude of natural origin", "longitude of origin", default=0.0)
        dl = np.radians(_wrap(lam - lam0))
        c = 1 + math.sin(phi0) * np.sin(phi) + math.cos(phi0) * np.cos(phi) * np.cos(dl)
        k = np.sqrt(2 / c)
        x = r * k * np.cos(phi) * np.sin(dl)
        y = r * k * (math.cos(phi0) * np.sin(phi) - math.sin(phi0) * np.cos(phi) * np.cos(dl))
        return x + fe, y + fn
    raise NotImplementedError(f"projection method {crs.method!r} is not implemented")


def project(crs_wkt: str, lat: Any, lon: Any) -> tuple[np.ndarray, np.ndarray]:
    """Forward-transform WGS84 degrees to the CRS's own grid coordinates.

    Rotated grids give (rlon, rlat) in degrees, projected grids (x, y) in
    metres. Spherical Lambert conformal conic (1SP/2SP), stereographic
    (oblique and polar), Lambert azimuthal equal-area and PROJ ``ob_tran``
    rotations only; NotImplementedError otherwise.
    """
    crs = _describe(crs_wkt)
    if crs.kind == "rotated":
        rlat, rlon = _rotate(crs, lat, lon)
        return rlon, rlat
    if crs.kind == "projected":
        return _project(crs, lat, lon)
    raise NotImplementedError(f"no projection for a {crs.kind!r} grid")


# --------------------------------------------------------------------------- coordinates


@dataclass
class GridCoords:
    """Dimension names and coordinate arrays of one grid (no xarray objects).

    ``coords`` maps a name to ``(dims, values, attrs)``; ``grid_mapping`` is
    ``(name, attrs)`` of the CF grid-mapping scalar variable, or None for
    regular lat/lon grids without WKT.
    """

    kind: str
    dims: tuple[str, str]
    coords: dict[str, tuple[tuple[str, ...], np.ndarray, dict[str, Any]]]
    grid_mapping: tuple[str, dict[str, Any]] | None
    notes: list[str] = field(default_factory=list)


#: Name of the CF grid-mapping variable added to datasets.
GRID_MAPPING_NAME = "crs"


def pyproj_module() -> Any:
    """The ``pyproj`` module, or None when it is not installed."""
    try:
        return importlib.import_module("pyproj")
    except ImportError:
        return None


def _linspace(a: float, b: float, n: int) -> np.ndarray:
    if n == 1:
        return np.array([a], dtype=np.float64)
    return np.linspace(a, b, n, dtype=np.float64)


def _cf_mapping(crs: _Crs, wkt: str) -> dict[str, Any]:
    attrs: dict[str, Any] = {"crs_wkt": wkt}
    p = crs.params
    if crs.radius is not None:
        attrs["earth_radius"] = crs.radius
    try:
        if crs.kind == "regular":
            attrs["grid_mapping_name"] = "latitude_longitude"
        elif crs.kind == "rotated":
            attrs["grid_mapping_name"] = "rotated_latitude_longitude"
            attrs["grid_north_pole_latitude"] = _p(p, "o lat p")
            attrs["grid_north_pole_longitude"] = float(
                _wrap(np.float64(_p(p, "lon 0", default=0.0) - 180.0))
            )
            attrs["north_pole_grid_longitude"] = _p(p, "o lon p", default=0.0)
        elif crs.method in ("lcc", "lcc_1sp"):
            attrs["grid_mapping_name"] = "lambert_conformal_conic"
            if crs.method == "lcc":
                s1 = _p(p, "latitude of 1st standard parallel")
                s2 = _p(p, "latitude of 2nd standard parallel", default=s1)
                attrs["standard_parallel"] = s1 if s1 == s2 else [s1, s2]
                attrs["latitude_of_projection_origin"] = _p(p, "latitude of false origin")
                attrs["longitude_of_central_meridian"] = _p(p, "longitude of false origin")
            else:
                lat0 = _p(p, "latitude of natural origin")
                attrs["standard_parallel"] = lat0
                attrs["latitude_of_projection_origin"] = lat0
                attrs["longitude_of_central_meridian"] = _p(p, "longitude of natural origin")
        elif crs.method == "stereo":
            lat0 = _p(p, "latitude of natural origin", "latitude of origin")
            lon0 = _p(p, "longitude of natural origin", "longitude of origin", default=0.0)
            k0 = _p(p, "scale factor at natural origin", default=1.0)
            if abs(abs(lat0) - 90.0) < 1e-9:
                attrs["grid_mapping_name"] = "polar_stereographic"
                attrs["straight_vertical_longitude_from_pole"] = lon0
            else:
                attrs["grid_mapping_name"] = "stereographic"
                attrs["longitude_of_projection_origin"] = lon0
            attrs["latitude_of_projection_origin"] = lat0
            attrs["scale_factor_at_projection_origin"] = k0
        elif crs.method == "laea":
            attrs["grid_mapping_name"] = "lambert_azimuthal_equal_area"
            attrs["latitude_of_projection_origin"] = _p(
                p, "latitude of natural origin", "latitude of origin"
            )
            attrs["longitude_of_projection_origin"] = _p(
                p, "longitude of natural origin", "longitude of origin", default=0.0
            )
        if crs.kind == "projected" and "grid_mapping_name" in attrs:
            attrs["false_easting"] = _p(p, "false easting", "easting at false origin", default=0.0)
            attrs["false_northing"] = _p(
                p, "false northing", "northing at false origin", default=0.0
            )
    except KeyError:
        # A parameter the CF mapping needs is missing from the WKT: a
        # grid_mapping_name with partial parameters would make CF readers
        # assume defaults (wrong grids); crs_wkt alone still describes the CRS.
        return {k: attrs[k] for k in ("crs_wkt", "earth_radius") if k in attrs}
    return attrs


def grid_coordinates(
    crs_wkt: Any, ny: int, nx: int, *, use_pyproj: bool | None = None
) -> GridCoords:
    """Dimensions and coordinates of a ``[ny, nx]`` Open-Meteo grid.

    Parameters
    ----------
    crs_wkt
        The domain's WKT2 string (None or unparsable: plain ``y``/``x``).
    ny, nx
        Grid size (rows, columns).
    use_pyproj
        Add 2-D ``latitude``/``longitude`` of rotated/projected grids with
        pyproj: None (default) when pyproj is importable, True (raise
        ImportError without it), False never.

    Returns
    -------
    GridCoords
        Regular grids: dims ``("latitude", "longitude")`` with 1-D
        coordinates. Rotated: ``("rlat", "rlon")`` in rotated degrees.
        Projected: ``("y", "x")`` in metres. Others: ``("y", "x")`` without
        values. Non-regular grids add the CF grid mapping ``crs``.
    """
    ny, nx = int(ny), int(nx)
    crs = _describe(crs_wkt)
    wkt = format_wkt(crs.tree) if crs.tree is not None else None
    mapping = (GRID_MAPPING_NAME, _cf_mapping(crs, wkt)) if wkt else None
    if crs.kind == "regular":
        grid = conv.regular_grid_coordinates(crs_wkt, ny, nx)
        if grid is not None:
            lat, lon = grid
            coords = {
                "latitude": (("latitude",), lat, dict(conv.LATITUDE_ATTRS)),
                "longitude": (("longitude",), lon, dict(conv.LONGITUDE_ATTRS)),
            }
            return GridCoords("regular", ("latitude", "longitude"), coords, mapping)
    notes: list[str] = []
    if crs.tree is None and isinstance(crs_wkt, str) and crs_wkt.strip():
        notes.append(f"crs_wkt is not valid WKT, the grid has no coordinates: {crs_wkt[:60]!r}")
    if crs.kind not in ("rotated", "projected") or crs.bbox is None:
        if crs.kind == "gaussian":
            notes.append("reduced Gaussian grid: no per-point coordinates are derived")
        return GridCoords(crs.kind, ("y", "x"), {}, mapping, notes)

    lat0, lon0, lat1, lon1 = crs.bbox
    if crs.kind == "rotated":
        dims: tuple[str, str] = ("rlat", "rlon")
        rlat, rlon = _rotate(crs, [lat0, lat1], [lon0, lon1])
        if rlon[1] < rlon[0]:  # the grid crosses the rotated antimeridian
            rlon[1] += 360.0
        yv, xv = _linspace(rlat[0], rlat[1], ny), _linspace(rlon[0], rlon[1], nx)
        coords = {
            "rlat": (("rlat",), yv, {"standard_name": "grid_latitude", "units": "degrees"}),
            "rlon": (("rlon",), xv, {"standard_name": "grid_longitude", "units": "degrees"}),
        }
    else:
        dims = ("y", "x")
        try:
            xs, ys = _project(crs, [lat0, lat1], [lon0, lon1])
        except (NotImplementedError, KeyError) as exc:
            notes.append(f"no x/y coordinates: {exc}")
            return GridCoords(crs.kind, dims, {}, mapping, notes)
        yv, xv = _linspace(ys[0], ys[1], ny), _linspace(xs[0], xs[1], nx)
        coords = {
            "y": (("y",), yv, {"standard_name": "projection_y_coordinate", "units": "m"}),
            "x": (("x",), xv, {"standard_name": "projection_x_coordinate", "units": "m"}),
        }
    pyproj = None
    if use_pyproj is None or use_pyproj:
        pyproj = pyproj_module()
        if pyproj is None and use_pyproj:
            raise ImportError("use_pyproj=True needs pyproj (pip install pyproj)")
    if pyproj is not None and wkt is not None:
        try:
            lat2d, lon2d = _latlon_pyproj(pyproj, crs, wkt, yv, xv)
        except Exception as exc:  # pyproj cannot read this CRS: keep the 1-D grid
            if use_pyproj:
                raise
            notes.append(f"pyproj could not transform the grid: {exc}")
        else:
            coords["latitude"] = (dims, lat2d, dict(conv.LATITUDE_ATTRS))
            coords["longitude"] = (dims, lon2d, dict(conv.LONGITUDE_ATTRS))
    return GridCoords(crs.kind, dims, coords, mapping, notes)


def _latlon_pyproj(
    pyproj: Any, crs: _Crs, wkt: str, yv: np.ndarray, xv: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    src = pyproj.CRS.from_wkt(wkt)
    geo = src.geodetic_crs
    if crs.kind == "rotated":
        # A derived geographic CRS is its own geodetic CRS in PROJ: build the
        # unrotated base (BASEGEOGCRS lacks the coordinate system WKT needs).
        base = crs.tree.child("BASEGEOGCRS") if crs.tree is not None else None
        if base is None:
            raise ValueError("rotated grid without BASEGEOGCRS")
        extra = parse_wkt(
            'X[CS[ellipsoidal,2],AXIS["latitude",north],AXIS["longitude",east],'
            'ANGLEUNIT["degree",0.0174532925199433]]'
        ).args
        geo = pyproj.CRS.from_wkt(format_wkt(WktNode("GEOGCRS", [*base.args, *extra])))
    tr = pyproj.Transformer.from_crs(src, geo, always_xy=True)
    xx, yy = np.meshgrid(xv, yv)
    lon, lat = tr.transform(xx, yy)
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    return lat, _wrap(lon)


def infer_regular_shape(crs_wkt: Any, n_points: int) -> tuple[int, int] | None:
    """``(ny, nx)`` of a regular lat/lon grid with ``n_points`` points, from its BBOX.

    Legacy files store ``[ny * nx, time]`` without the split. Open-Meteo's
    regular grids have equal latitude and longitude steps, so the divisor pair
    whose steps agree best (within 0.1 %) is taken. None when no pair fits or
    the WKT is not a regular grid.
    """
    bbox = conv.regular_grid_bbox(crs_wkt)
    if bbox is None or n_points < 1:
        return None
    lat0, lon0, lat1, lon1 = bbox
    dlat_span, dlon_span = abs(lat1 - lat0), abs(lon1 - lon0)
    best: tuple[float, int, int] | None = None
    for ny in _divisors(int(n_points)):
        nx = n_points // ny
        if ny < 2 or nx < 2:
            continue
        dy, dx = dlat_span / (ny - 1), dlon_span / (nx - 1)
        if dy <= 0 or dx <= 0:
            continue
        err = abs(dy - dx) / max(dy, dx)
        if best is None or err < best[0]:
            best = (err, ny, nx)
    if best is None or best[0] > 1e-3:
        return None
    return best[1], best[2]


def _divisors(n: int) -> list[int]:
    out = []
    i = 1
    while i * i <= n:
        if n % i == 0:
            out.append(i)
            if i != n // i:
                out.append(n // i)
        i += 1
    return sorted(out)
