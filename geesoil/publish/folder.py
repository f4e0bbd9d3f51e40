"""A ``geesoil map`` output folder as something to publish: its layers, its files and its ``run.json`` properties."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from geesoil.errors import GeesoilError

RUN_FILE = "run.json"
#: Layers whose pixels are classes (pyramids keep the most common value instead of averaging).
CATEGORICAL_LAYERS = frozenset({"aoa"})
#: Earth Engine property values: numbers or strings (longer strings are cut to this many characters).
MAX_PROPERTY_CHARS = 1024


class ExportError(GeesoilError):
    """A map folder, a Cloud Storage target or an Earth Engine asset id cannot be used for ``geesoil export``."""


@dataclass(frozen=True)
class Layer:
    """One COG of a map folder: the band it becomes (``soc_mean``), its file and its nodata value."""

    band: str
    path: Path
    nodata: float | None
    categorical: bool = False


@dataclass(frozen=True)
class MapFolder:
    """A finished map: the folder, its ``run.json`` document, its COG layers and every file worth publishing."""

    path: Path
    run: dict[str, Any]
    layers: tuple[Layer, ...]
    files: tuple[Path, ...]

    @property
    def created(self) -> datetime:
        """When the map was written (``run.json``'s modification time, UTC)."""
        return datetime.fromtimestamp((self.path / RUN_FILE).stat().st_mtime, tz=UTC)


def read_map_folder(path: Path | str) -> MapFolder:
    """Read ``path/run.json`` and check that every output it lists is there; :class:`ExportError` otherwise.

    Only the files ``run.json`` lists (plus ``run.json`` itself) are published: never ``.tiles/`` or stray files.
    """
    import rasterio

    folder = Path(path)
    run_path = folder / RUN_FILE
    if not folder.is_dir():
        raise ExportError(f"{folder}: not a folder; give the -o folder of a finished `geesoil map` run")
    if not run_path.is_file():
        raise ExportError(
            f"{folder}: no {RUN_FILE}, so not a finished map output; run `geesoil map ... -o {folder}` first "
            "(or let an interrupted run finish)"
        )
    try:
        run = json.loads(run_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{run_path}: unreadable ({exc}); rerun `geesoil map` to write it again") from None
    outputs = run.get("outputs") if isinstance(run, dict) else None
    if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
        raise ExportError(
            f'{run_path}: no "outputs" list of file names; rerun `geesoil map` to write it again'
        )
    bad = [o for o in outputs if Path(o).name != o or o.startswith(".")]
    if bad:
        raise ExportError(
            f"{run_path}: output {bad[0]!r} is not a plain file name in the folder; rerun `geesoil map`"
        )
    missing = [o for o in outputs if not (folder / o).is_file()]
    if missing:
        raise ExportError(
            f"{folder}: {', '.join(missing)} listed in {RUN_FILE} but missing; rerun `geesoil map` to write it again"
        )
    layers = []
    for name in sorted(o for o in outputs if o.endswith(".tif")):
        p = folder / name
        try:
            with rasterio.open(p) as src:
                nodata = src.nodata
        except rasterio.errors.RasterioIOError as exc:
            raise ExportError(f"{p}: not a readable GeoTIFF ({exc}); rerun `geesoil map`") from None
        band = p.stem
        layers.append(Layer(band, p, None if nodata is None else float(nodata), band in CATEGORICAL_LAYERS))
    if not layers:
        raise ExportError(f"{run_path}: lists no GeoTIFF outputs; rerun `geesoil map`")
    files = tuple(sorted({folder / o for o in outputs} | {run_path}))
    return MapFolder(folder, run, tuple(layers), files)


_KEY_BAD = re.compile(r"[^A-Za-z0-9_]")


def property_key(text: str) -> str:
    """An Earth Engine property key: letters, digits and ``_``, not starting with a digit."""
    key = _KEY_BAD.sub("_", text).strip("_") or "value"
    return f"p_{key}" if key[0].isdigit() else key


def _value(v: Any) -> str | int | float | None:
    if v is None or isinstance(v, bool):
        return None if v is None else int(v)
    if isinstance(v, int | float):
        return v if math.isfinite(v) else None
    text = ", ".join(map(str, v)) if isinstance(v, list | tuple) else str(v)
    return text[:MAX_PROPERTY_CHARS]


def asset_properties(folder: MapFolder) -> dict[str, str | int | float]:
    """Properties for the asset from ``run.json``: model, covariates, SOC summary, alpha, version, creation time.

    Keys are valid identifiers; values are numbers or strings; unknown (null) values are left out.
    """
    run = folder.run
    model = run.get("model") or {}
    inputs = run.get("inputs") or {}
    summary = run.get("summary") or {}
    grid = run.get("grid") or {}
    raw: dict[str, Any] = {
        "geesoil_version": run.get("geesoil_version"),
        "created": folder.created.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model_id": model.get("id"),
        "model_kind": model.get("kind"),
        "model_covariates": model.get("covariates"),
        "covariate_source": inputs.get("covariates"),
        "alpha": inputs.get("alpha"),
        "units": "g/kg",
        "crs": grid.get("crs"),
        "resolution": grid.get("resolution"),
        "bands": [layer.band for layer in folder.layers],
    }
    for k, v in summary.items():
        raw[k] = v
    out: dict[str, str | int | float] = {}
    for k, v in raw.items():
        val = _value(v)
        if val is not None and val != "":
            out[property_key(k)] = val
    return out
