"""Areas of interest: read a polygon file or a WGS84 bbox, validate it, and choose the output CRS, scale and grid.

An :class:`AOI` holds one (multi)polygon in WGS84 degrees. Output grids default to the AOI's UTM zone (metres) and
fall back to EPSG:4326 (degrees) for AOIs wider than :data:`MAX_UTM_SPAN_DEG` or reaching past UTM's latitudes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely import geometry as sgeom
from shapely.geometry.base import BaseGeometry
from shapely.ops import unary_union
from shapely.validation import explain_validity

from geesoil.errors import GeesoilError
from geesoil.grid import M_PER_DEG, Grid

#: A UTM zone is 6° wide; beyond two zones' width the distortion of one zone grows past ~1 %, so use degrees.
MAX_UTM_SPAN_DEG = 12.0
#: UTM is defined between 80°S and 84°N.
UTM_LAT_LIMITS = (-80.0, 84.0)
#: Grids above this many pixels need an explicit ``--yes`` (a 200 M pixel float32 band is 800 MB per output).
MAX_PIXELS = 200_000_000
WGS84 = "EPSG:4326"


class AOIError(GeesoilError):
    """An area of interest is unreadable, empty, invalid, crosses the antimeridian or is too large."""


@dataclass(frozen=True)
class AOI:
    """A validated area of interest: one (multi)polygon in WGS84 degrees and where it came from."""

    geometry: BaseGeometry
    source: str

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return tuple(float(v) for v in self.geometry.bounds)  # type: ignore[return-value]

    def to_crs(self, crs: str) -> BaseGeometry:
        """The geometry in ``crs`` (densified along edges so long straight lines follow the projection)."""
        if CRS.from_user_input(crs) == CRS.from_user_input(WGS84):
            return self.geometry
        t = Transformer.from_crs(WGS84, crs, always_xy=True)
        minx, miny, maxx, maxy = self.bounds
        step = max(maxx - minx, maxy - miny) / 50 or 1.0
        dense = self.geometry.segmentize(step)
        return shapely.transform(dense, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1])))


def _parse_bbox(text: str) -> tuple[float, float, float, float] | None:
    parts = text.split(",")
    if len(parts) != 4:
        return None
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        return None
    return vals  # type: ignore[return-value]


def read_aoi(spec: str | Path) -> AOI:
    """An AOI from ``minx,miny,maxx,maxy`` (WGS84 degrees) or a GeoJSON/GPKG/shapefile of polygons (any CRS)."""
    text = str(spec).strip()
    bbox = _parse_bbox(text) if not _is_file(Path(text)) else None
    if bbox is not None:
        minx, miny, maxx, maxy = bbox
        if not all(map(math.isfinite, bbox)):
            raise AOIError(f"AOI bbox {text!r}: all four numbers must be finite")
        if not (-180 <= minx <= 180 and -180 <= maxx <= 180 and -90 <= miny <= 90 and -90 <= maxy <= 90):
            raise AOIError(
                f"AOI bbox {text!r} is not in WGS84 degrees (lon -180..180, lat -90..90); "
                "give minx,miny,maxx,maxy in degrees"
            )
        if minx > maxx:
            raise AOIError(
                f"AOI bbox {text!r} crosses the antimeridian (minx > maxx); map each side separately, "
                f"e.g. {minx:g},{miny:g},180,{maxy:g} and -180,{miny:g},{maxx:g},{maxy:g}"
            )
        if not (maxx > minx and maxy > miny):
            raise AOIError(f"AOI bbox {text!r} is empty: give minx < maxx and miny < maxy")
        return validate_aoi(sgeom.box(minx, miny, maxx, maxy), f"bbox {text}")
    try:
        path = Path(text).expanduser()
    except RuntimeError:  # "~name" of a user this machine does not know
        path = Path(text)
    if not _is_file(path):
        raise AOIError(
            f"AOI {text!r} is neither a file nor a bbox; give a GeoJSON/GPKG/shapefile or minx,miny,maxx,maxy"
        )
    import geopandas as gpd

    try:
        frame = gpd.read_file(path)
    except Exception as exc:  # pyogrio raises its own DataSourceError and friends
        raise AOIError(f"AOI file {path}: cannot read it as a vector file ({exc})") from None
    if len(frame) == 0 or frame.geometry.isna().all() or frame.geometry.is_empty.all():
        raise AOIError(f"AOI file {path} has no geometry; it needs at least one polygon")
    frame = frame[~(frame.geometry.isna() | frame.geometry.is_empty)]
    if frame.crs is None:
        raise AOIError(f"AOI file {path} has no CRS; set one (e.g. ogr2ogr -a_srs EPSG:4326)")
    bad = [i for i, g in enumerate(frame.geometry) if not g.is_valid]
    if bad:
        g = frame.geometry.iloc[bad[0]]
        raise AOIError(
            f"AOI file {path}: feature {bad[0]} has an invalid geometry ({explain_validity(g)}); "
            "repair it (e.g. shapely.make_valid or QGIS 'Fix geometries')"
        )
    kinds = sorted({t for t in frame.geometry.geom_type if t not in ("Polygon", "MultiPolygon")})
    if kinds:
        raise AOIError(f"AOI file {path} holds {', '.join(kinds)}; an AOI needs polygons")
    if CRS.from_user_input(frame.crs) != CRS.from_user_input(WGS84):
        frame = frame.to_crs(WGS84)
    return validate_aoi(unary_union(list(frame.geometry)), str(path))


def _is_file(path: Path) -> bool:
    """``path.exists()`` that answers False for names no file can have (NUL bytes, too long)."""
    try:
        return path.exists()
    except (OSError, ValueError):
        return False


def validate_aoi(geom: BaseGeometry, source: str) -> AOI:
    """Check a WGS84 geometry (non-empty polygonal, valid, within ±180°, not across the antimeridian)."""
    if geom is None or geom.is_empty:
        raise AOIError(f"AOI {source} is empty; it needs at least one polygon with an area")
    if not geom.is_valid:
        raise AOIError(
            f"AOI {source} has an invalid geometry ({explain_validity(geom)}); repair it "
            "(e.g. shapely.make_valid or QGIS 'Fix geometries')"
        )
    if geom.geom_type not in ("Polygon", "MultiPolygon") or geom.area <= 0:
        raise AOIError(f"AOI {source} is a {geom.geom_type} with no area; an AOI needs polygons")
    minx, miny, maxx, maxy = geom.bounds
    if minx < -180 or maxx > 180 or miny < -90 or maxy > 90:
        raise AOIError(
            f"AOI {source} reaches outside lon -180..180 / lat -90..90 (bounds {minx:g},{miny:g},{maxx:g},{maxy:g}); "
            "if it crosses the antimeridian, split it at 180° and map each part separately"
        )
    if maxx - minx > 180:
        raise AOIError(
            f"AOI {source} spans {maxx - minx:.0f}° of longitude, so it probably crosses the antimeridian; "
            "split it at 180° and map each part separately"
        )
    return AOI(geom, source)


def utm_crs(lon: float, lat: float) -> str:
    """The EPSG code of the WGS84 UTM zone containing (lon, lat)."""
    zone = min(60, int((lon + 180) // 6) + 1)
    return f"EPSG:{32600 + zone if lat >= 0 else 32700 + zone}"


def default_crs(aoi: AOI) -> str:
    """The AOI's UTM zone, or EPSG:4326 when it is too wide or reaches past UTM's latitude limits."""
    minx, miny, maxx, maxy = aoi.bounds
    if maxx - minx > MAX_UTM_SPAN_DEG or miny < UTM_LAT_LIMITS[0] or maxy > UTM_LAT_LIMITS[1]:
        return WGS84
    c = aoi.geometry.centroid
    return utm_crs(c.x, c.y)


def resolution_in(metres: float, crs: str) -> float:
    """A resolution of ``metres`` in ``crs`` units (degrees for geographic CRSs, else the CRS's linear unit)."""
    c = CRS.from_user_input(crs)
    if c.is_geographic:
        return metres / M_PER_DEG
    factor = c.axis_info[0].unit_conversion_factor if c.axis_info else 1.0
    return metres / factor


def aoi_grid(aoi: AOI, crs: str, resolution: float) -> Grid:
    """The grid in ``crs`` (``resolution`` in its units) covering the AOI, snapped outwards to the resolution."""
    geom = aoi.to_crs(crs)
    bounds = geom.bounds
    if not all(np.isfinite(bounds)):
        raise AOIError(f"AOI {aoi.source} cannot be projected to {crs}; choose another --crs")
    if not (bounds[2] > bounds[0] and bounds[3] > bounds[1]):  # a sliver that projects onto a line
        raise AOIError(f"AOI {aoi.source} has no width or height in {crs}; give an AOI with an area")
    return Grid.from_bounds(bounds, crs, resolution)


def check_size(grid: Grid, *, yes: bool = False, max_pixels: int = MAX_PIXELS) -> None:
    """Refuse grids above ``max_pixels`` unless ``yes``."""
    n = grid.height * grid.width
    if n > max_pixels and not yes:
        raise AOIError(
            f"the AOI grid has {n:,} pixels ({grid.width} × {grid.height}), more than {max_pixels:,}; "
            "choose a coarser --scale, a smaller AOI, or pass --yes to map it anyway"
        )
