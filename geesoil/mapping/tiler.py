"""Predict one tile of the map grid, and keep finished tiles on disk so an interrupted run resumes.

A tile's prediction is a pure function of (model, covariate source, tile grid, AOI, settings): covariates are read
for the tile only (bounded memory), pixels outside the AOI or lacking any covariate are masked, and the rest are
predicted in batches. Results go to ``<dir>/.tiles/<key>.npz``, written under a temporary name and renamed, so a
file that exists is always complete.
"""

from __future__ import annotations

import logging
import os
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyproj import CRS, Transformer
from rasterio.features import geometry_mask
from shapely.geometry.base import BaseGeometry

from geesoil.covariates.source import CovariateSource
from geesoil.covariates.window import Context, read_context
from geesoil.grid import Grid
from geesoil.mapping.aoa import AOAReference
from geesoil.model.base import predict_layers

log = logging.getLogger(__name__)

#: Pixels predicted per model call: bounds the model's working memory (a SoilNet ensemble holds a few floats per
#: hidden unit per row) while keeping per-call overhead small.
PREDICT_BATCH = 65_536
#: Float outputs hold NaN where masked in tiles; AOA tiles hold this value.
AOA_NODATA = 255


@dataclass(frozen=True)
class TileSettings:
    """What every tile of one run shares besides the model and source."""

    covariates: tuple[str, ...]
    alpha: float = 0.1
    std: bool = False
    batch: int = PREDICT_BATCH


def has_median(model: Any) -> bool:
    """Whether maps of ``model`` get a median layer (networks, QRF, auto; RF has no median of its own)."""
    return hasattr(model, "predict_median")


def tile_arrays(model: Any, settings: TileSettings, aoa: bool) -> tuple[str, ...]:
    """The arrays :func:`predict_tile` writes for ``model`` (a stored tile lacking one must be predicted again)."""
    keys = ["valid", "in_aoi", "mean", "lo", "hi"]
    keys += ["median"] if has_median(model) else []
    keys += ["std"] if settings.std else []
    keys += ["aoa", "di"] if aoa else []
    return tuple(keys)


def pixel_lonlat(grid: Grid, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 lon/lat of the centres of pixels (rows, cols) of ``grid``."""
    x = grid.x[cols]
    y = grid.y[rows]
    crs = CRS.from_user_input(grid.crs)
    if crs == CRS.from_user_input("EPSG:4326"):
        return x.astype(float), y.astype(float)
    lon, lat = Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(x, y)
    return np.asarray(lon, float), np.asarray(lat, float)


def aoi_mask(grid: Grid, geom: BaseGeometry) -> np.ndarray:
    """True where a pixel centre lies inside ``geom`` (given in ``grid``'s CRS)."""
    if geom.is_empty:
        return np.zeros(grid.shape, dtype=bool)
    return geometry_mask([geom], out_shape=grid.shape, transform=grid.affine, invert=True)


def tile_table(
    source: CovariateSource,
    grid: Grid,
    inside: np.ndarray,
    names: Sequence[str],
    context: Context | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The model input of one tile: ``X`` (covariates ``names`` + lon/lat, one row per valid pixel in row-major
    order, i.e. ``np.nonzero(valid)``) and ``valid`` (inside the AOI and every covariate finite).

    With a pixel window ``context`` (the model's), ``X`` also holds the neighbour columns; a missing neighbour
    does not mask the pixel (the model falls back to the centre value)."""
    valid = inside.copy()
    extra = context.columns if context is not None else []
    if not inside.any():  # nothing to read
        return pd.DataFrame(columns=[*names, *extra, "lon", "lat"], dtype=np.float64), valid
    ds = source.read(grid, list(names))
    for name in names:
        valid &= np.isfinite(ds[name].values)
    rows, cols = np.nonzero(valid)
    lon, lat = pixel_lonlat(grid, rows, cols)
    table = {name: ds[name].values[rows, cols].astype(np.float64) for name in names}
    if context is not None and valid.any():
        for col, arr in read_context(source, grid, context).items():
            table[col] = arr[rows, cols].astype(np.float64)
    table["lon"], table["lat"] = lon, lat
    return pd.DataFrame(table), valid


def predict_tile(
    model: Any,
    source: CovariateSource,
    grid: Grid,
    geom: BaseGeometry,
    settings: TileSettings,
    aoa: AOAReference | None = None,
) -> dict[str, np.ndarray]:
    """Mean, ``lo``/``hi`` at ``settings.alpha``, ``median`` for models that have one (and ``std``, ``aoa``,
    ``di`` when asked) for one tile.

    ``mean`` is the model's mean (:func:`~geesoil.model.base.predict_layers`), not its point prediction, which
    is a median for QRF and ``auto``: the mean is what stocks and area totals need.

    Float arrays are NaN where masked; ``aoa`` is uint8 with :data:`AOA_NODATA` where masked; ``valid`` says which
    pixels were predicted and ``in_aoi`` which lie inside the AOI.
    """
    inside = aoi_mask(grid, geom)
    shape = grid.shape
    out: dict[str, np.ndarray] = {
        "mean": np.full(shape, np.nan, np.float32),
        "lo": np.full(shape, np.nan, np.float32),
        "hi": np.full(shape, np.nan, np.float32),
    }
    if has_median(model):
        out["median"] = np.full(shape, np.nan, np.float32)
    if settings.std:
        out["std"] = np.full(shape, np.nan, np.float32)
    if aoa is not None:
        out["aoa"] = np.full(shape, AOA_NODATA, np.uint8)
        out["di"] = np.full(shape, np.nan, np.float32)
    X, valid = tile_table(source, grid, inside, settings.covariates, getattr(model, "context", None))
    out["valid"] = valid
    out["in_aoi"] = inside
    if not valid.any():
        return out
    rows, cols = np.nonzero(valid)
    results = _predict_batches(model, X, settings, aoa)
    for key, vals in results.items():
        out[key][rows, cols] = vals
    return out


def _predict_batches(
    model: Any, X: pd.DataFrame, settings: TileSettings, aoa: AOAReference | None
) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    covs = tuple(model.covariates)
    for start in range(0, len(X), settings.batch):
        xb = X.iloc[start : start + settings.batch]
        got = predict_layers(model, xb, settings.alpha, median=has_median(model), std=settings.std)
        del got["point"]
        if aoa is not None:
            di = aoa.di(xb, covs)
            got["di"] = di
            got["aoa"] = aoa.inside(di)
        for k, v in got.items():
            parts.setdefault(k, []).append(np.asarray(v))
    return {k: np.concatenate(v) for k, v in parts.items()}


class TileStore:
    """Finished tiles of one run as ``<root>/<key>.npz`` files, each written atomically."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def keys(self) -> list[str]:
        return sorted(p.stem for p in self.root.glob("*.npz")) if self.root.is_dir() else []

    def save(self, key: str, arrays: dict[str, np.ndarray]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key}-", suffix=".tmp", dir=self.root)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez_compressed(f, **arrays)
            os.replace(tmp, self.path(key))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return self.path(key)

    def load(self, key: str, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        with np.load(self.path(key)) as z:
            return {k: z[k] for k in (names or z.files)}

    def readable(self, key: str, arrays: Sequence[str] = ("valid",)) -> bool:
        """The tile file exists, opens and holds ``arrays`` (a damaged one, or one written by an older geesoil
        without a layer this run writes, is redone, not trusted)."""
        if not self.has(key):
            return False
        try:
            with np.load(self.path(key)) as z:
                return set(arrays) <= set(z.files)
        except (OSError, ValueError, zipfile.BadZipFile):
            return False

    def clear(self) -> None:
        for p in self.root.glob("*.npz"):
            p.unlink()
        for p in self.root.glob(".*.tmp"):
            p.unlink()
