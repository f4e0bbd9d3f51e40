"""Property-based tests: any sample table (CSV, Parquet, GeoJSON, GPKG) either loads cleanly or raises GeesoilError."""

from __future__ import annotations

import contextlib
import json
import math
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import reliability
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cli.main import cli
from geesoil.errors import GeesoilError
from geesoil.samples import TARGET_BOUNDS, load_samples, read_samples

FUZZ = settings(
    max_examples=reliability.examples(120),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
CHEAP = settings(FUZZ, max_examples=reliability.examples(60))

#: Column names a generator draws from: canonical names, aliases, case variants, junk and unicode.
NAMES = st.sampled_from(
    [
        "lon",
        "lat",
        "oc_gkg",
        "LONGITUDE",
        "Latitude",
        "x",
        "y",
        "ORCDRC",
        "top_cm",
        "bottom_cm",
        "profile_id",
        "date",
        "depth_top",
        "hzdepb",
        "sourceid",
        "comment",
        "sité",
        "",
        " lon ",
        "oc_gkg",
        "名前",
    ]
)
#: Cell texts: numbers of every shape, NaN/inf, huge values, decimal commas, unicode, quotes, empty cells.
CELL_TEXT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.floats(min_value=-200, max_value=200).map(lambda v: f"{v:.4f}"),
    st.floats(min_value=-200, max_value=200).map(lambda v: f"{v:.3f}".replace(".", ",")),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.sampled_from(["", "NA", "nan", "-", "null", "inf", "-inf", "1e308", "1e-320", "2019-03-04", "true"]),
    st.text(max_size=12),
)
SEPARATORS = st.sampled_from([",", ";", "\t", "|"])


def _check_result(ss: object) -> None:
    """What a SampleSet promises: finite in-range coordinates, a finite in-bounds target, rejects accounted for."""
    f = ss.frame  # type: ignore[attr-defined]
    assert len(f) > 0
    lon, lat = f["lon"].to_numpy(float), f["lat"].to_numpy(float)
    assert np.isfinite(lon).all() and np.isfinite(lat).all()
    assert (np.abs(lon) <= 180).all() and (np.abs(lat) <= 90).all()
    t = f[ss.target].to_numpy(float)  # type: ignore[attr-defined]
    assert np.isfinite(t).all()
    lo, hi = TARGET_BOUNDS.get(ss.target, (-math.inf, math.inf))  # type: ignore[attr-defined]
    assert (t >= lo).all() and (t <= hi).all()
    assert len(f) + len(ss.rejects) == ss.n_read  # type: ignore[attr-defined]
    assert f["profile_id"].notna().all()
    ss.summary()  # type: ignore[attr-defined]


def _read_or_geesoil_error(path: Path, **kw: object) -> object | None:
    """read_samples' result, or None after a GeesoilError whose message is one non-empty line naming the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ss = read_samples(path, **kw)  # type: ignore[arg-type]
    except GeesoilError as exc:
        msg = str(exc)
        assert msg.strip(), "empty error message"
        assert str(path) in msg or "--crs" in msg, msg
        return None
    _check_result(ss)
    return ss


_ROOT: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def _fuzz_root(tmp_path_factory: pytest.TempPathFactory) -> None:
    _ROOT[:] = [tmp_path_factory.mktemp("fuzz-samples")]


def _fresh(suffix: str) -> Path:
    """A new file path in a fresh folder (hypothesis runs many examples per test; tmp_path is per test)."""
    d = Path(tempfile.mkdtemp(prefix="ex-", dir=_ROOT[0] if _ROOT else None))
    return d / f"samples{suffix}"


@st.composite
def csv_tables(draw: st.DrawFn) -> bytes:
    """A CSV-ish file: a header of drawn names, ragged rows of drawn cells, a drawn separator, BOM and encoding."""
    sep = draw(SEPARATORS)
    header = draw(st.lists(NAMES, min_size=1, max_size=7))
    if draw(st.booleans()):  # most tables have the required columns somewhere
        header = ["lon", "lat", "oc_gkg", *header]
    n_rows = draw(st.integers(min_value=0, max_value=12))
    rows = []
    for _ in range(n_rows):
        width = len(header) if draw(st.integers(0, 9)) else draw(st.integers(0, len(header) + 2))
        cells = [draw(CELL_TEXT) for _ in range(width)]
        rows.append(sep.join(cells))
    if draw(st.booleans()) and n_rows:  # plausible rows too, so the happy path is explored
        for _ in range(draw(st.integers(1, 5))):
            vals = {
                "lon": draw(st.floats(-180, 180)),
                "lat": draw(st.floats(-90, 90)),
                "oc_gkg": draw(st.floats(0, 600)),
            }
            rows.append(sep.join(f"{vals[h]:.5f}" if h in vals else "" for h in header))
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = eol.join([sep.join(header), *rows]) + draw(st.sampled_from(["", eol, eol * 3]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    return text.encode(encoding, errors="replace")


@FUZZ
@given(data=csv_tables())
def test_any_csv_loads_or_raises_geesoil_error(data: bytes) -> None:
    path = _fresh(".csv")
    path.write_bytes(data)
    reliability.tried("samples: CSV (junk, separators, BOMs, encodings)")
    ss = _read_or_geesoil_error(path)
    if ss is not None and ss.is_horizon_level:  # type: ignore[attr-defined]
        with contextlib.suppress(GeesoilError):
            load_samples(path)


@CHEAP
@given(
    data=st.binary(max_size=400), suffix=st.sampled_from([".csv", ".parquet", ".geojson", ".gpkg", ".tsv"])
)
def test_random_bytes_under_any_suffix_raise_geesoil_error(data: bytes, suffix: str) -> None:
    path = _fresh(suffix)
    path.write_bytes(data)
    reliability.tried("samples: random bytes")
    _read_or_geesoil_error(path)


COLUMN_VALUES = st.one_of(
    st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=4, max_size=4),
    st.lists(st.integers(-(2**62), 2**62), min_size=4, max_size=4),
    st.lists(st.text(max_size=6), min_size=4, max_size=4),
    st.lists(st.booleans(), min_size=4, max_size=4),
    st.lists(st.one_of(st.none(), st.floats(-1e3, 1e3), st.text(max_size=4)), min_size=4, max_size=4),
    st.just([pd.Timestamp("2020-01-01")] * 4),
)


@st.composite
def frames(draw: st.DrawFn) -> pd.DataFrame:
    names = draw(st.lists(NAMES, min_size=1, max_size=6, unique_by=lambda s: s.strip().lower()))
    cols: dict[str, list] = {}
    for name in names:
        cols[name] = draw(COLUMN_VALUES)
    if draw(st.booleans()):
        for name, lo, hi in (("lon", -180, 180), ("lat", -90, 90), ("oc_gkg", 0, 600)):
            if name not in cols:
                cols[name] = draw(st.lists(st.floats(lo, hi), min_size=4, max_size=4))
    return pd.DataFrame(cols).iloc[: draw(st.integers(0, 4))]


def _mixed_object_columns_as_text(df: pd.DataFrame) -> pd.DataFrame:
    # Arrow cannot store a column mixing floats and strings; a real exporter would write text
    out = df.copy()
    for c in out.columns:
        if out[c].dtype == object:
            out[c] = out[c].map(lambda v: None if v is None else str(v))
    return out


@FUZZ
@given(df=frames(), truncate=st.booleans())
def test_any_parquet_loads_or_raises_geesoil_error(df: pd.DataFrame, truncate: bool) -> None:
    path = _fresh(".parquet")
    _mixed_object_columns_as_text(df).to_parquet(path, index=False)
    if truncate:
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    reliability.tried("samples: Parquet (wrong types, NaN/inf, truncated)")
    _read_or_geesoil_error(path)


GEOMETRIES = st.one_of(
    st.none(),
    st.builds(
        lambda x, y: {"type": "Point", "coordinates": [x, y]},
        st.floats(-400, 400, allow_nan=False),
        st.floats(-200, 200, allow_nan=False),
    ),
    st.just({"type": "Point", "coordinates": []}),
    st.just({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}),
    st.just({"type": "MultiPoint", "coordinates": [[1, 1], [2, 2]]}),
    st.just({"type": "LineString", "coordinates": [[1, 1], [2, 2]]}),
)
JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(10**20), 10**20), st.floats(-1e6, 1e6), st.text(max_size=8)
)


@st.composite
def geojson_docs(draw: st.DrawFn) -> str:
    feats = []
    keys = draw(st.lists(NAMES, min_size=0, max_size=4))
    plausible = draw(st.booleans())  # half the files are mostly good points, so the happy path is explored
    for _ in range(draw(st.integers(0, 6))):
        props = {k: draw(JSON_SCALARS) for k in keys}
        if plausible or draw(st.booleans()):
            props["oc_gkg"] = draw(st.floats(-10, 700))
        if plausible and draw(st.integers(0, 5)):
            geom = {"type": "Point", "coordinates": [draw(st.floats(-180, 180)), draw(st.floats(-90, 90))]}
        else:
            geom = draw(GEOMETRIES)
        feats.append({"type": "Feature", "geometry": geom, "properties": props})
    doc: dict = {"type": "FeatureCollection", "features": feats}
    if draw(st.booleans()):
        doc["crs"] = {
            "type": "name",
            "properties": {"name": draw(st.sampled_from(["EPSG:3857", "EPSG:28355", "bogus"]))},
        }
    text = json.dumps(doc)
    if draw(st.integers(0, 5)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return text


@FUZZ
@given(text=geojson_docs())
def test_any_geojson_loads_or_raises_geesoil_error(text: str) -> None:
    path = _fresh(".geojson")
    path.write_text(text, encoding="utf-8")
    reliability.tried("samples: GeoJSON (null/empty/non-point geometries, CRS, truncated)")
    _read_or_geesoil_error(path)


@CHEAP
@given(
    df=frames(),
    xy=st.lists(st.tuples(st.floats(-1e7, 1e7), st.floats(-1e7, 1e7)), min_size=1, max_size=4),
    crs=st.sampled_from(["EPSG:4326", "EPSG:3857", "EPSG:28355", None]),
)
def test_any_geopackage_loads_or_raises_geesoil_error(df: pd.DataFrame, xy: list, crs: str | None) -> None:
    import geopandas as gpd
    from shapely.geometry import Point

    df = _mixed_object_columns_as_text(df).reset_index(drop=True).iloc[: len(xy)]
    df = df.drop(
        columns=[c for c in df.columns if not c.strip() or c.strip().lower() in ("fid", "geom", "geometry")]
    )
    geom = [Point(x, y) for x, y in xy[: len(df)]] if len(df) else []
    path = _fresh(".gpkg")
    gdf = gpd.GeoDataFrame(df, geometry=geom, crs=crs)
    try:
        gdf.to_file(path, driver="GPKG")
    except Exception:  # the writer refused this frame (e.g. bool+None columns): nothing to read back
        return
    reliability.tried("samples: GeoPackage (any CRS, wrong types)")
    _read_or_geesoil_error(path)


@settings(FUZZ, max_examples=reliability.examples(25))
@given(
    crs=st.one_of(
        st.text(max_size=20), st.sampled_from(["EPSG:28355", "EPSG:0", "EPSG:999999", "+proj=bogus", "4326"])
    )
)
def test_any_crs_option_works_or_raises_geesoil_error(crs: str) -> None:
    path = _fresh(".csv")
    path.write_text("x,y,oc_gkg\n760000,6650000,12.5\n761000,6651000,8\n", encoding="utf-8")
    reliability.tried("samples: --crs strings")
    _read_or_geesoil_error(path, crs=crs)


# ---- the CLI on bad tables: exit 0 or 2, one line, nothing written on error ------------------------------------


BAD_TABLES = {
    "empty.csv": b"",
    "header_only.csv": b"lon,lat,oc_gkg\n",
    "binary.csv": b"\x00\x01\x02lon,lat\n",
    "text_coords.csv": "lon;lat;oc_gkg\nabc;déf;1\nx;y;2\n".encode(),
    "no_target.csv": b"lon,lat,clay\n150,-30,20\n",
    "all_bad.csv": b"lon,lat,oc_gkg\n150,-30,-5\n151,-31,inf\n",
    "bom_semicolon.csv": "\ufefflon;lat;oc_gkg\n150,5;-30,25;12,5\n".encode(),
    "truncated.parquet": b"PAR1\x00\x00",
    "polygons.geojson": json.dumps(
        {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "properties": {"oc_gkg": 3},
                    "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
                }
            ],
        }
    ).encode(),
}


@pytest.mark.parametrize("name", sorted(BAD_TABLES))
def test_cli_harmonise_on_bad_tables_exits_cleanly_and_writes_nothing(name: str, tmp_path: Path) -> None:
    src = tmp_path / name
    src.write_bytes(BAD_TABLES[name])
    out = tmp_path / "out" / "topsoil.parquet"
    rejects = tmp_path / "out" / "rejects.csv"
    reliability.tried("samples: CLI harmonise on bad tables")
    res = CliRunner().invoke(
        cli, ["samples", "harmonise", str(src), "-o", str(out), "--rejects", str(rejects)]
    )
    assert res.exit_code in (0, 2), (res.exit_code, res.output, res.exception)
    if res.exit_code == 2:
        lines = [ln for ln in res.stderr.splitlines() if ln.startswith("Error:")]
        assert len(lines) == 1 and name in lines[0], res.stderr
        assert "Traceback" not in res.output
        assert not out.exists() and not rejects.exists()
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    else:
        assert out.is_file()
        assert len(pd.read_parquet(out)) > 0


def test_semicolon_csv_with_bom_and_decimal_commas_reads_values(tmp_path: Path) -> None:
    """A hand-checked European export: BOM, ';' separator, decimal commas, one bad row."""
    path = tmp_path / "eu.csv"
    path.write_bytes(
        "\ufeffLongitude;Latitude;ORCDRC\n150,5;-30,25;12,5\n151;-31;x\n149,75;-29,5;7\n".encode()
    )
    reliability.tried("samples: hand-written edge cases")
    ss = read_samples(path)
    assert ss.frame["lon"].tolist() == [150.5, 149.75]
    assert ss.frame["oc_gkg"].tolist() == [12.5, 7.0]
    assert ss.rejects["line"].tolist() == [3]


def test_trailing_separator_does_not_shift_columns(tmp_path: Path) -> None:
    """Found by the CSV fuzzer: one field more than the header made pandas use lon as the index (values shifted)."""
    path = tmp_path / "trailing.csv"
    path.write_text("lon,lat,oc_gkg\n150,-30,5,\n151,-31,6,\n", encoding="utf-8")
    reliability.tried("samples: hand-written edge cases")
    ss = read_samples(path)
    assert ss.frame["lon"].tolist() == [150.0, 151.0]
    assert ss.frame["oc_gkg"].tolist() == [5.0, 6.0]
    # more fields than the header and a repeated column name: a clean read, not a TypeError
    path.write_text("lon,lat,oc_gkg,lon\n0.0,0.0,0,000,0,000", encoding="utf-8")
    assert read_samples(path).frame["oc_gkg"].tolist() == [0.0]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_columns_equal_after_stripping_blanks_are_one_clear_error(suffix: str, tmp_path: Path) -> None:
    """Found by the Parquet fuzzer: 'lon' and ' lon ' became two 'lon' columns and crashed with AttributeError."""
    path = tmp_path / f"dup{suffix}"
    df = pd.DataFrame([[150.0, 150.0, -30.0, 4.0]], columns=["lon", " lon ", "lat", "oc_gkg"])
    df.to_csv(path, index=False) if suffix == ".csv" else df.to_parquet(path, index=False)
    reliability.tried("samples: hand-written edge cases")
    with pytest.raises(GeesoilError, match="two columns named 'lon'"):
        read_samples(path)


def test_dates_out_of_range_or_with_mixed_offsets_are_read_or_left_empty(tmp_path: Path) -> None:
    """Found by the GeoJSON fuzzer: a date '-1' parsed as the year -1 and summary() crashed on it; a column
    mixing UTC offsets raised ValueError from pandas."""
    reliability.tried("samples: hand-written edge cases", 2)
    path = tmp_path / "dates.csv"
    path.write_text("lon,lat,oc_gkg,date\n150,-30,3,-1\n150,-31,3,2019-05-01\n", encoding="utf-8")
    ss = read_samples(path)
    assert ss.frame["date"].isna().tolist() == [True, False]
    assert ss.summary()["date_range"] == ("2019-05-01", "2019-05-01")
    path.write_text(
        "lon,lat,oc_gkg,date\n150,-30,3,2020-01-01T00:00+01:00\n150,-31,3,2020-01-01T12:00+05:00\n",
        encoding="utf-8",
    )
    dates = read_samples(path).frame["date"]
    assert [str(d) for d in dates] == ["2019-12-31 23:00:00", "2020-01-01 07:00:00"]  # both in UTC
