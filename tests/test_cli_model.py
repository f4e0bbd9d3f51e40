"""``geesoil pretrain / finetune / evaluate`` through click's runner on the real shared data; bad inputs exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from cli.main import cli
from geesoil.evaluate import RECORD_KEYS
from geesoil.model.io import load_model, read_metadata


def _run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def _fails_cleanly(args: list[str], *needles: str) -> str:
    code, _, err = _run(*args)
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), err
    for n in needles:
        assert n in lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory: pytest.TempPathFactory, soil_dir: Path, coarse_pack: Path) -> Path:
    """A small global model pretrained on ISIS + Edgeroi (pooled) with the coarse global pack."""
    out = tmp_path_factory.mktemp("models") / "global.geesoil"
    code, _, err = _run(
        "pretrain",
        "--samples", str(soil_dir / "isis.parquet"),
        "--samples", str(soil_dir / "edgeroi.parquet"),
        "--covariates", str(coarse_pack),
        "--members", "1", "--epochs", "20", "--seed", "1",
        "-o", str(out),
    )  # fmt: skip
    assert code == 0, err
    return out


def _edgeroi_csv(soil_dir: Path, path: Path, n: int) -> Path:
    """``n`` Edgeroi topsoil samples (first horizon of each profile) as a plain CSV."""
    f = pd.read_parquet(soil_dir / "edgeroi.parquet")
    top = f[f["top_cm"] == 0].drop_duplicates("profile_id").head(n)
    top[["profile_id", "lon", "lat", "oc_gkg"]].to_csv(path, index=False)
    return path


def test_pretrain_pools_sources_and_writes_a_soilnet(pretrained: Path, coarse_pack: Path) -> None:
    doc = read_metadata(pretrained)
    assert doc["kind"] == "soilnet"
    model = load_model(pretrained)
    names = {c.name for c in model.covariates}
    manifest = json.loads((coarse_pack / "pack.json").read_text())
    assert names <= {c["name"] for c in manifest["covariates"]} and len(names) >= 5
    assert len(model.nets_) == 1


@pytest.mark.parametrize("strategy", ["global", "stacked-qrf"])
def test_finetune_writes_a_regional_model(
    strategy: str, pretrained: Path, soil_dir: Path, coarse_pack: Path, edgeroi_pack: Path, tmp_path: Path
) -> None:
    out = tmp_path / "edgeroi.geesoil"
    code, _, err = _run(
        "finetune", "--model", str(pretrained), "--samples", str(soil_dir / "edgeroi.parquet"),
        "--covariates", str(coarse_pack), "--covariates", str(edgeroi_pack),
        "--strategy", strategy, "-o", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert f"fitted {strategy} on" in err
    assert read_metadata(out)["kind"] == strategy
    names = {c.name for c in load_model(out).covariates}
    # the regional pack's covariates reach the forest of stacked-qrf; global keeps the pretrained inputs only
    assert ("twi" in names) == (strategy == "stacked-qrf")


@pytest.mark.parametrize("command", ["pretrain", "finetune", "evaluate"])
def test_help_teaches_with_an_example(command: str) -> None:
    code, out, _ = _run(command, "--help")
    assert code == 0
    assert "Example" in out and f"geesoil {command} --" in out


def test_empty_region_file_exits_2(tmp_path: Path, coarse_pack: Path) -> None:
    empty = tmp_path / "region.csv"
    empty.write_text("lon,lat,oc_gkg\n")
    _fails_cleanly(["evaluate", "--samples", str(empty), "--covariates", str(coarse_pack)], "region.csv")


def test_covariates_all_nan_at_the_samples_exits_2(tmp_path: Path, edgeroi_pack: Path) -> None:
    # samples in Kenya, covariates only from the Edgeroi (NSW) regional pack
    rng = np.random.default_rng(0)
    pts = pd.DataFrame(
        {"lon": rng.uniform(36, 37, 30), "lat": rng.uniform(-1, 0, 30), "oc_gkg": rng.uniform(5, 30, 30)}
    )
    pts.to_csv(tmp_path / "kenya.csv", index=False)
    _fails_cleanly(
        ["evaluate", "--samples", str(tmp_path / "kenya.csv"), "--covariates", str(edgeroi_pack)],
        "all covariates are missing",
    )


def test_mismatched_checkpoint_exits_2(
    pretrained: Path, soil_dir: Path, edgeroi_pack: Path, tmp_path: Path
) -> None:
    # the global model needs global covariates; a regional pack alone lacks them
    line = _fails_cleanly(
        [
            "finetune", "--model", str(pretrained), "--samples", str(soil_dir / "edgeroi.parquet"),
            "--covariates", str(edgeroi_pack), "-o", str(tmp_path / "x.geesoil"),
        ],
        "needs covariates the source does not provide",
    )  # fmt: skip
    assert any(n in line for n in ("bio12", "elevation", "ndvi"))
    assert not (tmp_path / "x.geesoil").exists()


def test_fewer_than_20_samples_exits_2(
    pretrained: Path, soil_dir: Path, coarse_pack: Path, edgeroi_pack: Path, tmp_path: Path
) -> None:
    small = _edgeroi_csv(soil_dir, tmp_path / "small.csv", 12)
    _fails_cleanly(
        ["evaluate", "--samples", str(small), "--covariates", str(coarse_pack), "--methods", "rf"],
        "only 12 usable samples",
    )
    _fails_cleanly(
        [
            "finetune", "--model", str(pretrained), "--samples", str(small), "--covariates", str(coarse_pack),
            "--covariates", str(edgeroi_pack), "-o", str(tmp_path / "x.geesoil"),
        ],
        "only 12 usable samples",
    )  # fmt: skip


def test_wrong_model_kind_and_unknown_names_exit_2(
    pretrained: Path, soil_dir: Path, coarse_pack: Path, tmp_path: Path
) -> None:
    samples = _edgeroi_csv(soil_dir, tmp_path / "e.csv", 40)
    base = ["--samples", str(samples), "--covariates", str(coarse_pack)]
    _fails_cleanly(
        ["finetune", "--model", str(pretrained), *base, "--strategy", "magic", "-o", str(tmp_path / "m")],
        "unknown strategy 'magic'",
    )
    _fails_cleanly(
        [
            "finetune",
            "--model",
            str(pretrained),
            *base,
            "--strategy",
            "regional-branch",
            "-o",
            str(tmp_path / "m"),
        ],
        "regional-branch needs region-only covariates",
    )
    _fails_cleanly(["evaluate", *base, "--methods", "rf,finetuned"], "need a pretrained model")
    _fails_cleanly(["evaluate", *base, "--methods", "rf", "--sizes", "ten"], "'ten'")
    _fails_cleanly(
        ["finetune", "--model", str(samples), *base, "-o", str(tmp_path / "m")], "not a geesoil model"
    )


@pytest.mark.slow
def test_finetune_rf_then_evaluate_writes_json(
    pretrained: Path, soil_dir: Path, coarse_pack: Path, edgeroi_pack: Path, tmp_path: Path
) -> None:
    covs = ["--covariates", str(coarse_pack), "--covariates", str(edgeroi_pack)]
    samples = str(soil_dir / "edgeroi.parquet")
    code, _, err = _run("finetune", "--model", str(pretrained), "--samples", samples, *covs, "--strategy", "rf",
                        "-o", str(tmp_path / "rf.geesoil"))  # fmt: skip
    assert code == 0, err
    rf = load_model(tmp_path / "rf.geesoil")
    assert {"gamma_k", "bio12"} <= {c.name for c in rf.covariates}  # global and region-only covariates
    _, _, err = _run(
        "evaluate", "--model", str(pretrained), "--samples", samples, *covs, "--folds", "3",
        "--spatial-block-km", "10", "--sizes", "50,all", "--repeats", "1", "--methods", "global,rf,qrf",
        "--json", str(tmp_path / "ev.json"), "--no-progress",
    )  # fmt: skip
    doc = json.loads((tmp_path / "ev.json").read_text())
    assert {tuple(r) for r in doc["records"]} == {RECORD_KEYS}
    assert {(s["method"], s["size"]) for s in doc["summary"]} == {
        (m, s) for m in ("global", "rf", "qrf") for s in (50, "all")
    }
    assert "spatial 3-fold CV" in err and "qrf" in err


def test_window_model_pretrains_finetunes_and_maps(soil_dir: Path, coarse_pack: Path, tmp_path: Path) -> None:
    """--window 1 end to end: the 3×3 context is stored in the model and used by finetune and map."""
    pre, ft, out = tmp_path / "w1.geesoil", tmp_path / "edgeroi-w1.geesoil", tmp_path / "map"
    code, _, err = _run(
        "pretrain", "--samples", str(soil_dir / "isis.parquet"), "--covariates", str(coarse_pack),
        "--members", "1", "--epochs", "10", "--window", "1", "-o", str(pre),
    )  # fmt: skip
    assert code == 0, err
    model = load_model(pre)
    ctx = model.context
    assert ctx is not None and ctx.size == 3 and 1_000 < ctx.step_m < 100_000  # the pack's native pixel
    assert read_metadata(pre)["model"]["params"]["window"] == 1
    code, _, err = _run(
        "finetune", "--model", str(pre), "--samples", str(soil_dir / "edgeroi.parquet"),
        "--covariates", str(coarse_pack), "--strategy", "finetuned", "-o", str(ft),
    )  # fmt: skip
    assert code == 0, err
    assert load_model(ft).context == ctx
    code, _, err = _run(
        "map", "--aoi", "149.6,-30.25,149.9,-30.05", "--model", str(ft), "--covariates", str(coarse_pack),
        "--scale", "2000", "-o", str(out),
    )  # fmt: skip
    assert code == 0, err
    import rasterio

    with rasterio.open(out / "soc_mean.tif") as src:
        mean = src.read(1, masked=True)
    assert mean.count() > 50 and float(mean.min()) > 0
    code, _, err = _run("pretrain", "--samples", str(soil_dir / "isis.parquet"), "--covariates",
                        str(coarse_pack), "--window", "3", "-o", str(tmp_path / "bad"))  # fmt: skip
    assert code == 2 and "--window" in err
