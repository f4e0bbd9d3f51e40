"""``geesoil covariates``: list catalogs and sources, extract covariates at sample points, build covariate packs."""

from __future__ import annotations

import logging
import math
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import click
import pandas as pd

from cli.ee_commands import ee_check, ee_options, graph, initialize_from_options
from geesoil.covariates.spec import CovariateSpec
from geesoil.errors import CovariateError, GeesoilError

log = logging.getLogger(__name__)

_SOURCE_HELP = (
    "Covariate source: a pack folder (with pack.json), 'starter' (built-in starter pack, built once into the "
    "user cache) or 'ee' (Earth Engine). Repeat to combine, e.g. a global pack plus a regional one."
)


@click.group("covariates")
def covariates() -> None:
    """Covariates: list what is available, extract them at sample points, build local packs.

    \b
    Examples:
      geesoil covariates list
      geesoil covariates list --catalog coarse-global-v1
      geesoil covariates pack --starter -o starter_pack
      geesoil covariates pack --aoi region.gpkg --covariates ee --scale 250 -o region_pack
      geesoil covariates extract --samples topsoil.parquet --covariates starter_pack -o train.parquet
      geesoil covariates ee-check --ee-project my-project
    """


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
    ]
    return "\n".join(lines)


def _spec_rows(specs: Sequence[CovariateSpec]) -> list[list[str]]:
    rows = []
    for s in specs:
        ee = "-"
        if s.ee:
            ee = str(s.ee.get("dataset") or s.ee.get("derived") or "yes")
            if s.ee.get("approximate"):
                ee = "~" + ee
        kind = s.kind if not s.classes else f"{s.kind} ({len(s.classes)})"
        rows.append([s.name, s.group, kind, s.units or "-", ee])
    return rows


@covariates.command("list")
@click.option("--catalog", "catalog", metavar="NAME|FILE", help="List the covariates of this catalog.")
@click.option("--covariates", "sources", metavar="SRC", multiple=True, help=_SOURCE_HELP)
def list_cmd(catalog: str | None, sources: tuple[str, ...]) -> None:
    """List catalogs, or the covariates of a catalog or source, as a table on stdout.

    With no option, lists the shipped catalogs and how many covariates each has. The EE column names the Earth
    Engine dataset ('~' marks an approximate stand-in, '-' none).

    \b
    Examples:
      geesoil covariates list
      geesoil covariates list --catalog coarse-global-v1
      geesoil covariates list --covariates starter
      geesoil covariates list --covariates ../shared/data/covariates --covariates ../shared/data/regional/edgeroi
    """
    from geesoil.covariates.catalog import list_catalogs, load_catalog

    if catalog and sources:
        raise GeesoilError("give either --catalog or --covariates, not both")
    if catalog:
        specs = load_catalog(catalog).covariates
    elif sources:
        from geesoil.covariates.open import open_sources

        specs = open_sources(list(sources), connect=False).specs
    else:
        rows = []
        for name in list_catalogs():
            cat = load_catalog(name)
            desc = cat.description if len(cat.description) <= 70 else cat.description[:67] + "..."
            rows.append([name, str(cat.version), str(len(cat.covariates)), desc])
        if not rows:
            raise CovariateError(
                "no covariate catalogs found (looked in assets/catalogs and $GEESOIL_CATALOG_PATH)"
            )
        click.echo(_table(rows, ["catalog", "version", "covariates", "description"]))
        return
    click.echo(_table(_spec_rows(specs), ["name", "group", "kind", "units", "ee_dataset"]))


def _parse_depth(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, float]:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*", value)
    if not m or float(m.group(1)) >= float(m.group(2)):
        raise click.BadParameter(f"{value!r}: give TOP-BOTTOM in cm, e.g. 0-30")
    top, bottom = float(m.group(1)), float(m.group(2))
    return (int(top) if top.is_integer() else top, int(bottom) if bottom.is_integer() else bottom)


def _write_parquet_atomic(frame: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=out.parent)
    os.close(fd)
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def missing_summary(values: pd.DataFrame, points: pd.DataFrame) -> str | None:
    """One line: how many points lack covariates, which covariates, an example lon/lat; None if complete."""
    miss = values.isna()
    rows = miss.any(axis=1)
    if not rows.any():
        return None
    per = miss.sum()
    per = per[per > 0].sort_values(ascending=False)
    first = points.loc[rows].iloc[0]
    cols = ", ".join(f"{k} {v}" for k, v in per.items())
    return (
        f"{int(rows.sum())} of {len(values)} points lack at least one covariate ({cols}); "
        f"e.g. lon {first['lon']:.4f}, lat {first['lat']:.4f}. They are kept with NaN values."
    )


@covariates.command("extract")
@click.option(
    "--samples",
    "samples_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Sample table (CSV/Parquet with lon, lat, profile id and depths; see 'geesoil samples --help').",
)
@click.option("--covariates", "sources", metavar="SRC", multiple=True, required=True, help=_SOURCE_HELP)
@click.option("--target", default="oc_gkg", show_default=True, help="Target column to keep (g/kg SOC).")
@click.option(
    "--depth",
    default="0-30",
    show_default=True,
    callback=_parse_depth,
    help="Depth interval in cm that horizons are harmonised to.",
)
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Output Parquet file: the samples plus one column per covariate (written atomically).",
)
@ee_options
def extract_cmd(
    samples_path: Path,
    sources: tuple[str, ...],
    target: str,
    depth: tuple[float, float],
    out: Path,
    ee_project: str | None,
    ee_url: str | None,
) -> None:
    """Sample every covariate at the sample locations and write samples + covariates to a Parquet file.

    Continuous covariates are interpolated bilinearly, categorical ones take the class of the pixel the point falls
    in. Points outside a raster or on nodata get NaN; the command reports how many.

    \b
    Examples:
      geesoil covariates extract --samples topsoil.parquet --covariates starter -o train.parquet
      geesoil covariates extract --samples topsoil.parquet --covariates ee --ee-project my-project -o train.parquet
      geesoil covariates extract --samples ../shared/data/soil/edgeroi.parquet --depth 0-30 \\
          --covariates ../shared/data/covariates --covariates ../shared/data/regional/edgeroi -o edgeroi_train.parquet
    """
    try:
        from geesoil.samples import load_samples
    except ModuleNotFoundError as exc:
        if exc.name != "geesoil.samples":
            raise
        raise GeesoilError(
            "sample loading (geesoil.samples) is not available in this geesoil version"
        ) from None
    from geesoil.covariates.open import open_sources

    samples = load_samples(samples_path, target=target, depth=depth)
    source = open_sources(list(sources), connect=False)
    if any(_is_ee(s) for s in sources):
        initialize_from_options(ee_project, ee_url)
    clash = [s.name for s in source.specs if s.name in samples.columns]
    if clash:
        raise CovariateError(
            f"{samples_path}: sample columns {', '.join(clash)} have the names of covariates; rename them in the sample file"
        )
    values = source.sample(samples)
    message = missing_summary(values, samples)
    if message:
        click.echo(f"Warning: {message}", err=True)
    result = pd.concat([samples.reset_index(drop=True), values.reset_index(drop=True)], axis=1)
    _write_parquet_atomic(result, out)
    click.echo(
        f"Wrote {out}: {len(result)} samples x {len(values.columns)} covariates "
        f"({int(values.notna().all(axis=1).sum())} complete)",
        err=True,
    )


def _is_ee(spec: str) -> bool:
    word = spec.strip().lower()
    return word == "ee" or word.startswith("ee:")


@covariates.command("pack")
@click.option(
    "--starter", is_flag=True, help="Build the starter pack (small real global rasters, offline-capable)."
)
@click.option(
    "-o",
    "--output",
    "out",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write the pack (GeoTIFFs + pack.json) into.",
)
@click.option("--force", is_flag=True, help="--starter: rebuild even if the folder already holds a pack.")
@click.option(
    "--aoi",
    metavar="FILE|BBOX",
    help="Area of interest: a polygon file (GeoJSON/GPKG/shapefile, any CRS) or minx,miny,maxx,maxy in degrees.",
)
@click.option(
    "--covariates",
    "sources",
    metavar="SRC",
    multiple=True,
    help="Source to export with --aoi: a pack folder, 'starter' or 'ee[:CATALOG]' (Earth Engine; default "
    "catalog gsoilcpm). Repeat to combine (the first source wins on duplicate names).",
)
@click.option(
    "--scale", type=float, metavar="METRES", help="Pixel size in metres (converted to degrees for EPSG:4326)."
)
@click.option("--crs", metavar="CRS", help="Output CRS, e.g. EPSG:32755; default: the AOI's UTM zone.")
@click.option(
    "--covariate",
    "names",
    multiple=True,
    metavar="NAME",
    help="Only these covariates (repeatable); default: every covariate of the sources.",
)
@click.option(
    "--start", metavar="DATE", help="Earth Engine: start of the composites' date window (ISO date)."
)
@click.option("--end", metavar="DATE", help="Earth Engine: end of the date window (ISO date, exclusive).")
@click.option(
    "--name", "pack_name", default="aoi-pack", show_default=True, help="Name recorded in pack.json."
)
@click.option(
    "--tile-size",
    type=click.IntRange(min=1),
    default=1024,
    show_default=True,
    help="Side in pixels of the tiles read from the source at once (bounds memory).",
)
@click.option("--overwrite", is_flag=True, help="Replace a different pack in the output folder.")
@click.option("--yes", is_flag=True, help="Export even a grid with more pixels than the safety limit.")
@ee_options
def pack_cmd(
    starter: bool,
    out: Path,
    force: bool,
    aoi: str | None,
    sources: tuple[str, ...],
    scale: float | None,
    crs: str | None,
    names: tuple[str, ...],
    start: str | None,
    end: str | None,
    pack_name: str,
    tile_size: int,
    overwrite: bool,
    yes: bool,
    ee_project: str | None,
    ee_url: str | None,
) -> None:
    """Build a local covariate pack: a folder of Cloud-Optimized GeoTIFFs plus a pack.json manifest.

    With --aoi, every covariate of the sources is read on a grid covering the AOI (at --scale metres, in the AOI's
    UTM zone unless --crs says otherwise) and written tile by tile. The pack appears complete or not at all;
    running the same command again on a finished pack does nothing.

    \b
    Examples:
      geesoil covariates pack --starter -o starter_pack
      geesoil covariates pack --aoi region.gpkg --covariates ee --scale 250 --ee-project my-project -o region_pack
      geesoil covariates pack --aoi 149.2,-30.7,150.0,-29.9 --covariates ../shared/data/covariates \\
          --scale 1000 --covariate elevation --covariate koppen -o edgeroi_pack
      geesoil covariates list --covariates region_pack
    """
    aoi_mode = aoi is not None or bool(sources) or scale is not None
    if starter and aoi_mode:
        raise GeesoilError("give either --starter or --aoi/--covariates/--scale, not both")
    if starter:
        _build_starter(out, force=force or overwrite)
        return
    if not aoi_mode:
        raise GeesoilError(
            "say which pack to build: --starter (e.g. geesoil covariates pack --starter -o starter_pack) or "
            "--aoi AOI --covariates SRC --scale METRES"
        )
    missing = [opt for opt, val in (("--aoi", aoi), ("--covariates", sources), ("--scale", scale)) if not val]
    if missing:
        raise GeesoilError(
            f"an AOI pack needs {', '.join(missing)} too (--aoi AOI --covariates SRC --scale METRES)"
        )
    assert aoi is not None and scale is not None
    if not (scale > 0 and math.isfinite(scale)):
        raise GeesoilError(f"--scale {scale:g}: give a positive pixel size in metres")
    if (start or end) and not any(_is_ee(s) for s in sources):
        raise GeesoilError("--start/--end set the Earth Engine date window; they need --covariates ee")

    from geesoil.covariates.export import export_pack, open_for_export
    from geesoil.mapping.aoi import aoi_grid, check_size, default_crs, read_aoi, resolution_in

    area = read_aoi(aoi)
    crs = crs or default_crs(area)
    try:
        resolution = resolution_in(scale, crs)
    except Exception as exc:  # pyproj's CRSError for words it cannot parse
        raise GeesoilError(
            f"--crs {crs!r}: not a CRS pyproj understands ({exc}); give e.g. EPSG:32755"
        ) from None
    grid = aoi_grid(area, crs, resolution)
    source = open_for_export(list(sources), start=start, end=end)
    selected = list(names) or None
    if selected:
        known = {s.name for s in source.specs}
        unknown = [n for n in selected if n not in known]
        if unknown:
            raise CovariateError(
                f"unknown covariate(s) {', '.join(unknown)} in --covariate; the sources have: {', '.join(sorted(known))}"
            )
    check_size(grid, yes=yes)
    if any(_is_ee(s) for s in sources):
        initialize_from_options(ee_project, ee_url)
    folder = export_pack(
        source, grid, out, names=selected, name=pack_name, tile_size=tile_size, overwrite=overwrite
    )
    from geesoil.covariates.pack import read_pack

    pack = read_pack(folder)
    click.echo(
        f"Pack ready in {folder}: {len(pack.covariates)} covariates on a {grid.width} x {grid.height} grid "
        f"({grid.crs}, {scale:g} m)",
        err=True,
    )


def _build_starter(out: Path, *, force: bool) -> None:
    try:
        from geesoil.covariates.starter import build_starter_pack
    except ModuleNotFoundError as exc:
        if exc.name != "geesoil.covariates.starter":
            raise
        raise GeesoilError("the starter pack builder is not available in this geesoil version") from None
    from geesoil.covariates.open import cache_dir
    from geesoil.covariates.pack import read_pack

    folder = Path(build_starter_pack(out, cache_dir=cache_dir(), force=force))
    pack = read_pack(folder)
    click.echo(
        f"Starter pack ready in {folder}: {len(pack.covariates)} covariates ({', '.join(pack.by_name())})",
        err=True,
    )


# Earth Engine commands live beside the EE code (cli/ee_commands.py) but belong to this group.
covariates.add_command(ee_check)
covariates.add_command(graph)
