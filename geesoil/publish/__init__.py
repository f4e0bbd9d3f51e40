"""Publishing a map folder: upload its files to Cloud Storage and register them as an Earth Engine image asset.

:mod:`~geesoil.publish.folder` reads what ``geesoil map`` wrote (``run.json``, the COG layers);
:mod:`~geesoil.publish.gcs` uploads files idempotently (same size and CRC32C: skipped);
:mod:`~geesoil.publish.ee_asset` builds the image manifest and registers a COG-backed asset (or starts an ingestion);
:mod:`~geesoil.publish.run` ties them together for ``geesoil export``.
"""
