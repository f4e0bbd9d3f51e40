"""``geesoil export``: publish a map folder to Cloud Storage, and as an Earth Engine image asset."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.ee_commands import ee_options
from geesoil.publish.folder import ExportError

EE_ASSET = "ee-asset"


@click.command("export")
@click.option(
    "--to",
    "to",
    required=True,
    metavar="gs://BUCKET/PREFIX|ee-asset",
    help="Where to: a Cloud Storage folder (gs:// or gcs://), or 'ee-asset' followed by the asset id.",
)
@click.argument("args", nargs=-1, required=True, metavar="[ASSET_ID] DIR")
@click.option(
    "--gcs-bucket", metavar="BUCKET", help="ee-asset: the bucket the COGs go to (US or us-central1)."
)
@click.option(
    "--gcs-prefix",
    metavar="PREFIX",
    help="ee-asset: object-name prefix. Default: the asset's path (soc/region_v1).",
)
@click.option(
    "--ingest",
    is_flag=True,
    help="ee-asset: start an ingestion task (pixels copied into Earth Engine) instead of a COG-backed asset.",
)
@click.option("--overwrite", is_flag=True, help="ee-asset: replace an existing asset of that id.")
@click.option(
    "--gcs-endpoint",
    metavar="URL",
    envvar="GEESOIL_GCS_ENDPOINT",
    help="Cloud Storage API endpoint for an emulator (anonymous access). Env: GEESOIL_GCS_ENDPOINT.",
)
@click.option(
    "--progress/--no-progress", default=True, show_default=True, help="Upload progress bar on stderr."
)
@ee_options
def export(
    to: str,
    args: tuple[str, ...],
    gcs_bucket: str | None,
    gcs_prefix: str | None,
    ingest: bool,
    overwrite: bool,
    gcs_endpoint: str | None,
    progress: bool,
    ee_project: str | None,
    ee_url: str | None,
) -> None:
    """Upload a `geesoil map` output folder DIR to Cloud Storage, and optionally register it in Earth Engine.

    Uploads the COGs, quicklook.png and run.json as PREFIX/<file> (never .tiles/); files already there with the
    same size and CRC32C are skipped, so rerunning finishes an interrupted export. With ee-asset the COGs then
    become one image asset with a band per layer (soc_mean, soc_p50, soc_p05, soc_p95, ...) and properties from run.json
    (model, covariates, mean SOC, area, alpha, geesoil version, creation time). A summary is printed as JSON.

    \b
    Examples:
      geesoil export --to gs://my-soc-maps/region_v1 region_map
      geesoil export --to ee-asset projects/my-ee-project/assets/soc/region_v1 region_map \\
          --gcs-bucket my-soc-maps --ee-project my-ee-project
      geesoil export --to ee-asset projects/my-ee-project/assets/soc/region_v1 region_map \\
          --gcs-bucket my-soc-maps --ingest --overwrite

    Credentials are found as for the Earth Engine commands (GOOGLE_APPLICATION_CREDENTIALS, `earthengine
    authenticate` or gcloud's application-default login); the account needs write access to the bucket.
    """
    from geesoil.publish import run as publish
    from geesoil.publish.gcs import parse_gcs_url, storage_client

    if to == EE_ASSET:
        if len(args) != 2:
            raise ExportError(
                "--to ee-asset needs the asset id and the map folder: "
                "geesoil export --to ee-asset projects/P/assets/NAME DIR --gcs-bucket BUCKET"
            )
        asset_id, folder = args
        from geesoil.publish.ee_asset import parse_asset_id

        parse_asset_id(asset_id)
        if not gcs_bucket:
            raise ExportError("--to ee-asset needs --gcs-bucket BUCKET: the COGs are uploaded there first")
        location = publish.default_location(asset_id, gcs_bucket, gcs_prefix)
        publish.read_map_folder(Path(folder))  # a bad folder fails before Earth Engine starts
        from cli.ee_commands import initialize_from_options

        login = initialize_from_options(ee_project, ee_url)
        client = storage_client(login.credentials, ee_project or login.project, gcs_endpoint)
        summary = publish.export_to_ee_asset(
            Path(folder), asset_id, location, client, ingest=ingest, overwrite=overwrite, progress=progress
        )
    else:
        if len(args) != 1:
            raise ExportError(f"--to {to} takes one map folder, got {len(args)} arguments: {' '.join(args)}")
        if gcs_bucket or gcs_prefix or ingest or overwrite:
            raise ExportError(
                "--gcs-bucket, --gcs-prefix, --ingest and --overwrite are for --to ee-asset; "
                "with --to gs://BUCKET/PREFIX the bucket and prefix are in the URL"
            )
        location = parse_gcs_url(to)
        folder = args[0]
        publish.read_map_folder(Path(folder))
        if gcs_endpoint:
            client = storage_client(endpoint=gcs_endpoint)
        else:
            from geesoil.ee.auth import find_login, resolve_project

            login = find_login()
            client = storage_client(login.credentials, resolve_project(ee_project, login))
        summary = publish.export_to_gcs(Path(folder), location, client, progress=progress)
    click.echo(json.dumps(summary, indent=2))
