"""Property-based tests for AOIs, pack.json/catalogs, model files (model.json, pickle payloads) and refresh job TOML.

Each input either works or raises the project's own :class:`GeesoilError`; loading a model file never unpickles.
"""

from __future__ import annotations

import copy
import json
import math
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import reliability
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_mapping_data import SPECS, make_pack

from geesoil.covariates.catalog import load_catalog
from geesoil.covariates.pack import read_pack
from geesoil.errors import GeesoilError, ModelError
from geesoil.mapping.aoi import AOI, aoi_grid, default_crs, read_aoi, resolution_in
from geesoil.model.io import load_model, read_metadata, save_model

FUZZ = settings(
    max_examples=reliability.examples(100),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CHEAP = settings(FUZZ, max_examples=reliability.examples(50))
REPO = Path(__file__).resolve().parents[1]
SHIPPED_NET = REPO / "assets" / "models" / "global-starter-v1.geesoil"

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**20), 10**20) | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)

_ROOT: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def _fuzz_root(tmp_path_factory: pytest.TempPathFactory) -> None:
    _ROOT[:] = [tmp_path_factory.mktemp("fuzz-inputs")]


def _fresh_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="ex-", dir=_ROOT[0] if _ROOT else None))


def _one_line_error(exc: GeesoilError) -> str:
    msg = str(exc)
    assert msg.strip(), f"empty {type(exc).__name__}"
    return msg


# ---- mutations of a valid JSON document ----------------------------------------------------------------------


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:4]):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated(draw: st.DrawFn, doc: Any, n_max: int = 3) -> Any:
    """``doc`` with 1..n_max random edits: a value replaced by any JSON, a key deleted, a list emptied."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, n_max))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        action = draw(st.sampled_from(["replace", "delete", "replace"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = draw(JSON)
    return doc


# ---- AOIs ----------------------------------------------------------------------------------------------------

COORD = st.floats(-400, 400, allow_nan=False, allow_infinity=False)
RING = st.lists(st.tuples(COORD, COORD), min_size=0, max_size=6).map(
    lambda pts: [*pts, pts[0]] if pts else []
)
POLYGON_GEOMS = st.one_of(
    RING.map(lambda r: {"type": "Polygon", "coordinates": [r]}),
    st.lists(RING, max_size=3).map(lambda rs: {"type": "MultiPolygon", "coordinates": [[r] for r in rs]}),
    # a bow-tie (self-intersecting) and an antimeridian-crossing box, drawn where they are
    st.builds(
        lambda x, y, d: {
            "type": "Polygon",
            "coordinates": [[[x, y], [x + d, y + d], [x + d, y], [x, y + d], [x, y]]],
        },
        st.floats(-179, 170),
        st.floats(-89, 80),
        st.floats(0.001, 5),
    ),
    st.builds(
        lambda y: {
            "type": "Polygon",
            "coordinates": [[[179, y], [-179, y], [-179, y + 1], [179, y + 1], [179, y]]],
        },
        st.floats(-80, 80),
    ),
    st.builds(
        lambda x, y, d: {
            "type": "Polygon",
            "coordinates": [[[x, y], [x + d, y], [x + d, y + d], [x, y + d], [x, y]]],
        },
        st.floats(-180, 175),
        st.floats(-90, 85),
        st.floats(0.0, 3),
    ),
    st.just({"type": "Point", "coordinates": [150, -30]}),
    st.just({"type": "LineString", "coordinates": [[150, -30], [151, -31]]}),
    st.just({"type": "GeometryCollection", "geometries": []}),
    st.none(),
)
CRS_NAMES = st.sampled_from(
    [None, "EPSG:4326", "urn:ogc:def:crs:OGC:1.3:CRS84", "EPSG:3857", "EPSG:28355", "EPSG:32756", "nonsense"]
)


def _check_aoi(aoi: AOI) -> None:
    minx, miny, maxx, maxy = aoi.bounds
    assert -180 <= minx < maxx <= 180 and -90 <= miny < maxy <= 90
    assert aoi.geometry.is_valid and aoi.geometry.area > 0
    crs = default_crs(aoi)
    try:
        grid = aoi_grid(aoi, crs, resolution_in(5000.0, crs))
    except GeesoilError as exc:
        _one_line_error(exc)
        return
    assert grid.width >= 1 and grid.height >= 1


@FUZZ
@given(geoms=st.lists(POLYGON_GEOMS, min_size=0, max_size=3), crs=CRS_NAMES, truncate=st.integers(0, 9))
def test_any_aoi_file_works_or_raises_geesoil_error(geoms: list, crs: str | None, truncate: int) -> None:
    doc: dict[str, Any] = {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {"i": i}, "geometry": g} for i, g in enumerate(geoms)],
    }
    if crs is not None:
        doc["crs"] = {"type": "name", "properties": {"name": crs}}
    text = json.dumps(doc)
    if truncate == 0:
        text = text[: len(text) // 2]
    path = _fresh_dir() / "aoi.geojson"
    path.write_text(text, encoding="utf-8")
    reliability.tried("AOI files (self-intersecting, empty, multipart, CRSs, antimeridian, truncated)")
    try:
        aoi = read_aoi(path)
    except GeesoilError as exc:
        assert str(path) in _one_line_error(exc)
        return
    _check_aoi(aoi)


@FUZZ
@given(
    text=st.one_of(
        st.text(max_size=30),
        st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=4, max_size=4).map(
            lambda v: ",".join(map(repr, v))
        ),
        st.lists(st.floats(-200, 200), min_size=4, max_size=4).map(lambda v: ",".join(f"{x:.3f}" for x in v)),
    )
)
def test_any_bbox_text_works_or_raises_geesoil_error(text: str) -> None:
    reliability.tried("AOI bbox strings")
    try:
        aoi = read_aoi(text)
    except GeesoilError as exc:
        _one_line_error(exc)
        return
    _check_aoi(aoi)


@pytest.mark.parametrize("text", ["~0", "~no-such-user/aoi.geojson", "a\x00b", "x" * 5000])
def test_aoi_texts_that_are_no_possible_path_are_aoi_errors(text: str) -> None:
    """Found by the bbox fuzzer: '~0' raised RuntimeError (unknown user's home), a NUL byte ValueError."""
    reliability.tried("AOI bbox strings (hand-written)")
    with pytest.raises(GeesoilError, match="neither a file nor a bbox"):
        read_aoi(text)


def test_hand_checked_aois(tmp_path: Path) -> None:
    """Bounds of a multipart AOI in a projected CRS, and the refusals that matter most."""
    import geopandas as gpd
    from shapely.geometry import MultiPolygon, box

    reliability.tried("AOI files (hand-written)", 3)
    parts = MultiPolygon([box(760000, 6650000, 770000, 6660000), box(780000, 6650000, 790000, 6655000)])
    path = tmp_path / "two.gpkg"
    gpd.GeoDataFrame(geometry=[parts], crs="EPSG:28355").to_file(path)
    aoi = read_aoi(path)
    assert aoi.geometry.geom_type == "MultiPolygon"
    assert (
        149.6 < aoi.bounds[0] < aoi.bounds[2] < 150.1
    )  # MGA zone 55 (CM 147°E) easting 760-790 km near 30°S
    with pytest.raises(GeesoilError, match="antimeridian"):
        read_aoi("179,-10,-179,-9")
    bowtie = tmp_path / "bowtie.geojson"
    bowtie.write_text(
        json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}),
        encoding="utf-8",
    )
    with pytest.raises(GeesoilError, match="invalid geometry"):
        read_aoi(bowtie)


# ---- pack.json and catalogs -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_pack(tmp_path_factory.mktemp("pack") / "pack")


def _write_manifest(pack_dir: Path, text: str) -> Path:
    folder = _fresh_dir()
    for tif in pack_dir.glob("*.tif"):
        (folder / tif.name).symlink_to(tif)
    (folder / "pack.json").write_text(text, encoding="utf-8")
    return folder


@FUZZ
@given(data=st.data())
def test_any_pack_manifest_reads_or_raises_geesoil_error(pack_dir: Path, data: st.DataObject) -> None:
    valid = json.loads((pack_dir / "pack.json").read_text())
    doc = data.draw(
        st.one_of(
            mutated(valid),
            mutated(valid, n_max=1).map(lambda d: d),
            st.sampled_from(
                ["../elev.tif", "/etc/passwd", "", "missing.tif", "elev.tif/..", "./elev.tif"]
            ).map(lambda f: {**valid, "covariates": [{**valid["covariates"][0], "file": f}]}),
            JSON,
        )
    )
    text = (
        json.dumps(doc) if data.draw(st.integers(0, 7)) else json.dumps(doc)[: data.draw(st.integers(0, 40))]
    )
    folder = _write_manifest(pack_dir, text)
    reliability.tried("pack.json (mutated, truncated, path escapes)")
    try:
        pack = read_pack(folder)
    except GeesoilError as exc:
        _one_line_error(exc)
    else:
        for spec in pack.covariates:
            path = Path(os.path.normpath(pack.path_of(spec)))
            assert folder in path.parents, path  # never a file outside the pack folder
    try:
        load_catalog(folder / "pack.json")
    except GeesoilError as exc:
        _one_line_error(exc)


# ---- model files ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rf_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from geesoil.baselines import RandomForestSoil

    rng = np.random.default_rng(0)
    n = 80
    frame = pd.DataFrame(
        {
            "elev": rng.uniform(200, 600, n),
            "rain": rng.uniform(400, 700, n),
            "lc": rng.integers(1, 4, n).astype(float),
            "lon": rng.uniform(149.5, 150, n),
            "lat": rng.uniform(-30.3, -30, n),
        }
    )
    y = 5 + 0.02 * frame["rain"] - 0.01 * frame["elev"] + rng.normal(0, 0.5, n)
    model = RandomForestSoil(SPECS, n_estimators=5, min_samples_leaf=2, random_state=0, n_jobs=1)
    model.fit(frame, y.to_numpy())
    return save_model(model, tmp_path_factory.mktemp("model") / "rf.geesoil")


def _rewrite(
    src: Path, dst: Path, *, meta: bytes | None = None, blobs: dict[str, bytes] | None = None
) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name == "model.json" and meta is not None:
                zout.writestr(name, meta)
            elif name.startswith("blobs/") and blobs is not None and name[6:] in blobs:
                zout.writestr(name, blobs[name[6:]])
            else:
                zout.writestr(name, zin.read(name))
    return dst


def _load_or_model_error(path: Path) -> None:
    try:
        read_metadata(path)
        model = load_model(path)
    except ModelError as exc:
        assert str(path) in _one_line_error(exc) or "model" in str(exc)
        return
    except GeesoilError as exc:  # e.g. a CovariateError for a malformed covariate entry
        _one_line_error(exc)
        return
    assert model.covariates
    # a file that loads must also predict: tampering is caught at load time, not on the first map tile
    X = pd.DataFrame({s.name: [np.nan, np.nan] for s in model.covariates})
    X["lon"], X["lat"] = [150.0, 10.0], [-30.0, 45.0]
    pred = np.asarray(model.predict(X))
    lo, hi = model.predict_interval(X)
    assert pred.shape == (2,) and np.asarray(lo).shape == np.asarray(hi).shape == (2,)


@FUZZ
@given(data=st.data())
def test_any_model_json_loads_or_raises_model_error(rf_model: Path, data: st.DataObject) -> None:
    doc = json.loads(zipfile.ZipFile(rf_model).read("model.json"))
    new = data.draw(st.one_of(mutated(doc, n_max=2), mutated({"model": doc["model"]}), JSON))
    raw = json.dumps(new).encode()
    if not data.draw(st.integers(0, 9)):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    path = _rewrite(rf_model, _fresh_dir() / "m.geesoil", meta=raw)
    reliability.tried("model files: mutated model.json")
    _load_or_model_error(path)


@CHEAP
@given(data=st.binary(max_size=300), which=st.sampled_from(["zip", "blob"]))
def test_random_bytes_as_model_file_or_blob_raise_model_error(
    rf_model: Path, data: bytes, which: str
) -> None:
    folder = _fresh_dir()
    if which == "zip":
        path = folder / "m.geesoil"
        path.write_bytes(data)
    else:
        path = _rewrite(rf_model, folder / "m.geesoil", blobs={"forest.skops": data})
    reliability.tried("model files: random bytes as file / skops blob")
    _load_or_model_error(path)


# ---- pickle payloads in checkpoints ------------------------------------------------------------------------------


class _Payload:
    """Unpickling this creates ``marker`` (what an attacker's os.system would do)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def _torch_payload(marker: Path) -> bytes:
    import io

    import torch

    buf = io.BytesIO()
    torch.save({"m0.layer.weight": torch.zeros(1), "evil": _Payload(marker)}, buf)
    return buf.getvalue()


def test_torch_blob_with_a_pickle_payload_is_refused_unexecuted(tmp_path: Path) -> None:
    marker = tmp_path / "pwned-torch"
    model = _rewrite(SHIPPED_NET, tmp_path / "evil.geesoil", blobs={"weights.pt": _torch_payload(marker)})
    reliability.tried("model files: pickle payloads")
    reliability.injected("malicious pickle in the torch blob")
    with pytest.raises(ModelError, match="evil.geesoil.*refusing"):
        load_model(model)
    assert not marker.exists()
    # the same bytes through plain pickle would have run it: the payload is real
    import torch

    torch.load(__import__("io").BytesIO(_torch_payload(marker)), weights_only=False)
    assert marker.exists()


def test_skops_blob_with_a_pickle_payload_is_refused_unexecuted(rf_model: Path, tmp_path: Path) -> None:
    import skops.io as sio

    marker = tmp_path / "pwned-skops"
    reliability.tried("model files: pickle payloads", 2)
    reliability.injected("malicious pickle in the skops blob", 2)
    # 1. a raw pickle where the skops archive should be
    raw = _rewrite(rf_model, tmp_path / "raw.geesoil", blobs={"forest.skops": pickle.dumps(_Payload(marker))})
    with pytest.raises(ModelError, match="raw.geesoil"):
        load_model(raw)
    # 2. a real skops archive whose object is the payload class (an untrusted type)
    blob = sio.dumps({"forest": _Payload(marker)})
    inner = _rewrite(rf_model, tmp_path / "inner.geesoil", blobs={"forest.skops": blob})
    with pytest.raises(ModelError, match="untrusted|refus"):
        load_model(inner)
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()  # the payload itself works


def test_metadata_of_the_wrong_shape_is_a_model_error(rf_model: Path, tmp_path: Path) -> None:
    """Hand-checked cases: model.json that is a list, a format_version that is not a number, a directory."""
    reliability.tried("model files: hand-written model.json", 3)
    for i, meta in enumerate(
        [b"[1, 2]", b'{"format": "geesoil-model", "format_version": "two"}', b"\xff\xfe"]
    ):
        path = _rewrite(rf_model, tmp_path / f"m{i}.geesoil", meta=meta)
        with pytest.raises(ModelError, match=f"m{i}.geesoil"):
            read_metadata(path)
    with pytest.raises(ModelError):
        load_model(tmp_path)


# ---- refresh job TOML -----------------------------------------------------------------------------------------

TOML_VALUES = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(
        lambda v: (
            "nan" if math.isnan(v) else ("inf" if v == math.inf else ("-inf" if v == -math.inf else repr(v)))
        )
    ),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.text(max_size=12).map(json.dumps),
    st.sampled_from(
        [
            '"last 3 full years"',
            '"last 0 years"',
            '"2024-02-30"',
            "[]",
            "[1, 2]",
            "{}",
            '["starter"]',
            '"../../etc"',
            "2024-01-01",
        ]
    ),
)
TABLES = {
    "": ["name"],
    "aoi": ["path", "bbox"],
    "model": ["file", "samples", "strategy", "target", "seed"],
    "covariates": ["sources", "window", "start", "end"],
    "grid": ["scale", "crs", "tile_size", "alpha", "std", "aoa", "aoa_samples"],
    "output": ["dir"],
    "retention": ["keep"],
    "bogus": ["x"],
}


@st.composite
def job_files(draw: st.DrawFn, aoi: Path, model: Path, pack: Path) -> str:
    good = {
        "aoi": {"path": json.dumps(str(aoi))},
        "model": {"file": json.dumps(str(model))},
        "covariates": {"sources": json.dumps([str(pack)])},
        "output": {"dir": '"out"'},
    }
    doc: dict[str, dict[str, str]] = {t: dict(v) for t, v in good.items()} if draw(st.booleans()) else {}
    for _ in range(draw(st.integers(0, 4))):
        table = draw(st.sampled_from(sorted(TABLES)))
        key = draw(st.sampled_from(TABLES[table]))
        doc.setdefault(table, {})[key] = draw(TOML_VALUES)
    lines = [f"{k} = {v}" for k, v in doc.pop("", {}).items()]
    for table, kv in doc.items():
        lines.append(f"[{table}]")
        lines += [f"{k} = {v}" for k, v in kv.items()]
    text = "\n".join(lines) + "\n"
    if not draw(st.integers(0, 9)):
        text = text[: draw(st.integers(0, len(text)))]
    return text


@pytest.fixture(scope="module")
def job_inputs(tmp_path_factory: pytest.TempPathFactory, pack_dir: Path, rf_model: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("job")
    aoi = root / "aoi.geojson"
    aoi.write_text(
        json.dumps(
            {
                "type": "Polygon",
                "coordinates": [
                    [[149.6, -30.2], [149.9, -30.2], [149.9, -30.05], [149.6, -30.05], [149.6, -30.2]]
                ],
            }
        ),
        encoding="utf-8",
    )
    return {"aoi": aoi, "model": rf_model, "pack": pack_dir, "root": root}


@FUZZ
@given(data=st.data())
def test_any_job_toml_parses_or_raises_geesoil_error(
    job_inputs: dict[str, Path], data: st.DataObject
) -> None:
    from geesoil.refresh.job import load_job

    text = data.draw(job_files(job_inputs["aoi"], job_inputs["model"], job_inputs["pack"]))
    folder = _fresh_dir()
    path = folder / "job.toml"
    path.write_text(text, encoding="utf-8")
    reliability.tried("refresh job TOML (junk keys, wrong types, truncated)")
    try:
        job = load_job(path, workdir=folder)
    except GeesoilError as exc:
        _one_line_error(exc)
        return
    assert job.name


# ---- geesoil map through the CLI: exit 0 or 2, one line, no output on error --------------------------------------


@pytest.fixture(scope="module")
def map_world(tmp_path_factory: pytest.TempPathFactory, pack_dir: Path, rf_model: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli-map")
    bad = root / "badpack"
    bad.mkdir()
    for f in pack_dir.iterdir():
        (bad / f.name).write_bytes(f.read_bytes())
    (bad / "elev.tif").write_bytes(b"II*\x00garbage" * 10)
    not_a_file = root / "taken"
    not_a_file.write_text("a file where the output folder should go", encoding="utf-8")
    return {"pack": pack_dir, "model": rf_model, "bad": bad, "taken": not_a_file, "root": root}


BBOX = "149.6,-30.2,149.9,-30.05"
MAP_CASES = {
    "garbage raster in the pack": ["--covariates", "{bad}"],
    "model is a JSON file": ["--model", "{pack}/pack.json"],
    "AOI outside the covariates": ["--aoi", "10,10,11,11"],
    "AOI across the antimeridian": ["--aoi", "179,-10,-179,-9"],
    "AOI bbox with NaN": ["--aoi", "nan,-30.2,149.9,-30.05"],
    "tile size 0": ["--tile-size", "0"],
    "scale NaN": ["--scale", "nan"],
    "scale negative": ["--scale", "-1000"],
    "unknown CRS": ["--crs", "EPSG:99999"],
    "alpha 2": ["--alpha", "2"],
    "-o is a file": ["-o", "{taken}"],
    "-o below a file": ["-o", "{taken}/maps"],
}


@pytest.mark.parametrize("case", sorted(MAP_CASES))
def test_cli_map_with_bad_options_exits_2_with_one_line_and_no_output(
    map_world: dict[str, Path], tmp_path: Path, case: str
) -> None:
    from click.testing import CliRunner

    from cli.main import cli

    out = tmp_path / "maps"
    opts = {
        "--aoi": BBOX,
        "--model": "{model}",
        "--covariates": "{pack}",
        "--tile-size": "16",
        "-o": str(out),
    }
    over = MAP_CASES[case]
    opts.update(dict(zip(over[::2], over[1::2], strict=True)))
    args = ["map", "--quiet"] + [x.format(**map_world) for kv in opts.items() for x in kv]
    reliability.tried("CLI geesoil map with bad options")
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2, (case, res.output, res.exception)
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1, res.stderr
    assert "Traceback" not in res.output
    assert not out.exists() or not any(p for p in out.iterdir() if not p.name.startswith("."))


# ---- Earth Engine answers --------------------------------------------------------------------------------------


_FEATURE = st.fixed_dictionaries(
    {
        "type": st.just("Feature"),
        "properties": st.fixed_dictionaries(
            {
                "geesoil_row": st.one_of(
                    st.integers(-1, 4), st.floats(-1, 4), st.booleans(), st.text(max_size=2)
                )
            },
            optional={"elevation": JSON, "bio01": st.one_of(st.floats(), st.integers(), st.none())},
        ),
    }
)


@FUZZ
@given(feats=st.one_of(st.lists(JSON, max_size=6), st.lists(_FEATURE, max_size=5)))
def test_any_earth_engine_feature_answer_gives_values_or_one_line_error(feats: list) -> None:
    from geesoil.ee.source import ROW_PROPERTY, _features_to_values
    from geesoil.errors import EarthEngineError

    reliability.tried("Earth Engine computeFeatures answers (malformed, truncated)")
    names = ["elevation", "bio01"]
    try:
        out = _features_to_values(feats, names, 3, "batch 1/1")
    except EarthEngineError as exc:
        assert "\n" not in _one_line_error(exc)
        return
    assert out.shape == (3, 2)
    assert sorted(int(f["properties"][ROW_PROPERTY]) for f in feats) == [0, 1, 2]


def test_garbled_earth_engine_rows_are_refused() -> None:
    """Found by the answer fuzzer: rows [0, 0, 0] for 3 points were accepted, leaving rows 1 and 2 silently NaN."""
    from geesoil.ee.source import _features_to_values
    from geesoil.errors import EarthEngineError

    reliability.tried("Earth Engine computeFeatures answers (hand-written)", 3)
    feat = {"properties": {"geesoil_row": 0, "first": 1.5}}
    with pytest.raises(EarthEngineError, match="row 0 twice"):
        _features_to_values([feat] * 3, ["x"], 3, "batch 1/1")
    for row in (0.5, True):
        with pytest.raises(EarthEngineError, match="malformed feature"):
            _features_to_values([{"properties": {"geesoil_row": row}}], ["x"], 1, "batch 1/1")
    good = [{"properties": {"geesoil_row": i, "first": 10.0 * i}} for i in (2, 0, 1)]
    assert _features_to_values(good, ["x"], 3, "b").ravel().tolist() == [0.0, 10.0, 20.0]


JOB_CASES = {
    "not TOML": "name = [unclosed\n",
    "not UTF-8": b'name = "\xff\xfe"\n',
    "unknown table": '[aoi]\nbbox = [149.6, -30.2, 149.9, -30.05]\n[model]\nfile = "{model}"\n[covariates]\nsources = ["{pack}"]\n[output]\ndir = "out"\n[gird]\nscale = 1000\n',
    "bbox of strings": '[aoi]\nbbox = ["a", "b", "c", "d"]\n[model]\nfile = "{model}"\n[covariates]\nsources = ["{pack}"]\n[output]\ndir = "out"\n',
    "missing model file": '[aoi]\nbbox = [149.6, -30.2, 149.9, -30.05]\n[model]\nfile = "nope.geesoil"\n[covariates]\nsources = ["{pack}"]\n[output]\ndir = "out"\n',
    "window in the future": '[aoi]\nbbox = [149.6, -30.2, 149.9, -30.05]\n[model]\nfile = "{model}"\n[covariates]\nsources = ["{pack}"]\nwindow = "last -3 full years"\n[output]\ndir = "out"\n',
    "keep 0": '[aoi]\nbbox = [149.6, -30.2, 149.9, -30.05]\n[model]\nfile = "{model}"\n[covariates]\nsources = ["{pack}"]\n[output]\ndir = "out"\n[retention]\nkeep = 0\n',
}


@pytest.mark.parametrize("case", sorted(JOB_CASES))
def test_cli_refresh_with_bad_job_files_exits_2_and_writes_nothing(
    job_inputs: dict[str, Path], tmp_path: Path, case: str
) -> None:
    from click.testing import CliRunner

    from cli.main import cli

    raw = JOB_CASES[case]
    job = tmp_path / "job.toml"
    if isinstance(raw, bytes):
        job.write_bytes(raw)
    else:
        job.write_text(raw.format(model=job_inputs["model"], pack=job_inputs["pack"]), encoding="utf-8")
    reliability.tried("CLI geesoil refresh with bad job files")
    res = CliRunner().invoke(cli, ["refresh", str(job), "--workdir", str(tmp_path)])
    assert res.exit_code == 2, (case, res.output, res.exception)
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in res.output, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job.toml"]


def test_sliver_aoi_and_list_kind_found_by_the_long_hunt(rf_model: Path, tmp_path: Path) -> None:
    """GEESOIL_FUZZ_SCALE=15 found these: a bbox 1.5e-40° tall made Grid.from_bounds raise ValueError, and a
    model.json whose kind is a list raised TypeError (unhashable) in load_model."""
    reliability.tried("AOI bbox strings (hand-written)")
    reliability.tried("model files: hand-written model.json")
    aoi = read_aoi("-1.0,-1.4920548254706504e-40,0.0,0.0")
    with pytest.raises(GeesoilError, match="no width or height"):
        aoi_grid(aoi, default_crs(aoi), resolution_in(5000.0, default_crs(aoi)))
    doc = json.loads(zipfile.ZipFile(rf_model).read("model.json"))
    path = _rewrite(rf_model, tmp_path / "k.geesoil", meta=json.dumps({**doc, "kind": ["rf"]}).encode())
    with pytest.raises(ModelError, match="unknown model kind"):
        load_model(path)


@CHEAP
@given(
    name=st.one_of(
        st.text(max_size=20),
        st.sampled_from(["coarse-global-v1", "../coarse-global-v1", "~x/y.json", "a.json", ""]),
    )
)
def test_any_catalog_name_loads_or_raises_geesoil_error(name: str) -> None:
    reliability.tried("catalog names and paths")
    try:
        catalog = load_catalog(name)
    except GeesoilError as exc:
        _one_line_error(exc)
        return
    assert catalog.covariates


def test_forest_model_whose_covariates_were_emptied_is_refused(rf_model: Path, tmp_path: Path) -> None:
    """Found by the long model.json hunt: 'covariates': [] loaded a forest that could not predict anything."""
    reliability.tried("model files: hand-written model.json", 2)
    doc = json.loads(zipfile.ZipFile(rf_model).read("model.json"))
    for i, change in enumerate([{"covariates": []}, {"medians": {}}]):
        new = {**doc, "model": {**doc["model"], **change}}
        path = _rewrite(rf_model, tmp_path / f"e{i}.geesoil", meta=json.dumps(new).encode())
        with pytest.raises(ModelError, match=f"e{i}.geesoil.*inconsistent"):
            load_model(path)
    assert load_model(rf_model).covariates  # the untouched file still loads


@CHEAP
@given(data=st.data())
def test_any_soilnet_model_json_loads_or_raises_model_error(data: st.DataObject) -> None:
    doc = json.loads(zipfile.ZipFile(SHIPPED_NET).read("model.json"))
    new = data.draw(mutated(doc, n_max=2))
    path = _rewrite(SHIPPED_NET, _fresh_dir() / "net.geesoil", meta=json.dumps(new).encode())
    reliability.tried("model files: mutated SoilNet model.json")
    _load_or_model_error(path)


def test_soilnet_that_loads_but_cannot_predict_is_refused_at_load(tmp_path: Path) -> None:
    """Found by the SoilNet model.json fuzzer: a layout pointing at a class column that does not exist loaded
    fine and failed with IndexError on the first prediction (the first tile of a map)."""
    reliability.tried("model files: hand-written model.json")
    doc = json.loads(zipfile.ZipFile(SHIPPED_NET).read("model.json"))
    doc["model"]["arch"]["layout"][0]["cat"] = [7]
    path = _rewrite(SHIPPED_NET, tmp_path / "net.geesoil", meta=json.dumps(doc).encode())
    with pytest.raises(ModelError, match="net.geesoil: damaged soilnet model .it cannot predict"):
        load_model(path)
