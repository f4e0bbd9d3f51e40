"""Regional-only baselines: random forest (kind ``rf``) and quantile regression forest (kind ``qrf``, SoilGrids' method).

Both are built as a careful user would build them for a region: exactly the covariates the fine-tuned model sees,
plus ``lon``/``lat`` and oblique (rotated) coordinates (Møller et al. 2020), so the forest can model spatial trend.

Feature encoding (documented because it changes results):

* continuous covariates are used as they are; missing values are filled with the training median;
* categorical covariates are **one-hot encoded** (``categorical="onehot"``, the default) over the classes listed in
  their spec (or, without a class list, the codes seen in training); missing or unseen codes give all-zero indicators.
  ``categorical="codes"`` keeps the integer code as one ordinal column (missing -> -1), cheaper with many classes;
* oblique coordinates are ``x cos(a) + lat sin(a)`` with ``x = lon cos(lat_ref)`` for each angle ``a``.

Intervals are conformally calibrated on out-of-bag (OOB) predictions, so no data need to be held out:

* RF: normalised conformal scores ``|y - oob_mean| / (oob_spread + floor)``, where ``oob_spread`` is the standard
  deviation of the OOB trees' predictions; a new point gets ``pred +/- q * (tree_spread + floor)``;
* QRF: conformalised quantile regression (Romano et al. 2019) on the OOB quantiles ``alpha/2`` and ``1 - alpha/2``;
  corrections are computed for :data:`CALIBRATED_ALPHAS` and interpolated between them.

Lower bounds are clipped at 0 g/kg. Forests are stored with ``skops.io`` and loaded only when every type in the blob
is on :data:`TRUSTED_TYPES`; nothing is unpickled.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from geesoil.covariates.spec import CovariateSpec
from geesoil.errors import ModelError
from geesoil.model.features import spec_from_dict, spec_to_dict
from geesoil.model.io import register

log = logging.getLogger(__name__)

#: types a baseline's skops blob may contain beyond skops' own defaults; anything else is refused unloaded
TRUSTED_TYPES = frozenset(
    {
        "sklearn.ensemble._forest.RandomForestRegressor",
        "sklearn.tree._classes.DecisionTreeRegressor",
        "sklearn.tree._tree.Tree",
        "quantile_forest._quantile_forest.RandomForestQuantileRegressor",
        "quantile_forest._quantile_forest_fast.QuantileForest",
    }
)

#: interval levels whose QRF conformal corrections are computed at fit time
CALIBRATED_ALPHAS = (0.05, 0.1, 0.2, 0.32, 0.5)

DEFAULT_ANGLES = (30.0, 60.0, 120.0, 150.0)


def as_specs(covariates: Sequence[CovariateSpec | str]) -> tuple[CovariateSpec, ...]:
    """Covariate specs from specs or bare names (bare names are continuous, group ``other``)."""
    return tuple(
        c if isinstance(c, CovariateSpec) else CovariateSpec(name=str(c), group="other") for c in covariates
    )


def merge_covariates(
    first: Sequence[CovariateSpec | str], then: Sequence[CovariateSpec | str]
) -> tuple[CovariateSpec, ...]:
    """The specs of ``first``, then those of ``then`` whose names ``first`` lacks (e.g. a network's covariates, then
    a region's)."""
    first = as_specs(first)
    names = {c.name for c in first}
    return first + tuple(c for c in as_specs(then) if c.name not in names)


def load_skops(blob: bytes, what: str) -> Any:
    """Load a skops blob after checking every non-default type against :data:`TRUSTED_TYPES`."""
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(data=blob)
    except Exception as exc:  # not a skops archive at all (a pickle, a truncated file...)
        raise ModelError(f"{what}: not a skops archive ({type(exc).__name__}); refusing to load it") from exc
    bad = sorted(t for t in untrusted if t not in TRUSTED_TYPES)
    if bad:
        raise ModelError(
            f"{what}: refusing to load untrusted types {', '.join(bad)}; the model file was tampered with"
        )
    try:
        return sio.loads(blob, trusted=list(untrusted))
    except Exception as exc:
        raise ModelError(f"{what}: damaged skops archive ({exc})") from exc


class _Forest:
    """Shared feature engineering, fitting and serialisation of the two forests."""

    kind = ""
    _estimator_class = ""

    def __init__(
        self,
        covariates: Sequence[CovariateSpec | str],
        *,
        n_estimators: int = 500,
        min_samples_leaf: int = 3,
        max_features: float = 1 / 3,
        oblique_angles: Sequence[float] = DEFAULT_ANGLES,
        categorical: str = "onehot",
        random_state: int = 0,
        n_jobs: int | None = None,
    ) -> None:
        if categorical not in ("onehot", "codes"):
            raise ValueError(f"categorical must be 'onehot' or 'codes', got {categorical!r}")
        self._covariates = as_specs(covariates)
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.oblique_angles = tuple(float(a) for a in oblique_angles)
        self.categorical = categorical
        self.random_state = random_state
        self.n_jobs = n_jobs

    @property
    def covariates(self) -> tuple[CovariateSpec, ...]:
        return self._covariates

    def _params(self) -> dict[str, Any]:
        return {
            "n_estimators": self.n_estimators,
            "min_samples_leaf": self.min_samples_leaf,
            "max_features": self.max_features,
            "oblique_angles": list(self.oblique_angles),
            "categorical": self.categorical,
            "random_state": self.random_state,
            "n_jobs": self.n_jobs,
        }

    # --- features -------------------------------------------------------------------------------------------
    def _check_columns(self, X: pd.DataFrame) -> None:
        need = [c.name for c in self._covariates] + ["lon", "lat"]
        missing = [n for n in need if n not in X.columns]
        if missing:
            raise ModelError(
                f"{self.kind} model needs columns missing from the input: {', '.join(missing)}; "
                "give a covariate source that provides them"
            )

    def _learn_encoding(self, X: pd.DataFrame) -> None:
        self.medians_: dict[str, float] = {}
        self.classes_: dict[str, list[int]] = {}
        for spec in self._covariates:
            col = pd.to_numeric(X[spec.name], errors="coerce").astype(float)
            if spec.is_categorical and self.categorical == "onehot":
                if spec.classes:
                    codes = sorted(int(k) for k in spec.classes)
                else:
                    codes = sorted(int(v) for v in np.unique(col.dropna()))
                self.classes_[spec.name] = codes
            else:
                med = float(col.median()) if col.notna().any() else 0.0
                self.medians_[spec.name] = med
        self.lat_ref_ = float(np.nanmedian(X["lat"].to_numpy(dtype=float)))

    def _features(self, X: pd.DataFrame) -> np.ndarray:
        self._check_columns(X)
        cols: list[np.ndarray] = []
        for spec in self._covariates:
            v = pd.to_numeric(X[spec.name], errors="coerce").to_numpy(dtype=float)
            if spec.name in self.classes_:
                cols.extend((v == code).astype(float) for code in self.classes_[spec.name])
            elif spec.is_categorical:  # ordinal codes
                cols.append(np.where(np.isnan(v), -1.0, v))
            else:
                cols.append(np.where(np.isnan(v), self.medians_[spec.name], v))
        lon = X["lon"].to_numpy(dtype=float)
        lat = X["lat"].to_numpy(dtype=float)
        cols += [lon, lat]
        x = lon * math.cos(math.radians(self.lat_ref_))
        for a in self.oblique_angles:
            r = math.radians(a)
            cols.append(x * math.cos(r) + lat * math.sin(r))
        return np.column_stack(cols).astype(np.float32)

    @property
    def feature_names_(self) -> list[str]:
        names: list[str] = []
        for spec in self._covariates:
            if spec.name in self.classes_:
                names += [f"{spec.name}={c}" for c in self.classes_[spec.name]]
            else:
                names.append(spec.name)
        return names + ["lon", "lat"] + [f"oblique{a:g}" for a in self.oblique_angles]

    # --- fitting --------------------------------------------------------------------------------------------
    def _make_forest(self) -> Any:
        raise NotImplementedError

    def _calibrate(self, F: np.ndarray, y: np.ndarray) -> None:
        raise NotImplementedError

    def fit(self, X: pd.DataFrame, y: np.ndarray) -> _Forest:
        y = np.asarray(y, dtype=float).ravel()
        if len(X) != y.size:
            raise ValueError(f"X has {len(X)} rows but y has {y.size}")
        ok = np.isfinite(y)
        X, y = X.loc[ok] if not ok.all() else X, y[ok]
        if y.size < 5:
            raise ModelError(f"{self.kind} needs at least 5 samples with a target value, got {y.size}")
        self._check_columns(X)
        self._learn_encoding(X)
        F = self._features(X)
        self.forest_ = self._make_forest().fit(F, y)
        self.n_train_ = int(y.size)
        self.y_summary_ = {"n": int(y.size), "mean": float(y.mean()), "median": float(np.median(y))}
        self._calibrate(F, y)
        return self

    def _fitted(self) -> None:
        if not hasattr(self, "forest_"):
            raise ModelError(f"{self.kind} model is not fitted; call fit() first")

    # --- serialisation --------------------------------------------------------------------------------------
    def _calibration_state(self) -> dict[str, Any]:
        raise NotImplementedError

    def _set_calibration(self, cal: dict[str, Any]) -> None:
        raise NotImplementedError

    def to_state(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        import skops.io as sio

        self._fitted()
        meta = {
            "params": self._params(),
            "covariates": [spec_to_dict(s) for s in self._covariates],
            "feature_names": self.feature_names_,
            "medians": self.medians_,
            "classes": self.classes_,
            "lat_ref": self.lat_ref_,
            "training": self.y_summary_,
            "calibration": self._calibration_state(),
        }
        return meta, {"forest.skops": sio.dumps(self.forest_)}

    @classmethod
    def from_state(cls, meta: dict[str, Any], blobs: dict[str, bytes]) -> _Forest:
        if "forest.skops" not in blobs:
            raise ModelError(f"{cls.kind} model file has no forest.skops blob")
        model = cls([spec_from_dict(d) for d in meta["covariates"]], **meta["params"])
        model.medians_ = {k: float(v) for k, v in meta["medians"].items()}
        model.classes_ = {k: [int(c) for c in v] for k, v in meta["classes"].items()}
        model.lat_ref_ = float(meta["lat_ref"])
        model.y_summary_ = dict(meta["training"])
        model.n_train_ = int(model.y_summary_["n"])
        no_median = [
            s.name
            for s in model._covariates
            if not s.is_categorical and s.name not in model.classes_ and s.name not in model.medians_
        ]
        if model.feature_names_ != list(meta["feature_names"]) or no_median:
            # a tampered model.json: predictions would use the wrong columns or fail on the first map tile
            raise ModelError(
                f"{cls.kind} model file is inconsistent: its covariates give features {model.feature_names_} "
                f"but the forest was trained on {list(meta['feature_names'])}"
                + (f" (no median for {', '.join(no_median)})" if no_median else "")
            )
        forest = load_skops(blobs["forest.skops"], f"{cls.kind} model")
        if type(forest).__name__ != cls._estimator_class:
            raise ModelError(
                f"{cls.kind} model file holds a {type(forest).__name__}, not a {cls._estimator_class}"
            )
        _check_trees(forest, len(meta["feature_names"]), f"{cls.kind} model")
        model.forest_ = forest
        model._set_calibration(meta["calibration"])
        return model


def _check_trees(forest: Any, n_features: int, what: str) -> None:
    """Refuse trees whose node arrays point outside themselves: scikit-learn indexes them without bounds checks.

    This is why skops does not trust ``sklearn.tree._tree.Tree`` by default; checking the indices makes trusting
    it safe against crafted files (which could otherwise crash the process at prediction time).
    """
    if getattr(forest, "n_features_in_", n_features) != n_features:
        raise ModelError(
            f"{what}: forest expects {forest.n_features_in_} features, metadata lists {n_features}"
        )
    for est in getattr(forest, "estimators_", []):
        t = est.tree_
        n = t.node_count
        for arr in (t.children_left, t.children_right):
            # children always come after their parent, which also rules out cycles
            if arr.shape != (n,) or ((arr != -1) & ((arr <= np.arange(n)) | (arr >= n))).any():
                raise ModelError(f"{what}: damaged tree (child index out of range); refusing to use it")
        if ((t.feature < -2) | (t.feature >= n_features)).any():
            raise ModelError(f"{what}: damaged tree (feature index out of range); refusing to use it")


def _conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """The ``ceil((n + 1)(1 - alpha))``-th smallest score (split-conformal rank); the largest when out of range."""
    n = scores.size
    if n == 0:
        return math.inf
    k = math.ceil((n + 1) * (1 - alpha))
    return float(np.sort(scores)[min(max(k, 1), n) - 1])


@register("rf")
class RandomForestSoil(_Forest):
    """Random forest regression (scikit-learn) with OOB-conformal intervals from the spread of tree predictions."""

    kind = "rf"
    _estimator_class = "RandomForestRegressor"

    def _make_forest(self) -> Any:
        from sklearn.ensemble import RandomForestRegressor

        return RandomForestRegressor(
            n_estimators=self.n_estimators,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        )

    def _tree_predictions(self, F: np.ndarray) -> np.ndarray:
        F = np.ascontiguousarray(F, dtype=np.float32)
        # the features are already validated float32; skipping per-tree checks makes this ~10x faster
        return np.stack([t.predict(F, check_input=False) for t in self.forest_.estimators_])

    def _calibrate(self, F: np.ndarray, y: np.ndarray) -> None:
        P = self._tree_predictions(F)
        oob = np.ones_like(P, dtype=bool)
        for t, idx in enumerate(self.forest_.estimators_samples_):
            oob[t, idx] = False
        cnt = oob.sum(axis=0)
        ok = cnt >= 2
        if not ok.any():  # tiny forests: fall back to all trees (over-confident, but defined)
            oob[:], cnt, ok = True, np.full(y.size, P.shape[0]), np.ones(y.size, dtype=bool)
        safe = np.maximum(cnt, 1)
        mean = (P * oob).sum(axis=0) / safe
        spread = np.sqrt((((P - mean) ** 2) * oob).sum(axis=0) / safe)
        self.spread_floor_ = max(0.05 * float(np.median(spread[ok])), 1e-6)
        self.scores_ = np.sort(np.abs(y[ok] - mean[ok]) / (spread[ok] + self.spread_floor_))
        self.oob_mae_ = float(np.mean(np.abs(y[ok] - mean[ok])))

    def _calibration_state(self) -> dict[str, Any]:
        return {"spread_floor": self.spread_floor_, "scores": self.scores_.tolist(), "oob_mae": self.oob_mae_}

    def _set_calibration(self, cal: dict[str, Any]) -> None:
        self.spread_floor_ = float(cal["spread_floor"])
        self.scores_ = np.asarray(cal["scores"], dtype=float)
        self.oob_mae_ = float(cal["oob_mae"])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        self._fitted()
        return self.forest_.predict(self._features(X))

    def predict_std(self, X: pd.DataFrame) -> np.ndarray:
        """Standard deviation of the trees' predictions (uncalibrated spread)."""
        self._fitted()
        return self._tree_predictions(self._features(X)).std(axis=0)

    def predict_interval(self, X: pd.DataFrame, alpha: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        self._fitted()
        P = self._tree_predictions(self._features(X))
        pred, spread = P.mean(axis=0), P.std(axis=0)
        half = _conformal_quantile(self.scores_, alpha) * (spread + self.spread_floor_)
        return np.maximum(pred - half, 0.0), pred + half


@register("qrf")
class QuantileForestSoil(_Forest):
    """Quantile regression forest (``quantile-forest``): median prediction (``predict_mean`` gives the mean),
    OOB-conformalised quantile intervals."""

    kind = "qrf"
    _estimator_class = "RandomForestQuantileRegressor"

    def _make_forest(self) -> Any:
        from quantile_forest import RandomForestQuantileRegressor

        return RandomForestQuantileRegressor(
            n_estimators=self.n_estimators,
            min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        )

    def _calibrate(self, F: np.ndarray, y: np.ndarray) -> None:
        levels = sorted({q for a in CALIBRATED_ALPHAS for q in (a / 2, 1 - a / 2)})
        with warnings.catch_warnings():
            # tiny forests leave some samples without OOB trees; those rows are NaN and skipped below
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            Q = np.asarray(self.forest_.predict(F, quantiles=levels, oob_score=True))
        self.corrections_: dict[float, float] = {}
        for a in CALIBRATED_ALPHAS:
            lo, hi = Q[:, levels.index(a / 2)], Q[:, levels.index(1 - a / 2)]
            ok = np.isfinite(lo) & np.isfinite(hi)
            score = np.maximum(lo[ok] - y[ok], y[ok] - hi[ok])
            self.corrections_[a] = _conformal_quantile(score, a)

    def _calibration_state(self) -> dict[str, Any]:
        return {"alphas": list(self.corrections_), "corrections": list(self.corrections_.values())}

    def _set_calibration(self, cal: dict[str, Any]) -> None:
        self.corrections_ = {
            float(a): float(c) for a, c in zip(cal["alphas"], cal["corrections"], strict=True)
        }

    def _quantiles(self, X: pd.DataFrame, levels: list[float]) -> np.ndarray:
        self._fitted()
        return np.asarray(self.forest_.predict(self._features(X), quantiles=levels)).reshape(
            len(X), len(levels)
        )

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self._quantiles(X, [0.5])[:, 0]

    def predict_median(self, X: pd.DataFrame) -> np.ndarray:
        """The conditional median (g/kg): the same as :meth:`predict`."""
        return self.predict(X)

    def predict_mean(self, X: pd.DataFrame) -> np.ndarray:
        """The conditional mean (g/kg), for stocks and area totals: the mean of the training targets the forest
        weighs for each row, i.e. of the same distribution whose quantiles :meth:`predict` and the intervals use.
        """
        self._fitted()
        return np.asarray(self.forest_.predict(self._features(X), quantiles="mean"), float).reshape(len(X))

    def predict_std(self, X: pd.DataFrame) -> np.ndarray:
        """Half the 16-84% quantile range (the standard deviation if the predictive law were normal)."""
        q = self._quantiles(X, [0.16, 0.84])
        return (q[:, 1] - q[:, 0]) / 2

    def predict_interval(self, X: pd.DataFrame, alpha: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        return self._interval(self._quantiles(X, [alpha / 2, 1 - alpha / 2]), alpha)

    def predict_layers(
        self, X: pd.DataFrame, alpha: float = 0.1, *, median: bool = False, std: bool = False
    ) -> dict[str, np.ndarray]:
        """:func:`geesoil.model.base.predict_layers` from one quantile query (and one for the mean)."""
        levels = [alpha / 2, 1 - alpha / 2, 0.5, 0.16, 0.84]
        q = self._quantiles(X, levels)
        lo, hi = self._interval(q[:, :2], alpha)
        out = {"point": q[:, 2], "mean": self.predict_mean(X), "lo": lo, "hi": hi}
        if median:
            out["median"] = q[:, 2]
        if std:
            out["std"] = (q[:, 4] - q[:, 3]) / 2
        return out

    def _interval(self, q: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """Conformalised bounds from the raw ``alpha / 2`` and ``1 - alpha / 2`` quantiles (columns of ``q``)."""
        alphas = np.array(sorted(self.corrections_))
        corr = float(np.interp(alpha, alphas, [self.corrections_[a] for a in alphas]))
        if alpha not in self.corrections_:
            log.debug("qrf: conformal correction for alpha=%g interpolated from %s", alpha, alphas.tolist())
        # a negative correction (over-wide raw quantiles) may shrink an interval, never invert it
        mid = (q[:, 0] + q[:, 1]) / 2
        lower = np.minimum(q[:, 0] - corr, mid)
        upper = np.maximum(q[:, 1] + corr, mid)
        return np.maximum(lower, 0.0), upper
