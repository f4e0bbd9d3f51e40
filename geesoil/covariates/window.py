"""A k×k pixel context around each location: neighbour values of the covariates, as extra named columns.

GSoilCPM optionally feeds each covariate branch a k×k window of pixels around the sample (k = 2·window + 1), so the
network sees local spatial context (a valley floor next to a ridge) instead of one pixel. Here a window is a
:class:`Context`: ``window`` (0, 1 or 2 pixels each side), ``step_m`` (the pixel size in metres, fixed when the
model is trained and stored in it) and the covariate ``names`` that get neighbours.

Neighbour (dy, dx) of a location is the covariate's value ``dy·step_m`` metres north and ``dx·step_m`` metres east
of it, in a column named ``"<name>@<dy>,<dx>"`` (see :func:`column`). The same definition serves both ends:

* training tables (:func:`sample_context`): the source is sampled at the shifted points;
* map tiles (:func:`read_context`): the tile's grid is shifted by the same offset and read again, so a map at any
  scale sees the context the model was trained on. On a projected grid the shift follows the grid's axes (which
  differ from true north by the grid convergence, < 3° inside a UTM zone); on a geographic grid metres are
  converted to degrees at the tile's central latitude.

The model decides what to do with missing neighbours (see :mod:`geesoil.model.features`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from pyproj import CRS

from geesoil.covariates.source import CovariateSource
from geesoil.covariates.spec import CovariateSpec
from geesoil.errors import GeesoilError
from geesoil.grid import M_PER_DEG, Grid

#: the window sizes the network supports: 1×1, 3×3, 5×5
WINDOWS = (0, 1, 2)


@dataclass(frozen=True)
class Context:
    """``window`` pixels each side of a location, pixels ``step_m`` metres apart, for the covariates ``names``."""

    window: int
    step_m: float
    names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.window not in WINDOWS:
            raise GeesoilError(
                f"window must be one of {WINDOWS} (a 1×1, 3×3 or 5×5 pixel context), got {self.window}"
            )
        if self.window and not (math.isfinite(self.step_m) and self.step_m > 0):
            raise GeesoilError(
                f"a {self.size}×{self.size} window needs a pixel size > 0 m, got {self.step_m}"
            )

    @property
    def size(self) -> int:
        """k of the k×k window."""
        return 2 * self.window + 1

    @property
    def offsets(self) -> list[tuple[int, int]]:
        """(dy, dx) of every neighbour, north-west to south-east, the centre (0, 0) excluded."""
        w = self.window
        return [(dy, dx) for dy in range(w, -w - 1, -1) for dx in range(-w, w + 1) if (dy, dx) != (0, 0)]

    @property
    def columns(self) -> list[str]:
        """Every neighbour column this context adds, covariate by covariate."""
        return [column(n, dy, dx) for n in self.names for dy, dx in self.offsets]

    @classmethod
    def over(cls, window: int, step_m: float, covariates: Sequence[CovariateSpec]) -> Context:
        """The window over the continuous ``covariates`` (class maps are used at the centre pixel only)."""
        return cls(window, step_m, tuple(s.name for s in covariates if not s.is_categorical))

    def to_dict(self) -> dict[str, object]:
        return {"window": self.window, "step_m": self.step_m, "names": list(self.names)}


def column(name: str, dy: int, dx: int) -> str:
    """The column holding covariate ``name`` ``dy`` pixels north and ``dx`` pixels east of the location."""
    return f"{name}@{dy},{dx}"


def shift_lonlat(
    lon: np.ndarray, lat: np.ndarray, north_m: float, east_m: float
) -> tuple[np.ndarray, np.ndarray]:
    """Points moved ``north_m`` metres north and ``east_m`` metres east (local tangent plane; fine for a few km)."""
    lat = np.asarray(lat, dtype=float)
    coslat = np.maximum(np.cos(np.radians(lat)), 1e-6)
    return np.asarray(lon, float) + east_m / (M_PER_DEG * coslat), lat + north_m / M_PER_DEG


def sample_context(source: CovariateSource, points: pd.DataFrame, context: Context) -> pd.DataFrame:
    """The neighbour columns of ``context`` at ``points`` (``lon``/``lat``), one row per point, same index."""
    out: dict[str, np.ndarray] = {}
    if not context.window or not context.names:
        return pd.DataFrame(index=points.index)
    lon, lat = points["lon"].to_numpy(float), points["lat"].to_numpy(float)
    names = list(context.names)
    for dy, dx in context.offsets:
        slon, slat = shift_lonlat(lon, lat, dy * context.step_m, dx * context.step_m)
        got = source.sample(pd.DataFrame({"lon": slon, "lat": slat}), names)
        for n in names:
            out[column(n, dy, dx)] = got[n].to_numpy(float)
    return pd.DataFrame(out, index=points.index)[context.columns]


def shifted_grid(grid: Grid, north_m: float, east_m: float) -> Grid:
    """``grid`` translated ``north_m`` metres north and ``east_m`` metres east (same shape and pixel size)."""
    crs = CRS.from_user_input(grid.crs)
    if crs.is_geographic:
        lat0 = (grid.bounds[1] + grid.bounds[3]) / 2
        dx = east_m / (M_PER_DEG * max(math.cos(math.radians(lat0)), 1e-6))
        dy = north_m / M_PER_DEG
    else:
        unit = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
        dx, dy = east_m / unit, north_m / unit
    a, b, c, d, e, f = grid.transform
    return Grid(grid.crs, (a, b, c + dx, d, e, f + dy), grid.shape)


def read_context(source: CovariateSource, grid: Grid, context: Context) -> dict[str, np.ndarray]:
    """The neighbour columns of ``context`` as arrays of ``grid``'s shape (one shifted read per offset)."""
    out: dict[str, np.ndarray] = {}
    if not context.window or not context.names:
        return out
    names = list(context.names)
    for dy, dx in context.offsets:
        ds = source.read(shifted_grid(grid, dy * context.step_m, dx * context.step_m), names)
        for n in names:
            out[column(n, dy, dx)] = np.asarray(ds[n].values)
    return out


__all__ = [
    "Context",
    "M_PER_DEG",
    "WINDOWS",
    "column",
    "read_context",
    "sample_context",
    "shift_lonlat",
    "shifted_grid",
]
