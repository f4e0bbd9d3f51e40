"""Export covariates from any source onto a pixel grid as a local pack: one COG per covariate plus ``pack.json``.

The source is read tile by tile (one tile of every covariate in memory at a time), each tile written into one
tiled GeoTIFF per covariate, which is then translated to a COG; an Earth Engine export of a large AOI streams through
``computePixels`` chunks. The pack is assembled in a hidden temporary folder beside the
output and renamed into place, so a reader never sees a half-written pack and an interrupted export leaves nothing.
The request (grid, covariates, source provenance) is hashed into ``pack.json``; exporting the same request again
onto a complete pack does nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from geesoil.covariates.catalog import spec_to_dict
from geesoil.covariates.pack import MANIFEST, read_pack, write_pack_manifest
from geesoil.covariates.source import CovariateSource
from geesoil.covariates.spec import CovariateSpec
from geesoil.errors import CovariateError, GeesoilError
from geesoil.grid import Grid

log = logging.getLogger(__name__)

#: Internal tile size of every COG (the COG convention).
BLOCK = 512
#: Continuous covariates are written as float32 with NaN as nodata.
FLOAT_DTYPE = "float32"
#: Categorical covariates: uint8 with this nodata code when every class code fits in 0..254...
UINT8_NODATA = 255
#: ...else int16 with this one (codes must fit in -32767..32767).
INT16_NODATA = -32768


@dataclasses.dataclass(frozen=True)
class BandEncoding:
    """How one covariate is stored: GDAL data type and nodata value."""

    dtype: str
    nodata: float


def encoding_for(spec: CovariateSpec) -> BandEncoding:
    """float32/NaN for continuous covariates; uint8/255 or int16/-32768 for categorical ones (by class codes)."""
    if not spec.is_categorical:
        return BandEncoding(FLOAT_DTYPE, math.nan)
    codes = list(spec.classes or {})
    if codes and min(codes) >= 0 and max(codes) < UINT8_NODATA:
        return BandEncoding("uint8", UINT8_NODATA)
    if codes and (min(codes) <= INT16_NODATA or max(codes) > 32767):
        raise CovariateError(
            f"covariate {spec.name!r}: class codes {min(codes)}..{max(codes)} do not fit in int16; "
            "recode the classes to -32767..32767"
        )
    return BandEncoding("int16", INT16_NODATA)


def encode(values: np.ndarray, spec: CovariateSpec, enc: BandEncoding) -> np.ndarray:
    """Float values (NaN = no data) → the stored array of ``enc``."""
    values = np.asarray(values, dtype=np.float64)
    if enc.dtype == FLOAT_DTYPE:
        return values.astype(np.float32)
    missing = ~np.isfinite(values)
    codes = np.rint(np.where(missing, 0.0, values))
    info = np.iinfo(enc.dtype)
    bad = ~missing & ((codes < info.min) | (codes > info.max) | (codes == enc.nodata))
    if bad.any():
        example = values[bad].flat[0]
        raise CovariateError(
            f"covariate {spec.name!r}: value {example:g} is not a class code storable as {enc.dtype}; "
            "check the source's classes"
        )
    out = codes.astype(enc.dtype)
    out[missing] = int(enc.nodata)
    return out


def provenance(source: Any) -> list[dict[str, Any]]:
    """What each underlying source is (kind, pack folder/name or EE catalog and date window), for ``pack.json``."""
    subs = getattr(source, "sources", None)
    if subs is not None:
        return [p for s in subs for p in provenance(s)]
    pack = getattr(source, "pack", None)
    if pack is not None:
        return [{"kind": "pack", "name": str(pack.name), "path": str(Path(pack.folder).resolve())}]
    catalog = getattr(source, "catalog", None)
    if catalog is not None and hasattr(source, "start"):
        return [{"kind": "ee", "catalog": str(catalog.name), "start": source.start, "end": source.end}]
    return [{"kind": type(source).__name__}]


def open_for_export(
    specs: Sequence[str | Path], *, start: str | None = None, end: str | None = None
) -> CovariateSource:
    """Open sources like :func:`~geesoil.covariates.open.open_sources` without connecting to Earth Engine, with
    ``start``/``end`` as the date window of any Earth Engine source (its default window when None).

    Initialise Earth Engine (:func:`geesoil.ee.auth.initialize`) before reading from the result.
    """
    from geesoil.covariates.open import open_sources
    from geesoil.covariates.source import CombinedSource

    source = open_sources(list(specs), connect=False)
    if start is None and end is None:
        return source
    parts = list(getattr(source, "sources", [source]))
    found = False
    for i, part in enumerate(parts):
        if hasattr(part, "catalog") and hasattr(part, "start"):
            from geesoil.ee.source import EarthEngineSource

            parts[i] = EarthEngineSource(
                part.catalog, start or part.start, end or part.end, cache_dir=part.cache_dir
            )
            found = True
    if not found:
        raise CovariateError("a date window (start/end) needs an Earth Engine source ('ee' or 'ee:CATALOG')")
    return parts[0] if len(parts) == 1 else CombinedSource(parts)


def _grid_doc(grid: Grid) -> dict[str, Any]:
    return {"crs": grid.crs, "transform": [float(v) for v in grid.transform], "shape": list(grid.shape)}


def request_key(
    specs: Sequence[CovariateSpec], grid: Grid, sources: list[dict[str, Any]], name: str, description: str
) -> str:
    """A hash of everything that decides the pack's content (not its creation time)."""
    doc = {
        "grid": _grid_doc(grid),
        "covariates": [spec_to_dict(s, with_file=False) for s in specs],
        "sources": sources,
        "name": name,
        "description": description,
    }
    text = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _file_name(name: str) -> str:
    """``<name>.tif`` with characters that are unsafe in file names replaced by ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name) + ".tif"


def _select(source: CovariateSource, names: Sequence[str] | None) -> list[CovariateSpec]:
    by_name = {s.name: s for s in source.specs}
    if names is None:
        return list(by_name.values())
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise CovariateError(
            f"unknown covariate(s) {', '.join(map(repr, unknown))}; the source has: {', '.join(by_name)}"
        )
    if not names:
        raise CovariateError("no covariates selected for the pack")
    return [by_name[n] for n in names]


def _existing_key(out_dir: Path) -> str | None:
    """The request key of the complete pack in ``out_dir``, or None when there is no readable pack."""
    try:
        pack = read_pack(out_dir)
    except GeesoilError:
        return None
    key = pack.extra.get("request_key")
    return key if isinstance(key, str) else None


def _tile_values(ds: Any, name: str, shape: tuple[int, int]) -> np.ndarray:
    arr = ds[name]
    if set(arr.dims) == {"y", "x"}:
        arr = arr.transpose("y", "x")
    values = np.asarray(arr.values)
    if values.shape != shape:
        raise CovariateError(
            f"covariate {name!r}: the source returned a {values.shape} array for a {shape} tile"
        )
    return values


def _write_raw(
    source: CovariateSource,
    specs: Sequence[CovariateSpec],
    grid: Grid,
    folder: Path,
    tile_size: int,
    progress: bool,
) -> dict[str, Path]:
    """One pass over the tiles: read every covariate of a tile at once, write each into its own tiled GTiff."""
    import rasterio
    from rasterio.windows import Window

    paths = {s.name: folder / f".{_file_name(s.name)}.raw" for s in specs}
    encs = {s.name: encoding_for(s) for s in specs}
    names = [s.name for s in specs]
    tiles = list(grid.tiles(tile_size))
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tiles), desc=f"export {len(specs)} covariates", unit="tile", leave=False)
    with contextlib.ExitStack() as stack:
        dsts = {}
        for spec in specs:
            enc = encs[spec.name]
            dst = stack.enter_context(
                rasterio.open(
                    paths[spec.name],
                    "w",
                    driver="GTiff",
                    height=grid.height,
                    width=grid.width,
                    count=1,
                    dtype=enc.dtype,
                    crs=grid.crs,
                    transform=grid.affine,
                    nodata=enc.nodata,
                    tiled=True,
                    blockxsize=BLOCK,
                    blockysize=BLOCK,
                    compress="deflate",
                    BIGTIFF="IF_SAFER",
                )
            )
            dst.set_band_description(1, spec.name)
            if spec.units:
                dst.update_tags(1, units=spec.units)
            tags = {f"CLASS_{k}": v for k, v in sorted((spec.classes or {}).items())}
            dst.update_tags(covariate=spec.name, group=spec.group, kind=spec.kind, **tags)
            dsts[spec.name] = dst
        if bar is not None:
            stack.callback(bar.close)
        for tile in tiles:
            # One read per tile for all covariates: one Earth Engine session per tile, one band per request.
            ds = source.read(tile.grid, names)
            window = Window(tile.col, tile.row, tile.width, tile.height)
            for spec in specs:
                values = _tile_values(ds, spec.name, (tile.height, tile.width))
                dsts[spec.name].write(encode(values, spec, encs[spec.name]), 1, window=window)
            del ds
            if bar is not None:
                bar.update(1)
    return paths


def _to_cog(raw: Path, path: Path, nodata: float) -> None:
    """Translate a tiled GTiff to a COG (deflate, 512 px blocks, internal overviews), tags and description kept."""
    from rio_cogeo.cogeo import cog_translate
    from rio_cogeo.profiles import cog_profiles

    profile = cog_profiles.get("deflate")
    profile.update(blockxsize=BLOCK, blockysize=BLOCK)
    cog_translate(
        raw,
        path,
        profile,
        nodata=nodata,
        add_mask=False,
        forward_band_tags=True,
        quiet=True,
        in_memory=False,
    )


def export_pack(
    source: CovariateSource,
    grid: Grid,
    out_dir: str | Path,
    *,
    names: Sequence[str] | None = None,
    name: str = "aoi-pack",
    description: str = "",
    tile_size: int = 1024,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Read ``names`` (default: all) of ``source`` on ``grid`` tile by tile and write them as a pack in ``out_dir``.

    One COG per covariate (``<name>.tif``; float32/NaN for continuous, uint8 or int16 with a nodata code and
    ``CLASS_<code>`` tags for categorical) plus ``pack.json`` with each covariate's metadata and the provenance.
    Atomic: the pack appears complete or not at all. Idempotent: if ``out_dir`` already holds the pack of the same
    request, nothing is done; a different pack there is an error unless ``overwrite``, and a non-empty folder
    without ``pack.json`` is never replaced.
    Returns ``out_dir``.
    """
    out_dir = Path(out_dir)
    if tile_size < 1:
        raise CovariateError(f"tile_size={tile_size}: give a positive number of pixels")
    specs = _select(source, names)
    sources = provenance(source)
    key = request_key(specs, grid, sources, name, description)
    if out_dir.exists() and not out_dir.is_dir():
        raise CovariateError(f"{out_dir} exists and is not a folder; choose another output folder")
    if overwrite and out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / MANIFEST).is_file():
        raise CovariateError(
            f"{out_dir} is not a covariate pack (no {MANIFEST}) and not empty; refusing to replace it, "
            "choose another output folder"
        )
    if out_dir.exists() and not overwrite:
        found = _existing_key(out_dir)
        if found == key:
            log.info("%s already holds this pack; nothing to do", out_dir)
            return out_dir
        if (out_dir / MANIFEST).is_file():
            raise CovariateError(
                f"{out_dir} already holds another covariate pack; choose another output folder or pass "
                "--overwrite (overwrite=True) to replace it"
            )
        if any(out_dir.iterdir()):
            raise CovariateError(
                f"{out_dir} is not empty and not a covariate pack; choose another output folder"
            )

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out_dir.name}-", dir=out_dir.parent))
    try:
        raws = _write_raw(source, specs, grid, tmp, tile_size, progress)
        written: list[CovariateSpec] = []
        for spec in specs:
            file = _file_name(spec.name)
            _to_cog(raws[spec.name], tmp / file, encoding_for(spec).nodata)
            raws[spec.name].unlink()
            written.append(dataclasses.replace(spec, file=file, band=1))
        extra = {
            "request_key": key,
            "provenance": {
                "sources": sources,
                "grid": _grid_doc(grid),
                "created": datetime.now(UTC).isoformat(timespec="seconds"),
            },
        }
        write_pack_manifest(tmp, written, name=name, description=description, crs=grid.crs, extra=extra)
        _swap_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote pack %s: %d covariates on a %d x %d grid", out_dir, len(written), grid.width, grid.height)
    return out_dir


def _swap_into_place(tmp: Path, out_dir: Path) -> None:
    """Rename the finished ``tmp`` folder to ``out_dir``, replacing whatever is there."""
    # mkdtemp and mkstemp make owner-only entries; give the pack the permissions of an ordinary new folder.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)
    for f in tmp.iterdir():
        os.chmod(f, 0o666 & ~umask)
    if not out_dir.exists():
        os.replace(tmp, out_dir)
        return
    old = Path(tempfile.mkdtemp(prefix=f".old-{out_dir.name}-", dir=out_dir.parent))
    os.replace(out_dir, old / "pack")
    try:
        os.replace(tmp, out_dir)
    except BaseException:
        os.replace(old / "pack", out_dir)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
