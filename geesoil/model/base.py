"""The estimator contract every soil model follows, so evaluation, mapping and the CLI treat them alike.

scikit-learn style: hyperparameters go into ``__init__`` unchanged, ``fit`` learns attributes ending in ``_``,
``predict`` never mutates, everything is reproducible from ``random_state``.

``X`` is a DataFrame with one column per covariate (named as in the covariate specs) plus ``lon`` and ``lat``
(WGS84 degrees); ``y`` is SOC in g/kg (back-transformed units). Categorical covariates hold integer class codes
(float dtype, NaN for missing).

``predict`` is the model's point prediction: a mean for the networks and RF, a median for QRF and ``auto``
(MAE-optimal on skewed SOC). Models whose ``predict`` is not a mean also offer ``predict_mean`` - the mean is what
stocks and area totals need (:func:`mean_prediction`). Models with a median of their own (all but RF) offer
``predict_median``, and evaluation scores it (:func:`median_prediction`): the median minimises the absolute error,
and scoring the networks' means against QRF's medians would hand QRF that advantage.

Maps need several of these per pixel; :func:`predict_layers` gets them together, in one pass of the model where
it has a ``predict_layers`` method of its own (the networks, QRF, ``auto``).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd

from geesoil.covariates.spec import CovariateSpec

#: the central interval of ±1 standard deviation of a normal law: ``predict_std`` is half its width
ONE_SIGMA_ALPHA = 0.3173


@runtime_checkable
class SoilModel(Protocol):
    #: registry key written into the model file; ``geesoil.model.io`` maps it back to the class
    kind: str

    @property
    def covariates(self) -> tuple[CovariateSpec, ...]:
        """The covariates the fitted model needs (besides lon/lat)."""
        ...

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> SoilModel: ...

    def predict(self, X: pd.DataFrame) -> np.ndarray: ...

    def predict_interval(self, X: pd.DataFrame, alpha: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper bounds of the central ``1 - alpha`` prediction interval (g/kg)."""
        ...

    def to_state(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        """JSON-serialisable metadata and named binary blobs (safetensors / skops bytes), no pickles."""
        ...

    @classmethod
    def from_state(cls, meta: dict[str, Any], blobs: dict[str, bytes]) -> SoilModel: ...


def median_prediction(model: Any, X: pd.DataFrame) -> np.ndarray:
    """The prediction evaluation scores (g/kg): ``predict_median`` where the model has one, else ``predict``."""
    if hasattr(model, "predict_median"):
        return np.asarray(model.predict_median(X), float)
    return np.asarray(model.predict(X), float)


def mean_prediction(model: Any, X: pd.DataFrame) -> np.ndarray:
    """A model's mean prediction (g/kg): ``predict_mean`` where it has one, else ``predict``."""
    if hasattr(model, "predict_mean"):
        return np.asarray(model.predict_mean(X), float)
    return np.asarray(model.predict(X), float)


def predict_layers(
    model: Any, X: pd.DataFrame, alpha: float = 0.1, *, median: bool = False, std: bool = False
) -> dict[str, np.ndarray]:
    """The predictions a map needs for rows ``X`` (g/kg), as the model's separate methods give them.

    Keys: ``point`` (``predict``), ``mean`` (:func:`mean_prediction`), ``lo``/``hi`` (``predict_interval`` at
    ``alpha``), ``median`` (``predict_median``; only when asked and the model has one) and ``std``
    (``predict_std``; when asked). A model's own ``predict_layers`` computes them in one pass.
    """
    if hasattr(model, "predict_layers"):
        return model.predict_layers(X, alpha, median=median, std=std)
    point = np.asarray(model.predict(X), float)
    lo, hi = model.predict_interval(X, alpha=alpha)
    out = {"point": point, "mean": mean_prediction(model, X) if hasattr(model, "predict_mean") else point}
    out |= {"lo": np.asarray(lo, float), "hi": np.asarray(hi, float)}
    if median and hasattr(model, "predict_median"):
        out["median"] = np.asarray(model.predict_median(X), float)
    if std:
        out["std"] = np.asarray(model.predict_std(X), float)
    return out
