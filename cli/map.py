"""``geesoil map``: predict a SOC map for an area of interest into a folder of COGs."""

from __future__ import annotations

from pathlib import Path

import click

from geesoil.errors import GeesoilError


@click.command("map")
@click.option(
    "--aoi",
    required=True,
    metavar="FILE|BBOX",
    help="Area of interest: a GeoJSON/GPKG/shapefile of polygons, or minx,miny,maxx,maxy in WGS84 degrees.",
)
@click.option(
    "--model",
    "model",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Model file (.geesoil). Default: the shipped model in assets/models/ matching the covariates.",
)
@click.option(
    "--covariates",
    "covariates",
    multiple=True,
    metavar="SRC",
    help="Covariate source: a pack folder, 'starter' or 'ee'; repeat to combine. Default: starter.",
)
@click.option(
    "--scale", type=float, metavar="METRES", help="Pixel size in metres. Default: the covariates' finest."
)
@click.option("--crs", metavar="CRS", help="Output CRS (e.g. EPSG:32755). Default: the AOI's UTM zone.")
@click.option("--tile-size", default=512, show_default=True, type=int, help="Pixels per tile side.")
@click.option("--overwrite", is_flag=True, help="Redo every tile, even those a previous run finished.")
@click.option(
    "--alpha", default=0.1, show_default=True, type=float, help="Interval level: 0.1 gives p05/p95."
)
@click.option("--std", "std", is_flag=True, help="Also write soc_std.tif (predictive standard deviation).")
@click.option("--aoa", "aoa", is_flag=True, help="Also write aoa.tif (area of applicability, 1 = inside).")
@click.option(
    "--samples",
    type=click.Path(path_type=Path),
    metavar="FILE",
    help="Regional samples (horizons or 0-30 cm table): fine-tune the model on them before mapping; the "
    "fine-tuned model is kept in the output folder and reused by reruns. Also the --aoa training data.",
)
@click.option(
    "--strategy",
    metavar="NAME",
    help="How to fine-tune on --samples (see 'geesoil finetune --help'). Default: auto.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed for fine-tuning.")
@click.option("--target", default="oc_gkg", show_default=True, help="Target column of --samples.")
@click.option("--yes", is_flag=True, help="Map grids larger than the size guard (200 M pixels).")
@click.option(
    "--dask-workers",
    type=int,
    metavar="N",
    help="Predict tiles on a local dask cluster of N worker processes.",
)
@click.option(
    "--scheduler",
    metavar="URL",
    help="Predict tiles on a running dask scheduler (tcp://host:port); workers must see -o's folder.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path), help="Output folder.")
def map(  # the command is called map (shadows the builtin here only)
    aoi: str,
    model: Path | None,
    covariates: tuple[str, ...],
    scale: float | None,
    crs: str | None,
    tile_size: int,
    overwrite: bool,
    alpha: float,
    std: bool,
    aoa: bool,
    samples: Path | None,
    strategy: str | None,
    seed: int,
    target: str,
    yes: bool,
    dask_workers: int | None,
    scheduler: str | None,
    quiet: bool,
    out: Path,
) -> None:
    """Predict SOC (g/kg) over an AOI: soc_mean.tif (mean), soc_p50.tif (median; not for rf models), soc_pXX.tif
    interval bounds, quicklook.png, run.json.

    Without --model the shipped global model matching the covariates is used; with --samples it is first
    fine-tuned on your regional samples (strategy auto by default: chosen by nested spatial CV among transfer
    strategies and regional forests). Tiles are kept in OUT/.tiles, so rerunning after an interruption only
    predicts the missing ones. A summary (valid pixels, mean SOC, area) is printed as JSON on stdout.

    \b
    Examples:
      geesoil map --aoi assets/aois/edgeroi.geojson --model my.geesoil -o edgeroi_map
      geesoil map --aoi 149.5,-30.3,150,-30 --model my.geesoil --covariates pack/ --scale 250 --std -o out
      geesoil map --aoi region.gpkg --samples my_profiles.csv --aoa -o out     # fine-tune, then map
    """
    import json

    from geesoil.mapping.run import MapRequest, execute, plan_map

    req = MapRequest(
        aoi=aoi,
        out=out,
        model=model,
        covariates=tuple(covariates),
        scale=scale,
        crs=crs,
        tile_size=tile_size,
        overwrite=overwrite,
        alpha=alpha,
        std=std,
        aoa=aoa,
        samples=samples,
        strategy=strategy,
        seed=seed,
        target=target,
        yes=yes,
        progress=not quiet,
        dask_workers=dask_workers,
        scheduler=scheduler,
    )
    try:
        plan = plan_map(req)
    except GeesoilError as exc:
        raise click.exceptions.Exit(_fail(exc)) from None
    click.echo(f"covariates: {plan.source_label}", err=True)
    for note in plan.notes:
        click.echo(note, err=True)
    g = plan.grid
    click.echo(
        f"grid: {g.width} × {g.height} pixels in {g.crs} at {g.resolution[0]:g} {'°' if g.crs == 'EPSG:4326' else 'm'}",
        err=True,
    )
    if plan.aoa_from:
        click.echo(f"area of applicability from the {plan.aoa_from}", err=True)
    try:
        doc = execute(plan)
    except GeesoilError as exc:
        raise click.exceptions.Exit(_fail(exc)) from None
    click.echo(json.dumps({"out": str(out), **doc["pixels"], **doc["summary"]}))


def _fail(exc: GeesoilError) -> int:
    """One line on stderr and exit code 2 (also when the command runs outside the geesoil group)."""
    click.echo(f"Error: {exc}", err=True)
    return 2
