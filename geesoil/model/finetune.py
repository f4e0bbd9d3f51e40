"""Transfer strategies: adapt a pretrained :class:`SoilNet` to a region's samples; each is a registered SoilModel.

Every strategy keeps the pretrained covariate normalisation and target scaling (so the pretrained weights keep
their meaning), fine-tunes each ensemble member from its pretrained counterpart, validates member *m* on fold *m*
of a grouped partition of the *regional training* samples (early stopping; never the caller's test data), and
re-calibrates intervals conformally on those out-of-fold residuals (cross-conformal) — so every regional sample
is used for both fitting and calibration, which matters at n = 20–500.
"""

from __future__ import annotations

import copy
import logging
import time
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from geesoil.covariates.spec import CovariateSpec
from geesoil.covariates.window import Context
from geesoil.errors import ModelError
from geesoil.model.conformal import fit_calibration
from geesoil.model.features import Encoded, FeatureEncoder, spec_from_dict, spec_to_dict
from geesoil.model.io import register
from geesoil.model.network import (
    NetEnsemble,
    SoilNet,
    regression_metrics,
    require_min_samples,
    smearing_factor,
    training_summary,
)
from geesoil.model.train import (
    default_groups,
    evaluate_loss,
    member_splits,
    select_device,
    to_tensors,
    train_net,
)

log = logging.getLogger(__name__)

STRATEGIES: dict[str, str] = {
    "global": "pretrained model as is; only the prediction intervals and the mean's back-transform (smearing) are "
    "re-estimated on the regional samples",
    "finetuned": "plain full fine-tuning (the paper's strategy): all weights retrained with a small learning rate",
    "finetuned-gp": "fine-tuned, plus a Gaussian process (Matern + white noise, local km coordinates) on the "
    "network's out-of-fold residuals; its variance widens the intervals",
    "regional-branch": "a new zero-connected branch for region-only covariates added to the pretrained network, "
    "then fine-tuned (new branch at 10x the learning rate)",
    "discriminative": "discriminative learning rates: dense head at the full fine-tuning rate, covariate branches "
    "at 0.1x (or frozen with freeze_branches=True)",
    "coral": "fine-tuning with a CORAL penalty aligning the regional feature mean/covariance with the "
    "pretraining features",
    "stacked-qrf": "stacking into QRF: a regional quantile regression forest on the covariates, coordinates and "
    "the pretrained network's prediction (the forest decides how much of the global model to keep)",
    "scratch": "baseline: the same architecture trained from scratch on the regional samples only",
}


class _Transfer(NetEnsemble):
    """Fine-tuning machinery shared by the strategies; subclasses change the net, LR groups or loss.

    ``recentre=True`` first shifts each member's output by its mean residual on the regional training samples
    (:func:`recentre_output`), for regions where the global model is off by a constant; off by default (the
    ablation in docs/benchmarks.md measures it).
    """

    kind = "finetuned"
    #: whether fit trains the networks (``global`` only calibrates)
    _trains = True

    def __init__(
        self,
        pretrained: SoilNet | None,
        *,
        lr: float = 5e-4,
        max_epochs: int = 100,
        batch_size: int = 32,
        patience: int = 25,
        weight_decay: float = 1e-4,
        val_fraction: float = 0.2,
        recentre: bool = False,
        device: str = "auto",
        random_state: int = 0,
        progress: bool = False,
    ) -> None:
        self.pretrained = pretrained
        self.recentre = recentre
        self.lr = lr
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.patience = patience
        self.weight_decay = weight_decay
        self.val_fraction = val_fraction
        self.device = device
        self.random_state = random_state
        self.progress = progress

    def _declared_covariates(self) -> tuple[CovariateSpec, ...]:
        return tuple(self.pretrained.covariates) if self.pretrained is not None else ()

    def _declared_context(self) -> Context | None:
        return self.pretrained.context if self.pretrained is not None else None

    def _params(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "max_epochs": self.max_epochs,
            "batch_size": self.batch_size,
            "patience": self.patience,
            "weight_decay": self.weight_decay,
            "val_fraction": self.val_fraction,
            "recentre": self.recentre,
            "device": self.device,
            "random_state": self.random_state,
            "progress": self.progress,
        }

    # -- hooks -----------------------------------------------------------------------------------------------
    def _make_extra_encoder(self, X: pd.DataFrame) -> FeatureEncoder | None:
        return None

    def _member_net(self, m: int) -> nn.Module:
        net = copy.deepcopy(self.pretrained.nets_[m])
        return net

    def _param_groups(self, net: nn.Module) -> list[tuple[list[nn.Parameter], float]] | None:
        return None

    def _penalty(self, m: int):  # noqa: ANN202 (a train.Penalty or None)
        return None

    def _after_calibration(
        self,
        X: pd.DataFrame,
        data: Encoded,
        t: np.ndarray,
        rows: np.ndarray,
        resid: np.ndarray,
        spread: np.ndarray,
    ) -> None:
        return None

    # -- fit -------------------------------------------------------------------------------------------------
    def fit(
        self,
        X: pd.DataFrame,
        y: Any,
        *,
        groups: Sequence | np.ndarray | None = None,
        sources: Sequence[str] | None = None,
    ) -> _Transfer:
        t0 = time.perf_counter()
        pre = self.pretrained
        if pre is None or not hasattr(pre, "nets_"):
            raise ModelError(
                f"strategy {self.kind!r} needs a fitted pretrained SoilNet (load one with load_model)"
            )
        require_min_samples(len(X), f"fine-tuning ({self.kind})")
        self.encoder_ = pre.encoder_
        self.target_ = dict(pre.target_)
        t = self._transform_target(y, len(X), self.target_["transform"])
        self.extra_encoder_ = self._make_extra_encoder(X)
        data = self._encode(X)
        self.arch_ = {**pre.arch_, "layout": list(pre.arch_["layout"])}
        g = default_groups(X, groups)
        n_members = len(pre.nets_)
        rng = np.random.default_rng(self.random_state)
        splits = member_splits(g, n_members, val_fraction=self.val_fraction, rng=rng, mode="folds")
        self.members_ = []
        if self._trains:
            z = (t - self.target_["mean"]) / self.target_["std"]
            seeds = self._member_seeds(n_members)
            cfg = self._train_config()
            dev = select_device(self.device)
            self.nets_, results = [], []
            for m, (tr, va) in enumerate(splits):
                net = self._member_net(m).to(dev)
                if self.recentre:
                    recentre_output(net, to_tensors(data.cont[tr], data.cat[tr], z[tr], dev))
                val = to_tensors(data.cont[va], data.cat[va], z[va], dev)
                start = (
                    {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
                    evaluate_loss(net, val),
                )
                res = train_net(
                    net,
                    to_tensors(data.cont[tr], data.cat[tr], z[tr], dev),
                    val,
                    cfg,
                    seed=seeds[m],
                    progress=self.progress,
                    desc=f"{self.kind} member {m + 1}/{n_members}",
                    param_groups=self._param_groups(net),
                    penalty=self._penalty(m),
                    keep_snapshots=True,
                )
                self.nets_.append(net.cpu())
                res.snapshots.insert(0, start[0])  # "0 epochs": keep the pretrained weights
                res.history.insert(0, (float("nan"), start[1]))
                results.append(res)
            # one number of epochs for all members (0 = keep the pretrained weights), chosen on the pooled
            # out-of-fold loss of all regional samples: a per-member choice on 4-100 samples is mostly noise
            n_val = np.array([va.size for _, va in splits], dtype=float)
            length = min(len(r.history) for r in results)
            curves = np.array([[h[1] for h in r.history[:length]] for r in results])
            pooled = (curves * n_val[:, None]).sum(0) / n_val.sum()
            best = int(np.argmin(pooled))
            for net, res, (tr, va) in zip(self.nets_, results, splits, strict=True):
                net.load_state_dict(res.snapshots[best])
                net.eval()
                self.members_.append(
                    {
                        **res.to_dict(),
                        "epochs_kept": best,
                        "best_val_loss": float(res.history[best][1]),
                        "n_train": int(tr.size),
                        "n_val": int(va.size),
                    }
                )
            if self.extra_encoder_ is not None:
                self.arch_["layout"] = list(self.nets_[0].layout)
            rows, resid, spread = self._calibrate(data, t, splits)
            self.metrics_["epochs_kept"] = best
        else:
            self.nets_ = [copy.deepcopy(net).eval() for net in pre.nets_]
            rows, resid, spread = self._calibrate_unseen(data, t)
        self._after_calibration(X, data, t, rows, resid, spread)
        self.training_summary_ = training_summary(
            X, np.asarray(y, float), g, sources, time.perf_counter() - t0
        )
        self.training_summary_["strategy"] = self.kind
        self.training_summary_["pretrained"] = dict(pre.training_summary_)
        log.info(
            "%s: %d samples, %.1fs, out-of-fold MAE %.2f g/kg",
            self.kind,
            len(X),
            self.training_summary_["seconds"],
            self.metrics_["validation"]["mae"],
        )
        return self

    def _calibrate_unseen(self, data: Encoded, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Split-conformal: no member saw these samples, so the ensemble-mean residuals are honest scores.

        The mean's smearing factor is re-estimated from the same residuals: the pretrained one reflects the spread
        of global residuals, far wider than a region's, and inflated the regional mean (1.25 for the shipped
        coarse model; its median has 22-24 % lower MAE in Edgeroi and Niger).
        """
        P = self._members_t(data)
        mu, spread = P.mean(axis=0), P.std(axis=0)
        resid = t - mu
        if self.target_["transform"] == "log1p":
            self.target_["smearing"] = smearing_factor(resid)
        self.calibration_ = fit_calibration(resid, spread)
        self.metrics_ = {"validation": regression_metrics(self._inverse(t), self._point(mu))}
        return np.arange(t.size), resid, spread

    # -- state -----------------------------------------------------------------------------------------------
    @classmethod
    def from_state(cls, meta: dict[str, Any], blobs: dict[str, bytes]) -> _Transfer:
        params = dict(meta["params"])
        if "regional_covariates" in params:
            params["regional_covariates"] = [spec_from_dict(s) for s in params["regional_covariates"]]
        model = cls(None, **params)
        model._load_state(meta, blobs)
        model._load_extra(meta)
        del model._tensors
        return model

    def _load_extra(self, meta: dict[str, Any]) -> None:
        return None


@register("finetuned")
class FineTuned(_Transfer):
    """Plain full fine-tuning: every weight retrained from the pretrained values with a small learning rate."""

    kind = "finetuned"


@register("global")
class GlobalRecalibrated(_Transfer):
    """The pretrained ensemble unchanged; ``fit`` only re-calibrates the intervals on the regional samples."""

    kind = "global"
    _trains = False


@register("discriminative")
class Discriminative(_Transfer):
    """Head at the full fine-tuning LR, covariate branches at ``branch_lr_mult`` × LR (0 with ``freeze_branches``)."""

    kind = "discriminative"

    def __init__(
        self,
        pretrained: SoilNet | None,
        *,
        branch_lr_mult: float = 0.1,
        freeze_branches: bool = False,
        **kw: Any,
    ) -> None:
        super().__init__(pretrained, **kw)
        self.branch_lr_mult = branch_lr_mult
        self.freeze_branches = freeze_branches

    def _params(self) -> dict[str, Any]:
        return {
            **super()._params(),
            "branch_lr_mult": self.branch_lr_mult,
            "freeze_branches": self.freeze_branches,
        }

    def _param_groups(self, net: nn.Module) -> list[tuple[list[nn.Parameter], float]]:
        mult = 0.0 if self.freeze_branches else self.branch_lr_mult
        return [(list(net.branches.parameters()), mult), (list(net.head.parameters()), 1.0)]


@register("regional-branch")
class RegionalBranch(_Transfer):
    """Adds one ``regional`` branch for region-only covariates; its head connections start at zero."""

    kind = "regional-branch"

    def __init__(
        self,
        pretrained: SoilNet | None,
        *,
        regional_covariates: Sequence[CovariateSpec] = (),
        new_branch_lr_mult: float = 10.0,
        **kw: Any,
    ) -> None:
        super().__init__(pretrained, **kw)
        self.regional_covariates = tuple(regional_covariates)
        self.new_branch_lr_mult = new_branch_lr_mult

    def _declared_covariates(self) -> tuple[CovariateSpec, ...]:
        return super()._declared_covariates() + self.regional_covariates

    def _params(self) -> dict[str, Any]:
        return {
            **super()._params(),
            "regional_covariates": [spec_to_dict(s) for s in self.regional_covariates],
            "new_branch_lr_mult": self.new_branch_lr_mult,
        }

    def _make_extra_encoder(self, X: pd.DataFrame) -> FeatureEncoder:
        if not self.regional_covariates:
            raise ModelError(
                "strategy 'regional-branch' needs regional_covariates (e.g. the region's covariate pack)"
            )
        clash = {s.name for s in self.regional_covariates} & {s.name for s in self.pretrained.covariates}
        if clash:
            raise ModelError(
                f"regional covariates already used by the pretrained model: {', '.join(sorted(clash))}; "
                "give only region-only covariates"
            )
        return FeatureEncoder(self.regional_covariates, location=None, group="regional").fit(X)

    def _member_net(self, m: int) -> nn.Module:
        net = copy.deepcopy(self.pretrained.nets_[m])
        n_cont = sum(g.n_cont for g in self.encoder_.layout_)
        n_cat = sum(len(g.cat) for g in self.encoder_.layout_)
        (layout,) = self.extra_encoder_.layout_
        net.add_branch(layout.shifted(n_cont, n_cat), seed=self._member_seeds(len(self.pretrained.nets_))[m])
        return net

    def _param_groups(self, net: nn.Module) -> list[tuple[list[nn.Parameter], float]]:
        new = list(net.branches[-1].parameters())
        new_ids = {id(p) for p in new}
        rest = [p for p in net.parameters() if id(p) not in new_ids]
        return [(rest, 1.0), (new, self.new_branch_lr_mult)]


@register("coral")
class Coral(_Transfer):
    """Fine-tuning plus ``coral_weight`` × (‖Δmean‖² + ‖Δcov‖²_F / d) between regional-batch and source features."""

    kind = "coral"

    def __init__(self, pretrained: SoilNet | None, *, coral_weight: float = 1.0, **kw: Any) -> None:
        super().__init__(pretrained, **kw)
        self.coral_weight = coral_weight

    def _params(self) -> dict[str, Any]:
        return {**super()._params(), "coral_weight": self.coral_weight}

    def _penalty(self, m: int):  # noqa: ANN202
        moments = getattr(self.pretrained, "source_features_", None)
        if not moments:
            raise ModelError("strategy 'coral' needs a pretrained model saved with its feature statistics")
        weight = self.coral_weight

        def penalty(net: nn.Module, xc: torch.Tensor, xk: torch.Tensor) -> torch.Tensor:
            mean_s, cov_s = (v.to(xc.device) for v in moments[m % len(moments)])
            f = net.features(xc, xk)
            mean = f.mean(0)
            fc = f - mean
            cov = fc.T @ fc / max(f.shape[0] - 1, 1)
            d = f.shape[1]
            return weight * (torch.sum((mean - mean_s) ** 2) / d + torch.sum((cov - cov_s) ** 2) / d**2)

        return penalty


# ----------------------------------------------------------------------------------------- fine-tuned + GP
def _local_projection(lon0: float, lat0: float):  # noqa: ANN202 (a pyproj Transformer)
    from pyproj import Transformer

    aeqd = f"+proj=aeqd +lat_0={lat0} +lon_0={lon0} +x_0=0 +y_0=0 +datum=WGS84 +units=km +no_defs"
    return Transformer.from_crs("EPSG:4326", aeqd, always_xy=True)


def _gp_kernel(length_km: float):  # noqa: ANN202
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    return ConstantKernel(0.5, (1e-4, 1e2)) * Matern(length_km, (0.05, 1e4), nu=1.5) + WhiteKernel(
        0.5, (1e-4, 1e2)
    )


@register("finetuned-gp")
class FineTunedGP(_Transfer):
    """Fine-tuned network + GP (Matern ν=1.5 + white noise) on its out-of-fold log-space residuals.

    Coordinates: azimuthal equidistant projection centred on the training samples' centroid, km. The GP's
    leave-one-out residuals and variances feed the conformal calibration, so intervals include the GP variance.
    """

    kind = "finetuned-gp"

    def _after_calibration(
        self,
        X: pd.DataFrame,
        data: Encoded,
        t: np.ndarray,
        rows: np.ndarray,
        resid: np.ndarray,
        spread: np.ndarray,
    ) -> None:
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor

        if not {"lon", "lat"} <= set(X.columns) or X[["lon", "lat"]].isna().to_numpy().any():
            raise ModelError(
                "strategy 'finetuned-gp' needs lon/lat for every sample (the GP works on coordinates)"
            )
        lon, lat = X["lon"].to_numpy(float), X["lat"].to_numpy(float)
        self.gp_center_ = (float(np.mean(lon)), float(np.mean(lat)))
        xy = np.column_stack(_local_projection(*self.gp_center_).transform(lon, lat))[rows]
        dist = np.sqrt(((xy[:, None, :] - xy[None, :, :]) ** 2).sum(-1))
        length0 = float(np.median(dist[dist > 0])) if (dist > 0).any() else 1.0
        with warnings.catch_warnings():
            # residuals that are pure noise push the Matern scale to its bound; that is an answer, not an error
            warnings.simplefilter("ignore", ConvergenceWarning)
            gp = GaussianProcessRegressor(
                _gp_kernel(length0), normalize_y=True, n_restarts_optimizer=2, random_state=self.random_state
            ).fit(xy, resid)
        self._set_gp(xy, resid, gp.kernel_.theta)
        loo_mean, loo_var = self._gp_loo()
        e = resid - loo_mean
        if self.target_["transform"] == "log1p":
            self.target_["smearing"] = smearing_factor(e)
        self.calibration_ = fit_calibration(e, spread, extra_var=loo_var)
        preds = t[rows] - e
        self.metrics_["validation_network_only"] = self.metrics_["validation"]
        self.metrics_["validation"] = regression_metrics(self._inverse(t[rows]), self._point(preds))
        self.metrics_["gp_kernel"] = str(self.gp_.kernel_)

    def _set_gp(self, xy: np.ndarray, resid: np.ndarray, theta: np.ndarray) -> None:
        from sklearn.gaussian_process import GaussianProcessRegressor

        kernel = _gp_kernel(1.0).clone_with_theta(np.asarray(theta, dtype=float))
        self.gp_ = GaussianProcessRegressor(kernel, optimizer=None, normalize_y=True).fit(xy, resid)
        self.gp_xy_, self.gp_resid_, self.gp_theta_ = xy, resid, np.asarray(theta, dtype=float)

    def _gp_loo(self) -> tuple[np.ndarray, np.ndarray]:
        """Closed-form leave-one-out GP means and predictive variances of the training residuals."""
        gp = self.gp_
        K = gp.kernel_(self.gp_xy_)
        ym, ys = np.mean(self.gp_resid_), np.std(self.gp_resid_)
        ys = ys if ys > 0 else 1.0
        yn = (self.gp_resid_ - ym) / ys
        Kinv = np.linalg.inv(K + gp.alpha * np.eye(K.shape[0]))
        d = np.diag(Kinv)
        return (yn - Kinv @ yn / d) * ys + ym, ys**2 / d

    def _predictive(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray | float]:
        mu, spread, _ = super()._predictive(X)
        lon, lat = X["lon"].to_numpy(float), X["lat"].to_numpy(float)
        xy = np.column_stack(_local_projection(*self.gp_center_).transform(lon, lat))
        gmean, gstd = self.gp_.predict(xy, return_std=True)
        return mu + gmean, spread, gstd**2

    def _extra_meta(self) -> dict[str, Any]:
        return {
            "gp": {
                "center": list(self.gp_center_),
                "theta": self.gp_theta_.tolist(),
                "xy": self.gp_xy_.tolist(),
                "resid": self.gp_resid_.tolist(),
                "kernel": str(self.gp_.kernel_),
            }
        }

    def _load_extra(self, meta: dict[str, Any]) -> None:
        gp = meta["gp"]
        self.gp_center_ = tuple(gp["center"])
        self._set_gp(np.asarray(gp["xy"], float).reshape(-1, 2), np.asarray(gp["resid"], float), gp["theta"])


@torch.no_grad()
def recentre_output(net: nn.Module, train: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> float:
    """Shift the output bias by the mean residual on ``train`` (xc, xk, z): the region's level, before fine-tuning.

    A global model can be off by a constant in a region (log-space level: +0.13 in Malawi, −0.25 in Niger for the
    shipped coarse model); a few fine-tuning steps on 25–50 samples at a small learning rate barely move it, while
    the mean residual is a well-determined single number. Returns the shift (standardised target units).
    """
    xc, xk, z = train
    net.eval()
    shift = float((z - net(xc, xk)).mean())
    net.head[-1].bias += shift
    return shift


# --------------------------------------------------------------------------------------------- factory
def make_strategy(
    name: str,
    pretrained: SoilNet,
    *,
    regional_covariates: Sequence[CovariateSpec] = (),
    random_state: int = 0,
    **kw: Any,
) -> Any:
    """An unfitted transfer model of strategy ``name`` (see :data:`STRATEGIES`) built on ``pretrained``.

    ``regional_covariates`` are used by ``regional-branch`` (required), ``stacked-qrf`` and ``scratch``; ``kw``
    goes to the strategy's constructor (e.g. ``lr``, ``max_epochs``, ``progress``; forest parameters such as
    ``n_estimators`` for ``stacked-qrf``).
    """
    if name not in STRATEGIES:
        raise ModelError(f"unknown fine-tuning strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")
    if pretrained is None or not hasattr(pretrained, "nets_"):
        raise ModelError(f"strategy {name!r} needs a fitted pretrained SoilNet")
    regional = tuple(regional_covariates)
    if name == "stacked-qrf":  # forest hyperparameters in kw (e.g. n_estimators)
        from geesoil.model.stack import StackedQRF

        return StackedQRF(pretrained, regional_covariates=regional, random_state=random_state, **kw)
    if name == "scratch":
        params = {
            "hidden": tuple(pretrained.arch_["hidden"]),
            "branch_width": pretrained.arch_["branch_width"],
            "dropout": pretrained.arch_["dropout"],
            "location": pretrained.encoder_.location,
            "n_members": len(pretrained.nets_),
            "batch_size": 32,
            "max_epochs": 200,
            "patience": 20,
            "val_fraction": 0.2,
            "target": pretrained.target_["transform"],
            "window": pretrained.encoder_.window,
            "window_step_m": pretrained.encoder_.step_m,
            "progress": False,
        }
        params.update(kw)
        return SoilNet(tuple(pretrained.covariates) + regional, random_state=random_state, **params)
    if name == "regional-branch":
        return RegionalBranch(pretrained, regional_covariates=regional, random_state=random_state, **kw)
    if regional:
        log.info(
            "strategy %r ignores the %d regional covariates (regional-branch, stacked-qrf and the forests use them)",
            name,
            len(regional),
        )
    cls = {
        "global": GlobalRecalibrated,
        "finetuned": FineTuned,
        "finetuned-gp": FineTunedGP,
        "discriminative": Discriminative,
        "coral": Coral,
    }[name]
    return cls(pretrained, random_state=random_state, **kw)


__all__ = [
    "STRATEGIES",
    "Coral",
    "Discriminative",
    "FineTuned",
    "FineTunedGP",
    "GlobalRecalibrated",
    "RegionalBranch",
    "make_strategy",
]
