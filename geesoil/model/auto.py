"""The ``auto`` strategy: pick, per region, the fine-tuning strategy or regional-only forest that wins nested CV.

Selection uses only the training data given to ``fit``: spatial-block k-fold inside it (``inner_folds``, default
3; random location folds when the region is too small for blocks). Every candidate - each fine-tuning strategy of
:mod:`geesoil.model.finetune` and the regional forests ``rf``/``qrf`` - is trained on the inner training folds and
scored by the MAE of its pooled out-of-fold predictions. To stay affordable on CPU the candidates are cheaper during
selection (``selection_members`` ensemble members, ``selection_trees`` trees); the winner is then refitted at full
size on all the data.

Optional stacking (``stack=True``, the default): the best transfer candidate and the best forest are also blended,
``w * transfer + (1 - w) * forest`` with ``w`` on a 0.1 grid chosen on the same out-of-fold predictions (``w`` = 0
or 1 is the single model, so the blend is only used when it beats both). A blend's intervals are the blended bounds,
conformally corrected (CQR) on the out-of-fold intervals.

Guarding against the winner's curse (:func:`select`): a forest is the default (``qrf``, or ``rf`` when clearly
better), and a transfer candidate or the blend replaces it only when it is better by more than ``min_gain_se``
(default 1) standard errors of the paired out-of-fold absolute-error difference. ``auto`` is meant never to lose
clearly to a regional-only forest.

The choice, every candidate's inner-CV MAE and the reasons candidates were skipped go into the model metadata.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from geesoil import cv
from geesoil.baselines import CALIBRATED_ALPHAS, QuantileForestSoil, RandomForestSoil, as_specs
from geesoil.covariates.spec import CovariateSpec
from geesoil.errors import GeesoilError, ModelError
from geesoil.model.features import spec_from_dict, spec_to_dict
from geesoil.model.io import register

log = logging.getLogger(__name__)

#: regional forests in order of preference (see :func:`select`)
FORESTS = {"qrf": QuantileForestSoil, "rf": RandomForestSoil}
BLEND_WEIGHTS = tuple(np.round(np.linspace(0, 1, 11), 2))


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


def _blend_corrections(
    y: np.ndarray, bounds: dict[float, tuple[np.ndarray, np.ndarray]]
) -> dict[float, float]:
    """CQR corrections of blended out-of-fold intervals, per interval level."""
    out = {}
    for a, (lo, hi) in bounds.items():
        ok = np.isfinite(lo) & np.isfinite(hi) & np.isfinite(y)
        score = np.sort(np.maximum(lo[ok] - y[ok], y[ok] - hi[ok]))
        n = score.size
        k = math.ceil((n + 1) * (1 - a))
        out[a] = float(score[min(max(k, 1), n) - 1]) if n else 0.0
    return out


def _gain_se(e_base: np.ndarray, e_new: np.ndarray) -> float:
    """Mean paired improvement of absolute errors in standard errors (capped so metadata stays strict JSON)."""
    d = e_base - e_new  # positive where the new model is closer
    d = d[np.isfinite(d)]
    se = float(d.std(ddof=1) / math.sqrt(d.size)) if d.size > 1 else math.inf
    if se == 0:
        return 1e6 if d.mean() > 0 else 0.0
    return float(np.clip(d.mean() / se, -1e6, 1e6))


def select(
    y: np.ndarray, oof: dict[str, np.ndarray], *, stack: bool = True, min_gain_se: float = 1.0
) -> dict[str, Any]:
    """Pick the model (or transfer + forest blend) from out-of-fold predictions ``oof`` (name -> predictions).

    A one-standard-error rule against the winner's curse: with many similar candidates the lowest inner-CV score
    is partly luck, and losing to a plain forest is the failure ``auto`` must avoid. The default is ``qrf``
    (SoilGrids' method; its median prediction suits MAE), replaced by ``rf`` only when ``rf`` is better by more
    than ``min_gain_se`` standard errors of the paired absolute-error difference; a transfer candidate or the
    blend of the best transfer candidate with that forest then replaces the forest only under the same rule.
    Without forests among the candidates the lowest MAE wins.
    """
    err = {n: np.abs(np.asarray(p, float) - y) for n, p in oof.items()}
    scores = {n: float(np.nanmean(e)) for n, e in err.items()}
    forests = [n for n in FORESTS if n in scores]
    transfer = [n for n in scores if n not in FORESTS]
    gain_se: dict[str, float] = {}
    blend: dict[str, Any] | None = None
    if not forests:
        best = min(scores, key=scores.__getitem__)
        return {"members": [best], "weights": [1.0], "scores_mae": scores, "gain_se": gain_se, "blend": blend}
    forest = forests[0]
    for other in forests[1:]:
        gain_se[other] = _gain_se(err[forest], err[other])
        if gain_se[other] > min_gain_se and scores[other] < scores[forest]:
            forest = other
    options: dict[str, tuple[list[str], list[float], np.ndarray]] = {
        n: ([n], [1.0], err[n]) for n in transfer
    }
    if stack and transfer:
        bt = min(transfer, key=scores.__getitem__)
        mixes = {float(w): np.abs(w * oof[bt] + (1 - w) * oof[forest] - y) for w in BLEND_WEIGHTS}
        maes = {w: float(np.nanmean(e)) for w, e in mixes.items()}
        w = min(maes, key=lambda k: (maes[k], -abs(k - 0.5)))  # ties: prefer a single model
        blend = {"members": [bt, forest], "weight": w, "mae": maes[w]}
        if 0 < w < 1:
            options["blend"] = ([bt, forest], [w, 1 - w], mixes[w])
    pick, pick_mae = ([forest], [1.0]), scores[forest]
    for name, (members, weights, e) in options.items():
        gain_se[name] = _gain_se(err[forest], e)
        mae = float(np.nanmean(e))
        if gain_se[name] > min_gain_se and mae < pick_mae:
            pick, pick_mae = (members, weights), mae
    return {"members": pick[0], "weights": pick[1], "scores_mae": scores, "gain_se": gain_se, "blend": blend}


@register("auto")
class AutoModel:
    """Chooses among transfer strategies and regional forests by nested spatial CV, then refits the winner.

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
        strategy_params: dict[str, dict[str, Any]] | None = None,
        random_state: int = 0,
        n_jobs: int | None = None,
    ) -> None:
        self.pretrained = pretrained
        self.regional_covariates = as_specs(regional_covariates)
        if covariates is None:
            base = tuple(pretrained.covariates) if pretrained is not None else ()
            names = {c.name for c in base}
            covariates = base + tuple(c for c in self.regional_covariates if c.name not in names)
        self._covariates = as_specs(covariates)
        self.candidates = tuple(candidates) if candidates is not None else None
        self.inner_folds = inner_folds
        self.block_km = block_km
        self.selection_members = selection_members
        self.selection_trees = selection_trees
        self.n_estimators = n_estimators
        self.stack = stack
        self.min_gain_se = min_gain_se
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
        if name in FORESTS:
            params.setdefault("n_estimators", self.selection_trees if selection else self.n_estimators)
            params.setdefault("random_state", self.random_state)
            params.setdefault("n_jobs", self.n_jobs)
            return FORESTS[name](self._covariates, **params)
        from geesoil.model.finetune import make_strategy

        pre = fewer_members(self.pretrained, self.selection_members) if selection else self.pretrained
        return make_strategy(
            name, pre, regional_covariates=self.regional_covariates, random_state=self.random_state, **params
        )

    def _inner_folds(self, X: pd.DataFrame) -> tuple[list[cv.Fold], str]:
        lon, lat = X["lon"].to_numpy(float), X["lat"].to_numpy(float)
        try:
            return cv.spatial_kfold(lon, lat, self.inner_folds, self.block_km, self.random_state), "spatial"
        except cv.FoldError as exc:
            log.info("auto: %s; using random location folds for selection", exc)
            return cv.random_kfold(lon, lat, self.inner_folds, self.random_state), "random"

    # --- fitting --------------------------------------------------------------------------------------------
    def fit(self, X: pd.DataFrame, y: np.ndarray) -> AutoModel:
        y = np.asarray(y, dtype=float).ravel()
        if len(X) != y.size:
            raise ValueError(f"X has {len(X)} rows but y has {y.size}")
        names = self.candidate_names()
        folds, fold_kind = self._inner_folds(X)
        oof: dict[str, np.ndarray] = {}
        oof_bounds: dict[str, dict[float, tuple[np.ndarray, np.ndarray]]] = {}
        skipped: dict[str, str] = {}
        # out-of-fold intervals are only needed to calibrate a blend
        blendable = self.stack and any(n in FORESTS for n in names) and any(n not in FORESTS for n in names)
        alphas = CALIBRATED_ALPHAS if blendable else ()
        for name in names:
            pred = np.full(y.size, np.nan)
            bounds = {a: (np.full(y.size, np.nan), np.full(y.size, np.nan)) for a in alphas}
            try:
                for f in folds:
                    m = self._make(name, selection=True).fit(X.iloc[f.train], y[f.train])
                    Xte = X.iloc[f.test]
                    pred[f.test] = m.predict(Xte)
                    for a in alphas:
                        lo, hi = m.predict_interval(Xte, alpha=a)
                        bounds[a][0][f.test], bounds[a][1][f.test] = lo, hi
            except GeesoilError as exc:  # e.g. too few samples in an inner fold for a strategy
                skipped[name] = str(exc)
                log.info("auto: candidate %s skipped: %s", name, exc)
                continue
            oof[name], oof_bounds[name] = pred, bounds
        if not oof:
            raise ModelError(f"auto: every candidate failed during selection: {skipped}")
        sel = select(y, oof, stack=self.stack, min_gain_se=self.min_gain_se)
        chosen, weights = sel["members"], sel["weights"]
        self.corrections_: dict[float, float] = {}
        if len(chosen) == 2:
            (bt, bf), w = chosen, weights[0]
            blended = {
                a: (
                    w * oof_bounds[bt][a][0] + (1 - w) * oof_bounds[bf][a][0],
                    w * oof_bounds[bt][a][1] + (1 - w) * oof_bounds[bf][a][1],
                )
                for a in CALIBRATED_ALPHAS
            }
            self.corrections_ = _blend_corrections(y, blended)
        scores = sel["scores_mae"]
        self.choice_ = "+".join(chosen)
        self.weights_ = weights
        self.component_names_ = chosen
        self.selection_ = {
            "choice": self.choice_,
            "weights": weights,
            "scores_mae": scores,
            "gain_se": sel["gain_se"],
            "min_gain_se": self.min_gain_se,
            "skipped": skipped,
            "blend": sel["blend"],
            "inner_folds": len(folds),
            "fold_kind": fold_kind,
            "block_km": self.block_km,
            "n_train": int(y.size),
        }
        log.info(
            "auto: chose %s (inner-CV MAE %s)", self.choice_, {k: round(v, 3) for k, v in scores.items()}
        )
        self.components_ = [self._make(n, selection=False).fit(X, y) for n in chosen]
        return self

    # --- prediction -----------------------------------------------------------------------------------------
    def _fitted(self) -> None:
        if not hasattr(self, "components_"):
            raise ModelError("auto model is not fitted; call fit() first")

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        self._fitted()
        return sum(w * m.predict(X) for w, m in zip(self.weights_, self.components_, strict=True))

    def predict_interval(self, X: pd.DataFrame, alpha: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        self._fitted()
        if len(self.components_) == 1:
            return self.components_[0].predict_interval(X, alpha=alpha)
        lo = hi = 0.0
        for w, m in zip(self.weights_, self.components_, strict=True):
            a, b = m.predict_interval(X, alpha=alpha)
            lo, hi = lo + w * a, hi + w * b
        alphas = sorted(self.corrections_)
        corr = float(np.interp(alpha, alphas, [self.corrections_[a] for a in alphas])) if alphas else 0.0
        mid = (lo + hi) / 2
        return np.maximum(np.minimum(lo - corr, mid), 0.0), np.maximum(hi + corr, mid)

    def predict_std(self, X: pd.DataFrame) -> np.ndarray:
        """Half the width of the 68% interval (a normal-equivalent standard deviation)."""
        lo, hi = self.predict_interval(X, alpha=0.3173)
        return (hi - lo) / 2

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
                "random_state": self.random_state,
            },
            "covariates": [spec_to_dict(c) for c in self._covariates],
            "regional_covariates": [spec_to_dict(c) for c in self.regional_covariates],
            "selection": self.selection_,
            "weights": self.weights_,
            "corrections": {"alphas": list(self.corrections_), "values": list(self.corrections_.values())},
            "components": [],
        }
        blobs: dict[str, bytes] = {}
        for i, (name, m) in enumerate(zip(self.component_names_, self.components_, strict=True)):
            cmeta, cblobs = m.to_state()
            meta["components"].append({"name": name, "kind": m.kind, "model": cmeta})
            blobs.update({f"c{i}/{k}": v for k, v in cblobs.items()})
        return meta, blobs

    @classmethod
    def from_state(cls, meta: dict[str, Any], blobs: dict[str, bytes]) -> AutoModel:
        import geesoil.model.registry  # noqa: F401  (registers every component kind)
        from geesoil.model.io import _REGISTRY

        model = cls(
            None,
            covariates=[spec_from_dict(d) for d in meta["covariates"]],
            regional_covariates=[spec_from_dict(d) for d in meta["regional_covariates"]],
            **meta["params"],
        )
        comps = []
        for i, c in enumerate(meta["components"]):
            if c["kind"] not in _REGISTRY:
                raise ModelError(f"auto model component {c['name']!r} has unknown kind {c['kind']!r}")
            prefix = f"c{i}/"
            sub = {k[len(prefix) :]: v for k, v in blobs.items() if k.startswith(prefix)}
            comps.append(_REGISTRY[c["kind"]](c["model"], sub))
        model.components_ = comps
        model.component_names_ = [c["name"] for c in meta["components"]]
        model.weights_ = [float(w) for w in meta["weights"]]
        model.selection_ = meta["selection"]
        model.choice_ = meta["selection"]["choice"]
        cor = meta["corrections"]
        model.corrections_ = {float(a): float(v) for a, v in zip(cor["alphas"], cor["values"], strict=True)}
        return model
