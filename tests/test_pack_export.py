"""export_pack and ``geesoil covariates pack --aoi``: COG packs from the shared coarse pack and the fake Earth Engine."""

from __future__ import annotations

import json
from pathlib import Path

import ee_fake_server
import numpy as np
import pandas as pd
import pytest
import rasterio
from click.testing import CliRunner
from ee_fake_server import fake_login, pack_rasters
from rio_cogeo.cogeo import cog_validate

from cli.main import cli
from geesoil.covariates.export import export_pack, open_for_export
from geesoil.covariates.local import LocalPackSource
from geesoil.covariates.pack import read_pack
from geesoil.errors import CovariateError
from geesoil.grid import Grid
from geesoil.mapping.aoi import aoi_grid, default_crs, read_aoi

fake_ee = ee_fake_server.fake_ee  # the fixture
pytestmark = pytest.mark.filterwarnings("ignore:Use `@` matmul:PendingDeprecationWarning")

#: The Sydney coast: land and sea (nodata in every layer but IGBP land cover, whose class 0 is water).
COAST = (150.8, -34.2, 151.6, -33.4)
NAMES = ["elevation", "bio01", "ndvi", "koppen", "landcover_igbp"]
CATEGORICAL = {"koppen", "landcover_igbp"}


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["covariates", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stderr


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


def _mosaic(source, grid: Grid, names: list[str], tile_size: int) -> dict[str, np.ndarray]:
    """The source's own ``read`` of each tile of ``grid``, assembled: what a tile-by-tile export must hold."""
    out = {n: np.full(grid.shape, np.nan) for n in names}
    for tile in grid.tiles(tile_size):
        ds = source.read(tile.grid, names)
        for n in names:
            out[n][tile.slices] = ds[n].values
    return out


def _check_pack(folder: Path, source: LocalPackSource, grid: Grid, want: dict[str, np.ndarray]) -> None:
    pack = read_pack(folder)
    specs = {s.name: s for s in source.specs}
    assert [s.name for s in pack.covariates] == list(want)
    assert pack.crs == grid.crs
    back = LocalPackSource(folder)
    got = back.read(grid, list(want))
    for name, values in want.items():
        spec, path = specs[name], pack.path_of(name)
        assert cog_validate(path)[0], f"{path.name} is not a valid COG"
        with rasterio.open(path) as src:
            raw = src.read(1)
            assert src.crs == rasterio.crs.CRS.from_user_input(grid.crs)
            assert tuple(src.transform)[:6] == pytest.approx(grid.transform)
            assert (src.height, src.width) == grid.shape
            assert src.descriptions == (name,)
            assert src.block_shapes[0] == (512, 512) or max(grid.shape) <= 512
            if name in CATEGORICAL:
                assert src.dtypes[0] == "uint8" and src.nodata == 255
                tags = src.tags()
                assert {k: tags[f"CLASS_{k}"] for k in spec.classes} == spec.classes
                # codes stored exactly: every valid pixel is one of the classes, nodata where the source had none
                codes = raw[raw != 255]
                assert set(np.unique(codes)) <= set(spec.classes)
                np.testing.assert_array_equal(raw == 255, np.isnan(values))
                np.testing.assert_array_equal(codes, values[~np.isnan(values)].astype("uint8"))
            else:
                assert src.dtypes[0] == "float32" and np.isnan(src.nodata)
        np.testing.assert_allclose(got[name].values, values, rtol=1e-6, equal_nan=True)
        assert np.isfinite(values).any(), f"{name}: the test AOI should hold data"


def test_export_in_degrees_matches_the_source(coarse_pack: Path, tmp_path: Path) -> None:
    source = LocalPackSource(coarse_pack)
    grid = Grid.from_bounds(COAST, "EPSG:4326", 0.02)  # 40 x 40 in tiles of 16: 9 tiles per covariate
    out = export_pack(source, grid, tmp_path / "pack", names=NAMES, tile_size=16, progress=False)
    assert out == tmp_path / "pack"
    whole = source.read(grid, NAMES)  # a geographic grid warps the same whole or tiled
    _check_pack(out, source, grid, {n: whole[n].values for n in NAMES})
    assert np.isnan(whole["elevation"].values).mean() > 0.2  # sea: nodata really is exercised
    # Sampling the pack at its pixel centres gives the pixels back; categorical ones equal the original's samples.
    x, y = np.meshgrid(grid.x, grid.y)
    points = pd.DataFrame({"lon": x.ravel(), "lat": y.ravel()})
    back = LocalPackSource(out).sample(points, NAMES)
    original = source.sample(points, sorted(CATEGORICAL))
    for name in NAMES:
        np.testing.assert_allclose(back[name], whole[name].values.ravel(), rtol=1e-6, equal_nan=True)
    pd.testing.assert_frame_equal(back[sorted(CATEGORICAL)], original)
    doc = json.loads((out / "pack.json").read_text())
    prov = doc["provenance"]
    assert prov["sources"] == [
        {"kind": "pack", "name": "coarse-global-v1", "path": str(coarse_pack.resolve())}
    ]
    assert prov["grid"] == {"crs": "EPSG:4326", "transform": list(grid.transform), "shape": [40, 40]}
    assert doc["covariates"][3]["classes"]["3"] == "temperate"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_export_in_utm_matches_the_source_tile_by_tile(coarse_pack: Path, tmp_path: Path) -> None:
    source = LocalPackSource(coarse_pack)
    aoi = read_aoi(",".join(map(str, COAST)))
    crs = default_crs(aoi)
    assert crs == "EPSG:32756"
    grid = aoi_grid(aoi, crs, 2000.0)
    out = export_pack(source, grid, tmp_path / "utm", names=NAMES, tile_size=16, progress=False)
    _check_pack(out, source, grid, _mosaic(source, grid, NAMES, 16))


def test_large_outputs_get_overviews(coarse_pack: Path, tmp_path: Path) -> None:
    source = LocalPackSource(coarse_pack)
    grid = Grid.from_bounds((148.0, -36.0, 152.0, -32.0), "EPSG:4326", 1 / 150)  # 600 x 600
    out = export_pack(source, grid, tmp_path / "p", names=["bio01", "koppen"], progress=False)
    for name in ("bio01", "koppen"):
        with rasterio.open(out / f"{name}.tif") as src:
            assert src.overviews(1) == [2]
            assert src.block_shapes[0] == (512, 512)
        assert cog_validate(out / f"{name}.tif") == (True, [], [])
    assert oct((out / "pack.json").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_rerun_is_a_no_op_and_overwrite_redoes(coarse_pack: Path, tmp_path: Path) -> None:
    source = LocalPackSource(coarse_pack)
    grid = Grid.from_bounds(COAST, "EPSG:4326", 0.05)
    out = export_pack(source, grid, tmp_path / "p", names=["bio01", "koppen"], progress=False)
    before = _mtimes(out)
    assert export_pack(source, grid, out, names=["bio01", "koppen"], progress=False) == out
    assert _mtimes(out) == before
    # another request onto the same folder is refused, unless asked to overwrite
    with pytest.raises(CovariateError, match="overwrite"):
        export_pack(source, grid, out, names=["bio01"], progress=False)
    assert _mtimes(out) == before
    export_pack(source, grid, out, names=["bio01"], progress=False, overwrite=True)
    assert [s.name for s in read_pack(out).covariates] == ["bio01"]
    assert not (out / "koppen.tif").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p"]
    # a folder of other files is never replaced, overwrite or not
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("keep me")
    for overwrite in (False, True):
        with pytest.raises(CovariateError, match="notes"):
            export_pack(
                source, grid, tmp_path / "notes", names=["bio01"], progress=False, overwrite=overwrite
            )
    assert [p.name for p in (tmp_path / "notes").iterdir()] == ["todo.txt"]


class _Failing:
    """A source whose ``read`` fails after ``n`` calls, like a connection dropped mid-export."""

    def __init__(self, source: LocalPackSource, n: int) -> None:
        self.inner, self.n, self.calls = source, n, 0
        self.specs = source.specs

    def read(self, grid, names=None):
        self.calls += 1
        if self.calls > self.n:
            raise KeyboardInterrupt
        return self.inner.read(grid, names)


def test_interrupted_export_leaves_no_partial_pack(coarse_pack: Path, tmp_path: Path) -> None:
    source = LocalPackSource(coarse_pack)
    grid = Grid.from_bounds(COAST, "EPSG:4326", 0.05)
    failing = _Failing(source, n=5)
    with pytest.raises(KeyboardInterrupt):
        export_pack(failing, grid, tmp_path / "new", names=NAMES, tile_size=4, progress=False)
    assert failing.calls == 6  # it did fail mid-way: at the 6th of 16 tiles
    assert list(tmp_path.iterdir()) == []
    # an interrupted overwrite keeps the previous pack intact
    old = export_pack(source, grid, tmp_path / "old", names=["bio01"], progress=False)
    before = _mtimes(old)
    with pytest.raises(KeyboardInterrupt):
        export_pack(_Failing(source, 5), grid, old, names=NAMES, tile_size=4, progress=False, overwrite=True)
    assert _mtimes(old) == before and read_pack(old).by_name().keys() == {"bio01"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old"]


def test_unknown_covariates_are_refused_before_any_work(coarse_pack: Path, tmp_path: Path) -> None:
    grid = Grid.from_bounds(COAST, "EPSG:4326", 0.05)
    with pytest.raises(CovariateError, match="'soc'.*elevation"):
        export_pack(
            LocalPackSource(coarse_pack), grid, tmp_path / "p", names=["bio01", "soc"], progress=False
        )
    assert list(tmp_path.iterdir()) == []


# ---- CLI ------------------------------------------------------------------------------------------------------
def test_cli_pack_from_a_local_pack_in_the_aoi_utm_zone(coarse_pack: Path, tmp_path: Path) -> None:
    aoi = tmp_path / "aoi.geojson"
    minx, miny, maxx, maxy = COAST
    ring = [[minx, miny], [maxx, miny], [maxx, maxy], [minx, miny]]  # a triangle
    aoi.write_text(json.dumps({"type": "Polygon", "coordinates": [ring]}))
    out = tmp_path / "pack"
    args = ["pack", "--aoi", str(aoi), "--covariates", str(coarse_pack), "--scale", "4000", "-o", str(out)]
    code, err = _run(*args, "--covariate", "bio01", "--covariate", "koppen")
    assert code == 0, err
    assert "Pack ready" in err and "EPSG:32756" in err
    pack = read_pack(out)
    assert [s.name for s in pack.covariates] == ["bio01", "koppen"] and pack.crs == "EPSG:32756"
    with rasterio.open(out / "bio01.tif") as src:
        assert src.res == (4000.0, 4000.0)
    before = _mtimes(out)
    code, err = _run(*args, "--covariate", "bio01", "--covariate", "koppen")
    assert code == 0 and _mtimes(out) == before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--aoi", "nowhere.gpkg"], "neither a file nor a bbox"),
        (["--aoi", "150,-34,151,-33", "--covariate", "soc"], "unknown covariate(s) soc"),
        (["--aoi", "100,-40,150,-10", "--scale", "10"], "--yes"),
        (["--aoi", "150,-34,151,-33", "--start", "2010-01-01"], "need --covariates ee"),
        (["--aoi", "150,-34,151,-33", "--crs", "EPSG:999999"], "--crs"),
        (["--aoi", "150,-34,151,-33", "--starter"], "either --starter or --aoi"),
    ],
)
def test_cli_bad_inputs_exit_2_with_one_line(
    coarse_pack: Path, tmp_path: Path, extra: list[str], message: str
) -> None:
    args = ["pack", "--covariates", str(coarse_pack), "-o", str(tmp_path / "p"), *extra]
    if "--scale" not in extra:
        args += ["--scale", "5000"]
    code, err = _run(*args)
    assert code == 2 and err.count("\n") == 1 and err.startswith("Error: "), err
    assert message in err
    assert not (tmp_path / "p").exists()


def test_cli_pack_needs_aoi_covariates_and_scale(tmp_path: Path) -> None:
    code, err = _run("pack", "--aoi", "150,-34,151,-33", "-o", str(tmp_path / "p"))
    assert code == 2 and "--covariates, --scale" in err


def test_earth_engine_commands_are_in_the_covariates_group() -> None:
    assert {"ee-check", "graph", "pack", "extract"} <= set(cli.commands["covariates"].commands)  # type: ignore[attr-defined]


@pytest.fixture
def ee_login(fake_ee, monkeypatch: pytest.MonkeyPatch):
    """The fake server with the CLI's credential discovery finding the fake token."""
    monkeypatch.setattr("geesoil.ee.auth.find_login", lambda environ=None: fake_login())
    return fake_ee


def test_cli_pack_from_earth_engine_matches_the_local_rasters(
    ee_login, coarse_pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEESOIL_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "ee_pack"
    code, err = _run(
        "pack",
        "--aoi",
        "85,26,88,29",
        "--covariates",
        "ee:coarse-global-v1",
        "--crs",
        "EPSG:4326",
        "--scale",
        str(111_320 / 3),  # 1/3 degree: the grid of the 20' elevation raster
        "--covariate",
        "elevation",
        "--covariate",
        "landcover_igbp",
        "--start",
        "2012-01-01",
        "--end",
        "2014-01-01",
        "--tile-size",
        "4",
        "--ee-project",
        "test",
        "--ee-url",
        ee_login.url,
        "-o",
        str(out),
    )
    assert code == 0, err
    assert len(ee_login.calls_to("image:computePixels")) >= 2 * 9  # 2 covariates x 3 x 3 tiles
    pack = read_pack(out)
    assert pack.extra["provenance"]["sources"] == [
        {"kind": "ee", "catalog": "coarse-global-v1", "start": "2012-01-01", "end": "2014-01-01"}
    ]
    grid = Grid(pack.crs, tuple(pack.extra["provenance"]["grid"]["transform"]), (9, 9))
    x, y = np.meshgrid(grid.x, grid.y)
    rasters = pack_rasters(coarse_pack)
    for name, dtype in [("elevation", "float32"), ("landcover_igbp", "uint8")]:
        with rasterio.open(out / f"{name}.tif") as got, rasterio.open(rasters[name]) as ref:
            assert got.dtypes[0] == dtype
            values = got.read(1).astype("float64")
            values[values == got.nodata] = np.nan
            want = np.array([v[0] for v in ref.sample(zip(x.ravel(), y.ravel(), strict=True))], "float64")
            want[want == ref.nodata] = np.nan
            np.testing.assert_array_equal(values.ravel(), want)
    assert np.isfinite(values).all()


def test_open_for_export_sets_the_earth_engine_window_only_for_ee(coarse_pack: Path) -> None:
    source = open_for_export([str(coarse_pack), "ee:coarse-global-v1"], start="2001-01-01", end="2002-01-01")
    ee_part = source.sources[1]  # type: ignore[attr-defined]
    assert (ee_part.start, ee_part.end) == ("2001-01-01", "2002-01-01")
    with pytest.raises(CovariateError, match="Earth Engine"):
        open_for_export([str(coarse_pack)], start="2001-01-01")


def test_cli_extract_from_earth_engine_takes_the_ee_options(
    ee_login, coarse_pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEESOIL_CACHE_DIR", str(tmp_path / "cache"))
    samples = tmp_path / "points.csv"
    samples.write_text("profile_id,lon,lat,oc_gkg\nlondon,-0.12,51.5,20\nyakutsk,129.73,62.03,30\n")
    out = tmp_path / "points.parquet"
    args = ["extract", "--samples", str(samples), "--covariates", "ee:coarse-global-v1", "-o", str(out)]
    code, err = _run(*args, "--ee-project", "test", "--ee-url", ee_login.url)
    assert code == 0, err
    table = pd.read_parquet(out).set_index("profile_id")
    assert len(ee_login.calls_to("table:computeFeatures")) == 1
    rasters = pack_rasters(coarse_pack)
    with rasterio.open(rasters["bio01"]) as src:
        want = [v[0] for v in src.sample([(-0.12, 51.5), (129.73, 62.03)])]
    np.testing.assert_allclose(table["bio01"], want, rtol=1e-6)
    # without a project (none in the environment, none from the fake login) the error says how to give one
    monkeypatch.setattr("geesoil.ee.auth.find_login", lambda environ=None: fake_login(project=""))
    monkeypatch.delenv("GEESOIL_EE_PROJECT", raising=False)
    code, err = _run(*args[:-1], str(tmp_path / "again.parquet"), "--ee-url", ee_login.url)
    assert code == 2 and "--ee-project" in err and err.count("\n") == 1
