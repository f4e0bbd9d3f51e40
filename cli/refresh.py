"""``geesoil refresh JOB.toml``: re-map a job's AOI when its inputs changed and publish a new version atomically."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from pathlib import Path

import click

#: Exit codes for schedulers: done or up to date, failed (reason in the manifest and on stderr), bad job file.
EXIT_OK, EXIT_FAILED, EXIT_BAD_JOB = 0, 1, 2


class JsonLines(logging.Formatter):
    """One JSON object per record: ts, level, logger, event, message and the record's fields."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", "log"),
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def _configure_logging(fmt: str) -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    if fmt == "json":  # schedulers parse stderr: no other handler may write plain lines there
        for h in list(root.handlers):
            root.removeHandler(h)
        root.addHandler(handler)
    elif not root.handlers:  # outside the geesoil group (which sets up plain logging itself)
        root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        logging.getLogger("geesoil.refresh").setLevel(logging.INFO)
    return handler


def _fail(code: int, message: str, fmt: str, event: str) -> click.exceptions.Exit:
    if fmt == "json":
        click.echo(json.dumps({"level": "error", "event": event, "message": message}), err=True)
    else:
        click.echo(f"Error: {message}", err=True)
    return click.exceptions.Exit(code)


@click.command("refresh")
@click.argument("job_file", type=click.Path(path_type=Path), metavar="JOB.toml")
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Relative paths in the job file resolve here (inputs fall back to the repo, for assets/...). "
    "Default: the current directory.",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json: one JSON object per line on stderr, for schedulers.",
)
@click.option(
    "--today",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="Resolve rolling date windows against this date instead of today (backfills, tests).",
)
@click.option("--progress", is_flag=True, help="Show a progress bar while mapping.")
def refresh(
    job_file: Path, workdir: Path | None, log_format: str, today: dt.datetime | None, progress: bool
) -> None:
    """Bring a scheduled mapping job up to date.

    Does nothing (in well under a second) when the latest published version was made from the same inputs
    (model, samples, covariates, date window, AOI, grid, geesoil version); otherwise maps into a new version
    folder (v1, v2, ...), validates it and publishes it atomically (OUT/manifest.json names the latest; OUT/latest
    links to it). Interrupted runs resume. Prints the result as JSON on stdout.

    \b
    Exit codes: 0 done or up to date, 1 failed (reason in OUT/manifest.json and on stderr), 2 bad job file.

    \b
    Examples:
      geesoil refresh cli/schedules/demo.toml --workdir /srv/soc
      geesoil refresh job.toml --log-format json        # in cron/systemd/CI
    """
    from geesoil.refresh import JobError, RefreshFailed, RefreshLocked, load_job, run_job

    handler = _configure_logging(log_format)
    try:
        try:
            job = load_job(job_file, workdir)
        except JobError as exc:
            raise _fail(EXIT_BAD_JOB, str(exc), log_format, "bad-job") from None
        try:
            result = run_job(job, today=today.date() if today else None, progress=progress)
        except RefreshLocked as exc:
            raise _fail(EXIT_FAILED, str(exc), log_format, "locked") from None
        except RefreshFailed as exc:
            raise _fail(
                EXIT_FAILED, f"{exc} (see {job.out_dir / 'manifest.json'})", log_format, "failed"
            ) from None
        click.echo(
            json.dumps(
                {
                    "job": job.name,
                    "status": result.status,
                    "version": result.version,
                    "path": str(result.path),
                    "fingerprint": result.fingerprint,
                    "changed": result.changed,
                    "pruned": result.pruned,
                    "seconds": round(result.seconds, 3),
                }
            )
        )
    finally:
        logging.getLogger().removeHandler(handler)
