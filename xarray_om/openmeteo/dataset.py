"""What the layouts found, turned into the Dataset xarray opens.

Each layout builds a :class:`Built` (time axis, :class:`Variables` on one
grid, attributes); :class:`BuiltEntrypoint` hands it to
:func:`xarray.open_dataset` so that ``chunks=``, dask tokens and closing work
as for any backend.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import xarray as xr
from xarray.backends.common import BackendEntrypoint
from xarray.core import indexing

from .. import conventions as conv
from .. import grids
from ..format.reader import OmArray
from .messages import warn
from .series import SeriesArray
from .store import OpenFiles
from .times import datetimes

_MEMBER = "member"


@dataclass
class Variable:
    """One data variable: its lazy array and what the probe file says about it."""

    name: str
    array: SeriesArray
    attrs: dict[str, Any]
    encoding: dict[str, Any]
    members: np.ndarray | None  # member numbers; None: no member axis


class Variables:
    """The data variables of one Dataset: one grid, and one member axis for ensembles."""

    def __init__(self, grid: grids.GridCoords) -> None:
        self.grid = grid
        self.items: list[Variable] = []

    def add(
        self,
        name: str,
        array: SeriesArray,
        probe: OmArray,
        members: np.ndarray | None,
        preferred: tuple[Any, ...],
    ) -> None:
        """Add variable ``name`` described by ``probe``, one of its files.

        ``preferred`` gives the preferred dask chunks per dimension (time,
        y, x and member when ``members`` is given): whole files along time
        and whole OM chunks in space.
        """
        if members is not None:
            for other in self.items:
                if other.members is not None and not np.array_equal(other.members, members):
                    raise ValueError(
                        f"{name!r} has members {members.tolist()}, another variable "
                        f"{other.members.tolist()}: open them separately"
                    )
        encoding = _encoding(probe, self.dims(members is not None), preferred)
        self.items.append(Variable(name, array, _var_attrs(probe), encoding, members))

    def dims(self, has_member: bool) -> tuple[str, ...]:
        ydim, xdim = self.grid.dims
        return (conv.TIME, ydim, xdim, *((_MEMBER,) if has_member else ()))

    @property
    def members(self) -> np.ndarray | None:
        """The member numbers shared by the ensemble variables (None: no ensemble)."""
        return next((v.members for v in self.items if v.members is not None), None)


def dtype_for(arr: OmArray) -> np.dtype:
    """Dtype of a variable stored as ``arr``."""
    dt = np.dtype(arr.dtype)
    # NaN marks missing data: integer arrays are promoted to float64.
    return dt if dt.kind == "f" else np.dtype(np.float64)


def space_chunks(arr: OmArray, ny: int, nx: int) -> tuple[int, int]:
    """Preferred (y, x) chunks of a variable stored as ``arr``: its OM chunks."""
    return min(int(arr.chunks[0]), ny), min(int(arr.chunks[1]), nx)


def grid_for(crs_wkt: Any, ny: int, nx: int, use_pyproj: bool | None) -> grids.GridCoords:
    """Grid coordinates of an (ny, nx) grid; approximations are warned about."""
    g = grids.grid_coordinates(crs_wkt, ny, nx, use_pyproj=use_pyproj)
    for note in g.notes:
        warn(note)
    return g


def _var_attrs(node: Any) -> dict[str, Any]:
    attrs = conv.variable_attrs(node)
    # Per-file values (or coordinates of the Dataset) that are no variable's attributes.
    for k in (conv.COORDINATES, "crs_wkt", "created_at", conv.FORECAST_REFERENCE_TIME, conv.TIME):
        attrs.pop(k, None)
    return attrs


def _encoding(arr: OmArray, dims: tuple[str, ...], preferred: tuple[Any, ...]) -> dict[str, Any]:
    enc = {
        conv.ENCODING_COMPRESSION: arr.compression,
        conv.ENCODING_SCALE_FACTOR: float(arr.scale_factor),
        conv.ENCODING_ADD_OFFSET: float(arr.add_offset),
        conv.ENCODING_PREFERRED_CHUNKS: dict(zip(dims, preferred, strict=True)),
    }
    # Uniform chunks only: data/ gives one size per file along time (a tuple).
    if all(isinstance(p, int) for p in preferred):
        enc[conv.ENCODING_CHUNKS] = tuple(preferred)
    return enc


@dataclass(eq=False)  # compared by identity, like any "file" object
class Built:
    """Everything :func:`~xarray_om.open_openmeteo` found, handed to xarray as one "file"."""

    files: OpenFiles
    layout: str
    model: str
    source: str  # where the files are, for the "source" attribute
    time_seconds: np.ndarray
    variables: Variables
    #: Distinguishes opens of the same variables (dask token): time range, files.
    key: tuple = ()
    attrs: dict[str, Any] = field(default_factory=dict)  # beyond source, model and layout
    reference_time: int | None = None  # forecast_reference_time, Unix seconds

    def __dask_tokenize__(self) -> tuple:
        names = tuple(v.name for v in self.variables.items)
        label = self.files.store.label
        return ("xarray_om.open_openmeteo", label, self.layout, self.model, names, *self.key)

    def dataset(self) -> xr.Dataset:
        coords: dict[Hashable, xr.Variable] = {}
        time_attrs = {"standard_name": "time", "long_name": "time"}
        coords[conv.TIME] = xr.Variable((conv.TIME,), datetimes(self.time_seconds), time_attrs)
        grid = self.variables.grid
        for name, (dims, values, attrs) in grid.coords.items():
            coords[name] = xr.Variable(dims, values, attrs)
        mapping = grid.grid_mapping
        if mapping is not None:
            coords[mapping[0]] = xr.Variable((), np.int32(0), mapping[1])
        members = self.variables.members
        if members is not None:
            coords[_MEMBER] = xr.Variable((_MEMBER,), members, {"long_name": "member"})
        if self.reference_time is not None:
            coords[conv.FORECAST_REFERENCE_TIME] = xr.Variable(
                (),
                datetimes([self.reference_time])[0],
                {"standard_name": "forecast_reference_time"},
            )
        data_vars: dict[Hashable, xr.Variable] = {}
        for v in self.variables.items:
            attrs = dict(v.attrs)
            if mapping is not None:
                attrs["grid_mapping"] = mapping[0]
            data = indexing.LazilyIndexedArray(v.array)
            dims = self.variables.dims(v.members is not None)
            data_vars[v.name] = xr.Variable(dims, data, attrs, encoding=dict(v.encoding))
        attrs = {"source": self.source, "model": self.model, "openmeteo_layout": self.layout}
        ds = xr.Dataset(data_vars, coords=coords, attrs={**attrs, **self.attrs})
        ds.set_close(self.files.close)
        return ds


class BuiltEntrypoint(BackendEntrypoint):
    """Hands a prepared :class:`Built` to xarray (chunking, caching, closing)."""

    description = "Open-Meteo bucket layouts (xarray_om.open_openmeteo)"

    def open_dataset(  # type: ignore[override]
        self, filename_or_obj: Any, *, drop_variables: Iterable[str] | None = None
    ) -> xr.Dataset:
        ds = filename_or_obj.dataset()
        if drop_variables:
            ds = ds.drop_vars(list(drop_variables), errors="ignore")
        return ds

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        return isinstance(filename_or_obj, Built)
