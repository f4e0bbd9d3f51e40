"""A refresh job's state beside its outputs: the input fingerprint, the JSON manifest and the job lock.

Layout of a job's output folder::

    OUT/manifest.json      versions, fingerprints, timings, status and errors of every run (written atomically)
    OUT/latest -> v3       symlink to the published version (the manifest's ``latest`` is authoritative)
    OUT/v1/ OUT/v2/ ...    published versions (COGs, run.json, quicklook.png, refresh.json)
    OUT/.staging/<fp>/     a run in progress, named by its fingerprint, so an interrupted run resumes there
    OUT/.refresh.lock      fcntl lock held while a run is active
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from geesoil import __version__
from geesoil.errors import GeesoilError
from geesoil.fileid import file_sha256
from geesoil.locks import exclusive_lock
from geesoil.refresh.job import Job, Window

MANIFEST = "manifest.json"
LATEST = "latest"
STAGING = ".staging"
LOCK = ".refresh.lock"
#: How many run records the manifest keeps (versions are kept as long as retention allows).
MAX_RUNS = 100
_VERSION = re.compile(r"^v(\d+)$")


class RefreshLocked(GeesoilError):
    """Another run of the same job holds its lock."""


def _source_id(spec: str) -> str:
    """What identifies a covariate source's content: its pack.json and file sizes, or the built-in's version."""
    word = spec.lower()
    if word == "starter":
        from geesoil.covariates.starter import PACK_NAME, PACK_VERSION

        return f"{PACK_NAME}/{PACK_VERSION}"
    if word == "ee" or word.startswith("ee:"):
        return spec
    folder = Path(spec)
    if folder.is_file():  # a pack.json given directly
        folder = folder.parent
    h = hashlib.sha256()
    manifest = folder / "pack.json"
    if manifest.is_file():
        h.update(manifest.read_bytes())
    for f in sorted(folder.glob("*.tif")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return f"pack:{h.hexdigest()[:16]}"


def fingerprint_inputs(job: Job, window: Window) -> dict[str, Any]:
    """Everything that determines a job's output, as a JSON-able dict (cheap: hashes files, opens no raster)."""
    aoi = Path(job.aoi)
    doc: dict[str, Any] = {
        "aoi": file_sha256(aoi, 16) if aoi.is_file() else job.aoi,
        "model": file_sha256(job.model, 16),
        "samples": file_sha256(job.samples, 16) if job.samples else None,
        "finetune": (
            {"strategy": job.strategy, "target": job.target, "seed": job.seed} if job.samples else None
        ),
        "covariates": [_source_id(s) for s in job.sources],
        "window": list(window.as_strings()),
        "grid": {
            "scale": job.scale,
            "crs": job.crs,
            "tile_size": job.tile_size,
            "alpha": job.alpha,
            "std": job.std,
            "aoa": job.aoa,
            "aoa_samples": file_sha256(job.aoa_samples, 16) if job.aoa_samples else None,
        },
        "code": __version__,
    }
    return doc


def digest(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:20]


def changed_keys(old: dict[str, Any] | None, new: dict[str, Any]) -> list[str]:
    if not old:
        return []
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


# -- manifest --------------------------------------------------------------------------------------------------


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def empty_manifest(job: Job) -> dict[str, Any]:
    return {"job": job.name, "job_file": str(job.path), "latest": None, "versions": [], "runs": []}


def read_manifest(out: Path, job: Job) -> dict[str, Any]:
    path = out / MANIFEST
    if not path.is_file():
        return empty_manifest(job)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GeesoilError(
            f"{path} is not readable JSON ({exc}); move it away to start the job's history afresh"
        ) from None
    base = empty_manifest(job)
    base.update(doc)
    base["job_file"] = str(job.path)
    return base


def write_manifest(out: Path, doc: dict[str, Any]) -> None:
    """Temp file + fsync + rename: readers see the old or the new manifest, never half of one."""
    doc["runs"] = doc["runs"][-MAX_RUNS:]
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", suffix=".json", dir=out)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the manifest is for everyone who reads the outputs
        os.replace(tmp, out / MANIFEST)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def latest_entry(manifest: dict[str, Any]) -> dict[str, Any] | None:
    name = manifest.get("latest")
    for v in manifest.get("versions", []):
        if v.get("version") == name:
            return v
    return None


def next_version(manifest: dict[str, Any], out: Path) -> str:
    """One past every version the manifest or the folder ever had (numbers are never reused)."""
    used = [0]
    for v in manifest.get("versions", []):
        m = _VERSION.match(str(v.get("version", "")))
        if m:
            used.append(int(m.group(1)))
    for p in out.iterdir():
        m = _VERSION.match(p.name)
        if m:
            used.append(int(m.group(1)))
    return f"v{max(used) + 1}"


def point_latest(out: Path, version: str) -> None:
    """Swap the ``latest`` symlink atomically (symlink to a temp name, rename over)."""
    tmp = out / f".latest-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    os.symlink(version, tmp)
    os.replace(tmp, out / LATEST)


# -- lock ------------------------------------------------------------------------------------------------------


@contextmanager
def job_lock(out: Path, job_name: str) -> Iterator[Path]:
    """Hold ``OUT/.refresh.lock`` (fcntl.flock, non-blocking); :class:`RefreshLocked` when another run holds it.

    The lock dies with its process, so a killed run never leaves a stale lock behind.
    """
    path = out / LOCK

    def refuse(holder: str) -> RefreshLocked:
        return RefreshLocked(
            f"another refresh of job {job_name!r} is running ({path} is held by {holder}); "
            "this run is refused — wait for it to finish"
        )

    with exclusive_lock(path, refuse):
        yield path


__all__ = [
    "LATEST",
    "LOCK",
    "MANIFEST",
    "STAGING",
    "RefreshLocked",
    "changed_keys",
    "digest",
    "fingerprint_inputs",
    "job_lock",
    "latest_entry",
    "next_version",
    "point_latest",
    "read_manifest",
    "write_manifest",
]
