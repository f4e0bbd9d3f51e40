"""``auto``'s selection logic: the convex L1 stack, shrinkage towards the forest, its intervals, inner folds."""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_baselines import SPECS, synthetic_region
from test_model_base import assert_layers_match

from geesoil import metrics
from geesoil.errors import ModelError
from geesoil.model.auto import (
    AutoModel,
    calibrate_intervals,
    convex_stack,
    log_half_width,
    log_interval,
    point_prediction,
    select,
)
from geesoil.model.io import load_model, save_model


def test_convex_stack_recovers_a_convex_mixture() -> None:
    rng = np.random.default_rng(1)
    P = rng.gamma(2.0, 4.0, (80, 3))
    y = 0.3 * P[:, 0] + 0.7 * P[:, 1]
    w = convex_stack(y, P)
    np.testing.assert_allclose(w, [0.3, 0.7, 0.0], atol=1e-6)
    # a single column is its own stack
    assert convex_stack(y, P[:, :1]).tolist() == [1.0]


def test_convex_stack_minimises_absolute_error_over_the_simplex() -> None:
    rng = np.random.default_rng(2)
    y = rng.gamma(3.0, 5.0, 200)
    P = np.column_stack([y + rng.normal(0, s, 200) for s in (2.0, 2.5, 6.0)])
    w = convex_stack(y, P)
    assert w.min() >= 0 and w.sum() == pytest.approx(1.0)
    best = np.mean(np.abs(P @ w - y))
    # no point of a fine grid over the simplex does better
    grid = [(a, b, 1 - a - b) for a in np.linspace(0, 1, 21) for b in np.linspace(0, 1 - a, 21)]
    assert all(best <= np.mean(np.abs(P @ np.array(g) - y)) + 1e-9 for g in grid)


@pytest.fixture(scope="module")
def oof() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    y = rng.gamma(3.0, 5.0, 300)
    return y, {
        "qrf": y + rng.normal(0, 3.0, 300),
        "rf": y + rng.normal(0, 3.0, 300),
        "finetuned": y + rng.normal(0, 1.5, 300),  # clearly better than the forests
        "global": y + rng.normal(8, 10.0, 300),  # useless: biased and noisy
    }


def test_select_shrinks_the_stack_halfway_towards_the_default_forest(oof: tuple) -> None:
    y, preds = oof
    sel = select(y, preds)
    w = dict(zip(sel["members"], sel["weights"], strict=True))
    assert sum(w.values()) == pytest.approx(1.0)
    assert sel["default"] == "qrf" and w["qrf"] >= 0.5  # rf is not clearly better, so qrf is the default
    assert 0.3 < w["finetuned"] <= 0.5 and "global" not in w
    # the unshrunk stack is the L1 stack of all candidates
    stack = dict(zip(sel["blend"]["members"], sel["blend"]["weights"], strict=True))
    assert stack["finetuned"] == max(stack.values()) and sel["blend"]["mae"] < sel["scores_mae"]["finetuned"]
    # shrink=0: the stack itself; shrink=1: the forest alone
    free = select(y, preds, shrink=0.0)
    assert dict(zip(free["members"], free["weights"], strict=True)) == pytest.approx(
        {k: v for k, v in stack.items() if v >= 0.05}, abs=0.02
    )
    assert select(y, preds, shrink=1.0)["members"] == ["qrf"]


def test_select_keeps_the_forest_when_transfer_adds_nothing(oof: tuple) -> None:
    y, preds = oof
    sel = select(y, {k: preds[k] for k in ("qrf", "global")})
    assert sel["members"] == ["qrf"] and sel["weights"] == [1.0]


def _lognormal(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SOC-like data: log1p(y) = log1p(point) + sigma * noise, sigma varying fourfold between sites."""
    rng = np.random.default_rng(seed)
    point = rng.gamma(3.0, 5.0, n)
    sigma = rng.choice([0.1, 0.4], n)
    y = np.expm1(np.log1p(point) + sigma * rng.standard_normal(n))
    return y, point, sigma


def test_log_intervals_cover_at_the_conformal_level_and_follow_the_local_scale() -> None:
    y, point, sigma = _lognormal(600, seed=3)
    cal = calibrate_intervals(y, point, sigma)
    y2, point2, sigma2 = _lognormal(4000, seed=4)
    lo, hi = log_interval(point2, sigma2, cal, alpha=0.1)
    inside = (y2 >= lo) & (y2 <= hi)
    assert (lo >= 0).all() and (lo <= point2).all() and (hi >= point2).all()
    assert 0.87 <= inside.mean() <= 0.93
    # the local scale matters: intervals are wider at noisy sites, so those are covered better than with a
    # constant scale, and calm sites less needlessly (the scale is damped by its median, so a near-zero local
    # scale never gives a near-empty interval)
    calm, noisy = inside[sigma2 == 0.1].mean(), inside[sigma2 == 0.4].mean()
    assert noisy >= 0.82 and calm <= 0.99
    flat = calibrate_intervals(y, point, np.ones_like(sigma))
    flo, fhi = log_interval(point2, np.ones_like(sigma2), flat, alpha=0.1)
    flat_inside = (y2 >= flo) & (y2 <= fhi)
    assert flat_inside[sigma2 == 0.4].mean() < noisy - 0.02 and flat_inside[sigma2 == 0.1].mean() > calm
    ratio = np.log1p(hi) - np.log1p(lo)
    assert np.median(ratio[sigma2 == 0.4]) > 1.5 * np.median(ratio[sigma2 == 0.1])
    # log space: intervals are skewed like SOC (further above the point than below)
    assert np.median(hi - point2) > np.median(point2 - lo)


def test_a_uniformly_over_wide_scale_is_calibrated_away() -> None:
    y, point, sigma = _lognormal(600, seed=5)
    y2, point2, sigma2 = _lognormal(2000, seed=6)
    honest = log_interval(point2, sigma2, calibrate_intervals(y, point, sigma), 0.1)
    wide = log_interval(point2, 40 * sigma2, calibrate_intervals(y, point, 40 * sigma), 0.1)
    np.testing.assert_allclose(wide[1], honest[1], rtol=1e-6)
    assert np.log1p(log_half_width(*honest)).mean() < 1.0


def test_inner_folds_grow_until_the_networks_get_enough_training_samples() -> None:
    X, _ = synthetic_region(25, seed=4)
    auto = AutoModel(None, covariates=SPECS, block_km=10.0)
    folds, _ = auto._inner_folds(X, min_train=20)
    assert len(folds) >= 5 and min(len(f.train) for f in folds) >= 20
    assert sorted(np.concatenate([f.test for f in folds]).tolist()) == list(range(25))
    folds, kind = auto._inner_folds(X, min_train=2)
    assert len(folds) == 3 and kind == "spatial"


class _Skewed:
    """A stand-in network: its ``predict`` is a smeared mean above its median, like the real ones."""

    kind = "test-skewed"

    def __init__(self, *_: Any, **__: Any) -> None:
        self.covariates = SPECS[:2]

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> _Skewed:
        self.med_ = float(np.median(y))
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.full(len(X), 1.3 * self.med_)

    def predict_median(self, X: pd.DataFrame) -> np.ndarray:
        return np.full(len(X), self.med_)

    def predict_interval(self, X: pd.DataFrame, alpha: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        return np.full(len(X), 0.5 * self.med_), np.full(len(X), 2.0 * self.med_)


def test_point_prediction_prefers_the_median() -> None:
    X, y = synthetic_region(30, seed=6)
    m = _Skewed().fit(X, y)
    np.testing.assert_allclose(point_prediction(m, X), np.median(y))
    np.testing.assert_allclose(point_prediction(m, X, "mean"), 1.3 * np.median(y))


class _Pretrained:
    covariates = SPECS[:2]


@pytest.fixture
def skewed_finetune(monkeypatch: pytest.MonkeyPatch) -> None:
    mod = types.ModuleType("geesoil.model.finetune")
    mod.STRATEGIES = {"finetuned": "skewed stub"}
    mod.make_strategy = lambda name, pretrained, **kw: _Skewed()
    monkeypatch.setitem(sys.modules, "geesoil.model.finetune", mod)


def test_auto_combines_medians_and_its_intervals_cover(skewed_finetune: None) -> None:
    X, y = synthetic_region(700, seed=7)
    Xtr, ytr, Xte, yte = X.iloc[:150], y[:150], X.iloc[150:], y[150:]
    auto = AutoModel(
        _Pretrained(), regional_covariates=SPECS[2:], selection_trees=30, n_estimators=60, block_km=10.0
    ).fit(Xtr, ytr)
    sel = auto.selection_
    assert set(sel["scores_mae"]) == {"finetuned", "rf", "qrf"} and sel["point"] == "median"
    assert sum(auto.weights_) == pytest.approx(1.0) and auto.component_names_[0] == "qrf"
    expected = sum(w * point_prediction(m, Xte) for w, m in zip(auto.weights_, auto.components_, strict=True))
    np.testing.assert_allclose(auto.predict(Xte), expected)
    lo, hi = auto.predict_interval(Xte, alpha=0.1)
    pred = auto.predict(Xte)
    assert (lo >= 0).all() and (lo <= pred + 1e-9).all() and (hi >= pred - 1e-9).all()
    assert 0.84 <= metrics.picp(yte, lo, hi) <= 0.97
    assert sel["intervals"]["n"] == ytr.size and sel["intervals"]["q90"] > 0
    assert_layers_match(auto, Xte)


def test_forest_only_auto_intervals_nest_and_survive_saving(tmp_path: Any) -> None:
    X, y = synthetic_region(300, seed=8)
    auto = AutoModel(None, covariates=SPECS, selection_trees=30, n_estimators=60, block_km=10.0)
    auto.fit(X.iloc[:120], y[:120])
    Xte = X.iloc[120:]
    lo, hi = auto.predict_interval(Xte, alpha=0.1)
    lo80, hi80 = auto.predict_interval(Xte, alpha=0.2)
    assert (lo <= lo80).all() and (hi80 <= hi).all() and (hi80 - lo80 < hi - lo).mean() > 0.95
    layers = assert_layers_match(auto, Xte)  # the maps' one-pass predictions
    # a median stack: its mean lies above its median on skewed SOC
    assert (layers["mean"] > layers["median"]).mean() > 0.5
    again = load_model(save_model(auto, tmp_path / "auto.geesoil"))
    for a, b in zip(again.predict_interval(Xte, alpha=0.1), (lo, hi), strict=True):
        np.testing.assert_allclose(a, b)
    assert 0.8 <= metrics.picp(y[120:], lo, hi) <= 0.98
    # a file from before these intervals (CQR corrections instead of a calibration) is refused, with the fix
    meta, blobs = auto.to_state()
    del meta["calibration"]
    meta["corrections"] = {"alphas": [0.1], "values": [0.0]}
    with pytest.raises(ModelError, match="re-run `geesoil finetune`"):
        AutoModel.from_state(meta, blobs)
