"""AOI reading and validation, output CRS choice (UTM zones checked by hand), grids and the size guard."""

from __future__ import annotations

from pathlib import Path

import geopandas as gpd
import pytest
from shapely.geometry import LineString, box

from geesoil.mapping.aoi import (
    AOIError,
    aoi_grid,
    check_size,
    default_crs,
    read_aoi,
    resolution_in,
    utm_crs,
)
from geesoil.mapping.run import percentile_name


@pytest.mark.parametrize(
    ("lon", "lat", "epsg"),
    [
        (149.9, -30.0, "EPSG:32755"),
        (150.1, -30.0, "EPSG:32756"),
        (3.0, 50.0, "EPSG:32631"),
        (-0.1, 51.5, "EPSG:32630"),
    ],
)
def test_utm_zone(lon: float, lat: float, epsg: str) -> None:
    assert utm_crs(lon, lat) == epsg


def test_default_crs_falls_back_to_degrees_for_wide_or_polar_aois() -> None:
    assert default_crs(read_aoi("149.5,-30.3,150,-30")) == "EPSG:32755"
    assert default_crs(read_aoi("0,0,20,10")) == "EPSG:4326"
    assert default_crs(read_aoi("0,85,10,88")) == "EPSG:4326"


def test_projected_file_is_read_in_wgs84(tmp_path: Path) -> None:
    src = gpd.GeoDataFrame(geometry=[box(149.6, -30.2, 149.9, -30.1)], crs="EPSG:4326").to_crs("EPSG:28355")
    src.to_file(tmp_path / "a.gpkg")
    aoi = read_aoi(tmp_path / "a.gpkg")
    assert aoi.bounds == pytest.approx((149.6, -30.2, 149.9, -30.1), abs=1e-3)


def test_lines_and_files_without_crs_are_refused(tmp_path: Path) -> None:
    gpd.GeoDataFrame(geometry=[LineString([(0, 0), (1, 1)])], crs="EPSG:4326").to_file(tmp_path / "l.geojson")
    with pytest.raises(AOIError, match="LineString"):
        read_aoi(tmp_path / "l.geojson")
    with pytest.raises(AOIError, match="not in WGS84"):
        read_aoi("500000,6600000,510000,6610000")


def test_grid_and_size_guard() -> None:
    aoi = read_aoi("149.5,-30.3,150,-30")
    grid = aoi_grid(aoi, "EPSG:32755", 250.0)
    # 0.5° × 0.3° at 30°S is about 48 × 33 km: about 193 × 134 pixels of 250 m (plus snapping)
    assert 190 <= grid.width <= 200 and 132 <= grid.height <= 140
    check_size(grid, max_pixels=grid.width * grid.height)
    with pytest.raises(AOIError, match="--yes"):
        check_size(grid, max_pixels=1000)
    check_size(grid, yes=True, max_pixels=1000)
    assert resolution_in(111_320.0, "EPSG:4326") == pytest.approx(1.0)
    assert resolution_in(250.0, "EPSG:32755") == 250.0


def test_percentile_names() -> None:
    assert [percentile_name(q) for q in (5, 95, 2.5, 97.5, 50)] == ["p05", "p95", "p02_5", "p97_5", "p50"]
