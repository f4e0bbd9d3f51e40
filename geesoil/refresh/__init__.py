"""Scheduled refresh jobs: re-map an AOI when its inputs change and publish versions atomically."""

from __future__ import annotations

from geesoil.refresh.job import Job, JobError, Window, load_job, parse_job, resolve_window
from geesoil.refresh.run import RefreshFailed, RefreshResult, run_job, validate_outputs
from geesoil.refresh.state import RefreshLocked, fingerprint_inputs, job_lock, read_manifest

__all__ = [
    "Job",
    "JobError",
    "RefreshFailed",
    "RefreshLocked",
    "RefreshResult",
    "Window",
    "fingerprint_inputs",
    "job_lock",
    "load_job",
    "parse_job",
    "read_manifest",
    "resolve_window",
    "run_job",
    "validate_outputs",
]
