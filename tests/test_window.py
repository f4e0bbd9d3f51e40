"""The k×k pixel window: neighbour columns at points and on map tiles, the windowed network, its round trip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from shapely.geometry import box
from test_mapping_data import HEIGHT, HOLE, NORTH, RES, SPECS, WEST, WIDTH, make_pack

from geesoil.covariates.local import LocalPackSource
from geesoil.covariates.window import (
    Context,
    column,
    read_context,
    sample_context,
    shift_lonlat,
    shifted_grid,
)
from geesoil.errors import GeesoilError, ModelError
from geesoil.evaluate import covariate_table
from geesoil.grid import M_PER_DEG, Grid
from geesoil.mapping.tiler import TileSettings, aoi_mask, pixel_lonlat, predict_tile, tile_table
from geesoil.model.adapt import fit_regional
from geesoil.model.io import load_model, save_model
from geesoil.model.network import SoilNet

STEP = RES * M_PER_DEG  # one pack pixel (0.01°) in metres, north-south


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> LocalPackSource:
    return LocalPackSource(make_pack(tmp_path_factory.mktemp("winpack")))


def _points(n: int, seed: int = 0) -> pd.DataFrame:
    """Points whose 3×3 windows lie on the rasters, off the far-elevation block and the nodata hole in rain."""
    rng = np.random.default_rng(seed)
    lon = WEST + RES * rng.uniform(3, WIDTH - 8, 3 * n)
    lat = NORTH - RES * rng.uniform(8, HEIGHT - 3, 3 * n)
    x0, y0, x1, y1 = HOLE
    near_hole = (lon > x0 - 3 * RES) & (lon < x1 + 3 * RES) & (lat > y0 - 3 * RES) & (lat < y1 + 3 * RES)
    return pd.DataFrame({"lon": lon[~near_hole][:n], "lat": lat[~near_hole][:n]})


def test_context_offsets_columns_and_bad_windows() -> None:
    ctx = Context(1, 250.0, ("elev", "rain"))
    assert ctx.size == 3
    assert len(ctx.offsets) == 8 and (0, 0) not in ctx.offsets
    assert ctx.offsets[0] == (1, -1) and ctx.offsets[-1] == (-1, 1)  # north-west first, south-east last
    assert ctx.columns[:2] == ["elev@1,-1", "elev@1,0"] and len(ctx.columns) == 16
    assert len(Context(2, 250.0, ("a",)).offsets) == 24
    with pytest.raises(GeesoilError, match="window must be one of"):
        Context(3, 250.0)
    with pytest.raises(GeesoilError, match="pixel size"):
        Context(1, 0.0)


def test_shifts_move_points_and_grids_by_metres() -> None:
    lon, lat = shift_lonlat(np.array([150.0]), np.array([-30.0]), 1000.0, 1000.0)
    assert lat[0] == pytest.approx(-30.0 + 1000 / M_PER_DEG)
    assert (lon[0] - 150.0) * M_PER_DEG * np.cos(np.radians(-30.0)) == pytest.approx(1000.0)
    utm = Grid("EPSG:32755", (100.0, 0.0, 500_000.0, 0.0, -100.0, 7_000_000.0), (4, 5))
    moved = shifted_grid(utm, -200.0, 300.0)
    assert moved.transform[2] == 500_300.0 and moved.transform[5] == 6_999_800.0 and moved.shape == utm.shape


def test_sampled_neighbours_are_the_values_one_step_away(pack: LocalPackSource) -> None:
    pts = _points(40)
    ctx = Context(1, STEP, ("elev", "rain"))
    nb = sample_context(pack, pts, ctx)
    assert list(nb.columns) == ctx.columns
    north = pack.sample(pd.DataFrame({"lon": pts["lon"], "lat": pts["lat"] + RES}), ["rain"])["rain"]
    np.testing.assert_allclose(nb[column("rain", 1, 0)], north, rtol=1e-6)
    # rain = 500 + 6·row − 2·col: one pixel north is 6 mm less, one pixel east (in metres at this latitude) ~2 mm less
    centre = pack.sample(pts, ["rain"])["rain"]
    np.testing.assert_allclose(nb[column("rain", 1, 0)] - centre, -6.0, atol=1e-3)
    east_px = STEP / (M_PER_DEG * np.cos(np.radians(pts["lat"])) * RES)
    np.testing.assert_allclose(nb[column("rain", 0, 1)] - centre, -2.0 * east_px, atol=1e-3)


def test_covariate_table_adds_neighbours_only_with_a_context(pack: LocalPackSource) -> None:
    samples = _points(30).assign(oc_gkg=10.0)
    _, plain, _ = covariate_table(samples, pack, ["elev", "rain", "lc"])
    assert list(plain.columns) == ["elev", "rain", "lc", "lon", "lat"]
    ctx = Context(1, STEP, ("elev", "rain"))
    _, X, y = covariate_table(samples, pack, ["elev", "rain", "lc"], context=ctx)
    assert set(ctx.columns) <= set(X.columns) and len(X) == len(y) == 30
    pd.testing.assert_frame_equal(X[plain.columns], plain)


def test_tile_neighbours_match_point_neighbours(pack: LocalPackSource) -> None:
    """Training (points) and mapping (shifted grid reads) see the same window."""
    grid = Grid.from_bounds((149.6, -30.25, 149.9, -30.1), "EPSG:4326", 0.01)
    ctx = Context(1, STEP, ("elev", "rain"))
    arrays = read_context(pack, grid, ctx)
    rows, cols = np.nonzero(np.ones(grid.shape, bool))
    lon, lat = pixel_lonlat(grid, rows, cols)
    nb = sample_context(pack, pd.DataFrame({"lon": lon, "lat": lat}), ctx)
    x0, y0, x1, y1 = HOLE  # next to nodata, GDAL's warp and point sampling weigh the gap differently
    far = ~((lon > x0 - 3 * RES) & (lon < x1 + 3 * RES) & (lat > y0 - 3 * RES) & (lat < y1 + 3 * RES))
    for name in (column("rain", 1, 0), column("elev", -1, 1), column("rain", 0, -1)):
        a, b = arrays[name][rows, cols], nb[name].to_numpy()
        ok = np.isfinite(a) & np.isfinite(b) & far
        assert ok.mean() > 0.8
        np.testing.assert_allclose(a[ok], b[ok], rtol=1e-4, atol=0.02)
    inside = aoi_mask(grid, box(149.6, -30.25, 149.9, -30.1))
    X, valid = tile_table(pack, grid, inside, ["elev", "rain", "lc"], ctx)
    assert len(X) == int(valid.sum()) and set(ctx.columns) <= set(X.columns)


def _window_world(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """SOC driven by the 3×3 mean of a rough field, of which the centre pixel alone is a poor proxy."""
    rng = np.random.default_rng(seed)
    ctx = Context(1, 100.0, ("a",))
    cols = {c: rng.normal(size=n) for c in ctx.columns}
    centre = rng.normal(size=n)
    window_mean = (centre + sum(cols.values())) / 9
    X = pd.DataFrame({"a": centre, **cols, "lon": rng.uniform(0, 1, n), "lat": rng.uniform(0, 1, n)})
    y = np.exp(2.0 + 1.5 * window_mean + rng.normal(0, 0.05, n))
    return X, y


def _net(window: int) -> SoilNet:
    from geesoil.covariates.spec import CovariateSpec

    return SoilNet(
        [CovariateSpec("a", "topo")],
        location=None,
        window=window,
        window_step_m=100.0 if window else None,
        n_members=1,
        max_epochs=60,
        patience=15,
        batch_size=128,
        progress=False,
        random_state=1,
    )


def test_a_window_model_learns_what_a_single_pixel_model_cannot(tmp_path: Path) -> None:
    X, y = _window_world(1500, 0)
    Xt, yt = _window_world(500, 1)
    w1 = _net(1).fit(X, y)
    w0 = _net(0).fit(X, y)
    mae1 = np.mean(np.abs(w1.predict(Xt) - yt))
    mae0 = np.mean(np.abs(w0.predict(Xt) - yt))
    assert mae1 < 0.6 * mae0
    assert w1.context == Context(1, 100.0, ("a",)) and w0.context is None
    # the first branch sees the centre z, its missing flag and 8 neighbours
    assert w1.arch_["layout"][0].n_cont == 10
    path = save_model(w1, tmp_path / "w1.geesoil")
    back = load_model(path)
    assert back.context == w1.context
    np.testing.assert_allclose(back.predict(Xt), w1.predict(Xt), rtol=1e-5)
    # a missing neighbour falls back to the centre value instead of failing
    holes = Xt.copy()
    holes.loc[:10, column("a", 1, 1)] = np.nan
    assert np.isfinite(back.predict(holes)).all()
    with pytest.raises(ModelError, match="neighbour columns"):
        back.predict(Xt.drop(columns=[column("a", -1, 0)]))


def test_window_parameters_are_checked() -> None:
    from geesoil.covariates.spec import CovariateSpec

    X, y = _window_world(60, 0)
    with pytest.raises(ModelError, match="window_step_m"):
        SoilNet([CovariateSpec("a", "topo")], window=1, progress=False).fit(X, y)
    with pytest.raises(ModelError, match="window must be one of"):
        SoilNet([CovariateSpec("a", "topo")], window=3, window_step_m=100.0, progress=False).fit(X, y)


def test_windowed_pretrained_model_fine_tunes_and_maps(pack: LocalPackSource, tmp_path: Path) -> None:
    """pretrain (window 1) → fit_regional (auto picks any candidate) → predict a map tile, windows all the way."""
    from test_mapping_data import soc_truth

    ctx = Context(1, STEP, ("elev", "rain"))
    samples = _points(300, seed=3)
    _, X, _ = covariate_table(samples.assign(oc_gkg=1.0), pack, ["elev", "rain", "lc"], context=ctx)
    y = soc_truth(X) + 0.5 * (X[column("rain", 1, 0)] - X["rain"]).to_numpy()
    pre = SoilNet(
        list(SPECS),
        window=1,
        window_step_m=STEP,
        n_members=2,
        max_epochs=30,
        progress=False,
        random_state=0,
    ).fit(X, y)
    regional = _points(60, seed=4)
    _, Xr, _ = covariate_table(regional.assign(oc_gkg=1.0), pack, ["elev", "rain", "lc"], context=ctx)
    regional["oc_gkg"] = soc_truth(Xr) + 1.0
    fit = fit_regional(pre, regional, pack, strategy="finetuned", seed=0)
    assert fit.model.context == pre.context
    assert set(ctx.columns) <= set(fit.table.X.columns)
    grid = Grid.from_bounds((149.6, -30.25, 149.9, -30.1), "EPSG:4326", 0.01)
    out = predict_tile(
        fit.model, pack, grid, box(149.6, -30.25, 149.9, -30.1), TileSettings(("elev", "rain", "lc"))
    )
    ok = out["valid"]
    assert ok.mean() > 0.8 and np.isfinite(out["mean"][ok]).all()
    # a tile prediction equals predicting the point table built at the pixel centres
    rows, cols = np.nonzero(ok)
    lon, lat = pixel_lonlat(grid, rows, cols)
    pts = pd.DataFrame({"lon": lon, "lat": lat, "oc_gkg": 1.0})
    _, Xp, _ = covariate_table(pts, pack, ["elev", "rain", "lc"], context=fit.model.context)
    np.testing.assert_allclose(out["mean"][rows, cols], fit.model.predict(Xp), rtol=2e-3, atol=0.02)
