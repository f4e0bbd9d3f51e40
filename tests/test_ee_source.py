"""EarthEngineSource end to end against the fake Earth Engine server serving the shared coarse pack."""

from __future__ import annotations

import json
import math
from pathlib import Path

import ee
import ee_fake_server
import numpy as np
import pandas as pd
import pytest
import rasterio
from ee_fake_server import pack_rasters
from rasterio.windows import from_bounds

from geesoil.covariates.source import CovariateSource
from geesoil.ee import source as ee_source
from geesoil.ee.limits import RetryPolicy
from geesoil.ee.source import EarthEngineSource
from geesoil.errors import CovariateError, EarthEngineError
from geesoil.grid import Grid

fake_ee = ee_fake_server.fake_ee  # the fixture
pytestmark = pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")
FAST = RetryPolicy(retries=3, base_s=0.01, max_s=0.05)
#: The coarse catalog's covariates that have a buildable Earth Engine recipe (bio04/12/15 are free-text derivations).
EE_NAMES = ["elevation", "bio01", "ndvi", "treecover", "landcover_igbp"]


@pytest.fixture(scope="module")
def sites(soil_dir: Path) -> pd.DataFrame:
    """60 real WISE profile locations with a non-default index, plus a row without coordinates."""
    df = pd.read_parquet(soil_dir / "wise.parquet", columns=["profile_id", "lon", "lat"])
    df = df.drop_duplicates("profile_id").sample(60, random_state=3)
    df.index = [f"p{i}" for i in range(len(df))]
    missing = pd.DataFrame({"profile_id": ["nocoords"], "lon": [np.nan], "lat": [np.nan]}, index=["pnan"])
    return pd.concat([df, missing])


def reference(coarse_pack: Path, points: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """The pack's own pixel values at the points (rasterio, nodata → NaN)."""
    files = pack_rasters(coarse_pack)
    out = pd.DataFrame(np.nan, index=points.index, columns=names)
    ok = points[["lon", "lat"]].notna().all(axis=1)
    xy = list(zip(points.loc[ok, "lon"], points.loc[ok, "lat"], strict=True))
    for name in names:
        with rasterio.open(files[name]) as src:
            vals = np.array([v[0] for v in src.sample(xy)], dtype="float64")
            if src.nodata is not None:
                vals[vals == src.nodata] = np.nan
        out.loc[ok, name] = vals
    return out


def source(**kw) -> EarthEngineSource:
    kw.setdefault("retry", FAST)
    kw.setdefault("progress", False)
    return EarthEngineSource("coarse-global-v1", **kw)


def test_is_a_covariate_source_serving_only_buildable_recipes():
    src = source()
    assert isinstance(src, CovariateSource)
    assert [s.name for s in src.specs] == EE_NAMES


def test_sample_matches_the_local_rasters(fake_ee, sites, coarse_pack):
    src = source(batch_size=25, page_size=10, max_workers=3)
    got = src.sample(sites)
    want = reference(coarse_pack, sites, EE_NAMES)
    assert list(got.index) == list(sites.index) and list(got.columns) == EE_NAMES
    pd.testing.assert_frame_equal(got, want, check_dtype=False, rtol=1e-6)
    assert got.loc["pnan"].isna().all()
    assert got["elevation"].notna().sum() > 40  # real sites, mostly on land
    # 60 valid points in batches of 25, 25, 10; pages of 10 → 3 + 3 + 1 computeFeatures calls
    assert len(fake_ee.calls_to("table:computeFeatures")) == 7


def test_single_covariate_uses_earth_engines_single_output_name(fake_ee, sites, coarse_pack):
    got = source().sample(sites, ["bio01"])
    pd.testing.assert_frame_equal(got, reference(coarse_pack, sites, ["bio01"]), check_dtype=False, rtol=1e-6)


def test_automatic_batches_respect_the_feature_limit(fake_ee, coarse_pack):
    rng = np.random.default_rng(0)
    pts = pd.DataFrame({"lon": rng.uniform(-20, 50, 5600), "lat": rng.uniform(-30, 30, 5600)})
    got = source(max_workers=2).sample(pts, ["elevation"])
    calls = fake_ee.calls_to("table:computeFeatures")
    sizes = sorted(json.dumps(c.body).count('"functionName": "Feature"') for c in calls)
    assert sizes == [600, 5000]
    assert all(len(json.dumps(c.body).encode()) < 10 * 2**20 for c in calls)
    pd.testing.assert_frame_equal(got, reference(coarse_pack, pts, ["elevation"]), check_dtype=False)


def test_rate_limits_are_retried(fake_ee, sites, coarse_pack):
    fake_ee.inject(status=429, message="Too many concurrent aggregations.", times=2)
    got = source(max_workers=1).sample(sites, ["elevation"])
    assert [c.status for c in fake_ee.calls_to("computeFeatures")] == [429, 429, 200]
    pd.testing.assert_frame_equal(got, reference(coarse_pack, sites, ["elevation"]), check_dtype=False)


def test_malformed_answers_are_retried(fake_ee, sites, coarse_pack):
    fake_ee.inject(malformed=True)
    got = source(max_workers=1).sample(sites, ["elevation"])
    assert len(fake_ee.calls_to("computeFeatures")) == 2
    pd.testing.assert_frame_equal(got, reference(coarse_pack, sites, ["elevation"]), check_dtype=False)


def test_persistent_server_errors_are_bounded_then_reported(fake_ee, sites):
    fake_ee.inject(status=503, times=100)
    with pytest.raises(EarthEngineError) as err:
        source(max_workers=1, retry=RetryPolicy(retries=2, base_s=0.01)).sample(sites, ["elevation"])
    assert len(fake_ee.calls_to("computeFeatures")) == 3
    msg = str(err.value)
    assert "\n" not in msg and "1 of 1 batches failed" in msg and "after 3 attempts" in msg


def test_memory_limit_raises_tile_scale(fake_ee, sites):
    fake_ee.inject(status=400, message="User memory limit exceeded.")
    source(max_workers=1).sample(sites, ["elevation"])
    scales = []
    for call in fake_ee.calls_to("computeFeatures"):
        text = json.dumps(call.body)
        scales.append(json.loads(text.split('"tileScale": ')[1].split("}")[0] + "}")["constantValue"])
    assert scales == [1, 2]


def test_concurrency_is_bounded_by_max_workers(fake_ee, sites):
    fake_ee.latency_s = 0.05
    source(batch_size=3, max_workers=4).sample(sites.iloc[:24], ["elevation"])
    assert len(fake_ee.calls_to("computeFeatures")) == 8
    assert 2 <= fake_ee.max_in_flight <= 4


@pytest.mark.parametrize("workers", [0, 41])
def test_concurrency_above_earth_engines_quota_is_refused(workers):
    with pytest.raises(EarthEngineError, match="40"):
        source(max_workers=workers)


def test_interrupted_extraction_resumes_from_the_cache(fake_ee, sites, coarse_pack, tmp_path):
    cache = tmp_path / "cache"
    fake_ee.inject(status=503, times=2)  # with one worker, batch 1 takes both failures and gives up
    with pytest.raises(EarthEngineError, match="run again to resume"):
        source(
            batch_size=20, max_workers=1, cache_dir=cache, retry=RetryPolicy(retries=1, base_s=0.01)
        ).sample(sites)
    assert len(list(cache.glob("*.parquet"))) == 2
    before = len(fake_ee.calls_to("computeFeatures"))
    got = source(batch_size=20, max_workers=1, cache_dir=cache).sample(sites)
    assert len(fake_ee.calls_to("computeFeatures")) - before == 1  # only the failed batch is fetched again
    pd.testing.assert_frame_equal(got, reference(coarse_pack, sites, EE_NAMES), check_dtype=False, rtol=1e-6)
    again = source(batch_size=20, max_workers=1, cache_dir=cache).sample(sites)
    assert len(fake_ee.calls_to("computeFeatures")) - before == 1  # everything cached now
    pd.testing.assert_frame_equal(again, got)


def test_cache_is_keyed_by_dates_and_covariates(fake_ee, sites, tmp_path):
    cache = tmp_path / "cache"
    source(cache_dir=cache).sample(sites, ["elevation"])
    n = len(fake_ee.calls_to("computeFeatures"))
    source(cache_dir=cache).sample(sites, ["elevation"])
    assert len(fake_ee.calls_to("computeFeatures")) == n
    source(cache_dir=cache, start="2010-01-01").sample(sites, ["elevation"])
    source(cache_dir=cache).sample(sites, ["elevation", "bio01"])
    assert len(fake_ee.calls_to("computeFeatures")) == n + 2
    assert len(list(cache.glob("*.parquet"))) == 3


def test_torn_cache_file_is_refetched(fake_ee, sites, coarse_pack, tmp_path):
    cache = tmp_path / "cache"
    source(cache_dir=cache).sample(sites, ["elevation"])
    (f,) = cache.glob("*.parquet")
    f.write_bytes(f.read_bytes()[:50])
    got = source(cache_dir=cache).sample(sites, ["elevation"])
    pd.testing.assert_frame_equal(got, reference(coarse_pack, sites, ["elevation"]), check_dtype=False)


def test_bad_points_and_names_are_user_errors():
    src = source()
    with pytest.raises(CovariateError, match="lon"):
        src.sample(pd.DataFrame({"x": [1.0], "y": [2.0]}))
    with pytest.raises(CovariateError, match="out of range"):
        src.sample(pd.DataFrame({"lon": [500000.0], "lat": [6000000.0]}))
    with pytest.raises(CovariateError, match="koppen"):
        src.sample(pd.DataFrame({"lon": [1.0], "lat": [2.0]}), ["koppen"])


def test_sampling_without_initialisation_says_how_to_log_in(sites):
    ee.Reset()
    with pytest.raises(EarthEngineError, match="--ee-project"):
        source().sample(sites, ["elevation"])


def test_read_matches_the_local_raster_and_is_chunked(fake_ee, coarse_pack, monkeypatch):
    monkeypatch.setattr(ee_source.limits, "pixel_chunk_side", lambda n_bands, nbytes=4: 4)
    # on the 20' elevation raster's own grid, so values must match pixel for pixel
    grid = Grid.from_bounds((85.0, 26.0, 88.0, 29.0), "EPSG:4326", 1 / 3)
    ds = source().read(grid, ["elevation", "landcover_igbp"])
    assert ds["elevation"].chunks == ((4, 4, 1), (4, 4, 1))  # lazy, dask-backed, chunked as xee requests
    np.testing.assert_allclose(ds["x"], grid.x)
    np.testing.assert_allclose(ds["y"], grid.y)
    got = ds["elevation"].values
    with rasterio.open(pack_rasters(coarse_pack)["elevation"]) as src:
        want = src.read(1, window=from_bounds(*grid.bounds, src.transform)).astype("float64")
    assert got.shape == grid.shape == want.shape
    np.testing.assert_array_equal(got, want)
    calls = fake_ee.calls_to("image:computePixels")
    dims = [c.body["grid"]["dimensions"] for c in calls]
    # 3 × 3 chunks of the one band computed; landcover_igbp stays lazy (never requested)
    assert len(calls) == 9 and max(max(d["width"], d["height"]) for d in dims) <= 4
    assert ds["elevation"].attrs["units"] == "m"


def test_read_masks_nodata_as_nan(fake_ee, coarse_pack):
    grid = Grid.from_bounds((-40.0, 10.0, -30.0, 20.0), "EPSG:4326", 1 / 3)  # open Atlantic: elevation nodata
    ds = source().read(grid, ["elevation"])
    assert math.isnan(float(ds["elevation"].mean(skipna=False)))
    assert np.isnan(ds["elevation"].values).all()


def test_gsoilcpm_requests_fit_the_limits_and_unknown_assets_are_reported(fake_ee):
    """The full 32-covariate image with 5000 points per request stays under 10 MB; the fake has no MODIS data, so
    Earth Engine's refusal comes back as one line naming the band, without retries."""
    rng = np.random.default_rng(1)
    pts = pd.DataFrame({"lon": rng.uniform(-180, 180, 5600), "lat": rng.uniform(-60, 80, 5600)})
    src = EarthEngineSource("gsoilcpm", start="2010-01-01", end="2015-01-01", retry=FAST, progress=False)
    with pytest.raises(EarthEngineError, match="nbar_b1") as err:
        src.sample(pts)
    assert "\n" not in str(err.value)
    calls = fake_ee.calls_to("table:computeFeatures")
    assert len(calls) == 2  # one request per batch, fatal errors are not retried
    bodies = [json.dumps(c.body) for c in calls]
    assert sorted(b.count('"functionName": "Feature"') for b in bodies) == [600, 5000]
    assert all(len(b.encode()) < 10 * 2**20 for b in bodies)
    assert all('"2010-01-01"' in b and "MODIS/061/MCD43A4" in b for b in bodies)
