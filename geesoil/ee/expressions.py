"""Catalog → one multi-band ``ee.Image``: each covariate's Earth Engine recipe, in physical units, named as in the catalog.

A covariate's ``ee`` recipe (a catalog entry's ``ee`` object) has these keys:

``dataset``
    Earth Engine asset id (an ``ee.Image``, or an ``ee.ImageCollection`` when ``collection`` is true).
``band``
    The source band.
``collection`` / ``reducer``
    Reduce the collection, filtered to the date window ``[start, end)``, with ``reducer`` (median, mean, min, max,
    mode, sum, stdDev, first; default median, mode for categorical covariates). A recipe with ``reducer`` or
    ``year`` is taken as a collection even without ``collection``. ``year`` pins the window to one calendar year.
``scale`` / ``offset``
    Physical value = stored value × scale + offset (the dataset's documented scale factor).
``terrain``
    A derived terrain layer from ``ee.Terrain`` (``slope``, ``aspect``, ``hillshade``) of the (scaled) band.

Continuous covariates become float bands, categorical ones int bands (class codes unchanged, nearest-neighbour).
Everything here builds expressions only: no request is sent until something is computed.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import ee

from geesoil.covariates.spec import CovariateSpec
from geesoil.errors import CovariateError, EarthEngineError

#: Default date window for temporal composites (ISO dates, end exclusive).
DEFAULT_START = "2001-01-01"
DEFAULT_END = "2021-01-01"

REDUCERS = ("median", "mean", "min", "max", "mode", "sum", "stdDev", "first")
TERRAIN_OPS = ("slope", "aspect", "hillshade")
#: rasterio resampling names (the catalog's vocabulary) → ``ee.Image.resample`` modes; others stay nearest.
EE_RESAMPLING = {"bilinear": "bilinear", "cubic": "bicubic", "cubic_spline": "bicubic", "lanczos": "bicubic"}

_RECIPE_KEYS = {
    "dataset",
    "band",
    "collection",
    "reducer",
    "scale",
    "offset",
    "terrain",
    "year",
    "approximate",
}


@dataclass(frozen=True)
class Recipe:
    """A validated ``ee`` recipe of one covariate (see the module docstring)."""

    name: str
    dataset: str
    band: str
    collection: bool = False
    reducer: str | None = None
    scale: float = 1.0
    offset: float = 0.0
    terrain: str | None = None
    year: int | None = None
    categorical: bool = False
    resampling: str | None = None


def parse_recipe(spec: CovariateSpec) -> Recipe:
    """``spec.ee`` → :class:`Recipe`; :class:`CovariateError` naming the covariate when it cannot be built."""
    where = f"covariate {spec.name!r}"
    ee_doc = spec.ee
    if not ee_doc:
        raise CovariateError(
            f"{where} has no Earth Engine recipe ('ee' is null); serve it from a local covariate pack"
        )
    if "derived" in ee_doc:
        raise CovariateError(
            f"{where}: its 'ee' recipe is a free-text derivation ({ee_doc['derived']!r}) that cannot be built "
            "automatically; give 'terrain' or 'reducer' instead, or serve it from a local covariate pack"
        )
    unknown = sorted(set(ee_doc) - _RECIPE_KEYS)
    if unknown:
        raise CovariateError(f"{where}: unknown 'ee' keys {unknown}; allowed: {sorted(_RECIPE_KEYS)}")
    dataset, band = ee_doc.get("dataset"), ee_doc.get("band")
    if not isinstance(dataset, str) or not dataset:
        raise CovariateError(f"{where}: 'ee.dataset' must be an Earth Engine asset id, got {dataset!r}")
    if not isinstance(band, str) or not band:
        raise CovariateError(f"{where}: 'ee.band' must be the source band name, got {band!r}")
    year = ee_doc.get("year")
    if year is not None and (isinstance(year, bool) or not isinstance(year, int)):
        raise CovariateError(f"{where}: 'ee.year' must be an integer year, got {year!r}")
    collection = bool(ee_doc.get("collection", "reducer" in ee_doc or year is not None))
    reducer = ee_doc.get("reducer")
    if collection and reducer is None:
        reducer = "mode" if spec.is_categorical else "median"
    if reducer is not None and reducer not in REDUCERS:
        raise CovariateError(f"{where}: unknown 'ee.reducer' {reducer!r}; use one of {', '.join(REDUCERS)}")
    if reducer is not None and not collection:
        raise CovariateError(f"{where}: 'ee.reducer' needs an image collection; set \"collection\": true")
    terrain = ee_doc.get("terrain")
    if terrain is not None and terrain not in TERRAIN_OPS:
        raise CovariateError(
            f"{where}: unknown 'ee.terrain' {terrain!r}; use one of {', '.join(TERRAIN_OPS)}"
        )
    scale, offset = ee_doc.get("scale", 1.0), ee_doc.get("offset", 0.0)
    for key, val in (("scale", scale), ("offset", offset)):
        if isinstance(val, bool) or not isinstance(val, int | float):
            raise CovariateError(f"{where}: 'ee.{key}' must be a number, got {val!r}")
    if spec.is_categorical and (scale != 1 or offset != 0 or terrain):
        raise CovariateError(
            f"{where}: a categorical covariate keeps its class codes; drop 'scale'/'offset'/'terrain'"
        )
    return Recipe(
        name=spec.name,
        dataset=dataset,
        band=band,
        collection=collection,
        reducer=reducer,
        scale=float(scale),
        offset=float(offset),
        terrain=terrain,
        year=year,
        categorical=spec.is_categorical,
        resampling=None if spec.is_categorical else EE_RESAMPLING.get(spec.resampling),
    )


def split_buildable(
    specs: Sequence[CovariateSpec],
) -> tuple[tuple[CovariateSpec, ...], dict[str, str]]:
    """``specs`` with a usable Earth Engine recipe, and the others mapped to why not."""
    ok: list[CovariateSpec] = []
    skipped: dict[str, str] = {}
    for spec in specs:
        try:
            parse_recipe(spec)
            ok.append(spec)
        except CovariateError as exc:
            skipped[spec.name] = str(exc)
    return tuple(ok), skipped


def check_window(start: str, end: str) -> tuple[str, str]:
    """Validate an ISO date window (``start`` < ``end``); :class:`EarthEngineError` naming the bad date otherwise."""
    parsed = []
    for label, value in (("start", start), ("end", end)):
        try:
            parsed.append(dt.date.fromisoformat(str(value)))
        except ValueError:
            raise EarthEngineError(f"--{label} {value!r} is not an ISO date (YYYY-MM-DD)") from None
    if parsed[0] >= parsed[1]:
        raise EarthEngineError(f"empty date window: --start {start} must be before --end {end}")
    return parsed[0].isoformat(), parsed[1].isoformat()


def recipe_image(recipe: Recipe, start: str = DEFAULT_START, end: str = DEFAULT_END) -> ee.Image:
    """The single-band image of one recipe, in physical units, named ``recipe.name``."""
    if recipe.collection:
        if recipe.year is not None:
            start, end = f"{recipe.year:04d}-01-01", f"{recipe.year + 1:04d}-01-01"
        coll = ee.ImageCollection(recipe.dataset).filterDate(start, end).select([recipe.band])
        img = getattr(coll, recipe.reducer or "median")()
        # A composite has no projection of its own; keep the dataset's so sampling happens at native scale.
        img = img.setDefaultProjection(coll.first().projection())
    else:
        img = ee.Image(recipe.dataset).select([recipe.band])
    if recipe.scale != 1.0:
        img = img.multiply(recipe.scale)
    if recipe.offset != 0.0:
        img = img.add(recipe.offset)
    if recipe.terrain is not None:
        img = getattr(ee.Terrain, recipe.terrain)(img)
    img = img.toInt() if recipe.categorical else img.toFloat()
    if recipe.resampling is not None:
        img = img.resample(recipe.resampling)
    return img.rename([recipe.name])


def covariate_image(spec: CovariateSpec, start: str = DEFAULT_START, end: str = DEFAULT_END) -> ee.Image:
    """One covariate as a single-band ``ee.Image`` named ``spec.name``."""
    return recipe_image(parse_recipe(spec), *check_window(start, end))


def catalog_image(
    specs: Sequence[CovariateSpec], start: str = DEFAULT_START, end: str = DEFAULT_END
) -> ee.Image:
    """All ``specs`` as one multi-band ``ee.Image`` whose band names are the covariate names, in order."""
    if not specs:
        raise CovariateError("no covariates given to build an Earth Engine image from")
    start, end = check_window(start, end)
    recipes = [parse_recipe(s) for s in specs]
    images = [recipe_image(r, start, end) for r in recipes]
    return ee.Image.cat(images).rename([r.name for r in recipes])


def image_graph(image: ee.ComputedObject, *, pretty: bool = False) -> str:
    """The serialised expression graph (the JSON Earth Engine's REST API receives) of ``image``."""
    return ee.serializer.toJSON(image, opt_pretty=pretty)


def graph_functions(graph: str | dict[str, Any]) -> list[str]:
    """Every ``functionName`` invoked in a serialised graph, in document order (handy for inspection and tests)."""
    doc = json.loads(graph) if isinstance(graph, str) else graph
    out: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "functionName" in node:
                out.append(node["functionName"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    return out
