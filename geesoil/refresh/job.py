"""Refresh job files: TOML → a validated :class:`Job`, with rolling date windows resolved against a clock.

A job file has these tables (every key is checked; unknown keys, wrong types and missing files are
:class:`JobError` naming the key and the file)::

    name = "edgeroi-demo"             # optional; default: the file's stem

    [aoi]
    path = "assets/aois/edgeroi.geojson"   # or: bbox = [149.5, -30.3, 150.0, -30.0]

    [model]
    file = "assets/models/global-starter-v1.geesoil"
    samples = "topsoil.parquet"       # optional: fine-tune on these before mapping
    strategy = "finetuned"            # with samples (default "auto" for a soilnet, "rf" otherwise)
    target = "oc_gkg"
    seed = 0

    [covariates]
    sources = ["starter"]             # pack folders, "starter", "ee[:CATALOG]"
    window = "last 3 full years"      # or start = "2021-01-01" and end = "2024-01-01" (end exclusive)

    [grid]
    scale = 1000.0                    # metres; default: the covariates' finest
    crs = "EPSG:32755"                # default: the AOI's UTM zone
    tile_size = 512
    alpha = 0.1
    std = false
    aoa = true
    aoa_samples = "train.parquet"     # the AOA's training table when the model file carries none
                                      # (default with fine-tuning: model.samples)

    [output]
    dir = "edgeroi"                   # versions v1, v2, ... and manifest.json go here
    gcs = "gs://my-bucket/soc/edgeroi"   # optional: each version also goes to <prefix>/<version>/...
    ee_asset = "projects/my-project/assets/soc/edgeroi"  # optional: registered as <NAME>_<version>
    gcs_bucket = "my-bucket"          # ee_asset without gcs: the bucket its COGs are staged in
    gcs_endpoint = "http://localhost:4443"  # optional: a Cloud Storage emulator
    ee_project = "my-project"         # optional: the Earth Engine project (default: the asset's)

    [retention]
    keep = 5                          # published versions kept (older ones are deleted)

Paths: relative *output* paths resolve against the work directory (``--workdir``, default the current directory).
Relative *input* paths (AOI, model, samples, pack folders) resolve against the work directory first and, when
nothing is there, against the geesoil repository root, so a job can name shipped assets as ``assets/...``.
"""

from __future__ import annotations

import datetime as dt
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geesoil.errors import GeesoilError

#: The repository root (holds ``assets/``): the fallback for relative input paths.
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WINDOW = ("2000-01-01", "2025-01-01")


class JobError(GeesoilError):
    """A refresh job file is unreadable, has unknown keys, wrong types or names missing files (exit code 2)."""


@dataclass(frozen=True)
class Window:
    """A resolved catalog date window ``[start, end)`` and the words it came from."""

    start: dt.date
    end: dt.date
    spec: str

    def as_strings(self) -> tuple[str, str]:
        return self.start.isoformat(), self.end.isoformat()


@dataclass(frozen=True)
class Job:
    """A validated job: every path absolute, the date window still unresolved (see :meth:`window_for`)."""

    name: str
    path: Path
    aoi: str  # a file path or "minx,miny,maxx,maxy"
    model: Path
    sources: tuple[str, ...]
    out_dir: Path
    samples: Path | None = None
    strategy: str | None = None
    target: str = "oc_gkg"
    seed: int = 0
    window: str | None = None  # rolling words, or None for start/end
    start: str | None = None
    end: str | None = None
    scale: float | None = None
    crs: str | None = None
    tile_size: int = 512
    alpha: float = 0.1
    std: bool = False
    aoa: bool = False
    aoa_samples: Path | None = None
    keep: int = 5
    remote: dict[str, str] = field(default_factory=dict)

    def window_for(self, today: dt.date) -> Window:
        """The date window this job means on ``today`` (rolling windows move with the clock)."""
        if self.window is not None:
            return resolve_window(self.window, today, where=f"{self.path}: covariates.window")
        start, end = self.start or DEFAULT_WINDOW[0], self.end or DEFAULT_WINDOW[1]
        return Window(dt.date.fromisoformat(start), dt.date.fromisoformat(end), f"{start}..{end}")


_ROLLING = re.compile(r"^\s*last\s+(\d+)\s+(full\s+)?(year|month|day)s?\s*$", re.IGNORECASE)


def resolve_window(spec: str, today: dt.date, *, where: str = "window") -> Window:
    """``"last 3 full years"`` on 2026-11-25 → 2023-01-01..2026-01-01 (end exclusive); also ``"last N full
    months"`` and ``"last N days"`` (ending today, exclusive)."""
    m = _ROLLING.match(spec)
    if not m:
        raise JobError(
            f"{where} = {spec!r} is not a rolling window; write e.g. 'last 3 full years', 'last 6 full months' "
            "or 'last 90 days'"
        )
    n, full, unit = int(m.group(1)), bool(m.group(2)), m.group(3).lower()
    if n < 1:
        raise JobError(f"{where} = {spec!r}: the number of {unit}s must be at least 1")
    if unit == "day":
        if full:
            raise JobError(f"{where} = {spec!r}: days are always full; write 'last {n} days'")
        return Window(today - dt.timedelta(days=n), today, spec)
    if not full:
        raise JobError(
            f"{where} = {spec!r}: say 'full' (e.g. 'last {n} full {unit}s'): a window of calendar {unit}s "
            "keeps the fingerprint stable between scheduled runs"
        )
    if unit == "year":
        return Window(dt.date(today.year - n, 1, 1), dt.date(today.year, 1, 1), spec)
    months = today.year * 12 + today.month - 1
    first = months - n
    return Window(dt.date(first // 12, first % 12 + 1, 1), dt.date(today.year, today.month, 1), spec)


# -- parsing ---------------------------------------------------------------------------------------------------

_SCHEMA: dict[str, dict[str, tuple[type | tuple[type, ...], ...]]] = {
    "aoi": {"path": (str,), "bbox": (list,)},
    "model": {"file": (str,), "samples": (str,), "strategy": (str,), "target": (str,), "seed": (int,)},
    "covariates": {"sources": (list,), "window": (str,), "start": (str, dt.date), "end": (str, dt.date)},
    "grid": {
        "scale": (int, float),
        "crs": (str,),
        "tile_size": (int,),
        "alpha": (float,),
        "std": (bool,),
        "aoa": (bool,),
        "aoa_samples": (str,),
    },
    "output": {
        "dir": (str,),
        "gcs": (str,),
        "gcs_bucket": (str,),
        "gcs_endpoint": (str,),
        "ee_asset": (str,),
        "ee_project": (str,),
    },
    "retention": {"keep": (int,)},
}
_TYPE_WORDS = {str: "a string", list: "a list", int: "an integer", float: "a number", bool: "true or false"}


def _type_word(types: tuple[type, ...]) -> str:
    if types == (int, float):
        return "a number"
    if dt.date in types:
        return "an ISO date (YYYY-MM-DD)"
    return " or ".join(_TYPE_WORDS.get(t, t.__name__) for t in types)


def _check_types(doc: dict[str, Any], path: Path) -> None:
    for key in doc:
        if key == "name":
            if not isinstance(doc[key], str) or not doc[key].strip():
                raise JobError(f"{path}: name must be a non-empty string")
            continue
        if key not in _SCHEMA:
            raise JobError(
                f"{path}: unknown key {key!r}; a job file has name and the tables "
                f"{', '.join('[' + k + ']' for k in _SCHEMA)}"
            )
        table = doc[key]
        if not isinstance(table, dict):
            raise JobError(f"{path}: {key} must be a table ([{key}]), got {type(table).__name__}")
        for sub, value in table.items():
            allowed = _SCHEMA[key]
            if sub not in allowed:
                raise JobError(f"{path}: unknown key {key}.{sub}; [{key}] takes {', '.join(allowed)}")
            types = allowed[sub]
            # bool is an int in Python; TOML true must not pass as an integer (nor 1 as true)
            ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
            if float in types and int not in types and isinstance(value, int) and not isinstance(value, bool):
                ok = True  # alpha = 1 is a (bad) number, not a type error
            if not ok:
                raise JobError(
                    f"{path}: {key}.{sub} must be {_type_word(types)}, got {value!r} ({type(value).__name__})"
                )
    for required in ("aoi", "model", "output"):
        if required not in doc:
            raise JobError(f"{path}: missing table [{required}]")


def _input_path(value: str, key: str, job_path: Path, workdir: Path, *, folder: bool = False) -> Path:
    p = Path(value).expanduser()
    candidates = [p] if p.is_absolute() else [workdir / p, REPO_ROOT / p]
    for c in candidates:
        if c.is_dir() if folder else c.is_file():
            return c.resolve()
    where = " or ".join(str(c) for c in candidates)
    raise JobError(f"{job_path}: {key} = {value!r}: no such {'folder' if folder else 'file'} ({where})")


def _date(value: Any, key: str, path: Path) -> str:
    if isinstance(value, dt.date):
        return value.isoformat()
    try:
        return dt.date.fromisoformat(value).isoformat()
    except ValueError:
        raise JobError(f"{path}: {key} = {value!r} is not an ISO date (YYYY-MM-DD)") from None


_REMOTE_KEYS = ("gcs", "gcs_bucket", "gcs_endpoint", "ee_asset", "ee_project")


def parse_remote(out_t: dict[str, Any], path: Path) -> dict[str, str]:
    """The ``[output]`` remote keys, checked: ``gcs`` a gs:// URL, ``ee_asset`` an asset id with a bucket to stage
    its COGs in (``gcs`` or ``gcs_bucket``), ``gcs_endpoint`` an http(s) URL; each error names its key."""
    from geesoil.publish.ee_asset import parse_asset_id
    from geesoil.publish.folder import ExportError
    from geesoil.publish.gcs import check_bucket, parse_gcs_url

    remote = {k: out_t[k].strip() for k in _REMOTE_KEYS if k in out_t}
    checks = {"gcs": parse_gcs_url, "gcs_bucket": check_bucket, "ee_asset": parse_asset_id}
    for key, check in checks.items():
        if key in remote:
            try:
                check(remote[key])
            except ExportError as exc:
                raise JobError(f"{path}: output.{key} = {remote[key]!r} is not valid ({exc})") from None
    if "gcs" in remote and "gcs_bucket" in remote:
        raise JobError(
            f"{path}: give output.gcs (gs://BUCKET/PREFIX) or output.gcs_bucket, not both: the bucket is part of "
            "output.gcs"
        )
    if "ee_asset" in remote and "gcs" not in remote and "gcs_bucket" not in remote:
        raise JobError(
            f"{path}: output.ee_asset needs a bucket to stage the COGs in: add output.gcs = "
            '"gs://BUCKET/PREFIX" or output.gcs_bucket = "BUCKET"'
        )
    if "gcs_bucket" in remote and "ee_asset" not in remote:
        raise JobError(
            f"{path}: output.gcs_bucket is only used with output.ee_asset; for Cloud Storage alone write "
            'output.gcs = "gs://BUCKET/PREFIX"'
        )
    if "ee_project" in remote and "ee_asset" not in remote:
        raise JobError(
            f"{path}: output.ee_project is only used with output.ee_asset; add it or drop ee_project"
        )
    if "gcs_endpoint" in remote:
        if not remote["gcs_endpoint"].startswith(("http://", "https://")):
            raise JobError(
                f"{path}: output.gcs_endpoint must be an http(s) URL (an emulator), got {remote['gcs_endpoint']!r}"
            )
        if "gcs" not in remote and "gcs_bucket" not in remote:
            raise JobError(f"{path}: output.gcs_endpoint is only used with output.gcs or output.gcs_bucket")
    return remote


def parse_job(doc: dict[str, Any], path: Path, workdir: Path) -> Job:
    """Validate a parsed TOML document; ``path`` is named in every error."""
    _check_types(doc, path)
    aoi_t, model_t, cov_t = doc["aoi"], doc["model"], doc.get("covariates", {})
    grid_t, out_t, ret_t = doc.get("grid", {}), doc["output"], doc.get("retention", {})

    if ("path" in aoi_t) == ("bbox" in aoi_t):
        raise JobError(f"{path}: [aoi] needs exactly one of aoi.path (a vector file) or aoi.bbox")
    if "path" in aoi_t:
        aoi = str(_input_path(aoi_t["path"], "aoi.path", path, workdir))
    else:
        bbox = aoi_t["bbox"]
        if len(bbox) != 4 or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in bbox):
            raise JobError(f"{path}: aoi.bbox must be four numbers [minx, miny, maxx, maxy], got {bbox!r}")
        aoi = ",".join(repr(float(v)) for v in bbox)

    if "file" not in model_t:
        raise JobError(f"{path}: missing key model.file (a .geesoil model file)")
    model = _input_path(model_t["file"], "model.file", path, workdir)
    samples = (
        _input_path(model_t["samples"], "model.samples", path, workdir) if "samples" in model_t else None
    )
    for key in ("strategy", "target", "seed"):
        if key in model_t and samples is None:
            raise JobError(
                f"{path}: model.{key} is only used with model.samples (fine-tuning); add it or drop {key}"
            )

    sources_raw = cov_t.get("sources", ["starter"])
    if not sources_raw or not all(isinstance(s, str) and s.strip() for s in sources_raw):
        raise JobError(f"{path}: covariates.sources must be a non-empty list of strings, got {sources_raw!r}")
    sources = []
    for s in sources_raw:
        word = s.strip()
        if word.lower() == "starter" or word.lower() == "ee" or word.lower().startswith("ee:"):
            sources.append(word)
        else:
            sources.append(str(_input_path(word, "covariates.sources", path, workdir, folder=True)))
    window = cov_t.get("window")
    start = _date(cov_t["start"], "covariates.start", path) if "start" in cov_t else None
    end = _date(cov_t["end"], "covariates.end", path) if "end" in cov_t else None
    if window is not None and (start or end):
        raise JobError(
            f"{path}: give covariates.window (rolling) or covariates.start/end (absolute), not both"
        )
    if window is not None:
        resolve_window(window, dt.date.today(), where=f"{path}: covariates.window")  # syntax only
    if start and end and start >= end:
        raise JobError(
            f"{path}: covariates.start {start} must be before covariates.end {end} (end exclusive)"
        )

    scale = float(grid_t["scale"]) if "scale" in grid_t else None
    if scale is not None and not scale > 0:
        raise JobError(f"{path}: grid.scale must be a positive number of metres, got {grid_t['scale']!r}")
    alpha = float(grid_t.get("alpha", 0.1))
    if not 0 < alpha < 1:
        raise JobError(f"{path}: grid.alpha must be between 0 and 1 (0.1 = a 90 % interval), got {alpha}")
    tile_size = grid_t.get("tile_size", 512)
    if tile_size < 16:
        raise JobError(f"{path}: grid.tile_size must be at least 16 pixels, got {tile_size}")

    aoa_samples = (
        _input_path(grid_t["aoa_samples"], "grid.aoa_samples", path, workdir)
        if "aoa_samples" in grid_t
        else None
    )
    if aoa_samples is not None and not grid_t.get("aoa", False):
        raise JobError(
            f"{path}: grid.aoa_samples is only used with grid.aoa = true; add it or drop aoa_samples"
        )

    if "dir" not in out_t:
        raise JobError(f"{path}: missing key output.dir (the folder the versions are published to)")
    out_dir = Path(out_t["dir"]).expanduser()
    out_dir = (out_dir if out_dir.is_absolute() else workdir / out_dir).resolve()
    remote = parse_remote(out_t, path)
    keep = ret_t.get("keep", 5)
    if keep < 1:
        raise JobError(
            f"{path}: retention.keep must be at least 1 (the latest version is always kept), got {keep}"
        )

    return Job(
        name=doc.get("name", path.stem).strip(),
        path=path,
        aoi=aoi,
        model=model,
        sources=tuple(sources),
        out_dir=out_dir,
        samples=samples,
        strategy=model_t.get("strategy"),
        target=model_t.get("target", "oc_gkg"),
        seed=model_t.get("seed", 0),
        window=window,
        start=start,
        end=end,
        scale=scale,
        crs=grid_t.get("crs"),
        tile_size=tile_size,
        alpha=alpha,
        std=grid_t.get("std", False),
        aoa=grid_t.get("aoa", False),
        aoa_samples=aoa_samples or (samples if grid_t.get("aoa", False) else None),
        keep=keep,
        remote=remote,
    )


def load_job(path: str | Path, workdir: str | Path | None = None) -> Job:
    """Read and validate a job file; relative paths resolve against ``workdir`` (default: current directory)."""
    path = Path(path).expanduser()
    work = Path(workdir).expanduser().resolve() if workdir is not None else Path.cwd()
    if not path.is_file():
        raise JobError(f"job file {path} not found")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise JobError(f"{path}: not valid TOML ({exc})") from None
    except UnicodeDecodeError:
        raise JobError(f"{path}: not a UTF-8 text file") from None
    return parse_job(doc, path.resolve(), work)


__all__ = [
    "DEFAULT_WINDOW",
    "REPO_ROOT",
    "Job",
    "JobError",
    "Window",
    "load_job",
    "parse_job",
    "resolve_window",
]
