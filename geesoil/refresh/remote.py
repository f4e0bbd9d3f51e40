"""A published refresh version, copied on to Cloud Storage and/or registered as an Earth Engine image asset.

Targets of version ``v3`` for ``output.gcs = "gs://b/soc/edge"`` and ``output.ee_asset = "projects/p/assets/edge"``:
objects ``gs://b/soc/edge/v3/<file>`` and the asset ``projects/p/assets/edge_v3`` (asset ids cannot hold '.', so
the version is joined with '_'). Uploads skip objects whose size and CRC32C already match and the asset is
registered with ``overwrite`` (the id belongs to this job's version), so retrying after a failure is safe.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from geesoil.publish.gcs import GcsLocation

log = logging.getLogger(__name__)


def asset_for(remote: dict[str, str], version: str) -> str | None:
    """``projects/P/assets/NAME`` → ``projects/P/assets/NAME_<version>`` (None without ``ee_asset``)."""
    return f"{remote['ee_asset']}_{version}" if "ee_asset" in remote else None


def gcs_location(remote: dict[str, str], version: str) -> GcsLocation | None:
    """Where ``version``'s files go: ``<gcs prefix>/<version>``, else (ee_asset only) ``gcs_bucket``/asset path."""
    from geesoil.publish.gcs import parse_gcs_url
    from geesoil.publish.run import default_location

    if "gcs" in remote:
        loc = parse_gcs_url(remote["gcs"])
        return GcsLocation(loc.bucket, f"{loc.prefix}/{version}" if loc.prefix else version)
    asset = asset_for(remote, version)
    if asset is not None:
        return default_location(asset, remote["gcs_bucket"], None)
    return None


def targets(remote: dict[str, str], version: str) -> dict[str, str]:
    """The version's remote targets, as recorded in the manifest (a changed target means: publish again)."""
    out: dict[str, str] = {}
    loc = gcs_location(remote, version)
    if loc is not None:
        out["gcs"] = str(loc)
    asset = asset_for(remote, version)
    if asset is not None:
        out["ee_asset"] = asset
    return out


def needs_publish(remote: dict[str, str], entry: dict[str, Any]) -> bool:
    """True when the job has remote targets that ``entry`` has not reached yet (never tried, failed, or moved)."""
    if not remote:
        return False
    done = entry.get("remote") or {}
    return done.get("status") != "published" or done.get("targets") != targets(remote, entry["version"])


def _ee_project(remote: dict[str, str]) -> str:
    return remote.get("ee_project") or remote["ee_asset"].split("/")[1]


def publish_remote(
    remote: dict[str, str], folder: Path, version: str, *, client: Any = None, progress: bool = False
) -> dict[str, Any]:
    """Upload ``folder`` (a published version) to the job's targets; returns what the manifest records.

    ``client`` is a ``google.cloud.storage.Client`` (default: built from ``gcs_endpoint`` or the environment's
    credentials). Raises on failure (the caller records it); a rerun redoes only what is missing.
    """
    from geesoil.publish.gcs import storage_client
    from geesoil.publish.run import export_to_ee_asset, export_to_gcs

    loc = gcs_location(remote, version)
    asset = asset_for(remote, version)
    assert loc is not None
    if client is None:
        client = storage_client(endpoint=remote.get("gcs_endpoint"))
    record: dict[str, Any] = {"targets": targets(remote, version)}
    if asset is None:
        summary = export_to_gcs(folder, loc, client, progress=progress)
    else:
        from geesoil.ee.auth import initialize

        initialize(project=_ee_project(remote))
        summary = export_to_ee_asset(folder, asset, loc, client, overwrite=True, progress=progress)
        record["ee_asset"] = asset
    record["gcs"] = str(loc)
    record["objects"] = summary["objects"]
    record["uploaded"] = len(summary["uploaded"])
    record["skipped"] = len(summary["skipped"])
    log.info(
        "%s: %d files uploaded, %d already there%s",
        loc,
        record["uploaded"],
        record["skipped"],
        f"; registered {asset}" if asset else "",
    )
    return record


__all__ = ["asset_for", "gcs_location", "needs_publish", "publish_remote", "targets"]
