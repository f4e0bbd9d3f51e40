"""Parity: covariates extracted through ``EarthEngineSource`` (fake Earth Engine server) equal the local pack's.

The fake server answers ``reduceRegions``/``computePixels`` from the same shared coarse-pack rasters, sampling the
pixel that contains each point and warping grids with nearest neighbour, which is what Earth Engine does by default
(an image with no ``resample()`` call is read nearest-neighbour in its native projection). ``LocalPackSource``
samples continuous covariates bilinearly, so the comparison uses the same pack with every covariate's resampling set
to ``nearest``: with identical resampling the two paths must agree exactly (no tolerance). The categorical
``landcover_igbp`` is nearest in the shipped pack already, so it is also compared against the pack unchanged.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import ee_fake_server
import numpy as np
import pandas as pd
import pytest

from geesoil.covariates.local import LocalPackSource
from geesoil.covariates.pack import read_pack
from geesoil.ee.limits import RetryPolicy
from geesoil.ee.source import EarthEngineSource
from geesoil.grid import Grid

fake_ee = ee_fake_server.fake_ee  # the fixture
pytestmark = pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")
FAST = RetryPolicy(retries=3, base_s=0.01, max_s=0.05)
#: The coarse catalog's covariates that the Earth Engine source serves (those with a buildable recipe).
EE_NAMES = ["elevation", "bio01", "ndvi", "treecover", "landcover_igbp"]


@pytest.fixture(scope="module")
def wise_sites(soil_dir: Path) -> pd.DataFrame:
    """2,000 unique real WISE site locations."""
    df = pd.read_parquet(soil_dir / "wise.parquet", columns=["lon", "lat"]).dropna()
    df = df.drop_duplicates().sample(2000, random_state=11).reset_index(drop=True)
    assert len(df) == 2000
    return df


def nearest_pack(coarse_pack: Path) -> LocalPackSource:
    """The shared coarse pack, read as-is, with every covariate sampled and warped nearest-neighbour."""
    pack = read_pack(coarse_pack)
    specs = tuple(dataclasses.replace(s, resampling="nearest") for s in pack.covariates)
    return LocalPackSource(dataclasses.replace(pack, covariates=specs))


def ee_source() -> EarthEngineSource:
    return EarthEngineSource("coarse-global-v1", retry=FAST, progress=False, max_workers=4)


def test_point_extraction_equals_the_local_pack(fake_ee, wise_sites, coarse_pack):
    got = ee_source().sample(wise_sites, EE_NAMES)
    want = nearest_pack(coarse_pack).sample(wise_sites, EE_NAMES)
    assert list(got.columns) == EE_NAMES and got.index.equals(wise_sites.index)
    pd.testing.assert_frame_equal(got, want, check_dtype=False, check_exact=True)
    # real sites, mostly on land: the comparison is over values, not over NaNs
    assert (got.notna().sum() > 1500).all()
    # the shipped pack's own (nearest) categorical covariate agrees without any override
    shipped = LocalPackSource(coarse_pack).sample(wise_sites, ["landcover_igbp"])
    pd.testing.assert_series_equal(got["landcover_igbp"], shipped["landcover_igbp"], check_dtype=False)
    # ...while bilinear sampling of a continuous one does differ somewhere: the override above is what aligns them
    bilinear = LocalPackSource(coarse_pack).sample(wise_sites, ["bio01"])["bio01"]
    assert not np.allclose(got["bio01"], bilinear, equal_nan=True)


def test_aoi_read_through_xee_equals_the_local_read(fake_ee, coarse_pack):
    # 0.1° over the Murray-Darling basin: not aligned with any of the rasters' grids (1/3°, 1/6°, 1/7°, 0.05°)
    grid = Grid.from_bounds((143.03, -36.07, 148.53, -31.07), "EPSG:4326", 0.1)
    got = ee_source().read(grid, EE_NAMES)
    want = nearest_pack(coarse_pack).read(grid, EE_NAMES)
    np.testing.assert_allclose(got["x"], want["x"])
    np.testing.assert_allclose(got["y"], want["y"])
    for name in EE_NAMES:
        g, w = got[name].values, want[name].values
        assert g.shape == grid.shape == w.shape
        assert np.isfinite(w).mean() > 0.9, name  # inland Australia: real values to compare
        np.testing.assert_array_equal(g, w, err_msg=name)
