"""Covariate catalogs: JSON files listing covariates (group, kind, units, Earth Engine recipe) and their validation.

A catalog has the schema of a covariate pack's ``pack.json`` without ``file``/``band``::

    {"name": "coarse-global-v1", "version": 2, "description": "...",
     "covariates": [{"name": "bio01", "group": "climate", "kind": "continuous", "units": "degC",
                     "resampling": "bilinear", "ee": {"dataset": "WORLDCLIM/V1/BIO", "band": "bio01", "scale": 0.1}},
                    {"name": "koppen", "group": "climate", "kind": "categorical", "classes": {"1": "tropical"}}]}

Entry keys this module does not know are kept in ``CovariateSpec.extra``; the ``ee`` object is kept as given.
Shipped catalogs live in ``assets/catalogs/`` at the repository root (see :func:`catalog_dirs`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rasterio.enums import Resampling

from geesoil.covariates.spec import GROUPS, CovariateSpec
from geesoil.errors import CovariateError

KINDS = ("continuous", "categorical")
#: Resampling names a spec may ask for: rasterio's (``nearest``, ``bilinear``, ``cubic``, ``average``, ``mode``...).
RESAMPLINGS = tuple(r.name for r in Resampling)
#: Resamplings that only ever return one of the input values, so they keep class codes intact.
CATEGORICAL_RESAMPLINGS = ("nearest", "mode", "min", "max", "med", "q1", "q3")
#: Extra folders to search for catalogs (``os.pathsep``-separated), before the shipped ones.
CATALOG_PATH_ENV = "GEESOIL_CATALOG_PATH"

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_KNOWN_KEYS = {"name", "group", "kind", "units", "resampling", "classes", "file", "band", "ee", "note"}


@dataclass(frozen=True)
class Catalog:
    """A named, versioned list of covariate specs (``file``/``band`` unset unless the catalog is a pack manifest)."""

    name: str
    version: int | str
    description: str
    covariates: tuple[CovariateSpec, ...]
    path: Path | None = field(default=None, compare=False)

    def by_name(self) -> dict[str, CovariateSpec]:
        return {c.name: c for c in self.covariates}

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.covariates]

    def select(self, names: list[str] | tuple[str, ...]) -> tuple[CovariateSpec, ...]:
        """The specs called ``names``, in that order; unknown names raise :class:`CovariateError`."""
        index = self.by_name()
        missing = [n for n in names if n not in index]
        if missing:
            raise CovariateError(
                f"catalog {self.name!r} has no covariate {', '.join(map(repr, missing))}; "
                f"it lists: {', '.join(index)}"
            )
        return tuple(index[n] for n in names)


def parse_covariate(entry: Any, *, where: str, require_file: bool = False) -> CovariateSpec:
    """One catalog/pack entry → :class:`CovariateSpec`; ``where`` (e.g. ``"pack.json covariates[3]"``) names it in errors."""
    if not isinstance(entry, Mapping):
        raise CovariateError(f"{where}: a covariate entry must be a JSON object, got {type(entry).__name__}")
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise CovariateError(
            f"{where}: 'name' must be a non-empty string of letters, digits, '_', '.' or '-', got {name!r}"
        )
    where = f"{where} ({name!r})"

    group = entry.get("group")
    if group not in GROUPS:
        raise CovariateError(f"{where}: unknown group {group!r}; use one of: {', '.join(GROUPS)}")
    kind = entry.get("kind", "continuous")
    if kind not in KINDS:
        raise CovariateError(f"{where}: unknown kind {kind!r}; use 'continuous' or 'categorical'")

    classes = _parse_classes(entry.get("classes"), where)
    if kind == "categorical" and not classes:
        raise CovariateError(
            f'{where}: a categorical covariate needs \'classes\' ({{code: name}}, e.g. {{"1": "forest"}})'
        )
    if kind == "continuous" and classes:
        raise CovariateError(
            f'{where}: \'classes\' given for a continuous covariate; set "kind": "categorical"'
        )

    resampling = entry.get("resampling", "nearest" if kind == "categorical" else "bilinear")
    if resampling not in RESAMPLINGS:
        raise CovariateError(
            f"{where}: unknown resampling {resampling!r}; use one of: {', '.join(RESAMPLINGS)}"
        )
    if kind == "categorical" and resampling not in CATEGORICAL_RESAMPLINGS:
        raise CovariateError(
            f"{where}: resampling {resampling!r} would blend class codes of a categorical covariate; use 'nearest' or 'mode'"
        )

    units = entry.get("units", "")
    if not isinstance(units, str):
        raise CovariateError(f"{where}: 'units' must be a string, got {units!r}")
    note = entry.get("note", "")
    if not isinstance(note, str):
        raise CovariateError(f"{where}: 'note' must be a string, got {note!r}")

    ee = entry.get("ee")
    if ee is not None:
        if not isinstance(ee, Mapping):
            raise CovariateError(f"{where}: 'ee' must be an object (dataset, band, ...) or null, got {ee!r}")
        if "dataset" in ee and not isinstance(ee["dataset"], str):
            raise CovariateError(
                f"{where}: 'ee.dataset' must be an Earth Engine asset id string, got {ee['dataset']!r}"
            )
        ee = dict(ee)

    file = entry.get("file")
    if file is None and require_file:
        raise CovariateError(
            f"{where}: missing 'file' (the GeoTIFF in the pack folder holding this covariate)"
        )
    if file is not None and (
        not isinstance(file, str) or not file or Path(file).is_absolute() or ".." in Path(file).parts
    ):
        raise CovariateError(f"{where}: 'file' must be a path relative to the pack folder, got {file!r}")
    band = entry.get("band", 1)
    if isinstance(band, bool) or not isinstance(band, int) or band < 1:
        raise CovariateError(f"{where}: 'band' must be a 1-based band number, got {band!r}")

    extra = {k: v for k, v in entry.items() if k not in _KNOWN_KEYS}
    return CovariateSpec(
        name=name,
        group=group,
        kind=kind,
        units=units,
        resampling=resampling,
        classes=classes,
        file=file,
        band=band,
        ee=ee,
        note=note,
        extra=extra,
    )


def _parse_classes(raw: Any, where: str) -> dict[int, str] | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise CovariateError(
            f"{where}: 'classes' must be an object mapping integer codes to names, got {raw!r}"
        )
    out: dict[int, str] = {}
    for code, label in raw.items():
        try:
            icode = int(code)
        except (TypeError, ValueError):
            raise CovariateError(f"{where}: class code {code!r} is not an integer") from None
        if not isinstance(label, str):
            raise CovariateError(f"{where}: class {code} name must be a string, got {label!r}")
        out[icode] = label
    return out


def spec_to_dict(spec: CovariateSpec, *, with_file: bool = True) -> dict[str, Any]:
    """The JSON entry for ``spec`` (inverse of :func:`parse_covariate`), in the shared pack.json key order."""
    d: dict[str, Any] = {"name": spec.name}
    if with_file and spec.file is not None:
        d["file"] = spec.file
        d["band"] = spec.band
    d.update(group=spec.group, kind=spec.kind, units=spec.units, resampling=spec.resampling, ee=spec.ee)
    if spec.classes is not None:
        d["classes"] = {str(k): v for k, v in sorted(spec.classes.items())}
    if spec.note:
        d["note"] = spec.note
    d.update(spec.extra)
    return d


def parse_covariates(doc: Any, *, where: str, require_file: bool = False) -> tuple[CovariateSpec, ...]:
    """Validate a whole catalog/pack document's ``covariates`` list (duplicates included)."""
    if not isinstance(doc, Mapping):
        raise CovariateError(f"{where}: expected a JSON object with 'name', 'version' and 'covariates'")
    entries = doc.get("covariates")
    if not isinstance(entries, list) or not entries:
        raise CovariateError(f"{where}: 'covariates' must be a non-empty list of covariate entries")
    specs: list[CovariateSpec] = []
    seen: dict[str, int] = {}
    for i, entry in enumerate(entries):
        spec = parse_covariate(entry, where=f"{where} covariates[{i}]", require_file=require_file)
        if spec.name in seen:
            raise CovariateError(
                f"{where} covariates[{i}]: duplicate covariate name {spec.name!r} (also covariates[{seen[spec.name]}])"
            )
        seen[spec.name] = i
        specs.append(spec)
    return tuple(specs)


def read_json(path: Path, what: str) -> Any:
    """Parse a JSON file, turning I/O and syntax problems into :class:`CovariateError` naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CovariateError(f"{what} not found: {path}") from None
    except OSError as exc:
        raise CovariateError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CovariateError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None


def catalog_from_dict(doc: Any, *, where: str, path: Path | None = None) -> Catalog:
    """Validate a parsed catalog document."""
    covariates = parse_covariates(doc, where=where)
    name = doc.get("name", path.stem if path else None)
    if not isinstance(name, str) or not name:
        raise CovariateError(f"{where}: 'name' must be a non-empty string")
    version = doc.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int | str):
        raise CovariateError(f"{where}: 'version' must be an integer or a string, got {version!r}")
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise CovariateError(f"{where}: 'description' must be a string")
    return Catalog(name=name, version=version, description=description, covariates=covariates, path=path)


def catalog_dirs() -> list[Path]:
    """Folders searched for ``<name>.json`` catalogs, first match wins.

    1. every folder in ``$GEESOIL_CATALOG_PATH`` (``os.pathsep``-separated), for user catalogs;
    2. ``assets/catalogs`` at the repository root (the package's parent folder): a source checkout or editable
       install, which is how geesoil is installed today;
    3. ``geesoil/assets/catalogs`` inside the installed package (via :mod:`importlib.resources`), for a future
       wheel that ships the catalogs as package data.
    """
    dirs = [Path(p) for p in os.environ.get(CATALOG_PATH_ENV, "").split(os.pathsep) if p]
    dirs.append(Path(__file__).resolve().parents[2] / "assets" / "catalogs")
    try:
        packaged = resources.files("geesoil") / "assets" / "catalogs"
        if packaged.is_dir():
            dirs.append(Path(str(packaged)))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - namespace/zip installs
        pass
    out: list[Path] = []
    for d in dirs:
        if d.is_dir() and d not in out:
            out.append(d)
    return out


def list_catalogs() -> list[str]:
    """Names of the catalogs found in :func:`catalog_dirs` (file stems), sorted."""
    return sorted({p.stem for d in catalog_dirs() for p in d.glob("*.json")})


def find_catalog(name: str) -> Path:
    """The file of the catalog called ``name``; :class:`CovariateError` listing the available ones otherwise."""
    for d in catalog_dirs():
        p = d / f"{name}.json"
        if p.is_file():
            return p
    available = ", ".join(list_catalogs()) or "none"
    raise CovariateError(
        f"no covariate catalog named {name!r}; available: {available} (or give a path to a .json file)"
    )


def load_catalog(name_or_path: str | Path) -> Catalog:
    """Load a catalog by name (``"coarse-global-v1"``) or from a JSON file path (a pack's ``pack.json`` works too)."""
    text = str(name_or_path)
    is_path = isinstance(name_or_path, Path) or text.endswith(".json") or os.sep in text or "/" in text
    path = Path(name_or_path) if is_path else find_catalog(text)
    if path.is_dir() and (path / "pack.json").is_file():
        path = path / "pack.json"
    doc = read_json(path, "covariate catalog")
    return catalog_from_dict(doc, where=str(path), path=path)
