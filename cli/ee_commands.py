"""``geesoil covariates graph`` (and friends): thin click commands over :mod:`geesoil.ee`."""

from __future__ import annotations

import click

from geesoil.covariates.catalog import load_catalog
from geesoil.ee.expressions import DEFAULT_END, DEFAULT_START, catalog_image, image_graph
from geesoil.ee.offline import initialize_offline


@click.command("graph")
@click.option(
    "--catalog",
    "catalog_name",
    default="gsoilcpm",
    show_default=True,
    help="Catalog name (assets/catalogs/<name>.json) or path to a catalog JSON file.",
)
@click.option(
    "--start", default=DEFAULT_START, show_default=True, help="Start of the date window (ISO date)."
)
@click.option(
    "--end", default=DEFAULT_END, show_default=True, help="End of the date window (ISO date, exclusive)."
)
@click.option(
    "--covariate",
    "names",
    multiple=True,
    help="Only these covariates (repeatable); default: every covariate of the catalog.",
)
@click.option("--pretty/--compact", default=True, show_default=True, help="Indent the JSON.")
def graph(catalog_name: str, start: str, end: str, names: tuple[str, ...], pretty: bool) -> None:
    """Print the Earth Engine expression graph (JSON) of a catalog's multi-band image; needs no network or login.

    \b
    Examples:
      geesoil covariates graph > gsoilcpm_graph.json
      geesoil covariates graph --start 2015-01-01 --end 2020-01-01 --covariate evi_mean
    """
    catalog = load_catalog(catalog_name)
    specs = catalog.select(list(names)) if names else catalog.covariates
    initialize_offline()
    click.echo(image_graph(catalog_image(specs, start, end), pretty=pretty))
