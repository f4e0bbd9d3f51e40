"""A covariate source backed by a local pack of GeoTIFFs: vectorised point sampling and on-the-fly grid reads.

Points are WGS84 lon/lat and are transformed to each raster's CRS. Sampling is bilinear for continuous covariates
and nearest for categorical ones (per ``CovariateSpec.resampling``); nodata never blends into a bilinear value (a
point whose four neighbours are not all valid takes the value of the pixel it falls in, or NaN when that one is
nodata). Points outside a raster get NaN and are counted in :attr:`LocalPackSource.last_report`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
import xarray as xr
from pyproj import CRS, Transformer
from rasterio.enums import Resampling
from rasterio.transform import Affine
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window

from geesoil.covariates.pack import Pack, read_pack
from geesoil.covariates.spec import CovariateSpec
from geesoil.errors import CovariateError
from geesoil.grid import Grid

log = logging.getLogger(__name__)

#: Bands up to this size are read whole once and kept in memory by the source (the coarse pack totals ~60 MB);
#: larger ones (the 933 MB Köppen 30" raster) are read window by window and never kept.
MAX_CACHED_BYTES = 256 * 2**20
#: Largest window read at once from an uncached band while sampling points.
MAX_WINDOW_BYTES = 64 * 2**20
#: Rows of a band without any point in between that end one read window and start the next.
ROW_GAP = 64
#: GDAL decodes the blocks of one window read in parallel with this setting.
_GDAL_ENV = {"GDAL_NUM_THREADS": "ALL_CPUS"}


@dataclass(frozen=True)
class MissingStats:
    """Why one covariate is NaN at some points: outside the raster, or on a nodata cell."""

    outside: int = 0
    nodata: int = 0
    example_outside: tuple[float, float] | None = None  # (lon, lat)
    example_nodata: tuple[float, float] | None = None


@dataclass(frozen=True)
class SampleReport:
    """What the last ``sample`` call could not fill: per covariate, and points with any missing value."""

    n_points: int
    n_bad_coords: int
    n_incomplete: int
    missing: dict[str, MissingStats] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        return self.n_incomplete == 0

    def summary(self) -> str:
        """One line naming each covariate with missing values, with counts and an example lon/lat."""
        parts = []
        if self.n_bad_coords:
            parts.append(f"{self.n_bad_coords} points have invalid lon/lat")
        for name, m in self.missing.items():
            bits = []
            if m.outside:
                bits.append(f"{m.outside} outside the raster (e.g. lon {_fmt(m.example_outside)})")
            if m.nodata:
                bits.append(f"{m.nodata} on nodata cells (e.g. lon {_fmt(m.example_nodata)})")
            if bits:
                parts.append(f"{name}: " + ", ".join(bits))
        head = f"{self.n_incomplete} of {self.n_points} points lack at least one covariate"
        return head + ("; " + "; ".join(parts) if parts else "")


def _fmt(lonlat: tuple[float, float] | None) -> str:
    return "?" if lonlat is None else f"{lonlat[0]:.4f}, lat {lonlat[1]:.4f}"


@dataclass(frozen=True)
class _RasterInfo:
    path: Path
    crs: CRS
    transform: Affine
    height: int
    width: int
    count: int
    dtypes: tuple[str, ...]
    nodata: float | None
    scales: tuple[float, ...]
    offsets: tuple[float, ...]
    is_wgs84: bool  # points need no transformation

    @property
    def wraps_lon(self) -> bool:
        """A geographic raster spanning exactly 360° of longitude: column indices wrap around the antimeridian."""
        t = self.transform
        return self.crs.is_geographic and t.b == 0 and abs(abs(t.a) * self.width - 360.0) < abs(t.a) / 2


@lru_cache(maxsize=32)
def _to_crs(wkt: str) -> Transformer:
    return Transformer.from_crs("EPSG:4326", CRS.from_wkt(wkt), always_xy=True)


class LocalPackSource:
    """Covariates from a local pack folder (``pack.json`` + GeoTIFFs); implements ``CovariateSource``.

    Small bands are cached in memory after the first read, so repeated ``sample`` calls are cheap.
    """

    def __init__(self, pack: str | Path | Pack) -> None:
        self.pack = pack if isinstance(pack, Pack) else read_pack(pack)
        self._specs = self.pack.covariates
        self._by_name = self.pack.by_name()
        self._info: dict[Path, _RasterInfo] = {}
        self._arrays: dict[tuple[Path, int], np.ndarray] = {}
        self.last_report: SampleReport | None = None

    def __repr__(self) -> str:
        return f"LocalPackSource({str(self.pack.folder)!r}, {len(self._specs)} covariates)"

    @property
    def specs(self) -> tuple[CovariateSpec, ...]:
        return self._specs

    # -- metadata and reading -------------------------------------------------------------------------------

    def _resolve(self, names: Sequence[str] | None) -> list[CovariateSpec]:
        if names is None:
            return list(self._specs)
        if isinstance(names, str):
            names = [names]
        missing = [n for n in names if n not in self._by_name]
        if missing:
            raise CovariateError(
                f"pack {self.pack.folder} has no covariate {', '.join(map(repr, missing))}; "
                f"it has: {', '.join(self._by_name)}"
            )
        return [self._by_name[n] for n in names]

    def info(self, spec: CovariateSpec) -> _RasterInfo:
        """The raster metadata of ``spec``'s file (opened once per source)."""
        path = self.pack.path_of(spec)
        if path not in self._info:
            try:
                with rasterio.open(path) as src:
                    if src.crs is None:
                        raise CovariateError(
                            f"{path}: the raster has no CRS; set one (e.g. rio edit-info --crs EPSG:4326)"
                        )
                    if src.transform.b != 0 or src.transform.d != 0:
                        raise CovariateError(
                            f"{path}: rotated rasters are not supported; warp it to a north-up grid"
                        )
                    crs = CRS.from_wkt(src.crs.to_wkt())
                    self._info[path] = _RasterInfo(
                        path=path,
                        crs=crs,
                        transform=src.transform,
                        height=src.height,
                        width=src.width,
                        count=src.count,
                        dtypes=tuple(src.dtypes),
                        nodata=src.nodata,
                        scales=tuple(src.scales),
                        offsets=tuple(src.offsets),
                        is_wgs84=crs.to_epsg() == 4326,
                    )
            except rasterio.errors.RasterioIOError as exc:
                raise CovariateError(f"cannot open covariate raster {path}: {exc}") from None
        info = self._info[path]
        if spec.band > info.count:
            raise CovariateError(
                f"{self.pack.folder / 'pack.json'}: covariate {spec.name!r} asks for band {spec.band} "
                f"but {path.name} has {info.count} band(s)"
            )
        return info

    def _band(self, spec: CovariateSpec, info: _RasterInfo) -> np.ndarray | None:
        """The whole band when it is small enough to keep in memory, else ``None``."""
        key = (info.path, spec.band)
        if key not in self._arrays:
            nbytes = info.height * info.width * np.dtype(info.dtypes[spec.band - 1]).itemsize
            if nbytes > MAX_CACHED_BYTES:
                return None
            with rasterio.Env(**_GDAL_ENV), rasterio.open(info.path) as src:
                self._arrays[key] = src.read(spec.band)
        return self._arrays[key]

    def _gather(
        self, spec: CovariateSpec, info: _RasterInfo, rows: np.ndarray, cols: np.ndarray
    ) -> np.ndarray:
        """Raw band values at pixel (rows, cols) (all inside the raster), reading as little as needed."""
        band = self._band(spec, info)
        if band is not None:
            return band[rows, cols]
        out = np.empty(rows.shape, dtype=info.dtypes[spec.band - 1])
        if rows.size == 0:
            return out
        order = np.argsort(rows, kind="stable")
        srows = rows[order]
        cmin, cmax = int(cols.min()), int(cols.max())
        row_bytes = (cmax - cmin + 1) * out.itemsize
        max_rows = max(1, MAX_WINDOW_BYTES // row_bytes)
        uniq = np.unique(srows)
        # Runs of needed rows: split where the gap is large or the window would exceed the byte budget.
        starts = [0]
        for i in range(1, uniq.size):
            if uniq[i] - uniq[i - 1] > ROW_GAP or uniq[i] - uniq[starts[-1]] >= max_rows:
                starts.append(i)
        bounds = [
            (int(uniq[s]), int(uniq[e - 1])) for s, e in zip(starts, [*starts[1:], uniq.size], strict=True)
        ]
        with rasterio.Env(**_GDAL_ENV), rasterio.open(info.path) as src:
            for r0, r1 in bounds:
                lo, hi = np.searchsorted(srows, [r0, r1 + 1])
                idx = order[lo:hi]
                win = src.read(spec.band, window=Window(cmin, r0, cmax - cmin + 1, r1 - r0 + 1))
                out[idx] = win[rows[idx] - r0, cols[idx] - cmin]
        return out

    def _to_float(self, spec: CovariateSpec, info: _RasterInfo, raw: np.ndarray) -> np.ndarray:
        """Raw values → float64 with nodata as NaN (and the band's scale/offset applied to continuous values)."""
        vals = raw.astype(np.float64)
        if info.nodata is not None and not math.isnan(info.nodata):
            # Compare in the band's own precision: a float32 nodata stored as a double may differ in the last bits.
            nodata = float(np.float32(info.nodata)) if raw.dtype == np.float32 else float(info.nodata)
            vals[vals == nodata] = np.nan
        scale, offset = info.scales[spec.band - 1], info.offsets[spec.band - 1]
        if not spec.is_categorical and (scale != 1.0 or offset != 0.0):
            vals = vals * scale + offset
        return vals

    # -- points ---------------------------------------------------------------------------------------------

    def sample(self, points: pd.DataFrame, names: Sequence[str] | None = None) -> pd.DataFrame:
        """Covariate values at ``points`` (``lon``/``lat`` columns, WGS84); NaN outside rasters and on nodata."""
        specs = self._resolve(names)
        for col in ("lon", "lat"):
            if col not in points.columns:
                raise CovariateError(
                    f"points need 'lon' and 'lat' columns (WGS84 degrees); got columns: {', '.join(map(str, points.columns))}"
                )
        lon = pd.to_numeric(points["lon"], errors="coerce").to_numpy(dtype=np.float64)
        lat = pd.to_numeric(points["lat"], errors="coerce").to_numpy(dtype=np.float64)
        ok = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lat) <= 90) & (np.abs(lon) <= 360)
        out: dict[str, np.ndarray] = {}
        missing: dict[str, MissingStats] = {}
        projected: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for spec in specs:
            info = self.info(spec)
            if info.is_wgs84:
                x, y = lon, lat
            else:
                wkt = info.crs.to_wkt()
                if wkt not in projected:
                    projected[wkt] = _to_crs(wkt).transform(np.where(ok, lon, 0.0), np.where(ok, lat, 0.0))
                x, y = projected[wkt]
            vals, outside, nodata = self._sample_one(spec, info, np.asarray(x), np.asarray(y), ok)
            out[spec.name] = vals
            if outside.any() or nodata.any():
                missing[spec.name] = MissingStats(
                    outside=int(outside.sum()),
                    nodata=int(nodata.sum()),
                    example_outside=_example(lon, lat, outside),
                    example_nodata=_example(lon, lat, nodata),
                )
        frame = pd.DataFrame(out, index=points.index, columns=[s.name for s in specs])
        n_incomplete = int(frame.isna().any(axis=1).sum()) if len(specs) else 0
        self.last_report = SampleReport(
            n_points=len(points), n_bad_coords=int((~ok).sum()), n_incomplete=n_incomplete, missing=missing
        )
        if missing or not ok.all():
            log.warning("%s: %s", self.pack.folder.name, self.last_report.summary())
        return frame

    def _sample_one(
        self, spec: CovariateSpec, info: _RasterInfo, x: np.ndarray, y: np.ndarray, ok: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Values, ``outside`` mask and ``nodata`` mask for one covariate at raster-CRS points ``x, y``."""
        n = x.size
        inv = ~info.transform
        colf = inv.a * x + inv.b * y + inv.c
        rowf = inv.d * x + inv.e * y + inv.f
        if info.wraps_lon:
            colf = np.mod(colf, info.width)
        # A point the CRS cannot represent (non-finite after projection) is outside the raster too.
        finite = np.isfinite(colf) & np.isfinite(rowf)
        inside = ok & finite & (colf >= 0) & (colf < info.width) & (rowf >= 0) & (rowf < info.height)
        outside = ok & ~inside
        vals = np.full(n, np.nan)
        idx = np.flatnonzero(inside)
        if idx.size == 0:
            return vals, outside, np.zeros(n, dtype=bool)
        cf, rf = colf[idx], rowf[idx]
        # The containing pixel (nearest sample); clip guards float round-off at the far edges.
        r = np.minimum(rf.astype(np.int64), info.height - 1)
        c = np.minimum(cf.astype(np.int64), info.width - 1)
        if spec.resampling == "nearest" or spec.is_categorical:
            near = self._to_float(spec, info, self._gather(spec, info, r, c))
            vals[idx] = near
        else:
            # Bilinear between the four surrounding pixel centres (at index + 0.5); edge pixels are repeated.
            fr, fc = rf - 0.5, cf - 0.5
            r0 = np.floor(fr).astype(np.int64)
            c0 = np.floor(fc).astype(np.int64)
            wy, wx = fr - r0, fc - c0
            r1 = r0 + 1
            c1 = c0 + 1
            r0, r1 = np.clip(r0, 0, info.height - 1), np.clip(r1, 0, info.height - 1)
            if info.wraps_lon:
                c0, c1 = np.mod(c0, info.width), np.mod(c1, info.width)
            else:
                c0, c1 = np.clip(c0, 0, info.width - 1), np.clip(c1, 0, info.width - 1)
            m = idx.size
            raw = self._gather(
                spec, info, np.concatenate([r0, r0, r1, r1, r]), np.concatenate([c0, c1, c0, c1, c])
            )
            v = self._to_float(spec, info, raw)
            v00, v01, v10, v11, near = v[:m], v[m : 2 * m], v[2 * m : 3 * m], v[3 * m : 4 * m], v[4 * m :]
            bil = (v00 * (1 - wx) + v01 * wx) * (1 - wy) + (v10 * (1 - wx) + v11 * wx) * wy
            vals[idx] = np.where(np.isfinite(bil), bil, near)
        nodata = np.zeros(n, dtype=bool)
        nodata[idx] = np.isnan(vals[idx])
        return vals, outside, nodata

    # -- grids ----------------------------------------------------------------------------------------------

    def read(self, grid: Grid, names: Sequence[str] | None = None) -> xr.Dataset:
        """Covariates on ``grid`` (any CRS), warped on the fly from the smallest source window that covers it."""
        specs = self._resolve(names)
        data = {}
        for spec in specs:
            arr = self._read_one(spec, grid)
            attrs = {"units": spec.units, "group": spec.group, "kind": spec.kind}
            data[spec.name] = (("y", "x"), arr, attrs)
        return xr.Dataset(
            data,
            coords={"y": ("y", grid.y), "x": ("x", grid.x)},
            attrs={"crs": grid.crs, "transform": tuple(grid.transform)},
        )

    def _read_one(self, spec: CovariateSpec, grid: Grid) -> np.ndarray:
        info = self.info(spec)
        dst = np.full(grid.shape, np.nan, dtype=np.float32)
        dst_crs = CRS.from_user_input(grid.crs)
        try:
            bounds = transform_bounds(dst_crs, info.crs, *grid.bounds, densify_pts=21)
        except Exception as exc:  # pyproj/GDAL raise several types for impossible transforms
            raise CovariateError(
                f"cannot transform the grid bounds {grid.bounds} from {grid.crs} to {info.path.name}'s CRS: {exc}"
            ) from None
        window = _window_for(info, bounds, pad=2)
        if window is None:
            return dst
        col_off, row_off, width, height, span_cols, span_rows = window
        # A window too big to hold while the output is far coarser than the source (e.g. all of the 30" Köppen
        # raster for a continental grid at 10 km): let GDAL decimate while reading, keeping >= 2 source pixels
        # per output pixel. Smaller windows are read at full resolution so the warp alone decides each value.
        nbytes = width * height * np.dtype(info.dtypes[spec.band - 1]).itemsize
        factor = 1
        if nbytes > MAX_WINDOW_BYTES:
            factor = max(
                1,
                min(
                    math.ceil(math.sqrt(nbytes / MAX_WINDOW_BYTES)),
                    int(min(span_cols / grid.width, span_rows / grid.height) / 2),
                ),
            )
        out_h, out_w = math.ceil(height / factor), math.ceil(width / factor)
        resampling = Resampling[spec.resampling]
        with rasterio.Env(**_GDAL_ENV), rasterio.open(info.path) as src:
            raw = src.read(
                spec.band,
                window=Window(col_off, row_off, width, height),
                out_shape=(out_h, out_w),
                resampling=resampling,
            )
        src_arr = self._to_float(spec, info, raw).astype(np.float32)
        src_transform = (
            info.transform
            @ Affine.translation(col_off, row_off)
            @ Affine.scale(width / out_w, height / out_h)
        )
        reproject(
            source=src_arr,
            destination=dst,
            src_transform=src_transform,
            src_crs=info.crs,
            src_nodata=np.nan,
            dst_transform=grid.affine,
            dst_crs=dst_crs,
            dst_nodata=np.nan,
            resampling=resampling,
        )
        return dst


def _window_for(
    info: _RasterInfo, bounds: tuple[float, float, float, float], pad: int
) -> tuple[int, int, int, int, float, float] | None:
    """Raster pixels covering ``bounds`` plus ``pad``: (col_off, row_off, width, height) clipped to the raster, and
    the unclipped extent of ``bounds`` in source pixels (cols, rows); None if disjoint."""
    minx, miny, maxx, maxy = bounds
    if not all(np.isfinite(bounds)):
        return None
    inv = ~info.transform
    cols, rows = zip(*(inv @ (x, y) for x in (minx, maxx) for y in (miny, maxy)), strict=True)
    span_cols, span_rows = max(cols) - min(cols), max(rows) - min(rows)
    c0 = max(0, math.floor(min(cols)) - pad)
    c1 = min(info.width, math.ceil(max(cols)) + pad)
    r0 = max(0, math.floor(min(rows)) - pad)
    r1 = min(info.height, math.ceil(max(rows)) + pad)
    if c1 <= c0 or r1 <= r0:
        return None
    return c0, r0, c1 - c0, r1 - r0, span_cols, span_rows


def _example(lon: np.ndarray, lat: np.ndarray, mask: np.ndarray) -> tuple[float, float] | None:
    i = np.flatnonzero(mask)
    return (float(lon[i[0]]), float(lat[i[0]])) if i.size else None
