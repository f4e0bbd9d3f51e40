"""Split/cross-conformal calibration of prediction intervals with normalised scores, in the transformed space.

Score of a held-out residual ``r`` (transformed units, e.g. log1p g/kg): ``|r| / scale`` with
``scale = sqrt((spread + beta)² + extra_var)``, where ``spread`` is the deep-ensemble standard deviation,
``beta`` the median calibration spread (keeps the score stable where members happen to agree) and ``extra_var``
an optional additional predictive variance (a residual Gaussian process). The interval is
``mu ± q · scale`` with ``q`` the finite-sample conformal quantile of the scores.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Calibration:
    scores: np.ndarray  # sorted nonconformity scores
    beta: float

    @property
    def n(self) -> int:
        return int(self.scores.size)

    def scale(self, spread: np.ndarray, extra_var: np.ndarray | float = 0.0) -> np.ndarray:
        return np.sqrt((np.asarray(spread) + self.beta) ** 2 + extra_var)

    def quantile(self, alpha: float) -> float:
        return conformal_quantile(self.scores, alpha)

    def interval(
        self, mu: np.ndarray, spread: np.ndarray, alpha: float, extra_var: np.ndarray | float = 0.0
    ) -> tuple[np.ndarray, np.ndarray]:
        half = self.quantile(alpha) * self.scale(spread, extra_var)
        return mu - half, mu + half

    def to_dict(self) -> dict[str, Any]:
        return {"beta": self.beta, "n": self.n}


def fit_calibration(
    resid: np.ndarray, spread: np.ndarray, extra_var: np.ndarray | float = 0.0, beta: float | None = None
) -> Calibration:
    """Calibration from held-out residuals and the ensemble spread at the same points."""
    resid = np.asarray(resid, dtype=np.float64)
    spread = np.asarray(spread, dtype=np.float64)
    if resid.size == 0:
        raise ValueError("no held-out residuals to calibrate on")
    if beta is None:
        beta = float(np.median(spread))
        if not beta > 1e-6:  # a single member: plain absolute residual scores
            beta = 1.0
    cal = Calibration(np.sort(np.zeros(0)), beta)
    cal.scores = np.sort(np.abs(resid) / cal.scale(spread, extra_var))
    return cal


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The ⌈(n+1)(1−α)⌉-th smallest score; capped at the largest when too few scores exist (logged)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    n = scores.size
    k = int(np.ceil((n + 1) * (1 - alpha)))
    if k > n:
        log.warning(
            "only %d calibration scores: the %.0f%% interval is capped at the largest", n, 100 * (1 - alpha)
        )
        k = n
    return float(np.sort(scores)[max(k, 1) - 1])
