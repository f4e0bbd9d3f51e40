"""Tests for geesoil.viz: overlays land on the right bounds with legends; matplotlib figures show the data."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import rasterio
from PIL import Image
from rasterio.warp import transform_bounds
from test_mapping_data import FAR_BLOCK, RES, WEST, make_model, make_pack, make_training

from geesoil import viz
from geesoil.mapping.run import MapRequest, run_map

matplotlib.use("Agg")
SCALE_M = RES * 111_319.49079327357
BBOX = (149.5, -30.3, 150.0, -30.0)


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two map runs of the synthetic pack: EPSG:4326 at the pack's 0.01° grid (with AOA) and UTM 55S at 2 km."""
    root = tmp_path_factory.mktemp("viz")
    pack = make_pack(root / "pack")
    training = make_training(pack, n=150)
    model = make_model(pack, root / "m.geesoil", training)
    train = root / "train.parquet"
    training.to_parquet(train)
    geo = root / "geo"
    run_map(
        MapRequest(
            aoi=",".join(map(str, BBOX)),
            out=geo,
            model=model,
            covariates=(str(pack),),
            scale=SCALE_M,
            crs="EPSG:4326",
            aoa=True,
            samples=train,
            progress=False,
        )
    )
    utm = root / "utm"
    run_map(
        MapRequest(
            aoi=",".join(map(str, BBOX)),
            out=utm,
            model=model,
            covariates=(str(pack),),
            scale=2000,
            progress=False,
        )
    )
    return {"geo": geo, "utm": utm, "train": train}


def _decode(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGBA"))


def _wgs_bounds(path: Path) -> tuple[float, float, float, float]:
    with rasterio.open(path) as src:
        return transform_bounds(src.crs, "EPSG:4326", *src.bounds)


def test_overlay_bounds_match_the_raster(run_dirs: dict[str, Path]) -> None:
    for key in ("geo", "utm"):
        path = run_dirs[key] / "soc_mean.tif"
        west, south, east, north = _wgs_bounds(path)
        (s, w), (n, e) = viz.render(path).bounds
        assert np.allclose([s, w, n, e], [south, west, north, east], atol=1e-4), key
        assert np.allclose([w, s, e, n], BBOX, atol=0.03)  # the AOI, snapped out to whole (up to 2 km) pixels


def test_render_caps_size_and_keeps_footprint(run_dirs: dict[str, Path]) -> None:
    path = run_dirs["geo"] / "soc_mean.tif"
    full = viz.render(path)
    small = viz.render(path, max_size=10)
    assert max(small.rgba.shape[:2]) == 10 and max(full.rgba.shape[:2]) > 10
    assert np.allclose(np.ravel(small.bounds), np.ravel(full.bounds), atol=1e-6)


def test_colorize_limits_and_nodata() -> None:
    arr = np.array([[0.0, 10.0], [np.nan, 20.0]])
    rgba = viz.colorize(arr, "YlOrBr", 0.0, 10.0)
    assert tuple(rgba[0, 0]) == (255, 255, 229, 255)  # YlOrBr's lightest colour, #ffffe5
    assert tuple(rgba[0, 1]) == tuple(rgba[1, 1]) == (102, 37, 6, 255)  # its darkest, #662506 (20 clipped)
    assert rgba[1, 0, 3] == 0  # nodata is transparent


def test_run_layers_on_a_geemap_map(run_dirs: dict[str, Path]) -> None:
    m = viz.make_map()
    n_controls = len(m.controls)
    layers = viz.add_run_layers(m, run_dirs["geo"])
    assert set(layers) == {"mean", "width", "aoa"}
    names = [layer.name for layer in m.layers]
    assert {"SOC mean", "SOC interval width", "outside AOA"} <= set(names)
    assert len(m.controls) == n_controls + 3  # two colour bars and the AOA legend
    for layer in layers.values():
        (s, w), (n, e) = layer.bounds
        assert np.allclose([w, s, e, n], _wgs_bounds(run_dirs["geo"] / "soc_mean.tif"), atol=1e-6)
    # the far-out elevation block (north-east corner) is outside the AOA: shaded there, clear in the south-west
    aoa = _decode(layers["aoa"].url)
    h, w = aoa.shape[:2]
    fx = (FAR_BLOCK[0] + RES / 2 - WEST) / (BBOX[2] - BBOX[0])
    assert aoa[1, int(fx * w) + 1, 3] > 0 and aoa[h - 2, 1, 3] == 0
    mean = _decode(layers["mean"].url)
    with rasterio.open(run_dirs["geo"] / "soc_mean.tif") as src:
        valid = src.read(1) != src.nodata
    assert abs((mean[..., 3] > 0).mean() - valid.mean()) < 0.05  # the same share of pixels is drawn


def test_samples_layer(run_dirs: dict[str, Path]) -> None:
    import pandas as pd

    frame = pd.read_parquet(run_dirs["train"])
    frame.loc[0, "lon"] = np.nan  # a row without coordinates is skipped
    m = viz.make_map()
    layer = viz.add_samples(m, frame, vmin=frame["oc_gkg"].min(), vmax=frame["oc_gkg"].max())
    feats = layer.data["features"]
    assert len(feats) == len(frame) - 1
    lowest = min(feats, key=lambda f: f["properties"]["oc_gkg"])
    assert lowest["properties"]["style"]["fillColor"] == "#ffffe5"
    assert feats[0]["geometry"]["coordinates"] == [frame.loc[1, "lon"], frame.loc[1, "lat"]]
    with pytest.raises(viz.VizError, match="lon and lat"):
        viz.add_samples(m, frame.drop(columns=["lat"]))


def test_static_figures(run_dirs: dict[str, Path]) -> None:
    folder = run_dirs["utm"]
    fig = viz.plot_raster(folder / "soc_mean.tif", title="SOC mean")
    ax = fig.axes[0]
    with rasterio.open(folder / "soc_mean.tif") as src:
        b = src.bounds
        data = src.read(1, masked=True)
    assert np.allclose(ax.images[0].get_extent(), [b.left, b.right, b.bottom, b.top])
    assert fig.axes[1].get_ylabel() == "SOC (g/kg)"  # the colour bar
    lo, hi = np.percentile(data.compressed(), [2, 98])
    assert np.allclose(ax.images[0].get_clim(), (lo, hi))

    fig = viz.plot_interval_width(folder / "soc_p05.tif", folder / "soc_p95.tif")
    width = np.ma.masked_invalid(fig.axes[0].images[0].get_array())
    with rasterio.open(folder / "soc_p05.tif") as a, rasterio.open(folder / "soc_p95.tif") as c:
        expect = c.read(1, masked=True) - a.read(1, masked=True)
    assert np.allclose(width.compressed(), expect.compressed())
    assert width.min() > 0

    fig = viz.plot_histogram([folder / "soc_mean.tif", folder / "soc_p95.tif"], bins=20)
    assert len(fig.axes[0].patches) == 40 and fig.axes[0].get_xlabel() == "SOC (g/kg)"

    fig = viz.plot_run(run_dirs["geo"])
    assert [a.get_title() for a in fig.axes if a.get_title()] == [
        "SOC mean",
        "interval width (p95 − p05)",
        "area of applicability",
    ]


def test_run_files_tell_the_median_from_the_interval_bounds(tmp_path: Path) -> None:
    names = ["soc_mean.tif", "soc_p02_5.tif", "soc_p50.tif", "soc_p97_5.tif", "quicklook.png"]
    (tmp_path / "run.json").write_text(json.dumps({"outputs": names}))
    for name in names:
        (tmp_path / name).write_bytes(b"")
    files = viz.run_files(tmp_path)
    assert {k: p.name for k, p in files.items()} == {
        "mean": "soc_mean.tif",
        "median": "soc_p50.tif",
        "lo": "soc_p02_5.tif",
        "hi": "soc_p97_5.tif",
    }


def test_not_a_run_folder(tmp_path: Path) -> None:
    with pytest.raises(viz.VizError, match="run.json"):
        viz.run_files(tmp_path)
    with pytest.raises(viz.VizError, match="no such raster"):
        viz.read_band(tmp_path / "none.tif")
