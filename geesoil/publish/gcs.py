"""Idempotent uploads to Cloud Storage: ``<prefix>/<file>`` objects, skipped when size and CRC32C already match.

Uses ``google-cloud-storage``'s client: multipart uploads up to its 8 MiB limit, resumable uploads in
:data:`CHUNK_SIZE` chunks above it (each chunk retried on its own, so a large COG survives a flaky link). A rerun
lists the prefix once and uploads only files whose object is missing or differs, so an interrupted export is
finished by running it again.
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geesoil.publish.folder import ExportError

log = logging.getLogger(__name__)

#: Resumable chunk size (files above the client's 8 MiB multipart limit): a multiple of 256 KiB, as GCS requires.
CHUNK_SIZE = 16 * 256 * 1024
CONTENT_TYPES = {".tif": "image/tiff", ".png": "image/png", ".json": "application/json"}
#: Bucket names: 3–63 characters (up to 222 with dots), lowercase letters, digits, ``-``, ``_`` and ``.``.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_SCHEMES = ("gs://", "gcs://")
_CLIENT_DEFAULT = object()  # keep google-cloud-storage's own retry policy


@dataclass(frozen=True)
class GcsLocation:
    """A bucket and an object-name prefix (no leading or trailing ``/``; may be empty)."""

    bucket: str
    prefix: str = ""

    def object_name(self, file_name: str) -> str:
        return f"{self.prefix}/{file_name}" if self.prefix else file_name

    def uri(self, file_name: str) -> str:
        return f"gs://{self.bucket}/{self.object_name(file_name)}"

    def __str__(self) -> str:
        return f"gs://{self.bucket}/{self.prefix}".rstrip("/")


def check_bucket(bucket: str, where: str = "--gcs-bucket") -> str:
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise ExportError(
            f"{where}: {bucket!r} is not a Cloud Storage bucket name (lowercase letters, digits, '-', '_', '.'; "
            "3-63 characters); give e.g. my-soc-maps"
        )
    return bucket


def clean_prefix(prefix: str | None, where: str = "--gcs-prefix") -> str:
    text = (prefix or "").strip("/")
    if any(part in ("", ".", "..") for part in text.split("/")) and text:
        raise ExportError(f"{where}: {prefix!r} has an empty, '.' or '..' part; give e.g. soc/region-v1")
    if any(ord(c) < 32 for c in text) or len(text.encode()) > 900:
        raise ExportError(f"{where}: {prefix!r} is not a usable object-name prefix; give e.g. soc/region-v1")
    return text


def parse_gcs_url(text: str) -> GcsLocation:
    """``gs://BUCKET/PREFIX`` or ``gcs://BUCKET/PREFIX`` → :class:`GcsLocation`; :class:`ExportError` otherwise."""
    scheme = next((s for s in _SCHEMES if text.startswith(s)), None)
    if scheme is None:
        raise ExportError(
            f"--to {text!r}: expected gs://BUCKET/PREFIX (or ee-asset); e.g. gs://my-soc-maps/region"
        )
    bucket, _, prefix = text[len(scheme) :].partition("/")
    return GcsLocation(check_bucket(bucket, f"--to {text}"), clean_prefix(prefix, f"--to {text}"))


def crc32c_b64(path: Path) -> str:
    """CRC32C of a file as Cloud Storage reports it (base64 of the big-endian 4 bytes)."""
    import google_crc32c

    c = google_crc32c.Checksum()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            c.update(chunk)
    return base64.b64encode(c.digest()).decode()


def storage_client(credentials: Any = None, project: str | None = None, endpoint: str | None = None) -> Any:
    """A ``google.cloud.storage.Client``; ``endpoint`` (an emulator's URL) → anonymous credentials.

    ``project`` only bills bucket-level calls; object uploads and listings do not need it, so a missing one is
    passed as ``"<none>"`` instead of letting the client probe the environment (which hangs without network).
    """
    from google.cloud import storage

    if endpoint:
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=project or "<none>",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": endpoint.rstrip("/")},
        )
    return storage.Client(project=project or "<none>", credentials=credentials)


@dataclass
class UploadResult:
    """What an upload did: object URIs by file name, and which files went up or were already there."""

    location: GcsLocation
    uris: dict[str, str] = field(default_factory=dict)
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    bytes_uploaded: int = 0


def _explain(exc: Exception, location: GcsLocation) -> ExportError:
    from google.api_core import exceptions as gexc

    msg = " ".join(str(getattr(exc, "message", None) or exc).split())
    if isinstance(exc, gexc.NotFound):
        return ExportError(
            f"{location}: bucket {location.bucket!r} not found ({msg}); create it or fix the name"
        )
    if isinstance(exc, gexc.Forbidden | gexc.Unauthorized):
        return ExportError(
            f"{location}: not allowed to write ({msg}); grant the account Storage Object Admin on the bucket"
        )
    return ExportError(f"{location}: Cloud Storage refused the request ({type(exc).__name__}: {msg})")


#: Bucket locations Earth Engine reads COG-backed assets from (``US``, ``us-central1`` and the predefined
#: dual-region ``NAM4`` = us-central1 + us-east1; custom dual-regions report ``US``). Ingestion reads any bucket.
EE_COG_LOCATIONS = frozenset({"US", "US-CENTRAL1", "NAM4"})


def bucket_location(client: Any, bucket: str) -> str | None:
    """The bucket's location (``US``, ``EUROPE-WEST1``...), or None when it cannot be read (no permission...)."""
    from google.api_core import exceptions as gexc

    try:
        return (client.get_bucket(bucket).location or "").upper() or None
    except (gexc.GoogleAPIError, OSError) as exc:
        log.debug("cannot read the location of bucket %s: %s", bucket, exc)
        return None


def remote_objects(client: Any, location: GcsLocation) -> dict[str, tuple[int, str | None]]:
    """Object name → (size, crc32c) of every object under the prefix."""
    from google.api_core import exceptions as gexc

    prefix = f"{location.prefix}/" if location.prefix else None
    try:
        return {
            b.name: (int(b.size or 0), b.crc32c)
            for b in client.list_blobs(
                location.bucket, prefix=prefix, fields="items(name,size,crc32c),nextPageToken"
            )
        }
    except gexc.GoogleAPIError as exc:
        raise _explain(exc, location) from None
    except OSError as exc:  # requests' connection errors are OSErrors
        raise ExportError(f"{location}: cannot reach Cloud Storage ({exc}); check the network") from None


def upload_files(
    files: Sequence[Path],
    location: GcsLocation,
    client: Any,
    *,
    chunk_size: int = CHUNK_SIZE,
    progress: bool = False,
    retry: Any = _CLIENT_DEFAULT,
) -> UploadResult:
    """Upload ``files`` to ``location`` as ``<prefix>/<file name>``, skipping objects with the same size and CRC32C.

    Every upload sends its CRC32C, so Cloud Storage rejects a corrupted transfer. Transient errors (429, 5xx,
    dropped connections) are retried by the client with backoff for up to two minutes (``retry``: a
    ``google.api_core.retry.Retry``, or None for no retries); what still fails raises :class:`ExportError`, and
    a rerun uploads only what is missing. Returns what was done.
    """
    from google.api_core import exceptions as gexc
    from tqdm import tqdm

    result = UploadResult(location)
    have = remote_objects(client, location)
    bucket = client.bucket(location.bucket)
    todo = []
    for path in files:
        name = location.object_name(path.name)
        result.uris[path.name] = location.uri(path.name)
        size = path.stat().st_size
        if have.get(name) == (size, crc32c_b64(path)):
            result.skipped.append(path.name)
        else:
            todo.append(path)
    total = sum(p.stat().st_size for p in todo)
    with tqdm(total=total, unit="B", unit_scale=True, desc="upload", disable=not progress or not todo) as bar:
        for path in todo:
            size = path.stat().st_size
            blob = bucket.blob(location.object_name(path.name))
            blob.chunk_size = chunk_size
            kwargs = {} if retry is _CLIENT_DEFAULT else {"retry": retry}
            try:
                blob.upload_from_filename(
                    str(path),
                    content_type=CONTENT_TYPES.get(path.suffix, "application/octet-stream"),
                    checksum="crc32c",
                    **kwargs,
                )
            except gexc.GoogleAPIError as exc:
                raise _explain(exc, location) from None
            except OSError as exc:
                raise ExportError(
                    f"{location}: upload of {path.name} failed ({exc}); run the export again"
                ) from None
            log.info("uploaded %s (%d bytes)", result.uris[path.name], size)
            result.uploaded.append(path.name)
            result.bytes_uploaded += size
            bar.update(size)
    return result
