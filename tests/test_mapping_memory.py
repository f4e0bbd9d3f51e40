"""Map memory stays bounded by the tile size: GDAL's block cache is held while COGs are written, and freed tile
arrays go back to the kernel (glibc's mmap threshold fixed)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import rasterio

from geesoil.grid import Grid
from geesoil.mapping import cog, memory

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")

STATUS = """
def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
"""


def _run(code: str, mode: str) -> float:
    """The number ``code`` prints, run in a fresh Python with ``mode`` as its last argument."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(STATUS) + textwrap.dedent(code), mode],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return float(done.stdout.strip())


def test_write_cog_runs_under_the_bounded_gdal_cache(tmp_path):
    grid = Grid.from_bounds((0.0, 0.0, 0.4, 0.3), "EPSG:4326", 0.001)
    seen = []

    def tiles():
        for t in grid.tiles(256):
            seen.append(rasterio.env.getenv().get("GDAL_CACHEMAX"))
            yield t.slices, np.full((t.height, t.width), 7.5, np.float32)

    cog.write_cog(tmp_path / "x.tif", grid, tiles(), dtype="float32", nodata=-9999.0, description="x")
    assert seen and set(seen) == {memory.GDAL_CACHE_BYTES}
    with rasterio.open(tmp_path / "x.tif") as src:
        assert src.shape == (300, 400) and float(src.read(1).mean()) == 7.5


@linux_only
def test_steady_malloc_returns_freed_tile_arrays():
    # 2 MB arrays interleaved with small long-lived objects, after glibc raised its threshold by freeing an 8 MB
    # array: by default the freed arrays stay in the fragmented heap; with the fixed threshold they go back
    code = """
    import sys
    import numpy as np
    if sys.argv[-1] == "fix":
        from geesoil.mapping.memory import steady_malloc
        assert steady_malloc()
    w = np.ones(1 << 20); del w
    base = status("VmRSS")
    bigs, smalls = [], []
    for _ in range(100):
        bigs.append(np.ones(1 << 18))
        smalls.append(np.ones(64))
    del bigs
    print(status("VmRSS") - base)
    """

    def retained(mode: str) -> float:
        return _run(code, mode)

    assert retained("fix") < 20
    assert retained("default") > 150  # the pattern does strand memory without the fix


@linux_only
@pytest.mark.slow
def test_write_cog_peak_memory_does_not_follow_raster_size(tmp_path):
    # 4096 x 4096 float32 (64 MB raw): GDAL's default cache kept ~250 MB while overviews were built
    code = f"""
    import sys
    import numpy as np
    import rasterio, rio_cogeo.cogeo
    import geesoil.mapping.cog as cog
    import geesoil.mapping.memory as memory
    from geesoil.grid import Grid
    if sys.argv[-1] == "unbounded":
        memory.GDAL_CACHE_BYTES = 2**31
    n = 4096
    grid = Grid.from_bounds((0, 0, n * 0.001, n * 0.001), "EPSG:4326", 0.001)
    yy, xx = np.mgrid[0:512, 0:512]
    def tiles():
        for t in grid.tiles(512):
            a = np.sin(xx[: t.height, : t.width] / 50.0 + t.col) * 20 + 30 + yy[: t.height, : t.width] % 7
            yield t.slices, a.astype(np.float32)
    base = status("VmRSS")
    cog.write_cog(r"{tmp_path}/" + sys.argv[-1] + ".tif", grid, tiles(), dtype="float32", nodata=-9999.0,
                  description="x")
    print(status("VmHWM") - base)
    """

    def growth(mode: str) -> float:
        return _run(code, mode)

    bounded, unbounded = growth("bounded"), growth("unbounded")
    assert bounded < memory.GDAL_CACHE_BYTES / 2**20 + 100
    assert unbounded - bounded > 60


def test_dask_tile_jobs_run_under_the_bounded_gdal_cache(tmp_path, monkeypatch):
    from shapely.geometry import box
    from test_mapping_data import make_model, make_pack

    from geesoil.mapping import distributed
    from geesoil.mapping.tiler import TileSettings, TileStore

    pack = make_pack(tmp_path / "pack")
    model = make_model(pack, tmp_path / "m.geesoil")
    seen = []
    real = distributed.predict_tile

    def spy(*args, **kwargs):
        seen.append(rasterio.env.getenv().get("GDAL_CACHEMAX"))
        return real(*args, **kwargs)

    monkeypatch.setattr(distributed, "predict_tile", spy)
    grid = Grid.from_bounds((149.6, -30.2, 149.8, -30.1), "EPSG:4326", 0.01)
    settings = TileSettings(("elev", "rain", "lc"))
    key = distributed.tile_job(
        str(model), (str(pack),), grid, box(*grid.bounds), settings, None, str(tmp_path / "tiles"), "t0"
    )
    assert seen == [memory.GDAL_CACHE_BYTES]
    assert np.isfinite(TileStore(tmp_path / "tiles").load(key)["mean"]).any()
