"""End-to-end maps on a synthetic pack with a tiny forest: COGs, masks, intervals, resume, overwrite, AOA."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rio_cogeo.cogeo import cog_validate
from shapely.geometry import Point, box
from test_mapping_data import FAR_BLOCK, HOLE, make_model, make_pack, make_training

from geesoil.mapping.run import TILES_DIR, MapRequest, plan_map, run_map

# The AOI: the pack's extent minus a margin, with a triangular bite out of the south-west corner.
AOI_POLY = box(149.52, -30.28, 149.98, -30.005).difference(
    box(149.52, -30.28, 149.60, -30.20).union(Point(149.52, -30.28).buffer(0.1))
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("map")
    pack = make_pack(root / "pack")
    training = make_training(pack)
    model = make_model(pack, root / "rf.geesoil", training)
    samples = root / "train.csv"
    training.to_csv(samples, index=False)
    aoi = root / "aoi.geojson"
    import geopandas as gpd

    gpd.GeoDataFrame({"name": ["test"]}, geometry=[AOI_POLY], crs="EPSG:4326").to_file(aoi)
    return {"root": root, "pack": pack, "model": model, "samples": samples, "aoi": aoi}


def _req(inputs: dict[str, Path], out: Path, **kw: object) -> MapRequest:
    base = dict(
        aoi=str(inputs["aoi"]),
        out=out,
        model=inputs["model"],
        covariates=(str(inputs["pack"]),),
        tile_size=16,
        progress=False,
    )
    base.update(kw)
    return MapRequest(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def mapped(inputs: dict[str, Path]) -> tuple[Path, dict]:
    out = inputs["root"] / "out"
    doc = run_map(_req(inputs, out, std=True, aoa=True, samples=inputs["samples"], strategy="rf"))
    return out, doc


def _read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        return src.read(1), {
            "nodata": src.nodata,
            "tags": src.tags(),
            "band_tags": src.tags(1),
            "desc": src.descriptions[0],
            "crs": src.crs,
            "transform": src.transform,
            "overviews": src.overviews(1),
            "block": src.block_shapes[0],
        }


def test_outputs_are_valid_cogs_with_nodata_and_tags(mapped: tuple[Path, dict]) -> None:
    out, doc = mapped
    names = ["soc_mean.tif", "soc_p05.tif", "soc_p95.tif", "soc_std.tif", "aoa.tif", "aoa_di.tif"]
    for name in names:
        valid, errors, _warnings = cog_validate(out / name, quiet=True)
        assert valid, (name, errors)
        _, info = _read(out / name)
        assert info["nodata"] is not None
        assert info["tags"]["model_kind"] == "rf"
        assert info["tags"]["covariate_source"].endswith("pack")
        assert info["desc"]
    _, info = _read(out / "soc_mean.tif")
    assert info["tags"]["units"] == "g/kg" and info["band_tags"]["units"] == "g/kg"
    assert info["crs"].to_epsg() == 32755  # the AOI's UTM zone (150°E, southern hemisphere)
    # native scale: the pack's 0.01° converted to metres
    assert info["transform"].a == pytest.approx(0.01 * 111_320)
    assert (out / "quicklook.png").stat().st_size > 5000
    run = json.loads((out / "run.json").read_text())
    assert run["model"]["id"] == doc["model"]["id"] and run["pixels"]["valid"] > 500
    assert run["summary"]["aoi_area_km2"] == pytest.approx(
        run["summary"]["mapped_area_km2"], rel=0.1
    )  # the hole in rain is small


def test_pixels_outside_aoi_or_without_covariates_are_nodata(mapped: tuple[Path, dict]) -> None:
    out, doc = mapped
    mean, info = _read(out / "soc_mean.tif")
    t = info["transform"]
    rows, cols = np.mgrid[0 : mean.shape[0], 0 : mean.shape[1]]
    x = t.c + t.a * (cols + 0.5)
    y = t.f + t.e * (rows + 0.5)
    lon, lat = Transformer.from_crs(info["crs"].to_wkt(), "EPSG:4326", always_xy=True).transform(x, y)
    from shapely import contains_xy

    inside = contains_xy(AOI_POLY, lon, lat)
    in_hole = (lon > HOLE[0]) & (lon < HOLE[2]) & (lat > HOLE[1]) & (lat < HOLE[3])
    nod = mean == info["nodata"]
    # away from the boundary (where centre-in-polygon tests may differ by round-off) the masks agree exactly
    assert nod[~inside].all()
    assert nod[in_hole].all() and in_hole.sum() >= 3
    assert not nod[inside & ~in_hole].any() or nod[inside & ~in_hole].mean() < 0.02
    assert doc["pixels"]["missing_covariates"] >= in_hole.sum()
    assert doc["pixels"]["valid"] == int((~nod).sum())


def test_interval_contains_mean_and_values_are_plausible(mapped: tuple[Path, dict]) -> None:
    out, _ = mapped
    mean, info = _read(out / "soc_mean.tif")
    lo, _ = _read(out / "soc_p05.tif")
    hi, _ = _read(out / "soc_p95.tif")
    std, _ = _read(out / "soc_std.tif")
    v = mean != info["nodata"]
    assert ((lo != info["nodata"]) == v).all() and ((hi != info["nodata"]) == v).all()
    assert (lo[v] <= mean[v] + 1e-4).all() and (mean[v] <= hi[v] + 1e-4).all()
    assert (hi[v] - lo[v]).mean() > 0
    assert (std[v] >= 0).all()
    # truth spans roughly 5 + 0.02*[430,620] - 0.01*[200,420] + {0,4}: 9.6–21.2 g/kg
    assert mean[v].min() > 8 and mean[v].max() < 23


def test_aoa_marks_far_out_covariates_as_outside(mapped: tuple[Path, dict]) -> None:
    out, doc = mapped
    aoa, info = _read(out / "aoa.tif")
    mean, minfo = _read(out / "soc_mean.tif")
    assert info["nodata"] == 255
    assert set(np.unique(aoa)) <= {0, 1, 255}
    assert ((aoa == 255) == (mean == minfo["nodata"])).all()
    t = info["transform"]
    rows, cols = np.mgrid[0 : aoa.shape[0], 0 : aoa.shape[1]]
    lon, lat = Transformer.from_crs(info["crs"].to_wkt(), "EPSG:4326", always_xy=True).transform(
        t.c + t.a * (cols + 0.5), t.f + t.e * (rows + 0.5)
    )
    far = (lon > FAR_BLOCK[0] + 0.01) & (lat > FAR_BLOCK[1] + 0.01) & (aoa != 255)
    assert far.sum() >= 2
    assert (aoa[far] == 0).all()
    rest = (aoa != 255) & ~((lon > FAR_BLOCK[0] - 0.01) & (lat > FAR_BLOCK[1] - 0.01))
    assert aoa[rest].mean() > 0.9
    assert doc["aoa"]["from"] == "samples"
    di, dinfo = _read(out / "aoa_di.tif")
    v = aoa != 255
    thr = float(dinfo["tags"]["aoa_threshold"])
    assert thr == pytest.approx(doc["aoa"]["threshold"], rel=1e-5)
    assert ((di[v] <= thr) == (aoa[v] == 1)).all()
    assert (di[~v] == dinfo["nodata"]).all()


def test_rerun_redoes_only_a_deleted_tile_and_gives_identical_cogs(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "resume"
    first = run_map(_req(inputs, out))
    before = (out / "soc_mean.tif").read_bytes()
    tiles = sorted((out / TILES_DIR).glob("*.npz"))
    assert len(tiles) == first["tiles"]["tiles"] > 4
    mtimes = {p.name: p.stat().st_mtime_ns for p in tiles}
    victim = tiles[len(tiles) // 2]
    victim.unlink()
    (out / "soc_mean.tif").unlink()
    second = run_map(_req(inputs, out))
    assert second["tiles"]["tiles_predicted"] == 1
    after = {p.name: p.stat().st_mtime_ns for p in sorted((out / TILES_DIR).glob("*.npz"))}
    changed = [k for k in after if after[k] != mtimes.get(k)]
    assert changed == [victim.name]
    assert (out / "soc_mean.tif").read_bytes() == before
    third = run_map(_req(inputs, out, overwrite=True))
    assert third["tiles"]["tiles_predicted"] == first["tiles"]["tiles"]
    final = {p.name: p.stat().st_mtime_ns for p in sorted((out / TILES_DIR).glob("*.npz"))}
    assert all(final[k] != after[k] for k in after)
    assert (out / "soc_mean.tif").read_bytes() == before


def test_tiles_of_a_different_map_are_not_mixed(inputs: dict[str, Path], tmp_path: Path) -> None:
    from geesoil.errors import GeesoilError

    out = tmp_path / "mix"
    run_map(_req(inputs, out))
    with pytest.raises(GeesoilError, match="different map.*alpha"):
        run_map(_req(inputs, out, alpha=0.2))
    doc = run_map(_req(inputs, out, alpha=0.2, overwrite=True))
    assert (out / "soc_p10.tif").is_file() and doc["inputs"]["alpha"] == 0.2


def test_plan_writes_nothing_and_aoa_without_training_data_is_explained(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    from geesoil.mapping.aoa import AOAError

    out = tmp_path / "nothing"
    with pytest.raises(AOAError, match="--samples"):
        plan_map(_req(inputs, out, aoa=True))
    plan = plan_map(_req(inputs, out, scale=2000.0, crs="EPSG:4326"))
    assert plan.grid.crs == "EPSG:4326"
    assert plan.grid.resolution[0] == pytest.approx(2000 / 111_320)
    assert not out.exists()


@pytest.mark.slow  # starting two worker processes takes ~30 s on a busy 2-core machine
def test_local_dask_cluster_gives_identical_cogs(inputs: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    serial = run_map(_req(inputs, tmp_path / "serial", std=True))
    dist = run_map(_req(inputs, tmp_path / "dask", std=True, dask_workers=2))
    assert dist["tiles"]["tiles_predicted"] == serial["tiles"]["tiles"]
    for name in ("soc_mean.tif", "soc_p05.tif", "soc_p95.tif", "soc_std.tif"):
        assert (tmp_path / "dask" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes()


def test_edgeroi_real_pack_and_profiles(edgeroi_pack: Path, soil_dir: Path, tmp_path: Path) -> None:
    """The shipped Edgeroi AOI mapped with the regional pack and a forest trained on the real 0–30 cm profiles."""
    import pandas as pd

    from geesoil.baselines import RandomForestSoil
    from geesoil.covariates.local import LocalPackSource
    from geesoil.model.io import save_model

    source = LocalPackSource(edgeroi_pack)
    soil = pd.read_parquet(soil_dir / "edgeroi.parquet")
    top = soil[(soil["top_cm"] >= 0) & (soil["top_cm"] < 30)]
    prof = top.groupby("profile_id").agg(lon=("lon", "first"), lat=("lat", "first"), oc=("oc_gkg", "mean"))
    prof = prof.reset_index(drop=True)
    X = pd.concat([prof[["lon", "lat"]], source.sample(prof[["lon", "lat"]])], axis=1)
    ok = X.notna().all(axis=1)
    model = RandomForestSoil(source.specs, n_estimators=30, random_state=0, n_jobs=1)
    model.fit(X[ok], prof["oc"].to_numpy()[ok])
    model_path = save_model(model, tmp_path / "edgeroi-rf.geesoil")
    aoi = Path(__file__).resolve().parents[1] / "assets" / "aois" / "edgeroi.geojson"
    out = tmp_path / "map"
    doc = run_map(
        MapRequest(
            aoi=str(aoi),
            out=out,
            model=model_path,
            covariates=(str(edgeroi_pack),),
            scale=500.0,
            progress=False,
        )
    )
    assert doc["grid"]["crs"] == "EPSG:32755"
    # the AOI (0.5° × 0.3° at 30°S, about 1600 km²) is mostly covered by the pack
    assert doc["summary"]["aoi_area_km2"] == pytest.approx(
        0.5 * 0.3 * 111.32**2 * np.cos(np.radians(30.15)), rel=0.02
    )
    assert doc["summary"]["mapped_area_km2"] > 0.8 * doc["summary"]["aoi_area_km2"]
    # the map's mean stays within the range of the profile means it was trained on, near their median
    assert prof["oc"].min() < doc["summary"]["mean_soc_gkg"] < prof["oc"].max()
    assert doc["summary"]["mean_soc_gkg"] == pytest.approx(prof["oc"].median(), rel=0.5)
    assert cog_validate(out / "soc_mean.tif", quiet=True)[0]


def test_interrupted_run_resumes_with_the_missing_tiles_only(
    inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geesoil.mapping.run as run_mod

    real = run_mod.predict_tile
    calls = {"n": 0}

    def dying(*args: object, **kw: object) -> object:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C during the fourth tile
        return real(*args, **kw)

    monkeypatch.setattr(run_mod, "predict_tile", dying)
    out = tmp_path / "killed"
    with pytest.raises(KeyboardInterrupt):
        run_map(_req(inputs, out))
    assert len(list((out / TILES_DIR).glob("*.npz"))) == 3
    assert not (out / "soc_mean.tif").exists()
    monkeypatch.setattr(run_mod, "predict_tile", real)
    doc = run_map(_req(inputs, out))
    assert doc["tiles"]["tiles_reused"] == 3
    assert doc["tiles"]["tiles_predicted"] == doc["tiles"]["tiles"] - 3


def test_aoa_samples_with_only_coordinates_get_their_covariates_sampled(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    import pandas as pd

    full = pd.read_csv(inputs["samples"])
    coords = tmp_path / "coords.csv"
    full[["lon", "lat", "oc_gkg"]].to_csv(coords, index=False)
    a = plan_map(_req(inputs, tmp_path / "a", aoa=True, samples=inputs["samples"], strategy="rf"))
    b = plan_map(_req(inputs, tmp_path / "b", aoa=True, samples=coords, strategy="rf"))
    assert a.aoa is not None and b.aoa is not None
    assert b.aoa.threshold == pytest.approx(a.aoa.threshold)
    assert b.aoa.train.shape == a.aoa.train.shape


def test_geographic_output_areas_follow_the_sphere(inputs: dict[str, Path], tmp_path: Path) -> None:
    bbox = "149.55,-30.25,149.95,-30.05"  # away from the far-out block; the rain hole is inside
    doc = run_map(_req(inputs, tmp_path / "geo", aoi=bbox, crs="EPSG:4326", scale=1113.2))
    assert doc["grid"]["crs"] == "EPSG:4326" and doc["grid"]["resolution"] == pytest.approx(0.01)
    # 0.4° × 0.2° at 30.15°S: 111.2² km² per square degree on the 6371 km sphere, times cos(lat)
    expected = 0.4 * 0.2 * (6371.0088 * np.pi / 180) ** 2 * np.cos(np.radians(30.15))
    assert doc["summary"]["aoi_area_km2"] == pytest.approx(expected, rel=0.01)
    hole_km2 = 9 * (6371.0088 * np.pi / 180 * 0.01) ** 2 * np.cos(np.radians(30.15))
    assert doc["summary"]["mapped_area_km2"] == pytest.approx(expected - hole_km2, rel=0.01)
    assert doc["pixels"]["missing_covariates"] == 9


def test_samples_fine_tune_before_mapping_and_reruns_reuse_the_model(
    inputs: dict[str, Path], tmp_path: Path
) -> None:
    import pandas as pd

    # regional samples whose SOC is the synthetic truth plus 5 g/kg: the fine-tuned map must follow them
    shifted = pd.read_csv(inputs["samples"])
    shifted["oc_gkg"] += 5.0
    region = tmp_path / "region.csv"
    shifted[["lon", "lat", "oc_gkg"]].to_csv(region, index=False)
    base = run_map(_req(inputs, tmp_path / "base", scale=2000.0))
    out = tmp_path / "tuned"
    doc = run_map(_req(inputs, out, scale=2000.0, samples=region, strategy="qrf"))
    models = list(out.glob("model-*.geesoil"))
    assert len(models) == 1 and doc["inputs"]["model"] == str(models[0])
    assert doc["model"]["kind"] == "qrf"
    gain = doc["summary"]["mean_soc_gkg"] - base["summary"]["mean_soc_gkg"]
    assert 3.5 < gain < 6.5
    stamp = models[0].stat().st_mtime_ns
    again = run_map(_req(inputs, out, scale=2000.0, samples=region, strategy="qrf"))
    assert models[0].stat().st_mtime_ns == stamp, "the rerun fitted the model again"
    assert again["summary"]["mean_soc_gkg"] == doc["summary"]["mean_soc_gkg"]
    from geesoil.errors import GeesoilError

    with pytest.raises(GeesoilError, match="--samples"):
        plan_map(_req(inputs, tmp_path / "x", strategy="qrf"))


@pytest.fixture(scope="module")
def qrf_mapped(inputs: dict[str, Path]) -> tuple[Path, dict, Path]:
    """A QRF (point prediction: the median) trained on right-skewed SOC, mapped at 2 km."""
    from test_mapping_data import SPECS, make_training

    from geesoil.baselines import QuantileForestSoil
    from geesoil.model.io import save_model

    frame = make_training(inputs["pack"], n=300, seed=1)
    y = frame["oc_gkg"].clip(lower=1.0) * np.exp(np.random.default_rng(2).normal(0, 0.7, len(frame)))
    model = QuantileForestSoil(SPECS, n_estimators=60, min_samples_leaf=5, random_state=0, n_jobs=1)
    model.fit(frame[[s.name for s in SPECS] + ["lon", "lat"]], y.to_numpy())
    path = save_model(model, inputs["root"] / "qrf.geesoil")
    out = inputs["root"] / "qrf_out"
    doc = run_map(_req(inputs, out, model=path, scale=2000.0))
    return out, doc, path


def _model_layers(plan: Any) -> dict[str, np.ndarray]:
    """The model's mean, median and point prediction over the grid, recomputed from the covariates (not via the
    tiler), and the ``valid`` mask."""
    from geesoil.mapping.tiler import aoi_mask, tile_table
    from geesoil.model.base import mean_prediction

    how = {
        "mean": mean_prediction,
        "median": type(plan.model).predict_median,
        "point": type(plan.model).predict,
    }
    layers = {k: np.full(plan.grid.shape, np.nan) for k in how}
    layers["valid"] = np.zeros(plan.grid.shape, bool)
    for t in plan.tiles():
        X, v = tile_table(plan.source, t.grid, aoi_mask(t.grid, plan.geom), plan.covariate_names)
        layers["valid"][t.slices] = v
        for k, f in how.items():
            arr = np.full(t.grid.shape, np.nan)
            if v.any():
                arr[v] = f(plan.model, X)
            layers[k][t.slices] = arr
    return layers


def test_qrf_map_writes_the_mean_to_soc_mean_and_the_median_to_soc_p50(
    inputs: dict[str, Path], qrf_mapped: tuple[Path, dict, Path]
) -> None:
    out, doc, path = qrf_mapped
    assert doc["model"]["kind"] == "qrf"
    assert {"soc_mean.tif", "soc_p50.tif", "soc_p05.tif", "soc_p95.tif"} <= set(doc["outputs"])
    want = _model_layers(plan_map(_req(inputs, out, model=path, scale=2000.0)))
    valid = want["valid"]
    mean, info = _read(out / "soc_mean.tif")
    median, minfo = _read(out / "soc_p50.tif")
    assert valid.sum() == doc["pixels"]["valid"] > 50
    assert (mean[~valid] == info["nodata"]).all() and (median[~valid] == minfo["nodata"]).all()
    np.testing.assert_allclose(mean[valid], want["mean"][valid], rtol=1e-6)
    np.testing.assert_allclose(median[valid], want["median"][valid], rtol=1e-6)
    # a QRF's point prediction is its median: what soc_mean.tif held before it held the mean
    np.testing.assert_allclose(median[valid], want["point"][valid], rtol=1e-6)
    assert (mean[valid] > median[valid]).mean() > 0.8  # right-skewed SOC: mean above median
    assert minfo["desc"] == "SOC median (g/kg)" and minfo["tags"]["quantity"] == "soc_median"
    assert cog_validate(out / "soc_p50.tif", quiet=True)[0]
    s = doc["summary"]
    assert s["mean_soc_gkg"] == pytest.approx(mean[valid].astype(float).mean(), rel=1e-5)
    assert s["mean_p50_gkg"] == pytest.approx(median[valid].astype(float).mean(), rel=1e-5)
    assert s["mean_lo_gkg"] < s["mean_p50_gkg"] < s["mean_soc_gkg"] < s["mean_hi_gkg"]


def test_rf_map_has_no_median_layer(mapped: tuple[Path, dict]) -> None:
    out, doc = mapped
    assert doc["model"]["kind"] == "rf"
    assert not (out / "soc_p50.tif").exists() and "soc_p50.tif" not in doc["outputs"]
    assert "mean_p50_gkg" not in doc["summary"]


def test_tiles_from_before_the_median_layer_are_predicted_again(
    inputs: dict[str, Path], qrf_mapped: tuple[Path, dict, Path], tmp_path: Path
) -> None:
    import shutil

    src, doc, path = qrf_mapped
    out = tmp_path / "old"
    shutil.copytree(src / TILES_DIR, out / TILES_DIR)
    tiles = sorted((out / TILES_DIR).glob("*.npz"))
    # an older geesoil wrote no median and put the point prediction (the QRF median) under "mean"
    old = tiles[len(tiles) // 2]
    with np.load(old) as z:
        arrays = {k: z[k] for k in z.files if k != "median"}
        arrays["mean"] = z["median"]
    np.savez_compressed(old, **arrays)
    again = run_map(_req(inputs, out, model=path, scale=2000.0))
    assert again["tiles"]["tiles_predicted"] == 1 and again["tiles"]["tiles_reused"] == len(tiles) - 1
    for name in ("soc_mean.tif", "soc_p50.tif"):
        np.testing.assert_array_equal(_read(out / name)[0], _read(src / name)[0])
    assert again["summary"] == doc["summary"]
