"""A fake Earth Engine REST server on 127.0.0.1 for offline tests, and the pytest fixtures that start it.

It serves what earthengine-api and xee request: the discovery document and algorithm list bundled with
earthengine-api, ``value:compute``, ``table:computeFeatures`` (with paging) and ``image:computePixels`` (NPY).
For ``geesoil export`` it also keeps image assets: ``image:importExternal`` (COG-backed) and ``image:import``
(ingestion) store the manifest in ``assets`` (asset name → manifest), and ``GET .../assets/NAME`` answers from it.
Expressions are evaluated only as far as tests need: features and points are built for real, images are known
by their band names (the names given by the outermost ``rename``/``select``/``addBands``) and every band name is
looked up in ``rasters`` (band name → local single-band GeoTIFF, read with rasterio). Faults can be injected:
latency, HTTP errors (429, 5xx, "User memory limit exceeded"), malformed answers.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import ee
import numpy as np
import pytest
import rasterio
from loopback import LoopbackHandler, LoopbackServer
from rasterio.transform import Affine
from rasterio.warp import Resampling, reproject

EE_DIR = Path(ee.__file__).resolve().parent
DISCOVERY = EE_DIR / "tests" / "cloud_api_discovery_document.json"
ALGORITHMS = EE_DIR / "tests" / "algorithms.json"


# ---- a small evaluator for serialised expressions ------------------------------------------------------------
class EvalError(Exception):
    """The fake cannot (or will not) evaluate this expression: answered as HTTP 400."""


@dataclass
class FakeImage:
    bands: list[str]
    fill: float | None = None  # set by Image.unmask


@dataclass
class Opaque:
    """The result of a function the fake does not evaluate (e.g. ``Image.load``): fine as long as nobody needs it."""

    name: str


@dataclass
class Closure:
    arg_names: list[str]
    body: str


def _image_bands(x: Any) -> list[str] | None:
    return x.bands if isinstance(x, FakeImage) else None


def _rename(input: Any = None, names: Any = None, **_: Any) -> FakeImage:
    return FakeImage(list(names), getattr(input, "fill", None))


def _select(input: Any = None, bandSelectors: Any = None, newNames: Any = None, **_: Any) -> FakeImage:
    if newNames:
        return FakeImage(list(newNames))
    have = _image_bands(input)
    sel = [s for s in bandSelectors if isinstance(s, str)]
    if have is not None:
        missing = [s for s in sel if s not in have]
        if missing:
            raise EvalError(f"Image.select: band {missing[0]!r} not found; bands: {have}")
    return FakeImage(sel)


def _add_bands(dstImg: Any = None, srcImg: Any = None, names: Any = None, **_: Any) -> Any:
    dst, src = _image_bands(dstImg), _image_bands(srcImg)
    if dst is None or (src is None and not names):
        return Opaque("Image.addBands")
    added = list(names) if names else src
    return FakeImage(dst + added)


def _unmask(input: Any = None, value: Any = None, **_: Any) -> Any:
    if not isinstance(input, FakeImage):
        return Opaque("Image.unmask")
    fill = value.fill if isinstance(value, FakeImage) else value
    return FakeImage(list(input.bands), float(fill) if fill is not None else 0.0)


def _constant(value: Any = None, **_: Any) -> FakeImage:
    img = FakeImage(["constant"])
    img.fill = (
        float(value) if isinstance(value, int | float) else None
    )  # lets Image.unmask(constant(v)) read v
    return img


FUNCTIONS: dict[str, Any] = {
    "GeometryConstructors.Point": lambda coordinates=None, **_: {
        "type": "Point",
        "coordinates": list(coordinates),
    },
    "Feature": lambda geometry=None, metadata=None, **_: {
        "type": "Feature",
        "geometry": geometry,
        "properties": dict(metadata or {}),
    },
    "Collection": lambda features=None, **_: list(features),
    "ImageCollection.fromImages": lambda images=None, **_: list(images),
    "Collection.toList": lambda collection=None, count=None, offset=0, **_: list(collection)[
        offset : offset + count
    ],
    "List.slice": lambda list=None, start=0, end=None, step=1, **_: list[start:end:step],
    "Collection.size": lambda collection=None, **_: len(collection),
    "Collection.first": lambda collection=None, **_: collection[0] if collection else None,
    "Element.toDictionary": lambda element=None, **_: {},
    "Collection.reduceColumns": lambda collection=None, selectors=None, **_: {
        "list": [[None] * len(collection), [0] * len(collection)]
    },
    "Dictionary.get": lambda dictionary=None, key=None, **_: dictionary[key],
    "Number.add": lambda left=None, right=None, **_: left + right,
    "Reducer.first": lambda **_: "first",
    "Reducer.toList": lambda **_: "toList",
    "Reducer.repeat": lambda **_: "repeat",
    "Image.rename": _rename,
    "Image.select": _select,
    "Image.addBands": _add_bands,
    "Image.unmask": _unmask,
    "Image.constant": _constant,
    "Image.mask": lambda image=None, **_: image,
    "Image.bandNames": lambda image=None, **_: list(image.bands),
}


class Evaluator:
    """Evaluates a ``{"result": ..., "values": ...}`` expression with :data:`FUNCTIONS` (+ ``extra``)."""

    def __init__(self, expression: dict[str, Any], extra: dict[str, Any] | None = None) -> None:
        self.values = expression["values"]
        self.result = expression["result"]
        self.functions = {**FUNCTIONS, **(extra or {})}

    def run(self) -> Any:
        return self.node(self.values[self.result], {})

    def node(self, node: dict[str, Any], env: dict[str, Any]) -> Any:
        if "constantValue" in node:
            return node["constantValue"]
        if "integerValue" in node:
            return int(node["integerValue"])
        if "valueReference" in node:
            return self.node(self.values[node["valueReference"]], env)
        if "argumentReference" in node:
            return env[node["argumentReference"]]
        if "arrayValue" in node:
            return [self.node(v, env) for v in node["arrayValue"].get("values", [])]
        if "dictionaryValue" in node:
            return {k: self.node(v, env) for k, v in node["dictionaryValue"].get("values", {}).items()}
        if "functionDefinitionValue" in node:
            fd = node["functionDefinitionValue"]
            return Closure(fd["argumentNames"], fd["body"])
        if "functionInvocationValue" in node:
            fi = node["functionInvocationValue"]
            args = {k: self.node(v, env) for k, v in fi.get("arguments", {}).items()}
            name = fi.get("functionName")
            if name == "Collection.iterate":
                return self.iterate(args)
            if name not in self.functions:
                return Opaque(name or "?")
            try:
                return self.functions[name](**args)
            except (TypeError, KeyError, IndexError, AttributeError):
                # Applied to something the fake left unevaluated (an Opaque): unevaluated as well.
                return Opaque(name)
        if "nullValue" in node or node == {}:
            return None
        raise EvalError(f"unsupported expression node {sorted(node)}")

    def iterate(self, args: dict[str, Any]) -> Any:
        fn: Closure = args["function"]
        acc = args.get("first")
        for element in args["collection"]:
            acc = self.node(self.values[fn.body], dict(zip(fn.arg_names, [element, acc], strict=True)))
        return acc


# ---- raster lookups --------------------------------------------------------------------------------------------
class Rasters:
    """Band name → single-band GeoTIFF; samples at points and reads onto Earth Engine pixel grids."""

    def __init__(self, files: dict[str, Path]) -> None:
        self.files = {k: Path(v) for k, v in files.items()}
        self._lock = threading.Lock()

    def _path(self, band: str) -> Path:
        if band not in self.files:
            raise EvalError(
                f"Image.load: no data for band {band!r} in the fake server; known: {sorted(self.files)}"
            )
        return self.files[band]

    def sample(self, band: str, coords: list[tuple[float, float]]) -> list[float | None]:
        with rasterio.open(self._path(band)) as src:
            nodata = src.nodata
            out: list[float | None] = []
            for (v,) in src.sample(coords, indexes=[1], masked=False):
                row, col = src.index(*coords[len(out)])
                inside = 0 <= row < src.height and 0 <= col < src.width
                ok = inside and (nodata is None or v != nodata) and np.isfinite(v)
                out.append(float(v) if ok else None)
            return out

    def read_grid(self, band: str, grid: dict[str, Any], fill: float) -> np.ndarray:
        dims = grid["dimensions"]
        t = grid["affineTransform"]
        transform = Affine(
            t.get("scaleX", 0), t.get("shearX", 0), t.get("translateX", 0),
            t.get("shearY", 0), t.get("scaleY", 0), t.get("translateY", 0),
        )  # fmt: skip
        dst = np.full((dims["height"], dims["width"]), np.nan, dtype="float32")
        with rasterio.open(self._path(band)) as src:
            reproject(
                rasterio.band(src, 1),
                dst,
                dst_transform=transform,
                dst_crs=grid.get("crsCode", "EPSG:4326"),
                dst_nodata=np.nan,
                resampling=Resampling.nearest,
            )
        return np.where(np.isnan(dst), np.float32(fill), dst)


# ---- faults ----------------------------------------------------------------------------------------------------
@dataclass
class Fault:
    """One injected failure: an HTTP error ``status`` with ``message``, or a 200 with a ``malformed`` body."""

    status: int = 503
    message: str = "The service is currently unavailable."
    malformed: bool = False
    #: Substring of the request path it applies to; the default ":" matches the compute calls (``value:compute``...)
    #: but not discovery or the algorithm list. Use "algorithms" to fail ``ee.Initialize``.
    endpoint: str = ":"


@dataclass
class Call:
    method: str
    path: str
    body: dict[str, Any] = field(default_factory=dict)
    status: int = 200
    bytes_in: int = 0  # request body bytes received
    bytes_out: int = 0  # response body bytes sent


class FakeEarthEngine(LoopbackServer):
    """The fake server: ``start()``, ``url``, ``inject(...)``, ``calls``, ``stop()``."""

    thread_name = "fake-ee"

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        return _Handler

    def __init__(self, rasters: dict[str, Path] | None = None, *, default_page_size: int = 1000) -> None:
        self.rasters = Rasters(rasters or {})
        self.default_page_size = default_page_size
        self.latency_s = 0.0
        self.calls: list[Call] = []
        self.max_in_flight = 0
        self._in_flight = 0
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        #: image assets created through image:importExternal / image:import: asset name → the request's manifest
        self.assets: dict[str, dict[str, Any]] = {}

    # -- control
    def inject(self, fault: Fault | None = None, times: int = 1, **kwargs: Any) -> None:
        """Make the next ``times`` matching requests fail with ``fault`` (or ``Fault(**kwargs)``)."""
        fault = fault or Fault(**kwargs)
        with self._lock:
            self._faults.extend([fault] * times)

    def calls_to(self, endpoint: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if endpoint in c.path]

    # -- internals
    def _take_fault(self, path: str) -> Fault | None:
        with self._lock:
            for i, f in enumerate(self._faults):
                if f.endpoint in path:
                    del self._faults[i]
                    return f
        return None

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, str, bytes]:
        fault = self._take_fault(path)
        if fault is not None:
            if fault.malformed:
                return 200, "application/json", b'{"features": [ {"type": "Feat'
            return _error(fault.status, fault.message)
        if "$discovery" in path:
            return 200, "application/json", _discovery_bytes()
        if path.endswith("/algorithms"):
            return 200, "application/json", ALGORITHMS.read_bytes()
        if self.latency_s:
            time.sleep(self.latency_s)
        try:
            if path.endswith("value:compute"):
                return _json(200, {"result": _to_json(Evaluator(body["expression"]).run())})
            if path.endswith("table:computeFeatures"):
                return self._compute_features(body)
            if path.endswith("image:computePixels"):
                return self._compute_pixels(body)
            if path.endswith(("image:importExternal", "image:import")) and method == "POST":
                return self._import_image(path, body)
            if "/assets/" in path and method == "GET":
                name = path.split("/", 2)[2]  # drop the version: /v1alpha/projects/P/assets/NAME
                if name not in self.assets:
                    return _error(404, f"Asset '{name}' not found.")
                return _json(200, {"type": "IMAGE", "name": name, **self.assets[name]})
        except EvalError as exc:
            return _error(400, str(exc))
        return _error(404, f"fake Earth Engine does not serve {method} {path}")

    def _compute_features(self, body: dict[str, Any]) -> tuple[int, str, bytes]:
        def reduce_regions(image=None, collection=None, reducer=None, **_: Any) -> list[dict[str, Any]]:
            if not isinstance(image, FakeImage):
                raise EvalError(
                    f"reduceRegions: cannot tell the image's bands ({getattr(image, 'name', image)})"
                )
            if reducer != "first":
                raise EvalError(f"reduceRegions: the fake only knows Reducer.first, got {reducer}")
            coords = [tuple(f["geometry"]["coordinates"]) for f in collection]
            cols = {b: self.rasters.sample(b, coords) for b in image.bands}
            keys = ["first"] if len(image.bands) == 1 else image.bands  # as Earth Engine names single outputs
            out = []
            for i, feat in enumerate(collection):
                props = dict(feat["properties"])
                props.update({k: cols[b][i] for k, b in zip(keys, image.bands, strict=True)})
                out.append({"type": "Feature", "geometry": feat["geometry"], "properties": props})
            return out

        feats = Evaluator(body["expression"], {"Image.reduceRegions": reduce_regions}).run()
        if not isinstance(feats, list):
            raise EvalError("computeFeatures: expression is not a feature collection the fake can evaluate")
        size = int(body.get("pageSize") or self.default_page_size)
        start = int(body.get("pageToken") or 0)
        page: dict[str, Any] = {"type": "FeatureCollection", "features": feats[start : start + size]}
        if start + size < len(feats):
            page["nextPageToken"] = str(start + size)
        return _json(200, page)

    def _import_image(self, path: str, body: dict[str, Any]) -> tuple[int, str, bytes]:
        """Check an ImageManifest the way Earth Engine would (names, uris, band → tileset links) and store it."""
        manifest = body.get("imageManifest") or {}
        name = manifest.get("name", "")
        if not name.startswith("projects/") or "/assets/" not in name:
            raise EvalError(f"invalid asset name {name!r}")
        tileset_ids = set()
        for ts in manifest.get("tilesets", []):
            uris = [u for src in ts.get("sources", []) for u in src.get("uris", [])]
            if not uris or not all(u.startswith("gs://") for u in uris):
                raise EvalError(f"tileset {ts.get('id')!r}: sources must be gs:// uris, got {uris}")
            tileset_ids.add(ts.get("id", ""))
        for band in manifest.get("bands", []):
            if band.get("tilesetId", "") not in tileset_ids:
                raise EvalError(f"band {band.get('id')!r}: unknown tilesetId {band.get('tilesetId')!r}")
        if not all(isinstance(v, int | float | str) for v in manifest.get("properties", {}).values()):
            raise EvalError("properties must be numbers or strings")
        with self._lock:
            if name in self.assets and not body.get("overwrite"):
                return _error(400, f"Cannot overwrite asset '{name}'.")
            self.assets[name] = manifest
        if path.endswith("image:importExternal"):
            return _json(200, {})
        project = path.split("/")[2:4]
        return _json(200, {"name": f"{'/'.join(project)}/operations/IMPORT{len(self.assets)}", "done": False})

    def _compute_pixels(self, body: dict[str, Any]) -> tuple[int, str, bytes]:
        image = Evaluator(body["expression"]).run()
        if not isinstance(image, FakeImage):
            raise EvalError("computePixels: cannot tell the image's bands")
        if body.get("fileFormat") != "NPY":
            raise EvalError(f"computePixels: the fake only writes NPY, got {body.get('fileFormat')}")
        bands = body.get("bandIds") or image.bands
        grid = body["grid"]
        dims = grid["dimensions"]
        arr = np.zeros((dims["height"], dims["width"]), dtype=[(b, "<f4") for b in bands])
        for b in bands:
            arr[b] = self.rasters.read_grid(b, grid, image.fill if image.fill is not None else 0.0)
        buf = io.BytesIO()
        np.save(buf, arr)
        return 200, "application/octet-stream", buf.getvalue()


def _to_json(x: Any) -> Any:
    if isinstance(x, FakeImage):
        return {
            "type": "Image",
            "bands": [
                {"id": b, "data_type": {"type": "PixelType", "precision": "float"}, "crs": "EPSG:4326"}
                for b in x.bands
            ],
        }
    if isinstance(x, Opaque):
        raise EvalError(f"the fake server does not evaluate {x.name}")
    if isinstance(x, list):
        return [_to_json(v) for v in x]
    if isinstance(x, dict):
        return {k: _to_json(v) for k, v in x.items()}
    return x


_DISCOVERY_CACHE: list[bytes] = []


def _discovery_bytes() -> bytes:
    """The bundled discovery document, plus ``image.importExternal`` (in the live API, missing from the bundle)."""
    if not _DISCOVERY_CACHE:
        doc = json.loads(DISCOVERY.read_text())
        methods = doc["resources"]["projects"]["resources"]["image"]["methods"]
        if "importExternal" not in methods and "import" in methods:
            m = json.loads(json.dumps(methods["import"]))
            m["id"] += "External"
            m["path"] += "External"
            m["flatPath"] += "External"
            methods["importExternal"] = m
        _DISCOVERY_CACHE.append(json.dumps(doc).encode())
    return _DISCOVERY_CACHE[0]


def _json(status: int, doc: Any) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(doc).encode()


def _error(status: int, message: str) -> tuple[int, str, bytes]:
    names = {
        400: "INVALID_ARGUMENT",
        404: "NOT_FOUND",
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        503: "UNAVAILABLE",
    }
    return _json(
        status, {"error": {"code": status, "message": message, "status": names.get(status, "UNKNOWN")}}
    )


class _Handler(LoopbackHandler):
    fake: FakeEarthEngine
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        path = urlparse(self.path).path
        body = json.loads(raw) if raw else {}
        fake = self.fake
        with fake._lock:
            fake._in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake._in_flight)
        try:
            status, ctype, payload = fake.handle(method, path, body)
        except Exception as exc:  # a bug in the fake: answer 500 so the client side sees something
            status, ctype, payload = _error(500, f"fake server crashed: {type(exc).__name__}: {exc}")
        finally:
            with fake._lock:
                fake._in_flight -= 1
        with fake._lock:
            fake.calls.append(Call(method, path, body, status, len(raw), len(payload)))
        self.reply(status, {"Content-Type": ctype}, payload)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")


# ---- fixtures --------------------------------------------------------------------------------------------------
def pack_rasters(pack_dir: Path) -> dict[str, Path]:
    """Covariate name → raster file of a covariate pack folder (its ``pack.json``)."""
    doc = json.loads((pack_dir / "pack.json").read_text())
    return {c["name"]: pack_dir / c["file"] for c in doc["covariates"]}


def fake_login(project: str = "test") -> Any:
    """A :class:`geesoil.ee.auth.Login` with a static bearer token (never refreshed, never sent anywhere real)."""
    from google.oauth2.credentials import Credentials

    from geesoil.ee.auth import Login

    return Login(Credentials(token="fake-token"), "fake test token", project)


@pytest.fixture
def fake_ee(coarse_pack: Path, monkeypatch: pytest.MonkeyPatch):
    """A running fake server serving the shared coarse pack, with ``ee`` initialised against it (project "test")."""
    from geesoil.ee.auth import initialize

    server = FakeEarthEngine(pack_rasters(coarse_pack)).start()
    # ee.Initialize fetches a deprecated-assets list from storage.googleapis.com: no network here.
    monkeypatch.setattr(ee.deprecation, "_FetchDataCatalogStac", dict)
    try:
        initialize(project="test", url=server.url, login=fake_login(), environ={}, connect_timeout_s=2)
        yield server
    finally:
        ee.Reset()
        server.stop()
