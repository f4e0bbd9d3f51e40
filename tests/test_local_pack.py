"""LocalPackSource on generated GeoTIFFs (hand-computed values) and on the real shared packs (hand-checked places)."""

from __future__ import annotations

import json
import logging
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import Affine

import geesoil.covariates.local as local_mod
from geesoil.covariates.local import LocalPackSource
from geesoil.covariates.open import open_source, open_sources
from geesoil.covariates.pack import read_pack, write_pack_manifest
from geesoil.covariates.source import CombinedSource
from geesoil.covariates.spec import CovariateSpec
from geesoil.errors import CovariateError
from geesoil.grid import Grid

# -- generated packs ----------------------------------------------------------------------------------------------

# A 4 x 5 float raster with arbitrary (non-linear) values; pixel (r, c) covers lon 10+c..11+c, lat 50-r..49-r.
A = np.array(
    [
        [1.0, 2.0, 4.0, 8.0, 16.0],
        [3.0, 5.0, 7.0, 11.0, 13.0],
        [17.0, 19.0, 23.0, 29.0, 31.0],
        [37.0, 41.0, 43.0, 47.0, 53.0],
    ],
    dtype=np.float32,
)
CLASSES = np.array([[1, 1, 2, 2, 3], [1, 4, 2, 3, 3], [4, 4, 0, 3, 3], [4, 4, 4, 3, 3]], dtype=np.uint8)


def _tif(path: Path, arr: np.ndarray, transform: Affine, crs: str, nodata: float | None) -> None:
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=arr.shape[0],
        width=arr.shape[1],
        count=1,
        dtype=arr.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as dst:
        dst.write(arr, 1)


@pytest.fixture
def small_pack(tmp_path: Path) -> Path:
    t = Affine(1.0, 0.0, 10.0, 0.0, -1.0, 50.0)
    vals = A.copy()
    vals[2, 2] = -9999.0  # one nodata cell
    _tif(tmp_path / "val.tif", vals, t, "EPSG:4326", -9999.0)
    _tif(tmp_path / "cls.tif", CLASSES, t, "EPSG:4326", 0)
    write_pack_manifest(
        tmp_path,
        [
            CovariateSpec("val", "climate", units="x", file="val.tif"),
            CovariateSpec(
                "cls",
                "landcover",
                "categorical",
                "class",
                "nearest",
                {1: "a", 2: "b", 3: "c", 4: "d"},
                "cls.tif",
            ),
        ],
        name="small",
        crs="EPSG:4326",
    )
    return tmp_path


def test_bilinear_equals_hand_computed_interpolation(small_pack: Path) -> None:
    src = LocalPackSource(small_pack)
    # lon 11.75, lat 48.25: 1.25 pixel centres right of col 0 and below row 0 -> between (0..1, 1..2)
    # with weights wx = wy = 0.25 ... wait: centre of col 1 is lon 11.5, so wx = 0.25 towards col 2; rows alike.
    pts = pd.DataFrame({"lon": [10.75, 10.5, 11.75, 13.0], "lat": [47.9, 49.5, 48.25, 47.0]})
    got = src.sample(pts, ["val"])["val"]
    # lon 10.75 is 0.25 px east of the col-0 centre (10.5); lat 47.9 is 0.6 px south of the row-1 centre (48.5):
    # rows 1..2 (3, 5 / 17, 19) with wx = 0.25, wy = 0.6.
    expected = 0.4 * (0.75 * 3.0 + 0.25 * 5.0) + 0.6 * (0.75 * 17.0 + 0.25 * 19.0)
    assert expected == pytest.approx(11.9)
    assert got.iloc[0] == pytest.approx(expected, abs=1e-6)
    assert got.iloc[1] == pytest.approx(1.0)  # exactly on a pixel centre
    # lon 11.75, lat 48.25 lies between pixels (1,1), (1,2), (2,1) and (2,2); (2,2) is nodata, so it is not
    # blended in: the containing pixel's value (row 1, col 1 = 5) is used instead of a mix with -9999.
    assert got.iloc[2] == pytest.approx(5.0)
    # lon 13.0, lat 47.0 is the corner of pixels (2..3, 2..3): again (2,2) is nodata -> containing pixel (3,3) = 47.
    assert got.iloc[3] == pytest.approx(47.0)


def test_nodata_is_nan_and_outside_points_are_reported(
    small_pack: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = LocalPackSource(small_pack)
    pts = pd.DataFrame(
        {"lon": [12.5, 12.9, 9.0, 30.0, 11.2, np.nan], "lat": [47.5, 47.2, 48.0, 48.0, 49.9, 10.0]},
        index=[10, 11, 12, 13, 14, 15],
    )
    with caplog.at_level(logging.WARNING, logger="geesoil.covariates.local"):
        out = src.sample(pts)
    assert list(out.index) == [10, 11, 12, 13, 14, 15] and list(out.columns) == ["val", "cls"]
    assert out["val"].isna().tolist() == [True, True, True, True, False, True]
    assert out["cls"].isna().tolist() == [True, True, True, True, False, True]  # class 0 is the nodata code
    assert out.loc[14, "cls"] == 1.0
    rep = src.last_report
    assert rep is not None
    assert (rep.n_points, rep.n_bad_coords, rep.n_incomplete) == (6, 1, 5)
    assert rep.missing["val"].outside == 2 and rep.missing["val"].nodata == 2
    assert rep.missing["val"].example_outside == (9.0, 48.0)
    assert "2 outside the raster (e.g. lon 9.0000, lat 48.0000)" in caplog.text
    assert "5 of 6 points lack at least one covariate" in caplog.text


def test_categorical_values_are_exact_codes_of_the_containing_pixel(small_pack: Path) -> None:
    rng = np.random.default_rng(1)
    pts = pd.DataFrame({"lon": rng.uniform(10, 15, 500), "lat": rng.uniform(46, 50, 500)})
    got = LocalPackSource(small_pack).sample(pts, ["cls"])["cls"].to_numpy()
    rows = np.floor(50 - pts["lat"]).astype(int).to_numpy()
    cols = np.floor(pts["lon"] - 10).astype(int).to_numpy()
    expected = CLASSES[rows, cols].astype(float)
    expected[expected == 0] = np.nan
    np.testing.assert_array_equal(got, expected)


def test_bilinear_in_a_projected_crs(tmp_path: Path) -> None:
    t = Affine(100.0, 0.0, 700000.0, 0.0, -100.0, 6700000.0)  # GDA94 / MGA 55 like the Edgeroi pack
    _tif(tmp_path / "val.tif", np.vstack([A, A[::-1] * 2]).astype(np.float32), t, "EPSG:28355", -9999.0)
    write_pack_manifest(tmp_path, [CovariateSpec("val", "topo", file="val.tif")], name="utm")
    x, y = 700000 + 100 * 2.3, 6700000 - 100 * 3.6  # col 2.3, row 3.6 -> centres 1..2 (wx .8), 3..4 (wy .1)
    lon, lat = Transformer.from_crs("EPSG:28355", "EPSG:4326", always_xy=True).transform(x, y)
    got = LocalPackSource(tmp_path).sample(pd.DataFrame({"lon": [lon], "lat": [lat]}))["val"].iloc[0]
    # rows 3 and 4 of the stacked raster: A[3] and 2 * A[3] (A reversed, first row = A[3])
    expected = 0.9 * (0.2 * 41.0 + 0.8 * 43.0) + 0.1 * (0.2 * 82.0 + 0.8 * 86.0)
    assert got == pytest.approx(expected, abs=1e-3)


def test_pack_manifest_round_trip_and_errors(small_pack: Path) -> None:
    pack = read_pack(small_pack / "pack.json")
    assert pack.name == "small" and pack.crs == "EPSG:4326"
    assert [c.name for c in pack.covariates] == ["val", "cls"]
    assert pack.by_name()["cls"].classes == {1: "a", 2: "b", 3: "c", 4: "d"}
    assert pack.path_of("val") == small_pack / "val.tif"
    doc = json.loads((small_pack / "pack.json").read_text())
    doc["covariates"][1]["file"] = "gone.tif"
    (small_pack / "pack.json").write_text(json.dumps(doc))
    with pytest.raises(
        CovariateError, match=r"pack.json covariates\[1\] \('cls'\): file 'gone.tif' not found"
    ):
        read_pack(small_pack)
    with pytest.raises(CovariateError, match="no pack.json"):
        read_pack(small_pack.parent)
    with pytest.raises(CovariateError, match="not found in"):
        write_pack_manifest(small_pack, [CovariateSpec("x", "topo", file="nope.tif")], name="bad")


def test_unknown_covariate_and_missing_columns(small_pack: Path) -> None:
    src = LocalPackSource(small_pack)
    with pytest.raises(CovariateError, match=r"no covariate 'nope'; it has: val, cls"):
        src.sample(pd.DataFrame({"lon": [11.0], "lat": [49.0]}), ["nope"])
    with pytest.raises(CovariateError, match="points need 'lon' and 'lat'"):
        src.sample(pd.DataFrame({"x": [11.0], "y": [49.0]}))


# -- the real coarse global pack ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coarse(coarse_pack: Path) -> LocalPackSource:
    return LocalPackSource(coarse_pack)


def _box(x0: float, x1: float, y0: float, y1: float, n: int = 20) -> pd.DataFrame:
    xs, ys = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    return pd.DataFrame({"lon": xs.ravel(), "lat": ys.ravel()})


# Hand-checked values from the shared data README's spot checks (and its ERA5 checks); tolerances allow for the
# exact point within a coarse pixel and for bilinear interpolation between pixels.
SPOT_CHECKS = [
    ("Singapore", 103.82, 1.35, "bio01", 26.9, 0.5),
    ("London", -0.12, 51.5, "bio01", 10.7, 0.5),
    ("Yakutsk", 129.73, 62.03, "bio01", -9.8, 0.6),
    ("Manaus", -60.02, -3.1, "bio01", 27.4, 0.5),
    ("Netherlands", 5.3, 52.3, "bio01", 9.2, 0.5),
    ("Kathmandu", 85.32, 27.7, "bio01", 17.3, 1.5),
    ("Netherlands", 5.3, 52.3, "elevation", 3.0, 8.0),
    ("Kathmandu", 85.32, 27.7, "elevation", 1163.0, 600.0),
    ("Singapore", 103.82, 1.35, "bio12", 2369.0, 250.0),
    ("London", -0.12, 51.5, "bio12", 703.0, 70.0),
    ("Sahara", 10.0, 23.0, "bio12", 17.0, 15.0),
]


@pytest.mark.parametrize(("place", "lon", "lat", "name", "expected", "tol"), SPOT_CHECKS)
def test_spot_checks_at_known_places(
    coarse: LocalPackSource, place: str, lon: float, lat: float, name: str, expected: float, tol: float
) -> None:
    got = coarse.sample(pd.DataFrame({"lon": [lon], "lat": [lat]}), [name])[name].iloc[0]
    assert got == pytest.approx(expected, abs=tol), place


def test_box_checks_of_land_cover_and_vegetation(coarse: LocalPackSource) -> None:
    everest = coarse.sample(_box(86.5, 87.5, 27.5, 28.5, 5), ["elevation"])["elevation"]
    assert everest.max() > 4000  # README: Everest area 4663 m at 20'
    amazon = coarse.sample(_box(-70, -60, -8, -2), ["treecover", "landcover_igbp", "ndvi", "koppen"])
    assert amazon["treecover"].median() > 85  # README: 96 %
    assert (amazon["landcover_igbp"] == 2).mean() > 0.9  # README: 98 % Evergreen Broadleaf
    assert amazon["ndvi"].mean() == pytest.approx(224, abs=8)  # README: box mean 224
    assert (amazon["koppen"] == 1).all()
    iowa = coarse.sample(_box(-95, -91, 41, 43), ["landcover_igbp", "koppen"])
    assert (iowa["landcover_igbp"] == 12).mean() > 0.9  # README: 97 % Croplands
    sahara = coarse.sample(_box(0, 20, 20, 28), ["landcover_igbp", "landcover_glcnmo", "koppen"])
    assert (sahara["landcover_igbp"] == 16).all() and (sahara["koppen"] == 2).all()
    assert (
        sahara["landcover_glcnmo"].isin([16, 17])
    ).mean() > 0.9  # bare (gravel/rock or sand); not mountains
    greenland = coarse.sample(_box(-45, -35, 72, 78), ["landcover_glcnmo", "landcover_igbp", "koppen"])
    assert (greenland["landcover_glcnmo"] == 19).all() and (greenland["landcover_igbp"] == 15).all()
    assert (greenland["koppen"] == 5).all()


def test_categorical_sampling_matches_rasterio_exactly(coarse: LocalPackSource, coarse_pack: Path) -> None:
    rng = np.random.default_rng(7)
    lon, lat = rng.uniform(-180, 180, 3000), rng.uniform(-60, 85, 3000)
    got = coarse.sample(pd.DataFrame({"lon": lon, "lat": lat}), ["koppen", "landcover_igbp", "biome"])
    for name in got.columns:
        spec = coarse.pack.by_name()[name]
        with rasterio.open(coarse_pack / spec.file) as src:
            ref = np.array([v[0] for v in src.sample(zip(lon, lat, strict=True))], dtype=float)
            ref[ref == src.nodata] = np.nan
        np.testing.assert_array_equal(got[name].to_numpy(), ref)
        assert set(np.unique(ref[np.isfinite(ref)])) <= set(spec.classes)


def test_windowed_reads_equal_whole_band_reads(coarse_pack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    pts = pd.DataFrame({"lon": rng.uniform(-20, 40, 2000), "lat": rng.uniform(-35, 60, 2000)})
    names = ["landcover_igbp", "bio01", "ndvi"]
    whole = LocalPackSource(coarse_pack).sample(pts, names)
    monkeypatch.setattr(local_mod, "MAX_CACHED_BYTES", 0)  # force the window-by-window path
    monkeypatch.setattr(local_mod, "MAX_WINDOW_BYTES", 50_000)
    monkeypatch.setattr(local_mod, "ROW_GAP", 3)
    windowed = LocalPackSource(coarse_pack).sample(pts, names)
    pd.testing.assert_frame_equal(whole, windowed)


def test_global_rasters_wrap_around_the_antimeridian(coarse: LocalPackSource) -> None:
    # The ERA5 grid runs from -180.125 to 179.875: lon 179.95 lies in its first column, seen from the east.
    out = coarse.sample(
        pd.DataFrame({"lon": [179.95, -180.05, 179.95 - 360], "lat": [-17.0, -17.0, -17.0]}), ["bio12"]
    )
    assert np.isfinite(out["bio12"]).all()
    assert out["bio12"].iloc[0] == pytest.approx(out["bio12"].iloc[1]) == pytest.approx(out["bio12"].iloc[2])


def test_wise_topsoil_sites_extract_with_high_coverage(coarse: LocalPackSource, soil_dir: Path) -> None:
    """Done-when: the shared coarse pack at all WISE 0-30 cm sites works and matches hand checks at known places."""
    wise = pd.read_parquet(
        soil_dir / "wise.parquet", columns=["profile_id", "lon", "lat", "top_cm", "country_iso2"]
    )
    top = wise[(wise["top_cm"] >= 0) & (wise["top_cm"] < 30)]
    sites = top.drop_duplicates("profile_id").drop_duplicates(["lon", "lat"]).reset_index(drop=True)
    assert len(sites) > 7000
    values = coarse.sample(sites)
    assert values.shape == (len(sites), len(coarse.specs))
    assert values.notna().mean().min() > 0.9  # every covariate at > 90 % of sites
    assert values.notna().all(axis=1).mean() > 0.85  # coastal sites fall on nodata in the coarse layers
    rep = coarse.last_report
    assert rep is not None and rep.n_incomplete == int(values.isna().any(axis=1).sum())
    site = pd.concat([sites, values], axis=1)
    # Known places: every valid value agrees with the country's climate (coastal sites may be NaN).
    for cc, koppen, lo, hi in [("NL", 3, 8, 11), ("NE", 2, 25, 31), ("MY", 1, 24, 28)]:
        c = site[site["country_iso2"] == cc]
        assert len(c) > 10 and c[["koppen", "bio01"]].notna().all(axis=1).mean() > 0.9, cc
        assert (c["koppen"].dropna() == koppen).all() and c["bio01"].dropna().between(lo, hi).all(), cc
    aq = site[
        site["country_iso2"] == "AQ"
    ]  # Antarctica: outside the 60 S extent of WorldClim, snow/ice, polar
    assert (
        len(aq) > 0
        and aq["bio01"].isna().all()
        and (aq["koppen"].dropna() == 5).all()
        and (aq["landcover_igbp"] == 15).all()
    )
    assert rep.missing["bio01"].outside >= len(aq)


def test_read_grid_in_wgs84_matches_sampling_at_pixel_centres(coarse: LocalPackSource) -> None:
    grid = Grid.from_bounds(
        (10.0, 47.5, 14.0, 51.0), "EPSG:4326", 0.05
    )  # inland central Europe, finer than sources
    names = ["bio01", "bio12", "elevation", "koppen", "landcover_igbp"]
    ds = coarse.read(grid, names)
    assert ds.attrs["crs"] == "EPSG:4326" and tuple(ds.attrs["transform"]) == grid.transform
    np.testing.assert_allclose(ds["x"], grid.x)
    np.testing.assert_allclose(ds["y"], grid.y)
    xs, ys = np.meshgrid(grid.x, grid.y)
    pts = coarse.sample(pd.DataFrame({"lon": xs.ravel(), "lat": ys.ravel()}), names)
    for name in names:
        arr = ds[name].to_numpy()
        assert arr.dtype == np.float32 and arr.shape == grid.shape
        assert np.isfinite(arr).all()
        ref = pts[name].to_numpy().reshape(grid.shape)
        if coarse.pack.by_name()[name].is_categorical:
            np.testing.assert_array_equal(arr, ref)
        else:
            np.testing.assert_allclose(arr, ref, rtol=1e-4, atol=1e-3)


def test_read_grid_in_utm_matches_sampling_at_pixel_centres(coarse: LocalPackSource) -> None:
    grid = Grid.from_bounds((450000, 5400000, 500000, 5450000), "EPSG:32633", 500.0)  # Austria/Czechia
    ds = coarse.read(grid, ["bio01", "bio12", "koppen", "landcover_igbp"])
    assert ds.attrs["crs"] == "EPSG:32633" and ds["bio01"].shape == grid.shape
    xs, ys = np.meshgrid(grid.x, grid.y)
    lon, lat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(
        xs.ravel(), ys.ravel()
    )
    pts = coarse.sample(
        pd.DataFrame({"lon": lon, "lat": lat}), ["bio01", "bio12", "koppen", "landcover_igbp"]
    )
    # GDAL's warp approximates the reprojection along scanlines (to 1/8 output pixel), hence not exact.
    for name, tol in [("bio01", 0.05), ("bio12", 5.0)]:
        diff = np.abs(ds[name].to_numpy().ravel() - pts[name].to_numpy())
        assert np.nanmax(diff) < tol and np.median(diff) < tol / 5
    for name in ["koppen", "landcover_igbp"]:
        assert (ds[name].to_numpy().ravel() == pts[name].to_numpy()).mean() > 0.97


def test_read_grid_outside_every_raster_is_nan(coarse: LocalPackSource) -> None:
    grid = Grid.from_bounds((-10.0, -89.0, 10.0, -80.0), "EPSG:4326", 1.0)  # south of the 60 S extent
    assert np.isnan(coarse.read(grid, ["bio01"])["bio01"].to_numpy()).all()


# -- the Edgeroi regional pack (EPSG:28355) -----------------------------------------------------------------------


def test_edgeroi_profiles_are_almost_all_valid(edgeroi_pack: Path, soil_dir: Path) -> None:
    profiles = pd.read_parquet(soil_dir / "edgeroi.parquet").drop_duplicates("profile_id")
    src = LocalPackSource(edgeroi_pack)
    values = src.sample(profiles[["lon", "lat"]])
    assert values.notna().mean().min() >= 0.95
    # lon/lat -> MGA55 through pyproj must land where the source's own MGA coordinates do: the categorical values
    # equal those read by rasterio at x_mga55/y_mga55.
    spec = src.pack.by_name()["parent_material"]
    with rasterio.open(edgeroi_pack / spec.file) as ds:
        ref = np.array(
            [v[0] for v in ds.sample(zip(profiles["x_mga55"], profiles["y_mga55"], strict=True))], float
        )
    ref[ref == 0] = np.nan
    same = (values["parent_material"].to_numpy() == ref) | (
        np.isnan(ref) & values["parent_material"].isna().to_numpy()
    )
    assert same.mean() > 0.98


def test_edgeroi_read_on_its_own_grid_returns_the_raster(edgeroi_pack: Path) -> None:
    src = LocalPackSource(edgeroi_pack)
    with rasterio.open(edgeroi_pack / "elevation_srtm_250m.tif") as ds:
        raw = ds.read(1).astype(np.float32)
        grid = Grid("EPSG:28355", tuple(ds.transform)[:6], (ds.height, ds.width))
    raw[raw == -9999] = np.nan
    out = src.read(grid, ["elevation_srtm", "land_use"])
    np.testing.assert_array_equal(out["elevation_srtm"].to_numpy(), raw)
    assert np.isfinite(out["land_use"]).mean() > 0.5  # the 100 m land use, resampled (nearest) onto 250 m


# -- opening sources ----------------------------------------------------------------------------------------------


def test_open_sources_combines_global_and_regional(
    coarse_pack: Path, edgeroi_pack: Path, soil_dir: Path
) -> None:
    src = open_sources([str(coarse_pack), str(edgeroi_pack)])
    assert isinstance(src, CombinedSource)
    names = [s.name for s in src.specs]
    assert "bio01" in names and "gamma_k" in names
    pts = pd.read_parquet(soil_dir / "edgeroi.parquet").drop_duplicates("profile_id").head(50)
    out = src.sample(pts, ["bio01", "gamma_k", "koppen"])
    assert out["bio01"].between(15, 22).all() and out["gamma_k"].notna().mean() > 0.9
    assert isinstance(open_sources([str(coarse_pack)]), LocalPackSource)


def test_open_source_errors(tmp_path: Path) -> None:
    with pytest.raises(
        CovariateError, match=r"covariate source 'no/such/pack' not found; give a covariate pack"
    ):
        open_source("no/such/pack")
    with pytest.raises(CovariateError, match="no pack.json"):
        open_source(tmp_path)
    with pytest.raises(CovariateError, match="no covariate source given"):
        open_sources([])


def test_open_ee_without_the_earth_engine_source_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "geesoil.ee.source", None)  # as if geesoil.ee.source were not installed
    with pytest.raises(CovariateError, match="Earth Engine covariate source is not available"):
        open_source("ee")


def test_open_ee_offline_lists_the_catalog_recipes() -> None:
    pytest.importorskip("geesoil.ee.source")
    src = open_source("ee:coarse-global-v1", connect=False)
    names = [s.name for s in src.specs]
    assert "bio01" in names and "koppen" not in names  # koppen has no Earth Engine equivalent (ee: null)


def test_open_starter_builds_into_the_cache(
    small_pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Path, Path | None, bool]] = []

    def build_starter_pack(out_dir: Path, *, cache_dir: Path | None = None, force: bool = False) -> Path:
        calls.append((out_dir, cache_dir, force))
        if not (out_dir / "pack.json").exists():
            out_dir.mkdir(parents=True)
            for f in ("val.tif", "cls.tif", "pack.json"):
                (out_dir / f).write_bytes((small_pack / f).read_bytes())
        return out_dir

    fake = types.ModuleType("geesoil.covariates.starter")
    fake.build_starter_pack = build_starter_pack  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "geesoil.covariates.starter", fake)
    monkeypatch.setenv("GEESOIL_CACHE_DIR", str(tmp_path / "cache"))
    first = open_source("starter")
    second = open_source("STARTER")
    assert calls == [(tmp_path / "cache" / "starter-pack", tmp_path / "cache", False)] * 2
    assert isinstance(first, LocalPackSource) and first.pack.folder == tmp_path / "cache" / "starter-pack"
    assert [s.name for s in second.specs] == ["val", "cls"]


def test_koppen_reads_only_the_window_it_needs(coarse_pack: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The 21600 x 43200 Köppen raster is never read whole for a small AOI or a cluster of points."""
    windows: list[tuple[int, int]] = []
    real_open = rasterio.open

    class Spy:
        def __init__(self, ds: rasterio.io.DatasetReader) -> None:
            self.ds = ds

        def __enter__(self) -> Spy:
            return self

        def __exit__(self, *exc: object) -> None:
            self.ds.close()

        def read(
            self, *args: object, window: rasterio.windows.Window | None = None, **kw: object
        ) -> np.ndarray:
            arr = self.ds.read(*args, window=window, **kw)
            windows.append(
                (self.ds.height, self.ds.width) if window is None else (window.height, window.width)
            )
            return arr

        def __getattr__(self, name: str) -> object:
            return getattr(self.ds, name)

    monkeypatch.setattr(local_mod.rasterio, "open", lambda path, *a, **kw: Spy(real_open(path, *a, **kw)))
    src = LocalPackSource(coarse_pack)
    grid = Grid.from_bounds((149.3, -30.6, 150.0, -30.0), "EPSG:4326", 0.01)  # Edgeroi-sized AOI
    ds = src.read(grid, ["koppen"])
    pts = src.sample(
        pd.DataFrame({"lon": np.linspace(149.3, 150.0, 50), "lat": np.linspace(-30.6, -30.0, 50)}), ["koppen"]
    )
    assert len(windows) == 2 and all(h * w < 200 * 200 for h, w in windows)
    assert set(np.unique(ds["koppen"])) <= {2.0, 3.0} and set(pts["koppen"]) <= {2.0, 3.0}  # arid / temperate
