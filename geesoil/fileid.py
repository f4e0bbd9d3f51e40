"""Content identities of files: the sha256 that model ids, refresh fingerprints and download checks share."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: str | Path, length: int | None = None) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks), cut to ``length`` characters when given."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:length]
