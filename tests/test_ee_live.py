"""Real Earth Engine account tests: skipped unless ``GEESOIL_EE_LIVE=1`` and credentials are found.

Run with ``GEESOIL_EE_LIVE=1 GEESOIL_EE_PROJECT=my-project pytest -m ee_live`` (see docs/earth-engine.md). They
cost a few seconds of EECU time; the network guard in conftest.py lets ``ee_live`` tests through.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from geesoil.ee import auth
from geesoil.ee.source import EarthEngineSource
from geesoil.errors import EarthEngineError

pytestmark = [
    pytest.mark.ee_live,
    pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning"),
]

#: Five land sites on different continents (lon, lat; hand-picked, well inside land pixels at 1 km).
SITES = pd.DataFrame(
    {
        "lon": [149.78, -93.65, 10.45, 36.82, -60.02],
        "lat": [-30.26, 42.03, 51.17, -1.29, -3.10],
    },
    index=["narrabri_au", "ames_us", "germany", "nairobi_ke", "manaus_br"],
)


@pytest.fixture(scope="module")
def live_ee():
    if os.environ.get("GEESOIL_EE_LIVE") != "1":
        pytest.skip("real Earth Engine tests: set GEESOIL_EE_LIVE=1 (and credentials, a project) to run")
    try:
        auth.find_login()
    except EarthEngineError as exc:
        pytest.skip(f"GEESOIL_EE_LIVE=1 but no Earth Engine credentials: {exc}")
    import ee

    login = (
        auth.initialize()
    )  # project from $GEESOIL_EE_PROJECT or the saved login; endpoint from $GEESOIL_EE_URL
    yield login
    ee.Reset()


def test_gsoilcpm_image_has_the_catalog_band_names(live_ee):
    src = EarthEngineSource("gsoilcpm", progress=False)
    names = [s.name for s in src.specs]
    assert src.image().bandNames().getInfo() == names
    assert len(names) == 32


def test_sampling_five_sites(live_ee, tmp_path):
    src = EarthEngineSource("gsoilcpm", progress=False, max_workers=2, cache_dir=tmp_path)
    got = src.sample(SITES)
    assert list(got.index) == list(SITES.index) and list(got.columns) == [s.name for s in src.specs]
    # every land site has terrain and climate values; elevations are plausible (m) and Ames is higher than Manaus
    assert got[["elevation", "bio01", "bio12"]].notna().all().all()
    assert ((got["elevation"] > -100) & (got["elevation"] < 3000)).all()
    assert got.loc["ames_us", "elevation"] > got.loc["manaus_br", "elevation"]
    assert np.isfinite(got.to_numpy()).mean() > 0.9
    # the second call is served from the cache (same values, no new requests needed)
    pd.testing.assert_frame_equal(src.sample(SITES), got)
