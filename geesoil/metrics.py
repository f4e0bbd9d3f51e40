"""Accuracy and uncertainty metrics for SOC predictions, and percent improvement over a baseline.

All functions take observed ``y`` and predicted values as 1-D arrays (g/kg) and ignore pairs where either is NaN.
"""

from __future__ import annotations

import math

import numpy as np

#: the metric keys of :func:`scores`, in report order
METRICS = ("mae", "rmse", "r2", "ccc", "bias", "picp90", "width90")


def _pair(y: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float).ravel()
    pred = np.asarray(pred, dtype=float).ravel()
    if y.shape != pred.shape:
        raise ValueError(f"y has {y.size} values but the prediction has {pred.size}")
    ok = np.isfinite(y) & np.isfinite(pred)
    return y[ok], pred[ok]


def mae(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean absolute error."""
    y, pred = _pair(y, pred)
    return float(np.mean(np.abs(pred - y))) if y.size else math.nan


def rmse(y: np.ndarray, pred: np.ndarray) -> float:
    """Root mean squared error."""
    y, pred = _pair(y, pred)
    return float(np.sqrt(np.mean((pred - y) ** 2))) if y.size else math.nan


def bias(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean error ``mean(pred - y)``: positive when the model over-predicts."""
    y, pred = _pair(y, pred)
    return float(np.mean(pred - y)) if y.size else math.nan


def r2(y: np.ndarray, pred: np.ndarray) -> float:
    """Coefficient of determination (model efficiency) ``1 - SSE / SST``; NaN when ``y`` is constant."""
    y, pred = _pair(y, pred)
    sst = float(np.sum((y - y.mean()) ** 2)) if y.size else 0.0
    if sst == 0.0:
        return math.nan
    return 1.0 - float(np.sum((y - pred) ** 2)) / sst


def ccc(y: np.ndarray, pred: np.ndarray) -> float:
    """Lin's concordance correlation coefficient ``2 s_xy / (s_x² + s_y² + (m_x - m_y)²)`` (population moments)."""
    y, pred = _pair(y, pred)
    if y.size < 2:
        return math.nan
    my, mp = y.mean(), pred.mean()
    sxy = float(np.mean((y - my) * (pred - mp)))
    denom = float(np.var(y) + np.var(pred) + (my - mp) ** 2)
    return 2.0 * sxy / denom if denom > 0 else math.nan


def picp(y: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> float:
    """Prediction interval coverage probability: the share of ``y`` inside ``[lower, upper]``."""
    y = np.asarray(y, dtype=float).ravel()
    lower = np.asarray(lower, dtype=float).ravel()
    upper = np.asarray(upper, dtype=float).ravel()
    ok = np.isfinite(y) & np.isfinite(lower) & np.isfinite(upper)
    if not ok.any():
        return math.nan
    return float(np.mean((y[ok] >= lower[ok]) & (y[ok] <= upper[ok])))


def mean_width(lower: np.ndarray, upper: np.ndarray) -> float:
    """Mean width of the prediction intervals."""
    lower = np.asarray(lower, dtype=float).ravel()
    upper = np.asarray(upper, dtype=float).ravel()
    ok = np.isfinite(lower) & np.isfinite(upper)
    return float(np.mean(upper[ok] - lower[ok])) if ok.any() else math.nan


def scores(
    y: np.ndarray,
    pred: np.ndarray,
    lower: np.ndarray | None = None,
    upper: np.ndarray | None = None,
) -> dict[str, float]:
    """Every metric in :data:`METRICS`; ``lower``/``upper`` bound the 90% interval (NaN metrics without them)."""
    out = {
        "mae": mae(y, pred),
        "rmse": rmse(y, pred),
        "r2": r2(y, pred),
        "ccc": ccc(y, pred),
        "bias": bias(y, pred),
        "picp90": math.nan,
        "width90": math.nan,
    }
    if lower is not None and upper is not None:
        out["picp90"] = picp(y, lower, upper)
        out["width90"] = mean_width(lower, upper)
    return out


def mae_decrease_pct(mae_model: float, mae_baseline: float) -> float:
    """How much lower the model's MAE is than the baseline's, in percent of the baseline (positive = better)."""
    if not mae_baseline > 0:
        return math.nan
    return 100.0 * (mae_baseline - mae_model) / mae_baseline


def ccc_increase_pct(ccc_model: float, ccc_baseline: float) -> float:
    """How much higher the model's CCC is than the baseline's, in percent of ``|baseline|`` (positive = better)."""
    if not (math.isfinite(ccc_baseline) and ccc_baseline != 0):
        return math.nan
    return 100.0 * (ccc_model - ccc_baseline) / abs(ccc_baseline)
