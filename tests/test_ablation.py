"""The ablation benchmark (benchmarks/ablation.py) on a small synthetic world: result structure, arms that really
differ in configuration, paired comparisons, the random-init branch, and its report section."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from test_finetune import REGIONAL, make_region
from test_model_network import SPECS, make_world

from geesoil.covariates.window import Context, column

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import ablation  # noqa: E402
import common  # noqa: E402
import report  # noqa: E402

TINY = ablation.Budget(
    regions=("synthetic",), sizes=(40,), folds=2, repeats=1, members=2, pretrain_epochs=4, epochs=4
)
MACHINE = {"cpu_model": "Test CPU", "cores": 2, "device": "cpu", "date": "2026-01-01 00:00 UTC"}
STEP_M = 1000.0


def _with_neighbours(X, window: int, seed: int):
    """The centre columns plus jittered copies as the window's neighbour columns (what covariate_table adds)."""
    ctx = Context.over(window, STEP_M, SPECS)

    rng = np.random.default_rng(seed)
    X = X.copy()
    for name in ctx.names:
        for dy, dx in ctx.offsets:
            X[column(name, dy, dx)] = X[name].to_numpy(float) * (1 + rng.normal(0, 0.02, len(X)))
    return X


@pytest.fixture(scope="module")
def data():
    windows = [0, 1]
    Xg, yg = make_world(1500, seed=1)
    Xr, yr = make_region(160, seed=0, gamma_effect=0.3)
    global_tables, region_tables = {}, {}
    for w in windows:
        Xgw = _with_neighbours(Xg, w, 1) if w else Xg
        Xrw = _with_neighbours(Xr, w, 2) if w else Xr
        global_tables[w] = ablation.Table(Xg[["lon", "lat"]], Xgw, yg)
        region_tables[w] = ablation.Table(Xr[["lon", "lat"]], Xrw, yr)
    g = ablation.GlobalData(tuple(SPECS), global_tables)
    region = ablation.RegionData("synthetic", "Synthetic region", 200.0, region_tables, tuple(REGIONAL))
    return g, region


@pytest.fixture(scope="module")
def result(data):
    g, region = data
    return ablation.run_ablation(g, [region], TINY, machine=MACHINE)


def test_result_is_one_json_benchmark_result_with_every_arm(result, tmp_path) -> None:
    res = result
    path = common.save_result(res, tmp_path)
    doc = json.loads(path.read_text())
    assert path.name == "ablation.json"
    assert {"name", "params", "machine", "figures"} <= set(doc)
    arms = doc["figures"]["arms"]
    assert list(arms) == list(ablation.ARM_NAMES)
    ran = [k for k, a in arms.items() if a["status"] == "ran"]
    assert "window-1" in ran
    for name in ran:
        pooled = arms[name]["pooled"]
        cell = arms[name]["cells"]["synthetic"]["n40"]
        assert pooled["draws"] == cell["draws"] == TINY.folds * TINY.repeats
        assert pooled["mae"] > 0 and 0 <= pooled["picp90"] <= 1
        if arms[name]["versus"]:
            assert pooled["paired"] == pooled["draws"]
            assert "mae_change_pct" in pooled and "ccc_change" in pooled
    assert arms["reference"]["versus"] is None and "mae_change_pct" not in arms["reference"]["pooled"]
    # the comparator's MAE on the paired draws: the reference's own pooled MAE where an arm ran every draw
    assert arms["no-location"]["pooled"]["mae_versus"] == pytest.approx(arms["reference"]["pooled"]["mae"])
    # every record is one arm × draw, with real metrics
    assert len(doc["records"]) == len(ran) * TINY.folds * TINY.repeats
    assert set(doc["figures"]["pretraining"]) >= {"reference", "no-location", "identity-target"}


def test_toggled_arms_differ_in_configuration(result) -> None:
    res = result
    cfg = {k: a["config"]["synthetic"] for k, a in res["figures"]["arms"].items() if "config" in a}
    ref = cfg["reference"]
    assert ref["location"] == "fourier" and "location" in ref["groups"]
    assert ref["members"] == TINY.members and ref["target"] == "log1p" and ref["calibration"] == "regional"
    assert cfg["no-location"]["location"] is None and "location" not in cfg["no-location"]["groups"]
    assert cfg["no-location"]["inputs"] < ref["inputs"]
    assert cfg["one-member"]["members"] == 1
    assert cfg["identity-target"]["target"] == "identity"
    assert cfg["no-pretraining"]["kind"] == "soilnet" and cfg["reference"]["kind"] == "finetuned"
    assert cfg["no-finetuning"]["weights_changed"] is False
    assert cfg["no-recalibration"]["calibration"] == "pretrained"
    assert cfg["pretrained-as-is"]["calibration"] == "pretrained"
    assert "regional" in cfg["regional-branch"]["groups"] and "regional" not in ref["groups"]
    assert cfg["regional-branch-random-init"]["class"] == "RandomInitRegionalBranch"
    assert cfg["gp-residuals"]["kind"] == "finetuned-gp" and cfg["coral"]["kind"] == "coral"
    assert cfg["window-1"]["window"] == 1 and ref["window"] == 0
    assert cfg["window-1"]["inputs"] > ref["inputs"]


def test_recalibration_arm_shares_points_and_changes_only_intervals(result) -> None:
    res = result
    recs = res["records"]

    def by(arm):
        return {(r["fold"], r["draw"]): r for r in recs if r["arm"] == arm}

    ref, norecal = by("reference"), by("no-recalibration")
    assert ref.keys() == norecal.keys()
    for k in ref:
        assert norecal[k]["mae"] == ref[k]["mae"]
    pooled = res["figures"]["arms"]["no-recalibration"]["pooled"]
    assert pooled["mae_change_pct"] == 0
    assert any(norecal[k]["width90"] != ref[k]["width90"] for k in ref)


def test_random_init_branch_starts_connected_unlike_the_zero_init_one(data) -> None:
    g, region = data
    table = region.tables[0]
    pre = ablation.pretrain(ablation.PRETRAININGS["reference"], g, TINY)[0]
    arms = {a.name: a for a in ablation.ARMS}
    width = pre.nets_[0].branch_width
    heads = {}
    for name in ("regional-branch", "regional-branch-random-init"):
        model = ablation.make_model(arms[name], pre, region.regional, TINY)
        model.encoder_ = pre.encoder_
        model.extra_encoder_ = model._make_extra_encoder(table.X)
        heads[name] = model._member_net(0).head[0].weight.detach()[:, -width:]
    assert float(heads["regional-branch"].abs().max()) == 0.0
    assert float(heads["regional-branch-random-init"].abs().max()) > 0.0


def test_report_section_is_rendered_from_the_json(result) -> None:
    res = result
    text = report.render({"ablation": res})
    assert "## Ablations (`benchmarks/ablation.py`)" in text
    section = text.split("## Ablations")[1]
    for name in res["figures"]["arms"]:
        assert f"`{name}`" in section
    assert "**Reading.**" in section
    ref_mae = res["figures"]["arms"]["reference"]["pooled"]["mae"]
    assert report.num(ref_mae) in section
    # the reading names the arms beyond two standard errors, and only those
    reading = " ".join(report.ablation_reading(res["figures"]))
    for name, a in res["figures"]["arms"].items():
        p = a.get("pooled", {})
        if a.get("versus") and report._resolved(p.get("mae_change_pct"), p.get("mae_change_pct_se")):
            assert f"`{name}` (" in reading.split("Within noise")[0]


def test_an_arm_without_results_is_listed_as_skipped() -> None:
    res = common.make_result(
        "ablation",
        {"sizes": [50], "folds": 3, "repeats": 1},
        {"arms": {"window-1": {"status": "skipped", "skipped": {"edgeroi": "no window yet"}}}},
        machine=MACHINE,
    )
    section = report.render({"ablation": res}).split("## Ablations")[1]
    assert "skipped (edgeroi: no window yet)" in section
    assert "Not run: `window-1` in edgeroi (no window yet)." in section
