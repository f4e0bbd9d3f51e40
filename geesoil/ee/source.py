"""``EarthEngineSource``: a catalog's covariates computed by Earth Engine, sampled at points or read on a grid.

``sample`` sends the points in batches (``reduceRegions`` with ``Reducer.first`` over a FeatureCollection built from
the points), each batch under the payload and feature-count limits, several batches in parallel (bounded), each
retried with backoff, and caches every finished batch on disk: an interrupted extraction resumes where it stopped.
``read`` opens the catalog image on a grid with xee as a lazy, dask-backed Dataset whose chunks keep every
``computePixels`` request under its limits. Earth Engine must be initialised first (:func:`geesoil.ee.auth.initialize`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import ee
import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from geesoil.covariates.catalog import Catalog, load_catalog
from geesoil.covariates.spec import CovariateSpec
from geesoil.ee import limits
from geesoil.ee.expressions import (
    DEFAULT_END,
    DEFAULT_START,
    catalog_image,
    check_window,
    image_graph,
    split_buildable,
)
from geesoil.errors import CovariateError, EarthEngineError
from geesoil.grid import Grid

log = logging.getLogger(__name__)

#: Property carrying each point's position in the caller's table through Earth Engine and back.
ROW_PROPERTY = "geesoil_row"
#: Cache file format version: bump when the cached content changes meaning.
CACHE_VERSION = 1


class EarthEngineSource:
    """The Earth Engine recipes of a catalog as a :class:`~geesoil.covariates.source.CovariateSource`.

    ``catalog``: a catalog name, JSON path or :class:`Catalog`; covariates without an Earth Engine recipe are left
    out of ``specs`` (serve them from a local pack). ``start``/``end``: the date window of temporal composites.
    ``scale``: sampling scale in metres. ``max_workers``: concurrent requests (1 to 40, Earth Engine's quota).
    ``cache_dir``: where finished sample batches are kept (None: no cache).
    """

    def __init__(
        self,
        catalog: str | os.PathLike[str] | Catalog = "gsoilcpm",
        start: str = DEFAULT_START,
        end: str = DEFAULT_END,
        *,
        max_workers: int = limits.DEFAULT_WORKERS,
        cache_dir: str | os.PathLike[str] | None = None,
        scale: float = 500.0,
        batch_size: int | None = None,
        page_size: int = limits.MAX_FEATURES_PER_REQUEST,
        retry: limits.RetryPolicy | None = None,
        progress: bool = True,
    ) -> None:
        self.catalog = catalog if isinstance(catalog, Catalog) else load_catalog(catalog)
        self.start, self.end = check_window(start, end)
        if not 1 <= max_workers <= limits.MAX_CONCURRENT_REQUESTS:
            raise EarthEngineError(
                f"max_workers={max_workers}: use 1 to {limits.MAX_CONCURRENT_REQUESTS} "
                "(Earth Engine's limit on concurrent requests)"
            )
        if batch_size is not None and not 1 <= batch_size <= limits.MAX_FEATURES_PER_REQUEST:
            raise EarthEngineError(f"batch_size={batch_size}: use 1 to {limits.MAX_FEATURES_PER_REQUEST}")
        if scale <= 0:
            raise EarthEngineError(f"scale={scale}: the sampling scale must be a positive number of metres")
        self.max_workers = max_workers
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.scale = float(scale)
        self.batch_size = batch_size
        self.page_size = min(page_size, limits.MAX_FEATURES_PER_REQUEST)
        self.retry = retry or limits.RetryPolicy()
        self.progress = progress
        usable, skipped = split_buildable(self.catalog.covariates)
        if skipped:
            log.info("catalog %s: no Earth Engine recipe for %s", self.catalog.name, ", ".join(skipped))
        if not usable:
            raise CovariateError(
                f"catalog {self.catalog.name!r} has no covariate with a usable Earth Engine recipe"
            )
        self._specs = tuple(usable)

    @property
    def specs(self) -> tuple[CovariateSpec, ...]:
        return self._specs

    def _select(self, names: Sequence[str] | None) -> tuple[CovariateSpec, ...]:
        if names is None:
            return self._specs
        index = {s.name: s for s in self._specs}
        missing = [n for n in names if n not in index]
        if missing:
            raise CovariateError(
                f"Earth Engine source ({self.catalog.name}) cannot serve {', '.join(missing)}; "
                f"it serves: {', '.join(index)}"
            )
        return tuple(index[n] for n in names)

    def image(self, names: Sequence[str] | None = None) -> ee.Image:
        """The multi-band image of ``names`` (default: all) over this source's date window."""
        return catalog_image(self._select(names), self.start, self.end)

    # ---- points ---------------------------------------------------------------------------------------------
    def sample(self, points: pd.DataFrame, names: Sequence[str] | None = None) -> pd.DataFrame:
        specs = self._select(names)
        names = [s.name for s in specs]
        lon, lat = _coordinates(points)
        out = pd.DataFrame(np.nan, index=points.index, columns=names, dtype="float64")
        valid = np.flatnonzero(np.isfinite(lon) & np.isfinite(lat))
        if valid.size == 0:
            return out
        _require_initialized()
        image = catalog_image(specs, self.start, self.end)
        image_json = image_graph(image)
        batches = limits.batch_slices(
            valid.size, self.batch_size or self._auto_batch_size(image_json, lon, lat, valid)
        )
        recipe_key = _recipe_key(self.catalog, specs, self.start, self.end, self.scale)

        values = np.full((len(points), len(names)), np.nan)
        todo: list[tuple[int, np.ndarray, Path | None]] = []
        for b, sl in enumerate(batches):
            rows = valid[sl]
            path = self._cache_path(recipe_key, lon[rows], lat[rows])
            cached = _read_cache(path, names, len(rows)) if path is not None else None
            if cached is not None:
                values[rows] = cached
            else:
                todo.append((b, rows, path))
        log.info(
            "sampling %d points: %d batches, %d cached", valid.size, len(batches), len(batches) - len(todo)
        )

        failures: list[str] = []
        workers = min(self.max_workers, max(1, len(todo)))
        bar = tqdm(
            total=len(todo), desc="Earth Engine batches", unit="batch", disable=not self.progress or not todo
        )
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="geesoil-ee") as pool:
            futures = {}
            for b, rows, path in todo:
                what = f"batch {b + 1}/{len(batches)}"
                futures[pool.submit(self._fetch_batch, image, names, lon[rows], lat[rows], what)] = (
                    rows,
                    path,
                )
            for fut in as_completed(futures):
                rows, path = futures[fut]
                try:
                    batch_values = fut.result()
                except EarthEngineError as exc:
                    failures.append(str(exc))
                    continue
                finally:
                    bar.update(1)
                values[rows] = batch_values
                if path is not None:
                    _write_cache(path, names, batch_values)
        bar.close()
        if failures:
            done = len(batches) - len(failures)
            resume = (
                " (finished batches are cached; run again to resume)" if self.cache_dir is not None else ""
            )
            raise EarthEngineError(
                f"{len(failures)} of {len(batches)} batches failed, {done} done{resume}: {failures[0]}"
            )
        out.loc[:, names] = values
        return out

    def _auto_batch_size(self, image_json: str, lon: np.ndarray, lat: np.ndarray, valid: np.ndarray) -> int:
        probe = valid[: min(200, valid.size)]
        one = ee.serializer.toJSON(_features(lon[probe], lat[probe]))
        per_feature = len(one.encode()) / probe.size
        return limits.features_per_batch(per_feature, base_bytes=len(image_json.encode()) + 1024)

    def _cache_path(self, recipe_key: str, lon: np.ndarray, lat: np.ndarray) -> Path | None:
        if self.cache_dir is None:
            return None
        h = hashlib.sha256(recipe_key.encode())
        h.update(np.round(np.column_stack([lon, lat]), 9).astype("<f8").tobytes())
        return self.cache_dir / f"{self.catalog.name}-{h.hexdigest()[:32]}.parquet"

    def _fetch_batch(
        self, image: ee.Image, names: list[str], lon: np.ndarray, lat: np.ndarray, what: str
    ) -> np.ndarray:
        collection = _features(lon, lat)

        def request(tile_scale: float) -> list[dict[str, Any]]:
            fc = image.reduceRegions(
                collection=collection, reducer=ee.Reducer.first(), scale=self.scale, tileScale=tile_scale
            )
            feats: list[dict[str, Any]] = []
            token = None
            while True:
                params: dict[str, Any] = {"expression": fc, "pageSize": self.page_size}
                if token:
                    params["pageToken"] = token
                page = ee.data.computeFeatures(params)
                if not isinstance(page, dict) or not isinstance(page.get("features", []), list):
                    raise limits.MalformedResponse(f"malformed computeFeatures answer: {str(page)[:80]!r}")
                feats.extend(page.get("features", []))
                token = page.get("nextPageToken")
                if not token:
                    return feats

        feats = limits.call_with_retries(request, policy=self.retry, what=f"Earth Engine sampling {what}")
        return _features_to_values(feats, names, len(lon), what)

    # ---- grids ----------------------------------------------------------------------------------------------
    def read(self, grid: Grid, names: Sequence[str] | None = None) -> xr.Dataset:
        specs = self._select(names)
        _require_initialized()
        image = catalog_image(specs, self.start, self.end)
        side = limits.pixel_chunk_side(1)  # xee requests one band per computePixels call
        params = grid.to_xee()
        try:
            ds = xr.open_dataset(
                ee.ImageCollection([image]),
                engine="ee",
                crs=params["crs"],
                crs_transform=tuple(params["crs_transform"]),
                shape_2d=tuple(params["shape_2d"]),
                io_chunks={"index": 1, "width": side, "height": side},
                chunks={},
            )
        except ee.EEException as exc:
            raise EarthEngineError(
                f"Earth Engine could not open the catalog image: {' '.join(str(exc).split())}"
            ) from None
        ds = ds.isel(time=0, drop=True) if "time" in ds.dims else ds
        ds = ds.assign_coords(y=grid.y, x=grid.x)
        for spec in specs:
            ds[spec.name].attrs.update(units=spec.units, group=spec.group, kind=spec.kind)
        ds.attrs = {"catalog": self.catalog.name, "start": self.start, "end": self.end, "crs": grid.crs}
        return ds[[s.name for s in specs]]


def _require_initialized() -> None:
    if not ee.data.is_initialized() or ee.data._get_state().cloud_api_resource is None:
        raise EarthEngineError(
            "Earth Engine is not initialised: call geesoil.ee.auth.initialize(project=...) "
            "(CLI: --ee-project PROJECT or GEESOIL_EE_PROJECT)"
        )


def _coordinates(points: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    missing = [c for c in ("lon", "lat") if c not in points.columns]
    if missing:
        raise CovariateError(
            f"points table has no {'/'.join(missing)} column; give WGS84 'lon' and 'lat' columns"
        )
    try:
        lon = points["lon"].to_numpy(dtype="float64")
        lat = points["lat"].to_numpy(dtype="float64")
    except (TypeError, ValueError):
        raise CovariateError("points 'lon'/'lat' columns must be numeric (WGS84 degrees)") from None
    bad = np.flatnonzero((np.abs(lon) > 180) | (np.abs(lat) > 90))
    if bad.size:
        i = bad[0]
        raise CovariateError(
            f"points row {points.index[i]!r}: lon/lat ({lon[i]}, {lat[i]}) out of range; are they projected or swapped?"
        )
    return lon, lat


def _features(lon: np.ndarray, lat: np.ndarray) -> ee.FeatureCollection:
    return ee.FeatureCollection(
        [
            ee.Feature(ee.Geometry.Point([float(x), float(y)]), {ROW_PROPERTY: i})
            for i, (x, y) in enumerate(zip(lon, lat, strict=True))
        ]
    )


def _features_to_values(feats: list[dict[str, Any]], names: list[str], n: int, what: str) -> np.ndarray:
    out = np.full((n, len(names)), np.nan)
    # reduceRegions names the output after the reducer ("first") when the image has a single band.
    keys = ["first"] if len(names) == 1 else names
    seen = 0
    rows: set[int] = set()
    for feat in feats:
        props = feat.get("properties") if isinstance(feat, dict) else None
        row = props.get(ROW_PROPERTY) if isinstance(props, dict) else None
        # a bool is an int to Python, and 0.5 would truncate to row 0: neither is a row Earth Engine sends
        if (
            isinstance(row, bool)
            or not isinstance(row, int | float)
            or not math.isfinite(row)
            or row != int(row)
        ):
            raise EarthEngineError(f"{what}: malformed feature in Earth Engine's answer: {str(feat)[:200]}")
        i = int(row)
        if not 0 <= i < n:
            raise EarthEngineError(f"{what}: Earth Engine returned an unknown row {i}")
        if i in rows:  # a garbled answer: another row would silently stay NaN
            raise EarthEngineError(f"{what}: Earth Engine returned row {i} twice")
        rows.add(i)
        for j, key in enumerate(keys):
            v = props.get(key)
            if isinstance(v, int | float) and not isinstance(v, bool):
                out[i, j] = v
        seen += 1
    if seen != n:
        raise EarthEngineError(f"{what}: Earth Engine returned {seen} features for {n} points")
    return out


def _recipe_key(catalog: Catalog, specs: Sequence[CovariateSpec], start: str, end: str, scale: float) -> str:
    doc = {
        "v": CACHE_VERSION,
        "catalog": [catalog.name, catalog.version],
        "recipes": [[s.name, s.kind, s.resampling, s.ee] for s in specs],
        "window": [start, end],
        "scale": scale,
    }
    return json.dumps(doc, sort_keys=True, default=str)


def _read_cache(path: Path, names: list[str], n: int) -> np.ndarray | None:
    if not path.is_file():
        return None
    try:
        df = pd.read_parquet(path)
        if list(df.columns) != names or len(df) != n:
            return None
        return df.to_numpy(dtype="float64")
    except Exception as exc:  # a torn or foreign file: refetch rather than fail
        log.warning("ignoring unreadable cache file %s (%s)", path, exc)
        return None


def _write_cache(path: Path, names: list[str], values: np.ndarray) -> None:
    """Store a finished batch atomically; a failed write (disk full, read-only) only costs the cache entry."""
    tmp = path.with_suffix(f".tmp{os.getpid()}-{threading.get_ident()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(values, columns=names).to_parquet(tmp)
        os.replace(tmp, path)  # atomic: an interrupted write never leaves a half file under the final name
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        log.warning(
            "could not cache a finished batch in %s (%s); it will be fetched again next time", path, exc
        )
