"""Covariate catalogs: the shipped ones load and match the shared pack; malformed ones fail with clear messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geesoil.covariates.catalog import (
    Catalog,
    catalog_dirs,
    list_catalogs,
    load_catalog,
    parse_covariate,
    spec_to_dict,
)
from geesoil.covariates.spec import GROUPS
from geesoil.errors import CovariateError


def _entry(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"name": "bio01", "group": "climate", "kind": "continuous", "units": "degC"}
    base.update(kw)
    return base


def _write(tmp_path: Path, covariates: list[object], name: str = "mine") -> Path:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"name": name, "version": 1, "description": "test", "covariates": covariates}))
    return path


def test_shipped_coarse_catalog_matches_the_shared_pack(coarse_pack: Path) -> None:
    cat = load_catalog("coarse-global-v1")
    manifest = json.loads((coarse_pack / "pack.json").read_text())
    assert isinstance(cat, Catalog)
    assert cat.name == manifest["name"] and cat.version == manifest["version"]
    assert cat.names == [c["name"] for c in manifest["covariates"]]
    by_name = cat.by_name()
    for entry in manifest["covariates"]:
        spec = by_name[entry["name"]]
        assert (spec.group, spec.kind, spec.units, spec.resampling) == (
            entry["group"],
            entry["kind"],
            entry["units"],
            entry["resampling"],
        )
        assert spec.ee == entry["ee"]  # kept as given, unknown keys ('approximate', 'derived') included
        assert spec.file is None  # a catalog is metadata only
        if entry["kind"] == "categorical":
            assert spec.classes == {int(k): v for k, v in entry["classes"].items()}
    assert by_name["koppen"].classes == {1: "tropical", 2: "arid", 3: "temperate", 4: "cold", 5: "polar"}
    assert by_name["bio04"].ee is not None and by_name["bio04"].ee["approximate"] is True


def test_every_listed_catalog_loads_and_uses_known_groups() -> None:
    names = list_catalogs()
    assert "coarse-global-v1" in names
    for name in names:
        cat = load_catalog(name)
        assert cat.covariates and {c.group for c in cat.covariates} <= set(GROUPS)


def test_catalog_by_path_and_a_pack_manifest_load(edgeroi_pack: Path, tmp_path: Path) -> None:
    path = _write(tmp_path, [_entry()])
    assert load_catalog(path).names == ["bio01"]
    assert load_catalog(str(path)).path == path
    edgeroi = load_catalog(edgeroi_pack / "pack.json")
    assert edgeroi.by_name()["parent_material"].kind == "categorical"
    assert edgeroi.by_name()["twi"].file == "twi_250m.tif"


def test_user_catalog_folder_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(
        tmp_path,
        [_entry(), _entry(name="koppen", kind="categorical", classes={"1": "tropical"})],
        name="my-cat",
    )
    monkeypatch.setenv("GEESOIL_CATALOG_PATH", str(tmp_path))
    assert tmp_path in catalog_dirs()
    assert "my-cat" in list_catalogs()
    cat = load_catalog("my-cat")
    assert cat.names == ["bio01", "koppen"]
    assert cat.select(["koppen"])[0].resampling == "nearest"  # categorical default
    with pytest.raises(CovariateError, match="no covariate 'nope'"):
        cat.select(["nope"])


def test_unknown_catalog_name_lists_the_available_ones() -> None:
    with pytest.raises(CovariateError, match=r"no covariate catalog named 'nope'.*coarse-global-v1"):
        load_catalog("nope")


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        ([_entry(group="soilz")], r"covariates\[0\] \('bio01'\): unknown group 'soilz'"),
        ([_entry(kind="ordinal")], r"covariates\[0\] \('bio01'\): unknown kind 'ordinal'"),
        (
            [_entry(kind="categorical")],
            r"covariates\[0\] \('bio01'\): a categorical covariate needs 'classes'",
        ),
        (
            [_entry(), _entry(units="K")],
            r"covariates\[1\]: duplicate covariate name 'bio01' \(also covariates\[0\]\)",
        ),
        ([_entry(kind="categorical", classes={"one": "x"})], r"class code 'one' is not an integer"),
        (
            [_entry(kind="categorical", classes={"1": "x"}, resampling="bilinear")],
            r"would blend class codes",
        ),
        ([_entry(resampling="smooth")], r"unknown resampling 'smooth'"),
        ([_entry(classes={"1": "x"})], r"'classes' given for a continuous covariate"),
        ([_entry(ee="WORLDCLIM/V1/BIO")], r"'ee' must be an object"),
        ([_entry(name="")], r"covariates\[0\]: 'name' must be a non-empty string"),
        ([_entry(band=0)], r"'band' must be a 1-based band number"),
        (["bio01"], r"covariates\[0\]: a covariate entry must be a JSON object"),
        ([], r"'covariates' must be a non-empty list"),
    ],
)
def test_validation_errors_name_file_entry_and_problem(
    tmp_path: Path, entries: list[object], problem: str
) -> None:
    path = _write(tmp_path, entries)
    with pytest.raises(CovariateError, match=problem) as info:
        load_catalog(path)
    assert str(path) in str(info.value)


def test_bad_json_and_missing_file_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x", "covariates": [')
    with pytest.raises(CovariateError, match=r"bad\.json: not valid JSON \(line 1"):
        load_catalog(bad)
    with pytest.raises(CovariateError, match=r"covariate catalog not found: .*missing\.json"):
        load_catalog(tmp_path / "missing.json")


def test_unknown_keys_are_kept_and_round_trip() -> None:
    entry = {
        "name": "slope",
        "group": "topo",
        "kind": "continuous",
        "units": "deg",
        "resampling": "bilinear",
        "ee": {"dataset": "USGS/SRTMGL1_003", "band": "elevation", "derived": "slope", "future_key": [1, 2]},
        "scale": 0.01,
        "paper_name": "Slope",
    }
    spec = parse_covariate(entry, where="x.json covariates[0]")
    assert spec.extra == {"scale": 0.01, "paper_name": "Slope"}
    assert spec.ee == entry["ee"]
    again = spec_to_dict(spec)
    assert parse_covariate(again, where="again") == spec
    assert again["scale"] == 0.01 and again["ee"]["future_key"] == [1, 2]
