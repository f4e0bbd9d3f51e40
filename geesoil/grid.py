"""Pixel-grid arithmetic shared by every covariate source and the tiler.

A :class:`Grid` is a north-up raster grid: a CRS, an affine transform (GDAL order ``a, b, c, d, e, f`` as in
``rasterio.Affine``: x = a*col + b*row + c, y = d*col + e*row + f) and a shape ``(height, width)``. Sources read a
grid into an ``xarray.Dataset`` with ``y``/``x`` pixel-centre coordinates; the tiler cuts a grid into :class:`Tile`s.
Earth Engine takes the same grid as ``crs``, ``crs_transform`` and ``shape_2d`` (width, height): see ``to_xee``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import TypedDict

import numpy as np
from rasterio.transform import Affine

#: Metres per degree of latitude (mean), to convert between geographic and metric resolutions and offsets.
M_PER_DEG = 111_320.0


class XeeGridParams(TypedDict):
    """The keyword arguments xee's ``open_dataset(engine="ee")`` takes for a fixed pixel grid."""

    crs: str
    crs_transform: tuple[float, float, float, float, float, float]
    shape_2d: tuple[int, int]


@dataclass(frozen=True)
class Grid:
    """A north-up pixel grid: ``crs``, affine ``transform`` (6 numbers) and ``shape`` (height, width)."""

    crs: str
    transform: tuple[float, float, float, float, float, float]
    shape: tuple[int, int]

    @classmethod
    def from_bounds(cls, bounds: tuple[float, float, float, float], crs: str, resolution: float) -> Grid:
        """Grid covering ``bounds`` (minx, miny, maxx, maxy in ``crs`` units), snapped outwards to ``resolution``."""
        minx, miny, maxx, maxy = bounds
        if not (maxx > minx and maxy > miny):
            raise ValueError(f"empty bounds {bounds}")
        if resolution <= 0:
            raise ValueError(f"resolution must be positive, got {resolution}")
        x0 = math.floor(minx / resolution) * resolution
        y0 = math.ceil(maxy / resolution) * resolution
        width = max(1, math.ceil((maxx - x0) / resolution - 1e-9))
        height = max(1, math.ceil((y0 - miny) / resolution - 1e-9))
        return cls(crs, (resolution, 0.0, x0, 0.0, -resolution, y0), (height, width))

    @cached_property
    def affine(self) -> Affine:
        a, b, c, d, e, f = self.transform
        return Affine(a, b, c, d, e, f)

    @property
    def height(self) -> int:
        return self.shape[0]

    @property
    def width(self) -> int:
        return self.shape[1]

    @property
    def resolution(self) -> tuple[float, float]:
        return (abs(self.transform[0]), abs(self.transform[4]))

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        a, _, c, _, e, f = self.transform
        x1 = c + a * self.width
        y1 = f + e * self.height
        return (min(c, x1), min(f, y1), max(c, x1), max(f, y1))

    @cached_property
    def x(self) -> np.ndarray:
        """Pixel-centre x coordinates (length ``width``)."""
        a, _, c, *_ = self.transform
        return c + a * (np.arange(self.width) + 0.5)

    @cached_property
    def y(self) -> np.ndarray:
        """Pixel-centre y coordinates (length ``height``)."""
        *_, e, f = self.transform
        return f + e * (np.arange(self.height) + 0.5)

    def window(self, row: int, col: int, height: int, width: int) -> Grid:
        """The sub-grid starting at pixel (row, col) with the given shape, clipped to this grid."""
        height = min(height, self.height - row)
        width = min(width, self.width - col)
        x0, y0 = self.affine @ (col, row)
        a, b, _, d, e, _ = self.transform
        return Grid(self.crs, (a, b, x0, d, e, y0), (height, width))

    def tiles(self, size: int) -> Iterator[Tile]:
        """Cut the grid into tiles of at most ``size`` × ``size`` pixels, row-major."""
        for row in range(0, self.height, size):
            for col in range(0, self.width, size):
                yield Tile(self, row, col, min(size, self.height - row), min(size, self.width - col))

    def to_xee(self) -> XeeGridParams:
        return XeeGridParams(crs=self.crs, crs_transform=self.transform, shape_2d=(self.width, self.height))


@dataclass(frozen=True)
class Tile:
    """A rectangular window of a parent :class:`Grid`."""

    parent: Grid
    row: int
    col: int
    height: int
    width: int

    @cached_property
    def grid(self) -> Grid:
        return self.parent.window(self.row, self.col, self.height, self.width)

    @property
    def slices(self) -> tuple[slice, slice]:
        return (slice(self.row, self.row + self.height), slice(self.col, self.col + self.width))

    @property
    def key(self) -> str:
        return f"r{self.row:06d}_c{self.col:06d}"
