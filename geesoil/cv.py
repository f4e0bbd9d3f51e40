"""Cross-validation splits that never leak a location: random and spatial-block k-fold, and learning-curve draws.

Samples are grouped by location first (coordinates rounded to ``decimals`` degrees: 3 decimals, ~100 m, the same
rule :func:`geesoil.samples.pool_sources` uses for duplicates), so profiles that share a site always land in the same
fold. Spatial blocks are squares of ``block_km`` on a Lambert azimuthal equal-area projection centred on the samples;
whole blocks are assigned to folds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from geesoil.errors import GeesoilError


class FoldError(GeesoilError):
    """The samples cannot be split into the requested folds (too few locations or blocks)."""


@dataclass(frozen=True)
class Fold:
    """One train/test split as positional row indices (sorted)."""

    index: int
    train: np.ndarray
    test: np.ndarray


def location_groups(lon: Sequence[float], lat: Sequence[float], decimals: int = 3) -> np.ndarray:
    """An integer id per sample; samples whose coordinates agree to ``decimals`` degrees share an id."""
    lon = np.round(np.asarray(lon, dtype=float), decimals)
    lat = np.round(np.asarray(lat, dtype=float), decimals)
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        raise FoldError("some samples have missing lon/lat; drop them before cross-validation")
    _, ids = np.unique(np.stack([lon, lat], axis=1), axis=0, return_inverse=True)
    return ids.ravel()


def project_laea(lon: Sequence[float], lat: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Easting/northing in km on a Lambert azimuthal equal-area projection centred on the points."""
    from pyproj import Transformer

    lon = np.asarray(lon, dtype=float)
    lat = np.asarray(lat, dtype=float)
    lat0 = float(np.median(lat))
    # centre longitude as a circular mean so regions straddling the antimeridian stay compact
    lon0 = math.degrees(math.atan2(np.mean(np.sin(np.radians(lon))), np.mean(np.cos(np.radians(lon)))))
    tr = Transformer.from_crs(
        "EPSG:4326", f"+proj=laea +lat_0={lat0} +lon_0={lon0} +datum=WGS84 +units=m", always_xy=True
    )
    x, y = tr.transform(lon, lat)
    return np.asarray(x) / 1000.0, np.asarray(y) / 1000.0


def block_ids(lon: Sequence[float], lat: Sequence[float], block_km: float) -> np.ndarray:
    """An integer id per sample naming the ``block_km`` square (equal-area projection) it falls in."""
    if not block_km > 0:
        raise FoldError(f"block size must be positive, got {block_km} km")
    x, y = project_laea(lon, lat)
    bx = np.floor(x / block_km).astype(np.int64)
    by = np.floor(y / block_km).astype(np.int64)
    _, ids = np.unique(np.stack([bx, by], axis=1), axis=0, return_inverse=True)
    return ids.ravel()


def default_block_km(lon: Sequence[float], lat: Sequence[float], k: int) -> float:
    """A block size giving roughly ``4 k`` blocks over the samples' extent (at least 1 km)."""
    x, y = project_laea(lon, lat)
    area = max(float(np.ptp(x)), 1.0) * max(float(np.ptp(y)), 1.0)
    return max(1.0, math.sqrt(area / (4 * k)))


def _assign(groups: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Fold number per sample: groups in random order, each to the fold with the fewest samples so far."""
    uniq, counts = np.unique(groups, return_counts=True)
    order = rng.permutation(len(uniq))
    # big groups first (stable within the random order) so folds end up balanced
    order = order[np.argsort(-counts[order], kind="stable")]
    load = np.zeros(k, dtype=np.int64)
    fold_of = np.empty(len(uniq), dtype=np.int64)
    for g in order:
        f = int(np.argmin(load))
        fold_of[g] = f
        load[f] += counts[g]
    return fold_of[np.searchsorted(uniq, groups)]


def _folds(groups: np.ndarray, k: int, seed: int, what: str) -> list[Fold]:
    n_groups = len(np.unique(groups))
    if k < 2:
        raise FoldError(f"need at least 2 folds, got {k}")
    if n_groups < k:
        raise FoldError(f"only {n_groups} {what} for {k} folds; use fewer folds{_hint(what)}")
    fold = _assign(groups, k, np.random.default_rng(seed))
    idx = np.arange(len(groups))
    return [Fold(f, idx[fold != f], idx[fold == f]) for f in range(k)]


def _hint(what: str) -> str:
    return " or a smaller --spatial-block-km" if "block" in what else ""


def random_kfold(lon: Sequence[float], lat: Sequence[float], k: int = 5, seed: int = 0) -> list[Fold]:
    """k folds of random locations (samples at one location stay together)."""
    return _folds(location_groups(lon, lat), k, seed, "distinct locations")


def spatial_kfold(
    lon: Sequence[float], lat: Sequence[float], k: int = 5, block_km: float | None = None, seed: int = 0
) -> list[Fold]:
    """k folds of whole ``block_km`` squares (default: :func:`default_block_km`); blocks never straddle folds."""
    if block_km is None:
        block_km = default_block_km(lon, lat, k)
    locs = location_groups(lon, lat)
    blocks = block_ids(lon, lat, block_km)
    # a location's block is that of its first sample, so near-duplicate coordinates on a block edge stay together
    first = np.unique(locs, return_index=True)[1]
    blocks = blocks[first][locs]
    return _folds(blocks, k, seed, f"non-empty {block_km:g} km blocks")


def kfold(
    lon: Sequence[float], lat: Sequence[float], k: int = 5, block_km: float | None = None, seed: int = 0
) -> list[Fold]:
    """Spatial-block folds when ``block_km`` is given, else random location folds."""
    if block_km is None:
        return random_kfold(lon, lat, k, seed)
    return spatial_kfold(lon, lat, k, block_km, seed)


def learning_curve_draws(
    train: np.ndarray, sizes: Sequence[int | None], repeats: int = 3, seed: int = 0
) -> Iterator[tuple[int | None, int, np.ndarray]]:
    """``(size, repeat, indices)`` draws from the training indices ``train`` for a learning curve.

    Each numeric size gets ``repeats`` random subsets without replacement; ``None`` means all training samples (one
    draw). Sizes not smaller than ``len(train)`` are skipped: they would repeat the full set.
    """
    train = np.asarray(train)
    rng = np.random.default_rng(seed)
    for size in sizes:
        if size is None:
            yield None, 0, np.sort(train)
            continue
        if size < 1:
            raise FoldError(f"learning-curve size must be positive, got {size}")
        if size >= len(train):
            continue
        for r in range(repeats):
            yield size, r, np.sort(rng.choice(train, size=size, replace=False))
