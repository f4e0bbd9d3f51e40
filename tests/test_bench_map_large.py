"""The large-map memory benchmark: a tiny real run, its report section, and ``run_all --large``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import bench_map_large  # noqa: E402
import common  # noqa: E402
import report  # noqa: E402
import run_all  # noqa: E402

STAGES = [
    "predict tiles",
    "cog soc_mean.tif",
    "cog soc_p05.tif",
    "cog soc_p95.tif",
    "summary",
    "quick-look",
]


@pytest.mark.slow
def test_tiny_large_map_reports_peak_rss_stages_and_series(coarse_pack, tmp_path, capsys):
    bench_map_large.main(
        ["--pixels", "300", "--tile-size", "128", "--trees", "2", "--out-dir", str(tmp_path)]
    )
    got = common.load_results(tmp_path)["map_large"]
    f = got["figures"]
    # the grid snaps outwards, so a side may gain a pixel from rounding
    assert 300 <= f["width"] <= 301 and 300 <= f["height"] <= 301 and f["tiles"] == 9
    assert f["grid_pixels"] == f["width"] * f["height"]
    assert (
        0.8 * f["grid_pixels"] < f["valid_pixels"] <= f["grid_pixels"]
    )  # the default box is nearly all land
    assert [s["stage"] for s in f["stages"]] == STAGES
    assert all(s["start_s"] <= s["end_s"] for s in f["stages"])
    # VmHWM is the true peak; samples can only miss it, never exceed it
    assert f["rss_after_plan_mb"] < f["rss_sampled_max_mb"] <= f["peak_rss_mb"] + 1
    assert f["within_budget"] is True and f["pixels_per_s"] == pytest.approx(
        f["grid_pixels"] / f["map_s"], rel=1e-3
    )
    times = [t for t, _ in f["rss_series"]]
    assert times == sorted(times) and len(times) >= 2
    assert capsys.readouterr().out.count("\n") == 1  # one JSON line


def large_result(peak: float) -> dict:
    figures = {
        "width": 20000,
        "height": 20000,
        "grid_pixels": 400_000_000,
        "valid_pixels": 390_000_000,
        "tiles": 400,
        "peak_rss_mb": peak,
        "rss_after_plan_mb": 460.0,
        "map_s": 600.0,
        "pixels_per_s": 400_000_000 / 600,
        "rss_samples": 1200,
        "stages": [
            {
                "stage": "predict tiles",
                "start_s": 3.0,
                "end_s": 500.0,
                "rss_start_mb": 460.0,
                "rss_max_mb": 650.0,
            }
        ],
    }
    params = {
        "bbox": [60, 25, 100, 65],
        "crs": "EPSG:4326",
        "scale_m": 222.64,
        "tile_size": 1024,
        "budget_mb": 2048,
    }
    return {"name": "map_large", "params": params, "figures": figures}


def test_report_large_map_section_judges_the_budget():
    text = "\n".join(report.map_large_section(large_result(711.0)))
    assert "| **711** | 460 | 600 s | 666,667 |" in text
    assert "| predict tiles | 497.0 | 460 | 650 |" in text
    assert "Peak RSS 711 MiB is within the 2,048 MiB budget" in text
    assert "is **over** the 2,048 MiB budget" in "\n".join(report.map_large_section(large_result(2500.0)))


def test_flatness_judges_maps_beyond_one_full_tile():
    mem = {
        "runs": {
            "side1deg": {"tiles": 1, "peak_rss_mb": 460.0},
            "side8deg": {"tiles": 16, "peak_rss_mb": 590.0},
        },
        "rss_exponent": 0.08,
        "rss_exponent_full_tiles": 0.02,
        "rss_max_over_min_full_tiles": 1.03,
    }
    assert "changed 1.03× (exponent 0.020): flat" in report.flatness(mem)
    grown = report.flatness({**mem, "rss_exponent_full_tiles": 0.2})
    assert "**Not flat**" in grown and "exponent 0.200" in grown


def test_run_all_runs_the_large_map_only_when_asked(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(run_all.subprocess, "call", lambda cmd, **kw: calls.append(cmd) or 0)
    assert run_all.main(["--only", "map", "--out-dir", str(tmp_path), "--no-report"]) == 0
    assert [Path(c[1]).name for c in calls] == ["bench_map.py"]
    calls.clear()
    assert (
        run_all.main(["--only", "map", "--large", "--quick", "--out-dir", str(tmp_path), "--no-report"]) == 0
    )
    assert [Path(c[1]).name for c in calls] == ["bench_map.py", "bench_map_large.py"]
    assert calls[1][2:4] == ["--pixels", "2000"]
