"""Area of applicability (Meyer & Pebesma 2021): where a model's covariates look like its training data.

Each covariate is standardised with the training mean and standard deviation (categorical covariates become one
indicator column per training class, standardised the same way, as CAST does via ``model.matrix``) and multiplied
by its variable importance when the model provides one. The dissimilarity index of a pixel is its distance to the
nearest training sample divided by the mean distance between training samples. The threshold is the upper whisker
of the training samples' cross-validated DI (the largest value ≤ Q3 + 1.5 IQR, i.e. the outlier-removed maximum),
where a training sample's CV DI is its distance to the nearest training sample of *another* fold. Pixels with
DI ≤ threshold are inside the AOA (1), the others outside (0).

Only covariates enter the distance, not lon/lat: the AOA is about covariate space, and coordinates would turn it
into a distance-to-samples map.

Where the training data come from (first that applies): a model attribute ``training_X_`` (a DataFrame of the
training covariates), an ``"aoa"`` entry in the model file's metadata (written by :meth:`AOAReference.to_dict`),
or a sample table given by the user (``geesoil map --samples FILE``: covariates + lon/lat).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from geesoil.covariates.spec import CovariateSpec
from geesoil.errors import GeesoilError

log = logging.getLogger(__name__)

#: Folds of the cross-validated training DI when no folds are given (sites grouped by rounded lon/lat).
DEFAULT_FOLDS = 10
#: Training samples are grouped by lon/lat rounded to this many degrees, so one site never sits in two folds.
SITE_ROUND_DEG = 0.01
#: The mean pairwise distance is estimated from at most this many training samples.
MAX_PAIR_SAMPLES = 2000


class AOAError(GeesoilError):
    """The area of applicability cannot be computed (no training data, no usable covariate...)."""


@dataclass(frozen=True)
class AOAReference:
    """What the AOA needs from the training data: standardisation, weights, the standardised samples, threshold."""

    columns: tuple[str, ...]  # encoded column names ("name" or "name=code")
    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    train: np.ndarray  # standardised, weighted training matrix (n, k)
    mean_distance: float
    threshold: float
    train_di: np.ndarray

    # -- building ---------------------------------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        X: pd.DataFrame,
        covariates: Sequence[CovariateSpec],
        *,
        importance: Mapping[str, float] | None = None,
        folds: np.ndarray | None = None,
        n_folds: int = DEFAULT_FOLDS,
        random_state: int = 0,
    ) -> AOAReference:
        """Reference from the training table ``X`` (covariate columns, and lon/lat for the default folds)."""
        missing = [c.name for c in covariates if c.name not in X.columns]
        if missing:
            raise AOAError(
                f"the training samples for the AOA lack covariate column(s) {', '.join(missing)}; "
                "give the training table the model was fitted on (covariates + lon/lat)"
            )
        cols, raw = _encode(X, covariates, classes=None)
        ok = np.isfinite(raw).all(axis=1)
        raw = raw[ok]
        if raw.shape[0] < 3:
            raise AOAError(
                f"the AOA needs at least 3 training samples with every covariate, got {raw.shape[0]}"
            )
        mean = raw.mean(axis=0)
        std = raw.std(axis=0)
        keep = std > 0
        if not keep.any():
            raise AOAError("every covariate is constant in the training samples; the AOA is undefined")
        names = tuple(c for c, k in zip(cols, keep, strict=True) if k)
        w = np.array([_weight(n, importance) for n in names])
        if not (w > 0).any():
            raise AOAError("every covariate has zero importance; the AOA is undefined")
        train = (raw[:, keep] - mean[keep]) / std[keep] * w
        if folds is None:
            folds = _site_folds(X.loc[ok] if not ok.all() else X, n_folds, random_state)
        else:
            folds = np.asarray(folds)[ok]
        train_di, dbar = _cv_di(train, folds, random_state)
        q1, q3 = np.percentile(train_di, [25, 75])
        within = train_di[train_di <= q3 + 1.5 * (q3 - q1)]
        threshold = float(within.max()) if within.size else float(np.max(train_di))
        return cls(names, mean[keep], std[keep], w, train, dbar, threshold, train_di)

    @cached_property
    def tree(self) -> cKDTree:
        return cKDTree(self.train)

    # -- applying ---------------------------------------------------------------------------------------------
    def di(self, X: pd.DataFrame, covariates: Sequence[CovariateSpec]) -> np.ndarray:
        """Dissimilarity index of each row of ``X`` (NaN where a covariate is missing)."""
        classes = _classes_of(self.columns)
        cols, raw = _encode(X, covariates, classes=classes)
        idx = [cols.index(c) for c in self.columns]
        z = (raw[:, idx] - self.mean) / self.std * self.weights
        out = np.full(len(X), np.nan)
        ok = np.isfinite(z).all(axis=1)
        if ok.any():
            d, _ = self.tree.query(z[ok], k=1)
            out[ok] = d / self.mean_distance
        return out

    def inside(self, di: np.ndarray) -> np.ndarray:
        """1 inside the AOA, 0 outside, as uint8 (NaN DI counts as outside; callers mask those pixels)."""
        return (np.nan_to_num(di, nan=np.inf) <= self.threshold).astype(np.uint8)

    # -- storage ----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary a model file can carry under ``"aoa"`` (the standardised training matrix)."""
        return {
            "columns": list(self.columns),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "weights": self.weights.tolist(),
            "train": self.train.tolist(),
            "mean_distance": self.mean_distance,
            "threshold": self.threshold,
            "train_di": self.train_di.tolist(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AOAReference:
        try:
            return cls(
                tuple(d["columns"]),
                np.asarray(d["mean"], float),
                np.asarray(d["std"], float),
                np.asarray(d["weights"], float),
                np.asarray(d["train"], float),
                float(d["mean_distance"]),
                float(d["threshold"]),
                np.asarray(d["train_di"], float),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise AOAError(f"the model's AOA summary is damaged ({exc}); give --samples instead") from None


def _weight(column: str, importance: Mapping[str, float] | None) -> float:
    if importance is None:
        return 1.0
    name = column.split("=", 1)[0]
    return float(importance.get(name, 0.0))


def _classes_of(columns: Sequence[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for c in columns:
        if "=" in c:
            name, code = c.split("=", 1)
            out.setdefault(name, []).append(int(code))
    return out


def _encode(
    X: pd.DataFrame, covariates: Sequence[CovariateSpec], classes: Mapping[str, list[int]] | None
) -> tuple[list[str], np.ndarray]:
    """Continuous covariates as they are, categorical ones as 0/1 indicators per class (NaN stays NaN)."""
    names: list[str] = []
    cols: list[np.ndarray] = []
    for spec in covariates:
        v = pd.to_numeric(X[spec.name], errors="coerce").to_numpy(dtype=float)
        if spec.is_categorical:
            codes = (
                classes.get(spec.name, [])
                if classes is not None
                else sorted(int(c) for c in np.unique(v[np.isfinite(v)]))
            )
            for code in codes:
                names.append(f"{spec.name}={code}")
                cols.append(np.where(np.isnan(v), np.nan, (v == code).astype(float)))
        else:
            names.append(spec.name)
            cols.append(v)
    if not cols:
        raise AOAError("the model has no covariates; the AOA is undefined")
    return names, np.column_stack(cols)


def _site_folds(X: pd.DataFrame, n_folds: int, random_state: int) -> np.ndarray:
    """Random folds of sites (lon/lat rounded to :data:`SITE_ROUND_DEG`); rows without lon/lat are their own site."""
    if "lon" in X.columns and "lat" in X.columns:
        lon = pd.to_numeric(X["lon"], errors="coerce").to_numpy(float)
        lat = pd.to_numeric(X["lat"], errors="coerce").to_numpy(float)
        ok = np.isfinite(lon) & np.isfinite(lat)
        ilon = np.round(np.where(ok, lon, 0.0) / SITE_ROUND_DEG).astype(np.int64)
        ilat = np.round(np.where(ok, lat, 0.0) / SITE_ROUND_DEG).astype(np.int64)
        # rows without coordinates are sites of their own
        key = np.where(ok, ilon * 100_000_000 + ilat, -1 - np.arange(len(X)))
        _, site = np.unique(key, return_inverse=True)
    else:
        site = np.arange(len(X))
    n_sites = int(site.max()) + 1
    rng = np.random.default_rng(random_state)
    fold_of_site = rng.permutation(n_sites) % max(2, min(n_folds, n_sites))
    return fold_of_site[site]


def _cv_di(train: np.ndarray, folds: np.ndarray, random_state: int) -> tuple[np.ndarray, float]:
    """Each sample's distance to the nearest sample of another fold, over the mean pairwise distance."""
    n = train.shape[0]
    rng = np.random.default_rng(random_state)
    sub = train if n <= MAX_PAIR_SAMPLES else train[rng.choice(n, MAX_PAIR_SAMPLES, replace=False)]
    diff = sub[:, None, :] - sub[None, :, :]
    pd_ = np.sqrt((diff**2).sum(-1))
    m = sub.shape[0]
    dbar = float(pd_[np.triu_indices(m, 1)].mean())
    if not dbar > 0:
        raise AOAError("all training samples have identical covariates; the AOA is undefined")
    d = np.full(n, np.inf)
    for f in np.unique(folds):
        inf = folds == f
        if (~inf).any():
            dist, _ = cKDTree(train[~inf]).query(train[inf], k=1)
            d[inf] = dist
    d[~np.isfinite(d)] = 0.0
    return d / dbar, dbar


def model_importance(model: Any) -> dict[str, float] | None:
    """Variable importance by covariate name, when the model exposes one (``variable_importance_`` or a forest)."""
    imp = getattr(model, "variable_importance_", None)
    if isinstance(imp, Mapping):
        return {str(k): float(v) for k, v in imp.items()}
    forest = getattr(model, "forest_", None)
    names = getattr(model, "feature_names_", None)
    if forest is not None and names is not None and hasattr(forest, "feature_importances_"):
        out: dict[str, float] = {}
        for n, v in zip(names, forest.feature_importances_, strict=False):
            key = n.split("=", 1)[0]
            out[key] = out.get(key, 0.0) + float(v)
        return out
    return None


def reference_for(
    model: Any, metadata: Mapping[str, Any] | None, samples: pd.DataFrame | None
) -> tuple[AOAReference, str]:
    """The model's AOA reference and a word for where it came from (``model``, ``metadata`` or ``samples``)."""
    covs = tuple(model.covariates)
    imp = model_importance(model)
    train = getattr(model, "training_X_", None)
    if isinstance(train, pd.DataFrame):
        return AOAReference.fit(train, covs, importance=imp), "model"
    stored = (metadata or {}).get("model", {}).get("aoa") if metadata else None
    if isinstance(stored, Mapping):
        return AOAReference.from_dict(stored), "metadata"
    if samples is not None:
        return AOAReference.fit(samples, covs, importance=imp), "samples"
    raise AOAError(
        "--aoa needs the model's training data, and this model file carries none; give the training table "
        "with --samples FILE (CSV/Parquet with the model's covariate columns and lon/lat)"
    )
