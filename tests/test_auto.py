"""``auto``'s selection logic: the convex L1 stack, shrinkage towards the forest, CQR corrections, inner folds."""

from __future__ import annotations

import sys
import types
from typing import Any

import numpy as np
import pandas as pd
import pytest
from test_baselines import SPECS, synthetic_region

from geesoil import metrics
from geesoil.model.auto import AutoModel, _cqr_corrections, convex_stack, point_prediction, select


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


def test_cqr_corrections_widen_narrow_intervals_and_narrow_wide_ones_only_on_request() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(10, 2, 400)
    wide = {0.1: (np.full(400, 0.0), np.full(400, 20.0))}
    narrow = {0.1: (np.full(400, 9.5), np.full(400, 10.5))}
    c_wide, c_narrow = _cqr_corrections(y, wide, narrow=True)[0.1], _cqr_corrections(y, narrow)[0.1]
    assert c_wide < -5 and c_narrow > 2
    assert _cqr_corrections(y, wide)[0.1] == 0.0  # by default over-covering intervals are kept as they are
    for bounds, c in ((wide, c_wide), (narrow, c_narrow)):
        lo, hi = bounds[0.1]
        cover = np.mean((y >= lo - c) & (y <= hi + c))
        assert 0.9 <= cover <= 0.93  # the finite-sample conformal level, not much more


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
    assert set(sel["corrections"]) == {"0.05", "0.1", "0.2", "0.32", "0.5"}
