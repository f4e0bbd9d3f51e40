"""Reading and validating sample tables: formats, aliases, CRS, file- and row-level problems, pooling."""

from __future__ import annotations

import logging
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest

from geesoil.errors import SampleFileError, SampleRowError
from geesoil.harmonise import harmonise
from geesoil.samples import load_samples, pool_sources, read_samples, write_rejects

# Three realistic profiles near Nairobi; P3 has an organic layer above the mineral surface (FAO convention).
PROFILES = [
    ("P1", 36.8123, -1.2871, [(0, 10, 25.0), (10, 30, 12.0), (30, 60, 6.5)]),
    ("P2", 37.0412, -1.5330, [(0, 20, 18.2), (20, 50, 9.1)]),
    ("P3", 36.9051, -1.1984, [(-5, 0, 320.0), (0, 15, 30.5), (15, 40, 14.0), (40, 80, 5.0)]),
]


@pytest.fixture
def table() -> pd.DataFrame:
    rows = [(pid, lon, lat, t, b, oc) for pid, lon, lat, hz in PROFILES for t, b, oc in hz]
    return pd.DataFrame(rows, columns=["profile_id", "lon", "lat", "top_cm", "bottom_cm", "oc_gkg"])


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    p = tmp_path / name
    if isinstance(text, bytes):
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8")
    return p


# --- formats -------------------------------------------------------------------------------------------------


def _same(ss, table: pd.DataFrame) -> None:
    f = ss.frame
    assert f["profile_id"].tolist() == table["profile_id"].tolist()
    np.testing.assert_allclose(f["lon"], table["lon"], atol=1e-7)
    np.testing.assert_allclose(f["lat"], table["lat"], atol=1e-7)
    np.testing.assert_allclose(f["oc_gkg"], table["oc_gkg"])
    np.testing.assert_allclose(f["top_cm"], table["top_cm"])
    assert len(ss.rejects) == 0


def test_csv_parquet_geojson_gpkg_read_alike(tmp_path: Path, table: pd.DataFrame) -> None:
    csv = tmp_path / "p.csv"
    table.to_csv(csv, index=False)
    pq = tmp_path / "p.parquet"
    table.to_parquet(pq)
    gdf = gpd.GeoDataFrame(
        table.drop(columns=["lon", "lat"]), geometry=gpd.points_from_xy(table["lon"], table["lat"]), crs=4326
    )
    gj = tmp_path / "p.geojson"
    gdf.to_file(gj)
    # a GeoPackage in a projected CRS (UTM 37S) is reprojected back to WGS84
    gpkg = tmp_path / "p.gpkg"
    gdf.to_crs(32737).to_file(gpkg)
    for path in (csv, pq, gj, gpkg):
        ss = read_samples(path)
        _same(ss, table)
    assert read_samples(gpkg).crs == "EPSG:32737"


def test_semicolon_bom_decimal_comma_csv(tmp_path: Path, table: pd.DataFrame) -> None:
    text = table.to_csv(index=False, sep=";", decimal=",")
    path = write(tmp_path, "excel.csv", b"\xef\xbb\xbf" + text.encode("utf-8"))
    _same(read_samples(path), table)


def test_aliases_case_insensitive_with_log_note(
    tmp_path: Path, table: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    renamed = table.rename(
        columns={
            "lon": "LONWGS84",
            "lat": "LATWGS84",
            "oc_gkg": "ORCDRC",
            "profile_id": "SOURCEID",
            "top_cm": "Top",
        }
    ).rename(columns={"bottom_cm": "BOTTOM"})
    path = tmp_path / "isric.csv"
    renamed.to_csv(path, index=False)
    with caplog.at_level(logging.INFO, logger="geesoil.samples"):
        ss = read_samples(path)
    _same(ss, table)
    assert ss.columns["oc_gkg"] == "ORCDRC" and ss.columns["lon"] == "LONWGS84"
    assert "using column 'ORCDRC' as oc_gkg" in caplog.text
    for lon, lat in (("x", "y"), ("Longitude", "Latitude")):
        p = tmp_path / f"{lon}.csv"
        table.rename(columns={"lon": lon, "lat": lat}).to_csv(p, index=False)
        _same(read_samples(p), table)


def test_custom_target(tmp_path: Path, table: pd.DataFrame) -> None:
    path = tmp_path / "clay.csv"
    table.rename(columns={"oc_gkg": "clay_pct"}).assign(
        clay_pct=[20.0, 25, 30, 15, 18, 40, 22, 30, 35]
    ).to_csv(path, index=False)
    ss = read_samples(path, target="clay_pct")
    assert "clay_pct" in ss.frame.columns and "oc_gkg" not in ss.frame.columns
    with pytest.raises(SampleFileError, match="--target"):
        read_samples(path)


def test_csv_with_crs_matches_edgeroi_wgs84(tmp_path: Path, soil_dir: Path) -> None:
    # Edgeroi carries both MGA zone 55 metres and the WGS84 (= GDA94, null transformation) degrees
    e = pd.read_parquet(soil_dir / "edgeroi.parquet").drop_duplicates("profile_id").head(50)
    path = tmp_path / "mga.csv"
    e[["profile_id", "x_mga55", "y_mga55", "oc_gkg"]].rename(columns={"x_mga55": "x", "y_mga55": "y"}).to_csv(
        path, index=False
    )
    with pytest.raises(SampleFileError, match="--crs"):
        read_samples(path)
    ss = read_samples(path, crs="EPSG:28355")
    np.testing.assert_allclose(ss.frame["lon"], e["lon"], atol=1e-6)
    np.testing.assert_allclose(ss.frame["lat"], e["lat"], atol=1e-6)
    with pytest.raises(SampleFileError, match="--crs 'EPSG:nope'"):
        read_samples(path, crs="EPSG:nope")


def test_dates_and_extra_columns_kept(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "d.csv",
        "lon,lat,oc_gkg,date,land_use\n36.8,-1.3,12.5,2019-03-04,crop\n36.9,-1.4,20.1,2020-11-30,forest\n",
    )
    ss = read_samples(path)
    assert ss.frame["date"].dt.year.tolist() == [2019, 2020]
    assert ss.frame["land_use"].tolist() == ["crop", "forest"]
    assert ss.profile_id_assigned and ss.frame["profile_id"].is_unique
    assert not ss.is_horizon_level


# --- file-level problems -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content", "match"),
    [
        ("empty.csv", "", "file is empty"),
        ("header.csv", "lon,lat,oc_gkg\n", "no data rows"),
        ("missing.csv", "x,y,soc\n1,2,3\n", r"missing column\(s\) oc_gkg"),
        ("nolat.csv", "lon,oc_gkg\n1,3\n", r"missing column\(s\) lat"),
        (
            "nonnum.csv",
            "lon,lat,oc_gkg\n36.8,-1.3,high\n36.9,-1.2,low\n36.7,-1.1,5\n",
            r"'oc_gkg'.*not numeric.*'high' at row 1 \(line 2\)",
        ),
        (
            "swapped.csv",
            "lon,lat,oc_gkg\n45.1,100.2,5\n46.1,120.2,5\n47,130,4\n",
            r"swapped.*row 1 \(line 2\)",
        ),
        ("novalid.csv", "lon,lat,oc_gkg\n36.8,-1.3,-4\n36.9,-1.2,990\n", "no valid rows"),
        ("onlytop.csv", "lon,lat,oc_gkg,top_cm\n36.8,-1.3,4,0\n", "no bottom_cm"),
        ("binary.csv", b"PAR1\x00\x01\x02\x00garbage", "not a text CSV"),
        ("broken.parquet", b"not a parquet file at all", "cannot read as Parquet"),
        ("broken.gpkg", b"not a geopackage", "cannot read as a vector file"),
        ("samples.xlsx", b"PK\x03\x04", "unknown file type"),
    ],
)
def test_file_level_errors_name_file_and_problem(
    tmp_path: Path, name: str, content: str | bytes, match: str
) -> None:
    path = write(tmp_path, name, content)
    with pytest.raises(SampleFileError, match=match) as exc:
        read_samples(path)
    assert str(path) in str(exc.value)


def test_missing_file_and_polygons(tmp_path: Path) -> None:
    with pytest.raises(SampleFileError, match="file not found"):
        read_samples(tmp_path / "nope.csv")
    import shapely

    poly = gpd.GeoDataFrame({"oc_gkg": [5.0]}, geometry=[shapely.box(36, -2, 37, -1)], crs=4326)
    path = tmp_path / "fields.geojson"
    poly.to_file(path)
    with pytest.raises(SampleFileError, match="Polygon geometries; samples must be points"):
        read_samples(path)


# --- row-level problems --------------------------------------------------------------------------------------

BAD_ROWS = """lon,lat,oc_gkg,top_cm,bottom_cm
36.8,-1.3,12.0,0,30
200,-1.3,5,0,10
36.8,-1.3,-1,0,10

36.8,-1.3,5,30,10
36.8,-1.3,inf,0,10
36.8,95,5,0,10
36.8,,5,0,10
36.8,-1.3,961.1,0,10
36.9,-1.4,lots,0,10
36.9,-1.4,8.0,-5,0
"""


def test_row_problems_dropped_and_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "rows.csv", BAD_ROWS)
    ss = read_samples(path)
    rej = ss.rejects.set_index("row")
    # row numbers count data rows as a user sees them; the blank line 5 keeps its number
    assert rej.index.tolist() == [2, 3, 5, 6, 7, 8, 9, 10]
    assert (rej["line"] == rej.index + 1).all()
    expect = {
        2: "lon out of range",
        3: "oc_gkg negative",
        5: "top_cm >= bottom_cm",
        6: "oc_gkg not finite",
        7: "lat out of range",
        8: "lat missing",
        9: "oc_gkg above 600",
        10: "oc_gkg not a number: 'lots'",
    }
    for row, reason in expect.items():
        assert reason in rej.loc[row, "reason"], row
    assert rej.loc[9, "values"]["oc_gkg"] == "961.1"
    # the organic layer (-5 to 0 cm) is legal
    assert len(ss.frame) == 2 and ss.frame["top_cm"].min() == -5
    s = ss.summary()
    assert s["rows_read"] == 10 and s["rows_kept"] == 2 and s["rows_dropped"] == 8
    assert s["dropped_by_reason"]["oc_gkg above 600"] == {"count": 1, "first_rows": [9]}
    out = write_rejects(ss.rejects, tmp_path / "rejects.csv")
    back = pd.read_csv(out)
    assert back.columns[:4].tolist() == ["row", "line", "reason", "lon"]
    assert back.loc[back["row"] == 2, "lon"].item() == 200


def test_strict_raises_naming_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "rows.csv", BAD_ROWS)
    with pytest.raises(
        SampleRowError, match=r"rows\.csv: 8 invalid rows.*row 2 \(line 3\): lon out of range"
    ):
        read_samples(path, strict=True)
    good = write(tmp_path, "good.csv", "lon,lat,oc_gkg\n36.8,-1.3,12.0\n")
    assert len(read_samples(good, strict=True).frame) == 1


def test_duplicate_locations_warn_and_are_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, "dup.csv", "lon,lat,oc_gkg\n36.8,-1.3,12.0\n36.8,-1.3,14.0\n36.9,-1.3,9.0\n")
    with caplog.at_level(logging.WARNING, logger="geesoil.samples"):
        ss = read_samples(path)
    assert len(ss.frame) == 3 and ss.duplicate_locations == 1
    assert "1 location has more than one sample (rows 1, 2" in caplog.text


def test_wise_961_horizon_dropped_and_reported(soil_dir: Path) -> None:
    ss = read_samples(soil_dir / "wise.parquet")
    hit = ss.rejects[[v["oc_gkg"] == pytest.approx(961.1) for v in ss.rejects["values"]]]
    assert len(hit) == 1
    assert hit["reason"].item() == "oc_gkg above 600: 961.1"
    assert hit["values"].item()["profile_id"] == "ES0005"
    assert ss.frame["oc_gkg"].max() <= 600
    # every dropped WISE row is above 600 g/kg (the README: maxima 570-961, peat); nothing else is wrong
    assert ss.rejects["reason"].str.startswith("oc_gkg above 600").all()
    raw = pd.read_parquet(soil_dir / "wise.parquet")
    assert hit["row"].item() == int(np.flatnonzero(raw["oc_gkg"] > 961)[0]) + 1
    n_high = int((raw["oc_gkg"] > 600).sum())
    assert len(ss.rejects) == n_high
    with pytest.raises(
        SampleRowError, match=rf"wise\.parquet: {n_high} invalid rows: {n_high} x oc_gkg above 600"
    ):
        read_samples(soil_dir / "wise.parquet", strict=True)


# --- load_samples and pooling --------------------------------------------------------------------------------


def test_load_samples_harmonises_horizon_tables(tmp_path: Path, table: pd.DataFrame) -> None:
    path = tmp_path / "p.parquet"
    table.to_parquet(path)
    out = load_samples(path)
    assert out["profile_id"].tolist() == ["P1", "P2", "P3"]
    assert (out["top_cm"] == 0).all() and (out["bottom_cm"] == 30).all()
    w = load_samples(path, method="weighted").set_index("profile_id")["oc_gkg"]
    assert w["P1"] == pytest.approx((25 * 10 + 12 * 20) / 30)
    # nothing covers 100-200 cm
    with pytest.raises(SampleFileError, match="no profile covers 100-200 cm"):
        load_samples(path, depth=(100, 200))


def test_load_samples_keeps_point_samples(tmp_path: Path) -> None:
    pts = write(tmp_path, "pts.csv", "x,y,oc_gkg\n36.8,-1.3,12.0\n36.9,-1.4,20.0\n")
    out = load_samples(pts)
    assert out["oc_gkg"].tolist() == [12.0, 20.0] and out["profile_id"].notna().all()
    # single samples already at 0-30 cm are not re-harmonised
    at = write(
        tmp_path, "at.csv", "lon,lat,oc_gkg,top_cm,bottom_cm\n36.8,-1.3,12.0,0,30\n36.9,-1.4,20.0,0,30\n"
    )
    assert load_samples(at)["oc_gkg"].tolist() == [12.0, 20.0]
    with pytest.raises(SampleFileError, match="no valid rows"):
        load_samples(write(tmp_path, "bad.csv", "lon,lat,oc_gkg\n36.8,-1.3,-3\n"))


def test_pool_sources_keeps_first_location() -> None:
    a = pd.DataFrame({"source": "WISE", "lon": [10.0, 20.0], "lat": [1.0, 2.0], "oc_gkg": [5.0, 6.0]})
    b = pd.DataFrame(
        {
            "source": "AfSP",
            "lon": [10.0004, 20.01, 30.0, 30.0],
            "lat": [1.0001, 2.0, 3.0, 3.0],
            "oc_gkg": [7.0, 8, 9, 10],
        }
    )
    out = pool_sources([a, b])
    assert out["oc_gkg"].tolist() == [5.0, 6.0, 8.0, 9.0]
    assert out.attrs["dropped_per_source"] == {"WISE": 0, "AfSP": 2}
    assert len(pool_sources([a, b], decimals=5)) == 5


def test_pool_real_sources(soil_dir: Path) -> None:
    wise = harmonise(read_samples(soil_dir / "wise.parquet").frame).frame
    afsp = harmonise(read_samples(soil_dir / "afsp.parquet").frame).frame
    out = pool_sources([wise, afsp])
    key = pd.DataFrame({"x": out["lon"].round(3), "y": out["lat"].round(3)})
    assert not key.duplicated().any()
    both = pd.concat([wise, afsp])
    assert len(out) == len(both[["lon", "lat"]].round(3).drop_duplicates())
    dropped = out.attrs["dropped_per_source"]
    # WISE loses only its own repeated sites; AfSP loses at most the README's 2,148 shared sites plus its own repeats
    assert dropped["WISE"] == wise[["lon", "lat"]].round(3).duplicated().sum()
    own = afsp[["lon", "lat"]].round(3).duplicated().sum()
    assert own < dropped["AfSP"] <= 2148 + own
