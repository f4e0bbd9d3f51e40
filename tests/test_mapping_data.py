"""Synthetic inputs shared by the mapping tests (a small pack, training samples, a tiny model), and their checks.

The pack covers lon 149.5–150.0, lat −30.3 to −30.0 at 0.01° (50 × 30 pixels, EPSG:4326): ``elev`` (smooth, m),
``rain`` (smooth, mm, with a nodata hole) and ``lc`` (3 land-cover classes). A 5 × 5 block in the north-east corner
has ``elev`` = 5000 m, far outside anything the model was trained on (training points avoid it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.transform import Affine

from geesoil.baselines import RandomForestSoil
from geesoil.covariates.local import LocalPackSource
from geesoil.covariates.pack import write_pack_manifest
from geesoil.covariates.spec import CovariateSpec
from geesoil.model.io import save_model

WEST, NORTH, RES = 149.5, -30.0, 0.01
WIDTH, HEIGHT = 50, 30
#: lon/lat of the block with far-out elevation (pixel rows 0–4, cols 45–49)
FAR_BLOCK = (WEST + 45 * RES, NORTH - 5 * RES, WEST + 50 * RES, NORTH)
#: lon/lat box of the nodata hole in ``rain`` (rows 14–16, cols 20–22)
HOLE = (WEST + 20 * RES, NORTH - 17 * RES, WEST + 23 * RES, NORTH - 14 * RES)
SPECS = (
    CovariateSpec("elev", "topo", units="m", file="elev.tif"),
    CovariateSpec("rain", "climate", units="mm", file="rain.tif"),
    CovariateSpec(
        "lc",
        "landcover",
        kind="categorical",
        units="class",
        resampling="nearest",
        classes={1: "crop", 2: "grass", 3: "forest"},
        file="lc.tif",
    ),
)


def _tif(path: Path, arr: np.ndarray, nodata: float | None) -> None:
    t = Affine(RES, 0.0, WEST, 0.0, -RES, NORTH)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=arr.shape[0],
        width=arr.shape[1],
        count=1,
        dtype=arr.dtype,
        crs="EPSG:4326",
        transform=t,
        nodata=nodata,
    ) as dst:
        dst.write(arr, 1)


def make_pack(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    r, c = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    elev = 200 + 4 * c + 3 * r + 20 * np.sin(c / 5)
    elev[0:5, 45:50] = 5000.0
    rain = 500 + 6 * r - 2 * c
    rain[14:17, 20:23] = -9999.0
    lc = (1 + ((c // 17) + (r // 15)) % 3).astype(np.uint8)
    _tif(folder / "elev.tif", elev.astype(np.float32), -9999.0)
    _tif(folder / "rain.tif", rain.astype(np.float32), -9999.0)
    _tif(folder / "lc.tif", lc, 0)
    write_pack_manifest(folder, SPECS, name="synthetic", crs="EPSG:4326")
    return folder


def soc_truth(frame: pd.DataFrame) -> np.ndarray:
    """A smooth SOC (g/kg) the model can learn: more with rain, less with elevation, more under forest."""
    return (
        5 + 0.02 * frame["rain"] - 0.01 * frame["elev"] + 4.0 * (frame["lc"] == 3) + 0 * frame["lon"]
    ).to_numpy(float)


def make_training(pack: Path, n: int = 300, seed: int = 0) -> pd.DataFrame:
    """Training points across the pack, avoiding the far-out block and the nodata hole."""
    rng = np.random.default_rng(seed)
    lon = rng.uniform(WEST + 0.005, WEST + WIDTH * RES - 0.005, 3 * n)
    lat = rng.uniform(NORTH - HEIGHT * RES + 0.005, NORTH - 0.005, 3 * n)
    far = (lon >= FAR_BLOCK[0] - RES) & (lat >= FAR_BLOCK[1] - RES)
    hole = (lon >= HOLE[0] - RES) & (lon <= HOLE[2] + RES) & (lat >= HOLE[1] - RES) & (lat <= HOLE[3] + RES)
    keep = ~(far | hole)
    pts = pd.DataFrame({"lon": lon[keep][:n], "lat": lat[keep][:n]})
    cov = LocalPackSource(pack).sample(pts)
    frame = pd.concat([pts, cov], axis=1)
    frame["lc"] = frame["lc"].round()
    frame["oc_gkg"] = soc_truth(frame) + rng.normal(0, 0.5, len(frame))
    return frame


def make_model(pack: Path, path: Path, training: pd.DataFrame | None = None) -> Path:
    frame = make_training(pack) if training is None else training
    model = RandomForestSoil(SPECS, n_estimators=25, min_samples_leaf=2, random_state=0, n_jobs=1)
    model.fit(frame[[s.name for s in SPECS] + ["lon", "lat"]], frame["oc_gkg"].to_numpy())
    return save_model(model, path)


def test_synthetic_pack_and_model_are_sane(tmp_path: Path) -> None:
    pack = make_pack(tmp_path / "pack")
    frame = make_training(pack)
    assert len(frame) == 300
    assert frame[["elev", "rain", "lc"]].notna().all().all()
    assert frame["elev"].max() < 1000  # the far-out block is not in the training data
    from geesoil.model.io import load_model

    model = load_model(make_model(pack, tmp_path / "m.geesoil", frame))
    err = np.abs(model.predict(frame) - frame["oc_gkg"].to_numpy())
    assert np.median(err) < 2.0
