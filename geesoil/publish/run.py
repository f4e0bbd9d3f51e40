"""``geesoil export`` as library calls: a map folder to Cloud Storage, and on to an Earth Engine image asset."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from geesoil.publish.ee_asset import asset_path, image_manifest, parse_asset_id, register
from geesoil.publish.folder import asset_properties, read_map_folder
from geesoil.publish.gcs import CHUNK_SIZE, EE_COG_LOCATIONS, GcsLocation, bucket_location, upload_files

log = logging.getLogger(__name__)


def export_to_gcs(
    folder: Path | str,
    location: GcsLocation,
    client: Any,
    *,
    progress: bool = False,
    chunk_size: int = CHUNK_SIZE,
    **upload_kw: Any,
) -> dict[str, Any]:
    """Upload a map folder's outputs and ``run.json`` to ``location``; returns a summary (JSON-ready).

    ``upload_kw`` goes to :func:`~geesoil.publish.gcs.upload_files` (e.g. ``retry=None``).
    """
    mf = read_map_folder(folder)
    result = upload_files(mf.files, location, client, progress=progress, chunk_size=chunk_size, **upload_kw)
    return {
        "folder": str(mf.path),
        "gcs": str(location),
        "objects": result.uris,
        "uploaded": result.uploaded,
        "skipped": result.skipped,
        "bytes_uploaded": result.bytes_uploaded,
    }


def default_location(asset_id: str, bucket: str, prefix: str | None) -> GcsLocation:
    """``--gcs-bucket``/``--gcs-prefix``, the prefix defaulting to the asset's path (``soc/region_v1``)."""
    from geesoil.publish.gcs import check_bucket, clean_prefix

    return GcsLocation(
        check_bucket(bucket), clean_prefix(prefix) if prefix is not None else asset_path(asset_id)
    )


def export_to_ee_asset(
    folder: Path | str,
    asset_id: str,
    location: GcsLocation,
    client: Any,
    *,
    ingest: bool = False,
    overwrite: bool = False,
    progress: bool = False,
    chunk_size: int = CHUNK_SIZE,
    **upload_kw: Any,
) -> dict[str, Any]:
    """Upload the folder, then register the COGs as one image asset (needs ``ee`` initialised); returns a summary.

    The asset's existence is checked before anything is uploaded, so a refused export costs no transfer.
    ``upload_kw`` goes to :func:`~geesoil.publish.gcs.upload_files`.
    """
    from geesoil.publish.ee_asset import asset_exists
    from geesoil.publish.folder import ExportError

    asset_id = parse_asset_id(asset_id)
    mf = read_map_folder(folder)
    if not overwrite and asset_exists(asset_id):
        raise ExportError(
            f"asset {asset_id} already exists; add --overwrite to replace it or choose another name"
        )
    if not ingest:
        where = bucket_location(client, location.bucket)
        if where is not None and where not in EE_COG_LOCATIONS:
            log.warning(
                "bucket %s is in %s: Earth Engine reads COG-backed assets only from US, us-central1 or a dual-region "
                "with us-central1, so registration will likely fail; use such a bucket or --ingest",
                location.bucket,
                where,
            )
    summary = export_to_gcs(mf.path, location, client, progress=progress, chunk_size=chunk_size, **upload_kw)
    manifest = image_manifest(asset_id, mf, summary["objects"], asset_properties(mf))
    summary.update(register(manifest, ingest=ingest, overwrite=overwrite))
    summary["bands"] = [b["id"] for b in manifest["bands"]]
    return summary
