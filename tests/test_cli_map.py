"""``geesoil map`` from the command line: a full run, and bad AOIs that exit 2 with one line and write nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_mapping_data import make_model, make_pack

from cli.main import cli


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("climap")
    pack = make_pack(root / "pack")
    return {"root": root, "pack": pack, "model": make_model(pack, root / "rf.geesoil")}


def _run(*args: object) -> object:
    return CliRunner().invoke(cli, ["map", *[str(a) for a in args]])


def _geojson(path: Path, coords: list | None) -> Path:
    features = (
        []
        if coords is None
        else [{"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [coords]}}]
    )
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def test_map_bbox_end_to_end(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    res = _run(
        "--aoi", "149.55,-30.25,149.95,-30.05", "--model", inputs["model"], "--covariates", inputs["pack"],
        "--tile-size", "16", "--quiet", "--scale", "2000", "-o", out,
    )  # fmt: skip
    assert res.exit_code == 0, res.output + res.stderr
    assert f"covariates: {inputs['pack']}" in res.stderr
    summary = json.loads(res.stdout)
    # bbox 0.4° × 0.2° at 2 km: about 19 × 11 km-pixels... all inside the pack, none masked inside the AOI
    assert summary["valid"] > 100 and summary["missing_covariates"] <= 9
    assert {p.name for p in out.iterdir()} >= {"soc_mean.tif", "soc_p05.tif", "soc_p95.tif", "run.json"}


@pytest.mark.parametrize(
    ("aoi", "message"),
    [
        ("empty", "no geometry"),
        ("bowtie", "invalid geometry"),
        ("antimeridian-file", "antimeridian"),
        ("170,-20,-170,-10", "antimeridian"),
        ("149.5,-30.3,149.5,-30.0", "empty"),
        ("1,2,3", "neither a file nor a bbox"),
        ("too-large", "--yes"),
    ],
)
def test_bad_aoi_exits_2_with_one_line_and_writes_nothing(
    inputs: dict[str, Path], tmp_path: Path, aoi: str, message: str
) -> None:
    extra: list[str] = []
    if aoi == "empty":
        aoi = str(_geojson(tmp_path / "empty.geojson", None))
    elif aoi == "bowtie":
        aoi = str(_geojson(tmp_path / "bowtie.geojson", [[149.6, -30.2], [149.9, -30.1], [149.9, -30.2], [149.6, -30.1], [149.6, -30.2]]))  # fmt: skip
    elif aoi == "antimeridian-file":
        aoi = str(_geojson(tmp_path / "fiji.geojson", [[179.0, -18.0], [-179.0, -18.0], [-179.0, -16.0], [179.0, -16.0], [179.0, -18.0]]))  # fmt: skip
    elif aoi == "too-large":
        aoi, extra = "149.5,-30.3,150.0,-30.0", ["--scale", "2"]
    out = tmp_path / "out"
    res = _run("--aoi", aoi, "--model", inputs["model"], "--covariates", inputs["pack"], *extra, "-o", out)
    assert res.exit_code == 2, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], res.stderr
    assert not out.exists()


def test_too_large_aoi_runs_with_yes_past_the_guard(inputs: dict[str, Path], tmp_path: Path) -> None:
    from geesoil.mapping.run import MapRequest, plan_map

    req = MapRequest(
        aoi="149.5,-30.3,150.0,-30.0",
        out=tmp_path / "o",
        model=inputs["model"],
        covariates=(str(inputs["pack"]),),
        scale=2.0,
        yes=True,
    )
    plan = plan_map(req)
    assert plan.grid.height * plan.grid.width > 200_000_000


def test_missing_model_and_no_shipped_match_is_one_line(inputs: dict[str, Path], tmp_path: Path) -> None:
    res = _run("--aoi", "149.6,-30.2,149.9,-30.1", "--covariates", inputs["pack"], "-o", tmp_path / "o")
    assert res.exit_code == 2
    assert "no --model given" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_aoi_outside_the_covariates_is_one_line(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "o"
    res = _run("--aoi", "10,45,11,46", "--model", inputs["model"], "--covariates", inputs["pack"], "-o", out)
    assert res.exit_code == 2
    assert (
        "lies outside" in res.stderr
        and "elev.tif" in res.stderr
        and len(res.stderr.strip().splitlines()) == 1
    )
    assert not out.exists()


def test_default_model_is_the_shipped_one_matching_the_covariates(
    inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import geesoil.mapping.run as run_mod

    shipped = tmp_path / "models"
    shipped.mkdir()
    shutil.copy(inputs["model"], shipped / "synthetic-rf.geesoil")
    monkeypatch.setattr(run_mod, "SHIPPED_MODELS", shipped)
    out = tmp_path / "o"
    res = _run("--aoi", "149.6,-30.2,149.9,-30.1", "--covariates", inputs["pack"], "--scale", "3000", "--quiet", "-o", out)  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert "synthetic-rf.geesoil (shipped)" in res.stderr
    assert json.loads((out / "run.json").read_text())["inputs"]["model"].endswith("synthetic-rf.geesoil")


def test_default_covariates_are_the_starter_pack_and_stderr_says_so(
    inputs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geesoil.covariates.open as open_mod

    # stand-in for the starter pack (the real one is built from PyPI wheels on first use)
    monkeypatch.setattr(open_mod, "starter_pack_dir", lambda force=False: inputs["pack"])
    out = tmp_path / "o"
    res = _run("--aoi", "149.6,-30.2,149.9,-30.1", "--model", inputs["model"], "--scale", "3000", "--quiet", "-o", out)  # fmt: skip
    assert res.exit_code == 0, res.stderr
    assert "covariates: starter (default)" in res.stderr
    import rasterio

    with rasterio.open(out / "soc_mean.tif") as src:
        assert src.tags()["covariate_source"] == "starter (default)"
