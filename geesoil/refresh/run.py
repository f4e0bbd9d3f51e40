"""Run a refresh job: skip when the inputs are unchanged, else fine-tune/map into staging, validate, publish.

Publishing is two renames: the validated staging folder becomes ``vN`` and a new manifest naming ``vN`` as latest
replaces the old one; a crash before the second leaves ``latest`` where it was (the orphan ``vN`` folder is
removed on the next run). An interrupted run resumes in its staging folder: the mapping keeps finished tiles.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geesoil.errors import GeesoilError, ModelError
from geesoil.refresh.job import Job, Window
from geesoil.refresh.state import (
    _VERSION,
    LATEST,
    STAGING,
    changed_keys,
    digest,
    fingerprint_inputs,
    job_lock,
    latest_entry,
    next_version,
    now,
    point_latest,
    read_manifest,
    write_manifest,
)

log = logging.getLogger(__name__)
#: What a fine-tuned model is saved as inside a version folder.
MODEL_FILE = "model.geesoil"
RECORD_FILE = "refresh.json"


class RefreshFailed(GeesoilError):
    """A run failed after the job file was accepted; the reason is in the manifest (exit code 1)."""


@dataclass
class RefreshResult:
    """What a run did: ``status`` is ``published``, ``up-to-date`` or ``remote-published`` (the local version was
    current; only its upload to ``output.gcs``/``output.ee_asset`` was (re)done)."""

    status: str
    version: str
    fingerprint: str
    out_dir: Path
    seconds: float
    changed: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.out_dir / self.version


def _event(level: int, event: str, msg: str, *args: Any, **fields: Any) -> None:
    """A log record carrying ``event`` and ``fields`` (the JSON-lines formatter writes them as keys)."""
    log.log(level, msg, *args, extra={"event": event, "fields": fields})


def open_windowed(sources: tuple[str, ...], window: Window) -> Any:
    """The covariate sources, with Earth Engine composites over the job's date window."""
    from geesoil.covariates.open import open_source, open_sources

    if not any(s.lower() == "ee" or s.lower().startswith("ee:") for s in sources):
        return open_sources(list(sources))
    from geesoil.covariates.open import cache_dir
    from geesoil.covariates.source import CombinedSource
    from geesoil.ee.auth import initialize
    from geesoil.ee.source import EarthEngineSource

    start, end = window.as_strings()
    opened = []
    for s in sources:
        if s.lower() == "ee" or s.lower().startswith("ee:"):
            initialize()
            catalog = s.split(":", 1)[1] if ":" in s else "gsoilcpm"
            opened.append(EarthEngineSource(catalog, start, end, cache_dir=cache_dir() / "ee-samples"))
        else:
            opened.append(open_source(s))
    return opened[0] if len(opened) == 1 else CombinedSource(opened)


def finetune(job: Job, source: Any, out: Path) -> Path:
    """Fit ``job.strategy`` on ``job.samples`` starting from ``job.model``; saves ``out`` (reused if present)."""
    from geesoil.model.adapt import fit_regional
    from geesoil.model.io import load_model, save_model
    from geesoil.samples import load_samples

    if out.is_file():
        log.info("reusing the fine-tuned model of the interrupted run: %s", out)
        return out
    samples = load_samples(job.samples, target=job.target)
    t0 = time.perf_counter()
    try:
        fit = fit_regional(
            load_model(job.model),
            samples,
            source,
            strategy=job.strategy,
            seed=job.seed,
            target=job.target,
            where=str(job.samples),
        )
    except ModelError as exc:
        raise GeesoilError(f"{job.path}: [model]: {exc}") from None
    model, strategy, y = fit.model, fit.strategy, fit.table.y
    tmp = out.with_name(f".{out.name}.tmp")
    save_model(model, tmp)
    tmp.replace(out)
    _event(
        logging.INFO,
        "finetuned",
        "fine-tuned %s on %d samples in %.1f s",
        strategy,
        len(y),
        time.perf_counter() - t0,
        strategy=strategy,
        n_samples=len(y),
    )
    return out


def validate_outputs(folder: Path, doc: dict[str, Any]) -> None:
    """run.json present, every listed output present, every GeoTIFF a valid COG; raises otherwise."""
    from rio_cogeo.cogeo import cog_validate

    if not (folder / "run.json").is_file():
        raise RefreshFailed(f"validation: {folder}/run.json is missing")
    for name in doc.get("outputs", []):
        p = folder / name
        if not p.is_file():
            raise RefreshFailed(f"validation: {p} listed in run.json is missing")
        if p.suffix == ".tif":
            ok, errors, _ = cog_validate(str(p), quiet=True)
            if not ok:
                raise RefreshFailed(f"validation: {p} is not a valid COG ({'; '.join(errors)})")


def _map(job: Job, window: Window, stage: Path, progress: bool) -> dict[str, Any]:
    from geesoil.mapping.run import MapRequest, execute, plan_map

    source = open_windowed(job.sources, window)
    model = finetune(job, source, stage / MODEL_FILE) if job.samples else job.model
    req = MapRequest(
        aoi=job.aoi,
        out=stage,
        model=model,
        covariates=job.sources,
        scale=job.scale,
        crs=job.crs,
        tile_size=job.tile_size,
        alpha=job.alpha,
        std=job.std,
        aoa=job.aoa,
        samples=job.aoa_samples if job.aoa else None,
        progress=progress,
    )
    plan = plan_map(req)
    plan.source = source
    return execute(plan)


def _cleanup(out: Path, manifest: dict[str, Any], keep_stage: str) -> None:
    """Remove version folders the manifest does not list as kept, and stale staging folders."""
    listed = {v["version"] for v in manifest["versions"] if v.get("status") == "published"}
    for p in out.iterdir():
        if _VERSION.match(p.name) and p.is_dir() and p.name not in listed:
            log.info("removing %s (not a published version: an interrupted publish or a pruned leftover)", p)
            shutil.rmtree(p, ignore_errors=True)
    staging = out / STAGING
    if staging.is_dir():
        for p in staging.iterdir():
            if p.name != keep_stage:
                log.info("removing stale staging folder %s (its inputs changed since)", p)
                shutil.rmtree(p, ignore_errors=True)


def _prune(out: Path, manifest: dict[str, Any], keep: int) -> list[str]:
    published = [v for v in manifest["versions"] if v.get("status") == "published"]
    old = published[:-keep] if len(published) > keep else []
    for v in old:
        v["status"] = "pruned"
        v["pruned"] = now()
    if old:
        write_manifest(
            out, manifest
        )  # first the record, then the files: a crash leaves a leftover, not a hole
        for v in old:
            shutil.rmtree(out / v["version"], ignore_errors=True)
    return [v["version"] for v in old]


def _remote_step(
    job: Job,
    out: Path,
    manifest: dict[str, Any],
    entry: dict[str, Any],
    progress: bool,
    record: dict[str, Any] | None,
) -> bool:
    """Copy a published version to the job's remote targets when it has not reached them; False when nothing to do.

    The outcome goes into the version's manifest entry (``remote``); a failure raises :class:`RefreshFailed`.
    """
    from geesoil.refresh.remote import needs_publish, publish_remote, targets

    version = entry["version"]
    if not needs_publish(job.remote, entry):
        return False
    t0 = time.perf_counter()
    try:
        done = publish_remote(job.remote, out / version, version, progress=progress)
    except Exception as exc:
        entry["remote"] = {
            "targets": targets(job.remote, version),
            "status": "failed",
            "error": f"{type(exc).__name__}: {exc}",
            "finished": now(),
        }
        if record is not None:
            record["remote"] = "failed"
        write_manifest(out, manifest)
        _event(
            logging.ERROR,
            "remote-failed",
            "job %s: %s is published locally but not remotely: %s",
            job.name,
            version,
            exc,
            job=job.name,
            version=version,
            error=str(exc),
        )
        raise RefreshFailed(
            f"job {job.name}: {version} is published locally but the upload failed ({exc}); run the job again to "
            "retry the upload only"
        ) from exc
    entry["remote"] = {
        **done,
        "status": "published",
        "finished": now(),
        "seconds": round(time.perf_counter() - t0, 3),
    }
    if record is not None:
        record["remote"] = "published"
    write_manifest(out, manifest)
    _event(
        logging.INFO,
        "remote-published",
        "job %s: %s published to %s",
        job.name,
        version,
        ", ".join(entry["remote"]["targets"].values()),
        job=job.name,
        version=version,
        targets=entry["remote"]["targets"],
    )
    return True


def run_job(
    job: Job,
    *,
    today: dt.date | None = None,
    progress: bool = False,
    clock: Callable[[], dt.date] = dt.date.today,
) -> RefreshResult:
    """Bring ``job``'s published output up to date; see the module docstring. Raises :class:`RefreshLocked`
    when another run holds the lock and :class:`RefreshFailed` (reason also in the manifest) when a run fails."""
    t0 = time.perf_counter()
    out = job.out_dir
    with job_lock(out, job.name):
        manifest = read_manifest(out, job)
        window = job.window_for(today or clock())
        inputs = fingerprint_inputs(job, window)
        fp = digest(inputs)
        latest = latest_entry(manifest)
        if latest and latest.get("fingerprint") == fp and (out / latest["version"] / "run.json").is_file():
            if _remote_step(job, out, manifest, latest, progress, None):
                secs = time.perf_counter() - t0
                return RefreshResult("remote-published", latest["version"], fp, out, secs)
            secs = time.perf_counter() - t0
            _event(
                logging.INFO,
                "up-to-date",
                "job %s: %s is up to date (fingerprint %s)",
                job.name,
                latest["version"],
                fp,
                job=job.name,
                version=latest["version"],
                fingerprint=fp,
            )
            return RefreshResult("up-to-date", latest["version"], fp, out, secs)
        changed = changed_keys(latest.get("inputs") if latest else None, inputs)
        for run in manifest["runs"]:
            if run.get("status") == "running":  # we hold the lock: whoever wrote this is gone
                run["status"] = "interrupted"
        stage_name = fp
        _cleanup(out, manifest, stage_name)
        stage = out / STAGING / stage_name
        resumed = stage.is_dir()
        stage.mkdir(parents=True, exist_ok=True)
        record: dict[str, Any] = {
            "started": now(),
            "status": "running",
            "fingerprint": fp,
            "window": list(window.as_strings()),
            "changed": changed,
            "resumed": resumed,
        }
        manifest["runs"].append(record)
        write_manifest(out, manifest)
        _event(
            logging.INFO,
            "start",
            "job %s: mapping (%s%s)",
            job.name,
            f"changed: {', '.join(changed)}" if changed else "first version",
            "; resuming" if resumed else "",
            job=job.name,
            fingerprint=fp,
            changed=changed,
            resumed=resumed,
        )
        try:
            t_map = time.perf_counter()
            doc = _map(job, window, stage, progress)
            t_val = time.perf_counter()
            validate_outputs(stage, doc)
            shutil.rmtree(stage / ".tiles", ignore_errors=True)
            version = next_version(manifest, out)
            entry = {
                "version": version,
                "fingerprint": fp,
                "inputs": inputs,
                "window": list(window.as_strings()),
                "window_spec": window.spec,
                "created": now(),
                "status": "published",
                "summary": doc.get("summary"),
                "timings_s": {
                    "map": round(t_val - t_map, 3),
                    "validate": round(time.perf_counter() - t_val, 3),
                },
            }
            (stage / RECORD_FILE).write_text(json.dumps(entry, indent=1, default=str) + "\n")
            stage.rename(out / version)
            manifest["versions"].append(entry)
            manifest["latest"] = version
            record.update(
                status="published",
                version=version,
                finished=now(),
                seconds=round(time.perf_counter() - t0, 3),
            )
            write_manifest(out, manifest)  # the publish: from here on, latest is the new version
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt | SystemExit)
            record.update(
                status="interrupted" if interrupted else "failed",
                error=f"{type(exc).__name__}: {exc}",
                finished=now(),
                seconds=round(time.perf_counter() - t0, 3),
            )
            try:
                write_manifest(out, manifest)
            except OSError:
                log.exception("could not record the failure in %s", out)
            _event(
                logging.ERROR,
                "failed",
                "job %s failed: %s",
                job.name,
                exc,
                job=job.name,
                fingerprint=fp,
                error=str(exc),
            )
            if interrupted:
                raise
            if isinstance(exc, RefreshFailed):
                raise
            raise RefreshFailed(f"job {job.name}: {exc}") from exc
        point_latest(out, version)
        with contextlib.suppress(OSError):
            (out / STAGING).rmdir()
        pruned = _prune(out, manifest, job.keep)
        _remote_step(job, out, manifest, entry, progress, record)
        secs = time.perf_counter() - t0
        _event(
            logging.INFO,
            "published",
            "job %s: published %s in %.1f s%s",
            job.name,
            version,
            secs,
            f" (pruned {', '.join(pruned)})" if pruned else "",
            job=job.name,
            version=version,
            fingerprint=fp,
            seconds=round(secs, 3),
            pruned=pruned,
        )
        return RefreshResult("published", version, fp, out, secs, changed, pruned)


__all__ = [
    "LATEST",
    "MODEL_FILE",
    "RefreshFailed",
    "RefreshResult",
    "finetune",
    "open_windowed",
    "run_job",
    "validate_outputs",
]
