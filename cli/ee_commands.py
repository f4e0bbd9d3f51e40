"""Earth Engine commands and options: ``graph`` (offline expression graph), ``ee-check`` (login), ``ee_options``.

Thin click layer over :mod:`geesoil.ee`: other commands that talk to Earth Engine decorate themselves with
:func:`ee_options` and call :func:`initialize_from_options` before any request.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from geesoil.covariates.catalog import load_catalog
from geesoil.ee import auth
from geesoil.ee.expressions import DEFAULT_END, DEFAULT_START, catalog_image, image_graph, split_buildable
from geesoil.ee.offline import initialize_offline
from geesoil.errors import CovariateError


def ee_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--ee-project`` and ``--ee-url`` (read also from ``$GEESOIL_EE_PROJECT`` / ``$GEESOIL_EE_URL``)."""
    f = click.option(
        "--ee-url",
        envvar=auth.URL_ENV,
        default=None,
        metavar="URL",
        help=f"Earth Engine endpoint; 'highvolume' = {auth.HIGH_VOLUME_URL} (many small parallel requests). "
        f"Env: {auth.URL_ENV}.",
    )(f)
    f = click.option(
        "--ee-project",
        envvar=auth.PROJECT_ENV,
        default=None,
        metavar="PROJECT",
        help=f"Cloud project registered for Earth Engine. Env: {auth.PROJECT_ENV}; default: the project saved by "
        "`earthengine set_project` or the service account's.",
    )(f)
    return f


def initialize_from_options(ee_project: str | None, ee_url: str | None) -> auth.Login:
    """``auth.initialize`` with the values of :func:`ee_options` (``highvolume`` expands to the endpoint URL)."""
    url = auth.HIGH_VOLUME_URL if ee_url in ("highvolume", "high-volume") else ee_url
    return auth.initialize(project=ee_project, url=url)


@click.command("ee-check")
@ee_options
def ee_check(ee_project: str | None, ee_url: str | None) -> None:
    """Check the Earth Engine login: find credentials and project, start a session, print what was used.

    \b
    Examples:
      geesoil covariates ee-check --ee-project my-ee-project
      GOOGLE_APPLICATION_CREDENTIALS=key.json geesoil covariates ee-check --ee-url highvolume
    """
    import ee

    login = initialize_from_options(ee_project, ee_url)
    state = ee.data._get_state()
    click.echo(
        f"Earth Engine ready: project {state.cloud_api_user_project}, {state.cloud_api_base_url}, {login.source}"
    )


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
    if names:
        specs = catalog.select(list(names))  # asked for by name: a missing recipe is an error
    else:
        specs, skipped = split_buildable(catalog.covariates)
        if skipped:
            click.echo(
                f"Warning: skipping covariates without an Earth Engine recipe: {', '.join(skipped)}", err=True
            )
        if not specs:
            raise CovariateError(f"catalog {catalog.name!r} has no covariate with an Earth Engine recipe")
    initialize_offline()
    click.echo(image_graph(catalog_image(specs, start, end), pretty=pretty))
