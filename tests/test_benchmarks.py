"""Benchmark plumbing: regression comparison, report rendering, child peak RSS, scaling fits, and a smoke run."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_extract  # noqa: E402
import common  # noqa: E402
import compare  # noqa: E402
import report  # noqa: E402
from bench_pretrain import enlarge  # noqa: E402

MACHINE = {
    "cpu_model": "Test CPU",
    "cores": 2,
    "ram_gb": 8.0,
    "torch": "2.0",
    "device": "cpu",
    "date": "2026-01-01 00:00 UTC",
    "other_cpu_cores": 0.0,
}


def result(name: str, figures: dict, machine: dict | None = None, directions: dict | None = None) -> dict:
    return common.make_result(name, {}, figures, machine=machine or MACHINE, directions=directions)


# ------------------------------------------------------------------------------------------------ compare
def test_compare_flags_only_changes_beyond_the_threshold_in_the_worse_direction():
    base = result(
        "x",
        {
            "fit_s": 10.0,
            "epoch_s": 1.0,
            "points_per_s": 1000.0,
            "nested": {"peak_rss_mb": 500.0, "dask2_speedup": 2.0},
            "samples": 100,
            "tiny_s": 0.01,
            "epochs": [3, 4],
        },
    )
    fresh = result(
        "x",
        {
            "fit_s": 13.0,  # 30 % slower
            "epoch_s": 1.1,  # 10 % slower: within tolerance
            "points_per_s": 700.0,  # 30 % fewer points per second
            "nested": {"peak_rss_mb": 300.0, "dask2_speedup": 1.9},  # less memory; speed-up 5 % lower
            "samples": 50,  # informational
            "tiny_s": 0.03,  # tripled, but below the noise floor
            "epochs": [30, 40],  # lists are not compared
        },
    )
    rows = {r.figure: r for r in compare.compare_results(base, fresh)}
    assert rows["fit_s"].status == "regression" and rows["fit_s"].worse_by == pytest.approx(0.3)
    assert rows["points_per_s"].status == "regression" and rows["points_per_s"].worse_by == pytest.approx(0.3)
    assert rows["epoch_s"].status == "ok"
    assert rows["nested.peak_rss_mb"].status == "better"
    assert rows["nested.dask2_speedup"].status == "ok"
    assert rows["samples"].status == "info"
    assert rows["tiny_s"].status == "noise"
    assert "epochs" not in rows


def test_explicit_directions_override_the_name_convention():
    base = result("x", {"latency_s": 1.0, "rss_exponent": 0.0}, directions={"latency_s": "info"})
    fresh = result("x", {"latency_s": 5.0, "rss_exponent": 0.5}, directions={"rss_exponent": "lower"})
    rows = {r.figure: r for r in compare.compare_results(base, fresh)}
    assert rows["latency_s"].status == "info"
    assert rows["rss_exponent"].status == "regression"  # from 0: any rise is infinitely worse


def test_compare_cli_exit_status_and_machine_warning(tmp_path, capsys):
    base_dir, good_dir, bad_dir = tmp_path / "base", tmp_path / "good", tmp_path / "bad"
    common.save_result(result("map", {"map_s": 10.0, "pixels_per_s": 100.0}), base_dir)
    common.save_result(result("map", {"map_s": 11.0, "pixels_per_s": 95.0}), good_dir)
    other = {**MACHINE, "cpu_model": "Other CPU"}
    bad = result("map", {"map_s": 12.5, "pixels_per_s": 100.0}, machine=other)
    bad["params"] = {"sides_deg": [1, 2]}
    common.save_result(bad, bad_dir)
    capsys.readouterr()
    assert compare.main(["--fresh", str(good_dir), "--baseline", str(base_dir)]) == 0
    assert compare.main(["--fresh", str(bad_dir), "--baseline", str(base_dir)]) == 1
    out = capsys.readouterr()
    assert "regression" in out.out and "map_s" in out.out
    assert "cpu_model differs" in out.err and "parameters differ (sides_deg)" in out.err
    # nothing to compare is a failure too (a broken run must not pass the gate)
    assert compare.main(["--fresh", str(tmp_path / "empty"), "--baseline", str(base_dir)]) == 1


# ------------------------------------------------------------------------------------------------ report
def fake_results(other_cores: float) -> dict[str, dict]:
    m = {**MACHINE, "other_cpu_cores": other_cores}
    pre = common.make_result(
        "pretrain",
        {
            "members": 1,
            "max_epochs": 200,
            "patience": 20,
            "batch_size": 1024,
            "scaling_epochs": 2,
            "full": False,
        },
        {
            "samples": 21631,
            "covariates": 11,
            "prepare_s": 8.5,
            "prepare_peak_rss_mb": 1180.0,
            "convergence": {
                "fit_s": 31.4,
                "peak_rss_mb": 530.0,
                "epochs_per_member": [57],
                "best_epochs": [37],
                "epoch_s": 0.15,
                "validation_mae_gkg": 7.25,
            },
            "scaling": {
                "x1": {"n": 21631, "epoch_s": 0.15, "fit_s": 2.0, "peak_rss_mb": 530.0},
                "x10": {
                    "n": 216310,
                    "epochs": 2,
                    "epoch_s": 1.5,
                    "fit_s": 9.0,
                    "peak_rss_mb": 900.0,
                    "rss_before_fit_mb": 600.0,
                },
            },
            "scaling_exponent_epoch": 1.0,
            "scaling_exponent_fit": 0.65,
            "scaling_exponent_rss": 0.23,
        },
        machine=m,
    )
    ft = common.make_result(
        "finetune",
        {"model": "assets/models/m.geesoil", "members": 3, "sizes": [50, 1000], "strategies": ["finetuned"]},
        {
            "finetuned": {
                "n50": {"fit_s": 0.9, "epochs_per_member": [27, 30, 29]},
                "n1000": {"fit_s": 26.8, "epochs_per_member": [86, 31, 100]},
                "scaling_exponent": 1.13,
            },
            "peak_rss_mb": 614.0,
        },
        machine=m,
    )
    mp = common.make_result(
        "map",
        {"center": [23.0, 0.0], "model": "m.geesoil", "scale_m": 1000.0, "tile_size_memory": 256},
        {
            "memory": {
                "runs": {
                    "side1deg": {"grid_pixels": 12656, "tiles": 1, "peak_rss_mb": 470.0, "map_s": 4.0},
                    "side8deg": {
                        "grid_pixels": 790000,
                        "tiles": 16,
                        "rss_after_plan_mb": 380.0,
                        "peak_rss_mb": 480.0,
                        "rss_end_mb": 450.0,
                        "map_s": 40.0,
                    },
                },
                "rss_exponent": 0.005,
                "rss_max_over_min": 1.02,
                "pixels_max_over_min": 62.4,
            }
        },
        machine=m,
    )
    return {"pretrain": pre, "finetune": ft, "map": mp}


def test_report_states_figures_machine_and_a_busy_machine():
    busy = report.render(fake_results(other_cores=1.5))
    assert "Test CPU" in busy and "2026-01-01 00:00 UTC" in busy
    assert "Measured while other jobs ran" in busy and "1.5 of the machine's 2 cores" in busy
    assert "| 1 | 57 (37) | 0.150 | 31.4 s | 530 MiB | 7.25 g/kg |" in busy
    assert "| 10× | 216,310 | 2 | 1.500 | 9.0 | 600 | 900 |" in busy
    assert "26.8 s (86/31/100 ep)" in busy
    assert "| 8° | 790,000 | 16 | 380 | 480 | 450 |" in busy
    assert "peak RSS grew 1.02×" in busy and "Memory is flat" in busy
    quiet = report.render(fake_results(other_cores=0.0))
    assert "Measured while other jobs ran" not in quiet


def test_accuracy_section_compares_with_regional_baselines_and_the_paper():
    def rec(method: str, size: object, mae: float, ccc: float) -> dict:
        return {"method": method, "size": size, "mae": mae, "ccc": ccc}

    transfer = {
        "meta": {"date": "2026-01-02 00:00 UTC", "machine": "test box"},
        "settings": {
            "edgeroi": {
                "setting": {"title": "Edgeroi, coarse pack"},
                "summary": [
                    rec("finetuned", 50, 9.0, 0.5),
                    rec("rf", 50, 10.0, 0.4),
                    rec("qrf", 50, 8.0, 0.5),
                    rec("scratch", 50, 12.0, 0.25),
                    rec("global", 50, 11.0, 0.2),
                ],
            }
        },
    }
    text = "\n".join(report.accuracy_section(transfer))
    # hand-checked: (9-10)/10 = -10 %, (0.5-0.4)/0.4 = +25 %; (9-8)/8 = +12.5 %; (9-12)/12 = -25 %, 0.5/0.25 → +100 %
    assert (
        "| Edgeroi, coarse pack | 50 | finetuned | 9.00 | 0.50 | -10.0 % / +25.0 % | +12.5 % / +0.0 % |"
        in text
    )
    assert "-25.0 % / +100.0 %" in text
    assert "global, no fine-tuning | 11.00 | 0.20 | +10.0 % / -50.0 %" in text
    assert "-10.93 %" in text and "+29.04 %" in text
    assert "[docs/results.md](results.md)" in text
    missing = "\n".join(report.accuracy_section(None))
    assert "results.md" in missing and "not there yet" in missing


def test_change_pct_handles_missing_and_zero_baselines():
    assert report.change_pct(9.0, 10.0) == pytest.approx(-10.0)
    assert report.change_pct(0.1, -0.2) == pytest.approx(150.0)
    assert math.isnan(report.change_pct(1.0, 0.0)) and math.isnan(report.change_pct(None, 1.0))


def test_write_report_skips_other_json(tmp_path):
    for r in fake_results(0.0).values():
        common.save_result(r, tmp_path)
    (tmp_path / "transfer-a.json").write_text(json.dumps({"meta": {}, "settings": {}}))
    out = report.write_report(tmp_path, tmp_path / "bench.md")
    text = out.read_text()
    assert "## Pretraining" in text and "## Fine-tuning" in text and "## Mapping" in text
    assert "## Covariate extraction" not in text  # no extract.json here


# ------------------------------------------------------------------------------------------------ common
def test_scaling_exponent_hand_checked():
    n = [1_000, 10_000, 100_000]
    assert common.scaling_exponent(n, [2e-3 * x for x in n]) == pytest.approx(1.0)
    assert common.scaling_exponent(n, [5.0, 5.0, 5.0]) == pytest.approx(0.0, abs=1e-12)
    assert common.scaling_exponent(n, [x**2 for x in n]) == pytest.approx(2.0)
    with pytest.raises(ValueError):
        common.scaling_exponent([1], [1.0])


def test_save_result_prints_one_json_line_and_writes_the_file(tmp_path, capsys):
    r = common.make_result(
        "demo", {"k": 1}, {"x_s": np.float32(1.23456789), "bad": float("nan")}, machine=MACHINE
    )
    path = common.save_result(r, tmp_path)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    printed = json.loads(lines[0])
    assert printed == json.loads(path.read_text()) and path.name == "demo.json"
    assert printed["figures"] == {"x_s": 1.23457, "bad": None}
    assert set(printed) == {"name", "params", "machine", "figures", "directions", "notes"}


def test_machine_info_names_the_hardware():
    m = common.machine_info("cpu", measure_load=False)
    assert m["cores"] >= 1 and m["device"] == "cpu" and m["torch"] and m["date"].endswith("UTC")
    assert m["cpu_model"]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmHWM is Linux-only")
def test_run_child_reports_the_childs_own_peak_rss(tmp_path, monkeypatch):
    (tmp_path / "alloc_mod.py").write_text(
        "def alloc(mb):\n    a = bytearray(mb * 2**20)\n    a[::4096] = b'x' * len(a[::4096])\n    return len(a)\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    ballast = np.ones(300 * 2**20 // 8)  # a 300 MB parent must not inflate the children's figures
    small = common.run_child("alloc_mod:alloc", {"mb": 20})
    big = common.run_child("alloc_mod:alloc", {"mb": 220})
    assert small.value == 20 * 2**20 and big.value == 220 * 2**20
    assert small.peak_rss_mb < 200 < common.peak_rss_mb()
    assert 170 < big.peak_rss_mb - small.peak_rss_mb < 260
    assert ballast.sum() > 0
    with pytest.raises(common.ChildError):
        common.run_child("alloc_mod:missing", {})


def test_enlarge_jitters_copies_and_keeps_class_codes():
    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        {
            "lon": rng.uniform(-10, 10, 50),
            "lat": rng.uniform(-10, 10, 50),
            "bio01": rng.uniform(5, 25, 50),
            "landcover": rng.integers(1, 9, 50).astype(float),
            "oc_gkg": rng.uniform(1, 50, 50),
        }
    )
    big = enlarge(table, 3, seed=1, categorical={"landcover"}, jitter_deg=0.05)
    assert len(big) == 150
    pd.testing.assert_frame_equal(big.iloc[:50].reset_index(drop=True), table)
    copies = big.iloc[50:].reset_index(drop=True)
    orig = pd.concat([table] * 2, ignore_index=True)
    assert (copies["landcover"] == orig["landcover"]).all()
    assert (np.abs(copies["lon"] - orig["lon"]) <= 0.05).all() and (copies["lon"] != orig["lon"]).all()
    assert (np.abs(copies["bio01"] / orig["bio01"] - 1) <= 0.02 + 1e-12).all()
    assert (np.abs(copies["oc_gkg"] / orig["oc_gkg"] - 1) <= 0.05 + 1e-12).all()


# ------------------------------------------------------------------------------------------------ smoke run
def test_extract_benchmark_smoke(coarse_pack, tmp_path, capsys):
    """The extraction benchmark end to end with tiny parameters: local pack and the fake Earth Engine server."""
    import logging

    level = logging.getLogger("geesoil").level
    res = bench_extract.run(
        points=400, repeat=1, ee_points=60, ee_latency_s=0.0, ee_batch=25, ee_workers=(1, 2)
    )
    assert logging.getLogger("geesoil").level == level  # measuring quietly must not leak into the caller
    path = common.save_result(res, tmp_path)
    doc = json.loads(path.read_text())
    loc, ee = doc["figures"]["local"], doc["figures"]["ee"]
    assert loc["points"] == 400 and loc["covariates"] == 11 and loc["cold_points_per_s"] > 0
    assert 0.5 < loc["complete_fraction"] <= 1.0
    # 60 points in batches of 25 → 3 computeFeatures requests per run, at most `workers` at once
    assert ee["workers1"]["requests"] == 3 and ee["workers2"]["requests"] == 3
    assert ee["workers1"]["max_in_flight"] == 1 and 1 <= ee["workers2"]["max_in_flight"] <= 2
    assert ee["workers1"]["covariates"] == 5 and ee["workers2_vs_1_speedup"] > 0
    # the same points and batches cross the wire whatever the concurrency: equal byte counts, all of them > 0
    w1, w2, auto = ee["workers1"], ee["workers2"], ee["auto_batch"]
    assert w1["mb_sent"] == w2["mb_sent"] > 0 and w1["mb_received"] == w2["mb_received"] > 0
    assert w1["mb_received_per_s"] == pytest.approx(w1["mb_received"] / w1["seconds_s"], rel=1e-3)
    # the source's own batch size fits 60 points in one request (the payload limit allows thousands)
    assert auto["requests"] == auto["batches"] == 1 and auto["batch_size"] == 60 and auto["workers"] == 2
    assert "MB/s received / sent" in "\n".join(report.extract_section(doc))
    assert doc["machine"]["cores"] >= 1 and doc["figures"]["peak_rss_mb"] > 0


def test_flatness_sentence_names_growth_between_multi_tile_maps():
    mem = {
        "runs": {
            "side2deg": {"tiles": 1, "peak_rss_mb": 590.0},
            "side4deg": {"tiles": 4, "peak_rss_mb": 623.0},
            "side8deg": {"tiles": 16, "peak_rss_mb": 737.0},
        },
        "rss_exponent": 0.1,
    }
    text = report.flatness(mem)
    assert text.startswith("**Not flat**") and "4 and 16 tiles" in text and "rose 114 MiB" in text
    assert report.flatness({**mem, "rss_exponent": 0.01}).startswith("Memory is flat")


@pytest.mark.slow
def test_run_all_quick_writes_every_selected_result(coarse_pack, edgeroi_pack, tmp_path):
    import run_all

    assert run_all.main(["--quick", "--only", "extract,map", "--out-dir", str(tmp_path)]) == 0
    got = common.load_results(tmp_path)
    assert set(got) == {"extract", "map"}
    runs = got["map"]["figures"]["memory"]["runs"]
    assert [r["tiles"] for r in runs.values()] == [1, 1] and all(r["peak_rss_mb"] > 50 for r in runs.values())
