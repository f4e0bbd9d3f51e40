"""``geesoil covariates`` list / extract / pack through click's runner, on the real shared data."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cli.main import cli
from geesoil.covariates.local import LocalPackSource
from geesoil.covariates.open import open_sources


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["covariates", *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _line(out: str, first: str) -> list[str]:
    return next(line.split() for line in out.splitlines() if line.split()[:1] == [first])


def test_list_without_options_lists_catalogs_with_counts() -> None:
    code, out, _ = _run("list")
    assert code == 0
    assert _line(out, "catalog")[:3] == ["catalog", "version", "covariates"]
    assert _line(out, "coarse-global-v1")[1:3] == ["2", "11"]


def test_list_catalog_shows_groups_kinds_and_ee_datasets() -> None:
    code, out, _ = _run("list", "--catalog", "coarse-global-v1")
    assert code == 0
    assert _line(out, "bio01") == ["bio01", "climate", "continuous", "degC", "WORLDCLIM/V1/BIO"]
    assert _line(out, "bio04")[-1] == "~ECMWF/ERA5/MONTHLY"  # approximate stand-in
    assert _line(out, "koppen") == ["koppen", "climate", "categorical", "(5)", "class", "-"]
    assert len(out.strip().splitlines()) == 1 + 11


def test_list_sources_combines_packs(coarse_pack: Path, edgeroi_pack: Path) -> None:
    code, out, _ = _run("list", "--covariates", str(coarse_pack), "--covariates", str(edgeroi_pack))
    assert code == 0
    names = [line.split()[0] for line in out.strip().splitlines()[1:]]
    assert names[:2] == ["elevation", "bio01"] and "gamma_k" in names and "parent_material" in names
    assert len(names) == 11 + 13


def test_list_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    code, _, err = _run("list", "--covariates", str(tmp_path / "nope"))
    assert code == 2 and err.count("\n") == 1 and "not found" in err
    code, _, err = _run("list", "--catalog", "coarse-global-v1", "--covariates", "starter")
    assert code == 2 and "either --catalog or --covariates" in err


def test_extract_edgeroi_with_global_and_regional_packs(
    soil_dir: Path, coarse_pack: Path, edgeroi_pack: Path, tmp_path: Path
) -> None:
    out = tmp_path / "sub" / "train.parquet"
    args = ["extract", "--samples", str(soil_dir / "edgeroi.parquet"), "--depth", "0-30", "-o", str(out)]
    code, _, err = _run(*args, "--covariates", str(coarse_pack), "--covariates", str(edgeroi_pack))
    assert code == 0, err
    table = pd.read_parquet(out)
    assert {"lon", "lat", "profile_id", "oc_gkg"} <= set(table.columns)
    assert table["profile_id"].is_unique and 300 < len(table) <= 325  # one 0-30 cm value per profile
    source = open_sources([str(coarse_pack), str(edgeroi_pack)])
    names = [s.name for s in source.specs]
    assert list(table.columns[-len(names) :]) == names
    expected = source.sample(table[["lon", "lat"]])
    pd.testing.assert_frame_equal(table[names], expected, check_dtype=False)
    assert table[["gamma_k", "parent_material", "twi", "bio01", "koppen"]].notna().mean().min() >= 0.95
    assert f"Wrote {out}" in err
    assert not list(out.parent.glob(".tmp-*"))


def test_extract_reports_points_without_covariates(coarse_pack: Path, tmp_path: Path) -> None:
    samples = tmp_path / "points.csv"
    samples.write_text(
        "profile_id,lon,lat,oc_gkg\nlondon,-0.12,51.5,20\natlantic,-30.0,40.0,5\nyakutsk,129.73,62.03,30\n"
    )
    out = tmp_path / "points.parquet"
    code, _, err = _run(
        "extract", "--samples", str(samples), "--covariates", str(coarse_pack), "-o", str(out)
    )
    assert code == 0, err
    assert "1 of 3 points lack at least one covariate" in err and "lon -30.0000, lat 40.0000" in err
    table = pd.read_parquet(out).set_index("profile_id")
    assert table.loc["atlantic", ["bio01", "elevation", "koppen"]].isna().all()
    assert table.loc["london", "bio01"] == pytest.approx(10.7, abs=0.5)
    assert table.loc["yakutsk", "koppen"] == 4.0
    ref = LocalPackSource(coarse_pack).sample(table[["lon", "lat"]])
    np.testing.assert_allclose(table[ref.columns].to_numpy(dtype=float), ref.to_numpy(), equal_nan=True)


def test_extract_bad_source_writes_nothing(soil_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "x.parquet"
    code, _, err = _run(
        "extract",
        "--samples",
        str(soil_dir / "edgeroi.parquet"),
        "--covariates",
        str(tmp_path),
        "-o",
        str(out),
    )
    assert code == 2 and "no pack.json" in err and not out.exists()
    code, _, err = _run(
        "extract",
        "--samples",
        str(soil_dir / "edgeroi.parquet"),
        "--covariates",
        "x",
        "--depth",
        "30-0",
        "-o",
        str(out),
    )
    assert code == 2 and "give TOP-BOTTOM in cm" in err


def test_pack_aoi_mode_checks_its_inputs(tmp_path: Path) -> None:
    # the AOI export itself is tested in tests/test_pack_export.py
    code, _, err = _run(
        "pack", "--aoi", "region.gpkg", "--covariates", "ee", "--scale", "250", "-o", str(tmp_path)
    )
    assert code == 2 and "'region.gpkg' is neither a file nor a bbox" in err
    code, _, err = _run("pack", "-o", str(tmp_path))
    assert code == 2 and "--starter" in err


def test_pack_starter_calls_the_builder(
    coarse_pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[Path, Path | None, bool]] = []

    def build_starter_pack(out_dir: Path, *, cache_dir: Path | None = None, force: bool = False) -> Path:
        calls.append((Path(out_dir), cache_dir, force))
        Path(out_dir).mkdir(parents=True)
        (Path(out_dir) / "era5_bio12_0p25deg.tif").write_bytes(
            (coarse_pack / "era5_bio12_0p25deg.tif").read_bytes()
        )
        (Path(out_dir) / "pack.json").write_text(
            '{"name": "starter", "version": 1, "covariates": [{"name": "bio12", "file": "era5_bio12_0p25deg.tif",'
            ' "group": "climate", "units": "mm/yr"}]}'
        )
        return Path(out_dir)

    fake = types.ModuleType("geesoil.covariates.starter")
    fake.build_starter_pack = build_starter_pack  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "geesoil.covariates.starter", fake)
    monkeypatch.setenv("GEESOIL_CACHE_DIR", str(tmp_path / "cache"))
    code, _, err = _run("pack", "--starter", "-o", str(tmp_path / "starter_pack"), "--force")
    assert code == 0, err
    assert calls == [(tmp_path / "starter_pack", tmp_path / "cache", True)]
    assert "1 covariates (bio12)" in err
    code, out, _ = _run("list", "--covariates", str(tmp_path / "starter_pack"))
    assert code == 0 and _line(out, "bio12")[:2] == ["bio12", "climate"]


@pytest.mark.parametrize("command", [[], ["list"], ["extract"], ["pack"]])
def test_every_help_teaches_with_an_example(command: list[str]) -> None:
    code, out, _ = _run(*command, "--help")
    assert code == 0
    assert "Examples:" in out and "geesoil covariates " in out.split("Examples:", 1)[1]
