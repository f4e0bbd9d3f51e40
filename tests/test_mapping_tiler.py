"""One tile at a time: pixel-centre lon/lat, AOI masks, a 1-member SoilNet through the tiler, the tile store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from shapely.geometry import box
from test_mapping_data import SPECS, make_pack, make_training

from geesoil.covariates.local import LocalPackSource
from geesoil.grid import Grid
from geesoil.mapping.tiler import TileSettings, TileStore, aoi_mask, pixel_lonlat, predict_tile


def test_pixel_lonlat_on_the_utm_central_meridian() -> None:
    # UTM 55S: easting 500 000 is the central meridian 147°E; northing 10 000 000 is the equator
    grid = Grid("EPSG:32755", (100.0, 0.0, 499_950.0, 0.0, -100.0, 10_000_050.0), (3, 3))
    lon, lat = pixel_lonlat(grid, np.array([0, 2]), np.array([0, 0]))
    assert lon == pytest.approx([147.0, 147.0])
    assert lat[0] == pytest.approx(0.0, abs=1e-9)
    assert lat[1] == pytest.approx(
        -200 / 110_574.4, rel=1e-3
    )  # 200 m south: 1° of latitude is 110.574 km there


def test_aoi_mask_uses_pixel_centres() -> None:
    grid = Grid("EPSG:4326", (1.0, 0.0, 0.0, 0.0, -1.0, 4.0), (4, 4))
    # centres are at x = 0.5, 1.5, 2.5, 3.5 and y = 3.5, 2.5, 1.5, 0.5: the box holds (1.5, 2.5) and (1.5, 1.5)
    m = aoi_mask(grid, box(0.6, 1.4, 2.4, 3.4))
    assert m.astype(int).tolist() == [[0, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 0]]


def test_soilnet_tile_with_std(tmp_path: Path) -> None:
    from geesoil.model.network import SoilNet

    pack = make_pack(tmp_path / "pack")
    frame = make_training(pack, n=200)
    names = [s.name for s in SPECS]
    model = SoilNet(SPECS, n_members=1, max_epochs=5, hidden=(16,), progress=False, device="cpu")
    model.fit(frame[names + ["lon", "lat"]], frame["oc_gkg"].to_numpy())
    source = LocalPackSource(pack)
    grid = Grid.from_bounds((149.6, -30.25, 149.9, -30.05), "EPSG:4326", 0.02)
    geom = box(149.6, -30.25, 149.75, -30.05)  # the western half
    out = predict_tile(model, source, grid, geom, TileSettings(tuple(names), alpha=0.2, std=True))
    v = out["valid"]
    assert v.any() and not v[:, grid.width // 2 + 1 :].any()
    for k in ("mean", "median", "lo", "hi", "std"):
        assert np.isfinite(out[k][v]).all() and np.isnan(out[k][~v]).all()
    assert (out["std"][v] >= 0).all() and (out["hi"][v] >= out["lo"][v]).all()


def test_store_is_atomic_and_damaged_tiles_are_redone(tmp_path: Path) -> None:
    store = TileStore(tmp_path / "t")
    assert not store.readable("r0_c0")
    store.save("r0_c0", {"valid": np.ones((2, 2), bool), "mean": np.zeros((2, 2), np.float32)})
    assert store.readable("r0_c0") and store.keys() == ["r0_c0"]
    assert store.readable("r0_c0", ("valid", "mean")) and not store.readable("r0_c0", ("valid", "median"))
    assert not list(store.root.glob(".*"))  # no temp files left behind
    store.path("r0_c1").write_bytes(b"PK\x03\x04 truncated")
    assert not store.readable("r0_c1")
    store.clear()
    assert store.keys() == []
