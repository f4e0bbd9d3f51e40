"""The GSoilCPM-shaped network and :class:`SoilNet`, its deep-ensemble, conformally calibrated estimator.

Network: one branch per covariate group (a learned projection of the group's z-scores, missing flags and class
embeddings to ``branch_width`` units), branches concatenated, then dense layers with dropout and one output.

Target: ``log1p`` of SOC (g/kg), standardised. Point predictions are back-transformed with a centred form of
Duan's smearing estimator, ``ŷ = exp(μ)·mean(exp(r − r̄)) − 1``, where ``r`` are the out-of-validation residuals in
log1p space (each member's residuals on its own held-out validation sites). It corrects the median-to-mean
(Jensen) bias of ``expm1`` without assuming normal residuals; centring keeps the network's own level (trained to
be unbiased in log space) instead of a noisy residual mean, which matters for fine-tuning on 20–100 samples. Intervals are conformal in log1p space (:mod:`geesoil.model.conformal`) and are
back-transformed without smearing (quantiles map through monotone transforms), clipped at 0 g/kg.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch
from torch import nn

from geesoil import __version__
from geesoil.covariates.spec import CovariateSpec
from geesoil.covariates.window import WINDOWS, Context
from geesoil.errors import ModelError
from geesoil.model.base import ONE_SIGMA_ALPHA
from geesoil.model.conformal import Calibration, fit_calibration
from geesoil.model.features import Encoded, FeatureEncoder, GroupLayout, spec_from_dict, spec_to_dict
from geesoil.model.io import register
from geesoil.model.train import (
    TrainConfig,
    default_groups,
    member_splits,
    predict_raw,
    select_device,
    to_tensors,
    train_net,
)

log = logging.getLogger(__name__)

#: fewer samples than this cannot give a validation split, a calibration set and a trained net at once
MIN_SAMPLES = 20
TARGETS = ("log1p", "identity")


# --------------------------------------------------------------------------------------------- the network
def embedding_dim(vocab: int) -> int:
    return int(min(8, max(2, round(1.6 * vocab**0.56))))


class _Branch(nn.Module):
    """One covariate group → ``width`` units (a 1×1 convolution for a single pixel is a linear layer)."""

    def __init__(self, layout: GroupLayout, width: int) -> None:
        super().__init__()
        self.start, self.stop = layout.cont
        self.cat_cols = list(layout.cat)
        self.embeddings = nn.ModuleList(nn.Embedding(v, embedding_dim(v)) for v in layout.vocab)
        n_in = layout.n_cont + sum(embedding_dim(v) for v in layout.vocab)
        self.proj = nn.Linear(n_in, width)
        self.act = nn.ReLU()

    def forward(self, xc: torch.Tensor, xk: torch.Tensor) -> torch.Tensor:
        parts = [xc[:, self.start : self.stop]]
        parts += [emb(xk[:, c]) for emb, c in zip(self.embeddings, self.cat_cols, strict=True)]
        return self.act(self.proj(torch.cat(parts, dim=1)))


class GroupBranchNet(nn.Module):
    """Per-group branches → concatenation → ``hidden`` dense layers (ReLU, dropout) → one output."""

    def __init__(
        self,
        layout: Sequence[GroupLayout],
        branch_width: int = 16,
        hidden: Sequence[int] = (128, 64),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if not layout:
            raise ModelError("the network has no inputs: give covariates or location='fourier'")
        self.layout = list(layout)
        self.branch_width = branch_width
        self.branches = nn.ModuleList(_Branch(g, branch_width) for g in layout)
        layers: list[nn.Module] = []
        d = len(layout) * branch_width
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU(), nn.Dropout(dropout)]
            d = h
        layers.append(nn.Linear(d, 1))
        self.head = nn.Sequential(*layers)

    def features(self, xc: torch.Tensor, xk: torch.Tensor) -> torch.Tensor:
        """The concatenated branch outputs (the head's input)."""
        return torch.cat([b(xc, xk) for b in self.branches], dim=1)

    def forward(self, xc: torch.Tensor, xk: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(xc, xk)).squeeze(-1)

    def add_branch(self, layout: GroupLayout, seed: int = 0) -> _Branch:
        """Append a branch whose connections into the head start at zero, so the function is unchanged at first.

        The branch's own weights are drawn from ``seed`` (not torch's global generator), so a fit is reproducible.
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            branch = _Branch(layout, self.branch_width)
            new = nn.Linear(self.head[0].in_features + self.branch_width, self.head[0].out_features)
        self.branches.append(branch)
        self.layout.append(layout)
        old = self.head[0]
        with torch.no_grad():
            new.weight.zero_()
            new.weight[:, : old.in_features] = old.weight
            new.bias.copy_(old.bias)
        self.head[0] = new
        return branch


def build_net(arch: dict[str, Any], layout: Sequence[GroupLayout], seed: int) -> GroupBranchNet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GroupBranchNet(layout, arch["branch_width"], tuple(arch["hidden"]), arch["dropout"])


# --------------------------------------------------------------------------------- ensemble + calibration
class NetEnsemble:
    """Shared machinery of every network-based model: encoding, member predictions, back-transform, intervals,
    calibration from out-of-validation residuals, and the model-file state.

    Fitted attributes: ``encoder_``, ``extra_encoder_`` (region-only covariates or None), ``arch_``, ``nets_``,
    ``target_``, ``calibration_``, ``metrics_``, ``training_summary_``, ``members_``.
    """

    kind: ClassVar[str]
    extra_encoder_: FeatureEncoder | None = None

    # -- inputs ----------------------------------------------------------------------------------------------
    @property
    def covariates(self) -> tuple[CovariateSpec, ...]:
        if hasattr(self, "encoder_"):
            extra = self.extra_encoder_.covariates if self.extra_encoder_ is not None else ()
            return tuple(self.encoder_.covariates) + tuple(extra)
        return self._declared_covariates()

    def _declared_covariates(self) -> tuple[CovariateSpec, ...]:
        return ()

    @property
    def context(self) -> Context | None:
        """The pixel window the model's input tables need (``None``: single pixels); see
        :func:`geesoil.evaluate.covariate_table` and :func:`geesoil.mapping.tiler.tile_table`."""
        if hasattr(self, "encoder_"):
            return self.encoder_.context
        return self._declared_context()

    def _declared_context(self) -> Context | None:
        return None

    def check_covariates(self, available_names: Iterable[str]) -> None:
        """Raise :class:`ModelError` naming every covariate the model needs that ``available_names`` lacks."""
        check_covariates(self.covariates, available_names)

    def _check_fitted(self) -> None:
        if not hasattr(self, "nets_"):
            raise ModelError(f"{type(self).__name__} is not fitted; call fit(X, y) first")

    def _encode(self, X: pd.DataFrame) -> Encoded:
        data = self.encoder_.transform(X)
        if self.extra_encoder_ is not None:
            data = data.hstack(self.extra_encoder_.transform(X))
        return data

    # -- predictions -----------------------------------------------------------------------------------------
    def _members_t(self, data: Encoded, nets: Sequence[nn.Module] | None = None) -> np.ndarray:
        """(members, N) predictions in the transformed target space (e.g. log1p g/kg)."""
        nets = self.nets_ if nets is None else nets
        dev = next(nets[0].parameters()).device
        xc, xk, _ = to_tensors(data.cont, data.cat, None, dev)
        z = np.stack([predict_raw(net, xc, xk).cpu().numpy().astype(np.float64) for net in nets])
        return z * self.target_["std"] + self.target_["mean"]

    def _predictive(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray | float]:
        """Ensemble mean and spread in the transformed space, plus any extra predictive variance (0 here)."""
        P = self._members_t(self._encode(X))
        return P.mean(axis=0), P.std(axis=0), 0.0

    def _point(self, t: np.ndarray) -> np.ndarray:
        if self.target_["transform"] == "log1p":
            return np.maximum(np.exp(t) * self.target_["smearing"] - 1.0, 0.0)
        return t

    def _inverse(self, t: np.ndarray) -> np.ndarray:
        return np.maximum(np.expm1(t), 0.0) if self.target_["transform"] == "log1p" else np.maximum(t, 0.0)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Mean SOC (g/kg): ensemble mean in log1p space, back-transformed with smearing."""
        self._check_fitted()
        mu, _, _ = self._predictive(X)
        return self._point(mu)

    def predict_median(self, X: pd.DataFrame) -> np.ndarray:
        """Median SOC (g/kg): the ensemble mean in log1p space back-transformed without smearing.

        Lower MAE than :meth:`predict` on skewed SOC (the median minimises absolute error); use :meth:`predict`
        (the mean) for stocks and area totals.
        """
        self._check_fitted()
        mu, _, _ = self._predictive(X)
        return self._inverse(mu)

    def predict_interval(self, X: pd.DataFrame, alpha: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
        """Conformal central ``1 - alpha`` interval (g/kg, lower bound ≥ 0)."""
        self._check_fitted()
        mu, spread, extra_var = self._predictive(X)
        lo, hi = self.calibration_.interval(mu, spread, alpha, extra_var)
        return self._inverse(lo), self._inverse(hi)

    def predict_std(self, X: pd.DataFrame) -> np.ndarray:
        """Approximate predictive standard deviation (g/kg): half the width of the conformal 68.27 % interval."""
        lo, hi = self.predict_interval(X, alpha=ONE_SIGMA_ALPHA)
        return (hi - lo) / 2.0

    def predict_layers(
        self, X: pd.DataFrame, alpha: float = 0.1, *, median: bool = False, std: bool = False
    ) -> dict[str, np.ndarray]:
        """:func:`geesoil.model.base.predict_layers` from one pass of the ensemble."""
        self._check_fitted()
        mu, spread, extra_var = self._predictive(X)
        lo, hi = self.calibration_.interval(mu, spread, alpha, extra_var)
        mean = self._point(mu)
        out = {"point": mean, "mean": mean, "lo": self._inverse(lo), "hi": self._inverse(hi)}
        if median:
            out["median"] = self._inverse(mu)
        if std:
            lo, hi = self.calibration_.interval(mu, spread, ONE_SIGMA_ALPHA, extra_var)
            out["std"] = (self._inverse(hi) - self._inverse(lo)) / 2.0
        return out

    # -- fitting helpers -------------------------------------------------------------------------------------
    def _transform_target(self, y: Any, n_rows: int, transform: str) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64).ravel()
        if y.size != n_rows:
            raise ModelError(f"y has {y.size} values but X has {n_rows} rows")
        bad = ~np.isfinite(y)
        if bad.any():
            raise ModelError(
                f"y (SOC g/kg) has {int(bad.sum())} missing/non-finite values; drop those samples"
            )
        if transform == "log1p":
            if (y < 0).any():
                raise ModelError(
                    f"y (SOC g/kg) has {int((y < 0).sum())} negative values; SOC cannot be negative"
                )
            return np.log1p(y)
        if transform == "identity":
            return y
        raise ModelError(f"target={transform!r} not supported; use one of {TARGETS}")

    def _train_config(self) -> TrainConfig:
        """The optimiser settings of this model's ``lr``, ``weight_decay``, epochs, batch size and patience."""
        return TrainConfig(
            lr=self.lr,
            weight_decay=self.weight_decay,
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            patience=self.patience,
        )

    def _member_seeds(self, n: int) -> list[int]:
        """One reproducible seed per ensemble member, from ``random_state``."""
        return np.random.SeedSequence(self.random_state).generate_state(n).tolist()

    def _calibrate(
        self, data: Encoded, t: np.ndarray, splits: Sequence[tuple[np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Set smearing, calibration and validation metrics from each member's out-of-validation residuals.

        Returns the pooled (row index, residual, spread) triples used.
        """
        P = self._members_t(data)
        spread = P.std(axis=0)
        rows = np.concatenate([va for _, va in splits[: len(P)]])
        resid = np.concatenate([t[va] - P[m, va] for m, (_, va) in enumerate(splits[: len(P)])])
        preds = np.concatenate([P[m, va] for m, (_, va) in enumerate(splits[: len(P)])])
        if self.target_["transform"] == "log1p":
            self.target_["smearing"] = smearing_factor(resid)
        self.calibration_ = fit_calibration(resid, spread[rows])
        y_true, y_hat = self._inverse(t[rows]), self._point(preds)
        self.metrics_ = {"validation": regression_metrics(y_true, y_hat)}
        lo, hi = self.calibration_.interval(preds, spread[rows], 0.1)
        self.metrics_["validation"]["coverage90_in_sample_calibration"] = float(
            np.mean((t[rows] >= lo) & (t[rows] <= hi))
        )
        return rows, resid, spread[rows]

    # -- state -----------------------------------------------------------------------------------------------
    def _params(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_state(self) -> tuple[dict[str, Any], dict[str, bytes]]:
        self._check_fitted()
        tensors: dict[str, torch.Tensor] = {}
        for i, net in enumerate(self.nets_):
            for k, v in net.state_dict().items():
                tensors[f"m{i}.{k}"] = v.detach().cpu()
        tensors["calibration.scores"] = torch.as_tensor(self.calibration_.scores, dtype=torch.float64)
        tensors.update(self._extra_tensors())
        buf = io.BytesIO()
        torch.save(tensors, buf)
        meta = {
            "params": self._params(),
            "encoder": self.encoder_.to_dict(),
            "extra_encoder": self.extra_encoder_.to_dict() if self.extra_encoder_ is not None else None,
            "arch": {**self.arch_, "layout": [g.to_dict() for g in self.arch_["layout"]]},
            "n_members": len(self.nets_),
            "target": self.target_,
            "calibration": self.calibration_.to_dict(),
            "metrics": self.metrics_,
            "training_summary": self.training_summary_,
            "members": self.members_,
            "geesoil_version": __version__,
        }
        meta.update(self._extra_meta())
        return meta, {"weights.pt": buf.getvalue()}

    def _extra_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def _extra_meta(self) -> dict[str, Any]:
        return {}

    def _load_state(self, meta: dict[str, Any], blobs: dict[str, bytes]) -> None:
        tensors = torch.load(io.BytesIO(blobs["weights.pt"]), weights_only=True, map_location="cpu")
        self.encoder_ = FeatureEncoder.from_dict(meta["encoder"])
        self.extra_encoder_ = (
            FeatureEncoder.from_dict(meta["extra_encoder"]) if meta.get("extra_encoder") else None
        )
        arch = dict(meta["arch"])
        arch["layout"] = [GroupLayout.from_dict(g) for g in arch["layout"]]
        self.arch_ = arch
        self.nets_ = []
        for i in range(int(meta["n_members"])):
            net = build_net(arch, arch["layout"], seed=0)
            prefix = f"m{i}."
            net.load_state_dict({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
            net.eval()
            self.nets_.append(net)
        self.target_ = dict(meta["target"])
        self.calibration_ = Calibration(
            np.sort(tensors["calibration.scores"].numpy().astype(np.float64)),
            float(meta["calibration"]["beta"]),
        )
        self.metrics_ = meta.get("metrics", {})
        self.training_summary_ = meta.get("training_summary", {})
        self.members_ = meta.get("members", [])
        self._tensors = tensors


def smearing_factor(resid: np.ndarray) -> float:
    """Centred Duan smearing factor ``mean(exp(r − mean(r)))`` of log-space residuals."""
    resid = np.asarray(resid, dtype=np.float64)
    return float(np.mean(np.exp(resid - resid.mean())))


def regression_metrics(y_true: np.ndarray, y_hat: np.ndarray) -> dict[str, float]:
    err = y_hat - y_true
    ss_tot = float(np.sum((y_true - y_true.mean()) ** 2))
    return {
        "n": int(y_true.size),
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "bias": float(np.mean(err)),
        "r2": float(1 - np.sum(err**2) / ss_tot) if ss_tot > 0 else float("nan"),
    }


def require_min_samples(n: int, what: str) -> None:
    """Raise :class:`ModelError` when ``what`` (a network or transfer strategy) gets fewer than :data:`MIN_SAMPLES`
    samples."""
    if n < MIN_SAMPLES:
        raise ModelError(
            f"{what} needs at least {MIN_SAMPLES} samples, got {n}; "
            "collect more samples (or use the global model without fine-tuning)"
        )


def check_covariates(needed: Iterable[CovariateSpec], available_names: Iterable[str]) -> None:
    """Raise :class:`ModelError` naming every covariate in ``needed`` that ``available_names`` lacks."""
    have = set(available_names)
    missing = [s.name for s in needed if s.name not in have]
    if missing:
        raise ModelError(
            f"the model needs covariates the source does not provide: {', '.join(missing)}; "
            "add them to the covariate pack/catalog or use a model trained without them"
        )


def training_summary(
    X: pd.DataFrame, y: np.ndarray, groups: np.ndarray, sources: Sequence[str] | None, seconds: float
) -> dict[str, Any]:
    summary: dict[str, Any] = {"n": int(len(X)), "n_sites": int(np.unique(groups).size)}
    if "lon" in X.columns and "lat" in X.columns:
        lon, lat = X["lon"].to_numpy(float), X["lat"].to_numpy(float)
        summary["bbox"] = [
            float(np.nanmin(lon)),
            float(np.nanmin(lat)),
            float(np.nanmax(lon)),
            float(np.nanmax(lat)),
        ]
    src = sources if sources is not None else (X["source"] if "source" in X.columns else None)
    if src is not None:
        summary["sources"] = {str(k): int(v) for k, v in pd.Series(np.asarray(src)).value_counts().items()}
    y = np.asarray(y, dtype=float)
    summary["y"] = {"median": float(np.median(y)), "mean": float(np.mean(y)), "max": float(np.max(y))}
    summary["seconds"] = round(seconds, 2)
    return summary


# ---------------------------------------------------------------------------------------------- SoilNet
@register("soilnet")
class SoilNet(NetEnsemble):
    """GSoilCPM-style network trained from scratch: a deep ensemble with conformal intervals.

    Members differ by seed and by their grouped validation split (used for early stopping, smearing and
    calibration; never the caller's test data). ``metrics_["validation"]`` scores each member on its own
    held-out sites (g/kg; a single member, so slightly pessimistic for the ensemble).

    ``fit(X, y, groups=None, sources=None)``: ``groups`` keeps samples of one site together (default: lon/lat
    rounded to 0.01°); ``sources`` only feeds the training summary. The ``covariates`` argument is kept as
    ``covariates_in`` because ``covariates`` is the protocol's property (the fitted model's covariates).
    """

    kind = "soilnet"

    def __init__(
        self,
        covariates: Sequence[CovariateSpec],
        *,
        hidden: Sequence[int] = (128, 64),
        branch_width: int = 16,
        dropout: float = 0.1,
        location: str | None = "fourier",
        n_members: int = 5,
        max_epochs: int = 200,
        batch_size: int = 512,
        lr: float = 3e-3,
        weight_decay: float = 1e-4,
        patience: int = 20,
        val_fraction: float = 0.15,
        target: str = "log1p",
        window: int = 0,
        window_step_m: float | None = None,
        device: str = "auto",
        random_state: int = 0,
        progress: bool = True,
    ) -> None:
        self.covariates_in = tuple(covariates)
        self.hidden = hidden
        self.branch_width = branch_width
        self.dropout = dropout
        self.location = location
        self.n_members = n_members
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.val_fraction = val_fraction
        self.target = target
        self.window = window
        self.window_step_m = window_step_m
        self.device = device
        self.random_state = random_state
        self.progress = progress

    def _declared_covariates(self) -> tuple[CovariateSpec, ...]:
        return self.covariates_in

    def _declared_context(self) -> Context | None:
        if not self.window:
            return None
        return Context.over(self.window, float(self.window_step_m or 0.0), self.covariates_in)

    def _params(self) -> dict[str, Any]:
        return {
            "hidden": list(self.hidden),
            "branch_width": self.branch_width,
            "dropout": self.dropout,
            "location": self.location,
            "n_members": self.n_members,
            "max_epochs": self.max_epochs,
            "batch_size": self.batch_size,
            "lr": self.lr,
            "weight_decay": self.weight_decay,
            "patience": self.patience,
            "val_fraction": self.val_fraction,
            "target": self.target,
            "window": self.window,
            "window_step_m": self.window_step_m,
            "device": self.device,
            "random_state": self.random_state,
            "progress": self.progress,
        }

    def _validate_params(self) -> None:
        if self.window not in WINDOWS:
            raise ModelError(
                f"window must be one of {WINDOWS} (a 1×1, 3×3 or 5×5 pixel context), got {self.window}"
            )
        if self.window and not (self.window_step_m is not None and self.window_step_m > 0):
            raise ModelError(
                f"window={self.window} needs window_step_m, the pixel size in metres (e.g. the covariates' "
                f"native resolution), got {self.window_step_m}"
            )
        if self.target not in TARGETS:
            raise ModelError(f"target={self.target!r} not supported; use one of {TARGETS}")
        if self.n_members < 1:
            raise ModelError(f"n_members must be ≥ 1, got {self.n_members}")
        if not 0 < self.val_fraction < 0.9:
            raise ModelError(f"val_fraction must be in (0, 0.9), got {self.val_fraction}")

    def fit(
        self,
        X: pd.DataFrame,
        y: Any,
        *,
        groups: Sequence | np.ndarray | None = None,
        sources: Sequence[str] | None = None,
    ) -> SoilNet:
        t0 = time.perf_counter()
        self._validate_params()
        require_min_samples(len(X), "training a network")
        t = self._transform_target(y, len(X), self.target)
        self.encoder_ = FeatureEncoder(
            self.covariates_in,
            location=self.location,
            random_state=self.random_state,
            window=self.window,
            step_m=self.window_step_m if self.window else None,
        ).fit(X)
        self.extra_encoder_ = None
        data = self.encoder_.transform(X)
        self.target_ = {
            "transform": self.target,
            "mean": float(t.mean()),
            "std": float(t.std()) or 1.0,
            "smearing": 1.0,
        }
        z = (t - self.target_["mean"]) / self.target_["std"]
        g = default_groups(X, groups)
        rng = np.random.default_rng(self.random_state)
        splits = member_splits(g, self.n_members, val_fraction=self.val_fraction, rng=rng, mode="random")
        seeds = self._member_seeds(self.n_members)
        self.arch_ = {
            "branch_width": self.branch_width,
            "hidden": list(self.hidden),
            "dropout": self.dropout,
            "layout": list(self.encoder_.layout_),
        }
        cfg = self._train_config()
        dev = select_device(self.device)
        self.nets_, self.members_ = [], []
        for m, (tr, va) in enumerate(splits):
            net = build_net(self.arch_, self.arch_["layout"], seeds[m]).to(dev)
            res = train_net(
                net,
                to_tensors(data.cont[tr], data.cat[tr], z[tr], dev),
                to_tensors(data.cont[va], data.cat[va], z[va], dev),
                cfg,
                seed=seeds[m],
                progress=self.progress,
                desc=f"soilnet member {m + 1}/{self.n_members}",
            )
            self.nets_.append(net.cpu().eval())
            self.members_.append({**res.to_dict(), "n_train": int(tr.size), "n_val": int(va.size)})
        self._calibrate(data, t, splits)
        self.source_features_ = [feature_moments(net, data) for net in self.nets_]
        self.training_summary_ = training_summary(
            X, np.asarray(y, float), g, sources, time.perf_counter() - t0
        )
        log.info(
            "soilnet: %d members on %d samples in %.1fs; validation MAE %.2f g/kg",
            self.n_members,
            len(X),
            self.training_summary_["seconds"],
            self.metrics_["validation"]["mae"],
        )
        return self

    # -- state -----------------------------------------------------------------------------------------------
    def _extra_tensors(self) -> dict[str, torch.Tensor]:
        out = {}
        for i, (mean, cov) in enumerate(getattr(self, "source_features_", [])):
            out[f"source_features.m{i}.mean"] = mean
            out[f"source_features.m{i}.cov"] = cov
        return out

    @classmethod
    def from_state(cls, meta: dict[str, Any], blobs: dict[str, bytes]) -> SoilNet:
        params = dict(meta["params"])
        params["hidden"] = tuple(params["hidden"])
        covs = [spec_from_dict(s) for s in meta["encoder"]["covariates"]]
        model = cls(covs, **params)
        model._load_state(meta, blobs)
        t = model._tensors
        model.source_features_ = [
            (t[f"source_features.m{i}.mean"], t[f"source_features.m{i}.cov"])
            for i in range(len(model.nets_))
            if f"source_features.m{i}.mean" in t
        ]
        del model._tensors
        return model


@torch.no_grad()
def feature_moments(
    net: GroupBranchNet, data: Encoded, max_rows: int = 20000
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of the head-input features over (up to ``max_rows`` of) the training data (for CORAL)."""
    rows = np.linspace(0, len(data) - 1, num=min(len(data), max_rows)).astype(int)
    xc, xk, _ = to_tensors(data.cont[rows], data.cat[rows], None, torch.device("cpu"))
    net.eval()
    f = net.features(xc, xk).double()
    mean = f.mean(0)
    fc = f - mean
    cov = fc.T @ fc / max(f.shape[0] - 1, 1)
    return mean.float(), cov.float()


__all__ = [
    "GroupBranchNet",
    "NetEnsemble",
    "SoilNet",
    "MIN_SAMPLES",
    "build_net",
    "feature_moments",
    "regression_metrics",
    "spec_to_dict",
]
