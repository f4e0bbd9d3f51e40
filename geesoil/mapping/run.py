"""``geesoil map`` as a library call: plan a map (validate everything, write nothing), then run it tile by tile.

:func:`plan_map` turns a :class:`MapRequest` into a :class:`MapPlan` (AOI, model, covariate source, grid) and raises
a :class:`~geesoil.errors.GeesoilError` for any bad input before a file is written. :func:`execute` predicts the
tiles that are not finished yet (``<out>/.tiles``; resumable after a kill), assembles the COGs, the quick-look PNG
and ``run.json``, and returns the ``run.json`` document.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyproj import CRS, Geod

from geesoil import __version__
from geesoil.covariates.source import CovariateSource
from geesoil.errors import CovariateError, GeesoilError, ModelError
from geesoil.fileid import file_sha256
from geesoil.grid import Grid, Tile
from geesoil.locks import exclusive_lock
from geesoil.mapping.aoa import AOAReference, reference_for
from geesoil.mapping.aoi import (
    AOI,
    M_PER_DEG,
    MAX_PIXELS,
    WGS84,
    aoi_grid,
    check_size,
    default_crs,
    read_aoi,
    resolution_in,
)
from geesoil.mapping.cog import BLOCK, write_cog
from geesoil.mapping.memory import bounded_memory
from geesoil.mapping.tiler import AOA_NODATA, TileSettings, TileStore, has_median, predict_tile, tile_arrays

log = logging.getLogger(__name__)

#: Where shipped models live (``--model`` default): ``<repo>/assets/models/*.geesoil``.
SHIPPED_MODELS = Path(__file__).resolve().parents[2] / "assets" / "models"
#: Float outputs use this nodata value (NaN nodata trips up several GIS tools).
NODATA = -9999.0
TILES_DIR = ".tiles"
LOCK_FILE = "map.lock"
SETTINGS_FILE = "settings.json"
UNITS = "g/kg"


@dataclass(frozen=True)
class MapRequest:
    """The user's words for one map (the ``geesoil map`` options)."""

    aoi: str
    out: Path
    model: Path | None = None
    covariates: tuple[str, ...] = ()
    scale: float | None = None  # metres
    crs: str | None = None
    tile_size: int = BLOCK
    overwrite: bool = False
    alpha: float = 0.1
    std: bool = False
    aoa: bool = False
    samples: Path | None = None  # regional samples: fine-tune the model on them before mapping
    strategy: str | None = None  # how to fine-tune on ``samples`` (default: auto)
    seed: int = 0
    target: str = "oc_gkg"
    yes: bool = False
    max_pixels: int = MAX_PIXELS
    progress: bool = True
    dask_workers: int | None = None  # predict tiles on a local dask cluster of this many processes
    scheduler: str | None = None  # or on this running dask scheduler (tcp://host:port)


@dataclass
class MapPlan:
    """A validated map: everything :func:`execute` needs."""

    request: MapRequest
    aoi: AOI
    model: Any
    model_meta: dict[str, Any]
    model_path: Path
    model_id: str
    source: CovariateSource
    source_label: str
    source_specs: tuple[str, ...]
    grid: Grid
    geom: Any  # the AOI in the grid's CRS
    aoa: AOAReference | None = None
    aoa_from: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def covariate_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.model.covariates)

    def tiles(self) -> Iterator[Tile]:
        return self.grid.tiles(self.request.tile_size)

    def outputs(self) -> dict[str, str]:
        """Tile array → output file name (``soc_p05.tif`` etc. from alpha; ``soc_p50.tif`` the median).

        ``soc_mean.tif`` is always the mean, also for models whose point prediction is a median (QRF, auto);
        models with a median of their own (all but RF) also get it as ``soc_p50.tif``.
        """
        a = self.request.alpha
        out = {"mean": "soc_mean.tif"}
        if has_median(self.model):
            out["median"] = f"soc_{percentile_name(50)}.tif"
        out |= {
            "lo": f"soc_{percentile_name(100 * a / 2)}.tif",
            "hi": f"soc_{percentile_name(100 * (1 - a / 2))}.tif",
        }
        if self.request.std:
            out["std"] = "soc_std.tif"
        if self.aoa is not None:
            out["aoa"] = "aoa.tif"
            out["di"] = "aoa_di.tif"
        return out


def percentile_name(q: float) -> str:
    """``p05`` for 5, ``p95`` for 95, ``p02_5`` for 2.5."""
    if abs(q - round(q)) < 1e-9:
        return f"p{round(q):02d}"
    whole, frac = f"{q:.6g}".split(".")
    return f"p{int(whole):02d}_{frac}"


# -- planning --------------------------------------------------------------------------------------------------


def _declared_covariates(meta: dict[str, Any]) -> list[str]:
    """Covariate names a model file declares, from its metadata only (forest or network layouts)."""
    m = meta.get("model", {})
    specs = m.get("covariates") or m.get("encoder", {}).get("covariates") or []
    extra = (m.get("extra_encoder") or {}).get("covariates") or []
    return [s["name"] for s in [*specs, *extra] if isinstance(s, dict) and "name" in s]


def shipped_model_for(names: Sequence[str], folder: Path | None = None) -> Path | None:
    """The first shipped model (sorted by name) whose covariates are all among ``names``."""
    from geesoil.model.io import load_model, read_metadata

    folder = SHIPPED_MODELS if folder is None else folder
    have = set(names)
    for path in sorted(folder.glob("*.geesoil")) if folder.is_dir() else []:
        try:
            need = _declared_covariates(read_metadata(path))
            if not need:  # a layout this reader does not know: ask the model itself
                need = [s.name for s in load_model(path).covariates]
        except GeesoilError as exc:
            log.warning("skipping shipped model %s: %s", path.name, exc)
            continue
        if need and set(need) <= have:
            return path
    return None


def _check_settings(req: MapRequest) -> None:
    if not 0 < req.alpha < 1:
        raise GeesoilError(f"--alpha must be between 0 and 1 (0.1 = a 90 % interval), got {req.alpha}")
    if req.strategy is not None and req.samples is None:
        raise GeesoilError("--strategy says how to fine-tune on --samples; give --samples FILE too")
    if req.dask_workers is not None and req.dask_workers < 1:
        raise GeesoilError(f"--dask-workers must be at least 1, got {req.dask_workers}")
    if req.dask_workers and req.scheduler:
        raise GeesoilError("give --dask-workers (a local cluster) or --scheduler (a running one), not both")
    if req.tile_size < 16:
        raise GeesoilError(f"--tile-size must be at least 16 pixels, got {req.tile_size}")
    blocked = next((p for p in (Path(req.out), *Path(req.out).parents) if p.exists()), None)
    if blocked is not None and not blocked.is_dir():
        raise GeesoilError(f"-o {req.out}: {blocked} is a file, not a folder; choose a folder for the maps")
    if req.scale is not None and not (req.scale > 0 and math.isfinite(req.scale)):
        raise GeesoilError(f"--scale must be a positive number of metres, got {req.scale}")
    if req.crs is not None:
        try:
            CRS.from_user_input(req.crs)
        except Exception:
            raise GeesoilError(f"--crs {req.crs!r} is not a CRS pyproj knows; give e.g. EPSG:32755") from None


def native_resolution_m(source: CovariateSource, names: Sequence[str]) -> float:
    """The finest resolution (metres) of the rasters holding ``names``; degrees count ``M_PER_DEG`` per degree."""
    from geesoil.covariates.local import LocalPackSource

    sources = list(getattr(source, "sources", [source]))
    best = math.inf
    for name in names:
        for src in sources:
            by_name = {s.name: s for s in src.specs}
            if name not in by_name:
                continue
            spec = by_name[name]
            if isinstance(src, LocalPackSource):
                info = src.info(spec)
                res = min(abs(info.transform.a), abs(info.transform.e))
                if info.crs.is_geographic:
                    best = min(best, res * M_PER_DEG)
                else:
                    factor = info.crs.axis_info[0].unit_conversion_factor if info.crs.axis_info else 1.0
                    best = min(best, res * factor)
            elif spec.ee and spec.ee.get("scale"):
                best = min(best, float(spec.ee["scale"]))
            break
    if not math.isfinite(best):
        raise GeesoilError("cannot tell the covariates' native resolution; give --scale METRES")
    return best


def check_coverage(source: CovariateSource, names: Sequence[str], aoi: AOI) -> None:
    """Refuse an AOI that lies wholly outside the raster of a covariate the model needs (local packs only)."""
    from rasterio.warp import transform_bounds
    from shapely.geometry import box

    from geesoil.covariates.local import LocalPackSource

    for src in getattr(source, "sources", [source]):
        if not isinstance(src, LocalPackSource):
            continue
        own = {s.name: s for s in src.specs}
        for name in names:
            if name not in own:
                continue
            info = src.info(own[name])
            h, w = info.height, info.width
            x0, y0 = info.transform @ (0, 0)
            x1, y1 = info.transform @ (w, h)
            try:
                wgs = transform_bounds(info.crs, WGS84, min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
            except Exception:  # a CRS that cannot express WGS84 bounds: let the per-tile reads decide
                continue
            if not box(*wgs).intersects(aoi.geometry) and not info.wraps_lon:
                raise CovariateError(
                    f"the AOI ({aoi.source}) lies outside {info.path} (covariate {name!r}, covering lon "
                    f"{wgs[0]:.3f}..{wgs[2]:.3f}, lat {wgs[1]:.3f}..{wgs[3]:.3f}); give --covariates covering it"
                )
            own.pop(name)


def plan_map(req: MapRequest) -> MapPlan:
    """Validate the request and resolve AOI, model, source and grid; writes nothing but a model fine-tuned on
    ``--samples`` (into the output folder, see :func:`regional_model`)."""
    from geesoil.covariates.open import STARTER, open_sources
    from geesoil.model.io import load_model, read_metadata

    _check_settings(req)
    aoi = read_aoi(req.aoi)
    if req.model is not None:
        read_metadata(req.model)  # a missing or damaged model file fails before any covariate pack is built
    specs = req.covariates or (STARTER,)
    label = " + ".join(specs) + ("" if req.covariates else " (default)")
    source = open_sources(list(specs))
    names = [s.name for s in source.specs]
    model_path = req.model
    notes: list[str] = []
    if model_path is None:
        model_path = shipped_model_for(names)
        if model_path is None:
            raise ModelError(
                f"no --model given and no shipped model in {SHIPPED_MODELS} uses only covariates of {label}; "
                "train one (geesoil finetune ...) and pass --model FILE"
            )
        notes.append(f"model: {model_path.name} (shipped)")
    model_path = Path(model_path)
    meta = read_metadata(model_path)
    model = load_model(model_path)
    missing = [s.name for s in model.covariates if s.name not in set(names)]
    if missing:
        raise ModelError(
            f"{model_path}: the model needs covariates {label} does not provide: {', '.join(missing)}; "
            "give --covariates with a pack holding them"
        )
    regional = None
    if req.samples is not None:
        model_path, regional = regional_model(req, model, model_path, source, names)
        notes.append(f"model: fine-tuned on {req.samples} -> {model_path}")
        meta = read_metadata(model_path)
        model = load_model(model_path)
    check_coverage(source, [s.name for s in model.covariates], aoi)
    crs = req.crs or default_crs(aoi)
    metres = (
        req.scale
        if req.scale is not None
        else native_resolution_m(source, [s.name for s in model.covariates])
    )
    grid = aoi_grid(aoi, crs, resolution_in(metres, crs))
    check_size(grid, yes=req.yes, max_pixels=req.max_pixels)
    plan = MapPlan(
        request=req,
        aoi=aoi,
        model=model,
        model_meta=meta,
        model_path=model_path,
        model_id=file_sha256(model_path, 16),
        source=source,
        source_label=label,
        source_specs=tuple(str(Path(x).resolve()) if Path(x).exists() else str(x) for x in specs),
        grid=grid,
        geom=aoi.to_crs(crs),
        notes=notes,
    )
    if req.aoa:
        plan.aoa, plan.aoa_from = reference_for(model, meta, regional)
    return plan


def regional_model(
    req: MapRequest, base: Any, base_path: Path, source: CovariateSource, names: Sequence[str]
) -> tuple[Path, pd.DataFrame]:
    """Fine-tune ``base`` on ``req.samples``: the model file (in the output folder) and its training table.

    The model is saved as ``OUT/model-<key>.geesoil`` where the key hashes the base model, the samples file, the
    strategy, the seed, the target and the covariate sources, so a rerun (e.g. after an interruption) reuses it
    and its finished tiles instead of fitting again.
    """
    from geesoil.model.adapt import fit_regional, regional_table
    from geesoil.model.io import save_model
    from geesoil.samples import load_samples

    samples_path = Path(req.samples)  # type: ignore[arg-type]
    if not samples_path.is_file():
        raise GeesoilError(f"--samples {samples_path}: file not found")
    parts = [
        file_sha256(base_path, 16),
        file_sha256(samples_path, 16),
        req.strategy or "auto",
        str(req.seed),
        req.target,
    ]
    key = hashlib.sha256("|".join([*parts, *names]).encode()).hexdigest()[:16]
    path = Path(req.out) / f"model-{key}.geesoil"
    samples = load_samples(samples_path, target=req.target)
    if path.is_file() and not req.overwrite:
        table = regional_table(base, samples, source, target=req.target, where=str(samples_path))
        log.info("reusing %s (fine-tuned on %s by an earlier run)", path, samples_path)
        return path, table.X
    fit = fit_regional(
        base,
        samples,
        source,
        strategy=req.strategy,
        seed=req.seed,
        target=req.target,
        where=str(samples_path),
    )
    log.info("fine-tuned %s on %d samples", fit.description, len(fit.table.y))
    save_model(fit.model, path)
    return path, fit.table.X


# -- running ---------------------------------------------------------------------------------------------------


def _fingerprint(plan: MapPlan) -> dict[str, Any]:
    """What makes tiles of two runs interchangeable."""
    req = plan.request
    return {
        "aoi_wkb_sha": hashlib.sha256(plan.aoi.geometry.wkb).hexdigest()[:16],
        "grid": {
            "crs": plan.grid.crs,
            "transform": list(plan.grid.transform),
            "shape": list(plan.grid.shape),
        },
        "tile_size": req.tile_size,
        "model_id": plan.model_id,
        "covariates": list(plan.covariate_names),
        "source": list(plan.source_specs),
        "alpha": req.alpha,
        "std": req.std,
        "aoa": plan.aoa.threshold if plan.aoa is not None else None,
    }


def _prepare_tiles(plan: MapPlan) -> TileStore:
    out = Path(plan.request.out)
    store = TileStore(out / TILES_DIR)
    settings_path = store.root / SETTINGS_FILE
    fp = _fingerprint(plan)
    if settings_path.is_file() and not plan.request.overwrite:
        try:
            old = json.loads(settings_path.read_text())
        except (OSError, json.JSONDecodeError):
            old = None
        if old != fp:
            diff = sorted(k for k in fp if old is None or old.get(k) != fp[k])
            raise GeesoilError(
                f"{out} holds tiles of a different map (differs in: {', '.join(diff)}); "
                "pass --overwrite to redo them or choose another -o"
            )
    store.root.mkdir(parents=True, exist_ok=True)
    if plan.request.overwrite:
        store.clear()
    _write_json(settings_path, fp)
    return store


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, default=str)
        f.write("\n")
    os.replace(tmp, path)


def run_tiles(plan: MapPlan, store: TileStore) -> dict[str, Any]:
    """Predict every tile not yet in ``store``; returns counts and seconds."""
    from tqdm import tqdm

    settings = TileSettings(plan.covariate_names, plan.request.alpha, plan.request.std)
    tiles = list(plan.tiles())
    # a tile without every array this run writes (e.g. one from before soc_p50.tif existed) is predicted again
    need = tile_arrays(plan.model, settings, plan.aoa is not None)
    todo = [t for t in tiles if not store.readable(t.key, need)]
    t0 = time.perf_counter()
    req = plan.request
    if todo and (req.dask_workers or req.scheduler):
        from geesoil.mapping.distributed import client_for, run_distributed

        with client_for(req.dask_workers, req.scheduler) as client:
            run_distributed(
                client,
                [(t.key, t.grid) for t in todo],
                model_path=plan.model_path,
                sources=plan.source_specs,
                geom=plan.geom,
                settings=settings,
                aoa=plan.aoa,
                store=store,
                progress=req.progress,
            )
    else:
        for tile in tqdm(todo, desc="map tiles", unit="tile", disable=not req.progress, leave=False):
            arrays = predict_tile(plan.model, plan.source, tile.grid, plan.geom, settings, plan.aoa)
            store.save(tile.key, arrays)
    return {
        "tiles": len(tiles),
        "tiles_predicted": len(todo),
        "tiles_reused": len(tiles) - len(todo),
        "seconds": round(time.perf_counter() - t0, 3),
    }


def _row_areas_km2(grid: Grid) -> np.ndarray:
    """Area (km²) of one pixel in each row of ``grid``: exact on the sphere for geographic grids."""
    crs = CRS.from_user_input(grid.crs)
    rx, ry = grid.resolution
    if crs.is_geographic:
        r = 6_371.0088
        top = np.radians(grid.y + ry / 2)
        bot = np.radians(grid.y - ry / 2)
        return r * r * np.radians(rx) * np.abs(np.sin(top) - np.sin(bot))
    f = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    return np.full(grid.height, rx * ry * f * f / 1e6)


def _tags(plan: MapPlan, quantity: str) -> dict[str, str]:
    meta = plan.model_meta
    units = {"aoa": "1 = inside the area of applicability", "soc_di": "dimensionless"}.get(quantity, UNITS)
    tags = {
        "quantity": quantity if quantity != "soc_di" else "aoa_di",
        "units": units,
        "model_kind": str(meta.get("kind", "")),
        "model_id": plan.model_id,
        "model_file": plan.model_path.name,
        "covariate_source": plan.source_label,
        "alpha": f"{plan.request.alpha:g}",
        "geesoil_version": __version__,
    }
    if plan.aoa is not None and quantity in ("aoa", "soc_di"):
        tags["aoa_threshold"] = repr(plan.aoa.threshold)
    return tags


_DESCRIPTIONS = {
    "mean": "SOC mean (g/kg)",
    "median": "SOC median (g/kg)",
    "std": "SOC predictive standard deviation (g/kg)",
    "aoa": "area of applicability (1 inside, 0 outside)",
    "di": "dissimilarity index to the training data (AOA inside where <= aoa_threshold)",
}


def assemble(plan: MapPlan, store: TileStore) -> dict[str, Any]:
    """Write every output COG from the tiles; returns pixel counts and summary statistics."""
    out = Path(plan.request.out)
    tiles = list(plan.tiles())
    names = plan.outputs()
    a = plan.request.alpha
    for key, fname in names.items():
        desc = _DESCRIPTIONS.get(key) or (
            f"SOC {100 * a / 2:g}th percentile (g/kg)"
            if key == "lo"
            else f"SOC {100 * (1 - a / 2):g}th percentile (g/kg)"
        )
        is_aoa = key == "aoa"

        def gen(key: str = key, is_aoa: bool = is_aoa) -> Iterator[tuple[tuple[slice, slice], np.ndarray]]:
            for t in tiles:
                arr = store.load(t.key, [key])[key]
                if not is_aoa:
                    arr = np.where(np.isfinite(arr), arr, NODATA).astype(np.float32)
                yield t.slices, arr

        write_cog(
            out / fname,
            plan.grid,
            gen(),
            dtype="uint8" if is_aoa else "float32",
            nodata=AOA_NODATA if is_aoa else NODATA,
            description=desc,
            tags=_tags(plan, "aoa" if is_aoa else f"soc_{key}"),
            units=None if key in ("aoa", "di") else UNITS,
            overview_resampling="mode" if is_aoa else "average",
        )
    return _summary(plan, store, tiles)


def _summary(plan: MapPlan, store: TileStore, tiles: list[Tile]) -> dict[str, Any]:
    row_area = _row_areas_km2(plan.grid)
    n_valid = n_aoi = n_aoa = 0
    area = 0.0
    total = 0.0
    lo_sum = hi_sum = median_sum = 0.0
    median = "median" in plan.outputs()
    for t in tiles:
        keys = ["valid", "in_aoi", "mean", "lo", "hi"] + (["aoa"] if plan.aoa is not None else [])
        keys += ["median"] if median else []
        z = store.load(t.key, keys)
        v = z["valid"]
        n_valid += int(v.sum())
        n_aoi += int(z["in_aoi"].sum())
        area += float((v.sum(axis=1) * row_area[t.slices[0]]).sum())
        total += float(z["mean"][v].astype(np.float64).sum())
        lo_sum += float(z["lo"][v].astype(np.float64).sum())
        hi_sum += float(z["hi"][v].astype(np.float64).sum())
        if median:
            median_sum += float(z["median"][v].astype(np.float64).sum())
        if plan.aoa is not None:
            n_aoa += int((z["aoa"][v] == 1).sum())
    n_all = plan.grid.height * plan.grid.width
    geod = Geod(ellps="WGS84")
    aoi_area = abs(geod.geometry_area_perimeter(plan.aoi.geometry)[0]) / 1e6
    stats: dict[str, Any] = {
        "pixels": {
            "grid": n_all,
            "valid": n_valid,
            "masked": n_all - n_valid,
            "outside_aoi": n_all - n_aoi,
            "missing_covariates": n_aoi - n_valid,
        },
        "summary": {
            "mean_soc_gkg": total / n_valid if n_valid else None,
            # the average of soc_p50.tif, beside the average of soc_mean.tif
            **({"mean_p50_gkg": median_sum / n_valid if n_valid else None} if median else {}),
            "mean_lo_gkg": lo_sum / n_valid if n_valid else None,
            "mean_hi_gkg": hi_sum / n_valid if n_valid else None,
            "mapped_area_km2": area,
            "aoi_area_km2": aoi_area,
        },
    }
    if plan.aoa is not None:
        stats["summary"]["aoa_inside_fraction"] = n_aoa / n_valid if n_valid else None
    return stats


def execute(plan: MapPlan) -> dict[str, Any]:
    """Predict missing tiles, write the COGs, ``quicklook.png`` and ``run.json``; returns the ``run.json`` doc.

    Memory is bounded by the tile size, not the AOI: tiles are predicted and written one at a time, GDAL's block
    cache and the heap are held in check by :func:`~geesoil.mapping.memory.bounded_memory`.
    """

    t0 = time.perf_counter()
    req = plan.request
    out = Path(req.out)
    out.mkdir(parents=True, exist_ok=True)
    with map_lock(out), bounded_memory():
        return _execute_locked(plan, out, t0)


class MapLocked(GeesoilError):
    """Another ``geesoil map`` run is writing to the same output folder."""


@contextmanager
def map_lock(out: Path) -> Iterator[Path]:
    """Hold ``OUT/.tiles/map.lock`` (``fcntl.flock``, non-blocking) while a run writes to ``out``.

    A second run on the same folder is refused with :class:`MapLocked` instead of interleaving tiles and COGs;
    the lock dies with its process, so a killed run leaves nothing stale. Temporary COG folders of a killed run
    (``.cog-*``) are removed once the lock is held.
    """
    path = out / TILES_DIR / LOCK_FILE

    def refuse(holder: str) -> MapLocked:
        return MapLocked(
            f"{out} is being written by another geesoil map run ({path} is held by {holder}); "
            "wait for it to finish or choose another -o"
        )

    with exclusive_lock(path, refuse):
        for stale in out.glob(".cog-*"):
            shutil.rmtree(stale, ignore_errors=True)
        yield path


def _execute_locked(plan: MapPlan, out: Path, t0: float) -> dict[str, Any]:
    from geesoil.mapping.quicklook import write_quicklook

    req = plan.request
    store = _prepare_tiles(plan)
    tiles_info = run_tiles(plan, store)
    t1 = time.perf_counter()
    stats = assemble(plan, store)
    if stats["pixels"]["valid"] == 0:
        log.warning(
            "no pixel of the AOI has every covariate (%s): the maps are all nodata; check that the covariates "
            "cover the AOI",
            plan.source_label,
        )
    t2 = time.perf_counter()
    write_quicklook(out / "soc_mean.tif", out / "quicklook.png", plan.geom, title="SOC mean")
    t3 = time.perf_counter()
    meta = plan.model_meta
    doc: dict[str, Any] = {
        "geesoil_version": __version__,
        "inputs": {
            "aoi": plan.aoi.source,
            "model": str(plan.model_path),
            "covariates": plan.source_label,
            "scale_m": req.scale,
            "crs": req.crs,
            "tile_size": req.tile_size,
            "alpha": req.alpha,
            "std": req.std,
            "aoa": req.aoa,
            "samples": str(req.samples) if req.samples else None,
        },
        "model": {
            "id": plan.model_id,
            "kind": meta.get("kind"),
            "geesoil_version": meta.get("geesoil_version"),
            "covariates": list(plan.covariate_names),
        },
        "grid": {
            "crs": plan.grid.crs,
            "resolution": plan.grid.resolution[0],
            "width": plan.grid.width,
            "height": plan.grid.height,
            "transform": list(plan.grid.transform),
        },
        "outputs": sorted([*plan.outputs().values(), "quicklook.png"]),
        "tiles": tiles_info,
        **stats,
        "timings_s": {
            "predict": round(t1 - t0, 3),
            "assemble": round(t2 - t1, 3),
            "quicklook": round(t3 - t2, 3),
            "total": round(t3 - t0, 3),
        },
    }
    if plan.aoa is not None:
        doc["aoa"] = {
            "from": plan.aoa_from,
            "threshold": plan.aoa.threshold,
            "columns": list(plan.aoa.columns),
        }
    _write_json(out / "run.json", doc)
    return doc


def run_map(req: MapRequest) -> dict[str, Any]:
    """Plan and execute one map; returns the ``run.json`` document."""
    return execute(plan_map(req))


__all__ = [
    "MapLocked",
    "MapPlan",
    "MapRequest",
    "WGS84",
    "assemble",
    "execute",
    "map_lock",
    "native_resolution_m",
    "percentile_name",
    "plan_map",
    "run_map",
    "run_tiles",
    "shipped_model_for",
]
