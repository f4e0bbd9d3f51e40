"""``geesoil covariates``: list catalogs and sources, extract covariates at sample points, build covariate packs."""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import click
import pandas as pd

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
      geesoil covariates extract --samples topsoil.parquet --covariates starter_pack -o train.parquet
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
def extract_cmd(
    samples_path: Path, sources: tuple[str, ...], target: str, depth: tuple[float, float], out: Path
) -> None:
    """Sample every covariate at the sample locations and write samples + covariates to a Parquet file.

    Continuous covariates are interpolated bilinearly, categorical ones take the class of the pixel the point falls
    in. Points outside a raster or on nodata get NaN; the command reports how many.

    \b
    Examples:
      geesoil covariates extract --samples topsoil.parquet --covariates starter -o train.parquet
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
    source = open_sources(list(sources))
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
@click.option("--force", is_flag=True, help="Rebuild even if the folder already holds a pack.")
@click.option(
    "--aoi",
    metavar="FILE",
    help="Area of interest (vector file) for an Earth Engine pack [not yet available].",
)
@click.option(
    "--covariates", "source", metavar="SRC", help="Source to export from, e.g. 'ee' [not yet available]."
)
@click.option("--scale", type=float, metavar="M", help="Pixel size in metres for --aoi [not yet available].")
def pack_cmd(
    starter: bool, out: Path, force: bool, aoi: str | None, source: str | None, scale: float | None
) -> None:
    """Build a local covariate pack: a folder of GeoTIFFs plus a pack.json manifest.

    \b
    Examples:
      geesoil covariates pack --starter -o starter_pack
      geesoil covariates list --covariates starter_pack
    Later: geesoil covariates pack --aoi region.gpkg --covariates ee --scale 250 -o region_pack
    """
    if aoi or source or scale is not None:
        raise GeesoilError(
            "exporting an AOI pack (--aoi/--covariates/--scale) is not yet available; use --starter, "
            "or pass --covariates ee directly to 'geesoil covariates extract'"
        )
    if not starter:
        raise GeesoilError(
            "say which pack to build: --starter (e.g. geesoil covariates pack --starter -o starter_pack)"
        )
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
