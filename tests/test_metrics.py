"""Metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geesoil import metrics

Y = np.array([1.0, 2.0, 3.0, 4.0])
P = np.array([2.0, 2.0, 4.0, 6.0])


def test_point_metrics_match_hand_computation() -> None:
    # errors 1, 0, 1, 2; mean(y)=2.5, SST=5, SSE=6
    assert metrics.mae(Y, P) == pytest.approx(1.0)
    assert metrics.rmse(Y, P) == pytest.approx(math.sqrt(1.5))
    assert metrics.bias(Y, P) == pytest.approx(1.0)
    assert metrics.r2(Y, P) == pytest.approx(1 - 6 / 5)
    # var_y=1.25, var_p=2.75, cov=1.75, (m_y-m_p)^2=1 -> 3.5 / 5
    assert metrics.ccc(Y, P) == pytest.approx(0.7)


def test_ccc_identical_is_one_and_shift_lowers_it() -> None:
    rng = np.random.default_rng(1)
    y = rng.gamma(2.0, 8.0, size=200)
    assert metrics.ccc(y, y) == pytest.approx(1.0)
    shifted = metrics.ccc(y, y + 5.0)
    assert shifted < 1.0
    # perfectly correlated but shifted by c: 2 var / (2 var + c^2)
    assert shifted == pytest.approx(2 * y.var() / (2 * y.var() + 25.0))
    # Pearson correlation ignores the shift, CCC does not
    assert np.corrcoef(y, y + 5.0)[0, 1] == pytest.approx(1.0)


def test_interval_metrics() -> None:
    lo = np.array([0.0, 2.5, 3.0, 0.0])
    hi = np.array([2.0, 3.0, 3.0, 3.9])
    assert metrics.picp(Y, lo, hi) == pytest.approx(0.5)  # bounds inclusive: 1 and 3 covered
    assert metrics.mean_width(lo, hi) == pytest.approx(1.6)
    s = metrics.scores(Y, P, lo, hi)
    assert list(s) == list(metrics.METRICS)
    assert s["picp90"] == pytest.approx(0.5)
    assert math.isnan(metrics.scores(Y, P)["width90"])


def test_nan_pairs_are_ignored() -> None:
    y = np.array([1.0, np.nan, 3.0])
    p = np.array([2.0, 5.0, np.nan])
    assert metrics.mae(y, p) == pytest.approx(1.0)
    assert math.isnan(metrics.r2(np.ones(3), np.arange(3.0)))  # constant observations


def test_improvement_percentages() -> None:
    assert metrics.mae_decrease_pct(8.0, 10.0) == pytest.approx(20.0)
    assert metrics.mae_decrease_pct(11.0, 10.0) == pytest.approx(-10.0)
    assert metrics.ccc_increase_pct(0.6, 0.5) == pytest.approx(20.0)
    assert math.isnan(metrics.ccc_increase_pct(0.6, 0.0))
