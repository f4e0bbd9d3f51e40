"""``geesoil samples check`` and ``geesoil samples harmonise`` through the real command group."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from cli.main import cli

PROFILES = """profile_id,lon,lat,top_cm,bottom_cm,oc_gkg
P1,36.8123,-1.2871,0,10,25.0
P1,36.8123,-1.2871,10,30,12.0
P1,36.8123,-1.2871,30,60,6.5
P2,37.0412,-1.5330,0,20,18.2
P2,37.0412,-1.5330,20,50,9.1
P3,36.9051,-1.1984,0,15,30.5
P3,36.9051,-1.1984,15,25,14.0
P4,36.9051,-1.1984,0,30,2000
"""


@pytest.fixture
def profiles(tmp_path: Path) -> Path:
    p = tmp_path / "profiles.csv"
    p.write_text(PROFILES)
    return p


def run(*args: str | Path) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args])


def error_lines(result) -> list[str]:
    return [ln for ln in result.stderr.splitlines() if ln.startswith("Error:")]


def test_check_prints_summary_and_rejects(profiles: Path, tmp_path: Path) -> None:
    rej = tmp_path / "rej.csv"
    r = run("samples", "check", profiles, "--rejects", rej)
    assert r.exit_code == 0, r.output
    out = r.stdout
    assert "rows read" in out and "8" in out
    lines = {ln.split("  ")[0].strip(): ln for ln in out.splitlines()}
    assert lines["rows kept"].split()[-1] == "7"
    assert lines["rows dropped"].split()[-1] == "1"
    assert "oc_gkg above 600" in out and "(rows 8)" in out
    back = pd.read_csv(rej)
    assert back[["row", "line"]].values.tolist() == [[8, 9]]
    assert back["oc_gkg"].item() == 2000 and back["profile_id"].item() == "P4"


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("", "file is empty"),
        ("lon,lat,oc_gkg\n", "no data rows"),
        ("lon,lat,soc\n36.8,-1.3,4\n", "missing column"),
        ("lon,lat,oc_gkg\n36.8,-1.3,abc\n36.8,-1.3,def\n", "not numeric"),
        ("lon,lat,oc_gkg\n45.1,100.2,5\n46.1,120.2,5\n", "swapped"),
        ("lon,lat,oc_gkg\n36.8,-1.3,-5\n", "no valid rows"),
    ],
)
@pytest.mark.parametrize("command", ["check", "harmonise"])
def test_bad_files_exit_2_one_line_nothing_written(
    tmp_path: Path, content: str, fragment: str, command: str
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(content)
    out = tmp_path / "out" / "o.parquet"
    rej = tmp_path / "out" / "rej.csv"
    extra = ["-o", out] if command == "harmonise" else []
    r = run("samples", command, bad, "--rejects", rej, *extra)
    assert r.exit_code == 2
    errs = error_lines(r)
    assert len(errs) == 1 and fragment in errs[0] and str(bad) in errs[0]
    assert "Traceback" not in r.output
    assert not out.exists() and not rej.exists()


def test_strict_exit_2_names_row(profiles: Path, tmp_path: Path) -> None:
    out = tmp_path / "o.parquet"
    r = run("samples", "harmonise", profiles, "--strict", "-o", out)
    assert r.exit_code == 2
    (err,) = error_lines(r)
    assert "row 8 (line 9)" in err and "oc_gkg above 600" in err
    assert not out.exists()
    assert run("samples", "check", profiles, "--strict").exit_code == 2


def test_harmonise_writes_one_row_per_profile(profiles: Path, tmp_path: Path) -> None:
    out = tmp_path / "topsoil.parquet"
    r = run("samples", "harmonise", profiles, "--depth", "0-30", "--method", "weighted", "-o", out)
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(out)
    assert list(df.columns[:7]) == ["profile_id", "lon", "lat", "oc_gkg", "top_cm", "bottom_cm", "n_horizons"]
    # P3 stops at 25 cm and is dropped; P4's only horizon was invalid
    assert df["profile_id"].tolist() == ["P1", "P2"]
    assert df["oc_gkg"].tolist() == pytest.approx([(25 * 10 + 12 * 20) / 30, (18.2 * 20 + 9.1 * 10) / 30])
    assert "wrote 2 profiles" in r.stderr and "does not cover" in r.stderr
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tmp")] == []
    r = run("samples", "harmonise", profiles, "--allow-partial", "-o", out)
    df = pd.read_parquet(out).set_index("profile_id")
    assert df.loc["P3", ["top_cm", "bottom_cm"]].tolist() == [0, 25]


def test_harmonise_nothing_covers_exit_2(profiles: Path, tmp_path: Path) -> None:
    out = tmp_path / "deep.parquet"
    r = run("samples", "harmonise", profiles, "--depth", "100-200", "-o", out)
    assert r.exit_code == 2
    (err,) = error_lines(r)
    assert "no profile covers 100-200 cm" in err and "--allow-partial" in err
    assert not out.exists()


def test_harmonise_point_table_exit_2(tmp_path: Path) -> None:
    pts = tmp_path / "pts.csv"
    pts.write_text("lon,lat,oc_gkg\n36.8,-1.3,12\n")
    r = run("samples", "harmonise", pts, "-o", tmp_path / "o.parquet")
    assert r.exit_code == 2 and "no top_cm/bottom_cm" in error_lines(r)[0]


def test_bad_depth_is_usage_error(profiles: Path, tmp_path: Path) -> None:
    r = run("samples", "harmonise", profiles, "--depth", "30-0", "-o", tmp_path / "o.parquet")
    assert r.exit_code == 2 and "TOP < BOTTOM" in r.stderr


def test_harmonise_real_wise(soil_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "wise.parquet"
    rej = tmp_path / "wise_rejects.csv"
    r = run("samples", "harmonise", soil_dir / "wise.parquet", "--rejects", rej, "-o", out)
    assert r.exit_code == 0, r.output
    df = pd.read_parquet(out)
    assert df["oc_gkg"].between(0, 600).all() and df["profile_id"].is_unique
    assert (df["source"] == "WISE").all()
    assert 961.1 in pd.read_csv(rej)["oc_gkg"].round(1).tolist()


@pytest.mark.parametrize("command", ["check", "harmonise"])
def test_help_has_example(command: str) -> None:
    r = run("samples", command, "--help")
    assert r.exit_code == 0
    assert "Example:" in r.output and f"geesoil samples {command} " in r.output
