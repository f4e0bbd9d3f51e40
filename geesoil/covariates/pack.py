"""Covariate packs: a folder of GeoTIFF/COG files described by a ``pack.json`` manifest (read, validate, write).

The manifest is a catalog (see :mod:`geesoil.covariates.catalog`) whose entries also name their ``file`` (relative
to the folder) and ``band`` (1-based); an optional top-level ``crs`` records the rasters' common CRS, for people
(each raster's own CRS is what sources use). Top-level keys this module does not know are kept in ``Pack.extra``
and written back unchanged.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geesoil.covariates.catalog import Catalog, catalog_from_dict, read_json, spec_to_dict
from geesoil.covariates.spec import CovariateSpec
from geesoil.errors import CovariateError

MANIFEST = "pack.json"
_TOP_KEYS = ("name", "version", "crs", "description", "covariates")


@dataclass(frozen=True)
class Pack:
    """A validated covariate pack: its folder, manifest metadata and covariate specs (each with ``file``)."""

    folder: Path
    name: str
    version: int | str
    description: str
    covariates: tuple[CovariateSpec, ...]
    crs: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def by_name(self) -> dict[str, CovariateSpec]:
        return {c.name: c for c in self.covariates}

    def path_of(self, spec: CovariateSpec | str) -> Path:
        """The raster file holding covariate ``spec`` (a spec or a name)."""
        if isinstance(spec, str):
            try:
                spec = self.by_name()[spec]
            except KeyError:
                raise CovariateError(
                    f"pack {self.folder} has no covariate {spec!r}; it has: {', '.join(self.by_name())}"
                ) from None
        assert spec.file is not None  # read_pack requires it
        return self.folder / spec.file

    @property
    def catalog(self) -> Catalog:
        return Catalog(self.name, self.version, self.description, self.covariates, self.folder / MANIFEST)


def read_pack(folder: str | Path) -> Pack:
    """Read and validate the pack in ``folder`` (or the ``pack.json`` path itself); every listed file must exist."""
    folder = Path(folder)
    if folder.name == MANIFEST and folder.is_file():
        folder = folder.parent
    if not folder.is_dir():
        raise CovariateError(f"covariate pack folder not found: {folder}")
    manifest = folder / MANIFEST
    if not manifest.is_file():
        tifs = sorted(p.name for p in folder.glob("*.tif"))[:3]
        hint = f" (it has {', '.join(tifs)}...)" if tifs else ""
        raise CovariateError(
            f"{folder} is not a covariate pack: no {MANIFEST}{hint}; "
            "write one with geesoil.covariates.pack.write_pack_manifest or build one with "
            "'geesoil covariates pack --starter -o DIR'"
        )
    doc = read_json(manifest, "covariate pack manifest")
    where = str(manifest)
    catalog = catalog_from_dict(doc, where=where, path=manifest)
    for i, spec in enumerate(catalog.covariates):
        if spec.file is None:
            raise CovariateError(
                f"{where} covariates[{i}] ({spec.name!r}): missing 'file' (the GeoTIFF in the pack folder holding it)"
            )
        if not (folder / spec.file).is_file():
            raise CovariateError(
                f"{where} covariates[{i}] ({spec.name!r}): file {spec.file!r} not found in {folder}"
            )
    crs = doc.get("crs")
    if crs is not None and not isinstance(crs, str):
        raise CovariateError(f"{where}: 'crs' must be a string such as 'EPSG:4326', got {crs!r}")
    extra = {k: v for k, v in doc.items() if k not in _TOP_KEYS}
    return Pack(
        folder=folder,
        name=catalog.name,
        version=catalog.version,
        description=catalog.description,
        covariates=catalog.covariates,
        crs=crs,
        extra=extra,
    )


def write_pack_manifest(
    folder: str | Path,
    covariates: Sequence[CovariateSpec],
    *,
    name: str,
    version: int | str = 1,
    description: str = "",
    crs: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``folder/pack.json`` for ``covariates`` (each with ``file`` present in ``folder``), atomically.

    The result is validated by reading it back, so a manifest this writes is always one :func:`read_pack` accepts.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise CovariateError(f"covariate pack folder not found: {folder}")
    names: set[str] = set()
    for spec in covariates:
        if spec.file is None:
            raise CovariateError(f"covariate {spec.name!r} has no 'file'; a pack entry must name its GeoTIFF")
        if not (folder / spec.file).is_file():
            raise CovariateError(f"covariate {spec.name!r}: file {spec.file!r} not found in {folder}")
        if spec.name in names:
            raise CovariateError(f"duplicate covariate name {spec.name!r} in the pack manifest")
        names.add(spec.name)
    doc: dict[str, Any] = {"name": name, "version": version}
    if crs is not None:
        doc["crs"] = crs
    doc["description"] = description
    doc.update({k: v for k, v in (extra or {}).items() if k not in _TOP_KEYS})
    doc["covariates"] = [spec_to_dict(s) for s in covariates]
    path = folder / MANIFEST
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1, ensure_ascii=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    read_pack(folder)
    return path
