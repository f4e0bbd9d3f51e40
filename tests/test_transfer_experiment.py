"""benchmarks/transfer_experiment.py: auto's stored choices, the reproducibility check and their rendering."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

te = pytest.importorskip("transfer_experiment")


def _summary(method: str, size: Any, mae: float, picp: float) -> dict[str, Any]:
    return {"method": method, "size": size, "mae": mae, "rmse": mae, "r2": 0.1, "ccc": 0.2, "picp90": picp}


def _results(
    maes: dict[tuple[str, Any], float], choices: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    summary = [_summary(m, s, v, 0.9) for (m, s), v in maes.items()]
    return {
        "meta": {"date": "2026-01-01 00:00 UTC"},
        "settings": {"edgeroi": {"summary": summary, "records": [], "auto_choices": choices or []}},
    }


def test_reproducibility_reports_the_largest_difference() -> None:
    a = _results({("auto", 25): 3.0, ("qrf", 25): 3.2, ("auto", "all"): 2.5})
    b = _results({("auto", 25): 3.0, ("qrf", 25): 3.1, ("auto", "all"): 2.5})
    rep = te.reproducibility(a, b, "re-run.json")
    assert rep["cells"] == 3 and rep["settings"] == ["edgeroi"]
    assert rep["max_abs_mae_diff"] == pytest.approx(0.1)
    assert rep["max_rel_mae_diff_pct"] == pytest.approx(100 * 0.1 / 3.2)
    assert te.reproducibility(a, a, "same.json")["max_abs_mae_diff"] == 0.0


def test_selection_log_pairs_choices_with_auto_records() -> None:
    handler = te._SelectionLog()
    logger = logging.getLogger("geesoil.model.auto")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    try:
        for choice in ("qrf+finetuned", "qrf"):
            sel = {"choice": choice, "weights": [0.7, 0.3] if "+" in choice else [1.0], "inner_folds": 3}
            logger.info("auto: chose %s", choice, extra={"auto_selection": sel})
        logger.info("no selection attached")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    records = [
        {"method": "auto", "size": 25, "fold": 0, "mae": 3.0},
        {"method": "rf", "size": 25, "fold": 0, "mae": 3.1},
        {"method": "auto", "size": 50, "fold": 0, "mae": 2.9},
    ]
    paired = handler.matched(records)
    assert [(p["size"], p["choice"], p["mae"]) for p in paired] == [
        (25, "qrf+finetuned", 3.0),
        (50, "qrf", 2.9),
    ]
    assert handler.matched(records[:1]) == []  # counts disagree: nothing is paired rather than mis-paired


def test_auto_choices_summarise_weights() -> None:
    choices = [
        {
            "size": 25,
            "fold": 0,
            "mae": 3.0,
            "choice": "qrf+finetuned",
            "weights": [0.6, 0.4],
            "inner_folds": 5,
            "oof_mae": 2.8,
        },
        {
            "size": 25,
            "fold": 1,
            "mae": 3.2,
            "choice": "rf+global+finetuned",
            "weights": [0.5, 0.3, 0.2],
            "inner_folds": 5,
            "oof_mae": 3.0,
        },
    ]
    res = _results({("auto", 25): 3.1, ("qrf", 25): 3.2}, choices)
    (row,) = te.auto_choices(res).to_dict("records")
    assert row["forests"] == pytest.approx(0.55) and row["transfer"] == pytest.approx(0.45)
    assert row["fits"] == 2 and row["inner_folds"] == "5" and row["test_mae"] == pytest.approx(3.1)


def test_render_of_the_committed_results_has_auto_choices_and_reproducibility() -> None:
    if not te.RESULTS.exists():
        pytest.skip("no committed transfer results")
    res = json.loads(te.RESULTS.read_text())
    res["reproducibility"] = te.reproducibility(res, res, "again.json")
    text = te.render(res)
    section = text.split("## What `auto` chose")[1].split("##")[0]
    cells = sum(len({s["size"] for s in r["summary"]}) for r in res["settings"].values())
    assert section.count("\n| ") == cells + 1  # header + one row per setting x size
    assert "largest absolute difference in MAE is 0.0000 g/kg" in text and "(identical)" in text


def test_targets_count_cells_where_auto_misses_a_strategy_that_beats_the_forest() -> None:
    maes = {
        # n = 25: global beats the forests and auto does too; n = 50: coral beats them, auto does not
        ("auto", 25): 3.8, ("global", 25): 3.6, ("rf", 25): 3.9, ("qrf", 25): 4.0,
        ("finetuned", 25): 3.7, ("scratch", 25): 3.9,
        ("auto", 50): 3.72, ("coral", 50): 3.5, ("rf", 50): 3.8, ("qrf", 50): 3.7,
        ("finetuned", 50): 3.6, ("scratch", 50): 3.5,
        # n = 100: the forest is best, so the cell is not contested
        ("auto", 100): 3.4, ("global", 100): 3.6, ("qrf", 100): 3.45,
    }  # fmt: skip
    tg = te.targets(te._summary_frame(_results(maes)))
    rows = {r["size"]: r for r in tg["auto"]}
    assert [rows[s]["other_wins"] for s in ("25", "50", "100")] == [True, True, False]
    assert rows["25"]["auto_wins"] and not rows["50"]["auto_wins"] and rows["50"]["best_other"] == "coral"
    ft = {r["size"]: r for r in tg["finetuned_vs_scratch"]}
    assert ft["25"]["ok"] and not ft["50"]["ok"]
    assert ft["25"]["mae_decrease_pct"] == pytest.approx(100 * (3.9 - 3.7) / 3.9)
