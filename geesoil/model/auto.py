"""The ``auto`` strategy: a shrunk convex stack of transfer strategies and regional forests, chosen by nested CV.

Selection uses only the training data given to ``fit``: spatial-block k-fold inside it (``inner_folds``, default
3, more - up to ``max_inner_folds`` - when the networks would otherwise train on fewer than their minimum of
samples, e.g. 25 samples need 5 folds; random location folds when the region is too small for blocks). Every
candidate - each transfer strategy of :mod:`geesoil.model.finetune` (``stacked-qrf`` included) and the regional
forests ``rf``/``qrf`` - is trained on the inner training folds and predicts the held-out fold. To stay affordable
on CPU the candidates are cheaper during selection (``selection_members`` ensemble members, ``selection_trees``
trees); the chosen ones are then refitted at full size on all the data.

Point predictions are MAE-oriented (``point="median"``): a network contributes its median (the log-space mean
back-transformed without smearing), QRF its conditional median, RF its mean (it has no median).

Combination (:func:`select`): the convex weights minimising the out-of-fold absolute error (:func:`convex_stack`,
a linear program) are shrunk halfway (``shrink``) towards the default forest, ``qrf`` (or ``rf`` when better by
more than ``min_gain_se`` standard errors). Stacking weights fitted on a few dozen out-of-fold predictions are
partly luck, and picking a single winner on them was worse: on the real-data transfer experiment the previous
pick-one rule chose a fine-tuned network in Edgeroi at n = 100-200 that the outer folds did not confirm (+11 to
+31 % MAE on those draws). ``stack=False`` keeps that pick-one rule (a transfer model replaces the forest only
when better by ``min_gain_se`` standard errors).

Intervals (:func:`calibrate_intervals`, :func:`log_interval`) are normalised conformal intervals around
``auto``'s own point prediction, in log1p space: the local scale is the weighted log-space half-width of the chosen
models' 68 % intervals, the spread factor the conformal quantile of the stack's out-of-fold residuals over that
scale. Averaging the members' bounds instead over-covered wherever one member's intervals were very wide (the
fine-tuned networks at n = 25: PICP90 0.96-0.99 on the real-data experiment, widths up to 40x the forests').

The weights, every candidate's inner-CV MAE and the reasons candidates were skipped go into the model metadata.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from geesoil import cv
from geesoil.baselines import QuantileForestSoil, RandomForestSoil, as_specs, merge_covariates
from geesoil.covariates.spec import CovariateSpec
from geesoil.errors import GeesoilError, ModelError
from geesoil.model.base import ONE_SIGMA_ALPHA, mean_prediction, median_prediction, predict_layers
from geesoil.model.conformal import Calibration, fit_calibration
from geesoil.model.features import spec_from_dict, spec_to_dict
from geesoil.model.io import nest_blobs, rebuild, register, unnest_blobs

log = logging.getLogger(__name__)

#: regional forests in order of preference (see :func:`select`)
FORESTS = {"qrf": QuantileForestSoil, "rf": RandomForestSoil}


def transfer_strategies(pretrained: Any | None, regional_covariates: Sequence[Any] = ()) -> list[str]:
    """The fine-tuning strategy names usable here (none without a pretrained model)."""
    if pretrained is None:
        return []
    try:
        from geesoil.model.finetune import STRATEGIES
    except ModuleNotFoundError as exc:  # fine-tuning not available in this build
        if exc.name != "geesoil.model.finetune":
            raise
        return []
    # "scratch" ignores the pretrained weights: a regional baseline like the forests, but far costlier on CPU
    names = [n for n in STRATEGIES if n not in ("auto", "scratch")]
    if not regional_covariates:  # a regional branch needs region-only covariates
        names = [n for n in names if n != "regional-branch"]
    return names


def fewer_members(pretrained: Any, n: int) -> Any:
    """A copy of a fitted ensemble keeping its first ``n`` members (cheap candidates during selection)."""
    nets = getattr(pretrained, "nets_", None)
    if nets is None or len(nets) <= n:
        return pretrained
    small = copy.copy(pretrained)
    small.nets_ = [copy.deepcopy(net) for net in nets[:n]]
    for attr in ("members_", "source_features_"):
        if isinstance(getattr(pretrained, attr, None), list):
            setattr(small, attr, list(getattr(pretrained, attr))[:n])
    if hasattr(small, "n_members"):
        small.n_members = n
    if hasattr(small, "progress"):
        small.progress = False
    return small


#: the interval level whose log-space half-width is the local scale of ``auto``'s intervals
SCALE_ALPHA = 0.32


def log_half_width(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Half the width of an interval in log1p space (SOC g/kg bounds)."""
    return (np.log1p(np.maximum(hi, 0.0)) - np.log1p(np.maximum(lo, 0.0))) / 2


def calibrate_intervals(y: np.ndarray, point: np.ndarray, scale: np.ndarray) -> Calibration:
    """Normalised conformal calibration of log1p residuals ``log1p(y) - log1p(point)`` over a local ``scale``.

    ``point`` and ``scale`` are out-of-fold: predictions and log-space half-widths of models that did not see
    the sample. Rows with a missing value are left out.
    """
    y, point, scale = (np.asarray(v, float) for v in (y, point, scale))
    ok = np.isfinite(y) & np.isfinite(point) & np.isfinite(scale)
    if not ok.any():
        raise ModelError("auto: no out-of-fold predictions to calibrate intervals on")
    resid = np.log1p(y[ok]) - np.log1p(np.maximum(point[ok], 0.0))
    return fit_calibration(resid, scale[ok])


def log_interval(
    point: np.ndarray, scale: np.ndarray, calibration: Calibration, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """The central ``1 - alpha`` interval (g/kg) around ``point``: ``expm1(log1p(point) ± q · scale')``."""
    lp = np.log1p(np.maximum(point, 0.0))
    lo, hi = calibration.interval(lp, np.asarray(scale, float), alpha)
    return np.maximum(np.expm1(lo), 0.0), np.expm1(hi)


def _gain_se(e_base: np.ndarray, e_new: np.ndarray) -> float:
    """Mean paired improvement of absolute errors in standard errors (capped so metadata stays strict JSON)."""
    d = e_base - e_new  # positive where the new model is closer
    d = d[np.isfinite(d)]
    se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else math.inf
    if se == 0:
        return 1e6 if d.mean() > 0 else 0.0
    return float(np.clip(d.mean() / se, -1e6, 1e6))


def convex_stack(y: np.ndarray, P: np.ndarray) -> np.ndarray:
    """Convex weights ``w`` (``w >= 0``, ``sum(w) = 1``) minimising ``sum |y - P @ w|`` (an exact linear program).

    Least absolute deviations rather than least squares: ``auto`` is judged by MAE, and the L1 fit is robust to
    the few very high SOC values of a skewed sample.
    """
    from scipy import sparse
    from scipy.optimize import linprog

    P = np.asarray(P, float)
    y = np.asarray(y, float)
    n, k = P.shape
    if k == 1:
        return np.ones(1)
    # variables: w (k), positive and negative residual parts (n each); P w + e+ - e- = y, sum w = 1
    c = np.r_[np.zeros(k), np.ones(2 * n)]
    eye = sparse.identity(n, format="csr")
    A = sparse.vstack(
        [
            sparse.hstack([sparse.csr_matrix(P), eye, -eye]),
            sparse.hstack([np.ones((1, k)), sparse.csr_matrix((1, 2 * n))]),
        ],
        format="csr",
    )
    res = linprog(c, A_eq=A, b_eq=np.r_[y, 1.0], bounds=(0, None), method="highs")
    if not res.success:  # numerically degenerate input: fall back to the best single column
        w = np.zeros(k)
        w[int(np.argmin(np.abs(P - y[:, None]).mean(axis=0)))] = 1.0
        return w
    w = np.clip(res.x[:k], 0, None)
    return w / w.sum()


def select(
    y: np.ndarray,
    oof: dict[str, np.ndarray],
    *,
    stack: bool = True,
    min_gain_se: float = 1.0,
    shrink: float = 0.5,
    min_weight: float = 0.05,
) -> dict[str, Any]:
    """Weights of the final model from out-of-fold predictions ``oof`` (name -> predictions).

    The default model is a regional forest: ``qrf`` (SoilGrids' method; its median prediction suits MAE), replaced
    by ``rf`` only when ``rf`` is better by more than ``min_gain_se`` standard errors of the paired absolute-error
    difference.

    ``stack=True`` (the default): the convex combination of all candidates with the lowest out-of-fold MAE
    (:func:`convex_stack`) is shrunk towards that forest, ``weights = (1 - shrink) * stack + shrink * forest``.
    Stacking weights fitted on a few dozen out-of-fold predictions are partly luck (the winner's curse), and the
    failure ``auto`` must avoid is losing to a plain forest; an even mix of the stack and the forest keeps at
    least half of the forest while taking half of whatever the candidates add. Weights below ``min_weight`` are
    dropped (fewer models to refit) and the rest renormalised.

    ``stack=False``: pick one model; a transfer candidate replaces the forest only when it is better by more than
    ``min_gain_se`` standard errors. Without forests among the candidates the lowest MAE wins.
    """
    y = np.asarray(y, float)
    err = {n: np.abs(np.asarray(p, float) - y) for n, p in oof.items()}
    scores = {n: float(np.nanmean(e)) for n, e in err.items()}
    forests = [n for n in FORESTS if n in scores]
    transfer = [n for n in scores if n not in FORESTS]
    gain_se: dict[str, float] = {}
    blend: dict[str, Any] | None = None
    forest = forests[0] if forests else None
    for other in forests[1:]:
        gain_se[other] = _gain_se(err[forests[0]], err[other])
        if gain_se[other] > min_gain_se and scores[other] < scores[forests[0]]:
            forest = other

    def result(weights: dict[str, float]) -> dict[str, Any]:
        kept = {n: w for n, w in weights.items() if w >= min_weight} or {max(weights, key=weights.get): 1.0}
        total = sum(kept.values())
        order = sorted(kept, key=lambda n: (-kept[n], n))
        return {
            "members": order,
            "weights": [round(kept[n] / total, 6) for n in order],
            "scores_mae": scores,
            "gain_se": gain_se,
            "blend": blend,
            "default": forest,
        }

    if forest is None:
        return result({min(scores, key=scores.__getitem__): 1.0})
    if stack and len(scores) > 1:
        names = list(scores)
        ok = np.all([np.isfinite(oof[n]) for n in names], axis=0) & np.isfinite(y)
        P = np.column_stack([np.asarray(oof[n], float)[ok] for n in names])
        w = convex_stack(y[ok], P)
        order = sorted((i for i in range(len(names)) if w[i] > 1e-6), key=lambda i: (-w[i], names[i]))
        blend = {
            "members": [names[i] for i in order],
            "weights": [round(float(w[i]), 6) for i in order],
            "mae": float(np.mean(np.abs(P @ w - y[ok]))),
        }
        weights = {n: (1 - shrink) * float(wi) for n, wi in zip(names, w, strict=True)}
        weights[forest] += shrink
        for n in transfer:
            gain_se[n] = _gain_se(err[forest], err[n])
        return result(weights)
    pick, pick_mae = forest, scores[forest]
    for name in transfer:
        gain_se[name] = _gain_se(err[forest], err[name])
        if gain_se[name] > min_gain_se and scores[name] < pick_mae:
            pick, pick_mae = name, scores[name]
    return result({pick: 1.0})


def point_prediction(model: Any, X: pd.DataFrame, point: str = "median") -> np.ndarray:
    """A model's point prediction: its median where it has one (``point="median"``, MAE-optimal), else ``predict``.

    The networks' ``predict`` is the smeared mean of a log-normal-like predictive distribution, above its median
    on skewed SOC; QRF's ``predict`` is already a median and RF's a mean (it has no median).
    """
    if point == "median":
        return median_prediction(model, X)
    return np.asarray(model.predict(X), float)


@register("auto")
class AutoModel:
    """Weights transfer strategies and regional forests by nested spatial CV, then refits the chosen ones.

    ``pretrained`` is the global :class:`~geesoil.model.network.SoilNet` (``None``: forests only).
    ``covariates`` are the forests' covariates (default: the pretrained model's plus ``regional_covariates``);
    ``regional_covariates`` are region-only covariates, given to the ``regional-branch`` strategy and the forests.
    """

    kind = "auto"

    def __init__(
        self,
        pretrained: Any | None = None,
        *,
        covariates: Sequence[CovariateSpec | str] | None = None,
        regional_covariates: Sequence[CovariateSpec | str] = (),
        candidates: Sequence[str] | None = None,
        inner_folds: int = 3,
        block_km: float | None = None,
        selection_members: int = 2,
        selection_trees: int = 200,
        n_estimators: int = 500,
        stack: bool = True,
        min_gain_se: float = 1.0,
        shrink: float = 0.5,
        point: str = "median",
        max_inner_folds: int = 5,
        strategy_params: dict[str, dict[str, Any]] | None = None,
        random_state: int = 0,
        n_jobs: int | None = None,
    ) -> None:
        self.pretrained = pretrained
        self.regional_covariates = as_specs(regional_covariates)
        if covariates is None:
            base = tuple(pretrained.covariates) if pretrained is not None else ()
            covariates = merge_covariates(base, self.regional_covariates)
        self._covariates = as_specs(covariates)
        self.candidates = tuple(candidates) if candidates is not None else None
        self.inner_folds = inner_folds
        self.block_km = block_km
        self.selection_members = selection_members
        self.selection_trees = selection_trees
        self.n_estimators = n_estimators
        self.stack = stack
        self.min_gain_se = min_gain_se
        self.shrink = shrink
        if point not in ("median", "mean"):
            raise ModelError(f"auto: point={point!r} is not 'median' or 'mean'")
        self.point = point
        self.max_inner_folds = max_inner_folds
        self.strategy_params = dict(strategy_params or {})
        self.random_state = random_state
        self.n_jobs = n_jobs

    @property
    def covariates(self) -> tuple[CovariateSpec, ...]:
        if hasattr(self, "components_"):
            seen: dict[str, CovariateSpec] = {}
            for m in self.components_:
                for c in m.covariates:
                    seen.setdefault(c.name, c)
            return tuple(seen.values())
        return self._covariates

    @property
    def context(self) -> Any | None:
        """The pixel window of the (windowed) network among the components, or of the pretrained model."""
        models = getattr(self, "components_", None) or [self.pretrained]
        return next((c for m in models if (c := getattr(m, "context", None)) is not None), None)

    # --- candidates -----------------------------------------------------------------------------------------
    def candidate_names(self) -> list[str]:
        transfer = transfer_strategies(self.pretrained, self.regional_covariates)
        names = transfer + list(FORESTS)
        if self.candidates is None:
            return names
        unknown = [c for c in self.candidates if c not in names]
        if unknown:
            raise ModelError(
                f"auto: unknown or unusable candidates {', '.join(unknown)}; choose from {', '.join(names)}"
            )
        return list(self.candidates)

    def _make(self, name: str, *, selection: bool) -> Any:
        params = dict(self.strategy_params.get(name, {}))
        if name in FORESTS or name == "stacked-qrf":
            params.setdefault("n_estimators", self.selection_trees if selection else self.n_estimators)
            params.setdefault("n_jobs", self.n_jobs)
        if name in FORESTS:
            params.setdefault("random_state", self.random_state)
            return FORESTS[name](self._covariates, **params)
        from geesoil.model.finetune import make_strategy

        pre = fewer_members(self.pretrained, self.selection_members) if selection else self.pretrained
        return make_strategy(
            name, pre, regional_covariates=self.regional_covariates, random_state=self.random_state, **params
        )

    def _min_train(self, names: Sequence[str]) -> int:
        """The fewest training samples every candidate accepts (the networks need ``MIN_SAMPLES``)."""
        if all(n in FORESTS for n in names):
            return 2
        from geesoil.model.network import MIN_SAMPLES

        return MIN_SAMPLES

    def _inner_folds(self, X: pd.DataFrame, min_train: int = 2) -> tuple[list[cv.Fold], str]:
        """Spatial-block folds (random location folds when too few blocks), ``inner_folds`` or more.

        With few samples, more folds, up to ``max_inner_folds``, so that every inner training set keeps
        ``min_train`` samples: with 25 samples and 3 folds the networks would see 16 and be skipped.
        """
        lon, lat = X["lon"].to_numpy(float), X["lat"].to_numpy(float)
        k_max = max(self.inner_folds, min(self.max_inner_folds, len(X)))
        first: tuple[list[cv.Fold], str] | None = None
        for kind in ("spatial", "random"):
            for k in range(self.inner_folds, k_max + 1):
                try:
                    if kind == "spatial":
                        folds = cv.spatial_kfold(lon, lat, k, self.block_km, self.random_state)
                    else:
                        folds = cv.random_kfold(lon, lat, k, self.random_state)
                except cv.FoldError as exc:
                    log.info("auto: %s", exc)
                    break
                first = first or (folds, kind)
                if min(len(f.train) for f in folds) >= min_train:
                    return folds, kind
        if first is None:
            raise ModelError(
                f"auto: {len(X)} samples cannot be split into {self.inner_folds} selection folds"
            )
        return first

    # --- fitting --------------------------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y: np.ndarray) -> AutoModel:
        y = np.asarray(y, dtype=float).ravel()
        if len(X) != y.size:
            raise ValueError(f"X has {len(X)} rows but y has {y.size}")
        names = self.candidate_names()
        folds, fold_kind = self._inner_folds(X, self._min_train(names))
        oof: dict[str, np.ndarray] = {}
        oof_scale: dict[str, np.ndarray] = {}
        skipped: dict[str, str] = {}
        for name in names:
            pred = np.full(y.size, np.nan)
            scale = np.full(y.size, np.nan)
            try:
                for f in folds:
                    m = self._make(name, selection=True).fit(X.iloc[f.train], y[f.train])
                    Xte = X.iloc[f.test]
                    pred[f.test] = point_prediction(m, Xte, self.point)
                    scale[f.test] = log_half_width(*m.predict_interval(Xte, alpha=SCALE_ALPHA))
            except GeesoilError as exc:  # e.g. too few samples in an inner fold for a strategy
                skipped[name] = str(exc)
                log.info("auto: candidate %s skipped: %s", name, exc)
                continue
            oof[name], oof_scale[name] = pred, scale
        if not oof:
            raise ModelError(f"auto: every candidate failed during selection: {skipped}")
        sel = select(y, oof, stack=self.stack, min_gain_se=self.min_gain_se, shrink=self.shrink)
        chosen, weights = sel["members"], sel["weights"]
        oof_point = sum(w * oof[n] for n, w in zip(chosen, weights, strict=True))
        self.calibration_ = calibrate_intervals(
            y, oof_point, sum(w * oof_scale[n] for n, w in zip(chosen, weights, strict=True))
        )
        scores = sel["scores_mae"]
        self.choice_ = "+".join(chosen)
        self.weights_ = weights
        self.component_names_ = chosen
        self.selection_ = {
            "choice": self.choice_,
            "weights": weights,
            "scores_mae": scores,
            "oof_mae": float(np.nanmean(np.abs(oof_point - y))),
            "default": sel["default"],
            "gain_se": sel["gain_se"],
            "min_gain_se": self.min_gain_se,
            "shrink": self.shrink,
            "point": self.point,
            "skipped": skipped,
            "blend": sel["blend"],
            "intervals": {
                **self.calibration_.to_dict(),
                "q90": round(self.calibration_.quantile(0.1), 6),
                "scale_alpha": SCALE_ALPHA,
            },
            "inner_folds": len(folds),
            "fold_kind": fold_kind,
            "block_km": self.block_km,
            "n_train": int(y.size),
        }
        log.info(
            "auto: chose %s %s (inner-CV MAE %s)",
            self.choice_,
            weights,
            {k: round(v, 3) for k, v in scores.items()},
            extra={"auto_selection": self.selection_},
        )
        self.components_ = [self._make(n, selection=False).fit(X, y) for n in chosen]
        return self

    # --- prediction -----------------------------------------------------------------------------------------
    def _fitted(self) -> None:
        if not hasattr(self, "components_"):
            raise ModelError("auto model is not fitted; call fit() first")

    def _weighted(self, per_model: Callable[[Any], np.ndarray]) -> np.ndarray:
        """``sum(weight * per_model(component))`` over the fitted components."""
        self._fitted()
        return sum(w * per_model(m) for w, m in zip(self.weights_, self.components_, strict=True))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The weighted point predictions of the components: medians where they have one (``point="median"``)."""
        return self._weighted(lambda m: point_prediction(m, X, self.point))

    def predict_median(self, X: pd.DataFrame) -> np.ndarray:
        """The weighted medians of the components (RF, which has none, contributes its mean)."""
        return self._weighted(lambda m: median_prediction(m, X))

    def predict_mean(self, X: pd.DataFrame) -> np.ndarray:
        """The weighted means of the components: the mean SOC, for stocks and area totals."""
        return self._weighted(lambda m: mean_prediction(m, X))

    def predict_interval(self, X: pd.DataFrame, alpha: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        """Conformal central ``1 - alpha`` interval (g/kg) around the point prediction (:func:`log_interval`)."""
        scale = self._weighted(lambda m: log_half_width(*m.predict_interval(X, alpha=SCALE_ALPHA)))
        return log_interval(self.predict(X), scale, self.calibration_, alpha)

    def predict_std(self, X: pd.DataFrame) -> np.ndarray:
        """Half the width of the 68% interval (a normal-equivalent standard deviation)."""
        lo, hi = self.predict_interval(X, alpha=ONE_SIGMA_ALPHA)
        return (hi - lo) / 2

    def predict_layers(
        self, X: pd.DataFrame, alpha: float = 0.1, *, median: bool = False, std: bool = False
    ) -> dict[str, np.ndarray]:
        """:func:`geesoil.model.base.predict_layers` from one pass of each component."""
        self._fitted()
        parts = [
            (w, predict_layers(m, X, SCALE_ALPHA, median=True))
            for w, m in zip(self.weights_, self.components_, strict=True)
        ]

        def weighted(key: str) -> np.ndarray:
            return sum(w * p.get(key, p["point"]) for w, p in parts)

        point = weighted("median" if self.point == "median" else "point")
        scale = sum(w * log_half_width(p["lo"], p["hi"]) for w, p in parts)
        lo, hi = log_interval(point, scale, self.calibration_, alpha)
        out = {"point": point, "mean": weighted("mean"), "lo": lo, "hi": hi}
        if median:
            out["median"] = weighted("median")
        if std:
            lo, hi = log_interval(point, scale, self.calibration_, ONE_SIGMA_ALPHA)
            out["std"] = (hi - lo) / 2
        return out

    # --- serialisation --------------------------------------------------------------------------------------
    def to_state(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        self._fitted()
        meta: dict[str, Any] = {
            "params": {
                "inner_folds": self.inner_folds,
                "block_km": self.block_km,
                "selection_members": self.selection_members,
                "selection_trees": self.selection_trees,
                "n_estimators": self.n_estimators,
                "stack": self.stack,
                "min_gain_se": self.min_gain_se,
                "shrink": self.shrink,
                "point": self.point,
                "max_inner_folds": self.max_inner_folds,
                "random_state": self.random_state,
            },
            "covariates": [spec_to_dict(c) for c in self._covariates],
            "regional_covariates": [spec_to_dict(c) for c in self.regional_covariates],
            "selection": self.selection_,
            "weights": self.weights_,
            "calibration": {"beta": self.calibration_.beta, "scores": self.calibration_.scores.tolist()},
            "components": [],
        }
        blobs: dict[str, bytes] = {}
        for i, (name, m) in enumerate(zip(self.component_names_, self.components_, strict=True)):
            cmeta, cblobs = m.to_state()
            meta["components"].append({"name": name, "kind": m.kind, "model": cmeta})
            blobs |= nest_blobs(f"c{i}", cblobs)
        return meta, blobs

    @classmethod
    def from_state(cls, meta: dict[str, Any], blobs: dict[str, bytes]) -> AutoModel:
        # files written before ``point`` existed combined the components' mean predictions
        params = {"point": "mean", **meta["params"]}
        model = cls(
            None,
            covariates=[spec_from_dict(d) for d in meta["covariates"]],
            regional_covariates=[spec_from_dict(d) for d in meta["regional_covariates"]],
            **params,
        )
        model.components_ = [
            rebuild(
                c["kind"], c["model"], unnest_blobs(f"c{i}", blobs), f"auto model component {c['name']!r}"
            )
            for i, c in enumerate(meta["components"])
        ]
        model.component_names_ = [c["name"] for c in meta["components"]]
        model.weights_ = [float(w) for w in meta["weights"]]
        model.selection_ = meta["selection"]
        model.choice_ = meta["selection"]["choice"]
        if "calibration" not in meta:
            raise ModelError(
                "this auto model was saved by an older geesoil whose intervals are no longer supported; "
                "re-run `geesoil finetune` to refit it"
            )
        cal = meta["calibration"]
        model.calibration_ = Calibration(np.asarray(cal["scores"], float), float(cal["beta"]))
        return model
