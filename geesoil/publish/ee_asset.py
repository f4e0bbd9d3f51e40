"""A map's COGs on Cloud Storage as one Earth Engine image asset: one band per layer, properties from ``run.json``.

Earth Engine can back one image asset with several COGs, one per band (an ``ImageManifest`` with one tileset per
file and ``bands`` pointing at them): :func:`register` submits it with ``image:importExternal`` (a COG-backed
asset: no copy, ready at once, reads the bucket) or, with ``ingest=True``, ``image:import`` (an ingestion task that
copies the pixels into Earth Engine storage; the bucket can be deleted afterwards). The bucket must be in the ``US``
multi-region or ``us-central1`` for COG-backed assets (an Earth Engine rule).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from geesoil.errors import EarthEngineError
from geesoil.publish.folder import ExportError, MapFolder

log = logging.getLogger(__name__)

#: ``projects/<cloud project>/assets/<path>``: project ids are 6–30 characters (lowercase letters, digits, '-',
#: starting with a letter, optionally ``domain.com:`` scoped); path parts are letters, digits, '_' and '-'.
_ASSET_RE = re.compile(
    r"^projects/(?P<project>(?:[a-z0-9.-]+\.[a-z]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9])"
    r"/assets/(?P<path>[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*)$"
)
_EXAMPLE = "projects/my-ee-project/assets/soc/region_v1"


def parse_asset_id(text: str) -> str:
    """Check ``projects/<project>/assets/<path>`` and return it; :class:`ExportError` naming the fix otherwise."""
    m = _ASSET_RE.match(text)
    if m:
        return text
    if text.startswith("users/"):
        why = "legacy users/ asset ids are not supported"
    elif not text.startswith("projects/") or "/assets/" not in text:
        why = "expected projects/<project>/assets/<name>"
    elif not re.match(r"^projects/(?:[a-z0-9.-]+\.[a-z]+:)?[a-z][a-z0-9-]{4,28}[a-z0-9]/", text):
        why = "the project part is not a Cloud project id (6-30 lowercase letters, digits or '-')"
    else:
        why = "the asset name may hold only letters, digits, '_', '-' and '/' between parts"
    raise ExportError(f"asset id {text!r}: {why}; give e.g. {_EXAMPLE}")


def asset_path(asset_id: str) -> str:
    """The part after ``/assets/`` (a default object prefix on Cloud Storage)."""
    return parse_asset_id(asset_id).split("/assets/", 1)[1]


def image_manifest(
    asset_id: str, folder: MapFolder, uris: Mapping[str, str], properties: Mapping[str, Any]
) -> dict[str, Any]:
    """The ``ImageManifest``: one tileset per COG, one band per tileset, nodata as missing data, start time."""
    tilesets, bands = [], []
    for layer in folder.layers:
        uri = uris.get(layer.path.name)
        if uri is None:
            raise ExportError(f"{layer.path}: not uploaded, so it cannot back band {layer.band!r}")
        tilesets.append({"id": layer.band, "sources": [{"uris": [uri]}]})
        band: dict[str, Any] = {
            "id": layer.band,
            "tilesetId": layer.band,
            "tilesetBandIndex": 0,
            "pyramidingPolicy": "MODE" if layer.categorical else "MEAN",
        }
        if layer.nodata is not None:
            band["missingData"] = {"values": [layer.nodata]}
        bands.append(band)
    return {
        "name": parse_asset_id(asset_id),
        "tilesets": tilesets,
        "bands": bands,
        "properties": dict(properties),
        "startTime": folder.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())


def asset_exists(asset_id: str) -> bool:
    """Whether the asset exists (Earth Engine answers 404 → False)."""
    import ee
    import googleapiclient.errors
    from ee import _cloud_api_utils

    # ee.data.getAsset turns a 404 into a bare EEException; ask the REST resource directly to see the status.
    try:
        ee.data._get_cloud_projects().assets().get(
            name=_cloud_api_utils.convert_asset_id_to_asset_name(asset_id), prettyPrint=False
        ).execute(num_retries=0)
    except googleapiclient.errors.HttpError as exc:
        if exc.resp.status == 404:
            return False
        raise EarthEngineError(f"cannot look up {asset_id} ({_one_line(exc._get_reason())})") from None
    return True


def register(manifest: dict[str, Any], *, ingest: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Register the COG-backed asset (or start an ingestion task with ``ingest``); needs ``ee`` initialised.

    Refuses (:class:`ExportError`) when the asset exists and ``overwrite`` is False. Returns
    ``{"asset": id, "mode": "cog" | "ingest", "task": id or None}``.
    """
    import ee

    asset_id = manifest["name"]
    if asset_exists(asset_id) and not overwrite:
        raise ExportError(
            f"asset {asset_id} already exists; add --overwrite to replace it or choose another name"
        )
    try:
        if ingest:
            task = ee.data.startIngestion(ee.data.newTaskId()[0], manifest, allow_overwrite=overwrite)
            log.info("started ingestion task %s for %s", task.get("id"), asset_id)
            return {"asset": asset_id, "mode": "ingest", "task": task.get("id")}
        ee.data.startExternalImageIngestion(manifest, allow_overwrite=overwrite)
    except ee.EEException as exc:
        raise EarthEngineError(f"Earth Engine refused to create {asset_id}: {_one_line(exc)}") from None
    log.info("registered COG-backed asset %s", asset_id)
    return {"asset": asset_id, "mode": "cog", "task": None}
