"""Grid arithmetic: snapping, pixel centres, windows, tiling and the xee keyword arguments."""

from __future__ import annotations

import numpy as np
import pytest

from geesoil.grid import Grid


def test_from_bounds_snaps_outwards_and_covers_bounds():
    g = Grid.from_bounds((149.51, -30.29, 149.99, -30.01), "EPSG:4326", 0.05)
    minx, miny, maxx, maxy = g.bounds
    assert minx <= 149.51 and miny <= -30.29 and maxx >= 149.99 and maxy >= -30.01
    assert g.shape == (6, 10)
    assert g.resolution == (0.05, 0.05)
    # pixel centres sit half a pixel inside the edges
    assert g.x[0] == pytest.approx(minx + 0.025)
    assert g.y[0] == pytest.approx(maxy - 0.025)
    assert np.all(np.diff(g.y) < 0)


def test_from_bounds_rejects_empty_and_bad_resolution():
    with pytest.raises(ValueError):
        Grid.from_bounds((1, 1, 1, 2), "EPSG:4326", 0.1)
    with pytest.raises(ValueError):
        Grid.from_bounds((0, 0, 1, 1), "EPSG:4326", 0)


def test_tiles_partition_the_grid_exactly():
    g = Grid.from_bounds((500000, 6600000, 523700, 6612345), "EPSG:32755", 100)
    cover = np.zeros(g.shape, dtype=int)
    for t in g.tiles(64):
        cover[t.slices] += 1
        # a tile's own grid lines up with the parent's pixel centres
        assert t.grid.x[0] == pytest.approx(g.x[t.col])
        assert t.grid.y[-1] == pytest.approx(g.y[t.row + t.height - 1])
    assert np.all(cover == 1)


def test_to_xee_uses_width_height_order():
    g = Grid("EPSG:4326", (0.5, 0.0, 10.0, 0.0, -0.5, 50.0), (4, 7))
    p = g.to_xee()
    assert p["shape_2d"] == (7, 4)
    assert p["crs_transform"] == g.transform
    assert p["crs"] == "EPSG:4326"
